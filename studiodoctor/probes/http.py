"""HTTP probing shared by the layers: ``http.resolve`` (like curl --resolve), CA file, User-Agent,
deadlines, and the run's clients: one per (verification, SNI name) per run, whose pooled connections
the checks share (one TCP connect and one TLS handshake per host, not per request; a pooled connection
keeps the SNI it was opened with, so a client never mixes names, see local-counterparts)."""

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
    return context_for(verify, ctx.section("http").get("ca_file") or "")


def context_for(verify: bool, ca_file: str = "") -> ssl.SSLContext:
    """The per-process context that verifies (trusting ``ca_file`` too) or reads any certificate; a CA file
    rewritten since (its mtime) gets a new one. Shared by requests and certificate reads (tlsprobe)."""
    import os

    if not verify:
        return _ssl_context(False, "", 0)
    try:
        stamp = os.stat(ca_file).st_mtime_ns if ca_file else 0
    except OSError:
        stamp = 0  # a missing CA file fails in load_verify_locations, with its name
    return _ssl_context(True, ca_file, stamp)


@functools.lru_cache(maxsize=8)
def _ssl_context(verify: bool, ca_file: str, stamp: int = 0) -> ssl.SSLContext:
    if not verify:  # create_default_context's protocol and options, without loading the CA store (~25 ms of CPU)
        sslctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        sslctx.check_hostname = False
        sslctx.verify_mode = ssl.CERT_NONE
        return sslctx
    sslctx = ssl.create_default_context()
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
        clock = NetworkClock()
        client = run_client(ctx, verify, extensions.get("sni_hostname", ""))
        req = client.build_request(method, target, headers=all_headers, timeout=httpx.Timeout(limit),
                                   extensions={**extensions, "trace": clock.trace})
        try:
            resp = _bounded(client.send(req, stream=True, follow_redirects=follow_redirects), ctx)
        finally:
            clock.record(ctx)
        resp.extensions = {**resp.extensions, "network_s": clock.seconds}
        return resp

    retry = getattr(ctx, "retry_once", None)
    return retry(send, blip=is_blip, what=f"{method} {url}") if retry else send()


def run_client(ctx, verify: bool, sni: str = ""):
    """The run's httpx client for (``verify``, ``sni``): its pool keeps connections alive between the
    checks of the run (closed when the run's ``Shared`` goes). A context without ``shared`` (a bare
    call) gets a client of its own."""
    import httpx

    def build():
        client = httpx.Client(verify=ssl_context(ctx, verify), trust_env=False,
                              limits=httpx.Limits(max_connections=POOL_CONNECTIONS, max_keepalive_connections=8),
                              event_hooks={"response": [_clock_learns_the_connection]})
        if shared is not None:
            import weakref

            weakref.finalize(shared, client.close)
        return client

    shared = getattr(ctx, "shared", None)
    if shared is None or not hasattr(shared, "get"):
        return build()
    return shared.get(f"http.client:{int(bool(verify))}:{sni}", build)


# Connections one run's client keeps open at once (all hosts): the runner's caps bound them per host.
POOL_CONNECTIONS = 32


