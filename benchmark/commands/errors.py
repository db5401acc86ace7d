"""Expected failures (bad input, missing files, mismatched runs, a full or read-only output) as one-line CLI errors,
or full tracebacks under ``flipbench --debug`` (or ``FLIPBENCH_DEBUG=1``)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

#: errno -> what the user can do, for a file system that refuses a write (full, over quota, read-only, no
#: permission): such an ``OSError`` is always a one-line error, whatever the command expects
OUTPUT_ERRNOS: dict[int, str] = {
    errno.ENOSPC: "free some space (or choose another --out) and run the command again",
    errno.EDQUOT: "free some space (or choose another --out) and run the command again",
    errno.EROFS: "the file system is read-only; choose a writable --out",
    errno.EACCES: "fix the permissions, or choose another location (e.g. another --out)",
    errno.EPERM: "fix the permissions, or choose another location (e.g. another --out)",
}


def debug_enabled() -> bool:
    """True under ``flipbench --debug`` or with ``FLIPBENCH_DEBUG=1``."""
    if os.environ.get("FLIPBENCH_DEBUG", "") not in ("", "0"):
        return True
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


def is_output_error(exc: BaseException) -> bool:
    """A write the file system refused (see :data:`OUTPUT_ERRNOS`)."""
    return isinstance(exc, OSError) and exc.errno in OUTPUT_ERRNOS


def output_error_message(exc: OSError) -> str:
    """``<file>: <reason>; <what to do>`` on one line (h5py and pyarrow put multi-line dumps in their texts)."""
    reason = exc.strerror or os.strerror(exc.errno)
    where = exc.filename if exc.filename is not None else None
    text = f"{where}: {reason}" if where is not None else " ".join(str(exc).split())
    return f"{text}; {OUTPUT_ERRNOS[exc.errno]}"


@contextmanager
def user_errors(*types: type[BaseException], message: Callable[[BaseException], str] = str) -> Iterator[None]:
    """Turn the given exception types into a :class:`click.ClickException` with ``message(exc)`` (exit status 1),
    unless debugging, where they propagate with their traceback. A refused write (:func:`is_output_error`) is
    always turned into one line naming the file."""
    try:
        yield
    except BaseException as exc:
        if debug_enabled():
            raise
        if is_output_error(exc):
            raise click.ClickException(output_error_message(exc)) from exc
        if isinstance(exc, types):
            raise click.ClickException(message(exc)) from exc
        raise
