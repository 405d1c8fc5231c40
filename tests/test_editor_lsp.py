"""The editor support, judged by a real editor's language server: yaml-language-server (the
engine of VS Code's YAML extension) driven over LSP on stdio, reading the shipped schema.json,
templates_map.schema.json and a project schema written by `engine schema`.

Documents are opened in memory at paths inside the repository (or beside a project schema), so
each one's `# yaml-language-server: $schema=...` line resolves as it does in a checkout.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from tests.support.node_tools import node_package

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "schema.json").read_text(encoding="utf-8"))
NOTIFICATION_KEYS = SCHEMA["$defs"]["notification"]["properties"]
SETTINGS = {"yaml": {"validate": True, "completion": True, "hover": True, "format": {"enable": False},
                     "schemaStore": {"enable": False}, "maxItemsComputed": 5000}}


class LanguageServer:
    """A JSON-RPC client of a language server on stdio; answers the server's own requests
    (configuration, registrations) as an editor would."""

    def __init__(self, command: list[str], root: Path):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, cwd=root)
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.diagnostics: dict[str, list[dict[str, Any]]] = {}
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "workspaceFolders": [{"uri": root.as_uri(), "name": "w"}],
                "capabilities": {
                    "workspace": {"configuration": True, "didChangeConfiguration": {"dynamicRegistration": True}},
                    "textDocument": {
                        "completion": {
                            "completionItem": {"snippetSupport": True, "documentationFormat": ["markdown", "plaintext"]}
                        },
                        "hover": {"contentFormat": ["markdown", "plaintext"]},
                        "publishDiagnostics": {},
                    },
                },
            },
        )
        self.notify("initialized", {})
        self.notify("workspace/didChangeConfiguration", {"settings": SETTINGS})

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            headers = {}
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            if not headers:
                return
            self.inbox.put(json.loads(stream.read(int(headers["content-length"]))))

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.process.stdin.flush()

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self._send({"method": method, "params": params})

    def _handle(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method == "textDocument/publishDiagnostics":
            self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
        elif method == "workspace/configuration" and "id" in message:
            items = message["params"]["items"]
            self._send({"id": message["id"], "result": [SETTINGS.get(i.get("section", "")) for i in items]})
        elif "id" in message and method:  # client/registerCapability, window/workDoneProgress/create...
            self._send({"id": message["id"], "result": None})

    def _pump(self, timeout: float) -> dict[str, Any] | None:
        try:
            message = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        self._handle(message)
        return message

    def request(self, method: str, params: dict[str, Any], timeout: float = 30) -> Any:
        self.next_id += 1
        wanted = self.next_id
        self._send({"id": wanted, "method": method, "params": params})
        while True:
            message = self._pump(timeout)
            assert message is not None, f"no answer to {method} within {timeout} s"
            if message.get("id") == wanted and "method" not in message:
                assert "error" not in message, message["error"]
                return message["result"]

    def open(self, path: Path, text: str) -> str:
        uri = path.as_uri()
        self.diagnostics.pop(uri, None)
        self.notify(
            "textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}}
        )
        return uri

    def diagnostics_of(self, uri: str, until: Any = bool, timeout: float = 20) -> list[dict[str, Any]]:
        """The diagnostics the server publishes for `uri`, once `until(them)` holds (or the last ones)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if uri in self.diagnostics and until(self.diagnostics[uri]):
                return self.diagnostics[uri]
            self._pump(0.2)
        return self.diagnostics.get(uri, [])

    def completion(self, uri: str, line: int, character: int) -> list[dict[str, Any]]:
        result = self.request(
            "textDocument/completion",
            {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}},
        )
        return result["items"] if isinstance(result, dict) else result

    def close(self) -> None:
        try:
            self.request("shutdown", {}, timeout=5)
            self.notify("exit", {})
            self.process.wait(timeout=5)
        except Exception:  # noqa: BLE001 - a server that does not stop is stopped
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[LanguageServer]:
    package = node_package("yaml-language-server")
    node = shutil.which("node")
    assert node is not None
    lsp = LanguageServer([node, str(package / "bin" / "yaml-language-server"), "--stdio"], ROOT)
    yield lsp
    lsp.close()


def _documentation(item: dict[str, Any]) -> str:
    doc = item.get("documentation") or ""
    return doc.get("value", "") if isinstance(doc, dict) else doc


RULE_HEAD = "# yaml-language-server: $schema=../schema.json\nnotifications:\n  client_review_nudge:\n"


def test_completion_inside_a_notification_offers_described_keys(server: LanguageServer) -> None:
    text = RULE_HEAD + "    description: Review nudge\n    \n"
    uri = server.open(ROOT / "rules" / "editor_completion.yaml", text)
    items = {item["label"]: item for item in server.completion(uri, 4, 4)}
    offered = set(items) & set(NOTIFICATION_KEYS)
    assert offered >= set(NOTIFICATION_KEYS) - {"description"}, sorted(items)
    for key in offered:
        assert NOTIFICATION_KEYS[key]["markdownDescription"] in _documentation(items[key]), key


def test_hover_explains_a_key(server: LanguageServer) -> None:
    text = RULE_HEAD + "    schedule:\n      after: 3d\n"
    uri = server.open(ROOT / "rules" / "editor_hover.yaml", text)
    for line, character, described in (
        (3, 6, NOTIFICATION_KEYS["schedule"]),
        (4, 8, SCHEMA["$defs"]["schedule"]["properties"]["after"]),
    ):
        hover = server.request(
            "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}
        )
        contents = hover["contents"]
        shown = contents["value"] if isinstance(contents, dict) else str(contents)
        assert described["markdownDescription"] in shown


