"""The dashboard page in a real browser (headless Chromium) against a running ``streamkit run``.

Checks that the page shows numbers that change between two loads, that stream
values made to look like markup are shown as text (no element is injected),
that server-sent events update the page, and saves a screenshot to
``test-output/dashboard.png`` (or ``$STREAMKIT_TEST_OUTPUT``).
"""
from __future__ import annotations

import contextlib
import html.parser
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

pytestmark = pytest.mark.browser

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUTPUT = os.environ.get("STREAMKIT_TEST_OUTPUT") or os.path.join(ROOT, "test-output")
XSS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']


def records() -> list[dict]:
    """600 records, cycled by the source. The two markup-like users lead the others by more than
    one cycle's worth of any user (at most 30), so they are the top two at any point after the
    first cycle, wherever in a cycle the page is loaded; "i-top" leads the items the same way."""
    users = [f"u{k:02d}" for k in range(1, 31) for _ in range(k)] + [XSS[0]] * 70 + [XSS[1]] * 65
    items = [f"i{k:02d}" for k in range(1, 32) for _ in range(k)] + ["i-top"] * 104
    rng = random.Random(11)
    rng.shuffle(users)
    rng.shuffle(items)
    types = rng.choices(["view", "click", "like", "share", "purchase"], [50, 30, 10, 5, 5], k=len(users))
    return [{"user_id": u, "item_id": i, "interaction_type": t, "duration_ms": rng.randint(20, 900)}
            for u, i, t in zip(users, items, types)]


def pipeline_file(tmp: str, port: int) -> str:
    cfg = {
        "name": "browser-check",
        "plugins": ["streamkit_testsource"],
        # 300 records/s whose event time advances 0.2s each: a one-minute window fills every second
        "source": {"type": "records", "records": records(), "cycle": True, "rate": 300, "batch_size": 30,
                   "time_step": 0.2},
        "aggregations": [
            {"name": "interactions_per_user", "type": "count", "group_by": ["user_id"]},
            {"name": "interactions_per_item", "type": "count", "group_by": ["item_id"]},
            {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
            {"name": "interactions_per_type", "type": "count", "group_by": ["interaction_type"], "window": "1m",
             "lateness": "0s"},
            {"name": "longest_interaction_per_type", "type": "max", "field": "duration_ms",
             "group_by": ["interaction_type"]},
        ],
        "sinks": [{"type": "mongodb", "uri": "mongomock://", "database": "interaction_db",
                   "collection": "aggregations"}],
        "flush": {"interval": "0.5s"},
        "alerts": {"rules": [{"name": "hot item", "aggregation": "interactions_per_item", "above": 200}]},
        "dashboard": {"port": port, "refresh": "1s"},
    }
    path = os.path.join(tmp, "browser.yaml")
    with open(path, "w") as f:
        json.dump(cfg, f)  # JSON is YAML
    return path


class Node:
    def __init__(self, tag: str, attrs: dict, parent: "Node | None") -> None:
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.walk()

    def by_id(self, ident: str) -> "Node":
        return next(n for n in self.walk() if n.attrs.get("id") == ident)

    def by_class(self, cls: str) -> list["Node"]:
        return [n for n in self.walk() if cls in (n.attrs.get("class") or "").split()]


VOID = {"meta", "link", "img", "br", "input", "hr", "source", "area", "base", "col", "embed", "wbr"}


class Tree(html.parser.HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.at = self.root
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.at)
        self.at.children.append(node)
        if tag not in VOID:
            self.at = node

    def handle_endtag(self, tag):
        n = self.at
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.at = n.parent

    def handle_data(self, data):
        self.at.children.append(data)


def chromium(binary: str, url: str, *extra: str, profile: str, popen: bool = False):
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", *extra, url]
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=90)


