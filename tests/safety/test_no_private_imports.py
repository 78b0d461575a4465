"""No module of ours imports a private module of a dependency (``typer._click`` vanished in a typer
release; the floors in pyproject only hold for public API): neither ``import x._y`` / ``from x._y import``
nor ``x._y`` reached through an imported module. Our own packages and the standard library are exempt."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = {"studiodoctor", "checks", "tests", "benchmarks", "deploy", "scripts", "conftest", "studio_stack"}
SOURCES = [p for d in ("studiodoctor", "checks", "deploy", "scripts", "benchmarks") for p in (ROOT / d).rglob("*.py")]


def _third_party(module: str) -> bool:
    top = module.split(".")[0]
    return bool(top) and top not in OURS and top not in sys.stdlib_module_names


def _private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split(".")[1:])


def private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _third_party(alias.name):
                    if _private(alias.name):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: import {alias.name}")
                    modules[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _third_party(node.module):
            if _private(node.module) or node.module.split(".")[0].startswith("_"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import ...")
            for alias in node.names:  # a submodule imported by name: from typer import _click
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):  # typer._click.Group: a private module reached through an imported one
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules and isinstance(node.value, (ast.Name, ast.Attribute)):
                chain, cur = [node.attr], node.value
                while isinstance(cur, ast.Attribute):
                    chain.append(cur.attr)
                    cur = cur.value
                if not any(c.startswith("_") for c in chain[1:]):  # report the first private step only
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_scanner_finds_what_it_must(tmp_path):
    sample = ROOT / "scripts" / "_sample_private_import.py"
    text = "import typer\nfrom kombu.transport import _x\nimport redis._parsers\nfrom celery._state import y\n" \
           "import json\nfrom studiodoctor import _own\nprint(typer._click.Group, json._default_decoder)\n"
    sample.write_text(text)
    try:
        found = private_uses(sample)
    finally:
        sample.unlink()
    assert len(found) == 4 and any("typer._click" in f for f in found), found


def test_no_module_uses_a_private_module_of_a_dependency():
    assert len(SOURCES) > 30
    found = [f for p in SOURCES for f in private_uses(p)]
    assert found == [], "\n".join(found)
