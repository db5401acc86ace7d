"""The shared conversion loop: a source's bad image is skipped and reported, never fatal for the run."""

from __future__ import annotations

import numpy as np

from objascale.converters.common import Loaded, convert
from objascale.hdf5_format import FlipDataset


class _TwoImages:
    """Image 0 is fine; image 1 has a mask whose size differs from the image (a source/data bug)."""

    dataset_name = "stub"
    dataset_type = "val"
    licenses: list = []
    provenance = {"source": "stub"}

    def image_keys(self):
        return [0, 1]

    def load(self, key):
        rgb = np.full((12, 16, 3), 40 * key, np.uint8)
        mask = np.zeros((12, 16) if key == 0 else (10, 16), bool)
        mask[2:6, 3:9] = True
        return Loaded(rgb, [mask], {"file_name": f"{key}.png"})


def test_unencodable_image_is_skipped_and_reported(tmp_path):
    report = convert(_TwoImages(), tmp_path, progress=False)
    assert report.images_written == 1 and report.instances_written == 1
    assert report.skipped_images == {"image or masks not encodable": 1}
    assert "(10, 16)" in report.examples["image or masks not encodable"][0]
    with FlipDataset(report.output) as ds:
        assert ds.num_images == 1 and ds.image_info(0)["file_name"] == "0.png"
