"""``diagnose SYMPTOM --watch``: run the diagnosis again and again until the symptom is gone.

Each run's statuses are compared with the previous run's: every change is an event of the incident
timeline (when, how long into the watch, which check, from what to what, with the new summary). The
watch ends on recovery (nothing that can produce the symptom fails, errs or is blocked), at the
``--until`` limit, or on Ctrl-C; the last run's report carries the timeline (JSON ``watch``), which the
Markdown, HTML and table outputs show as the incident timeline.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

BAD = ("fail", "error", "blocked")
MAX_EVENTS = 500


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def recovered(data: dict) -> bool:
    """Nothing that can produce the symptom is bad: failures the report lists as unrelated do not count,
    a check that could not look (error) or was blocked does (it cannot say the symptom is gone)."""
    unrelated = {u.get("check") if isinstance(u, dict) else u for u in data.get("unrelated_failures") or []}
    return bool(data["results"]) and not any(r["status"] in BAD and r["id"] not in unrelated
                                             for r in data["results"])


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h`` -> seconds (ValueError when it is none of those)."""
    text = str(text).strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], None)
    seconds = float(text[:-1] if scale else text) * (scale or 1)
    if not 0 < seconds < float("inf"):
        raise ValueError(text)
    return seconds


@dataclass
class Watch:
    """The state of one watch: the statuses last seen, the events so far, the runs made."""

    interval: float
    until: float | None = None
    clock: Callable[[], float] = time.monotonic
    started_at: str = field(default_factory=_now_iso)
    t0: float = 0.0
    runs: int = 0
    last: dict[str, str] = field(default_factory=dict)      # check id -> status in the last run
    changed_at: dict[str, str] = field(default_factory=dict)  # check id -> when its status last changed
    events: list[dict] = field(default_factory=list)
    ended: str = ""
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        self.t0 = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def observe(self, data: dict) -> list[dict]:
        """Take one run's (redacted) report; return the events it brings. The first run records every
        check that is not ok (where the incident stands when the watch starts)."""
        self.runs += 1
        at, elapsed, new = _now_iso(), round(self.elapsed(), 1), []
        for r in data["results"]:
            before = self.last.get(r["id"])
            if before == r["status"] or (before is None and r["status"] in ("ok", "skip")):
                continue
            new.append({"at": at, "elapsed_s": elapsed, "run": self.runs, "check": r["id"], "layer": r["layer"],
                        "before": before, "now": r["status"], "summary": r["summary"]})
            self.changed_at[r["id"]] = at
        self.last = {r["id"]: r["status"] for r in data["results"]}
        room = MAX_EVENTS - len(self.events)
        self.events.extend(new[:max(room, 0)])
        return new

    def summary(self) -> dict:
        """The JSON ``watch`` object of the report."""
        return {"interval_s": self.interval, "until_s": self.until, "runs": self.runs, "started_at": self.started_at,
                "ended_at": _now_iso(), "elapsed_s": round(self.elapsed(), 1), "ended": self.ended,
                "events": list(self.events)}

    def loop(self, run_once: Callable[[], tuple[object, dict]], on_run: Callable[["Watch", dict, list], None]):
        """Run until recovery, the limit or ``stop``; returns the last (report, data). Runs start every
        ``interval`` seconds (a run longer than that is followed at once by the next)."""
        report = data = None
        while True:
            started = self.clock()
            report, data = run_once()
            events = self.observe(data)
            if recovered(data):
                self.ended = "recovered"
            elif self.until is not None and self.elapsed() >= self.until:
                self.ended = "until"
            on_run(self, data, events)
            if self.ended:
                return report, data
            wait = self.interval - (self.clock() - started)
            if self.until is not None:
                wait = min(wait, self.until - self.elapsed())
            if self.stop.wait(max(wait, 0)):
                self.ended = "interrupted"
                return report, data


def run_watch(run_once: Callable[[], tuple[object, dict]], symptom: str, interval: float, until: float | None,
              err=None) -> tuple[object, "Watch"]:
    """The watch with its terminal view: rich Live on a terminal's stderr, plain event lines otherwise
    (stdout stays for the report). Ctrl-C ends it as ``interrupted`` with the last finished run (before
    any run finished, it propagates)."""
    import sys

    from ..render.live import event_line, view

    err = err or sys.stderr
    watch = Watch(interval=interval, until=until)
    last: list = [None]
    live = None
    if err.isatty():  # redrawn every second (the elapsed time ticks), the checks after every run
        from rich.console import Console
        from rich.live import Live

        live = Live(console=Console(file=err), refresh_per_second=1, transient=False,
                    get_renderable=lambda: view(watch, last[0][1] if last[0] else None, symptom))
        live.start()

    def once():
        last[0] = run_once()
        return last[0]

    def on_run(w: Watch, data: dict, events: list) -> None:
        if live is not None:
            live.refresh()
            return
        for e in events:
            print(event_line(e), file=err, flush=True)
        state = {"recovered": "recovered", "until": "limit reached"}.get(w.ended, "not recovered")
        print(f"watch: run {w.runs} done, {state}", file=err, flush=True)

    try:
        report, _ = watch.loop(once, on_run)
    except KeyboardInterrupt:
        if last[0] is None:
            raise
        watch.ended = "interrupted"
        report = last[0][0]
    finally:
        if live is not None:
            live.stop()
    return report, watch
