"""Layer `app`: gunicorn/Django (Studio's app container, :8081) at ``app.url``, or, when it is not set, in
every Ready frontend pod one by one through the Kubernetes API server's pod proxy
(``studiodoctor.discovery.reach``: a pod answering 500 among healthy ones is a finding, never a lucky pass).

``/stealthz`` answers without the database, ``/healthz`` queries it: the pair splits "the app is down"
from "the database is down". Latency is judged against the limits in front of the app: nginx's
``proxy_read_timeout`` (100 s in production) and CloudFlare's fixed 100 s origin timeout.
"""

from __future__ import annotations

import time

from studiodoctor import studio_facts as facts
from studiodoctor.discovery import reach
from studiodoctor.discovery.reach import PROXY_GRANT
from studiodoctor.model import Command, Reason, error, fail, ok, skip, unreachable, warn
from studiodoctor.registry import check

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("httpx",)

STEALTHZ = "app.stealthz"
HEALTHZ = "app.healthz"
LOGIN_PAGE = "app.login_page"
PROBERS = "app.probers"

CLOUDFLARE_TIMEOUT_S = facts.CLOUDFLARE_TIMEOUT_S   # CloudFlare's origin read timeout
NGINX_TIMEOUT_S = facts.STUDIO_PROXY_READ_TIMEOUT_S  # Studio's proxy_read_timeout (nginx's own default is 60 s)
DEFAULT_LATENCY_WARN_S = 2.0          # /stealthz and /healthz are tiny: seconds already mean trouble
DEFAULT_FAIL_RATIO = 0.8              # fail at 80 % of the tightest limit in front of the app
DEFAULT_LOGIN_PATH = facts.LOGIN_PATH
PROBER_QUEUE_ALERT = 50               # Studio's old task_queue_status prober alerted at LLEN celery >= 50
PROBER_PUBLISHING_ALERT_S = 7200      # PROBER_PUBLISHING_ALERT_THRESHOLD default
UNSUPPORTED_MARKERS = ("browser is not supported", "unsupported browser", "unsupported_browser")


def _base(ctx) -> str:
    """Where this check's requests go (the profile's URL, or a pod through the API server), for the evidence."""
    return reach.address(ctx)


def _get(ctx, path: str, headers: dict | None = None, cap: float | None = None):
    """(response or None, seconds, exception or None)."""
    from studiodoctor.probes import http as httpprobe

    t0 = time.monotonic()
    try:
        resp = reach.request(ctx, "GET", path, headers=headers, timeout=cap)
        return resp, httpprobe.network_seconds(resp, t0), None  # the wire's time, not our queue's
    except Exception as exc:  # network errors become evidence, never tracebacks
        return None, time.monotonic() - t0, exc


def _confirmed(ctx, path: str, resp, seconds: float):
    """(response, seconds, samples): a reading in the warning band is taken once more, as an engineer
    re-runs curl before calling the app slow. One answer can wait on the doctor's own work (its other
    checks share this process) or on a blip; a slow app is slow twice, so the faster sample is the
    app's latency. Readings at a failing level are conclusive (and the time to repeat them is not there)."""
    if judge_latency(ctx, seconds)[0] != "warn" or ctx.remaining() < 1.5 * seconds + 0.5:
        return resp, seconds, [round(seconds, 3)]
    again, again_s, exc = _get(ctx, path)
    samples = [round(seconds, 3), round(again_s, 3)]
    if exc is None and again.status_code == resp.status_code and again_s < seconds:
        return again, again_s, samples
    return resp, seconds, samples


def _app_commands(ctx) -> list[Command]:
    from studiodoctor.backends.kubectl import command as kubectl

    return [
        Command(kubectl(ctx.profile, "get pods -l tier=frontend -o wide"), note="are the app pods Ready?"),
        Command(kubectl(ctx.profile, "logs -l tier=frontend -c app --tail=100"), note="gunicorn and Django errors"),
        reach.curl(ctx, "/stealthz", note="the app without the database"),
    ]


