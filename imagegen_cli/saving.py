"""The recorder: what the driver does with each event of a job. One mechanism for every engine.

Engines emit events (``imagegen_cli.events``); :class:`JobRecorder` turns them into journal rows, files, progress
and the job's result: a task is journalled before the engine goes on, an image is claimed, written and journalled.

Each image is its own failure domain: an error while fetching or writing one image is recorded on
the job and the others go on. A file that reaches its final name is always journalled and reported,
even when Ctrl-C or SIGTERM arrives while it is being written (the write is shielded and awaited).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from imagegen_cli.errors import (
    DeadlineReached,
    ExitCode,
    ImageBusy,
    ImagegenError,
    ImagesExpired,
    as_job_error,
    clean_text,
)
from imagegen_cli.events import TaskRecord
from imagegen_cli.status import JobStatus, TaskState
from imagegen_cli.store.journal import Claim, TaskRow

if TYPE_CHECKING:
    from imagegen_cli.backends import PlannedJob, RunContext
    from imagegen_cli.events import Event, ImageReady
    from imagegen_cli.meta import ImageMeta
    from imagegen_cli.result import JobResult, ProgressSink
    from imagegen_cli.store.job_rows import Job
    from imagegen_cli.store.journal import Journal
    from imagegen_cli.store.writer import ImageWriter, SavedImage

T = TypeVar("T")
BUSY_POLL = 0.2  # seconds between looks at an image another process is saving


class JobRecorder:
    """Saves the images of one job and keeps the journal and the result in step with the disk."""

    def __init__(
        self,
        result: JobResult,
        journal: Journal | None,
        sink: ProgressSink,
        writer: ImageWriter | None = None,
        label: str = "",
    ) -> None:
        self.result = result
        self.journal = journal
        self.sink = sink
        self.writer = writer
        self.label = label  # "line 3: " before each progress label of a batch line
        self.keys: set[str] = set()  # progress bars open now

    # ------------------------------------------------------------------ events
    def handle(self, event: Event, key_prefix: str = "") -> None:
        """Record one event of this job (an ``ImageReady`` with pixels or bytes is saved here, in this thread)."""
        from imagegen_cli import events as ev

        result = self.result
        if isinstance(event, ev.CallSent):
            if event.sends:
                result.sent = True
            if event.shown:
                self.keys.add(event.key)
                self.sink.start(key_prefix + event.key, self.label + event.label, event.total)
        elif isinstance(event, ev.Progress):
            self.sink.update(key_prefix + event.key, completed=event.completed)
        elif isinstance(event, ev.CallDone):
            self.keys.discard(event.key)
            self.sink.finish(key_prefix + event.key)
        elif isinstance(event, ev.Note):
            if event.now:
                self.sink.note(event.text)
            elif event.text not in result.notes:
                result.notes.append(event.text)
        elif isinstance(event, ev.TaskSubmitted):
            result.tasks.append(event.task)
            task = event.task
            row = TaskRow(task.remote_id, task.call, task.first_image, task.count, task.seed, task.state.value)
            self._journal_call(lambda j, job_id: j.add_task(job_id, row), None)
        elif isinstance(event, ev.InputUploaded):
            upload = event
            self._journal_call(
                lambda j, job_id: j.record_upload(job_id, upload.sha256, upload.url, upload.expires_at), None
            )
        elif isinstance(event, ev.Submitting):
            placeholder = TaskRecord(
                submitting_id(event.call), TaskState.SUBMITTING, event.call, event.first_image, event.count
            )
            result.tasks.append(placeholder)
            row = TaskRow(placeholder.remote_id, event.call, event.first_image, event.count, None, "submitting")
            self._journal_call(lambda j, job_id: j.add_task(job_id, row), None)
        elif isinstance(event, ev.SubmitSettled):
            gone = submitting_id(event.call)
            result.tasks[:] = [t for t in result.tasks if t.remote_id != gone]
            self._journal_call(lambda j, job_id: j.remove_task(job_id, gone), None)
        elif isinstance(event, ev.TaskUpdated):
            self._task_state(event.task.remote_id, event.task.state, event.task.error, event.expires_at)
        elif isinstance(event, ev.Usage):
            result.usage.append(event.usage)
        elif isinstance(event, ev.CallFailed):
            result.errors.append(event.error)
        elif isinstance(event, ev.Preview):
            preview = getattr(self.sink, "preview", None)
            if preview is not None:
                preview(result, event.index, event.image)
        elif isinstance(event, ev.ImageReady):
            self._save_now(event)

    def _task_state(self, remote_id: str, state: TaskState, error: str | None, expires_at: float | None) -> None:
        for task in self.result.tasks:
            if task.remote_id == remote_id:
                task.state, task.error = state, error
        self._journal_call(lambda j, job_id: j.update_task(job_id, remote_id, state.value, error, expires_at), None)

    def _meta(self, event: ImageReady) -> ImageMeta:
        """The image's record: what the engine said, plus this image's index and seed, the job and the time."""
        return event.meta.saved_as(index=event.index, seed=event.seed, job=self.result.job_id)

    def _save_now(self, event: ImageReady) -> None:
        """An image in memory (pixels from a pipeline, or encoded bytes): claimed, written and recorded here."""
        assert self.writer is not None
        index, writer = event.index, self.writer
        claim = self.claim(index)
        if claim == Claim.BUSY:
            self.busy(index)  # another process is saving it: said, not silently skipped
        if claim != Claim.CLAIMED:
            if event.placed is not None and event.placed.path != "-":
                # A worker placed a second copy of an image another run saved meanwhile: one set per line.
                with contextlib.suppress(OSError):
                    Path(event.placed.path).unlink()
            return
        if event.placed is not None:
            self.record(replace(event.placed, url=event.url), remote_id=event.remote_id)
            return
        meta = self._meta(event)
        try:
            if event.pixels is not None:
                saved = writer.save_pil(event.pixels, index=index, seed=event.seed, meta=meta)
            else:
                assert event.data is not None
                saved = writer.save_bytes(event.data, index=index, seed=event.seed, meta=meta)
        except Exception as exc:  # noqa: BLE001 - one image's failure never ends the run
            self.fail(index, exc, event.remote_id)
            return
        self.record(replace(saved, url=event.url, revised_prompt=event.revised_prompt), remote_id=event.remote_id)

    async def deliver(self, event: ImageReady) -> bool:
        """Claim (waiting while another process saves it), fetch, then write in a thread, shielded from Ctrl-C.

        True once the image is saved, by this run or another. The run's deadline during the fetch passes through
        (claim released): it is not this image's failure.
        """
        assert self.writer is not None
        writer = self.writer
        if not await self.claim_waiting(event.index, time.monotonic() + event.patience):
            return event.index in self.result.saved_indices
        meta = self._meta(event)
        index, seed = event.index, event.seed

        async def prepare() -> bytes | Path:
            if event.fetch is None:
                assert event.data is not None
                return event.data
            handle, tmp = writer.temp_file()
            try:
                with handle:
                    await event.fetch(handle)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return tmp

        def write(source: bytes | Path) -> SavedImage:
            if isinstance(source, bytes):
                saved = writer.save_bytes(source, index=index, seed=seed, meta=meta)
            else:
                saved = writer.finish(source, index=index, seed=seed, meta=meta)
            return replace(saved, seed=seed, url=event.url, revised_prompt=event.revised_prompt)

        outcome = await self.save_async(
            index, prepare, write, remote_id=event.remote_id, passthrough=(DeadlineReached,)
        )
        return not isinstance(outcome, ImagegenError)

    # ------------------------------------------------------------------ claims
    def claim(self, index: int) -> Claim:
        """Reserve image ``index``; an image already saved is reported (again) as part of this result."""
        outcome = self._journal_call(lambda j, job_id: j.claim_image(job_id, index), Claim.CLAIMED)
        if outcome == Claim.SAVED:
            self._report_saved(index)
        return outcome

    async def claim_waiting(self, index: int, deadline: float) -> bool:
        """Claim image ``index``, waiting while another live process is saving it; True: ours to save."""
        import asyncio  # only the async engines (gateways) come here: a local run needs no event loop

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
        import asyncio

        stop: tuple[type[BaseException], ...] = (asyncio.CancelledError, *passthrough)
        try:
            payload = await prepare()
        except stop:
            self.release(index)
            raise
        except Exception as exc:  # noqa: BLE001 - one image's failure never ends the run
            return self.fail(index, exc, remote_id)
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
            error = self.fail(index, exc, remote_id)
            if interrupted:
                raise asyncio.CancelledError from None
            return error
        self.record(saved, remote_id=remote_id)
        if interrupted:
            raise asyncio.CancelledError
        return saved

    def fail(self, index: int, exc: BaseException, remote_id: str | None = None) -> ImagegenError:
        """Image ``index`` could not be fetched or saved: its error goes on the job, its claim is released.

        Only the gateway's own word ends a task: an expired link marks its task expired; a page of HTML for an
        image, a CDN outage or a full disk leave the task resumable (``tasks wait`` fetches it again).
        """
        self.release(index)
        error = as_job_error(exc, f"image {index}")
        self.result.errors.append(error)
        if remote_id is not None and isinstance(error, ImagesExpired):
            self._task_state(remote_id, TaskState.EXPIRED, error.message, None)
        elif remote_id is not None and self.result.job_id:
            again = f"imagegen tasks wait {self.result.job_id}"
            if again not in (error.hint or ""):
                retry = f"the gateway finished the task: fetch it again with {again}"
                error.hint = f"{error.hint}; {retry}" if error.hint else retry
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


def adopt_saved_files(journal: Journal, job: Job) -> Job:
    """The job as the journal knows it, with the images its folder holds that the journal never recorded.

    A journal write that failed after a save (a full disk) leaves the file and no row; the file's own record
    names its job and index, so a resume adopts it instead of making (and billing) the image again.
    """
    from imagegen_cli.store.reader import find_job_images

    missing = {i for i in range(1, job.n + 1) if i not in job.saved_indices()}
    if not missing or not job.out_dir:
        return job
    found = find_job_images(Path(job.out_dir), job.id, missing, since=job.created_at - 60)
    for index, (path, meta) in sorted(found.items()):
        try:
            journal.record_image(
                job.id,
                index=index,
                path=str(path),
                url=None,
                seed=meta.seed,
                width=meta.width or 0,
                height=meta.height or 0,
                remote_id=None,
            )
        except sqlite3.Error:
            return job  # still full: the run goes on as the journal says (a later resume adopts them)
    if not found:
        return job
    from imagegen_cli.store.placement import remove_stale_parts

    with contextlib.suppress(OSError):
        remove_stale_parts(Path(job.out_dir))  # what the run that placed them left (no writer may open here now)
    adopted = journal.get(job.id)
    if len(adopted.saved_indices()) >= adopted.n:
        journal.finish_job(job.id)  # every image is there: the job's status says so (the one rule)
        adopted = journal.get(job.id)
    return adopted


def submitting_id(call: int) -> str:
    """The journal's placeholder for a task-creating call whose answer has not arrived."""
    return f"(call {call} in flight)"


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
    job_id = result.job_id or ""
    unsent = not result.sent and job.previous is None and bool(job_id)
    if unsent and result.interrupted:
        # Interrupted while waiting for its turn: nothing was sent, so nothing is journalled or counted as run.
        with contextlib.suppress(sqlite3.Error):
            context.journal.delete_job(job_id)
        result.job_id, result.started = None, False
        return
    if unsent and result.errors and all(e.exit_code == ExitCode.USAGE for e in result.errors):
        # A usage error found only when the run began (--device mps without an Apple GPU): nothing was made or
        # sent, so there is no job to resume or list, only the error (exit 2).
        with contextlib.suppress(sqlite3.Error):
            context.journal.delete_job(job_id)
        result.job_id = None
        context.sink.job_finished(result)
        return
    if result.errors and result.status() == JobStatus.SUCCEEDED and not result.interrupted:
        # Every image is on disk: what went wrong on the way (a retried call, an image another process saved)
        # is a note, never an error beside "succeeded" and exit 0.
        for error in result.errors:
            note = f"{error.code}: {error.message}"
            if note not in result.notes:
                result.notes.append(note)
        result.errors.clear()
    if result.job_id is not None:
        # A failing journal was already said when the images were recorded.
        with contextlib.suppress(sqlite3.Error):
            context.journal.finish_job(result.job_id, "; ".join(e.message for e in result.errors) or None)
    context.sink.job_finished(result)
