"""Results of a run, the one status vocabulary and rule, and the progress-sink protocol.

A *job* is one journalled generation (one prompt line); its status is derived by :func:`job_status`
and nowhere else: the journal, the JSON document, the batch summary and the exit code all read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from imagegen_cli.errors import AuthError, ConfigError, ExitCode, ImageBusy, ImagegenError, clean_text
from imagegen_cli.events import TaskRecord
from imagegen_cli.signals import interrupted_exit_code
from imagegen_cli.status import JobStatus, job_status, job_status_of
from imagegen_cli.store.saved_image import SavedImage

if TYPE_CHECKING:
    from imagegen_cli.store.job_rows import ImageRow


class Interrupted(ImagegenError):
    """Ctrl-C or SIGTERM stopped the run; what was saved is kept and reported."""

    code = "interrupted"
    exit_code = ExitCode.INTERRUPTED


@dataclass
class JobResult:
    """What one job (a prompt line) produced: saved images, tasks, notes, errors, usage."""

    provider: str
    model: str
    requested: int
    job_id: str | None = None
    line: int | None = None
    prompt: str = ""
    notes: list[str] = field(default_factory=list)
    planned_notes: int = 0  # notes[:planned_notes] came from planning (said before the run), the rest while running
    images: list[SavedImage] = field(default_factory=list)
    tasks: list[TaskRecord] = field(default_factory=list)
    errors: list[ImagegenError] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)
    reused: set[int] = field(default_factory=set)  # indices saved by an earlier run (resume), reported again
    no_wait: bool = False
    interrupted: bool = False
    started: bool = False  # False: the line never ran (interrupted before its turn)
    sent: bool = False  # a call went out (a gateway request, a pipeline call): the job really began

    @property
    def saved_indices(self) -> set[int]:
        return {i.index for i in self.images}

    def report_saved_rows(self, rows: Iterable[ImageRow], only: set[int] | None = None) -> None:
        """Report images saved earlier (another run or process), from their journal rows, if still on disk.

        An image another process was saving and has saved meanwhile is no longer an error of this run.
        """
        for row in rows:
            if row.state != "saved" or not row.path or row.index in self.saved_indices:
                continue
            if (only is not None and row.index not in only) or not Path(row.path).exists():
                continue
            fmt = row.path.rpartition(".")[2]
            self.images.append(
                SavedImage(row.path, row.index, row.width or 0, row.height or 0, fmt, row.seed, url=row.url)
            )
            self.reused.add(row.index)
            self.errors = [e for e in self.errors if not (isinstance(e, ImageBusy) and e.index == row.index)]

    @property
    def skipped(self) -> bool:
        """Every image was saved by an earlier run (``--resume``): nothing was done for this job."""
        return len(self.reused) >= self.requested and self.saved_indices <= self.reused

    @property
    def resumable_tasks(self) -> list[TaskRecord]:
        """Tasks pending, or finished with images not fetched yet: ``tasks wait`` can finish them."""
        saved = self.saved_indices
        return [t for t in self.tasks if t.resumable(saved)]

    @property
    def resumable(self) -> bool:
        return bool(self.resumable_tasks)

    def resume_hint(self) -> str | None:
        return f"resume with: imagegen tasks wait {self.job_id}" if self.job_id else None

    def status(self) -> JobStatus:
        return job_status_of(self.requested, self.saved_indices, ((t.state, t.indices) for t in self.tasks))

    def exit_code(self) -> ExitCode:
        status = self.status()
        if self.interrupted:
            return interrupted_exit_code()
        if self.no_wait and status in (JobStatus.SUBMITTED, JobStatus.SUCCEEDED) and not self.errors:
            return ExitCode.OK
        if status == JobStatus.SUCCEEDED:
            return ExitCode.OK  # every image is on disk, whatever went wrong on the way
        if status in (JobStatus.SUBMITTED, JobStatus.RUNNING) or any(isinstance(e, ImageBusy) for e in self.errors):
            return ExitCode.PENDING
        if self.images:
            return ExitCode.PARTIAL
        return failure_exit_code(self.errors)

    def image_documents(self) -> list[dict[str, Any]]:
        documents = []
        for image in sorted(self.images, key=lambda i: i.index):
            entry: dict[str, Any] = {"path": image.path, "index": image.index}
            if image.seed is not None:
                entry["seed"] = image.seed
            entry.update(width=image.width, height=image.height)
            if image.url:
                entry["url"] = image.url
            if image.revised_prompt:
                entry["revised_prompt"] = image.revised_prompt
            if image.index in self.reused:
                entry["skipped"] = True
            documents.append(entry)
        return documents

    def document(self) -> dict[str, Any]:
        """The ``--json`` document of one job (README, "JSON output")."""
        document: dict[str, Any] = {
            "status": self.status().value,
            "job": self.job_id,
            "provider": self.provider,
            "model": self.model,
            "images": self.image_documents(),
            "tasks": [
                {
                    "id": self.job_id or t.remote_id,
                    "remote_id": t.remote_id,
                    "status": t.state.value,
                    **({"error": t.error} if t.error else {}),
                }
                for t in self.tasks
            ],
            "notes": list(self.notes),
            "errors": [{"code": e.code, "message": clean_text(e.message, 2000)} for e in self.errors],
        }
        usage = self.usage_total()
        if usage:
            document["usage"] = usage
        return document

    def usage_total(self) -> dict[str, Any] | None:
        if not self.usage:
            return None
        total: dict[str, Any] = {}
        for usage in self.usage:
            for key, value in usage.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    total[key] = total.get(key, 0) + value
        return total


def failure_exit_code(errors: list[ImagegenError]) -> ExitCode:
    """Nothing saved: auth/config problems are 4, usage found only at run time 2, anything else 1."""
    if any(isinstance(e, AuthError | ConfigError) for e in errors):
        return ExitCode.AUTH
    if errors and all(e.exit_code == ExitCode.USAGE for e in errors):
        return ExitCode.USAGE  # e.g. --device cuda on a machine without CUDA, found when the run starts
    return ExitCode.FAILURE


@dataclass
class RunResult:
    """Every job of a run (one for a single prompt, one per line for a batch)."""

    jobs: list[JobResult]
    interrupted: bool = False
    terminated: bool = False  # stopped by SIGTERM (exit 143), not Ctrl-C
    elapsed: float = 0.0
    gallery: str | None = None  # --gallery: the contact sheet written for the run's images

    @property
    def images(self) -> list[SavedImage]:
        return [image for job in self.jobs for image in sorted(job.images, key=lambda i: i.index)]

    def counts(self) -> dict[str, int]:
        """Lines by outcome, for the batch summary: never-started lines are counted apart from failed ones."""
        counts = {"lines": len(self.jobs), "images": sum(len(j.images) for j in self.jobs)}
        for status in JobStatus:
            counts[status.value] = 0
        counts["skipped"] = counts["not_started"] = 0
        for job in self.jobs:
            if not job.started:
                counts["not_started"] += 1
            elif job.skipped:
                counts["skipped"] += 1
            else:
                counts[job.status().value] += 1
        return counts

    def status(self) -> JobStatus:
        statuses = [job.status() for job in self.jobs]
        saved = sum(len(job.saved_indices) for job in self.jobs)
        requested = sum(job.requested for job in self.jobs)
        return job_status(
            requested=requested,
            saved=saved,
            resumable=any(job.resumable for job in self.jobs),
            cancelled=bool(statuses) and all(s == JobStatus.CANCELLED for s in statuses),
            expired=bool(statuses) and all(s == JobStatus.EXPIRED for s in statuses),
        )

    def exit_code(self) -> ExitCode:
        if self.interrupted or any(job.interrupted for job in self.jobs):
            return ExitCode.TERMINATED if self.terminated else interrupted_exit_code()
        codes = [job.exit_code() for job in self.jobs]
        if all(code == ExitCode.OK for code in codes):
            return ExitCode.OK
        if ExitCode.PENDING in codes:
            return ExitCode.PENDING
        if self.images:
            return ExitCode.PARTIAL
        failed = [e for job in self.jobs for e in job.errors]
        return failure_exit_code(failed)

    def document(self) -> dict[str, Any]:
        """The ``--json`` document: one job's for a single prompt, the batch's (with its lines) otherwise."""
        document = self._document()
        if self.gallery:
            document["gallery"] = self.gallery
        return document

    def _document(self) -> dict[str, Any]:
        if len(self.jobs) == 1 and self.jobs[0].line is None:
            return self.jobs[0].document()
        lines: list[dict[str, Any]] = []
        images: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        tasks: list[dict[str, Any]] = []
        notes: list[str] = []
        for job in self.jobs:
            doc = job.document()
            number = job.line
            line_images = [dict(i, line=number) for i in doc["images"]]
            images.extend(line_images)
            errors.extend(dict(e, line=number) for e in doc["errors"])
            tasks.extend(dict(t, line=number) for t in doc["tasks"])
            notes.extend(f"line {number}: {n}" for n in doc["notes"])
            status = "not_started" if not job.started else "skipped" if job.skipped else doc["status"]
            lines.append(
                {
                    "line": number,
                    "prompt": job.prompt,
                    "provider": job.provider,
                    "model": job.model,
                    "status": status,
                    "job": job.job_id,
                    "paths": [i["path"] for i in line_images],
                }
            )
        providers = {job.provider for job in self.jobs}
        models = {job.model for job in self.jobs}
        return {
            "status": self.status().value,
            "provider": providers.pop() if len(providers) == 1 else None,
            "model": models.pop() if len(models) == 1 else None,
            "images": images,
            "tasks": tasks,
            "notes": notes,
            "errors": errors,
            "lines": lines,
            "summary": self.counts(),
        }


class ProgressSink(Protocol):
    """Where a run reports progress; the CLI renders it (rich on a terminal), a library user may ignore it."""

    def start(self, key: str, description: str, total: int | None) -> None: ...
    def update(self, key: str, completed: int | None = None, description: str | None = None) -> None: ...
    def finish(self, key: str) -> None: ...
    def note(self, text: str) -> None: ...
    def image_saved(self, job: JobResult, image: SavedImage) -> None: ...
    def job_finished(self, job: JobResult) -> None: ...
    def batch_planned(self, jobs: list[JobResult]) -> None:
        """Every line of a batch is planned before anything is sent: the totals the batch row counts toward."""
        ...

    def close(self) -> None: ...


class SilentSink:
    """Reports nothing (the library default)."""

    def start(self, key: str, description: str, total: int | None) -> None:
        return None

    def update(self, key: str, completed: int | None = None, description: str | None = None) -> None:
        return None

    def finish(self, key: str) -> None:
        return None

    def note(self, text: str) -> None:
        return None

    def image_saved(self, job: JobResult, image: SavedImage) -> None:
        return None

    def job_finished(self, job: JobResult) -> None:
        return None

    def batch_planned(self, jobs: list[JobResult]) -> None:
        return None

    def close(self) -> None:
        return None
