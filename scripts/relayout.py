"""Rewrites references to the engine's moved modules (issue 26): imports (absolute and relative, ``from
studiodoctor import a, b`` split by new package), dotted names in strings (``mock.patch("studiodoctor.x.f")``,
``SDK_IMPORTS``), and ``studiodoctor/x.py`` paths in any text file.

Run: .venv/bin/python scripts/relayout.py FILE_OR_DIR...   (a branch that adds files: run it on them)
     .venv/bin/python scripts/relayout.py --move            (the move itself: git mv, then every file)
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "studiodoctor"

# old module (under studiodoctor.) -> new module
MOVES = {
    "httpprobe": "probes.http",
    "tlsprobe": "probes.tls",
    "netprobe": "probes.net",
    "staged": "probes.staged",
    "saasapi": "probes.saasapi",
    "cachecontrol": "parsers.cachecontrol",
    "cfrules": "parsers.cfrules",
    "nginx_conf": "parsers.nginx_conf",
    "static_assets": "discovery.static_assets",
    "appdeploy": "discovery.appdeploy",
    "grants": "backends.grants",
    "kubectl": "backends.kubectl",
    "symptoms": "diagnosis.symptoms",
    "runbook": "diagnosis.runbook",
    "causes": "diagnosis.causes",
    "baseline": "diagnosis.baseline",
    "serve": "commands.serve",
    "rbac": "preflight.rbac",
}
# modules that became packages (same dotted name, new path)
PACKAGED = {"preflight"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".yaml", ".yml", ".sh", ".cfg", ".ini", ""}
SKIP_DIRS = {".git", ".venv", "__pycache__", "node_modules"}


def new_name(dotted: str) -> str:
    for old, new in MOVES.items():
        o = f"{PKG}.{old}"
        if dotted == o or dotted.startswith(o + "."):
            return f"{PKG}.{new}" + dotted[len(o):]
    return dotted


def module_of(path: Path) -> tuple[str, bool] | None:
    """(dotted module name, is_package) of a file under ROOT, or None outside a package."""
    rel = path.resolve().relative_to(ROOT)
    if rel.parts[0] not in (PKG, "checks"):
        return None
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def old_module_of(module: str) -> str:
    """The module's name before the move (files are rewritten after git mv)."""
    for old, new in MOVES.items():
        if module == f"{PKG}.{new}":
            return f"{PKG}.{old}"
    return module


def _resolve(package: str, level: int, module: str | None) -> str:
    parts = package.split(".")
    parts = parts[:len(parts) - level + 1]
    return ".".join(parts + ([module] if module else []))


def _relative(package: str, target: str) -> tuple[int, str]:
    """``from <level dots><rest> import`` reaching ``target`` from inside ``package``."""
    p, t = package.split("."), target.split(".")
    common = 0
    while common < min(len(p), len(t)) and p[common] == t[common]:
        common += 1
    return len(p) - common + 1, ".".join(t[common:])


def _statement(indent: str, level: int, module: str, aliases: list[tuple[str, str | None]]) -> str:
    names = ", ".join(n if a is None or a == n else f"{n} as {a}" for n, a in aliases)
    head = f"{indent}from {'.' * level}{module} import "
    line = head + names
    if len(line) <= 110:
        return line
    return head + "(\n" + "".join(f"{indent}    {n if a is None or a == n else f'{n} as {a}'},\n"
                                  for n, a in aliases) + f"{indent})"


