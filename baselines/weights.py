"""Checkpoint catalogue, cache directory, lookup, download and verification.

Checkpoints live in ``$FLIPBENCH_HOME`` (default ``~/.cache/flipbench``) under their official file names.
``flipbench weights list|download NAME|verify`` manages them. Code that needs a checkpoint calls
:func:`find_checkpoint` (returns ``None`` when absent) or :func:`require_checkpoint` (raises
:class:`MissingCheckpointError` whose message says exactly what to download and where to put it).

:data:`CATALOG` maps a model registry name to its :class:`WeightFile`. The baseline entries are below; FLIP's
are added by :mod:`benchmark.flip.weights_catalog` on import (:func:`full_catalog` imports every provider).
Sizes and SHA-256 digests: the publishers (Meta, the MobileSAM / EfficientSAM / FastSAM authors) publish none;
the values here are the digests of the official files as recorded independently by many public projects
(``None`` where no reliable value was found; ``flipbench weights verify`` then prints the digest it computes).

Downloads stream into ``<name>.<pid>.part`` next to the target while hashing, within an overall deadline, check
size and digest (or, without a catalogued digest, the file's structure by a tensors-only load), and only then
rename atomically onto the final name; on any failure the partial file and any archive are removed.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from baselines.fetch import DownloadError, fetch  # noqa: F401  (DownloadError: re-exported for callers)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightFile:
    """One downloadable checkpoint.

    model: registry name(s) it serves; filename: official file name in ``weights_home()``; url: official
    download URL; num_bytes / sha256: expected size and digest of the *downloaded* file, or None where no value
    is known (then ``verify`` reports the digest it computed instead of comparing); archive_member: when the
    URL is a zip archive, the member extracted to ``filename`` (the archive is removed after extraction);
    kind: what the file is, checked after a download without a catalogued digest (``"torch"`` tensor checkpoint,
    ``"ultralytics"`` pickled-module checkpoint, ``"onnx"`` graph, ``"safetensors"``); licence: the licence the
    publisher gives the file ("" where the catalogue does not record one).
    """

    model: str
    filename: str
    url: str
    num_bytes: int | None = None
    sha256: str | None = None
    note: str = ""
    archive_member: str | None = None
    kind: str = "torch"
    licence: str = ""


_SAM = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM21 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_ESAM = "https://github.com/yformer/EfficientSAM/raw/main/weights/"
_ULTRA = "https://github.com/ultralytics/assets/releases/download/v8.4.0/"
_HF = "https://huggingface.co/"
#: hub revision of the EoMT checkpoints (a branch; replace by a commit hash to pin the files)
EOMT_REVISION = "main"

#: registry name -> checkpoint; the FLIP module adds its entries with ``CATALOG.update``
CATALOG: dict[str, WeightFile] = {
    "sam-h": WeightFile(
        "sam-h", "sam_vit_h_4b8939.pth", _SAM + "sam_vit_h_4b8939.pth", 2_564_550_879,
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", "SAM ViT-H (md5 4b8939...)",
    ),
    "sam-l": WeightFile(
        "sam-l", "sam_vit_l_0b3195.pth", _SAM + "sam_vit_l_0b3195.pth", 1_249_524_607,
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", "SAM ViT-L (md5 0b3195...)",
    ),
    "sam-b": WeightFile(
        "sam-b", "sam_vit_b_01ec64.pth", _SAM + "sam_vit_b_01ec64.pth", 375_042_383,
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", "SAM ViT-B (md5 01ec64...)",
    ),
    "mobilesam": WeightFile(
        "mobilesam", "mobile_sam.pt", "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        40_728_226, "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        "MobileSAM (TinyViT encoder + SAM decoder); also an ultralytics asset",
    ),
    "efficientsam-t": WeightFile(
        "efficientsam-t", "efficient_sam_vitt.pt", _ESAM + "efficient_sam_vitt.pt",
        note="EfficientSAM-Ti, from the yformer/EfficientSAM repository (no published size/digest)",
    ),
    "efficientsam-s": WeightFile(
        "efficientsam-s", "efficient_sam_vits.pt", _ESAM + "efficient_sam_vits.pt.zip",
        note="EfficientSAM-S, shipped zipped in the yformer/EfficientSAM repository (no published size/digest)",
        archive_member="efficient_sam_vits.pt",
    ),
    "fastsam-s": WeightFile(
        "fastsam-s", "FastSAM-s.pt", _ULTRA + "FastSAM-s.pt",
        note="FastSAM-s (YOLOv8s-seg) as repackaged by ultralytics; the authors' Google-Drive file is the same model",
        kind="ultralytics",
    ),
    "fastsam-x": WeightFile(
        "fastsam-x", "FastSAM-x.pt", _ULTRA + "FastSAM-x.pt",
        note="FastSAM-x (YOLOv8x-seg, the authors' FastSAM.pt) as repackaged by ultralytics",
        kind="ultralytics",
    ),
    "sam2.1-t": WeightFile(
        "sam2.1-t", "sam2.1_hiera_tiny.pt", _SAM21 + "sam2.1_hiera_tiny.pt", 156_008_466,
        "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69", "SAM 2.1 Hiera-T",
    ),
    "sam2.1-s": WeightFile(
        "sam2.1-s", "sam2.1_hiera_small.pt", _SAM21 + "sam2.1_hiera_small.pt", None,
        "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38", "SAM 2.1 Hiera-S",
    ),
    "sam2.1-b+": WeightFile(
        "sam2.1-b+", "sam2.1_hiera_base_plus.pt", _SAM21 + "sam2.1_hiera_base_plus.pt", 323_606_802,
        "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5", "SAM 2.1 Hiera-B+",
    ),
    "sam2.1-l": WeightFile(
        "sam2.1-l", "sam2.1_hiera_large.pt", _SAM21 + "sam2.1_hiera_large.pt", 898_083_611,
        "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
        "SAM 2.1 Hiera-L; also the masks of sclip-sam2.1", licence="Apache-2.0",
    ),
    # EoMT (tue-mps, MIT licence): the transformers-format weights of the authors' Hugging Face repositories. The hub
    # revision is the branch EOMT_REVISION names; no commit hash, size or digest could be looked up when this entry was
    # written (offline), so `flipbench weights verify` prints the digest it computes: pin it with EOMT_REVISION.
    "eomt-l-640": WeightFile(
        "eomt-l-640", "coco_instance_eomt_large_640.safetensors",
        f"{_HF}tue-mps/coco_instance_eomt_large_640/resolve/{EOMT_REVISION}/model.safetensors",
        note="EoMT-L 640 px, COCO instance (DINOv2-L, 316.6 M parameters); transformers format", kind="safetensors",
    ),
    "eomt-l-1280": WeightFile(
        "eomt-l-1280", "coco_instance_eomt_large_1280.safetensors",
        f"{_HF}tue-mps/coco_instance_eomt_large_1280/resolve/{EOMT_REVISION}/model.safetensors",
        note="EoMT-L 1280 px, COCO instance (DINOv2-L); transformers format", kind="safetensors",
    ),
    # the text-prompted rows' components (baselines.openvocab). No publisher gives a size or digest for these files;
    # `flipbench weights verify` prints the digest it computes.
    "clip-vit-b16": WeightFile(
        "clip-vit-b16", "vit_base_patch16_clip_224.openai.safetensors",
        f"{_HF}timm/vit_base_patch16_clip_224.openai/resolve/main/open_clip_model.safetensors",
        note="OpenAI CLIP ViT-B/16 (QuickGELU) in open_clip's layout, the file open_clip itself fetches for "
             "('ViT-B-16', 'openai'): sclip, sclip-sam2.1, proxyclip, proxyclip-fsa. OpenAI's own ViT-B-16.pt "
             "(sha256 5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f, in its URL) is a TorchScript "
             "archive, which could only be read by running its code, so it is not used",
        kind="safetensors", licence="MIT (openai/CLIP)",
    ),
    "dino-vitb8": WeightFile(
        "dino-vitb8", "dino_vitbase8_pretrain.pth",
        "https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
        note="DINO ViT-B/8 backbone (facebookresearch/dino), the model ProxyCLIP and FSA load with "
             "torch.hub.load('facebookresearch/dino:main', 'dino_vitb8'); read here as tensors into timm's ViT: "
             "proxyclip, proxyclip-fsa. ProxyCLIP's code is under the NTU S-Lab License 1.0; the FSA repository "
             "carries no licence file",
        licence="Apache-2.0 (facebookresearch/dino)",
    ),
    "loftup-clip": WeightFile(
        "loftup-clip", "loftup-clip.bin", f"{_HF}haiwen/loftup-clip/resolve/main/pytorch_model.bin",
        note="LoftUp feature upsampler for CLIP ViT-B/16 (andrehuang/loftup's hubconf loftup_clip loads this file), "
             "read as tensors: sclip and sclip-sam2.1 with --upsampler loftup",
        licence="MIT (andrehuang/loftup)",
    ),
}

#: licences of the methods whose code flipbench re-implements without checkpoints of their own (``weights list``)
METHOD_LICENCES: tuple[tuple[str, str], ...] = (
    ("sclip", "SCLIP (wangf3014/SCLIP): the repository carries no licence file"),
    ("proxyclip", "ProxyCLIP (mc-lan/ProxyCLIP): NTU S-Lab License 1.0 (its README; redistribution and use follow it)"),
    ("proxyclip-fsa", "FSA (chi-chi-zx/FSA): the repository carries no licence file; it builds on ProxyCLIP "
                      "(NTU S-Lab License 1.0)"),
    ("loftup", "LoftUp (andrehuang/loftup): MIT"),
)


#: modules that add their entries to CATALOG when imported (kept out of this module to avoid import cycles)
CATALOG_PROVIDERS = ("benchmark.flip.weights_catalog",)


def full_catalog() -> dict[str, WeightFile]:
    """:data:`CATALOG` after importing every :data:`CATALOG_PROVIDERS` module (FLIP's entries included)."""
    for module in CATALOG_PROVIDERS:
        importlib.import_module(module)
    return CATALOG


class MissingCheckpointError(FileNotFoundError):
    """A checkpoint is needed but not present; the message tells the user how to get it."""


class ChecksumMismatchError(RuntimeError):
    """A downloaded or cached file does not have the catalogued size or SHA-256."""


def weights_home() -> Path:
    return Path(os.environ.get("FLIPBENCH_HOME", Path.home() / ".cache" / "flipbench")).expanduser()


def sha256_of(path: Path, chunk: int = _CHUNK) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def catalog_entry(model: str) -> WeightFile:
    """The catalogue entry of ``model`` (providers included); KeyError listing the known names otherwise."""
    try:
        return full_catalog()[model]
    except KeyError:
        raise KeyError(f"no checkpoint catalogued for {model!r}; known: {', '.join(sorted(CATALOG))}") from None


def find_checkpoint(model: str, explicit: str | os.PathLike | None = None) -> Path | None:
    """The checkpoint of ``model``: ``explicit`` if given (must exist), else the cached official file."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise MissingCheckpointError(f"checkpoint {path} for {model!r} does not exist")
        return path.resolve()
    entry = CATALOG.get(model)
    if entry is None:
        return None
    path = weights_home() / entry.filename
    return path if path.is_file() else None


def require_checkpoint(model: str, explicit: str | os.PathLike | None = None) -> Path:
    path = find_checkpoint(model, explicit)
    if path is not None:
        return path
    entry = CATALOG.get(model)
    if entry is None:
        raise MissingCheckpointError(f"no checkpoint known for {model!r}; pass one as {model}:/path/to/file")
    raise MissingCheckpointError(
        f"checkpoint for {model!r} not found at {weights_home() / entry.filename}. "
        f"Run `flipbench weights download {model}` (fetches {entry.url}) or download it yourself into "
        f"{weights_home()} (set FLIPBENCH_HOME to use another directory), or pass {model}:/path/to/{entry.filename}."
    )


def _download_name(entry: WeightFile) -> str:
    return entry.url.rstrip("/").rsplit("/", 1)[-1] if entry.archive_member else entry.filename


#: slowest transfer rate the default deadline allows for (bytes/s), on top of :data:`DEADLINE_BASE_S`
DEADLINE_MIN_RATE = 200_000
DEADLINE_BASE_S = 300.0
#: default deadline when the catalogue does not know the size
DEADLINE_UNKNOWN_SIZE_S = 3600.0
#: a download of unknown size stops after this many bytes
MAX_UNKNOWN_BYTES = 8 << 30


def default_deadline(entry: WeightFile) -> float:
    """Seconds allowed for the whole download of ``entry``: 5 minutes plus the time at 200 kB/s for its size."""
    if entry.num_bytes is None:
        return DEADLINE_UNKNOWN_SIZE_S
    return DEADLINE_BASE_S + entry.num_bytes / DEADLINE_MIN_RATE


def _remove_stale_parts(home: Path, name: str) -> None:
    """Remove ``name.<pid>.part`` files left by download processes that no longer run."""
    for part in home.glob(f"{name}.*.part"):
        pid = part.name[len(name) + 1 : -len(".part")]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, OverflowError):  # no such process (a number beyond any pid: none either)
            part.unlink(missing_ok=True)
        except OSError:
            pass


def download(
    model: str,
    *,
    force: bool = False,
    timeout: float = 60.0,
    deadline: float | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download the checkpoint of ``model`` into :func:`weights_home` and return its path.

    Skips the download when the file is already there (unless ``force``). The transfer (:func:`baselines.fetch.fetch`)
    streams into ``<name>.<pid>.part`` while hashing, within ``deadline`` seconds in all (default
    :func:`default_deadline`) and ``timeout`` per connect/read; HTML pages, truncated and oversized bodies are
    refused. Size and SHA-256 are then checked against the catalogue (:class:`ChecksumMismatchError`); where the
    catalogue has no digest, the content is checked instead (:func:`check_content`: a tensors-only load, the zip
    or ONNX structure). Only then is the file renamed onto its final name (an archive is extracted, then
    removed). On any failure, partial files and archives are removed. ``file://`` URLs work too.
    """
    entry = catalog_entry(model)
    home = weights_home()
    target = home / entry.filename
    if target.is_file() and not force:
        return target
    home.mkdir(parents=True, exist_ok=True)
    downloaded = home / _download_name(entry)
    _remove_stale_parts(home, downloaded.name)
    part = downloaded.with_name(f"{downloaded.name}.{os.getpid()}.part")
    try:
        num_bytes, sha = fetch(
            entry.url, part, deadline=deadline or default_deadline(entry), timeout=timeout,
            expected_bytes=entry.num_bytes, max_bytes=entry.num_bytes or MAX_UNKNOWN_BYTES, progress=progress,
        )
        _check(entry, num_bytes, sha, source=entry.url)
        if entry.archive_member:
            _extract_member(part, entry.archive_member, target, entry)
        else:
            if entry.sha256 is None:
                check_content(entry, part, source=entry.url)
            os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return target


def check_content(entry: WeightFile, path: Path, source: str) -> None:
    """For files without a catalogued digest: check that ``path`` is what ``entry`` says it is (``entry.kind``):
    a tensors-only checkpoint (``"torch"``), an ultralytics checkpoint (``"ultralytics"``: its module tensors) or
    a self-contained ONNX graph (``"onnx"``). Raises :class:`ChecksumMismatchError` naming ``source``."""
    from baselines import safe_load

    readers = {"torch": safe_load.load_tensors, "ultralytics": safe_load.load_module_tensors,
               "safetensors": _load_safetensors,
               "onnx": safe_load.load_onnx_model}
    try:
        readers[entry.kind](path)
    except safe_load.CheckpointError as err:
        raise ChecksumMismatchError(f"{source}: the downloaded file is not a usable {entry.filename}: {err}") from None


def _check(entry: WeightFile, num_bytes: int, sha256: str, source: str) -> None:
    if entry.num_bytes is not None and num_bytes != entry.num_bytes:
        raise ChecksumMismatchError(
            f"{source}: got {num_bytes} bytes, expected {entry.num_bytes} for {entry.filename} "
            "(incomplete or wrong file)"
        )
    if entry.sha256 is not None and sha256 != entry.sha256:
        raise ChecksumMismatchError(f"{source}: SHA-256 {sha256} does not match the expected {entry.sha256}")


def _extract_member(archive: Path, member: str, target: Path, entry: WeightFile) -> None:
    """Extract the zip member named ``member`` of ``archive`` onto ``target`` (checked, then renamed); the archive
    is removed in every case."""
    part = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == member]
            if len(names) != 1:
                raise ChecksumMismatchError(
                    f"{entry.url}: the archive holds {len(names)} members named {member!r}, expected 1 "
                    f"(members: {', '.join(zf.namelist()[:10])})"
                )
            info = zf.getinfo(names[0])
            if info.file_size > MAX_UNKNOWN_BYTES:
                raise ChecksumMismatchError(f"{entry.url}: member {member} declares {info.file_size} bytes; refused")
            with zf.open(info) as src, open(part, "wb") as dst:  # zipfile checks the member's CRC-32 on read
                shutil.copyfileobj(src, dst, _CHUNK)
        if entry.sha256 is None:
            check_content(entry, part, source=entry.url)
        os.replace(part, target)
    except zipfile.BadZipFile as err:
        raise ChecksumMismatchError(f"{entry.url}: not a valid zip archive ({err})") from None
    finally:
        part.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify` for one model.

    status: ``"ok"`` (size and digest match), ``"unverified"`` (present, no catalogued digest to compare),
    ``"mismatch"`` or ``"missing"``; sha256 / num_bytes: computed from the file when present.
    """

    model: str
    path: Path
    status: str
    sha256: str | None = None
    num_bytes: int | None = None
    message: str = ""


def _load_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def verify(model: str) -> VerifyResult:
    """Hash the cached checkpoint of ``model`` and compare it with the catalogue."""
    entry = catalog_entry(model)
    path = weights_home() / entry.filename
    if not path.is_file():
        return VerifyResult(model, path, "missing", message=f"run `flipbench weights download {model}`")
    num_bytes, sha = path.stat().st_size, sha256_of(path)
    if entry.archive_member:  # catalogued size/digest are those of the archive, not of the extracted file
        return VerifyResult(model, path, "unverified", sha, num_bytes, "extracted from an archive; digest computed")
    try:
        _check(entry, num_bytes, sha, source=str(path))
    except ChecksumMismatchError as err:
        return VerifyResult(model, path, "mismatch", sha, num_bytes, str(err))
    if entry.sha256 is None:
        return VerifyResult(model, path, "unverified", sha, num_bytes, "no catalogued digest; computed one shown")
    return VerifyResult(model, path, "ok", sha, num_bytes)
