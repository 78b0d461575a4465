"""A staged connect: DNS -> TCP -> TLS/handshake -> auth, one stage after the other, each timed, and the
stage that failed named. Used by every layer that opens its own connection (redis, postgres, the email
layer's SMTP relay).

    conn = Staged("Redis", target.address, evidence, ctx=ctx)  # evidence gets "stages" and "stage"
    addrs = conn.dns(host, port, timeout, hint="...")        # raises Stop(unreachable...) naming the stage
    sock = conn.tcp(addrs[0], port, timeout, ...)
    with conn.stage("auth", timing="auth_ping"):             # the layer's own stage; its failure is mapped
        client.ping()                                        # by the layer (ev["stage"] is already set)
    conn.done()                                              # ev["stage"] = "ok"; conn.timings() for the text

A failed stage raises ``studiodoctor.model.Stop`` with the result (run the check under ``guard``).
With ``ctx`` each stage's time is also the check's network time (``ctx.add_network``: the result's
``network_ms``): these stages are round trips to the backend, timed by their own clock."""

from __future__ import annotations

import socket
import time
from contextlib import contextmanager

from ..model import RESOLVER_SILENT, Stop, unreachable
from .net import lookup_got_no_answer, resolve


def first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


class Staged:
    """The stages of one connect to ``what`` at ``address``; writes ``evidence["stages"]`` (``<stage>_ms``)
    and ``evidence["stage"]`` (the stage that failed, or ``ok``)."""

    def __init__(self, what: str, address: str, evidence: dict, *, commands=None, ctx=None):
        self.what, self.address, self.ev = what, address, evidence
        self.ctx = ctx
        self.commands = list(commands or [])
        self.stages: dict = evidence.setdefault("stages", {})

    @contextmanager
    def stage(self, name: str, *, timing: str = ""):
        """Time a stage; on any exception ``evidence["stage"]`` names it (the exception propagates)."""
        t0 = time.monotonic()
        try:
            yield
        except BaseException:
            self.ev["stage"] = name
            self.network(time.monotonic() - t0)
            raise
        self.stages[f"{timing or name}_ms"] = round(self.network(time.monotonic() - t0) * 1000, 1)

    def network(self, seconds: float) -> float:
        """Count ``seconds`` (a round trip that ended now) as the check's network time; returns it."""
        add = getattr(self.ctx, "add_network", None)
        if add is not None:
            add(seconds)
        return seconds

    def stop(self, stage: str, detail: str, *, timed_out: bool = False, **extra):
        """Raise Stop with the ``unreachable`` result of a failed stage."""
        self.ev["stage"] = stage
        raise Stop(unreachable(self.what, self.address, detail, timed_out=timed_out, evidence=self.ev, **extra))

    def dns(self, host: str, port: int, timeout: float, *, hint: str = "") -> list[str]:
        """The addresses of ``host`` (the resolver's answer bounded by ``timeout``)."""
        t0 = time.monotonic()
        try:
            addrs = resolve(host, port, timeout)
        except TimeoutError:
            self.network(time.monotonic() - t0)
            self.stop("dns", f"{RESOLVER_SILENT} for {host} within {timeout:g} s")
        except OSError as exc:
            self.network(time.monotonic() - t0)
            if lookup_got_no_answer(exc):
                self.stop("dns", f"{RESOLVER_SILENT} for {host} ({first_line(exc)})")
            self.stop("dns", f"DNS: cannot resolve {host}: {first_line(exc)}", hint=hint)
        self.stages["dns_ms"] = round(self.network(time.monotonic() - t0) * 1000, 1)
        self.ev["resolved"] = addrs
        return addrs

    def tcp(self, addr: str, port: int, timeout: float, *, timeout_hint: str = "", refused_hint: str = "",
            keep: bool = False) -> socket.socket | None:
        """Connect TCP to ``addr:port``; the socket is returned when ``keep``, else closed."""
        t0 = time.monotonic()
        try:
            sock = socket.create_connection((addr, port), timeout=timeout)
        except (socket.timeout, TimeoutError):
            self.network(time.monotonic() - t0)
            self.stop("tcp", "TCP connect timed out", timed_out=True, hint=timeout_hint, commands=self.commands)
        except OSError as exc:
            self.network(time.monotonic() - t0)
            detail = "connection refused" if isinstance(exc, ConnectionRefusedError) else first_line(exc)
            self.stop("tcp", f"TCP: {detail}", hint=refused_hint, commands=self.commands)
        self.stages["tcp_ms"] = round(self.network(time.monotonic() - t0) * 1000, 1)
        if keep:
            return sock
        sock.close()
        return None

    def done(self) -> str:
        """Mark the connect as complete; returns the timings as text ("dns 0.2 ms, tcp 0.3 ms, ...")."""
        self.ev["stage"] = "ok"
        return self.timings()

    def timings(self) -> str:
        return ", ".join(f"{k.removesuffix('_ms').replace('_', '+')} {v} ms" for k, v in self.stages.items())