def limits(ctx) -> list[tuple[str, float]]:
    """The time limits in front of the app, tightest first: [(name, seconds), ...]."""
    nginx_t = float(ctx.section("nginx").get("proxy_read_timeout") or NGINX_TIMEOUT_S)
    edge_t = float(ctx.section("app").get("edge_timeout_s") or CLOUDFLARE_TIMEOUT_S)
    return sorted([("nginx's proxy_read_timeout", nginx_t), ("CloudFlare's origin timeout", edge_t)],
                  key=lambda x: x[1])


def judge_latency(ctx, seconds: float) -> tuple[str, str]:
    """("ok"|"warn"|"fail", text) for one answer's latency, naming the limit it approaches."""
    name, limit = limits(ctx)[0]
    fail_s = float(ctx.section("app").get("latency_fail_s") or limit * DEFAULT_FAIL_RATIO)
    warn_s = float(ctx.section("app").get("latency_warn_s") or DEFAULT_LATENCY_WARN_S)
    if seconds >= limit:
        return "fail", f"{seconds:.1f} s, over {name} of {limit:g} s (the proxy in front gives up first)"
    if seconds >= fail_s:
        return "fail", f"{seconds:.1f} s, near {name} of {limit:g} s"
    if seconds >= warn_s:
        return "warn", f"{seconds:.1f} s, above the {warn_s:g} s warning threshold"
    return "ok", f"{seconds * 1000:.0f} ms"


def _no_answer(ctx, what: str, path: str, exc: Exception, seconds: float):
    from studiodoctor.probes import http as httpprobe

    timed_out, text = httpprobe.describe_error(exc)
    name, limit = limits(ctx)[0]
    if timed_out:
        text = f"no answer within {seconds:.1f} s"
        if seconds >= limit:
            text += f", over {name} of {limit:g} s"
    return unreachable(what, _base(ctx) + path, text, timed_out=timed_out, commands=_app_commands(ctx),
                       hint="Is gunicorn running and listening? Check the app container's logs and readiness.",
                       evidence={"latency_s": round(seconds, 3)})


def _latency_result(ctx, seconds: float, summary_ok: str, evidence: dict, *, slow_hint: str):
    level, text = judge_latency(ctx, seconds)
    evidence = {**evidence, "latency_s": round(seconds, 3),
                "limits_s": {n: v for n, v in limits(ctx)}}
    if level == "ok":
        return ok(f"{summary_ok} in {text}", evidence=evidence)
    build = fail if level == "fail" else warn
    return build(f"{summary_ok}, but slowly: {text}", evidence=evidence, hint=slow_hint,
                 commands=_app_commands(ctx))


@check(STEALTHZ, title="App answers /stealthz (no database)", needs=(),
       permissions=("HTTP GET", PROXY_GRANT), smoke=True, metrics=("latency_s;;;0",))
def check_stealthz(ctx):
    """gunicorn/Django answers ``/stealthz`` with ``<3``, without touching the database, fast.

    ``/stealthz`` is Studio's liveness endpoint: if it fails, the Python app itself is down (gunicorn
    crashed; note the image's ``|| sleep infinity`` keeps a dead container Running) and nginx answers 502.
    If it is slow, every request is slow: the app is overloaded (workers busy, CPU throttled), not the
    database. Latency near nginx's ``proxy_read_timeout`` or CloudFlare's 100 s fails, naming the limit
    (504 at nginx, 524 at CloudFlare). Thresholds: ``app.latency_warn_s``, ``app.latency_fail_s``."""
    return reach.run_each(ctx, "app", _stealthz)


