"""The lab's faults: each breaks one thing the way production breaks, names the symptom users would
report and the layer a good diagnosis must name, and is reversible (``lab break`` / ``lab fix``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .launcher import LabError


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    layer: str                    # the layer `diagnose` must name as the likely cause
    symptoms: tuple[str, ...]     # what users would report (each is drilled)
    apply: Callable               # apply(lab, on: bool)
    # "cause": diagnose names `layer` as the likely cause. "inconclusive": the fault takes away our means to
    # look (a revoked token): honest diagnosis names no cause from it and lists `layer`'s step as inconclusive.
    # "healthy": nothing users see breaks (a cold cache): diagnosis must name no cause at all.
    expect: str = "cause"
    needs_studio: bool = False    # made with Studio's own code: only the variants that run it
    also: tuple[str, ...] = ()    # further layers a fault of several roots must name, in walk order, after `layer`
    # the fault is in one frontend pod of several: only a profile that reaches every pod (no app.url: the
    # API server's pod proxy, one pod at a time) can see it; an app.url is a port-forward to one pod
    every_pod: bool = False
    # the fault acts on what a readiness probe reaches (the app's /healthz: the app process, its answers, the
    # PostgreSQL it reads): `lab break`/`lab fix` return once the stand-in's kubelet has moved the pods' readiness
    readiness: bool = False

    @property
    def layers(self) -> tuple[str, ...]:
        return (self.layer, *self.also)


FAULTS: dict[str, Fault] = {}


def fault(name: str, description: str, layer: str, *symptoms: str, expect: str = "cause", also: tuple = (),
          every_pod: bool = False, needs_studio: bool = False, readiness: bool = False):
    def register(func):
        FAULTS[name] = Fault(name, description, layer, tuple(symptoms), func, expect, needs_studio, tuple(also),
                             every_pod, readiness)
        return func

    return register


# ---------------------------------------------------------------------------------- process faults
def _process(lab, kind: str, on: bool) -> None:
    """Stop (on) or start (off) ``kind``; a per-pod server (studio-app, studio-nginx) in every frontend pod."""
    for svc in lab.pods(kind) if kind in ("studio-app", "studio-nginx") else [lab[kind]]:
        if on:
            svc.stop(remove_data=False) if kind == "postgres" else svc.stop()
        elif not svc.alive():
            svc.start()


@fault("app-stopped", "gunicorn (the Studio app) is not running: nginx answers 502", "app", "502", readiness=True)
def _app_stopped(lab, on):
    _process(lab, "studio-app", on)


@fault("app-slow", "every app request takes 3 s while nginx's proxy_read_timeout is 2 s: 504s", "app", "slow", "504",
       readiness=True)
def _app_slow(lab, on):
    for app, nginx in zip(lab.pods("studio-app"), lab.pods("studio-nginx")):
        if on:
            app.set_fault(slow_s=3)
            nginx.set_timeout(2)
        else:
            app.clear_faults()
            nginx.set_timeout(100)


@fault("pod-500", "one frontend pod of several answers 500 on its pages (its static files manifest is missing) "
       "while /healthz passes, so it stays Ready and in the Service: a share of users get 500", "app",
       "python-error", every_pod=True)
def _pod_500(lab, on):
    from .launcher import wait_until

    bad = lab.pods("studio-app")[-1]  # not pod 0, the one a port-forward (the full profile's app.url) reaches
    if on:
        bad.set_fault(pages_error=True)
        # the fault is a Ready pod answering 500 (its /healthz passes): a pod still busy with an earlier
        # drill's slow requests would fail its probe and leave the Service, which is another story
        wait_until(lambda: lab["kube-api"].ready_behind(bad.address), 20, f"the pod behind {bad.address} is not Ready")
    else:
        bad.clear_faults()


@fault("app-intermittent", "every third request to each path but /stealthz answers 500: one probe is lucky",
       "app", "python-error", "502", readiness=True)
def _app_intermittent(lab, on):
    for app in lab.pods("studio-app"):  # the release's bug, in every frontend pod
        if on:
            app.set_fault(fail_every=3)
        else:
            app.clear_faults()


@fault("app-slow-tail", "every third request to each path but /stealthz takes 3 s while nginx's "
       "proxy_read_timeout is 2 s: a slow tail of 504s", "app", "slow", "504", readiness=True)
def _app_slow_tail(lab, on):
    for app, nginx in zip(lab.pods("studio-app"), lab.pods("studio-nginx")):
        if on:
            app.set_fault(slow_every=3, slow_every_s=3)
            nginx.set_timeout(2)
        else:
            app.clear_faults()
            nginx.set_timeout(100)


@fault("nginx-stopped", "Studio's internal nginx is not running", "nginx", "502")
def _nginx_stopped(lab, on):
    _process(lab, "studio-nginx", on)
    lab.ingress.wait_server_status("DOWN" if on else "UP")


@fault("nginx-and-redis-down", "two faults at once: Studio's internal nginx and Redis are both stopped (each "
       "explains part of the 502s: two roots)", "nginx", "502", also=("redis",))
def _nginx_and_redis_down(lab, on):
    _nginx_stopped(lab, on)
    _redis_down(lab, on)


@fault("redis-down", "Redis is not running: no task reaches a worker", "redis", "publishing")
def _redis_down(lab, on):
    _process(lab, "redis", on)
    if not on and not lab["celery"].alive():
        lab["celery"].start()


@fault("redis-full", "Redis is at its maxmemory with noeviction: writes fail", "redis", "python-error", "publishing")
def _redis_full(lab, on):
    if on:
        lab["redis"].fill_memory(99, policy="noeviction")
    else:
        lab["redis"].clear_fill()


@fault("postgres-down", "PostgreSQL is not running", "postgres", "database", "502", readiness=True)
def _postgres_down(lab, on):
    _process(lab, "postgres", on)


@fault("postgres-connections", "PostgreSQL has nearly all its connections taken", "postgres", "database",
       readiness=True)
def _postgres_connections(lab, on):
    pg = lab["postgres"]
    if on:
        in_use = pg.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")[0][0]
        # 96 % with our own session: past the check's 95 % fail line, one slot left for the app's query
        pid = pg.start_holder("connections", n=max(1, 96 - in_use))
        lab.extra.setdefault("holders", []).append(pid)
    else:
        from .launcher import stop_pid

        for pid in lab.extra.pop("holders", []):
            stop_pid(pid)


@fault("lock-idle-transaction", "a transaction left idle holds ACCESS EXCLUSIVE on the channel table, 3 sessions "
       "wait behind it (seconds old: below every threshold); /healthz reads that table", "postgres", "database", "502",
       readiness=True)
def _lock_idle_transaction(lab, on):
    from .studio_schema import CHANNEL_TABLE

    if on:
        lab.extra.setdefault("holders", []).append(lab["postgres"].start_holder("lock", 3, table=CHANNEL_TABLE))
    else:
        _stop_holders(lab)


def _stop_holders(lab) -> None:
    from .launcher import stop_pid

    for pid in lab.extra.pop("holders", []):
        stop_pid(pid)


@fault("worker-stopped", "the Celery worker is not running", "celery", "publishing")
def _worker_stopped(lab, on):
    _process(lab, "celery", on)


@fault("queue-backlog", "long tasks hold every worker slot while 200 wait", "celery", "publishing")
def _queue_backlog(lab, on):
    if on:
        lab["celery"].clog(200)
    else:
        lab["celery"].drain()


@fault("workers-saturated", "a long publish holds every worker slot while 3 tasks wait (young, far below the "
       "queue-depth threshold)", "celery", "publishing")
def _workers_saturated(lab, on):
    if on:
        lab["celery"].clog(3)
    else:
        lab["celery"].drain()


@fault("stuck-publish", "a channel has been publishing for 3 h (its worker died)", "celery", "publishing")
def _stuck_publish(lab, on):
    from .studio_schema import break_publishing, fix_publishing

    with lab["postgres"].connect() as conn:
        (break_publishing if on else fix_publishing)(conn)


# ---------------------------------------------------------------------------------- nginx and storage
def _nginx_fault(name: str):
    def apply(lab, on):  # a config rolled out to every frontend pod
        for nginx in lab.pods("studio-nginx"):
            nginx.set_fault(name, on)

    return apply


fault("nginx-databases-public", "nginx serves channel databases with a public Cache-Control", "nginx",
      "caching")(_nginx_fault("databases_public"))
fault("nginx-storage-headers", "nginx passes GCS's own Cache-Control on /content/storage/", "nginx",
      "headers")(_nginx_fault("storage_uncached"))
fault("static-missing", "/static/ is empty (collectstatic never ran)", "nginx", "static")(
    _nginx_fault("static_missing"))


def _gcs_fault(name: str):
    def apply(lab, on):
        from .servers.fake_gcs import apply_fault, revert_fault

        (apply_fault if on else revert_fault)(name, lab["fake-gcs"], lab["gcs-gate"])

    return apply


fault("cacheable-database", "a channel database object is public, max-age=3600 in the bucket", "gcs",
      "caching")(_gcs_fault("cacheable-database"))
fault("private-content", "a content object is not anonymously readable", "gcs", "content")(
    _gcs_fault("private-content"))
fault("public-listing", "anyone may list the bucket (#1838)", "gcs", "permissions")(_gcs_fault("public-listing"))
fault("bucket-missing", "the content bucket is gone", "gcs", "upload")(_gcs_fault("bucket-missing"))


# ---------------------------------------------------------------------------------- ingress and cluster
def _traefik_fault(name: str, wait: str = ""):
    """A fault of the lab's ingress (Traefik, or ingress-nginx in the variants that run it)."""
    def apply(lab, on):
        lab.ingress.set_fault(name, on)
        if wait:
            lab.ingress.wait_server_status(wait if on else "UP")

    return apply


