"""``flipbench bench sampler`` runs and prints its table (tiny settings; figures are not asserted)."""

from __future__ import annotations

from click.testing import CliRunner

from benchmark.commands.bench_cmd import bench_cmd


def test_bench_sampler_runs():
    result = CliRunner().invoke(
        bench_cmd, ["sampler", "--sizes", "64", "--tokens", "32", "--objects", "3", "--fallback-objects", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "64x64" in result.output and "time per object" in result.output


def test_bench_sampler_times_a_datasets_objects():
    from pathlib import Path

    fixture = Path(__file__).parent / "data" / "coco_val2017_mini.hdf5"
    result = CliRunner().invoke(bench_cmd, ["sampler", "--sizes", "64", "--tokens", "32", "--objects", "3",
                                            "--fallback-objects", "0", "--dataset", str(fixture)])
    assert result.exit_code == 0, result.output
    assert "coco_val2017_mini" in result.output and "its first 3 objects" in result.output


_FAKE_OFFICIAL = '''
import numpy as np
calls = []
def seed(s):
    assert isinstance(s, int)
def get_continuous_patches_with_indices(image, mu_x, mu_y, s_x, s_y, rot_a, rot_b, tokens, sizes, thr, cov):
    assert image.dtype == np.uint8 and image.ndim == 3
    assert all(isinstance(v, float) for v in (mu_x, mu_y, s_x, s_y, rot_a, rot_b, thr, cov))
    assert isinstance(tokens, int) and all(isinstance(p, float) for p in sizes)
    calls.append(tokens)
    return [], [], [], [1] * len(sizes)
'''


def test_bench_sampler_times_the_official_extension_when_given(tmp_path):
    """--official imports flip_gaussian from the given folder only and times its sampler on the same objects
    (a stand-in module with the official signature checks the arguments it receives)."""
    (tmp_path / "flip_gaussian.py").write_text(_FAKE_OFFICIAL)
    result = CliRunner().invoke(bench_cmd, ["sampler", "--sizes", "64", "--tokens", "32", "--objects", "3",
                                            "--fallback-objects", "0", "--no-dataset", "--official", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "official CPU" in result.output and "faster" in result.output
    row = next(line for line in result.output.splitlines() if "64x64" in line)
    assert row.split("│")[-3].strip() == "5"  # mean accepted patches the stand-in reported (1 per size)


def test_bench_sampler_official_folder_without_the_module_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(bench_cmd, ["sampler", "--sizes", "64", "--objects", "3", "--official", str(tmp_path)])
    assert result.exit_code == 2
    assert "no built flip_gaussian module" in result.output and "build_ext --inplace" in result.output
