"""One JSON call to a SaaS web API (Sentry, New Relic's NerdGraph, Postmark), bounded by the check's
deadline, its failures turned into the Result the check returns (``Stop``).

Status classes follow DESIGN's result model: refused/timed out = ``fail`` (unreachable from here);
401 = ``error`` (our token was rejected); 403 = ``error`` naming the permission/scope we lack; any other
non-2xx or a body that is not JSON = ``error`` (we could not look). Nothing here ever prints a token:
headers are never put into evidence, and the redactor masks the configured secrets anyway."""

from __future__ import annotations

import time
from typing import Any

from ..model import Reason, Stop, error, guard, unreachable  # noqa: F401 - Stop, guard: re-exported


def call(ctx, vendor: str, method: str, url: str, *, headers: dict, what: str, permission: str,
         auth_hint: str, params: dict | None = None, json_body: Any = None,
         ok_statuses: tuple[int, ...] = (200,), cap: float | None = None) -> tuple[int, Any, float]:
    """(HTTP status, parsed JSON, seconds). GET for REST APIs; POST only for GraphQL *queries* (NerdGraph
    has no GET form), which the caller must have checked contain no mutation."""
    import httpx

    from .http import describe_error, run_client

    method = method.upper()
    if method not in ("GET", "POST"):
        raise ValueError(f"{method} is not used by the SaaS layers")
    if method == "POST" and "mutation" in str((json_body or {}).get("query", "")).lower():
        raise ValueError("only GraphQL queries are sent, never mutations")
    all_headers = {"Accept": "application/json",
                   "User-Agent": ctx.section("http").get("user_agent") or "studiodoctor", **headers}
    started = time.perf_counter()
    try:
        resp = run_client(ctx, True).request(method, url, headers=all_headers, params=params, json=json_body,
                                             timeout=httpx.Timeout(ctx.timeout(cap, margin=0.2)),
                                             follow_redirects=False)
    except httpx.HTTPError as exc:
        timed_out, text = describe_error(exc)
        raise Stop(unreachable(f"{vendor} API", _origin(url), text, timed_out=timed_out)) from None
    seconds = time.perf_counter() - started
    try:
        body = resp.json() if resp.content else None
    except ValueError:
        body = None
        if resp.status_code in ok_statuses:
            raise Stop(error(f"{vendor} answered {resp.status_code} reading {what} with a body that is not JSON "
                             f"({resp.headers.get('content-type', 'no content-type')}): is the API URL right?",
                             evidence={"url": _origin(url), "status": resp.status_code,
                                       "body": resp.text[:200]}, reason=Reason.UNEXPECTED)) from None
    if resp.status_code == 401:
        raise Stop(error(f"401 reading {what}: {vendor} rejected the token (invalid, expired or revoked)",
                         evidence={"status": 401, "detail": detail(body)}, reason=Reason.AUTH, hint=auth_hint))
    if resp.status_code == 403:
        raise Stop(error(f"403 reading {what}: the token lacks {permission}",
                         evidence={"status": 403, "detail": detail(body), "needs": permission},
                         reason=Reason.FORBIDDEN,
                         hint=f"Give the token {permission} (read-only), or use a token that has it."))
    if resp.status_code not in ok_statuses:
        raise Stop(error(f"{vendor} answered {resp.status_code} reading {what}: {detail(body) or resp.reason_phrase}"[:300],
                         evidence={"status": resp.status_code, "detail": detail(body)}))
    return resp.status_code, body, seconds


def detail(body: Any) -> str:
    """The error message of a vendor's error body (Sentry ``detail``, Postmark ``Message``, GraphQL ``errors``)."""
    if isinstance(body, dict):
        for key in ("detail", "Message", "message", "error"):
            if isinstance(body.get(key), str):
                return body[key][:200]
        errs = body.get("errors")
        if isinstance(errs, list) and errs and isinstance(errs[0], dict):
            return str(errs[0].get("message", ""))[:200]
    return ""


def unexpected(vendor: str, what: str, body: Any, expected: str) -> Stop:
    """A 2xx answer of the wrong shape: we could not look (error), never a guess."""
    shape = type(body).__name__ if not isinstance(body, dict) else "object with " + ", ".join(sorted(body)[:6])
    return Stop(error(f"unexpected answer from {vendor} reading {what}: expected {expected}, got {shape}"[:300],
                      evidence={"got": shape}, reason=Reason.UNEXPECTED))


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
