"""The lab's in-cluster doctor: a real ``studiodoctor serve`` with the lab's in-cluster view (the ``lab``
profile: every endpoint reachable, as from inside the cluster), on loopback. The Kubernetes stand-in lists
it as deploy/'s Deployment and labelled Service (``standins/kubernetes/doctor.py``) and its services proxy
leads there, so a ``lab-laptop`` run asks it for Redis, PostgreSQL, Celery and Traefik's API.

Its answers are never reused (``--probe-cache 0``): a drill breaks and fixes faults seconds apart."""

from __future__ import annotations

import sys

from ..launcher import Launcher


class InClusterDoctor(Launcher):
    kind = "doctor"

    def command(self) -> list[str]:
        return [sys.executable, "-c", "from studiodoctor.cli import main; main()", "serve", "--profile", "lab",
                "--listen", self.address, "--interval", "600", "--budget", "20", "--probe-budget", "15",
                "--probe-cache", "0"]

    def spawn(self, cmd: list[str], env: dict | None = None, user: str | None = None) -> int:
        return super().spawn(cmd, env={**(env or {}), "STUDIODOCTOR_LAB_DIR": str(self.root)}, user=user)
