"""The report (JSON schema ``studiodoctor.report/1``) and the exit codes (Nagios-compatible)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .model import INCONCLUSIVE, Result, Status
from .secrets import Redactor

SCHEMA = "studiodoctor.report/1"


class ExitCode(enum.IntEnum):
    OK = 0        # all ok (skips allowed)
    WARN = 1      # worst is warn
    FAIL = 2      # any fail
    UNKNOWN = 3   # an error or blocked result and no fail; bad config; usage error


def exit_code_for(results: list[Result]) -> ExitCode:
    statuses = {r.status for r in results}
    if Status.FAIL in statuses:
        return ExitCode.FAIL
    if statuses & INCONCLUSIVE:
        return ExitCode.UNKNOWN
    if Status.WARN in statuses:
        return ExitCode.WARN
    return ExitCode.OK


@dataclass
class Report:
    command: str
    profile: str
    started_at: str
    duration_ms: float
    results: list[Result]
    symptom: str | None = None
    runbook: list[dict[str, Any]] = field(default_factory=list)
    likely_cause: dict[str, Any] | None = None
    likely_causes: list[dict[str, Any]] = field(default_factory=list)        # every root; [0] is likely_cause
    unrelated_failures: list[dict[str, Any]] = field(default_factory=list)   # failing, cannot make the symptom
    notes: list[str] = field(default_factory=list)
    smoke: dict[str, Any] | None = None                       # smoke's budget and hysteresis (JSON "smoke")
    transitions: dict[str, str] = field(default_factory=dict)  # check id -> new/still-bad/recovered/pending/ok
    since_good: dict[str, Any] | None = None                   # diagnose --since-good (studiodoctor.diagnosis.baseline)
    watch: dict[str, Any] | None = None                        # diagnose --watch: runs and timeline (diagnosis/watch.py)

    @property
    def counted(self) -> list[Result]:
        """The results the status and exit code count: not those hysteresis holds back (`pending`)."""
        return [r for r in self.results if self.transitions.get(r.id) != "pending"]

    @property
    def status(self) -> Status:
        """The worst status; skips count as ok ("all ok, skips allowed") unless everything was skipped."""
        ran = [r.status for r in self.counted if r.status is not Status.SKIP]
        if not ran and self.counted:
            return Status.SKIP
        return Status.worst(ran)

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for(self.counted)

    def to_dict(self, redactor: Redactor) -> dict[str, Any]:
        """The report as data, every string redacted: all renderers start from this."""
        data = {
            "schema": SCHEMA,
            "tool": {"name": "studiodoctor", "version": __version__},
            "command": self.command,
            "symptom": self.symptom,
            "profile": self.profile,
            "started_at": self.started_at,
            "duration_ms": round(self.duration_ms, 1),
            "status": self.status.value,
            "exit_code": int(self.exit_code),
            "results": [r.to_dict() for r in self.results],
            "runbook": self.runbook,
            "likely_cause": self.likely_cause,
            "likely_causes": self.likely_causes,
            "unrelated_failures": self.unrelated_failures,
            "notes": self.notes,
        }
        if self.since_good is not None:
            data["since_good"] = self.since_good
        if self.watch is not None:
            data["watch"] = self.watch
        if self.smoke is not None:
            data["smoke"] = self.smoke
            if self.transitions:
                for r in data["results"]:
                    r["transition"] = self.transitions.get(r["id"], "ok")
        return redactor.data(data)
