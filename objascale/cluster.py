"""Ray cluster helpers shared by ``flipbench eval --ray`` and ``flipbench generate objascale --ray``.

Ray is an optional extra (``pip install -e ".[cluster]"``); nothing here imports it at module level. What a
cluster run assumes of its nodes:

* every node runs the same flipbench (installed the same way, e.g. from one shared checkout or image);
* inputs (datasets, HDRIs, object folders) and the generator's output directory are on a filesystem every node
  mounts at the same path: :func:`check_shared_path` checks it at start and names the node that cannot see it;
* token authentication: the driver needs ``RAY_AUTH_MODE=token`` and the cluster's token (``RAY_AUTH_TOKEN`` or
  ``~/.ray/auth_token``) when the cluster was started with it.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

__all__ = ["INSTALL_HINT", "ClusterError", "import_ray", "connect", "describe_cluster", "check_shared_path",
           "node_label"]

INSTALL_HINT = 'pip install -e ".[cluster]"'


class ClusterError(RuntimeError):
    """Ray is missing, the cluster cannot be reached, or a node cannot see a shared path."""


def import_ray():
    """The ``ray`` module, or :class:`ClusterError` saying how to install it."""
    try:
        import ray  # noqa: PLC0415
    except ImportError as exc:
        raise ClusterError(f"--ray needs Ray, which is not installed here ({exc}); install it with "
                           f"`{INSTALL_HINT}`") from None
    return ray


def connect(address: str):
    """Connect this process to the running cluster at ``address`` (``HOST:PORT``, or ``auto``: the cluster this
    machine belongs to, or ``$RAY_ADDRESS``). Returns the ``ray`` module; never starts a new cluster."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    except ConnectionError as exc:
        raise ClusterError(f"cannot reach a Ray cluster at {address!r}: {exc}. Start one with `ray start --head` "
                           "(and `ray start --address HEAD:PORT` on each worker node), or pass its HOST:PORT") from None
    except Exception as exc:  # noqa: BLE001 - ray's AuthenticationError and friends: one clear line
        if type(exc).__name__ == "AuthenticationError" or "token" in str(exc).lower():
            raise ClusterError(f"the Ray cluster at {address!r} refused this driver: {exc}. A cluster started with "
                               "token authentication needs RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN or "
                               "~/.ray/auth_token) here too") from None
        raise
    return ray


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast with a clear message when ``HOST:PORT`` does not accept connections (``ray.init`` would retry
    for minutes). ``auto`` and other address forms are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach a Ray cluster at {address!r}: {exc}. Start one with `ray start --head` "
                           "(and `ray start --address HEAD:PORT` on each worker node), or pass its HOST:PORT") from None


def node_label(node_id: str, address: str) -> str:
    """How a record names the node that produced it: ``IP/first 8 hex digits of the Ray node id``."""
    return f"{address}/{node_id[:8]}"


def describe_cluster() -> dict[str, Any]:
    """What ``run.json`` / a generation log records of the connected cluster: Ray version, alive nodes with their
    CPUs and GPUs, and the totals."""
    import ray  # noqa: PLC0415

    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources", {})
        nodes.append({"node": node_label(n["NodeID"], n.get("NodeManagerAddress", "?")),
                      "hostname": n.get("NodeManagerHostname"), "cpus": float(res.get("CPU", 0)),
                      "gpus": float(res.get("GPU", 0))})
    return {"ray_version": ray.__version__, "nodes": nodes, "num_nodes": len(nodes),
            "cpus": sum(n["cpus"] for n in nodes), "gpus": sum(n["gpus"] for n in nodes)}


def _probe(path: str, token: str | None) -> dict[str, Any]:
    """Runs on one node. With ``token``: read the driver's probe file in directory ``path`` and write one of our
    own; without: stat ``path`` (compared with the driver's)."""
    import ray  # noqa: PLC0415

    node = node_label(ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address())
    out: dict[str, Any] = {"node": node, "hostname": socket.gethostname(), "error": None, "stat": None}
    try:
        if token is None:
            st = os.stat(path)
            out["stat"] = None if os.path.isdir(path) else st.st_size
            return out
        probe = Path(path) / f".cluster-probe-{token}"
        if probe.read_text() != token:
            out["error"] = f"{probe} has other content (another filesystem mounted at the same path?)"
            return out
        mine = Path(path) / f".cluster-probe-{token}-{uuid.uuid4().hex[:8]}"
        mine.write_text(node)
        mine.unlink()
    except OSError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def check_shared_path(path: str | os.PathLike, *, write: bool, what: str) -> None:
    """Check that ``path`` is visible at the same path on every alive node: with ``write`` (a directory), that
    every node reads a file the driver wrote there and can write its own; without, that every node sees the same
    file (same size) or directory. :class:`ClusterError` names the first node that fails.
    ``what``: how the message names the path (e.g. ``"--out"``)."""
    import ray  # noqa: PLC0415
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415

    path = Path(path).resolve()
    token = uuid.uuid4().hex if write else None
    probe = path / f".cluster-probe-{token}"
    if write:
        probe.write_text(token)
    mine = None if write or path.is_dir() else path.stat().st_size
    try:
        remote = ray.remote(num_cpus=0, max_retries=3)(_probe)
        refs = [remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(path), token) for n in ray.nodes() if n.get("Alive")]
        try:
            results = ray.get(refs, timeout=120)
        except ray.exceptions.GetTimeoutError:
            raise ClusterError(f"{what} {path}: not every node answered the shared-path check within 120 s (a node "
                               "is busy or unreachable); check `ray status`, then run the command again") from None
        for result in results:
            error = result["error"]
            if error is None and result["stat"] != mine:
                error = f"it differs there ({result['stat']} bytes, {mine} on the driver)"
            if error:
                access = "read and write" if write else "read"
                raise ClusterError(f"{what} {path} is not usable from node {result['node']} "
                                   f"({result['hostname']}): {error}. Every node must {access} it at the "
                                   "same path: put it on a shared filesystem (NFS, Lustre, a shared volume) mounted "
                                   "at the same place on every node")
    finally:
        if write:
            probe.unlink(missing_ok=True)
