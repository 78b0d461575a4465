"""Layer `gcs` against the real fake-gcs-server seeded like `studio-content` (with the lab's anonymous
gate in front where access must be enforced), and against a canned GCS JSON API server for the 403 and
IAM answers no emulator gives, always driven by the real google-cloud-storage client."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from checks.gcs import (BUCKET, DATABASES_CACHE_CONTROL, LISTING_NOT_PUBLIC, PUBLIC_READ,
                        STORAGE_CACHE_CONTROL, database_cache_problem, storage_cache_problem)
from studiodoctor import engine
from studiodoctor.lab.servers.fake_gcs import FakeGCSServer, apply_fault, revert_fault
from studiodoctor.lab.servers.gcs_gate import GCSGate
from studiodoctor.lab.launcher import free_port
from studiodoctor.model import MUTATING, READ_ONLY, Reason, Status

GCS_IDS = (BUCKET, PUBLIC_READ, DATABASES_CACHE_CONTROL, STORAGE_CACHE_CONTROL, LISTING_NOT_PUBLIC)


def run(profile, **kw):
    report = engine.check(profile, **({"layers": ["gcs"]} if "check_ids" not in kw else {}), **kw)
    return {r.id: r for r in report.results}


# the emulator ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gcs_lab(lab_root):
    """fake-gcs-server seeded like studio-content, and the anonymous gate in front of it."""
    server = FakeGCSServer(lab_root / "gcs-layer").start()
    gate = None
    try:
        names = server.seed_studio_content(channels=4, versions=2, content_files=16)
        gate = GCSGate(lab_root / "gcs-layer", upstream=server.url).start()
        yield server, gate, names
    finally:
        if gate is not None:
            gate.stop()
        server.stop()


@pytest.fixture
def lab_profile(gcs_lab, make_profile):
    server, gate, _ = gcs_lab

    def make(public_url: str | None = None, **gcs):
        section = {**server.profile()["gcs"], "public_url": public_url or gate.url, **gcs}
        return make_profile({"gcs": section}, timeout=8)

    return make


@pytest.fixture
def fault(gcs_lab):
    """apply a lab fault for one test and always revert it."""
    server, gate, _ = gcs_lab
    applied = []

    def apply(name):
        applied.append(name)
        return apply_fault(name, server, gate)

    yield apply
    for name in applied:
        revert_fault(name, server, gate)


def test_healthy_bucket_all_ok(lab_profile, gcs_lab):
    res = run(lab_profile())
    assert {i: res[i].status for i in GCS_IDS} == {i: Status.OK for i in GCS_IDS}, \
        {i: res[i].summary for i in GCS_IDS}
    assert res[BUCKET].evidence["storage_class"] == "STANDARD"
    assert res[BUCKET].evidence["uniform_bucket_level_access"] is False
    # 4 channels x (2 versioned + 1 unversioned) databases, 16 content files, all audited
    assert res[DATABASES_CACHE_CONTROL].evidence["audited"] == 12
    assert res[DATABASES_CACHE_CONTROL].evidence["complete"] is True
    assert res[STORAGE_CACHE_CONTROL].evidence["audited"] == 16
    assert res[PUBLIC_READ].evidence["readable"] == 10
    assert "refused" in res[LISTING_NOT_PUBLIC].summary


def test_emulator_allows_anonymous_listing_and_we_say_so(lab_profile, gcs_lab):
    server, _, names = gcs_lab
    res = run(lab_profile(public_url=server.url))
    listing = res[LISTING_NOT_PUBLIC]
    assert listing.status is Status.FAIL
    assert "anyone can list gs://studio-content" in listing.summary
    assert listing.evidence["answers"]["xml"].startswith("HTTP 200")
    assert listing.evidence["answers"]["json"].startswith("HTTP 200")
    # it names an object anyone could enumerate
    assert any(n in listing.summary for n in names["databases"] + names["storage"])
    assert any(c.safety == MUTATING and "legacyObjectReader" in c.text for c in listing.commands)
    assert res[PUBLIC_READ].status is Status.OK


def test_public_listing_fault_through_gate(lab_profile, fault):
    fault("public-listing")
    res = run(lab_profile())
    assert res[LISTING_NOT_PUBLIC].status is Status.FAIL


def test_cacheable_database_object_fails_naming_it(lab_profile, fault):
    described = fault("cacheable-database")
    name = described.split(":")[0]
    res = run(lab_profile())
    db = res[DATABASES_CACHE_CONTROL]
    assert db.status is Status.FAIL
    assert f"{name} (public, max-age=3600)" in db.summary
    assert db.summary.startswith("1 of 12 objects")
    assert db.evidence["offenders"] == 1
    assert db.evidence["offending_objects"] == [{"name": name, "cache_control": "public, max-age=3600"}]
    assert any(name in c.text and c.safety == READ_ONLY for c in db.commands)
    assert any("private, max-age=5, no-transform" in c.text and c.safety == MUTATING for c in db.commands)
    assert res[STORAGE_CACHE_CONTROL].status is Status.OK


def test_database_without_gzip_warns(lab_profile, fault):
    name = fault("database-not-gzipped").split(":")[0]
    res = run(lab_profile())
    db = res[DATABASES_CACHE_CONTROL]
    assert db.status is Status.WARN
    assert name in db.summary and "without Content-Encoding gzip" in db.summary
    assert db.evidence["sqlite3_without_gzip"] == 1


def test_private_content_object_fails_public_read(lab_profile, fault, gcs_lab):
    _, gate, names = gcs_lab
    name = fault("private-content").split(":")[0]
    assert name in names["storage"]
    # sample every content object so the private one is certainly among them
    res = run(lab_profile(public_sample=100))
    pub = res[PUBLIC_READ]
    assert pub.status is Status.FAIL
    assert f"{name} (HTTP 403)" in pub.summary
    assert pub.summary.startswith("1 of 16 sampled")


def test_bucket_missing_fails_and_blocks_the_rest(lab_profile):
    res = run(lab_profile(bucket="no-such-bucket"))
    assert res[BUCKET].status is Status.FAIL
    assert "bucket gs://no-such-bucket missing (HTTP 404" in res[BUCKET].summary
    for cid in GCS_IDS[1:]:
        if cid in (PUBLIC_READ, LISTING_NOT_PUBLIC):  # anonymous: they do not wait for gcs.bucket
            continue
        assert res[cid].status is Status.BLOCKED and res[cid].blocked_by == [BUCKET]
    assert res[PUBLIC_READ].status is Status.ERROR and "does not find the bucket" in res[PUBLIC_READ].summary
    assert res[LISTING_NOT_PUBLIC].status is not Status.BLOCKED   # the gate refuses to list it: that is true


def test_anonymous_checks_run_without_credentials(lab_profile, gcs_lab, tmp_path):
    """No usable GCS credentials (a key file that does not exist): gcs.bucket and the audits that list
    cannot look (error, blocked), but gcs.listing_not_public and gcs.public_read are anonymous by nature
    and still judge: public_read reads the objects a configured content path names."""
    server, _, names = gcs_lab
    missing_key = str(tmp_path / "no-such-key.json")
    profile = lab_profile(credentials=missing_key, endpoint="")
    profile.data["nginx"] = {"storage_path": "/content/" + names["storage"][0]}
    res = run(profile)
    assert res[BUCKET].status is Status.ERROR and "does not exist" in res[BUCKET].summary
    assert res[DATABASES_CACHE_CONTROL].status is Status.BLOCKED
    assert res[LISTING_NOT_PUBLIC].status is Status.OK, res[LISTING_NOT_PUBLIC].summary
    pub = res[PUBLIC_READ]
    assert pub.status is Status.OK, pub.summary
    assert pub.evidence["sample_source"] == "nginx.storage_path" and pub.evidence["readable"] == 1
    assert "does not exist" in pub.evidence["listing"]
    profile.data["nginx"] = {}                         # no other source: an error that says what was tried
    pub = run(profile)[PUBLIC_READ]
    assert pub.status is Status.ERROR and "no other source of this run named an object" in pub.summary


def test_bucket_missing_fault_and_revert(lab_profile, gcs_lab):
    server, gate, _ = gcs_lab
    apply_fault("bucket-missing", server, gate)
    try:
        assert run(lab_profile())[BUCKET].status is Status.FAIL
    finally:
        revert_fault("bucket-missing", server, gate)
    res = run(lab_profile())
    assert all(res[i].status is Status.OK for i in GCS_IDS)
    assert res[DATABASES_CACHE_CONTROL].evidence["audited"] == 12


def test_dead_endpoint_is_unreachable_within_the_deadline(make_profile):
    dead = f"http://127.0.0.1:{free_port()}"
    profile = make_profile({"gcs": {"bucket": "studio-content", "endpoint": dead, "public_url": dead}}, timeout=5)
    started = time.monotonic()
    res = run(profile)
    assert time.monotonic() - started < 4
    assert res[BUCKET].status is Status.FAIL
    assert res[BUCKET].summary == f"GCS API at {dead} unreachable from here: connection refused"
    assert res[BUCKET].reason == Reason.UNREACHABLE.value
    assert res[DATABASES_CACHE_CONTROL].status is Status.BLOCKED


def test_hanging_endpoint_times_out_within_the_deadline(make_profile):
    import socket

    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        profile = make_profile({"gcs": {"bucket": "studio-content", "endpoint": url, "public_url": url}},
                               timeout=1.5)
        started = time.monotonic()
        res = run(profile, check_ids=[BUCKET])
        assert time.monotonic() - started < 3
    assert res[BUCKET].status is Status.FAIL
    assert "timed out" in res[BUCKET].summary


def test_max_objects_bounds_the_audit(lab_profile):
    res = run(lab_profile(page_size=5), options={"max_objects": 7})
    db = res[DATABASES_CACHE_CONTROL]
    assert db.status is Status.OK
    assert db.evidence["audited"] == 7 and db.evidence["complete"] is False
    assert db.evidence["requests"] == 2
    assert "--max-objects reached" in db.summary


# the canned GCS JSON API -------------------------------------------------------------------------

def _bucket_resource(name, ubla=True):
    return {"kind": "storage#bucket", "id": name, "name": name, "projectNumber": "123456789",
            "metageneration": "3", "location": "US", "storageClass": "STANDARD", "etag": "CAM=",
            "locationType": "multi-region", "timeCreated": "2017-02-20T18:00:00.000Z",
            "updated": "2024-05-01T10:00:00.000Z",
            "iamConfiguration": {"bucketPolicyOnly": {"enabled": ubla},
                                 "uniformBucketLevelAccess": {"enabled": ubla},
                                 "publicAccessPrevention": "inherited"}}


def _error(code, message, reason):
    return {"error": {"code": code, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}


def _object(bucket, name, cache_control, encoding=None):
    item = {"kind": "storage#object", "name": name, "bucket": bucket, "size": "1234",
            "updated": "2026-11-01T12:00:00.000Z"}
    if cache_control is not None:
        item["cacheControl"] = cache_control
    if encoding:
        item["contentEncoding"] = encoding
    return item


class CannedGCS:
    """Answers like storage.googleapis.com (JSON API under /storage/v1, anonymous XML reads at
    /<bucket>/<object>, OAuth token at /token) with documented response and error bodies."""

    def __init__(self, httpserver, bucket="studio-content"):
        self.base = httpserver.url_for("").rstrip("/")
        self.bucket = bucket
        self.bucket_answer = (200, _bucket_resource(bucket))
        self.permissions_answer = (200, {"kind": "storage#testIamPermissionsResponse", "permissions": []})
        self.iam_answer = (200, {"kind": "storage#policy", "resourceId": f"projects/_/buckets/{bucket}",
                                 "version": 1, "etag": "CAE=",
                                 "bindings": [{"role": "roles/storage.legacyBucketOwner",
                                               "members": ["projectOwner:studio-lab"]},
                                              {"role": "roles/storage.legacyObjectReader",
                                               "members": ["allUsers"]}]})
        self.list_error = None
        self.objects = []
        self.private = set()
        self.anonymous_listing = False
        self.honours_offsets = True   # False: an emulator that ignores startOffset/endOffset
        self.log = []
        httpserver.expect_request(re.compile(".*")).respond_with_handler(self.handle)

    def add(self, name, cache_control, encoding=None):
        self.objects.append(_object(self.bucket, name, cache_control, encoding))

    def _json(self, status, body):
        from werkzeug import Response

        return Response(json.dumps(body), status=status, content_type="application/json; charset=UTF-8")

    def _xml_denied(self, perm, what):
        from werkzeug import Response

        return Response("<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access "
                        f"denied.</Message><Details>Anonymous caller does not have {perm} access to the Google "
                        f"Cloud Storage {what}.</Details></Error>", status=403,
                        content_type="application/xml; charset=UTF-8")

    def handle(self, request):
        from werkzeug import Response

        path, query = unquote(request.path), parse_qs(urlsplit(request.url).query)
        authed = "Authorization" in request.headers
        self.log.append((request.method, path, {k: v[0] for k, v in query.items()}, authed))
        b = f"/storage/v1/b/{self.bucket}"
        if path == "/token" and request.method == "POST":
            return self._json(200, {"access_token": "canned-token", "expires_in": 3600, "token_type": "Bearer"})
        if path == b:
            return self._json(*self.bucket_answer)
        if path == f"{b}/iam/testPermissions":
            return self._json(*self.permissions_answer)
        if path == f"{b}/iam":
            return self._json(*self.iam_answer)
        if path == f"{b}/o":
            if not authed and not self.anonymous_listing:
                return self._json(401, _error(401, "Anonymous caller does not have storage.objects.list access "
                                                   "to the Google Cloud Storage bucket.", "required"))
            if self.list_error:
                return self._json(*self.list_error)
            prefix = query.get("prefix", [""])[0]
            items = sorted((o for o in self.objects if o["name"].startswith(prefix)), key=lambda o: o["name"])
            if self.honours_offsets:  # documented: startOffset inclusive, endOffset exclusive
                low, high = query.get("startOffset", [""])[0], query.get("endOffset", [""])[0]
                items = [o for o in items if o["name"] >= low and (not high or o["name"] < high)]
            start = int(query.get("pageToken", ["0"])[0])
            end = start + int(query.get("maxResults", ["1000"])[0])
            body = {"kind": "storage#objects", "items": items[start:end]}
            if end < len(items):
                body["nextPageToken"] = str(end)
            return self._json(200, body)
        if path.startswith("/storage/v1/"):
            return self._json(404, _error(404, "Not Found", "notFound"))
        if path.rstrip("/") == f"/{self.bucket}":
            if self.anonymous_listing:
                return Response("<?xml version='1.0' encoding='UTF-8'?><ListBucketResult><Name>studio-content"
                                "</Name><Contents><Key>databases/x.sqlite3</Key></Contents></ListBucketResult>",
                                content_type="application/xml")
            return self._xml_denied("storage.objects.list", "bucket")
        if path.startswith(f"/{self.bucket}/"):
            name = path[len(self.bucket) + 2:]
            if name in self.private:
                return self._xml_denied("storage.objects.get", "object")
            if any(o["name"] == name for o in self.objects):
                return Response(b"" if request.method == "HEAD" else b"x", status=200,
                                headers={"Cache-Control": "public, max-age=3600", "Content-Length": "1"})
            return Response("<Error><Code>NoSuchKey</Code></Error>", status=404, content_type="application/xml")
        return Response("not canned", status=500)

    def api_requests(self, suffix=""):
        return [e for e in self.log if e[1].startswith("/storage/v1/") and e[1].endswith(suffix)]


@pytest.fixture(scope="module")
def sa_key_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture
def canned(httpserver):
    return CannedGCS(httpserver)


@pytest.fixture
def canned_profile(canned, make_profile, tmp_path, sa_key_pem):
    """A profile whose API calls carry a service account's token (from the canned /token endpoint)."""
    key = {"type": "service_account", "project_id": "studio-lab", "private_key_id": "k1",
           "private_key": sa_key_pem, "client_email": "studiodoctor@studio-lab.iam.gserviceaccount.com",
           "client_id": "1", "token_uri": f"{canned.base}/token"}
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(key))

    def make(with_key=True, **gcs):
        section = {"bucket": "studio-content", "endpoint": canned.base, "public_url": canned.base,
                   "credentials": str(key_file) if with_key else "", **gcs}
        return make_profile({"gcs": section}, timeout=5)

    return make


