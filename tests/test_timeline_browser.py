"""The timeline page in a real headless Chromium: examples.jsonl, and 500 recipients' events run
through the real preview, driven over the DevTools protocol (on a pipe: no port, no extra package):
no console error, the filters, zoom, time zone and ticks checked on the page's own state, and a
screenshot kept (its path is printed). Skips (saying why) where Chromium is not installed; CI
installs it and sets ENGINE_TEST_REQUIRE_CHROMIUM=1 so that it fails instead."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from engine.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
ZONES = ["America/New_York", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney"]
FIRST = ["Maya", "Lukas", "Amara", "Jonas", "Dana", "Sofia", "Kenji", "Priya", "Omar", "Lena"]
LAST = ["Chen", "Becker", "Okafor", "Weber", "Brooks", "Rossi", "Sato", "Nair", "Haddad", "Novak"]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = os.environ.get("ENGINE_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("ENGINE_TEST_REQUIRE_CHROMIUM") == "1":
            pytest.fail("Chromium is required (ENGINE_TEST_REQUIRE_CHROMIUM=1) but not installed")
        pytest.skip(
            "Chromium is not installed (apt-get install chromium); the timeline page is not checked in a browser"
        )
    return found


def preview(events: Path, *args: str) -> list[dict]:
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        result = CliRunner().invoke(cli, ["preview", "--events", str(events), *args], env={"ENGINE_ENV": "production"})
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()] if "json" in args else []


def test_the_examples_page_loads_with_a_lane_per_recipient(chromium: str, tmp_path: Path) -> None:
    out = tmp_path / "preview.html"
    preview(ROOT / "examples.jsonl", "--format", "html", "-o", str(out), "--tz", "Europe/Berlin")
    rows = preview(ROOT / "examples.jsonl", "--format", "json")
    dom = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                          "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=90).stdout
    assert "data-errors" not in dom, re.findall(r'data-errors="([^"]*)"', dom)
    assert f'data-shown-sends="{len(rows)}"' in dom
    assert f'data-shown-recipients="{len({r["recipient"] for r in rows})}"' in dom
    assert 'data-tz="Europe/Berlin"' in dom and '<option value="Europe/Berlin">' in dom


# --- 500 recipients --------------------------------------------------------------------------

def person(pid: str, n: int) -> dict[str, str]:
    return {"id": pid, "email": f"{pid}@example.com", "name": f"{FIRST[n % 10]} {LAST[n // 10 % 10]} {n}",
            "timezone": ZONES[n % len(ZONES)]}


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def five_hundred_people() -> list[dict[str, Any]]:
    """400 clients and 100 practitioners: every client books one session; four clients of each
    practitioner share its start time (so the practitioner's reminders fall at one instant), one
    booking in five is cancelled, one client in three has just registered."""
    base = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    events = []
    for i in range(400):
        j = i % 100
        client, practitioner = person(f"usr_c_{i:03d}", i), person(f"usr_p_{j:03d}", 1000 + j)
        start = base + timedelta(days=2, hours=3 * (j % 20))
        booking = {"id": f"bk_{i:03d}", "start_time": iso(start), "end_time": iso(start + timedelta(hours=1)),
                   "service": {"id": "svc_1", "name": "Breathwork"}, "meeting_url": f"https://meet.example.com/bk_{i:03d}"}
        events.append(
            {
                "id": f"evt_b{i:03d}",
                "type": "booking.confirmed",
                "occurred_at": iso(base + timedelta(minutes=7 * i)),
                "data": {"booking": booking, "client": client, "practitioner": practitioner},
            }
        )
        if i % 5 == 0:
            events.append(
                {
                    "id": f"evt_x{i:03d}",
                    "type": "booking.cancelled",
                    "occurred_at": iso(base + timedelta(days=1, minutes=7 * i)),
                    "data": {
                        "booking": booking,
                        "cancelled_by": "client",
                        "client": client,
                        "practitioner": practitioner,
                    },
                }
            )
        if i % 3 == 0:
            events.append(
                {
                    "id": f"evt_r{i:03d}",
                    "type": "user.registered",
                    "occurred_at": iso(base - timedelta(minutes=i)),
                    "data": {
                        "user": {**client, "role": "client"},
                        "verification_url": f"https://estuary.app/verify?t={i}",
                    },
                }
            )
    return events


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("timeline500")
    events = folder / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in five_hundred_people()), encoding="utf-8")
    page = folder / "preview.html"
    preview(events, "--format", "html", "-o", str(page), "--tz", "Asia/Tokyo")
    return page, preview(events, "--format", "json")


class Browser:
    """Chromium driven over the DevTools protocol on --remote-debugging-pipe: commands go in on
    its fd 3, answers and events come out on its fd 4, as JSON texts ended by NUL."""

    def __init__(self, chromium: str, profile: Path):
        to_child, self._to_browser = os.pipe()
        self._from_browser, from_child = os.pipe()
        # Above 9, so that putting them at 3 and 4 in the child cannot overwrite one with the other.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child, from_child)]
        for fd in (to_child, from_child):
            os.close(fd)
        launcher = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
                    "os.execv(sys.argv[3], sys.argv[3:])")
        self.process = subprocess.Popen(
            [sys.executable, "-c", launcher, str(high[0]), str(high[1]), chromium, *FLAGS, "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "about:blank"],
            pass_fds=high, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in high:
            os.close(fd)
        self._buffer, self._next, self.events, self.session = b"", 0, [], ""

    def send(self, method: str, params: dict | None = None, *, session: bool = True, timeout: float = 30) -> dict:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next:
                assert "error" not in reply, (method, reply["error"])
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(timeout)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self._buffer += chunk
        text, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(text)

    def open(self, url: str, width: int, height: int) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def js(self, expression: str, *, drawn_first: bool = False) -> Any:
        """The value of an expression; the page has drawn what it changed when this returns (or,
        with drawn_first, before the expression is read)."""
        frames = "await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));"
        body = f"{frames} return ({expression});" if drawn_first else f"const v = ({expression}); {frames} return v;"
        result = self.send("Runtime.evaluate", {"expression": "(async () => {" + body + "})()",
                                                "awaitPromise": True, "returnByValue": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def state(self) -> dict[str, Any]:
        return self.js(
            "Object.assign({}, document.body.dataset, "
            "{ticks: JSON.parse(document.getElementById('axis').dataset.ticks),"
            " lanes: JSON.parse(document.getElementById('plot').dataset.lanes)})",
            drawn_first=True,
        )

    def errors(self) -> list[Any]:
        return [e for e in self.events if e.get("method") == "Runtime.exceptionThrown"
                or e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert")
                or e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]

    def close(self) -> None:
        with contextlib.suppress(TimeoutError, EOFError, OSError):
            self.send("Browser.close", session=False, timeout=10)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[Browser]:
    b = Browser(chromium, tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


def assert_round_ticks(ticks: list[list[str]], tz: str) -> None:
    assert len(ticks) >= 4, ticks
    local = [datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(ZoneInfo(tz)) for t, _ in ticks]
    for when, (_, text) in zip(local, ticks, strict=True):
        assert when.second == 0 and when.minute % 5 == 0, (when, text)
        if re.fullmatch(r"\d\d:\d\d", text):
            assert text == when.strftime("%H:%M")
        else:
            assert (when.hour, when.minute) == (0, 0) and str(when.day) in text, (when, text)
    step = min(int((b - a).total_seconds()) // 60 for a, b in itertools.pairwise(local))
    for when in local:  # every tick a multiple of the step in that zone's own wall-clock time
        assert (when.hour * 60 + when.minute) % min(step, 1440) == 0, (when, step)


def test_five_hundred_recipients(
    browser: Browser, big: tuple[Path, list[dict]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    page, rows = big
    recipients = {r["recipient"] for r in rows}
    assert len(recipients) == 500
    started = time.monotonic()
    browser.open(page.as_uri(), 1400, 900)
    state = browser.state()
    assert time.monotonic() - started < 10
    assert browser.errors() == [] and "errors" not in state
    assert (state["tz"], browser.js("document.getElementById('tz').value")) == ("Asia/Tokyo", "Asia/Tokyo")
    assert (int(state["shownSends"]), int(state["shownRecipients"])) == (len(rows), 500)
    assert int(state["inWindow"]) == len(rows) and 0 < int(state["drawn"]) < len(rows)
    assert_round_ticks(state["ticks"], "Asia/Tokyo")
    lane_id, lane_name = state["lanes"][0]
    assert lane_id == sorted(recipients)[0] and lane_name == "Maya Chen 0"  # the name the events gave

    # Filters: status, notification, recipient (by name), each through the page's own controls.
    browser.js("document.getElementById('status-sent').click()")
    assert int(browser.state()["shownSends"]) == sum(r["status"] != "sent" for r in rows)
    browser.js("document.getElementById('status-sent').click()")
    browser.js(
        "(s => { s.value = 'practitioner_session_reminder_24h'; s.dispatchEvent(new Event('change')); })"
        "(document.getElementById('notification'))"
    )
    state = browser.state()
    chosen = [r for r in rows if r["notification"] == "practitioner_session_reminder_24h"]
    assert (int(state["shownSends"]), int(state["shownRecipients"])) == (
        len(chosen),
        len({r["recipient"] for r in chosen}),
    )
    assert "notification=practitioner_session_reminder_24h" in browser.js("location.hash")
    browser.js(
        "(s => { s.value = ''; s.dispatchEvent(new Event('change')); })(document.getElementById('notification'))"
    )
    browser.js(
        "(i => { i.value = 'priya becker 17'; i.dispatchEvent(new Event('input')); })"
        "(document.getElementById('recipient'))"
    )
    state = browser.state()
    assert int(state["shownRecipients"]) == 1 and state["lanes"] == [["usr_c_017", "Priya Becker 17"]]
    assert int(state["shownSends"]) == sum(r["recipient"] == "usr_c_017" for r in rows)
    browser.js(
        "(i => { i.value = 'usr_p_'; i.dispatchEvent(new Event('input')); })(document.getElementById('recipient'))"
    )
    state = browser.state()
    assert int(state["shownRecipients"]) == 100 and state["lanes"][0] == ["usr_p_000", "Maya Chen 1000"]
    assert int(state["badges"]) > 0  # four reminders at one instant in a practitioner's lane: a count badge
    browser.js("(i => { i.value = ''; i.dispatchEvent(new Event('input')); })(document.getElementById('recipient'))")

    # Zoom in and out: fewer marks in view, finer ticks, then everything again.
    for _ in range(4):
        browser.js("document.getElementById('zoom-in').click()")
    zoomed = browser.state()
    assert int(zoomed["inWindow"]) < len(rows) and int(browser.js("document.getElementById('zoom').value")) > 0
    assert_round_ticks(zoomed["ticks"], "Asia/Tokyo")
    browser.js("document.getElementById('fit').click()")
    assert int(browser.state()["inWindow"]) == len(rows)

    # The time zone picked on the page moves the ticks to round times of that zone.
    browser.js(
        "(s => { s.value = 'America/New_York'; s.dispatchEvent(new Event('change')); })(document.getElementById('tz'))"
    )
    state = browser.state()
    assert state["tz"] == "America/New_York"
    assert_round_ticks(state["ticks"], "America/New_York")
    browser.js(
        "(s => { s.value = 'Asia/Tokyo'; s.dispatchEvent(new Event('change')); })(document.getElementById('tz'))"
    )

    summary = browser.js(
        "[...document.querySelectorAll('#summary tr[data-notification]')].map(tr => [tr.dataset.notification, "
        "...[...tr.cells].slice(1, 5).map(td => +td.textContent)])"
    )
    counts = Counter((r["notification"], r["status"]) for r in rows)
    assert summary == [[n, *(counts[(n, s)] for s in ("sent", "pending", "cancelled", "skipped"))]
                       for n in sorted({r["notification"] for r in rows})]

    shot = (
        Path(os.environ.get("ENGINE_TEST_ARTIFACTS") or tmp_path_factory.getbasetemp()) / "timeline-500-recipients.png"
    )
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.write_bytes(base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"})["data"]))
    print(f"\ntimeline screenshot: {shot}")
    width, bpp, lines = _png_pixels(shot.read_bytes())
    assert width == 1400
    seen = {tuple(line[x:x + 3]) for line in lines for x in range(0, len(line), bpp)}
    for status, colour in {"sent": (0x2E, 0x9D, 0x57), "cancelled": (0xE0, 0xA8, 0x00)}.items():
        assert colour in seen, f"no {status} mark visible in the screenshot {shot}"
    assert browser.errors() == []


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) into rows of raw pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and color in (2, 6)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride, out, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out.append(bytes(line))
        prev = line
    return width, bpp, out
