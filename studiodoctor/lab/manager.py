"""``studiodoctor lab up | status | down``: the lab's servers in the background, and its profile."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from .launcher import LabError, Launcher
from .state import lab_dir, profile_path

STATE_FILE = "state.json"


def launcher_kinds() -> dict[str, type[Launcher]]:
    from .fake_gcs import FakeGCSServer
    from .postgres_server import PostgresServer
    from .redis_server import RedisServer

    return {cls.kind: cls for cls in (RedisServer, PostgresServer, FakeGCSServer)}


def _state_path(root: Path) -> Path:
    return root / STATE_FILE


def load_state(root: Path | None = None) -> dict:
    root = root or lab_dir()
    try:
        return json.loads(_state_path(root).read_text())
    except (OSError, ValueError):
        return {"services": []}


def save_state(state: dict, root: Path | None = None) -> None:
    root = root or lab_dir()
    root.mkdir(parents=True, exist_ok=True)
    _state_path(root).write_text(json.dumps(state, indent=2))


def launchers(state: dict) -> list[Launcher]:
    kinds = launcher_kinds()
    return [kinds[s["kind"]].from_state(s) for s in state.get("services", []) if s["kind"] in kinds]


def lab_profile(services: list[Launcher]) -> dict:
    from ..config import deep_merge

    data: dict = {"timeout": 10.0}
    for svc in services:
        data = deep_merge(data, svc.profile())
    return data


def up(progress: Callable[[str], None] = lambda msg: None) -> dict:
    """Start every lab server that is not already running; write the ``lab`` profile."""
    root = lab_dir()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    state = load_state(root)
    running = {s.kind: s for s in launchers(state) if s.alive()}
    services: list[Launcher] = []
    for kind, cls in launcher_kinds().items():
        if kind in running:
            progress(f"{kind}: already running on {running[kind].address}")
            services.append(running[kind])
            continue
        progress(f"{kind}: starting")
        svc = cls(root)
        try:
            svc.start()
        except LabError:
            for started in services:
                if started.kind not in running:
                    started.stop()
            raise
        seed = getattr(svc, "seed_lab", None)
        if seed:
            seed()
        progress(f"{kind}: up on {svc.address}")
        services.append(svc)
    state = {"services": [s.to_state() for s in services]}
    save_state(state, root)
    profile_path().write_text(json.dumps(lab_profile(services), indent=2))
    return state


def status() -> list[dict]:
    return [{"kind": s.kind, "address": s.address, "pid": s.pid, "running": s.alive()}
            for s in launchers(load_state())]


def down(progress: Callable[[str], None] = lambda msg: None) -> None:
    root = lab_dir()
    for svc in reversed(launchers(load_state(root))):
        progress(f"{svc.kind}: stopping")
        svc.stop()
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