def _seed_canned(canned, n_db=3, n_storage=4):
    for i in range(n_db):
        canned.add(f"databases/{i:032x}.sqlite3", "private, max-age=5, no-transform", "gzip")
    for i in range(n_storage):
        md5 = f"{i:02x}" + "ab" * 15
        canned.add(f"storage/{md5[0]}/{md5[1]}/{md5}.mp4", "public, max-age=31536000, immutable")


def test_forbidden_bucket_is_an_error_naming_the_permission_not_missing(canned, canned_profile):
    canned.bucket_answer = (403, _error(403, "studiodoctor@studio-lab.iam.gserviceaccount.com does not have "
                                             "storage.buckets.get access to the Google Cloud Storage bucket. "
                                             "Permission 'storage.buckets.get' denied on resource (or it may "
                                             "not exist).", "forbidden"))
    canned.permissions_answer = (200, {"kind": "storage#testIamPermissionsResponse",
                                       "permissions": ["storage.objects.get", "storage.objects.list"]})
    res = run(canned_profile())
    bucket = res[BUCKET]
    assert bucket.status is Status.ERROR
    assert bucket.reason == Reason.FORBIDDEN.value
    assert "lack storage.buckets.get, storage.buckets.getIamPolicy (HTTP 403)" in bucket.summary
    assert "missing" not in bucket.summary.replace("does not mean the bucket is missing", "")
    assert bucket.evidence["granted_permissions"] == ["storage.objects.get", "storage.objects.list"]
    assert res[DATABASES_CACHE_CONTROL].status is Status.BLOCKED
    # the API calls carried our service account's token, but gcs.listing_not_public's anonymous one-item
    # listing (it runs although gcs.bucket erred: it needs no credentials)
    anonymous = [e for e in canned.api_requests("/o") if e[2].get("fields") == "items(name)" and e[2].get("maxResults") == "1"]
    assert anonymous and not any(authed for *_, authed in anonymous)
    assert all(authed for e in canned.api_requests() if e not in anonymous for *_, authed in [e])


