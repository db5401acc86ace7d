"""Expected failures print one line; `flipbench --debug` (or FLIPBENCH_DEBUG=1) shows the traceback instead."""

from __future__ import annotations

from click.testing import CliRunner

from benchmark.cli import main


def test_one_line_error_then_traceback_with_debug(tmp_path, monkeypatch):
    monkeypatch.delenv("FLIPBENCH_DEBUG", raising=False)
    missing = str(tmp_path / "missing.hdf5")
    runner = CliRunner()
    res = runner.invoke(main, ["inspect", missing])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "Traceback" not in res.output
    assert isinstance(res.exception, SystemExit)
    res = runner.invoke(main, ["--debug", "inspect", missing])
    assert isinstance(res.exception, FileNotFoundError)
    corrupt = tmp_path / "corrupt.hdf5"
    corrupt.write_bytes(b"not hdf5")
    args = ["eval", "--dataset", str(corrupt), "--model", "box", "--out", str(tmp_path / "run")]
    res = runner.invoke(main, args)
    assert res.exit_code == 1 and "cannot be opened as HDF5" in res.output and "Traceback" not in res.output
    monkeypatch.setenv("FLIPBENCH_DEBUG", "1")
    res = runner.invoke(main, args)
    assert type(res.exception).__name__ == "FlipFormatError"
