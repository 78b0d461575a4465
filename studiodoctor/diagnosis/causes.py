"""Causal rules: when one check's failure is explained by another's, with the evidence that links them.

A check's plain ``explained_by`` (ids or layer names) says "if that also fails, mine is a consequence".
That is not enough when one layer exhausts a resource and another layer shows the damage: the deeper
layer may only warn (an app slower than nginx's timeout is "slow", not "down") or could not even log in
(our own PostgreSQL login rejected is an ``error``), so the failure in front would be named instead.

A :class:`Rule` names a consequence check, a cause check and a ``link``: a predicate over the two
results that returns the evidence linking them (or None when the link is absent, in which case the
consequence stays a root). When the link holds, the consequence is explained by the cause, and the
cause counts as broken even if its own status is a warn or an error: the link is the proof. Each rule
carries a one-line ``because`` (a format string over the link's evidence) that the runbook prints on
the consequence's step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..model import Result, Status
from ..studio_facts import HEALTHZ_PATH

# Statuses a cause may have for a rule to consider it: it must have looked and found something.
CAUSE_STATUSES = frozenset({Status.FAIL, Status.WARN, Status.ERROR})
LATENCY_TOLERANCE = 0.9     # the app's own latency must reach 90 % of the time nginx waited


@dataclass(frozen=True)
class Rule:
    name: str
    consequence: str                                   # check id whose failure may be explained
    cause: str                                         # check id of the deeper layer
    link: Callable[[Result, Result], dict | None]      # (consequence, cause) -> linking evidence or None
    because: str                                       # one line, formatted with the link's evidence
    # the consequence's own status: a failure, or (for a rule that continues a chain) a warn that another
    # rule already proved broken (an app only slow to us, but slower than nginx waited)
    consequence_statuses: frozenset = frozenset({Status.FAIL})

    def explain(self, consequence: Result, cause: Result) -> dict[str, Any] | None:
        """{"cause", "rule", "because", "evidence"} when the link holds, else None."""
        if consequence.status not in self.consequence_statuses or cause.status not in CAUSE_STATUSES:
            return None
        try:
            evidence = self.link(consequence, cause)
        except (KeyError, TypeError, ValueError, AttributeError):
            evidence = None   # evidence of an unexpected shape links nothing
        if evidence is None:
            return None
        return {"cause": cause.id, "rule": self.name, "because": self.because.format(**evidence),
                "evidence": evidence}


# --- links ------------------------------------------------------------------------------------------
_OOM_MARKERS = ("OOM command not allowed", "command not allowed when used memory")   # redis-py drops "OOM"


def _oom_text(result: Result) -> str:
    """The OOM error Redis gave this check, if its summary or evidence carries one."""
    for text in (result.summary, *(str(v) for v in result.evidence.values())):
        if any(m.lower() in text.lower() for m in _OOM_MARKERS):
            return text[:160]
    return ""


def redis_full_blocks_workers(workers: Result, memory: Result) -> dict | None:
    """Celery's ping failed and Redis refuses writes: at maxmemory with noeviction, or OOM errors seen."""
    ev = memory.evidence
    limit, used = int(ev.get("maxmemory") or 0), int(ev.get("used_memory") or 0)
    oom = _oom_text(workers)                      # the broker's own answer to our ping
    rejected = int(ev.get("oom_errors") or 0)     # INFO errorstats (Redis >= 6.2): writes refused with OOM
    at_limit = bool(limit) and (used >= limit or (rejected > 0 and memory.status is Status.FAIL))
    if not (oom or (ev.get("maxmemory_policy") == "noeviction" and at_limit)):
        return None
    return {"used_memory": ev.get("used_memory_human", used), "maxmemory": ev.get("maxmemory_human", limit),
            "policy": ev.get("maxmemory_policy", "?"), "oom_errors": rejected,
            "seen": oom or ("OOM rejections counted by Redis" if rejected else "used memory at maxmemory")}


def app_slower_than_proxy(proxy: Result, app: Result) -> dict | None:
    """nginx gave up (504) or took nearly its timeout, and the app, asked directly, took as long."""
    waited = proxy.evidence.get("inferred_proxy_read_timeout_s")
    if waited is None:
        if proxy.evidence.get("status") != 200:
            return None       # a 502 or a wrong status is not a matter of time
        waited = proxy.evidence.get("latency_s")
    app_s = app.evidence.get("latency_s")
    if app_s is None and app.reason == "timeout" and app.duration_ms:
        app_s = app.duration_ms / 1000     # abandoned by the runner: it waited this long for no answer
    if waited is None or app_s is None or float(app_s) < LATENCY_TOLERANCE * float(waited):
        return None
    status = proxy.evidence.get("status")
    return {"nginx_status": status, "nginx_waited_s": float(waited), "app_latency_s": float(app_s),
            "nginx": f"gave up after {float(waited):g} s ({status})" if status == 504
            else f"took {float(waited):g} s"}


