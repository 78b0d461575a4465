"""Channel databases to probe, from every source the run has: Studio's public channel API (through
whichever URL the asking check has), the bucket's listing under ``databases/`` (the gcs layer's
credentials), and Studio's own tables (the run's PostgreSQL session, when the postgres layer opened one).

A check that needs a sample must not say "cannot tell" while another layer of the same run could name
one: a stack without the public API still has its bucket and its database. Each source is asked at most
once per run (the run's ``Shared`` cache), so the nginx and edge checks and the gcs layer share what one
of them fetched; no source waits for another layer's check (the run is never serialized by it).

``channel_ids(ctx, api_bases)`` returns a ``Found``: the channel ids (32 hex digits, the name of
``databases/<id>.sqlite3``), where they came from, and what was tried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from studiodoctor import studio_facts as facts

_ID = re.compile(r"[0-9a-f]{32}")
MAX_IDS = 20


@dataclass
class Found:
    ids: list[str] = field(default_factory=list)
    source: str = ""
    tried: list[str] = field(default_factory=list)   # "source: why it gave nothing"
    # True when every source that could have answered could not be asked (no answer, 5xx): we could not
    # look, rather than found nothing
    failed: bool = False


def _ids(values) -> list[str]:
    out = []
    for value in values:
        text = str(value or "").replace("-", "").lower()
        if _ID.fullmatch(text) and text not in out:
            out.append(text)
    return out[:MAX_IDS]


def from_public_api(ctx, base: str) -> tuple[list[str], str, bool]:
    """(ids, why none, whether we could not look) from ``BASE/api/public/v1/channels`` (a plain list or
    DRF's paginated page), asked once per run and base."""

    def fetch():
        from studiodoctor.probes import http as httpprobe

        from .reach import get_at

        url = base.rstrip("/") + facts.PUBLIC_CHANNELS_PATH
        try:  # a pod's nginx behind the API server, or a URL
            resp = get_at(ctx, base, facts.PUBLIC_CHANNELS_PATH, headers={"Accept": "application/json"}, timeout=5.0)
        except Exception as exc:  # noqa: BLE001 - no answer: we could not look
            return [], f"{url}: {httpprobe.describe_error(exc)[1]}", True
        if resp.status_code != 200:
            return [], f"{url}: HTTP {resp.status_code}", resp.status_code >= 500
        try:
            data = resp.json()
        except ValueError:
            return [], f"{url}: not JSON", False
        items = data.get("results") if isinstance(data, dict) else data
        ids = _ids(c.get("id") for c in (items if isinstance(items, list) else []) if isinstance(c, dict))
        return ids, "" if ids else f"{url}: no public channel listed", False

    return ctx.shared.get(f"discovery:channels:api:{base.rstrip('/')}", fetch)


def from_bucket(ctx) -> tuple[list[str], str, bool]:
    """(ids, why none, could not look) from one listing request of ``gcs.databases_prefix`` (default
    ``databases/``) with the gcs layer's credentials; skipped when no bucket is configured."""
    from studiodoctor.backends import gcs

    if not ctx.section("gcs").get("bucket"):
        return [], "bucket listing: gcs.bucket is not set", False

    def fetch():
        prefix = str(ctx.section("gcs").get("databases_prefix") or "databases/")
        try:
            blobs = gcs.client(ctx).list_blobs(gcs.bucket_name(ctx), prefix=prefix, fields="items(name),nextPageToken",
                                               max_results=MAX_IDS, page_size=MAX_IDS, timeout=ctx.timeout(10.0),
                                               retry=None)
            names = [b.name for b in blobs]
        except Exception as exc:  # noqa: BLE001 - no credentials, forbidden, unreachable: this source is out
            result = getattr(exc, "result", None)  # a Stop from the client's credentials
            text = result.summary if result is not None else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return [], f"listing gs://{gcs.bucket_name(ctx)}/{prefix}: {text[:160]}", True
        ids = _ids(n[len(prefix):].removesuffix(".sqlite3") for n in names if n.endswith(".sqlite3"))
        return ids, "" if ids else f"gs://{gcs.bucket_name(ctx)}/{prefix} holds no channel database", False

    return ctx.shared.get("discovery:channels:bucket", fetch)


def from_tables(ctx) -> tuple[list[str], str, bool]:
    """(ids, why none, could not look) of Studio's published public channels, on the run's PostgreSQL
    session if the postgres layer opened one (never a connection of our own for it)."""
    from studiodoctor.backends import postgres

    if ctx.shared.peek(postgres.SESSION) is None:
        return [], "Studio's tables: no PostgreSQL session in this run", False

    def fetch():
        try:
            rows = postgres.query(ctx, f"SELECT id FROM {facts.CHANNEL_TABLE} WHERE public AND NOT deleted "
                                       f"AND version > 0 ORDER BY id LIMIT {MAX_IDS}")
        except Exception as exc:  # noqa: BLE001 - another schema, a busy session: this source is out
            return [], f"Studio's tables: {(str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]}", True
        ids = _ids(r.get("id") for r in rows)
        return ids, "" if ids else f"Studio's tables: no published public channel in {facts.CHANNEL_TABLE}", False

    return ctx.shared.get("discovery:channels:tables", fetch)


def channel_ids(ctx, api_bases: list[str]) -> Found:
    """Channel ids from the first source that has some: the public API at each of ``api_bases`` (the
    asking check's own URL first), then the bucket listing, then Studio's tables."""
    found = Found()
    could_not_look = []
    asks = [(f"the public channel API at {b.rstrip('/')}", lambda b=b: from_public_api(ctx, b)) for b in api_bases if b]
    asks += [("the bucket listing", lambda: from_bucket(ctx)), ("Studio's tables", lambda: from_tables(ctx))]
    for source, ask in asks:
        ids, why, failed = ask()
        if ids:
            found.ids, found.source = ids, source
            return found
        found.tried.append(why)
        could_not_look.append(failed)
    found.failed = any(could_not_look)
    return found


def database_path(channel_id: str) -> str:
    """``/content/databases/<id>.sqlite3``: where nginx and the edge serve a channel's database."""
    return f"{facts.CONTENT_DATABASES_PREFIX}{channel_id}.sqlite3"
