"""Just the Studio tables and columns studiodoctor reads, as PostgreSQL DDL, plus seed and fault helpers.

Names come from Studio's public code (see reference/studio-production-facts.md, sections 4 and 6):
Django models ``Channel``, ``ContentNode``, ``Change`` (app ``contentcuration``) and
django-celery-results' ``TaskResult``. They are kept in ONE place, ``studiodoctor.studio_facts``, which both
the checks (``checks/celery/``) and this lab (the stand-in app's ``/healthz``) import. Cheap to import:
psycopg is only needed by the caller, who passes a connection.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

# --- table and column names: Studio's, kept in the engine's neutral module (the lab never owns them) ----
from studiodoctor.studio_facts import (APPLY_CHANNEL_CHANGES, CHANGE_TABLE, CHANNEL_TABLE,  # noqa: F401
                                       HISTORY_PUBLICATION, HISTORY_TABLE, NODE_TABLE, PUBLISH_TASK_NAMES,
                                       TASKMETA_TABLE, TASKRESULT_TABLE, WORKER_LOST)

# Studio's first channel as the lab seeds it (the stand-in app's /healthz returns its name).
LAB_CHANNEL_ID = "d0f5ba7e5b1c4f8c9d1e2a3b4c5d6e7f"
LAB_CHANNEL_NAME = "Studio lab channel"
LAB_MAIN_TREE_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"

DDL = f"""
CREATE TABLE IF NOT EXISTS {NODE_TABLE} (
    id varchar(32) PRIMARY KEY,
    title varchar(200) NOT NULL DEFAULT '',
    kind_id varchar(200) NOT NULL DEFAULT 'topic',
    parent_id varchar(32) NULL,
    published boolean NOT NULL DEFAULT false,
    publishing boolean NOT NULL DEFAULT false,
    complete boolean NULL,
    changed boolean NOT NULL DEFAULT true,
    created timestamptz NOT NULL DEFAULT now(),
    modified timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {CHANNEL_TABLE} (
    id varchar(32) PRIMARY KEY,
    name varchar(200) NOT NULL DEFAULT '',
    description varchar(400) NOT NULL DEFAULT '',
    version integer NOT NULL DEFAULT 0,
    main_tree_id varchar(32) NULL REFERENCES {NODE_TABLE}(id) DEFERRABLE INITIALLY DEFERRED,
    deleted boolean NOT NULL DEFAULT false,
    public boolean NOT NULL DEFAULT false,
    last_published timestamptz NULL
);
CREATE TABLE IF NOT EXISTS {CHANGE_TABLE} (
    server_rev bigserial PRIMARY KEY,
    channel_id varchar(32) NULL,
    user_id integer NULL,
    "table" varchar(32) NOT NULL DEFAULT 'channel',
    change_type smallint NOT NULL DEFAULT 1,
    kwargs jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    applied boolean NOT NULL DEFAULT false,
    errored boolean NOT NULL DEFAULT false,
    unpublishable boolean NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS {TASKMETA_TABLE} (
    id serial PRIMARY KEY,
    task_id varchar(255) NOT NULL UNIQUE,
    user_id integer NULL,
    channel_id uuid NULL,
    progress integer NULL,
    signature varchar(32) NULL,
    date_created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
    id serial PRIMARY KEY,
    channel_id varchar(32) NOT NULL,
    actor_id integer NOT NULL DEFAULT 1,
    performed timestamptz NOT NULL DEFAULT now(),
    action varchar(50) NOT NULL
);
CREATE TABLE IF NOT EXISTS {TASKRESULT_TABLE} (
    id serial PRIMARY KEY,
    task_id varchar(255) NOT NULL UNIQUE,
    task_name varchar(255) NULL,
    task_args text NULL,
    task_kwargs text NULL,
    status varchar(50) NOT NULL DEFAULT 'PENDING',
    worker varchar(100) NULL,
    content_type varchar(128) NOT NULL DEFAULT 'application/json',
    content_encoding varchar(64) NOT NULL DEFAULT 'utf-8',
    result text NULL,
    date_created timestamptz NOT NULL DEFAULT now(),
    date_done timestamptz NOT NULL DEFAULT now(),
    traceback text NULL,
    meta text NULL,
    periodic_task_name varchar(255) NULL
);
"""

TABLES = (NODE_TABLE, CHANNEL_TABLE, CHANGE_TABLE, TASKRESULT_TABLE, TASKMETA_TABLE, HISTORY_TABLE)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_schema(conn) -> None:
    """Create the four tables (idempotent). ``conn`` is a psycopg 3 connection."""
    with conn.transaction():
        conn.execute(DDL)


def drop_schema(conn) -> None:
    with conn.transaction():
        conn.execute("DROP TABLE IF EXISTS " + ", ".join(reversed(TABLES)) + " CASCADE")


def reset(conn) -> None:
    """Empty every table (tests reuse one session database)."""
    with conn.transaction():
        conn.execute("TRUNCATE " + ", ".join(TABLES) + " RESTART IDENTITY CASCADE")


def add_channel(conn, channel_id: str, name: str, main_tree_id: str, *, publishing: bool = False,
                modified: datetime | None = None, public: bool = False, version: int = 0) -> None:
    with conn.transaction():
        conn.execute(f"INSERT INTO {NODE_TABLE} (id, title, publishing, modified) VALUES (%s, %s, %s, %s)",
                     (main_tree_id, name, publishing, modified or _now()))
        conn.execute(f"INSERT INTO {CHANNEL_TABLE} (id, name, main_tree_id, public, version) "
                     f"VALUES (%s, %s, %s, %s, %s)", (channel_id, name, main_tree_id, public, version))


def add_published_channels(conn, channel_ids: list[str], version: int, name: str = "Published channel") -> None:
    """Public channels published at ``version``: the ones whose databases the bucket holds
    (``databases/<id>.sqlite3``), as Studio's public API lists them."""
    import hashlib

    for i, channel_id in enumerate(channel_ids, 1):
        add_channel(conn, channel_id, f"{name} {i}", hashlib.md5(channel_id.encode()).hexdigest(),
                    modified=_now() - timedelta(days=2), public=True, version=version)


def add_task_result(conn, task_id: str, task_name: str, status: str, *, created: datetime | None = None,
                    done: datetime | None = None, result: str = "null", traceback: str | None = None,
                    channel_id: str | None = None) -> None:
    """A TaskResult row and, with ``channel_id``, the CustomTaskMetadata row Studio writes beside it."""
    created = created or _now()
    with conn.transaction():
        conn.execute(f"INSERT INTO {TASKRESULT_TABLE} (task_id, task_name, status, date_created, date_done, result,"
                     f" traceback) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                     (task_id, task_name, status, created, done or created, result, traceback))
        if channel_id:
            conn.execute(f"INSERT INTO {TASKMETA_TABLE} (task_id, channel_id, date_created) VALUES (%s, %s, %s)",
                         (task_id, channel_id, created))


def add_enqueued(conn, task_id: str, channel_id: str, created: datetime | None = None) -> None:
    """What Studio's ``apply_channel_changes_task.enqueue`` writes before the broker message: a CustomTaskMetadata
    row with the task's signature (no TaskResult row until a worker starts the task)."""
    from checks.celery.publish_state import apply_signature

    with conn.transaction():
        conn.execute(f"INSERT INTO {TASKMETA_TABLE} (task_id, channel_id, signature, date_created) "
                     f"VALUES (%s, %s, %s, %s)", (task_id, channel_id, apply_signature(channel_id), created or _now()))


def add_change(conn, channel_id: str, *, applied: bool = False, errored: bool = False,
               kwargs: str = '{"version_notes": ""}', change_type: int = 11) -> None:
    """A Change row; ``change_type`` 11 is Studio's PUBLISHED change (the publish request). Like Studio's
    ``Change``, it has no timestamp."""
    with conn.transaction():
        conn.execute(f'INSERT INTO {CHANGE_TABLE} (channel_id, "table", change_type, kwargs, applied, errored)'
                     f" VALUES (%s, 'channel', %s, %s::jsonb, %s, %s)",
                     (channel_id, change_type, kwargs, applied, errored))


def seed_healthy(conn) -> None:
    """A healthy Studio: one channel, not publishing, its last publish applied and successful."""
    create_schema(conn)
    reset(conn)
    day_ago = _now() - timedelta(days=1)
    add_channel(conn, LAB_CHANNEL_ID, LAB_CHANNEL_NAME, LAB_MAIN_TREE_ID, modified=day_ago)
    add_change(conn, LAB_CHANNEL_ID, applied=True)
    add_task_result(conn, "6f1c2d3e00004000800000000000000a", APPLY_CHANNEL_CHANGES, "SUCCESS",
                    created=day_ago, done=day_ago + timedelta(minutes=4), channel_id=LAB_CHANNEL_ID)
    add_task_result(conn, "6f1c2d3e000040008000000000000001", PUBLISH_TASK_NAMES[0], "SUCCESS",
                    created=day_ago, done=day_ago + timedelta(minutes=4), channel_id=LAB_CHANNEL_ID)


# --- faults (the lab's `break`/`fix` and the tests) ---------------------------------------------
def break_publishing(conn, hours: float = 3.0, channel_id: str = LAB_CHANNEL_ID, *, killed: bool = True) -> None:
    """Leave a channel's main tree ``publishing=True`` since ``hours`` ago. ``killed``: as a worker killed
    mid-publish leaves it in Studio's tables (apply_channel_changes FAILURE with WorkerLostError,
    export-channel STARTED, the publish Change unapplied); else only the flag and the history row."""
    import uuid

    since = _now() - timedelta(hours=hours)
    with conn.transaction():
        conn.execute(f"UPDATE {NODE_TABLE} SET publishing = true, modified = %s WHERE id = "
                     f"(SELECT main_tree_id FROM {CHANNEL_TABLE} WHERE id = %s)", (since, channel_id))
        conn.execute(f"INSERT INTO {HISTORY_TABLE} (channel_id, performed, action) VALUES (%s, %s, %s)",
                     (channel_id, since, HISTORY_PUBLICATION))
    if not killed:
        return
    add_change(conn, channel_id, applied=False)
    add_task_result(conn, uuid.uuid4().hex, APPLY_CHANNEL_CHANGES, "FAILURE", created=since,
                    done=since + timedelta(minutes=2), channel_id=channel_id,
                    result='{"exc_type": "WorkerLostError", "exc_message": ["Worker exited prematurely: signal 9 '
                           '(SIGKILL) Job: 0."], "exc_module": "billiard.exceptions"}',
                    traceback=f"billiard.exceptions.{WORKER_LOST}: Worker exited prematurely: signal 9 (SIGKILL) Job: 0.")
    add_task_result(conn, uuid.uuid4().hex, PUBLISH_TASK_NAMES[0], "STARTED", created=since,
                    channel_id=channel_id)


def fix_publishing(conn) -> None:
    """Back to healthy, as ``reconcile_publishing_status`` + a successful re-publish would leave it:
    ``publishing`` flags cleared, pending changes applied, the abandoned export results revoked and a
    successful apply and export recorded for the channels that were publishing."""
    import uuid

    with conn.transaction():
        channels = [r[0] for r in conn.execute(
            f"SELECT c.id FROM {CHANNEL_TABLE} c JOIN {NODE_TABLE} n ON n.id = c.main_tree_id WHERE n.publishing")]
        conn.execute(f"UPDATE {NODE_TABLE} SET publishing = false WHERE publishing")
        conn.execute(f"UPDATE {CHANGE_TABLE} SET applied = true WHERE NOT applied AND NOT errored")
        conn.execute(f"UPDATE {TASKRESULT_TABLE} SET status = 'REVOKED', date_done = now() "
                     f"WHERE status IN ('STARTED', 'PENDING')")
    for channel_id in channels:
        for name in (APPLY_CHANNEL_CHANGES, PUBLISH_TASK_NAMES[0]):
            add_task_result(conn, uuid.uuid4().hex, name, "SUCCESS", channel_id=channel_id)