def login_rejected_breaks_app(healthz: Result, login: Result) -> dict | None:
    """The app is up but its database query fails (/stealthz 200, /healthz not), and PostgreSQL rejects
    our login too: the same failure (credentials rotated, role dropped, pg_hba) on both sides."""
    if healthz.evidence.get("stealthz_status") != 200:
        return None           # the app itself is failing, not only its query
    if login.evidence.get("stage") != "auth" and login.reason != "auth":
        return None
    return {"healthz_status": healthz.evidence.get("status"), "stage": "auth",
            "postgres_error": login.summary[:200]}


def origin_page_behind_edge(pages: Result, trace: Result) -> dict | None:
    """The public URL answers an error, and the hop trace finds the first bad hop behind CloudFlare
    (the origin, nginx or the app): CloudFlare only passed the origin's failure on."""
    hop = trace.evidence.get("first_bad_hop")
    if not hop or hop == "edge":
        return None
    return {"hop": hop, "layer": trace.evidence.get("first_bad_layer") or "?"}


def edge_is_first_bad_hop(trace: Result, pages: Result) -> dict | None:
    """The hop trace goes bad at the edge itself (every hop behind it answers), and the public URL
    answers an error: the trace's failure is CloudFlare's."""
    if trace.evidence.get("first_bad_hop") != "edge":
        return None
    return {"hop": "edge"}


def lock_waits_hang_app(app: Result, locks: Result) -> dict | None:
    """The app did not answer in time (its request hung), or answered only after sessions had been waiting
    on a lock at least as long, while those sessions still wait: the app's queries queue behind the lock
    holder (``/healthz`` reads ``contentcuration_channel``; when every gunicorn worker waits there,
    ``/stealthz`` hangs too and nginx gives up)."""
    waits = locks.evidence.get("locks") or []
    if not waits:
        return None
    if app.reason != "timeout":   # an answer: only a slow one whose time the lock waits cover
        took = app.evidence.get("latency_s")
        longest = max((float(w["waiting_s"]) for w in waits if w.get("waiting_s") is not None), default=None)
        if took is None or longest is None or app.evidence.get("status") not in (None, 200) \
                or float(took) < 1.0 or longest < LATENCY_TOLERANCE * float(took):
            return None           # a refusal, a 500 or a fast answer is not a request waiting on a lock
    tables = sorted({w["relation"] for w in waits if w.get("relation")})
    holders = locks.evidence.get("blockers") or sorted({p for w in waits for p in w.get("blocked_by") or []})
    return {"waiting": int(locks.evidence.get("waiting") or len(waits)), "tables": ", ".join(tables) or "a lock",
            "holders": ", ".join(map(str, holders)) or "?"}


def _app_seconds(app: Result) -> float | None:
    """How long the app took to answer (its latency), or waited for no answer (a timeout)."""
    took = app.evidence.get("latency_s")
    if took is None and app.reason == "timeout" and app.duration_ms:
        took = app.duration_ms / 1000
    return None if took is None else float(took)


def _asked(app: Result) -> tuple[str, str]:
    """(path, port) the app check asked: read from its sampled endpoint (a pod through the API server's proxy
    names the port, ``.../pods/NAME:PORT/proxy/PATH``); "" for what the evidence does not say."""
    from urllib.parse import urlsplit

    endpoint = str((app.evidence.get("sampled") or {}).get("endpoint") or "")
    path = urlsplit(endpoint).path
    port = ""
    if "/proxy/" in path:
        target, _, rest = path.partition("/proxy/")
        port = target.rpartition(":")[2] if ":" in target.rpartition("/")[2] else ""
        path = "/" + rest.lstrip("/")
    return path, port


def slow_app_fails_readiness(path: str = ""):
    """The link of a consequence ``kubernetes.pods_ready`` to an app check that asks ``path`` (or, "" , only what
    its evidence says it asked)."""

    def app_slower_than_readiness_probe(pods: Result, app: Result) -> dict | None:
        """Pods are not Ready, their readiness probe is an HTTP GET of the app (the path the app check asked,
        or the app's port) that gives up after its timeoutSeconds, and the app, asked at those pods (or at its
        URL), took at least that long: the probe fails because the app is slow."""
        took = _app_seconds(app)
        if took is None:
            return None
        seen_path, port = _asked(app)
        asked_path = path or seen_path
        asked_pods = set(app.evidence.get("pods") or {})   # per pod through the API server; none for a URL
        hits = [(entry["pod"], probe) for entry in pods.evidence.get("not_ready") or []
                if not asked_pods or entry.get("pod") in asked_pods
                for probe in entry.get("readiness") or []
                if (asked_path and probe.get("path") == asked_path) or (port and str(probe.get("port")) == port)
                if took >= float(probe.get("timeout_s") or 1)]
        if not hits:
            return None
        probe = hits[0][1]
        names = sorted({pod for pod, _ in hits})
        return {"pods": ", ".join(names[:4]) + (f" (+{len(names) - 4})" if len(names) > 4 else ""),
                "pods_not_ready": len(names), "probe": f"GET {probe['path']} on :{probe['port']}",
                "probe_timeout_s": float(probe["timeout_s"]), "app_latency_s": took,
                "app_answered": "did not answer within" if app.reason == "timeout" else "took"}

    return app_slower_than_readiness_probe


