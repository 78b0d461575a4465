"""The entry points of studiodoctor's groups (layers, commands, profiles), read once and cached on disk.

``importlib.metadata.entry_points()`` imports ``email``, ``zipfile`` and ``csv`` and reads the metadata of
every installed distribution, at every start and for every group (~40-80 ms of a ``diagnose``'s CPU).
The groups found are kept in ``$XDG_CACHE_HOME/studiodoctor/`` (default ``~/.cache``) under a key made of
what an install or uninstall changes: the distributions' metadata directories on the import path and the
modification times of their ``entry_points.txt``. A changed key, an unreadable or unwritable cache: read afresh, as before.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

GROUPS = ("studiodoctor.checks", "studiodoctor.commands", "studiodoctor.profiles")
CACHE_VERSION = 1

_FOUND: dict[str, list["EntryPoint"]] | None = None


@dataclass(frozen=True)
class EntryPoint:
    """What ``importlib.metadata.EntryPoint`` gives us: ``name``, ``value`` (``module:attr``), ``load()``."""

    name: str
    value: str
    group: str

    def load(self):
        from importlib import import_module

        module, _, attr = self.value.partition(":")
        obj = import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def cache_file(key: list | None = None) -> Path:
    """The cache of one set of metadata directories (a venv, and a checkout's when run from it): two
    ways of starting that see different ones do not overwrite each other's."""
    from binascii import crc32  # not hashlib: its OpenSSL costs --help 1.5 MiB (two sets sharing a name stay correct)

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    where = json.dumps([[entry, [name for name, _ in found]] for entry, found in (key or install_key())[1:]])
    digest = crc32(f"{sys.prefix}{sys.version_info[:2]}{where}".encode())
    return Path(base) / "studiodoctor" / f"entry-points-{digest:08x}.json"


def install_key() -> list:
    """What changes when a distribution is installed, upgraded or removed anywhere on ``sys.path``: the
    metadata directories in each entry and their ``entry_points.txt``'s modification times (not the
    directory's own time: the current directory, on the path of ``python -c``, changes all the time)."""
    key: list = [sys.prefix]
    for entry in sys.path:
        found = []
        try:
            with os.scandir(entry or ".") as it:
                for d in it:
                    if d.name.endswith((".dist-info", ".egg-info")):
                        try:
                            found.append([d.name, os.stat(os.path.join(d.path, "entry_points.txt")).st_mtime_ns])
                        except OSError:
                            found.append([d.name, None])
        except OSError:  # not a directory (a zip, a missing entry)
            pass
        if found:  # an entry without metadata adds nothing (the script's directory, a busy current one)
            key.append([entry, sorted(found)])
    return key


def _scan() -> dict[str, list[EntryPoint]]:
    from importlib.metadata import entry_points

    every = entry_points()
    return {g: [EntryPoint(ep.name, ep.value, g) for ep in every.select(group=g)] for g in GROUPS}


def _read_cache(path: Path, key: list) -> dict[str, list[EntryPoint]] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or data.get("key") != key:
        return None
    try:
        return {g: [EntryPoint(n, v, g) for n, v in data["groups"][g]] for g in GROUPS}
    except (KeyError, TypeError, ValueError):
        return None


def _write_cache(path: Path, key: list, found: dict[str, list[EntryPoint]]) -> None:
    data = {"version": CACHE_VERSION, "key": key,
            "groups": {g: [[ep.name, ep.value] for ep in eps] for g, eps in found.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)  # atomic: a concurrent start reads the old file or the new one
    except OSError:
        pass


def entry_points(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group`` (one of GROUPS), from the cache while nothing was installed."""
    global _FOUND
    if group not in GROUPS:
        raise ValueError(f"not a studiodoctor group: {group}")
    if _FOUND is None:
        key = install_key()
        path = cache_file(key)
        found = _read_cache(path, key)
        if found is None:
            found = _scan()
            _write_cache(path, key, found)
        _FOUND = found
    return list(_FOUND[group])


def forget() -> None:
    """Read the entry points afresh at the next call (after installing a plugin in-process)."""
    global _FOUND
    _FOUND = None
