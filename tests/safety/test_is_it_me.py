"""Is it me? A machine whose resolver answers NXDOMAIN for every name must not blame Studio's edge.

As a new user would try it: the real CLI with the built-in production profile (no config file), this
machine's resolver swapped for the lab's real DNS server (dnslib, no records: NXDOMAIN for every name)
over /etc/resolv.conf in a private mount namespace, as tests/safety/test_resolver_silent.py does.
`diagnose 502` then names this machine's network (layer `local`) and no Studio layer; with a control that
answers, the same NXDOMAINs are Studio's and the edge is named again.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from studiodoctor.lab.standins.dns_server import DnsServer
from tests.safety.test_resolver_silent import BIN, _can_swap_resolver

RESOLVER = "127.0.0.79"     # not test_resolver_silent's address: both may run at once on a shared machine

pytestmark = pytest.mark.skipif(bool(_can_swap_resolver()), reason=_can_swap_resolver() or "-")


@pytest.fixture(scope="module")
def nxdomain_resolver(tmp_path_factory):
    root = tmp_path_factory.mktemp("nxdomain")
    dns = DnsServer(root, port=53, zone="nothing.test", address=RESOLVER)
    dns.start()
    conf = root / "resolv.conf"
    conf.write_text(f"nameserver {RESOLVER}\noptions timeout:1 attempts:1\n")
    yield conf
    dns.stop()


def diagnose_under(resolver, tmp_path, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIODOCTOR_") and k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)   # no ~/.config/studiodoctor, no ~/.kube/config: a new user's machine
    script = f'mount --bind "{resolver}" /etc/resolv.conf && exec "{BIN}" diagnose 502 --timeout 5 ' + " ".join(args)
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=env)


def test_nxdomain_for_every_name_blames_this_machine_not_the_edge(nxdomain_resolver, tmp_path):
    proc = diagnose_under(nxdomain_resolver, tmp_path, "--format", "json")
    report = json.loads(proc.stdout)
    cause = report["likely_cause"]
    assert cause["layer"] == "local" and cause["check"] == "local.control", cause
    assert "this machine's network or VPN" in cause["summary"] and "api.cloudflare.com" in cause["summary"]
    steps = {s["layer"]: s for s in report["runbook"]}
    assert report["runbook"][0]["layer"] == "local"
    # every Studio step that failed is a consequence of this machine, none a cause of its own
    failed = [s for s in report["runbook"] if s["verdict"] == "fail" and s["layer"] != "local"]
    assert failed and all(s["consequence_of"] == ["local"] for s in failed), [(s["layer"], s["consequence_of"])
                                                                              for s in failed]
    assert steps["cloudflare"]["verdict"] == "fail"
    explained = {e["check"] for e in cause["explains"]}
    assert {"edge.error_pages", "trace.hops"} <= explained
    assert {r["vantage"] for r in report["results"]} == {"local"}

    table = diagnose_under(nxdomain_resolver, tmp_path).stdout
    assert "Likely cause: local (local.control)" in table
    assert "Likely cause: edge" not in table and "Likely cause: cloudflare" not in table


def test_with_a_control_that_answers_the_same_nxdomain_is_studios(nxdomain_resolver, tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        cfg = tmp_path / "studiodoctor.toml"
        cfg.write_text(f'[profiles.production.local]\ncontrol_urls = ["127.0.0.1:{sock.getsockname()[1]}"]\n')
        report = json.loads(diagnose_under(nxdomain_resolver, tmp_path, "--format", "json").stdout)
    finally:
        sock.close()
    control = next(r for r in report["results"] if r["id"] == "local.control")
    assert control["status"] == "ok", control["summary"]
    assert report["likely_cause"]["layer"] != "local"
    assert report["likely_cause"]["layer"] in ("edge", "cloudflare", "dns"), report["likely_cause"]
