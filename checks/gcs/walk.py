"""The audits' walk over a listing: the first page alone, then, when much is left, the rest of the name
range cut into ranges listed at once, a few at a time.

A listing's pages are sequential (each ``pageToken`` comes with the page before it), so a walk of 100
pages is 100 round trips. The JSON API also filters by name range (``startOffset`` inclusive,
``endOffset`` exclusive, documented for objects.list). Studio's names continue the prefix with random
hex (``databases/<channel id>.sqlite3``, ``storage/<h0>/<h1>/<md5>``), so the first page's last name
says which share of the name space one page held, hence about how many pages are left. When more
than one is left (within the cap), the names after it are cut at evenly spaced two-hex-digit points
into as many ranges as pages are left (at most ``MAX_RANGES``), listed by ``gcs.list_concurrency`` (4)
workers, each range page by page; otherwise the walk goes on page after page. Any name falls into one
of the contiguous ranges, hex or not; a prefix whose names are not random hex only costs a request per
range it leaves empty. Requests never run ahead of the cap (``--max-objects``: a worker reserves a
page of it before asking), and the deadline is shared. An API that ignores the offsets (an old
emulator) is noticed (a range answering names before its start), said, and its ranges stop: never
counted twice, never called complete.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from studiodoctor.backends import gcs

MAX_RANGES = 16


@dataclass
class Walk:
    """What one walk did: objects visited, requests, and how the listing was cut; ``sequential_requests``
    (in the figures) is its longest chain of requests one after another (the first page and the most
    pages one worker asked): what a slower network multiplies. A sequential walk's is every page."""

    limit: int
    page: int
    audited: int = 0
    requests: int = 0
    reserved: int = 0
    ranges: int = 1
    concurrency: int = 1
    by_deadline: bool = False
    capped: bool = False
    offsets_ignored: bool = False
    incomplete: list = field(default_factory=list)
    per_worker: dict = field(default_factory=dict)
    turn: threading.Condition = field(default_factory=threading.Condition)

    @property
    def complete(self) -> bool:
        return not (self.by_deadline or self.capped or self.offsets_ignored or self.incomplete)

    def figures(self) -> dict:
        """For the evidence: how the listing was read."""
        out = {"ranges": self.ranges, "concurrency": self.concurrency,
               "sequential_requests": 1 + max(self.per_worker.values(), default=0)}
        if self.offsets_ignored:
            out["offsets_ignored"] = ("the API answered names outside the asked startOffset/endOffset: those "
                                      "ranges were not read")
        return out

    def reserve(self) -> bool:
        """A page of the cap for the next request (waiting while pages in flight may fill it); False
        when the cap is reached."""
        with self.turn:
            while self.reserved and self.audited + self.reserved >= self.limit:
                self.turn.wait()
            if self.audited >= self.limit:
                self.capped = True
                return False
            self.reserved += self.page
            return True

    def count(self) -> None:
        """One request answered (a page), by this thread."""
        with self.turn:
            self.requests += 1
            me = threading.get_ident()
            self.per_worker[me] = self.per_worker.get(me, 0) + 1

    def release(self) -> None:
        with self.turn:
            self.reserved -= self.page
            self.turn.notify_all()


def listing(ctx, prefix: str, limit: int, fields: str, page_size: int | None, start: str = "", end: str = ""):
    """The SDK's iterator over a paginated, field-restricted listing of at most ``limit`` objects, between
    ``start`` (inclusive) and ``end`` (exclusive) when given; no retries, each request bounded by the deadline."""
    options = {"start_offset": start} if start else {}
    if end:
        options["end_offset"] = end
    return gcs.client(ctx).list_blobs(gcs.bucket_name(ctx), prefix=prefix, fields=fields,
                                      page_size=_page(ctx, page_size, limit), max_results=limit,
                                      timeout=ctx.timeout(ctx.setting("request_timeout", 30.0)), retry=None,
                                      **options)


def _page(ctx, page_size: int | None, limit: int) -> int:
    return min(int(page_size or ctx.setting("page_size", 1000)), max(1, limit))


def _take(walk: Walk, visit, blobs, start: str, end: str, seen: str = "") -> str:
    """Visit the page's names in [start, end) under the cap (``seen``: visited already, the first page's
    last name where the first range starts): "" to go on, else why the range stops."""
    for blob in blobs:
        if start and blob.name < start:
            walk.offsets_ignored = True
            return "ignored"
        if end and blob.name >= end:
            return "done"   # past the range's end: a sorted listing has nothing more for it
        if blob.name == seen:
            continue
        with walk.turn:
            if walk.audited >= walk.limit:
                walk.capped = True
                return "capped"
            walk.audited += 1
            visit(blob)
    return ""


