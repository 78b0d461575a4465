"""A Postmark stand-in: the server API (header ``X-Postmark-Server-Token``) and the status API, with the
documented response shapes of the endpoints the `email` layer reads, from a state file (times kept as
"minutes ago").

Server API (GET only):
- ``/server`` -- https://postmarkapp.com/developer/api/server-api#get-server
- ``/message-streams/{stream}`` -- https://postmarkapp.com/developer/api/message-streams-api#get-message-stream
- ``/stats/outbound`` (``fromdate``, ``todate``, ``messagestream``) --
  https://postmarkapp.com/developer/api/stats-api#outbound-overview
- ``/messages/outbound`` (``count``, ``offset``, ``messagestream``) --
  https://postmarkapp.com/developer/api/messages-api#outbound-message-search
- errors: 401 ``{"ErrorCode": 10, "Message": ...}`` for a bad token, 422 with ``ErrorCode`` for bad input --
  https://postmarkapp.com/developer/api/overview#error-codes

Status API (no token): ``/api/1.0/services`` -> ``[{"name", "url", "status"}]`` and ``/api/1.0/status`` --
documented with the client at https://postmarker.readthedocs.io/en/stable/status.html (Studio's own prober read
``https://status.postmarkapp.com/api/1.0/services`` and required ``/services/smtp`` UP or MAINTENANCE).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .saas_stub import StubAPI, dispatch, route, route_methods

STATUS_PREFIX = "/api/1.0"
SERVICES = {"api": "API Response Time", "smtp": "SMTP Response Time", "web": "Web Response Time",
            "inbound": "Inbound SMTP Response Time"}


def default_state(token: str = "lab-postmark-server-token") -> dict:
    return {"token": token,
            "server": {"ID": 1252, "Name": "Studio", "DeliveryType": "Live", "SmtpApiActivated": True,
                       "Color": "blue", "TrackOpens": False, "TrackLinks": "None"},
            "streams": [{"ID": "outbound", "Name": "Default Transactional Stream", "MessageStreamType": "Transactional",
                         "archived_min": None},
                        {"ID": "broadcast", "Name": "Broadcasts", "MessageStreamType": "Broadcasts", "archived_min": None}],
            "day": {"Sent": 1450, "Bounced": 21, "SpamComplaints": 0, "SMTPApiErrors": 0},
            "messages_every_min": 4, "last_message_min": 3,
            "status": {k: "UP" for k in SERVICES}}


def _iso(minutes_ago: float) -> str:
    return (datetime.now(timezone(timedelta(hours=-5))) - timedelta(minutes=minutes_ago)).isoformat(timespec="seconds")


def _pm_error(status: int, code: int, message: str) -> tuple[int, dict]:
    return status, {"ErrorCode": code, "Message": message}


def _service_list(state: dict) -> list[dict]:
    return [{"name": name, "url": f"/services/{key}", "status": state.get("status", {}).get(key, "UP")}
            for key, name in SERVICES.items()]


# --- the status API's routes (below STATUS_PREFIX, no token), read by handle ----------------------------
# https://postmarker.readthedocs.io/en/stable/status.html
def _services(req):
    return 200, _service_list(req.state)


def _status(req):
    worst = next((s["status"] for s in _service_list(req.state) if s["status"] != "UP"), "UP")
    return 200, {"status": worst, "lastCheckDate": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


STATUS_ROUTES = (route("GET HEAD", r"/services/*", _services), route("GET HEAD", r"/status/*", _status))


# --- the server API's routes (path pattern -> answer), read by handle ---------------------------------
def _server(req):
    state = req.state
    srv = dict(state["server"])
    srv.update(ApiTokens=[state["token"]], ServerLink=f"https://account.postmarkapp.com/servers/{srv['ID']}/streams",
               InboundAddress="0000@inbound.postmarkapp.com", RawEmailEnabled=False, InboundHookUrl="",
               BounceHookUrl="", OpenHookUrl="", DeliveryHookUrl="", PostFirstOpenOnly=False, InboundDomain="",
               InboundHash="0000", InboundSpamThreshold=0, IncludeBounceContentInHook=False,
               ClickHookUrl="", EnableSmtpApiErrorHooks=False)
    return 200, srv


def _message_stream(req, stream_id: str):
    state = req.state
    stream = next((s for s in state.get("streams", []) if s["ID"] == stream_id), None)
    if stream is None:
        return _pm_error(422, 1226, "The message stream for the provided 'ID' was not found.")
    archived = stream.get("archived_min")
    return 200, {"ID": stream["ID"], "ServerID": state["server"]["ID"], "Name": stream["Name"],
                 "Description": None, "MessageStreamType": stream["MessageStreamType"],
                 "CreatedAt": _iso(60 * 24 * 800), "UpdatedAt": _iso(archived) if archived is not None else None,
                 "ArchivedAt": _iso(archived) if archived is not None else None,
                 "ExpectedPurgeDate": _iso(-60 * 24 * 45) if archived is not None else None,
                 "SubscriptionManagementConfiguration": {"UnsubscribeHandlingType": "None"}}


def _stats_outbound(req):
    day = req.state.get("day", {})
    sent = int(day.get("Sent", 0))
    rate = lambda n: round(100.0 * n / sent, 3) if sent else 0.0  # noqa: E731
    return 200, {"Sent": sent, "Bounced": day.get("Bounced", 0), "SMTPApiErrors": day.get("SMTPApiErrors", 0),
                 "BounceRate": rate(day.get("Bounced", 0)), "SpamComplaints": day.get("SpamComplaints", 0),
                 "SpamComplaintsRate": rate(day.get("SpamComplaints", 0)), "Opens": 0, "UniqueOpens": 0,
                 "Tracked": 0, "WithLinkTracking": 0, "WithOpenTracking": 0, "TotalTrackedLinksSent": 0,
                 "UniqueLinksClicked": 0, "TotalClicks": 0, "WithClientRecorded": 0,
                 "WithPlatformRecorded": 0, "WithReadTimeRecorded": 0}


def _messages_outbound(req):
    state, q = req.state, req.params
    if "count" not in q or "offset" not in q:
        return _pm_error(422, 600, "Count and Offset are required parameters.")
    count, offset = min(500, int(q["count"])), int(q["offset"])
    last, every = state.get("last_message_min"), float(state.get("messages_every_min") or 5)
    total = 0 if last is None else int(60 * 24 * 45 / every)
    msgs = [{"Tag": "registration", "MessageID": f"0a1b2c3d-0000-4000-8000-{i:012d}", "MessageStream": "outbound",
             "To": [{"Email": f"user{i}@example.org", "Name": None}], "Cc": [], "Bcc": [],
             "Recipients": [f"user{i}@example.org"], "ReceivedAt": _iso(last + i * every),
             "From": "\"Kolibri Studio\" <noreply@learningequality.org>", "Subject": "Activate your account",
             "Attachments": [], "Status": "Sent", "TrackOpens": False, "TrackLinks": "None", "Metadata": {},
             "Sandboxed": False}
            for i in range(offset, min(total, offset + count))] if last is not None else []
    return 200, {"TotalCount": total, "Messages": msgs}


def _send_email(req):
    """What Studio's django-postmark backend posts (the studio lab variant: a publish mails its editors)."""
    body = req.body if isinstance(req.body, dict) else {}
    if not body.get("To"):
        return _pm_error(422, 300, "Invalid email request: Zero recipients specified")
    if any(s.get("archived_min") is not None for s in req.state.get("streams", [])):
        return _pm_error(422, 1235, "The message stream for the provided 'ID' was not found.")
    return 200, {"To": body["To"], "SubmittedAt": _iso(0), "MessageID": "0a1b2c3d-0000-4000-8000-000000000000",
                 "ErrorCode": 0, "Message": "OK"}


