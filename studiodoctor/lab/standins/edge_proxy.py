"""A CloudFlare edge stand-in: real nginx (TLS from the lab CA, proxy_cache, HTTP->HTTPS redirect) in
front of an origin URL, adding CloudFlare's response headers (`server: cloudflare`, `cf-ray`,
`cf-cache-status` from nginx's `$upstream_cache_status`).

Stock nginx cannot replace its own `Server` header, so a tiny Python "shim" process sits between nginx
and the origin: it forwards requests, answers `Server: cloudflare` (nginx passes it with
`proxy_pass_header Server`) and serves CloudFlare-style 52x error pages at `/__cf_error/<code>`.

Faults (``set_fault(name, True|False)`` rewrites nginx.conf and reloads; state survives in ``faults``):
``expired_cert``, ``wrong_san``, ``no_redirect`` (plain HTTP served, not redirected), ``redirect_loop``
(HTTPS redirects to itself, like Flexible SSL + an origin redirect), ``error_522``, ``error_524``
(CloudFlare error pages; the 524 comes at once, not after 100 s), ``databases_hit``
(`/content/databases/` cached, origin Cache-Control ignored), ``unproxied`` (no CloudFlare headers:
a DNS-only host served straight by the origin's nginx).
"""

from __future__ import annotations

import argparse
import http.client
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from ..launcher import free_port, stop_pid, wait_for_port
from ..servers.nginx_server import NginxServer

FAULTS = ("expired_cert", "wrong_san", "no_redirect", "redirect_loop", "error_522", "error_524",
          "databases_hit", "unproxied")

CF_ERRORS = {
    520: "Web server is returning an unknown error", 521: "Web server is down", 522: "Connection timed out",
    523: "Origin is unreachable", 524: "A timeout occurred", 525: "SSL handshake failed",
    526: "Invalid SSL certificate", 527: "Railgun Listener to origin error", 530: "Origin DNS error",
}


def cf_error_page(code: int, host: str, ray: str) -> str:
    """An HTML page shaped like CloudFlare's own 5xx pages (the markers the edge checks look for)."""
    title = CF_ERRORS.get(code, "Error")
    return f"""<!DOCTYPE html>
<html lang="en-US"><head><title>{host} | {code}: {title}</title></head>
<body><div id="cf-wrapper"><div id="cf-error-details" class="p-0">
<header><h1><span class="inline-block">{title}</span><span class="code-label">Error code {code}</span></h1>
<div>Visit <a href="https://www.cloudflare.com/5xx-error-landing">cloudflare.com</a> for more information.</div></header>
<div class="cf-error-footer"><p><span>Cloudflare Ray ID: <strong class="font-semibold">{ray}</strong></span>
<span>Performance &amp; security by Cloudflare</span></p></div>
</div></div></body></html>
"""


_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
        "server", "date", "content-length"}


class _OriginTLS(http.client.HTTPSConnection):
    """HTTPS to the origin's address with the request's Host as SNI (CloudFlare "Full (strict)")."""

    def __init__(self, host, port, *, sni: str, **kwargs):
        super().__init__(host, port, **kwargs)
        self.sni = sni

    def connect(self):
        import socket

        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # TLS Finished, then the request: no Nagle wait
        self.sock = self._context.wrap_socket(sock, server_hostname=self.sni)


