"""FLIP as a benchmark :class:`~baselines.base.Predictor`, and the registry builders ``build_flip_*``.

Per ``predict`` call (all prompts of the current image at once):

1. ``preprocess``: ``rho -> position`` (official arithmetic), seeded foveal patch sampling on the host
   (:mod:`benchmark.flip.sampler`), packing and upload of the patches;
2. ``encoder``: one transformer pass over every object's tokens (attention stays within an object);
3. ``decoder``: pixel queries in the chosen mode (:mod:`benchmark.flip.inference`), chunked, all objects
   together, by the fast pixel predictor (:mod:`benchmark.flip.fast_decoder`) or the reference
   (``implementation``), in ``precision`` fp32 or bf16;
4. ``postprocess``: masks to host memory as ``bool [H, W]`` numpy arrays.

On the CPU, steps 2-3 run PyTorch ops single-threaded and spread the query chunks over :attr:`num_threads` Python
threads instead (:func:`single_threaded_ops`): FLIP's ops are small (a few thousand rows of width 64), so the ops'
own parallel loops mostly synchronise, and on a busy machine each loop waits for its slowest core (measured on a
loaded 2-core machine: encoder 15 ms single-threaded vs 0.2-0.75 s with 2 threads, decoder up to 3x slower), while
independent chunks balance over whatever cores are free. The encoder's attention, where the native kernel computes
it (:mod:`benchmark.flip.native_attention`), runs on :attr:`num_threads` threads of the kernel's own (work items
handed out one by one, so a busy core delays only the item it holds). Masks do not depend on the thread count.

Weights lookup of the builders: explicit path (``.ckpt`` or ``.onnx``; one file of an ONNX pair brings the other)
> the catalogued official checkpoint in ``$FLIPBENCH_HOME`` > (flip-tiny only) the official demo ONNX graph
``flip-tiny-demo.onnx`` in ``$FLIPBENCH_HOME`` or the project's ``../shared/weights`` > the official ONNX pair
``flip-encoder-<size>.onnx`` + ``flip-predictor-<size>.onnx`` in ``$FLIPBENCH_HOME`` > random init when
``allow_random`` > :class:`MissingCheckpointError`.
"""

from __future__ import annotations

import os
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from baselines.base import ObjectPrompt, Predictor, WeightsInfo
from benchmark.flip import native_attention
from benchmark.flip.checkpoint import load_checkpoint
from benchmark.flip.config import FlipConfig, get_config
from benchmark.flip.encoder import FlipEncoder
from benchmark.flip.fast_decoder import PRECISIONS
from benchmark.flip.inference import MODES, default_chunk_size, model_position, predict_masks
from benchmark.flip.mask_decoder import IMPLEMENTATIONS
from benchmark.flip.onnx_import import load_onnx
from benchmark.flip.tokens import TokenBatch
from benchmark.flip.weights_catalog import DEMO_ONNX_FILENAME, FLIP_DEMO_ONNX, present_path
from baselines.timing import StageTimer
from baselines.weights import MissingCheckpointError, find_checkpoint, sha256_of, weights_home

def _check_fp32_reference(implementation: str, precision: str) -> None:
    """The reference pixel predictor runs in float32 only."""
    if implementation == "reference" and precision != "fp32":
        raise ValueError("the reference FLIP pixel predictor is fp32 only")


