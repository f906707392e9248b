"""WebSource: the pages of a website under a start URL, from its sitemap or a bounded crawl.

The crawl stays on the start URL's host and under its directory, follows links breadth-first to `max_depth`, stops
at `max_pages`, and honours robots.txt (a site whose robots.txt answers 5xx is not crawled at all, as RFC 9309
asks). A page's main text is extracted with trafilatura (navigation, footers and boilerplate dropped) into
Markdown, so headings survive into chunks and citations; without trafilatura the HTML loader's text is used.

Versions: a sitemap `<lastmod>` when given (the page is then not downloaded while unchanged), else the SHA-256 of
the page's bytes (a crawl must download pages to find links anyway; unchanged pages are still not re-embedded).
A listing that cannot be completed (the start page or sitemap unreachable, any page answering 5xx or timing
out) raises SourceUnavailable, so an outage never deletes pages; a page answering 404 or 410 is gone.
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlparse
from urllib.robotparser import RobotFileParser

import httpx

from ragworks.errors import SourceItemError, SourceUnavailable
from ragworks.ingest.loaders import LOADERS, decode_text, html_to_blocks
from ragworks.ingest.ocr import IMAGE_SUFFIXES
from ragworks.ingest.source import FetchedItem, SourceItem
from ragworks.ingest.speech import AUDIO_SUFFIXES, VIDEO_SUFFIXES

USER_AGENT = "ragworks-sync"
GONE = (404, 410)
_HTML_TYPES = ("text/html", "application/xhtml+xml")

MEDIA_SUFFIXES = IMAGE_SUFFIXES + AUDIO_SUFFIXES + VIDEO_SUFFIXES


@dataclass(slots=True)
class _Page:
    body: bytes
    content_type: str


def html_to_markdown(html: str, fallback_title: str = "") -> str:
    """The page's main text as Markdown (trafilatura), or the whole page's text when extraction finds none."""
    title, builder = html_to_blocks(html)
    title = title or fallback_title
    body = ""
    try:
        import trafilatura

        body = trafilatura.extract(html, output_format="markdown", include_links=False, include_images=False,
                                   favor_precision=True) or ""
    except ImportError:
        pass
    if not body.strip():
        body = builder.text
    if title and not body.lstrip().startswith("# "):
        body = f"# {title}\n\n{body}"
    return body


def _normalize(url: str) -> str:
    url, _ = urldefrag(url)
    parsed = urlparse(url)
    return parsed._replace(path=parsed.path or "/").geturl()


class WebSource:
    def __init__(self, url: str, *, sitemap: str | None = None, max_pages: int = 200, max_depth: int = 3,
                 include: Sequence[str] = (), exclude: Sequence[str] = (), timeout_s: float = 15.0,
                 user_agent: str = USER_AGENT, media: bool = False) -> None:
        self.start = _normalize(url)
        # linked images, recordings and videos are OCR'd/transcribed only when asked: on most sites they are
        # logos, icons and decoration, whose OCR is noise (and a failure per sync for a broken one)
        self.media = media
        parsed = urlparse(self.start)
        self.origin = f"{parsed.scheme}://{parsed.netloc}"
        self.scope = self.origin + posixpath.dirname(parsed.path).rstrip("/") + "/"
        self.sitemap = sitemap
        self.max_pages, self.max_depth = max_pages, max_depth
        self.include, self.exclude = tuple(include), tuple(exclude)
        self.user_agent = user_agent
        self._http = httpx.Client(timeout=timeout_s, follow_redirects=True, headers={"User-Agent": user_agent})
        self._pages: dict[str, _Page] = {}  # bodies downloaded while listing, handed to fetch()

    @property
    def uri(self) -> str:
        return self.start

    def owns(self, key: str) -> bool:
        return key.startswith(self.scope)

    def _in_scope(self, url: str) -> bool:
        """Whether the crawl may visit `url` (same host, under the start's directory, not excluded)."""
        path = urlparse(url).path
        return url.startswith(self.scope) and not any(fnmatch.fnmatch(path, g) for g in self.exclude)

    def _wanted(self, url: str) -> bool:
        """Whether a visited page becomes an item (`include` globs on its path; pages only linked through keep
        being crawled)."""
        path = urlparse(url).path
        return not self.include or any(fnmatch.fnmatch(path, g) for g in self.include)

    def _get(self, url: str) -> httpx.Response:
        try:
            return self._http.get(url)
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"{url}: {exc.__class__.__name__}: {exc}; nothing was deleted") from exc

    def _robots(self) -> RobotFileParser:
        robots = RobotFileParser()
        r = self._get(self.origin + "/robots.txt")
        if r.status_code >= 500:
            raise SourceUnavailable(f"{self.origin}/robots.txt answered {r.status_code}; nothing was deleted")
        robots.parse(r.text.splitlines() if r.status_code == 200 else [])  # 4xx: no rules (RFC 9309)
        return robots

    def _sitemap_urls(self, robots: RobotFileParser) -> list[tuple[str, str]] | None:
        """(url, lastmod) from the sitemap, or None when the site has none."""
        explicit = self.sitemap is not None
        todo = [self.sitemap] if self.sitemap else (robots.site_maps() or [self.origin + "/sitemap.xml"])
        found: list[tuple[str, str]] = []
        seen_maps: set[str] = set()
        while todo and len(seen_maps) < 50:
            url = todo.pop(0)
            if url in seen_maps:
                continue
            seen_maps.add(url)
            r = self._get(url)
            if r.status_code in GONE and not explicit and not found:
                return None
            if r.status_code != 200:
                raise SourceUnavailable(f"sitemap {url} answered {r.status_code}; nothing was deleted")
            try:
                root = ET.fromstring(r.content)
            except ET.ParseError as exc:
                raise SourceUnavailable(f"sitemap {url} is not XML: {exc}; nothing was deleted") from exc
            for node in root:
                tag = node.tag.rsplit("}", 1)[-1]
                loc = next((c.text or "" for c in node if c.tag.endswith("loc")), "").strip()
                lastmod = next((c.text or "" for c in node if c.tag.endswith("lastmod")), "").strip()
                if tag == "sitemap" and loc:
                    todo.append(loc)
                elif tag == "url" and loc:
                    found.append((_normalize(loc), lastmod))
        return found

    def _filename(self, url: str, content_type: str) -> str:
        name = posixpath.basename(urlparse(url).path).lower()
        if any(content_type.startswith(t) for t in _HTML_TYPES) or not name:
            return "page.md"  # extracted to Markdown by fetch()
        if any(name.endswith(s) for s in LOADERS):
            return name
        return "page.md" if "html" in content_type else name

    def _page(self, url: str) -> _Page | None:
        """Download a page while listing: None when it is gone (404/410), SourceUnavailable when it failed."""
        r = self._get(url)
        if r.status_code in GONE:
            return None
        if r.status_code != 200:
            raise SourceUnavailable(f"{url} answered {r.status_code}; nothing was deleted")
        page = _Page(r.content, r.headers.get("content-type", "").split(";")[0].strip().lower())
        self._pages[url] = page
        return page

    def _item(self, url: str, version: str, page: _Page | None) -> SourceItem:
        filename = self._filename(url, page.content_type if page else "text/html")
        return SourceItem(url, version, filename, len(page.body) if page else None, {"url": url})

    def list_items(self) -> list[SourceItem]:
        self._pages.clear()
        robots = self._robots()
        allowed = lambda url: robots.can_fetch(self.user_agent, url)  # noqa: E731
        items: list[SourceItem] = []
        sitemap = self._sitemap_urls(robots)
        if sitemap is not None:
            for url, lastmod in sitemap:
                if len(items) >= self.max_pages:
                    break
                if not self._in_scope(url) or not self._wanted(url) or not allowed(url):
                    continue
                if lastmod:
                    items.append(self._item(url, "lastmod:" + lastmod, None))
                elif (page := self._page(url)) is not None:
                    items.append(self._item(url, hashlib.sha256(page.body).hexdigest()[:32], page))
            return items
        if not allowed(self.start):
            raise SourceUnavailable(f"robots.txt of {self.origin} disallows {self.start}; nothing was deleted")
        queue: deque[tuple[str, int]] = deque([(self.start, 0)])
        seen = {self.start}
        while queue and len(items) < self.max_pages:
            url, depth = queue.popleft()
            page = self._page(url)
            if page is None:
                if url == self.start:
                    raise SourceUnavailable(f"{url} answered 404: the start page is gone; nothing was deleted")
                continue
            is_html = any(page.content_type.startswith(t) for t in _HTML_TYPES)
            filename = self._filename(url, page.content_type)
            # images, archives…: linked from pages but nothing a loader reads (not reported as failures each sync)
            loadable = filename == "page.md" or (any(filename.endswith(s) for s in LOADERS)
                                                 and (self.media or not filename.endswith(MEDIA_SUFFIXES)))
            if self._wanted(url) and loadable:
                items.append(self._item(url, hashlib.sha256(page.body).hexdigest()[:32], page))
            if not is_html or depth >= self.max_depth:
                continue
            for link in self._links(url, page.body):
                if link not in seen and self._in_scope(link) and allowed(link):
                    seen.add(link)
                    queue.append((link, depth + 1))
        return items

    @staticmethod
    def _links(base: str, body: bytes) -> list[str]:
        from selectolax.lexbor import LexborHTMLParser

        tree = LexborHTMLParser(body.decode("utf-8", "replace"))
        out = []
        for a in tree.css("a[href]"):
            href = (a.attributes.get("href") or "").strip()
            if href and not href.startswith(("mailto:", "javascript:", "tel:")):
                out.append(_normalize(urljoin(base, href)))
        return out

    def fetch(self, item: SourceItem) -> FetchedItem:
        page = self._pages.pop(item.key, None)
        if page is None:
            r = self._get(item.key)
            if r.status_code != 200:
                raise SourceItemError(f"{item.key} answered {r.status_code}")
            page = _Page(r.content, r.headers.get("content-type", "").split(";")[0].strip().lower())
        filename = self._filename(item.key, page.content_type)
        if filename == "page.md":
            html = decode_text(page.body, filename)
            text = html_to_markdown(html, fallback_title=urlparse(item.key).path)
            return FetchedItem(text.encode("utf-8"), filename)
        return FetchedItem(page.body, filename)

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"WebSource({self.start!r}, max_pages={self.max_pages}, max_depth={self.max_depth})"
