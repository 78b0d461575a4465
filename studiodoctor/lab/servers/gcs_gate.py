"""The lab's "anonymous world" in front of fake-gcs-server, which enforces no access control.

GCS with Studio's intended IAM (allUsers: roles/storage.legacyObjectReader) serves objects to anyone
but refuses anonymous listings. This small proxy does the same in front of the emulator, with GCS's
documented error bodies, and reads its rules from a JSON state file on every request so that lab
faults can flip them while it runs:

    {"listing_public": false, "private_objects": ["storage/a/b/<md5>.mp4"]}

Run: ``python -m studiodoctor.lab.servers.gcs_gate --port P --upstream http://127.0.0.1:Q --state gate.json``.
Point ``gcs.public_url`` at it; keep ``gcs.endpoint`` on the emulator (our credentials' view).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ..launcher import Launcher, write_json_atomic
from ..methodlog import MethodLog

XML_DENIED = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access denied."
              "</Message><Details>Anonymous caller does not have {perm} access to the Google Cloud Storage "
              "{what}. Permission '{perm}' denied on resource (or it may not exist).</Details></Error>")
JSON_DENIED = {"error": {"code": 401, "message": "", "errors": [
    {"message": "", "domain": "global", "reason": "required", "locationType": "header",
     "location": "Authorization"}]}}
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
               "proxy-authenticate", "content-length"}


def load_rules(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    return {"listing_public": bool(data.get("listing_public")),
            "private_objects": set(data.get("private_objects") or [])}


def make_handler(upstream: str, state: Path):
    target = urlsplit(upstream)
    methods = MethodLog.beside(state, "gcs_gate")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "UploadServer"  # what GCS sends as Server
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stalls

        def log_message(self, fmt, *args):  # quiet
            pass

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _xml_denied(self, perm: str, what: str) -> None:
            self._send(403, XML_DENIED.format(perm=perm, what=what).encode(), "application/xml; charset=UTF-8")

        def _json_denied(self, perm: str, what: str) -> None:
            msg = (f"Anonymous caller does not have {perm} access to the Google Cloud Storage {what}. "
                   f"Permission '{perm}' denied on resource (or it may not exist).")
            body = json.loads(json.dumps(JSON_DENIED))
            body["error"]["message"] = body["error"]["errors"][0]["message"] = msg
            self._send(401, json.dumps(body).encode(), "application/json; charset=UTF-8")

        def _handle(self) -> None:
            methods.record(self.command, self.path)
            rules = load_rules(state)
            parts = urlsplit(self.path)
            path = parts.path
            if self.command not in ("GET", "HEAD"):
                return self._xml_denied("storage.objects.create", "bucket")
            if path.startswith("/storage/v1/b/") and path.endswith("/iam/testPermissions"):
                # buckets.testIamPermissions, as GCS answers the anonymous caller: allUsers holds
                # roles/storage.legacyObjectReader (objects.get), objects.list only when listing is public
                asked = parse_qs(parts.query).get("permissions", [])
                held = {"storage.objects.get"} | ({"storage.objects.list"} if rules["listing_public"] else set())
                body = {"kind": "storage#testIamPermissionsResponse"}
                if granted := [p for p in asked if p in held]:  # GCS leaves the key out when none is held
                    body["permissions"] = granted
                return self._send(200, json.dumps(body).encode(), "application/json; charset=UTF-8")
            if path.startswith("/storage/v1/b/"):
                rest = path[len("/storage/v1/b/"):].split("/", 2)
                if len(rest) == 2 and rest[1] == "o" and not rules["listing_public"]:
                    return self._json_denied("storage.objects.list", "bucket")
                if len(rest) == 3 and rest[1] == "o" and unquote(rest[2]) in rules["private_objects"]:
                    return self._json_denied("storage.objects.get", "object")
            else:
                segments = path.lstrip("/").split("/", 1)
                obj = unquote(segments[1]) if len(segments) == 2 else ""
                if not obj and not rules["listing_public"]:
                    return self._xml_denied("storage.objects.list", "bucket")
                if obj and obj in rules["private_objects"]:
                    return self._xml_denied("storage.objects.get", "object")
            self._proxy()

        def _proxy(self) -> None:
            conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS | {"host"}}
                conn.request(self.command, self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except OSError as exc:
                return self._send(502, f"upstream unreachable: {exc}".encode(), "text/plain")
            finally:
                conn.close()
            self.send_response(resp.status)
            for key, value in resp.getheaders():
                if key.lower() not in HOP_HEADERS:
                    self.send_header(key, value)
            length = resp.getheader("Content-Length")
            self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_OPTIONS = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Handler


class GCSGate(Launcher):
    kind = "gcs-gate"

    def __init__(self, root, port: int = 0, upstream: str = "", **options):
        super().__init__(root, port, upstream=upstream, **options)
        self.upstream = upstream

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.dir / "gate.json"

    @property
    def method_logs(self) -> list[Path]:
        return [MethodLog.beside(self.state_file, "gcs_gate").path]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "studiodoctor.lab.servers.gcs_gate", "--port", str(self.port),
                "--upstream", self.upstream, "--state", str(self.state_file)]

    def start(self, timeout: float = 20.0) -> "GCSGate":
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.state_file.exists():
            self._write({"listing_public": False, "private_objects": []})
        super().start(timeout)
        return self

    def _write(self, data: dict) -> None:
        write_json_atomic(self.state_file, data)

    def rules(self) -> dict:
        data = load_rules(self.state_file)
        return {"listing_public": data["listing_public"], "private_objects": sorted(data["private_objects"])}

    def set_listing_public(self, public: bool) -> None:
        self._write({**self.rules(), "listing_public": bool(public)})

    def set_private(self, names) -> None:
        self._write({**self.rules(), "private_objects": sorted(names)})

    def profile(self) -> dict:
        return {"gcs": {"public_url": self.url}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.upstream, Path(args.state)))
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
