"""The floors of pyproject.toml's direct dependencies, as pins: ``typer==0.29 psycopg[binary]==3.3 ...``.

``python scripts/floors.py``          prints the pins (for ``pip install``), one per line
``python scripts/floors.py --check``  exits 1 naming every installed dependency that is not at its floor
A dependency without a ``>=`` floor (certifi) is left to the resolver."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQ = re.compile(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)$")


def floors() -> dict[str, tuple[str, str]]:
    """name -> (extras, floor version) for every runtime dependency with a >= floor."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    out = {}
    for dep in deps:
        m = REQ.match(dep.split(";")[0])
        if not m:
            continue
        floor = next((s.strip()[2:].strip() for s in m.group(3).split(",") if s.strip().startswith(">=")), "")
        if floor:
            out[m.group(1)] = (m.group(2) or "", floor)
    return out


def _release(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def main(argv: list[str]) -> int:
    if "--check" in argv:
        wrong = []
        for name, (_, floor) in floors().items():
            try:
                have = metadata.version(name)
            except metadata.PackageNotFoundError:
                wrong.append(f"{name}: not installed")
                continue
            if _release(have) != _release(floor):
                wrong.append(f"{name}: {have} installed, floor {floor}")
        for line in wrong:
            print(f"floors: {line}", file=sys.stderr)
        return 1 if wrong else 0
    for name, (extras, floor) in floors().items():
        print(f"{name}{extras}=={floor}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
