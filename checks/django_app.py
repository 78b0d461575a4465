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


def _sampled(ctx, path: str, good=lambda resp: resp.status_code == 200):
    """``path`` asked ``--samples`` times (``studiodoctor.probes.sampling``): a fault that strikes one request in
    three, or a slow tail, shows in the ratio."""
    from studiodoctor.probes import sampling

    def probe():
        got = _get(ctx, path)
        _watch_nginx(ctx, path, got[1] if got[2] is None else 0.0)  # a slow answer: see what nginx does meanwhile
        return got

    return sampling.take(ctx, probe, endpoint=_base(ctx) + path,
                         shared_as=f"GET {_base(ctx)}{path}",  # the trace's app hop asks /stealthz too
                         failed=lambda resp, exc: exc is not None or not good(resp))


def _partial(ctx, samples, path: str, evidence: dict, hint: str):
    """The `fail` of an endpoint that answers some samples and fails others."""
    return fail(f"{path} {samples.intermittent_text()}: some requests fail while others pass (one bad worker "
                f"or pod, a failing dependency, an overloaded app)",
                evidence={**evidence, "sampled": samples.evidence()}, hint=hint, commands=_app_commands(ctx))


def _sample(ctx, path: str, good=lambda resp: resp.status_code == 200):
    """(samples, the sample to judge, the Result to return at once or None): the judged sample is the first
    good answer, or the commonest failure when every sample failed; none answering is unreachable."""
    samples = _sampled(ctx, path, good)
    if samples.all_failed or not samples.taken:
        result, sample = _all_failed(ctx, samples, path)
        return samples, sample, result
    return samples, samples.first_success(), None


def _all_failed(ctx, samples, path: str):
    """(Result or None, the sample to judge): no answer at all is unreachable; a failing status is left to
    the check (with its response)."""
    if not samples.taken:
        return error(f"{path} was not asked: the check's deadline was near ({samples.cut})", reason=Reason.TIMEOUT), None
    sample = samples.first_failure()
    if sample.exc is not None:
        result = _no_answer(ctx, "the app", path, sample.exc, sample.seconds)
        result.evidence["sampled"] = samples.evidence()
        return result, None
    return None, sample


def _app_commands(ctx) -> list[Command]:
    from studiodoctor.backends.kubectl import command as kubectl

    return [
        Command(kubectl(ctx.profile, "get pods -l tier=frontend -o wide"), note="are the app pods Ready?"),
        Command(kubectl(ctx.profile, "logs -l tier=frontend -c app --tail=100"), note="gunicorn and Django errors"),
        reach.curl(ctx, "/stealthz", note="the app without the database"),
    ]


def limits(ctx) -> list[tuple[str, float]]:
    """The time limits in front of the app, tightest first: [(name, seconds), ...]. nginx's is
    ``nginx.proxy_read_timeout``, else the one nginx itself was seen to keep (``_nginx_gives_up``), else
    Studio's 100 s."""
    seen = getattr(ctx, "nginx_gave_up_s", None)
    nginx_t = float(ctx.section("nginx").get("proxy_read_timeout") or seen or NGINX_TIMEOUT_S)
    name = "nginx's proxy_read_timeout" + (" (seen: nginx answered 504)" if seen and not
                                            ctx.section("nginx").get("proxy_read_timeout") else "")
    edge_t = float(ctx.section("app").get("edge_timeout_s") or CLOUDFLARE_TIMEOUT_S)
    return sorted([(name, nginx_t), ("CloudFlare's origin timeout", edge_t)], key=lambda x: x[1])


# Most requests sent through nginx to see whether it gives up (504) before a slow app answers.
NGINX_TRIES = 3


def _watch_nginx(ctx, path: str, seconds: float) -> None:
    """The first answer of ``path`` slower than the warning threshold, when the profile does not say nginx's
    proxy_read_timeout, starts ``_nginx_gives_up`` beside the remaining samples (once per check and hop)."""
    warn_s = float(ctx.section("app").get("latency_warn_s") or DEFAULT_LATENCY_WARN_S)
    if seconds < warn_s or ctx.section("nginx").get("proxy_read_timeout") or getattr(ctx, "nginx_watch", None):
        return
    import threading

    ctx.nginx_watch = threading.Thread(target=_nginx_gives_up, args=(ctx, path, [seconds]), daemon=True,
                                       name="nginx-gives-up")
    ctx.nginx_watch.start()


