"""What a check gets: its layer's config, the whole profile, shared clients and a deadline."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


_NETWORK_LOCK = threading.Lock()


class Shared:
    """Per-run cache of clients and values shared by the checks of a run (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self._key_locks: dict[str, threading.Lock] = {}

    def get(self, key: str, factory: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._values:
                return self._values[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._values:
                    return self._values[key]
            value = factory()
            with self._lock:
                self._values[key] = value
            return value

    def prefetch(self, key: str, factory: Callable[[], Any]) -> None:
        """Start computing ``key`` now, in the background, when a check knows another will want it (a list
        a dependent check reads): that check's ``get`` then waits for this fetch instead of starting its
        own after the dependency finished. ``factory`` must turn its own failures into a value."""
        with self._lock:
            if key in self._values or key in self._key_locks:
                return
        threading.Thread(target=self.get, args=(key, factory), daemon=True, name=f"prefetch:{key}"[:60]).start()

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._values[key] = value

    def peek(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._values.get(key, default)


class CheckContext:
    """Passed to every check function. ``config`` is the check's layer section of the profile."""

    def __init__(self, check, profile, deadline: float, shared: Shared, options: dict | None = None,
                 results: dict | None = None):
        self.check = check
        self.profile = profile
        self.deadline = deadline
        self.shared = shared
        self.options = options or {}
        self._results = results if results is not None else {}
        self.retries: list[str] = []  # what was retried once after a blip; the runner adds it to the evidence
        # seconds on the wire of each timed request (httpprobe, saasapi): the runner reports their sum as
        # the result's ``network_ms``, next to its ``duration_ms``
        self.network_spans: list[tuple[float, float]] = []
        # round trips of those requests (a TCP connect, a TLS handshake, a request and its answer, a
        # pipeline of queries: one each): the result's ``evidence["round_trips"]``, what a slower network
        # multiplies
        self.round_trips = 0
        # what ``studiodoctor.probes.sampling.take`` sampled for this check; the runner sums it into ``samples``
        self.sampled: list = []

    def record_samples(self, samples) -> None:
        """Keep one endpoint's ``sampling.Samples`` for the result's ``samples``."""
        with _NETWORK_LOCK:
            self.sampled.append(samples)

    def add_network(self, seconds: float, round_trips: int = 1) -> None:
        """Record the network part of one request this check made, ending now (see ``network_ms``), and
        the round trips it took."""
        now = time.perf_counter()
        with _NETWORK_LOCK:  # a check may probe from several threads at once
            self.network_spans.append((now - seconds, now))
            self.round_trips += round_trips

    def network_ms(self) -> float | None:
        """Milliseconds on the wire: the union of the requests' network parts (concurrent requests of one
        check count once), so never more than the check's own duration. None: no timed request."""
        total, end = 0.0, float("-inf")
        for lo, hi in sorted(self.network_spans):
            lo = max(lo, end)
            if hi > lo:
                total += hi - lo
            end = max(end, hi)
        return total * 1000 if self.network_spans else None

    def retry_once(self, call: Callable[[], Any], *, blip: Callable[[BaseException], bool], what: str = "",
                   min_left: float = 0.5) -> Any:
        """``call()``, and once more if it raised a *blip* (a reset or refused connection, not a timeout)
        and at least ``min_left`` seconds remain: only for idempotent reads. The retry is recorded
        (``evidence["retried"]``) so a pass after a blip is never silent."""
        try:
            return call()
        except Exception as exc:
            if not blip(exc) or self.remaining() < min_left or self.retries:
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.retries.append(f"{what or 'first attempt'}: {type(exc).__name__}: {first}"[:200])
        return call()

    @property
    def config(self) -> dict[str, Any]:
        return self.profile.section(self.check.layer)

    def section(self, name: str) -> dict[str, Any]:
        return self.profile.section(name)

    def setting(self, key: str, default: Any) -> Any:
        """A key of this layer's section, or ``default`` when absent or empty."""
        value = self.config.get(key)
        return default if value in (None, "") else value

    def remaining(self) -> float:
        """Seconds left before this check's deadline (never below 0.05)."""
        return max(0.05, self.deadline - time.monotonic())

    def timeout(self, cap: float | None = None, margin: float = 0.0) -> float:
        """Seconds a network call may take: what is left (less ``margin``, kept back so the check can
        still report before its deadline), at most ``cap``; never below 0.05."""
        left = max(0.05, self.remaining() - margin)
        return min(left, cap) if cap else left

    def result_of(self, check_id: str):
        """The result of a check this one depends on (None if it did not run)."""
        return self._results.get(check_id)