ROUTES = (
    # https://postmarkapp.com/developer/api/email-api#send-a-single-email
    route("POST", r"/email", _send_email),
    # https://postmarkapp.com/developer/api/server-api#get-server
    route("GET HEAD", r"/server", _server),
    # https://postmarkapp.com/developer/api/message-streams-api#get-message-stream
    route("GET HEAD", r"/message-streams/([^/]+)", _message_stream),
    # https://postmarkapp.com/developer/api/stats-api#outbound-overview
    route("GET HEAD", r"/stats/outbound", _stats_outbound),
    # https://postmarkapp.com/developer/api/messages-api#outbound-message-search
    route("GET HEAD", r"/messages/outbound", _messages_outbound),
)
_METHODS = route_methods(ROUTES + STATUS_ROUTES)
_NOT_ALLOWED = _pm_error(405, 0, "The lab stand-in answers GET only")


def handle(state: dict, method: str, path: str, query: dict, headers: dict, body=None):
    """One request -> (status, JSON body): the method, then the status API (no token), then the server token
    (https://postmarkapp.com/developer/api/overview#authentication), then the route."""
    if method not in _METHODS:
        return _NOT_ALLOWED
    if path.startswith(STATUS_PREFIX):
        return dispatch(STATUS_ROUTES, state, method, path[len(STATUS_PREFIX):], query, headers, body,
                        not_found=(404, {"error": "not found"}), not_allowed=_NOT_ALLOWED)
    if headers.get("x-postmark-server-token") != state.get("token"):
        return _pm_error(401, 10, "The Server Token you provided in the X-Postmark-Server-Token request header was "
                                  "invalid. Please verify that you are using a valid token.")
    return dispatch(ROUTES, state, method, path, query, headers, body,
                    not_found=_pm_error(404, 0, "Not found"), not_allowed=_NOT_ALLOWED)


class PostmarkAPI(StubAPI):
    """The lab's Postmark. Faults: ``pause_stream()`` (the outbound stream archived: sends rejected, none since),
    ``bounce_rate(18)``; ``set(status={...})`` for the status API."""

    kind = "postmark-api"
    module = "postmark_api"

    def __init__(self, root, port: int = 0, token: str = "lab-postmark-server-token", **options):
        super().__init__(root, port, token=token, **options)
        self.token = token

    def default_state(self) -> dict:
        return default_state(self.token)

    def pause_stream(self, on: bool = True) -> None:
        def edit(s):
            s["streams"][0]["archived_min"] = 95 if on else None
            s["last_message_min"] = 96 if on else 3
        self.edit(edit)

    def bounce_rate(self, on: bool = True) -> None:
        self.edit(lambda s: s["day"].update(Bounced=290 if on else 21))

    def profile(self) -> dict:
        return {"email": {"postmark_api_url": self.url, "server_token": self.token,
                          "status_url": f"{self.url}{STATUS_PREFIX}"}}

