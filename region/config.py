"""Region configuration: command line over TOML file over defaults."""

from __future__ import annotations

import argparse
import ipaddress
import os
import urllib.parse
from pathlib import Path

import attrs

from common.config import LEVELS, ConfigError, load_toml, parse_endpoint

DEFAULT_DATA_DIR = "/var/lib/vmyard"
DEFAULT_CONFIG = "/etc/vmyard/regiond.toml"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@attrs.frozen
class RegionConfig:
    data_dir: Path
    database_dsn: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 5240
    https_host: str | None = None  # optional HTTPS listener for the same site
    https_port: int = 5443
    tls_cert_file: Path | None = None  # else a certificate from the region CA
    tls_key_file: Path | None = None
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 5250
    rpc_max_connections: int = 1000  # RPC connections at once; more are closed on accept
    rpc_max_connections_per_peer: int = 100  # from one address
    rpc_handshake_timeout: float = 10.0  # seconds to finish TLS and then to register as a rack
    secret_key_file: Path | None = None
    local_rack: bool = True
    db_pool_size: int = 8
    # PostgreSQL plans the hot statements once per connection (region/db/prepared.py); turn it
    # off behind a pooler that hands out server connections per transaction (pgbouncer's
    # transaction mode), where a connection's prepared statements are not its own
    db_prepared_statements: bool = True
    heartbeat_interval: float = 30.0
    log_level: str = "info"
    log_format: str = "text"
    maas_url: str | None = None  # what racks and printed hints use to reach us
    vm_host_refresh_interval: float = 60.0  # seconds between automatic refreshes; 0 turns them off
    allocation_policy: str = attrs.field(default="pack", validator=attrs.validators.in_(("pack", "spread")))
    # seconds a deploy may take before it is Failed deployment
    deploy_timeout: float = attrs.field(default=1800.0, validator=attrs.validators.gt(0))
    default_distro_series: str = ""  # the image a deploy without distro_series gets (MAAS's setting)
    # seconds without a heartbeat after which another region redoes a region's deploy rack steps
    region_dead_after: float = attrs.field(default=90.0, validator=attrs.validators.gt(0))
    boot_source_url: str | None = None  # a simplestreams image server to sync from; None: no syncing
    boot_source_releases: tuple[str, ...] = ("noble",)
    boot_source_arches: tuple[str, ...] = ("amd64",)
    boot_source_image_type: str = attrs.field(default="virtual-machine",
                                              validator=attrs.validators.in_(("virtual-machine", "container")))
    boot_source_interval: float = attrs.field(default=3600.0, validator=attrs.validators.gt(0))  # seconds between syncs
    metrics_enabled: bool = True  # Prometheus metrics at /MAAS/metrics (no credentials, as in MAAS)
    metrics_allowed_networks: tuple[str, ...] = ()  # CIDRs that may scrape them; empty: any client
    # bytes of rendered machine JSON kept for listings (region/api/listing_cache.py); 0: none
    machine_json_cache_bytes: int = attrs.field(default=256 * 1024 * 1024, validator=attrs.validators.ge(0))

    @property
    def key_file(self) -> Path:
        return self.secret_key_file or self.data_dir / "region.key"

    @property
    def url(self) -> str:
        if self.maas_url:
            return self.maas_url.rstrip("/") + "/"
        host = self.http_host if self.http_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.http_port}/MAAS/"


def _check_boot_source(url: str | None) -> None:
    # Signatures (.sjson) are not checked, so only TLS vouches for the index: https, or a
    # loopback address (a mirror on this machine, and the tests).
    if url is None:
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise ConfigError(f"boot_source_url must be an https URL (or http on loopback), not {url!r}")


def _networks(file: dict, key: str) -> tuple[str, ...]:
    value = file.get(key, [])
    try:
        if not isinstance(value, list):
            raise ValueError(value)
        return tuple(str(ipaddress.ip_network(v, strict=False)) for v in value)
    except ValueError:
        raise ConfigError(f"{key} must be a list of networks, e.g. [\"127.0.0.0/8\", \"10.0.0.0/24\"]") from None


