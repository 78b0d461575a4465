"""From a symptom's walk and the results of its checks to an ordered runbook and a likely cause."""

from __future__ import annotations

from typing import Any, NamedTuple

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


LOCAL_LAYER = "local"
LOCAL_WHY = ("Is it me? This machine must reach a control outside Studio (a name resolves, a connection opens) "
             "before anything it cannot reach is blamed on Studio")


def with_local_step(symptom: Symptom, registry: Registry) -> Symptom:
    """The symptom's walk with the `local` step first ("is it me?"), when the layer is installed and the
    walk does not name it already."""
    from dataclasses import replace

    from .symptoms import Step

    if not registry.for_layers([LOCAL_LAYER]) or LOCAL_LAYER in symptom.layers:
        return symptom
    return replace(symptom, steps=[Step(layer=LOCAL_LAYER, why=LOCAL_WHY), *symptom.steps])


def this_machine_explains(by_id: dict[str, Result], broken: set[str], profile=None) -> dict[str, list[dict]]:
    """When a `local` control fails, every other failure seen from this machine (vantage `local`) that
    reached beyond it is a consequence of this machine's network, not a Studio layer's: {consequence id:
    [explanation]}. A failure on loopback (a port-forward, the lab) is not explained by it, and results
    seen from the cluster keep their own verdicts: the cluster's network is not this machine's."""
    from .locality import beyond_this_machine

    down = [rid for rid in broken if by_id[rid].layer == LOCAL_LAYER and by_id[rid].status is Status.FAIL]
    if not down:
        return {}
    cause = by_id[down[0]]
    because = f"this machine cannot reach a control outside Studio either ({cause.summary})"
    return {rid: [{"cause": cause.id, "rule": "this-machine-offline", "because": because, "evidence": {}}]
            for rid in broken if by_id[rid].layer != LOCAL_LAYER and by_id[rid].vantage != "cluster"
            and beyond_this_machine(by_id[rid], profile)}


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


def unrelated_ids(symptom: Symptom, registry: Registry, by_id: dict[str, Result]) -> list[str]:
    """The failing checks whose failure cannot produce ``symptom`` (a listing exposure, a cache policy
    under a 502): also failing, never its cause, and never the explanation of another failure."""
    out = []
    for rid, res in by_id.items():
        chk = registry.checks.get(rid)
        produces = res.produces if res.produces is not None else (chk.produces if chk else None)
        if res.status is Status.FAIL and not symptom.can_be_caused_by(rid, res.layer, produces):
            out.append(rid)
    return out


def find_roots(symptom: Symptom, registry: Registry, by_id: dict[str, Result], rules=causes.RULES, profile=None):
    """(root results in walk order, {consequence id: [explanations]}) among the failing results.

    Broken means failing, or proved broken by a causal rule's link (see ``causes``): such a cause may
    be a root although it only warns or could not log in. A failure that cannot produce the symptom
    (``unrelated_ids``) is left out: it is neither a root nor the explanation of another failure. Each
    explanation is a dict {"cause", "rule", "because", "evidence"}."""
    walk_ids = [c.id for step in symptom.steps for c in step_checks(step, registry)]
    unrelated = set(unrelated_ids(symptom, registry, by_id))
    order = [rid for rid in dict.fromkeys([*walk_ids, *by_id]) if rid not in unrelated]
    broken_ids = {rid for rid in order if rid in by_id and by_id[rid].status is Status.FAIL}
    consequences = causes.links({rid: by_id[rid] for rid in order if rid in by_id}, broken_ids, rules)
    offline = this_machine_explains({rid: by_id[rid] for rid in order if rid in by_id}, broken_ids, profile)
    for rid, expl in offline.items():
        consequences[rid] = expl   # this machine's network comes before any deeper Studio layer
    broken = {rid: by_id[rid] for rid in order if rid in broken_ids}
    for rid in broken:
        chk = registry.checks.get(rid)
        plain = _explainers(chk, broken) if chk else []
        known = {e["cause"] for e in consequences.get(rid, [])}
        plain = [e for e in plain if e["cause"] not in known]
        if plain:
            consequences.setdefault(rid, []).extend(plain)
    # this machine's network is a cause only of what it explains: a failing control that explains no
    # finding (every failure on loopback, or none) cannot produce the symptom
    candidates = {rid: res for rid, res in broken.items() if offline or res.layer != LOCAL_LAYER}
    roots = [res for rid, res in candidates.items() if rid not in consequences]
    if candidates and not roots:  # everything explains everything else: fall back to walk order
        roots = list(candidates.values())
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


