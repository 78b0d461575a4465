"""Faults of the studio lab variant, made with Studio's own machinery: its ORM and tasks (``manage.py shell``),
its management commands, its processes and its data. Never its code. Each is undone the way an operator
would: Studio's ``reconcile_*`` commands, ``manage.py migrate``, restarting what was stopped.

Registered in :mod:`studiodoctor.lab.faults` with ``needs_studio``: the other variants skip them.
"""

from __future__ import annotations

from pathlib import Path

from .launcher import LabError, wait_until

_ADMIN = "from contentcuration.models import Channel, Change, User; admin = User.objects.get(email='a@a.com'); "
# The channel the faults publish: the admin's channel with the most resources (setup's "Published Channel")
_CHANNEL = ("ch = sorted(Channel.objects.filter(deleted=False, editors=admin), "
            "key=lambda c: -c.main_tree.get_descendant_count())[0]; ")


def shell(lab, code: str, timeout: float = 300.0) -> str:
    """Run ``code`` in Studio's ``manage.py shell -c`` with the lab's Studio environment; its stdout."""
    from . import studio_lab, studio_source

    info = lab.extra["studio"]
    return studio_source.manage(Path(info["python"]), Path(info["src"]), studio_lab.environment(lab),
                                "shell", "-c", code, timeout=timeout)


def manage(lab, *args: str, timeout: float = 600.0) -> str:
    from . import studio_lab, studio_source

    info = lab.extra["studio"]
    return studio_source.manage(Path(info["python"]), Path(info["src"]), studio_lab.environment(lab), *args,
                                timeout=timeout)


def publish_channel(lab) -> str:
    """What the UI does to publish: a publish Change by the admin, then apply_channel_changes enqueued through
    Studio's fetch_or_enqueue (CustomTaskMetadata + PENDING TaskResult + the broker message). Its channel id."""
    out = shell(lab, _ADMIN + _CHANNEL +
                "from contentcuration.viewsets.sync.utils import generate_publish_event; "
                "from contentcuration.tasks import apply_channel_changes_task; "
                "Change.create_change(generate_publish_event(ch.id, version_notes='lab drill'), "
                "created_by_id=admin.id); apply_channel_changes_task.fetch_or_enqueue(admin, channel_id=ch.id); "
                "print(ch.id)")
    return out.strip().splitlines()[-1]


def _db(lab, sql: str, params=None) -> list[tuple]:
    return lab["postgres"].execute(sql, params)


def _task_rows(lab, channel: str, name: str) -> list[tuple]:
    from ..studio_facts import TASKMETA_TABLE, TASKRESULT_TABLE

    return _db(lab, f"SELECT r.task_id, r.status, coalesce(r.result, '') FROM {TASKRESULT_TABLE} r JOIN "
                    f"{TASKMETA_TABLE} m ON m.task_id = r.task_id WHERE replace(m.channel_id::text, '-', '') = %s "
                    f"AND r.task_name = %s ORDER BY r.date_created DESC", (channel.replace("-", ""), name))


def _running_publish_pid(lab, channel: str, timeout: float = 120.0) -> int:
    """The PID of the pool process running apply_channel_changes (Celery's inspect active: worker_pid);
    -1 once the channel's task has ended (nothing left to kill)."""
    from celery import Celery

    from .servers import studio_tasks

    app = Celery("studiodoctor-lab", broker=lab["celery"].broker_url)

    def find() -> int:
        if _ready(_task_rows(lab, channel, "apply_channel_changes")):
            return -1
        with studio_tasks.resp2():
            active = app.control.inspect(timeout=0.5).active() or {}
        for tasks in active.values():
            for task in tasks:
                if task.get("name") == "apply_channel_changes" and task.get("worker_pid"):
                    return int(task["worker_pid"])
        return 0

    return wait_until(find, timeout, "no apply_channel_changes ran on Studio's worker", interval=0.2)


