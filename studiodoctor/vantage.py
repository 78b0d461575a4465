"""Two vantage points, one report: what this machine cannot reach, the in-cluster doctor is asked for.

From an on-call laptop Redis, PostgreSQL (behind the Cloud SQL proxy), Celery's broker and Traefik's API sit
behind the cluster boundary. A check whose endpoint the profile does not give (``redis.url``,
``postgres.dsn``, ``traefik.api_url`` empty or an unset ``${VAR}``), and every check that depends on one
(Celery's, on Redis and PostgreSQL), is not run here: the in-cluster doctor (``studiodoctor serve`` of
``deploy/``) is asked for it, ``GET /report?check=...`` through the API server's service proxy
(``/api/v1/namespaces/NS/services/NAME:PORT/proxy/report``) with the kubeconfig's credentials. Its
Service is ``kubernetes.doctor.service`` ("NAMESPACE/NAME:PORT"), else the Service labelled
``DOCTOR_LABEL`` in ``kubernetes.namespace``. Its results join this machine's with ``vantage: cluster``;
the runbook and the causal rules read them as one. A profile's own URL always wins (a port-forward works).

When no way is open (no Kubernetes API, no doctor deployed, the proxy not granted) those checks are
`skip` with the line that would open one, never `fail`; when the doctor was asked and could not answer
(no ready endpoint, busy, an unreadable answer) they are `error`: nothing is known about them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

from .model import Command, Reason, Result, Status, error, skip

CLUSTER = "cluster"
# the label deploy/kubernetes/serve.yaml puts on the doctor's Service (discovery)
DOCTOR_LABEL = "studiodoctor/doctor"
DOCTOR_SELECTOR = f"{DOCTOR_LABEL}=report"
REPORT_PATH = "/report"
# keys whose endpoint sits behind the cluster boundary, and what to port-forward for each
ENDPOINT_KEYS = ("redis.url", "postgres.dsn", "traefik.api_url")
MAX_ASKED = 200


def _empty(profile, key: str) -> bool:
    return profile.value(key) in (None, "", [], {})


def cluster_configured(profile) -> bool:
    """Whether the profile has a way into the cluster at all (an API URL, or a kubeconfig file): without
    one, nothing can be asked of the in-cluster doctor (no network is used to tell)."""
    import os

    from .backends.kubeconfig import default_kubeconfig

    section = profile.section("kubernetes")
    return bool(section.get("api_url")) or os.path.isfile(
        os.path.expanduser(section.get("kubeconfig") or default_kubeconfig()))


def missing_key(profile, chk) -> str:
    """The endpoint key this check needs that the profile leaves empty ("" when it has its way)."""
    for key in chk.needs:
        if key in ENDPOINT_KEYS and _empty(profile, key):
            return key
    return ""   # Celery's checks go with redis.reachable and postgres.reachable, on which they depend


def split(profile, checks: list) -> tuple[list, dict[str, str]]:
    """(checks to run here, {check id: the missing key} for those only the cluster reaches). A check
    depending on one the cluster runs goes with it (dependencies are resolved where they run)."""
    away = {c.id: key for c in checks if (key := missing_key(profile, c))}
    changed = True
    while changed:
        changed = False
        for c in checks:
            if c.id not in away:
                dep = next((d for d in c.depends_on if d in away), None)
                if dep:
                    away[c.id], changed = away[dep], True
    return [c for c in checks if c.id not in away], away


@dataclass
class Doctor:
    """Where the in-cluster doctor answers: its Service, and how it was found."""

    namespace: str
    name: str
    port: str
    found: str      # "kubernetes.doctor.service" | "label studiodoctor/doctor=report"

    @property
    def label(self) -> str:
        return f"service {self.namespace}/{self.name}:{self.port}"


class NoWay(Exception):
    """No way to the cluster's side: the `skip` says why and what would open one."""

    def __init__(self, why: str, hint: str, commands: Iterable[Command] = ()):
        super().__init__(why)
        self.why, self.hint, self.commands = why, hint, list(commands)


class NoAnswer(Exception):
    """The doctor was asked and gave no usable answer: an `error`."""


class _Probe:
    """The minimal check identity a CheckContext needs for the API calls made on the run's behalf."""

    id, layer, title = "kubernetes.doctor", "kubernetes", "the in-cluster doctor"


def _context(profile, deadline: float):
    from .context import CheckContext, Shared

    return CheckContext(_Probe(), profile, deadline, Shared())


def parse_service(value: str, default_ns: str) -> Doctor:
    """ "NAMESPACE/NAME:PORT" (namespace and port optional) -> Doctor."""
    ns, _, rest = value.strip().rpartition("/")
    name, _, port = rest.partition(":")
    if not name:
        raise NoWay(f"kubernetes.doctor.service {value!r} names no Service",
                    'write it as "NAMESPACE/NAME:PORT", e.g. "studio/studiodoctor:9842"')
    return Doctor(ns or default_ns, name, port, "kubernetes.doctor.service")