fault("traefik-missing-service", "the router for the hostname points at a missing service", "traefik",
      "routing", "502")(_traefik_fault("missing-service"))
fault("traefik-server-down", "Traefik's service points at a dead backend", "traefik", "502")(
    _traefik_fault("server-down", "DOWN"))
fault("traefik-default-cert", "Traefik serves its default certificate for the hostname", "traefik", "ssl")(
    _traefik_fault("default-cert"))
fault("traefik-expired-cert", "the origin's Let's Encrypt certificate expired", "traefik", "ssl")(
    _traefik_fault("expired-cert"))


def _kube_fault(name: str):
    def apply(lab, on):
        lab["kube-api"].set_fault(name, on)

    return apply


fault("pod-crashloop", "the app container of the frontend pods is in CrashLoopBackOff", "kubernetes",
      "python-error", "email")(_kube_fault("crashloop"))
fault("replica-unready", "one frontend replica of three runs but fails its readiness probe", "kubernetes", "502")(
    _kube_fault("replica-unready"))
fault("pod-oomkilled", "frontend containers were OOMKilled", "kubernetes", "502")(_kube_fault("oomkilled"))
fault("pod-pending", "a frontend pod cannot be scheduled (insufficient memory)", "kubernetes", "502")(
    _kube_fault("pending"))
