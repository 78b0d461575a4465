"""``studiodoctor lab drill``: break, diagnose, compare the likely cause with the broken layer, fix."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from .faults import FAULTS, Fault, set_fault, skipped, unreached


@dataclass
class DrillResult:
    fault: str
    symptom: str
    expected: str
    named: str | None
    check: str | None
    seconds: float
    healthy_after: bool = True
    problems: list[str] = field(default_factory=list)
    expect: str = "cause"                                   # see Fault.expect
    inconclusive: list[str] = field(default_factory=list)   # layers whose runbook step could not conclude

    @property
    def localized(self) -> bool:
        if self.expect == "inconclusive":
            return self.named is None and self.expected in self.inconclusive
        return self.named == self.expected


PROFILES = ("lab", "lab-laptop")  # the profiles `lab up` writes: everything, and only what a laptop has


def lab_profile(name: str = "lab"):
    from ..config import load_profile

    return load_profile(name)


def diagnose(symptom: str, timeout: float | None = None, profile: str = "lab"):
    from .. import engine

    return engine.diagnose(lab_profile(profile), symptom, timeout=timeout)


def drill_fault(lab, flt: Fault, symptoms: tuple[str, ...] | None = None, *, timeout: float | None = None,
                settle: float = 15.0, progress: Callable[[str], None] = lambda msg: None,
                profile: str = "lab") -> list[DrillResult]:
    """Break ``flt``, run the diagnosis of each of its symptoms, fix it, check the symptom is healthy again."""
    from ..model import Status

    out = []
    layer = lab.variant.fault_layers.get(flt.name, flt.layer)  # where this variant shows the fault
    progress(f"break {flt.name}: {flt.description}")
    set_fault(lab, flt.name, True)
    try:
        for symptom in symptoms or flt.symptoms:
            t0 = time.monotonic()
            report = diagnose(symptom, timeout, profile)
            seconds = time.monotonic() - t0
            cause = report.likely_cause or {}
            out.append(DrillResult(flt.name, symptom, layer, cause.get("layer"), cause.get("check"), seconds,
                                   expect=flt.expect, inconclusive=[s["layer"] for s in report.runbook
                                                                    if s.get("verdict") == "inconclusive"]))
            progress(f"  diagnose {symptom}: likely cause {cause.get('layer')} ({cause.get('check')}) "
                     f"in {seconds:.1f} s — expected {layer}"
                     + (" inconclusive, no cause" if flt.expect == "inconclusive" else ""))
    finally:
        progress(f"fix {flt.name}")
        set_fault(lab, flt.name, False)
    from .launcher import LabError, wait_until

    for result in out:
        # health checks (Traefik's, the readiness probe) take a moment to see a restarted server:
        # the diagnosis itself is the readiness signal, re-run until it has no failure or `settle` passes
        bad: list[str] = []

        def healthy(symptom=result.symptom) -> bool:
            report = diagnose(symptom, timeout, profile)
            bad[:] = [f"{r.id}: {r.summary}" for r in report.results if r.status is Status.FAIL]
            return not bad

        try:
            wait_until(healthy, settle, "still failing", interval=1.0)
        except LabError:
            pass
        result.healthy_after = not bad
        result.problems = bad
        if bad:
            progress(f"  still failing after the fix: {'; '.join(bad)}")
    return out


def false_alarms(timeout: float | None = None, profile: str = "lab") -> list[str]:
    """Every check on the healthy lab: anything but ok/skip is a false alarm."""
    from .. import engine
    from ..model import Status

    report = engine.check(lab_profile(profile), timeout=timeout)
    return [f"{r.id} {r.status.value}: {r.summary}" for r in report.results
            if r.status not in (Status.OK, Status.SKIP)]


def select(symptom: str | None = None, fault: str | None = None) -> list[tuple[Fault, tuple[str, ...] | None]]:
    if fault:
        from .faults import get

        return [(get(fault), None)]
    if symptom:
        from ..diagnosis.symptoms import load_catalogue

        sym = load_catalogue().lookup(symptom)
        name = sym.name if sym else symptom
        chosen = [(f, (symptom,)) for f in FAULTS.values() if name in f.symptoms or symptom in f.symptoms]
        if not chosen:
            from .launcher import LabError

            raise LabError(f"no lab fault is drilled for symptom {symptom!r}; see `studiodoctor lab faults`")
        return chosen
    return [(f, None) for f in FAULTS.values()]


@contextmanager
def lab_of(lab, variant: str, progress: Callable[[str], None] = lambda msg: None):
    """The running ``lab`` when it is of ``variant``; else a lab of that variant started for the
    duration in a sibling directory (the ``lab`` profile points at it meanwhile), then taken down."""
    import os

    from .manager import Lab

    if lab.exists and lab.variant.name == variant:
        yield lab
        return
    root = lab.root.with_name(f"{lab.root.name}-drill-{variant}")
    before = os.environ.get("STUDIODOCTOR_LAB_DIR")
    os.environ["STUDIODOCTOR_LAB_DIR"] = str(root)
    temp = Lab(root, variant=variant)
    try:
        progress(f"starting the {variant} lab in {root}")
        temp.up(progress=progress)
        yield temp
    finally:
        Lab.load(root).down()
        if before is None:
            os.environ.pop("STUDIODOCTOR_LAB_DIR", None)
        else:
            os.environ["STUDIODOCTOR_LAB_DIR"] = before


def score_table(results: list[DrillResult], alarms: list[str], skipped: list[str] = ()) -> str:
    lines = [f"{'fault':<26} {'symptom':<13} {'expected':<11} {'named':<11} {'check':<34} {'s':>5}  verdict"]
    for r in results:
        verdict = "ok" if r.localized and r.healthy_after else ("WRONG LAYER" if not r.localized else "NOT FIXED")
        lines.append(f"{r.fault:<26} {r.symptom:<13} {r.expected:<11} {str(r.named):<11} {str(r.check):<34} "
                     f"{r.seconds:5.1f}  {verdict}")
    good = sum(r.localized for r in results)
    mean = sum(r.seconds for r in results) / len(results) if results else 0.0
    lines.append("")
    lines.append(f"localized {good}/{len(results)} diagnoses; false alarms on the healthy lab: {len(alarms)}; "
                 f"{mean:.1f} s per diagnosis on average")
    lines.extend(f"  false alarm: {a}" for a in alarms)
    lines.extend(f"  not drilled: {s}" for s in skipped)
    return "\n".join(lines)
