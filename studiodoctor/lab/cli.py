"""`studiodoctor lab ...`: the lab's commands, a plugin of the command line.

The engine never imports the lab: this sub-app reaches ``studiodoctor`` through the entry-point group
``studiodoctor.commands`` (``lab = "studiodoctor.lab.cli:app"``), the way any package adds commands.
Cheap to import: everything heavy is imported inside the commands.
"""

from __future__ import annotations

import functools
from typing import Optional

import typer

from ..commands.common import CliError, TimeoutOpt, check_timeout
from ..report import ExitCode

app = typer.Typer(help="Studio's stack on loopback for tests, demos and drills.", no_args_is_help=True)


def _one_line(func):
    """A LabError (a server that would not start, the lab down, a fault that does not apply) is the
    command line's one-line error with exit 3, like any usage error."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .launcher import LabError

        try:
            return func(*args, **kwargs)
        except LabError as exc:
            raise CliError(str(exc)) from exc

    return wrapper


def command(name: str):
    def register(func):
        return app.command(name)(_one_line(func))

    return register


def _lab(require_up: bool = True):
    from .launcher import LabError
    from .manager import Lab

    lab = Lab.load()
    if require_up and not lab.exists:
        raise LabError("the lab is down: run `studiodoctor lab up` first")
    return lab


VariantOpt = typer.Option(None, "--variant", help="Lab variant: default; other (ingress-nginx, no metrics API, "
                                                  "Redis without RESP3, PostgreSQL over TLS, other names and files); "
                                                  "studio (Studio's own backend from --studio-src).")
StudioSrcOpt = typer.Option(None, "--studio-src", help="With --variant studio: your checkout of "
                                                       "learningequality/studio (default: $STUDIODOCTOR_STUDIO_SRC, "
                                                       "else ../shared/studio's tarball).")


@command("up")
def lab_up(variant: Optional[str] = VariantOpt, studio_src: Optional[str] = StudioSrcOpt,
           rtt: Optional[float] = typer.Option(None, "--rtt", min=0, metavar="MS",
                                               help="Put this round trip (ms) between the profile's endpoints and "
                                                    "their servers, as from a laptop; 0 removes it."),
           jitter: Optional[float] = typer.Option(None, "--jitter", min=0, metavar="MS",
                                                  help="Up to this much more (ms) on each read, order kept.")):
    """Start the lab's servers on loopback in the background and write the `lab` profile (every address)
    and the `lab-laptop` profile (only what an on-call laptop has: public URLs, a kubeconfig, tokens).

    \b
    Examples:
      studiodoctor lab up && studiodoctor check --profile lab
      studiodoctor diagnose 502 --profile lab-laptop
      studiodoctor lab up --variant other
      studiodoctor lab up --variant studio --studio-src ~/src/studio
      studiodoctor lab up --rtt 80 --jitter 5 && studiodoctor diagnose 502 --profile lab
      studiodoctor lab break app-stopped && studiodoctor diagnose 502 --profile lab
    """
    from . import variants
    from .manager import Lab
    from .state import lab_dir

    if studio_src and not variants.get(variant).runs_studio:
        raise CliError("--studio-src needs --variant studio")
    lab = _lab(require_up=False)
    if not lab.exists:
        lab = Lab(variant=variants.get(variant).name, studio_src=studio_src)
    elif variant and variants.get(variant).name != lab.variant.name:
        raise CliError(f"the lab in {lab_dir()} is the {lab.variant.name} variant: `lab down` first")
    if rtt is not None:
        lab.extra["rtt_ms"] = rtt
    if jitter is not None:
        lab.extra["jitter_ms"] = jitter
    lab.up(progress=lambda msg: typer.echo(msg, err=True))
    delay = (f", {lab.extra.get('rtt_ms') or 0:g} ms round trip (+0-{lab.extra.get('jitter_ms') or 0:g} ms)"
             if "latency" in lab.services else "")
    typer.echo(f"lab ({lab.variant.name}) is up ({lab_dir()}{delay}); try: studiodoctor check --profile lab")


@command("status")
def lab_status():
    """Show the lab's servers, whether each is running, and the faults in force."""
    lab = _lab(require_up=False)
    rows = lab.status()
    if not rows:
        typer.echo("lab is down (run `studiodoctor lab up`)")
        raise typer.Exit(int(ExitCode.WARN))
    for row in rows:
        typer.echo(f"{row['kind']:<15} {row['address']:<18} pid {str(row['pid']):<8} "
                   f"{'running' if row['running'] else 'STOPPED'}")
    active = lab.extra.get("faults", [])
    typer.echo(f"variant: {lab.variant.name}")
    typer.echo(f"faults in force: {', '.join(active) if active else 'none'}")
    if not all(r["running"] for r in rows) and not active:
        raise typer.Exit(int(ExitCode.WARN))


