"""The native attention kernel (benchmark.flip._attention_native via benchmark.flip.native_attention) equals
PyTorch's SDPA within float32 rounding on random configurations (head counts, head widths 8-32, ragged objects,
padding, key bias, several objects per call, empty runs, thread counts); the fast pixel predictor and the encoder
use it where it can run and fall back to SDPA where it cannot (extension missing, switched off, float64, autograd,
other devices). The FLIP equivalence and official-fixture tests (test_flip_fast_path.py, test_flip_fixtures.py, ...)
run with the kernel active, unchanged."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _shared import REPO_ROOT
from benchmark.flip import fast_decoder, native_attention
from benchmark.flip.config import FlipConfig
from benchmark.flip.mask_decoder import ObjectMemory
from benchmark.flip.predictor import random_model

needs_kernel = pytest.mark.skipif(not native_attention.available(),
                                  reason="native attention kernel not built (setup.py build_ext) or no AVX2/FMA")


def _sdpa(q, keys, values, lengths, segments, bias=None, scale=None, dtype=torch.float32):
    """[n, H * Dv] by SDPA per run: q [n, H, Dk], keys/values [B, H, T, D], bias [B, H, T] (added after scaling)."""
    outputs, start = [], 0
    for b, count in segments:
        t = lengths[b]
        mask = None if bias is None else bias[b:b + 1, :, None, :t].to(dtype)
        o = F.scaled_dot_product_attention(q[start:start + count].transpose(0, 1)[None].to(dtype),
                                           keys[b:b + 1, :, :t].to(dtype), values[b:b + 1, :, :t].to(dtype),
                                           attn_mask=mask, scale=scale)[0]
        outputs.append(o.transpose(0, 1).reshape(count, values.shape[1] * values.shape[-1]))
        start += count
    return torch.cat(outputs)


def _problem(heads, dk, dv, lengths, segments, with_bias, seed):
    g = torch.Generator().manual_seed(seed)
    b, t = len(lengths), max(lengths)
    n = sum(c for _, c in segments)
    q = torch.randn(n, heads, dk, generator=g) * 2
    keys = torch.randn(b, heads, t, dk, generator=g) * 2
    values = torch.randn(b, heads, t, dv, generator=g)
    keys[1:, :, -1] = 1e4  # padding beyond the shorter objects' lengths must not count (an object's own keys do)
    bias = torch.randn(b, heads, t, generator=g) * 3 if with_bias else None
    return q, keys, values, bias


CASES = [  # heads, Dk, Dv, lengths, segments, bias, scale
    (4, 16, 16, [483], [(0, 200)], False, None),  # FLIP-Tiny's shapes
    (2, 32, 32, [37, 20, 5], [(1, 120), (0, 7), (2, 30), (1, 0), (0, 150)], False, None),
    (3, 16, 24, [1, 17, 64], [(2, 13), (0, 5), (1, 1), (2, 2)], True, 0.3),  # Dv tail of 8, one key, bias
    (1, 8, 8, [16, 15], [(0, 0), (1, 11), (0, 6)], True, None),
    (5, 32, 16, [100, 3], [(0, 1), (1, 64)], False, 1 / math.sqrt(32)),
]


@needs_kernel
@pytest.mark.parametrize("case", CASES, ids=[f"h{c[0]}-dk{c[1]}-dv{c[2]}" for c in CASES])
def test_kernel_equals_sdpa_within_float32_rounding(case):
    """Against the float64 result, the kernel's error is within 3x SDPA's own float32 error (plus 1e-6), and
    the result does not depend on the thread count (every row is computed alike)."""
    heads, dk, dv, lengths, segments, with_bias, scale = case
    q, keys, values, bias = _problem(heads, dk, dv, lengths, segments, with_bias, seed=len(lengths) + heads)
    inputs = native_attention.layout(keys, values, lengths, bias, scale)
    native = native_attention.attend(q.reshape(q.shape[0], -1), dk, inputs, segments)
    exact = _sdpa(q, keys, values, lengths, segments, bias, scale, torch.float64)
    sdpa = _sdpa(q, keys, values, lengths, segments, bias, scale)
    assert native.shape == sdpa.shape == (q.shape[0], heads * dv)
    assert exact.abs().max() > 0.1
    rounding = (sdpa.double() - exact).abs().max()
    assert (native.double() - exact).abs().max() <= 3 * rounding + 1e-6
    with native_attention.threads(3):
        assert torch.equal(native_attention.attend(q.reshape(q.shape[0], -1), dk, inputs, segments), native)


@needs_kernel
def test_kernel_shares_one_query_between_heads():
    """head_stride 0 (the folded query: one 32-wide query for every head) equals repeating it per head."""
    q, keys, values, bias = _problem(3, 32, 16, [40, 9], [(0, 25), (1, 30)], True, seed=5)
    shared = q[:, 0]
    inputs = native_attention.layout(keys, values, [40, 9], bias, 0.2)
    native = native_attention.attend(shared, 0, inputs, [(0, 25), (1, 30)])
    repeated = native_attention.attend(shared.repeat(1, 3), 32, inputs, [(0, 25), (1, 30)])
    torch.testing.assert_close(native, repeated, rtol=0, atol=0)
    exact = _sdpa(shared[:, None].expand(-1, 3, -1), keys, values, [40, 9], [(0, 25), (1, 30)], bias, 0.2,
                  torch.float64)
    torch.testing.assert_close(native.double(), exact, rtol=1e-5, atol=1e-5)


@needs_kernel
def test_self_attention_equals_masked_sdpa_on_a_padded_batch():
    """Encoder layout: every query row (padding rows included) attends to its object's first lengths[b] keys, as
    SDPA with the encoder's key mask; a mask whose real keys do not come first is left to SDPA."""
    g = torch.Generator().manual_seed(7)
    lengths, t, heads, d = [30, 12, 21], 30, 4, 16
    q = torch.randn(3, t, heads * d, generator=g)
    keys = torch.randn(3, heads, t, d, generator=g)
    values = torch.randn(3, heads, t, d, generator=g)
    mask = (torch.arange(t)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]
    assert native_attention.prefix_lengths(mask, 3, t) == lengths
    assert native_attention.prefix_lengths(None, 3, t) == [t] * 3
    assert native_attention.prefix_lengths(mask.flip(-1), 3, t) is None
    native = native_attention.self_attention(q, keys, values, lengths)
    sdpa = F.scaled_dot_product_attention(q.view(3, t, heads, d).transpose(1, 2), keys, values, attn_mask=mask)
    torch.testing.assert_close(native, sdpa.transpose(1, 2).reshape(3, t, -1), rtol=1e-5, atol=2e-6)


