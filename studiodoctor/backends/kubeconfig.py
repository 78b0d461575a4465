"""Where and how to reach the Kubernetes API: ``kubernetes.api_url`` (+ token, CA), else a kubeconfig
context, else the in-cluster service account, as one ``Endpoint`` (URL, headers, TLS).

Read without the ``kubernetes`` SDK (its client costs ~1 s of CPU to import): tokens, token files,
client certificates (files or data), CA (file or data), ``insecure-skip-tls-verify``,
``tls-server-name``, basic auth and exec credential plugins (``gke-gcloud-auth-plugin``). Only a
legacy ``auth-provider`` user (gcp, oidc) falls back to the SDK's own loader.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
from dataclasses import dataclass, field

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeconfigError(Exception):
    """The kubeconfig (or in-cluster config) cannot give an endpoint; the message names why."""


class Unconfigured(KubeconfigError):
    """Nothing says where the API server is: the layer is skipped."""


@dataclass
class Endpoint:
    host: str
    headers: dict = field(default_factory=dict)
    verify: bool = True
    ca_file: str = ""
    ca_data: str = ""             # PEM text
    cert_file: str = ""
    key_file: str = ""
    cert_data: bytes = b""         # PEM
    key_data: bytes = b""
    server_name: str = ""          # tls-server-name (SNI and the name to verify)

    def ssl_context(self) -> ssl.SSLContext:
        sslctx = ssl.create_default_context()
        if not self.verify:
            sslctx.check_hostname = False
            sslctx.verify_mode = ssl.CERT_NONE
        elif self.ca_file or self.ca_data:
            sslctx.load_verify_locations(cafile=self.ca_file or None, cadata=self.ca_data or None)
        else:
            try:
                import certifi

                sslctx.load_verify_locations(certifi.where())
            except ImportError:
                pass
        if self.cert_file:
            sslctx.load_cert_chain(self.cert_file, self.key_file or None)
        elif self.cert_data:
            _load_cert_data(sslctx, self.cert_data, self.key_data)
        return sslctx


def _load_cert_data(sslctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """load_cert_chain reads files only: write both to a private directory, load, delete at once."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="studiodoctor-kube-") as tmp:
        paths = []
        for name, data in (("tls.crt", cert), ("tls.key", key)):
            path = os.path.join(tmp, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            paths.append(path)
        sslctx.load_cert_chain(paths[0], paths[1] if key else None)


def default_kubeconfig() -> str:
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return env.split(os.pathsep)[0]
    return os.path.expanduser("~/.kube/config")


def endpoint(section: dict, timeout: float = 10.0) -> Endpoint:
    """The endpoint the profile's ``kubernetes`` section describes; raises Unconfigured/KubeconfigError."""
    if section.get("api_url"):
        ep = Endpoint(str(section["api_url"]).rstrip("/"))
        if section.get("token"):
            ep.headers["Authorization"] = f"Bearer {section['token']}"
        ep.ca_file = section.get("ca_file") or ""
        ep.verify = not section.get("insecure_skip_tls_verify")
        return ep
    path = os.path.expanduser(section.get("kubeconfig") or default_kubeconfig())
    if os.path.isfile(path):
        return from_kubeconfig(path, section.get("context") or "", timeout)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    raise Unconfigured(f"no kubeconfig at {path} and kubernetes.api_url is not set")


def in_cluster() -> Endpoint:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    try:
        with open(os.path.join(SA_DIR, "token")) as fh:
            token = fh.read().strip()
    except OSError as exc:
        raise KubeconfigError(f"in-cluster config: cannot read the service account token: {exc}") from None
    if not token:
        raise KubeconfigError("in-cluster config: the service account token is empty")
    host = f"[{host}]" if ":" in host else host
    return Endpoint(f"https://{host}:{port}", headers={"Authorization": f"Bearer {token}"},
                    ca_file=os.path.join(SA_DIR, "ca.crt"))


def _named(entries, name: str, what: str) -> dict:
    for e in entries or []:
        if isinstance(e, dict) and e.get("name") == name:
            return e.get(what) or {}
    raise KubeconfigError(f"{what} {name!r} is not in the kubeconfig")


def from_kubeconfig(path: str, context: str = "", timeout: float = 10.0) -> Endpoint:
    import yaml

    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise KubeconfigError(f"kubeconfig {path}: {first}"[:300]) from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {path}: not a kubeconfig (a YAML {type(doc).__name__})")
    base = os.path.dirname(os.path.abspath(path))
    try:
        name = context or doc.get("current-context") or ""
        if not name:
            raise KubeconfigError("no context given (kubernetes.context) and no current-context")
        ctx = _named(doc.get("contexts"), name, "context")
        cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster")
        user = _named(doc.get("users"), ctx.get("user", ""), "user") if ctx.get("user") else {}
        if not cluster.get("server"):
            raise KubeconfigError(f"cluster {ctx.get('cluster')!r} has no server")
        if user.get("auth-provider"):
            return _sdk_fallback(path, context)
        ep = Endpoint(str(cluster["server"]).rstrip("/"))
        ep.verify = not cluster.get("insecure-skip-tls-verify")
        ep.server_name = cluster.get("tls-server-name") or ""
        ep.ca_file = _file(base, cluster.get("certificate-authority"))
        ep.ca_data = _b64(cluster.get("certificate-authority-data")).decode() if cluster.get(
            "certificate-authority-data") else ""
        _user(ep, user, base, timeout)
        return ep
    except KubeconfigError as exc:
        raise KubeconfigError(f"kubeconfig {path}: {exc}"[:300]) from None


def _file(base: str, value) -> str:
    if not value:
        return ""
    value = os.path.expanduser(str(value))
    return value if os.path.isabs(value) else os.path.join(base, value)


def _b64(value) -> bytes:
    try:
        return base64.b64decode(str(value), validate=False)
    except ValueError as exc:
        raise KubeconfigError(f"undecodable base64 data: {exc}") from None


def _user(ep: Endpoint, user: dict, base: str, timeout: float) -> None:
    if user.get("exec"):
        status = exec_credential(user["exec"], timeout)
        if status.get("token"):
            ep.headers["Authorization"] = f"Bearer {status['token']}"
        if status.get("clientCertificateData"):
            ep.cert_data = str(status["clientCertificateData"]).encode()
            ep.key_data = str(status.get("clientKeyData") or "").encode()
    if user.get("token"):
        ep.headers["Authorization"] = f"Bearer {user['token']}"
    elif user.get("tokenFile"):
        try:
            with open(_file(base, user["tokenFile"])) as fh:
                ep.headers["Authorization"] = f"Bearer {fh.read().strip()}"
        except OSError as exc:
            raise KubeconfigError(f"tokenFile: {exc}") from None
    elif user.get("username") and user.get("password") is not None:
        pair = f"{user['username']}:{user['password']}".encode()
        ep.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    if user.get("client-certificate"):
        ep.cert_file = _file(base, user["client-certificate"])
        ep.key_file = _file(base, user.get("client-key"))
    elif user.get("client-certificate-data"):
        ep.cert_data = _b64(user["client-certificate-data"])
        ep.key_data = _b64(user.get("client-key-data") or "")


def exec_credential(spec: dict, timeout: float) -> dict:
    """Run an exec credential plugin (client.authentication.k8s.io) and return its ``status``."""
    command = spec.get("command")
    if not command:
        raise KubeconfigError("exec plugin without a command")
    env = dict(os.environ)
    for e in spec.get("env") or []:
        if isinstance(e, dict) and e.get("name"):
            env[str(e["name"])] = str(e.get("value", ""))
    env["KUBERNETES_EXEC_INFO"] = json.dumps({"apiVersion": spec.get("apiVersion") or
                                              "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                                              "spec": {"interactive": False}})
    try:
        proc = subprocess.run([str(command), *[str(a) for a in spec.get("args") or []]], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=max(1.0, timeout))
    except FileNotFoundError:
        hint = spec.get("installHint") or ""
        raise KubeconfigError(f"exec plugin {command} not found" + (f" ({hint.strip()[:120]})" if hint else ""))
    except subprocess.TimeoutExpired:
        raise KubeconfigError(f"exec plugin {command} gave no credential within {timeout:.0f} s") from None
    if proc.returncode:
        first = (proc.stderr.decode(errors="replace").strip().splitlines() or [""])[0]
        raise KubeconfigError(f"exec plugin {command} exited {proc.returncode}: {first}"[:200])
    try:
        status = json.loads(proc.stdout).get("status")
    except (ValueError, AttributeError):
        status = None
    if not isinstance(status, dict):
        raise KubeconfigError(f"exec plugin {command} did not print an ExecCredential with a status")
    return status


def _sdk_fallback(path: str, context: str) -> Endpoint:
    """A legacy auth-provider (gcp, oidc): let the SDK's loader refresh it, then read what it set."""
    try:
        from kubernetes import client
        from kubernetes import config as kconfig

        cfg = client.Configuration()
        kconfig.load_kube_config(config_file=path, context=context or None, client_configuration=cfg)
    except Exception as exc:  # ConfigException, provider failures
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise KubeconfigError(f"auth-provider: {first}") from None
    ep = Endpoint(str(cfg.host).rstrip("/"), verify=bool(cfg.verify_ssl), ca_file=cfg.ssl_ca_cert or "",
                  cert_file=cfg.cert_file or "", key_file=cfg.key_file or "",
                  server_name=getattr(cfg, "tls_server_name", None) or "")
    auth = cfg.get_api_key_with_prefix("authorization") or cfg.get_basic_auth_token()
    if auth:
        ep.headers["Authorization"] = auth
    return ep
