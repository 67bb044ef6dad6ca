"""Batch generation: many prompts from a file, at the gateway's speed, resumable line by line.

Every line is planned (and so validated) before anything is sent; a usage error names its line. Each
line is a job in the journal, keyed by its normalised request and output, so ``--resume`` skips lines
whose images are saved, resumes lines whose remote tasks are still pending, and regenerates only the
missing images of the rest. Lines run through a pool of workers in file order; one bound on calls in
flight (per provider, or ``--concurrency`` across the batch) and a per-provider throttle keep the pace.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import ExitCode, ImagegenError, UsageError, clean_text, interrupted_code

if TYPE_CHECKING:
    from imagegen_cli.generation import GenerationResult, TaskRecord
    from imagegen_cli.providers.planning import Plan
    from imagegen_cli.store.journal import Job, TaskJournal
    from imagegen_cli.store.writer import OutputSpec, SavedImage

LINE_KEYS = (
    "prompt", "model", "provider", "n", "size", "ratio", "resolution", "quality", "style", "seed",
    "negative_prompt", "steps", "guidance", "params", "param", "response_format", "user", "on_behalf_of",
    "name", "format", "out",
)  # fmt: skip
PROVIDER_CONCURRENCY = {"apimart": 8}  # task gateways mostly wait: more tasks in flight cost nothing
DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True)
class PromptLine:
    """One prompt of the file: its line number and its values (``prompt`` plus any overrides)."""

    number: int
    values: dict[str, Any]


def read_prompt_file(path: str) -> list[PromptLine]:
    """Plain text (a prompt per line) or JSON Lines; blank lines and ``#`` comments are skipped."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"prompt file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read prompt file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    lines: list[PromptLine] = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("{"):
            try:
                data = json.loads(stripped)
            except ValueError as exc:
                raise UsageError(f"line {number}: invalid JSON ({exc})") from None
            if not isinstance(data, dict):
                raise UsageError(f"line {number}: a JSON line must be an object")
            values = {str(k).replace("-", "_"): v for k, v in data.items()}
            unknown = sorted(set(values) - set(LINE_KEYS))
            if unknown:
                raise UsageError(f"line {number}: unknown key {unknown[0]!r}", hint="keys: " + ", ".join(LINE_KEYS))
            if not isinstance(values.get("prompt"), str) or not values["prompt"].strip():
                raise UsageError(f'line {number}: a JSON line needs a "prompt" string')
        else:
            values = {"prompt": stripped}
        lines.append(PromptLine(number, values))
    if not lines:
        raise UsageError(f"prompt file {path} has no prompts", hint="one prompt per line; # starts a comment")
    return lines