def _kubectl(ctx, args: str, ns: str | None = "") -> str:
    from .backends.kubernetes import kubectl

    return kubectl(ctx, args, ns)


def find_doctor(ctx) -> Doctor:
    """The doctor's Service: ``kubernetes.doctor.service``, else the one labelled DOCTOR_SELECTOR."""
    from .backends import kubernetes as kc

    ns = kc.namespace(ctx)
    configured = ((ctx.section("kubernetes").get("doctor") or {}).get("service") or "").strip()
    conn = kc.connection(ctx)
    if conn.status != "ok":
        raise NoWay(f"no way into the cluster: {conn.detail or 'the Kubernetes API is not configured'}",
                    "Give the kubeconfig that reaches the cluster (kubernetes.kubeconfig, kubernetes.context): "
                    "the in-cluster doctor is then asked through the API server.")
    if configured:
        return parse_service(configured, ns)
    listing = kc.list_objects(ctx, "services", ns, label_selector=DOCTOR_SELECTOR)
    if listing.status == "forbidden":
        raise NoWay(f"cannot look for the in-cluster doctor: listing services in {ns} is forbidden",
                    f"Grant {kc.rbac_rule('services', ns)}, or name the doctor's Service in "
                    'kubernetes.doctor.service ("NAMESPACE/NAME:PORT").',
                    [Command(kc.can_i(ctx, "services", ns), note="what the API server says about our identity")])
    if not listing.ok:
        raise NoAnswer(f"cannot look for the in-cluster doctor: listing services in {ns}: "
                       f"{listing.status} {listing.detail}".strip())
    if not listing.items:
        raise NoWay(f"no in-cluster doctor: no Service labelled {DOCTOR_SELECTOR} in namespace {ns}",
                    "Deploy it (deploy/kubernetes/: the serve Deployment and its Service), or name its Service in "
                    'kubernetes.doctor.service ("NAMESPACE/NAME:PORT").',
                    [Command(_kubectl(ctx, "apply -f deploy/kubernetes/", None), "mutating",
                             "the doctor's Deployment, Service, ConfigMap and least-privilege RBAC")])
    svc = sorted(listing.items, key=lambda s: (s.get("metadata") or {}).get("name") or "")[0]
    ports = (svc.get("spec") or {}).get("ports") or [{}]
    return Doctor(ns, (svc.get("metadata") or {}).get("name") or "", str(ports[0].get("port") or ""),
                  f"label {DOCTOR_SELECTOR}")


def ask(ctx, doctor: Doctor, check_ids: list[str]) -> dict:
    """The doctor's ``/report`` for ``check_ids``: the report/1 document (NoWay, NoAnswer otherwise)."""
    import json

    from .backends.kube_proxy import ProxyRefused, ProxyTarget, ProxyUnavailable, proxy_request

    target = ProxyTarget("services", doctor.namespace, doctor.name, doctor.port)
    try:
        answer = proxy_request(ctx, target, REPORT_PATH, query=[("check", c) for c in check_ids[:MAX_ASKED]],
                               headers={"Accept": "application/json"})
    except ProxyRefused as exc:
        if exc.kind == "forbidden":
            raise NoWay(f"the in-cluster doctor ({doctor.label}) is not open to us: get services/proxy is forbidden",
                        f"Grant {target.rule()} to the identity studiodoctor uses (read-only: it only GETs /report).",
                        [Command(_kubectl(ctx, f"create role studiodoctor-ask-doctor --verb=get "
                                               f"--resource=services/proxy --resource-name={doctor.name}",
                                          doctor.namespace), "mutating", "then bind it to our user or group "
                                 "with `kubectl create rolebinding`")]) from None
        raise NoAnswer(f"the in-cluster doctor ({doctor.label}) did not answer: {exc.kind}: {exc}") from None
    except ProxyUnavailable as exc:
        raise NoWay(f"no way into the cluster: {exc.detail}", "Give the kubeconfig that reaches the cluster.") from None
    except Exception as exc:  # noqa: BLE001 - the API server itself did not answer: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NoAnswer(f"the Kubernetes API did not carry the question to the in-cluster doctor: {first}"[:300]) from None
    if answer.status_code != 200:
        raise NoAnswer(f"the in-cluster doctor ({doctor.label}) answered HTTP {answer.status_code}: "
                       f"{answer.text.strip()[:200]}")
    try:
        data = json.loads(answer.content)
    except ValueError:
        raise NoAnswer(f"the in-cluster doctor ({doctor.label}) answered something that is not JSON") from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("studiodoctor.report/") \
            or not isinstance(data.get("results"), list):
        raise NoAnswer(f"the in-cluster doctor ({doctor.label}) did not answer a studiodoctor.report/1 document")
    return data


