"""The symptom catalogue (data in ``data/symptoms.toml``, extendable from the user's config)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model import SAFETY_CLASSES, Command

CATALOGUE = Path(__file__).parent.parent / "data" / "symptoms.toml"


class CatalogueError(Exception):
    """A symptom definition is malformed (names the symptom and the field)."""


@dataclass
class Step:
    layer: str
    why: str
    title: str = ""
    checks: list[str] | None = None        # None: every check of the layer
    also: list[str] = field(default_factory=list)   # extra check ids decided with this step
    # check ids whose `warn` explains this symptom: with no failure, such a warn is the likely cause
    warn_explains: list[str] = field(default_factory=list)
    # check ids that may cause this symptom whatever they declare (`produces`), and check ids or layers
    # that cannot (their failure is listed as unrelated to this symptom)
    causes: list[str] = field(default_factory=list)
    unrelated: list[str] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    # the check layers the step runs when it lists no `checks`: its layer's `covers` in the catalogue's
    # [layers.X] (the walk's `cloudflare` step covers layers cloudflare and edge), else the layer itself
    covers: list[str] = field(default_factory=list)

    @property
    def check_layers(self) -> list[str]:
        return self.covers or [self.layer]


@dataclass
class Symptom:
    name: str
    title: str
    aliases: list[str]
    steps: list[Step]
    codes: dict[str, str] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return [s.layer for s in self.steps]

    def can_be_caused_by(self, check_id: str, layer: str, produces: tuple[str, ...] | None) -> bool:
        """Whether a failure of this check can produce this symptom: a step's ``causes`` says yes, a step's
        ``unrelated`` (ids or layers) says no, else the check's own ``produces`` (None: any symptom)."""
        if any(check_id in s.causes for s in self.steps):
            return True
        if any(check_id in s.unrelated or layer in s.unrelated for s in self.steps):
            return False
        return produces is None or bool({self.name, *self.aliases} & set(produces))


@dataclass
class Catalogue:
    symptoms: dict[str, Symptom]
    layers: dict[str, dict[str, Any]]

    def names(self) -> list[str]:
        return list(self.symptoms)

    def lookup(self, word: str) -> Symptom | None:
        """The symptom named, aliased or coded by ``word`` ("502", "bad-gateway", "1020", "Error 1020")."""
        key = normal_code(word)
        for sym in self.symptoms.values():
            if key == sym.name.lower() or key in (a.lower() for a in sym.aliases):
                return sym
        for sym in self.symptoms.values():
            if key in sym.codes:
                return sym
        return None

    def all_words(self) -> list[str]:
        return [w for s in self.symptoms.values() for w in (s.name, *s.aliases)]

    def layer_title(self, layer: str) -> str:
        return self.layers.get(layer, {}).get("title", layer)

    def layer_commands(self, layer: str) -> list[Command]:
        return _commands(self.layers.get(layer, {}).get("commands", []), f"layers.{layer}")


def normal_code(word: str) -> str:
    """How users quote a code: "Error 1020", "HTTP 503", "cf-1020", "CF error 522" -> "1020", "503", "522"."""
    key = word.strip().lower()
    return re.sub(r"^(?:(?:cf|cloudflare|http)[ -]?)?(?:error[ -]?)?(?=\d{3,4}$)", "", key)


def _commands(raw: list, where: str) -> list[Command]:
    out = []
    for item in raw or []:
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict) or "text" not in item:
            raise CatalogueError(f"{where}: commands: each needs a `text`")
        safety = item.get("safety", "read-only")
        if safety not in SAFETY_CLASSES:
            raise CatalogueError(f"{where}: commands: safety must be one of {', '.join(SAFETY_CLASSES)}")
        out.append(Command(item["text"], safety, item.get("note", "")))
    return out


