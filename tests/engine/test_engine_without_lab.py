"""The engine never imports the lab: the lab is an optional part (the `[lab]` extra) that reaches the
command line and the profiles through entry points (``studiodoctor.commands``, ``studiodoctor.profiles``).
That no module outside the lab imports it, read from the sources, is tests/engine/test_layout.py's."""

from __future__ import annotations

import json
import subprocess
import sys

# a meta-path finder that refuses studiodoctor.lab, as if the [lab] part were not installed
BLOCK = """
import importlib.abc, sys
class NoLab(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "studiodoctor.lab" or name.startswith("studiodoctor.lab."):
            raise ImportError("blocked for the test: " + name)
        return None
sys.meta_path.insert(0, NoLab())
"""

RUN = BLOCK + """
import contextlib, importlib, io, json, pkgutil, sys
import studiodoctor, checks
imported = []
for pkg in (studiodoctor, checks):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if info.name == "studiodoctor.lab" or info.name.startswith("studiodoctor.lab."):
            continue
        importlib.import_module(info.name)
        imported.append(info.name)
from studiodoctor.cli import main
runs = {}
for args in %(runs)r:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    runs[" ".join(args)] = [code, out.getvalue(), err.getvalue()]
lab = [m for m in sys.modules if m.startswith("studiodoctor.lab")]
print(json.dumps({"imported": imported, "runs": runs, "lab_modules": lab}))
"""


def _run_without_lab(tmp_path, runs):
    config = tmp_path / "studiodoctor.toml"
    # a profile of our own, nothing of the lab: one layer at a port where nothing listens
    config.write_text('[profiles.nolab]\ntimeout = 2\n[profiles.nolab.redis]\nurl = "redis://127.0.0.1:9/0"\n')
    env = {"STUDIODOCTOR_CONFIG": str(config), "STUDIODOCTOR_LAB_DIR": str(tmp_path / "lab"),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", RUN % {"runs": runs}], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_engine_and_every_layer_work_with_the_lab_blocked(tmp_path):
    runs = [["--help"], ["list"], ["explain", "redis.reachable"], ["explain", "502"],
            ["check", "--profile", "nolab", "--layer", "redis", "--format", "json"],
            ["lab", "up"], ["check", "--profile", "lab"]]
    got = _run_without_lab(tmp_path, runs)
    assert "studiodoctor.cli" in got["imported"] and "checks.celery" in got["imported"]
    assert len(got["imported"]) > 30
    assert got["lab_modules"] == []
    r = got["runs"]
    code, out, _ = r["--help"]
    assert code == 0 and "check" in out and "diagnose" in out
    assert r["list"][0] == 0 and "redis.reachable" in r["list"][1]
    assert r["explain redis.reachable"][0] == 0 and r["explain 502"][0] == 0
    code, out, _ = r["check --profile nolab --layer redis --format json"]
    assert code == 2  # nothing listens there: a real run, a real fail
    assert {res["id"] for res in json.loads(out)["results"]} >= {"redis.reachable"}
    # without the lab part, `lab` is no command and `lab` no profile: one line, exit 3
    code, _, err = r["lab up"]
    assert code == 3 and "lab" in err and len(err.strip().splitlines()) == 1
    code, _, err = r["check --profile lab"]
    assert code == 3 and "unknown profile 'lab'" in err


def test_with_the_lab_installed_its_command_and_profile_are_plugins(tmp_path, monkeypatch, capsys):
    from studiodoctor.cli import main

    monkeypatch.setenv("STUDIODOCTOR_LAB_DIR", str(tmp_path / "lab"))
    assert main(["--help"]) == 0
    assert "lab" in capsys.readouterr().out
    assert main(["lab", "faults"]) == 0
    assert "redis-down" in capsys.readouterr().out
    assert main(["check", "--profile", "lab"]) == 3  # no lab up: no lab profile
    assert "unknown profile 'lab'" in capsys.readouterr().err
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "profile.json").write_text(json.dumps({"redis": {"url": "redis://127.0.0.1:9/0"}}))
    assert main(["check", "--profile", "lab", "--layer", "redis", "--timeout", "2"]) == 2
