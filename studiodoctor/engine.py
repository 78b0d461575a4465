"""The engine the CLI and the tests call in-process: choose checks, run them, build the report."""

from __future__ import annotations

import difflib
import time
from datetime import datetime, timezone
from typing import Callable, Iterable

from .config import Profile
from .model import Result
from .registry import Check, Registry, default_registry
from .report import Report
from .runner import run_checks

# The layers of DESIGN.md in request-path order, and the later ones it names.
KNOWN_LAYERS = ("local", "dns", "cloudflare", "edge", "traefik", "kubernetes", "nginx", "app", "redis", "celery", "gcs",
                "postgres", "email", "sentry", "newrelic")


class UsageError(Exception):
    """Bad input from the user: one line, exit 3."""


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


# Old layer names still accepted by --layer: `path` is `trace` since the layers were named after their ids.
LAYER_ALIASES = {"path": "trace"}


def known_layers(registry: Registry) -> list[str]:
    return list(dict.fromkeys([*KNOWN_LAYERS, *registry.layers()]))


def select_checks(registry: Registry, layers: Iterable[str] = (), check_ids: Iterable[str] = ()) -> list[Check]:
    layers, check_ids = [LAYER_ALIASES.get(lay, lay) for lay in layers], list(check_ids)
    for layer in layers:
        if layer not in known_layers(registry):
            raise UsageError(f"unknown layer {layer!r}{suggest(layer, known_layers(registry))}; "
                             f"see `studiodoctor list`")
    for cid in check_ids:
        if cid not in registry.checks:
            raise UsageError(f"unknown check id {cid!r}{suggest(cid, registry.checks)}; see `studiodoctor list`")
    if not layers and not check_ids:
        chosen = list(registry.checks.values())
    else:
        chosen = [c for c in registry.checks.values() if c.layer in layers or c.id in check_ids]
    return registry.with_dependencies(chosen)


def require_variables(profile: Profile, checks: Iterable[Check], asked_layers: Iterable[str]) -> None:
    """A layer the user asked for by name whose config refers to an unset ``${VAR}`` is a usage error, unless
    the in-cluster doctor may be asked for it (an endpoint key, and a way into the cluster: ``vantage``)."""
    from .vantage import ENDPOINT_KEYS, cluster_configured

    asked = set(asked_layers)
    ask_cluster = cluster_configured(profile)
    for chk in checks:
        if chk.layer not in asked:
            continue
        for key in chk.needs:
            var = getattr(profile.value(key), "var", None)
            if var and not (ask_cluster and key in ENDPOINT_KEYS):
                raise UsageError(f"{profile.source}: {key}: ${{{var}}} is not set in the environment "
                                 f"(needed by --layer {chk.layer})")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(profile: Profile, checks: list[Check], *, command: str = "check", timeout: float | None = None,
        debug: bool = False, options: dict | None = None,
        on_start: Callable | None = None, on_done: Callable[[Result], None] | None = None,
        run_deadline: float | None = None, vantages: bool = False) -> Report:
    """Run ``checks``. With ``vantages``, those whose endpoint only the cluster reaches (``studiodoctor.vantage``)
    are asked of the in-cluster doctor while the others run here; the results come back as one list."""
    started_at, t0 = now_iso(), time.monotonic()
    everything, away = list(checks), {}
    if vantages:
        from .vantage import split

        checks, away = split(profile, everything)
    # before any thread of the run starts: the checks behind psycopg and redis-py may go to a forked child
    from . import forked

    ordered = checks
    checks, child, cap = forked.start(checks, profile, timeout=timeout, run_deadline=run_deadline,
                                      on_start=on_start, on_done=on_done, debug=debug, options=options)
    asker = None
    if away:
        from .runner import deadline_of_run
        from .vantage import Asker

        deadline = deadline_of_run(t0, float(timeout or profile.timeout), run_deadline)
        asker = Asker(profile, [c for c in everything if c.id in away], away, deadline,
                      _port_forward(profile, deadline, timeout, debug, options)).start()
    results = run_checks(checks, profile, timeout=timeout, debug=debug, options=options,
                         on_start=on_start, on_done=on_done, run_deadline=run_deadline, max_concurrent=cap)
    if child is not None:
        by_id = {r.id: r for r in [*results, *child.collect()]}
        results = [by_id[c.id] for c in ordered]
    if asker is not None:
        remote = asker.results()
        for res in remote:
            if on_done is not None:
                on_done(res)
        position = {c.id: i for i, c in enumerate(everything)}
        results = sorted([*results, *remote], key=lambda r: position.get(r.id, len(position)))
    return Report(command=command, profile=profile.name, started_at=started_at,
                  duration_ms=(time.monotonic() - t0) * 1000, results=results)


def _port_forward(profile: Profile, deadline: float, timeout, debug, options) -> Callable:
    """The way in when no in-cluster doctor answers: port-forwards for this run (``studiodoctor.tunnels``),
    the checks run here through them."""
    def fallback(checks, away, no_doctor):
        from .tunnels import through_portforward

        def run_here(chosen, derived, until):
            return run_checks(chosen, derived, timeout=timeout, debug=debug, options=options, run_deadline=until)

        return through_portforward(profile, checks, away, deadline, no_doctor, run_here)

    return fallback


def check(profile: Profile, layers: Iterable[str] = (), check_ids: Iterable[str] = (), *,
          registry: Registry | None = None, timeout: float | None = None, debug: bool = False,
          options: dict | None = None, on_start=None, on_done=None, run_deadline: float | None = None) -> Report:
    """``studiodoctor check``: run the chosen checks (all, by default) and report."""
    registry = (registry or default_registry.load_plugins())
    layers = list(layers)
    chosen = select_checks(registry, layers, check_ids)
    require_variables(profile, chosen, layers)
    return run(profile, chosen, timeout=timeout, debug=debug, options=options, on_start=on_start,
               on_done=on_done, run_deadline=run_deadline, vantages=True)


def diagnose(profile: Profile, symptom_word: str, *, registry: Registry | None = None,
             timeout: float | None = None, debug: bool = False, options: dict | None = None,
             on_start=None, on_done=None) -> Report:
    """``studiodoctor diagnose SYMPTOM``: run the checks of the symptom's walk, build the runbook."""
    from .diagnosis import runbook
    from .diagnosis.symptoms import CatalogueError, load_catalogue, normal_code

    registry = registry or default_registry.load_plugins()
    try:
        catalogue = load_catalogue(profile.symptoms, profile.source)
    except CatalogueError as exc:
        raise UsageError(str(exc)) from None
    symptom = catalogue.lookup(symptom_word)
    if symptom is None:
        raise UsageError(f"unknown symptom {symptom_word!r}{suggest(symptom_word.lower(), catalogue.all_words())}; "
                         f"see `studiodoctor symptoms`")
    symptom = runbook.with_local_step(symptom, registry)
    chosen = runbook.checks_for(symptom, registry)
    report = run(profile, chosen, command="diagnose", timeout=timeout, debug=debug, options=options,
                 on_start=on_start, on_done=on_done, vantages=True)
    code = normal_code(symptom_word) if normal_code(symptom_word) in symptom.codes else None
    report.symptom = symptom.name
    found = runbook.build(symptom, catalogue, registry, report.results, profile, code)
    report.runbook, report.likely_cause, report.notes = found.steps, found.likely_cause, found.notes
    report.likely_causes, report.unrelated_failures = found.likely_causes, found.unrelated_failures
    return report