def test_a_new_notification_snippet_is_offered(server: LanguageServer) -> None:
    uri = server.open(ROOT / "rules" / "editor_snippet.yaml", RULE_HEAD.rsplit("  client", 1)[0] + "  \n")
    items = server.completion(uri, 2, 2)
    snippets = [i for i in items if i["label"] == "New notification"]
    assert snippets, sorted(i["label"] for i in items)
    assert "trigger:" in snippets[0].get("insertText", "") and "example:" in snippets[0].get("insertText", "")


def test_a_wrong_key_and_a_bad_duration_are_flagged(server: LanguageServer) -> None:
    text = RULE_HEAD + (
        "    trigger: {event: session.completed}\n    audience: client\n    category: engagement\n"
        "    template: client_review_nudge\n    shedule:\n      after: 3d\n    throttle:\n      window: 3 days\n"
        '    schedule:\n      window: {from: "9:00", to: "20:00"}\n      cron: every monday\n'
    )
    uri = server.open(ROOT / "rules" / "editor_diagnostics.yaml", text)
    found = server.diagnostics_of(uri, until=lambda d: len(d) >= 4)
    by_line = {(d["range"]["start"]["line"], d["message"]) for d in found}
    defs = SCHEMA["$defs"]
    assert (7, "Property shedule is not allowed.") in by_line, found
    assert (10, defs["duration"]["patternErrorMessage"]) in by_line, found
    assert (12, defs["local_time"]["patternErrorMessage"]) in by_line, found
    assert (13, defs["cron"]["patternErrorMessage"]) in by_line, found
    assert all("^" not in message for _, message in by_line), "a raw regex is shown"


def test_the_shipped_files_have_no_diagnostics(server: LanguageServer) -> None:
    for name in ("notifications.yaml", "rules/client.yaml", "templates_map/staging.yaml"):
        uri = server.open(ROOT / name, (ROOT / name).read_text(encoding="utf-8"))
        assert server.diagnostics_of(uri, until=lambda d: False, timeout=3) == [], name


def test_a_templates_map_file_is_checked(server: LanguageServer) -> None:
    text = ("# yaml-language-server: $schema=../engine/rules/templates_map.schema.json\n"
            "client_welcome: CLIENT_WELCOME_V1\nClient-Welcome: X\n")
    uri = server.open(ROOT / "templates_map" / "editor_env.yaml", text)
    found = server.diagnostics_of(uri)
    assert [d["range"]["start"]["line"] for d in found] == [2], found
    assert (
        SCHEMA["$defs"]["template_key"]["patternErrorMessage"] in found[0]["message"]
        or "Client-Welcome" in found[0]["message"]
    )


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("notifications.yaml", "rules", "templates_map"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ENGINE_CONFIG", raising=False)
    for kind, output in (("rules", "schema.json"), ("templates_map", "templates_map.schema.json")):
        result = CliRunner().invoke(cli, ["schema", "--for", kind, "-o", output])
        assert result.exit_code == 0, result.output
    return tmp_path


def test_the_project_schema_completes_declared_names(
    server: LanguageServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path, monkeypatch)
    head = "# yaml-language-server: $schema=../schema.json\nnotifications:\n  client_review_nudge:\n"
    uri = server.open(project / "rules" / "editor_project.yaml", head + "    trigger:\n      event: \n")
    events = {i["label"]: i for i in server.completion(uri, 4, 13)}
    assert {"booking.confirmed", "session.completed", "review.created"} <= set(events), sorted(events)
    assert "A client's booking" in _documentation(events["booking.confirmed"]) or events["booking.confirmed"].get(
        "documentation"
    )
    uri = server.open(project / "rules" / "editor_project_category.yaml", head + "    category: \n")
    assert {"transactional", "engagement"} <= {i["label"] for i in server.completion(uri, 3, 14)}
    uri = server.open(project / "rules" / "editor_project_template.yaml", head + "    template: \n")
    assert "client_welcome" in {i["label"] for i in server.completion(uri, 3, 14)}
    uri = server.open(project / "rules" / "editor_project_window.yaml", head + "    schedule:\n      window: \n")
    assert "daytime" in {i["label"] for i in server.completion(uri, 4, 14)}


def test_the_project_schema_flags_undeclared_names(
    server: LanguageServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path, monkeypatch)
    text = ("# yaml-language-server: $schema=../schema.json\nnotifications:\n  client_review_nudge:\n"
            "    trigger: {event: session.completd}\n    category: engagment\n")
    uri = server.open(project / "rules" / "editor_project_bad.yaml", text)
    lines = {
        d["range"]["start"]["line"]
        for d in server.diagnostics_of(uri, until=lambda d: len({x["range"]["start"]["line"] for x in d}) >= 2)
    }
    assert {3, 4} <= lines
    text = "# yaml-language-server: $schema=../templates_map.schema.json\nclient_welcome: CLIENT_WELCOME_V1\n"
    uri = server.open(project / "templates_map" / "editor_env.yaml", text)
    found = server.diagnostics_of(uri)
    assert 'Missing property "client_booking_confirmation".' in {d["message"] for d in found}, found
