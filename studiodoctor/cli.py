"""The command line: the root command, its command families (``studiodoctor/commands/``, one module per
family) and the plugins' commands (entry-point group ``studiodoctor.commands``); ``main`` turns every
error into one line and an exit code (tests call ``main([...])`` in-process)."""

from __future__ import annotations

import sys

import typer

from . import __version__
from .commands import catalogue, preflight, run, serve
from .commands import config as config_commands
from .commands.common import MAIN_STARTED, CliError, one_line
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
# the command families (studiodoctor/commands/), in the order `--help` lists them
for family in (run, serve, preflight, catalogue):
    app.add_typer(family.app)
app.add_typer(config_commands.app, name="config")


def _version(value: bool):
    if value:
        typer.echo(f"studiodoctor {__version__}")
        raise typer.Exit(0)


# Commands that end once their output is written: the collector stays off for them (see main). Any other
# (``serve``, a plugin's) gets it back before it starts; ``diagnose --watch`` turns it on for its loop.
ONE_SHOT = frozenset({"check", "diagnose", "smoke", "list", "symptoms", "explain", "preflight", "config"})
RUNS = frozenset({"check", "diagnose", "smoke"})


@app.callback()
def _root(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    if ctx.invoked_subcommand not in ONE_SHOT:
        import gc

        gc.enable()
    elif ctx.invoked_subcommand in RUNS and MAIN_STARTED[1]:
        from . import forked

        forked.ALLOWED = True  # a process of its own: the run may use a second core (studiodoctor.forked)


# --- commands of other packages (the lab's `lab ...`): entry-point group studiodoctor.commands -------------
PLUGIN_GROUP = "studiodoctor.commands"
# whether this process looked for a plugin's command (its own code may rely on the interpreter's teardown)
_PLUGIN_RAN = False


def _plugin_commands() -> dict:
    """name -> entry point of every installed command plugin (read only when a name is not built in)."""
    from .plugins import entry_points

    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}


def _with_plugins(root):
    """The root command, with the plugins' sub-apps found lazily: a built-in command never reads the
    entry points, and a plugin that cannot be imported (its extra not installed) is no command."""
    import typer.main

    builtin_get, builtin_list = root.get_command, root.list_commands
    found: dict = {}

    def load(ctx, name):
        global _PLUGIN_RAN
        _PLUGIN_RAN = True
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit code (DESIGN.md: 0 ok, 1 warn, 2 fail, 3 unknown/usage).

    As the command line (``argv`` None), a short-lived process: the cyclic garbage collector is off while it
    starts and runs (~50 ms of CPU in a ``diagnose``: its passes over every object the imports made; a
    long-running command turns it back on, see ``ONE_SHOT``), and it leaves without the interpreter's
    teardown (60-120 ms: every module and object of the SDKs freed one by one, then a last collection)
    once everything is written. The run's connections are closed by then (its ``Shared`` went with the
    run); a plugin's command gets the ordinary exit."""
    if argv is None:
        import gc

        gc.disable()
    code = _main(argv)
    if argv is None and not _PLUGIN_RAN:
        from .runner import leave

        leave(code)
    if argv is None:  # checks abandoned at their deadline must not turn the exit code into 134
        from .runner import exit_now

        exit_now(code)
    return code


WATCH_DEFAULT_S = "5"


def _watch_default(args: list[str]) -> list[str]:
    """``--watch`` takes an optional value: given alone (last, or before another option), it means every
    ``WATCH_DEFAULT_S`` seconds."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--watch" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, WATCH_DEFAULT_S)
    return out


def _main(argv: list[str] | None) -> int:
    from typer import Abort, Exit
    from typer.exceptions import TyperException  # public: the base of the click exceptions typer vendors

    from .config import ConfigError
    from .engine import UsageError
    from .registry import RegistryError
    from .diagnosis.symptoms import CatalogueError

    import time

    MAIN_STARTED[:] = [time.monotonic(), argv is None]
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    argv = _watch_default(sys.argv[1:] if argv is None else list(argv))
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
        print(f"studiodoctor: {one_line(text)}", file=sys.stderr)
        return int(ExitCode.UNKNOWN)
    except (CliError, ConfigError, UsageError, RegistryError, CatalogueError) as exc:
        print(f"studiodoctor: {one_line(exc)}", file=sys.stderr)
        return int(ExitCode.UNKNOWN)
    except Exception as exc:  # never a traceback for the user; --debug shows it, redacted
        print(f"studiodoctor: internal error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        if debug:
            import traceback

            from .secrets import Redactor

            print(Redactor().text(traceback.format_exc()), file=sys.stderr)
        return int(ExitCode.UNKNOWN)


if __name__ == "__main__":
    sys.exit(main())
