"""From a symptom's walk and the results of its checks to an ordered runbook and a likely cause."""

from __future__ import annotations

from typing import Any

from . import causes
from ..model import INCONCLUSIVE, Result, Status
from ..registry import Check, Registry
from .symptoms import Catalogue, Symptom, render_command, template_values

# Verdicts of a step, in the order the runbook shows them (DESIGN.md: failing steps first, then
# inconclusive, then passed). Findings that only warn come right after the failures: they are the
# next thing to read. Manual steps (no automated check) and skipped ones come before the passed.
VERDICT_ORDER = ("fail", "warn", "inconclusive", "manual", "skipped", "ok")


def step_checks(step, registry: Registry) -> list[Check]:
    if step.checks is not None:
        chosen = [registry.checks[c] for c in step.checks if c in registry.checks]
    else:
        chosen = registry.for_layers(step.check_layers)
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


def _explainers(chk: Check, broken: dict[str, Result]) -> list[dict]:
    """Plain ``explained_by``: the broken checks named by id, or any broken check of a named layer."""
    found = []
    for ref in chk.explained_by:
        for rid, res in broken.items():
            if rid != chk.id and (rid == ref or res.layer == ref) and all(f["cause"] != rid for f in found):
                found.append({"cause": rid, "rule": "", "because": f"{res.layer} is broken: {res.summary}",
                              "evidence": {}})
    return found


def find_roots(symptom: Symptom, registry: Registry, by_id: dict[str, Result], rules=causes.RULES):
    """(root results in walk order, {consequence id: [explanations]}) among the failing results.

    Broken means failing, or proved broken by a causal rule's link (see ``causes``): such a cause may
    be a root although it only warns or could not log in. Each explanation is a dict
    {"cause", "rule", "because", "evidence"}."""
    walk_ids = [c.id for step in symptom.steps for c in step_checks(step, registry)]
    order = list(dict.fromkeys([*walk_ids, *by_id]))
    broken_ids = {rid for rid in order if rid in by_id and by_id[rid].status is Status.FAIL}
    consequences = causes.links(by_id, broken_ids, rules)
    broken = {rid: by_id[rid] for rid in order if rid in broken_ids}
    for rid in broken:
        chk = registry.checks.get(rid)
        plain = _explainers(chk, broken) if chk else []
        known = {e["cause"] for e in consequences.get(rid, [])}
        plain = [e for e in plain if e["cause"] not in known]
        if plain:
            consequences.setdefault(rid, []).extend(plain)
    roots = [broken[rid] for rid in broken if rid not in consequences]
    if broken and not roots:  # everything explains everything else: fall back to walk order
        roots = list(broken.values())
    return roots, consequences


def warned_roots(symptom: Symptom, by_id: dict[str, Result]) -> list[Result]:
    """The warns the catalogue says explain this symptom (a step's ``warn_explains``), in walk order."""
    ids = dict.fromkeys(cid for step in symptom.steps for cid in step.warn_explains)
    return [by_id[cid] for cid in ids if cid in by_id and by_id[cid].status is Status.WARN]


def _explains(root_id: str, consequences: dict[str, list[dict]]) -> list[dict]:
    """What ``root_id`` explains, directly or through a chain of consequences."""
    out, frontier = [], {root_id}
    while frontier:
        nxt = set()
        for con, expl in consequences.items():
            for e in expl:
                if e["cause"] in frontier and all(o["check"] != con for o in out) and con != root_id:
                    out.append({"check": con, "because": e["because"], "evidence": e["evidence"]})
                    nxt.add(con)
        frontier = nxt
    return out


def _nothing_failed(steps: list[dict], by_id: dict[str, Result]) -> str:
    """The note when no failure names a cause: what was ruled out, what could not be looked at (by check,
    with the reason), which warnings were seen but do not explain the symptom, what is left by hand."""
    def listed(verdicts, statuses):
        out = []
        for s in steps:
            if s["verdict"] in verdicts:
                ids = [f"{rid}: {by_id[rid].reason or by_id[rid].status.value}" for rid in s["results"]
                       if by_id[rid].status in statuses]
                out.append(f"{s['layer']} ({'; '.join(ids)})" if ids else s["layer"])
        return ", ".join(out)

    ruled_out = ", ".join(s["layer"] for s in steps if s["verdict"] == "ok")
    inconclusive = listed(("inconclusive",), INCONCLUSIVE)
    warned = ", ".join(f"{s['layer']} ({', '.join(r for r in s['results'] if by_id[r].status is Status.WARN)})"
                       for s in steps if s["verdict"] == "warn")
    manual = ", ".join(s["layer"] for s in steps if s["verdict"] in ("manual", "skipped"))
    return ("Nothing failed." + (f" Ruled out: {ruled_out}." if ruled_out else "")
            + (f" Could not check: {inconclusive}." if inconclusive else "")
            + (f" Warnings that do not explain this symptom: {warned}." if warned else "")
            + (f" Still to check by hand: {manual}." if manual else ""))


def build(symptom: Symptom, catalogue: Catalogue, registry: Registry, results: list[Result], profile,
          code: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str]]:
    """Returns (runbook steps, likely_cause, notes)."""
    by_id = {r.id: r for r in results}
    values = template_values(profile, results)
    roots, consequences = find_roots(symptom, registry, by_id)
    # a warn is the likely cause only where the catalogue says it explains this symptom
    because = ""
    if not roots:
        roots = warned_roots(symptom, by_id)
        because = f"the catalogue says this warning explains `{symptom.name}`" if roots else ""
    steps = []
    for index, step in enumerate(symptom.steps, 1):
        chks = step_checks(step, registry)
        step_results = [by_id[c.id] for c in chks if c.id in by_id]
        v = verdict(step_results)
        commands = step.commands or catalogue.layer_commands(step.layer)
        blocked_by = sorted({b for r in step_results if r.status is Status.BLOCKED for b in r.blocked_by})
        explanations = [{"check": r.id, **e} for r in step_results for e in consequences.get(r.id, [])]
        explained_layers = sorted({by_id[e["cause"]].layer for e in explanations
                                   if by_id[e["cause"]].layer not in step.check_layers})
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
            "explained_by": explanations,
            "results": [r.id for r in step_results],
        })
    steps.sort(key=lambda s: (VERDICT_ORDER.index(s["verdict"]), s["walk_index"]))
    for n, s in enumerate(steps, 1):
        s["step"] = n
    likely = None
    if roots:
        root = roots[0]
        # a check that localizes across layers (the hop trace) names the layer it found broken
        layer = root.evidence.get("first_bad_layer") or root.layer
        likely = {"layer": layer, "check": root.id, "status": root.status.value, "summary": root.summary,
                  "evidence": root.evidence, "hint": root.hint, "explains": _explains(root.id, consequences)}
        if because:
            likely["because"] = because
    notes = []
    if code and code in symptom.codes:
        notes.append(f"{code}: {symptom.codes[code]}")
    if likely is None:
        notes.append(_nothing_failed(steps, by_id))
    return steps, likely, notes
