"""Studio's own ``docker/nginx`` configuration, run by the lab's nginx with only paths and ports changed.

The http block of ``docker/nginx/nginx.conf`` is taken as it is, and the content include its image's
entrypoint picks (``includes/content/$AWS_BUCKET_NAME.conf``, else ``default.conf``) with its ``_proxy.conf``
and ``_cache.conf``. Changed: the listen port (8080), the gunicorn upstream's port (8081), the static alias
(``/app/contentworkshop_static/``: collectstatic's output here), the proxy cache path and the include paths.

Its ``proxy_pass https://<bucket>.storage.googleapis.com`` lines are left as they are: the lab adds an
``upstream`` block of each such name, pointing at a local TLS endpoint that forwards, path-style, to the
lab's anonymous-access gate in front of fake-gcs-server (GCS's public view: objects readable, no listing).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .nginx_server import NginxServer
from ..launcher import LabError, free_port

_INCLUDES = "/etc/nginx/includes"


def _http_block(conf: str) -> str:
    """The inside of ``http { ... }`` (brace-matched)."""
    start = re.search(r"^\s*http\s*\{", conf, re.M)
    if not start:
        raise LabError("Studio's nginx.conf has no http block")
    depth, i = 0, start.end() - 1
    for j in range(i, len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[j], 0)
        if depth == 0:
            return conf[i + 1:j]
    raise LabError("Studio's nginx.conf: unbalanced braces in its http block")


class StudioOwnNginx(NginxServer):
    """``StudioOwnNginx(root, src=..., app_port=..., gate_url=..., bucket=..., static_dir=..., cert=..., key=...)``."""

    def __init__(self, root, port: int = 0, src: str = "", app_port: int = 0, gate_url: str = "",
                 bucket: str = "studio-content", static_dir: str = "", cert: str = "", key: str = "",
                 name: str = "studio-nginx", body: str = "", **options):
        super().__init__(root, port, name=name, src=src, app_port=app_port, gate_url=gate_url, bucket=bucket,
                         static_dir=static_dir, cert=cert, key=key, **options)
        self.src = Path(src)
        self.app_port, self.gate_url, self.bucket = app_port, gate_url.rstrip("/"), bucket
        self.static_dir = static_dir
        self.options.setdefault("tls_port", free_port())
        self.tls_port = int(self.options["tls_port"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def listen_ports(self) -> set[int]:
        return {self.port, self.control_port, self.tls_port}

    def _copy_includes(self) -> Path:
        """Studio's includes under the lab dir, their include paths pointed there; the content conf chosen as
        its entrypoint.sh chooses it."""
        src = self.src / "docker" / "nginx"
        inc = self.dir / "includes"
        (inc / "content").mkdir(parents=True, exist_ok=True)
        for conf in (src / "includes" / "content").glob("*.conf"):
            (inc / "content" / conf.name).write_text(conf.read_text().replace(_INCLUDES, str(inc)))
        chosen = inc / "content" / f"{self.bucket}.conf"
        shutil.copyfile(chosen if chosen.exists() else inc / "content" / "default.conf", inc / "content.conf")
        shutil.copyfile(src / "mime.types", self.dir / "mime.types")
        return inc

    def http_body(self) -> str:
        inc = self._copy_includes()
        studio = (self.src / "docker" / "nginx" / "nginx.conf").read_text()
        body = _http_block(studio)
        body = re.sub(r"listen\s+8080\b", f"listen 127.0.0.1:{self.port}", body)
        body = body.replace("server 127.0.0.1:8081;", f"server 127.0.0.1:{self.app_port};")
        body = body.replace("/app/contentworkshop_static/", f"{self.static_dir.rstrip('/')}/")
        body = body.replace("/tmp/proxycache", str(self.dir / "proxycache"))
        body = body.replace("root /app/favico.ico;", f"root {self.static_dir};")
        body = re.sub(r"include\s+mime\.types;", f"include {self.dir / 'mime.types'};", body)
        body = body.replace(f"{_INCLUDES}/content.conf", str(inc / "content.conf"))
        content = (inc / "content.conf").read_text()
        hosts = sorted(set(re.findall(r"proxy_pass\s+https://([\w.-]+\.storage\.googleapis\.com)\s*;", content)))
        upstreams = "".join(f"upstream {h} {{ server 127.0.0.1:{self.tls_port}; }}\n" for h in hosts)
        # GCS's public endpoint, virtual-hosted style (<bucket>.storage.googleapis.com/<object>), as the
        # gate's path-style /<bucket>/<object>: the lab's stand-in for Google's front end.
        gcs = f"""
server {{
  listen 127.0.0.1:{self.tls_port} ssl;
  ssl_certificate {self.options['cert']};
  ssl_certificate_key {self.options['key']};
  location / {{
    set $bucket "";
    if ($host ~ ^(?<b>[^.]+)\\.storage\\.googleapis\\.com$) {{ set $bucket $b; }}
    proxy_pass {self.gate_url}/$bucket$request_uri;
    proxy_set_header Host 127.0.0.1;
  }}
}}
"""
        return upstreams + body + gcs

    def set_fault(self, name: str, on: bool = True) -> None:
        raise LabError("the studio variant runs Studio's own nginx configuration: its config faults are drilled "
                       "on the default and other variants")

    def profile(self) -> dict:
        conf = (self.src / "docker" / "nginx" / "nginx.conf").read_text()
        found = re.search(r"location\s+/\s*\{[^}]*proxy_read_timeout\s+(\d+)s", conf)
        return {"nginx": {"url": self.url, **({"proxy_read_timeout": float(found.group(1))} if found else {})}}