class FlipPredictor(Predictor):
    """Gaussian-prompted FLIP segmentation (prompt: ``ObjectPrompt.rho``; the box is not used).

    mode: ``"window"`` (default, official ``--optimized``), ``"full"`` or ``"hierarchical"``; num_tokens: sampler
    token budget (config default: ``avg_num_tokens``); coverage / max_overlap: sampler constants; window_sigmas:
    half-size of the window / refinement box in larger-sigma units; seed: run seed (see :meth:`prompt_seed`).
    ``last_input_tokens``: patch tokens each prompt of the last ``predict`` call received; ``num_threads``: CPU
    threads decoding query chunks (default: ``torch.get_num_threads()`` at construction); ``implementation``:
    ``"fast"`` (default) or ``"reference"`` pixel predictor (:mod:`benchmark.flip.fast_decoder`); ``precision``:
    ``"fp32"`` (default) or ``"bf16"`` (fast path only).
    """

    prompt_kinds = ("gaussian",)

    def __init__(self, model: FlipEncoder, weights: WeightsInfo, device: str | torch.device = "cpu",
                 mode: str = "window") -> None:
        super().__init__()
        self._device = torch.device(device)
        self.model = model.to(self._device).eval()
        self.config: FlipConfig = model.config
        self.timer = StageTimer(self._device)
        self.weights = weights
        self.mode = mode
        self.num_tokens = self.config.avg_num_tokens
        self.coverage = 1.44
        self.max_overlap = 2.67
        self.window_sigmas = 5.0
        self.seed = 0
        self.chunk_size = default_chunk_size(self.config, self._device)
        self.num_threads = torch.get_num_threads()
        self.last_input_tokens: list[int] | None = None
        self._image: np.ndarray | None = None

    # -- configuration ---------------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown FLIP inference mode {value!r}; expected one of {MODES}")
        self._mode = value

    @property
    def implementation(self) -> str:
        return self.model.mask_extractor.implementation

    @implementation.setter
    def implementation(self, value: str) -> None:
        if value not in IMPLEMENTATIONS:
            raise ValueError(f"unknown FLIP implementation {value!r}; expected one of {IMPLEMENTATIONS}")
        _check_fp32_reference(value, self.precision)
        self.model.mask_extractor.implementation = value

    @property
    def precision(self) -> str:
        return self.model.mask_extractor.precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise ValueError(f"unknown FLIP precision {value!r}; expected one of {tuple(PRECISIONS)}")
        _check_fp32_reference(self.implementation, value)
        self.model.mask_extractor.precision = value

    def configure(self, params) -> None:
        """Take the FLIP fields of an :class:`benchmark.evaluation.params.EvalParams`."""
        self.num_tokens = int(params.flip_num_tokens or self.config.avg_num_tokens)
        self.coverage = float(params.flip_coverage)
        self.max_overlap = float(params.flip_max_overlap)
        self.mode = params.flip_mode
        self.window_sigmas = float(params.flip_window_sigmas)
        self.precision = params.flip_precision
        self.seed = int(params.seed)

    def set_seed(self, seed: int) -> None:
        """Seed the patch sampling of the following ``predict`` calls."""
        self.seed = int(seed)

    def prompt_seed(self, prompt: ObjectPrompt) -> int:
        """Sampler seed of one prompt: a function of :attr:`seed` and the prompt's values only, so an object gets
        the same patches whether it is predicted alone or with others, in any order."""
        identity = zlib.crc32(np.asarray(prompt.rho, dtype=np.float32).tobytes()
                              + np.asarray(prompt.box_xyxy, dtype=np.float64).tobytes())
        state = np.random.SeedSequence([self.seed & 0xFFFFFFFF, identity]).generate_state(1, dtype=np.uint32)
        return int(state[0] >> 1)

    # -- Predictor -------------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return str(self._device)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def describe(self) -> dict:
        return {
            **super().describe(),
            "config": self.config.name,
            "mode": self.mode,
            "num_tokens": self.num_tokens,
            "coverage": self.coverage,
            "max_overlap": self.max_overlap,
            "window_sigmas": self.window_sigmas,
            "precision": self.precision,
        }

    def set_image(self, image: np.ndarray) -> None:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"FLIP expects a uint8 [H, W, 3] RGB image, got {image.dtype} {image.shape}")
        self._image = np.ascontiguousarray(image)

    def predict(self, prompts: Sequence[ObjectPrompt]) -> list[np.ndarray]:
        from benchmark.flip.sampler import rho_to_position, sample_patches_batch

        if self._image is None:
            raise RuntimeError("call set_image before predict")
        if not prompts:
            return []
        image = self._image
        height, width = image.shape[:2]
        with self.timer.stage("preprocess"):
            rho = np.stack([np.asarray(p.rho, dtype=np.float32).reshape(-1) for p in prompts])
            if rho.shape[1] != 5 or not np.isfinite(rho).all():
                raise ValueError(f"FLIP prompts need finite rho = [mu_x, mu_y, var_x, var_y, cov_xy]; got {rho}")
            positions = rho_to_position(rho)
            samples = sample_patches_batch(
                [image], positions, self.num_tokens, image_index=[0] * len(prompts),
                seeds=[self.prompt_seed(p) for p in prompts], patch_sizes=self.config.patch_sizes,
                coverage=self.coverage, max_overlap_threshold=self.max_overlap,
                num_threads=min(len(prompts), os.cpu_count() or 1),
            )
            position = model_position(torch.from_numpy(positions), height, width)
            batch = TokenBatch.from_samples(samples, position, self._device)
        on_cpu = self._device.type == "cpu"
        with torch.inference_mode(), single_threaded_ops(on_cpu):
            with self.timer.stage("encoder"), native_attention.threads(self.num_threads):
                memory = self.model.encode(batch)
            with self.timer.stage("decoder"):
                masks = predict_masks(self.model, memory, positions, height, width, self.mode, self.chunk_size,
                                      self.window_sigmas, workers=self.num_threads if on_cpu else 1)
        with self.timer.stage("postprocess"):
            result = list(masks.cpu().numpy())
        self.last_input_tokens = batch.tokens_per_object
        return result