def _stealthz(ctx):
    resp, seconds, exc = _get(ctx, "/stealthz")
    if exc is not None:
        return _no_answer(ctx, "the app", "/stealthz", exc, seconds)
    resp, seconds, samples = _confirmed(ctx, "/stealthz", resp, seconds)
    body = resp.text[:200]
    evidence = {"status": resp.status_code, "body": body.strip()[:60], "server": resp.headers.get("server", "")}
    if len(samples) > 1:
        evidence["latency_samples_s"] = samples
    if resp.status_code != 200:
        return fail(f"/stealthz answered {resp.status_code} in {seconds:.2f} s: the app is up but erroring "
                    f"even without the database", evidence={**evidence, "latency_s": round(seconds, 3)},
                    hint="Read the app's logs: a failing middleware or settings error breaks every view.",
                    commands=_app_commands(ctx))
    if body.strip() != "<3":
        return warn(f"/stealthz answered 200 but not Studio's '<3' (got {body.strip()[:40]!r}): is app.url "
                    f"really Studio's gunicorn?", evidence={**evidence, "latency_s": round(seconds, 3)})
    return _latency_result(ctx, seconds, "/stealthz answered <3", evidence,
                           slow_hint="Every request is slow even without the database: the app is overloaded "
                                     "(busy gunicorn workers, CPU limits) or the node is starved.")


@check(HEALTHZ, title="App answers /healthz (queries PostgreSQL)", needs=(),
       explained_by=("postgres",), permissions=("HTTP GET", PROXY_GRANT), smoke=True, metrics=("latency_s;;;0",))
def check_healthz(ctx):
    """``/healthz`` runs ``Channel.objects.first()`` against PostgreSQL and returns its name.

    It is also the readiness probe of the app container (GET /healthz on :8081 every 2 s, 1 s timeout):
    when it fails, Kubernetes takes the pod out of the Service and users get 502/503. ``/stealthz`` ok but
    ``/healthz`` failing points at the database (Cloud SQL proxy, credentials, connections): see the
    ``postgres`` layer. ``/healthz`` slow while ``/stealthz`` is fast means the database is slow."""
    return reach.run_each(ctx, "app", _healthz)


def _healthz(ctx):
    resp, seconds, exc = _get(ctx, "/healthz")
    if exc is not None:
        return _no_answer(ctx, "the app", "/healthz", exc, seconds)
    resp, seconds, samples = _confirmed(ctx, "/healthz", resp, seconds)
    evidence = {"status": resp.status_code, "latency_s": round(seconds, 3)}
    if len(samples) > 1:
        evidence["latency_samples_s"] = samples
    if resp.status_code != 200:
        s_resp, s_seconds, s_exc = _get(ctx, "/stealthz", cap=5.0)
        alive = s_exc is None and s_resp.status_code == 200
        evidence["stealthz_status"] = None if s_exc is not None else s_resp.status_code
        if alive:
            return fail(f"/healthz answered {resp.status_code} while /stealthz answers 200: the app is up but "
                        f"its database query fails (PostgreSQL)", evidence=evidence,
                        hint="Check the postgres layer: Cloud SQL proxy up, DATA_DB_* credentials, connections "
                             "vs max_connections. The readiness probe uses /healthz, so pods go unready.",
                        commands=[Command("studiodoctor check --layer postgres", note="the database, stage by stage"),
                                  *_app_commands(ctx)[:2]])
        return fail(f"/healthz answered {resp.status_code} and /stealthz does not answer 200 either: the app "
                    f"itself is failing", evidence=evidence, commands=_app_commands(ctx))
    evidence["first_channel"] = resp.text.strip()[:120]
    level, _ = judge_latency(ctx, seconds)
    if level != "ok":
        s_resp, s_seconds, s_exc = _get(ctx, "/stealthz", cap=5.0)
        if s_exc is None and s_resp.status_code == 200:
            evidence["stealthz_latency_s"] = round(s_seconds, 3)
            if judge_latency(ctx, s_seconds)[0] == "ok":
                return _latency_result(ctx, seconds, "/healthz answered", evidence,
                                       slow_hint=f"/stealthz answers in {s_seconds * 1000:.0f} ms, so the "
                                                 f"database is what is slow: look for long queries and locks.")
    return _latency_result(ctx, seconds, f"/healthz answered ({evidence['first_channel'][:40]!r})", evidence,
                           slow_hint="Both /stealthz and /healthz are slow: the app is overloaded.")