def _nginx_gives_up(ctx, path: str, slow: list[float]) -> None:
    """Ask ``path`` through nginx in front of the same app (``nginx.url``, or the same pod's nginx through the
    API server) up to NGINX_TRIES times: a 504 after N s is nginx's proxy_read_timeout seen live, and the
    app's answers (``slow``: the slow ones' seconds) are judged against it (``ctx.nginx_gave_up_s``)."""
    nctx = reach.sibling(ctx, "nginx")
    if nctx is None:
        return
    for _ in range(NGINX_TRIES):
        if ctx.remaining() < 1.0:  # a timeout longer than the time left is not seen: nothing is concluded
            return
        t0 = time.monotonic()
        try:
            resp = reach.request(nctx, "GET", path, timeout=min(max(slow) + 1.0, ctx.remaining() - 0.2))
        except Exception:  # noqa: BLE001 - nginx did not answer: nothing seen of its timeout
            return
        if resp.status_code == 504:
            ctx.nginx_gave_up_s = round(time.monotonic() - t0, 1)
            return


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


def _latency_verdict(ctx, samples, summary_ok: str, evidence: dict, *, slow_hint: str):
    """The latency of answered samples: the median judged as one answer was (the whole app slow), then the
    tail by ratio (``sampling.TAIL_RATIO`` of the samples past the failing latency fails; twice that share
    past the warning threshold warns). Against nginx's timeout as stated, else as nginx is seen to keep it."""
    from studiodoctor.probes.sampling import TAIL_RATIO

    watch = getattr(ctx, "nginx_watch", None)
    if watch is not None:
        watch.join(timeout=max(0.0, ctx.remaining() - 0.3))
    evidence = {**evidence, "sampled": samples.evidence()}
    if getattr(ctx, "nginx_gave_up_s", None):
        evidence["nginx_gave_up_after_s"] = ctx.nginx_gave_up_s
    if judge_latency(ctx, samples.p50)[0] != "ok":
        return _latency_result(ctx, samples.p50, summary_ok, evidence, slow_hint=slow_hint)
    for level, ratio, build in (("fail", TAIL_RATIO, fail), ("warn", 2 * TAIL_RATIO, warn)):
        tail = samples.tail(lambda s, level=level: judge_latency(ctx, s)[0] in (level, "fail"), ratio)
        if tail:
            slowest = max(s.seconds for s in tail)
            return build(f"{summary_ok}, but with a slow tail: {len(tail)} of {samples.sent} took "
                         f"{judge_latency(ctx, slowest)[1]} ({samples.timing_text()})",
                         evidence={**evidence, "latency_s": round(samples.p50, 3), "limits_s": dict(limits(ctx))},
                         hint=slow_hint + " A slow tail while most answers are fast: some workers or pods are "
                                          "stuck (long requests, a lock), not the whole app.",
                         commands=_app_commands(ctx))
    return _latency_result(ctx, samples.p50, summary_ok, evidence, slow_hint=slow_hint)


@check(STEALTHZ, title="App answers /stealthz (no database)", needs=(),
       permissions=("HTTP GET", PROXY_GRANT), smoke=True, metrics=("latency_s;;;0",))
def check_stealthz(ctx):
    """gunicorn/Django answers ``/stealthz`` with ``<3``, without touching the database, fast.

    ``/stealthz`` is Studio's liveness endpoint: if it fails, the Python app itself is down (gunicorn
    crashed; note the image's ``|| sleep infinity`` keeps a dead container Running) and nginx answers 502.
    If it is slow, every request is slow: the app is overloaded (workers busy, CPU throttled), not the
    database. Latency near nginx's ``proxy_read_timeout`` or CloudFlare's 100 s fails, naming the limit
    (504 at nginx, 524 at CloudFlare). Thresholds: ``app.latency_warn_s``, ``app.latency_fail_s``.

    Like every app check it asks ``--samples`` times (profile key ``samples``, default 5; see
    ``studiodoctor.probes.sampling``): some answers failing is a `fail`, "intermittent: 2 of 5 answered 500";
    the median is judged as one answer would be, and a slow tail by its share (one sample in five past
    the failing latency fails, two in five past the warning threshold warn)."""
    return reach.run_each(ctx, "app", _stealthz)


