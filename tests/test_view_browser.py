"""`flipbench view` in a real browser: Playwright driving Chromium (the Debian package `.ci/run` installs).

Filters, opens an object, switches to the difference view, checks counts and that every picture decoded, and that a
category name holding HTML is shown as text (no element injected). Screenshots go to $FLIPBENCH_VIEW_SHOTS when set.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the view extra is not installed (pip install -e '.[view]')")
uvicorn = pytest.importorskip("uvicorn", reason="the view extra is not installed (pip install -e '.[view]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")

from _view_fixture import HOSTILE, make_runs  # noqa: E402

from benchmark.view.app import create_app  # noqa: E402
from benchmark.view.index import open_index  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewb")
    _, runs = make_runs(root)
    index = open_index(runs)
    config = uvicorn.Config(create_app(index), host="127.0.0.1", port=0, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "the viewer did not start"
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", index
    srv.should_exit = True
    thread.join(10)


@pytest.fixture()
def page():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield pg
        browser.close()


def shot(page, name: str) -> None:
    folder = os.environ.get("FLIPBENCH_VIEW_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def images_decoded(page, selector: str) -> list[int]:
    """Longest side of every decoded picture matching ``selector`` (0: broken)."""
    page.wait_for_function(f"Array.from(document.querySelectorAll('{selector}')).every(i => i.complete)")
    return page.eval_on_selector_all(selector, "els => els.map(i => Math.max(i.naturalWidth, i.naturalHeight))")


def test_filter_open_and_compare(server, page):
    url, index = server
    page.goto(url)
    page.wait_for_selector("#grid figure")
    assert page.text_content("#count") == "18 objects"
    widths = images_decoded(page, "#grid img")
    assert len(widths) == 18 and all(w == 160 for w in widths)
    # the hostile category is listed and shown as plain text, never as markup
    assert HOSTILE in page.eval_on_selector_all("#f-category option", "els => els.map(e => e.textContent)")
    page.select_option("#f-category", HOSTILE)
    page.select_option("#f-label", "box")
    page.fill("#f-iou_min", "10")
    page.click("#apply")
    expected = int(((index.objects["category"] == HOSTILE) & (index.objects["iou:box"] * 100 >= 10)).sum())
    page.wait_for_function(f"document.getElementById('count').textContent === '{expected} objects'")
    assert page.eval_on_selector_all("#grid .cat", "els => els.map(e => e.textContent)") == [HOSTILE] * expected
    assert page.evaluate("window.__pwned") is None and page.query_selector("#grid img[src='x']") is None
    shot(page, "grid-filtered")

    page.click("#grid figure")
    page.wait_for_selector("#object:not([hidden])")
    assert images_decoded(page, "#full")[0] > 0
    title = page.text_content("#object-title")
    assert HOSTILE in title and "<b>img" in title  # the file name's markup is text too
    assert page.eval_on_selector_all("#figures tr", "rows => rows.length") == 1 + 2 + 1  # header, 2 rows, facts
    page.select_option("#o-mode", "diff")
    page.select_option("#o-a", "box")
    page.select_option("#o-b", "ellipse")
    page.wait_for_function("document.getElementById('full').src.includes('a=box') && "
                           "document.getElementById('full').src.includes('b=ellipse')")
    assert images_decoded(page, "#full")[0] > 0
    assert "only A" in page.text_content("#legend")
    page.click("#zoom-in")
    assert "scale(1.5)" in page.get_attribute("#full", "style")
    shot(page, "object-diff")


def test_tables_link_to_their_objects_and_errors_are_shown(server, page):
    url, index = server
    page.goto(url)
    page.wait_for_selector("#grid figure")
    page.click("button[data-tab=categories]")
    page.wait_for_selector("#categories a")
    assert sorted(page.eval_on_selector_all("#categories a", "els => els.map(e => e.textContent)")) == sorted(
        ["cat", "dog", HOSTILE])
    page.click("#categories a >> text=dog")
    page.wait_for_function("document.getElementById('count').textContent === '6 objects'")
    shot(page, "category-link")
    page.select_option("#f-sort", "iou")
    page.select_option("#f-label", "")
    page.click("#apply")
    page.wait_for_selector("#message:not([hidden])")
    assert page.text_content("#message") == "sorting by IoU needs a row (label)"


def test_a_record_that_does_not_fit_its_dataset_is_explained_on_the_object_page(tmp_path, page):
    """A stored mask edited into bytes that are no RLE: its picture is refused and the page shows the server's
    one-line reason above the object page (not only a broken image)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, runs = make_runs(tmp_path)
    part = sorted(runs[0].glob("records/*/part-*.parquet"))[0]
    table = pq.ParquetFile(part).read()
    frame = table.to_pandas()
    frame.loc[0, "pred_rle"] = b"\xff not an RLE"
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), part)
    srv = uvicorn.Server(uvicorn.Config(create_app(open_index([runs[0]])), host="127.0.0.1", port=0,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        page.goto(f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}")
        page.wait_for_selector("#grid figure")
        page.click("#grid figure")  # object 0: its "box" crop is the tampered one
        page.wait_for_selector("#message:not([hidden])")
        message = page.text_content("#message")
        assert message.startswith("the box record of object 0: its stored mask is not a COCO RLE of a 60x80 mask")
        # the message is drawn above the object page, where the user is looking
        top = page.evaluate("(() => { const r = document.getElementById('message').getBoundingClientRect();"
                            " return document.elementFromPoint(r.left + 5, r.top + 5).id; })()")
        assert top == "message"
        shot(page, "object-bad-record")
    finally:
        srv.should_exit = True
        thread.join(10)