def _symptom(name: str, raw: dict, where: str) -> Symptom:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: symptoms.{name}: expected a table")
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise CatalogueError(f"{where}: symptoms.{name}: needs at least one [[symptoms.{name}.steps]]")
    steps = []
    for i, st in enumerate(steps_raw, 1):
        if not isinstance(st, dict) or not isinstance(st.get("layer"), str):
            raise CatalogueError(f"{where}: symptoms.{name}.steps[{i}]: needs a `layer`")
        for key in ("checks", "also", "warn_explains", "causes", "unrelated"):
            ids = st.get(key)
            if ids is not None and not (isinstance(ids, list) and all(isinstance(c, str) for c in ids)):
                raise CatalogueError(f"{where}: symptoms.{name}.steps[{i}].{key}: expected a list of check ids")
        steps.append(Step(layer=st["layer"], why=str(st.get("why", "")), title=str(st.get("title", "")),
                          checks=None if st.get("checks") is None else list(st["checks"]),
                          also=list(st.get("also") or []),
                          warn_explains=list(st.get("warn_explains") or []),
                          causes=list(st.get("causes") or []), unrelated=list(st.get("unrelated") or []),
                          commands=_commands(st.get("commands"), f"{where}: symptoms.{name}.steps[{i}]")))
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list):
        raise CatalogueError(f"{where}: symptoms.{name}.aliases: expected a list")
    return Symptom(name=name, title=str(raw.get("title", name)), aliases=[str(a) for a in aliases], steps=steps,
                   codes={str(k): str(v) for k, v in raw.get("codes", {}).items()})


@functools.lru_cache(maxsize=1)
def _builtin() -> dict:
    """The built-in catalogue as parsed, once per process (read, never changed: a command reads it twice)."""
    import tomllib

    return tomllib.loads(CATALOGUE.read_text())


def load_catalogue(user_symptoms: dict | None = None, where: str = "config") -> Catalogue:
    data = _builtin()
    symptoms = {str(n): _symptom(str(n), s, "built-in catalogue") for n, s in data["symptoms"].items()}
    for name, raw in (user_symptoms or {}).items():
        symptoms[str(name)] = _symptom(str(name), raw, where)
    layers = data.get("layers", {})
    for sym in symptoms.values():
        for step in sym.steps:
            step.covers = list(layers.get(step.layer, {}).get("covers", []))
    return Catalogue(symptoms=symptoms, layers=layers)


# ------------------------------------------------------------------------------------- templating
_FIELD = re.compile(r"\{\{|\}\}|\{([a-z_]+)\}")


def _discovered(results) -> dict[str, str]:
    """Names the checks found on the live system (Deployments by what they run, the ingress controller's
    namespace), for the template values the profile does not set."""
    out: dict[str, str] = {}
    for r in results or ():
        ev = getattr(r, "evidence", None) or {}
        if r.id == "kubernetes.deployments":
            roles = ev.get("roles") or {}
            for role, key in (("app", "app_deployment"), ("workers", "workers_deployment"),
                              ("cloudsql", "cloudsql_deployment")):
                if (roles.get(role) or {}).get("deployment"):
                    out[key] = roles[role]["deployment"]
            app, workers = roles.get("app") or {}, roles.get("workers") or {}
            for key, value in (("frontend_selector", app.get("selector")), ("app_container", app.get("container")),
                               ("nginx_container", app.get("nginx_container")),
                               ("workers_selector", workers.get("selector"))):
                if value:
                    out[key] = value
        elif r.id == "kubernetes.ingress_pods":
            spaces = sorted({n for c in (ev.get("controllers") or {}).values() for n in c.get("namespaces") or []})
            if spaces:
                out["ingress_namespace"] = spaces[0]
    return out


