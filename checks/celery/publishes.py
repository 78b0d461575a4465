"""celery.stuck_publishes: channels stuck publishing, failed publishes, unapplied changes (Studio's tables)."""

from __future__ import annotations

from urllib.parse import urlsplit

from studiodoctor.backends import grants
from studiodoctor import studio_facts as facts
from studiodoctor.model import MUTATING, READ_ONLY, Command, Reason, error, fail, ok, unreachable, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import (POSTGRES_REACHABLE, STUCK_PUBLISHES, WORKERS, _broker_url, _fmt_age, _kubectl, _setting,
                     _slots)


def _reconcile_commands(ctx) -> list[Command]:
    manage = "python contentcuration/manage.py"
    return [
        Command(_kubectl(ctx, "app", f"{manage} reconcile_publishing_status"), MUTATING,
                "resets main_tree.publishing for channels with no active apply_channel_changes task"),
        Command(_kubectl(ctx, "app", f"{manage} reconcile_change_tasks"), MUTATING,
                "revokes stale tasks and re-enqueues tasks for unapplied changes"),
    ]


@check(STUCK_PUBLISHES, title="Channels stuck publishing", needs=("postgres.dsn",),
       depends_on=(POSTGRES_REACHABLE,), explained_by=(WORKERS,),
       permissions=(f"SELECT on {facts.CHANNEL_TABLE}, {facts.NODE_TABLE}, {facts.CHANGE_TABLE}, "
                    f"{facts.TASKRESULT_TABLE}",))
