"""Sampling: the same request asked several times of one endpoint, so that a fault that strikes one
request in three, or a slow tail, is seen and named instead of being missed by one lucky probe.

``take(ctx, probe, endpoint=...)`` calls ``probe()`` (which returns ``(response or None, seconds,
exception or None)``, the shape of every layer's request helper) up to ``count(ctx)`` times: the first
alone (a dead endpoint costs one request, not five), the rest at once (at most ``CONCURRENCY`` in
flight per backend across the whole run; after a first answer slower than ``SLOW_FIRST_S``, two more). It returns a ``Samples``: each answer's status and time,
the failure ratio, p50/p95, and the sentence a result can say ("intermittent: 2 of 5 answered 500").
Samples are taken per endpoint: a check that reaches several (each pod, each Traefik server) calls
``take`` for each and says which one failed.

Bounds, for production's sake: ``--samples N`` (or the profile's ``samples``, default 5, at most
``MAX_SAMPLES``) per endpoint and request; at most ``BACKEND_BUDGET`` sampled requests per backend
(``host:port``) in a run, after which a check gets one request; no sample starts in the last
``MIN_LEFT_S`` of the check's deadline. What was sent to the backend is in every ``Samples``
(``backend_requests``) and so in the evidence. The runner puts the check's samples in the result
(JSON ``samples`` {sent, failed, p50_ms, p95_ms}).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

DEFAULT_SAMPLES = 5
MAX_SAMPLES = 20
# sampled requests in flight at once to one backend, across all the checks of a run
CONCURRENCY = 6
# a first answer this slow gets at most SLOW_MORE more samples: three readings tell a slow tail from a
# slow endpoint, and more would only queue behind each other (and other checks) for seconds
SLOW_FIRST_S = 1.0
SLOW_MORE = 2
# most sampled requests one backend (host:port) gets in one run; past it, one request per probe
BACKEND_BUDGET = 60
# no sample starts with less than this left before the check's deadline
MIN_LEFT_S = 0.3
# the share of samples past a failing latency that makes a slow tail (1 of 5); warning-level readings
# need twice the share (2 of 5: one slow reading at that level is as likely the doctor's own load)
TAIL_RATIO = 0.2


def count(ctx) -> int:
    """How many samples each probe takes: ``--samples`` (the run's option), else the profile's ``samples``,
    else DEFAULT_SAMPLES; between 1 and MAX_SAMPLES."""
    raw = (getattr(ctx, "options", None) or {}).get("samples")
    if raw in (None, ""):
        data = getattr(getattr(ctx, "profile", None), "data", None) or {}
        raw = data.get("samples") if isinstance(data, dict) else None
    try:
        n = int(raw) if raw not in (None, "") else DEFAULT_SAMPLES
    except (TypeError, ValueError):
        n = DEFAULT_SAMPLES
    return max(1, min(MAX_SAMPLES, n))


@dataclass
class Sample:
    """One request's outcome: its status (None: no answer), seconds on the wire, and the error text."""

    status: int | None
    seconds: float
    error: str = ""
    timed_out: bool = False
    response: Any = None
    exc: BaseException | None = None
    failed: bool = False

    @property
    def what(self) -> str:
        """How this sample went wrong, in the words of a summary: "answered 500", "got no answer (timed out)"."""
        if self.status is not None:
            return f"answered {self.status}"
        return f"got no answer ({self.error or 'no response'})"


@dataclass
class Samples:
    """The samples of one request at one endpoint."""

    endpoint: str
    taken: list[Sample] = field(default_factory=list)
    backend: str = ""
    backend_requests: int = 0      # this run's sampled requests to the backend so far (this probe's included)
    asked: int = 0                 # how many samples were wanted
    cut: str = ""                  # why fewer were sent or counted ("" when all were)
    # seconds waited by samples after the first that the check's deadline cut before any answer: not
    # failures of the endpoint (our time ran out), not in the figures, but at least that slow (``tail``)
    overtime: list[float] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.taken)

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.taken if s.failed]

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def answered(self) -> list[Sample]:
        return [s for s in self.taken if not s.failed]

    @property
    def intermittent(self) -> bool:
        """Some samples failed, some did not."""
        return 0 < self.failed < self.sent

    @property
    def all_failed(self) -> bool:
        return self.sent > 0 and self.failed == self.sent

    def percentile(self, p: float) -> float:
        """The p-th percentile of the samples' seconds (nearest rank); 0 with no sample."""
        return percentile([s.seconds for s in self.taken], p)

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    def first_failure(self) -> Sample | None:
        """The commonest way the samples failed (its first occurrence), or None."""
        if not self.failures:
            return None
        commonest = Counter(s.what for s in self.failures).most_common(1)[0][0]
        return next(s for s in self.failures if s.what == commonest)

    def first_success(self) -> Sample | None:
        return next(iter(self.answered), None)

    def failure_text(self) -> str:
        """"2 of 5 answered 500" or "3 of 5 failed: 2 answered 500, 1 got no answer (timed out)"."""
        kinds = Counter(s.what for s in self.failures)
        if len(kinds) == 1:
            return f"{self.failed} of {self.sent} {next(iter(kinds))}"
        parts = ", ".join(f"{n} {what}" for what, n in kinds.most_common())
        return f"{self.failed} of {self.sent} failed: {parts}"

    def intermittent_text(self) -> str:
        """"intermittent: 2 of 5 answered 500 (p50 12 ms, p95 40 ms)"."""
        return f"intermittent: {self.failure_text()} ({self.timing_text()})"

    def timing_text(self) -> str:
        return f"p50 {self.p50 * 1000:.0f} ms, p95 {self.p95 * 1000:.0f} ms"

    def summary(self) -> dict:
        """The JSON shape of DESIGN.md: {sent, failed, p50_ms, p95_ms}."""
        return {"sent": self.sent, "failed": self.failed, "p50_ms": round(self.p50 * 1000, 1),
                "p95_ms": round(self.p95 * 1000, 1)}

    def evidence(self) -> dict:
        """What a result's evidence says about these samples: the figures, each sample's status and time,
        and the requests sent to the backend in this run."""
        out = {"endpoint": self.endpoint, **self.summary(),
               "statuses": [s.status if s.status is not None else (s.error or "no answer") for s in self.taken],
               "latencies_ms": [round(s.seconds * 1000, 1) for s in self.taken],
               "backend": self.backend, "backend_requests": self.backend_requests}
        if self.cut:
            out["cut"] = self.cut
        return out

    def tail(self, slow: Callable[[float], bool], ratio: float = TAIL_RATIO) -> list[Sample]:
        """The answered samples for which ``slow(seconds)`` holds, when they are at least ``ratio`` of the
        samples sent (a slow tail); [] otherwise."""
        slow_ones = [s for s in self.answered if slow(s.seconds)]
        slow_ones += [Sample(None, seconds, "cut by the check's deadline", True) for seconds in self.overtime
                      if slow(seconds)]
        if slow_ones and len(slow_ones) >= max(1, math.ceil(ratio * (self.sent + len(self.overtime)) - 1e-9)):
            return slow_ones
        return []


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p50 of five readings is the third, p95 the fifth); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def combined(all_samples: list[Samples]) -> dict | None:
    """One {sent, failed, p50_ms, p95_ms} for every sample a check took (JSON ``samples``)."""
    taken = [s for group in all_samples for s in group.taken]
    if not taken:
        return None
    seconds = [s.seconds for s in taken]
    return {"sent": len(taken), "failed": sum(1 for s in taken if s.failed),
            "p50_ms": round(percentile(seconds, 50) * 1000, 1), "p95_ms": round(percentile(seconds, 95) * 1000, 1)}


