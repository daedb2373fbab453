"""Gallery pages in a real browser: Debian's headless Chromium loads every page from a local HTTP
server, so what a reader's browser fetches (every image, every video) is what is checked, and a
screenshot shows the page rendered something. Tests using it skip where Chromium is not installed
(``make test`` installs it where it can)."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=3000"]


class _Recorder(http.server.SimpleHTTPRequestHandler):
    requests: list[tuple[str, int]]

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.requests.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, *args: object) -> None:  # quiet
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the browser closes a video's connection once it has what it shows: not an error


@contextmanager
def serve(root: Path) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """``(base URL, [(path, status), ...])`` of a server on localhost that serves ``root``."""
    requests: list[tuple[str, int]] = []
    handler = type("Handler", (_Recorder,), {"requests": requests})
    server = _QuietServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def screenshot(url: str, png: Path, profile: Path) -> None:
    """Load ``url`` in headless Chromium (its images and videos fetched) and save what it shows."""
    assert CHROMIUM is not None
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1600",
                    f"--screenshot={png}", url], check=True, capture_output=True, timeout=120)


def check_site(root: Path, tmp: Path) -> dict[str, int]:
    """Every HTML page under ``root`` loads in Chromium with every resource it fetches found (HTTP
    200), renders something (a screenshot that is not one colour), and every link on it resolves.
    Returns counts of pages, fetched resources and links."""
    from PIL import Image

    pages = sorted(root.rglob("*.html"))
    links = 0
    with serve(root) as (base, requests):
        for i, page in enumerate(pages):
            rel = page.relative_to(root).as_posix()
            png = tmp / f"page{i}.png"
            screenshot(f"{base}/{rel}", png, tmp / "profile")
            with Image.open(png) as shot:
                low, high = shot.convert("L").getextrema()
            assert high - low > 50, f"{rel} rendered blank"
            for href in re.findall(r'(?:href|src)="([^"#:]+)"', page.read_text()):
                target = urllib.request.urljoin(f"{base}/{rel}", href)
                with urllib.request.urlopen(target) as response:  # raises on 404
                    assert response.status == 200, target
                links += 1
        # 304: cached; a page without an icon makes the browser ask for /favicon.ico on its own
        failed = [(path, code) for path, code in requests if code not in (200, 304) and path != "/favicon.ico"]
        fetched = len(requests)
    assert not failed, f"the browser could not load: {failed[:5]}"
    return {"pages": len(pages), "fetched": fetched, "links": links}