def template_values(profile, results=()) -> dict[str, str]:
    """The names the runbook's commands are bound to: the profile's keys, else what the checks discovered
    (``results``), else Studio's Helm chart conventions."""
    from urllib.parse import urlsplit

    hostnames = list(profile.value("dns.hostnames") or [])
    public_urls = list(profile.value("public_urls") or [])
    if not hostnames and public_urls:
        hostnames = [urlsplit(public_urls[0]).hostname or ""]
    from ..backends.kubectl import flags as kube_flags

    entry = profile.value("traefik.entrypoint") or ""
    entry_hostport = urlsplit(entry).netloc if entry else "ORIGIN_IP:443"
    hostname = hostnames[0] if hostnames else "HOSTNAME"
    queues = profile.value("celery.queues") or ["celery"]

    def v(key, fallback):
        value = profile.value(key)
        return str(value) if value else fallback

    namespace = v("kubernetes.namespace", "studio")
    found = _discovered(results)

    def k(key, chart_default):  # kubernetes.<key>, else discovered, else the chart's convention
        return v(f"kubernetes.{key}", found.get(key) or chart_default)

    controls = [str(c) for c in (profile.value("local.control_urls") or []) if str(c).strip()]
    control = urlsplit(controls[0] if "://" in (controls or [""])[0] else f"//{(controls or [''])[0]}")
    control_host = control.hostname or urlsplit(v("cloudflare.api_url", "https://api.cloudflare.com")).hostname
    return {
        "control_host": control_host or "api.cloudflare.com",
        "public_url": public_urls[0].rstrip("/") if public_urls else f"https://{hostname}",
        "hostname": hostname,
        "zone": v("cloudflare.zone", v("dns.zone", "ZONE")),
        "namespace": namespace,
        "app_deployment": k("app_deployment", f"{namespace}-studio"),
        "workers_deployment": k("workers_deployment", f"{namespace}-studio-workers"),
        "cloudsql_deployment": k("cloudsql_deployment", f"{namespace}-cloudsql-proxy"),
        "frontend_selector": k("frontend_selector", "tier=frontend"),
        "workers_selector": k("workers_selector", "tier=workers"),
        "app_container": k("app_container", "app"),
        "nginx_container": k("nginx_container", "nginx-proxy"),
        "ingress_namespace": k("ingress_namespace", v("kubernetes.traefik_namespace", "kube-system")),
        "kube": kube_flags(profile),
        "bucket": v("gcs.bucket", "BUCKET"),
        "queue": queues[0],
        "redis_url": v("celery.broker_url", v("redis.url", "$STUDIO_REDIS_URL")),
        "redis_cli": _redis_cli(v("celery.broker_url", v("redis.url", ""))),
        "dsn": v("postgres.dsn", "$STUDIO_DATABASE_URL"),
        "nginx_url": v("nginx.url", "http://127.0.0.1:8080").rstrip("/"),
        "app_url": v("app.url", "http://127.0.0.1:8081").rstrip("/"),
        "traefik_api": v("traefik.api_url", "http://127.0.0.1:9000").rstrip("/"),
        "entrypoint": entry or "https://ORIGIN_IP",
        "entrypoint_hostport": entry_hostport,
        "sentry_organization": v("sentry.organization", "learningequality"),
        "sentry_project": v("sentry.project", "SENTRY_PROJECT"),
    }


def _redis_cli(url: str) -> str:
    """``redis-cli -h H -p P -n DB`` (with --askpass when the URL has a password): no secret in the text."""
    from urllib.parse import urlsplit

    if not url:
        return 'redis-cli -u "$STUDIO_REDIS_URL"'
    parts = urlsplit(url)
    db = (parts.path or "/0").strip("/") or "0"
    cmd = f"redis-cli -h {parts.hostname or '127.0.0.1'} -p {parts.port or 6379} -n {db}"
    if parts.scheme == "rediss":
        cmd += " --tls"
    if parts.password:
        cmd += (f" --user {parts.username}" if parts.username else "") + " --askpass"
    return cmd


def render_command(cmd: Command, values: dict[str, str]) -> Command:
    def sub(m):
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        return values.get(m.group(1), m.group(0))

    text = re.sub(r"\s{2,}", " ", _FIELD.sub(sub, cmd.text)).strip()
    return Command(text, cmd.safety, _FIELD.sub(sub, cmd.note))
