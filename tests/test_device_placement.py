"""CUDA device placement, checked on a CPU-only machine with a simulated device.

:func:`fake_cuda` makes ``"cuda"`` a second device that lives in host memory: factories with ``device="cuda"``,
``Tensor.to("cuda")`` / ``.cuda()`` and ``Module.to("cuda")`` give :class:`FakeCuda` tensors (CPU tensors that
report ``cuda:0``); ``.cpu()`` / ``.to("cpu")`` give plain tensors back. Every torch function that mixes a FakeCuda
tensor with a CPU tensor of one or more dimensions raises :class:`DeviceMismatch`, as a CUDA kernel would (CUDA
accepts CPU tensors only as 0-dim scalars and as index tensors), and ``.numpy()`` of a FakeCuda raises like a CUDA
tensor. The arithmetic itself runs on the CPU, so outputs must equal a plain CPU run bit for bit.

What this cannot see: real CUDA kernels (numerics, TF32, SDPA backend choice), streams and asynchrony.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from _flip_inputs import PROMPTS, flip_image
from baselines.base import ObjectPrompt, WeightsInfo

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")


class DeviceMismatch(RuntimeError):
    pass


class FakeCuda(torch.Tensor):
    """A CPU tensor (``elem``) that reports device ``cuda:0``."""

    @staticmethod
    def __new__(cls, elem):
        r = torch.Tensor._make_wrapper_subclass(cls, elem.size(), strides=elem.stride(),
                                                storage_offset=elem.storage_offset(), dtype=elem.dtype,
                                                layout=elem.layout, device=CUDA, requires_grad=False)
        r.elem = elem
        return r

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # ops that bypass the function mode
        out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs or {}))
        return tree_map(lambda o: FakeCuda(o) if isinstance(o, torch.Tensor) else o, out)


def _unwrap(t):
    return t.elem if isinstance(t, FakeCuda) else t


def _is_cuda(device) -> bool:
    return isinstance(device, (str, torch.device)) and torch.device(device).type == "cuda"


_ON_WRAPPER = {torch.Tensor.device.__get__, torch.Tensor.is_cuda.__get__, torch.Tensor.is_cpu.__get__,
               torch.Tensor.requires_grad.__get__, torch.Tensor.is_leaf.__get__, torch.Tensor.grad_fn.__get__,
               torch.Tensor.grad.__get__, torch.Tensor.get_device, torch._has_compatible_shallow_copy_type}
_TO_SCALAR = {torch.Tensor.tolist, torch.Tensor.item, torch.Tensor.__bool__, torch.Tensor.__int__,
              torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.__len__}
_CROSS_DEVICE_OK = {torch.Tensor.copy_, torch.tensor, torch.as_tensor, torch.asarray, torch.Tensor.new_tensor}
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}


class _FakeCudaMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        fakes = [t for t in flat if isinstance(t, FakeCuda)]
        if func in _ON_WRAPPER:
            with torch._C.DisableTorchFunction():
                return func(*args, **kwargs)
        if func is torch.Tensor.to:
            return _to(args[0], *args[1:], **kwargs)
        if func is torch.Tensor.cuda:
            return args[0] if isinstance(args[0], FakeCuda) else FakeCuda(args[0].clone())
        if func is torch.Tensor.cpu:
            return _unwrap(args[0])
        if not fakes and not _is_cuda(kwargs.get("device")):
            return func(*args, **kwargs)
        if func in (torch.Tensor.numpy, torch.Tensor.__array__):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                            "to host memory first.")
        if func is torch.Tensor.requires_grad_:  # parameters of a moved module stay grad-free (inference only)
            return args[0]
        if func in _TO_SCALAR:
            return func(*tree_map(_unwrap, args), **kwargs)
        _check(func, args, kwargs)
        if func in _INDEXING:
            base, index = _unwrap(args[0]), tree_map(_unwrap, args[1])
            if func is torch.Tensor.__setitem__:
                base[index] = _unwrap(args[2])
                return None
            return FakeCuda(base[index]) if isinstance(args[0], FakeCuda) else base[index]
        to_cuda = _is_cuda(kwargs.get("device"))
        to_cpu = kwargs.get("device") is not None and not to_cuda
        if to_cuda:
            kwargs = dict(kwargs, device=CPU)
        originals = {id(_unwrap(t)): t for t in flat if isinstance(t, torch.Tensor)}
        out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        if to_cpu:
            return out

        def wrap(o):
            if isinstance(o, torch.Tensor) and not isinstance(o, FakeCuda):
                return originals[id(o)] if id(o) in originals else FakeCuda(o)
            return o
        return tree_map(wrap, out)


def _check(func, args, kwargs) -> None:
    """Raise like a CUDA kernel given a CPU tensor that is neither 0-dim nor an index."""
    if func in _CROSS_DEVICE_OK:
        return
    tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
    if func in _INDEXING:
        indices = {id(t) for t in tree_flatten(args[1])[0] if isinstance(t, torch.Tensor)}
        if not isinstance(args[0], FakeCuda):
            if any(isinstance(t, FakeCuda) for t in tensors if id(t) in indices):
                raise DeviceMismatch("indices should be either on cpu or on the same device as the indexed tensor")
            return
        tensors = [t for t in tensors if id(t) not in indices]
    plain = [t for t in tensors if not isinstance(t, FakeCuda) and t.dim() > 0]
    if plain and (_is_cuda(kwargs.get("device")) or len(plain) < len(tensors)):
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
        raise DeviceMismatch(f"{name}: cuda tensors mixed with cpu tensors of shapes {[tuple(t.shape) for t in plain]}")


def _to(t, *args, **kwargs):
    device, dtype, _non_blocking, _memory_format = torch._C._nn._parse_to(*args, **kwargs)
    base = _unwrap(t)
    out = base.to(dtype=dtype) if dtype is not None else base
    if device is None:
        return t if out is base else (FakeCuda(out) if isinstance(t, FakeCuda) else out)
    if device.type == "cuda":
        if isinstance(t, FakeCuda) and out is base:
            return t
        return FakeCuda(out.clone() if out is base else out)
    return out


@contextlib.contextmanager
def fake_cuda():
    lazy_init = torch.cuda._lazy_init
    overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.cuda._lazy_init = lambda: None  # a "cuda" factory initialises CUDA first
    torch.__future__.set_overwrite_module_params_on_conversion(True)  # Module.to then makes FakeCuda parameters
    try:
        with _FakeCudaMode():
            yield
    finally:
        torch.cuda._lazy_init = lazy_init
        torch.__future__.set_overwrite_module_params_on_conversion(overwrite)


@pytest.fixture
def syncs(monkeypatch):
    """Record ``torch.cuda.synchronize`` calls (the stage timers synchronise a CUDA device)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    return calls


