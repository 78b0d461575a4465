"""celery.stuck_publishes: channels stuck publishing, failed publishes, unapplied changes (Studio's tables)."""

from __future__ import annotations

from urllib.parse import urlsplit

from studiodoctor.backends import grants
from studiodoctor import studio_facts as facts
from studiodoctor.model import MUTATING, READ_ONLY, Command, Reason, error, fail, ok, unreachable, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import (POSTGRES_REACHABLE, STUCK_PUBLISHES, WORKERS, _broker_url, _fmt_age, _kubectl, _not_redis,
                     _queue_depths, _setting, _slots)


def _reconcile_commands(ctx) -> list[Command]:
    manage = facts.MANAGE
    return [
        Command(_kubectl(ctx, "app", f"{manage} {facts.RECONCILE_PUBLISHING}"), MUTATING,
                "resets main_tree.publishing for channels with no active apply_channel_changes task"),
        Command(_kubectl(ctx, "app", f"{manage} {facts.RECONCILE_CHANGES}"), MUTATING,
                "revokes stale tasks and re-enqueues tasks for unapplied changes"),
    ]


@check(STUCK_PUBLISHES, title="Channels stuck publishing", needs=("postgres.dsn",),
       depends_on=(POSTGRES_REACHABLE,), explained_by=(WORKERS,),
       permissions=(f"SELECT on {facts.CHANNEL_TABLE}, {facts.NODE_TABLE}, {facts.CHANGE_TABLE}, "
                    f"{facts.TASKRESULT_TABLE}, {facts.TASKMETA_TABLE}, {facts.HISTORY_TABLE}",))
