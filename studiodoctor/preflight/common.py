"""What every backend's preflight shares: the registry of preflight checks (``PREFLIGHT``, ``pf``), the
permissions the real checks declare (``declared``), and one backend's verdict from its permission
entries (``entry``, ``verdict``)."""

from __future__ import annotations

from ..model import Command, MUTATING, Reason, error, fail, ok, warn
from ..registry import Registry, default_registry

PREFLIGHT = Registry(loaded=True)
pf = PREFLIGHT.check


# --- what the checks declare --------------------------------------------------------------------

def declared(layers=None, ids=None, registry=None) -> dict[str, list[str]]:
    """permission -> ids of the checks that declare it (in declaration order)."""
    registry = registry or default_registry.load_plugins()
    out: dict[str, list[str]] = {}
    for chk in registry.checks.values():
        if (layers is not None and chk.layer not in layers) and (ids is None or chk.id not in ids):
            continue
        for perm in chk.permissions:
            out.setdefault(perm, []).append(chk.id)
    return out


def entry(permission: str, needed_by, granted, how: str, grant: str = "", optional: bool = False,
           detail: str = "") -> dict:
    return {"permission": permission, "needed_by": sorted(set(needed_by)), "granted": granted, "how": how,
            "grant": grant, "optional": optional, **({"detail": detail} if detail else {})}


def verdict(backend: str, identity: str, entries: list[dict], grant_lines: list[str], *, evidence=None,
             note: str = ""):
    """The backend's result from its permission entries (granted True/False/None)."""
    missing = [e for e in entries if e["granted"] is False]
    unknown = [e for e in entries if e["granted"] is None]
    required_missing = [e for e in missing if not e["optional"]]
    affected = sorted({c for e in missing for c in e["needed_by"]})
    ev = {"identity": identity, "permissions": entries, "checks_affected": affected,
          "grants": grant_lines, **(evidence or {})}
    counts = f"{len(entries) - len(missing) - len(unknown)} of {len(entries)} permissions granted"
    cmds = [Command(line, MUTATING, "the grant to add") for line in grant_lines]
    tail = f"; {note}" if note else ""
    if required_missing:
        return fail(f"{backend} as {identity}: {counts}; missing "
                    + ", ".join(e["permission"] for e in missing)
                    + f": {', '.join(affected)} will answer error{tail}", evidence=ev, reason=Reason.FORBIDDEN,
                    hint="grant:\n" + "\n".join(grant_lines), commands=cmds)
    if unknown:
        details = {e["how"] for e in unknown}
        if len(details) != 1:
            details = {e.get("detail") or e["how"] for e in unknown}
        named = ", ".join(e["permission"] for e in unknown[:6]) + (f" and {len(unknown) - 6} more"
                                                                 if len(unknown) > 6 else "")
        why = f" ({details.pop()})" if len(details) == 1 and not note else ""
        return error(f"{backend} as {identity}: {counts}; cannot tell for {named}{why}{tail}",
                     evidence=ev, reason=Reason.UNEXPECTED,
                     hint=("grant:\n" + "\n".join(grant_lines)) if grant_lines else "", commands=cmds)
    if missing:
        return warn(f"{backend} as {identity}: {counts}; optional missing: "
                    + ", ".join(e["permission"] for e in missing) + f" ({', '.join(affected)}){tail}",
                    evidence=ev, reason=Reason.FORBIDDEN, hint="grant:\n" + "\n".join(grant_lines), commands=cmds)
    return ok(f"{backend} as {identity}: {counts}{tail}", evidence=ev)


def first_line(exc) -> str:
    """The first line of an error, at most 300 characters."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
