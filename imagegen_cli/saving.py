"""Claim, write and journal each image of a job: one mechanism for every backend.

Each image is its own failure domain: an error while fetching or writing one image is recorded on
the job and the others go on. A file that reaches its final name is always journalled and reported,
even when Ctrl-C or SIGTERM arrives while it is being written (the write is shielded and awaited).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from imagegen_cli.errors import DownloadError, ImageBusy, ImagegenError, SaveError, clean_text
from imagegen_cli.store.journal import Claim

if TYPE_CHECKING:
    from imagegen_cli.backends import PlannedJob, RunContext
    from imagegen_cli.result import JobResult, ProgressSink
    from imagegen_cli.store.journal import Journal
    from imagegen_cli.store.writer import ImageWriter, SavedImage

T = TypeVar("T")
BUSY_POLL = 0.2  # seconds between looks at an image another process is saving


def as_job_error(exc: BaseException, what: str) -> ImagegenError:
    """Any exception met while making one image, as the error recorded for it (never an "internal error")."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]  # anyio wraps a bad port in a task group: the leaf says what happened
    if isinstance(exc, ImagegenError):
        if what not in exc.message:
            exc.message = f"{what}: {exc.message}"
        return exc
    if isinstance(exc, OSError) and exc.errno is not None:
        return SaveError(
            f"cannot save {what}: {exc.strerror or exc}",
            hint="check free space and permissions of the output directory",
        )
    if isinstance(exc, RecursionError):
        return DownloadError(f"{what}: the answer is nested too deeply to read")
    return DownloadError(f"{what}: {type(exc).__name__}: {clean_text(str(exc), 200)}")


