"""The engine's layout by role (docs/architecture.md, "The layout, by role"): imports go one way,
commands -> engine -> probes/backends -> model; no module imports one that imports it back; the layers'
checks reach only the shared idioms; nothing outside the lab imports it; every package says what it may
import. Read from the sources (every import, lazy ones inside functions too), nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

import studiodoctor

ROOT = Path(studiodoctor.__file__).resolve().parent.parent
ENGINE = ROOT / "studiodoctor"

# The engine's rooms, lowest first: a room imports its own modules and rooms of LOWER layers only. A room
# is a package of studiodoctor/ or a module at its top. A new one goes into the layer its role says.
LAYERS = [
    {"model", "metrics", "secrets", "studio_facts", "parsers", "plugins"},  # the result model, pure readers, facts, entry points
    {"probes"},                                                   # one module per protocol
    {"backends"},                                                 # one connection module per backend
    {"discovery", "config", "context", "registry", "report", "render"},
    {"runner", "diagnosis", "vantage", "forked"},                # vantage: the in-cluster doctor asked; forked: a second core
    {"tunnels"},                                                  # the port-forwards a run opens (after vantage)
    {"engine"},
    {"smoke", "preflight"},
    {"commands"},
    {"cli"},
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
# what a layer's checks (checks/, and a third party's the same way) may import of the engine
FOR_CHECKS = {"model", "metrics", "secrets", "studio_facts", "parsers", "probes", "backends", "discovery",
              "context", "registry"}
STRICT = {"parsers": set()}  # rooms that may import nothing of ours at all


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in ``path``: relative ones resolved, ``from pkg import
    module`` as the module, ``import_module("x")`` with a literal name."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                is_module = (ROOT / sub.replace(".", "/")).with_suffix(".py").exists() or \
                    (ROOT / sub.replace(".", "/") / "__init__.py").exists()
                out.append((sub if is_module else base, node.lineno))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            out += [(a.value, node.lineno) for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return out


def room(module: str) -> str | None:
    """The room of one of our modules: ``checks``, ``lab``, a package of studiodoctor/ or a top module;
    None for the package root (``__version__``) and for what is not ours."""
    parts = module.split(".")
    if parts[0] == "checks":
        return "checks"
    if parts[0] != "studiodoctor" or len(parts) == 1:
        return None
    return parts[1]


def sources() -> list[Path]:
    return sorted(list(ENGINE.rglob("*.py")) + list((ROOT / "checks").rglob("*.py")))


def graph() -> dict[str, list[tuple[str, int]]]:
    """module -> the modules of ours it imports (with the line)."""
    ours = {module_name(p) for p in sources()}
    return {module_name(p): [(m, line) for m, line in imported(p) if m in ours and m != module_name(p)]
            for p in sources()}


def wrong_way(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Every import against the direction, said as one line."""
    bad = []
    for src, targets in edges.items():
        here = room(src)
        for dst, line in targets:
            there = room(dst)
            if there is None or there == here or here == "lab":
                continue
            where = f"{src}:{line} imports {dst}"
            if there == "lab":
                bad.append(f"{where}: nothing outside the lab imports it")
            elif here == "checks":
                if there not in FOR_CHECKS:
                    bad.append(f"{where}: a check reaches only {', '.join(sorted(FOR_CHECKS))}")
            elif here in STRICT and there not in STRICT[here]:
                bad.append(f"{where}: {here} imports nothing of ours")
            elif here not in RANK or there not in RANK:
                bad.append(f"{where}: place {here if here not in RANK else there!r} in a layer of LAYERS")
            elif RANK[there] > RANK[here]:
                bad.append(f"{where}: {here} is below {there} (commands -> engine -> probes/backends -> model)")
    return bad


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """The import cycles among modules (strongly connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w, _ in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_imports_go_one_way():
    edges = graph()
    assert len(edges) > 100 and sum(len(t) for t in edges.values()) > 200
    assert wrong_way(edges) == []


def test_no_module_imports_one_that_imports_it_back():
    assert cycles(graph()) == []


def test_every_room_of_the_engine_is_placed():
    rooms = {p.name for p in ENGINE.iterdir() if (p / "__init__.py").exists()} | \
        {p.stem for p in ENGINE.glob("*.py") if p.stem != "__init__"}
    assert rooms - set(RANK) == {"lab"}


def test_every_package_says_what_lives_there_and_what_it_may_import():
    packages = [p for p in ENGINE.iterdir() if (p / "__init__.py").exists() and p.name != "lab"]
    assert len(packages) >= 8
    silent = [p.name for p in packages if "may import" not in (ast.get_docstring(ast.parse(
        (p / "__init__.py").read_text())) or "").lower()]
    assert silent == []


def test_the_checks_find_what_they_must():
    edges = {
        "studiodoctor.probes.http": [("studiodoctor.engine", 3)],           # upward
        "studiodoctor.parsers.cfrules": [("studiodoctor.model", 4)],         # a pure reader importing
        "checks.redis.connect": [("studiodoctor.runner", 5)],                # a check reaching the runner
        "studiodoctor.engine": [("studiodoctor.lab.state", 6)],              # the engine importing the lab
        "studiodoctor.nowhere": [("studiodoctor.model", 7)],                 # a room nobody placed
        "studiodoctor.commands.run": [("studiodoctor.engine", 8)],           # fine
        "studiodoctor.lab.cli": [("studiodoctor.commands.common", 9)],       # fine: the lab sits on top
    }
    bad = wrong_way(edges)
    assert [line.split(" imports ")[0] for line in bad] == [
        "studiodoctor.probes.http:3", "studiodoctor.parsers.cfrules:4", "checks.redis.connect:5",
        "studiodoctor.engine:6", "studiodoctor.nowhere:7"]
    loop = {"a": [("b", 1)], "b": [("c", 1)], "c": [("a", 1)], "d": [("a", 1)]}
    assert cycles(loop) == [["a", "b", "c"]]
    # the lab's own command line does import the lab: the reader sees a real lazy import too
    assert any(m.startswith("studiodoctor.lab.") for m, _ in imported(ENGINE / "lab" / "cli.py"))
