"""Read-only, measured (issue 17): with the whole lab up, `check` on the healthy lab and `diagnose` of
every fault's symptoms (default variant: every fault; the other variant: a sample, as in the drill),
while every HTTP counterpart logs the methods it receives and Redis MONITOR watches the broker.

Only GET/HEAD/OPTIONS reach any HTTP counterpart (the Kubernetes API: plus POST SelfSubjectAccessReview,
declared by `kubernetes.permissions`), and Redis sees read commands plus exactly the celery layer's
documented control-message writes (``checks.celery.CONTROL_ACL``). Only the doctor's requests
count: the lab's own (fault injection between runs, its servers' connections) are left out by time
window and by which process owns the connection.

``FIGURES`` (methods seen per counterpart, Redis commands, seconds) is what benchmarks/reliability.py
reports."""

from __future__ import annotations

import fnmatch
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from studiodoctor import engine
from studiodoctor.config import load_profile
from studiodoctor.lab.faults import FAULTS, set_fault, skipped
from studiodoctor.lab.launcher import tcp_sockets
from studiodoctor.lab.manager import Lab
from studiodoctor.lab.methodlog import READ_METHODS, log_size, read_methods
from studiodoctor.lab.variants import VARIANTS
from tests.safety.test_read_only_redis import READS

# the other variant: the faults whose parts differ there, one per counterpart kind (CI time)
OTHER_SAMPLE = ("app-stopped", "nginx-stopped", "redis-down", "worker-stopped", "traefik-server-down",
                "traefik-expired-cert", "pod-crashloop", "databases-hit", "record-missing", "private-content",
                "sentry-error-spike", "postmark-stream-paused")
KUBE_KINDS = ("kube-api", "kubernetes")
KUBE_WRITES_ALLOWED = {("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")}
# NerdGraph (New Relic) is GraphQL, POST only: a query reads (the stand-in logs the operation after '#')
READS_BY_POST = {"newrelic-api": {("POST", "/graphql#query")}}
# read commands beyond test_read_only_redis's (kombu's broadcast reads its fanout deadlines)
BROKER_READS = READS | {"ZRANGEBYSCORE", "ZSCORE", "SMEMBERS", "LRANGE", "STRLEN", "TTL", "PTTL"}

FIGURES: dict = {"variants": {}}
LAB = Path(sys.modules["studiodoctor.lab"].__file__).parent


def _control_writes():
    """What the celery layer declares it writes: the commands of CONTROL_ACL and the keys they may touch."""
    from checks.celery import CONTROL_ACL

    commands = {g[1:].split("|")[0].upper() for g in CONTROL_ACL if g.startswith("+")}
    keys = [g[1:] for g in CONTROL_ACL if g.startswith("~")]
    return commands, keys


KEYED = {"SADD": 1, "ZADD": 1, "SREM": 1, "SMEMBERS": 1, "LLEN": 1, "LPOP": 1, "DEL": None, "BRPOP": -1}


# what only a Celery worker sends (command -> the key or channel it names): taking and acknowledging a task
# (kombu's unacked hash and index), its task events, binding its own node's queue to the broadcast exchange
WORKER_ONLY_KEYS = {"HSET": ("unacked",), "HDEL": ("unacked",), "ZADD": ("unacked_index",),
                    "ZREM": ("unacked_index",), "SADD": ("_kombu.binding.celery.pidbox",), "PUBLISH": ("*celeryev*",)}


def _worker_only(name: str, command: list[str]) -> bool:
    """What a Celery worker does and the doctor may not: consume the app's queue (BRPOP celery...), answer a
    broadcast (LPUSH on a reply queue), or one of ``WORKER_ONLY_KEYS``. Seen on a connection closed before it
    could be looked up (a worker restarted by a fault, under load), it is the worker's; from a connection known
    to be the doctor's it counts, and the celery layer runs with an ACL whose commands and keys cover none of
    the writes among them (tests/safety/test_least_privilege.py)."""
    if name == "BRPOP":
        return all(k == "celery" or k.startswith("celery\\x06\\x16") for k in command[1:-1])
    if name in WORKER_ONLY_KEYS:
        return command[1:2] != [] and any(fnmatch.fnmatchcase(command[1], k) for k in WORKER_ONLY_KEYS[name])
    return name == "LPUSH" and command[1:2] != [] and command[1].endswith(".reply.celery.pidbox")


def _undeclared(owner: str, command: list[str], allowed: set[str], keys: list[str]) -> bool:
    """Is this broker command outside reads and the celery layer's declared control writes?"""
    name = command[0].upper()
    if name in BROKER_READS or (name == "CONFIG" and command[1:2] and command[1].upper() == "GET"):
        return False
    if owner == "gone" and _worker_only(name, command):
        return False
    if name not in allowed:
        return True
    if name == "PUBLISH":
        return "celery.pidbox" not in (command[1] if len(command) > 1 else "")
    if name in KEYED:
        span = KEYED[name]
        touched = command[1:] if span is None else command[1:span] if span < 0 else command[1:1 + span]
        return not all(any(fnmatch.fnmatchcase(k, p) for p in keys) for k in touched)
    return False  # EVAL/EVALSHA/SCRIPT/TIME/MULTI/EXEC: what the script does is seen as its own lua lines


