"""The open-vocabulary blocks of ``baselines/openvocab`` against the official code.

Each fixture in ``tests/data/openvocab/`` was made by running the authors' own code on CPU with seeded random weights
at a tiny configuration (``tests/data/openvocab/make_*.py``; provenance in ``tests/data/README.md``): SCLIP's
correlative self-attention (wangf3014/SCLIP), ProxyCLIP's proxy attention (mc-lan/ProxyCLIP), FSA's feedback
self-adaptive attention (chi-chi-zx/FSA) and LoftUp's upsampler (andrehuang/loftup). The blocks here run on
open_clip's modules (batch-first) loaded with the same weights and must give the official outputs within 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import baselines.torchvision_compat  # noqa: F401  (open_clip imports torchvision)
from baselines.openvocab.fsa import LAMBDA, fsa_proxy_attention, kl_similarity, sparse_top_p
from baselines.openvocab.loftup import LoftUp
from baselines.openvocab.proxy_attention import (
    BETA, GAMMA, interpolate_pos_embed, proxy_attention, proxy_values, vfm_affinity,
)
from baselines.openvocab.sclip_attention import sclip_last_block

DATA = Path(__file__).parent / "data" / "openvocab"
TOL = 1e-4


def _reference(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / name) as ref:
        return {k: ref[k] for k in ref.files}


def _weights(ref: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k[2:]: torch.from_numpy(v) for k, v in ref.items() if k.startswith("w/")}


def _open_clip_transformer():
    """open_clip's transformer module (the SCLIP / ProxyCLIP / FSA tests run the blocks on its modules)."""
    return pytest.importorskip("open_clip.transformer", reason="open-clip-torch is not installed")


def _open_clip_visual(ref, act_layer: str) -> torch.nn.Module:
    """open_clip's ``VisionTransformer`` at the fixture's configuration, loaded strictly with the official weights."""
    img, patch, width, layers, heads, out_dim = (int(v) for v in ref["config"])
    oc = _open_clip_transformer()
    act = oc.QuickGELU if act_layer == "quickgelu" else torch.nn.GELU
    visual = oc.VisionTransformer(
        image_size=img, patch_size=patch, width=width, layers=layers, heads=heads, mlp_ratio=4.0,
        output_dim=out_dim, act_layer=act).eval()
    visual.load_state_dict(_weights(ref), strict=True)
    return visual


def _tokens_before_last_block(visual, images: torch.Tensor) -> torch.Tensor:
    """open_clip's stream entering the last block, ``[N, 1 + h*w, C]`` (what the pipelines feed the blocks)."""
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = visual.ln_pre(visual.patch_dropout(torch.cat([cls, x], dim=1) + visual.positional_embedding))
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    return x


def _max_diff(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().numpy() - b).max())


# ---------------------------------------------------------------- SCLIP


@pytest.fixture(scope="module")
def sclip():
    ref = _reference("sclip_official_reference.npz")
    return ref, _open_clip_visual(ref, "quickgelu")


def test_sclip_last_block_equals_the_official_block(sclip):
    ref, visual = sclip
    with torch.no_grad():
        out = sclip_last_block(visual.transformer.resblocks[-1], torch.from_numpy(ref["block_in"]))
    assert _max_diff(out, ref["block_out"]) < TOL
    assert np.abs(ref["block_out"] - ref["block_in"]).max() > 0.1  # the block changes its input


def test_sclip_dense_features_through_open_clip_equal_the_official_forward(sclip):
    """Blocks 0..L-2 of open_clip (batch-first) give the official stream; SCLIP's block, ln_post and proj its output."""
    ref, visual = sclip
    with torch.no_grad():
        x = _tokens_before_last_block(visual, torch.from_numpy(ref["images"]))
        assert _max_diff(x, ref["block_in"]) < TOL
        out = visual.ln_post(sclip_last_block(visual.transformer.resblocks[-1], x)) @ visual.proj
    assert _max_diff(out, ref["final"]) < TOL
    with torch.no_grad():  # and plain CLIP's last block differs: the fixture does test the modified attention
        plain = visual.ln_post(visual.transformer.resblocks[-1](x)) @ visual.proj
    assert _max_diff(plain, ref["final"]) > 0.01


# ---------------------------------------------------------------- ProxyCLIP and FSA


@pytest.fixture(scope="module", params=["proxyclip", "fsa"])
def proxy(request):
    ref = _reference(f"{request.param}_official_reference.npz")
    return request.param, ref, _open_clip_visual(ref, "gelu")


