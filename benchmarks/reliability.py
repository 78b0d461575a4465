"""The safety and robustness figures of README's Safety section, from one script:

  bad inputs tried (each one line + exit 3), the leak matrix (size, leaks found), parsers fuzzed and
  examples run, checks passing with least-privileged users (and grants removed one at a time), the blackhole
  (wall time of a fresh `studiodoctor check` process vs --timeout), the run-wide bounds (peak checks per
  backend), and read-only measured on the whole lab (methods seen by every HTTP counterpart, Redis MONITOR).

Run: .venv/bin/python benchmarks/reliability.py   (starts its own redis-server and PostgreSQL)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TIMEOUT = 2.0


class _Collect:
    """A pytest plugin that counts outcomes per test file."""

    def __init__(self):
        self.outcomes: dict[str, dict[str, int]] = {}

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            per = self.outcomes.setdefault(report.nodeid.split("::")[0], {})
            per[report.outcome] = per.get(report.outcome, 0) + 1


def run_safety_tests() -> tuple[_Collect, dict]:
    import pytest

    from studiodoctor import runner

    plugin = _Collect()
    # the test session would end this process at its end when checks abandoned at their deadline are still
    # blocked (tests/conftest.py); the figures are printed first, and main() ends the same way
    end_now, runner.exit_now = runner.exit_now, lambda code: None
    try:
        _run(pytest, plugin)
    finally:
        runner.exit_now = end_now
    fuzz = next(m.RUNS for name, m in list(sys.modules.items()) if name.endswith("test_hostile_answers"))
    least = next(m.FIGURES for name, m in list(sys.modules.items()) if name.endswith("test_least_privilege"))
    return plugin, fuzz, least


def _run(pytest, plugin) -> None:
    pytest.main(["-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=",
                 str(ROOT / "tests/safety/test_bad_inputs.py"), str(ROOT / "tests/safety/test_leak_matrix.py"),
                 str(ROOT / "tests/safety/test_hostile_answers.py"), str(ROOT / "tests/safety/test_least_privilege.py")],
                plugins=[plugin])


def blackhole() -> dict:
    """A fresh process (imports included), every layer at sockets that never answer."""
    from tests.safety.test_blackhole import blackhole_config

    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1024)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = blackhole_config(Path(tmp), tcp.getsockname()[1], udp.getsockname()[1])
            cmd = [str(Path(sys.executable).with_name("studiodoctor")), "check", "--config", cfg, "--profile",
                   "blackhole", "--format", "json", "--timeout", str(TIMEOUT)]
            started = time.monotonic()
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "NO_GCE_CHECK": "True"})
            wall = time.monotonic() - started
    finally:
        tcp.close()
        udp.close()
    report = json.loads(proc.stdout)
    statuses: dict[str, int] = {}
    for r in report["results"]:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {"wall": wall, "run_ms": report.get("duration_ms"), "exit": proc.returncode, "statuses": statuses}


def read_only_lab() -> dict:
    """tests/safety/test_read_only_lab.py: the whole lab (both variants), `check` and every fault's
    `diagnose`; the methods each HTTP counterpart saw, the broker's commands, and the time it took."""
    import pytest

    plugin = _Collect()
    started = time.monotonic()
    pytest.main(["-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=",
                 str(ROOT / "tests/safety/test_read_only_lab.py")], plugins=[plugin])
    figures = next(m.FIGURES for name, m in list(sys.modules.items()) if name.endswith("test_read_only_lab"))
    return {"seconds": time.monotonic() - started, "outcomes": plugin.outcomes, **figures}


def main() -> None:
    from studiodoctor.render import FORMATS
    from studiodoctor.runner import MAX_CONCURRENT, PER_BACKEND, RUN_FACTOR
    from tests.safety import test_bad_inputs, test_leak_matrix

    readonly = read_only_lab()
    hole = blackhole()
    plugin, fuzz, least = run_safety_tests()
    out = plugin.outcomes
    bad = out.get("tests/safety/test_bad_inputs.py", {})
    leak = out.get("tests/safety/test_leak_matrix.py", {})
    scen = 9
    variants = len(FORMATS) + 5
    kinds = len(test_leak_matrix.S)
    print("studiodoctor reliability figures")
    print(f"  bad inputs tried:        {len(test_bad_inputs.CASES)} "
          f"(one line + exit 3 + nothing written: {bad.get('passed', 0) - 1} passed, {bad.get('failed', 0)} failed)")
    print(f"  leak matrix:             {scen} failure paths x {variants} outputs ({len(FORMATS)} formats, --debug, "
          f"diagnose, config show x2, config validate) x {kinds} secret kinds in play; scenarios leaking: "
          f"{leak.get('failed', 0)} of {leak.get('passed', 0) + leak.get('failed', 0)}")
    print(f"  parsers fuzzed:          {len(fuzz['parsers'])} ({', '.join(sorted(fuzz['parsers']))}), "
          f"{fuzz['examples']} hostile answers run, crashes: "
          f"{out.get('tests/safety/test_hostile_answers.py', {}).get('failed', 0)}")
    lp = out.get("tests/safety/test_least_privilege.py", {})
    print(f"  least privilege:         {least['passing']} of {least['checks']} redis/celery/postgres checks ok as "
          f"the narrowest users (Redis -@all +ping +info; CONTROL_ACL; pg_monitor + SELECT); "
          f"{least['grants_removed']} grants removed one at a time, each an error naming the grant "
          f"({least['errors_naming_the_grant']}); tests failed: {lp.get('failed', 0)}")
    print(f"  blackhole (fresh process, every layer silent): {hole['wall']:.2f} s wall for --timeout {TIMEOUT:g} "
          f"(run {hole['run_ms'] / 1000:.2f} s, the rest is start-up and SDK imports), exit {hole['exit']}, "
          f"results {hole['statuses']}")
    ro_out = readonly["outcomes"].get("tests/safety/test_read_only_lab.py", {})
    print(f"  read-only, measured:     {readonly['seconds']:.0f} s, {ro_out.get('passed', 0)} variants passed, "
          f"{ro_out.get('failed', 0)} failed")
    for variant, fig in readonly["variants"].items():
        print(f"    {variant}: check + {fig['diagnoses']} diagnoses of {fig['faults']} faults in {fig['run_s']} s; "
              f"writes seen by HTTP counterparts: {len(fig['writes'])}; broker commands outside reads and the "
              f"celery layer's declared control writes: {len(fig['redis_undeclared'])}")
        for counterpart, methods in fig["methods"].items():
            print(f"      {counterpart:<16} {', '.join(f'{m} {n}' for m, n in sorted(methods.items()))}")
        print(f"      {'redis (doctor)':<16} {', '.join(f'{c} {n}' for c, n in fig['redis'].items())}")
    print(f"  run-wide bounds:         <= {PER_BACKEND} checks at once per backend, <= {MAX_CONCURRENT} in all, "
          f"whole run <= {RUN_FACTOR:g} x --timeout")


if __name__ == "__main__":
    main()
    from studiodoctor.runner import exit_now

    exit_now(0)