def backend_of(url: str) -> str:
    """``host:port`` of a URL: what the per-backend bounds count. A pod reached through the Kubernetes API
    server's proxy (``.../namespaces/NS/pods/NAME:PORT/proxy/...``) is its own backend, as it would be
    reached directly: the API server only relays, the pod answers (and bears the load)."""
    parts = urlsplit(url)
    proxied = _PROXIED.search(parts.path)
    if proxied:
        return f"{proxied['kind'][:-1]} {proxied['ident']} in {proxied['ns']}"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname or ''}:{port}"


_PROXIED = re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/(?P<kind>pods|services)/(?P<ident>[^/]+)/proxy(?:/|$)")


class _Backends:
    """Per-run bookkeeping of the backends sampled (kept in the run's ``Shared``): requests sent so far
    and a semaphore bounding the samples in flight."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent: Counter = Counter()
        self.gates: dict[str, threading.BoundedSemaphore] = {}

    def gate(self, backend: str) -> threading.BoundedSemaphore:
        with self.lock:
            return self.gates.setdefault(backend, threading.BoundedSemaphore(CONCURRENCY))

    def reserve(self, backend: str, wanted: int) -> int:
        """How many of ``wanted`` requests the backend's budget still allows (at least one)."""
        with self.lock:
            allowed = max(1, min(wanted, BACKEND_BUDGET - self.sent[backend]))
            self.sent[backend] += allowed
            return allowed

    def give_back(self, backend: str, unused: int) -> None:
        with self.lock:
            self.sent[backend] -= unused

    def total(self, backend: str) -> int:
        with self.lock:
            return self.sent[backend]


def _books(ctx) -> _Backends:
    shared = getattr(ctx, "shared", None)
    if shared is None:
        return _Backends()
    return shared.get("sampling:backends", _Backends)


def default_failure(resp, exc) -> bool:
    """No answer, or a 5xx answer."""
    return exc is not None or resp is None or resp.status_code >= 500


