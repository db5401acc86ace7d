"""The checkpoint catalogue and the ``flipbench weights`` command."""

from __future__ import annotations

import hashlib
import re

import torch

from click.testing import CliRunner

from baselines import weights as W
from benchmark.commands.weights_cmd import weights_cmd
from benchmark.models import MODEL_REGISTRY


def test_every_baseline_model_has_a_catalogue_entry():
    baselines = {name for name, target in MODEL_REGISTRY.items() if target.startswith("baselines.") and
                 not target.startswith("baselines.reference") and not target.startswith("baselines.openvocab")
                 and not name.endswith("-test")}
    assert baselines <= set(W.CATALOG), baselines - set(W.CATALOG)
    # the text rows are built from several catalogued checkpoints (baselines.openvocab.predictors)
    assert {"clip-vit-b16", "dino-vitb8", "loftup-clip", "sam2.1-l"} <= set(W.CATALOG)


def test_catalogue_entries_are_well_formed():
    for name, entry in W.full_catalog().items():
        assert entry.model == name
        assert entry.url.startswith("https://"), entry.url
        if entry.url.startswith(W._HF):  # hub files share names (model.safetensors): stored under the repository's
            suffix = "." + entry.url.rsplit(".", 1)[-1]
            assert entry.url.split("/")[4] + suffix == entry.filename, name
        elif not name.startswith("flip"):  # FLIP's Nextcloud links end in /download
            assert entry.url.rsplit("/", 1)[-1] in (entry.filename, entry.filename + ".zip")
        if entry.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), name
        if entry.num_bytes is not None:
            assert entry.num_bytes > 1_000_000, name


def test_sam_file_names_carry_the_md5_prefix_of_the_official_files():
    # Meta names its SAM checkpoints after the first 6 hex digits of their md5 (sam_vit_b_01ec64.pth, ...)
    for name in ("sam-h", "sam-l", "sam-b"):
        assert re.fullmatch(r"sam_vit_[hlb]_[0-9a-f]{6}\.pth", W.CATALOG[name].filename)


