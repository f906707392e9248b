"""The web page end to end in headless Chromium against a real uvicorn server: upload with progress, watch the
job, ask with a streamed answer, click a citation, see the cited passage highlighted in its document."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no `playwright install`)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def test_upload_watch_ask_and_click_a_citation_to_see_the_passage(browser, tmp_path, embedder, kit, sample_corpus):
    files = [sample_corpus / "fresnel-lens.md", sample_corpus / "tides.md", sample_corpus / "trinity-house.pdf"]
    with kit.live_server(kit.make_settings(tmp_path / "data"), embedder) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/")
        page.fill("#new-collection", "lights")
        page.click("#create-form button")
        page.wait_for_selector("#collection option[value=lights]", state="attached")

        page.set_input_files("#files", [str(f) for f in files])
        page.click("#upload")
        page.wait_for_selector("#job-status[data-state=completed]", timeout=90_000)
        assert page.eval_on_selector("#upload-progress", "e => e.value") == 1
        assert page.eval_on_selector("#job-progress", "e => e.value") == 1
        assert "3/3 files" in page.inner_text("#job-status")
        page.wait_for_function("document.querySelectorAll('#documents li').length === 3")
        assert "fresnel-lens.md" in page.inner_text("#documents")

        page.fill("#question", "Who invented the Fresnel lens?")
        page.click("#ask")
        page.wait_for_selector("#answer[data-done=true]", timeout=60_000)
        answer = page.inner_text("#answer")
        assert "Augustin-Jean Fresnel" in answer
        assert page.locator("#sources li").count() >= 1, "the sources event arrived before the answer"

        first = page.locator("#answer a.cite").first
        cited_source = first.get_attribute("title")
        first.click()
        mark = page.wait_for_selector("#doc-text mark#highlight")
        highlighted = mark.inner_text()
        quotes = [q.strip() for q in page.locator("#citations .quote").all_inner_texts()]
        assert highlighted.strip() in quotes, "the highlight is exactly the cited sentence"
        assert page.inner_text("#doc-meta").startswith(cited_source)
        assert mark.is_visible()
        assert "Fresnel" in highlighted
        # the answer is rendered sentence by sentence from the `verification` event (all supported here)
        statuses = page.eval_on_selector_all("#answer span.sentence", "els => els.map(e => e.dataset.status)")
        assert statuses and "unsupported" not in statuses
        # an unsupported sentence (as a small LLM writes one) is highlighted, its neighbours' citations still link
        page.evaluate("""() => renderAnswer(
            {answer: "Fresnel made lenses [1]. They were made of gold.", notice: "", citations: [
                {number: 1, doc_id: "x", source: "fresnel-lens.md", quote: "q", start: 0, end: 1, page: null}]},
            {sentences: [{start: 0, end: 24, status: "supported"}, {start: 25, end: 49, status: "unsupported"}]})""")
        flagged = page.locator("#answer span.sentence.unsupported")
        assert flagged.count() == 1 and flagged.inner_text() == "They were made of gold."
        assert flagged.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
        assert page.locator("#answer a.cite").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)
        assert not errors, errors
        page.close()


def test_api_docs_page_renders_every_route_with_no_network_but_the_server(browser, tmp_path, embedder, kit):
    with kit.live_server(kit.make_settings(tmp_path / "data"), embedder) as base:
        page = browser.new_page()
        outside: list[str] = []

        def only_local(route) -> None:  # offline: anything not from the server itself is refused
            if route.request.url.startswith(base):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_local)
        page.goto(base + "/docs")
        page.wait_for_selector("details summary code")
        shown = set(page.locator("details summary code").all_inner_texts())
        spec = page.request.get(base + "/openapi.json").json()
        assert shown == set(spec["paths"]) and "/v1/collections/{name}/search" in shown
        page.locator("details", has_text="/v1/collections/{name}/search").first.click()
        assert '"query"' in page.locator("details[open] pre").first.inner_text(), "the request body example shows"
        assert outside == [], f"the page fetched from outside the server: {outside}"
