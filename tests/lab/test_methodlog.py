"""The one reader of every lab counterpart's method log: each format the lab's servers write."""

from studiodoctor.lab.methodlog import MethodLog, parse_line, read_methods
from studiodoctor.lab.standins.saas_stub import graphql_operation


def test_every_format_the_lab_writes(tmp_path):
    lines = [
        '127.0.0.1 - - [03/Dec/2026:08:00:00 +0000] "HEAD /static/app.js HTTP/1.1" 200 0 "-" "studiodoctor"',  # nginx
        '127.0.0.1 - - [03/Dec/2026:08:00:00 +0000] "GET /healthz?full=1 HTTP/1.0" 200 2 "-" "x"',  # gunicorn
        'time=2026-12-03T08:00:00Z level=INFO msg="127.0.0.1 - - [03/Dec/2026:08:00:00 +0000] '
        '\\"POST /upload/storage/v1/b/x/o HTTP/1.1\\" 200 27\\n"',  # fake-gcs-server
        '{"RequestMethod": "OPTIONS", "RequestPath": "/api/overview", "DownstreamStatus": 200}',  # Traefik
        '{"method": "DELETE", "path": "/client/v4/zones/1"}',  # MethodLog
        'shim 127.0.0.1 "PATCH /x HTTP/1.1" 200 -',  # Python's http.server
        "[2026-12-03 08:00:00 +0000] [12] [INFO] Booting worker with pid: 12",  # not a request
    ]
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    assert read_methods(log) == [("HEAD", "/static/app.js"), ("GET", "/healthz"),
                                 ("POST", "/upload/storage/v1/b/x/o"), ("OPTIONS", "/api/overview"),
                                 ("DELETE", "/client/v4/zones/1"), ("PATCH", "/x")]
    size = log.stat().st_size
    with open(log, "a") as fh:
        fh.write('127.0.0.1 - - [x] "PUT /late HTTP/1.1" 201 0\n')
    assert read_methods(log, size) == [("PUT", "/late")]
    assert read_methods(tmp_path / "none.log") == []
    assert parse_line("garbage {") is None


def test_method_log_beside_a_state_file(tmp_path):
    log = MethodLog.beside(tmp_path / "state.json", "sentry_api")
    log.record("GET", "/api/0/projects/?cursor=1")
    log.record("POST", "/graphql#query")
    assert log.path.name == "sentry_api.requests.jsonl"
    assert log.read() == [("GET", "/api/0/projects/"), ("POST", "/graphql#query")]


def test_graphql_operation_tells_a_query_from_a_mutation():
    assert graphql_operation({"query": "{ actor { user { name } } }"}) == "#query"
    assert graphql_operation({"query": "query($id: Int!) { actor { account(id: $id) { id } } }"}) == "#query"
    assert graphql_operation({"query": "  mutation { alertsPolicyDelete(id: 1) { id } }"}) == "#mutation"
    assert graphql_operation({"query": "subscription{x}"}) == "#subscription"
    assert graphql_operation({"name": "x"}) == "" and graphql_operation(None) == ""