def _connections(redis_port: int, sessions: set[int]) -> tuple[set[int], set[int], set[int]]:
    """Client ports of the open connections to Redis: (all, those a lab process holds, this process's).
    A lab process is one in the session of a lab server (each launcher starts its server in a new
    session, so its workers and children share it); only a socket found in such a process's fds makes a
    connection the lab's, and only one in this process's fds the doctor's."""
    inodes = {f"socket:[{inode}]": local for local, remote, state, inode in tcp_sockets()
              if remote == redis_port and state == "01" and inode != "0"}
    lab, own = set(), set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            port = inodes.get(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
        if port is not None:
            own.add(port)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                session = int(fh.read().rsplit(")", 1)[1].split()[3])
            if session not in sessions:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                port = inodes.get(os.readlink(f"/proc/{pid}/fd/{fd}"))
                if port is not None:
                    lab.add(port)
        except (OSError, ValueError, IndexError):
            continue
    return set(inodes.values()), lab, own


class BrokerWatch:
    """MONITOR on the lab's Redis (reconnecting across the faults that stop it), counting the commands
    sent in the doctor's windows by connections that are not the lab's own."""

    def __init__(self, url: str, sessions):
        import redis

        self.sessions = sessions  # () -> the session ids of the lab's servers (their pids)
        self.url, self.port = url, redis.Redis.from_url(url, protocol=2).connection_pool.connection_kwargs["port"]
        self.windows: list[tuple[float, float]] = []
        self.events: list[tuple[float, str, list[str]]] = []  # (time, owner: lab/doctor/gone, command)
        self.open = float("inf")  # when the doctor's current window began
        self.known: dict[int, tuple[str, float]] = {}  # port -> (owner, when looked up)
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        assert self.ready.wait(15), "MONITOR did not start"

    def _watch(self):
        import redis

        script_owner = "doctor"  # a script's commands (client "lua") follow the EVAL/EVALSHA that ran them
        while not self.stop.is_set():
            try:
                client = redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=None, protocol=2)
                with client.monitor() as mon:
                    self.ready.set()
                    while not self.stop.is_set():
                        event = mon.next_command()
                        command = str(event["command"]).split()
                        port = event.get("client_port")
                        if event.get("client_type") == "lua":
                            owner = script_owner  # a script's commands are its caller's
                        else:
                            port = int(port) if str(port).isdigit() else port
                            owner = self._owner(port, float(event["time"]))
                            if command and command[0].upper() in ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL"):
                                script_owner = owner
                        self.events.append((float(event["time"]), owner, command))
            except (redis.RedisError, OSError, ValueError):
                self.stop.wait(0.2)  # Redis stopped by a fault: watch again once it is back

    def _owner(self, port, when: float) -> str:
        """Who holds the connection from ``port``: "lab" (a lab server's process), "doctor" (this
        process) or "gone" (closed before we looked; counted as the doctor's). Looked up while it is
        open, again at least every 0.2 s (ephemeral ports come back)."""
        if not isinstance(port, int) or not (self.open <= when or any(a <= when <= b for a, b in self.windows)):
            return "doctor"
        now = time.monotonic()
        known = self.known.get(port)
        if known is None or now - known[1] > 0.2:
            open_, lab, own = _connections(self.port, self.sessions())
            for p in open_:
                self.known[p] = ("lab" if p in lab and p not in own else "doctor" if p in own else "gone", now)
            if port not in open_:  # closed: what it was a moment ago, else nobody's known
                self.known[port] = (known[0] if known and now - known[1] < 5 else "gone", now)
        return self.known[port][0]

    def finish(self):
        import redis

        marker = f"end-of-read-only-run-{time.time()}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(c[1:2] == [marker] for _, _, c in self.events[-5:]):
            try:
                redis.Redis.from_url(self.url, socket_timeout=2, protocol=2).echo(marker)
            except redis.RedisError:
                pass
            time.sleep(0.1)
        self.stop.set()

    def commands(self, *owners: str) -> list[tuple[str, list[str]]]:
        """(owner, command) of every command sent in the doctor's windows from connections of ``owners``."""
        inside = lambda t: any(a <= t <= b for a, b in self.windows)  # noqa: E731
        return [(owner, cmd) for t, owner, cmd in self.events if cmd and owner in owners and inside(t)]


