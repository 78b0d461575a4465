"""What Studio's own tables say about its publishes and pending changes, read once and classified.

Studio's code (``contentcuration/viewsets/channel.py``, ``utils/celery/tasks.py``, ``viewsets/base.py``):

- A publish is a Change applied by the ``apply_channel_changes`` task. ``ChannelViewSet.publish`` sets
  ``main_tree.publishing``, writes a ``ChannelHistory`` row (``publication``) and a ``TaskResult`` named
  ``export-channel`` in STARTED (FAILURE with a traceback if the publish raises); ``publish_channel``
  clears the flag in its ``finally``. A worker killed mid-publish therefore leaves ``apply_channel_changes``
  in FAILURE with billiard's ``WorkerLostError``, ``export-channel`` in STARTED and the flag set: nothing
  will ever clear it but ``reconcile_publishing_status``.
- ``CeleryTask.enqueue`` writes a ``CustomTaskMetadata`` row (its ``channel_id``, ``date_created``) and a
  PENDING ``TaskResult`` before the broker message; ``fetch_or_enqueue`` reuses an unready task of the
  same signature. If the message is lost, the task stays PENDING while no worker holds it and the queue is
  empty: the channel's Changes are never applied (``Change`` has no timestamp: their age is the task's).
  ``reconcile_change_tasks`` revokes such tasks and enqueues new ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from studiodoctor import studio_facts as facts


@dataclass
class PublishState:
    publishing: list[dict] = field(default_factory=list)   # channels whose main tree is publishing
    tasks: list[dict] = field(default_factory=list)        # recent or unready publish/apply TaskResults
    unapplied: dict[str, int] = field(default_factory=dict)  # channel id -> unapplied, unerrored Changes
    user_unapplied: int = 0                                 # unapplied Changes about users, not channels
    last_publication: dict[str, dict] = field(default_factory=dict)  # channel id -> {performed, age_s}


def _hex(value) -> str:
    return str(value or "").replace("-", "")


def read(rows, window: float) -> PublishState:
    """``rows(sql, params)``: the check's read-only query function."""
    ch, node, change, tr, meta, hist = (facts.CHANNEL_TABLE, facts.NODE_TABLE, facts.CHANGE_TABLE,
                                        facts.TASKRESULT_TABLE, facts.TASKMETA_TABLE, facts.HISTORY_TABLE)
    state = PublishState()
    for cid, name, since, age in rows(
            f"SELECT c.id, c.name, n.modified, EXTRACT(EPOCH FROM now() - n.modified)::float8 "
            f"FROM {ch} c JOIN {node} n ON n.id = c.main_tree_id "
            f"WHERE n.publishing AND NOT c.deleted ORDER BY n.modified"):
        state.publishing.append({"id": _hex(cid), "name": name, "since": since.isoformat(timespec="seconds"),
                                 "age_s": round(age)})
    names = [facts.APPLY_CHANNEL_CHANGES, *facts.PUBLISH_TASK_NAMES]
    for tid, tname, status, created, done, age, result, tb, channel in rows(
            f"SELECT r.task_id, r.task_name, r.status, r.date_created, r.date_done, "
            f"EXTRACT(EPOCH FROM now() - r.date_created)::float8, left(coalesce(r.result, ''), 400), "
            f"right(coalesce(r.traceback, ''), 400), m.channel_id::text "
            f"FROM {tr} r LEFT JOIN {meta} m ON m.task_id = r.task_id WHERE r.task_name = ANY(%s) "
            f"AND (r.date_created > now() - make_interval(secs => %s) OR r.status = ANY(%s)) "
            f"ORDER BY r.date_created DESC LIMIT 500", (names, window, list(facts.UNREADY_STATES))):
        state.tasks.append({"task_id": tid, "task_name": tname, "status": status, "channel_id": _hex(channel),
                            "created": created.isoformat(timespec="seconds") if created else None,
                            "done": done.isoformat(timespec="seconds") if done else None,
                            "age_s": round(age or 0), "error": _last_line(tb) or _last_line(result)})
    # enqueued but never started: Studio's enqueue writes CustomTaskMetadata before the message; the TaskResult
    # row appears only when a worker starts the task. Which task: its signature (apply_signature).
    for tid, signature, channel, created, age in rows(
            f"SELECT m.task_id, m.signature, m.channel_id::text, m.date_created, "
            f"EXTRACT(EPOCH FROM now() - m.date_created)::float8 FROM {meta} m "
            f"WHERE m.channel_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {tr} r WHERE r.task_id = m.task_id) "
            f"ORDER BY m.date_created DESC LIMIT 500"):
        if signature == apply_signature(_hex(channel)):
            state.tasks.append({"task_id": tid, "task_name": facts.APPLY_CHANNEL_CHANGES, "status": "PENDING",
                                "channel_id": _hex(channel), "created": created.isoformat(timespec="seconds"),
                                "done": None, "age_s": round(age or 0), "error": "", "started": False})
    state.tasks.sort(key=lambda t: t["created"] or "", reverse=True)
    for cid, count in rows(f"SELECT channel_id, count(*) FROM {change} WHERE NOT applied AND NOT errored "
                           f"GROUP BY channel_id"):
        if cid is None:
            state.user_unapplied += int(count)
        else:
            state.unapplied[_hex(cid)] = int(count)
    if state.unapplied or state.publishing:
        for cid, performed, age in rows(
                f"SELECT channel_id, max(performed), EXTRACT(EPOCH FROM now() - max(performed))::float8 "
                f"FROM {hist} WHERE action = %s GROUP BY channel_id", (facts.HISTORY_PUBLICATION,)):
            state.last_publication[_hex(cid)] = {"performed": performed.isoformat(timespec="seconds"),
                                                 "age_s": round(age)}
    return state


