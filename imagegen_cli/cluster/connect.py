"""Joining a Ray cluster (or starting one here) and sizing the actors to what its nodes hold.

Three things Ray does by itself are undone here, because the command-line contract forbids them: ``ray.init``
replaces the process's SIGINT and SIGTERM handlers (the run's two-stage stop would be lost: SIGTERM would kill
the driver with a traceback), it retries an unreachable address for minutes (a typo would hang a script), and it
prints the cluster's error messages on stdout (which holds saved paths and JSON).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from imagegen_cli.errors import ImagegenError, UsageError
from imagegen_cli.options import ClusterOptions

REACH_TIMEOUT = 5.0  # seconds to open a TCP connection to a given address before Ray is asked to join it


class ClusterError(ImagegenError):
    """The Ray cluster could not be reached or used."""

    code = "cluster"


@dataclass(frozen=True)
class Joined:
    """The connection a run uses."""

    owned: bool  # this run made it (and so ends it)
    local: bool  # a Ray instance this run started on this machine
    where: str  # said in notes and errors


def connect(ray: Any, options: ClusterOptions) -> Joined:
    """Join the cluster given (or ``RAY_ADDRESS``), or start a local Ray instance when there is no address."""
    errors_to_stderr()
    if ray.is_initialized():
        return Joined(False, False, "the Ray cluster this program joined")  # a Python API caller's own
    env = os.environ.get("RAY_ADDRESS")
    # No address: a new instance on this machine, as documented (Ray alone would join any running one).
    address = options.address or env or "local"
    where = "a local Ray instance" if address == "local" else f"the Ray cluster at {address}"
    hint = "start one with: ray start --head (then --ray-address auto), or drop --ray-address"
    _reachable(address, where, hint)
    # Ray's own output never reaches stdout (the contract's), and its INFO lines stay out of stderr.
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address == "local":
        kwargs["include_dashboard"] = False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats prompt, no report (often no network)
    main = threading.current_thread() is threading.main_thread()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)} if main else {}
    # ray.init starts by making SIGTERM a silent sys.exit (exit 15, nothing saved or said, for the seconds a
    # local instance takes to start, and for good if the run's handler cannot be put back): it is not let to.
    utils: Any = getattr(getattr(ray, "_private", None), "utils", None)
    set_sigterm = getattr(utils, "set_sigterm_handler", None)
    if set_sigterm is not None:
        utils.set_sigterm_handler = lambda handler: None
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError, ray.exceptions.RayError) as exc:
        raise ClusterError(f"could not start or reach {where}: {first_line(exc)}", hint=hint) from None
    finally:
        if set_sigterm is not None:
            utils.set_sigterm_handler = set_sigterm
        # The run's stop (Ctrl-C, SIGTERM) stays the run's. Set again even where Python still lists it: Ray's core
        # installs a C-level crash handler over SIGTERM (a stack dump on stderr) that Python does not see.
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
    return Joined(True, address == "local", where)


def _reachable(address: str, where: str, hint: str) -> None:
    """A ``HOST:PORT`` or ``ray://HOST:PORT`` address answers a TCP connection within seconds (Ray retries for
    ten minutes); ``auto`` and ``local`` are Ray's to resolve (it fails at once when there is nothing)."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT).close()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no answer"
        raise ClusterError(f"could not reach {where}: {reason}", hint=hint) from None


@dataclass(frozen=True)
class Sizing:
    """How many actors, and what each asks Ray for."""

    count: int
    gpus: float  # per actor
    cpus: float  # per actor
    notes: list[str] = field(default_factory=list)


def size_workers(ray: Any, options: ClusterOptions, *, owned_local: bool) -> Sizing:
    """Actors sized to the cluster now: one per GPU by default (per ``--gpus-per-worker``), on CPUs one per node's
    share. An actor must fit on one node: room is counted node by node, and CPU shares are bounded by the biggest."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")] or [ray.cluster_resources()]
    node_gpus = [float(node.get("GPU", 0)) for node in nodes]
    node_cpus = [float(node.get("CPU", 0)) for node in nodes]
    gpus, cpus = sum(node_gpus), sum(node_cpus)
    per = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if gpus else 0.0)
    notes: list[str] = []
    if per > max(node_gpus):
        if owned_local:  # this machine's own instance: no GPU node will ever join it
            raise UsageError(
                f"--gpus-per-worker {per:g}: this machine has {gpus:g} GPUs",
                hint="use --gpus-per-worker 0 to run on CPUs, or --ray-address to join a GPU cluster",
            )
        notes.append(f"no node of the cluster has {per:g} GPUs now; the workers start as such nodes join (ray status)")

    def gpu_room(node: float) -> int:
        return math.floor(round(node / per, 6))  # 4 GPUs / 0.1 is 40 actors, not 39

    count = options.workers or (max(1, sum(gpu_room(g) for g in node_gpus)) if per else 1)
    # Workers on CPUs share the cores (Ray gives each its share as torch's thread count).
    cpu_each = 1.0 if per else max(1.0, min(float(int(cpus // count)), float(int(max(node_cpus)))))
    fits = sum(
        min(gpu_room(g), int(c // cpu_each)) if per else int(c // cpu_each)
        for g, c in zip(node_gpus, node_cpus, strict=True)
    )
    if 0 < fits < count:
        notes.append(f"the cluster has room for {fits} of {count} workers now; the rest start as it grows")
    return Sizing(count, per, cpu_each, notes)


def errors_to_stderr() -> None:
    """Ray prints the cluster's error messages (a worker died...) to the driver's stdout, which is the contract's
    (saved paths, JSON): they are sent to stderr. Ray has no option for it; without the hook, nothing is changed."""
    try:
        from ray._private import worker as ray_worker
    except ImportError:
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "imagegen_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.imagegen_stderr = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_stderr


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]