RULES: tuple[Rule, ...] = (
    Rule("redis-full-blocks-workers", "celery.workers", "redis.memory", redis_full_blocks_workers,
         "Redis refuses writes ({seen}; {used_memory} of {maxmemory}, policy {policy}), so workers cannot "
         "answer the ping"),
    Rule("app-slower-than-proxy", "nginx.app_proxy", "app.stealthz", app_slower_than_proxy,
         "nginx {nginx} and the app, asked directly, took {app_latency_s:.1f} s"),
    Rule("app-slower-than-proxy", "nginx.app_proxy", "app.healthz", app_slower_than_proxy,
         "nginx {nginx} and the app, asked directly, took {app_latency_s:.1f} s"),
    Rule("login-rejected-breaks-app", "app.healthz", "postgres.reachable", login_rejected_breaks_app,
         "the app's database query fails while PostgreSQL rejects our login too ({postgres_error})"),
    Rule("lock-waits-hang-app", "app.healthz", "postgres.locks", lock_waits_hang_app,
         "{waiting} session(s) wait on a lock on {tables} held by pid {holders}: the app's queries queue behind it",
         consequence_statuses=frozenset({Status.FAIL, Status.WARN})),
    Rule("lock-waits-hang-app", "app.stealthz", "postgres.locks", lock_waits_hang_app,
         "{waiting} session(s) wait on a lock on {tables} held by pid {holders}: the app's workers are stuck "
         "behind it", consequence_statuses=frozenset({Status.FAIL, Status.WARN})),
    *(Rule("lock-waits-hang-app", page, "postgres.locks", lock_waits_hang_app,
           "{waiting} session(s) wait on a lock on {tables} held by pid {holders}: the app's workers are stuck "
           "behind it", consequence_statuses=frozenset({Status.FAIL, Status.WARN}))
      for page in ("app.login_page", "app.probers")),   # every page hangs once every worker waits
    # a frontend pod is Ready only while the app answers its readiness probe in time: a slow app (a warn to
    # us, or a check that ran out of time) takes the pods out of the Service, not the other way round
    *(Rule("app-slower-than-readiness-probe", "kubernetes.pods_ready", app_check, slow_app_fails_readiness(path),
           "{pods_not_ready} pod(s) not Ready ({pods}): their readiness probe {probe} gives up after "
           "{probe_timeout_s:g} s, and the app {app_answered} {app_latency_s:.1f} s there")
      for app_check, path in (("app.healthz", HEALTHZ_PATH), ("app.stealthz", ""))),
    Rule("origin-page-behind-edge", "edge.error_pages", "trace.hops", origin_page_behind_edge,
         "every hop in front of the {hop} ({layer}) passes its error on: the trace goes bad there first"),
    Rule("edge-is-first-bad-hop", "trace.hops", "edge.error_pages", edge_is_first_bad_hop,
         "the request goes bad at CloudFlare itself: every hop behind it answers"),
)


def links(by_id: dict[str, Result], broken: set[str], rules=RULES) -> dict[str, list[dict]]:
    """{consequence id: [explanations]} for every rule whose link holds among ``by_id``; adds the causes
    it proves broken to ``broken`` (repeated until nothing changes, so links chain)."""
    found: dict[str, list[dict]] = {}
    changed = True
    while changed:
        changed = False
        for rule in rules:
            con, cause = by_id.get(rule.consequence), by_id.get(rule.cause)
            if con is None or cause is None or rule.consequence not in broken:
                continue
            if any(e["cause"] == rule.cause for e in found.get(rule.consequence, [])):
                continue
            explanation = rule.explain(con, cause)
            if explanation:
                found.setdefault(rule.consequence, []).append(explanation)
                if rule.cause not in broken:
                    broken.add(rule.cause)
                    changed = True
    return found


def rules_for(check_id: str, rules=RULES) -> list[str]:
    """One line per rule that involves ``check_id`` (for ``studiodoctor explain``)."""
    lines = []
    for r in rules:
        when = (r.link.__doc__ or "").strip().splitlines()[0] if r.link.__doc__ else ""
        if r.consequence == check_id:
            lines.append(f"explained by {r.cause} (rule {r.name}) when: {when}")
        elif r.cause == check_id:
            lines.append(f"explains {r.consequence} (rule {r.name}) when: {when}")
    return lines
