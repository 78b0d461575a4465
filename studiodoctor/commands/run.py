"""The run commands: ``check`` (checks of the layers chosen), ``diagnose`` (a symptom's runbook) and
``smoke`` (the budgeted subset), with live progress on a terminal, the Prometheus side outputs
(``--textfile``, ``--pushgateway``) and the baseline (``--save-baseline``, ``--since-good``)."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from ..report import ExitCode
from .common import (
    BaselineOpt,
    CliError,
    ConfigOpt,
    DebugOpt,
    FormatOpt,
    MAIN_STARTED,
    MaxObjectsOpt,
    ProfileOpt,
    PushOpt,
    SamplesOpt,
    SaveBaselineOpt,
    TextfileOpt,
    TimeoutOpt,
    check_format,
    check_max_objects,
    check_timeout,
    emit,
    load_profile,
    one_line,
    run_options,
)

app = typer.Typer()


class _Progress:
    """Live progress on a terminal (stderr); silent otherwise."""

    def __init__(self, total: int):
        self.total, self.done, self.live = total, 0, None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self.live = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 console=Console(stderr=True), transient=True)
            self.task = self.live.add_task("running checks", total=total)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.live and self.live.live.is_started:
            self.live.stop()

    def _shown(self) -> bool:
        # started with the first check, not before the run: its refresh thread would keep the run from
        # forking (studiodoctor.forked)
        if self.live and not self.live.live.is_started:
            self.live.start()
        return bool(self.live)

    def start(self, chk):
        if self._shown():
            self.live.update(self.task, description=f"running {chk.id}")

    def finish(self, result):
        self.done += 1
        if self._shown():
            self.live.update(self.task, advance=1, description=f"{result.id}: {result.status.value}")


def _run_and_emit(profile, fmt: str, total: int, run, textfile: str | None = None,
                  pushgateway: str | None = None, baseline: tuple[bool, str | None, bool] = (False, None, False),
                  watch: tuple[str, float, float | None] | None = None) -> None:
    """Run with live progress on a terminal, print the report, exit with its code.

    ``baseline`` is (--save-baseline, --baseline FILE, --since-good); ``watch`` is (symptom, --watch
    SECONDS, --until SECONDS): run until recovered, the report carries the timeline, exit 0 on recovery."""
    save, path, since = baseline
    known = None
    if save or since:
        from ..diagnosis import baseline as base

        path = str(path or base.default_path(profile.name))
        if since:
            try:
                known = base.load(path, profile.name)
            except base.BaselineError as exc:
                raise CliError(str(exc)) from None
    ended = ""
    if watch:
        import gc

        from ..secrets import Redactor

        gc.enable()  # a loop, not a one-shot run (cli.main turns the collector off for those)
        from ..diagnosis.watch import run_watch

        def once():
            rep = run()
            return rep, rep.to_dict(Redactor(profile.secrets))

        report, watched = run_watch(once, *watch)
        report.watch, ended = watched.summary(), watched.ended
    else:
        with _Progress(total) as prog:
            report = run(on_start=prog.start, on_done=prog.finish)
    if since:
        from ..engine import known_layers
        from ..registry import default_registry
        from ..secrets import Redactor

        report.since_good = base.since_good(known, report.to_dict(Redactor(profile.secrets)),
                                            known_layers(default_registry), path)
    data = emit(report, profile, fmt)
    _export(data, textfile, pushgateway)
    if save:
        if base.is_good(data):
            base.save(path, data)
        else:
            print(f"studiodoctor: baseline not saved to {path}: this run has failures or errors", file=sys.stderr)
    raise typer.Exit({"recovered": 0, "interrupted": 130}.get(ended, int(report.exit_code)))


def _check_export(textfile: str | None, pushgateway: str | None) -> None:
    import os

    if textfile is not None and not os.path.isdir(textfile):
        raise CliError(f"--textfile {textfile}: not a directory")
    if pushgateway is not None and not pushgateway.strip():
        raise CliError("--pushgateway needs a URL")


def _export(data: dict, textfile: str | None, pushgateway: str | None) -> None:
    """The Prometheus side outputs; a failure is one line on stderr and exit 3 (the automation broke)."""
    if not (textfile or pushgateway):
        return
    from ..render import prometheus

    try:
        if textfile:
            prometheus.write_textfile(data, textfile)
        if pushgateway:
            prometheus.push(data, pushgateway)
    except Exception as exc:  # noqa: BLE001 - OSError, URLError, HTTPError
        where = f"--pushgateway {pushgateway}" if pushgateway else f"--textfile {textfile}"
        print(f"studiodoctor: {where}: {one_line(exc)}", file=sys.stderr)
        raise typer.Exit(int(ExitCode.UNKNOWN))


@app.command(epilog="\b\nExamples:\n  studiodoctor check\n  studiodoctor check --layer redis --layer postgres\n"
                    "  studiodoctor check --check gcs.databases_cache_control --format json")
def check(
    layer: Optional[List[str]] = typer.Option(None, "--layer", "-l", help="Only this layer (repeatable)."),
    check_id: Optional[List[str]] = typer.Option(None, "--check", "-c", help="Only this check id (repeatable)."),
    profile: Optional[str] = ProfileOpt,
    config: Optional[str] = ConfigOpt,
    fmt: str = FormatOpt,
    timeout: Optional[str] = TimeoutOpt,
    max_objects: int = MaxObjectsOpt,
    samples: Optional[int] = SamplesOpt,
    debug: bool = DebugOpt,
    textfile: Optional[str] = TextfileOpt,
    pushgateway: Optional[str] = PushOpt,
    save_baseline: bool = SaveBaselineOpt,
    baseline: Optional[str] = BaselineOpt,
):
    """Run checks (all layers, or the ones chosen) and report what each saw."""
    from .. import engine
    from ..registry import default_registry

    fmt, max_objects, timeout = check_format(fmt), check_max_objects(max_objects), check_timeout(timeout)
    _check_export(textfile, pushgateway)
    prof = load_profile(profile, config)
    registry = default_registry.load_plugins()
    total = len(engine.select_checks(registry, layer or [], check_id or []))
    _run_and_emit(prof, fmt, total, lambda **kw: engine.check(
        prof, layer or [], check_id or [], registry=registry, timeout=timeout, debug=debug,
        options=run_options(max_objects, samples), **kw), textfile, pushgateway, (save_baseline, baseline, False))


@app.command(epilog="\b\nExamples:\n  studiodoctor diagnose 502\n  studiodoctor diagnose publishing --format markdown\n"
                    "  studiodoctor diagnose 524 --profile staging --format json\n"
                    "  studiodoctor diagnose 502 --format html > incident.html\n"
                    "  studiodoctor diagnose 502 --watch 10 --until 30m --format markdown > timeline.md")
def diagnose(
    symptom: str = typer.Argument(..., help="What users report: 502, dns, ssl, caching, publishing, ... "
                                            "(see `studiodoctor symptoms`)."),
    profile: Optional[str] = ProfileOpt,
    config: Optional[str] = ConfigOpt,
    fmt: str = FormatOpt,
    timeout: Optional[str] = TimeoutOpt,
    max_objects: int = MaxObjectsOpt,
    samples: Optional[int] = SamplesOpt,
    debug: bool = DebugOpt,
    textfile: Optional[str] = TextfileOpt,
    pushgateway: Optional[str] = PushOpt,
    since_good: bool = typer.Option(False, "--since-good", help="Add what changed in the evidence since the last "
                                                               "good run (see --baseline)."),
    save_baseline: bool = SaveBaselineOpt,
    baseline: Optional[str] = BaselineOpt,
    watch: Optional[str] = typer.Option(None, "--watch", metavar="[SECONDS]",
                                        help="Run again every SECONDS (alone: 5) until recovered, redrawn in place; "
                                             "exit 0 on recovery. The report then has the incident timeline."),
    until: Optional[str] = typer.Option(None, "--until", metavar="DURATION",
                                        help="With --watch: give up after this long (90, 90s, 15m, 2h) and exit "
                                             "with the last run's code."),
):
    """Turn a symptom into an ordered runbook: verdicts, evidence, the likely cause, commands."""
    from .. import engine
    from ..diagnosis import runbook
    from ..registry import default_registry
    from ..diagnosis.symptoms import load_catalogue

    fmt, max_objects, timeout = check_format(fmt), check_max_objects(max_objects), check_timeout(timeout)
    _check_export(textfile, pushgateway)
    prof = load_profile(profile, config)
    registry = default_registry.load_plugins()
    sym = load_catalogue(prof.symptoms, prof.source).lookup(symptom)
    total = len(runbook.checks_for(sym, registry)) if sym else 0
    watching = _check_watch(watch, until)
    if watching and sym is None:
        engine.diagnose(prof, symptom, registry=registry)  # the unknown symptom's usage error, before any watch
    _run_and_emit(prof, fmt, total, lambda **kw: engine.diagnose(
        prof, symptom, registry=registry, timeout=timeout, debug=debug,
        options=run_options(max_objects, samples), **kw), textfile, pushgateway, (save_baseline, baseline, since_good),
        (symptom, *watching) if watching else None)


def _check_watch(watch: str | None, until: str | None) -> tuple[float, float | None] | None:
    from ..diagnosis.watch import parse_duration

    if watch is None:
        if until is not None:
            raise CliError("--until needs --watch")
        return None
    try:
        interval = parse_duration(watch)
    except ValueError:
        raise CliError(f"--watch {watch!r}: expected seconds between runs (e.g. 5, 30s, 2m)") from None
    if interval < 1:
        raise CliError("--watch must be at least 1 s")
    try:
        limit = parse_duration(until) if until is not None else None
    except ValueError:
        raise CliError(f"--until {until!r}: expected a duration (90, 90s, 15m, 2h)") from None
    return interval, limit


@app.command(epilog="\b\nExamples:\n  studiodoctor smoke --profile production --format nagios\n"
                    "  studiodoctor smoke --state /var/lib/studiodoctor/state.json --textfile /var/lib/node_exporter\n"
                    "  studiodoctor smoke --layer redis --budget 5 --format json")
def smoke(
    layer: Optional[List[str]] = typer.Option(None, "--layer", "-l", help="Only this layer's smoke checks (repeatable)."),
    profile: Optional[str] = ProfileOpt,
    config: Optional[str] = ConfigOpt,
    fmt: str = FormatOpt,
    budget: float = typer.Option(20.0, "--budget", help="Seconds the whole run may take (never exceeded)."),
    state: Optional[str] = typer.Option(None, "--state", help="JSON file keeping the last runs: adds hysteresis "
                                                              "and says what is new, still bad or recovered."),
    fail_after: int = typer.Option(2, "--fail-after", help="With --state: bad runs in a row before a check alerts."),
    timeout: Optional[str] = TimeoutOpt,
    samples: Optional[int] = SamplesOpt,
    debug: bool = DebugOpt,
    textfile: Optional[str] = TextfileOpt,
    pushgateway: Optional[str] = PushOpt,
):
    """The fast subset (checks marked smoke) within a time budget, for runs every few minutes."""
    from .. import smoke as smoke_mod
    from ..registry import default_registry

    # as a command, the budget counts from the process's start; called in-process (tests), from main()
    started = smoke_mod.process_started() if MAIN_STARTED[1] else MAIN_STARTED[0]
    fmt = check_format(fmt)
    _check_export(textfile, pushgateway)
    prof = load_profile(profile, config)
    registry = default_registry.load_plugins()
    total = len(smoke_mod.smoke_checks(registry, layer or []))
    # as a command, the process then leaves without the interpreter's teardown (cli.main): seconds under
    # load for the SDKs' modules and for checks the budget abandoned
    _run_and_emit(prof, fmt, total, lambda **kw: smoke_mod.smoke(
        prof, layer or [], registry=registry, budget=budget, state_path=state, fail_after=fail_after,
        timeout=check_timeout(timeout), debug=debug, started=started, options=run_options(None, samples),
        **kw), textfile, pushgateway)


