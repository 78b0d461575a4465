"""A real redis-server on loopback."""

from __future__ import annotations

from .launcher import Launcher, require_binary, stop_pid


class RedisServer(Launcher):
    kind = "redis"

    def __init__(self, root, port: int = 0, password: str = "", maxmemory: str = "", **options):
        super().__init__(root, port, password=password, maxmemory=maxmemory, **options)
        self.password = password
        self.maxmemory = maxmemory

    def command(self) -> list[str]:
        binary = require_binary("redis-server", "redis-server")
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.dir), "--daemonize", "no", "--protected-mode", "no"]
        if self.password:
            cmd += ["--requirepass", self.password]
        if self.maxmemory:
            cmd += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "allkeys-lru"]
        return cmd

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0):
        import redis

        return redis.Redis.from_url(self.url(db), socket_timeout=5)

    def stop(self) -> None:
        stop_pid(self.pid)

    def profile(self) -> dict:
        return {"redis": {"url": self.url(0)}}