def test_forbidden_bucket_grant_command_names_our_service_account(canned, canned_profile):
    canned.bucket_answer = (403, _error(403, "Permission 'storage.buckets.get' denied", "forbidden"))
    canned.permissions_answer = (200, {"kind": "storage#testIamPermissionsResponse", "permissions": []})
    bucket = run(canned_profile())[BUCKET]
    assert bucket.status is Status.ERROR
    grant = [c.text for c in bucket.commands if "add-iam-policy-binding" in c.text]
    assert grant and "--member=serviceAccount:studiodoctor@studio-lab.iam.gserviceaccount.com " in grant[0]
    assert "SA_EMAIL" not in grant[0]


def test_forbidden_without_test_iam_names_permission_from_the_message(canned, canned_profile):
    canned.bucket_answer = (403, _error(403, "anonymous caller does not have storage.buckets.get access to the "
                                             "Google Cloud Storage bucket.", "forbidden"))
    canned.permissions_answer = (403, _error(403, "Forbidden", "forbidden"))
    res = run(canned_profile(with_key=False))
    assert res[BUCKET].status is Status.ERROR
    assert "our credentials lack storage.buckets.get (HTTP 403)" in res[BUCKET].summary
    assert res[BUCKET].evidence["missing_permissions"] == ["storage.buckets.get"]
    assert "not answered" in res[BUCKET].evidence["test_iam_permissions"]


