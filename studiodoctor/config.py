"""Configuration: the TOML contract of DESIGN.md, profiles, ``${VAR}`` references and validation."""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .secrets import SECRET_KEY, secrets_in_value

ENV_CONFIG = "STUDIODOCTOR_CONFIG"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """Bad configuration: one line naming the file, the key and the problem."""


class Unset(str):
    """A value whose ``${VAR}`` is not set in the environment: empty, but remembers the variable."""

    def __new__(cls, var: str):
        obj = super().__new__(cls, "")
        obj.var = var
        return obj


# Every key of the contract with its default (and so its type). Layers may read extra keys.
DEFAULTS: dict[str, Any] = {
    "timeout": 10.0,
    "samples": 5,                    # requests per sampled probe and endpoint (studiodoctor.probes.sampling; --samples)
    "public_urls": [],
    "http": {"ca_file": "", "resolve": {}, "user_agent": "Studio-Internal-Prober studiodoctor"},
    "dns": {"hostnames": [], "resolvers": [], "nameserver_suffix": ".ns.cloudflare.com", "zone": ""},
    "cloudflare": {"api_url": "https://api.cloudflare.com/client/v4", "api_token": "", "zone": ""},
    "traefik": {"api_url": "", "entrypoint": ""},
    "kubernetes": {"kubeconfig": "", "context": "", "api_url": "", "namespace": "studio",
                   "doctor": {"service": ""}},   # the in-cluster doctor: "NAMESPACE/NAME:PORT" (studiodoctor.vantage)
    "local": {"control_urls": []},
    "nginx": {"url": ""},
    "app": {"url": "", "api_token": ""},
    "redis": {"url": ""},
    "celery": {"broker_url": "", "queues": ["celery"]},
    "gcs": {"bucket": "", "endpoint": "", "public_url": "https://storage.googleapis.com", "credentials": ""},
    "postgres": {"dsn": ""},
    "sentry": {"api_url": "https://sentry.io/api/0", "auth_token": "", "organization": "", "project": ""},
    "newrelic": {"api_url": "https://api.newrelic.com/graphql", "api_key": "", "account_id": "", "app_name": ""},
    "email": {"postmark_api_url": "https://api.postmarkapp.com", "server_token": "",
              "status_url": "https://status.postmarkapp.com/api/1.0", "smtp_host": "", "smtp_port": 587},
}

BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    "production": {
        "public_urls": ["https://studio.learningequality.org"],
        "dns": {"hostnames": ["studio.learningequality.org"]},
        "cloudflare": {"api_token": "${CLOUDFLARE_API_TOKEN}", "zone": "learningequality.org"},
        "kubernetes": {"namespace": "studio"},
        "redis": {"url": "${STUDIO_REDIS_URL}", "client_protocol": 2},  # Studio forces RESP2 (Redis 4)
        "gcs": {"bucket": "studio-content"},
        "postgres": {"dsn": "${STUDIO_DATABASE_URL}"},
        "sentry": {"auth_token": "${SENTRY_AUTH_TOKEN}", "organization": "learningequality", "project": "1252819"},
        "newrelic": {"api_key": "${NEW_RELIC_API_KEY}"},
        "email": {"server_token": "${POSTMARK_API_KEY}", "smtp_host": "smtp.postmarkapp.com"},
    },
    "staging": {
        "public_urls": ["https://hotfixes.studio.learningequality.org"],
        "dns": {"hostnames": ["hotfixes.studio.learningequality.org"]},
        "cloudflare": {"api_token": "${CLOUDFLARE_API_TOKEN}", "zone": "learningequality.org"},
        "kubernetes": {"namespace": "hotfixes"},
        "redis": {"url": "${STUDIO_STAGING_REDIS_URL}", "client_protocol": 2},
        "gcs": {"bucket": "develop-studio-content"},
        "postgres": {"dsn": "${STUDIO_STAGING_DATABASE_URL}"},
    },
}

TOP_LEVEL_KEYS = {"default_profile", "profiles", "symptoms"}