def kill_publish(lab, on: bool) -> None:
    """A publish whose worker is killed mid-way (the OOM killer): SIGKILL the pool process while the
    export-channel row says STARTED. Fix: reconcile_publishing_status, reconcile_change_tasks (the publish
    Change is applied again, this time to the end)."""
    import os
    import signal

    if not on:
        return _reconcile(lab)
    for _attempt in range(3):   # a publish that ends before the kill lands is published: try again
        channel = publish_channel(lab)
        wait_until(lambda: any(r[1] == "STARTED" for r in _task_rows(lab, channel, "export-channel")), 120.0,
                   "the publish never started (no export-channel STARTED)", interval=0.05)
        pid = _running_publish_pid(lab, channel)
        if pid > 0:
            os.kill(pid, signal.SIGKILL)
        done = wait_until(lambda: _ready(_task_rows(lab, channel, "apply_channel_changes")), 60.0,
                          "the killed publish's task never ended")
        if done == "FAILURE":
            return
    raise LabError("three publishes ended before their worker could be killed")


def _ready(rows: list[tuple]) -> str:
    """The newest task's state once it is ready (SUCCESS/FAILURE/...), else ""."""
    from ..studio_facts import UNREADY_STATES

    return rows[0][1] if rows and rows[0][1] not in UNREADY_STATES else ""


def _reconcile(lab) -> None:
    manage(lab, "reconcile_publishing_status")
    manage(lab, "reconcile_change_tasks")
    _wait_changes_applied(lab)


def _wait_changes_applied(lab, timeout: float = 180.0) -> None:
    from ..studio_facts import CHANGE_TABLE, CHANNEL_TABLE, NODE_TABLE

    def done() -> bool:
        pending = _db(lab, f"SELECT count(*) FROM {CHANGE_TABLE} WHERE NOT applied AND NOT errored")[0][0]
        publishing = _db(lab, f"SELECT count(*) FROM {CHANNEL_TABLE} c JOIN {NODE_TABLE} n ON n.id = c.main_tree_id "
                              "WHERE n.publishing")[0][0]
        return pending == 0 and publishing == 0

    wait_until(done, timeout, "Studio's changes are still unapplied after reconcile", interval=0.5)


def publish_raises(lab, on: bool) -> None:
    """A publish that raises: the channel's exercises hold assessment items whose ``answers`` are not JSON
    (bad data written around the API), so the publish's exercise generation raises and ``export-channel`` ends
    in FAILURE with the traceback. Fix: the items' data restored, the channel published again."""
    from ..studio_facts import CHANNEL_TABLE, NODE_TABLE

    items = "contentcuration_assessmentitem"
    in_channel = (f"a.contentnode_id = n.id AND n.tree_id = (SELECT t.tree_id FROM {NODE_TABLE} t JOIN {CHANNEL_TABLE} c "
                  f"ON t.id = c.main_tree_id WHERE c.id = %s)")
    if on:
        channel = shell(lab, _ADMIN + _CHANNEL + "print(ch.id)").strip().splitlines()[-1]
        saved = _db(lab, f"SELECT a.id, a.answers FROM {items} a, {NODE_TABLE} n WHERE {in_channel}", (channel,))
        lab.extra["studio_saved_answers"] = [channel, [list(r) for r in saved]]
        _db(lab, f"UPDATE {items} a SET answers = '{{\"broken' FROM {NODE_TABLE} n WHERE {in_channel}", (channel,))
        _db(lab, f"UPDATE {NODE_TABLE} n SET changed = true WHERE n.kind_id = 'exercise' AND n.tree_id = "
                 f"(SELECT t.tree_id FROM {NODE_TABLE} t JOIN {CHANNEL_TABLE} c ON t.id = c.main_tree_id "
                 f"WHERE c.id = %s)", (channel,))
        publish_channel(lab)
        wait_until(lambda: any(r[1] == "FAILURE" for r in _task_rows(lab, channel, "export-channel")), 180.0,
                   "the publish did not fail", interval=0.2)
        _wait_changes_applied(lab)
        return
    channel, saved = lab.extra.pop("studio_saved_answers", [None, []])
    for item_id, answers in saved:
        _db(lab, f"UPDATE {items} SET answers = %s WHERE id = %s", (answers, item_id))
    publish_channel(lab)   # published again, to the end: Studio drops the failed export-channel row
    _wait_changes_applied(lab)
    if channel:
        wait_until(lambda: not any(r[1] == "FAILURE" for r in _task_rows(lab, channel, "export-channel")), 60.0,
                   "the failed export-channel is still the channel's latest")


