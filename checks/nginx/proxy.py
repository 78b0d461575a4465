"""nginx in front of the app: nginx.reachable, nginx.app_proxy (reaches the app, within its read timeout),
nginx.static (/static/ assets)."""

from __future__ import annotations

import mimetypes

from studiodoctor import studio_facts as facts
from studiodoctor.model import Command, Reason, error, fail, ok, warn
from studiodoctor.discovery import reach
from studiodoctor.discovery.reach import PROXY_GRANT
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import (APP_PROXY, CLOUDFLARE_TIMEOUT_S, REACHABLE, STATIC, STUDIO_PROXY_READ_TIMEOUT_S, _base,
                     _commands, _curl, _is_nginx_error_page, _no_answer, _request)


# --- checks -------------------------------------------------------------------------------------------

@check(REACHABLE, title="nginx answers HTTP", permissions=("HTTP HEAD", PROXY_GRANT), smoke=True)
def check_reachable(ctx):
    """nginx accepts connections and answers HTTP at ``nginx.url`` (any status).

    The probe asks for ``/static/`` (or ``nginx.static_sample``), which nginx answers itself, so the answer
    does not depend on the app. If nginx does not answer, nothing in the pod does for users: the Service
    targets nginx's port 8080."""
    return reach.run_each(ctx, "nginx", _reachable)


def _reachable(ctx):
    nginx = ctx.config
    path = str(nginx.get("static_sample") or nginx.get("static_path") or facts.STATIC_PREFIX)
    resp, seconds, exc = _request(ctx, "HEAD", path)
    if exc is not None:
        return _no_answer(ctx, path, exc, seconds)
    server = resp.headers.get("server", "")
    evidence = {"path": path, "status": resp.status_code, "server": server, "latency_s": round(seconds, 3)}
    note = "" if "nginx" in server.lower() else f" (Server header {server!r} is not nginx: is nginx.url right?)"
    return ok(f"answers HTTP {resp.status_code} in {seconds * 1000:.0f} ms{note}", evidence=evidence)


@check(APP_PROXY, title="nginx reaches the app", depends_on=(REACHABLE,),
       explained_by=("app",), permissions=("HTTP GET", PROXY_GRANT), smoke=True)
def check_app_proxy(ctx):
    """``/stealthz`` through nginx answers 200: nginx reaches gunicorn (``upstream studio``, :8081).

    502 means nothing answers on the upstream port (gunicorn down or crashed: see the ``app`` layer).
    504 means the app did not answer within ``proxy_read_timeout``; the time nginx took to give up
    shows the configured timeout. Studio sets 100 s to match CloudFlare; nginx's 60 s default caused
    504/524s on slow endpoints (#4336). ``nginx.proxy_read_timeout`` states the expected value.
    ``/stealthz`` is asked ``--samples`` times: some 502/504s among 200s is a `fail`, "intermittent: 2 of 5
    answered 502", and a share of the answers near the timeout is a slow tail."""
    return reach.run_each(ctx, "nginx", _app_proxy)


def _app_proxy(ctx):
    from studiodoctor.probes import sampling

    expected = float(ctx.setting("proxy_read_timeout", STUDIO_PROXY_READ_TIMEOUT_S))
    samples = sampling.take(ctx, lambda: _request(ctx, "GET", "/stealthz"), endpoint=_base(ctx) + "/stealthz",
                            shared_as=f"GET {_base(ctx)}/stealthz",
                            failed=lambda resp, exc: exc is not None or resp.status_code != 200)
    if not samples.taken:
        return error(f"/stealthz was not asked: the check's deadline was near ({samples.cut})", reason=Reason.TIMEOUT)
    sample = samples.first_failure() if samples.all_failed else samples.first_success()
    if sample.exc is not None:
        return _no_answer(ctx, "/stealthz", sample.exc, sample.seconds,
                          evidence={"latency_s": round(sample.seconds, 3), "sampled": samples.evidence()})
    resp, seconds = sample.response, sample.seconds
    evidence = {"status": resp.status_code, "latency_s": round(samples.p50, 3),
                "server": resp.headers.get("server", ""), "sampled": samples.evidence()}
    if samples.intermittent:
        worst = samples.first_failure()
        via = f" (error page from {'nginx' if _is_nginx_error_page(worst.response) else 'the app'})" \
            if worst.response is not None and worst.status >= 500 else ""
        return fail(f"/stealthz through nginx {samples.intermittent_text()}{via}", evidence=evidence,
                    hint="Some requests through nginx fail: 502s now and then mean gunicorn drops connections "
                         "(workers crashing or restarting); 504s mean some answers outlast proxy_read_timeout. "
                         "See the app layer.",
                    commands=_commands(ctx, Command("studiodoctor check --layer app", note="the app directly")))
    if resp.status_code == 502:
        return fail("nginx answers 502 Bad Gateway for /stealthz: nothing answers on its upstream (gunicorn)",
                    evidence=evidence, hint="The app is down: see the app layer (gunicorn crashed, OOMKilled, "
                                            "or still starting).",
                    commands=_commands(ctx, Command("studiodoctor check --layer app", note="the app directly")))
    if resp.status_code == 504:
        inferred = int(seconds + 0.05)  # nginx gives up at a whole timeout; our overhead only adds
        evidence["inferred_proxy_read_timeout_s"] = inferred
        evidence["expected_proxy_read_timeout_s"] = expected
        note = ""
        if inferred < CLOUDFLARE_TIMEOUT_S - 5:
            note = (f"; that is below CloudFlare's {CLOUDFLARE_TIMEOUT_S:g} s, so slow requests get nginx's 504 "
                    f"before CloudFlare would answer 524")
        return fail(f"nginx answers 504 Gateway Timeout after {seconds:.1f} s: the app did not answer within "
                    f"proxy_read_timeout (about {inferred} s){note}", evidence=evidence,
                    hint="The app is too slow (see the app layer's latency). If nginx's timeout is below "
                         f"{STUDIO_PROXY_READ_TIMEOUT_S:g} s, set proxy_read_timeout 100s in location / (#4336).",
                    commands=_commands(ctx))
    if resp.status_code >= 500:
        upstream = "nginx" if _is_nginx_error_page(resp) else "the app"
        return fail(f"/stealthz through nginx answers {resp.status_code} (error page from {upstream})",
                    evidence=evidence, commands=_commands(ctx))
    if resp.status_code != 200:
        return fail(f"/stealthz through nginx answers {resp.status_code}: location / does not reach Studio",
                    evidence=evidence, commands=_commands(ctx))
    if samples.p50 >= expected * 0.8:
        return fail(f"/stealthz through nginx took {samples.p50:.1f} s (p50 of {samples.sent}), near "
                    f"proxy_read_timeout {expected:g} s", evidence=evidence, commands=_commands(ctx))
    tail = samples.tail(lambda s: s >= expected * 0.8)
    if tail:
        return fail(f"/stealthz through nginx has a slow tail: {len(tail)} of {samples.sent} took "
                    f"{max(s.seconds for s in tail):.1f} s, near proxy_read_timeout {expected:g} s "
                    f"({samples.timing_text()})", evidence=evidence, commands=_commands(ctx))
    return ok(f"/stealthz through nginx answers 200 in {samples.p50 * 1000:.0f} ms "
              f"({samples.sent} asked, {samples.timing_text()})", evidence=evidence)


