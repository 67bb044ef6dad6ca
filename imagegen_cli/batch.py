"""Plan and run prompt lines: a single prompt is a batch of one line, through exactly this code.

Every line is planned (and so validated) before anything is sent or any directory is made; a usage
error names its line. Each line becomes a job in the journal, keyed by its normalised request and
output, so ``--resume`` skips lines whose images are saved, resumes lines whose remote tasks are
still pending, and makes only the missing images of the rest. Lines are handed to their engine in
groups (remote lines run concurrently, local lines one after another with the model loaded once), and the
driver records what each engine emits.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from imagegen_cli.backends import PlannedJob, RunContext, engine_for, resolve_model_ref
from imagegen_cli.errors import ImageBusy, ImagegenError, LineErrors, TaskFailed, UsageError
from imagegen_cli.events import TaskRecord
from imagegen_cli.result import JobResult, RunResult
from imagegen_cli.status import TaskState, in_flight_message

if TYPE_CHECKING:
    from imagegen_cli.options import GenerateOptions, PromptLine
    from imagegen_cli.settings import Settings
    from imagegen_cli.store.journal import Journal
    from imagegen_cli.store.writer import OutputSpec


def plan_lines(lines: list[PromptLine], options: GenerateOptions, settings: Settings) -> list[PlannedJob]:
    """Plan every line (nothing is sent, no directory is made); a usage error names its line."""
    profiles = settings.profiles()
    jobs: list[PlannedJob] = []
    errors: list[ImagegenError] = []  # every bad line is reported, then nothing is sent
    for line in lines:
        try:
            line_options = options.with_overrides(line.overrides)
            ref = resolve_model_ref(line_options.model, line_options.provider, settings, profiles)
            engine = engine_for(ref, settings, line_options.run.engine)
            plan = engine.plan(line, line_options, ref, settings)
            if line.number is not None and line_options.output.out == "-":
                raise UsageError("-o - writes one image to stdout; a batch writes many", hint="use -o DIR")
        except ImagegenError as exc:
            if line.number is None:
                raise
            exc.message = f"line {line.number}: {exc.message}"
            errors.append(exc)
            continue
        result = JobResult(
            plan.provider_name,
            plan.model_name,
            plan.request.n,
            line=line.number,
            prompt=line.prompt,
            notes=list(plan.notes),
            planned_notes=len(plan.notes),
            no_wait=line_options.run.no_wait,
        )
        jobs.append(PlannedJob(line, line_options, engine, plan, result))
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise LineErrors(errors)
    return jobs


def build_output_specs(jobs: list[PlannedJob], settings: Settings) -> None:
    """Decide each job's output (this creates the directories): only once the run is really going to start."""
    from imagegen_cli.store.writer import OutputSpec

    for job in jobs:
        output = job.options.output
        try:
            job.spec = OutputSpec.from_args(
                output.out,
                default_dir=settings.output_dir,
                template=output.name or settings.name_template,
                fmt=output.format or settings.format,
                overwrite=output.overwrite,
                metadata=output.metadata and settings.metadata,
                n=job.plan.request.n,
            )
            if job.line.number is not None and job.spec.file_name is not None:
                raise UsageError("-o names one file; a batch writes many", hint="use -o DIR (and --name)")
        except ImagegenError as exc:
            if job.line.number is not None:
                exc.message = f"line {job.line.number}: {exc.message}"
            raise