def check_stuck_publishes(ctx):
    """Publishes killed mid-way or failed, channels stuck publishing, Changes no task will apply.

    Read from Studio's own tables. A worker killed mid-publish (OOM) leaves `apply_channel_changes` in
    FAILURE with `WorkerLostError`, the `export-channel` progress row in STARTED and the channel's
    `main_tree.publishing` set: such a channel is a `fail` at once (nothing will clear the flag), and any
    channel publishing longer than `celery.publish_stuck_after` (2 h) is one too. A channel whose latest
    `export-channel` is a FAILURE (the publish raised) is a `fail` naming the error. Unapplied Changes whose
    `apply_channel_changes` task is neither queued nor held by a worker (its message was lost) are a `fail`
    once older than `celery.unapplied_after` (30 min; `Change` has no timestamp: the age is the task's
    `date_created`, else the channel's last publication). Fixes: `reconcile_publishing_status` (flags),
    `reconcile_change_tasks` (re-enqueues the lost tasks), then publish again."""
    import psycopg

    from studiodoctor.backends import postgres as pg

    from . import publish_state as ps

    dsn = ctx.profile.value("postgres.dsn")
    stuck_after = float(_setting(ctx, "publish_stuck_after"))
    window = float(_setting(ctx, "failed_publish_window"))
    unapplied_after = float(_setting(ctx, "unapplied_after"))
    ch, node, tr = facts.CHANNEL_TABLE, facts.NODE_TABLE, facts.TASKRESULT_TABLE

    def rows(sql, params=None):
        # the run's one PostgreSQL connection (postgres.reachable opened it), each query read-only
        return [tuple(r.values()) for r in pg.query(ctx, sql, params)]

    try:
        state = ps.read(rows, window)
    except pg.Busy as exc:
        return error(f"could not query PostgreSQL: {exc}", reason=Reason.TIMEOUT)
    except psycopg.errors.UndefinedTable as exc:
        return error(f"a Studio table is missing: {exc.diag.message_primary}; is postgres.dsn Studio's database?",
                     reason=Reason.UNEXPECTED)
    except psycopg.errors.InsufficientPrivilege as exc:
        role = urlsplit(str(dsn)).username if "://" in str(dsn) else None
        denied = grants.pg_table(exc.diag.message_primary or "")
        return error(f"our database role may not read Studio's tables: "
                     f"{grants.pg_grant_select(role, [denied or ch])} ({exc.diag.message_primary})",
                     reason=Reason.FORBIDDEN, evidence={"denied_table": denied, "role": role},
                     hint=f"the celery layer reads: {grants.pg_grant_select(role, list(facts.STUDIO_TABLES))}")
    except psycopg.OperationalError as exc:
        text = (str(exc).strip().splitlines() or ["connection failed"])[-1]
        host = urlsplit(str(dsn)).hostname or "?"
        return unreachable("PostgreSQL", f"{host}:{urlsplit(str(dsn)).port or 5432}", text,
                           timed_out="timeout" in text.lower())
    except psycopg.Error as exc:
        return error(f"query failed: {(str(exc).strip().splitlines() or ['?'])[0]}", reason=Reason.UNEXPECTED)

    broker = _workers_view(ctx)
    running = broker["running"]
    killed = ps.killed_publishes(state)
    orphans = ps.orphaned(state, running)
    failed = ps.failed_publishes(state)
    lost = ps.lost_changes(state, running, broker["queued"]) if running is not None else []
    stuck = [c for c in state.publishing if c["age_s"] >= stuck_after and c["id"] not in {o["id"] for o in orphans}]
    evidence = {"publishing": state.publishing, "stuck": [c["id"] for c in orphans + stuck],
                "publish_stuck_after_s": stuck_after,
                "killed_publishes": [{k: t[k] for k in ("task_id", "channel_id", "done", "error")} for t in killed],
                "failed_publishes": [{k: t[k] for k in ("task_id", "task_name", "channel_id", "done", "error")}
                                     for t in failed],
                "unapplied_changes": sum(state.unapplied.values()) + state.user_unapplied,
                "lost_changes": lost, "active_tasks": broker["active"], "queued": broker["queued"]}
    commands = [Command(f"psql \"$STUDIO_DATABASE_URL\" -c \"SELECT c.id, c.name, n.modified FROM {ch} c JOIN "
                        f"{node} n ON n.id = c.main_tree_id WHERE n.publishing\"", READ_ONLY),
                Command(f"psql \"$STUDIO_DATABASE_URL\" -c \"SELECT task_id, task_name, status, date_done, "
                        f"right(traceback, 300) FROM {tr} WHERE task_name IN ('{facts.APPLY_CHANNEL_CHANGES}', "
                        f"'{facts.PUBLISH_TASK_NAMES[0]}') ORDER BY date_created DESC LIMIT 10\"", READ_ONLY),
                Command(_kubectl(ctx, "workers", "celery -A contentcuration inspect active"), READ_ONLY),
                *_reconcile_commands(ctx)]
    fails, warns = [], []
    for o in orphans:
        how = (f"its worker was killed mid-publish ({facts.APPLY_CHANNEL_CHANGES} {o['apply_status']}: "
               f"{o['apply_error'] or 'no error recorded'}; export-channel left {o['export_status']})")
        fails.append(f"channel {o['id']} ({o['name']}) stays publishing since {o['since']}: {how}")
    for c in stuck:
        fails.append(f"channel {c['id']} ({c['name']}) publishing for {_fmt_age(c['age_s'])} "
                     f"(more than {_fmt_age(stuck_after)})")
    for t in failed:
        fails.append(f"the last publish of channel {t['channel_id'] or '?'} failed at {t['done']}: "
                     f"{t['error'] or 'see its traceback'}")
    if killed and not orphans:
        warns.append(f"{len(killed)} publish(es) killed mid-way in the last {_fmt_age(window)} "
                     f"({facts.WORKER_LOST}, latest task {killed[0]['task_id']})")
    for item in lost:
        what = (f"{item['unapplied']} unapplied change(s) of channel {item['channel_id']}: "
                + (f"task {item['task_id']} ({item['task_status']}) since {item['since']} is neither queued nor "
                   "running (its message was lost)" if item["task_id"] else
                   "no task is queued or running to apply them"))
        if item["age_s"] is None:
            warns.append(what + " (age unknown: Studio's Change has no timestamp)")
        elif item["age_s"] >= unapplied_after:
            fails.append(what + f", for {_fmt_age(item['age_s'])}")
        else:
            warns.append(what + f", for {_fmt_age(item['age_s'])}")
    unapplied = evidence["unapplied_changes"]
    if unapplied and running is None:
        warns.append(f"{unapplied} unapplied change(s); whether a task holds them is unknown (workers not inspected)")
    hint = (f"killed or stuck publishes: make sure `celery inspect active` shows no {facts.APPLY_CHANNEL_CHANGES} "
            f"for the channel, run {facts.RECONCILE_PUBLISHING}, then publish again; failed publishes: read the "
            f"export-channel traceback in {tr}; changes no task will apply: {facts.RECONCILE_CHANGES} "
            "revokes the lost tasks and enqueues new ones")
    if fails:
        return fail("; ".join(fails + warns), evidence=evidence, commands=commands, hint=hint)
    if warns:
        return warn("; ".join(warns), evidence=evidence, commands=commands, hint=hint)
    busy = (f"{len(state.publishing)} channel(s) publishing (none for {_fmt_age(stuck_after)})"
            if state.publishing else "no channel is publishing")
    return ok(f"{busy}; no failed or killed publish in the last {_fmt_age(window)}; "
              f"{unapplied} unapplied change(s) with a task to apply them", evidence=evidence)


def _workers_view(ctx) -> dict:
    """What the broker says: ``running`` (ids of tasks the workers hold, None when we cannot see),
    ``active`` (their count) and ``queued`` (messages waiting in Studio's queues, 0 when unknown)."""
    from . import publish_state as ps

    url = _broker_url(ctx)
    out = {"running": None, "active": None, "queued": 0}
    if not url or _not_redis(url):
        return out
    try:
        slots = _slots(ctx, url)
    except Exception:
        return out
    if "error" in slots:
        return out
    out["running"] = ps.running_ids(slots)
    out["active"] = sum(len(v or []) for v in slots["active"].values())
    try:
        out["queued"] = sum(q["total"] for q in _queue_depths(ctx, url).values())
    except Exception:
        out["queued"] = 1  # unknown: never call a message lost that may be waiting
    return out