def apply_signature(channel_id: str) -> str:
    """The signature Studio's ``CeleryTask.generate_signature`` gives ``apply_channel_changes(channel_id=...)``:
    md5 of the task name, its kwargs as the JSON result backend encodes them, and the channel id
    (``contentcuration/utils/celery/tasks.py``; checked against a real enqueue by the studio lab's tests)."""
    import hashlib
    import json

    return hashlib.md5((facts.APPLY_CHANNEL_CHANGES + json.dumps({"channel_id": channel_id}) + channel_id)
                       .encode()).hexdigest()


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text or "").strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return line.strip('"')[:200]


def _latest(tasks: list[dict], channel: str, name: str) -> dict | None:
    for task in tasks:   # newest first
        if task["channel_id"] == channel and task["task_name"] == name:
            return task
    return None


def killed_publishes(state: PublishState) -> list[dict]:
    """apply_channel_changes tasks whose worker was killed (FAILURE, WorkerLostError) and that no later
    successful apply of the same channel made good, newest first."""
    redone, out = set(), []
    for t in state.tasks:   # newest first
        if t["task_name"] != facts.APPLY_CHANNEL_CHANGES:
            continue
        if t["status"] == "SUCCESS":
            redone.add(t["channel_id"])
        elif t["status"] == "FAILURE" and facts.WORKER_LOST in t["error"] and t["channel_id"] not in redone:
            out.append(t)
    return out


def orphaned(state: PublishState, running: set[str] | None) -> list[dict]:
    """Publishing channels whose publish can no longer finish: their latest apply_channel_changes task is
    done (a killed worker's FAILURE) and no worker runs one for them. ``running``: ids of the tasks
    the workers hold (None: unknown, then only a recorded WorkerLostError counts)."""
    out = []
    for chan in state.publishing:
        apply = _latest(state.tasks, chan["id"], facts.APPLY_CHANNEL_CHANGES)
        if apply is None or apply["status"] in facts.UNREADY_STATES:
            continue
        if running is None and facts.WORKER_LOST not in apply["error"]:
            continue
        export = _latest(state.tasks, chan["id"], facts.PUBLISH_TASK_NAMES[0])
        out.append({**chan, "apply_task": apply["task_id"], "apply_status": apply["status"],
                    "apply_error": apply["error"], "apply_done": apply["done"],
                    "export_status": export["status"] if export else None})
    return out


def failed_publishes(state: PublishState) -> list[dict]:
    """Each channel's latest export-channel, when it is a FAILURE (a publish that raised)."""
    seen, out = set(), []
    for task in state.tasks:
        if task["task_name"] not in facts.PUBLISH_TASK_NAMES or task["channel_id"] in seen:
            continue
        seen.add(task["channel_id"])
        if task["status"] == "FAILURE":
            out.append(task)
    return out


def lost_changes(state: PublishState, running: set[str], queued: int) -> list[dict]:
    """Channels with unapplied Changes that no task will apply: their apply_channel_changes task is unready
    but no worker holds it and the queue is empty (the message was lost), or there is no unready task at
    all. Age: the task's ``date_created`` (Studio's Change has no timestamp), else the channel's last
    ``publication`` in its history; None when neither exists."""
    out = []
    for channel, count in sorted(state.unapplied.items()):
        unready = [t for t in state.tasks if t["channel_id"] == channel and t["task_name"] == facts.APPLY_CHANNEL_CHANGES
                   and t["status"] in facts.UNREADY_STATES]
        if any(t["task_id"] in running for t in unready):
            continue
        if unready:
            if queued:
                continue  # it may be one of the queued messages: not lost
            apply = unready[0]   # the newest
            started = apply.get("started", True)
            out.append({"channel_id": channel, "unapplied": count, "task_id": apply["task_id"],
                        "task_status": apply["status"] if started else "enqueued, never started",
                        "since": apply["created"], "age_s": apply["age_s"],
                        "age_from": f"{facts.TASKRESULT_TABLE if started else facts.TASKMETA_TABLE}.date_created"})
            continue
        if any(t["task_id"] in running for t in state.tasks if t["channel_id"] == channel):
            continue
        hist = state.last_publication.get(channel)
        out.append({"channel_id": channel, "unapplied": count, "task_id": None, "task_status": None,
                    "since": hist["performed"] if hist else None, "age_s": hist["age_s"] if hist else None,
                    "age_from": f"{facts.HISTORY_TABLE}.performed" if hist else None})
    return out


def running_ids(slots: dict) -> set[str]:
    """Ids of the tasks the workers run or hold reserved (from ``_slots``)."""
    ids = set()
    for key in ("active", "reserved"):
        for tasks in (slots.get(key) or {}).values():
            for task in tasks or []:
                if isinstance(task, dict) and task.get("id"):
                    ids.add(str(task["id"]).replace("-", ""))
                    ids.add(str(task["id"]))
    return ids

