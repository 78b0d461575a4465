"""A hop's latency is the wire's, not the doctor's: app.stealthz and nginx.stealthz on a real nginx in front
of the stand-in app under real gunicorn read, in a run where other checks keep the interpreter busy (as SDK
model building and parsing did in a full run: 550-710 ms for these loopback hops), within a few ms of the
same hop probed alone; and every HTTP check reports ``network_ms`` next to ``duration_ms``."""

from __future__ import annotations

import statistics
import time

from studio_stack import *  # noqa: F401,F403  (fixtures: seeded, stack)

from checks.django_app import HEALTHZ, STEALTHZ
from checks.nginx import APP_PROXY, REACHABLE
from studiodoctor import engine
from studiodoctor.registry import Check, Registry, default_registry

HOPS = (STEALTHZ, APP_PROXY)
BUSY = 12       # checks that spend their time in Python while the hops are on the wire
BUSY_S = 1.5


def _busy(ctx):
    """A check that holds the GIL the way building SDK models does (pure Python, no I/O)."""
    from studiodoctor.model import ok

    end, x = time.monotonic() + BUSY_S, 0
    while time.monotonic() < end:
        for i in range(2000):
            x += i * i
    return ok("busy")


def _registry(busy: int) -> Registry:
    reg = Registry(loaded=True)
    for n in range(busy):  # registered (so started) first: the hops go on the wire while these run
        reg.register(Check(id=f"busy{n}.spin", title="busy", func=_busy))  # one backend each: all at once
    for cid in HOPS:
        reg.register(default_registry.load_plugins().get(cid))
    return reg


def _latencies(make_profile, stack, busy: int) -> dict[str, tuple[float, float, float]]:
    """{hop: (latency_s, network_ms, duration_ms)} of one run."""
    reg = _registry(busy)
    report = engine.check(make_profile(stack.sections(), timeout=10), check_ids=[*HOPS, *(
        f"busy{n}.spin" for n in range(busy))], registry=reg, options={})
    res = {r.id: r for r in report.results}
    for cid in HOPS:
        assert res[cid].status.value == "ok", (cid, res[cid].summary)
    return {cid: (res[cid].evidence["latency_s"], res[cid].network_ms, res[cid].duration_ms) for cid in HOPS}


def test_a_loopback_hop_reads_the_same_in_a_busy_run_as_alone(stack, make_profile):
    alone, busy = [], []
    for _ in range(5):  # in turn, so that the machine's own load (servers on this machine) weighs on both
        alone.append(_latencies(make_profile, stack, 0))
        busy.append(_latencies(make_profile, stack, BUSY))
    for cid in HOPS:
        alone_s = statistics.median(a[cid][0] for a in alone)
        busy_s = statistics.median(b[cid][0] for b in busy)
        # a few ms: the kernel's clock ticks (4 ms at HZ 250), and the servers share this machine's cores with
        # the busy checks (a real full run's hops answer from other machines)
        assert busy_s <= alone_s + 0.02, (
            f"{cid}: median latency {busy_s * 1000:.0f} ms in a busy run against {alone_s * 1000:.0f} ms alone; "
            f"(latency_s, network_ms, duration_ms) alone {[a[cid] for a in alone]}, busy {[b[cid] for b in busy]}")
        # what the run spent around the request is in duration_ms, and network_ms is the wire's part of it
        for b in busy:
            latency_s, network_ms, duration_ms = b[cid]
            assert network_ms is not None and network_ms <= duration_ms + 0.1
    # the busy checks did hold the interpreter while the hops ran: the hops' own durations show that wait,
    # and their network time leaves it out (timed around the request, the hops read this much more)
    waited = sorted(b[cid][2] - b[cid][1] for b in busy for cid in HOPS)
    assert waited[len(waited) // 2] > 40, f"the hops waited {waited} ms outside the wire: the busy checks " \
                                          f"did not hold the interpreter; busy runs {busy}"


def test_http_checks_report_network_ms_and_others_do_not(stack, make_profile):
    report = engine.check(make_profile(stack.sections(), timeout=10), layers=["app", "nginx"])
    data = {r.id: r.to_dict() for r in report.results}
    for cid in (STEALTHZ, HEALTHZ, REACHABLE, APP_PROXY):
        assert data[cid]["status"] == "ok" and 0 < data[cid]["network_ms"] <= data[cid]["duration_ms"] + 0.1, data[cid]
    timed = [r for r in data.values() if r["network_ms"] is not None]
    assert all(r["network_ms"] <= r["duration_ms"] + 0.1 for r in timed)
    assert all(r["network_ms"] is None for r in data.values() if r["status"] == "skip")


def test_a_kept_alive_connection_is_timed_by_the_kernel_not_the_clock(stack, make_profile, monkeypatch):
    """The run's pool keeps the connection of a first request for the next: that second exchange has no
    connect phase, yet its network time must be the wire's. Right after the second request is sent, another
    thread holds the GIL for HOLD_S (as a busy check would, asleep: no CPU taken from gunicorn, which answers
    from its own process meanwhile): the check's duration holds the wait, its network time does not."""
    import ctypes
    import threading

    from studiodoctor.model import ok
    from studiodoctor.probes import http as httpprobe
    from studiodoctor.runner import run_checks

    hold_s, held = 0.3, []
    real_trace = httpprobe.NetworkClock.trace

    def trace(self, name, info):
        real_trace(self, name, info)
        if name.endswith("send_request_headers.complete") and held == [False]:
            held[0] = True
            usleep = ctypes.PyDLL(None).usleep  # keeps the GIL for the call
            usleep.argtypes = [ctypes.c_uint]
            started = threading.Event()
            threading.Thread(target=lambda: (started.set(), usleep(int(hold_s * 1e6))), daemon=True).start()
            started.wait()  # the holder runs: this thread gets the GIL back only once the hold is over

    monkeypatch.setattr(httpprobe.NetworkClock, "trace", trace)
    url = f"{stack.app.url}/stealthz"
    reg = Registry(loaded=True)

    def get(ctx):
        if ctx.check.id == "hop.second":
            held.append(False)  # hold during this one
        return ok(str(httpprobe.request(ctx, "GET", url).status_code), evidence={"trips": ctx.round_trips})

    reg.check("hop.first", title="first GET")(get)
    reg.check("hop.second", title="second GET", depends_on=("hop.first",))(get)
    first, second = run_checks(list(reg.checks.values()), make_profile(), timeout=10)
    assert (first.summary, second.summary) == ("200", "200"), (first, second)
    assert second.evidence["trips"] == 1, second.evidence  # the kept-alive connection: no connect
    assert held == [True] and second.duration_ms >= hold_s * 1000, second.to_dict()
    # gunicorn answers /stealthz in a few ms; the clock around the request read the whole hold
    assert second.network_ms < hold_s * 1000 / 2, \
        f"the exchange read {second.network_ms:.0f} ms on the wire while the GIL was held {hold_s * 1000:.0f} " \
        f"ms: {second.to_dict()}"