def _walk_range(ctx, walk: Walk, visit, pages, start: str, end: str, margin: float, stop, seen: str = "") -> None:
    """Page after page of one range until its end, the cap, the deadline or ``stop``."""
    while not stop.is_set():
        if ctx.remaining() <= margin:
            walk.by_deadline = True
            return
        if not walk.reserve():
            return
        try:  # the reservation holds until the page is counted: no other worker asks past the cap meanwhile
            page = next(pages, None)
            if page is None:
                return
            walk.count()
            if _take(walk, visit, page, start, end, seen):
                return
        finally:
            walk.release()
    walk.incomplete.append(start)


HEX = "0123456789abcdef"


def position(prefix: str, name: str) -> tuple[int, str] | None:
    """Where ``name`` sits in the hex name space after ``prefix``: (its first two hex digits as 0..255,
    the layout of a cut point: "{}{}" for ``databases/<id>``, "{}/{}" for ``storage/<h0>/<h1>/``);
    None when it does not continue the prefix with hex."""
    rest = name[len(prefix):len(prefix) + 3]
    if len(rest) >= 2 and rest[0] in HEX and rest[1] in HEX:
        return int(rest[:2], 16), "{}{}"
    if len(rest) == 3 and rest[0] in HEX and rest[1] == "/" and rest[2] in HEX:
        return int(rest[0] + rest[2], 16), "{}/{}"
    return None


def cuts(prefix: str, last: str, pages_left: int) -> list[str]:
    """Evenly spaced two-hex-digit points after ``last`` cutting the rest of ``prefix`` into at most
    ``pages_left`` + 1 ranges ([] when ``last`` does not continue the prefix with hex)."""
    where = position(prefix, last)
    n = min(MAX_RANGES, pages_left, 255 - where[0]) if where else 0
    if n < 2:
        return []
    at, layout = where
    points = {prefix + layout.format(*f"{at + 1 + (254 - at) * k // (n - 1):02x}") for k in range(n)}
    return sorted(p for p in points if p > last)


def collect(ctx, prefix: str, limit: int, visit, fields: str, page_size: int | None = None) -> Walk:
    """Walk the listing of ``prefix`` calling ``visit(blob)`` for at most ``limit`` objects."""
    walk = Walk(limit, _page(ctx, page_size, limit))
    margin = float(ctx.setting("deadline_margin", 0.3))
    stop = threading.Event()
    first = listing(ctx, prefix, limit, fields, page_size)
    pages = first.pages
    walk.reserve()
    try:
        page = next(pages, [])
        walk.count()
        last = ""
        for blob in page:
            last = blob.name
            if walk.audited < limit:
                walk.audited += 1
                visit(blob)
    finally:
        walk.release()
    walk.per_worker.clear()
    if first.next_page_token is None or not last:
        return walk
    if walk.audited >= limit:
        walk.capped = True
        return walk
    where = position(prefix, last)
    share = (where[0] + 1) / 256 if where else 1.0   # of the name space the first page held
    expected = min(limit, math.ceil(walk.audited / share))   # the objects the walk will read, about
    left = math.ceil(max(0, expected - walk.audited) / walk.page)
    points = cuts(prefix, last, left) if left > 2 else []
    if len(points) < 2:  # two pages or less left, or names that are not random hex: page after page
        _walk_range(ctx, walk, visit, pages, "", "", margin, stop)
        return walk
    bounds = list(zip([last] + points, points + [""]))
    walk.ranges, walk.concurrency = len(bounds), min(len(bounds), max(1, int(ctx.setting("list_concurrency", 4))))

    def one(start: str, end: str) -> None:
        _walk_range(ctx, walk, visit, listing(ctx, prefix, limit, fields, page_size, start, end).pages,
                    start, end, margin, stop, seen=last if start == last else "")

    with ThreadPoolExecutor(walk.concurrency, thread_name_prefix="gcs-range") as pool:
        futures = [pool.submit(one, start, end) for start, end in bounds]
        try:
            for future in futures:
                future.result()
        finally:
            stop.set()
            for future in futures:
                future.cancel()
    return walk