fault("deployment-unavailable", "the frontend deployment has no available replica (every pod failing readiness)",
      "kubernetes", "static", "503")(_kube_fault("deployment-unavailable"))
fault("traefik-oom", "the Traefik pod was OOMKilled (the seed: 502s when Traefik runs out of memory)",
      "traefik", "502")(_kube_fault("traefik-oom"))


# ---------------------------------------------------------------------------------- edge, DNS, CloudFlare
def _edge_fault(name: str):
    def apply(lab, on):
        from . import edge_lab

        edge_lab.apply(name, on, dns=lab["dns"], cf=lab["cloudflare_api"], edge=lab["edge"])

    return apply


for _name, _layer, _symptoms in (
        ("edge-cert-expired", "edge", ("ssl",)),
        ("edge-cert-wrong-san", "edge", ("ssl",)),
        ("ssl-flexible", "cloudflare", ("ssl",)),
        ("http-not-redirected", "cloudflare", ("ssl",)),
        ("redirect-loop", "edge", ("ssl",)),
        ("record-unproxied", "cloudflare", ("dns",)),
        ("record-missing", "cloudflare", ("dns",)),
        ("dns-servfail", "dns", ("dns",)),
        ("databases-hit", "cloudflare", ("caching",)),
        ("edge-522", "edge", ("502",)),
        ("edge-524", "edge", ("502",))):
    from .edge_lab import FAULTS as _EDGE

    fault(_name, _EDGE[_name], _layer, *_symptoms)(_edge_fault(_name))


# ---------------------------------------------------------------------------------- SaaS: Sentry, New Relic, Postmark
@fault("sentry-token-revoked", "the Sentry auth token was revoked: sentry must be inconclusive, never a cause",
       "sentry", "python-error", expect="inconclusive")
def _sentry_token_revoked(lab, on):
    lab["sentry-api"].revoke(on)


@fault("sentry-quota-exhausted", "Sentry's error quota is exhausted: every error event is rate-limited and lost",
       "sentry", "python-error")
def _sentry_quota(lab, on):
    lab["sentry-api"].exhaust_quota(on)


@fault("sentry-error-spike", "a release 45 min ago brought a new error, 900 events in the last hour", "sentry",
       "python-error")
def _sentry_spike(lab, on):
    lab["sentry-api"].error_spike(on)


@fault("newrelic-agent-silent", "the New Relic APM agent stopped reporting 3 h ago", "newrelic", "slow")
def _newrelic_silent(lab, on):
    lab["newrelic-api"].agent_silent(on)


