"""Fixtures: real servers from studiodoctor.lab on free loopback ports, and in-process CLI runs."""

from __future__ import annotations

import pytest

from studiodoctor.config import profile_from_data
from studiodoctor.lab.fake_gcs import FakeGCSServer
from studiodoctor.lab.postgres_server import PostgresServer
from studiodoctor.lab.redis_server import RedisServer


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


@pytest.fixture
def make_profile():
    """make_profile({"redis": {"url": ...}}, timeout=5) -> Profile (merged over the defaults)."""

    def make(sections: dict | None = None, name: str = "test", env: dict | None = None, **top):
        return profile_from_data(name, {**(sections or {}), **top}, env=env or {})

    return make
