"""studiodoctor never sends its probes through a proxy (``trust_env=False``: a proxy would change what it
measures). An engineer whose shell sets HTTPS_PROXY because this machine reaches the internet only through
it must read that from the failure itself, not guess it; the proxy's URL (it may carry a password) is
never printed, only the variable's name. Real sockets: a public-looking name mapped by ``http.resolve`` to
a loopback port that refuses."""

from __future__ import annotations

import json
import socket

import pytest

from studiodoctor.cli import main
from tests.safety.stack import public_at, write_profile

HOST = "studio.proxied.example"
SECRET = "proxy-pass-8c1f"


@pytest.fixture
def refused_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens: connections are refused at once
    return port


def run(tmp_path, capsys, port: int) -> dict:
    cfg = write_profile(tmp_path / "proxied.toml", "proxied", {"http": public_at(HOST, f"127.0.0.1:{port}")},
                        public_urls=[f"https://{HOST}/"])
    main(["check", "--config", cfg, "--profile", "proxied", "--check", "edge.proxied",
          "--check", "edge.error_pages", "--format", "json", "--timeout", "5"])
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    return {r["id"]: r for r in json.loads(captured.out)["results"]}


def test_a_failure_says_the_proxy_this_shell_sets_is_not_used(tmp_path, capsys, monkeypatch, refused_port):
    monkeypatch.setenv("HTTPS_PROXY", f"http://doctor:{SECRET}@proxy.corp.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    results = run(tmp_path, capsys, refused_port)
    for cid in ("edge.proxied", "edge.error_pages"):
        assert results[cid]["status"] == "fail", results[cid]
        assert "HTTPS_PROXY is set and not used" in results[cid]["summary"], results[cid]["summary"]


def test_no_word_of_proxies_when_none_is_set_or_no_proxy_exempts_the_host(tmp_path, capsys, monkeypatch,
                                                                         refused_port):
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    results = run(tmp_path, capsys, refused_port)
    assert all("proxy" not in r["summary"].lower() for r in results.values()), results
    monkeypatch.setenv("HTTPS_PROXY", f"http://doctor:{SECRET}@proxy.corp.example:3128")
    monkeypatch.setenv("NO_PROXY", ".proxied.example")
    results = run(tmp_path, capsys, refused_port)
    assert all("proxy" not in r["summary"].lower() for r in results.values()), results
