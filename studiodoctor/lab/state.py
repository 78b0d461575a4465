"""Where the lab keeps its state, and the ``lab`` and ``lab-laptop`` profiles it writes (cheap to import)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def lab_dir() -> Path:
    base = os.environ.get("STUDIODOCTOR_LAB_DIR")
    if base:
        return Path(base)
    # not under $HOME: PostgreSQL runs as the `postgres` user when we are root, and /root is private
    return Path(f"/tmp/studiodoctor-lab-{os.getuid()}")


def profile_path() -> Path:
    return lab_dir() / "profile.json"


def laptop_profile_path() -> Path:
    return lab_dir() / "profile-laptop.json"


def lab_laptop_profile_data() -> dict | None:
    """The ``lab-laptop`` profile written by ``lab up`` (studiodoctor.lab.laptop), or None when no lab is up."""
    try:
        return json.loads(laptop_profile_path().read_text())
    except (OSError, ValueError):
        return None


def lab_profile_data() -> dict | None:
    """The ``lab`` profile written by ``lab up``, or None when no lab is up."""
    try:
        return json.loads(profile_path().read_text())
    except (OSError, ValueError):
        return None