def test_healthy_production_like_bucket_with_iam(canned, canned_profile):
    _seed_canned(canned)
    res = run(canned_profile())
    assert {i: res[i].status for i in GCS_IDS} == {i: Status.OK for i in GCS_IDS}, \
        {i: res[i].summary for i in GCS_IDS}
    assert res[BUCKET].evidence["uniform_bucket_level_access"] is True
    assert res[BUCKET].evidence["location"] == "US"
    assert res[PUBLIC_READ].evidence["all_users_roles"] == ["roles/storage.legacyObjectReader"]
    assert res[LISTING_NOT_PUBLIC].evidence["answers"] == {"xml": "HTTP 403, refused", "json": "HTTP 401, refused"}
    listing_calls = canned.api_requests("/o")
    authed_lists = [q for m, p, q, authed in listing_calls if authed]
    assert all("fields" in q for q in authed_lists)
    assert "cacheControl" in next(q["fields"] for q in authed_lists if q.get("prefix") == "databases/")


def test_private_object_with_canned_xml_denial(canned, canned_profile):
    _seed_canned(canned)
    private = canned.objects[-1]["name"]
    canned.private.add(private)
    res = run(canned_profile())
    assert res[PUBLIC_READ].status is Status.FAIL
    assert f"{private} (HTTP 403)" in res[PUBLIC_READ].summary


