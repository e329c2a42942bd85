"""Fixtures for the artifact cache tests: a local HTTP server over a temporary directory."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class Server:
    root: Path
    url: str
    requests: list[str] = field(default_factory=list)

    def put(self, relative: str, data: bytes) -> Path:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[Server]:
    """`python -m http.server` in-process, bound to 127.0.0.1 on a free port, serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # keep pytest output clean
            pass

        def do_GET(self):
            seen.append(self.path)
            super().do_GET()

    handler = functools.partial(Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", seen)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
