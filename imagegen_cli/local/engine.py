"""The local engine: diffusers pipelines in this process, one line after another, the model loaded once.

Planning needs no torch (``local:auto`` is resolved from a torch-free hardware probe), so a dry run of any local
model starts instantly; torch and diffusers are imported by ``local.runner`` when a job runs. The engine object
is long-lived (one per process, from the registry): it keeps the loaded pipeline between jobs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from imagegen_cli.errors import ImagegenError, UsageError
from imagegen_cli.events import CallFailed, JobFinished, JobStarted, Note
from imagegen_cli.local.planning import DEFAULT_BATCH, LocalBatch, LocalPlan

if TYPE_CHECKING:
    from imagegen_cli.engines import Channel, EngineJob, ModelRef
    from imagegen_cli.local.runner import LocalEngine
    from imagegen_cli.options import GenerateOptions, PromptLine
    from imagegen_cli.plans import JournalledJob, LinePlan
    from imagegen_cli.settings import Settings


def _local_plan(plan: LinePlan) -> LocalPlan:
    assert isinstance(plan, LocalPlan)
    return plan


class LocalBackend:
    """Diffusers pipelines: the catalog's models, Hub repos and pipeline directories."""

    name = "local"

    def __init__(self) -> None:
        self._engine: LocalEngine | None = None

    @property
    def engine(self) -> LocalEngine:
        """The pipeline holder (imports torch's side of the engine only when a job runs)."""
        if self._engine is None:
            from imagegen_cli.local.runner import LocalEngine

            self._engine = LocalEngine()
        return self._engine

    def plan(self, line: PromptLine, options: GenerateOptions, ref: ModelRef, settings: Settings) -> LocalPlan:
        from imagegen_cli.local.hardware import choose_auto, detect_accelerator
        from imagegen_cli.local.planning import build_local_plan, resolve_source

        if (options.output.format or settings.format) == "svg":
            raise UsageError(
                "local pipelines render pixels, not SVG", hint="use --format png, jpeg, webp or gif with local models"
            )
        cluster_flags = options.run.cluster.flags()
        if cluster_flags and self.name == "local":
            raise UsageError(f"{cluster_flags[0]} goes with --engine ray", hint="add --engine ray, or drop it")
        name = ref.model or "auto"
        notes: list[str] = []
        if name == "auto":
            name, why = choose_auto(detect_accelerator())
            notes.append(f"local:auto → local:{name} ({why})")
        request = options.request.to_request(line.prompt, "local", name)
        ignored: dict[str, object] = {"--no-wait": options.run.no_wait, "--base-url": options.run.base_url}
        plan = build_local_plan(request, resolve_source(name), options.local, ignored=ignored)
        server = None if options.run.no_server else settings.server_url
        return replace(plan, notes=(*notes, *plan.notes), server=server)

    def narrow(self, plan: LinePlan, indices: list[int]) -> LocalPlan:
        """Pipeline calls for just ``indices``, each image keeping its seed."""
        full = _local_plan(plan)
        seeds = {b.first + k: seed for b in full.batches for k, seed in enumerate(b.seeds)}
        batches: list[LocalBatch] = []
        for index in sorted(indices):
            last = batches[-1] if batches else None
            if last and last.first + len(last.seeds) == index and len(last.seeds) < DEFAULT_BATCH:
                batches[-1] = LocalBatch(last.first, (*last.seeds, seeds[index]))
            else:
                batches.append(LocalBatch(index, (seeds[index],)))
        return replace(full, batches=tuple(batches))

    def journal_plan(self, job: JournalledJob, settings: Settings) -> LocalPlan:
        raise UsageError(
            f"job {job.id} ran a local pipeline: it has no remote task to wait for",
            hint="generate the missing images again, or rerun the batch with --resume",
        )

    def execute(self, jobs: list[EngineJob], channel: Channel) -> None:
        """One job after another; the loaded pipeline is kept between them. A stop ends the run after the step.

        Jobs a running ``imagegen serve`` can make as this process would go to it first (``local.served``): the
        same events come back, and what it could not finish is made here.
        """
        from imagegen_cli.local.served_run import ServedJobs

        served = ServedJobs.choose(jobs, _local_plan)
        left = served.run(channel, _local_plan) if served.jobs else {}
        on_server = served.started  # chosen jobs a stopped server never began run here from the start
        for job in jobs:
            resumed = job.work in left  # started on the server, finished here
            if job.work in on_server and not resumed:
                continue
            plan = self.narrow(job.plan, left[job.work]) if resumed and job.plan is not None else job.plan
            if not resumed:
                channel.emit(JobStarted(job.work))
                if job.work in served.notes:
                    channel.emit(Note(job.work, served.notes[job.work]))
            interrupted = True  # until the job ends normally: a KeyboardInterrupt passes through the finally
            try:
                if plan is not None:
                    self.engine.run(job.work, _local_plan(plan), channel.emit, channel.stop)
                interrupted = channel.stop.requested
            except ImagegenError as exc:
                interrupted = channel.stop.requested
                channel.emit(CallFailed(job.work, exc))
            finally:
                channel.emit(JobFinished(job.work, interrupted=interrupted))
            if interrupted:
                raise KeyboardInterrupt  # the first Ctrl-C stopped this job between steps: stop the run