def line_fields(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The command line's request fields with one line's overrides applied (typed and checked)."""
    from imagegen_cli.request import Ratio, Size, parse_param, parse_tier

    fields = dict(base)
    params = dict(base.get("params", ()))
    for key, value in values.items():
        if key in ("model", "provider", "name", "format", "out"):
            continue
        if key == "params":
            if not isinstance(value, dict):
                raise UsageError('"params" must be an object')
            params.update(value)
        elif key == "param":
            for item in value if isinstance(value, list) else [value]:
                k, v = parse_param(str(item))
                params[k] = v
        elif key in ("size", "ratio", "resolution") and value is not None:
            parser: Callable[[str], Any] = {"size": Size.parse, "ratio": Ratio.parse, "resolution": parse_tier}[key]
            fields[key] = parser(str(value))
            if key == "size":
                fields["ratio"] = fields["resolution"] = None  # a line's size replaces the command line's ratio
            elif key == "ratio" and "size" not in values:
                fields["size"] = None
        elif key in ("n", "seed", "steps"):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise UsageError(f'"{key}" must be an integer')
            fields[key] = value
        elif key == "guidance":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise UsageError('"guidance" must be a number')
            fields[key] = value
        else:
            if value is not None and not isinstance(value, str):
                raise UsageError(f'"{key}" must be a string')
            fields[key] = value
    fields["params"] = tuple(params.items())
    return fields


@dataclass
class LineJob:
    """One line, planned: where it goes, how it is keyed, and what it produced."""

    line: PromptLine
    plan: Any  # providers.planning.Plan or local.planning.LocalPlan
    spec: OutputSpec
    key: str
    local: bool
    result: GenerationResult | None = None
    status: str = "pending"  # pending, skipped, succeeded, partial, failed, submitted
    existing: Job | None = None
    resume_tasks: list[TaskRecord] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    @property
    def provider_name(self) -> str:
        return "local" if self.local else str(self.plan.provider.name)


def line_key(plan: Any, spec: OutputSpec, local: bool, occurrence: int) -> str:
    """What makes two runs of a line "the same line": request, provider, model, output; plus repeat count."""
    request = dict(plan.request.to_dict())
    request.pop("strict", None)
    provider = "local" if local else plan.provider.name
    model = plan.source.name if local else plan.provider.model
    identity = {
        "request": request,
        "provider": provider,
        "model": model,
        "out": str(spec.directory),
        "template": spec.template,
        "file": spec.file_name,
        "fmt": spec.fmt,
        "occurrence": occurrence,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def assign_keys(jobs: list[LineJob]) -> None:
    """Key every line; identical lines are told apart by how many came before them."""
    seen: Counter[str] = Counter()
    for job in jobs:
        base = line_key(job.plan, job.spec, job.local, 0)
        job.key = line_key(job.plan, job.spec, job.local, seen[base])
        seen[base] += 1


def prepare_resume(journal: TaskJournal, jobs: list[LineJob]) -> None:
    """Mark lines already done as skipped; find the pending tasks and the missing images of the rest."""
    from imagegen_cli.generation import TaskRecord

    for job in jobs:
        previous = journal.by_batch_key(job.key)
        if previous is None:
            continue
        saved = {i.index for i in previous.saved if i.path and Path(i.path).exists()}
        job.existing = previous
        job.paths = [str(i.path) for i in previous.saved if i.index in saved]
        if len(saved) >= previous.n:
            job.status = "skipped"
            continue
        for task in previous.tasks:
            indices = set(range(task.first_image, task.first_image + task.count))
            if task.status in ("pending", "succeeded") and not indices <= saved:
                job.resume_tasks.append(
                    TaskRecord(
                        task.remote_id,
                        task.status,
                        task.call_index,
                        task.first_image,
                        task.count,
                        task.seed,
                        task.error,
                    )
                )


class BatchProgress:
    """Counts and reports: a live line on a terminal, else one stderr line per finished image."""

    def __init__(self, total: int, *, live: bool, quiet: bool, emit_path: Callable[[str], None] | None) -> None:
        self.total = total
        self.done = self.failed = self.skipped = self.in_flight = self.images = 0
        self.started = time.monotonic()
        self.quiet = quiet
        self.emit_path = emit_path
        self._live: Any = None
        if live and not quiet:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), refresh_per_second=8, transient=True)
            self._live.start()
            self._refresh()

    def _refresh(self) -> None:
        if self._live is None:
            return
        from rich.text import Text

        finished = self.done + self.failed
        elapsed = time.monotonic() - self.started
        remaining = self.total - finished - self.skipped
        eta = f"{elapsed / finished * remaining:.0f}s" if finished else "?"
        self._live.update(
            Text(
                f"batch: {finished + self.skipped}/{self.total} lines · {self.done} done · "
                f"{self.failed} failed · {self.skipped} skipped · {self.in_flight} in flight · "
                f"{self.images} images · ETA {eta}"
            )
        )

    def _note(self, text: str) -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def started_line(self) -> None:
        self.in_flight += 1
        self._refresh()

    def image(self, line: int, saved: SavedImage) -> None:
        self.images += 1
        if self.emit_path is not None and saved.path != "-":
            self.emit_path(saved.path)
        if self._live is None:
            self._note(f"line {line}: saved {saved.path}")
        self._refresh()

    def finished_line(self, job: LineJob) -> None:
        self.in_flight -= 1
        if job.status in ("succeeded", "submitted"):
            self.done += 1
        else:
            self.failed += 1
            for error in job.result.errors if job.result else []:
                self._note(f"line {job.line.number}: error: {clean_text(error.message, 300)}")
        self._refresh()

    def skip(self, job: LineJob) -> None:
        self.skipped += 1
        self._refresh()

    def close(self) -> str:
        if self._live is not None:
            self._live.stop()
        elapsed = time.monotonic() - self.started
        return (
            f"batch: {self.total} lines · {self.done} succeeded · {self.failed} failed · {self.skipped} "
            f"skipped (already saved) · {self.images} images in {elapsed:.1f}s"
        )


@dataclass
class BatchOutcome:
    """The whole batch, for the JSON document and the exit code."""

    jobs: list[LineJob]
    summary: str
    interrupted: bool = False

    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return interrupted_code()
        results = [j.result for j in self.jobs if j.result is not None]
        if any(r.pending and not r.no_wait for r in results):
            return ExitCode.PENDING
        ok = all(j.status in ("succeeded", "skipped", "submitted") for j in self.jobs)
        if ok:
            return ExitCode.OK
        if any(j.paths or (j.result and j.result.images) for j in self.jobs):
            return ExitCode.PARTIAL
        codes = [r.exit_code() for r in results if r.errors]
        if codes and all(c == ExitCode.AUTH for c in codes):
            return ExitCode.AUTH
        return ExitCode.FAILURE

    def document(self) -> dict[str, Any]:
        from imagegen_cli.cli.output import result_document

        lines: list[dict[str, Any]] = []
        images: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        tasks: list[dict[str, Any]] = []
        notes: list[str] = []
        for job in self.jobs:
            doc = result_document(job.result) if job.result else None
            line_images = [dict(i, line=job.line.number) for i in doc["images"]] if doc else []
            if job.status == "skipped":
                line_images = [{"path": p, "line": job.line.number, "skipped": True} for p in job.paths]
            images.extend(line_images)
            if doc:
                errors.extend(dict(e, line=job.line.number) for e in doc["errors"])
                tasks.extend(dict(t, line=job.line.number) for t in doc["tasks"])
                notes.extend(f"line {job.line.number}: {n}" for n in doc["notes"])
            lines.append(
                {
                    "line": job.line.number,
                    "prompt": job.plan.request.prompt,
                    "provider": job.provider_name,
                    "model": doc["model"] if doc else (job.existing.model if job.existing else None),
                    "status": job.status,
                    "job": (doc or {}).get("job") or (job.existing.id if job.existing else None),
                    "paths": [i["path"] for i in line_images],
                }
            )
        statuses = {job.status for job in self.jobs}
        if statuses <= {"succeeded", "skipped"}:
            status = "succeeded"
        elif statuses <= {"submitted", "skipped"}:
            status = "submitted"
        elif images:
            status = "partial"
        else:
            status = "failed"
        providers = {job.provider_name for job in self.jobs}
        return {
            "status": status,
            "provider": providers.pop() if len(providers) == 1 else None,
            "model": None,
            "images": images,
            "tasks": tasks,
            "notes": notes,
            "errors": errors,
            "lines": lines,
            "summary": self.summary,
        }


def _finish(job: LineJob) -> None:
    result = job.result
    assert result is not None
    job.paths = [*job.paths, *(i.path for i in sorted(result.images, key=lambda i: i.index))]
    if result.no_wait and not result.errors:
        job.status = "submitted"
    elif len(job.paths) >= job.plan.request.n and not result.errors:
        job.status = "succeeded"
    elif job.paths:
        job.status = "partial"
    else:
        job.status = "failed"


def run_batch(
    jobs: list[LineJob],
    progress: BatchProgress,
    *,
    timeout: float,
    concurrency: int | None,
    config_concurrency: int | None,
    no_wait: bool,
    resume: bool,
) -> BatchOutcome:
    """Run every line; remote lines concurrently, local lines one after another (one model load)."""
    import asyncio

    from imagegen_cli.store.journal import TaskJournal

    interrupted = False
    with TaskJournal.open() as journal:
        if resume:
            prepare_resume(journal, jobs)
        for job in jobs:
            if job.status == "skipped":
                progress.skip(job)
        remote = [j for j in jobs if not j.local and j.status == "pending"]
        local = [j for j in jobs if j.local and j.status == "pending"]
        try:
            if remote:
                asyncio.run(
                    _run_remote(
                        journal,
                        remote,
                        progress,
                        timeout=timeout,
                        concurrency=concurrency,
                        config_concurrency=config_concurrency,
                        no_wait=no_wait,
                    )
                )
            for job in local:
                _run_local_line(journal, job, progress)
                if job.result and job.result.interrupted:
                    interrupted = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            for job in jobs:
                if job.result is not None and job.result.job_id and job.status == "pending":
                    journal.finish_job(job.result.job_id)
    summary = progress.close()
    return BatchOutcome(jobs, summary, interrupted)


def _job_id(journal: TaskJournal, job: LineJob, calls: list[dict[str, Any]]) -> str:
    if job.existing is not None:
        journal.claim_pid(job.existing.id)
        return job.existing.id
    plan, spec = job.plan, job.spec
    local = job.local
    return journal.create_job(
        provider=job.provider_name,
        model=plan.source.name if local else plan.provider.model,
        dialect="local" if local else plan.provider.profile.dialect,
        base_url=plan.source.location if local else plan.provider.base_url,
        request=plan.request.to_dict(),
        calls=calls,
        n=plan.request.n,
        out_dir=str(spec.directory),
        output=spec.to_dict(),
        batch_key=job.key,
    )


def _remaining_plan(job: LineJob) -> Plan | None:
    """For a resumed line with no pending tasks: a plan for just the images it is missing."""
    from dataclasses import replace

    from imagegen_cli.providers.planning import build_plan

    plan = job.plan
    if job.existing is None:
        return plan  # type: ignore[no-any-return]
    saved = {i.index for i in job.existing.saved if i.path and Path(i.path).exists()}
    missing = [i for i in range(1, plan.request.n + 1) if i not in saved]
    covered = {i for t in job.resume_tasks for i in range(t.first_image, t.first_image + t.count)}
    missing = [i for i in missing if i not in covered]
    if not missing:
        return None
    # Contiguous runs keep the index and seed plan: image i is always seed+i-1.
    first = missing[0]
    partial = replace(plan.request, n=missing[-1] - first + 1)
    return build_plan(partial, plan.provider, first_image=first)


async def _run_remote(
    journal: TaskJournal,
    jobs: list[LineJob],
    progress: BatchProgress,
    *,
    timeout: float,
    concurrency: int | None,
    config_concurrency: int | None,
    no_wait: bool,
) -> None:
    import asyncio

    from imagegen_cli.generation import GenerationResult, RemoteRun, SharedTransport, SilentReporter
    from imagegen_cli.providers.http import make_async_client
    from imagegen_cli.providers.throttle import ProviderThrottle
    from imagegen_cli.store.writer import ImageWriter

    def bound(provider: str) -> int:
        return concurrency or config_concurrency or PROVIDER_CONCURRENCY.get(provider, DEFAULT_CONCURRENCY)

    names = {j.provider_name for j in jobs}
    shared_limit = asyncio.Semaphore(concurrency) if concurrency else None
    limiters = {name: shared_limit or asyncio.Semaphore(bound(name)) for name in names}
    throttles = {name: ProviderThrottle(bound(name)) for name in names}
    # Twice the call slots: while one line's images are decoded and written, another line's call is out.
    workers = 2 * (concurrency or sum(bound(name) for name in names))
    queue: asyncio.Queue[LineJob] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async with make_async_client() as http:

        async def one(job: LineJob) -> None:
            plan = job.plan
            provider, request = plan.provider, plan.request
            remaining = _remaining_plan(job)
            calls = [{"first_image": c.first_image, "count": c.count, "seed": c.seed} for c in plan.calls]
            job_id = _job_id(journal, job, calls)
            result = GenerationResult(
                provider.name,
                provider.model,
                request.n,
                job_id=job_id,
                notes=list(plan.notes),
                no_wait=no_wait and provider.profile.is_async,
            )
            result.already_saved = len(job.paths)
            job.result = result
            writer = ImageWriter(
                job.spec, prompt=request.prompt, provider=provider.name, model=provider.model, n=request.n
            )
            shared = SharedTransport(http, limiters[provider.name], throttles[provider.name])
            run = RemoteRun(
                provider,
                request,
                writer,
                result,
                SilentReporter(),
                journal=journal,
                shared=shared,
                no_wait=result.no_wait,
                on_image=lambda saved: progress.image(job.line.number, saved),
            )
            progress.started_line()
            try:
                if job.resume_tasks:
                    await run.resume(job.resume_tasks, timeout)
                if remaining is not None:
                    await run.run(remaining.calls, remaining.method_url[1], timeout)
            finally:
                journal.finish_job(job_id, "; ".join(e.message for e in result.errors) or None)
                _finish(job)
                progress.finished_line(job)

        async def worker() -> None:
            while True:
                try:
                    job = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    await one(job)
                except ImagegenError as exc:  # a line's failure never stops the batch
                    if job.result is not None:
                        job.result.errors.append(exc)
                    job.status = "failed"

        await asyncio.gather(*(worker() for _ in range(max(1, min(workers, len(jobs))))))


def _run_local_line(journal: TaskJournal, job: LineJob, progress: BatchProgress) -> None:
    from imagegen_cli.generation import GenerationResult, SilentReporter
    from imagegen_cli.local.runner import run_local
    from imagegen_cli.store.writer import ImageWriter

    plan = job.plan
    job_id = _job_id(journal, job, [{"first_image": b.first, "count": len(b.seeds)} for b in plan.batches])
    result = GenerationResult("local", plan.source.name, plan.request.n, job_id=job_id, notes=list(plan.notes))
    job.result = result
    writer = ImageWriter(
        job.spec, prompt=plan.request.prompt, provider="local", model=plan.source.name, n=plan.request.n
    )
    progress.started_line()
    count = len(result.images)
    try:
        run_local(plan, writer, result, SilentReporter(), journal)
    finally:
        for saved in result.images[count:]:
            progress.image(job.line.number, saved)
        journal.finish_job(job_id, "; ".join(e.message for e in result.errors) or None)
        _finish(job)
        progress.finished_line(job)
