"""A real PostgreSQL on loopback (initdb + postgres; as the ``postgres`` user when run as root)."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

from .launcher import LabError, Launcher, stop_pid, wait_for_port

PG_BINDIRS = ["/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"]


def pg_binary(name: str) -> str:
    for d in PG_BINDIRS:
        path = Path(d) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise LabError(f"{name} not found: install PostgreSQL with `apt-get install -y postgresql`")


class PostgresServer(Launcher):
    kind = "postgres"

    def __init__(self, root, port: int = 0, password: str = "", dbname: str = "kolibri-studio",
                 max_connections: int = 100, **options):
        password = password or secrets.token_hex(12)
        super().__init__(root, port, password=password, dbname=dbname, max_connections=max_connections,
                         **options)
        self.password = password
        self.dbname = dbname
        self.max_connections = max_connections

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def _user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def _initdb(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        user = self._user()
        if user:
            pw = pwd.getpwnam(user)
            for path in (self.root, self.dir, pwfile):
                if path == self.root and path.stat().st_uid != 0:
                    continue
                os.chown(path, pw.pw_uid, pw.pw_gid)
            os.chmod(self.root, 0o755)
        cmd = [pg_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
               "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"]
        proc = subprocess.run(cmd, capture_output=True, text=True, user=user)
        if proc.returncode != 0:
            raise LabError(f"initdb failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")

    def start(self, timeout: float = 30.0) -> "PostgresServer":
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        cmd = [pg_binary("postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir),
               "-c", "listen_addresses=127.0.0.1", "-c", f"max_connections={self.max_connections}",
               "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"]
        self.pid = self.spawn(cmd, user=self._user())
        wait_for_port(self.port, timeout, pid=self.pid, log=self.log)
        self._ensure_database()
        return self

    def stop(self) -> None:
        import signal

        stop_pid(self.pid, signal.SIGINT)  # "fast" shutdown

    def dsn(self, dbname: str | None = None, user: str = "postgres", password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{user}:{pw}@127.0.0.1:{self.port}/{dbname or self.dbname}"

    def connect(self, dbname: str | None = None, autocommit: bool = True):
        import psycopg

        return psycopg.connect(self.dsn(dbname), autocommit=autocommit, connect_timeout=5)

    def execute(self, sql: str, params=None, dbname: str | None = None) -> list[tuple]:
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def _ensure_database(self) -> None:
        import psycopg

        deadline_tries = 50
        for _ in range(deadline_tries):
            try:
                with self.connect("postgres") as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{self.dbname}"')
                return
            except psycopg.OperationalError as exc:
                if "starting up" not in str(exc):
                    raise
                import time

                time.sleep(0.1)

    def profile(self) -> dict:
        return {"postgres": {"dsn": self.dsn()}}
