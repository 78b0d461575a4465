"""The command line: a thin face over the engine (tests call ``main([...])`` in-process)."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from . import __version__
from .report import ExitCode

app = typer.Typer(
    name="studiodoctor",
    help="Diagnose Kolibri Studio's production stack, layer by layer.\n\n"
         "\b\nExamples:\n"
         "  studiodoctor diagnose 502              # ordered runbook for users seeing 502s\n"
         "  studiodoctor check --layer gcs         # every check of one layer\n"
         "  studiodoctor check --format json       # for automation (exit 0 ok, 1 warn, 2 fail, 3 unknown)\n"
         "  studiodoctor explain gcs.databases_cache_control\n"
         "  studiodoctor lab up && studiodoctor check --profile lab",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Show or validate the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


class CliError(Exception):
    """A one-line error for stderr, exit 3."""


def _version(value: bool):
    if value:
        typer.echo(f"studiodoctor {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    pass


ProfileOpt = typer.Option(None, "--profile", "-p", help="Profile to use (production, staging, lab, or one of yours).")
ConfigOpt = typer.Option(None, "--config", help="Config file (default: $STUDIODOCTOR_CONFIG, ./studiodoctor.toml, "
                                                "~/.config/studiodoctor/config.toml).")
FormatOpt = typer.Option("table", "--format", "-f", help="Output: table, json, markdown, nagios, prometheus or junit.")
TextfileOpt = typer.Option(None, "--textfile", help="Also write the Prometheus metrics atomically into this directory "
                                                    "(node_exporter's textfile collector).")
SaveBaselineOpt = typer.Option(False, "--save-baseline", help="Save this run's evidence as the last good run "
                                                                "(only when nothing fails, errs or is blocked).")
BaselineOpt = typer.Option(None, "--baseline", help="Baseline file (or a smoke --state file) for --save-baseline and "
                                                    "--since-good (default: ~/.local/state/studiodoctor/"
                                                    "baseline-PROFILE.json).")
PushOpt = typer.Option(None, "--pushgateway", help="Also push the Prometheus metrics to this Pushgateway URL "
                                                   "(job studiodoctor, instance = the profile).")
TimeoutOpt = typer.Option(None, "--timeout", "-t", metavar="SECONDS", help="Seconds each check may take (default: the profile's).")
DebugOpt = typer.Option(False, "--debug", help="Add tracebacks of crashed checks (redacted) to the output.")
MaxObjectsOpt = typer.Option(100_000, "--max-objects", help="Most objects a bucket audit reads.")


def _load_profile(profile: str | None, config: str | None):
    from .config import load_profile

    return load_profile(profile, config)


def _check_format(fmt: str) -> str:
    from .render import FORMATS

    if fmt not in FORMATS:
        raise CliError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return fmt


def _check_timeout(timeout: str | float | None) -> float | None:
    if timeout is None:
        return None
    try:
        seconds = float(timeout)
    except ValueError:
        raise CliError(f"--timeout: {timeout!r} is not a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise CliError("--timeout must be a positive number of seconds")
    return seconds


def _check_plain_format(fmt: str) -> str:
    if fmt not in ("table", "json"):
        raise CliError(f"unknown format {fmt!r} (choose from table, json)")
    return fmt


def _check_max_objects(n: int) -> int:
    if n <= 0:
        raise CliError("--max-objects must be a positive number")
    return n


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
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.stop()

    def start(self, chk):
        if self.live:
            self.live.update(self.task, description=f"running {chk.id}")

    def finish(self, result):
        self.done += 1
        if self.live:
            self.live.update(self.task, advance=1, description=f"{result.id}: {result.status.value}")


def _run_and_emit(profile, fmt: str, total: int, run, textfile: str | None = None,
                  pushgateway: str | None = None, baseline: tuple[bool, str | None, bool] = (False, None, False)) -> None:
    """Run with live progress on a terminal, print the report, exit with its code.

    ``baseline`` is (--save-baseline, --baseline FILE, --since-good)."""
    save, path, since = baseline
    known = None
    if save or since:
        from .diagnosis import baseline as base

        path = str(path or base.default_path(profile.name))
        if since:
            try:
                known = base.load(path, profile.name)
            except base.BaselineError as exc:
                raise CliError(str(exc)) from None
    with _Progress(total) as prog:
        report = run(on_start=prog.start, on_done=prog.finish)
    if since:
        from .engine import known_layers
        from .registry import default_registry
        from .secrets import Redactor

        report.since_good = base.since_good(known, report.to_dict(Redactor(profile.secrets)),
                                            known_layers(default_registry), path)
    data = _emit(report, profile, fmt)
    _export(data, textfile, pushgateway)
    if save:
        if base.is_good(data):
            base.save(path, data)
        else:
            print(f"studiodoctor: baseline not saved to {path}: this run has failures or errors", file=sys.stderr)
    raise typer.Exit(int(report.exit_code))


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
    from .render import prometheus

    try:
        if textfile:
            prometheus.write_textfile(data, textfile)
        if pushgateway:
            prometheus.push(data, pushgateway)
    except Exception as exc:  # noqa: BLE001 - OSError, URLError, HTTPError
        where = f"--pushgateway {pushgateway}" if pushgateway else f"--textfile {textfile}"
        print(f"studiodoctor: {where}: {_one_line(exc)}", file=sys.stderr)
        raise typer.Exit(int(ExitCode.UNKNOWN))


def _emit(report, profile, fmt: str) -> dict:
    from .render import render
    from .secrets import Redactor

    data = report.to_dict(Redactor(profile.secrets))
    color = fmt == "table" and sys.stdout.isatty()
    width = 120
    if color:
        import shutil

        width = shutil.get_terminal_size((120, 40)).columns
    text = render(data, fmt, color=color, width=width)
    sys.stdout.write(text)
    sys.stdout.flush()
    return data


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
    debug: bool = DebugOpt,
    textfile: Optional[str] = TextfileOpt,
    pushgateway: Optional[str] = PushOpt,
    save_baseline: bool = SaveBaselineOpt,
    baseline: Optional[str] = BaselineOpt,
):
    """Run checks (all layers, or the ones chosen) and report what each saw."""
    from . import engine
    from .registry import default_registry

    fmt, max_objects, timeout = _check_format(fmt), _check_max_objects(max_objects), _check_timeout(timeout)
    _check_export(textfile, pushgateway)
    prof = _load_profile(profile, config)
    registry = default_registry.load_plugins()
    total = len(engine.select_checks(registry, layer or [], check_id or []))
    _run_and_emit(prof, fmt, total, lambda **kw: engine.check(
        prof, layer or [], check_id or [], registry=registry, timeout=timeout, debug=debug,
        options={"max_objects": max_objects}, **kw), textfile, pushgateway, (save_baseline, baseline, False))


@app.command(epilog="\b\nExamples:\n  studiodoctor diagnose 502\n  studiodoctor diagnose publishing --format markdown\n"
                    "  studiodoctor diagnose 524 --profile staging --format json")
def diagnose(
    symptom: str = typer.Argument(..., help="What users report: 502, dns, ssl, caching, publishing, ... "
                                            "(see `studiodoctor symptoms`)."),
    profile: Optional[str] = ProfileOpt,
    config: Optional[str] = ConfigOpt,
    fmt: str = FormatOpt,
    timeout: Optional[str] = TimeoutOpt,
    max_objects: int = MaxObjectsOpt,
    debug: bool = DebugOpt,
    textfile: Optional[str] = TextfileOpt,
    pushgateway: Optional[str] = PushOpt,
    since_good: bool = typer.Option(False, "--since-good", help="Add what changed in the evidence since the last "
                                                               "good run (see --baseline)."),
    save_baseline: bool = SaveBaselineOpt,
    baseline: Optional[str] = BaselineOpt,
):
    """Turn a symptom into an ordered runbook: verdicts, evidence, the likely cause, commands."""
    from . import engine
    from .diagnosis import runbook
    from .registry import default_registry
    from .diagnosis.symptoms import load_catalogue

    fmt, max_objects, timeout = _check_format(fmt), _check_max_objects(max_objects), _check_timeout(timeout)
    _check_export(textfile, pushgateway)
    prof = _load_profile(profile, config)
    registry = default_registry.load_plugins()
    sym = load_catalogue(prof.symptoms, prof.source).lookup(symptom)
    total = len(runbook.checks_for(sym, registry)) if sym else 0
    _run_and_emit(prof, fmt, total, lambda **kw: engine.diagnose(
        prof, symptom, registry=registry, timeout=timeout, debug=debug,
        options={"max_objects": max_objects}, **kw), textfile, pushgateway, (save_baseline, baseline, since_good))


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
    debug: bool = DebugOpt,
    textfile: Optional[str] = TextfileOpt,
    pushgateway: Optional[str] = PushOpt,
):
    """The fast subset (checks marked smoke) within a time budget, for runs every few minutes."""
    from . import smoke as smoke_mod
    from .registry import default_registry

    # as a command, the budget counts from the process's start; called in-process (tests), from main()
    started = smoke_mod.process_started() if _MAIN_STARTED[1] else _MAIN_STARTED[0]
    fmt = _check_format(fmt)
    _check_export(textfile, pushgateway)
    prof = _load_profile(profile, config)
    registry = default_registry.load_plugins()
    total = len(smoke_mod.smoke_checks(registry, layer or []))
    try:
        _run_and_emit(prof, fmt, total, lambda **kw: smoke_mod.smoke(
            prof, layer or [], registry=registry, budget=budget, state_path=state, fail_after=fail_after,
            timeout=_check_timeout(timeout), debug=debug, started=started, **kw), textfile, pushgateway)
    except typer.Exit as done:
        if _MAIN_STARTED[1]:  # a command: everything is written; skip the interpreter's slow teardown
            import os         # of the SDKs (seconds under load) and of checks the budget abandoned

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(done.exit_code)
        raise


@app.command(epilog="\b\nExamples:\n  studiodoctor serve --profile production --listen 0.0.0.0:9842\n"
                    "  curl -s localhost:9842/metrics; curl -s 'localhost:9842/probe?layer=redis'")
def serve(
    profile: Optional[str] = ProfileOpt,
    config: Optional[str] = ConfigOpt,
    listen: str = typer.Option("127.0.0.1:9842", "--listen", help="HOST:PORT to listen on."),
    interval: float = typer.Option(60.0, "--interval", help="Seconds between two smoke runs of the background loop."),
    budget: float = typer.Option(20.0, "--budget", help="Seconds one smoke run may take."),
    probe_budget: float = typer.Option(10.0, "--probe-budget", help="Seconds one /probe run may take."),
    probe_cache: float = typer.Option(30.0, "--probe-cache", help="Seconds a /probe answer is reused."),
    layer: Optional[List[str]] = typer.Option(None, "--layer", "-l", help="Only this layer's smoke checks."),
):
    """A Prometheus exporter: /metrics (background smoke loop), /probe?layer=..., /healthz."""
    from .commands import serve as serve_mod
    from .engine import select_checks
    from .registry import default_registry

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise CliError(f"--listen {listen!r}: expected HOST:PORT")
    for name, value in (("--interval", interval), ("--budget", budget), ("--probe-budget", probe_budget)):
        if value < 3:
            raise CliError(f"{name} must be at least 3 s")
    prof = _load_profile(profile, config)
    registry = default_registry.load_plugins()
    select_checks(registry, layer or [], [])
    exporter = serve_mod.Exporter(prof, load_profile=lambda name: _load_profile(name, config), registry=registry,
                                  layers=layer or [], interval=interval, budget=budget,
                                  probe_budget=probe_budget, probe_cache=probe_cache)
    try:
        server = serve_mod.make_server(exporter, host.strip("[]"), int(port))
    except OSError as exc:
        raise CliError(f"--listen {listen}: {exc.strerror or exc}") from None
    exporter.start()
    typer.echo(f"studiodoctor serve: profile {prof.name}, http://{listen}/metrics", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        exporter.stop.set()
        server.server_close()


@app.command()
def symptoms(
    config: Optional[str] = ConfigOpt,
    profile: Optional[str] = ProfileOpt,
    fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
):
    """List the symptoms `diagnose` knows: name, aliases and the walk of layers."""
    import json

    from .diagnosis.symptoms import load_catalogue

    fmt = _check_plain_format(fmt)
    prof = _load_profile(profile, config)
    cat = load_catalogue(prof.symptoms, prof.source)
    if fmt == "json":
        typer.echo(json.dumps([{"name": s.name, "title": s.title, "aliases": s.aliases, "layers": s.layers}
                               for s in cat.symptoms.values()], indent=2))
        return
    for s in cat.symptoms.values():
        aliases = f" ({', '.join(s.aliases)})" if s.aliases else ""
        typer.echo(f"{s.name}{aliases}: {' -> '.join(s.layers)}  — {s.title}")


@app.command(epilog="\b\nExamples:\n  studiodoctor preflight\n  studiodoctor preflight --layer redis --format json")
def preflight(
    layer: Optional[List[str]] = typer.Option(None, "--layer", "-l", help="Only this backend (repeatable)."),
    profile: Optional[str] = ProfileOpt,
    config: Optional[str] = ConfigOpt,
    fmt: str = FormatOpt,
    timeout: Optional[str] = TimeoutOpt,
):
    """Who we are on each configured backend, what the checks need against what is granted, the grants to add."""
    from . import preflight as pre

    fmt, timeout = _check_format(fmt), _check_timeout(timeout)
    known = sorted({c.layer for c in pre.PREFLIGHT.checks.values()})
    if bad := [x for x in layer or [] if x not in known]:
        raise CliError(f"no preflight for layer {bad[0]!r}: one of {', '.join(known)}")
    prof = _load_profile(profile, config)
    report = pre.run(prof, layer or [], timeout=timeout)
    _emit(report, prof, fmt)
    raise typer.Exit(int(report.exit_code))


@app.command("list")
def list_checks(
    layer: Optional[List[str]] = typer.Option(None, "--layer", "-l", help="Only this layer (repeatable)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
):
    """List layers and their checks: id, safety class, what each needs."""
    import json

    from .engine import known_layers, select_checks
    from .registry import default_registry

    fmt = _check_plain_format(fmt)
    registry = default_registry.load_plugins()
    if layer:
        select_checks(registry, layer, [])  # validates the names
    layers = [lay for lay in known_layers(registry) if not layer or lay in layer]
    if fmt == "json":
        typer.echo(json.dumps([{"id": c.id, "layer": c.layer, "title": c.title, "safety": c.safety,
                                "needs": list(c.needs), "depends_on": list(c.depends_on),
                                "permissions": list(c.permissions), "smoke": c.smoke,
                                "metrics": [m.key for m in c.metrics]}
                               for lay in layers for c in registry.for_layers([lay])], indent=2))
        return
    for lay in layers:
        chks = registry.for_layers([lay])
        typer.echo(f"{lay}" + ("" if chks else "  (no automated checks: manual steps only)"))
        for c in chks:
            needs = f"  needs: {', '.join(c.needs)}" if c.needs else ""
            typer.echo(f"  {c.id:<34} [{c.safety}] {c.title}{needs}")


@app.command()
def explain(target: str = typer.Argument(..., help="A check id, a layer or a symptom.")):
    """Print what a check does and why (its docstring), or describe a layer or a symptom."""
    from .engine import known_layers, suggest
    from .registry import default_registry
    from .diagnosis.symptoms import load_catalogue

    registry = default_registry.load_plugins()
    if target in registry.checks:
        c = registry.checks[target]
        typer.echo(f"{c.id} — {c.title}")
        typer.echo(f"layer: {c.layer}   safety: {c.safety}")
        for label, values in (("needs", c.needs), ("permissions", c.permissions), ("depends on", c.depends_on),
                              ("explained by", c.explained_by), ("metrics", [m.key for m in c.metrics]),
                              ("smoke", ["yes (cheap, read-only: run by `studiodoctor smoke`)"] if c.smoke else [])):
            if values:
                typer.echo(f"{label}: {', '.join(values)}")
        from .diagnosis.causes import rules_for

        for line in rules_for(c.id):
            typer.echo(line)
        typer.echo("")
        typer.echo(c.doc or "(no description)")
        return
    cat = load_catalogue()
    if target in known_layers(registry):
        typer.echo(f"{target} — {cat.layer_title(target)}")
        for c in registry.for_layers([target]):
            typer.echo(f"  {c.id}: {c.title}")
        return
    sym = cat.lookup(target)
    if sym:
        typer.echo(f"{sym.name} — {sym.title}")
        if sym.aliases:
            typer.echo(f"aliases: {', '.join(sym.aliases)}")
        if target in sym.codes:
            typer.echo(f"{target}: {sym.codes[target]}")
        for i, step in enumerate(sym.steps, 1):
            typer.echo(f"{i}. {step.layer}: {step.why}")
        return
    raise CliError(f"nothing called {target!r}{suggest(target, [*registry.checks, *cat.all_words()])}; "
                   f"see `studiodoctor list` and `studiodoctor symptoms`")


@config_app.command("show")
def config_show(profile: Optional[str] = ProfileOpt, config: Optional[str] = ConfigOpt,
                fmt: str = typer.Option("table", "--format", "-f", help="table or json.")):
    """Print the resolved profile, secrets redacted, and how each layer will be reached from here (direct,
    through the API server's pod proxy, or not at all and why).

    \b
    Examples:
      studiodoctor config show
      studiodoctor config show --profile lab-laptop --format json
    """
    import json

    from .discovery.ways import reach_plan

    fmt = _check_plain_format(fmt)
    prof = _load_profile(profile, config)
    data = prof.redacted()
    derived = {k: {"value": prof.redacted_value(k), "from": note} for k, note in prof.derived.items()}
    plan = reach_plan(prof)
    if fmt == "json":
        typer.echo(json.dumps({"profile": prof.name, "source": prof.source, "config": data, "derived": derived,
                               "reach": {w.layer: {"how": w.how, "detail": w.detail} for w in plan}}, indent=2))
        return
    typer.echo(f"# profile {prof.name} (from {prof.source})")
    _print_toml(data, [], prof.derived)
    typer.echo("\n# how each layer will be reached from here")
    for way in plan:
        typer.echo(f"# {way.layer:<11} {way.how:<12} {way.detail}")


def _print_toml(data: dict, path: list[str], derived: dict | None = None) -> None:
    import json

    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) or k == "resolve"}
    tables = {k: v for k, v in data.items() if isinstance(v, dict) and k != "resolve"}
    if path and scalars:
        typer.echo(f"\n[{'.'.join(path)}]")
    for k, v in scalars.items():
        unset = getattr(v, "var", None)
        if unset:
            typer.echo(f'{k} = ""  # ${{{unset}}} is not set')
        elif isinstance(v, dict):
            typer.echo(f"{k} = {{{', '.join(f'{json.dumps(a)} = {json.dumps(b)}' for a, b in v.items())}}}")
        else:
            note = (derived or {}).get(".".join([*path, k]))
            typer.echo(f"{k} = {json.dumps(v)}" + (f"  # fallback: {note}" if note else ""))
    for k, v in tables.items():
        _print_toml(v, [*path, k], derived)


@config_app.command("validate")
def config_validate(profile: Optional[str] = ProfileOpt, config: Optional[str] = ConfigOpt):
    """Check the config file and the profile; exit 0 when valid, 3 with one line when not."""
    from .config import find_config_file

    prof = _load_profile(profile, config)
    from .diagnosis.symptoms import load_catalogue

    load_catalogue(prof.symptoms, prof.source)
    source = find_config_file(config)
    unset = prof.unset_vars()
    typer.echo(f"ok: profile {prof.name} from {source or 'built-in profiles'}")
    for key, var in unset:
        typer.echo(f"note: {key} refers to ${{{var}}}, which is not set: its layer will be skipped")


def _one_line(exc: BaseException) -> str:
    from .secrets import Redactor

    text = " ".join(str(exc).split()) or type(exc).__name__
    return Redactor().text(text)


# --- commands of other packages (the lab's `lab ...`): entry-point group studiodoctor.commands -------------
PLUGIN_GROUP = "studiodoctor.commands"


def _plugin_commands() -> dict:
    """name -> entry point of every installed command plugin (read only when a name is not built in)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}


