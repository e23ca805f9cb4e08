"""The LXD VM-host driver (pylxd over HTTPS with a per-host client certificate).

Every method takes the region's `HostTarget` (address, project, client identity,
pinned server fingerprint).  Connection (spec §6.1):

1. `target.address` becomes `https://HOST:PORT` (no scheme → https, no port → 8443).
2. **Certificate pinning.**  LXD servers use self-signed certificates, so we
   cannot verify them against a CA.  Instead:
   - a probe TLS handshake (`probe_fingerprint`: `ssl` socket with
     `CERT_NONE`, then `getpeercert(binary_form=True)`) gives the SHA-256 of
     the server's DER certificate -- the same value `lxc info` prints as
     `certificate_fingerprint`.  If `target.server_fingerprint` is set and
     differs, `ServerCertificateChanged` is raised before any
     request (and before the client certificate or a password is sent).
   - the requests session used by pylxd has `verify=False` but its HTTPS
     adapter (`PinnedAdapter`) checks **every** TLS connection pylxd opens
     against the same fingerprint right after the handshake, before a request
     is sent (no window between probe and use).  A mismatch there raises
     `ServerCertificateChanged` too.
   - the session has `trust_env=False`, so REQUESTS_CA_BUNDLE / proxies from
     the environment are ignored (they would override verify=False).
3. The client certificate and key are on disk (0600 files in a private 0700
   temp dir) only while the client is built; the adapter's TLS context then
   holds them in memory.
4. `GET /1.0` is checked to be an LXD answer (`NotLXD` otherwise).  If the
   certificate is untrusted and a password/token was given, it is used once
   with `client.authenticate()` (`WrongTrustPassword` on rejection), and is
   never logged or stored; with none, `Untrusted`.
5. Every request has an explicit (connect, read) timeout; refused, timed out
   or unresolvable endpoints give `Unreachable`.

A trusted client is not built for every operation: after a job that went well it
waits idle in a `ClientPool` (rack/drivers/lxd_pool.py) for the next job on the
same host with the same identity and pin; a job with a password, or any failure,
builds afresh.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import quote

import pylxd
import requests
from pylxd import exceptions as lxd_exc

from common import tls
from common.models import (
    DiscoveredHost,
    DiscoveredVM,
    HostTarget,
    HostInterface,
    Project,
    StoragePool,
)
from rack.drivers.base import (
    DriverError,
    IncompatibleHost,
    NotLXD,
    ServerCertificateChanged,
    Unreachable,
    Untrusted,
    WrongTrustPassword,
)
from rack.drivers.lxd_compose import LXDComposeMixin, OperationFailed, lxd_error as _lxd_error
from rack.drivers.lxd_delete import LXDDeleteMixin
from rack.drivers.lxd_deploy import LXDDeployMixin
from rack.drivers.lxd_instances import (
    debian_architecture,
    instance_location,
    instance_to_vm,
    is_machine,
    network_refs,
    pools_needing_default,
    volume_refs,
)
from rack.drivers.lxd_pool import ClientPool, PooledClient, pool_key
from rack.drivers.lxd_power import LXDPowerMixin
from rack.drivers.lxd_resources import (
    NETWORK_INTERFACE_TYPES,
    parse_cpu_memory,
    parse_interfaces,
    parse_networks,
)
from rack.drivers.lxd_session import LXDSession
from rack.drivers.lxd_tls import PinnedAdapter, cert_files, endpoint_for, probe_fingerprint

DEFAULT_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds, for every request
REQUIRED_EXTENSIONS = ("projects", "virtual-machines", "custom_block_volumes")
CAPABILITIES = ["composable", "dynamic_local_storage", "over_commit", "storage_pools"]
PROJECT_DESCRIPTION = "Project managed by vmyard"
OPERATION_TIMEOUT = 300  # seconds an LXD operation (stop, delete) may take in all


class LXDDriver(LXDComposeMixin, LXDPowerMixin, LXDDeleteMixin, LXDDeployMixin):
    """Implements rack.drivers.base.VMHostDriver for LXD.  compose_vm comes from LXDComposeMixin
    (rack/drivers/lxd_compose.py), power_state, power_on and power_off from LXDPowerMixin (lxd_power.py);
    deploy_machine, erase_machine and cloud_init_status from LXDDeployMixin (lxd_deploy.py)."""

    def __init__(self, timeout: tuple[float, float] = DEFAULT_TIMEOUT, pool: ClientPool | None = None):
        self.timeout = timeout
        self._pool = pool if pool is not None else ClientPool()

    # -- connection ------------------------------------------------------------------------

    @contextmanager
    def _connect(self, target: HostTarget, password: str | None) -> Iterator[tuple[pylxd.Client, str]]:
        """A trusted pylxd client (default project) and the server's fingerprint,
        reused from the idle pool when one for this host and identity is there."""
        url, host, port = endpoint_for(target.address)
        expected = (target.server_fingerprint or "").replace(":", "").lower() or None
        key = pool_key(url, target.cert_pem, target.key_pem, expected)
        pooled = None if password else self._pool.take(key)
        if pooled is None:
            pooled = self._open(url, host, port, target, expected, password)
        healthy = False  # after any failure (even "not authorized") start afresh next time
        try:
            with self._translated(url):
                yield pooled.client, pooled.fingerprint
            healthy = True
        finally:
            if healthy:
                self._pool.give(key, pooled)
            else:
                pooled.close()

    def _open(self, url: str, host: str, port: int, target: HostTarget, expected: str | None,
              password: str | None) -> PooledClient:
        got = probe_fingerprint(host, port, self.timeout[0])
        if expected is not None and expected != got:
            raise ServerCertificateChanged.between(expected, got)
        # The key is on disk (0600, private dir) only while the client is built: the
        # TLS context keeps it in memory from then on (pylxd's authenticate reads the
        # certificate file, so the files outlive the session setup by that much).
        session = LXDSession()
        session.trust_env = False
        session.verify = False
        pooled = PooledClient(None, session, got)
        try:
            with cert_files(target) as cert, self._translated(url):
                # The adapter's TLS context holds the client certificate; session.cert stays
                # None but while pylxd authenticates (it reads the file named there), since
                # requests keys its connection pools by it: a change means another handshake.
                session.mount("https://", PinnedAdapter(got, client_cert=cert))
                self._check_is_lxd(session, url)
                client = self._client(url, cert, session)
                if not client.trusted:
                    session.cert = cert
                    try:
                        self._authenticate(client, url, target, password)
                    finally:
                        session.cert = None
                missing = sorted(set(REQUIRED_EXTENSIONS) - set(client.host_info.get("api_extensions") or []))
                if missing:
                    raise IncompatibleHost(
                        "Please upgrade your LXD host to 4.16 or higher to support the following "
                        "extensions: " + ",".join(missing))
        except BaseException:
            pooled.close()
            raise
        pooled.client = client
        return pooled

    @contextmanager
    def _translated(self, url: str) -> Iterator[None]:
        """requests/pylxd connection failures as the driver's errors."""
        try:
            yield
        except requests.exceptions.SSLError as e:
            raise NotLXD(f"TLS error talking to {url}: {e}") from None
        except requests.exceptions.Timeout:
            raise Unreachable(f"the LXD host at {url} did not answer within "
                              f"{self.timeout[1]:g} s") from None
        except requests.exceptions.ConnectionError as e:
            raise Unreachable(f"lost the connection to the LXD host at {url}: {e}") from None
        except lxd_exc.ClientConnectionFailed as e:
            raise Unreachable(f"cannot talk to the LXD host at {url}: {e}") from None

    def _check_is_lxd(self, session: requests.Session, url: str) -> None:
        try:
            r = session.get(f"{url}/1.0", timeout=self.timeout)
        except requests.exceptions.SSLError as e:
            raise NotLXD(f"TLS error talking to {url}; it is not an LXD API endpoint: {e}") from None
        try:
            body = r.json()
        except ValueError:
            body = None
        meta = body.get("metadata") if isinstance(body, dict) else None
        if (r.status_code != 200 or not isinstance(meta, dict)
                or "api_version" not in meta or "auth" not in meta):
            ctype = r.headers.get("Content-Type", "?")
            raise NotLXD(f"{url} answered GET /1.0 with HTTP {r.status_code} ({ctype}), "
                         f"which is not an LXD API response")

    def _client(self, url: str, cert: tuple[str, str], session: requests.Session) -> pylxd.Client:
        try:
            return pylxd.Client(endpoint=url, cert=cert, verify=False, session=session,
                                timeout=self.timeout)
        except lxd_exc.ClientConnectionFailed as e:
            if not str(e):  # pylxd: non-200 from GET /1.0
                raise NotLXD(f"{url} is not an LXD API endpoint") from None
            raise Unreachable(f"cannot talk to the LXD host at {url}: {e}") from None
        except (ValueError, KeyError, TypeError):
            raise NotLXD(f"{url} answered GET /1.0, but not like LXD does") from None

    def _authenticate(self, client: pylxd.Client, url: str, target: HostTarget,
                      password: str | None) -> None:
        ours = tls.cert_fingerprint(target.cert_pem)
        if not password:
            raise Untrusted(
                f"the LXD host at {url} does not trust this VM host's client certificate "
                f"(SHA-256 {ours}) and no trust password or token was given. On the LXD host, "
                f"run `lxc config trust add --name vmyard` and give the printed token as the "
                f"password, or add the certificate with `lxc config trust add CERT_FILE`.")
        try:
            client.authenticate(password)
        except lxd_exc.LXDAPIException as e:
            # LXD answers 403 "not authorized" for a wrong password, a used/expired
            # token, or a password when none is configured; the secret is not echoed.
            raise WrongTrustPassword(
                f"the LXD host at {url} rejected the trust password or token "
                f"(LXD said: {_lxd_error(e)}). Check the password (core.trust_password) or "
                f"create a fresh token with `lxc config trust add --name vmyard`.") from None
        if not client.trusted:
            raise WrongTrustPassword(f"the LXD host at {url} still does not trust this "
                                     f"certificate after authenticating with the password/token")

    # -- operations ------------------------------------------------------------------------

    def discover_projects(self, target: HostTarget, password: str | None = None) -> list[Project]:
        with self._connect(target, password) as (client, _):
            return self._projects(client)

    def discover(self, target: HostTarget, password: str | None = None) -> DiscoveredHost:
        with self._connect(target, password) as (client, fingerprint):
            projects = self._ensure_project(client, target.project, self._projects(client))
            env = client.host_info.get("environment") or {}
            resources = self._get(client.api.resources)
            numa, cores, cpu_speed, memory = parse_cpu_memory(resources)
            clustered = bool(env.get("server_clustered", False))
            return DiscoveredHost(
                name=env.get("server_name", ""),
                version=env.get("server_version", ""),
                architectures=_architectures(env),
                cores=cores,
                cpu_speed=cpu_speed,
                memory=memory,
                numa_nodes=numa,
                storage_pools=self._storage_pools(client),
                interfaces=self._interfaces(client, resources),
                projects=projects,
                server_fingerprint=fingerprint,
                capabilities=list(CAPABILITIES),
                clustered=clustered,
                vms=self._vms(client, target.project, clustered),
            )

    @staticmethod
    def _get(node, params: dict | None = None, what: str = "LXD request failed") -> Any:
        try:
            return node.get(params=params).json()["metadata"]
        except lxd_exc.LXDAPIException as e:
            raise DriverError(f"{what}: {_lxd_error(e)}") from None

    def _interfaces(self, client: pylxd.Client, resources: dict) -> list[HostInterface]:
        """Physical NICs from the resources, then the host's bridges and bonds."""
        physical = parse_interfaces(resources)
        networks = self._get(client.api.networks, params={"recursion": "1"}, what="listing networks failed")
        known = {i.name for i in physical}
        wanted = [n["name"] for n in networks if n.get("type") in NETWORK_INTERFACE_TYPES and n["name"] not in known]
        states = {name: self._get_or_none(client.api.networks[name].state) or {} for name in wanted}
        return physical + parse_networks(networks, states, known)

    def _get_or_none(self, node, params: dict | None = None) -> Any:
        try:
            return node.get(params=params).json()["metadata"]
        except lxd_exc.LXDAPIException:
            return None

    def _run(self, client: pylxd.Client, what: str, method, *, missing_ok: bool = False,
             op_timeout: float | None = None, **kwargs) -> bool:
        """Send a change (PUT/DELETE...) and wait for its operation to end.  False if
        LXD answered 404 and `missing_ok`; failures raise DriverError("what: reason")."""
        prefix = f"{what}: " if what else ""
        try:
            response = method(**kwargs)
        except lxd_exc.NotFound as e:
            if missing_ok:
                return False
            raise DriverError(f"{prefix}{_lxd_error(e)}") from None
        except lxd_exc.LXDAPIException as e:
            raise DriverError(f"{prefix}{_lxd_error(e)}") from None
        self._wait(client, prefix, response, op_timeout)
        return True

    def _wait(self, client: pylxd.Client, prefix: str, response, op_timeout: float | None = None) -> None:
        """Wait (at most `op_timeout`, default OPERATION_TIMEOUT s) for the operation an
        accepted request started; its failure raises OperationFailed(prefix + LXD's error)."""
        try:
            body = response.json()
        except ValueError:
            return
        if body.get("type") != "async":
            return
        op_id = ((body.get("metadata") or {}).get("id")
                 or str(body.get("operation", "")).rsplit("/", 1)[-1])
        limit = OPERATION_TIMEOUT if op_timeout is None else op_timeout
        deadline = time.monotonic() + limit
        step = max(1, int(self.timeout[1] / 2))  # server-side wait, shorter than our read timeout
        while True:
            wait = max(1, min(step, int(deadline - time.monotonic())))
            try:
                waited = client.api.operations[op_id].wait.get(params={"timeout": wait})
                op = waited.json().get("metadata") or {}
            except lxd_exc.LXDAPIException as e:
                raise DriverError(f"{prefix}{_lxd_error(e)}") from None
            code = int(op.get("status_code") or 0)
            if 200 <= code < 300:
                return
            if code >= 400:
                raise OperationFailed(f"{prefix}{op.get('err') or op.get('status') or code}")
            if time.monotonic() >= deadline:
                raise DriverError(f"{prefix}LXD did not finish within {limit:g} s "
                                  f"(operation {op_id} is {op.get('status')})")

    def _vms(self, client: pylxd.Client, project: str, clustered: bool) -> list[DiscoveredVM]:
        """Every VM and container of `project` (one listing; one extra request per custom
        volume pool, managed network and pool default that the VMs use)."""
        params = {"project": project}
        listed = self._get(client.api.instances, {**params, "recursion": 1},
                           f"cannot list the instances of LXD project {project!r}")
        instances = [i for i in listed or [] if isinstance(i, dict) and is_machine(i)]
        return self._to_vms(client, project, instances, clustered)

    def _to_vms(self, client: pylxd.Client, project: str, instances: list[dict],
                clustered: bool) -> list[DiscoveredVM]:
        """`instances` (LXD dicts) as DiscoveredVMs, with the volume sizes, network types and
        pool defaults they need looked up."""
        params = {"project": project}
        volume_sizes: dict[tuple[str, str, str | None], Any] = {}
        for pool in sorted({pool for i in instances for pool, _ in volume_refs(i)}):
            node = client.api.storage_pools[quote(pool, safe="")].volumes.custom
            for vol in self._get_or_none(node, {**params, "recursion": 1}) or []:
                size = (vol.get("config") or {}).get("size")
                location = instance_location(vol, clustered)
                volume_sizes[(pool, vol.get("name", ""), location)] = size
                volume_sizes.setdefault((pool, vol.get("name", ""), None), size)

        network_types: dict[str, str | None] = {}
        for name in sorted({n for i in instances for n in network_refs(i)}):
            net = self._get_or_none(client.api.networks[quote(name, safe="")], params)
            network_types[name] = (net or {}).get("type") or None

        pool_volume_sizes: dict[str, Any] = {}
        for pool in sorted({p for i in instances for p in pools_needing_default(i)}):
            info = self._get_or_none(client.api.storage_pools[quote(pool, safe="")])
            pool_volume_sizes[pool] = ((info or {}).get("config") or {}).get("volume.size")

        return [instance_to_vm(i, project, clustered=clustered, volume_sizes=volume_sizes,
                               network_types=network_types, pool_volume_sizes=pool_volume_sizes)
                for i in instances]

    def _ensure_project(self, client: pylxd.Client, name: str, projects: list[Project]) -> list[Project]:
        """`projects` (the host's), with `name` created if missing, with LXD's default features (no
        config sent: separate images, profiles and storage volumes; spec §6.2).  Existing projects
        and their instances are left exactly as they are."""
        if not name or "/" in name:
            raise DriverError(f"invalid LXD project name {name!r}")
        if any(p.name == name for p in projects):
            return projects
        try:
            client.projects.create(name=name, description=PROJECT_DESCRIPTION)
        except lxd_exc.LXDAPIException as e:
            if not client.projects.exists(name):  # else created concurrently
                raise DriverError(f"cannot create LXD project {name!r}: {_lxd_error(e)}") from None
        return self._projects(client)

    def _projects(self, client: pylxd.Client) -> list[Project]:
        listed = self._get(client.api.projects, {"recursion": 1}, "cannot list the LXD projects")
        return [Project(name=p.get("name", ""), description=p.get("description") or "") for p in listed or []]

    def _storage_pools(self, client: pylxd.Client) -> list[StoragePool]:
        """Every pool with its usage (one listing, then each pool's resources)."""
        pools = []
        for pool in self._get(client.api.storage_pools, {"recursion": 1}, "cannot list the storage pools") or []:
            name = pool.get("name", "")
            usage = self._get(client.api.storage_pools[quote(name, safe="")].resources)
            space = usage.get("space") or {}
            total, used = int(space.get("total") or 0), int(space.get("used") or 0)
            pools.append(StoragePool(
                name=name,
                type=pool.get("driver", ""),
                path=(pool.get("config") or {}).get("source") or "Unknown",
                total=total,
                used=used,
                available=max(total - used, 0),
            ))
        if not pools:
            raise DriverError("No storage pools exist. Please create a storage pool in LXD.")
        return pools


def _architectures(env: dict) -> list[str]:
    kernel = env.get("kernel_architecture")
    return [debian_architecture(kernel)] if kernel else []