@contextmanager
def single_threaded_ops(enabled: bool = True):
    """Run the enclosed PyTorch CPU ops single-threaded (``torch.set_num_threads(1)``), restoring the previous
    setting afterwards. The setting is process-wide: other threads' ops are affected meanwhile."""
    previous = torch.get_num_threads()
    if not enabled or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# -- builders --------------------------------------------------------------------------------------------------
def _demo_onnx() -> Path | None:
    return present_path(FLIP_DEMO_ONNX, weights_home())


def load_weights(path: str | os.PathLike, config: FlipConfig) -> FlipEncoder:
    """A model for ``config`` with the weights of a Lightning ``.ckpt`` or an official ``.onnx`` graph."""
    path = Path(path)
    return load_onnx(path, config) if path.suffix.lower() == ".onnx" else load_checkpoint(path, config)


def random_model(config: FlipConfig, seed: int = 0) -> FlipEncoder:
    """A randomly initialised model (deterministic for ``seed``; the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FlipEncoder(config).eval()


def _onnx_pair(name: str) -> Path | None:
    """The encoder file of the official ONNX pair of ``name`` when both files are in ``$FLIPBENCH_HOME``."""
    size = name.removeprefix("flip-")
    encoder, predictor = (weights_home() / f"flip-{part}-{size}.onnx" for part in ("encoder", "predictor"))
    return encoder.resolve() if encoder.is_file() and predictor.is_file() else None


def find_flip_weights(name: str, checkpoint: str | os.PathLike | None = None) -> Path | None:
    """The weights file ``build_flip`` would load for ``name``, or ``None`` (it would fall back to random or fail)."""
    path = find_checkpoint(name, checkpoint)
    if path is None and name == "flip-tiny":
        path = _demo_onnx()
    if path is None:
        path = _onnx_pair(name)
    return path


def build_flip(name: str, checkpoint: str | os.PathLike | None = None, device: str = "cpu",
               allow_random: bool = False) -> FlipPredictor:
    """The :class:`FlipPredictor` of the registered config ``name`` (weights lookup: see module docstring)."""
    config = get_config(name)
    path = find_flip_weights(name, checkpoint)
    if path is not None:
        model = load_weights(path, config)
        weights = WeightsInfo(kind="pretrained", source=str(path), sha256=sha256_of(path))
    elif allow_random or name == "flip-test":
        model = random_model(config)
        weights = WeightsInfo(kind="random-init", source=f"torch.manual_seed(0) init of {name}")
    else:
        hint = (f" or the demo graph {DEMO_ONNX_FILENAME} in {weights_home()} (`flipbench weights download "
                f"flip-tiny-demo`)" if name == "flip-tiny" else "")
        raise MissingCheckpointError(
            f"no weights for {name!r}: expected {weights_home() / f'{name}.ckpt'}{hint}. Run `flipbench weights "
            f"download {name}`, pass {name}:/path/to/{name}.ckpt (or .onnx), or allow random weights "
            f"(--allow-random-weights) for a timing-only run."
        )
    predictor = FlipPredictor(model, weights, device)
    predictor.name = name
    return predictor


def build_flip_tiny(checkpoint=None, device="cpu", allow_random=False) -> FlipPredictor:
    return build_flip("flip-tiny", checkpoint, device, allow_random)


def build_flip_small(checkpoint=None, device="cpu", allow_random=False) -> FlipPredictor:
    return build_flip("flip-small", checkpoint, device, allow_random)


def build_flip_middle(checkpoint=None, device="cpu", allow_random=False) -> FlipPredictor:
    return build_flip("flip-middle", checkpoint, device, allow_random)


def build_flip_large(checkpoint=None, device="cpu", allow_random=False) -> FlipPredictor:
    return build_flip("flip-large", checkpoint, device, allow_random)


def build_flip_test(checkpoint=None, device="cpu", allow_random=True) -> FlipPredictor:
    """Tiny FLIP (1 layer, 32 channels, 128 tokens) for tests and smoke runs; random weights unless given."""
    return build_flip("flip-test", checkpoint, device, allow_random)
