"""What the command families share: the common options, the one-line error (``CliError``, exit 3), the
checks of option values, the profile, and the report printed in the chosen format."""

from __future__ import annotations

import sys

import typer


class CliError(Exception):
    """A one-line error for stderr, exit 3."""


ProfileOpt = typer.Option(None, "--profile", "-p", help="Profile to use (production, staging, lab, or one of yours).")
ConfigOpt = typer.Option(None, "--config", help="Config file (default: $STUDIODOCTOR_CONFIG, ./studiodoctor.toml, "
                                                "~/.config/studiodoctor/config.toml).")
FormatOpt = typer.Option("table", "--format", "-f", help="Output: table, json, markdown, nagios, prometheus, junit or html "
                                                      "(one self-contained page: the stack as a picture).")
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
SamplesOpt = typer.Option(None, "--samples", "-n", metavar="N",
                          help="Requests per sampled probe and endpoint (the app, nginx and the hop trace; default: "
                               "the profile's samples, 5; at most 20): some failing is 'intermittent'.")


def load_profile(profile: str | None, config: str | None):
    """The profile chosen (``--profile``, ``--config``), read only when a command needs it."""
    from ..config import load_profile as load

    return load(profile, config)


def check_format(fmt: str) -> str:
    from ..render import FORMATS

    if fmt not in FORMATS:
        raise CliError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return fmt


def check_timeout(timeout: str | float | None) -> float | None:
    if timeout is None:
        return None
    try:
        seconds = float(timeout)
    except ValueError:
        raise CliError(f"--timeout: {timeout!r} is not a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise CliError("--timeout must be a positive number of seconds")
    return seconds


def check_plain_format(fmt: str) -> str:
    if fmt not in ("table", "json"):
        raise CliError(f"unknown format {fmt!r} (choose from table, json)")
    return fmt


def run_options(max_objects: int | None, samples: int | None) -> dict:
    """The run's options from the command line (checks read them from ``ctx.options``)."""
    from ..probes.sampling import MAX_SAMPLES

    if samples is not None and not 1 <= samples <= MAX_SAMPLES:
        raise CliError(f"--samples must be between 1 and {MAX_SAMPLES}")
    options = {} if max_objects is None else {"max_objects": max_objects}
    if samples is not None:
        options["samples"] = samples
    return options


def check_max_objects(n: int) -> int:
    if n <= 0:
        raise CliError("--max-objects must be a positive number")
    return n


def emit(report, profile, fmt: str) -> dict:
    """Print the report, redacted, in the format chosen; return its data (for the side outputs)."""
    from ..render import render
    from ..secrets import Redactor

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


def one_line(exc: BaseException) -> str:
    """An error as one redacted line (never a traceback)."""
    from ..secrets import Redactor

    text = " ".join(str(exc).split()) or type(exc).__name__
    return Redactor().text(text)


# when main() was entered, and whether as the command line (argv None) rather than in-process (tests)
MAIN_STARTED: list = [None, False]
