"""Kolibri Studio's own facts, the one place the engine and the lab take them from.

Names, paths and numbers of Studio's public code and deployment (``reference/studio-production-facts.md``):
table names of its Django models, the task names of a publish, the endpoints its app answers, the time
limits in front of it and the Cache-Control values its storage code and nginx set. They are Studio's, not
our lab's: the lab imports them to look like Studio, the checks import them to know what Studio does.
Nothing here may describe a lab fixture (a file name, a channel, a body only the lab serves): checks
discover those from the live system. Cheap to import (constants only).
"""

from __future__ import annotations

# --- PostgreSQL (facts §4, §6): Studio's Django models and django-celery-results -------------------
CHANNEL_TABLE = "contentcuration_channel"          # Channel: id (hex uuid), name, main_tree_id, deleted
NODE_TABLE = "contentcuration_contentnode"         # ContentNode: id, title, publishing, modified
# Change: server_rev, channel_id, applied, errored; NO timestamp column (the code has none: a Change's
# age comes from the task that should apply it, or the channel's history)
CHANGE_TABLE = "contentcuration_change"
TASKRESULT_TABLE = "django_celery_results_taskresult"  # TaskResult: task_id, task_name, status, result,
#                                                         traceback, date_created, date_done
TASKMETA_TABLE = "contentcuration_customtaskmetadata"  # CustomTaskMetadata: task_id, channel_id, date_created
HISTORY_TABLE = "contentcuration_channelhistory"   # ChannelHistory: channel_id, action, performed
HISTORY_PUBLICATION = "publication"                # ChannelHistory.action written by Channel.mark_publishing
STUDIO_TABLES = (CHANNEL_TABLE, NODE_TABLE, CHANGE_TABLE, TASKRESULT_TABLE, TASKMETA_TABLE, HISTORY_TABLE)
# Every column the checks read, by table (tests verify each against Studio's models).
STUDIO_COLUMNS = {
    CHANNEL_TABLE: ("id", "name", "main_tree_id", "deleted", "public", "version"),
    NODE_TABLE: ("id", "publishing", "modified"),
    CHANGE_TABLE: ("server_rev", "channel_id", "user_id", "applied", "errored"),
    TASKRESULT_TABLE: ("task_id", "task_name", "status", "result", "traceback", "date_created", "date_done"),
    TASKMETA_TABLE: ("task_id", "channel_id", "date_created"),
    HISTORY_TABLE: ("channel_id", "action", "performed"),
}

# What publishing writes: ``main_tree.publishing = True`` and a TaskResult named like this.
PUBLISH_TASK_NAMES = ("export-channel", "export-channel-staging-tree")
# The Celery task the UI enqueues for a channel's Changes (a publish is one), and for a user's.
APPLY_CHANNEL_CHANGES = "apply_channel_changes"
APPLY_USER_CHANGES = "apply_user_changes"
# Celery's unready states (celery.states.UNREADY_STATES): a task in one of them may still run.
UNREADY_STATES = ("PENDING", "RECEIVED", "STARTED", "RETRY")
# What billiard records in the result of a task whose pool process was killed (OOM, SIGKILL).
WORKER_LOST = "WorkerLostError"
# Studio's repair commands (contentcuration/management/commands/; the Makefile's `reconcile` target).
RECONCILE_PUBLISHING = "reconcile_publishing_status"
RECONCILE_CHANGES = "reconcile_change_tasks"
MANAGE = "python contentcuration/manage.py"
# Studio's single Celery queue.
CELERY_QUEUE = "celery"

# --- the app (facts §5): endpoints every Studio answers --------------------------------------------
STEALTHZ_PATH = "/stealthz"                        # liveness, no database; body "<3"
STEALTHZ_BODY = "<3"
HEALTHZ_PATH = "/healthz"                          # Channel.objects.first(): the first channel's name
LOGIN_PATH = "/en/accounts/"                       # the login page (200 for a supported User-Agent)
PUBLIC_CHANNELS_PATH = "/api/public/v1/channels"   # public channels: ids give the channel databases
PROBERS_PATH = "/api/probers/"                     # admin prober endpoints (Authorization: Token)

# --- nginx (facts §2) ------------------------------------------------------------------------------
STATIC_PREFIX = "/static/"                         # alias of collectstatic's output, expires 4h, autoindex on
STATIC_EXPIRES_S = 4 * 3600
CONTENT_PREFIX = "/content/"
CONTENT_STORAGE_PREFIX = "/content/storage/"
CONTENT_DATABASES_PREFIX = "/content/databases/"
CONTENT_ALLOWED_METHODS = ("GET", "HEAD", "OPTIONS")  # limit_except GET HEAD OPTIONS { deny all; }
STORAGE_CACHE_CONTROL = "public, max-age=31536000, immutable, no-transform"   # _cache.conf (PR #5829)
IMMUTABLE_MAX_AGE = 31536000
DATABASE_CACHE_CONTROL = "private, max-age=5, no-transform"   # what Studio's storage code uploads with

# --- time limits in front of the app -------------------------------------------------------------
STUDIO_PROXY_READ_TIMEOUT_S = 100.0                # Studio's nginx location / (#4336)
NGINX_DEFAULT_READ_TIMEOUT_S = 60.0                # nginx's own default
CLOUDFLARE_TIMEOUT_S = 100.0                       # CloudFlare's origin read timeout (fixed below Enterprise)