def test_public_only_through_acls_warns(canned, canned_profile):
    _seed_canned(canned)
    canned.iam_answer = (200, {"kind": "storage#policy", "version": 1, "etag": "CAE=",
                               "bindings": [{"role": "roles/storage.legacyBucketOwner",
                                             "members": ["projectOwner:studio-lab"]}]})
    res = run(canned_profile())
    assert res[PUBLIC_READ].status is Status.WARN
    assert "allUsers has no object-read role" in res[PUBLIC_READ].summary


def test_iam_policy_unreadable_is_reported_not_guessed(canned, canned_profile):
    _seed_canned(canned)
    canned.iam_answer = (403, _error(403, "studiodoctor@studio-lab.iam.gserviceaccount.com does not have "
                                          "storage.buckets.getIamPolicy access to the Google Cloud Storage "
                                          "bucket.", "forbidden"))
    res = run(canned_profile())
    assert res[PUBLIC_READ].status is Status.OK  # anonymous reads work; the policy is evidence only
    assert res[PUBLIC_READ].evidence["iam_policy"] == \
        "not readable with our credentials (storage.buckets.getIamPolicy)"


def test_listing_forbidden_for_our_credentials_is_an_error(canned, canned_profile):
    _seed_canned(canned)
    canned.list_error = (403, _error(403, "studiodoctor@studio-lab.iam.gserviceaccount.com does not have "
                                          "storage.objects.list access to the Google Cloud Storage bucket.",
                                     "forbidden"))
    res = run(canned_profile())
    db = res[DATABASES_CACHE_CONTROL]
    assert db.status is Status.ERROR
    assert "lack storage.objects.list on gs://studio-content (HTTP 403)" in db.summary


