"""gcs.listing_not_public: anonymous bucket listing is refused."""

from __future__ import annotations

import re
from urllib.parse import quote

from studiodoctor.model import MUTATING, READ_ONLY, Command, Reason, error, fail, ok, unreachable
from studiodoctor.backends import gcs
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import LISTING_NOT_PUBLIC, _public_url


@check(LISTING_NOT_PUBLIC, title="Anonymous bucket listing is refused", needs=("gcs.bucket", "gcs.public_url"),
       permissions=("none: anonymous requests",), produces=("permissions",))
def check_listing_not_public(ctx):
    """An anonymous listing of the bucket is refused (XML `GET /<bucket>` and JSON `.../o`).

    Content must be readable by anyone who knows an object's name, but listing the bucket lets anyone
    enumerate every channel database and file, including unpublished channels' drafts (Studio issue
    #1838: `/content/` once listed the bucket). Listing comes from storage.objects.list, which
    roles/storage.objectViewer includes: grant allUsers roles/storage.legacyObjectReader instead. The
    check asks `gcs.public_url` for a one-item listing without credentials, in both the XML and the JSON
    API; a listing in the answer is a `fail`, 401/403 is `ok`; 404 from both says the endpoint does not
    serve this bucket (wrong `gcs.public_url` or `gcs.bucket`): an `error`, never `ok`. Anonymous by
    nature, it needs no credentials and does not wait for `gcs.bucket`."""
    from studiodoctor.probes import http as httpprobe

    name = gcs.bucket_name(ctx)
    base = _public_url(ctx)
    probes = {"xml": f"{base}/{quote(name)}?max-keys=1",
              "json": f"{base}/storage/v1/b/{quote(name)}/o?maxResults=1&fields=items(name)"}
    seen: dict[str, str] = {}
    exposed, unexpected = [], []
    for api, url in probes.items():
        try:
            resp = httpprobe.request(ctx, "GET", url, timeout=float(ctx.setting("request_timeout", 30.0)))
        except Exception as exc:
            timed_out, text = httpprobe.describe_error(exc)
            return unreachable("public GCS endpoint", base, text, timed_out=timed_out,
                               hint="check gcs.public_url and the network path to it")
        body = resp.text[:4000] if resp.request.method == "GET" else ""
        listed = resp.status_code == 200 and ("<ListBucketResult" in body or '"storage#objects"' in body
                                              or '"items"' in body)
        if listed:
            first = re.search(r"<Key>([^<]+)</Key>|\"name\"\s*:\s*\"([^\"]+)\"", body)
            shown = next((g for g in (first.groups() if first else ()) if g), "")
            seen[api] = "HTTP 200, listing returned" + (f" ({shown})" if shown else "")
            exposed.append(api)
        elif resp.status_code in (401, 403):
            seen[api] = f"HTTP {resp.status_code}, refused"
        elif resp.status_code == 404:
            seen[api] = "HTTP 404, not served"
        else:
            seen[api] = f"HTTP {resp.status_code}"
            unexpected.append(api)
    evidence = {"bucket": name, "public_url": base, "answers": seen,
                "urls": {api: probes[api] for api in probes}}
    commands = [Command(f"curl -s '{probes['xml']}' | head -c 400", READ_ONLY, "what anyone sees"),
                Command(f"gcloud storage buckets get-iam-policy gs://{name}", READ_ONLY)]
    if exposed:
        return fail(f"anyone can list gs://{name} through {base} ({', '.join(exposed).upper()} API): "
                    f"{seen[exposed[0]]}", evidence=evidence, commands=commands + [
                        Command(f"gcloud storage buckets remove-iam-policy-binding gs://{name} --member=allUsers "
                                f"--role=roles/storage.objectViewer", MUTATING,
                                "only after granting roles/storage.legacyObjectReader, or content goes private"),
                        Command(f"gcloud storage buckets add-iam-policy-binding gs://{name} --member=allUsers "
                                f"--role=roles/storage.legacyObjectReader", MUTATING)],
                    hint="grant allUsers roles/storage.legacyObjectReader (objects.get only) instead of "
                         "roles/storage.objectViewer or legacyBucketReader, which include storage.objects.list")
    if unexpected:
        return error(f"anonymous listing of gs://{name} answered unexpectedly: "
                     f"{'; '.join(f'{a}: {seen[a]}' for a in unexpected)}", evidence=evidence, commands=commands)
    refused = [api for api, v in seen.items() if v.endswith("refused")]
    if not refused:  # every probe got 404: nothing was asked of this bucket, so nothing is known
        return error(f"cannot tell whether gs://{name} can be listed: {base} answered 404 to both listings "
                     f"({'; '.join(f'{a}: {v}' for a, v in seen.items())}), so it does not serve this bucket",
                     evidence=evidence, commands=commands, reason=Reason.NOT_CONFIGURED,
                     hint="check gcs.public_url (the anonymous endpoint, https://storage.googleapis.com for GCS) "
                          "and gcs.bucket")
    return ok(f"anonymous listing of gs://{name} is refused ({'; '.join(f'{a}: {v}' for a, v in seen.items())})",
              evidence=evidence)