def _nothing_failed(steps: list[dict], by_id: dict[str, Result], unrelated: list[str] = ()) -> str:
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
    offline = [r for r in by_id.values() if r.layer == LOCAL_LAYER and r.status is Status.FAIL]
    head = (f"Nothing that can cause this symptom failed (also failing, not its cause: {', '.join(unrelated)})."
            if unrelated else "Nothing failed.")
    if offline:
        head = (head[:-1] + f", but this machine's own control fails ({offline[0].id}: {offline[0].summary}) "
                "and explains no finding.")
    return (head + (f" Ruled out: {ruled_out}." if ruled_out else "")
            + (f" Could not check: {inconclusive}." if inconclusive else "")
            + (f" Warnings that do not explain this symptom: {warned}." if warned else "")
            + (f" Still to check by hand: {manual}." if manual else ""))


class Diagnosis(NamedTuple):
    steps: list[dict[str, Any]]                  # the runbook
    likely_cause: dict[str, Any] | None          # the first of likely_causes (what /1 readers read)
    notes: list[str]
    likely_causes: list[dict[str, Any]]          # every independent root, one per layer, in walk order
    unrelated_failures: list[dict[str, Any]]     # failing, but unable to produce this symptom


def _cause(root: Result, consequences: dict[str, list[dict]], because: str = "") -> dict[str, Any]:
    # a check that localizes across layers (the hop trace) names the layer it found broken
    layer = root.evidence.get("first_bad_layer") or root.layer
    cause = {"layer": layer, "check": root.id, "status": root.status.value, "summary": root.summary,
             "evidence": root.evidence, "hint": root.hint, "explains": _explains(root.id, consequences)}
    if because:
        cause["because"] = because
    return cause


def likely_causes(roots: list[Result], consequences: dict[str, list[dict]], because: str = "") -> list[dict]:
    """One cause per broken layer, in walk order: independent roots (nginx down and Redis down) are each
    named; several roots in one layer (the trace and nginx's own check) are one cause, the others in
    ``also``."""
    out: dict[str, dict[str, Any]] = {}
    for root in roots:
        cause = _cause(root, consequences, because)
        if cause["layer"] in out:
            out[cause["layer"]].setdefault("also", []).append(root.id)
        else:
            out[cause["layer"]] = cause
    return list(out.values())


def build(symptom: Symptom, catalogue: Catalogue, registry: Registry, results: list[Result], profile,
          code: str | None = None) -> Diagnosis:
    """The runbook, the likely causes (the first is ``likely_cause``), the notes, the unrelated failures."""
    by_id = {r.id: r for r in results}
    unrelated = unrelated_ids(symptom, registry, by_id)
    values = template_values(profile, results)
    roots, consequences = find_roots(symptom, registry, by_id, profile=profile)
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
        findings = [r for r in step_results if r.status.value == v and r.id not in unrelated]
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
            "unrelated": [r.id for r in step_results if r.id in unrelated],
        })
    # "is it me?" leads only when this machine's network is the likely cause; else it follows the failures
    local_last = not (roots and roots[0].layer == LOCAL_LAYER)
    after_walk = len(steps) + 1   # (not len() inside the key: list.sort empties the list while it sorts)
    steps.sort(key=lambda s: (VERDICT_ORDER.index(s["verdict"]),
                              after_walk if local_last and s["layer"] == LOCAL_LAYER else s["walk_index"]))
    for n, s in enumerate(steps, 1):
        s["step"] = n
    causes_found = likely_causes(roots, consequences, because)
    likely = causes_found[0] if causes_found else None
    notes = []
    if code and code in symptom.codes:
        notes.append(f"{code}: {symptom.codes[code]}")
    if likely is None:
        notes.append(_nothing_failed(steps, by_id, unrelated))
    also_failing = [{"layer": by_id[rid].layer, "check": rid, "status": by_id[rid].status.value,
                     "summary": by_id[rid].summary,
                     "why": f"a failure of {rid} cannot produce `{symptom.name}`"} for rid in unrelated]
    return Diagnosis(steps, likely, notes, causes_found, also_failing)
