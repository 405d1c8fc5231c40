"""The log: ENGINE_LOG_FORMAT=json gives one JSON object per line with the ids as fields; every
HTTP request has an id (the caller's X-Request-ID when sane) echoed in the answer and carried by
its log lines; a send's outcome is one line; `engine serve` says where it listens."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.http.request_id import given_or_new
from engine.logs import JsonFormatter, ids, setup
from engine.settings import Settings

from .conftest import COURIER_TOKEN
from .support import EngineProcess, engine_env, eventually, free_port, iso, person

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a log as a JSON object with time, level, logger and message (or an assertion)."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        record = json.loads(line)  # raises on a line that is not JSON
        assert isinstance(record, dict), (number, line)
        assert {"time", "level", "logger", "message"} <= set(record), (number, line)
        assert TIME.fullmatch(record["time"]), (number, line)
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), (number, line)
        out.append(record)
    return out


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """The engine's logging set up in JSON at DEBUG, writing to a buffer (restored afterwards)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    setup(Settings(log_format="json", log_level="DEBUG"), stream)
    try:
        yield logging.getLogger("engine.test"), stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_a_json_line_holds_the_time_level_logger_message_and_ids(captured: Any) -> None:
    log, stream = captured
    log.info("sent %s #%d", "client_welcome", 12, extra=ids(notification="client_welcome", notification_id=12,
                                                          recipient_id="usr_1", event_id="evt_1"))
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed\nover two lines")
    first, second = json_lines(stream.getvalue())
    assert (
        first["message"] == "sent client_welcome #12" and first["logger"] == "engine.test" and first["level"] == "INFO"
    )
    assert (first["notification"], first["notification_id"], first["recipient_id"], first["event_id"]) == \
        ("client_welcome", 12, "usr_1", "evt_1")
    assert "request_id" not in first  # logged outside any request
    assert abs(datetime.fromisoformat(first["time"].replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds() < 60
    assert second["level"] == "ERROR" and second["message"] == "it failed\nover two lines"
    assert "ValueError: boom" in second["exception"]
    assert len(stream.getvalue().splitlines()) == 2  # a multi-line message and a traceback stay on one line


def test_only_known_fields_may_be_passed() -> None:
    with pytest.raises(TypeError, match="email"):
        ids(email="ann@example.com")


def test_the_json_formatter_keeps_text_it_cannot_encode_readable() -> None:
    record = logging.LogRecord("engine", logging.INFO, __file__, 1, "id %s", ("usr_\udcff",), None)
    assert json.loads(JsonFormatter().format(record))["message"].startswith("id usr_")


@pytest.mark.parametrize(
    "given, kept",
    [
        ("abc-123", True),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", True),
        ("Root=1-67891233-abcdef012345678912345678", True),
        ("has space", False),
        ("a\r\nX-Evil: 1", False),
        ("x" * 129, False),
        ("", False),
        ("-leading-dash", False),
    ],
)
def test_a_sane_request_id_is_kept_and_any_other_replaced(given: str, kept: bool) -> None:
    found = given_or_new([(b"x-request-id", given.encode("latin-1"))])
    assert (found == given) is kept
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{0,127}", found)
    assert given_or_new([]) != given_or_new([])


def test_a_bad_log_format_or_level_is_an_error_naming_the_variable(project: Path, tmp_path: Path) -> None:
    for variable, value in (("ENGINE_LOG_FORMAT", "xml"), ("ENGINE_LOG_LEVEL", "chatty")):
        env = engine_env(ENGINE_DATABASE_URL=f"sqlite:///{tmp_path / 'e.db'}", **{variable: value})
        done = subprocess.run([sys.executable, "-m", "engine.cli.main", "serve", "--port", str(free_port())],
                              cwd=project, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert f"{variable}='{value}' is not one of" in done.stderr, done.stderr


def test_engine_serve_logs_json_lines_with_request_and_send_ids(project: Path, tmp_path: Path, standin: Any) -> None:
    """A real `engine serve` (ENGINE_LOG_FORMAT=json, DEBUG) takes an event with and without an
    X-Request-ID and delivers its sends to the Courier stand-in; every line it writes is JSON."""
    port = free_port()
    env = engine_env(ENGINE_DATABASE_URL=f"sqlite:///{tmp_path / 'engine.db'}",
                     ENGINE_QUEUE_URL=f"sqlite:///{tmp_path / 'queue.db'}", COURIER_AUTH_TOKEN=COURIER_TOKEN,
                     COURIER_BASE_URL=standin.url, ENGINE_SWEEP_INTERVAL="0.1", ENGINE_LOG_FORMAT="json",
                     ENGINE_LOG_LEVEL="DEBUG")
    proc = EngineProcess(["serve", "--port", str(port)], project, env, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _answers(url + "/healthz", proc), within=30, what="engine serve answering")
        event = {"id": "evt_log_1", "type": "user.registered", "occurred_at": iso(datetime.now(UTC)),
                 "data": {"user": person("usr_log_1", role="client"), "verification_url": "https://estuary.app/v?t=1"}}
        given = httpx.post(url + "/events", json=event, headers={"X-Request-ID": "req-given-42"}, timeout=10)
        assert given.status_code == 202 and given.headers["x-request-id"] == "req-given-42"
        insane = httpx.post(url + "/events", json=event, headers={"X-Request-ID": "two words"}, timeout=10)
        generated = insane.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated), generated
        assert httpx.get(url + "/healthz", timeout=10).headers["x-request-id"] not in (generated, "req-given-42")
        eventually(lambda: len(standin.requests) == 2, within=30, what="two sends at the stand-in")
        eventually(lambda: len(_outcomes(proc.output())) == 2, within=10, what="two outcome lines")
    finally:
        proc.stop()
    records = json_lines(proc.output())
    requests = {r["request_id"] for r in records if r.get("request_id")}
    assert {"req-given-42", generated} <= requests
    answered = [r for r in records if r.get("request_id") == "req-given-42"]
    assert any(r["message"].startswith("POST /events answered 202") for r in answered), answered
    assert any(r["message"] == f"listening on http://127.0.0.1:{port}" for r in records)
    outcomes = _outcomes(proc.output())
    assert {r["notification"] for r in outcomes} == {"client_welcome", "client_email_verification"}
    for r in outcomes:
        assert r["level"] == "INFO" and r["outcome"] == "sent" and r["recipient_id"] == "usr_log_1"
        assert isinstance(r["notification_id"], int) and r["attempt"] == 1 and r["courier_request_id"]
        assert r["message"].startswith(f"sent {r['notification']} #{r['notification_id']} ")


def _outcomes(log: str) -> list[dict[str, Any]]:
    return [r for r in (json.loads(line) for line in log.splitlines() if line.startswith("{")) if "outcome" in r]


def _answers(url: str, proc: EngineProcess) -> bool:
    assert proc.alive(), proc.output()[-3000:]
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_text_lines_logged_while_answering_a_request_end_with_its_id(captured: Any) -> None:
    from engine.logs import TextFormatter, request_id

    record = logging.LogRecord("engine.http", logging.WARNING, __file__, 1, "the store is down", None, None)
    token = request_id.set("req-7")
    try:
        logging.getLogger().handlers[0].filter(record)
    finally:
        request_id.reset(token)
    assert TextFormatter().format(record).endswith(" WARNING engine.http: the store is down [request req-7]")
