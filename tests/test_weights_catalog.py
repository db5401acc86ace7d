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
                 not target.startswith("baselines.reference")}
    assert baselines <= set(W.CATALOG), baselines - set(W.CATALOG)


def test_catalogue_entries_are_well_formed():
    for name, entry in W.full_catalog().items():
        assert entry.model == name
        assert entry.url.startswith("https://"), entry.url
        if not name.startswith("flip"):  # FLIP's Nextcloud links end in /download
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