def _proxy_block(kind, ref, visual, x):
    block = visual.transformer.resblocks[-1]
    vfm = torch.from_numpy(ref["vfm_feats"])
    grid = int(round((x.shape[1] - 1) ** 0.5))
    if kind == "proxyclip":
        return proxy_attention(block, x, vfm, (grid, grid))
    text = torch.from_numpy(ref["text_features"])
    return fsa_proxy_attention(block, x, vfm, (grid, grid), text, visual.ln_post, visual.proj)


def test_official_hyperparameters_are_the_defaults(proxy):
    kind, ref, _ = proxy
    assert (BETA, GAMMA) == (float(ref["beta"]), float(ref["gamma"])) == (1.2, 3.0)
    if kind == "fsa":
        assert LAMBDA == float(ref["lamda"]) == 3.0


def test_proxy_block_equals_the_official_custom_attn(proxy):
    """ProxyCLIP's proxy attention / FSA's feedback on the official last-block input give ``custom_attn``'s output."""
    kind, ref, visual = proxy
    with torch.no_grad():
        out = _proxy_block(kind, ref, visual, torch.from_numpy(ref["block_in"]))
    assert out.shape == ref["attn_out"].shape == (2, 64, 32)  # the VFM's 8x8 grid, no CLS
    assert _max_diff(out, ref["attn_out"]) < TOL


def test_proxy_dense_features_through_open_clip_equal_the_official_forward(proxy):
    """Images -> open_clip blocks 0..L-2 (batch of two; the official runs one at a time) -> block -> ln_post, proj."""
    kind, ref, visual = proxy
    with torch.no_grad():
        x = _tokens_before_last_block(visual, torch.from_numpy(ref["images"]))
        assert _max_diff(x, ref["block_in"]) < TOL
        out = visual.ln_post(_proxy_block(kind, ref, visual, x)) @ visual.proj
    assert _max_diff(out, ref["final"]) < TOL
    assert np.abs(ref["final"]).max() > 0.5


def test_fsa_changes_proxyclip_output():
    """The FSA fixture differs from the ProxyCLIP one by FSA's feedback alone (same weights and inputs)."""
    proxy_ref, fsa_ref = (_reference(f"{k}_official_reference.npz") for k in ("proxyclip", "fsa"))
    for key in ("images", "vfm_feats", "block_in", "w/proj"):
        np.testing.assert_array_equal(proxy_ref[key], fsa_ref[key])
    assert np.abs(proxy_ref["final"] - fsa_ref["final"]).max() > 0.1


def test_fsa_kl_similarity_and_top_p_by_hand():
    """The rearranged KL and the top-p cut on a case computed by hand (FSA's equations)."""
    p = torch.tensor([[[0.5, 0.5], [0.9, 0.1]]])
    kl_01 = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    kl_10 = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    expected = 1.0 / (1.0 + np.array([[0.0, kl_01], [kl_10, 0.0]]))
    np.testing.assert_allclose(kl_similarity(p)[0].numpy(), expected, atol=1e-6)
    # softmax of (3, 2, 1, 0) = (0.644, 0.237, 0.087, 0.032): cumulative 0.644 > 0.45 -> only the first is kept;
    # p = 0.9 keeps the first two (0.881), not the third (0.968)
    row = torch.tensor([[[1.0, 3.0, 0.0, 2.0]]])
    inf = float("-inf")
    assert sparse_top_p(row, 0.45).tolist() == [[[inf, 3.0, inf, inf]]]
    assert sparse_top_p(row, 0.9).tolist() == [[[inf, 3.0, inf, 2.0]]]


def test_vfm_affinity_by_hand():
    """Three VFM patches, two parallel and one orthogonal: S = [[1,1,0],[1,1,0],[0,0,1]], mean 5/9."""
    feats = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]]).reshape(1, 2, 1, 3)  # [N, C', H=1, W=3]
    s = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    logits = (s - 5 / 9 * 1.2) * 3.0  # 1 -> 1.0, 0 -> -2.0 (below 0: masked)
    expected = torch.where(logits < 0, float("-inf"), logits).softmax(-1)
    assert torch.allclose(vfm_affinity(feats)[0], expected)
    assert vfm_affinity(feats)[0].tolist() == [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]


