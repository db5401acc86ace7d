"""The HTML report renders in a real browser (headless Chromium): tables present, images decode, page not blank."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from PIL import Image

from benchmark.report.build import build_report
from benchmark.report.synthetic import random_records, write_run

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    run = write_run(root / "run", random_records(["sam-h", "flip-tiny"], "coco-val2017", images=6, seed=4,
                                                  random_init=("flip-tiny",)))
    return build_report([run], root / "out")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=180, check=True)


def test_html_embeds_everything(report):
    page = (report.out_dir / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3  # heat map, its paired-difference map and the curve for the one dataset
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as img:
            assert img.width > 500 and img.height > 300
    assert not re.search(r'(src|href)="(https?:|//|file:)', page), "the page must not load anything external"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_html_renders_in_chromium(report, tmp_path):
    url = (report.out_dir / "report.html").resolve().as_uri()
    dom = _chromium("--dump-dom", url).stdout
    for table in ("table1_iou", "table3_small_objects", "paper_comparison", "paper_small_objects", "costs", "timing",
                  "runs"):
        assert f'id="{table}"' in dom
    assert dom.count("data:image/png;base64,") == 3
    assert "flip-tiny (window, random-init)" in dom and '<section id="gallery">' in dom
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,2000", url)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280)
    assert (pixels < 200).mean() > 0.02, "screenshot is (almost) blank"
    assert pixels.std() > 10
