"""Journalled jobs: resume (``tasks wait``), cancel, and prune, on top of the task journal."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import ConfigError, ImagegenError, TaskFailed, UsageError
from imagegen_cli.providers.dialects import PENDING, SUCCEEDED

if TYPE_CHECKING:
    from imagegen_cli.generation import GenerationResult, Reporter
    from imagegen_cli.local.planning import LocalPlan
    from imagegen_cli.providers.planning import Plan
    from imagegen_cli.providers.registry import ResolvedProvider
    from imagegen_cli.store.journal import Job, TaskJournal
    from imagegen_cli.store.writer import OutputSpec

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` (a bare number is days) → seconds."""
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"invalid duration {text!r}", hint="write it as 30d, 12h, 90m, 45s or 2w")
    return float(match[1]) * _UNIT[(match[2] or "d").lower()]


def provider_for_job(job: Job) -> ResolvedProvider:
    """The job's provider as configured now, at the base URL the job was sent to."""
    from imagegen_cli.config import load_config
    from imagegen_cli.providers.registry import load_profiles, resolve_provider

    profiles = load_profiles(load_config())
    if job.provider not in profiles:
        raise ConfigError(
            f"provider {job.provider!r} of task {job.id} is no longer configured",
            hint=f"add [providers.{job.provider}] back to the config file",
        )
    provider = resolve_provider(profiles, job.provider, job.model, job.base_url)
    provider.check_transport()
    return provider


def _saved_result(job: Job, result: GenerationResult) -> None:
    """Report every image the job has on disk, in index order, whoever saved it."""
    from imagegen_cli.store.writer import SavedImage

    result.images = [
        SavedImage(
            i.path or "", i.index, i.width or 0, i.height or 0, Path(i.path or "").suffix.lstrip("."), i.seed, url=i.url
        )
        for i in job.saved
        if i.path and Path(i.path).exists()
    ]
    result.already_saved = 0


def run_async(coro: Any, timeout: float, result: GenerationResult, reporter: Reporter) -> None:
    """Run remote work; Ctrl-C marks the result interrupted and keeps what was saved."""
    import asyncio
    import contextlib

    async def bounded() -> None:
        # A backstop over the per-request deadlines: nothing outlives --timeout by more than a moment.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(coro, timeout + 5)

    try:
        asyncio.run(bounded())
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        stop = getattr(reporter, "progress", None)
        if stop is not None:
            stop.stop()


def run_remote_job(
    plan: Plan,
    spec: OutputSpec,
    reporter: Reporter,
    *,
    notes: list[str],
    timeout: float,
    no_wait: bool,
    concurrency: int,
) -> GenerationResult:
    """A fresh remote generation, journalled from before its first call."""
    from imagegen_cli.generation import GenerationResult, RemoteRun
    from imagegen_cli.store.journal import TaskJournal
    from imagegen_cli.store.writer import ImageWriter

    request, provider = plan.request, plan.provider
    with TaskJournal.open() as journal:
        # The job is on disk before the first call, so a killed process leaves a record to resume from.
        job_id = journal.create_job(
            provider=provider.name,
            model=provider.model,
            dialect=provider.profile.dialect,
            base_url=provider.base_url,
            request=request.to_dict(),
            calls=[{"first_image": c.first_image, "count": c.count, "seed": c.seed} for c in plan.calls],
            n=request.n,
            out_dir=str(spec.directory),
            output=spec.to_dict(),
        )
        result = GenerationResult(provider.name, provider.model, request.n, job_id=job_id, notes=notes, no_wait=no_wait)
        writer = ImageWriter(spec, prompt=request.prompt, provider=provider.name, model=provider.model, n=request.n)
        run = RemoteRun(
            provider, request, writer, result, reporter, journal=journal, concurrency=concurrency, no_wait=no_wait
        )
        _, url = plan.method_url
        run_async(run.run(plan.calls, url, timeout), timeout, result, reporter)
        journal.finish_job(job_id, "; ".join(e.message for e in result.errors) or None)
    return result


def run_local_job(plan: LocalPlan, spec: OutputSpec, reporter: Reporter, *, notes: list[str]) -> GenerationResult:
    """A local generation, journalled like any other."""
    from imagegen_cli.generation import GenerationResult
    from imagegen_cli.local.runner import run_local
    from imagegen_cli.store.journal import TaskJournal
    from imagegen_cli.store.writer import ImageWriter

    request = plan.request
    with TaskJournal.open() as journal:
        job_id = journal.create_job(
            provider="local",
            model=plan.source.name,
            dialect="local",
            base_url=plan.source.location,
            request=request.to_dict(),
            calls=[{"first_image": b.first, "count": len(b.seeds)} for b in plan.batches],
            n=request.n,
            out_dir=str(spec.directory),
            output=spec.to_dict(),
        )
        result = GenerationResult("local", plan.source.name, request.n, job_id=job_id, notes=list(notes))
        writer = ImageWriter(spec, prompt=request.prompt, provider="local", model=plan.source.name, n=request.n)
        try:
            run_local(plan, writer, result, reporter, journal)
        finally:
            stop = getattr(reporter, "progress", None)
            if stop is not None:
                stop.stop()
            journal.finish_job(job_id, "; ".join(e.message for e in result.errors) or None)
    return result


