"""How the doctor reaches Google Cloud Storage: the ``gcs.*`` settings (bucket, endpoint, credentials)
whichever layer asks (nginx finds a content object to probe through it), and one read-only-scoped
storage client per run, built without retries. google-cloud-storage is imported inside the functions."""

from __future__ import annotations

import os

from studiodoctor.model import READ_ONLY, Command, Reason, Stop, error

GOOGLE_API = "https://storage.googleapis.com"
READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"


def setting(ctx, key: str, default=""):
    """A ``gcs.*`` setting, whichever layer's check asks (nginx discovers a sample object through us)."""
    value = ctx.section("gcs").get(key)
    return default if value in (None, "") else value


def bucket_name(ctx) -> str:
    return setting(ctx, "bucket") or "studio-content"


def endpoint(ctx) -> str:
    return (setting(ctx, "endpoint") or "").rstrip("/")


def api_address(ctx) -> str:
    return endpoint(ctx) or GOOGLE_API


def make_client(ctx):
    from google.cloud import storage

    api_endpoint = endpoint(ctx)
    key_file = os.path.expanduser(setting(ctx, "credentials") or "")
    project = setting(ctx, "project")
    try:
        if key_file:
            from google.oauth2 import service_account

            credentials = service_account.Credentials.from_service_account_file(key_file, scopes=[READ_ONLY_SCOPE])
            project = project or getattr(credentials, "project_id", "") or "studiodoctor"
        elif api_endpoint:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
            project = project or "studiodoctor"
        else:
            import google.auth

            credentials, adc_project = google.auth.default(scopes=[READ_ONLY_SCOPE])
            project = project or adc_project or "studiodoctor"
    except FileNotFoundError:
        raise Stop(error(f"gcs.credentials: key file {key_file} does not exist", reason=Reason.AUTH,
                              hint="point gcs.credentials at a service-account JSON key, or leave it empty "
                                   "to use Application Default Credentials")) from None
    except Exception as exc:  # DefaultCredentialsError, malformed key file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise Stop(error(f"no usable GCS credentials: {first}", reason=Reason.AUTH,
                              hint="set gcs.credentials to a service-account JSON key, or run "
                                   "`gcloud auth application-default login`",
                              commands=[Command("gcloud auth application-default login", READ_ONLY,
                                                "creates Application Default Credentials")])) from None
    options = {"api_endpoint": api_endpoint} if api_endpoint else None
    return storage.Client(project=project, credentials=credentials, client_options=options)


def client(ctx):
    return ctx.shared.get("gcs.client", lambda: make_client(ctx))


def is_network_error(exc: BaseException) -> bool:
    import requests
    from google.auth import exceptions as auth_exc

    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                        TimeoutError)):
        return True
    return isinstance(exc, auth_exc.TransportError)


def first_object(ctx, prefix: str) -> str | None:
    """The name of one object under ``prefix`` (one listing request of one item), None when there is
    none. Raises what the SDK raises; callers outside this layer use it to find a real object to probe."""
    iterator = client(ctx).list_blobs(bucket_name(ctx), prefix=prefix, fields="items(name),nextPageToken",
                                       max_results=1, page_size=1, timeout=ctx.timeout(30.0), retry=None)
    return next((blob.name for blob in iterator), None)
