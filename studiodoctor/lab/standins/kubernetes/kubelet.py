"""The stand-in's kubelet: a background prober (one thread per probed container, as the kubelet's probe
workers) that runs each played pod's httpGet readinessProbe as its own fields say and keeps the pod's
readiness; the API's reads only look at that state (no probe on the read path).

Each container's probe follows ``initialDelaySeconds`` (after the container's ``startedAt``),
``periodSeconds``, ``timeoutSeconds`` (a slower answer is a failure), ``failureThreshold`` failures in a row
to leave Ready and ``successThreshold`` successes in a row to come back, with Kubernetes' defaults when a
field is absent (0, 10, 1, 3, 1). Before its first result a container is as the state file says (the lab's
pods were started before the stand-in, their kubelet's history with them). A probe target that changes
(another address, port or path) is a new container to the kubelet: its state starts afresh.

``snapshot()`` is what the API shows; ``status()`` (``GET /_lab/kubelet``, the lab's own route) is the
prober's progress, so the lab awaits a flip from a signal: every target's probe ``started``/``finished``
counts and whether its readiness is ``settled`` (no flip under way: a Ready container whose last probe passed,
or a not-Ready one whose last probe failed).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .network import probe_http, readiness_targets

PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3,
                  "successThreshold": 1}   # Kubernetes' own, for a field the probe leaves out
RECONCILE_S = 0.1                          # how soon a probe target the state file adds or removes is seen


def probe_fields(probe: dict) -> dict:
    """The probe's timing fields, Kubernetes' defaults filled in (a value that is not a number: the default)."""
    out = {}
    for name, default in PROBE_DEFAULTS.items():
        try:
            value = float(probe.get(name))
        except (TypeError, ValueError):
            value = default
        out[name] = max(value, 1 if name != "initialDelaySeconds" else 0)
    return out


@dataclass
class Probed:
    """One container's readiness as the kubelet keeps it."""
    namespace: str
    pod: str
    container: str
    fields: dict
    ready: bool | None = None     # None: no verdict yet (the pod as the state file says)
    failures: int = 0             # in a row
    successes: int = 0            # in a row
    started: int = 0              # probes begun
    finished: int = 0             # the number (1, 2, ...) of the last probe whose result is in
    series: int = 0               # failures since the container was last seen healthy (the event's count)
    first_failure: float = 0.0    # wall clock of the series' first failure
    last_failure: float = 0.0
    message: str = ""             # the last failure's message, as the kubelet words it
    since: float = 0.0            # wall clock of the last flip
    stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def record(self, message: str, number: int) -> None:
        now = time.time()
        self.finished = number
        if message:
            self.failures, self.successes, self.message = self.failures + 1, 0, message
            self.first_failure = self.first_failure if self.series else now
            self.series, self.last_failure = self.series + 1, now
            if self.ready is not False and self.failures >= self.fields["failureThreshold"]:
                self.ready, self.since = False, now
        else:
            self.failures, self.successes = 0, self.successes + 1
            if self.ready is not True and self.successes >= self.fields["successThreshold"]:
                self.ready, self.since = True, now
            if self.ready:
                self.series = 0

    @property
    def settled(self) -> bool:
        if self.ready is False:
            return self.successes == 0
        return self.failures == 0 and (self.ready is True or self.finished > 0)

    def view(self) -> dict:
        return {"namespace": self.namespace, "pod": self.pod, "container": self.container, "ready": self.ready,
                "failures": self.failures, "successes": self.successes, "started": self.started,
                "finished": self.finished, "settled": self.settled, "series": self.series,
                "first_failure": self.first_failure, "last_failure": self.last_failure,
                "message": self.message, "since": self.since, **self.fields}


def _started_at(pod: dict, container: str) -> float | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == container:
            stamp = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
            try:
                return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
            except ValueError:
                return None
    return None


class Kubelet:
    """The prober of the state file's pods; ``start()`` its threads, ``stop()`` them."""

    def __init__(self, state_file: str | Path):
        self.state_file = Path(state_file)
        self.lock = threading.Lock()
        self.targets: dict[tuple, Probed] = {}
        self.generation = 0     # probes finished, all containers together
        self.version = 0        # bumps whenever what the API shows may change
        self._done = threading.Event()
        self._file_key = None

    def start(self) -> "Kubelet":
        threading.Thread(target=self._run, daemon=True, name="kubelet").start()
        return self

    def stop(self) -> None:
        self._done.set()
        with self.lock:
            for probed in self.targets.values():
                probed.stop.set()

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                self.reconcile()
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass   # a state file half-written by a test, or not an object: the next look reads it again
            self._done.wait(RECONCILE_S)

    def reconcile(self) -> None:
        """Start a probe worker for each new target of the state file, stop those of targets gone."""
        st = self.state_file.stat()
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key == self._file_key:
            return
        state = json.loads(self.state_file.read_text())
        self._file_key = key
        wanted = {}
        for pod, container, address, path, shown, probe in readiness_targets(state):
            meta = pod["metadata"]
            wanted[(meta["namespace"], meta["name"], container, address, path)] = (pod, shown, probe)
        with self.lock:
            for gone in set(self.targets) - set(wanted):
                self.targets.pop(gone).stop.set()
                self.version += 1
            for target, (pod, shown, probe) in wanted.items():
                if target not in self.targets:
                    probed = Probed(target[0], target[1], target[2], probe_fields(probe))
                    self.targets[target] = probed
                    first = (_started_at(pod, target[2]) or time.time()) + probed.fields["initialDelaySeconds"]
                    threading.Thread(target=self._work, args=(probed, target[3], target[4], shown, first),
                                     daemon=True, name=f"probe {target[1]}/{target[2]}").start()

    def _work(self, probed: Probed, address: str, path: str, shown: str, first: float) -> None:
        """Probe every ``periodSeconds`` from ``first`` (wall clock); a probe slower than a period delays
        the next one, as the kubelet's ticker drops the ticks it missed."""
        if probed.stop.wait(max(0.0, first - time.time())):
            return
        while True:
            began = time.monotonic()
            with self.lock:
                probed.started += 1
                number = probed.started
            message = probe_http(address, path, shown, probed.fields["timeoutSeconds"])
            with self.lock:
                if probed.stop.is_set():
                    return
                before = (probed.ready, probed.series)
                probed.record(message, number)
                self.generation += 1
                if (probed.ready, probed.series) != before:
                    self.version += 1
            if probed.stop.wait(max(0.0, began + probed.fields["periodSeconds"] - time.monotonic())):
                return

    def snapshot(self) -> tuple[int, dict[tuple, dict]]:
        """(version, {(namespace, pod, container): the container's readiness}) for the read path."""
        with self.lock:
            return self.version, {(p.namespace, p.pod, p.container): p.view() for p in self.targets.values()}

    def status(self) -> dict:
        with self.lock:
            return {"generation": self.generation, "version": self.version,
                    "targets": [p.view() for p in self.targets.values()]}