def take(ctx, probe: Callable[[], tuple], *, endpoint: str, n: int | None = None,
         failed: Callable[[Any, BaseException | None], bool] = default_failure,
         stop_on_no_answer: bool = True, shared_as: str = "") -> Samples:
    """Up to ``n`` (default ``count(ctx)``) samples of ``probe()`` at ``endpoint`` (a URL: its host:port
    is the backend the bounds count). The first is taken alone: with ``stop_on_no_answer`` an endpoint
    that refuses it (no answer other than a timeout) gets no more. ``failed(response, exception)`` says
    which samples failed (default: no answer or 5xx). The samples are recorded on the context for the
    result's ``samples``.

    ``shared_as`` (e.g. ``"GET http://app:8081/stealthz"``) names a request other checks of the run send
    too (the trace's nginx and app hops ask what nginx.app_proxy and app.stealthz ask): the first to ask
    takes the samples, the others wait for them and judge the same answers, so the backend gets them once."""
    wanted = count(ctx) if n is None else max(1, min(MAX_SAMPLES, int(n)))
    shared = getattr(ctx, "shared", None)
    if shared_as and shared is not None:
        raw = shared.get(f"sampling:{shared_as}:{wanted}",
                         lambda: _take(ctx, probe, endpoint, wanted, failed, stop_on_no_answer))
        out = Samples(endpoint=raw.endpoint, backend=raw.backend, backend_requests=raw.backend_requests,
                      asked=raw.asked, cut=raw.cut, overtime=list(raw.overtime),
                      taken=[Sample(s.status, s.seconds, s.error, s.timed_out, s.response, s.exc,
                                    bool(failed(s.response, s.exc))) for s in raw.taken])
    else:
        out = _take(ctx, probe, endpoint, wanted, failed, stop_on_no_answer)
    record = getattr(ctx, "record_samples", None)
    if record is not None:
        record(out)
    return out


def _take(ctx, probe, endpoint: str, wanted: int, failed, stop_on_no_answer: bool) -> Samples:
    from .http import describe_error

    backend = backend_of(endpoint)
    books = _books(ctx)
    allowed = books.reserve(backend, wanted)
    out = Samples(endpoint=endpoint, backend=backend, asked=wanted)
    if allowed < wanted:
        out.cut = (f"{allowed} of {wanted} sent: this run already sent {BACKEND_BUDGET} sampled requests "
                   f"to {backend}")
    gate = books.gate(backend)
    lock = threading.Lock()

    def one(later: bool = True) -> Sample | None:
        if ctx.remaining() < MIN_LEFT_S or not gate.acquire(timeout=max(0.0, ctx.remaining() - MIN_LEFT_S)):
            return None
        try:
            resp, seconds, exc = probe()
        finally:
            gate.release()
        sample = Sample(status=None if resp is None else resp.status_code, seconds=seconds, response=resp, exc=exc)
        if exc is not None:
            sample.timed_out, sample.error = describe_error(exc)
            if sample.timed_out:
                sample.error = f"no answer within {seconds:.1f} s"
                if later and ctx.remaining() < MIN_LEFT_S + 0.2:  # our deadline cut it, not the endpoint
                    with lock:
                        out.overtime.append(seconds)
                    return None
        sample.failed = bool(failed(resp, exc))
        with lock:
            out.taken.append(sample)
        return sample

    first = one(later=False)
    refused = first is not None and stop_on_no_answer and first.status is None and not first.timed_out
    if first is not None and allowed > 1 and not refused:
        # only as many as the deadline leaves room for, if each takes as long as the first did
        waves = int(max(0.0, ctx.remaining() - MIN_LEFT_S) // (first.seconds * 1.2 + 0.05))
        rest = min(allowed - 1, waves * CONCURRENCY, SLOW_MORE if first.seconds >= SLOW_FIRST_S else MAX_SAMPLES)
        if rest <= 0:
            pass
        elif rest == 1:
            one()
        else:
            threads = [threading.Thread(target=one, daemon=True, name=f"sample:{backend}") for _ in range(rest)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(max(0.05, ctx.remaining()))
    unused = allowed - out.sent - len(out.overtime)
    if unused > 0:
        books.give_back(backend, unused)
    if out.overtime:
        out.cut = (f"{len(out.overtime)} more cut by the check's deadline after "
                   f"{min(out.overtime):.1f} s without an answer (not counted as failures)")
    elif unused > 0 and not out.cut and first is not None and not refused:
        out.cut = f"{out.sent} of {wanted} sent: the check's deadline was near"
    elif first is None:
        out.cut = "none sent: the check's deadline was near"
    out.backend_requests = books.total(backend)
    return out


def timed(ctx, method: str, url: str, **kwargs) -> Callable[[], tuple]:
    """A probe for ``take``: one ``httpprobe.request`` returning (response or None, seconds on the wire,
    exception or None)."""
    from . import http as httpprobe

    def probe():
        t0 = time.monotonic()
        try:
            resp = httpprobe.request(ctx, method, url, **kwargs)
            return resp, httpprobe.network_seconds(resp, t0), None
        except Exception as exc:  # noqa: BLE001 - network errors are the sample's evidence
            return None, time.monotonic() - t0, exc

    return probe
