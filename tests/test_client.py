"""kubesweep.log() against a real HTTP server on 127.0.0.1, and its stdout fallback."""
from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import kubesweep
from kubesweep import client
from kubesweep.engine.rows import metric_value, parse_line


class PushServer:
    """Records every request; answers with the next scripted status (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[int | str] = []  # a status code, or "slow" (answer after 1 s)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    action = outer.script.pop(0) if outer.script else 200
                if action == "slow":
                    time.sleep(1.0)
                    action = 200
                reply = b'{"accepted": 1}' if action == 200 else f"reason for {action}".encode()
                self.send_response(action)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request, client_address) -> None:
                pass  # the client gave up on a slow answer: nothing to report

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def body(self, i: int) -> dict:
        def refuse(name: str) -> None:
            raise AssertionError(f"body is not strict JSON: {name}")

        return json.loads(self.requests[i]["body"], parse_constant=refuse)


@pytest.fixture
def server(monkeypatch, tmp_path):
    srv = PushServer()
    srv.thread.start()
    token = tmp_path / "token"
    token.write_text("token-one\n")
    monkeypatch.setenv("KUBESWEEP_PUSH_URL", srv.url + "/")  # a trailing slash is fine
    monkeypatch.setenv("KUBESWEEP_TOKEN_FILE", str(token))
    monkeypatch.setattr(client, "BACKOFF_SECONDS", 0.01)
    srv.token_file = token
    yield srv
    srv.server.shutdown()
    srv.server.server_close()


def test_posts_rows_with_bearer_token(server):
    kubesweep.log({"epoch": 3, "val_loss": 0.41, "val_acc": 0.9, "note": "ok"})
    assert len(server.requests) == 1
    req = server.requests[0]
    assert req["path"] == "/v1/report"
    assert req["headers"]["Authorization"] == "Bearer token-one"
    assert req["headers"]["Content-Type"] == "application/json"
    body = server.body(0)
    assert body["rows"] == [{"epoch": 3, "val_loss": 0.41, "val_acc": 0.9, "note": "ok"}]
    kubesweep.log({"epoch": 4, "val_loss": 0.4})
    assert server.body(1)["seq"] == body["seq"] + 1, "each row carries the next sequence number"


def test_non_finite_values_are_sent_as_strings(server):
    kubesweep.log({"epoch": 1, "loss": float("nan"), "hi": float("inf"), "lo": float("-inf")})
    assert server.body(0)["rows"] == [{"epoch": 1, "loss": "NaN", "hi": "Infinity", "lo": "-Infinity"}]


def test_token_is_read_again_for_every_row(server):
    kubesweep.log({"epoch": 1, "val_loss": 1.0})
    server.token_file.write_text("token-two")  # the kubelet rotated it
    kubesweep.log({"epoch": 2, "val_loss": 0.5})
    assert [r["headers"]["Authorization"] for r in server.requests] == ["Bearer token-one", "Bearer token-two"]


def test_retries_5xx_then_succeeds(server):
    server.script = [503, 503]
    kubesweep.log({"epoch": 1, "val_loss": 1.0})
    assert len(server.requests) == 3
    assert server.body(0) == server.body(2)


def test_gives_up_after_the_attempts(server):
    server.script = [503] * 10
    with pytest.raises(client.PushError, match=r"after 4 attempts.*503"):
        kubesweep.log({"epoch": 1, "val_loss": 1.0})
    assert len(server.requests) == client.ATTEMPTS == 4


def test_retries_after_a_timeout(server, monkeypatch):
    monkeypatch.setattr(client, "TIMEOUT_SECONDS", 0.2)
    server.script = ["slow"]
    kubesweep.log({"epoch": 1, "val_loss": 1.0})
    assert len(server.requests) == 2


@pytest.mark.parametrize("status, words", [(403, "takes no rows from this pod"), (401, "token was not accepted")])
def test_auth_refusal_is_not_retried_and_says_why(server, status, words):
    server.script = [status]
    with pytest.raises(client.PushAuthError) as info:
        kubesweep.log({"epoch": 1, "val_loss": 1.0})
    assert len(server.requests) == 1
    message = str(info.value)
    assert str(status) in message and words in message and f"reason for {status}" in message


def test_other_4xx_is_not_retried(server):
    server.script = [400]
    with pytest.raises(client.PushError, match="400") as info:
        kubesweep.log({"epoch": 1, "val_loss": 1.0})
    assert not isinstance(info.value, client.PushAuthError)
    assert len(server.requests) == 1


def test_connection_refused_is_retried_then_reported(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "token").write_text("t")
    monkeypatch.setenv("KUBESWEEP_PUSH_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KUBESWEEP_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setattr(client, "BACKOFF_SECONDS", 0.01)
    with pytest.raises(client.PushError, match=r"after 4 attempts.*(Connection|refused)"):
        kubesweep.log({"epoch": 1, "val_loss": 1.0})


def test_missing_token_file_is_named(server, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBESWEEP_TOKEN_FILE", str(tmp_path / "nope"))
    with pytest.raises(client.PushError, match="nope"):
        kubesweep.log({"epoch": 1, "val_loss": 1.0})
    monkeypatch.delenv("KUBESWEEP_TOKEN_FILE")
    with pytest.raises(client.PushError, match="KUBESWEEP_TOKEN_FILE is not"):
        kubesweep.log({"epoch": 1, "val_loss": 1.0})
    assert server.requests == []


def test_without_push_url_prints_a_json_line_the_collector_parses(monkeypatch, capsys):
    monkeypatch.delenv("KUBESWEEP_PUSH_URL", raising=False)
    row = {"epoch": 7, "val_loss": 0.125, "val_acc": 0.96, "tag": "a b", "bad": float("nan"), "up": float("inf")}
    kubesweep.log(row)
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1
    parsed = parse_line(out)
    assert {k: parsed[k] for k in ("epoch", "val_loss", "val_acc", "tag")} == {
        "epoch": 7, "val_loss": 0.125, "val_acc": 0.96, "tag": "a b"}
    assert metric_value(parsed, "val_loss") == 0.125
    assert metric_value(parsed, "bad") is None and math.isnan(float(parsed["bad"]))  # NaN stays non-finite
    assert float(parsed["up"]) == math.inf and metric_value(parsed, "up") is None


def test_not_a_mapping_or_not_json_is_a_clear_type_error(monkeypatch):
    monkeypatch.delenv("KUBESWEEP_PUSH_URL", raising=False)
    with pytest.raises(TypeError, match="dict"):
        kubesweep.log([("epoch", 1)])
    with pytest.raises(TypeError, match=r"row\['when'\].*object"):
        kubesweep.log({"epoch": 1, "when": object()})


def test_import_is_light():
    code = ("import sys, kubesweep; heavy = [m for m in ('kopf', 'kubernetes', 'aiohttp', 'yaml', 'jsonschema') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