def test_cli_list_and_verify(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path))
    runner = CliRunner()
    listed = runner.invoke(weights_cmd, ["list"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    for name in ("sam-b", "mobilesam", "efficientsam-t", "fastsam-s", "sam2.1-t", "flip-tiny"):
        assert name in listed.output
    missing = runner.invoke(weights_cmd, ["verify", "sam-b"])
    assert missing.exit_code != 0 and "missing" in missing.output
    unknown = runner.invoke(weights_cmd, ["download", "no-such-model"])
    assert unknown.exit_code != 0 and "no-such-model" in unknown.output


def test_cli_download_then_verify_prints_digest(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("FLIPBENCH_HOME", str(home))
    src = tmp_path / "ckpt.pt"
    torch.save({"weights": torch.arange(1000.0)}, src)  # no catalogued digest: the content must load as tensors
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    monkeypatch.setitem(W.CATALOG, "toy", W.WeightFile("toy", "ckpt.pt", src.as_uri()))
    runner = CliRunner()
    result = runner.invoke(weights_cmd, ["download", "toy"])
    assert result.exit_code == 0, result.output
    assert (home / "ckpt.pt").read_bytes() == src.read_bytes()
    assert f"sha256={digest}" in result.output and "no published digest" in result.output
    verified = runner.invoke(weights_cmd, ["verify", "toy"])
    assert verified.exit_code == 0 and "unverified" in verified.output and digest in verified.output


def test_cli_download_mismatch_fails_cleanly(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("FLIPBENCH_HOME", str(home))
    src = tmp_path / "ckpt.pt"
    src.write_bytes(b"weights")
    monkeypatch.setitem(W.CATALOG, "toy", W.WeightFile("toy", "ckpt.pt", src.as_uri(), sha256="0" * 64))
    result = CliRunner().invoke(weights_cmd, ["download", "toy"])
    assert result.exit_code != 0 and "SHA-256" in result.output
    assert not (home / "ckpt.pt").exists()


def test_list_prints_whole_rows_off_a_terminal_and_offers_tsv_and_json(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path))
    runner = CliRunner()  # CliRunner output is not a terminal
    catalog = W.full_catalog()
    for args in (["list"], ["list", "--format", "tsv"]):
        result = runner.invoke(weights_cmd, args, env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0].split("\t")[:3] == ["name", "file", "bytes"]
        for name, entry in catalog.items():  # `| grep NAME` finds the whole row: name, URL and digest together
            row = [line for line in lines if line.startswith(name + "\t")]
            assert len(row) == 1 and entry.url in row[0], name
            if entry.sha256:
                assert entry.sha256 in row[0]
    table = runner.invoke(weights_cmd, ["list", "--format", "table"], env={"COLUMNS": "80"})
    long_url = catalog["sam2.1-b+"].url
    assert any("sam2.1-b+" in line and long_url in line for line in table.output.splitlines()), table.output
    rows = json.loads(runner.invoke(weights_cmd, ["list", "--format", "json"]).output)
    by_name = {row["name"]: row for row in rows}
    assert by_name["flip-tiny-demo"]["sha256"] == catalog["flip-tiny-demo"].sha256
    assert "forward_with_cache" in by_name["flip-encoder-large"]["note"]
    assert by_name["sam-b"]["present"] is False


def test_flip_tiny_demo_entry_pins_the_official_blob():
    entry = W.full_catalog()["flip-tiny-demo"]
    assert entry.url == ("https://raw.githubusercontent.com/CognitiveModeling/FLIP/"
                         "59375b6c1744b9c9d23cf350843cf132896071a4/docs/flipencoder.onnx")
    assert (entry.num_bytes, entry.sha256) == (
        2_225_417, "ef53c2774528f23bba55864809f79ad75e493af07b0d25c1987e86f1b3e6d6a5")
    assert entry.filename == "flip-tiny-demo.onnx" and entry.kind == "onnx"


def test_flip_tiny_demo_digest_is_that_of_the_shared_copy():
    from _shared import FLIP_TINY_ONNX, require

    path = require(FLIP_TINY_ONNX)
    entry = W.full_catalog()["flip-tiny-demo"]
    assert (path.stat().st_size, W.sha256_of(path)) == (entry.num_bytes, entry.sha256)


def test_onnx_pairs_are_catalogued():
    catalog = W.full_catalog()
    for size in ("tiny", "small", "middle", "large"):
        for part in ("encoder", "predictor"):
            entry = catalog[f"flip-{part}-{size}"]
            assert entry.url == f"https://manuel-traub.de/onnx/flip-{part}-{size}.onnx"
            assert entry.kind == "onnx" and entry.sha256 is None


def test_download_demo_over_http_then_list_shows_it_present(tmp_path, monkeypatch):
    """`weights download flip-tiny-demo` against a local server holding the real file (size and digest pinned)."""
    import dataclasses
    import functools
    import http.server
    import threading

    from _shared import FLIP_TINY_ONNX, require

    src = require(FLIP_TINY_ONNX)
    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path / "home"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(src.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        entry = W.full_catalog()["flip-tiny-demo"]
        url = f"http://127.0.0.1:{server.server_address[1]}/{src.name}"
        monkeypatch.setitem(W.CATALOG, "flip-tiny-demo", dataclasses.replace(entry, url=url))
        result = CliRunner().invoke(weights_cmd, ["download", "flip-tiny-demo"])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "home" / "flip-tiny-demo.onnx").read_bytes() == src.read_bytes()
    finally:
        server.shutdown()
        server.server_close()
    listed = CliRunner().invoke(weights_cmd, ["list"]).output.splitlines()
    row = next(line.split("\t") for line in listed if line.startswith("flip-tiny-demo\t"))
    assert row[4] == "yes" and row[5] == str((tmp_path / "home" / "flip-tiny-demo.onnx").resolve())


def test_missing_weights_messages_name_the_real_flag_and_the_install_command(tmp_path, monkeypatch):
    import sys

    from benchmark.models import build_model

    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path))
    with __import__("pytest").raises(W.MissingCheckpointError) as err:
        build_model("flip-small")
    assert "--allow-random-weights" in str(err.value) and "(--allow-random)" not in str(err.value)
    monkeypatch.setitem(sys.modules, "sam2.build_sam", None)  # as if the optional package were not installed
    with __import__("pytest").raises(ImportError) as err:
        build_model("sam2.1-t")
    assert 'SAM2_BUILD_CUDA=0 pip install --no-build-isolation -e ".[sam2]"' in str(err.value)