class NetworkClock:
    """The network part of a request: its TCP connect, TLS handshake and exchange (request sent to the
    answer's last byte), each redirect hop too. Building the client, loading CA bundles, waiting for a
    thread slot are not in it.

    httpcore's trace callbacks run only once this thread holds the GIL again, so when other checks of
    the run are busy in Python (parsing, TLS, an SDK) a clock read there would include that wait. On
    Linux each phase's end is therefore taken from the kernel's own account of the socket (TCP_INFO:
    how long ago the last segment was received and the request sent, read at the callback), which no
    wait for the GIL can move; the clock reads in the callbacks stay the bound (and the figure where
    TCP_INFO cannot be read).

    A request on a connection the run's pool kept alive has no connect phase, so the socket is learnt
    from the answer itself (``_clock_learns_the_connection``, before its body is read): without it the
    exchange of every reused connection was the clock's reading, GIL waits included (on a loaded
    machine a 3 ms loopback hop read 30-90 ms in a busy run)."""

    __slots__ = ("seconds", "trips", "_mark", "_request", "_stream")

    def __init__(self):
        self.seconds, self._mark, self._request, self._stream = 0.0, None, None, None
        self.trips = 0  # round trips: the connect, the handshake (two before TLS 1.3), each exchange

    def trace(self, name: str, info: dict) -> None:
        import time

        now = time.perf_counter()
        event = name.rsplit(".", 2)[-2:]
        phase, when = event if len(event) == 2 else (name, "")
        if phase in ("connect_tcp", "connect_unix_socket") and when == "started":
            self._mark = now
        elif phase == "connect_tcp" and when == "complete" and self._mark is not None:
            # the connect itself is one round trip (the kernel's RTT sample of the SYN); the clock's
            # reading also holds the waits for the GIL around getaddrinfo and connect
            self._stream = info.get("return_value")
            _, recv_ago, rtt = _tcp_info(self._stream)
            self.seconds += min(now - self._mark, rtt)
            self.trips += 1
            self._mark = min(now, max(self._mark, now - recv_ago))  # established, by the kernel
        elif phase == "start_tls" and when == "complete" and self._mark is not None:
            self._stream = info.get("return_value")
            recv_ago = _tcp_info(self._stream)[1]
            end = min(now, max(self._mark, now - recv_ago))  # the handshake's last segment, by the kernel
            self.seconds += end - self._mark
            self.trips += _handshake_trips(self._stream)
            self._mark = end
        elif phase == "send_request_headers" and when == "started":
            self._request = now
        elif phase == "receive_response_body" and when == "complete" and self._request is not None:
            self.seconds += exchanged(_socket_of(self._stream), self._request)
            self.trips += 1
            self._mark = self._request = None
        elif when == "failed":
            self._stop(now)

    def answered_on(self, stream) -> None:
        """The connection this exchange's answer came on (each redirect hop's own)."""
        if stream is not None:
            self._stream = stream

    def _stop(self, now: float) -> None:
        start = self._request if self._request is not None else self._mark
        if start is not None:
            self.seconds += now - start
        self._mark = self._request = None

    def record(self, ctx) -> None:
        import time

        self._stop(time.perf_counter())  # an answer cut short (deadline, size): up to now
        add = getattr(ctx, "add_network", None)
        if add is not None and self.seconds:
            add(self.seconds, round_trips=max(1, self.trips))


def _clock_learns_the_connection(response) -> None:
    """httpx response hook (each hop's answer, its headers read, its body not yet): tell the request's
    ``NetworkClock`` which connection answered, so a kept-alive connection's exchange is timed by the
    kernel too. Requests without a clock (the SaaS APIs') are left alone."""
    clock = getattr(response.request.extensions.get("trace"), "__self__", None)
    if isinstance(clock, NetworkClock):
        clock.answered_on(response.extensions.get("network_stream"))


def _handshake_trips(stream) -> int:
    """Round trips of a finished TLS handshake: one with TLS 1.3, two before."""
    try:
        return 1 if stream.get_extra_info("ssl_object").version() == "TLSv1.3" else 2
    except Exception:  # noqa: BLE001
        return 1


# The kernel's TCP timestamps count scheduler ticks (CONFIG_HZ 250: 4 ms); an exchange may read one short.
KERNEL_TICK = 0.004


def _socket_of(stream):
    """The socket under an httpcore network stream (None if there is none)."""
    try:
        return stream.get_extra_info("socket")
    except Exception:  # noqa: BLE001
        return None


def _tcp_info(stream) -> tuple[float, float, float]:
    """(seconds since the connection last sent data, since it last received data, its smoothed round
    trip time), from the kernel's TCP_INFO; (inf, 0, inf) where it cannot be read (not Linux, no
    socket), which leaves the clock's own reading."""
    return tcp_info(_socket_of(stream))


def tcp_info(sock) -> tuple[float, float, float]:
    """``_tcp_info`` of a socket (or an ssl.SSLSocket)."""
    import socket
    import struct

    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        # struct tcp_info: 8 u8, then u32 rto, ato, snd_mss, rcv_mss, unacked, sacked, lost, retrans,
        # fackets, last_data_sent, last_ack_sent, last_data_recv (ms ago), last_ack_recv, pmtu,
        # rcv_ssthresh, rtt (microseconds)
        fields = struct.unpack_from("8B16I", raw)
        return fields[8 + 9] / 1000, fields[8 + 11] / 1000, fields[8 + 15] / 1e6
    except Exception:  # noqa: BLE001
        return float("inf"), 0.0, float("inf")