def serve_shim(port: int, origin: str, address: str = "127.0.0.1", origin_ca: str = "", method_log: str = "") -> None:
    from ..methodlog import MethodLog

    target = urlsplit(origin) if origin else None
    methods = MethodLog(method_log) if method_log else None
    tls = []  # the origin's TLS context, built once (loading the CA file per request cost ~10 ms of CPU)

    def origin_context():
        if not tls:
            import ssl

            tls.append(ssl.create_default_context(cafile=origin_ca or None))
        return tls[0]

    class Shim(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body are two writes: without TCP_NODELAY nginx's delayed ACK stalls each answer ~40 ms
        disable_nagle_algorithm = True

        def version_string(self):
            return "cloudflare"

        def _reply(self, status: int, headers: list, body: bytes, head: bool):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _handle(self):
            if methods:
                methods.record(self.command, self.path)
            head = self.command == "HEAD"
            host = (self.headers.get("Host") or "").split(":")[0]
            if self.path.startswith("/__cf_redirect/"):  # CloudFlare's own redirects carry its headers too
                location = "https://" + (self.headers.get("Host") or host) + self.path[len("/__cf_redirect"):]
                return self._reply(301, [("Location", location), ("Content-Type", "text/html")],
                                   b"<html><center>cloudflare</center></html>", head)
            if self.path.startswith("/__cf_error/"):
                code = int(self.path.rsplit("/", 1)[1])
                body = cf_error_page(code, host, "8e1a2b3c4d5e6f70-LAB").encode()
                return self._reply(code, [("Content-Type", "text/html; charset=UTF-8")], body, head)
            if target is None:
                return self._reply(200, [("Content-Type", "text/plain")], b"edge stand-in without origin\n", head)
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else None
            if target.scheme == "https":
                conn = _OriginTLS(target.hostname, target.port or 443, sni=host, timeout=100,
                                  context=origin_context())
            else:
                conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=100)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=data, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
                self._reply(resp.status, out, body, head)
            except OSError as exc:
                # CloudFlare's answers: origin certificate invalid (526), TLS handshake failed (525),
                # no answer in 100 s (524), refused (521)
                import ssl

                code = (526 if isinstance(exc, ssl.SSLCertVerificationError) else
                        525 if isinstance(exc, ssl.SSLError) else 524 if isinstance(exc, TimeoutError) else 521)
                body = cf_error_page(code, host, "8e1a2b3c4d5e6f70-LAB").encode()
                self._reply(code, [("Content-Type", "text/html; charset=UTF-8")], body, head)
            finally:
                conn.close()

        do_GET = do_HEAD = do_OPTIONS = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        def log_message(self, fmt, *args):
            sys.stdout.write("shim %s %s\n" % (self.address_string(), fmt % args))
            sys.stdout.flush()

    httpd = ThreadingHTTPServer((address, port), Shim)
    httpd.daemon_threads = True
    print(f"edge shim on {address}:{port} -> {origin or '(no origin)'}", flush=True)
    httpd.serve_forever()