@check(LOGIN_PAGE, title="Login page answers the prober User-Agent", needs=(),
       permissions=("HTTP GET", PROXY_GRANT))
def check_login_page(ctx):
    """The login page (``app.login_path``, default ``/en/accounts/``) answers 200 or 302.

    Studio renders an "unsupported browser" page for User-Agents that are neither a known browser nor
    one of ``HEALTH_CHECK_BROWSERS`` (``kube-probe``, ``GoogleHC``, ``Studio-Internal-Prober``): a prober
    must send such a UA (``http.user_agent``) to see real pages. A 5xx here with /stealthz ok means a
    view-level error (templates, translations, the session database)."""
    return reach.run_each(ctx, "app", _login_page)


def _login_page(ctx):
    path = str(ctx.setting("login_path", DEFAULT_LOGIN_PATH))
    resp, seconds, exc = _get(ctx, path)
    if exc is not None:
        return _no_answer(ctx, "the app", path, exc, seconds)
    resp, seconds, samples = _confirmed(ctx, path, resp, seconds)
    ua = ctx.section("http").get("user_agent") or "studiodoctor"
    evidence = {"path": path, "status": resp.status_code, "latency_s": round(seconds, 3), "user_agent": ua,
                "location": resp.headers.get("location", "")}
    if len(samples) > 1:
        evidence["latency_samples_s"] = samples
    level, timing = judge_latency(ctx, seconds)
    slow = None if level == "ok" else (fail if level == "fail" else warn)
    if resp.status_code in (301, 302, 303, 307, 308) and slow is None:
        return ok(f"{path} redirects ({resp.status_code}) to {resp.headers.get('location', '?')}", evidence=evidence)
    if resp.status_code not in (200, 301, 302, 303, 307, 308):
        return fail(f"{path} answered {resp.status_code}", evidence=evidence, commands=_app_commands(ctx),
                    hint="Read the app's logs for the view's traceback (Sentry has it too).")
    text = resp.text.lower()
    if any(m in text for m in UNSUPPORTED_MARKERS):
        return warn(f"{path} served Studio's unsupported-browser page to User-Agent {ua!r}", evidence=evidence,
                    hint="Set http.user_agent to contain 'Studio-Internal-Prober' (one of HEALTH_CHECK_BROWSERS).")
    if slow is not None:
        return slow(f"{path} answered {resp.status_code}, but slowly: {timing}", evidence=evidence,
                    commands=_app_commands(ctx))
    return ok(f"{path} answered 200 in {timing}", evidence=evidence)


@check(PROBERS, title="Admin prober endpoints", needs=("app.api_token",),
       explained_by=("celery", "redis"), permissions=("admin API token (Authorization: Token)",))
def check_probers(ctx):
    """Studio's admin-only ``/api/probers/*`` endpoints: workers, queue, unapplied changes, publishing.

    They answer what the old cloudprober alerted on: no Celery worker answering ping, ``LLEN celery`` at or
    above 50, unapplied changes while no task is active, a channel publishing for 2 h or more. Needs an
    admin user's API token in ``app.api_token`` (sent as ``Authorization: Token <key>``)."""
    if not ctx.profile.value("app.url"):
        return skip("through the API server's proxy the Authorization header carries our Kubernetes credentials, "
                    "so Studio's prober token cannot pass: set app.url (e.g. a kubectl port-forward) for this check",
                    reason=Reason.NOT_APPLICABLE)
    return reach.run_each(ctx, "app", _probers)


