"""``studiodoctor lab drill``: break, diagnose, compare the likely cause with the broken layer, fix."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from .faults import FAULTS, Fault, set_fault, skipped, unreached
from .faults import skipped as skipped_reason


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
    expected_layers: tuple[str, ...] = ()                   # a fault of several roots: every layer, in walk order
    named_layers: list[str] = field(default_factory=list)   # every likely cause's layer (likely_causes)
    standing: str = ""                                      # a standing fault left in place under this one
    standing_missed: list[str] = field(default_factory=list)  # its failures not listed as unrelated
    summary: str = ""                                       # the likely cause's own summary (the evidence)

    @property
    def localized(self) -> bool:
        if self.expect == "inconclusive":
            return self.named is None and self.expected in self.inconclusive
        if self.expect == "healthy":
            return self.named is None
        if self.standing_missed:
            return False
        if len(self.expected_layers) > 1:
            return self.named_layers == list(self.expected_layers)
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
                standing: "Standing | None" = None, profile: str = "lab") -> list[DrillResult]:
    """Break ``flt``, run the diagnosis of each of its symptoms, fix it, check the symptom is healthy again.
    With ``standing``, its failures must be listed as unrelated to the symptom it was measured for, never named."""
    from ..model import Status

    out = []
    layer = lab.variant.fault_layers.get(flt.name, flt.layer)  # where this variant shows the fault
    layers = (layer, *flt.also)
    progress(f"break {flt.name}: {flt.description}")
    set_fault(lab, flt.name, True)
    try:
        for symptom in symptoms or flt.symptoms:
            t0 = time.monotonic()
            report = diagnose(symptom, timeout, profile)
            seconds = time.monotonic() - t0
            cause = report.likely_cause or {}
            named = [c["layer"] for c in report.likely_causes]
            result = DrillResult(flt.name, symptom, "+".join(layers), cause.get("layer"), cause.get("check"), seconds,
                                 expect=flt.expect, inconclusive=[s["layer"] for s in report.runbook
                                                                  if s.get("verdict") == "inconclusive"],
                                 expected_layers=layers, named_layers=named, summary=cause.get("summary") or "")
            if standing and symptom == standing.symptom:
                result.standing = standing.fault
                unrelated = {u["check"] for u in report.unrelated_failures}
                named_ids = {c["check"] for c in report.likely_causes}
                failing = {r.id for r in report.results if r.status is Status.FAIL}   # not blocked by this fault
                result.standing_missed = sorted(i for i in standing.failing
                                                if i in named_ids or (i in failing and i not in unrelated))
            out.append(result)
            progress(f"  diagnose {symptom}: likely cause {'+'.join(named) or None} ({cause.get('check')}) "
                     f"in {seconds:.1f} s — expected {'+'.join(layers)}"
                     + (" inconclusive, no cause" if flt.expect == "inconclusive" else "")
                     + (f"; standing {standing.fault} not listed unrelated: {', '.join(result.standing_missed)}"
                        if result.standing_missed else ""))
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
            bad[:] = [f"{r.id}: {r.summary}" for r in report.results if r.status is Status.FAIL
                      and not (standing and r.id in standing.failing)]
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


@dataclass
class Standing:
    """A fault left in place under the drilled ones (the stack is never clean): the checks it makes fail in
    ``symptom``'s diagnosis, measured with it alone, must be listed as unrelated and never named."""
    fault: str
    symptom: str
    failing: list[str]