class JobRecorder:
    """Saves the images of one job and keeps the journal and the result in step with the disk."""

    def __init__(self, result: JobResult, journal: Journal | None, sink: ProgressSink) -> None:
        self.result = result
        self.journal = journal
        self.sink = sink

    # ------------------------------------------------------------------ claims
    def claim(self, index: int) -> Claim:
        """Reserve image ``index``; an image already saved is reported (again) as part of this result."""
        outcome = self._journal_call(lambda j, job_id: j.claim_image(job_id, index), Claim.CLAIMED)
        if outcome == Claim.SAVED:
            self._report_saved(index)
        return outcome

    async def claim_waiting(self, index: int, deadline: float) -> bool:
        """Claim image ``index``, waiting while another live process is saving it; True: ours to save."""
        while True:
            outcome = self.claim(index)
            if outcome != Claim.BUSY:
                return outcome == Claim.CLAIMED
            if time.monotonic() >= deadline:
                self.busy(index)
                return False
            await asyncio.sleep(BUSY_POLL)

    def busy(self, index: int) -> None:
        """Image ``index`` is being saved by another live process: say which, as a pending outcome (exit 5)."""
        assert self.journal is not None and self.result.job_id is not None
        pid = self.journal.claimed_by(self.result.job_id, index)
        self.result.errors.append(
            ImageBusy(
                f"image {index} is being saved by another imagegen process (pid {pid})",
                index,
                hint=f"wait for it, or run again: imagegen tasks wait {self.result.job_id}",
            )
        )

    def release(self, index: int) -> None:
        self._journal_call(lambda j, job_id: j.release_image(job_id, index), None)

    def record_target(self, index: int, path: str) -> None:
        """The writer is about to create ``path`` for image ``index``: say so in its claim first."""
        self._journal_call(lambda j, job_id: j.claim_target(job_id, index, path), None)

    # ------------------------------------------------------------------ saving
    def save(self, index: int, write: Callable[[], SavedImage]) -> SavedImage | None:
        """Write one image in this thread (local pipelines); an error is recorded, not raised."""
        try:
            saved = write()
        except Exception as exc:  # noqa: BLE001 - one image's failure never ends the run
            self.fail(index, exc)
            return None
        self.record(saved, remote_id=None)
        return saved

    async def save_async(
        self,
        index: int,
        prepare: Callable[[], Awaitable[T]],
        write: Callable[[T], SavedImage],
        *,
        remote_id: str | None = None,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> SavedImage | ImagegenError:
        """Fetch (``prepare``, cancellable) then write in a thread (shielded); an error is recorded and returned.

        ``passthrough`` errors (the run's deadline) are not this image's failure: they propagate, claim released.
        """
        stop: tuple[type[BaseException], ...] = (asyncio.CancelledError, *passthrough)
        try:
            payload = await prepare()
        except stop:
            self.release(index)
            raise
        except Exception as exc:  # noqa: BLE001 - one image's failure never ends the run
            return self.fail(index, exc)
        future = asyncio.get_running_loop().run_in_executor(None, write, payload)
        # Interrupted (once or more) while the file is being placed: let the writer finish, then journal and
        # report what it placed, so no file is ever on disk without being recorded; then pass the interrupt on.
        interrupted = False
        while not future.done():
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                interrupted = True
            except Exception:  # noqa: BLE001, S112 - the future holds the error, read below
                continue
        try:
            saved = future.result()
        except Exception as exc:  # noqa: BLE001 - one image's failure never ends the run
            error = self.fail(index, exc)
            if interrupted:
                raise asyncio.CancelledError from None
            return error
        self.record(saved, remote_id=remote_id)
        if interrupted:
            raise asyncio.CancelledError
        return saved

    def fail(self, index: int, exc: BaseException) -> ImagegenError:
        self.release(index)
        error = as_job_error(exc, f"image {index}")
        self.result.errors.append(error)
        return error

    def record(self, saved: SavedImage, *, remote_id: str | None) -> None:
        self.result.images.append(saved)
        self.result.notes.extend(saved.notes)  # e.g. an animated GIF converted by --format
        if saved.path != "-":
            self._journal_call(
                lambda j, job_id: j.record_image(
                    job_id,
                    index=saved.index,
                    path=saved.path,
                    url=saved.url,
                    seed=saved.seed,
                    width=saved.width,
                    height=saved.height,
                    remote_id=remote_id,
                ),
                None,
            )
        self.sink.image_saved(self.result, saved)

    def _report_saved(self, index: int) -> None:
        if self.journal is not None and self.result.job_id is not None:
            self.result.report_saved_rows(self.journal.get(self.result.job_id).images, only={index})

    def _journal_call(self, action: Callable[[Journal, str], T], fallback: T) -> T:
        """A journal write; when the journal fails (disk full, locked) the image is still saved and reported."""
        if self.journal is None or self.result.job_id is None:
            return fallback
        try:
            return action(self.journal, self.result.job_id)
        except sqlite3.Error as exc:
            note = f"the journal could not be updated ({clean_text(str(exc), 120)}); saved images are still listed"
            if note not in self.result.notes:
                self.result.notes.append(note)
            return fallback


def begin_job(job: PlannedJob, context: RunContext) -> ImageWriter:
    """Journal a job before its first call (or take over its earlier entry) and open its writer."""
    from imagegen_cli.store.writer import ImageWriter

    assert job.spec is not None, "output specs are built before a run starts"
    result, plan = job.result, job.plan
    result.started = True
    try:
        if job.previous is not None:
            context.journal.claim_pid(job.previous.id)
            result.job_id = job.previous.id
        else:
            entry = plan.journal_entry()
            result.job_id = context.journal.create_job(
                provider=plan.provider_name,
                model=plan.model_name,
                dialect=entry.dialect,
                base_url=entry.base_url,
                request=plan.request.to_dict(),
                calls=entry.calls,
                n=plan.request.n,
                out_dir=str(job.spec.directory),
                output=job.spec.to_dict(),
                batch_key=job.key or None,
            )
    except sqlite3.Error as exc:
        note = f"the journal could not be updated ({clean_text(str(exc), 120)}); this job cannot be resumed"
        result.notes.append(note)
    return ImageWriter(
        job.spec, prompt=plan.request.prompt, provider=plan.provider_name, model=plan.model_name, n=plan.request.n
    )


def end_job(job: PlannedJob, context: RunContext) -> None:
    """Journal the job's final status (derived by the one rule) and report it."""
    result = job.result
    if result.interrupted and not result.sent and job.previous is None and result.job_id is not None:
        # Interrupted while waiting for its turn: nothing was sent, so nothing is journalled or counted as run.
        with contextlib.suppress(sqlite3.Error):
            context.journal.delete_job(result.job_id)
        result.job_id, result.started = None, False
        return
    if result.job_id is not None:
        # A failing journal was already said when the images were recorded.
        with contextlib.suppress(sqlite3.Error):
            context.journal.finish_job(result.job_id, "; ".join(e.message for e in result.errors) or None)
    context.sink.job_finished(result)
