"""The result model: statuses, commands and results (see DESIGN.md, "Result model")."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """A check's verdict, worst last."""

    OK = "ok"
    SKIP = "skip"
    WARN = "warn"
    BLOCKED = "blocked"
    ERROR = "error"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def worst(cls, statuses) -> "Status":
        return max(statuses, key=lambda s: s.rank, default=cls.OK)


_RANK = {s: i for i, s in enumerate(Status)}

# Statuses that mean "this check could not conclude": the check itself, or one it depends on.
INCONCLUSIVE = frozenset({Status.ERROR, Status.BLOCKED})
# Statuses that make dependents blocked.
BROKEN = frozenset({Status.FAIL, Status.ERROR, Status.BLOCKED})

READ_ONLY = "read-only"
MUTATING = "mutating"
# Publishes Celery control messages (broadcast ping/inspect) and uses a temporary reply queue on the broker,
# as `celery inspect` does: writes to the broker's control channel, never to the app's queues or data.
BROKER_CONTROL = "broker-control"
# Sends a write-verb request that changes no state (e.g. a Kubernetes SelfSubjectAccessReview: created,
# answered, never stored): not a plain read, so declared as what it is.
EPHEMERAL_WRITE = "ephemeral-write"
SAFETY_CLASSES = (READ_ONLY, MUTATING, BROKER_CONTROL, EPHEMERAL_WRITE)


class Reason(str, enum.Enum):
    """Why a check did not say ok (machine-readable, in the JSON report)."""

    NONE = ""
    NOT_CONFIGURED = "not-configured"
    NOT_APPLICABLE = "not-applicable"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    AUTH = "auth"
    FORBIDDEN = "forbidden"
    UNEXPECTED = "unexpected-response"
    DEPENDENCY = "dependency"
    BUG = "bug"
    FINDING = "finding"


@dataclass(frozen=True)
class Command:
    """A copy-paste command for the runbook, tagged with its safety class."""

    text: str
    safety: str = READ_ONLY
    note: str = ""

    def __post_init__(self):
        if self.safety not in SAFETY_CLASSES:
            raise ValueError(f"unknown safety class {self.safety!r}")

    def to_dict(self) -> dict[str, str]:
        return {"text": self.text, "safety": self.safety, "note": self.note}


@dataclass
class Result:
    """What one check saw. Checks build it with ok()/warn()/fail()/error()/skip();
    the runner fills in id, layer, title and duration."""

    status: Status
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    hint: str = ""
    commands: list[Command] = field(default_factory=list)
    reason: str = ""
    id: str = ""
    layer: str = ""
    title: str = ""
    duration_ms: float = 0.0
    network_ms: float | None = None  # the wire's part of duration_ms (timed requests only; None: not timed)
    blocked_by: list[str] = field(default_factory=list)
    # where it was seen from: "local" (the machine running the command) or "cluster" (the in-cluster doctor)
    vantage: str = "local"
    metrics: list = field(default_factory=list)  # studiodoctor.metrics.Metric, filled by the runner
    # sampled probes (studiodoctor.probes.sampling): {sent, failed, p50_ms, p95_ms} over every sample, filled by the runner
    samples: dict | None = None
    # the symptoms this finding can produce when narrower than its check's ``produces`` (a cache policy
    # found by a check that also sees outages): None defers to the check (see studiodoctor.diagnosis.runbook)
    produces: tuple[str, ...] | None = field(default=None, compare=False)
    # when it started, ms after the run's start (the runner's; not in the JSON: benchmarks/timeline.py reads it)
    start_ms: float | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "layer": self.layer,
            "title": self.title,
            "status": self.status.value,
            "summary": self.summary,
            "evidence": self.evidence,
            "hint": self.hint,
            "commands": [c.to_dict() for c in self.commands],
            "duration_ms": round(self.duration_ms, 1),
            "network_ms": None if self.network_ms is None else round(self.network_ms, 1),
            "blocked_by": list(self.blocked_by),
            "reason": self.reason,
            "vantage": self.vantage,
            "metrics": [m.to_dict() for m in self.metrics],
            **({"samples": dict(self.samples)} if self.samples else {}),
        }


def _result(status: Status, default_reason: str):
    def build(summary: str, *, evidence: dict | None = None, hint: str = "",
              commands: list[Command] | None = None, reason: str | Reason = default_reason,
              produces: tuple[str, ...] | None = None) -> Result:
        return Result(status=status, summary=summary, evidence=dict(evidence or {}), hint=hint,
                      commands=list(commands or []), reason=str(getattr(reason, "value", reason)),
                      produces=None if produces is None else tuple(produces))

    build.__name__ = status.value
    build.__doc__ = f"A `{status.value}` result."
    return build


ok = _result(Status.OK, "")
warn = _result(Status.WARN, Reason.FINDING.value)
fail = _result(Status.FAIL, Reason.FINDING.value)
error = _result(Status.ERROR, Reason.UNEXPECTED.value)
skip = _result(Status.SKIP, Reason.NOT_APPLICABLE.value)


# How every probe's detail begins when a name lookup got no answer (see ``netprobe.lookup_got_no_answer``).
RESOLVER_SILENT = "the DNS resolver gave no answer"
NAME_DOES_NOT_RESOLVE = "name does not resolve"  # a definite answer: the name does not exist (NXDOMAIN)


def unreachable(what: str, address: str, detail: str, *, timed_out: bool = False, **extra) -> Result:
    """A `fail` for an endpoint that refused or never answered: "unreachable from here".

    A name the resolver gave no answer for (``detail`` starts with RESOLVER_SILENT: a lookup that timed
    out or got SERVFAIL) is an `error` instead: the endpoint was never tried, and the silence may be this
    machine's resolver (offline, a VPN's DNS) as well as the name's own DNS servers, which the dns layer
    tells apart. A definite "no such name" stays a `fail`."""
    evidence = {"address": address, "error": detail, **extra.pop("evidence", {})}
    if detail.startswith(RESOLVER_SILENT):
        extra["hint"] = (f"{what} was never tried, so nothing is known about it. Either this machine's resolver "
                         "(/etc/resolv.conf, a VPN's DNS) or the name's DNS servers failed: `studiodoctor check "
                         "--layer dns` asks the configured resolvers, `getent hosts NAME` asks this machine's.")
        return error(f"cannot tell whether {what} at {address} answers: {detail}", evidence=evidence,
                     reason=Reason.UNREACHABLE, **extra)
    verb = "timed out" if timed_out else "unreachable from here"
    return fail(f"{what} at {address} {verb}: {detail}", evidence=evidence,
                reason=Reason.TIMEOUT if timed_out else Reason.UNREACHABLE, **extra)


class Stop(Exception):
    """"Stop with this result": raised anywhere under a check (an API call that failed, a client that
    cannot be built, a connect stage that failed), it carries the Result the check returns (see ``guard``)."""

    def __init__(self, result: Result):
        super().__init__(result.summary)
        self.result = result


def guard(fn):
    """Decorator for check functions: a ``Stop`` raised anywhere inside becomes the check's result."""

    def run(ctx):
        try:
            return fn(ctx)
        except Stop as stop:
            return stop.result

    run.__name__, run.__qualname__, run.__doc__, run.__module__ = fn.__name__, fn.__qualname__, fn.__doc__, fn.__module__
    run.__wrapped__ = fn
    return run