@contextmanager
def standing_fault(lab, name: str, symptom: str = "502", timeout: float | None = None,
                   progress: Callable[[str], None] = lambda msg: None, profile: str = "lab", settle: float = 15.0):
    """Break ``name``, measure what it makes fail in ``symptom``'s walk, yield a Standing; fix it after.

    Measured on a settled stack: a fault drilled just before may still be recovering (pods not Ready yet),
    and its last failures must not be taken for the standing fault's own."""
    from ..model import Status
    from .launcher import LabError, wait_until

    def settled() -> bool:
        return not any(r.status is Status.FAIL for r in diagnose(symptom, timeout, profile).results)

    try:
        wait_until(settled, settle, "still failing", interval=1.0)
    except LabError:
        pass   # measured as it is: what still fails then counts against the standing fault, visibly
    progress(f"standing fault {name}: left in place under every {symptom} fault")
    set_fault(lab, name, True)
    try:
        report = diagnose(symptom, timeout, profile)
        failing = [r.id for r in report.results if r.status is Status.FAIL]
        progress(f"  alone it fails {', '.join(failing) or 'nothing'} in `diagnose {symptom}`"
                 f"; named: {(report.likely_cause or {}).get('check')}")
        yield Standing(name, symptom, failing)
    finally:
        progress(f"fix standing fault {name}")
        set_fault(lab, name, False)


def drill_selected(lab, selected, *, standing: str = "", timeout: float | None = None,
                   progress: Callable[[str], None] = lambda msg: None,
                   profile: str = "lab") -> tuple[list[DrillResult], list[str]]:
    """Drill the ``selected`` (fault, symptoms) on ``lab``, diagnosing with ``profile``: those of no 502 on a
    clean stack first, then the 502 faults with ``standing`` (a fault name, or "") left in place under each.
    (results, not drilled: a fault of no meaning on this variant, or one ``profile`` cannot see)."""
    seen_from = lab_profile(profile)
    results, skipped, later = [], [], []
    if standing and skipped_reason(lab, standing):
        skipped.append(f"standing {standing}: {skipped_reason(lab, standing)}")
        standing = ""
    for flt, symptoms in selected:
        why = skipped_reason(lab, flt.name) or unreached(flt.name, seen_from)
        if why:
            skipped.append(f"{flt.name}: {why}")
        elif standing and flt.name != standing and "502" in (symptoms or flt.symptoms):
            later.append((flt, symptoms))
        else:
            results += drill_fault(lab, flt, symptoms, timeout=timeout, progress=progress, profile=profile)
    if later:
        with standing_fault(lab, standing, timeout=timeout, progress=progress, profile=profile) as stand:
            for flt, symptoms in later:
                results += drill_fault(lab, flt, symptoms, timeout=timeout, progress=progress, standing=stand,
                                       profile=profile)
    return results, skipped


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


def studio_absent(lab, variant: str) -> str:
    """Why ``variant`` cannot be drilled here ("" when it can): a variant that runs Studio's own code needs
    its source tree (the running lab's, ``$STUDIODOCTOR_STUDIO_SRC`` or ``../shared/studio``'s tarball)."""
    from . import studio_source, variants
    from .launcher import LabError

    if not variants.get(variant).runs_studio or (lab.exists and lab.variant.name == variant):
        return ""
    try:
        studio_source.find_source()
    except LabError as exc:
        return str(exc)
    return ""


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
    lines = [f"{'fault':<26} {'symptom':<13} {'expected':<13} {'named':<13} {'check':<34} {'s':>5}  verdict"]
    for r in results:
        verdict = "ok" if r.localized and r.healthy_after else (
            "STANDING NAMED" if r.standing_missed else "WRONG LAYER" if not r.localized else "NOT FIXED")
        named = "+".join(r.named_layers) if len(r.expected_layers) > 1 else str(r.named)
        lines.append(f"{r.fault:<26} {r.symptom:<13} {r.expected:<13} {named:<13} {str(r.check):<34} "
                     f"{r.seconds:5.1f}  {verdict}" + (f"  (under standing {r.standing})" if r.standing else ""))
    good = sum(r.localized for r in results)
    mean = sum(r.seconds for r in results) / len(results) if results else 0.0
    lines.append("")
    lines.append(f"localized {good}/{len(results)} diagnoses; false alarms on the healthy lab: {len(alarms)}; "
                 f"{mean:.1f} s per diagnosis on average")
    lines.extend(f"  false alarm: {a}" for a in alarms)
    lines.extend(f"  not drilled: {s}" for s in skipped)
    return "\n".join(lines)
