"""GCS: the credentials' service account and the bucket's ``testIamPermissions``, each missing
permission named with the predefined role that carries it."""

from __future__ import annotations

from ..model import Reason, error
from .common import pf, declared, entry, verdict, first_line


# the predefined role that carries each permission the gcs checks declare
GCS_ROLES = {"storage.objects.list": "roles/storage.objectViewer",
             "storage.objects.get": "roles/storage.objectViewer",
             "storage.buckets.get": "roles/storage.legacyBucketReader",
             "storage.buckets.getIamPolicy": "roles/storage.legacyBucketOwner"}


@pf("gcs.preflight", title="GCS: our service account and what it may do on the bucket", needs=("gcs.bucket",))
def preflight_gcs(ctx):
    """The credentials' service account and the bucket's testIamPermissions for the declared permissions."""
    from ..backends import gcs as gb

    bucket_name = str(ctx.config.get("bucket"))
    perms: dict[str, list[str]] = {}
    optional: set[str] = set()
    for perm, ids in declared(layers={"gcs"}).items():
        name = perm.split()[0]
        if name.startswith("storage."):
            perms.setdefault(name, []).extend(ids)
            if "optional" in perm:
                optional.add(name)
    try:
        client = gb.client(ctx)
    except Exception as exc:  # noqa: BLE001 - the gcs layer's own _Unusable carries its result
        return getattr(exc, "result", None) or error(f"gcs: {first_line(exc)}", reason=Reason.AUTH)
    creds = getattr(client, "_credentials", None)
    email = getattr(creds, "service_account_email", None)
    if not isinstance(email, str) or not email or email == "default":
        email = None
    kind = type(creds).__name__
    identity = email or ("anonymous (no credentials)" if kind == "AnonymousCredentials" else f"{kind} (no e-mail)")
    try:
        granted = set(client.bucket(bucket_name).test_iam_permissions(sorted(perms), timeout=ctx.timeout(margin=0.2)))
    except Exception as exc:  # noqa: BLE001 - the endpoint may not implement it (fake-gcs-server does not)
        code = getattr(exc, "code", None) or getattr(getattr(exc, "response", None), "status_code", None)
        answer = f"HTTP {code}" if code else f"{type(exc).__name__}: {first_line(exc)[:100]}"
        entries = [entry(p, ids, None, "testIamPermissions", optional=p in optional, detail=answer)
                   for p, ids in perms.items()]
        return verdict("gcs", identity, entries, [], evidence={"bucket": bucket_name},
                        note=f"gs://{bucket_name} did not answer testIamPermissions ({answer}): this endpoint "
                             "cannot say (fake-gcs-server does not implement it)" if code == 404 else
                             f"gs://{bucket_name} did not answer testIamPermissions ({answer})")
    entries = [entry(p, ids, p in granted, "testIamPermissions", optional=p in optional) for p, ids in perms.items()]
    member = f"serviceAccount:{email}" if email else "<member>"
    roles = sorted({GCS_ROLES.get(p, "<a role with " + p + ">") for p, ids in perms.items() if p not in granted})
    lines = [f"gcloud storage buckets add-iam-policy-binding gs://{bucket_name} --member={member} --role={r}"
             for r in roles]
    return verdict("gcs", identity, entries, lines, evidence={"bucket": bucket_name})
