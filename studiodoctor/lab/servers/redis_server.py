"""A real redis-server on loopback, with faults the lab can apply and revert.

Faults (each applied through an admin connection; ``fix_*`` or a restart reverts them):
- stopped: ``stop()``                          -> redis.reachable fail (connection refused)
- wrong password: ``url(password="wrong")``     -> redis.reachable error, stage auth
- no RESP3: ``RedisServer(..., disable_commands=("HELLO",))`` answers HELLO like Redis 4
  ("ERR unknown command 'HELLO'")               -> redis.version warn
- memory nearly full: ``fill_memory(percent)`` (with a maxmemory) -> redis.memory warn/fail
- evictions: ``cause_evictions()``              -> redis.evictions warn
- rejected connections: ``cause_rejected_connections()`` -> redis.rejected_connections warn
- failed background save: ``break_persistence()`` / ``fix_persistence()`` -> redis.persistence fail
- replica: ``make_replica_of(host, port)`` / ``make_master()`` -> redis.role fail
- read-only ACL user: ``add_readonly_user(name, password)``
"""

from __future__ import annotations

import shutil

from ..launcher import LabError, Launcher, free_port, require_binary, stop_pid, wait_until

FILL_PREFIX = "studiodoctor:lab:fill:"


class RedisServer(Launcher):
    kind = "redis"

    def __init__(self, root, port: int = 0, password: str = "", maxmemory: str = "",
                 maxmemory_policy: str = "allkeys-lru", disable_commands: tuple | list = (), **options):
        super().__init__(root, port, password=password, maxmemory=maxmemory,
                         maxmemory_policy=maxmemory_policy, disable_commands=list(disable_commands), **options)
        self.password = password
        self.maxmemory = maxmemory
        self.maxmemory_policy = maxmemory_policy
        self.disable_commands = list(disable_commands)

    def command(self) -> list[str]:
        binary = require_binary("redis-server", "redis-server")
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.dir), "--daemonize", "no", "--protected-mode", "no",
               "--enable-protected-configs", "local"]  # break_persistence() moves `dir`
        if self.password:
            cmd += ["--requirepass", self.password]
        if self.maxmemory:
            cmd += ["--maxmemory", self.maxmemory, "--maxmemory-policy", self.maxmemory_policy]
        for name in self.disable_commands:  # like an old server that lacks the command (HELLO: Redis < 6)
            cmd += ["--rename-command", name, ""]
        return cmd

    def url(self, db: int = 0, user: str = "", password: str | None = None) -> str:
        pw = self.password if password is None else password
        auth = f"{user}:{pw}@" if (user or pw) else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0):
        """An admin client (the lab's own; the checks never use it)."""
        import redis

        # RESP2: works with disable_commands=("HELLO",) too (redis-py >= 8 defaults to RESP3)
        return redis.Redis.from_url(self.url(db), socket_timeout=5, retry=None, protocol=2)

    def stop(self) -> None:
        stop_pid(self.pid)

    def profile(self) -> dict:
        section = {"url": self.url(0)}
        if "HELLO" in self.disable_commands:  # RESP2 only: the lab's clients (its Celery worker) force RESP2
            section["client_protocol"] = 2
        return {"redis": section}

    # faults ----------------------------------------------------------------
    def info(self, section: str | None = None) -> dict:
        return self.client().info(section) if section else self.client().info()

    def add_readonly_user(self, name: str, password: str) -> str:
        """An ACL user allowed only read commands plus PING/INFO/HELLO; returns its URL."""
        self.client().execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", "~*", "&*",
                                      "-@all", "+@read", "+ping", "+info", "+hello")
        return self.url(0, user=name, password=password)

    def set_maxmemory(self, nbytes: int, policy: str | None = None) -> None:
        c = self.client()
        if policy:
            c.config_set("maxmemory-policy", policy)
        c.config_set("maxmemory", str(int(nbytes)))

    def fill_memory(self, percent: float, chunk: int = 32 * 1024, limit_bytes: int | None = None,
                    policy: str = "noeviction") -> dict:
        """Write data until used_memory >= ``percent`` of maxmemory (set to ``limit_bytes`` above the
        current use when given, or when no maxmemory is set). Returns the INFO memory section."""
        c = self.client()
        mem = c.info("memory")
        if limit_bytes or not mem.get("maxmemory"):
            self.set_maxmemory(mem["used_memory"] + (limit_bytes or 2 * 1024 * 1024), policy)
        else:
            c.config_set("maxmemory-policy", policy)
        value = b"x" * chunk
        i = len(c.keys(FILL_PREFIX + "*"))
        for _ in range(100000):
            mem = c.info("memory")
            if mem["used_memory"] * 100.0 / mem["maxmemory"] >= percent:
                return mem
            try:
                c.set(f"{FILL_PREFIX}{i}", value)
            except Exception as exc:  # OOM under noeviction: as full as it gets
                if "maxmemory" in str(exc):
                    return c.info("memory")
                raise
            i += 1
        raise LabError(f"could not fill Redis to {percent} %")

    def clear_fill(self) -> None:
        c = self.client()
        keys = c.keys(FILL_PREFIX + "*")
        if keys:
            c.delete(*keys)
        c.config_set("maxmemory", "0")

    def cause_evictions(self, nkeys: int = 50) -> int:
        """Fill past maxmemory under allkeys-lru so that Redis evicts keys; returns evicted_keys."""
        c = self.client()
        self.set_maxmemory(c.info("memory")["used_memory"] + 1024 * 1024, "allkeys-lru")
        for i in range(nkeys):
            c.set(f"{FILL_PREFIX}evict:{i}", b"y" * 32 * 1024)
        return int(c.info("stats")["evicted_keys"])

    def cause_rejected_connections(self, extra: int = 3) -> int:
        """Lower maxclients, open more connections than allowed, restore it; returns rejected_connections."""
        import socket

        c = self.client()
        c.ping()
        old = c.config_get("maxclients")["maxclients"]
        c.config_set("maxclients", "1")
        socks = []
        try:
            for _ in range(extra):
                s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                s.sendall(b"PING\r\n")
                s.recv(100)  # "-ERR max number of clients reached"
                socks.append(s)
        finally:
            for s in socks:
                s.close()
            c.config_set("maxclients", old)
        return int(c.info("stats")["rejected_connections"])

    def break_persistence(self) -> None:
        """Point `dir` at a directory that no longer exists and BGSAVE: rdb_last_bgsave_status:err."""
        c = self.client()
        gone = self.dir / "gone"
        gone.mkdir(parents=True, exist_ok=True)
        c.config_set("dir", str(gone))
        shutil.rmtree(gone)
        c.bgsave()
        self._wait_bgsave()

    def fix_persistence(self) -> None:
        c = self.client()
        self.dir.mkdir(parents=True, exist_ok=True)
        c.config_set("dir", str(self.dir))
        c.bgsave()
        self._wait_bgsave()

    def _wait_bgsave(self, timeout: float = 10.0) -> None:
        """BGSAVE marks the save in progress before it answers; wait until the server reaped its child."""
        c = self.client()
        wait_until(lambda: not int(c.info("persistence").get("rdb_bgsave_in_progress", 0)), timeout,
                   "BGSAVE did not finish")

    def make_replica_of(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """REPLICAOF a master (by default a free port with nothing on it: master_link_status down)."""
        self.client().execute_command("REPLICAOF", host, str(port or free_port()))

    def make_master(self) -> None:
        self.client().execute_command("REPLICAOF", "NO", "ONE")
