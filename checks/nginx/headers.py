"""nginx.headers: the headers nginx drops, adds or changes between the app and users."""

from __future__ import annotations

from studiodoctor.model import Reason, error, ok, skip, warn
from studiodoctor.discovery import reach
from studiodoctor.discovery.reach import PROXY_GRANT
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import HEADERS, REACHABLE, _SENSITIVE, _VOLATILE, _commands, _cookie_shape, _no_answer, _request


@check(HEADERS, title="Headers nginx drops, adds or changes",
       depends_on=(REACHABLE,), explained_by=("app",), permissions=("HTTP GET", PROXY_GRANT),
       produces=("headers", "ssl"))
def check_headers(ctx):
    """The same request (``nginx.compare_path``, default the login page) at nginx and at the app directly
    (``app.url``; through the API server: the same pod's gunicorn): response headers nginx drops, adds or
    changes are evidence.

    Expected: ``Server`` changes to nginx, nothing else of the app's is lost. Warns when nginx drops a
    security or caching header the app sent, or adds/changes Cache-Control or Vary on app responses.
    (nginx sends Django only ``Host`` and ``X-Forwarded-For``: no ``X-Forwarded-Proto``, so Django's
    ``request.is_secure()`` is False behind the proxies.)"""
    return reach.run_each(ctx, "nginx", _headers)


def _headers(ctx):
    path = str(ctx.setting("compare_path", str(ctx.section("app").get("login_path") or "/en/accounts/")))
    app_ctx = reach.sibling(ctx, "app")  # app.url, or the same pod's gunicorn through the API server
    if app_ctx is None:
        return skip("app.url is not set: no app to compare nginx's answer with", reason=Reason.NOT_CONFIGURED)
    app_base = reach.address(app_ctx)
    via_app, s_app, e_app = _request(app_ctx, "GET", path, cap=max(1.0, ctx.timeout() / 2))
    if app_ctx.refused is not None:
        ctx.refused = app_ctx.refused
    via_nginx, s_nginx, e_nginx = _request(ctx, "GET", path)
    if e_nginx is not None:
        return _no_answer(ctx, path, e_nginx, s_nginx)
    if e_app is not None:
        from studiodoctor.probes import http as httpprobe

        return error(f"could not compare headers: the app at {app_base} gave no answer "
                     f"({httpprobe.describe_error(e_app)[1]})", reason=Reason.UNREACHABLE,
                     evidence={"nginx_status": via_nginx.status_code})
    if via_nginx.status_code >= 500 or via_app.status_code >= 500:
        return error(f"could not compare headers: {path} answered {via_nginx.status_code} at nginx and "
                     f"{via_app.status_code} at the app", reason=Reason.UNEXPECTED,
                     evidence={"nginx_status": via_nginx.status_code, "app_status": via_app.status_code})
    a = {k.lower(): v for k, v in via_app.headers.items() if k.lower() not in _VOLATILE}
    n = {k.lower(): v for k, v in via_nginx.headers.items() if k.lower() not in _VOLATILE}
    for headers, resp in ((a, via_app), (n, via_nginx)):
        if "set-cookie" in headers:
            headers["set-cookie"] = _cookie_shape(resp.headers)
    dropped = sorted(set(a) - set(n))
    added = {k: n[k] for k in sorted(set(n) - set(a))}
    changed = {k: {"app": a[k], "nginx": n[k]} for k in sorted(set(a) & set(n)) if a[k] != n[k]}
    evidence = {"path": path, "app_status": via_app.status_code, "nginx_status": via_nginx.status_code,
                "dropped": dropped, "added": added, "changed": changed}
    worrying = ([f"dropped {h}" for h in dropped if h in _SENSITIVE] +
                [f"added {h}: {v}" for h, v in added.items() if h in ("cache-control", "vary", "set-cookie")] +
                [f"changed {h}" for h in changed if h in _SENSITIVE and h != "server"])
    if via_app.status_code != via_nginx.status_code:
        worrying.append(f"status {via_app.status_code} at the app but {via_nginx.status_code} at nginx")
    if worrying:
        return warn(f"nginx alters the app's answer for {path}: {'; '.join(worrying)}", evidence=evidence,
                    commands=_commands(ctx))
    summary = (f"{path}: nginx passes the app's headers through (dropped {len(dropped)}, added {len(added)}, "
               f"changed {', '.join(changed) or 'none'})")
    return ok(summary, evidence=evidence)
