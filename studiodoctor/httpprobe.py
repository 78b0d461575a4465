"""HTTP probing shared by the layers: ``http.resolve`` (like curl --resolve), CA file, User-Agent,
one client per request (httpx reuses a pooled connection's SNI, see local-counterparts), deadlines."""

from __future__ import annotations

import functools
import ssl
from urllib.parse import urlsplit, urlunsplit


def split_target(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname or "", port


def resolved(ctx, url: str) -> tuple[str, dict[str, str], str | None]:
    """(url to connect to, extra headers, SNI name) after applying ``http.resolve``."""
    scheme, host, port = split_target(url)
    mapping = ctx.section("http").get("resolve") or {}
    target = mapping.get(f"{host}:{port}")
    if not target:
        return url, {}, None
    parts = urlsplit(url)
    default_port = port == (443 if scheme == "https" else 80)
    new = urlunsplit((parts.scheme, target, parts.path or "/", parts.query, parts.fragment))
    return new, {"Host": host if default_port else f"{host}:{port}"}, host if scheme == "https" else None


def ssl_context(ctx, verify: bool = True) -> ssl.SSLContext:
    """One context per (verify, CA file) per process: building one costs ~20 ms (loading the CA bundle)."""
    import os

    ca_file = (ctx.section("http").get("ca_file") or "") if verify else ""
    try:
        stamp = os.stat(ca_file).st_mtime_ns if ca_file else 0
    except OSError:
        stamp = 0  # a missing CA file fails in load_verify_locations, with its name
    return _ssl_context(verify, ca_file, stamp)


@functools.lru_cache(maxsize=8)
def _ssl_context(verify: bool, ca_file: str, stamp: int = 0) -> ssl.SSLContext:
    sslctx = ssl.create_default_context()
    if not verify:
        sslctx.check_hostname = False
        sslctx.verify_mode = ssl.CERT_NONE
        return sslctx
    if ca_file:
        sslctx.load_verify_locations(ca_file)
    else:
        try:
            import certifi

            sslctx.load_verify_locations(certifi.where())
        except ImportError:
            pass
    return sslctx


def request(ctx, method: str, url: str, *, headers: dict | None = None, verify: bool = True,
            timeout: float | None = None, follow_redirects: bool = False, resolve: bool = True,
            sni: str | None = None):
    """One request with a fresh client; only GET, HEAD and OPTIONS (read-only by design)."""
    import httpx

    method = method.upper()
    if method not in ("GET", "HEAD", "OPTIONS"):
        raise ValueError(f"{method} is not a read-only method")
    target, extra, sni_name = resolved(ctx, url) if resolve else (url, {}, None)
    all_headers = {"User-Agent": ctx.section("http").get("user_agent") or "studiodoctor"}
    all_headers.update(extra)
    all_headers.update(headers or {})
    extensions = {}
    if sni or sni_name:
        extensions["sni_hostname"] = sni or sni_name

    def send():
        limit = ctx.timeout(timeout)
        with httpx.Client(verify=ssl_context(ctx, verify), timeout=httpx.Timeout(limit),
                          follow_redirects=follow_redirects, trust_env=False) as client:
            req = client.build_request(method, target, headers=all_headers, extensions=extensions)
            return _bounded(client.send(req, stream=True), ctx)

    retry = getattr(ctx, "retry_once", None)
    return retry(send, blip=is_blip, what=f"{method} {url}") if retry else send()


# Most bytes of one answer read: a 10 MB error page or a runaway listing is cut, never read whole.
MAX_BODY = 2 * 1024 * 1024


def _bounded(resp, ctx):
    """Read at most MAX_BODY bytes of ``resp`` (streamed), stopping at the check's deadline too; a cut
    answer keeps what was read (JSON then fails to parse: an unreadable answer, never a hang)."""
    import time

    body = bytearray()
    try:
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) > MAX_BODY or time.monotonic() > getattr(ctx, "deadline", float("inf")):
                resp.extensions = {**resp.extensions, "studiodoctor_truncated": True}
                break
    finally:
        resp.close()
    resp._content = bytes(body[:MAX_BODY])  # what Response.read() would have set
    return resp


def is_blip(exc: BaseException) -> bool:
    """A failure one immediate retry of an idempotent read may cure: the connection was reset or
    closed before an answer (a pod restarting, a keep-alive race). Never a timeout: the deadline
    already went into it."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return False
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, ConnectionResetError)):
        return True
    text = str(exc).lower()
    return "reset by peer" in text or "connection aborted" in text


def probe_unsafe_method(ctx, method: str, url: str, *, headers: dict | None = None, timeout: float | None = None):
    """A request with a body-less write method (POST/PUT/DELETE), used only to confirm it is *refused*."""
    import httpx

    target, extra, sni_name = resolved(ctx, url)
    all_headers = {"User-Agent": ctx.section("http").get("user_agent") or "studiodoctor", **extra, **(headers or {})}
    extensions = {"sni_hostname": sni_name} if sni_name else {}
    with httpx.Client(verify=ssl_context(ctx), timeout=httpx.Timeout(ctx.timeout(timeout)),
                      trust_env=False) as client:
        req = client.build_request(method.upper(), target, headers=all_headers, content=b"",
                                   extensions=extensions)
        return client.send(req)


def describe_error(exc: BaseException) -> tuple[bool, str]:
    """(timed_out, one-line description) for a network exception from httpx or sockets."""
    import socket

    name = type(exc).__name__
    timed_out = "Timeout" in name or isinstance(exc, (socket.timeout, TimeoutError))
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if "Connection refused" in text or "Errno 111" in text:
        text = "connection refused"
    elif timed_out:
        text = "timed out"
    elif "Name or service not known" in text or "nodename nor servname" in text or "Errno -2" in text:
        text = "name does not resolve"
    return timed_out, f"{text}"