def test_proxy_values_keep_a_non_square_grid_row_major():
    """On the CLIP grid itself (2x3, no resampling) the values are the patch tokens' value projections per head."""
    block = _open_clip_transformer().ResidualAttentionBlock(8, 2, batch_first=True).eval()
    x = torch.randn(1, 1 + 2 * 3, 8)
    with torch.no_grad():
        values = proxy_values(block, x, (2, 3), (2, 3))
        v = torch.nn.functional.linear(block.ln_1(x), block.attn.in_proj_weight[16:], block.attn.in_proj_bias[16:])
    assert values.shape == (1, 2, 6, 4)
    assert torch.allclose(values, v[:, 1:].reshape(1, 6, 2, 4).transpose(1, 2), atol=1e-6)


@pytest.mark.parametrize("source", ["dino", "clip"])
def test_interpolate_pos_embed_equals_the_official_resampling(source):
    """DINO's and ProxyCLIP's ``interpolate_pos_encoding`` (4x4 -> 6x6, 6x5, 3x7; 4x4 is returned unchanged)."""
    ref = _reference("pos_embed_official_reference.npz")
    pos = torch.from_numpy(ref[f"{source}_pos_embed"])  # DINO [1, 17, C], open_clip [17, C]
    for rows, cols in ref["targets"].tolist():
        out = interpolate_pos_embed(pos, (rows, cols))
        assert out.ndim == pos.ndim and out.shape[-2] == 1 + rows * cols
        expected = ref[f"{source}_{rows}x{cols}"].reshape(out.shape)
        assert _max_diff(out, expected) < TOL
        if (rows, cols) != (4, 4):
            assert np.abs(expected[..., 1:, :] - expected[..., 1:, :].mean()).max() > 0.5  # a real resampling


# ---------------------------------------------------------------- LoftUp


@pytest.fixture(scope="module")
def loftup():
    ref = _reference("loftup_official_reference.npz")
    model = LoftUp(dim=int(ref["dim"]), lr_size=4).eval()
    model.load_state_dict(_weights(ref), strict=True)
    return ref, model


def test_loftup_clip_state_dict_layout_equals_the_official_checkpoint_layout():
    """``LoftUp()`` has exactly the official ``loftup_clip`` model's keys and shapes (the haiwen/loftup-clip file)."""
    ref = _reference("loftup_official_reference.npz")
    ours = {k: ",".join(map(str, v.shape)) for k, v in LoftUp().state_dict().items()}
    assert ours == dict(zip(ref["clip_keys"].tolist(), ref["clip_shapes"].tolist()))
    assert "channelnorm.norm.weight" in ours and "upsampler.first_conv.2.running_var" in ours


@pytest.mark.parametrize("case", [0, 1])
@pytest.mark.parametrize("tile_pixels", [None, 60, 1])
def test_loftup_equals_the_official_upsampler(loftup, case, tile_pixels):
    """Same weights and inputs: the official output, in one band, in bands of 2 rows or of 1 row (exact halo)."""
    ref, model = loftup
    image, feats = (torch.from_numpy(ref[f"case{case}_{k}"]) for k in ("image", "feats"))
    with torch.no_grad():
        out = model(image, feats, tile_pixels=tile_pixels)
    assert out.shape == ref[f"case{case}_out"].shape == (1, feats.shape[1], *image.shape[-2:])
    assert _max_diff(out, ref[f"case{case}_out"]) < TOL


def test_loftup_batch_is_per_image(loftup):
    """Two images in one batch give each its own batch-of-one output (the official min/max pools the batch)."""
    ref, model = loftup
    image, feats = (torch.from_numpy(ref[f"case0_{k}"]) for k in ("image", "feats"))
    with torch.no_grad():
        out = model(torch.cat([image, image * 3 + 1]), torch.cat([feats, feats.flip(-1)]))
    assert _max_diff(out[:1], ref["case0_out"]) < TOL


def test_loftup_rejects_bad_shapes(loftup):
    _, model = loftup
    with pytest.raises(ValueError, match=r"feats must be \[1, 16, h, w\]"):
        model(torch.zeros(1, 3, 8, 8), torch.zeros(1, 15, 2, 2))
    with pytest.raises(ValueError, match=r"image must be \[N, 3, H, W\]"):
        model(torch.zeros(1, 4, 8, 8), torch.zeros(1, 16, 2, 2))


def test_loftup_checkpoint_loads_as_tensors(loftup, tmp_path):
    """A ``torch.save``d state dict in the official layout loads through the safe loader and strictly into LoftUp."""
    from baselines.safe_load import load_strict, load_tensors

    _, model = loftup
    path = tmp_path / "pytorch_model.bin"
    torch.save(model.state_dict(), path)
    fresh = LoftUp(dim=16, lr_size=4)
    load_strict(fresh, load_tensors(path), path, "LoftUp")
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