def _stealthz(ctx):
    samples, sample, stop = _sample(ctx, "/stealthz")
    if stop is not None:
        return stop
    resp, seconds = sample.response, sample.seconds
    body = resp.text[:200]
    evidence = {"status": resp.status_code, "body": body.strip()[:60], "server": resp.headers.get("server", "")}
    if samples.intermittent:
        return _partial(ctx, samples, "/stealthz", {**evidence, "latency_s": round(samples.p50, 3)},
                        hint="/stealthz touches no database: the failing answers come from gunicorn itself "
                             "(a worker crashing or timing out, one pod of several). Read the app's logs.")
    if resp.status_code != 200:
        return fail(f"/stealthz answered {resp.status_code} in {seconds:.2f} s: the app is up but erroring "
                    f"even without the database", evidence={**evidence, "latency_s": round(seconds, 3),
                                                            "sampled": samples.evidence()},
                    hint="Read the app's logs: a failing middleware or settings error breaks every view.",
                    commands=_app_commands(ctx))
    if body.strip() != "<3":
        return warn(f"/stealthz answered 200 but not Studio's '<3' (got {body.strip()[:40]!r}): is app.url "
                    f"really Studio's gunicorn?", evidence={**evidence, "latency_s": round(seconds, 3)})
    return _latency_verdict(ctx, samples, "/stealthz answered <3", evidence,
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
    samples, sample, stop = _sample(ctx, "/healthz")
    if stop is not None:
        return stop
    resp, seconds = sample.response, sample.seconds
    evidence = {"status": resp.status_code, "latency_s": round(seconds, 3), "sampled": samples.evidence()}
    if samples.intermittent:
        return _partial(ctx, samples, "/healthz", evidence,
                        hint="Requests fail now and then: read the failing requests' tracebacks (the sentry layer, "
                             "the app's logs); the postgres layer says whether the database refuses some of them. "
                             "The readiness probe uses /healthz, so pods may flap between ready and unready.")
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
    evidence["latency_s"] = round(samples.p50, 3)
    if judge_latency(ctx, samples.p50)[0] != "ok":
        s_resp, s_seconds, s_exc = _get(ctx, "/stealthz", cap=5.0)
        if s_exc is None and s_resp.status_code == 200:
            evidence["stealthz_latency_s"] = round(s_seconds, 3)
            if judge_latency(ctx, s_seconds)[0] == "ok":
                return _latency_verdict(ctx, samples, "/healthz answered", evidence,
                                        slow_hint=f"/stealthz answers in {s_seconds * 1000:.0f} ms, so the "
                                                  f"database is what is slow: look for long queries and locks.")
    return _latency_verdict(ctx, samples, f"/healthz answered ({evidence['first_channel'][:40]!r})", evidence,
                            slow_hint="Both /stealthz and /healthz are slow: the app is overloaded.")


@check(LOGIN_PAGE, title="Login page answers the prober User-Agent", needs=(),
       explained_by=("postgres", "redis"), permissions=("HTTP GET", PROXY_GRANT))
def check_login_page(ctx):
    """The login page (``app.login_path``, default ``/en/accounts/``) answers 200 or 302.

    Studio renders an "unsupported browser" page for User-Agents that are neither a known browser nor
    one of ``HEALTH_CHECK_BROWSERS`` (``kube-probe``, ``GoogleHC``, ``Studio-Internal-Prober``): a prober
    must send such a UA (``http.user_agent``) to see real pages. A 5xx here with /stealthz ok means a
    view-level error (templates, translations, the session database); Studio's pages also write its Redis
    cache (a Redis at maxmemory makes the real login page answer 500), so a failure while PostgreSQL or Redis
    fails is theirs."""
    return reach.run_each(ctx, "app", _login_page)


def _login_page(ctx):
    path = str(ctx.setting("login_path", DEFAULT_LOGIN_PATH))
    samples, sample, stop = _sample(ctx, path, good=lambda resp: resp.status_code in (200, 301, 302, 303, 307, 308))
    if stop is not None:
        return stop
    resp, seconds = sample.response, samples.p50
    ua = ctx.section("http").get("user_agent") or "studiodoctor"
    evidence = {"path": path, "status": resp.status_code, "latency_s": round(seconds, 3), "user_agent": ua,
                "location": resp.headers.get("location", ""), "sampled": samples.evidence()}
    if samples.intermittent:
        return _partial(ctx, samples, path, evidence,
                        hint="Read the failing requests' tracebacks (the sentry layer, the app's logs).")
    if resp.status_code in (301, 302, 303, 307, 308) and judge_latency(ctx, seconds)[0] == "ok":
        return ok(f"{path} redirects ({resp.status_code}) to {resp.headers.get('location', '?')}", evidence=evidence)
    if resp.status_code not in (200, 301, 302, 303, 307, 308):
        return fail(f"{path} answered {resp.status_code}", evidence=evidence, commands=_app_commands(ctx),
                    hint="Read the app's logs for the view's traceback (Sentry has it too).")
    text = resp.text.lower()
    if any(m in text for m in UNSUPPORTED_MARKERS):
        return warn(f"{path} served Studio's unsupported-browser page to User-Agent {ua!r}", evidence=evidence,
                    hint="Set http.user_agent to contain 'Studio-Internal-Prober' (one of HEALTH_CHECK_BROWSERS).")
    return _latency_verdict(ctx, samples, f"{path} answered {resp.status_code}", evidence,
                            slow_hint="The page is slow while the prober's endpoints may not be: read the view's "
                                      "queries (New Relic's transaction traces, the postgres layer).")


@check(PROBERS, title="Admin prober endpoints", needs=("app.api_token",),
       explained_by=("celery", "redis", "postgres"), permissions=("admin API token (Authorization: Token)",))
def check_probers(ctx):
    """Studio's admin-only ``/api/probers/*`` endpoints: workers, queue, unapplied changes, publishing.

    They answer what the old cloudprober alerted on: no Celery worker answering ping, ``LLEN celery`` at or
    above 50, unapplied changes while no task is active, a channel publishing for 2 h or more. Needs an
    admin user's API token in ``app.api_token`` (sent as ``Authorization: Token <key>``). Studio answers them
    from its database (the token, its tables) and its broker: a failure while PostgreSQL, Redis or the
    workers fail is theirs. What they report is a `warn`, never a `fail`: these are Studio's readings of
    itself, and its broker readings are noisy (below); the celery layer reads the broker and the workers
    directly and decides."""
    if not ctx.profile.value("app.url"):
        return skip("through the API server's proxy the Authorization header carries our Kubernetes credentials, "
                    "so Studio's prober token cannot pass: set app.url (e.g. a kubectl port-forward) for this check",
                    reason=Reason.NOT_APPLICABLE)
    return reach.run_each(ctx, "app", _probers)


PROBER_FIGURES = {"celery_worker_status": (dict, ()), "task_queue_status": (dict, ("queued_task_count",)),
                  "unapplied_changes_status": (dict, ("active_task_count", "unapplied_changes_count")),
                  "publishing_status": (list, ())}


def _unread(name: str, value) -> bool:
    """An answer of the right shape that carries no reading: a null figure, or a ping nobody answered."""
    if name == "celery_worker_status":
        return not value
    keys = PROBER_FIGURES[name][1]
    return isinstance(value, dict) and any(k in value and value[k] is None for k in keys)


# the endpoints that read Studio's broker, in the order they are asked again: the ping last, since its
# broadcast is what leaves the stale reply behind
BROKER_READERS = ("task_queue_status", "unapplied_changes_status", "celery_worker_status")


def _ask_again_what_was_not_read(ctx, figures: dict, headers: dict) -> list[str]:
    """Ask again, one at a time, each endpoint that answered without a reading; the endpoints asked again.

    Measured on Studio's own code (its gunicorn and Celery on Redis, kombu 5.6): a broadcast (``inspect()``'s
    ping, active, reserved) leaves its last reply pending on the web process's pooled broker connection, and
    the next broker command there reads it. So ``task_queue_status`` answers ``{"queued_task_count": null}``
    (9 times in 12 on a healthy Studio, asked after the other three) and the ping hears no worker now and then
    (3 in 12). A null count is asked again once (it is cheap, and the null consumed the stale reply); the
    ping, up to twice more. The ping goes last, so it cannot spoil the others' second reading."""
    asked: list[str] = []
    for name in BROKER_READERS + BROKER_READERS[-1:]:
        if not _unread(name, figures.get(name)) or ctx.remaining() < 1.5:
            continue
        resp, _seconds, exc = _get(ctx, f"/api/probers/{name}", headers=headers)
        asked += [name] if name not in asked else []
        if exc is None and resp.status_code == 200:
            try:
                figures[name] = resp.json()
            except ValueError:
                pass
    return asked


def _ask_again_what_errored(ctx, answers: dict, headers: dict) -> list[str]:
    """Ask once more, one at a time and the ping last, each broker-reading endpoint that answered 5xx: the
    stale broker reply of ``_ask_again_what_was_not_read`` also makes Studio's view raise (measured: a fresh-
    clone CI saw ``celery_worker_status`` answer 500 on a healthy Studio). A second 5xx is the finding."""
    asked: list[str] = []
    for name in BROKER_READERS:
        resp = answers[name][0]
        if resp is not None and resp.status_code >= 500 and ctx.remaining() > 1.5:
            answers[name] = _get(ctx, f"/api/probers/{name}", headers=headers)
            asked.append(name)
    return asked


def _figure(value) -> str:
    return "?" if value is None else str(value)


def _unread_note(retried: list[str], unread: list[str]) -> str:
    if unread:
        return (f" ({', '.join(unread)} answered null twice: Studio's own count read a stale broker reply; "
                f"the celery layer reads the queue itself)")
    return f" ({', '.join(retried)} asked again after an answer without a reading)" if retried else ""


def _probers(ctx):
    token = str(ctx.config.get("api_token", ""))
    headers = {"Authorization": f"Token {token}"}
    figures: dict = {}
    problems: list[str] = []
    names = tuple(PROBER_FIGURES)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(names)) as pool:   # four slow answers must not add up
        answers = dict(zip(names, pool.map(lambda n: _get(ctx, f"/api/probers/{n}", headers=headers), names)))
    errored = _ask_again_what_errored(ctx, answers, headers)
    for name in names:
        resp, seconds, exc = answers[name]
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
            again = " (asked twice)" if name in errored else ""
            return fail(f"{path} answered {resp.status_code}{again}", evidence={"status": resp.status_code},
                        commands=_app_commands(ctx))
        try:
            figures[name] = resp.json()
        except ValueError:
            return error(f"{path} did not answer JSON", evidence={"body": resp.text[:120]})
    retried = errored + [n for n in _ask_again_what_was_not_read(ctx, figures, headers) if n not in errored]
    for name, (kind, keys) in PROBER_FIGURES.items():
        value = figures[name]
        if name in ("celery_worker_status", "publishing_status") and value is None:
            continue  # inspect().ping() answers None when no worker replies
        missing = [k for k in keys if not isinstance(value, dict) or k not in value
                   or not (value[k] is None or isinstance(value[k], int))]
        if not isinstance(value, kind) or missing:
            return error(f"/api/probers/{name} answered JSON without the expected "
                         f"{', '.join(keys) if keys else kind.__name__}: cannot read the figures",
                         evidence={"body": str(value)[:120]}, reason=Reason.UNEXPECTED,
                         hint="Is app.url Studio's app (a version with the prober endpoints)?")
    unread = [n for n in ("task_queue_status", "unapplied_changes_status") if _unread(n, figures[n])]
    workers = figures["celery_worker_status"] or {}
    answering = sorted(w for w, v in workers.items() if isinstance(v, dict) and v.get("ok") == "pong")
    queued = figures["task_queue_status"]["queued_task_count"]          # None: unread twice (warned above)
    changes = figures["unapplied_changes_status"]
    active, unapplied = changes["active_task_count"], changes["unapplied_changes_count"]
    publishing = figures["publishing_status"] or []
    evidence = {"workers_answering": answering, "queued_task_count": queued, "active_task_count": active,
                "unapplied_changes_count": unapplied, "publishing_channels": len(publishing)}
    if retried:
        evidence["asked_again"] = retried
    if unread:
        evidence["unread"] = unread
    if not answering:   # Studio's ping is the weaker reading (see above): celery.workers pings the broker itself
        problems.append("no Celery worker answered Studio's own ping (asked up to 3 times)")
    queue_alert = int(ctx.setting("prober_queue_alert", PROBER_QUEUE_ALERT))
    if queued is not None and queued >= queue_alert:
        problems.append(f"{queued} tasks queued (alert at {queue_alert})")
    if unapplied and active == 0:
        problems.append(f"{unapplied} unapplied changes while no task is active")
    if publishing:
        problems.append(f"{len(publishing)} channel(s) publishing")
    if not problems:
        return ok(f"{len(answering)} worker(s) answer, {_figure(queued)} queued, {_figure(unapplied)} unapplied "
                  f"changes{_unread_note(retried, unread)}", evidence=evidence)
    return warn("; ".join(problems) + _unread_note(retried, unread), evidence=evidence,
                commands=[Command("studiodoctor check --layer celery", note="workers, queue depth, unacked")],
                hint="These are Studio's own readings of itself; the celery layer's checks read the broker and "
                     "the workers directly and decide.")