def test_usable_only_for_float32_cpu_inference_with_8_wide_heads(monkeypatch):
    x = torch.zeros(4, 2, 5, 16)
    assert native_attention.usable(x, x, x) == native_attention.available()
    assert not native_attention.usable(x.double(), x.double(), x.double())
    assert not native_attention.usable(x[..., :12], x[..., :12], x[..., :12])
    meta = x.to("meta")
    assert not native_attention.usable(meta, meta, meta)
    grad = x.clone().requires_grad_()
    assert not native_attention.usable(grad, x, x)
    with torch.no_grad():
        assert native_attention.usable(grad, x, x) == native_attention.available()
    monkeypatch.setattr(native_attention, "ENABLED", False)
    assert not native_attention.usable(x, x, x)


@needs_kernel
def test_kernel_rejects_bad_arguments():
    q, keys, values, _ = _problem(2, 16, 16, [10], [(0, 4)], False, seed=1)
    inputs = native_attention.layout(keys, values, [10])
    q2 = q.reshape(4, -1).numpy()
    out = np.empty((4, 32), np.float32)
    seg = np.array([[0, 4]], np.int64)
    kernel = native_attention._native
    with pytest.raises(ValueError, match="float32"):
        kernel.attend(q2.astype(np.float64), 16, inputs["keys_t"], inputs["values"], None, inputs["lengths"], seg,
                      0.25, out, 1)
    with pytest.raises(ValueError, match="cover"):
        kernel.attend(q2, 16, inputs["keys_t"], inputs["values"], None, inputs["lengths"],
                      np.array([[0, 3]], np.int64), 0.25, out, 1)
    with pytest.raises(ValueError, match="objects"):
        kernel.attend(q2, 16, inputs["keys_t"], inputs["values"], None, inputs["lengths"],
                      np.array([[1, 4]], np.int64), 0.25, out, 1)
    with pytest.raises(ValueError, match="out"):
        kernel.attend(q2, 16, inputs["keys_t"], inputs["values"], None, inputs["lengths"], seg, 0.25,
                      np.empty((4, 31), np.float32), 1)


CONFIGS = [
    FlipConfig("tiny-like", channels=64, layers=1, head_size=16, avg_num_tokens=96),
    FlipConfig("wide-heads", channels=128, layers=1, head_size=64, avg_num_tokens=96),  # folded query + key bias
]


def _model_and_memory(config):
    model = random_model(config, 1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=g) * 0.2)
        lengths = [37, 20, 5]
        latent = torch.randn(3, 37, config.channels, generator=g)
        embedding = torch.randn(3, 37, 2, generator=g) * 2
        position = torch.tensor([[0.1, -0.2, 0.3, 0.2, 0.8, 0.6], [-0.4, 0.3, 0.05, 0.02, 1.0, 0.0],
                                 [0.0, 0.1, 0.2, 0.5, 0.3, -0.9]])
        memory = model.mask_extractor.prepare(latent, embedding, position, lengths)
    return model, memory


