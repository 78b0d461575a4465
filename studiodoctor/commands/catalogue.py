"""The catalogue commands: ``list`` (layers and their checks), ``explain`` (a check, a layer or a symptom)
and ``symptoms`` (what ``diagnose`` knows). They read the registry and the catalogue, and run nothing."""

from __future__ import annotations

from typing import List, Optional

import typer

from .common import CliError, ConfigOpt, ProfileOpt, check_plain_format, load_profile

app = typer.Typer()


@app.command()
def symptoms(
    config: Optional[str] = ConfigOpt,
    profile: Optional[str] = ProfileOpt,
    fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
):
    """List the symptoms `diagnose` knows: name, aliases and the walk of layers."""
    import json

    from ..diagnosis.symptoms import load_catalogue

    fmt = check_plain_format(fmt)
    prof = load_profile(profile, config)
    cat = load_catalogue(prof.symptoms, prof.source)
    if fmt == "json":
        typer.echo(json.dumps([{"name": s.name, "title": s.title, "aliases": s.aliases, "layers": s.layers}
                               for s in cat.symptoms.values()], indent=2))
        return
    for s in cat.symptoms.values():
        aliases = f" ({', '.join(s.aliases)})" if s.aliases else ""
        typer.echo(f"{s.name}{aliases}: {' -> '.join(s.layers)}  — {s.title}")


@app.command("list")
def list_checks(
    layer: Optional[List[str]] = typer.Option(None, "--layer", "-l", help="Only this layer (repeatable)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
):
    """List layers and their checks: id, safety class, what each needs."""
    import json

    from ..engine import known_layers, select_checks
    from ..registry import default_registry

    fmt = check_plain_format(fmt)
    registry = default_registry.load_plugins()
    if layer:
        select_checks(registry, layer, [])  # validates the names
    layers = [lay for lay in known_layers(registry) if not layer or lay in layer]
    if fmt == "json":
        typer.echo(json.dumps([{"id": c.id, "layer": c.layer, "title": c.title, "safety": c.safety,
                                "needs": list(c.needs), "depends_on": list(c.depends_on),
                                "permissions": list(c.permissions), "smoke": c.smoke,
                                "metrics": [m.key for m in c.metrics],
                                "produces": None if c.produces is None else list(c.produces)}
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
    from ..engine import known_layers, suggest
    from ..registry import default_registry
    from ..diagnosis.symptoms import load_catalogue

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
        if c.produces is not None:   # what its failure can make users report (else: any symptom walking it)
            typer.echo("can cause: " + (", ".join(c.produces) if c.produces else
                                        "no symptom users report (an exposure): never a likely cause"))
        from ..diagnosis.causes import rules_for

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