def resume_job(
    journal: TaskJournal, job: Job, *, out_dir: Path | None, timeout: float, reporter: Reporter, concurrency: int = 4
) -> GenerationResult:
    """Poll a job's unfinished tasks and save the images it is missing; saved images are never redone."""
    from imagegen_cli.generation import GenerationResult, RemoteRun, TaskRecord
    from imagegen_cli.request import GenerationRequest
    from imagegen_cli.store.writer import ImageWriter, OutputSpec

    result = GenerationResult(job.provider, job.model, job.n, job_id=job.id)
    saved = {i.index for i in job.saved if i.path and Path(i.path).exists()}
    todo: list[TaskRecord] = []
    for task in job.tasks:
        indices = set(range(task.first_image, task.first_image + task.count))
        record = TaskRecord(
            task.remote_id, task.status, task.call_index, task.first_image, task.count, task.seed, task.error
        )
        result.tasks.append(record)
        if indices <= saved:
            continue
        if task.status in (PENDING, SUCCEEDED):
            todo.append(record)
        elif task.status == "expired":
            result.errors.append(TaskFailed(f"{job.provider}: task {task.remote_id}: {task.error or 'images expired'}"))
        else:
            result.errors.append(
                TaskFailed(f"{job.provider}: task {task.remote_id} {task.status}: {task.error or 'no reason given'}")
            )
    if len(saved) < job.n and not todo and not result.errors:
        if job.dialect != "tasks":
            result.errors.append(
                TaskFailed(
                    f"task {job.id} was a synchronous {job.provider} call that did not finish; there is nothing to "
                    "resume",
                    hint="generate it again",
                )
            )
        elif job.status == "cancelled":
            result.errors.append(TaskFailed(f"task {job.id} was cancelled"))
        elif not job.tasks:
            result.errors.append(TaskFailed(f"task {job.id} was never submitted", hint="generate it again"))
    if todo:
        provider = provider_for_job(job)
        provider.require_key()
        request = GenerationRequest.from_dict(job.request)
        spec = OutputSpec.from_dict(job.output, out_dir)
        writer = ImageWriter(spec, prompt=request.prompt, provider=provider.name, model=provider.model, n=job.n)
        journal.claim_pid(job.id)
        run = RemoteRun(provider, request, writer, result, reporter, journal=journal, concurrency=concurrency)
        run_async(run.resume(todo, timeout), timeout, result, reporter)
        journal.finish_job(job.id, "; ".join(e.message for e in result.errors) or None)
    _saved_result(journal.get(job.id), result)
    return result


def cancel_job(journal: TaskJournal, job: Job) -> list[str]:
    """Stop tracking a job; ask the provider to cancel its pending tasks where it documents a way.

    Returns notes on what was done.
    """
    notes: list[str] = []
    pending = [t for t in job.tasks if t.status == PENDING]
    if pending:
        provider = provider_for_job(job)
        path = provider.profile.cancel_path
        if path and provider.key:
            notes.extend(_cancel_remote(provider, [t.remote_id for t in pending]))
        else:
            notes.append(f"{job.provider} has no cancel API: its task(s) may still finish (and be billed) remotely")
    for task in pending:
        journal.update_task(job.id, task.remote_id, "cancelled", "cancelled by the user")
    journal.set_status(job.id, "cancelled", "cancelled by the user")
    return notes


def _cancel_remote(provider: ResolvedProvider, remote_ids: list[str]) -> list[str]:
    import asyncio

    from imagegen_cli.providers.http import Deadline, GatewayClient, make_async_client

    notes: list[str] = []
    cancel_path = provider.profile.cancel_path
    assert cancel_path is not None

    async def run() -> None:
        async with make_async_client() as http:
            client = GatewayClient(provider, Deadline(30), http)
            for remote_id in remote_ids:
                try:
                    await client.request_json("POST", provider.url(cancel_path.format(id=remote_id)), body={})
                    notes.append(f"asked {provider.name} to cancel {remote_id}")
                except ImagegenError as exc:
                    notes.append(f"{provider.name} did not cancel {remote_id}: {exc.message}")

    asyncio.run(run())
    return notes


def prune_jobs(journal: TaskJournal, older_than: str) -> int:
    """Forget finished jobs older than the given duration."""
    return journal.prune(time.time() - parse_duration(older_than))