def from_cluster(item: dict, chk, doctor: Doctor) -> Result | None:
    """One result of the doctor's report as this run's Result, seen from the cluster."""
    try:
        status = Status(item.get("status"))
    except ValueError:
        return None
    commands = [Command(str(c.get("text", "")), c.get("safety", "read-only"), str(c.get("note", "")))
                for c in item.get("commands") or [] if isinstance(c, dict) and c.get("safety") in
                ("read-only", "mutating", "broker-control", "ephemeral-write")]
    evidence = dict(item.get("evidence") or {}) if isinstance(item.get("evidence"), dict) else {}
    evidence["seen_from"] = f"the in-cluster doctor ({doctor.label}, found by {doctor.found})"
    summary = str(item.get("summary", ""))[:1000].replace(" from here", " from the cluster")
    return Result(status=status, summary=summary, evidence=evidence,
                  hint=str(item.get("hint") or ""), commands=commands, reason=str(item.get("reason") or ""),
                  id=chk.id, layer=chk.layer, title=chk.title, duration_ms=float(item.get("duration_ms") or 0),
                  blocked_by=[str(b) for b in item.get("blocked_by") or []], vantage=CLUSTER)


def not_set(profile, key: str) -> str:
    """ "redis.url is not set" (with the unset ``${VAR}`` it refers to), as the runner says it."""
    var = getattr(profile.value(key), "var", None)
    return f"{key} is not set" + (f" (${{{var}}} is unset)" if var else "")


def _stand_in(chk, key: str, status: Status, summary: str, hint: str, commands=(), reason=Reason.NOT_CONFIGURED):
    build = skip if status is Status.SKIP else error
    res = build(summary, hint=hint, commands=list(commands), reason=reason,
                evidence={"missing": key, "reached": "not from here"})
    res.id, res.layer, res.title = chk.id, chk.layer, chk.title
    return res


def through_cluster(profile, checks: list, away: dict[str, str], deadline: float,
                    fallback: Callable | None = None) -> list[Result]:
    """Results for the checks only the cluster reaches: the doctor's, or the `skip`/`error` that says why not.
    With no doctor to ask, ``fallback(checks, away, no_way)`` (a port-forward: ``studiodoctor.tunnels``) has
    the last word."""
    ctx = _context(profile, deadline)
    started = time.monotonic()
    try:
        doctor = find_doctor(ctx)
        data = ask(ctx, doctor, [c.id for c in checks])
    except NoWay as way:
        if fallback is not None:
            return fallback(checks, away, way)
        return [_stand_in(c, away[c.id], Status.SKIP,
                          f"{not_set(profile, away[c.id])} and {way.why}", way.hint + f" Or set {away[c.id]} "
                          "(e.g. through `kubectl port-forward`).", way.commands) for c in checks]
    except NoAnswer as exc:
        return [_stand_in(c, away[c.id], Status.ERROR, f"cannot tell: {exc}",
                          "Nothing is known about this check from here: the in-cluster doctor could not be asked. "
                          f"Check its pod, or set {away[c.id]} through `kubectl port-forward`.",
                          reason=Reason.UNREACHABLE) for c in checks]
    answered = {str(item.get("id")): item for item in data["results"] if isinstance(item, dict)}
    out = []
    for c in checks:
        res = from_cluster(answered[c.id], c, doctor) if c.id in answered else None
        if res is None:
            res = _stand_in(c, away[c.id], Status.ERROR, f"cannot tell: the in-cluster doctor ({doctor.label}) "
                            f"gave no result for {c.id}", "Its version may not have this check: update its image.",
                            reason=Reason.UNEXPECTED)
        res.network_ms = ctx.network_ms()
        out.append(res)
    if not out:
        return out
    out[0].evidence.setdefault("asked_in_ms", round((time.monotonic() - started) * 1000, 1))
    return out


class Asker:
    """``through_cluster`` in a thread of its own, beside the checks that run here; ``results()`` waits until
    the run's deadline at most, and whatever did not come back by then is an `error`, never a guess."""

    def __init__(self, profile, checks: list, away: dict[str, str], deadline: float, fallback: Callable | None = None):
        import threading

        self.checks, self.away, self.deadline, self.box = checks, away, deadline, []
        self.thread = threading.Thread(target=lambda: self.box.extend(through_cluster(profile, checks, away, deadline,
                                                                                      fallback)),
                                       name="vantage:cluster", daemon=True)

    def start(self) -> "Asker":
        self.thread.start()
        return self

    def results(self) -> list[Result]:
        self.thread.join(max(0.0, self.deadline - time.monotonic()) + 0.5)
        got = {r.id for r in list(self.box)}
        late = [_stand_in(c, self.away[c.id], Status.ERROR, "cannot tell: the in-cluster doctor did not answer "
                          "within the run's deadline", "Nothing is known about this check from here.",
                          reason=Reason.TIMEOUT) for c in self.checks if c.id not in got]
        return [*list(self.box), *late]