def _with_plugins(root):
    """The root command, with the plugins' sub-apps found lazily: a built-in command never reads the
    entry points, and a plugin that cannot be imported (its extra not installed) is no command."""
    import typer.main

    builtin_get, builtin_list = root.get_command, root.list_commands
    found: dict = {}

    def load(ctx, name):
        if name not in found:
            found[name] = None
            ep = _plugin_commands().get(name)
            if ep is not None:
                try:
                    found[name] = typer.main.get_command(ep.load())
                except ImportError:
                    pass
        return found[name]

    def get_command(ctx, name):
        return builtin_get(ctx, name) or load(ctx, name)

    def list_commands(ctx):
        names = builtin_list(ctx)
        return names + sorted(n for n in _plugin_commands() if n not in names and load(ctx, n) is not None)

    root.get_command, root.list_commands = get_command, list_commands
    return root


# when main() was entered, and whether as the command line (argv None) rather than in-process (tests)
_MAIN_STARTED: list = [None, False]


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit code (DESIGN.md: 0 ok, 1 warn, 2 fail, 3 unknown/usage)."""
    code = _main(argv)
    if argv is None:  # a process: checks abandoned at their deadline must not turn the exit code into 134
        from .runner import exit_now

        exit_now(code)
    return code


def _main(argv: list[str] | None) -> int:
    from typer import Abort, Exit
    from typer.exceptions import TyperException  # public: the base of the click exceptions typer vendors

    from .config import ConfigError
    from .engine import UsageError
    from .registry import RegistryError
    from .diagnosis.symptoms import CatalogueError

    import time

    _MAIN_STARTED[:] = [time.monotonic(), argv is None]
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        rv = _with_plugins(typer.main.get_command(app)).main(args=argv, prog_name="studiodoctor",
                                                             standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except Exit as exc:
        return exc.exit_code
    except Abort:
        print("studiodoctor: aborted", file=sys.stderr)
        return 130
    except TyperException as exc:  # usage errors: exit 3, not click's 2
        text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"studiodoctor: {_one_line(text)}", file=sys.stderr)
        return int(ExitCode.UNKNOWN)
    except (CliError, ConfigError, UsageError, RegistryError, CatalogueError) as exc:
        print(f"studiodoctor: {_one_line(exc)}", file=sys.stderr)
        return int(ExitCode.UNKNOWN)
    except Exception as exc:  # never a traceback for the user; --debug shows it, redacted
        print(f"studiodoctor: internal error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        if debug:
            import traceback

            from .secrets import Redactor

            print(Redactor().text(traceback.format_exc()), file=sys.stderr)
        return int(ExitCode.UNKNOWN)


if __name__ == "__main__":
    sys.exit(main())