def test_anonymous_listing_allowed_on_canned_gcs_fails(canned, canned_profile):
    _seed_canned(canned)
    canned.anonymous_listing = True
    res = run(canned_profile())
    assert res[LISTING_NOT_PUBLIC].status is Status.FAIL
    assert "(XML, JSON API)" in res[LISTING_NOT_PUBLIC].summary


def _channel_ids(n: int, seed: int = 7) -> list[str]:
    """Random channel ids, as Studio's are (uuid4 hex): spread evenly over the name space."""
    import random

    rng = random.Random(seed)
    return sorted("%032x" % rng.getrandbits(128) for _ in range(n))


def test_pagination_costs_one_request_per_thousand_objects(canned, canned_profile):
    for i, cid in enumerate(_channel_ids(2500)):
        canned.add(f"databases/{cid}.sqlite3", "private, max-age=5, no-transform", "gzip")
    canned.objects[1800]["cacheControl"] = "public, max-age=86400"
    canned.objects[2400].pop("cacheControl")
    res = run(canned_profile(), check_ids=[DATABASES_CACHE_CONTROL])
    db = res[DATABASES_CACHE_CONTROL]
    assert db.status is Status.FAIL, db.summary
    assert db.evidence["audited"] == 2500 and db.evidence["requests"] == 3, db.evidence
    assert db.summary.startswith("2 of 2500 objects")
    assert f"{canned.objects[1800]['name']} (public, max-age=86400)" in db.summary
    assert f"{canned.objects[2400]['name']} (none)" in db.summary
    listings = [q for _, _, q, _ in canned.api_requests("/o") if q.get("prefix") == "databases/"]
    assert len(listings) == 3  # never one request per object; two pages left: page after page
    assert [q.get("pageToken") for q in listings] == [None, "1000", "2000"]
    assert {q["maxResults"] for q in listings} == {"1000"}
    assert not [e for e in canned.log if "/o/" in e[1]]


