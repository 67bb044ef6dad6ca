"""The Ray engine: local models planned as in-process, their pipeline calls made by a cluster's actors.

Planning is the local engine's own (same seeds, same calls, same ``--dry-run``), plus where the cluster is; only
``execute`` differs: :mod:`imagegen_cli.cluster.dispatch` sends each call to an actor holding a warm
:class:`~imagegen_cli.local.runner.LocalEngine` and emits what comes back. Ray is checked for when a line is
planned (one line with the pip command when it is missing) and imported only when the run starts.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from typing import TYPE_CHECKING

from imagegen_cli.cluster import RAY_HINT
from imagegen_cli.errors import UsageError
from imagegen_cli.local.engine import LocalBackend
from imagegen_cli.options import ClusterOptions

if TYPE_CHECKING:
    from imagegen_cli.engines import Channel, EngineJob, ModelRef
    from imagegen_cli.local.planning import LocalPlan
    from imagegen_cli.options import GenerateOptions, PromptLine
    from imagegen_cli.settings import Settings


def require_ray() -> None:
    """Ray is installed (found without importing it: planning stays instant)."""
    if importlib.util.find_spec("ray") is None:
        raise UsageError("--engine ray needs Ray, which is not installed", hint=RAY_HINT)


def cluster_options(given: ClusterOptions, settings: Settings) -> ClusterOptions:
    """The flags' values, else the config file's (``ray_address``, ``ray_workers``, ``ray_gpus_per_worker``)."""
    return ClusterOptions(
        address=given.address or settings.ray_address,
        workers=given.workers or settings.ray_workers,
        gpus_per_worker=given.gpus_per_worker if given.gpus_per_worker is not None else settings.ray_gpus_per_worker,
        worker_writes=given.worker_writes,
    )


class RayBackend(LocalBackend):
    """Local models on a Ray cluster (``--engine ray``, or ``[engines] local = "ray"`` in the config)."""

    name = "ray"

    def plan(self, line: PromptLine, options: GenerateOptions, ref: ModelRef, settings: Settings) -> LocalPlan:
        if ref.provider != "local":
            raise UsageError(f"the ray engine runs local models; {ref} is a remote gateway", hint="use -m local:MODEL")
        cluster = cluster_options(options.run.cluster, settings)
        if cluster.worker_writes and options.output.out == "-":
            raise UsageError("--worker-writes places files on a shared filesystem, not stdout", hint="use -o DIR")
        if cluster.worker_writes and not options.output.metadata:
            # A lost worker's files are found by the record in each one (which job, which image): it must be there.
            raise UsageError(
                "--worker-writes needs each file's record (a lost worker's files are found by it)",
                hint="drop --no-metadata, or drop --worker-writes (the driver then writes every file)",
            )
        require_ray()
        plan = super().plan(line, options, ref, settings)
        return replace(plan, server=None, cluster=cluster)

    def execute(self, jobs: list[EngineJob], channel: Channel) -> None:
        from imagegen_cli.cluster.dispatch import Dispatch

        Dispatch(jobs, channel, self.narrow).run()
