"""Expected failures (bad input, missing files, mismatched runs) as one-line CLI errors, or full tracebacks under
``flipbench --debug`` (or ``FLIPBENCH_DEBUG=1``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click


def debug_enabled() -> bool:
    """True under ``flipbench --debug`` or with ``FLIPBENCH_DEBUG=1``."""
    if os.environ.get("FLIPBENCH_DEBUG", "") not in ("", "0"):
        return True
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


@contextmanager
def user_errors(*types: type[BaseException], message: Callable[[BaseException], str] = str) -> Iterator[None]:
    """Turn the given exception types into a :class:`click.ClickException` with ``message(exc)`` (exit status 1),
    unless debugging, where they propagate with their traceback."""
    try:
        yield
    except types as exc:
        if debug_enabled():
            raise
        raise click.ClickException(message(exc)) from exc