def line_key(job: PlannedJob, spec: OutputSpec, occurrence: int) -> str:
    """What makes two runs of a line "the same line": request, provider, model, output; plus repeat count."""
    request = dict(job.plan.request.to_dict())
    request.pop("strict", None)
    # An input is the same input at the same path: a file changed since is the same line, refused by the resume
    # (changed_inputs) rather than silently made again as a new one.
    request["images"] = [_path_only(image) for image in request.get("images", [])]
    if request.get("mask"):
        request["mask"] = _path_only(request["mask"])
    identity = {
        "request": request,
        "provider": job.plan.provider_name,
        "model": job.plan.model_name,
        "out": str(spec.directory),
        "template": spec.template,
        "file": spec.file_name,
        "fmt": spec.fmt,
        "occurrence": occurrence,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _path_only(image: dict[str, Any]) -> dict[str, Any]:
    return {"source": image.get("source"), "role": image.get("role")}


def changed_inputs(previous: dict[str, Any], now: dict[str, Any]) -> str | None:
    """The first input whose SHA-256 differs between a line's journalled request and this run's, in words."""
    before = [*previous.get("images", []), *filter(None, [previous.get("mask")])]
    after = [*now.get("images", []), *filter(None, [now.get("mask")])]
    for old, new in zip(before, after, strict=False):
        if old.get("sha256") != new.get("sha256"):
            return f"{old.get('role', 'image')} {old.get('source')} changed since the job started (its SHA-256 differs)"
    return None


def assign_keys(jobs: list[PlannedJob]) -> None:
    """Key every batch line; identical lines are told apart by how many came before them."""
    seen: Counter[str] = Counter()
    for job in jobs:
        if job.line.number is None or job.spec is None:
            continue
        base = line_key(job, job.spec, 0)
        job.key = line_key(job, job.spec, seen[base])
        seen[base] += 1


def prepare_resume(journal: Journal, jobs: list[PlannedJob]) -> None:
    """Find each line's earlier job: report its saved images, poll its open tasks, make only what is missing."""
    from imagegen_cli.saving import adopt_saved_files

    # Every line's inputs are checked before any line is taken over: a refusal leaves nothing half-resumed.
    for job in jobs:
        earlier = journal.by_batch_key(job.key) if job.key and job.plan.request.images else None
        changed = changed_inputs(earlier.request, job.plan.request.to_dict()) if earlier is not None else None
        if changed:
            raise UsageError(
                f"line {job.line.number}: {changed}",
                hint="restore the file to finish the job, or run without --resume to start a new one",
            )
    for job in jobs:
        previous = journal.by_batch_key(job.key) if job.key else None
        if previous is None:
            continue
        job.previous = previous
        job.uploads = journal.uploads(previous.id) if job.plan.request.images else {}
        job.result.job_id = previous.id
        holder = journal.take_over(previous.id)
        if holder is not None:
            # Another live imagegen is making this line now (an overlapping --resume): it is not started twice.
            job.result.report_saved_rows(previous.images)
            job.result.errors.append(
                ImageBusy(
                    f"line {job.line.number}: being generated by another imagegen process (pid {holder})",
                    0,
                    hint="wait for it, then run the same command again",
                )
            )
            job.result.started = True
            job.todo = None
            continue
        previous = job.previous = adopt_saved_files(journal, previous)  # files saved while the journal failed
        saved = previous.saved_indices()
        job.result.report_saved_rows(previous.images)
        covered: set[int] = set()
        for task in map(TaskRecord.from_row, previous.tasks):
            if task.resumable(saved):
                job.resume_tasks.append(task)
                job.result.tasks.append(task)
                covered.update(task.indices)
            elif task.state == TaskState.SUBMITTING and not set(task.indices) <= saved:
                # Never made again blindly: the gateway may already be making (and billing) these images.
                covered.update(task.indices)
                job.result.errors.append(
                    TaskFailed(
                        in_flight_message(previous.provider, task.first_image, task.count),
                        hint="look for it on the provider's side; to make these images anyway, run without --resume",
                    )
                )
        missing = [i for i in range(1, job.plan.request.n + 1) if i not in saved and i not in covered]
        job.todo = job.engine.narrow(job.plan, missing) if missing else None


def run_jobs(jobs: list[PlannedJob], context: RunContext) -> RunResult:
    """Run every job not already complete, each engine's jobs together; Ctrl-C keeps what was saved."""
    from imagegen_cli.backends.driver import run_engine

    started = time.monotonic()
    result = RunResult([job.result for job in jobs])
    if any(job.line.number is not None for job in jobs):
        context.sink.batch_planned(result.jobs)  # the batch row's totals: every line is planned by now
    groups: dict[str, list[PlannedJob]] = {}
    for job in jobs:
        if job.todo is not None or job.resume_tasks:
            groups.setdefault(job.engine.name, []).append(job)
        else:
            job.result.started = True  # complete from an earlier run: reported, not redone
            context.sink.job_finished(job.result)
    try:
        # Remote lines first: they mostly wait on gateways, while local lines hold the machine.
        for name in sorted(groups, key=lambda n: n != "remote"):
            group = groups[name]
            run_engine(group[0].engine, group, context)
    except KeyboardInterrupt:
        result.interrupted = True
        result.terminated = context.stop.terminated
        for job in jobs:
            if job.result.started:
                _say_interrupted(job.result, terminated=context.stop.terminated)
    finally:
        result.elapsed = time.monotonic() - started
        context.sink.close()
    return result


def _say_interrupted(result: JobResult, *, terminated: bool) -> None:
    """An interrupted job says how far it got, and how to finish it when its remote tasks can still deliver."""
    from imagegen_cli.result import Interrupted
    from imagegen_cli.signals import StopSignal

    terminated = terminated or StopSignal.terminated
    result.interrupted = True
    saved, requested = len(result.saved_indices), result.requested
    if saved >= requested and not result.resumable:
        return
    verb = "terminated" if terminated else "interrupted"
    message = f"{verb}: {saved} of {requested} image(s) saved"
    hint = None
    if result.resumable and result.job_id:
        pending = " ".join(t.remote_id for t in result.resumable_tasks)
        message += f"; still to fetch from {result.provider}: {pending}"
        hint = result.resume_hint()
    result.errors.append(Interrupted(message, hint=hint))


def describe_jobs(jobs: list[PlannedJob]) -> list[dict[str, Any]]:
    """The ``--dry-run`` documents: one per line, each the plan's own description plus its notes."""
    described = []
    for job in jobs:
        document: dict[str, Any] = {}
        if job.line.number is not None:
            document["line"] = job.line.number
        document.update(job.plan.describe())
        document["notes"] = list(job.plan.notes)
        described.append(document)
    return described
