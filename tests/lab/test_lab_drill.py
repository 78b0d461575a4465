"""The whole lab on loopback: healthy means no false alarm; every fault is localized and reversible."""

import pytest

from studiodoctor import engine
from studiodoctor.cli import main
from studiodoctor.config import load_profile
from studiodoctor.lab import drill
from studiodoctor.lab.faults import FAULTS
from studiodoctor.lab.manager import ORDER, Lab
from studiodoctor.model import Status
from studiodoctor.symptoms import load_catalogue


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("fullstack")
    root.chmod(0o755)
    mp = pytest.MonkeyPatch()
    mp.setenv("STUDIODOCTOR_LAB_DIR", str(root / "lab"))
    lab = Lab(root / "lab")
    try:
        lab.up()
        yield lab
    finally:
        Lab.load(root / "lab").down()
        mp.undo()


@pytest.fixture
def lab_env(lab, monkeypatch):
    monkeypatch.setenv("STUDIODOCTOR_LAB_DIR", str(lab.root))
    return lab


def test_every_symptom_has_a_fault_to_drill():
    drilled = {s for f in FAULTS.values() for s in f.symptoms}
    cat = load_catalogue()
    assert {cat.lookup(s).name for s in drilled} == set(cat.symptoms)


def test_healthy_lab_has_no_false_alarm(lab_env):
    report = engine.check(load_profile("lab"))
    alarms = [(r.id, r.status.value, r.summary) for r in report.results if r.status not in (Status.OK, Status.SKIP)]
    assert alarms == []
    assert {r.layer for r in report.results if r.status is Status.OK} >= {
        "dns", "cloudflare", "traefik", "kubernetes", "nginx", "app", "redis", "celery", "gcs", "postgres", "path",
        "sentry"}
    assert [s["kind"] for s in lab_env.status() if s["running"]] == list(ORDER)


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_is_localized_then_fixed(lab_env, name):
    results = drill.drill_fault(Lab.load(lab_env.root), FAULTS[name])
    for r in results:
        assert r.localized, f"{name}: named {r.named} ({r.check}), expected {r.expected} ({r.expect}); " \
                            f"inconclusive: {r.inconclusive}"
        assert r.healthy_after, f"{name}: still failing after the fix: {r.problems}"
    assert Lab.load(lab_env.root).extra.get("faults") == []


def test_lab_cli_break_status_fix(lab_env, capsys):
    assert main(["lab", "break", "worker-stopped"]) == 0
    assert main(["lab", "status"]) == 0
    out = capsys.readouterr().out
    assert "faults in force: worker-stopped" in out and "STOPPED" in out
    assert main(["diagnose", "publishing", "--profile", "lab", "--format", "json"]) == 2
    assert '"check": "celery.workers"' in capsys.readouterr().out
    assert main(["lab", "fix"]) == 0
    assert "fixed worker-stopped" in capsys.readouterr().out
    assert main(["lab", "break", "wokrer-stopped"]) == 3
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("studiodoctor: unknown fault 'wokrer-stopped' (did you mean worker-stopped")