def _counting(monkeypatch):
    calls = []
    kernel = native_attention._native

    class Counting:
        KEY_BLOCK = kernel.KEY_BLOCK if kernel is not None else 16

        @staticmethod
        def supported():
            return kernel.supported()

        @staticmethod
        def attend(*args):
            calls.append(args[0].shape)
            return kernel.attend(*args)

    monkeypatch.setattr(native_attention, "_native", Counting)
    return calls


@needs_kernel
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_fast_path_uses_the_kernel_and_equals_its_sdpa_code(config, monkeypatch):
    model, memory = _model_and_memory(config)
    g = torch.Generator().manual_seed(3)
    embedding = (torch.rand(400, 2, generator=g) * 12 - 6).clamp(-5, 5)
    segments = [(1, 120), (0, 200), (2, 30), (1, 0), (0, 50)]
    extractor = model.mask_extractor
    with torch.no_grad():
        reference = extractor.embedding_logits(memory, embedding, segments)
        monkeypatch.setattr(native_attention, "ENABLED", False)
        sdpa = fast_decoder.fast_embedding_logits(extractor, ObjectMemory(memory.keys, memory.values,
                                                                          memory.position, memory.lengths),
                                                  embedding, segments)
        monkeypatch.setattr(native_attention, "ENABLED", True)
        calls = _counting(monkeypatch)
        native = fast_decoder.fast_embedding_logits(extractor, memory, embedding, segments)
    assert calls == [(400, 32 if config.name == "wide-heads" else 64)]  # one call for the whole chunk
    scale = reference.abs().max()
    assert (native - sdpa).abs().max() <= 1e-5 * scale
    assert (native - reference).abs().max() <= 1e-5 * scale


def test_fallback_without_the_extension_gives_the_same_logits(monkeypatch):
    """With the extension missing the fast path and the encoder take the SDPA code: same results."""
    model, memory = _model_and_memory(CONFIGS[0])
    g = torch.Generator().manual_seed(4)
    embedding = torch.rand(300, 2, generator=g) * 8 - 4
    segments = [(0, 100), (2, 100), (1, 100)]
    tokens = torch.randn(2, 9, 64, generator=g)
    token_embedding = torch.randn(2, 9, 2, generator=g)
    mask = (torch.arange(9)[None, :] < torch.tensor([9, 6])[:, None])[:, None, None, :]
    layer = model.layers[0]
    with torch.no_grad():
        default = fast_decoder.fast_embedding_logits(model.mask_extractor, memory, embedding, segments)
        encoded = layer(tokens, token_embedding, mask)
        monkeypatch.setattr(native_attention, "_native", None)
        assert not native_attention.available()
        fallback = fast_decoder.fast_embedding_logits(
            model.mask_extractor, ObjectMemory(memory.keys, memory.values, memory.position, memory.lengths),
            embedding, segments)
        encoded_fallback = layer(tokens, token_embedding, mask)
    torch.testing.assert_close(fallback, default, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(encoded_fallback, encoded, rtol=1e-5, atol=1e-5)


@needs_kernel
def test_encoder_uses_the_kernel(monkeypatch):
    model, _ = _model_and_memory(CONFIGS[0])
    calls = _counting(monkeypatch)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        model.layers[0](torch.randn(2, 9, 64, generator=g), torch.randn(2, 9, 2, generator=g), None)
    assert calls == [(18, 64)]


def test_environment_variable_switches_the_kernel_off():
    env = {**os.environ, "FLIPBENCH_NATIVE_ATTENTION": "0"}
    proc = subprocess.run([sys.executable, "-c", "from benchmark.flip import native_attention as n; "
                           "print(n.ENABLED)"], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_bench_flip_counts_the_same_gflop_with_and_without_the_kernel():
    """The FLOP counter cannot see the kernel: bench flip counts on the SDPA code, so --no-native prints the same
    GFLOP; the output says which attention ran, and --no-native leaves the switch as it found it."""
    from click.testing import CliRunner

    from benchmark.commands.bench_cmd import bench_cmd

    args = ["flip", "--model", "flip-test", "--no-dataset", "--sizes", "40", "--objects", "2", "--modes", "window",
            "--repeat", "1", "--no-import-time"]
    outputs = {}
    for flag in ([], ["--no-native"]):
        result = CliRunner().invoke(bench_cmd, args + flag)
        assert result.exit_code == 0, result.output
        row = next(line for line in result.output.splitlines() if " window " in line)
        outputs[bool(flag)] = (row.split()[-3], result.output)  # the GFLOP column
    assert native_attention.ENABLED
    assert outputs[True][0] == outputs[False][0] and float(outputs[True][0]) > 0
    assert "attention: PyTorch SDPA (native kernel switched off)" in outputs[True][1]
    expected = "attention: native kernel" if native_attention.available() else "attention: PyTorch SDPA"
    assert expected in outputs[False][1]
