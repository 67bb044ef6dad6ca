"""The Python API: what the ``imagegen`` command does, as functions returning typed results.

Example::

    from imagegen_cli import api
    from imagegen_cli.options import GenerateOptions, OutputOptions, RequestOptions

    options = GenerateOptions(model="local:tiny", request=RequestOptions(n=2, seed=7), output=OutputOptions(out="out"))
    run = api.generate("a lighthouse at dusk", options)
    for image in run.images:
        print(image.path, image.seed)

Every function takes the same :class:`~imagegen_cli.options.GenerateOptions` the CLI builds from its
flags, reads settings (config file and environment) unless given, reports progress to a
:class:`~imagegen_cli.result.ProgressSink` (silent by default), and never prints. Errors that stop a
run before it starts are raised as :class:`~imagegen_cli.errors.ImagegenError`; failures of single
images or lines are in the result (``RunResult.jobs[i].errors``), as the CLI reports them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegen_cli.backends import PlannedJob, RunContext
from imagegen_cli.batch import assign_keys, build_output_specs, describe_jobs, plan_lines, prepare_resume, run_jobs
from imagegen_cli.errors import ImagegenError, TaskFailed
from imagegen_cli.events import TaskRecord
from imagegen_cli.options import GenerateOptions, PromptLine, RunOptions, read_prompt_file
from imagegen_cli.result import JobResult, ProgressSink, RunResult, SilentSink
from imagegen_cli.settings import Settings, load_settings
from imagegen_cli.status import JobStatus, TaskState, in_flight_message

if TYPE_CHECKING:
    from imagegen_cli.store.journal import Job

__all__ = ["cancel", "dry_run", "generate", "plan", "prune", "resume", "run_batch"]


def plan(
    lines: list[PromptLine], options: GenerateOptions | None = None, *, settings: Settings | None = None
) -> list[PlannedJob]:
    """Plan lines without sending anything or creating any directory (raises UsageError for a bad line)."""
    return plan_lines(lines, options or GenerateOptions(), settings or load_settings())


def dry_run(
    lines: list[PromptLine], options: GenerateOptions | None = None, *, settings: Settings | None = None
) -> list[dict[str, Any]]:
    """What ``--dry-run`` prints: for each line, the exact calls (key redacted) or the pipeline calls."""
    return describe_jobs(plan(lines, options, settings=settings))


def generate(
    prompt: str,
    options: GenerateOptions | None = None,
    *,
    settings: Settings | None = None,
    sink: ProgressSink | None = None,
) -> RunResult:
    """Generate and save the images of one prompt."""
    return run_batch([PromptLine(None, prompt)], options, settings=settings, sink=sink)


def run_batch(
    lines: list[PromptLine] | str | Path,
    options: GenerateOptions | None = None,
    *,
    settings: Settings | None = None,
    sink: ProgressSink | None = None,
    jobs: list[PlannedJob] | None = None,
) -> RunResult:
    """Generate every line (a list, or a prompt file's path); ``options.run.resume`` skips what is saved."""
    from imagegen_cli.store.journal import Journal

    options = options or GenerateOptions()
    settings = settings or load_settings()
    if not isinstance(lines, list):
        lines = read_prompt_file(str(lines))
    jobs = jobs if jobs is not None else plan_lines(lines, options, settings)
    build_output_specs(jobs, settings)
    assign_keys(jobs)
    timeout = options.run.timeout if options.run.timeout is not None else settings.timeout
    with Journal.open(wait=timeout) as journal:  # another process's write lock is waited for within --timeout
        if options.run.resume:
            prepare_resume(journal, jobs)
        context = RunContext(settings, journal, sink or SilentSink(), timeout, concurrency=options.run.concurrency)
        return run_jobs(jobs, context)


def resume(
    job_ids: list[str],
    *,
    out_dir: str | Path | None = None,
    timeout: float | None = None,
    settings: Settings | None = None,
    sink: ProgressSink | None = None,
) -> RunResult:
    """Finish journalled jobs (``tasks wait``): poll their tasks, save what is missing, never an image twice."""
    from imagegen_cli.saving import adopt_saved_files
    from imagegen_cli.store.journal import Journal

    settings = settings or load_settings()
    timeout = RunOptions(timeout=timeout).timeout or settings.timeout  # RunOptions checks it as generate does
    sink = sink or SilentSink()
    with Journal.open(wait=timeout) as journal:
        # Files saved while the journal could not record them (a full disk) are adopted, never made again.
        rows = [adopt_saved_files(journal, journal.get(job_id)) for job_id in job_ids]
        results: list[JobResult] = []
        run = RunResult(results)
        started = time.monotonic()
        # Every job is prepared before any runs: one job that cannot be resumed (a removed provider, a missing
        # key) is that job's error, reported beside the others, never the end of the whole command.
        prepared: list[tuple[Job, JobResult, PlannedJob | None]] = []
        for row in rows:
            try:
                result, job = _resume_job(row, settings, out_dir)
            except ImagegenError as exc:
                result = JobResult(row.provider, row.model, row.n, job_id=row.id, started=True, errors=[exc])
                job = None
            results.append(result)
            prepared.append((row, result, job))
        # One run for every job: their tasks are polled at once, within one overall --timeout (the same driver,
        # engine and recorder as generate --resume).
        runnable = [job for _, _, job in prepared if job is not None]
        if runnable:
            context = RunContext(settings, journal, sink, timeout, shared_deadline=True)
            try:
                single = run_jobs(runnable, context)
                run.interrupted, run.terminated = single.interrupted, single.terminated
            except ImagegenError as exc:
                for job in runnable:
                    job.result.errors.append(exc)
        for row, result, _ in prepared:
            result.report_saved_rows(journal.get(row.id).images)  # whoever saved them: this run or an earlier one
        run.elapsed = time.monotonic() - started
    sink.close()
    return run


def _resume_job(row: Job, settings: Settings, out_dir: str | Path | None) -> tuple[JobResult, PlannedJob | None]:
    """The job's result so far, and what is left to run (``None``: nothing; the result says why)."""
    from imagegen_cli.backends import ModelRef, engine_for
    from imagegen_cli.store.writer import OutputSpec

    result = JobResult(row.provider, row.model, row.n, job_id=row.id, prompt=str(row.request.get("prompt", "")))
    result.started = True
    saved = row.saved_indices()
    todo: list[TaskRecord] = []
    for task in map(TaskRecord.from_row, row.tasks):
        result.tasks.append(task)
        if task.resumable(saved):
            todo.append(task)
        elif task.state == TaskState.SUBMITTING and not set(task.indices) <= saved:
            hint = "look for it on the provider's side before generating these images again"
            result.errors.append(TaskFailed(in_flight_message(row.provider, task.first_image, task.count), hint=hint))
        elif not set(task.indices) <= saved:
            why = task.error or "no reason given"
            what = "images expired" if task.state == TaskState.EXPIRED else f"{task.state}: {why}"
            result.errors.append(TaskFailed(f"{row.provider}: task {task.remote_id} {what}"))
    if len(saved) < row.n and not todo and not result.errors:
        if row.dialect != "tasks":
            result.errors.append(
                TaskFailed(
                    f"job {row.id} was a synchronous {row.provider} call that did not finish; there is nothing to "
                    "resume",
                    hint="generate it again",
                )
            )
        elif row.status == JobStatus.CANCELLED:
            result.errors.append(TaskFailed(f"job {row.id} was cancelled"))
        else:
            result.errors.append(TaskFailed(f"job {row.id} was never submitted", hint="generate it again"))
    if not todo:
        return result, None
    engine = engine_for(ModelRef(row.provider, row.model), settings)
    line_plan = engine.journal_plan(row, settings)
    job = PlannedJob(
        PromptLine(None, result.prompt), GenerateOptions(), engine, line_plan, result, previous=row, resume_tasks=todo
    )
    job.spec = OutputSpec.from_dict(row.output, Path(out_dir) if out_dir else None)
    return result, job


def cancel(job_ids: list[str]) -> tuple[list[str], list[str]]:
    """Stop tracking jobs; ask each provider to cancel pending tasks where it can. Returns (cancelled, notes)."""
    from imagegen_cli.backends.cancel import CANCEL_TIMEOUT, cancel_job
    from imagegen_cli.status import OPEN_STATUSES
    from imagegen_cli.store.journal import Journal

    notes: list[str] = []
    cancelled: list[str] = []
    settings: Settings | None = None  # read once, when a job needs it (a job already over needs no config)
    # One bound for the whole command, however many jobs: each job's cancel requests get what is left of it.
    ends = None
    with Journal.open() as journal:
        for job_id in job_ids:
            row = journal.get(job_id)
            if row.status not in OPEN_STATUSES:
                notes.append(f"{row.id} is already {row.status}")
                continue
            settings = settings or load_settings()
            ends = ends or time.monotonic() + min(CANCEL_TIMEOUT, settings.timeout)
            notes.extend(cancel_job(journal, row, settings, ends - time.monotonic()))
            cancelled.append(row.id)
    return cancelled, notes


def prune(older_than: str) -> int:
    """Forget finished jobs older than a duration (``30d``, ``12h``, ``90m``, ``2w``); image files stay."""
    from imagegen_cli.options import parse_duration
    from imagegen_cli.store.journal import Journal, journal_path

    cutoff = time.time() - parse_duration(older_than)
    if not journal_path().exists():
        return 0
    with Journal.open() as journal:
        return journal.prune(cutoff)