def _exists(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _written_here(package: str, node: ast.ImportFrom) -> bool:
    """A relative import that already reaches existing modules from the file's present place (so running
    this script twice, or on a file written after the move, changes nothing)."""
    base = _resolve(package, node.level, node.module)
    if not _exists(base):
        return False
    return node.module is not None or all(_exists(f"{base}.{a.name}") or a.name == "__version__"
                                          or not _exists(f"{PKG}.{a.name}") for a in node.names)


def rewrite_imports(path: Path, text: str) -> str:
    mod = module_of(path)
    tree = ast.parse(text, str(path))
    lines = text.splitlines(keepends=True)
    if mod:
        name, is_pkg = mod
        new_package = name if is_pkg else name.rsplit(".", 1)[0]
        old = old_module_of(name)
        old_package = old if (is_pkg and old == name) else old.rsplit(".", 1)[0]
        if name == f"{PKG}.preflight":  # preflight.py became preflight/__init__.py
            old_package = PKG
    else:
        new_package = old_package = ""
    edits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or (node.level and not mod):
            continue
        if node.level and new_package != old_package and _written_here(new_package, node):
            continue
        base = _resolve(old_package, node.level, node.module) if node.level else (node.module or "")
        groups: dict[str, list[tuple[str, str | None]]] = {}
        for a in node.names:
            full = new_name(f"{base}.{a.name}") if base == PKG else ""
            if base == PKG and full != f"{base}.{a.name}":
                parent, leaf = full.rsplit(".", 1)
                groups.setdefault(parent, []).append((leaf, a.asname or (a.name if leaf != a.name else None)))
            else:
                groups.setdefault(new_name(base), []).append((a.name, a.asname))
        first = lines[node.lineno - 1]
        indent = first[:node.col_offset]
        if indent.strip():
            print(f"{path}:{node.lineno}: import after other code on its line, left alone", file=sys.stderr)
            continue
        out = []
        for target, aliases in groups.items():
            if node.level:
                level, rest = _relative(new_package, target)
            else:
                level, rest = 0, target
            out.append(_statement(indent, level, rest, aliases))
        end_line = lines[node.end_lineno - 1]
        tail = end_line[node.end_col_offset:].rstrip("\n")
        new = "\n".join(out) + tail + "\n"
        old_text = "".join(lines[node.lineno - 1:node.end_lineno])
        same = len(groups) == 1 and next(iter(groups)) == base and (
            not node.level or _relative(new_package, base) == (node.level, node.module or ""))
        if not same and new != old_text:
            edits.append((node.lineno - 1, node.end_lineno, new))
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = [new]
    return "".join(lines)


def _dotted_pattern() -> re.Pattern:
    olds = "|".join(sorted(MOVES, key=len, reverse=True))
    return re.compile(rf"(?<![\w.]){PKG}\.({olds})(?![\w/])")


def _path_pattern() -> re.Pattern:
    olds = "|".join(sorted(list(MOVES) + list(PACKAGED), key=len, reverse=True))
    return re.compile(rf"(?<![\w/]){PKG}/({olds})\.py\b")


def rewrite_text(text: str) -> str:
    text = _dotted_pattern().sub(lambda m: f"{PKG}.{MOVES[m.group(1)]}", text)

    def path(m):
        old = m.group(1)
        if old in PACKAGED:
            return f"{PKG}/{old}/__init__.py"
        return f"{PKG}/{MOVES[old].replace('.', '/')}.py"
    return _path_pattern().sub(path, text)


def rewrite(path: Path) -> bool:
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError):
        return False
    new = rewrite_text(rewrite_imports(path, text) if path.suffix == ".py" else text)
    if new != text:
        path.write_text(new)
        return True
    return False


def files(args: list[str]):
    for arg in args:
        p = Path(arg).resolve()
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not SKIP_DIRS & set(f.relative_to(ROOT).parts) and f.suffix in TEXT_SUFFIXES \
                        and "egg-info" not in str(f):
                    yield f
        else:
            yield p


def move() -> None:
    src = ROOT / PKG
    for pkg in sorted({new.split(".")[0] for new in MOVES.values()} | PACKAGED):
        (src / pkg).mkdir(exist_ok=True)
    for old in PACKAGED:
        subprocess.run(["git", "mv", f"{PKG}/{old}.py", f"{PKG}/{old}/__init__.py"], cwd=ROOT, check=True)
    for old, new in MOVES.items():
        subprocess.run(["git", "mv", f"{PKG}/{old}.py", f"{PKG}/{new.replace('.', '/')}.py"], cwd=ROOT, check=True)


def main(argv: list[str]) -> int:
    if argv == ["--move"]:
        move()
        argv = [str(ROOT / d) for d in (PKG, "checks", "tests", "benchmarks", "scripts", "deploy", "docs")] + \
               [str(ROOT / "README.md"), str(ROOT / "pyproject.toml")]
    changed = [str(f.relative_to(ROOT)) for f in files(argv)
               if f.name != "relayout.py" and f.name != "architecture.md" and rewrite(f)]
    print("\n".join(changed))
    print(f"relayout: {len(changed)} files rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
