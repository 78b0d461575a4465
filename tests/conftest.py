"""Fixtures: real servers from studiodoctor.lab on free loopback ports, and in-process CLI runs."""

from __future__ import annotations

import pytest

from studiodoctor.config import profile_from_data
from studiodoctor.lab.servers.fake_gcs import FakeGCSServer
from studiodoctor.lab.servers.postgres_server import PostgresServer
from studiodoctor.lab.servers.redis_server import RedisServer


def whole_lab(tmp_path_factory, name: str, variant=None):
    """A generator for a module fixture: the whole lab (``lab up``) in its own folder, the environment
    pointing at it while it runs, always brought down."""
    from studiodoctor.lab.manager import Lab

    root = tmp_path_factory.mktemp(name)
    root.chmod(0o755)
    mp = pytest.MonkeyPatch()
    mp.setenv("STUDIODOCTOR_LAB_DIR", str(root / "lab"))
    lab = Lab(root / "lab", **({"variant": variant} if variant else {}))
    try:
        lab.up()
        yield lab
    finally:
        Lab.load(root / "lab").down()
        mp.undo()


def pytest_configure(config):
    """The lab reaches the CLI and the profiles through entry points: a venv installed before they
    existed would fail every lab test obscurely; say what to do instead."""
    from importlib.metadata import entry_points

    if not any(ep.name == "lab" for ep in entry_points(group="studiodoctor.profiles")):
        pytest.exit("the installed metadata has no studiodoctor.profiles/commands entry points (older than "
                    "pyproject.toml): run .venv/bin/pip install -e '.[test]'", returncode=3)


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    root.chmod(0o755)
    return root


@pytest.fixture
def redis_server(lab_root, request):
    """A fresh redis-server for one test (tests may stop it or fill it)."""
    server = RedisServer(lab_root / request.node.name[:40]).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(lab_root):
    """One PostgreSQL for the session (initdb takes a second); tests that stop it use their own."""
    server = PostgresServer(lab_root / "pg-session").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_gcs(lab_root):
    server = FakeGCSServer(lab_root / "gcs-session").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def studio_src():
    """Studio's own source tree: $STUDIODOCTOR_STUDIO_SRC, or the backend tarball of ../shared/studio unpacked
    into the cache. Skips, saying so, where neither exists."""
    from studiodoctor.lab import studio_source
    from studiodoctor.lab.launcher import LabError

    try:
        return studio_source.find_source()
    except LabError as exc:
        pytest.skip(f"Studio's source is absent: {exc}")


@pytest.fixture(scope="session")
def studio_python(studio_src):
    """The python of Studio's own venv (built once per requirements hash, ~35 s idle, cached after)."""
    from studiodoctor.lab import studio_source

    return studio_source.ensure_venv(studio_src)


@pytest.fixture(scope="session")
def control_listener():
    """A socket on loopback that accepts connections: the tests' "is it me?" control (layer `local`).
    Tests reach loopback only, so the default control (the CloudFlare API's host) would fail in every run."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture
def make_profile(control_listener):
    """make_profile({"redis": {"url": ...}}, timeout=5) -> Profile (merged over the defaults); the `local`
    control is the session's loopback listener unless the sections name one."""

    def make(sections: dict | None = None, name: str = "test", env: dict | None = None, **top):
        sections = dict(sections or {})
        sections.setdefault("local", {"control_urls": [control_listener]})
        return profile_from_data(name, {**sections, **top}, env=env or {})

    return make


# ---------------------------------------------------------------------------------------------
# Safety net: tests talk only to servers on this machine. A check that would reach the outside
# (a built-in production endpoint, the GCE metadata server, a public DNS resolver) fails the test
# loudly instead of sending a packet.
import ipaddress
import socket

_real_connect, _real_connect_ex = socket.socket.connect, socket.socket.connect_ex
_real_sendto, _real_getaddrinfo = socket.socket.sendto, socket.getaddrinfo


def _is_local(host) -> bool:
    if isinstance(host, (bytes, bytearray)):
        host = host.decode()
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a name would go to the system resolver: tests map names with http.resolve


class OutsideNetworkError(OSError):
    pass


def _guard(address):
    if isinstance(address, tuple) and address and not _is_local(address[0]):
        raise OutsideNetworkError(f"test tried to reach {address[0]}: only loopback servers are allowed")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    def connect(self, address):
        _guard(address)
        return _real_connect(self, address)

    def connect_ex(self, address):
        _guard(address)
        return _real_connect_ex(self, address)

    def sendto(self, data, *args):
        _guard(args[-1])
        return _real_sendto(self, data, *args)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            raise OutsideNetworkError(f"test tried to resolve {host}: only loopback servers are allowed")
        return _real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setenv("NO_GCE_CHECK", "True")


# Checks abandoned at their deadline (blackholed and dripping servers) leave daemon threads blocked in
# C code; finalizing the interpreter under them can abort pytest after its summary (exit 134). End the
# session the way the CLI ends a run (studiodoctor.runner.exit_now), with pytest's own exit status.
def pytest_sessionfinish(session, exitstatus):
    session.config._studiodoctor_exitstatus = int(exitstatus)


def pytest_unconfigure(config):
    from studiodoctor.runner import exit_now

    exit_now(getattr(config, "_studiodoctor_exitstatus", 0))