def _probers(ctx):
    token = str(ctx.config.get("api_token", ""))
    headers = {"Authorization": f"Token {token}"}
    figures: dict = {}
    problems: list[tuple[str, str]] = []
    names = ("celery_worker_status", "task_queue_status", "unapplied_changes_status", "publishing_status")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(names)) as pool:   # four slow answers must not add up
        answers = list(pool.map(lambda n: _get(ctx, f"/api/probers/{n}", headers=headers), names))
    for name, (resp, seconds, exc) in zip(names, answers):
        path = f"/api/probers/{name}"
        if exc is not None:
            return _no_answer(ctx, "the app", path, exc, seconds)
        if resp.status_code == 401:
            return error(f"{path} answered 401: app.api_token was not accepted", reason=Reason.AUTH,
                         evidence={"status": 401}, hint="Use the API token of an active admin user.")
        if resp.status_code == 403:
            return error(f"{path} answered 403: the token's user is not an admin", reason=Reason.FORBIDDEN,
                         evidence={"status": 403}, hint="The prober endpoints need an admin (is_admin) user.")
        if resp.status_code == 404:
            return skip(f"{path} answered 404: this Studio has no prober endpoints", evidence={"status": 404})
        if resp.status_code != 200:
            return fail(f"{path} answered {resp.status_code}", evidence={"status": resp.status_code},
                        commands=_app_commands(ctx))
        try:
            figures[name] = resp.json()
        except ValueError:
            return error(f"{path} did not answer JSON", evidence={"body": resp.text[:120]})
    shapes = {"celery_worker_status": (dict, ()), "task_queue_status": (dict, ("queued_task_count",)),
              "unapplied_changes_status": (dict, ("active_task_count", "unapplied_changes_count")),
              "publishing_status": (list, ())}
    for name, (kind, keys) in shapes.items():
        value = figures[name]
        if name in ("celery_worker_status", "publishing_status") and value is None:
            continue  # inspect().ping() answers None when no worker replies
        missing = [k for k in keys if not isinstance(value, dict) or not isinstance(value.get(k), int)]
        if not isinstance(value, kind) or missing:
            return error(f"/api/probers/{name} answered JSON without the expected "
                         f"{', '.join(keys) if keys else kind.__name__}: cannot read the figures",
                         evidence={"body": str(value)[:120]}, reason=Reason.UNEXPECTED,
                         hint="Is app.url Studio's app (a version with the prober endpoints)?")
    workers = figures["celery_worker_status"] or {}
    answering = sorted(w for w, v in workers.items() if isinstance(v, dict) and v.get("ok") == "pong")
    queued = figures["task_queue_status"]["queued_task_count"]
    changes = figures["unapplied_changes_status"]
    active, unapplied = changes["active_task_count"], changes["unapplied_changes_count"]
    publishing = figures["publishing_status"] or []
    evidence = {"workers_answering": answering, "queued_task_count": queued, "active_task_count": active,
                "unapplied_changes_count": unapplied, "publishing_channels": len(publishing)}
    if not answering:
        problems.append(("fail", "no Celery worker answered ping"))
    queue_alert = int(ctx.setting("prober_queue_alert", PROBER_QUEUE_ALERT))
    if queued >= queue_alert:
        problems.append(("warn", f"{queued} tasks queued (alert at {queue_alert})"))
    if unapplied > 0 and active == 0:
        problems.append(("warn", f"{unapplied} unapplied changes while no task is active"))
    if publishing:
        problems.append(("warn", f"{len(publishing)} channel(s) publishing"))
    if not problems:
        return ok(f"{len(answering)} worker(s) answer, {queued} queued, {unapplied} unapplied changes",
                  evidence=evidence)
    build = fail if any(p[0] == "fail" for p in problems) else warn
    return build("; ".join(p[1] for p in problems), evidence=evidence,
                 commands=[Command("studiodoctor check --layer celery", note="workers, queue depth, unacked")])