class Counterparts:
    """Every HTTP counterpart's method logs (launchers' ``method_logs`` and every ``*.requests.jsonl``
    under the lab), read per window from where each ended before it."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.seen: dict[str, Counter] = {}
        self.writes: list[str] = []

    def logs(self) -> dict[str, list]:
        found: dict[str, list] = {}
        for kind, svc in self.lab.services.items():
            found[kind] = list(getattr(svc, "method_logs", []))
        for path in self.lab.root.rglob("*.requests.jsonl"):
            kind = path.name[:-len(".requests.jsonl")]
            if not any(path == p for paths in found.values() for p in paths):
                found.setdefault(kind, []).append(path)
        return found

    def run(self, what: str, call):
        before = {str(p): log_size(p) for paths in self.logs().values() for p in paths}
        result = call()
        for kind, paths in self.logs().items():
            for path in paths:
                # one figure per log: the edge's nginx and its shim both see what passes the edge
                label = kind if len(paths) == 1 else f"{kind}/{path.name.split('.')[0]}"
                counter = self.seen.setdefault(label, Counter())
                for method, path_ in read_methods(path, before.get(str(path), 0)):
                    counter[method] += 1
                    allowed = READS_BY_POST.get(kind, set()) | (KUBE_WRITES_ALLOWED if kind in KUBE_KINDS else set())
                    if method not in READ_METHODS and (method, path_) not in allowed:
                        self.writes.append(f"{what}: {method} {path_} reached {kind}")
        return result


def _sessions(lab: Lab) -> set[int]:
    """The lab's servers' pids, each its own session's id (launchers start servers with a new session)."""
    return {pid for svc in lab.services.values() for pid in (svc.pid, getattr(svc, "shim_pid", None)) if pid}


@pytest.fixture(scope="module", params=list(VARIANTS))
def measured(tmp_path_factory, request):
    """One lab per variant, its counterparts' logs and a MONITOR on its broker."""
    root = tmp_path_factory.mktemp(f"readonly-{request.param}")
    root.chmod(0o755)
    mp = pytest.MonkeyPatch()
    mp.setenv("STUDIODOCTOR_LAB_DIR", str(root / "lab"))
    lab = Lab(root / "lab", variant=request.param)
    try:
        t0 = time.monotonic()
        lab.up()
        started = time.monotonic() - t0
        profile = load_profile("lab")
        yield lab, profile, Counterparts(lab), BrokerWatch(profile.section("redis")["url"], lambda: _sessions(lab)), started
    finally:
        Lab.load(root / "lab").down()
        mp.undo()


def test_check_and_every_diagnosis_only_read(measured):
    lab, profile, counterparts, broker, started = measured
    t0 = time.monotonic()
    name = lab.variant.name

    def window(what, call):
        begin = broker.open = time.time()
        try:
            return counterparts.run(what, call)
        finally:
            broker.windows.append((begin, time.time()))
            broker.open = float("inf")

    report = window("check", lambda: engine.check(profile))
    assert {r.layer for r in report.results if r.status.value == "ok"} >= {"kubernetes", "cloudflare", "gcs", "redis"}
    faults = [f for f in FAULTS.values() if not skipped(lab, f.name)
              and (name == "default" or f.name in OTHER_SAMPLE)]
    diagnoses = 0
    for flt in faults:
        set_fault(lab, flt.name, True)
        try:
            for symptom in flt.symptoms:
                window(f"{flt.name} / diagnose {symptom}", lambda: engine.diagnose(profile, symptom))
                diagnoses += 1
        finally:
            set_fault(lab, flt.name, False)
    broker.finish()

    doctor = broker.commands("doctor", "gone")
    allowed, keys = _control_writes()
    undeclared = sorted({f"{' '.join(c[:2])} ({owner})" for owner, c in doctor if _undeclared(owner, c, allowed, keys)})
    redis_seen = Counter(c[0].upper() for _, c in doctor)
    control = Counter(c[0].upper() for _, c in doctor if c[0].upper() not in BROKER_READS and c[0].upper() != "CONFIG")
    FIGURES["variants"][name] = {
        "faults": len(faults), "diagnoses": diagnoses, "lab_up_s": round(started, 1),
        "run_s": round(time.monotonic() - t0, 1),
        "methods": {k: dict(v) for k, v in sorted(counterparts.seen.items()) if v},
        "redis": dict(redis_seen.most_common()), "redis_control_writes": dict(control),
        "writes": list(counterparts.writes), "redis_undeclared": undeclared,
        "redis_lab_connections": dict(Counter(c[0].upper() for _, c in broker.commands("lab")).most_common()),
        "redis_gone_connections": dict(Counter(c[0].upper() for _, c in broker.commands("gone")).most_common()),
        "redis_gone_worker_only": sum(1 for _, c in broker.commands("gone") if _worker_only(c[0].upper(), c))}
    print(f"\nread-only ({name}): {FIGURES['variants'][name]}")

    assert counterparts.writes == []
    # the measure measured: every kind of counterpart saw the run
    kinds = {k.split("/")[0] for k, v in counterparts.seen.items() if v}
    assert {"cloudflare_api", "studio-nginx", "studio-app", "fake-gcs", "gcs-gate", "edge", "sentry-api",
            "newrelic-api", "postmark-api", lab.variant.ingress} <= kinds, kinds
    kube_source = next((p for p in (LAB / "standins" / "kube_api.py", LAB / "kube_api.py") if p.exists()), None)
    if kube_source and "MethodLog" in kube_source.read_text():  # the Kubernetes stand-in logs since issue 17's kube part
        assert kinds & set(KUBE_KINDS), kinds
    assert redis_seen["INFO"] and redis_seen["PING"], redis_seen
    assert undeclared == []
    assert control["PUBLISH"] >= 1  # the celery layer's broadcast was seen, and only it wrote
