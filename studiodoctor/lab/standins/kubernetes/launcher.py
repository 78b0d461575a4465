"""The stand-in as a background process of the lab (``KubeAPIServer``): its state file, faults on and off,
request counts and method log, the profile section that points the doctor at it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from studiodoctor.lab.launcher import Launcher, write_json_atomic
from studiodoctor.lab.methodlog import MethodLog

from .faults import FAULTS
from .objects import studio_state, variant_state
from .server import _make_server

class KubeAPIServer(Launcher):
    """The stand-in as a background process. ``state`` option: initial state (default studio_state())."""

    kind = "kube-api"

    def __init__(self, root, port: int = 0, namespace: str = "studio", hostnames: list[str] | tuple = (),
                 variant: str = "default", **options):
        super().__init__(root, port, namespace=namespace, hostnames=list(hostnames), variant=variant, **options)
        self.namespace = namespace
        self.hostnames = list(hostnames) or ["studio.localtest"]
        self.variant = variant

    def healthy_state(self) -> dict:
        """The default lab keeps the namespace it always had; other variants are built from their data."""
        from studiodoctor.lab.variants import get

        frontend = int(self.options.get("frontend") or 3)
        if self.variant == "default":
            return studio_state(self.namespace, hostnames=tuple(self.hostnames), frontend=frontend)
        return variant_state(get(self.variant), hostnames=tuple(self.hostnames), frontend=frontend)

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "studiodoctor.lab.standins.kubernetes", "--port", str(self.port),
                "--state", str(self.state_file)]

    def start(self, timeout: float = 15.0, state: dict | None = None) -> "KubeAPIServer":
        self.dir.mkdir(parents=True, exist_ok=True)
        if state is not None or not self.state_file.exists():
            self.write_state(state if state is not None else self.healthy_state())
        return super().start(timeout)

    # state and faults -------------------------------------------------------------------------
    def read_state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def write_state(self, state: dict) -> None:
        write_json_atomic(self.state_file, state)

    def set_fault(self, name: str, on: bool = True) -> None:
        """Turn a fault of FAULTS on or off (takes effect on the next request)."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
        state = self.read_state()
        faults = [f for f in state.get("faults", []) if f != name]
        if on:
            faults.append(name)
        state["faults"] = faults
        self.write_state(state)

    def connect_pods(self, tier: str, servers: dict[str, list]) -> None:
        """Lead the pod network to lab processes: ``servers`` maps a container name to one launcher per pod
        of ``tier`` (pods in name order); each pod's IP and that container's port then reach the launcher's
        loopback address (``state["network"]``, :mod:`.network`)."""
        from .faults import _pods

        state = self.read_state()
        cfg = state.get("config", {})
        pods = sorted(_pods(state, cfg.get("namespace", self.namespace), tier), key=lambda p: p["metadata"]["name"])
        network = state.setdefault("network", {})
        for container, launchers in servers.items():
            for p, launcher in zip(pods, launchers):
                spec = next(c for c in p["spec"]["containers"] if c["name"] == container)
                port = spec["ports"][0]["containerPort"]
                network[f"{p['status']['podIP']}:{port}"] = f"127.0.0.1:{launcher.port}"
        self.write_state(state)

    def connect_processes(self, tier: str, container: str, pidfile, command: str) -> None:
        """Let the lab process whose ``pidfile`` names it (running ``command``) play ``container`` in every pod
        of ``tier`` (a container without a port or probe, such as a Celery worker): the kubelet then reports
        it running only while that process runs (``state["processes"]``, :mod:`.network`)."""
        from .faults import _pods

        state = self.read_state()
        cfg = state.get("config", {})
        played = state.setdefault("processes", {})
        for p in _pods(state, cfg.get("namespace", self.namespace), tier):
            played[f"{p['status']['podIP']}/{container}"] = {"pidfile": str(pidfile), "command": command}
        self.write_state(state)

    def ready_behind(self, address: str) -> bool:
        """Whether the pod whose port the pod network leads to ``address`` (a lab process's ``127.0.0.1:PORT``)
        is Ready, as the API serves it now (its readiness probe against that pod's own processes)."""
        import urllib.request

        state = self.read_state()
        ips = {k.rsplit(":", 1)[0] for k, v in (state.get("network") or {}).items() if v == address}
        ns = state.get("config", {}).get("namespace", self.namespace)
        headers = {"Authorization": f"Bearer {state['token']}"} if state.get("token") else {}
        req = urllib.request.Request(f"{self.url}/api/v1/namespaces/{ns}/pods", headers=headers)
        with urllib.request.urlopen(req, timeout=5) as resp:
            pods = json.loads(resp.read())["items"]
        from .network import is_ready

        return any(is_ready(p) for p in pods if (p.get("status") or {}).get("podIP") in ips)

    def faults(self) -> list[str]:
        return list(self.read_state().get("faults", []))

    def clear_faults(self) -> None:
        state = self.read_state()
        state["faults"] = []
        self.write_state(state)

    def request_counts(self) -> dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/_lab/requests", timeout=5) as resp:
            return json.loads(resp.read())

    def methods(self) -> MethodLog:
        """The method log of every request the stand-in served (studiodoctor.lab.methodlog)."""
        return MethodLog.beside(self.state_file, "kubernetes")

    def reset_counts(self) -> None:
        import urllib.request

        req = urllib.request.Request(f"{self.url}/_lab/reset", data=b"{}", method="POST")
        urllib.request.urlopen(req, timeout=5).close()

    def profile(self) -> dict:
        state = self.read_state() if self.state_file.exists() else {}
        cfg = state.get("config", {})
        section = {"api_url": self.url, "namespace": self.namespace}
        if self.variant == "default":  # a Traefik in kube-system: the default lab says where
            section["traefik_namespace"] = cfg.get("traefik_namespace", "kube-system")
        if state.get("token"):
            section["token"] = state["token"]
        return {"kubernetes": section}


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Kubernetes API stand-in for the studiodoctor lab")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    server = _make_server(args.port, args.state, args.host)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