@fault("newrelic-p95-regression", "New Relic: p95 five times a day earlier's, nothing down: degraded", "newrelic",
       "slow")
def _newrelic_p95(lab, on):
    lab["newrelic-api"].p95_regression(on)


@fault("newrelic-errors-after-deploy", "New Relic: ten times a day earlier's error rate since a deploy 20 min ago",
       "newrelic", "slow")
def _newrelic_errors(lab, on):
    lab["newrelic-api"].errors_after_deploy(on)


@fault("postmark-stream-paused", "Postmark's outbound message stream is archived: every send is rejected", "email",
       "email")
def _postmark_paused(lab, on):
    lab["postmark-api"].pause_stream(on)


@fault("postmark-bounce-rate", "20% of yesterday's mail bounced: above Postmark's 10% review limit", "email", "email")
def _postmark_bounces(lab, on):
    lab["postmark-api"].bounce_rate(on)


@fault("smtp-relay-unreachable", "the SMTP relay does not answer", "email", "email")
def _smtp_down(lab, on):
    _process(lab, "smtp-relay", on)


# ---------------------------------------------------------------------------------- Studio's own code (studio variant)
def _studio(name: str):
    def apply(lab, on):
        from . import studio_faults

        getattr(studio_faults, name)(lab, on)

    return apply


for _name, _func, _layer, _symptoms, _expect, _text in (
        ("publish-worker-killed", "kill_publish", "celery", ("publishing",), "cause",
         "a real publish whose worker process is SIGKILLed mid-way (the OOM killer)"),
        ("publish-raises", "publish_raises", "celery", ("publishing",), "cause",
         "a real publish that raises (its exercises hold assessment answers that are not JSON)"),
        ("changes-message-lost", "lost_message", "celery", ("publishing",), "cause",
         "6 changes whose apply_channel_changes message was lost (Redis restarted before a worker took it)"),
        ("publishing-flag-stuck", "publishing_flag", "celery", ("publishing",), "cause",
         "a channel's publishing flag set 3 h ago with no task behind it"),
        ("healthz-table-locked", "lock_healthz_table", "postgres", ("502",), "cause",
         "an idle transaction holds ACCESS EXCLUSIVE on the channel table /healthz reads"),
        ("cache-flushed", "flush_cache", "redis", ("python-error",), "healthy",
         "Studio's cache DB (Redis db 1) flushed: cold cache, nothing should break"),
        ("migration-not-applied", "migration_not_applied", "app", ("python-error",), "cause",
         "Studio's newest channel migrations unapplied: the app's model is ahead of the schema")):
    fault(_name, _text, _layer, *_symptoms, expect=_expect, needs_studio=True,
          readiness=_name in ("healthz-table-locked", "migration-not-applied"))(_studio(_func))


def skipped(lab, name: str) -> str:
    """Why fault ``name`` does not apply to the lab's variant ("" when it does)."""
    if FAULTS.get(name) is not None and FAULTS[name].needs_studio and not lab.variant.runs_studio:
        return "made with Studio's own code: drilled on the studio variant"
    return lab.variant.skip_faults.get(name, "")


def unreached(name: str, profile) -> str:
    """Why ``profile`` cannot see fault ``name`` at all ("" when it can): a one-pod fault behind an app.url."""
    url = profile.section("app").get("url") if profile is not None else ""
    if FAULTS[name].every_pod and url:
        return ("in one pod of several, and this profile's app.url reaches one pod (a port-forward): drill it "
                "with --profile lab-laptop, which reaches every pod through the API server's pod proxy")
    return ""


def get(name: str) -> Fault:
    if name not in FAULTS:
        import difflib

        close = difflib.get_close_matches(name, list(FAULTS), n=3)
        raise LabError(f"unknown fault {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                       + "; see `studiodoctor lab faults`")
    return FAULTS[name]


def set_fault(lab, name: str, on: bool) -> None:
    """Break (on) or fix (off) ``name`` in a running lab and remember it in the lab's state."""
    flt = get(name)
    why = skipped(lab, name)
    if why and on:
        raise LabError(f"fault {name} does not apply to the {lab.variant.name} lab: {why}")
    active = lab.extra.setdefault("faults", [])
    flt.apply(lab, on)
    if on and name not in active:
        active.append(name)
    elif not on and name in active:
        active.remove(name)
    lab.save()
    kube = lab.services.get("kube-api")
    if flt.readiness and kube is not None and kube.alive():
        # the stand-in's kubelet probes every periodSeconds and flips Ready after failureThreshold failures in a
        # row: the break (or fix) is done once its readiness has moved, awaited from the kubelet itself
        kube.await_kubelet()
