"""``studiodoctor preflight``: the command of ``studiodoctor.preflight`` (who we are on each backend, what
the checks need against what is granted, the grants to add)."""

from __future__ import annotations

from typing import List, Optional

import typer

from .common import CliError, ConfigOpt, FormatOpt, ProfileOpt, TimeoutOpt, check_format, check_timeout, emit, load_profile

app = typer.Typer()


@app.command(epilog="\b\nExamples:\n  studiodoctor preflight\n  studiodoctor preflight --layer redis --format json")
def preflight(
    layer: Optional[List[str]] = typer.Option(None, "--layer", "-l", help="Only this backend (repeatable)."),
    profile: Optional[str] = ProfileOpt,
    config: Optional[str] = ConfigOpt,
    fmt: str = FormatOpt,
    timeout: Optional[str] = TimeoutOpt,
):
    """Who we are on each configured backend, what the checks need against what is granted, the grants to add."""
    from .. import preflight as pre

    fmt, timeout = check_format(fmt), check_timeout(timeout)
    known = sorted({c.layer for c in pre.PREFLIGHT.checks.values()})
    if bad := [x for x in layer or [] if x not in known]:
        raise CliError(f"no preflight for layer {bad[0]!r}: one of {', '.join(known)}")
    prof = load_profile(profile, config)
    report = pre.run(prof, layer or [], timeout=timeout)
    emit(report, prof, fmt)
    raise typer.Exit(int(report.exit_code))