def bytes_received(sock) -> int | None:
    """Bytes ``sock`` has received so far (TCP_INFO's tcpi_bytes_received, Linux 4.1+); None where it
    cannot be read. Two readings that agree: nothing came back between them."""
    import socket
    import struct

    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 136)
        # after the 104 bytes of ``tcp_info``: u32 rttvar .. total_retrans, then u64 pacing_rate,
        # max_pacing_rate, bytes_acked, bytes_received (at 128)
        return struct.unpack_from("Q", raw, 128)[0] if len(raw) >= 136 else None
    except Exception:  # noqa: BLE001
        return None


def exchanged(sock, t0: float) -> float:
    """Seconds from the last data ``sock`` sent to the last it received, as the kernel saw them (one tick
    more), never more than the clock's reading since ``t0`` (taken before that send), which is also the
    figure where TCP_INFO cannot be read: one exchange's time on the wire, whatever waits came after."""
    import time

    now = time.perf_counter()
    sent_ago, recv_ago, _ = tcp_info(sock)
    return min(now - t0, max(0.0, sent_ago - recv_ago) + KERNEL_TICK)


def answered_since(sock, t0: float) -> float:
    """Seconds from ``t0`` (time.perf_counter(), taken before the first byte went out) to the last byte
    ``sock`` received, as the kernel saw it (TCP_INFO): what the process waited after that (the GIL, the
    CPU of a loaded machine) is not in it. One tick more (the kernel counts in ticks), never more than
    the clock's own reading, which is also the figure where TCP_INFO cannot be read."""
    import time

    now = time.perf_counter()
    recv_ago = tcp_info(sock)[1]
    return min(now - t0, max(0.0, now - recv_ago - t0) + KERNEL_TICK)


def sent_at(sock) -> float:
    """When ``sock`` last sent data, on time.perf_counter()'s scale, by the kernel's account: one tick
    early, so never after the real send (a time measured from it is never short); -inf where TCP_INFO
    cannot be read."""
    import time

    now = time.perf_counter()
    return now - tcp_info(sock)[0] - KERNEL_TICK


def network_seconds(resp, t0: float) -> float:
    """Seconds a probe's answer took on the wire (``NetworkClock``), or since ``t0`` (time.monotonic())
    for a response that was not timed by ``request``."""
    import time

    seconds = (getattr(resp, "extensions", None) or {}).get("network_s")
    return seconds if seconds else time.monotonic() - t0


def warm(profile) -> None:
    """Build what the first request of a run would build inside a check (the TLS contexts and their CA
    bundle, httpx's transport): done once before the checks start, so its CPU is in no latency."""
    import httpx

    section = profile.section("http") if hasattr(profile, "section") else {}
    ca_file = (section.get("ca_file") or "") if isinstance(section, dict) else ""
    try:
        context_for(True, ca_file)
    except OSError:  # missing or unreadable: the checks report it, with its name
        return
    httpx.Client(verify=context_for(False), trust_env=False).close()


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

    from ..model import NAME_DOES_NOT_RESOLVE, RESOLVER_SILENT
    from .net import lookup_got_no_answer

    name = type(exc).__name__
    timed_out = "Timeout" in name or isinstance(exc, (socket.timeout, TimeoutError))
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    proxy = _proxy_set_for(exc)  # the machine may reach it only through that proxy: say so, the verdict stays
    note = (f" ({proxy} is set and not used: studiodoctor connects directly, so a proxy cannot change what it "
            "measures)") if proxy else ""
    if lookup_got_no_answer(exc):
        return False, f"{RESOLVER_SILENT} ({text}){note}"
    if "Connection refused" in text or "Errno 111" in text:
        text = "connection refused"
    elif timed_out:
        text = "timed out"
    elif "Name or service not known" in text or "nodename nor servname" in text or "Errno -2" in text:
        text = NAME_DOES_NOT_RESOLVE
    return timed_out, f"{text}{note}"


def _proxy_set_for(exc: BaseException) -> str:
    """The proxy variable this shell sets for the URL of the httpx request that raised ``exc`` (our clients
    never use one: ``trust_env=False``), or ""."""
    from .net import proxy_not_used

    try:
        request = exc.request  # httpx.RequestError; other clients' requests (GCS's requests) may use one
    except (AttributeError, RuntimeError):
        return ""
    if not type(request).__module__.startswith("httpx"):
        return ""
    host = request.headers.get("host") or request.url.netloc.decode()  # the name asked for, not http.resolve's
    return proxy_not_used(f"{request.url.scheme}://{host}")
