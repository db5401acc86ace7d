"""Parent-side handles on render worker processes (``worker.py``), multiplexed into one event queue."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["WorkerProcess"]


class WorkerProcess:
    """One ``python -m objascale.generator.worker`` subprocess. Its protocol events arrive on ``events`` as
    ``(worker_id, message)``; when the process ends, ``(worker_id, {"event": "exit", "code": rc})``."""

    def __init__(self, wid: int, init: dict[str, Any], log_path: Path, events: "queue.Queue") -> None:
        self.wid = wid
        self.busy: tuple[int, int] | None = None  # (image, attempt) being rendered
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "objascale.generator.worker", str(log_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1, env=env,
        )
        self._events = events
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.send(init)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                self._events.put((self.wid, json.loads(line)))
            except json.JSONDecodeError:
                continue
        self._events.put((self.wid, {"event": "exit", "code": self.proc.wait()}))

    def send(self, msg: dict[str, Any]) -> bool:
        """Send one command; False when the process is gone."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def render(self, index: int, first_attempt: int) -> bool:
        self.busy = (index, first_attempt)
        return self.send({"cmd": "render", "index": index, "first_attempt": first_attempt})

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to quit; kill it if it does not within ``timeout`` seconds."""
        if self.proc.poll() is None:
            self.send({"cmd": "quit"})
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
