"""The local backend: diffusers pipelines in this process, one line after another, the model loaded once.

Planning needs no torch (``local:auto`` is resolved from a torch-free hardware probe), so a dry run of
any local model starts instantly; torch and diffusers are imported by ``local.runner`` when a job runs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from imagegen_cli.backends import LinePlan, PlannedJob, RunContext
from imagegen_cli.errors import UsageError
from imagegen_cli.local.planning import DEFAULT_BATCH, LocalBatch, LocalPlan

if TYPE_CHECKING:
    from imagegen_cli.backends import ModelRef
    from imagegen_cli.options import GenerateOptions, PromptLine
    from imagegen_cli.settings import Settings
    from imagegen_cli.store.journal import Job


def _local_plan(plan: LinePlan) -> LocalPlan:
    assert isinstance(plan, LocalPlan)
    return plan


class LocalBackend:
    """Diffusers pipelines: the catalog's models, Hub repos and pipeline directories."""

    name = "local"

    def plan(self, line: PromptLine, options: GenerateOptions, ref: ModelRef, settings: Settings) -> LocalPlan:
        from imagegen_cli.local.hardware import choose_auto, detect_accelerator
        from imagegen_cli.local.planning import build_local_plan, resolve_source

        if (options.output.format or settings.format) == "svg":
            raise UsageError(
                "local pipelines render pixels, not SVG", hint="use --format png, jpeg, webp or gif with local models"
            )
        name = ref.model or "auto"
        notes: list[str] = []
        if name == "auto":
            name, why = choose_auto(detect_accelerator())
            notes.append(f"local:auto → local:{name} ({why})")
        request = options.request.to_request(line.prompt, "local", name)
        ignored: dict[str, object] = {"--no-wait": options.run.no_wait, "--base-url": options.run.base_url}
        plan = build_local_plan(request, resolve_source(name), options.local, ignored=ignored)
        return replace(plan, notes=(*notes, *plan.notes))

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

    def journal_plan(self, job: Job, settings: Settings) -> LocalPlan:
        raise UsageError(
            f"job {job.id} ran a local pipeline: it has no remote task to wait for",
            hint="generate the missing images again, or rerun the batch with --resume",
        )

    def run(self, jobs: list[PlannedJob], context: RunContext) -> None:
        """One line after another; the loaded pipeline is kept between lines (runner's cache)."""
        from imagegen_cli.local.runner import run_local
        from imagegen_cli.saving import JobRecorder, begin_job, end_job

        for job in jobs:
            writer = begin_job(job, context)
            try:
                if job.todo is not None:
                    recorder = JobRecorder(job.result, context.journal, context.sink)
                    writer.on_target = recorder.record_target
                    run_local(_local_plan(job.todo), writer, recorder, context.sink)
            except KeyboardInterrupt:
                job.result.interrupted = True
                raise
            finally:
                end_job(job, context)
            if job.result.interrupted:
                raise KeyboardInterrupt  # the first Ctrl-C stopped this line between steps: stop the run