def test_a_long_listing_is_read_as_name_ranges_at_once_each_object_once(canned, canned_profile):
    """Many pages left after the first: the rest of databases/ is cut into name ranges (startOffset/
    endOffset) listed a few at once; every object is audited exactly once and the chain of requests one
    after another is shorter than the pages."""
    for cid in _channel_ids(9000):
        canned.add(f"databases/{cid}.sqlite3", "private, max-age=5, no-transform", "gzip")
    canned.objects[8990]["cacheControl"] = "public, max-age=86400"   # in the last range
    canned.add("databases/not-a-channel-id.sqlite3", None, "gzip")    # not hex: still in a range
    db = run(canned_profile(), check_ids=[DATABASES_CACHE_CONTROL])[DATABASES_CACHE_CONTROL]
    ev = db.evidence
    assert db.status is Status.FAIL and db.summary.startswith("2 of 9001 objects"), db.summary
    assert ev["audited"] == 9001 and ev["complete"] is True, ev
    assert ev["ranges"] > 2 and ev["concurrency"] == 4, ev
    # pages overlapped: the longest chain one after another is shorter than the requests (a sequential
    # walk's is every one of them), and the cut costs at most a request per range
    assert ev["sequential_requests"] < ev["requests"] <= 10 + ev["ranges"], ev
    listings = [q for _, _, q, _ in canned.api_requests("/o") if q.get("prefix") == "databases/"]
    starts = {q.get("startOffset") for q in listings} - {None}
    assert len(starts) == ev["ranges"] and len(listings) == ev["requests"], listings


def test_an_api_that_ignores_name_ranges_is_said_never_counted_twice(canned, canned_profile):
    canned.honours_offsets = False
    for cid in _channel_ids(9000):
        canned.add(f"databases/{cid}.sqlite3", "private, max-age=5, no-transform", "gzip")
    db = run(canned_profile(), check_ids=[DATABASES_CACHE_CONTROL])[DATABASES_CACHE_CONTROL]
    ev = db.evidence
    assert ev["complete"] is False and "offsets_ignored" in ev and ev["audited"] < 9000, ev
    assert "(not all: the API ignored the name ranges asked)" in db.summary, db.summary


