"""Quick start's FLIP-Tiny weights: found locally, downloaded when missing, or an exact "put FILE in DIR"."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from baselines import weights as W
from benchmark.commands import quickstart


@pytest.fixture
def no_local_weights(tmp_path, monkeypatch):
    """An empty $FLIPBENCH_HOME and no ../shared copy of the demo graph."""
    import benchmark.flip.weights_catalog as catalog

    monkeypatch.setenv("FLIPBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLIPBENCH_OFFLINE", raising=False)
    monkeypatch.setattr(catalog, "SHARED_WEIGHTS", tmp_path / "no-shared")
    return tmp_path / "home"


def _demo_entry(monkeypatch, url: str, data: bytes | None = None):
    entry = W.full_catalog()["flip-tiny-demo"]
    if data is not None:
        entry = dataclasses.replace(entry, num_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), kind="torch")
    monkeypatch.setitem(W.CATALOG, "flip-tiny-demo", dataclasses.replace(entry, url=url))
    return entry


def test_missing_weights_are_downloaded(no_local_weights, tmp_path, monkeypatch, capsys):
    import torch

    src = tmp_path / "served.onnx"
    torch.save({"w": torch.zeros(3)}, src)  # stands for the graph: any file whose size and digest are pinned
    _demo_entry(monkeypatch, src.as_uri(), src.read_bytes())
    assert quickstart._flip_tiny_available()
    assert (no_local_weights / "flip-tiny-demo.onnx").read_bytes() == src.read_bytes()
    assert "downloading the official demo weights" in capsys.readouterr().out


def test_offline_says_which_file_goes_where(no_local_weights, monkeypatch, capsys):
    import socket

    with socket.socket() as sock:  # a port nothing listens on: the network "is not there"
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/flipencoder.onnx"
    _demo_entry(monkeypatch, url)
    assert not quickstart._flip_tiny_available()
    out = capsys.readouterr().out
    assert "flip-tiny-demo.onnx" in out and f"the directory {no_local_weights}" in out
    assert "cannot reach" in out and "flipbench weights download flip-tiny-demo" in out
    assert not no_local_weights.exists() or list(no_local_weights.iterdir()) == []


def test_flipbench_offline_skips_the_attempt(no_local_weights, monkeypatch, capsys):
    monkeypatch.setenv("FLIPBENCH_OFFLINE", "1")
    _demo_entry(monkeypatch, "http://192.0.2.1/never-contacted.onnx")
    assert not quickstart._flip_tiny_available()
    out = capsys.readouterr().out
    assert "FLIPBENCH_OFFLINE" in out and "downloading" not in out


def test_a_present_demo_graph_is_used_without_network(no_local_weights, monkeypatch):
    no_local_weights.mkdir(parents=True)
    (no_local_weights / "flip-tiny-demo.onnx").write_bytes(b"present")
    _demo_entry(monkeypatch, "http://192.0.2.1/never-contacted.onnx")
    assert quickstart._flip_tiny_available()
