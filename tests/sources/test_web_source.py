"""WebSource against a website served by a local http.server: bounded crawl, sitemap, robots.txt, main text."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.sources.checks import assert_no_stale_chunks, by_status, held

from ragworks.sources.sync import sync_source
from ragworks.sources.web import WebSource

NAV = "<nav><a href='/index.html'>Home</a> | <a href='/about.html'>About us</a> | Site map navigation menu</nav>"
FOOTER = "<footer>Copyright 2026 Harbour Authority. All rights reserved. Cookie policy.</footer>"


def page(title: str, body: str, links: str = "") -> str:
    return (f"<html><head><title>{title}</title></head><body>{NAV}<main><h1>{title}</h1>{body}{links}</main>"
            f"{FOOTER}</body></html>")


class Site:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.fail: set[str] = set()  # paths answered with 500

    def write(self, name: str, html: str) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Site, str]]:
    s = Site(tmp_path / "www")
    s.root.mkdir()

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] in s.fail:
                self.send_error(500, "boom")
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(s.root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield s, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def build_site(s: Site) -> None:
    s.write("robots.txt", "User-agent: *\nDisallow: /private/\n")
    s.write("index.html", page("Harbour guide", "<p>Welcome to the harbour guide for visiting sailors.</p>",
                               "<a href='ferry.html'>Ferry</a> <a href='tides.html'>Tides</a> "
                               "<a href='/private/staff.html'>Staff</a> <a href='http://example.org/x'>x</a> "
                               "<a href='logo.png'>logo</a> <a href='guide.txt'>plain guide</a>"))
    (s.root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    s.write("guide.txt", "The harbour master's office is open from nine to five.")
    s.write("ferry.html", page("Ferry", "<p>The ferry leaves the harbour at seven every morning.</p>",
                               "<a href='deep/level2.html'>more</a>"))
    s.write("tides.html", page("Tides", "<p>The albatross tide table is printed every Monday.</p>"))
    s.write("deep/level2.html", page("Level two", "<p>Level two page.</p>", "<a href='level3.html'>on</a>"))
    s.write("deep/level3.html", page("Level three", "<p>Beyond the depth limit.</p>"))
    s.write("private/staff.html", page("Staff", "<p>Staff only: the safe code is nine.</p>"))


def test_crawl_follows_site(collection, site) -> None:
    s, base = site
    build_site(s)
    source = WebSource(base + "/index.html", max_depth=2, max_pages=50)
    first = collection.sync(source)
    pages = {base + p for p in ("/index.html", "/ferry.html", "/tides.html", "/deep/level2.html", "/guide.txt")}
    # not robots-disallowed /private/, not depth 3, not off-host, not an image; a linked text file is a document
    assert by_status(first) == {"new": pages}
    texts = held(collection)
    assert "ferry leaves the harbour at seven" in texts[base + "/ferry.html"]
    assert all("Copyright" not in t and "navigation menu" not in t for t in texts.values())  # main text only

    s.write("ferry.html", page("Ferry", "<p>The ferry now leaves the harbour at eight every morning.</p>",
                               "<a href='deep/level2.html'>more</a>"))
    (s.root / "tides.html").unlink()
    s.write("index.html", page("Harbour guide", "<p>Welcome to the harbour guide for visiting sailors.</p>",
                               "<a href='ferry.html'>Ferry</a> <a href='tides.html'>Tides</a> "
                               "<a href='locks.html'>Locks</a>"))
    s.write("locks.html", page("Locks", "<p>The canal locks open at high water.</p>"))
    second = collection.sync(source)
    statuses = by_status(second)
    assert statuses["new"] == {base + "/locks.html"}
    # tides.html answers 404; guide.txt is no longer linked, so the crawl no longer reaches it: both are gone
    assert statuses["removed"] == {base + "/tides.html", base + "/guide.txt"}
    assert base + "/deep/level2.html" in statuses["unchanged"]
    assert statuses["updated"] == {base + "/ferry.html", base + "/index.html"}  # index: its link text changed
    embedded = {f.path: f.embedded for f in second.files}
    assert embedded[base + "/deep/level2.html"] == 0
    changed = statuses["updated"] | statuses["new"]
    assert second.chunks_embedded == sum(embedded[p] for p in changed) > 0
    texts = held(collection)
    assert set(texts) == {base + p for p in ("/index.html", "/ferry.html", "/locks.html", "/deep/level2.html")}
    assert "eight" in texts[base + "/ferry.html"]
    assert_no_stale_chunks(collection, "albatross")


def test_crawl_reads_linked_images_only_when_asked(collection, site) -> None:
    s, base = site
    build_site(s)
    first = collection.sync(WebSource(base + "/index.html", max_depth=1, media=True))
    # the linked PNG is listed and read by OCR; this one is broken, so it fails alone while the pages ingest
    failed = {f.path: f.error for f in first.files if f.status == "failed"}
    assert list(failed) == [base + "/logo.png"] and failed[base + "/logo.png"]
    assert {base + "/index.html", base + "/ferry.html", base + "/guide.txt"} <= by_status(first)["new"]


def test_sitemap_lastmod_skips_unchanged_pages_unfetched(collection, site) -> None:
    s, base = site
    build_site(s)
    s.write("sitemap.xml", f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>{base}/ferry.html</loc><lastmod>2026-01-01</lastmod></url>
  <url><loc>{base}/tides.html</loc><lastmod>2026-01-01</lastmod></url>
  <url><loc>{base}/private/staff.html</loc></url>
</urlset>""")
    source = WebSource(base + "/")
    assert by_status(collection.sync(source)) == {"new": {base + "/ferry.html", base + "/tides.html"}}
    s.fail.add("/tides.html")  # would fail if it were fetched again
    s.write("sitemap.xml", f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>{base}/tides.html</loc><lastmod>2026-01-01</lastmod></url>
  <url><loc>{base}/locks.html</loc><lastmod>2026-02-01</lastmod></url>
</urlset>""")
    s.write("locks.html", page("Locks", "<p>The canal locks open at high water.</p>"))
    second = collection.sync(source)
    assert by_status(second) == {"unchanged": {base + "/tides.html"}, "new": {base + "/locks.html"},
                                 "removed": {base + "/ferry.html"}}
    assert set(held(collection)) == {base + "/tides.html", base + "/locks.html"}


def test_server_errors_delete_nothing(collection, site) -> None:
    s, base = site
    build_site(s)
    source = WebSource(base + "/index.html", max_depth=1)
    collection.sync(source)
    before = held(collection)
    assert len(before) == 4  # index, ferry, tides, guide.txt
    s.fail.add("/tides.html")  # one page answers 500 mid-crawl: the listing is incomplete
    outcome = sync_source(collection, source, retries=1, backoff_s=0.01)
    assert not outcome.ok and "500" in outcome.error
    assert held(collection) == before
    s.fail = {"/robots.txt"}  # robots.txt 5xx: RFC 9309 says do not crawl
    assert not sync_source(collection, source, retries=0).ok
    s.fail = {"/index.html"}
    assert not sync_source(collection, source, retries=0).ok
    assert held(collection) == before
    s.fail = set()
    (s.root / "tides.html").unlink()  # a real 404 is a deletion
    assert collection.sync(source).count("removed") == 1