def lost_message(lab, on: bool) -> None:
    """Changes whose task message is lost: Studio enqueues apply_channel_changes (CustomTaskMetadata and a
    PENDING TaskResult, then the message) while its worker is down, and Redis restarts without persistence
    before a worker takes it. The task's rows are dated an hour back (the drill cannot wait that long)."""
    from ..studio_facts import TASKMETA_TABLE, TASKRESULT_TABLE

    if not on:
        manage(lab, "reconcile_change_tasks")
        _wait_changes_applied(lab)
        return
    worker, redis = lab["celery"], lab["redis"]
    worker.stop()
    shell(lab, _ADMIN + _CHANNEL +
          "from contentcuration.viewsets.sync.utils import generate_update_event; "
          "from contentcuration.tasks import apply_channel_changes_task; "
          "[Change.create_change(generate_update_event(ch.id, 'channel', {'description': 'edit %d' % i}, "
          "channel_id=ch.id), created_by_id=admin.id) for i in range(6)]; "
          "apply_channel_changes_task.fetch_or_enqueue(admin, channel_id=ch.id)")
    redis.stop()
    redis.start()
    # the enqueued task has its CustomTaskMetadata row only (Studio's TaskResult row appears when a worker
    # starts it): dated an hour back
    _db(lab, f"UPDATE {TASKMETA_TABLE} m SET date_created = now() - interval '1 hour' WHERE NOT EXISTS "
             f"(SELECT 1 FROM {TASKRESULT_TABLE} r WHERE r.task_id = m.task_id)")
    worker.start()


def publishing_flag(lab, on: bool) -> None:
    """A channel's publishing flag left set (Studio's own Channel.mark_publishing, no task behind it), three
    hours ago. Fix: reconcile_publishing_status."""
    from ..studio_facts import CHANNEL_TABLE, NODE_TABLE

    if not on:
        manage(lab, "reconcile_publishing_status")
        return
    channel = shell(lab, _ADMIN + _CHANNEL + "ch.mark_publishing(admin); print(ch.id)").strip().splitlines()[-1]
    _db(lab, f"UPDATE {NODE_TABLE} SET modified = now() - interval '3 hours' WHERE id = "
             f"(SELECT main_tree_id FROM {CHANNEL_TABLE} WHERE id = %s)", (channel,))


def lock_healthz_table(lab, on: bool) -> None:
    """An open transaction holding ACCESS EXCLUSIVE on the table /healthz reads (Channel.objects.first()),
    idle: /healthz hangs until nginx gives up."""
    from ..studio_facts import CHANNEL_TABLE
    from .launcher import stop_pid

    if on:
        pid = lab["postgres"].start_holder("lock", n=1, table=CHANNEL_TABLE)
        lab.extra.setdefault("holders", []).append(pid)
        return
    for pid in lab.extra.pop("holders", []):
        stop_pid(pid)


def flush_cache(lab, on: bool) -> None:
    """Studio's cache DB (Redis db CACHE_REDIS_DB=1) flushed: Django's cache starts cold. Nothing users see
    should break (sessions live in PostgreSQL): a diagnosis must name no cause."""
    if on:
        import redis

        client = redis.Redis.from_url(lab["redis"].url(1), socket_timeout=5, protocol=2)
        client.flushdb()
        client.close()


def migration_not_applied(lab, on: bool) -> None:
    """The app's model ahead of its schema: Studio's newest migrations that add a column to the channel table
    are unapplied (``manage.py migrate contentcuration <the one before>``): a deploy whose migrate job failed.
    Fix: ``manage.py migrate``."""
    if not on:
        manage(lab, "migrate", "--noinput")
        return
    target = shell(lab, "from django.db.migrations.loader import MigrationLoader; "
                        "from django.db import connection; "
                        "from django.db.migrations.operations import AddField; "
                        "g = MigrationLoader(connection).graph; "
                        "nodes = [n for n in g.leaf_nodes('contentcuration')]; "
                        "plan = [k for k in g.forwards_plan(nodes[0]) if k[0] == 'contentcuration']; "
                        "adds = [k for k in plan if any(isinstance(o, AddField) and o.model_name == 'channel' "
                        "for o in g.nodes[k].operations)]; "
                        "print([d for d in g.nodes[adds[-1]].dependencies if d[0] == 'contentcuration'][0][1])")
    manage(lab, "migrate", "contentcuration", target.strip().splitlines()[-1], "--noinput")