def _names(file: dict, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = file.get(key, default)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key} must be a list of names, e.g. {list(default)}")
    return tuple(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help=f"TOML config file (default {DEFAULT_CONFIG} if it exists)")
    parser.add_argument("--data-dir", help=f"state directory (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--database-dsn", help="PostgreSQL DSN; omit to run an embedded cluster in the data dir")
    parser.add_argument("--http", help="HTTP listen address (default 127.0.0.1:5240)")
    parser.add_argument("--https", help="also serve the API over HTTPS on this address (e.g. 0.0.0.0:5443)")
    parser.add_argument("--tls-cert-file", help="PEM certificate for --https (default: issued by the region CA)")
    parser.add_argument("--tls-key-file", help="PEM private key for --tls-cert-file")
    parser.add_argument("--rpc", help="RPC (AMP over TLS) listen address (default: the HTTP host, port 5250)")
    parser.add_argument("--secret-key-file", help="region key for secrets at rest (default DATA_DIR/region.key)")
    parser.add_argument("--no-local-rack", action="store_true", help="do not start a local rack (a child process)")
    parser.add_argument("--maas-url", help="URL racks and clients use to reach this region")
    parser.add_argument("--vm-host-refresh-interval", type=float,
                        help="seconds between automatic VM host refreshes (default 60; 0: never)")
    parser.add_argument("--allocation-policy", choices=("pack", "spread"),
                        help="where allocate composes VMs: the fullest host that fits (pack, default) or the emptiest")
    parser.add_argument("--deploy-timeout", type=float,
                        help="seconds until a deploy that has not reported success fails (default 1800)")
    parser.add_argument("--boot-source-url",
                        help="simplestreams image server to sync Ubuntu images from (https; default: none)")
    parser.add_argument("--log-level", choices=LEVELS)
    parser.add_argument("--log-format", choices=("text", "json"))


def from_arguments(args: argparse.Namespace) -> RegionConfig:
    config_path = args.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    file = load_toml(config_path)
    unknown = set(file) - {f.name for f in attrs.fields(RegionConfig)} - {"http", "https", "rpc"}
    if unknown:
        raise ConfigError(f"unknown settings in {config_path}: {', '.join(sorted(unknown))}")

    def pick(name: str, default=None):
        value = getattr(args, name, None)
        return value if value is not None else file.get(name, default)

    http_host, http_port = parse_endpoint(pick("http", "127.0.0.1:5240"), 5240)
    rpc_value = pick("rpc")
    rpc_host, rpc_port = parse_endpoint(rpc_value, 5250) if rpc_value else (http_host, 5250)
    https_value = pick("https")
    https_host, https_port = parse_endpoint(https_value, 5443) if https_value else (None, 5443)
    cert_file, tls_key = pick("tls_cert_file"), pick("tls_key_file")
    if bool(cert_file) != bool(tls_key):
        raise ConfigError("tls_cert_file and tls_key_file go together")
    key_file = pick("secret_key_file")
    _check_boot_source(pick("boot_source_url"))
    try:
        return RegionConfig(
            data_dir=Path(pick("data_dir", DEFAULT_DATA_DIR)).absolute(),
            database_dsn=pick("database_dsn"),
            http_host=http_host,
            http_port=http_port,
            https_host=https_host,
            https_port=https_port,
            tls_cert_file=Path(cert_file) if cert_file else None,
            tls_key_file=Path(tls_key) if tls_key else None,
            rpc_host=rpc_host,
            rpc_port=rpc_port,
            secret_key_file=Path(key_file) if key_file else None,
            local_rack=not args.no_local_rack and bool(file.get("local_rack", True)),
            db_pool_size=int(file.get("db_pool_size", 8)),
            db_prepared_statements=bool(file.get("db_prepared_statements", True)),
            heartbeat_interval=float(file.get("heartbeat_interval", 30.0)),
            rpc_max_connections=int(file.get("rpc_max_connections", 1000)),
            rpc_max_connections_per_peer=int(file.get("rpc_max_connections_per_peer", 100)),
            rpc_handshake_timeout=float(file.get("rpc_handshake_timeout", 10.0)),
            log_level=pick("log_level", "info"),
            log_format=pick("log_format", "text"),
            maas_url=pick("maas_url"),
            vm_host_refresh_interval=float(pick("vm_host_refresh_interval", 60.0)),
            allocation_policy=pick("allocation_policy", "pack"),
            deploy_timeout=float(pick("deploy_timeout", 1800.0)),
            default_distro_series=str(file.get("default_distro_series", "")),
            region_dead_after=float(file.get("region_dead_after", 90.0)),
            boot_source_url=pick("boot_source_url"),
            boot_source_releases=_names(file, "boot_source_releases", ("noble",)),
            boot_source_arches=_names(file, "boot_source_arches", ("amd64",)),
            boot_source_image_type=file.get("boot_source_image_type", "virtual-machine"),
            boot_source_interval=float(file.get("boot_source_interval", 3600.0)),
            metrics_enabled=bool(file.get("metrics_enabled", True)),
            metrics_allowed_networks=_networks(file, "metrics_allowed_networks"),
            machine_json_cache_bytes=int(file.get("machine_json_cache_bytes", 256 * 1024 * 1024)),
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad configuration: {e}") from None