@command("down")
def lab_down():
    """Stop the lab's servers and remove its state and profile."""
    _lab(require_up=False).down(progress=lambda msg: typer.echo(msg, err=True))
    typer.echo("lab is down")


@command("faults")
def lab_faults():
    """List the faults the lab can inject: the layer a diagnosis must name, and the symptoms drilled."""
    from .faults import FAULTS

    for f in FAULTS.values():
        typer.echo(f"{f.name:<26} {'+'.join(f.layers):<13} {','.join(f.symptoms):<22} {f.description}")


@command("break")
def lab_break(fault: str = typer.Argument(..., help="A fault from `studiodoctor lab faults`.")):
    """Inject a fault into the running lab (reversible with `lab fix`)."""
    from .faults import get, set_fault

    flt = get(fault)
    set_fault(_lab(), flt.name, True)
    typer.echo(f"broke {flt.name}: {flt.description}\ntry: studiodoctor diagnose {flt.symptoms[0]} --profile lab")


@command("fix")
def lab_fix(fault: Optional[str] = typer.Argument(None, help="The fault to revert (default: every fault in force).")):
    """Revert a fault (or all of them)."""
    from .faults import get, set_fault

    lab = _lab()
    names = [get(fault).name] if fault else list(lab.extra.get("faults", []))
    for name in names:
        set_fault(lab, name, False)
        typer.echo(f"fixed {name}")
    if not names:
        typer.echo("no fault in force")


@command("drill")
def lab_drill(
    symptom: Optional[str] = typer.Argument(None, help="Drill the faults users would report as this symptom."),
    fault: Optional[str] = typer.Option(None, "--fault", help="Drill this one fault."),
    all_: bool = typer.Option(False, "--all", help="Drill every fault and check the healthy lab for false alarms "
                                                   "(on every variant unless --variant says which)."),
    variant: Optional[str] = typer.Option(None, "--variant", help="Drill this lab variant (default: the running "
                                                                  "lab's; with --all: every variant)."),
    standing: Optional[str] = typer.Option(None, "--standing", help="Leave this fault in place under every 502 "
                                           "fault drilled: its failures must be listed as unrelated, never named "
                                           "(default with --all: public-listing; 'none' for a clean stack)."),
    profile: str = typer.Option("lab", "--profile", help="Diagnose with this profile of the lab: `lab` (every "
                                                         "address) or `lab-laptop` (only what a laptop has)."),
    timeout: Optional[str] = TimeoutOpt,
):
    """Break, diagnose, compare the likely cause with the broken layer, fix: a runbook rehearsal.

    A variant other than the running lab's is started for the drill in its own directory and taken
    down after it.

    \b
    Examples:
      studiodoctor lab drill 502
      studiodoctor lab drill --fault redis-down
      studiodoctor lab drill --all
      studiodoctor lab drill --all --variant other
      studiodoctor lab drill --all --variant studio      # Studio's own code ($STUDIODOCTOR_STUDIO_SRC)
      studiodoctor lab drill 502 --standing public-listing
      studiodoctor lab drill --all --profile lab-laptop
    """
    from . import drill, variants

    if not (symptom or fault or all_):
        raise CliError("say what to drill: a SYMPTOM, --fault F or --all")
    if profile not in drill.PROFILES:
        raise CliError(f"--profile must be one of the lab's profiles: {', '.join(drill.PROFILES)}")
    timeout = check_timeout(timeout)
    standing_name = "" if (standing or "").lower() == "none" else (standing or ("public-listing" if all_ else ""))
    if standing_name:
        from .faults import get

        get(standing_name)     # an unknown name is a usage error before any lab starts
    lab = _lab(require_up=not (all_ or variant))
    if variant:
        names = [variants.get(variant).name]
    elif all_:
        names = list(variants.VARIANTS)
    else:
        names = [lab.variant.name]
    tables, ok = [], True
    for name in names:
        absent = drill.studio_absent(lab, name)
        if absent:   # --all without a Studio source tree: said, not failed
            tables.append(f"== variant {name}\nnot drilled: {absent}")
            continue
        with drill.lab_of(lab, name, progress=lambda msg: typer.echo(msg, err=True)) as running:
            results, skipped = drill.drill_selected(running, drill.select(symptom, fault), standing=standing_name,
                                                    timeout=timeout, progress=lambda msg: typer.echo(msg, err=True),
                                                    profile=profile)
            alarms = drill.false_alarms(timeout, profile) if all_ else []
        tables.append(f"== variant {name}, profile {profile}\n" + drill.score_table(results, alarms, skipped))
        ok = ok and all(r.localized and r.healthy_after for r in results) and not alarms
    typer.echo("\n\n".join(tables))
    raise typer.Exit(int(ExitCode.OK if ok else ExitCode.FAIL))
