"""``studiodoctor config show|validate``: the resolved profile (secrets redacted), and whether the config
file and the profile are valid."""

from __future__ import annotations

from typing import Optional

import typer

from .common import ConfigOpt, ProfileOpt, check_plain_format, load_profile

app = typer.Typer(help="Show or validate the configuration.", no_args_is_help=True)


@app.command("show")
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

    from ..discovery.ways import reach_plan

    fmt = check_plain_format(fmt)
    prof = load_profile(profile, config)
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
        typer.echo(f"# {way.layer:<11} {way.how:<14} {way.detail}")


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


@app.command("validate")
def config_validate(profile: Optional[str] = ProfileOpt, config: Optional[str] = ConfigOpt):
    """Check the config file and the profile; exit 0 when valid, 3 with one line when not."""
    from ..config import find_config_file

    prof = load_profile(profile, config)
    from ..diagnosis.symptoms import load_catalogue

    load_catalogue(prof.symptoms, prof.source)
    source = find_config_file(config)
    unset = prof.unset_vars()
    typer.echo(f"ok: profile {prof.name} from {source or 'built-in profiles'}")
    for key, var in unset:
        typer.echo(f"note: {key} refers to ${{{var}}}, which is not set: its layer will be skipped")