@dataclass
class Profile:
    """One resolved profile: every section merged over the defaults, ``${VAR}`` substituted."""

    name: str
    data: dict[str, Any]
    source: str = "built-in"
    secrets: set[str] = field(default_factory=set)
    symptoms: dict[str, Any] = field(default_factory=dict)
    derived: dict[str, str] = field(default_factory=dict)   # "dns.zone" -> where its value came from

    @property
    def timeout(self) -> float:
        return float(self.data.get("timeout") or DEFAULTS["timeout"])

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        return value if isinstance(value, dict) else {}

    def value(self, dotted: str) -> Any:
        """``"redis.url"`` -> the value, or None when absent."""
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def unset_vars(self, dotted_prefix: str = "") -> list[tuple[str, str]]:
        """(key, VAR) for every value under ``dotted_prefix`` whose ``${VAR}`` is unset."""
        out = []

        def walk(node, path):
            if isinstance(node, Unset):
                out.append((path, node.var))
            elif isinstance(node, dict):
                for k, v in node.items():
                    walk(v, f"{path}.{k}" if path else k)
            elif isinstance(node, list):
                for v in node:
                    walk(v, path)

        walk(self.value(dotted_prefix) if dotted_prefix else self.data, dotted_prefix)
        return out

    def redacted_value(self, dotted: str) -> Any:
        from .secrets import Redactor

        return Redactor(self.secrets).data(self.value(dotted))

    def redacted(self) -> dict[str, Any]:
        """The profile as ``config show`` prints it: references kept, secrets masked."""
        from .secrets import Redactor

        return Redactor(self.secrets).data(self.data)


