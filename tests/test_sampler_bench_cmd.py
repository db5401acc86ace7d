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