# -- the harness itself ----------------------------------------------------------------------------------------
def test_harness_flags_what_cuda_rejects():
    with fake_cuda():
        x = torch.arange(4, device="cuda")
        assert isinstance(x, FakeCuda) and x.device.type == "cuda"
        assert (x * 2 + torch.tensor(3)).tolist() == [3, 5, 7, 9]  # 0-dim CPU tensors are fine
        with pytest.raises(DeviceMismatch):
            x + torch.arange(4)
        with pytest.raises(TypeError, match="numpy"):
            x.numpy()
        y = torch.zeros(4, 3, device="cuda")
        y[torch.tensor([0, 2])] = torch.ones(3, device="cuda")  # CPU index tensors are fine
        assert y.cpu().sum().item() == 6 and type(y.cpu()) is torch.Tensor
        with pytest.raises(DeviceMismatch):
            torch.zeros(3)[torch.tensor([0], device="cuda")]
        layer = torch.nn.Linear(3, 2).to("cuda")
        assert isinstance(layer.weight, FakeCuda)
        with pytest.raises(DeviceMismatch):
            layer(torch.ones(5, 3))


# -- FLIP ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["window", "full", "hierarchical"])
def test_flip_predictor_on_cuda_keeps_every_tensor_on_the_device(mode, syncs):
    from benchmark.flip.predictor import build_flip_test

    cpu = build_flip_test()
    cpu.mode, image = mode, flip_image()
    cpu.set_image(image)
    expected = cpu.predict(PROMPTS)
    with fake_cuda():
        cuda = build_flip_test(device="cuda")
        assert cuda.device == "cuda" and all(isinstance(p, FakeCuda) for p in cuda.model.parameters())
        cuda.mode = mode
        cuda.set_image(image)
        got = cuda.predict(PROMPTS)
    assert all(isinstance(m, np.ndarray) and m.dtype == bool for m in got)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert set(cuda.timer.pop()) == {"preprocess", "encoder", "decoder", "postprocess"}
    assert len(syncs) == 8  # before and after each of the four stages