def find_config_file(explicit: str | None = None) -> Path | None:
    """--config, then $STUDIODOCTOR_CONFIG, ./studiodoctor.toml, ~/.config/studiodoctor/config.toml."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{explicit}: config file not found")
        return path
    env = os.environ.get(ENV_CONFIG)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"{env}: config file not found (from ${ENV_CONFIG})")
        return path
    for candidate in (Path("studiodoctor.toml"), Path("~/.config/studiodoctor/config.toml").expanduser()):
        if candidate.is_file():
            return candidate
    return None


def read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "resolve":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _check_types(data: dict, defaults: dict, where: str, path: str = "") -> None:
    for key, value in data.items():
        dotted = f"{path}{key}"
        if key not in defaults:
            continue
        expected = defaults[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {dotted}: expected a table, got {type(value).__name__}")
            if key == "resolve":
                for rk, rv in value.items():
                    if not isinstance(rv, str) or ":" not in rk or ":" not in rv:
                        raise ConfigError(f"{where}: {dotted}.{rk}: expected \"host:port\" = \"ip:port\"")
                continue
            _check_types(value, expected, where, dotted + ".")
        elif isinstance(expected, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {dotted}: expected true or false, got {value!r}")
        elif isinstance(expected, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ConfigError(f"{where}: {dotted}: expected a positive number, got {value!r}")
        elif isinstance(expected, int):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{where}: {dotted}: expected a positive integer, got {value!r}")
        elif isinstance(expected, list):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {dotted}: expected a list of strings, got {value!r}")
        elif isinstance(expected, str):
            if not isinstance(value, str):
                raise ConfigError(f"{where}: {dotted}: expected a string, got {value!r}")


def _known_words() -> frozenset[str]:
    """Every key some code could read: the contract's keys and every quoted identifier in the sources
    of the core and of the check layers (plugins included), read as text, nothing imported."""
    global _KNOWN
    if _KNOWN is None:
        import importlib.util
        from .plugins import entry_points

        words: set[str] = set()

        def keys(node):
            for k, v in node.items():
                words.add(k)
                if isinstance(v, dict):
                    keys(v)

        keys(DEFAULTS)
        # every engine module but the lab's and the renderers' (named unquoted: no key words of their own)
        engine, others = Path(__file__).parent, "lab render".split()
        files = [p for p in engine.rglob("*.py") if p.relative_to(engine).parts[0] not in others]
        for ep in entry_points(group="studiodoctor.checks"):
            words.add(ep.name)
            try:
                spec = importlib.util.find_spec(ep.value.split(":", 1)[0])
            except (ImportError, ValueError):
                continue
            if spec and spec.origin:
                files.append(Path(spec.origin))
            if spec and spec.submodule_search_locations:  # a layer that is a package: all its modules
                files += [p for d in spec.submodule_search_locations for p in Path(d).glob("*.py")]
        for path in files:
            try:
                words.update(re.findall(r"[\"']([a-z][a-z0-9_]*)[\"']", path.read_text(errors="replace")))
            except OSError:
                pass
        _KNOWN = frozenset(words)
    return _KNOWN


_KNOWN: frozenset[str] | None = None


def _check_unknown(data: dict, defaults: dict, where: str, path: str) -> None:
    """A key no code reads that is a near miss of one that is read is a typo: say which."""
    for key, value in data.items():
        # the contract's keys first: the sources are read (~25 ms) only for a key the contract lacks
        if key not in defaults and key not in _known_words():
            import difflib

            # a near miss of a key we know is a typo; a key unlike any is left to the plugin that reads it
            close = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.6) or \
                difflib.get_close_matches(key, sorted(_known_words()), n=1, cutoff=0.85)
            if close:
                raise ConfigError(f"{where}: {path}{key}: unknown key (did you mean {close[0]}?)")
        sub = defaults.get(key)
        if isinstance(value, dict) and key != "resolve":
            _check_unknown(value, sub if isinstance(sub, dict) else {}, where, f"{path}{key}.")


def _substitute(node: Any, key: str, secrets: set[str], env, path: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, k, secrets, env, f"{path}{k}.") for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, key, secrets, env, path) for v in node]
    if not isinstance(node, str):
        return node
    refs = _VAR.findall(node)
    if "${" in _VAR.sub("", node):
        raise ConfigError(f"{path.rstrip('.')}: malformed reference in {node!r}: write ${{NAME}}")
    for var in refs:
        if env.get(var) is None:
            return Unset(var)
        if "${" in env[var]:
            raise ConfigError(f"{path.rstrip('.')}: ${{{var}}} expands to another ${{...}} reference: references are "
                              f"not expanded twice (a loop?); set {var} to the value itself")
    value = _VAR.sub(lambda m: env[m.group(1)], node)
    secrets.update(secrets_in_value(key, value))
    if refs and (SECRET_KEY.search(key) or re.search(r"(?i)key", key)):
        secrets.add(value)
    return value


PROFILE_GROUP = "studiodoctor.profiles"


def plugin_profiles() -> dict[str, dict[str, Any]]:
    """Profiles other packages provide: entry-point group ``studiodoctor.profiles``, each a function
    returning the profile's data or None (the lab's ``lab``, present while a lab is up)."""
    from .plugins import entry_points

    found = {}
    for ep in entry_points(group=PROFILE_GROUP):
        try:
            data = ep.load()()
        except ImportError:  # the part that provides it is not installed
            continue
        if isinstance(data, dict):
            found[ep.name] = data
    return found


def load_profile(name: str | None = None, config_file: str | None = None, env=None) -> Profile:
    """Resolve a profile from the built-ins, the profiles of installed parts (the lab's) and the config file."""
    env = os.environ if env is None else env
    path = find_config_file(config_file)
    raw: dict[str, Any] = read_toml(path) if path else {}
    where = str(path) if path else "built-in profiles"
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        import difflib

        first = sorted(unknown)[0]
        close = difflib.get_close_matches(first, sorted(TOP_LEVEL_KEYS), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"{where}: unknown top-level key {first!r} "
                          f"({hint}expected one of {', '.join(sorted(TOP_LEVEL_KEYS))})")
    file_profiles = raw.get("profiles", {})
    if not isinstance(file_profiles, dict):
        raise ConfigError(f"{where}: profiles: expected a table of profiles")
    default = raw.get("default_profile", "production")
    if not isinstance(default, str):
        raise ConfigError(f"{where}: default_profile: expected a string")
    chosen = name or default
    available = dict(BUILTIN_PROFILES)
    if chosen not in available:  # a profile of an installed part (the lab's), read only when asked for
        available.update(plugin_profiles())
    if chosen not in available and chosen not in file_profiles:
        names = sorted(set(available) | set(file_profiles))
        raise ConfigError(f"{where}: unknown profile {chosen!r} (known: {', '.join(names)})")
    over = file_profiles.get(chosen, {})
    if not isinstance(over, dict):
        raise ConfigError(f"{where}: profiles.{chosen}: expected a table")
    _check_types(over, DEFAULTS, where, f"profiles.{chosen}.")
    _check_unknown(over, DEFAULTS, where, f"profiles.{chosen}.")
    symptoms = raw.get("symptoms", {})
    if not isinstance(symptoms, dict):
        raise ConfigError(f"{where}: symptoms: expected a table of symptoms")
    return profile_from_data(chosen, deep_merge(available.get(chosen, {}), over), env=env, source=where,
                             symptoms=symptoms)


def profile_from_data(name: str, data: dict[str, Any], *, env=None, source: str = "in-memory",
                      symptoms: dict | None = None) -> Profile:
    """A profile from a dict of sections (tests and the lab use it), merged over the defaults."""
    env = os.environ if env is None else env
    _check_types(data, DEFAULTS, source, f"profiles.{name}.")
    secrets: set[str] = set()
    try:
        resolved = _substitute(deep_merge(DEFAULTS, data), "", secrets, env)
    except ConfigError as exc:
        raise ConfigError(f"{source}: profiles.{name}.{exc}") from None
    derived = apply_fallbacks(resolved)
    return Profile(name=name, data=resolved, source=source, secrets=secrets, symptoms=symptoms or {},
                   derived=derived)


# -- fallbacks (DESIGN: a key a check needs defaults to what the contract already gives) ---------------

def _empty(value: Any) -> bool:
    return value in (None, "", [], {})


def _hosts_of_urls(data: dict) -> list[str]:
    from urllib.parse import urlsplit

    hosts = [urlsplit(u).hostname for u in data.get("public_urls") or [] if isinstance(u, str)]
    return list(dict.fromkeys(h for h in hosts if h))


def zone_guess(hostname: str) -> str:
    """The zone a hostname most likely belongs to: its last two labels (checks that can ask DNS refine it)."""
    labels = hostname.strip(".").split(".")
    return ".".join(labels[-2:]) if len(labels) >= 2 else ""


def apply_fallbacks(data: dict) -> dict[str, str]:
    """Fill empty keys that checks need from keys of the contract; returns {key: where the value came from}.

    ``dns.hostnames`` <- the hosts of ``public_urls``; ``dns.zone`` <- ``cloudflare.zone`` <- derived from
    the hostnames (and ``cloudflare.zone`` <- ``dns.zone`` <- derived); ``celery.broker_url`` <- ``redis.url``."""
    notes: dict[str, str] = {}

    def get(dotted):
        section, key = dotted.split(".", 1)
        return (data.get(section) or {}).get(key)

    def put(dotted, value, note):
        section, key = dotted.split(".", 1)
        old = (data.setdefault(section, {}) or {}).get(key)
        var = getattr(old, "var", None)
        data[section][key] = value
        notes[dotted] = note + (f" (${{{var}}} is unset)" if var else "")

    if _empty(get("dns.hostnames")) and _hosts_of_urls(data):
        put("dns.hostnames", _hosts_of_urls(data), "from public_urls")
    hosts = [h for h in get("dns.hostnames") or [] if isinstance(h, str) and h.strip()]
    guess = zone_guess(hosts[0]) if hosts else ""
    for key, other in (("dns.zone", "cloudflare.zone"), ("cloudflare.zone", "dns.zone")):
        if not _empty(get(key)):
            continue
        if not _empty(get(other)) and other not in notes:
            put(key, str(get(other)), f"from {other}")
        elif guess:
            put(key, guess, f"derived from dns.hostnames ({hosts[0]}): its last two labels")
    if "celery" in data and _empty(get("celery.broker_url")) and not _empty(get("redis.url")):
        put("celery.broker_url", get("redis.url"), "from redis.url")
    return notes
