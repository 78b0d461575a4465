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
        is Ready, as the API serves it now (as the kubelet keeps it from that pod's own processes)."""
        from .network import is_ready

        ips = {k.rsplit(":", 1)[0] for k, v in (self.read_state().get("network") or {}).items() if v == address}
        return any(is_ready(p) for p in self.pods() if (p.get("status") or {}).get("podIP") in ips)

    def kubelet_status(self) -> dict:
        """The stand-in's kubelet's progress (``GET /_lab/kubelet``, :mod:`.kubelet`): each probed container's
        readiness, probe counts and whether a flip is under way."""
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/_lab/kubelet", timeout=5) as resp:
            return json.loads(resp.read())

    def await_kubelet(self, timeout: float | None = None) -> dict:
        """Wait until the kubelet has finished a probe of every container begun after this call and no
        readiness flip is under way (a Ready container's last probe passed, a not-Ready one's failed): what a
        change to the lab's processes does to readiness is then what the API shows. Bounded by the slowest
        probe's own timing (its failures in a row, each a period and a timeout) plus 20 s of a loaded machine;
        a LabError naming the containers still moving after that. Returns the kubelet's status."""
        from studiodoctor.lab.launcher import LabError, wait_until

        def ident(t: dict) -> str:
            return f"{t['namespace']}/{t['pod']}/{t['container']}"

        first = self.kubelet_status()
        mark = {ident(t): t["started"] for t in first["targets"]}
        if timeout is None:
            timeout = 20.0 + max([(max(t["failureThreshold"], t["successThreshold"]) + 1)
                                  * (t["periodSeconds"] + t["timeoutSeconds"]) for t in first["targets"]] or [0])
        moving: list[str] = []

        def settled():
            status = self.kubelet_status()
            moving[:] = [f"{ident(t)} (ready={t['ready']}, {t['failures']} failure(s) and {t['successes']} "
                         f"success(es) in a row, {t['finished'] - mark.get(ident(t), 0)} probe(s) since)"
                         for t in status["targets"] if t["finished"] <= mark.get(ident(t), 0) or not t["settled"]]
            return None if moving else status

        try:
            return wait_until(settled, timeout, "the Kubernetes stand-in's kubelet is still probing")
        except LabError as exc:
            raise LabError(f"{exc}: {'; '.join(moving)}") from None

    def await_pods(self, ready: bool, address: str = "", timeout: float = 30.0) -> list[str]:
        """Wait until the API shows every pod the lab plays (``address``: only the pods whose ports the pod
        network leads to that lab process) Ready (``ready``) or not; returns their names. A LabError naming
        the pods still otherwise after ``timeout`` s."""
        from studiodoctor.lab.launcher import LabError, wait_until

        from .network import is_ready

        state = self.read_state()
        network = state.get("network") or {}
        ips = {k.rsplit(":", 1)[0] for k, v in network.items() if not address or v == address}
        names: list[str] = []
        wrong: list[str] = []

        def reached():
            pods = [p for p in self.pods() if (p.get("status") or {}).get("podIP") in ips]
            names[:] = sorted(p["metadata"]["name"] for p in pods)
            wrong[:] = [p["metadata"]["name"] for p in pods if is_ready(p) is not ready]
            return bool(pods) and not wrong

        try:
            wait_until(reached, timeout, f"pods not {'Ready' if ready else 'out of Ready'}")
        except LabError as exc:
            raise LabError(f"{exc}: {', '.join(wrong) or 'no pod the lab plays'}") from None
        return names

    def pods(self) -> list[dict]:
        """The pods of the lab's namespace as the API lists them now."""
        import urllib.request

        state = self.read_state()
        ns = state.get("config", {}).get("namespace", self.namespace)
        headers = {"Authorization": f"Bearer {state['token']}"} if state.get("token") else {}
        req = urllib.request.Request(f"{self.url}/api/v1/namespaces/{ns}/pods", headers=headers)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())["items"]

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