def number(text: str) -> float:
    return float(text.replace(",", ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """``streamkit run`` of the pipeline file; its log lines are collected as they come."""

    def __init__(self, path: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, "-m", "streamkit", "run", path, "--quiet",
                                      "--duration", "120"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def stop(self, timeout: float) -> int:
        """SIGINT, then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=10)
        return self.proc.returncode

    def log(self) -> str:
        return "".join(self.lines[-30:])


class Relay:
    """A TCP relay in front of the dashboard that counts the summary events it passes on over
    /api/events: what a browser behind it has received, seen from outside the browser."""

    MARK = b"event: summary"

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.events = 0
        self.lock = threading.Lock()
        self.clients: list[socket.socket] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Refuse new connections and drop open ones (the browser keeps spare ones open)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close alone would not
        self.sock.close()
        for client in self.clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        up = None
        try:
            head = b""
            while b"\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            up = socket.create_connection(("127.0.0.1", self.upstream))
            up.sendall(head)
            events = head.startswith(b"GET /api/events")
            threading.Thread(target=self._pipe, args=(client, up), daemon=True).start()
            tail = b""
            while chunk := up.recv(65536):
                client.sendall(chunk)
                if events:  # a mark split over two chunks is counted once
                    data = tail + chunk
                    with self.lock:
                        self.events += data.count(self.MARK)
                    tail = data[-(len(self.MARK) - 1):]
        except OSError:
            pass
        finally:  # shutdown, not just close: it also ends a recv blocked on the socket elsewhere
            for sock in (client, up):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass


def summary(url: str) -> dict:
    with urllib.request.urlopen(url + "api/summary", timeout=10) as r:
        return json.loads(r.read())


def wait_for(what: str, check, timeout: float, run: Run):
    """Poll ``check`` until it returns something true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        assert run.proc.poll() is None, f"streamkit run exited while waiting for {what}:\n{run.log()}"
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.1)


@pytest.fixture
def pipeline(tmp_path, chromium_path):
    port = free_port()
    run = Run(pipeline_file(str(tmp_path), port))
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for("dashboard with 600 records", lambda: (summary(url)["total_interactions"] or 0) > 600, 30, run)
        yield run, url
    finally:
        run.stop(timeout=20)


def test_dashboard_in_a_real_browser(pipeline, chromium_path, tmp_path):
    run, url = pipeline
    os.makedirs(OUTPUT, exist_ok=True)
    profile = str(tmp_path / "profile")

    def load(*extra: str, popen: bool = False):
        return chromium(chromium_path, url + "?live=poll", *extra, profile=profile, popen=popen)

    # two loads, the second once the stored total has moved past what the first showed
    first = load("--dump-dom")
    shown = number(Tree(first.stdout).root.by_id("kpi-total").text())
    wait_for("records past the first load", lambda: summary(url)["total_interactions"] > shown, 30, run)
    second = load("--dump-dom")
    for i, dump in enumerate((first, second), 1):
        with open(os.path.join(OUTPUT, f"dashboard-dom-{i}.html"), "w") as f:
            f.write(dump.stdout)
    a, b = Tree(first.stdout).root, Tree(second.stdout).root
    totals = [number(t.by_id("kpi-total").text()) for t in (a, b)]
    assert 600 < totals[0] < totals[1]
    for t in (a, b):
        assert t.by_id("kpi-users").text() == "32"
        assert t.by_id("kpi-most").text() == "i-top"
        assert t.by_id("kpi-fewest").text() == "i01"
        assert number(t.by_id("kpi-rate").text()) > 0
        assert t.by_id("conn").text().startswith("live")
        assert t.by_id("title").text() == "browser-check"
        assert "hidden" in t.by_id("error").attrs  # no error banner
        assert len(t.by_id("legend").children) == 5  # one line per interaction type
        lines = [n.attrs.get("class") for n in t.by_id("chart").walk() if n.tag == "polyline"]
        # closed windows solid (final), the newest, still open, dashed
        assert lines.count("final") == 5 and lines.count("current") == 5, lines

    # the markup-like user ids are text, in the top list and in the aggregation table
    top = [n.text() for n in a.by_id("top-users").by_class("text")]
    assert sorted(top[:2]) == sorted(XSS)  # their order depends on where in a cycle the page loaded
    cells = [n.text() for n in a.by_id("aggregations").walk() if n.tag == "td"]
    assert XSS[0] in cells and XSS[1] in cells
    for t in (a, b):
        tags = [n for n in t.walk() if isinstance(n, Node)]
        assert not [n for n in tags if n.tag == "img"]
        assert [n.attrs.get("src") for n in tags if n.tag == "script"] == ["static/dashboard.js"]
        assert not [(n.tag, k) for n in tags for k in n.attrs if k.startswith("on")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in first.stdout

    # a screenshot to look at
    shot = os.path.join(OUTPUT, "dashboard.png")
    if os.path.exists(shot):
        os.remove(shot)
    load(f"--screenshot={shot}", "--window-size=1400,1000")
    with open(shot, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1400, 1000)

    # server-sent events: the page updates over one open stream while the pipeline runs; the
    # browser's virtual clock waits for that stream, so the dump comes once the pipeline stops,
    # which is once the relay in front of the dashboard has passed two events to the browser
    relay = Relay(int(url.rsplit(":", 1)[1].strip("/")))
    try:
        live = chromium(chromium_path, relay.url, "--dump-dom", profile=profile, popen=True)
        wait_for("two events passed to the browser", lambda: relay.events >= 2, 60, run)
        assert run.stop(timeout=30) == 0, run.log()
    finally:
        relay.close()  # refused from now on, as the stopped dashboard would
    dom, _ = live.communicate(timeout=60)
    body = next(n for n in Tree(dom).root.walk() if n.tag == "body")
    assert int(body.attrs.get("data-updates-sse", "0")) >= 2
    assert number(Tree(dom).root.by_id("kpi-total").text()) > totals[1]
