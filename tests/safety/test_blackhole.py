"""Everything blackholed at once: every layer's endpoint is a socket that listens and never answers.
`check` over all layers must return within --timeout + 1 s, every result a `fail` that says it got no
answer (or `blocked` by one), and exit 2."""

from __future__ import annotations

import json
import socket
import time

import pytest

from studiodoctor.cli import main
from tests.safety.stack import public_at, stack_sections, write_profile

HOST = "studio.blackhole.test"
TIMEOUT = 2.0


@pytest.fixture
def blackhole():
    """One TCP listener (never accepts: the kernel completes handshakes, nothing ever answers) and
    one UDP socket (never replies) shared by every layer."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1024)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    yield tcp.getsockname()[1], udp.getsockname()[1]
    tcp.close()
    udp.close()


def blackhole_config(tmp_path, tcp: int, udp: int) -> str:
    at = f"127.0.0.1:{tcp}"
    sections = {
        "http": public_at(HOST, at),
        "dns": {"hostnames": [HOST], "resolvers": [f"127.0.0.1:{udp}"], "zone": "blackhole.test"},
        **stack_sections(f"http://{at}", zone="blackhole.test"),
        "redis": {"url": f"redis://{at}/0"},
        "celery": {"broker_url": f"redis://{at}/0"},
        "postgres": {"dsn": f"postgresql://studio@{at}/studio?sslmode=disable"},
    }
    return write_profile(tmp_path / "blackhole.toml", "blackhole", sections, timeout=10.0,
                         public_urls=[f"https://{HOST}/"])


SAYS_NO_ANSWER = ("no answer", "timed out", "timeout")


def imported():
    """Layers and their SDKs imported before the clock starts: a one-off cost of the process, measured
    apart (benchmarks/reliability.py); the bound under test is the run's."""
    from studiodoctor.registry import default_registry
    from studiodoctor.runner import preload

    preload(default_registry.load_plugins().checks.values())


def run_blackholed(tmp_path, capsys, tcp, udp, timeout=TIMEOUT):
    cfg = blackhole_config(tmp_path, tcp, udp)
    imported()
    started = time.monotonic()
    code = main(["check", "--config", cfg, "--profile", "blackhole", "--format", "json",
                 "--timeout", str(timeout)])
    wall = time.monotonic() - started
    out = capsys.readouterr().out
    return code, wall, json.loads(out)


def test_every_layer_blackholed_returns_within_the_timeout_and_fails(tmp_path, capsys, blackhole):
    code, wall, report = run_blackholed(tmp_path, capsys, *blackhole)
    results = report["results"]
    assert wall < TIMEOUT + 1.0, f"took {wall:.2f} s with --timeout {TIMEOUT}"
    assert code == 2
    layers = {r["id"].split(".")[0] for r in results}  # backends: edge.* share the cloudflare layer
    assert {"dns", "cloudflare", "edge", "traefik", "kubernetes", "nginx", "app", "redis", "celery", "gcs",
            "postgres"} <= layers
    silent = {r["id"] for r in results
              if r["status"] == "fail" and any(w in r["summary"].lower() for w in SAYS_NO_ANSWER)}
    blocked = {r["id"] for r in results if r["status"] == "blocked"}
    # the `local` layer judges this machine, not the stack: the blackhole's kernel completes the control
    # connection's handshake, so this machine's network is rightly found working and nothing blames it
    assert {r["id"]: r["status"] for r in results if r["layer"] == "local"} == {"local.control": "ok"}
    wrong = {r["id"]: (r["status"], r["summary"]) for r in results
             if r["id"] not in silent and r["layer"] != "local"
             and not (r["status"] == "blocked" and set(r["blocked_by"]) <= silent | blocked)
             # a check that reads another's evidence says so (e.g. "see dns.resolves")
             and not (r["status"] == "error" and any(f"see {s}" in r["summary"] for s in silent))
             and not (r["status"] == "skip" and r["reason"] in ("not-configured", "not-applicable")
                      and "silent" not in r["summary"])}
    assert not wrong
    assert len(silent) >= 11  # at least one check per backend says it got no answer
    assert sum(r["reason"] == "timeout" for r in results if r["id"] in silent) >= 11


def test_a_blackholed_run_as_a_process_exits_2_not_134(tmp_path, blackhole):
    """As a monitoring system runs it: a process whose abandoned checks are still blocked in sockets at
    exit ends with the report's exit code (finalizing the interpreter under them could abort: 134)."""
    import subprocess
    import sys
    from pathlib import Path

    cfg = blackhole_config(tmp_path, *blackhole)
    cli = Path(sys.executable).with_name("studiodoctor")
    proc = subprocess.run([str(cli), "check", "--config", cfg, "--profile", "blackhole", "--format", "json",
                           "--timeout", str(TIMEOUT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-500:]
    assert json.loads(proc.stdout)["exit_code"] == 2
