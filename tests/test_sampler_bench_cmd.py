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
