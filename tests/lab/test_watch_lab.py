"""`diagnose 502 --watch` against the whole lab, as an on-call engineer uses it: the lab breaks, the watch
starts and says the symptom is there, the fault is fixed, the watch exits 0 by itself with the timeline."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading

import pytest

from conftest import whole_lab
from studiodoctor.lab.faults import set_fault


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from whole_lab(tmp_path_factory, "watchlab")


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def test_watch_exits_0_on_recovery_with_the_incident_timeline(lab, tmp_path):
    set_fault(lab, "nginx-stopped", True)
    out = tmp_path / "incident.md"
    env = {**os.environ, "STUDIODOCTOR_LAB_DIR": str(lab.root)}
    with open(out, "w") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "studiodoctor.cli", "diagnose", "502", "--profile", "lab",
                                 "--watch", "1", "--until", "3m", "--format", "markdown"],
                                stdout=stdout, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
    seen = []
    try:
        while True:  # readiness: the first run has reported the symptom (not a sleep)
            line = lines.get(timeout=90)
            assert line is not None, f"the watch ended before its first run: {seen}"
            seen.append(line)
            if line.startswith("watch: run 1 done"):
                break
        assert "not recovered" in seen[-1]
        assert any("nginx.reachable: first seen -> FAIL" in s for s in seen), seen
        set_fault(lab, "nginx-stopped", False)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if "nginx-stopped" in lab.extra.get("faults", []):
            set_fault(lab, "nginx-stopped", False)
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    assert "recovered" in seen[-1] and "not recovered" not in seen[-1]
    md = out.read_text()
    assert "## Incident timeline" in md and "): recovered" in md
    assert "nginx.reachable: first seen -> fail" in md and "nginx.reachable: fail -> ok" in md
    assert md.index("nginx.reachable: first seen -> fail") < md.index("nginx.reachable: fail -> ok")
