"""End to end in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) opens the page of a running `transduce serve`, types a sentence, clicks Translate,
and must see the translation, the n-best list and a drawn attention heatmap; then a text of
several lines with a glossary entry. No request may leave the machine and no error may reach
the console. A screenshot is saved (to $TRANSDUCE_SCREENSHOTS
if set, else the test's temporary directory)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from serving import start, stop  # tests/serving.py

from transduce.demo import LEXICON
from transduce.translator import Translator

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SENTENCE = "the big cat sees a red ball near the house"
OTHER = "a small dog likes the old door"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} not found (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(demo_model_dir: Path) -> Iterator[str]:
    proc, url = start(demo_model_dir)
    try:
        yield url
    finally:
        stop(proc)


def test_page_translates_and_draws_the_heatmap(server: str, demo_model_dir: Path,
                                               tmp_path: Path) -> None:
    from playwright.sync_api import Route, sync_playwright

    expected = Translator.load(demo_model_dir).translate([SENTENCE], beam_size=5, n_best=3)[0]
    shots = Path(os.environ.get("TRANSDUCE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    problems: list[str] = []

    def loopback_only(route: Route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.route("**/*", loopback_only)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(server + "/")
            page.wait_for_selector("#model option[value='en-demo']", state="attached")
            assert page.input_value("#beam") == "5"  # the model's default, from /v1/models
            assert not page.is_visible("#apikey")  # no keys configured
            page.fill("#source", SENTENCE)
            page.fill("#nbest", "3")
            page.click("#translate")
            # functions, not expression strings: the page's CSP forbids eval, rightly
            page.wait_for_function(
                "() => document.getElementById('translation').textContent.length > 0",
                timeout=30_000)

            assert page.text_content("#translation") == expected.text
            alternatives = page.locator("#alternatives li")
            assert alternatives.count() == 3
            assert alternatives.first.inner_text().startswith(expected.alternatives[0].text)
            heatmap = page.locator("#heatmap")
            assert heatmap.get_attribute("data-rows") == str(len(expected.tgt_tokens) + 1)
            assert heatmap.get_attribute("data-cols") == str(len(expected.src_tokens) + 1)
            # cells are opaque rgb(shade, 0.95 shade + 10, 255), darker with more weight (so
            # never pure white); labels are dark grey, the rest is transparent
            cells, shades = page.evaluate("""() => {
                const c = document.getElementById('heatmap');
                const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                const shades = new Set();
                for (let i = 0; i < px.length; i += 4) {
                    if (px[i + 3] === 255 && px[i + 2] === 255 && px[i + 1] < 255) {
                        n++;
                        shades.add(px[i]);
                    }
                }
                return [n, shades.size];
            }""")
            n_cells = (len(expected.tgt_tokens) + 1) * (len(expected.src_tokens) + 1)
            assert cells > n_cells * 500, "the heatmap cells are not drawn"
            assert shades >= 2, "every cell has the same colour"
            assert page.is_visible("#heatmap")
            shot = shots / "transduce-page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            print(f"screenshot: {shot}")

            # a glossary forces 'cat' to the word for 'king'; two lines are one document
            king = LEXICON["king"]
            page.click("#glossary-box summary")
            page.fill("#glossary", f"cat = {king}")
            page.fill("#source", f"{SENTENCE}\n\n{OTHER}")
            page.click("#translate")
            page.wait_for_function(
                "() => document.getElementById('translation').textContent.includes('\\n')",
                timeout=30_000)
            first, blank, second = page.text_content("#translation").split("\n")
            assert king in first.split() and blank == "" and king not in second.split()
            assert not page.is_visible("#heatmap")  # a document: text only
            page.fill("#glossary", "cat")  # a malformed entry: said in the page
            page.click("#translate")
            assert "glossary line 1" in page.text_content("#status")
            page.fill("#glossary", "")

            page.fill("#beam", "2")  # an error is shown in the page, not thrown
            page.fill("#nbest", "2")
            page.fill("#source", "x" * 10)
            page.click("#translate")
            page.wait_for_function("() => !document.getElementById('translate').disabled")
            assert "error" not in (page.get_attribute("#status", "class") or "")
        finally:
            browser.close()
    assert outside == [], f"the page tried to reach the network: {outside}"
    assert problems == [], f"console errors: {problems}"
