"""ingress-nginx as the lab's ingress (the ``other`` variant): a real nginx configured the way the
ingress-nginx controller renders an Ingress with TLS for the hostnames, in front of Studio's nginx.

What it reproduces of the controller: a catch-all default server with the controller's self-signed
"Kubernetes Ingress Controller Fake Certificate" (answering 404 from its default backend), one TLS
server per Ingress host with the secret's certificate, HSTS, ``308`` from HTTP to HTTPS, and the
503 the controller answers when an Ingress' Service does not exist. No API: ingress-nginx has none.

Faults (same names as :mod:`studiodoctor.lab.servers.traefik_server`, so the lab's faults drive either
ingress): ``missing-service`` (503), ``server-down`` (the upstream is a closed port: 502),
``default-cert`` (the fake certificate for the hostnames), ``expired-cert``.
"""

from __future__ import annotations

from ..launcher import free_port
from .nginx_server import NginxServer

FAULTS = {
    "missing-service": "the Ingress points at a Service that does not exist (503)",
    "server-down": "the Service's endpoint is a closed port (502)",
    "default-cert": "no TLS secret for the hostnames: the controller's fake certificate is served",
    "expired-cert": "the hostnames' certificate expired yesterday",
}

FAKE_CERT_CN = "Kubernetes Ingress Controller Fake Certificate"


class IngressNginx(NginxServer):
    """HTTPS on ``port`` and HTTP on ``web_port`` for ``hostnames``, proxied to ``backend`` (a URL, or a list
    of them: the frontend Service's endpoints, balanced round-robin)."""

    def __init__(self, root, port: int = 0, hostnames: list | tuple = ("studio.localtest",),
                 backend: str = "http://127.0.0.1:8080", web_port: int = 0, faults: list | None = None,
                 certs: dict | None = None, ca=None, name: str = "ingress-nginx", **options):
        options.pop("body", None)
        super().__init__(root, port, name=name, hostnames=list(hostnames), backend=backend,
                         web_port=web_port or free_port(), faults=list(faults or []), certs=dict(certs or {}),
                         **options)
        self.hostnames = self.options["hostnames"]
        self.backend = backend
        self.web_port = self.options["web_port"]
        self.faults_on = self.options["faults"]
        self.certs = self.options["certs"]
        self._ca = ca

    @property
    def entrypoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        return self.certs.get("ca_file", "")

    def listen_ports(self) -> set[int]:
        return super().listen_ports() | {self.web_port}

    def _issue_certs(self) -> None:
        import os

        if self.certs and all(os.path.exists(p) for k, p in self.certs.items() if k != "ca_file"):
            return
        import trustme

        from ..certs import LabCA

        ca = self._ca or LabCA(self.dir)
        good = ca.issue(*self.hostnames, label="ingress-" + self.hostnames[0])
        expired = ca.issue(*self.hostnames, label="ingress-expired-" + self.hostnames[0], expired=True)
        # the controller's own certificate: self-signed by "Acme Co", for ingress.local
        fake_ca = trustme.CA(organization_name="Acme Co")
        fake = fake_ca.issue_cert("ingress.local", common_name=FAKE_CERT_CN)
        fake_path = self.dir / "fake-certificate.pem"
        self.dir.mkdir(parents=True, exist_ok=True)
        fake.private_key_and_cert_chain_pem.write_to_path(str(fake_path))
        self.certs.update({"cert": str(good[0]), "key": str(good[1]), "expired_cert": str(expired[0]),
                           "expired_key": str(expired[1]), "fake": str(fake_path), "ca_file": str(ca.ca_file)})

    def http_body(self) -> str:
        self._issue_certs()
        faults = set(self.faults_on)
        names = " ".join(self.hostnames)
        if "default-cert" in faults:
            cert = key = self.certs["fake"]
        elif "expired-cert" in faults:
            cert, key = self.certs["expired_cert"], self.certs["expired_key"]
        else:
            cert, key = self.certs["cert"], self.certs["key"]
        backends = [self.backend] if isinstance(self.backend, str) else list(self.backend)
        if "server-down" in faults:
            backends = [f"http://127.0.0.1:{self.options.setdefault('dead_port', free_port())}"]
        upstream = "".join(f"server {b.split('://', 1)[-1]};" for b in backends)  # the Service's endpoints
        route = ("return 503;" if "missing-service" in faults else
                 "proxy_pass http://studio_endpoints; proxy_set_header Host $host; proxy_set_header X-Real-IP $remote_addr; "
                 "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
                 "proxy_set_header X-Forwarded-Proto https; proxy_read_timeout 60s; proxy_connect_timeout 5s;")
        return f"""
  server_tokens off;
  client_max_body_size 1000m;
  upstream studio_endpoints {{ {upstream} }}
  server {{
    listen 127.0.0.1:{self.port} ssl default_server;
    listen 127.0.0.1:{self.web_port} default_server;
    server_name _;
    ssl_certificate {self.certs['fake']};
    ssl_certificate_key {self.certs['fake']};
    location / {{ default_type text/plain; return 404 "default backend - 404"; }}
  }}
  server {{
    listen 127.0.0.1:{self.web_port};
    server_name {names};
    location / {{ return 308 https://$host$request_uri; }}
  }}
  server {{
    listen 127.0.0.1:{self.port} ssl;
    server_name {names};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    add_header Strict-Transport-Security "max-age=15724800; includeSubDomains" always;
    location / {{ {route} }}
  }}
"""

    def start(self, timeout: float = 15.0) -> "IngressNginx":
        from ..launcher import wait_for_port

        super().start(timeout)
        wait_for_port(self.web_port, timeout, pid=self.pid, log=self.log)
        return self

    # the lab's ingress interface (shared with TraefikServer) ---------------------------------
    def set_fault(self, name: str, on: bool = True) -> None:
        if name not in FAULTS:
            raise ValueError(f"unknown ingress-nginx fault {name!r} (known: {', '.join(FAULTS)})")
        self.faults_on[:] = [f for f in self.faults_on if f != name] + ([name] if on else [])
        if self.alive():
            self.reload()

    def clear_faults(self) -> None:
        self.faults_on.clear()
        if self.alive():
            self.reload()

    def wait_server_status(self, status: str, timeout: float = 10.0, service: str = "") -> None:
        """Nothing to wait for: ingress-nginx has no active health check, the next request sees the
        upstream as it is (Traefik's launcher waits for its health check here)."""

    def profile(self) -> dict:
        # ingress-nginx has no API: only the origin address that bypasses CloudFlare (the contract's key)
        return {"traefik": {"entrypoint": self.entrypoint}, "http": {"ca_file": self.ca_file}}