def check_stuck_publishes(ctx):
    """Channels whose main tree has been `publishing` for too long, failed publishes, unapplied changes.

    A publish sets the channel's `main_tree.publishing = True` inside the `apply_channel_changes`
    task; if the worker dies mid-publish the flag stays set and the channel cannot be published
    again. A channel publishing for longer than `celery.publish_stuck_after` (default 2 h, Studio's
    old prober) is a `fail` naming it. Recent failed `export-channel` results and Change rows left
    unapplied for over 30 min while no task is active are `warn`s. Fix (after making sure no worker
    is still publishing it): `manage.py reconcile_publishing_status` and `reconcile_change_tasks`."""
    import psycopg

    from studiodoctor.backends import postgres as pg

    dsn = ctx.profile.value("postgres.dsn")
    stuck_after = float(_setting(ctx, "publish_stuck_after"))
    window = float(_setting(ctx, "failed_publish_window"))
    unapplied_after = float(_setting(ctx, "unapplied_after"))
    ch, node, change, tr = facts.CHANNEL_TABLE, facts.NODE_TABLE, facts.CHANGE_TABLE, facts.TASKRESULT_TABLE

    def rows(sql, params=None):
        # the run's one PostgreSQL connection (postgres.reachable opened it), each query read-only
        return [tuple(r.values()) for r in pg.query(ctx, sql, params)]

    try:
        publishing = rows(
            f"SELECT c.id, c.name, n.modified, EXTRACT(EPOCH FROM now() - n.modified)::float8 "
            f"FROM {ch} c JOIN {node} n ON n.id = c.main_tree_id "
            f"WHERE n.publishing AND NOT c.deleted ORDER BY n.modified")
        failed = rows(
            f"SELECT task_id, task_name, date_done FROM {tr} WHERE task_name = ANY(%s) AND status = 'FAILURE' "
            f"AND date_done > now() - make_interval(secs => %s) ORDER BY date_done DESC LIMIT 10",
            (list(facts.PUBLISH_TASK_NAMES), window))
        has_created = bool(rows(
            "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = 'created'",
            (change,)))
        if has_created:
            (unapplied, oldest_change), = rows(
                f"SELECT count(*), min(created) FROM {change} WHERE NOT applied AND NOT errored "
                f"AND created < now() - make_interval(secs => %s)", (unapplied_after,))
        else:  # Studio's Change has no timestamp in some versions: count them all
            (unapplied, oldest_change), = rows(
                f"SELECT count(*), NULL FROM {change} WHERE NOT applied AND NOT errored")
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
                     hint=f"the celery layer reads: {grants.pg_grant_select(role, [ch, node, change, tr])}")
    except psycopg.OperationalError as exc:
        text = (str(exc).strip().splitlines() or ["connection failed"])[-1]
        host = urlsplit(str(dsn)).hostname or "?"
        return unreachable("PostgreSQL", f"{host}:{urlsplit(str(dsn)).port or 5432}", text,
                           timed_out="timeout" in text.lower())
    except psycopg.Error as exc:
        return error(f"query failed: {(str(exc).strip().splitlines() or ['?'])[0]}", reason=Reason.UNEXPECTED)

    chans = [{"id": cid, "name": name, "since": since.isoformat(timespec="seconds"), "age_s": round(age)}
             for cid, name, since, age in publishing]
    stuck = [c for c in chans if c["age_s"] >= stuck_after]
    evidence = {"publishing": chans, "stuck": [c["id"] for c in stuck], "publish_stuck_after_s": stuck_after,
                "failed_publishes": [{"task_id": tid, "task_name": tn, "date_done": dd.isoformat(timespec="seconds")}
                                     for tid, tn, dd in failed],
                "unapplied_changes": int(unapplied),
                "unapplied_oldest": oldest_change.isoformat(timespec="seconds") if oldest_change else None}
    commands = [Command(f"psql \"$STUDIO_DATABASE_URL\" -c \"SELECT c.id, c.name, n.modified FROM {ch} c JOIN "
                        f"{node} n ON n.id = c.main_tree_id WHERE n.publishing\"", READ_ONLY),
                Command(_kubectl(ctx, "workers", "celery -A contentcuration inspect active"), READ_ONLY),
                *_reconcile_commands(ctx)]
    if stuck:
        first = stuck[0]
        names = "; ".join(f"{c['id']} ({c['name']}) since {c['since']}" for c in stuck)
        return fail(f"{len(stuck)} channel(s) publishing for more than {_fmt_age(stuck_after)}: {names}",
                    evidence=evidence, commands=commands,
                    hint=f"channel {first['id']} has been publishing for {_fmt_age(first['age_s'])}: its worker "
                         "probably died mid-publish. If `celery inspect active` shows no apply_channel_changes "
                         "for it, run reconcile_publishing_status, then publish again.")
    findings = []
    if failed:
        findings.append(f"{len(failed)} failed publish(es) in the last {_fmt_age(window)} "
                        f"(latest task {failed[0][0]})")
    if unapplied:
        active = _active_task_count(ctx)
        evidence["active_tasks"] = active
        age_txt = f" older than {_fmt_age(unapplied_after)}" if has_created else ""
        if active is None:
            findings.append(f"{unapplied} unapplied change(s){age_txt}; active tasks unknown (workers not inspected)")
        elif active == 0:
            findings.append(f"{unapplied} unapplied change(s){age_txt} while no task is active")
    if findings:
        return warn("; ".join(findings), evidence=evidence, commands=commands,
                    hint="failed publishes: see the task's traceback in django_celery_results_taskresult; "
                         "unapplied changes with no active task: reconcile_change_tasks re-enqueues them")
    busy = f"{len(chans)} channel(s) publishing (none for {_fmt_age(stuck_after)})" if chans else \
        "no channel is publishing"
    return ok(f"{busy}; no failed publish in the last {_fmt_age(window)}", evidence=evidence)


def _active_task_count(ctx) -> int | None:
    """Active + nothing else: the number of tasks the workers run now, or None when we cannot see."""
    url = _broker_url(ctx)
    if not url:
        return None
    try:
        slots = _slots(ctx, url)
    except Exception:
        return None
    if "error" in slots or not slots.get("workers"):
        return 0 if slots.get("workers") == {} else None
    return sum(len(v or []) for v in slots["active"].values())