class EdgeProxy(NginxServer):
    """The lab edge: HTTPS on ``port``, plain HTTP on ``http_port``, for ``hostnames``."""

    def __init__(self, root, port: int = 0, hostnames: list | None = None, origin_url: str = "",
                 http_port: int = 0, shim_port: int = 0, faults: list | None = None, ca=None,
                 certs: dict | None = None, ca_file: str = "", shim_pid: int | None = None,
                 name: str = "edge", **options):
        options.pop("body", None)
        super().__init__(root, port, name=name, hostnames=list(hostnames or ["studio.localtest"]),
                         origin_url=origin_url, http_port=http_port or free_port(),
                         shim_port=shim_port or free_port(), faults=list(faults or []), certs=certs or {},
                         ca_file=ca_file, **options)
        self.hostnames = self.options["hostnames"]
        self.origin_url = origin_url
        self.http_port = self.options["http_port"]
        self.shim_port = self.options["shim_port"]
        self.faults = self.options["faults"]
        self.certs = self.options["certs"]
        self.ca_file = ca_file
        self.shim_pid = shim_pid
        self._ca = ca

    def to_state(self):
        state = super().to_state()
        state["options"] = dict(state["options"], shim_pid=self.shim_pid)
        return state

    # certificates ---------------------------------------------------------------
    def _issue_certs(self) -> None:
        if self.certs and all(__import__("os").path.exists(p) for pair in self.certs.values() for p in pair):
            return
        from ..certs import LabCA

        ca = self._ca or LabCA(self.dir)
        good = ca.issue(*self.hostnames, label="edge-good")
        expired = ca.issue(*self.hostnames, label="edge-expired", expired=True)
        wrong = ca.issue("wrong-name.localtest", label="edge-wrong-san")
        self.certs.update({"good": [str(p) for p in good], "expired": [str(p) for p in expired],
                           "wrong_san": [str(p) for p in wrong]})
        self.ca_file = str(ca.ca_file)
        self.options["ca_file"] = self.ca_file

    # nginx config -----------------------------------------------------------------
    def _proxy(self, cache: str) -> str:
        if "unproxied" in self.faults:
            return f"proxy_pass {self.origin_url.rstrip('/') or f'http://127.0.0.1:{self.shim_port}'};"
        common = "proxy_pass http://edge_shim;"
        if cache == "on":
            return f"proxy_cache edge; proxy_cache_valid 200 10m; {common}"
        if cache == "forced":
            return ("proxy_cache edge; proxy_cache_valid 200 10m; "
                    f"proxy_ignore_headers Cache-Control Expires Set-Cookie Vary; proxy_hide_header Set-Cookie; {common}")
        if cache == "bypass":
            return f"proxy_cache edge; proxy_cache_bypass 1; proxy_no_cache 1; {common}"
        return common

    def _locations(self) -> str:
        for code in (522, 524):
            if f"error_{code}" in self.faults:
                return f"location / {{ rewrite ^ /__cf_error/{code} break; proxy_pass http://edge_shim; }}"
        db = "forced" if "databases_hit" in self.faults else "bypass"
        return "\n    ".join([
            f"location /content/storage/ {{ {self._proxy('on')} }}",
            f"location /static/ {{ {self._proxy('on')} }}",
            f"location /content/databases/ {{ {self._proxy(db)} }}",
            f"location / {{ {self._proxy('off')} }}",
        ])

    def http_body(self) -> str:
        self._issue_certs()
        names = " ".join(self.hostnames)
        which = "expired" if "expired_cert" in self.faults else "wrong_san" if "wrong_san" in self.faults else "good"
        cert, key = self.certs[which]
        cf_headers = "" if "unproxied" in self.faults else (
            'add_header cf-ray "${cf_ray}-LAB" always;\n  add_header cf-cache-status $cf_cache_status always;\n'
            "  proxy_pass_header Server;")
        redirect = ("location / { return 301 https://$host$request_uri; }" if "unproxied" in self.faults else
                    "location / { rewrite ^ /__cf_redirect$request_uri break; proxy_pass http://edge_shim; }")
        https_locations = redirect if "redirect_loop" in self.faults else self._locations()
        http_locations = self._locations() if "no_redirect" in self.faults else redirect
        return f"""
  proxy_cache_path {self.dir}/cache levels=1:2 keys_zone=edge:2m max_size=64m inactive=10m use_temp_path=off;
  map $upstream_cache_status $cf_cache_status {{ "" DYNAMIC; default $upstream_cache_status; }}
  map $request_id $cf_ray {{ "~^(?<ray>.{{16}})" $ray; default $request_id; }}
  upstream edge_shim {{ server 127.0.0.1:{self.shim_port}; keepalive 4; }}
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_read_timeout 100s;
  server {{
    listen 127.0.0.1:{self.http_port};
    server_name {names};
    {cf_headers}
    {http_locations}
  }}
  server {{
    listen 127.0.0.1:{self.port} ssl;
    server_name {names};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    {cf_headers}
    {https_locations}
  }}
"""

    def write_config(self) -> None:
        """NginxServer's config, plus ``user root;`` when running as root: nginx workers otherwise run as
        nobody and cannot write the proxy cache under a private (0700) lab or pytest directory."""
        import os

        (self.dir / "cache").mkdir(parents=True, exist_ok=True)
        super().write_config(prelude="user root;\n" if os.geteuid() == 0 else "")

    def listen_ports(self) -> set[int]:
        return super().listen_ports() | {self.http_port}

    # lifecycle --------------------------------------------------------------------
    def shim_command(self) -> list[str]:
        return [sys.executable, "-m", "studiodoctor.lab.standins.edge_proxy", "--port", str(self.shim_port),
                "--origin", self.origin_url, "--origin-ca", self.ca_file,
                "--method-log", str(self.dir / "edge_shim.requests.jsonl")]

    def start(self, timeout: float = 15.0) -> "EdgeProxy":
        self._issue_certs()  # the shim needs the CA file to verify an https origin
        self.shim_pid = self.spawn(self.shim_command())
        try:
            wait_for_port(self.shim_port, timeout, pid=self.shim_pid, log=self.log)
            super().start(timeout)
            wait_for_port(self.http_port, timeout, pid=self.pid, log=self.log)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_pid(self.pid)
        stop_pid(self.shim_pid)

    @property
    def method_logs(self) -> list:
        # nginx's access log (what reached the edge) and the shim's (what it passed on, CloudFlare-style)
        return [*super().method_logs, self.dir / "edge_shim.requests.jsonl"]

    def alive(self) -> bool:
        from ..launcher import pid_alive

        return pid_alive(self.pid) and pid_alive(self.shim_pid)

    def set_fault(self, fault: str, on: bool = True) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown edge fault {fault!r} (known: {', '.join(FAULTS)})")
        if on and fault not in self.faults:
            self.faults.append(fault)
        elif not on and fault in self.faults:
            self.faults.remove(fault)
        self.reload()

    def clear_faults(self) -> None:
        self.faults.clear()
        self.reload()

    def profile(self) -> dict:
        resolve = {}
        for host in self.hostnames:
            resolve[f"{host}:443"] = f"127.0.0.1:{self.port}"
            resolve[f"{host}:80"] = f"127.0.0.1:{self.http_port}"
        return {"public_urls": [f"https://{h}/" for h in self.hostnames[:1]],
                "http": {"resolve": resolve, "ca_file": self.ca_file}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="the edge stand-in's header shim")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--origin", default="")
    parser.add_argument("--origin-ca", default="", help="CA file for an https origin")
    parser.add_argument("--method-log", default="", help="record every request's method here (methodlog)")
    args = parser.parse_args(argv)
    serve_shim(args.port, args.origin, args.address, args.origin_ca, args.method_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
