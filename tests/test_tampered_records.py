"""Records edited after the run (a mask that is not an RLE, another image's index, a forged image size): the
report's gallery and the viewer check each record against its dataset before drawing it, leave the object out with
a one-line reason, and never crash (issue 21: the same fault classes in the code of this release)."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _view_fixture import make_runs

from benchmark.report.build import build_report
from benchmark.report.recorded import RecordMismatch, check_record, recorded_mask
from benchmark.report.runs import load_runs
from objascale.hdf5_format import FlipDataset


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("tamper")
    dataset, runs = make_runs(root)
    return root, dataset, runs


def _tamper(run, tmp_path, edit):
    """A copy of ``run`` whose first record file went through ``edit(DataFrame)``."""
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    part = sorted(copy.glob("records/*/part-*.parquet"))[0]
    table = pq.ParquetFile(part).read()
    frame = table.to_pandas()
    edit(frame)
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), part)
    return copy


def _garbage_rle(f):
    f.loc[0, "pred_rle"] = b"\xff\xfe not an RLE"


def _other_image(f):
    f.loc[0, "image_index"] = 1 if f.loc[0, "image_index"] == 0 else 0


def _out_of_range_image(f):
    f.loc[0, "image_index"] = 999


def _forged_size(f):
    f.loc[:, "image_height"] = 100_000
    f.loc[:, "image_width"] = 100_000


EDITS = {"garbage RLE": (_garbage_rle, "is not a COCO RLE of a 60x80 mask"),
         "another image": (_other_image, "names image 1, but the dataset puts that object in image 0"),
         "image out of range": (_out_of_range_image, "names image 999, but the dataset puts that object in image 0"),
         "forged size": (_forged_size, "gives the image size (100000, 100000), but image 0 of the dataset is 60x80")}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_the_report_leaves_out_objects_whose_records_do_not_fit_the_dataset(clean, tmp_path, case):
    _, _, runs = clean
    edit, reason = EDITS[case]
    run = _tamper(runs[0], tmp_path, edit)
    result = build_report([run], tmp_path / "report", n_boot=50)
    left_out = [w for w in result.warnings if w.startswith("Gallery: object 0 left out")]
    assert len(left_out) == 1 and reason in left_out[0] and "the box record of object 0" in left_out[0]
    assert str(run) in left_out[0]
    assert (tmp_path / "report" / "report.html").exists() and "left out" in (
        tmp_path / "report" / "report.html").read_text()
    assert result.tables["table1_iou"] is not None  # the tables do not depend on the pictures


def test_check_record_accepts_the_untouched_records(clean):
    _, dataset, runs = clean
    combined = load_runs([runs[0]])
    with FlipDataset(dataset) as ds:
        for rec in combined.records.to_dict("records"):
            j, i, h, w = check_record(ds, rec)
            mask = recorded_mask(rec["pred_rle"], h, w, rec)
            assert (j, i) == (rec["instance_index"], rec["image_index"]) and mask.shape == (h, w)
            assert int(mask.sum()) == rec["pred_pixels"]
        with pytest.raises(RecordMismatch, match="the dataset has objects 0 to 17 only"):
            check_record(ds, {**rec, "instance_index": 18})
        with pytest.raises(RecordMismatch, match="unreadable"):
            check_record(ds, {"model": "box"})


def test_the_viewer_answers_a_tampered_record_with_one_line(clean, tmp_path):
    pytest.importorskip("fastapi", reason="the view extra is not installed (pip install -e '.[view]')")
    pytest.importorskip("httpx", reason="httpx (the test client's transport) is not installed")
    from fastapi.testclient import TestClient

    from benchmark.view.app import create_app
    from benchmark.view.index import open_index

    _, _, runs = clean

    def both(f):
        _garbage_rle(f)
        f.loc[1, "image_index"] = 3

    run = _tamper(runs[0], tmp_path, both)
    client = TestClient(create_app(open_index([run])), raise_server_exceptions=False)
    bad_mask = client.get("/api/crop/0.jpg", params={"label": "box"})
    assert bad_mask.status_code == 422 and "is not a COCO RLE of a 60x80 mask" in bad_mask.json()["error"]
    wrong_image = client.get("/api/image/1.jpg")
    assert wrong_image.status_code == 422
    assert "name image 3, but" in wrong_image.json()["error"] and "in image 0" in wrong_image.json()["error"]
    fine = client.get("/api/crop/2.jpg", params={"label": "box"})
    assert fine.status_code == 200 and fine.content[:2] == b"\xff\xd8"
