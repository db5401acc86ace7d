"""A real 2-node Ray cluster on 127.0.0.1 for tests, inside private network and PID namespaces.

Network rule: cluster test traffic may only go to loopback. Ray 2.60 ignores ``--node-ip-address=127.0.0.1``
on a machine with a network interface (it binds the interface address and probes a public DNS address to find
its IP), so every cluster test runs its nodes *and* its driver inside ``unshare -n`` (a network namespace whose
only interface is ``lo``, brought up with ``ip link set lo up``), where Ray can only use 127.0.0.1.
``-p -f --mount-proc --kill-child`` adds a private PID namespace: ``ray stop --force`` then stops only this
test's Ray processes (never another user's), a test can pick a Ray worker process by name to kill it, and
every process of the cluster dies with the namespace when the test ends or times out.

Token authentication is on, with a fresh random token in ``RAY_AUTH_TOKEN`` for the head, the second node and
the driver (``RAY_AUTH_MODE=token``), so no ``~/.ray/auth_token`` is read or written.

:func:`run_in_cluster` runs a bash script (the driver commands) with ``$RAY_ADDRESS`` set, and always stops the
cluster. Tests call :func:`require_cluster` first: it skips with the reason when Ray is not installed or the
namespaces cannot be created (an unprivileged container).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PORT = 6379  # private to the namespace: nothing else listens there
#: the namespaces: network (loopback only), PID (+ its /proc), killed with the test's process
UNSHARE = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child"]
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


@lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """Why a namespaced Ray cluster cannot run here, or None when it can."""
    if importlib.util.find_spec("ray") is None:
        return 'Ray is not installed (pip install -e ".[cluster]")'
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        return f"the `ray` command is not beside {sys.executable}"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not available (util-linux / iproute2)"
    probe = subprocess.run([*UNSHARE, "bash", "-c", "ip link set lo up"], capture_output=True, text=True,
                           timeout=30)
    if probe.returncode != 0:
        return f"private network/PID namespaces are not permitted here (`unshare -n -p`): {probe.stderr.strip()}"
    return None


def require_cluster() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no namespaced Ray cluster: {reason}")


@dataclass(frozen=True)
class ClusterRun:
    returncode: int
    output: str  # stdout and stderr of the whole script (cluster start and stop included)
    seconds_to_start: float | None  # head + second node, as measured inside the script


def run_in_cluster(driver: str, *, timeout: float = 600, nodes: int = 2, cpus_per_node: int = 1,
                   env: dict[str, str] | None = None, cwd: Path = REPO_ROOT, node_mounts: str = "") -> ClusterRun:
    """Start a ``nodes``-node cluster (``cpus_per_node`` CPUs each) on 127.0.0.1, run the bash ``driver``
    script, stop the cluster. ``$RAY_ADDRESS`` is ``127.0.0.1:6379``; ``$PYTHON`` is this interpreter and
    ``$PYTHONPATH`` holds the repository (for the nodes' workers too). The cluster start and the driver have
    bounded time (``timeout`` for the whole script); the namespace dies with this call either way.

    ``node_mounts``: bash commands run in a private mount namespace in which the non-head nodes start (e.g.
    ``mount -t tmpfs none DIR`` hides DIR from them: a node without the shared filesystem)."""
    python = sys.executable
    ray_bin = str(Path(python).with_name("ray"))
    temp_dir = tempfile.mkdtemp(prefix="fbray-")  # short: Ray's unix socket paths must fit in 107 bytes
    common = (f"--num-cpus={cpus_per_node} --num-gpus=0 --disable-usage-stats --temp-dir={temp_dir} "
              "--object-store-memory=100000000")
    script = textwrap.dedent(f"""\
        set -u
        ip link set lo up
        stop_cluster() {{ timeout {STOP_TIMEOUT_S} "{ray_bin}" stop --force >/dev/null 2>&1 || true; }}
        trap stop_cluster EXIT
        t0=$(date +%s.%N)
        timeout {START_TIMEOUT_S} "{ray_bin}" start --head --port={PORT} --include-dashboard=false {common} \\
            > {temp_dir}/head.log 2>&1 || {{ echo "ray start --head failed:"; tail -30 {temp_dir}/head.log; exit 90; }}
        for n in $(seq 2 {nodes}); do
            unshare --mount --propagation private bash -c '{node_mounts}
                exec timeout {START_TIMEOUT_S} "{ray_bin}" start --address=127.0.0.1:{PORT} {common}' \\
                > {temp_dir}/node$n.log 2>&1 || {{ echo "node $n failed:"; tail -30 {temp_dir}/node$n.log; exit 91; }}
        done
        echo "CLUSTER_START_SECONDS $("{python}" -c "import time; print(round(time.time() - $t0, 1))")"
        export RAY_ADDRESS=127.0.0.1:{PORT}
        """) + driver
    environment = {**os.environ, **(env or {})}
    environment.update({
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "PYTHON": python,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")])),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray kills workers when the *machine* is above 95 % memory: on a shared test machine another job's
        # peak would then kill this test's workers, so the test cluster leaves memory to the kernel
        "RAY_memory_monitor_refresh_ms": "0",
        "FLIPBENCH_RAY_TEST_NODES": str(nodes),
    })
    environment.pop("RAY_ADDRESS", None)
    try:
        proc = subprocess.run([*UNSHARE, "bash", "-c", script], cwd=cwd, env=environment, capture_output=True,
                              text=True, timeout=timeout)
        returncode, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:  # --kill-child: the namespace and its cluster are gone
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        returncode, output = -9, f"{out}{err}\n(cluster script timed out after {timeout} s)"
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    started = None
    for line in output.splitlines():
        if line.startswith("CLUSTER_START_SECONDS"):
            started = float(line.split()[1])
    return ClusterRun(returncode, output, started)