def test_the_emulator_honours_the_name_ranges(lab_profile, gcs_lab):
    """fake-gcs-server, pages of 2: the walk cuts the rest into ranges and still reads every database once."""
    _, _, names = gcs_lab
    db = run(lab_profile(page_size=2), check_ids=[DATABASES_CACHE_CONTROL])[DATABASES_CACHE_CONTROL]
    ev = db.evidence
    assert db.status is Status.OK, db.summary
    assert ev["audited"] == len(names["databases"]) and ev["complete"] is True and ev["ranges"] > 2, ev


def test_storage_objects_without_long_cache_warn(canned, canned_profile):
    _seed_canned(canned)
    canned.add("storage/f/f/ff00.pdf", "public, max-age=3600")
    res = run(canned_profile())
    st = res[STORAGE_CACHE_CONTROL]
    assert st.status is Status.WARN
    assert "storage/f/f/ff00.pdf (public, max-age=3600)" in st.summary and st.evidence["short_lived"] == 1


def test_storage_objects_without_their_own_cache_control_are_ok_as_studio_uploads_them(canned, canned_profile):
    """Studio's upload code sets no Cache-Control on storage/ objects (its nginx adds the immutable one)."""
    _seed_canned(canned)
    canned.add("storage/f/f/ff00.pdf", None)
    st = run(canned_profile())[STORAGE_CACHE_CONTROL]
    assert st.status is Status.OK and "1 of" in st.summary and "no Cache-Control of their own" in st.summary
    assert st.evidence["cache_control_values"]["none"] == 1


# rules ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,bad", [
    ("private, max-age=5, no-transform", False),
    ("private, max-age=0", False),
    ("no-store", False),
    ("private, no-cache", False),
    ("public, max-age=3600", True),
    ("private, max-age=60", True),
    ("private", True),
    ("max-age=5", True),
    (None, True),
])
def test_database_cache_rule(value, bad):
    assert bool(database_cache_problem(value, 5)) is bad


@pytest.mark.parametrize("value,bad", [
    ("public, max-age=31536000, immutable", False),
    ("max-age=31536000", False),
    ("public, max-age=3600", True),
    ("private, max-age=31536000", True),
    (None, True),
])
def test_storage_cache_rule(value, bad):
    assert bool(storage_cache_problem(value, 30 * 86400)) is bad


def test_listing_probe_answered_404_twice_is_an_error_not_refused(lab_profile):
    """A public_url that does not serve the bucket answers 404 to both listings: that is no refusal."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = run(lab_profile(public_url=f"http://127.0.0.1:{server.server_port}"), check_ids=[LISTING_NOT_PUBLIC])
    finally:
        server.shutdown()
        server.server_close()
    r = res[LISTING_NOT_PUBLIC]
    assert r.status is Status.ERROR, r.summary
    assert "cannot tell whether gs://studio-content can be listed" in r.summary
    assert "gcs.public_url" in r.hint and "gcs.bucket" in r.hint


def test_wrong_prefix_examines_nothing_and_warns_naming_the_key(lab_profile):
    """An audit over zero objects is no evidence: a warn naming the prefix key, never ok or a quiet skip."""
    res = run(lab_profile(databases_prefix="dbs/", storage_prefix="content/"))
    for cid, key in ((DATABASES_CACHE_CONTROL, "gcs.databases_prefix"), (STORAGE_CACHE_CONTROL, "gcs.storage_prefix"),
                     (PUBLIC_READ, "gcs.storage_prefix")):
        assert res[cid].status is Status.WARN, (cid, res[cid].summary)
        assert "nothing was examined" in res[cid].summary and key in res[cid].hint