def test_harness_catches_a_tensor_created_without_device(monkeypatch, syncs):
    import benchmark.flip.inference as inference
    from benchmark.flip.predictor import build_flip_test

    full_grid = inference.full_grid
    monkeypatch.setattr(inference, "full_grid", lambda height, width, device: full_grid(height, width, "cpu"))
    with fake_cuda():
        predictor = build_flip_test(device="cuda")
        predictor.mode = "full"
        predictor.set_image(flip_image())
        with pytest.raises(DeviceMismatch):
            predictor.predict(PROMPTS[:1])


def test_torch_patch_extractor_on_cuda():
    from benchmark.flip.sampler_torch import extract_patches_torch, model_frame_coords_torch

    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8))
    centres = torch.tensor([[20.0, 30.0], [40.5, 11.25], [8.0, 8.0]])
    expected = extract_patches_torch(image, centres, 8)
    with fake_cuda():
        for check in (True, False):
            got = extract_patches_torch(image.cuda(), centres, 8, check=check)  # centres follow the image
            assert isinstance(got, FakeCuda) and torch.equal(got.cpu(), expected)
        assert model_frame_coords_torch(centres.cuda(), 64, 80).device.type == "cuda"
        with pytest.raises(ValueError, match="outside the image"):
            extract_patches_torch(image.cuda(), torch.tensor([[1.0, 1.0]]), 8)


def test_bench_flip_cli_on_cuda(monkeypatch, syncs):
    from click.testing import CliRunner

    from benchmark.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with fake_cuda():
        result = CliRunner().invoke(main, ["bench", "flip", "--model", "flip-test", "--sizes", "48", "--no-dataset",
                                           "--objects", "2", "--device", "cuda"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "device cuda" in result.output and syncs


# -- box baselines ---------------------------------------------------------------------------------------------
def _box_prompts():
    return [ObjectPrompt(np.asarray(b, np.float64), np.zeros(5, np.float32)) for b in ([10, 20, 100, 90],
                                                                                      [0, 0, 159, 119])]


def _small_efficientsam():
    from baselines.efficientsam.modeling import ImageEncoder, build_efficient_sam

    torch.manual_seed(0)
    model = build_efficient_sam("efficientsam-t")
    model.image_encoder = ImageEncoder(embed_dim=32, num_heads=2, depth=1)
    return model.eval()


def _tiny_sam():
    pytest.importorskip("baselines.sam", exc_type=ImportError)
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    dim = 32
    return Sam(
        image_encoder=ImageEncoderViT(img_size=1024, patch_size=16, embed_dim=dim, depth=1, num_heads=2,
                                      out_chans=dim, window_size=14),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                                     mask_in_chans=4),
        mask_decoder=MaskDecoder(transformer_dim=dim,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
                                 iou_head_depth=2, iou_head_hidden_dim=dim),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def _efficientsam(device):
    from baselines.efficientsam.predictor import EfficientSamPredictor

    return EfficientSamPredictor(_small_efficientsam(), WeightsInfo("random-init", "test"), device)


def _sam(device):
    pytest.importorskip("baselines.sam", exc_type=ImportError)  # imports the torchvision shim first
    from segment_anything.utils.transforms import ResizeLongestSide

    from baselines.sam import SamBoxPredictor

    return SamBoxPredictor(_tiny_sam(), ResizeLongestSide(1024), WeightsInfo("random-init", "test"), device)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
@pytest.mark.parametrize("make", [_efficientsam, _sam], ids=["efficientsam", "sam"])
def test_box_predictors_on_cuda(make, syncs):
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    cpu = make("cpu")
    cpu.set_image(image)
    expected = cpu.predict(_box_prompts())
    with fake_cuda():
        cuda = make("cuda")
        cuda.set_image(image)
        got = cuda.predict(_box_prompts())
    assert all(isinstance(m, np.ndarray) and np.array_equal(a, m) for a, m in zip(expected, got))
    assert syncs
