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
CHANGE_TABLE = "contentcuration_change"            # Change: server_rev, channel_id, applied, errored, created
TASKRESULT_TABLE = "django_celery_results_taskresult"  # TaskResult: task_id, task_name, status, date_*
STUDIO_TABLES = (CHANNEL_TABLE, NODE_TABLE, CHANGE_TABLE, TASKRESULT_TABLE)

# What publishing writes: ``main_tree.publishing = True`` and a TaskResult named like this.
PUBLISH_TASK_NAMES = ("export-channel", "export-channel-staging-tree")
# The Celery task the UI enqueues for a publish Change.
APPLY_CHANNEL_CHANGES = "apply_channel_changes"
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
