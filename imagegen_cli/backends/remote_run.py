"""Run one job against a gateway: send its calls, poll its tasks, fetch and save every image.

Every step is journalled as it happens, so an interrupt, a timeout or a killed process still leaves
an exact record of what was saved and what is pending; ``imagegen tasks wait`` resumes from it.
A finished task whose images are not fetched yet stays resumable (never "failed") when the run stops.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import (
    DownloadError,
    ImagegenError,
    ImagesExpired,
    InvalidResponse,
    PendingTimeout,
    SaveError,
    clean_text,
)
from imagegen_cli.result import TaskRecord
from imagegen_cli.status import RESUMABLE_TASK_STATES, TaskState

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from imagegen_cli.backends import PlannedJob, RunContext
    from imagegen_cli.providers.dialects import RemoteImage
    from imagegen_cli.providers.http import Deadline, GatewayClient
    from imagegen_cli.providers.planning import Plan, PlannedCall
    from imagegen_cli.providers.throttle import ProviderThrottle
    from imagegen_cli.store.writer import ImageWriter, SavedImage

GRACE_SECONDS = 2.0  # the backstop over the per-request deadlines


@dataclass
class SharedTransport:
    """What the jobs of a run share: one HTTP client, a bound on calls in flight, a provider throttle."""

    http: httpx.AsyncClient  # imported for the type checker only: this module imports without httpx
    limiter: asyncio.Semaphore
    throttle: ProviderThrottle


def _format_time(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class RemoteJobRunner:
    """Runs the calls (or resumes the tasks) of one job; errors are recorded on the job's result."""

    def __init__(self, job: PlannedJob, context: RunContext, shared: SharedTransport, writer: ImageWriter) -> None:
        from imagegen_cli.providers.http import Deadline, GatewayClient
        from imagegen_cli.providers.planning import Plan
        from imagegen_cli.saving import JobRecorder

        assert isinstance(job.plan, Plan)
        self.job = job
        self.plan: Plan = job.plan
        self.provider = job.plan.provider
        self.result = job.result
        self.sink = context.sink
        self.writer = writer
        self.journal = context.journal
        self.limiter = shared.limiter
        self.deadline: Deadline = Deadline(context.timeout)
        self.client: GatewayClient = GatewayClient(
            self.provider, self.deadline, shared.http, shared.throttle, on_retry=self._retrying
        )
        self.retry_reasons: set[str] = set()
        self.recorder = JobRecorder(job.result, context.journal, context.sink)
        writer.on_target = self.recorder.record_target
        self.waiting_on = "the gateway"
        self.deadline_hit = False
        self.clock_started = False
        self.backstop: asyncio.Timeout | None = None
        self.poll_interval = float(os.environ.get("IMAGEGEN_POLL_INTERVAL", self.provider.profile.poll_interval))
        request = self.plan.request
        self.meta_base: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "provider": self.provider.name,
            "model": self.provider.model,
            "size": str(request.size) if request.size else None,
            "ratio": str(request.ratio) if request.ratio else None,
            "resolution": request.resolution,
            "quality": request.quality,
            "style": request.style,
            "steps": request.steps,
            "guidance": request.guidance,
            "params": dict(request.params) or None,
            "job": job.result.job_id,
        }

    # ------------------------------------------------------------------ entry points
    async def run(self) -> None:
        """Poll the tasks to resume, then send every call still to make; all concurrently."""
        from imagegen_cli.providers.planning import Plan

        todo = self.job.todo
        calls = todo.calls if isinstance(todo, Plan) else ()
        # The backstop over the per-request deadlines: armed with the clock, when the first call slot is taken.
        async with asyncio.timeout(None) as self.backstop:
            await asyncio.gather(
                *(self._resume_task(task) for task in self.job.resume_tasks),
                *(self._run_call(call, self.plan.method_url[1]) for call in calls),
            )

    def _start_clock(self) -> None:
        """This job's --timeout counts from its first call slot: lines queued behind others do not lose time."""
        if self.clock_started:
            return
        self.clock_started = True
        self.deadline.restart()
        if self.backstop is not None:
            self.backstop.reschedule(asyncio.get_running_loop().time() + self.deadline.seconds + GRACE_SECONDS)

    def _retrying(self, attempt: int, delay: float, reason: str) -> None:
        """Say once per reason that the gateway is being retried, so a spinning bar is never silent."""
        if reason not in self.retry_reasons:
            self.retry_reasons.add(reason)
            self.sink.note(f"{self.provider.name}: {reason}; retrying (attempt {attempt}, in {delay:.1f} s)")

    def timed_out(self) -> None:
        """The backstop fired: say what was being waited on (pending tasks stay pending)."""
        self.deadline_hit = True
        if not self.result.resumable:
            self.result.errors.append(
                PendingTimeout(f"{self.provider.name}: no answer within --timeout (waiting on {self.waiting_on})")
            )

    def say_pending(self) -> None:
        """After the deadline: tasks still pending (or fetched but not saved) are resumable; say how."""
        result = self.result
        if not self.deadline_hit or not result.resumable or result.no_wait or result.interrupted:
            return
        ids = " ".join(t.remote_id for t in result.resumable_tasks)
        result.errors.append(
            PendingTimeout(f"timed out; still pending on {self.provider.name}: {ids}", hint=result.resume_hint())
        )

    # ------------------------------------------------------------------ one call
    async def _run_call(self, call: PlannedCall, generate_url: str) -> None:
        from imagegen_cli.providers.dialects import parse_images_response, parse_submit_response
        from imagegen_cli.providers.http import DeadlineExceeded

        key = f"{self.result.job_id}:call{call.index}"
        last = call.first_image + call.count - 1
        span = f"image {call.first_image}" if call.count == 1 else f"images {call.first_image}-{last}"
        label = f"{self.provider.name}:{self.provider.model} {span}"
        self.sink.start(key, label, 100 if self.provider.profile.is_async else None)
        tasks: list[TaskRecord] = []
        try:
            # The limiter bounds calls to the gateway (a task's polling included), not the downloads and
            # saving that follow: the next call starts while this one's images are written.
            finished: list[tuple[TaskRecord | None, list[RemoteImage]]] = []
            async with self.limiter:
                self._start_clock()
                self.waiting_on = f"the answer for {span}"
                self.result.sent = True
                data = await self.client.request_json("POST", generate_url, body=call.body, headers=call.headers)
                if self.provider.profile.is_async:
                    tasks = self._add_tasks(parse_submit_response(data, self.provider.name), call)
                    if self.result.no_wait:
                        return
                    for task in tasks:
                        finished.append((task, await self._poll(task, key)))
                else:
                    parsed = parse_images_response(data, self.provider.name)
                    if parsed.usage:
                        self.result.usage.append(parsed.usage)
                    finished.append((None, parsed.images))
            for done, images in finished:
                if done is None:
                    await self._save_all(call.first_image, call.count, call.seed, images, None)
                else:
                    await self._save_all(done.first_image, done.count, done.seed, images, done)
        except DeadlineExceeded as exc:
            self.deadline_hit = True
            if not any(t.state in RESUMABLE_TASK_STATES for t in tasks):
                why = f": {exc}" if str(exc) else ""
                self.result.errors.append(
                    PendingTimeout(f"{self.provider.name}: no answer within --timeout for {span}{why}")
                )
        except ImagegenError as exc:
            self._tasks_failed(tasks, exc)
        except Exception as exc:  # noqa: BLE001 - a hostile answer must not end the run (or the batch)
            from imagegen_cli.saving import as_job_error

            self._tasks_failed(tasks, as_job_error(exc, f"{self.provider.name}: {span}"))
        finally:
            self.sink.finish(key)

    def _add_tasks(self, remote_ids: list[str], call: PlannedCall) -> list[TaskRecord]:
        if len(remote_ids) > 1 and len(remote_ids) > call.count:
            # A gateway answering more task ids than images asked for: keep what was asked, say so.
            self.result.notes.append(
                f"{self.provider.name} answered {len(remote_ids)} task ids for {call.count} image(s); "
                f"kept the first {call.count}"
            )
            remote_ids = remote_ids[: call.count]
        # One task per id; when a gateway returns several ids for one call, each yields one image.
        per_task = 1 if len(remote_ids) > 1 else call.count
        tasks = []
        for number, remote_id in enumerate(remote_ids):
            first = call.first_image + number * per_task
            task = TaskRecord(remote_id, TaskState.PENDING, call.index, first, per_task, call.seed)
            tasks.append(task)
            self.result.tasks.append(task)
            self._journal_task(task, add=True)
        return tasks

    def _tasks_failed(self, tasks: list[TaskRecord], exc: ImagegenError) -> None:

        self._mark_failed(tasks, exc)
        self.result.errors.append(exc)

    def _mark_failed(self, tasks: list[TaskRecord], exc: ImagegenError) -> None:
        """The gateway refused to tell us more, or its result is unusable or gone: not resumable as is.

        A save error (a full disk) leaves the task resumable: ``tasks wait`` can fetch it again.
        """
        for task in tasks:
            if not isinstance(exc, SaveError) and task.state in RESUMABLE_TASK_STATES:
                task.state = TaskState.EXPIRED if isinstance(exc, ImagesExpired) else TaskState.FAILED
                task.error = exc.message
                self._journal_task(task)

    def _journal_task(self, task: TaskRecord, *, add: bool = False, expires_at: float | None = None) -> None:
        from imagegen_cli.store.journal import TaskRow

        job_id = self.result.job_id
        if job_id is None:
            return
        if add:
            row = TaskRow(task.remote_id, task.call, task.first_image, task.count, task.seed, task.state.value)
            self.journal.add_task(job_id, row)
        else:
            self.journal.update_task(job_id, task.remote_id, task.state.value, task.error, expires_at)

    # ------------------------------------------------------------------ tasks
    async def _resume_task(self, task: TaskRecord) -> None:
        from imagegen_cli.providers.http import DeadlineExceeded

        self.result.sent = True
        key = f"{self.result.job_id}:task:{task.remote_id}"
        self.sink.start(key, f"{self.provider.name} {task.remote_id}", 100)
        try:
            async with self.limiter:
                self._start_clock()
                images = await self._poll(task, key)
            await self._save_all(task.first_image, task.count, task.seed, images, task)
        except DeadlineExceeded:
            self.deadline_hit = True  # still pending: the task's own state tells the story
        except ImagegenError as exc:
            self._tasks_failed([task], exc)
        except Exception as exc:  # noqa: BLE001
            from imagegen_cli.saving import as_job_error

            self._tasks_failed([task], as_job_error(exc, f"{self.provider.name}: task {task.remote_id}"))
        finally:
            self.sink.finish(key)

    async def _poll(self, task: TaskRecord, key: str) -> list[RemoteImage]:
        from imagegen_cli.providers.dialects import parse_task_status, task_error

        url = self.provider.url(self.provider.profile.task_path.format(id=task.remote_id))
        interval = self.poll_interval
        self.waiting_on = f"task {task.remote_id}"
        while True:
            data = await self.client.request_json("GET", url)
            status = parse_task_status(data, self.provider.name, task.remote_id)
            state = TaskState(status.state)
            if state == TaskState.PENDING:
                self.sink.update(key, completed=status.progress)
                await self.deadline.sleep(interval)
                interval = min(interval * 1.5, max(self.poll_interval, 10.0))
                continue
            if state != TaskState.SUCCEEDED:
                task.state, task.error = state, status.error
                self._journal_task(task)
                raise task_error(self.provider.name, task.remote_id, status)
            task.state = TaskState.SUCCEEDED
            expiries = [i.expires_at for i in status.images if i.expires_at]
            self._journal_task(task, expires_at=min(expiries) if expiries else None)
            self.sink.update(key, completed=100)
            return list(status.images)

    # ------------------------------------------------------------------ saving
    async def _save_all(
        self, first: int, count: int, seed: int | None, images: list[RemoteImage], task: TaskRecord | None
    ) -> None:
        if len(images) > count:
            self.result.notes.append(
                f"{self.provider.name} answered {len(images)} images for {count}; kept the first {count}"
            )
        images = images[:count]
        for offset, image in enumerate(images):
            index = first + offset
            if not await self.recorder.claim_waiting(index, time.monotonic() + max(self.deadline.remaining(), 0)):
                continue
            await self._save_one(image, index, seed if count == 1 else None, task)
        if len(images) < count:
            short = InvalidResponse(f"{self.provider.name}: asked for {count} image(s), got {len(images)}")
            if task is not None:
                self._mark_failed([task], short)  # polling again would give the same short answer
            self.result.errors.append(short)

    async def _save_one(self, image: RemoteImage, index: int, seed: int | None, task: TaskRecord | None) -> None:
        from imagegen_cli.providers.dialects import image_bytes
        from imagegen_cli.store.metadata import build_metadata

        revised = clean_text(image.revised_prompt, 2000) if image.revised_prompt else None
        meta = build_metadata(self.meta_base, index=index, seed=seed, revised_prompt=revised)
        what = f"task {task.remote_id}: image {index}" if task else f"image {index}"
        remote_id = task.remote_id if task else None
        self.waiting_on = f"the download of image {index}"

        def place(source: bytes | Path) -> SavedImage:
            if isinstance(source, bytes):
                saved = self.writer.save_bytes(source, index=index, seed=seed, meta=meta)
            else:
                saved = self.writer.finish(source, index=index, seed=seed, meta=meta)
            return replace(saved, seed=seed, url=image.url, revised_prompt=revised)

        async def fetch() -> bytes | Path:
            if image.b64 is not None:
                return image_bytes(image, f"{self.provider.name}: image {index}")
            return await self._download(image, what)

        from imagegen_cli.providers.http import DeadlineExceeded

        outcome = await self.recorder.save_async(
            index, fetch, place, remote_id=remote_id, passthrough=(DeadlineExceeded,)
        )
        if isinstance(outcome, ImagegenError) and task is not None:
            self._mark_failed([task], outcome)

    async def _download(self, image: RemoteImage, what: str) -> Path:
        from imagegen_cli.store.writer import MAX_DOWNLOAD_BYTES

        assert image.url is not None
        handle, tmp = self.writer.temp_file()
        try:
            with handle:
                try:
                    await self.client.download(image.url, handle, MAX_DOWNLOAD_BYTES)
                except DownloadError as exc:
                    # Clocks differ: the link is tried whatever its expiry says, and only a refusal after the
                    # expiry time is reported as expired.
                    if exc.status in (403, 404, 410) and image.expires_at and image.expires_at < time.time() + 60:
                        expired = ImagesExpired(
                            f"{self.provider.name}: {what} expired at {_format_time(image.expires_at)}",
                            hint="generate it again",
                        )
                        raise expired from None
                    raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp
