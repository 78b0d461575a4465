"""How the doctor reaches Redis: the parsed ``redis.url`` (``Target``: address, label and redis-cli
commands that never show the password) and a redis-py client that speaks RESP2, never retries and bounds
every socket call. Used by the redis layer and the celery layer (the broker is the same Redis)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


class Target:
    """The parsed ``redis.url``; ``label`` is safe to print (no password)."""

    def __init__(self, url: str):
        parts = urlsplit(url.strip())
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"scheme {parts.scheme or '(none)'!r} is not redis://, rediss:// or unix://")
        self.scheme = parts.scheme
        self.tls = parts.scheme == "rediss"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        if self.username == "":
            self.username = None
        self.path = parts.path if parts.scheme == "unix" else ""
        self.host = "" if self.path else (parts.hostname or "localhost")
        try:
            self.port = 0 if self.path else (parts.port or 6379)
        except ValueError:
            raise ValueError("the port is not a number") from None
        db = ""
        if self.path:
            from urllib.parse import parse_qs

            db = (parse_qs(parts.query).get("db") or [""])[0]
        else:
            db = parts.path.lstrip("/")
        try:
            self.db = int(db or 0)
        except ValueError:
            raise ValueError(f"database {db!r} is not a number") from None

    @property
    def address(self) -> str:
        if self.path:
            return self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def user(self) -> str:
        return self.username or "default"

    @property
    def label(self) -> str:
        return f"{self.address}/{self.db} user={self.user}"

    def cli(self, *args: str) -> str:
        """A redis-cli command for the runbook (the password is asked for, never printed)."""
        base = ["redis-cli"]
        base += ["-s", self.path] if self.path else ["-h", self.host, "-p", str(self.port)]
        if self.tls:
            base.append("--tls")
        if self.username:
            base += ["--user", self.username]
        if self.password:
            base.append("--askpass")
        if self.db:
            base += ["-n", str(self.db)]
        return " ".join(base + list(args))

    def scrub(self, text: str) -> str:
        text = str(text)
        if self.password:
            text = text.replace(self.password, "***")
        return text


def make_client(target: Target, timeout: float, protocol: int = 2, *, decode: bool = True):
    """A redis-py client: RESP2 unless asked, no retries, no CLIENT SETINFO, bounded sockets; ``decode=False``
    for the broker's binary kombu messages (the celery layer)."""
    import redis

    kwargs = dict(username=target.username, password=target.password, db=target.db, protocol=protocol,
                  socket_timeout=timeout, socket_connect_timeout=timeout, retry=None, health_check_interval=0, driver_info=None,
                  decode_responses=decode,
                  single_connection_client=False)
    if protocol == 3:
        try:
            from redis.maint_notifications import MaintNotificationsConfig

            kwargs["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
        except ImportError:  # older redis-py
            pass
    if target.path:
        return redis.Redis(unix_socket_path=target.path, **kwargs)
    if target.tls:
        kwargs.update(ssl=True)
    return redis.Redis(host=target.host, port=target.port, **kwargs)


def error_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # "unknown command 'HELLO', with args beginning with: '3' 'AUTH' 'default' '<password>'": drop the args
    return text.splitlines()[0].split(", with args beginning with")[0][:300]
