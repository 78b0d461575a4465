"""From a symptom's walk and the results of its checks to an ordered runbook and a likely cause."""

from __future__ import annotations

from typing import Any

from .model import INCONCLUSIVE, Result, Status
from .registry import Check, Registry
from .symptoms import Catalogue, Symptom, render_command, template_values

# Verdicts of a step, in the order the runbook shows them (DESIGN.md: failing steps first, then
# inconclusive, then passed). Findings that only warn come right after the failures: they are the
# next thing to read. Manual steps (no automated check) and skipped ones come before the passed.
VERDICT_ORDER = ("fail", "warn", "inconclusive", "manual", "skipped", "ok")


def step_checks(step, registry: Registry) -> list[Check]:
    if step.checks is not None:
        chosen = [registry.checks[c] for c in step.checks if c in registry.checks]
    else:
        chosen = registry.for_layers([step.layer])
    return chosen + [registry.checks[c] for c in step.also if c in registry.checks and registry.checks[c] not in chosen]


def checks_for(symptom: Symptom, registry: Registry) -> list[Check]:
    """Every check the symptom's steps decide with, plus their dependencies."""
    chosen = {c.id: c for step in symptom.steps for c in step_checks(step, registry)}
    return registry.with_dependencies(chosen.values())


def verdict(results: list[Result]) -> str:
    if not results:
        return "manual"
    statuses = {r.status for r in results}
    if Status.FAIL in statuses:
        return "fail"
    if Status.WARN in statuses:
        return "warn"
    if statuses & INCONCLUSIVE:
        return "inconclusive"
    if statuses == {Status.SKIP}:
        return "skipped"
    return "ok"


def _explainers(chk: Check, failing: dict[str, Result], status: Status) -> list[str]:
    """The failing checks (by id) that explain ``chk``'s failure: named ids, or any check of a named layer."""
    found = []
    for ref in chk.explained_by:
        for rid, res in failing.items():
            if rid != chk.id and res.status is status and (rid == ref or res.layer == ref):
                found.append(rid)
    return found


def find_roots(symptom: Symptom, registry: Registry, by_id: dict[str, Result], status: Status):
    """(root results in walk order, {consequence id: [explaining ids]}) among results with ``status``."""
    walk_ids = [c.id for step in symptom.steps for c in step_checks(step, registry)]
    extra = [rid for rid in by_id if rid not in walk_ids]
    failing = {rid: by_id[rid] for rid in (*walk_ids, *extra) if rid in by_id and by_id[rid].status is status}
    consequences = {}
    for rid in failing:
        chk = registry.checks.get(rid)
        if chk:
            explained = _explainers(chk, failing, status)
            if explained:
                consequences[rid] = explained
    roots = [failing[rid] for rid in failing if rid not in consequences]
    if failing and not roots:  # everything explains everything else: fall back to walk order
        roots = list(failing.values())
    return roots, consequences


def build(symptom: Symptom, catalogue: Catalogue, registry: Registry, results: list[Result], profile,
          code: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str]]:
    """Returns (runbook steps, likely_cause, notes)."""
    by_id = {r.id: r for r in results}
    values = template_values(profile)
    roots, consequences = find_roots(symptom, registry, by_id, Status.FAIL)
    level = "fail"
    if not roots:
        roots, consequences = find_roots(symptom, registry, by_id, Status.WARN)
        level = "warn"
    steps = []
    for index, step in enumerate(symptom.steps, 1):
        chks = step_checks(step, registry)
        step_results = [by_id[c.id] for c in chks if c.id in by_id]
        v = verdict(step_results)
        commands = step.commands or catalogue.layer_commands(step.layer)
        blocked_by = sorted({b for r in step_results if r.status is Status.BLOCKED for b in r.blocked_by})
        explained = sorted({e for r in step_results if r.id in consequences for e in consequences[r.id]})
        explained_layers = sorted({by_id[e].layer for e in explained if by_id[e].layer != step.layer})
        # the step is a consequence when every finding in it is explained by a deeper layer
        findings = [r for r in step_results if r.status.value == v]
        consequence_of = explained_layers if findings and all(r.id in consequences for r in findings) else []
        steps.append({
            "step": 0,
            "walk_index": index,
            "layer": step.layer,
            "title": step.title or catalogue.layer_title(step.layer).replace("{queue}", values["queue"])
                                                                   .replace("{bucket}", values["bucket"]),
            "verdict": v,
            "checks": [c.id for c in chks],
            "why": step.why,
            "commands": [render_command(c, values).to_dict() for c in commands],
            "blocked_by": blocked_by,
            "consequence_of": consequence_of,
            "results": [r.id for r in step_results],
        })
    steps.sort(key=lambda s: (VERDICT_ORDER.index(s["verdict"]), s["walk_index"]))
    for n, s in enumerate(steps, 1):
        s["step"] = n
    likely = None
    if roots:
        root = roots[0]
        likely = {"layer": root.layer, "check": root.id, "status": level, "summary": root.summary,
                  "evidence": root.evidence, "hint": root.hint}
    notes = []
    if code and code in symptom.codes:
        notes.append(f"{code}: {symptom.codes[code]}")
    if likely is None:
        inconclusive = [s["layer"] for s in steps if s["verdict"] == "inconclusive"]
        ruled_out = [s["layer"] for s in steps if s["verdict"] == "ok"]
        manual = [s["layer"] for s in steps if s["verdict"] in ("manual", "skipped")]
        notes.append("Nothing failed." + (f" Ruled out: {', '.join(ruled_out)}." if ruled_out else "")
                     + (f" Could not check: {', '.join(inconclusive)}." if inconclusive else "")
                     + (f" Still to check by hand: {', '.join(manual)}." if manual else ""))
    return steps, likely, notes
