"""Which evidence values are metrics, and their thresholds: a convention checks declare in one string.

A check lists its metrics in its decorator, ``metrics=("median_ms;warn_ms;fail_ms;0",)``, read like
the Nagios perfdata it turns into (``'label'=value[UOM];warn;crit;min;max``):

- the first field is the evidence key holding the number (``a.b`` walks into dicts; ``*`` stands
  for every key of a dict or item of a list, e.g. ``certificates.*.days_left``);
- ``warn``, ``crit``, ``min`` and ``max`` are each an evidence key (its value is used) or a number;
  empty or missing fields stay empty;
- a threshold ending in ``:`` alerts *below* it (Nagios range ``10:``), as for days left on a
  certificate; otherwise the value alerts above it;
- the unit comes from the key's suffix (``_ms`` ms, ``_s``/``_seconds`` s, ``percent`` %,
  ``_bytes`` B); anything else is a plain number.

The runner resolves the declarations against each result's evidence (``Result.metrics``), so every
output format reads the same resolved list and no check had to change how it builds its evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class MetricSpecError(ValueError):
    """A metric declaration that cannot be read (a bug in the layer module, caught at registration)."""


UNITS = (("_ms", "ms"), ("_seconds", "s"), ("_s", "s"), ("percent", "%"), ("_bytes", "B"))


def unit_of(key: str) -> str:
    last = key.rsplit(".", 1)[-1]
    for suffix, uom in UNITS:
        if last.endswith(suffix):
            return uom
    return ""


@dataclass(frozen=True)
class MetricSpec:
    key: str
    warn: str = ""
    crit: str = ""
    min: str = ""
    max: str = ""

    @classmethod
    def parse(cls, text: str) -> "MetricSpec":
        parts = [p.strip() for p in str(text).split(";")]
        if not parts[0] or len(parts) > 5:
            raise MetricSpecError(f"metric {text!r} is not 'key[;warn[;crit[;min[;max]]]]'")
        parts += [""] * (5 - len(parts))
        return cls(*parts)


@dataclass(frozen=True)
class Metric:
    """One resolved metric: ``warn``/``crit`` are numbers or None; ``below`` means "alert under"."""

    name: str
    value: float
    uom: str = ""
    warn: float | None = None
    crit: float | None = None
    min: float | None = None
    max: float | None = None
    below: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "uom": self.uom, "warn": self.warn, "crit": self.crit,
                "min": self.min, "max": self.max, "below": self.below}


def _number(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _walk(evidence, key: str) -> list[tuple[str, Any]]:
    """(name, value) for ``key`` in ``evidence``; ``*`` fans out over dict keys or list items."""
    found = [("", evidence)]
    for part in key.split("."):
        nxt = []
        for name, node in found:
            if part == "*":
                items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
                nxt += [(f"{name}.{k}" if name else str(k), v) for k, v in items]
            elif isinstance(node, dict) and part in node:
                nxt.append((f"{name}.{part}" if name else part, node[part]))
        found = nxt
    return found


def _threshold(field: str, evidence: dict) -> tuple[float | None, bool]:
    below = field.endswith(":")
    field = field.rstrip(":")
    if not field:
        return None, below
    number = _number(field)
    if number is None:
        number = _number(dict(_walk(evidence, field)).get(field))
    return number, below


def resolve(specs, evidence: dict) -> list[Metric]:
    """The metrics ``specs`` declare, read from ``evidence``; keys absent or not numeric are left out."""
    out = []
    for spec in specs:
        warn, below_w = _threshold(spec.warn, evidence)
        crit, below_c = _threshold(spec.crit, evidence)
        low, _ = _threshold(spec.min, evidence)
        high, _ = _threshold(spec.max, evidence)
        for name, raw in _walk(evidence, spec.key):
            value = _number(raw)
            if value is None:
                continue
            out.append(Metric(name, value, unit_of(spec.key), warn, crit, low, high, below_w or below_c))
    return out
