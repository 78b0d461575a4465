"""A name lookup that gets no answer proves nothing about the layer behind the name.

On-call laptops lose DNS (VPN down, offline, a resolver that SERVFAILs): every probe of a named
endpoint then fails to resolve, and a doctor that reads that as "edge unreachable", "Redis unreachable"
points the engineer at a healthy stack. Here this machine's resolver is the lab's real DNS server
(dnslib, UDP + TCP on 127.0.0.77:53) bound over /etc/resolv.conf in a private mount namespace, and the
real CLI runs under it: a dropped query or a SERVFAIL makes every probe of that name an `error` that says
the resolver gave no answer (never a `fail`); a definite NXDOMAIN stays a `fail` "name does not resolve".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studiodoctor.lab.standins.dns_server import DnsServer

RESOLVER = "127.0.0.77"
ZONE = "resolver.test"
SERVICES = ("studio", "traefik", "kube", "nginx", "app", "redis", "pg")
CHECKS = ("edge.https_redirect", "edge.certificate", "edge.proxied", "trace.hops", "traefik.api",
          "kubernetes.api", "nginx.reachable", "app.stealthz", "redis.reachable", "postgres.reachable")
BIN = Path(sys.executable).with_name("studiodoctor")


def _can_swap_resolver() -> str:
    if os.geteuid() != 0:
        return "needs root: port 53 and a private mount namespace"
    if not shutil.which("unshare"):
        return "unshare(1) is not installed"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode:
        return f"no private mount namespace here: {probe.stderr.strip()}"
    return ""


pytestmark = pytest.mark.skipif(bool(_can_swap_resolver()), reason=_can_swap_resolver() or "-")


def host(service: str, mode: str) -> str:
    return f"{service}.{mode}.{ZONE}"


@pytest.fixture(scope="module")
def resolver(tmp_path_factory):
    root = tmp_path_factory.mktemp("resolver")
    faults = {host(s, mode): mode for s in SERVICES for mode in ("timeout", "servfail")}
    dns = DnsServer(root, port=53, zone=ZONE, address=RESOLVER, faults=faults)
    dns.start()
    conf = root / "resolv.conf"
    conf.write_text(f"nameserver {RESOLVER}\noptions timeout:1 attempts:1\n")
    yield conf
    dns.stop()


def config(tmp_path, mode: str) -> Path:
    h = {s: host(s, mode) for s in SERVICES}
    path = tmp_path / f"{mode}.toml"
    path.write_text(f"""
[profiles.far]
public_urls = ["https://{h['studio']}/"]

[profiles.far.traefik]
api_url = "http://{h['traefik']}:9000"
entrypoint = "https://{h['traefik']}:443"

[profiles.far.kubernetes]
api_url = "http://{h['kube']}:6443"
namespace = "studio"

[profiles.far.nginx]
url = "http://{h['nginx']}:8080"

[profiles.far.app]
url = "http://{h['app']}:8081"

[profiles.far.redis]
url = "redis://{h['redis']}:6379/0"

[profiles.far.postgres]
dsn = "postgresql://studio@{h['pg']}:5432/studio?sslmode=disable"
""")
    return path


def run_under(resolver: Path, cfg: Path) -> dict:
    """The real CLI in its own mount namespace, /etc/resolv.conf pointing at the stand-in resolver."""
    args = " ".join(f"--check {c}" for c in CHECKS)
    script = (f'mount --bind "{resolver}" /etc/resolv.conf && exec "{BIN}" check --config "{cfg}" '
              f"--profile far {args} --format json --timeout 8")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout, proc.stderr
    return {r["id"]: r for r in json.loads(proc.stdout)["results"]}


@pytest.mark.parametrize("mode", ["timeout", "servfail"])
def test_a_lookup_without_answer_is_an_error_never_a_fail(resolver, tmp_path, mode):
    results = run_under(resolver, config(tmp_path, mode))
    assert set(CHECKS) <= set(results)
    wrong = {i: (r["status"], r["summary"]) for i, r in results.items()
             if r["status"] not in ("error", "blocked")}
    assert not wrong, wrong
    unanswered = [i for i, r in results.items() if r["status"] == "error"]
    for i in unanswered:
        assert "resolver gave no answer" in results[i]["summary"], results[i]["summary"]
    assert {"edge.https_redirect", "redis.reachable", "postgres.reachable", "kubernetes.api",
            "nginx.reachable", "trace.hops"} <= set(unanswered)
    assert "check --layer dns" in results["redis.reachable"]["hint"]


def test_a_name_that_does_not_exist_still_fails(resolver, tmp_path):
    results = run_under(resolver, config(tmp_path, "nxdomain"))
    for i in ("edge.https_redirect", "edge.certificate", "nginx.reachable", "redis.reachable",
              "postgres.reachable"):
        assert results[i]["status"] == "fail", (i, results[i]["summary"])
        assert "resolve" in results[i]["summary"], results[i]["summary"]


def test_when_no_hop_name_resolves_the_trace_places_no_fault(resolver, tmp_path):
    """Every name NXDOMAIN (a laptop whose resolver answers so for all): each hop is unreachable from here,
    and the innermost one (the app) is no more the fault than the edge; the trace says it cannot place one."""
    results = run_under(resolver, config(tmp_path, "nxdomain"))
    trace = results["trace.hops"]
    assert trace["status"] == "error", trace["summary"]
    assert trace["summary"].startswith("no hop answers from here"), trace["summary"]
    assert trace["evidence"]["first_bad_hop"] is None
    assert "check --layer local" in trace["hint"]