@check(STATIC, title="nginx serves /static/ assets", depends_on=(REACHABLE,),
       permissions=("HTTP GET", PROXY_GRANT), produces=("static", "routing"))
def check_static(ctx):
    """A static asset comes back 200 with the content type of its extension.

    nginx serves ``/static/`` from the ``staticfiles`` volume that the ``collectstatic`` init container
    fills (``alias /app/contentworkshop_static/; expires 4h``). The asset is never assumed: it is
    ``nginx.static_sample`` if set, else one the app's own pages reference (``nginx.sample_page``, default
    ``/`` and the login page), else one from Django's ``staticfiles.json`` manifest, else one from nginx's
    autoindex of ``/static/``. A 404 for such an asset, or an empty ``/static/`` listing, means collectstatic
    did not run or the volume is not shared; an HTML answer means the request fell through to Django.
    When no asset can be found the check says so (``error``) instead of guessing."""
    return reach.run_each(ctx, "nginx", _static)


def _static(ctx):
    from studiodoctor.discovery.static_assets import static_sample

    sample = static_sample(ctx, _base(ctx))
    path = sample["path"]
    cmds = _commands(ctx, _curl(ctx, facts.STATIC_PREFIX, "GET"))
    if not path:
        evidence = {"tried": sample["tried"]}
        if sample["empty_listing"]:
            return fail(f"{facts.STATIC_PREFIX} is served but empty: collectstatic did not run or the "
                        f"staticfiles volume is not shared", evidence=evidence, commands=cmds,
                        hint="Check the collectstatic init container's logs and the nginx-proxy mount of "
                             "'staticfiles'.")
        return error(f"could not find a sample asset to probe ({'; '.join(sample['tried']) or 'nothing tried'})",
                     evidence=evidence, reason=Reason.NOT_CONFIGURED, commands=cmds,
                     hint="set nginx.static_sample to a file collectstatic ships (e.g. a <script src> of the "
                          "app's pages), or nginx.sample_page to a page that references one")
    resp, seconds, exc = _request(ctx, "GET", path)
    if exc is not None:
        return _no_answer(ctx, path, exc, seconds)
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    expected = (mimetypes.guess_type(path)[0] or "").lower()
    evidence = {"path": path, "source": sample["source"], "status": resp.status_code, "content_type": ctype,
                "expected_type": expected, "cache_control": resp.headers.get("cache-control", ""),
                "expires": resp.headers.get("expires", ""), "server": resp.headers.get("server", ""),
                "bytes": len(resp.content)}
    cmds = _commands(ctx, _curl(ctx, path))
    if resp.status_code == 404:
        return fail(f"{path} ({sample['source']}) is missing (404): collectstatic did not run or the staticfiles "
                    f"volume is not shared", evidence=evidence, commands=cmds,
                    hint="Check the collectstatic init container's logs and the nginx-proxy mount of 'staticfiles'.")
    if resp.status_code != 200:
        return fail(f"{path} ({sample['source']}) answered {resp.status_code}", evidence=evidence, commands=cmds)
    if ctype.startswith("text/html") and expected != "text/html":
        return fail(f"{path} came back as HTML, not {expected or 'the asset'}: the request reached Django, not "
                    f"the /static/ location", evidence=evidence, commands=cmds)
    if expected and ctype != expected and not (expected.endswith("javascript") and "javascript" in ctype):
        return warn(f"{path} served as {ctype or 'no content type'}, expected {expected}", evidence=evidence,
                    hint="Check nginx's mime.types include.", commands=cmds)
    if not resp.headers.get("cache-control") and not resp.headers.get("expires"):
        return warn(f"{path} served without Cache-Control or Expires (Studio's nginx sets expires 4h)",
                    evidence=evidence, commands=cmds)
    return ok(f"{path} ({sample['source']}) served as {ctype} ({len(resp.content)} bytes, "
              f"{resp.headers.get('cache-control', '')})", evidence=evidence)
