"""A tiny fake LXD for refresh throughput: replays, over HTTPS on loopback, the answers a real
LXD gave to one discovery (recorded by bench/refresh.py), to any number of VM hosts.

    python -m bench.fake_lxd --port-file F --answers answers.json --cert c.pem --key k.pem

Prints nothing; writes the bound port to --port-file once listening.  Every request is
answered from the recording by method, path and query (404 in LXD's error form otherwise).
"""

from __future__ import annotations

import argparse
import http.server
import json
import ssl
from pathlib import Path


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as pylxd's session expects
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    answers: dict[str, tuple[int, str]] = {}

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, body = self.answers.get(f"{self.command} {self.path}",
                                        (404, json.dumps({"type": "error", "error": "not found", "error_code": 404})))
        raw = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer  # noqa: N815 (http.server's names)

    def log_message(self, *args) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    tls: ssl.SSLContext

    def finish_request(self, request, client_address) -> None:
        # The TLS handshake in the connection's own thread: one slow client never holds accept().
        try:
            request = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        self.RequestHandlerClass(request, client_address, self)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--answers", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    _Handler.answers = {k: tuple(v) for k, v in json.loads(Path(args.answers).read_text()).items()}
    server = _Server(("127.0.0.1", 0), _Handler)
    server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.tls.load_cert_chain(args.cert, args.key)
    Path(args.port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
