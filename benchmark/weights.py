"""Checkpoint catalogue, cache directory and lookup.

Checkpoints live in ``$FLIPBENCH_HOME`` (default ``~/.cache/flipbench``) under their official file names.
``flipbench weights list|download NAME|verify`` manages them. Code that needs a checkpoint calls
:func:`find_checkpoint` (returns ``None`` when absent) or :func:`require_checkpoint` (raises
:class:`MissingCheckpointError` whose message says exactly what to download and where to put it).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightFile:
    """One downloadable checkpoint.

    model: registry name(s) it serves; filename: official file name; url: official download URL;
    num_bytes / sha256: expected size and digest, or None where no official value is published (then
    ``verify`` reports the digest it computed instead of comparing).
    """

    model: str
    filename: str
    url: str
    num_bytes: int | None = None
    sha256: str | None = None
    note: str = ""


#: registry name -> checkpoint; filled by the baselines and FLIP modules' authors
CATALOG: dict[str, WeightFile] = {}


class MissingCheckpointError(FileNotFoundError):
    """A checkpoint is needed but not present; the message tells the user how to get it."""


def weights_home() -> Path:
    return Path(os.environ.get("FLIPBENCH_HOME", Path.home() / ".cache" / "flipbench")).expanduser()


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def find_checkpoint(model: str, explicit: str | os.PathLike | None = None) -> Path | None:
    """The checkpoint of ``model``: ``explicit`` if given (must exist), else the cached official file."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise MissingCheckpointError(f"checkpoint {path} for {model!r} does not exist")
        return path
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
