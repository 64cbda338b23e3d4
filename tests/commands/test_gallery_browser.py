"""The gallery in a real headless browser: Debian's chromium driven by playwright (``make chromium``
installs the browser; never ``playwright install``). The page loads without console errors or
requests, sorts and filters by score and drop reason, pages, and its marked pairs download as a list
that ``seva export --exclude`` leaves out.

The browser missing is a failure, not a skip (CI must run this), unless SEVA_SKIP_BROWSER=1 says to
skip it; SEVA_CHROMIUM names another chromium binary.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest

from helpers import make_images, read_jsonl
from seva_plugin.commands.cli import main
from seva_plugin.commands.gallery import inspect_dataset
from seva_plugin.pipeline.build import build

pytestmark = pytest.mark.slow  # starts a browser
CHROMIUM_FLAGS = [
    *("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"),
    *("--disable-component-update", "--disable-sync", "--no-first-run"),
]


def chromium() -> str:
    if os.environ.get("SEVA_SKIP_BROWSER") == "1":
        pytest.skip("SEVA_SKIP_BROWSER=1: the gallery's browser test is skipped")
    path = os.environ.get("SEVA_CHROMIUM", "/usr/bin/chromium")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no chromium at {path}: run `make chromium` (Debian's chromium, as root), set SEVA_CHROMIUM, or set SEVA_SKIP_BROWSER=1 to skip")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]' (or set SEVA_SKIP_BROWSER=1 to skip)")
    return path


class drop_filter:
    """Registers filter ``test_drop_odd`` (drops the records with an odd number, reason ``odd_id``) for a ``with`` block."""

    def __enter__(self):
        from seva_plugin import hookimpl
        from seva_plugin.interfaces import Filter
        from seva_plugin.registry import get_plugin_manager, get_registry

        @dataclass
        class DropOdd(Filter):
            name = "test_drop_odd"

            def __call__(self, pair):
                return "odd_id" if int(pair.record.id[1:]) % 2 else None

        class Plugin:
            @hookimpl
            def register_filters(self, register):
                register(DropOdd)

        self.plugin = Plugin()
        get_plugin_manager().register(self.plugin, name="test-drop-odd")
        get_registry.cache_clear()
        return self

    def __exit__(self, *exc):
        from seva_plugin.registry import get_plugin_manager, get_registry

        get_plugin_manager().unregister(self.plugin)
        get_registry.cache_clear()
        return False


@pytest.fixture(scope="module")
def gallery(tiny_llava, tmp_path_factory):
    """A real SeVa build of 10 records (5 dropped by a filter, answers of at most 6 tokens) and its
    gallery with the log-prob margins, in pages of 3."""
    import seva_plugin.commands.gallery.page as page

    root = tmp_path_factory.mktemp("browser")
    data = root / "data"
    names = make_images(data / "images", 10)
    with open(root / "prompts.jsonl", "w") as fh:
        for i, name in enumerate(names):
            fh.write(json.dumps({"id": f"p{i}", "image": f"data/images/{name}", "question": "What colour is the square?"}) + "\n")
    config = {
        "model": tiny_llava,
        "template": "llava",
        "source": {"file": str(root / "prompts.jsonl"), "format": "jsonl"},
        "augment": {"name": "diffusion_noise", "step": 800},
        "backend": {"name": "hf", "batch_size": 5, "max_new_tokens": 6},
        "filters": ["test_drop_odd"],
        "output": {"dataset_dir": str(data), "name": "seva"},
    }
    with drop_filter():
        assert build(config, progress=False).kept == 5
    size, page.PAGE_SIZE = page.PAGE_SIZE, 3
    try:
        inspect_dataset(str(data), "seva", html=str(root / "gallery.html"), score=True)
    finally:
        page.PAGE_SIZE = size
    return data, root / "gallery.html"


@pytest.fixture(scope="module", autouse=True)
def chromium_path() -> str:
    """Checked before anything is built: a missing browser fails (or skips) at once."""
    return chromium()


@pytest.fixture(scope="module")
def browser(chromium_path):
    """Headless chromium, started once for this file."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(context, html):
    """``html`` open in a new tab of ``context``; console messages, page errors and requests recorded."""
    page = context.new_page()
    page.problems, page.requests = [], []
    page.on("console", lambda m: page.problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    page.on("request", lambda r: page.requests.append(r.url))
    page.goto(html.as_uri())
    page.wait_for_function("document.getElementById('count').textContent !== ''")
    return page


@pytest.fixture
def browser_page(browser, gallery):
    """The gallery in a fresh browser context (its own storage)."""
    context = browser.new_context(accept_downloads=True)
    try:
        yield open_page(context, gallery[1])
    finally:
        context.close()


READ = "els => els.map(e => ({id: e.dataset.id, status: e.dataset.status, values: JSON.parse(e.dataset.values)}))"


def shown(page) -> list[dict]:
    """The pairs on the current page, in order, with their status and values."""
    return page.eval_on_selector_all("section.pair:not([hidden])", READ)


def every(page) -> list[dict]:
    return page.eval_on_selector_all("section.pair", READ)


def test_the_page_loads_without_errors_or_requests(browser_page, gallery):
    page = browser_page
    assert page.problems == []
    assert [u for u in page.requests if not u.startswith(("data:", "blob:"))] == [gallery[1].as_uri()]  # the file itself, nothing else
    assert page.inner_text("#count") == "10 of 10 pairs" and page.inner_text("#page") == "page 1 of 4"
    assert [p["id"] for p in shown(page)] == ["p0", "p1", "p2"]  # source order, a page of 3


def test_sorting_filtering_and_paging(browser_page):
    page = browser_page
    pairs = every(page)
    kept = [p for p in pairs if p["status"] == "kept"]
    assert len(kept) == 5 and {p["status"] for p in pairs} == {"kept", "odd_id"}
    assert all("margin" in p["values"] for p in pairs)  # --score: every pair has its margin

    page.select_option("#sort", "margin")
    page.click("#order")  # descending
    expected = sorted(pairs, key=lambda p: -p["values"]["margin"])
    seen = []
    for _ in range(4):
        seen += [p["id"] for p in shown(page)]
        if page.is_disabled("#next"):
            break
        page.click("#next")
    assert seen == [p["id"] for p in expected]

    page.select_option("#status", "odd_id")
    assert page.inner_text("#count") == "5 of 10 pairs" and page.inner_text("#page") == "page 1 of 2"
    assert {p["status"] for p in shown(page)} == {"odd_id"}
    assert page.locator("section.pair:not([hidden]) input.exclude").count() == 0  # dropped pairs cannot be marked

    page.select_option("#status", "")
    page.select_option("#where-key", "margin")
    bound = sorted(p["values"]["margin"] for p in pairs)[6]
    page.fill("#where-value", repr(bound))
    assert page.inner_text("#count") == "4 of 10 pairs"  # at least the 7th smallest: 4 pairs
    page.select_option("#where-op", "max")
    assert page.inner_text("#count") == "7 of 10 pairs"
    assert page.problems == []


def test_marked_pairs_download_and_export_leaves_them_out(browser_page, gallery, tmp_path):
    page = browser_page
    data, _ = gallery
    page.select_option("#status", "kept")
    boxes = page.locator("section.pair:not([hidden]) input.exclude")
    marked = [page.locator("section.pair:not([hidden])").nth(k).get_attribute("data-id") for k in (0, 2)]
    boxes.nth(0).check()
    boxes.nth(2).check()
    assert page.inner_text("#marked") == "2"
    assert page.locator("section.pair.marked").count() == 2
    boxes.nth(2).uncheck()
    boxes.nth(2).check()  # unmark and mark again: still two
    again = open_page(page.context, gallery[1])  # marks are kept for this build while the page is closed and opened again
    assert again.inner_text("#marked") == "2" and again.locator("section.pair.marked").count() == 2
    again.close()
    with page.expect_download() as download:
        page.click("#download")
    listed = tmp_path / download.value.suggested_filename
    download.value.save_as(listed)
    assert listed.name == "seva.exclude.json"
    assert json.loads(listed.read_text())["exclude"] == sorted(marked)
    assert page.problems == []

    out = tmp_path / "out"
    assert main(["export", str(data), "--name", "seva", "--to", "jsonl", "--out", str(out), "--exclude", str(listed)]) == 0
    exported = [r["id"] for r in read_jsonl(out / "seva.jsonl")]
    kept = [r["id"] for r in read_jsonl(data / "seva.jsonl")]
    assert exported == [i for i in kept if i not in marked] and len(exported) == 3
    step = json.load(open(out / "seva.manifest.json"))["exports"][-1]
    assert step["excluded"]["ids"] == sorted(marked) and step["excluded"]["pairs"] == 2 and step["excluded"]["file"] == str(listed)
