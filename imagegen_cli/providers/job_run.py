"""One job on a gateway: send its calls, poll its tasks, and hand over every image as an event.

Every step is said as it happens (a task is journalled by the driver before the job goes on), so an interrupt, a
timeout or a killed process still leaves an exact record of what was saved and what is pending. Only the
gateway's own word makes a task failed: a transient answer, an HTML page for an image or a CDN outage leave it
resumable (``imagegen tasks wait``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from imagegen_cli.errors import (
    ImagegenError,
    ImagesExpired,
    InvalidResponse,
    PendingTimeout,
    as_job_error,
    clean_text,
)
from imagegen_cli.events import (
    CallDone,
    CallFailed,
    CallSent,
    Event,
    ImageReady,
    JobFinished,
    JobStarted,
    Note,
    Progress,
    SubmitSettled,
    Submitting,
    TaskRecord,
    TaskSubmitted,
    TaskUpdated,
    Usage,
)
from imagegen_cli.meta import ImageMeta
from imagegen_cli.providers.uploads import Uploader
from imagegen_cli.status import RESUMABLE_TASK_STATES, TaskState

if TYPE_CHECKING:
    import httpx

    from imagegen_cli.engines import Channel, EngineJob
    from imagegen_cli.providers.dialects import RemoteImage
    from imagegen_cli.providers.http import Deadline, GatewayClient
    from imagegen_cli.providers.planning import Plan, PlannedCall
    from imagegen_cli.providers.throttle import ProviderThrottle

GRACE_SECONDS = 2.0  # the backstop over the per-request deadlines
SUBMIT_GRACE = 2.5  # how long a stop waits for the answer of a task-creating call that is out (its task ids)
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024


@dataclass
class SharedTransport:
    """What the jobs of a run share: one HTTP client, a bound on calls in flight, a provider throttle."""

    http: httpx.AsyncClient  # imported for the type checker only: this module imports without httpx
    limiter: asyncio.Semaphore
    throttle: ProviderThrottle
    task_ids: set[str] = field(default_factory=set)  # every task id of this provider in the run: each is fetched once


def _format_time(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class RemoteJob:
    """Runs the calls (or resumes the tasks) of one job, saying everything as events."""

    def __init__(self, job: EngineJob, channel: Channel, shared: SharedTransport, deadline: Deadline | None) -> None:
        from imagegen_cli.providers.http import Deadline, GatewayClient

        self.job = job
        self.work = job.work
        from imagegen_cli.providers.planning import Plan

        assert isinstance(job.full, Plan)
        self.plan: Plan = job.full
        self.provider = self.plan.provider
        self.channel = channel
        self.limiter = shared.limiter
        self.task_ids = shared.task_ids
        self.task_ids.update(t.remote_id for t in job.resume_tasks)
        self.shared_deadline = deadline is not None
        self.deadline: Deadline = deadline or Deadline(channel.timeout)
        self.client: GatewayClient = GatewayClient(
            self.provider, self.deadline, shared.http, shared.throttle, on_retry=self._retrying
        )
        self.retry_reasons: set[str] = set()
        self.waiting_on = "the gateway"
        self.deadline_hit = False
        self.clock_started = self.shared_deadline
        self.backstop: asyncio.Timeout | None = None
        self.poll_interval = channel.settings.poll_interval(self.provider.profile.poll_interval)
        self.tasks: list[TaskRecord] = list(job.resume_tasks)
        self.saved: set[int] = set()  # indices handed over and recorded as saved by the driver
        self.errors = 0
        self.meta = ImageMeta.of_request(self.plan.request, provider=self.provider.name, model=self.provider.model)
        self.uploader = Uploader(self.plan.uploads, self.plan.inlines, job.uploads, self.client, self.emit, self.work)

    def emit(self, event: Event) -> None:
        self.channel.emit(event)

    # ------------------------------------------------------------------ entry point
    async def run(self) -> None:
        """Poll the tasks to resume, then send every call still to make; all concurrently."""
        self.emit(JobStarted(self.work))
        interrupted = False
        try:
            todo = self.job.plan
            calls = todo.calls if todo is not None and isinstance(todo, type(self.plan)) else ()
            # The backstop over the per-request deadlines: armed with the clock, when the first call slot is taken.
            async with asyncio.timeout(None) as self.backstop:
                if self.clock_started:
                    self._arm_backstop()
                await asyncio.gather(
                    *(self._resume_task(task) for task in self.job.resume_tasks),
                    *(self._run_call(call, self.plan.method_url[1]) for call in calls),
                )
        except TimeoutError:  # the backstop fired: nothing outlives --timeout by more than a moment
            self.deadline_hit = True
            if not self._pending():
                self._fail(
                    PendingTimeout(f"{self.provider.name}: no answer within --timeout (waiting on {self.waiting_on})")
                )
        except asyncio.CancelledError:
            interrupted = True
            raise
        except Exception as exc:  # noqa: BLE001 - one line's failure never stops the batch
            self._fail(as_job_error(exc, f"{self.provider.name} call"))
        finally:
            if not interrupted:
                self._say_pending()
            self.emit(JobFinished(self.work, interrupted=interrupted))

    def _pending(self) -> list[TaskRecord]:
        return [t for t in self.tasks if t.resumable(self.saved)]

    def _fail(self, error: ImagegenError) -> None:
        self.errors += 1
        self.emit(CallFailed(self.work, error))

    def _arm_backstop(self) -> None:
        if self.backstop is not None:
            left = max(self.deadline.remaining(), 0.0)
            self.backstop.reschedule(asyncio.get_running_loop().time() + left + GRACE_SECONDS)

    def _start_clock(self) -> None:
        """This job's --timeout counts from its first call slot: lines queued behind others do not lose time."""
        if self.clock_started:
            return
        self.clock_started = True
        self.deadline.restart()
        self._arm_backstop()

    def _retrying(self, attempt: int, delay: float, reason: str) -> None:
        """Say once per reason that the gateway is being retried, so a spinning bar is never silent."""
        if reason not in self.retry_reasons:
            self.retry_reasons.add(reason)
            self.emit(
                Note(
                    self.work,
                    f"{self.provider.name}: {reason}; retrying (attempt {attempt}, in {delay:.1f} s)",
                    now=True,
                )
            )

    def _say_pending(self) -> None:
        """After the deadline: tasks still pending (or fetched but not saved) are resumable; say how."""
        pending = self._pending()
        if not self.deadline_hit or not pending or self.job.no_wait:
            return
        ids = " ".join(t.remote_id for t in pending)
        self._fail(
            PendingTimeout(f"timed out; still pending on {self.provider.name}: {ids}", hint=self.job.resume_hint)
        )

    # ------------------------------------------------------------------ one call
    async def _run_call(self, call: PlannedCall, generate_url: str) -> None:
        from imagegen_cli.providers.dialects import parse_images_response
        from imagegen_cli.providers.http import DeadlineExceeded

        key = f"call{call.index}"
        last = call.first_image + call.count - 1
        span = f"image {call.first_image}" if call.count == 1 else f"images {call.first_image}-{last}"
        label = f"{self.provider.name}:{self.provider.model} {span}"
        tasks: list[TaskRecord] = []
        started = False
        try:
            # The limiter bounds calls to the gateway (a task's polling included), not the downloads and
            # saving that follow: the next call starts while this one's images are written.
            finished: list[tuple[TaskRecord | None, list[RemoteImage]]] = []
            async with self.limiter:
                self._start_clock()
                self.waiting_on = f"the answer for {span}"
                self.emit(CallSent(self.work, key, label, 100 if self.provider.profile.is_async else None))
                started = True
                if self.provider.profile.is_async:
                    submitted = await self._submit(call, generate_url)
                    if submitted is None:
                        raise asyncio.CancelledError  # stopped while the call was out: what is known is recorded
                    tasks = submitted
                    if self.job.no_wait:
                        return
                    for task in tasks:
                        finished.append((task, await self._poll(task, key)))
                else:
                    data = await self.client.call(await self.uploader.resolve(call.http))
                    parsed = parse_images_response(data, self.provider.name)
                    if parsed.usage:
                        self.emit(Usage(self.work, parsed.usage))
                    finished.append((None, parsed.images))
            for done, images in finished:
                if done is None:
                    await self._hand_over(call.first_image, call.count, call.seed, images, None)
                else:
                    await self._hand_over(done.first_image, done.count, done.seed, images, done)
        except DeadlineExceeded as exc:
            self.deadline_hit = True
            if not any(t.state in RESUMABLE_TASK_STATES for t in tasks):
                why = f": {exc}" if str(exc) else ""
                self._fail(PendingTimeout(f"{self.provider.name}: no answer within --timeout for {span}{why}"))
        except ImagegenError as exc:
            self._refused(tasks, exc)
            self._fail(exc)
        except Exception as exc:  # noqa: BLE001 - a hostile answer must not end the run (or the batch)
            self._fail(as_job_error(exc, f"{self.provider.name}: {span}"))
        finally:
            if started:
                self.emit(CallDone(self.work, key))

    async def _submit(self, call: PlannedCall, url: str) -> list[TaskRecord] | None:
        """Create the call's tasks; recorded as in flight first. A stop while the call is out waits a moment for the
        answer, so the tasks the gateway created are journalled (None then: the run stops)."""
        from imagegen_cli.providers.dialects import parse_submit_response

        http = await self.uploader.resolve(call.http)  # inputs uploaded first (apimart): no task exists yet
        self.emit(Submitting(self.work, call.index, call.first_image, call.count))
        request = asyncio.ensure_future(self.client.call(http))
        stopped = False
        try:
            data = await asyncio.shield(request)
        except asyncio.CancelledError:
            stopped = True
            try:
                data = await asyncio.wait_for(asyncio.shield(request), SUBMIT_GRACE)
            except BaseException:  # noqa: BLE001 - no answer in time: the journal keeps the call as in flight
                request.cancel()
                return None
        except BaseException:
            self.emit(SubmitSettled(self.work, call.index))  # refused or failed: no task was created
            raise
        self.emit(SubmitSettled(self.work, call.index))
        tasks = self._add_tasks(parse_submit_response(data, self.provider.name), call)
        return None if stopped else tasks

    def _add_tasks(self, remote_ids: list[str], call: PlannedCall) -> list[TaskRecord]:
        if len(remote_ids) > 1 and len(remote_ids) > call.count:
            # A gateway answering more task ids than images asked for: keep what was asked, say so.
            self.emit(
                Note(
                    self.work,
                    f"{self.provider.name} answered {len(remote_ids)} task ids for {call.count} image(s); "
                    f"kept the first {call.count}",
                )
            )
            remote_ids = remote_ids[: call.count]
        # One task per id; when a gateway returns several ids for one call, each yields one image.
        per_task = 1 if len(remote_ids) > 1 else call.count
        tasks = []
        for number, remote_id in enumerate(remote_ids):
            first = call.first_image + number * per_task
            if remote_id in self.task_ids:
                # One task id answered for two calls: its image is one image, saved once, not once per call.
                self._fail(
                    InvalidResponse(
                        f"{self.provider.name} answered task id {clean_text(remote_id, 80)} for two calls; "
                        f"image {first} was not made",
                        hint="generate the missing image again",
                    )
                )
                continue
            self.task_ids.add(remote_id)
            seed = call.seed  # the call's first image's
            if seed is not None and self.provider.caps.seed_counts_up:
                seed += number * per_task  # a task further in starts further on
            task = TaskRecord(remote_id, TaskState.PENDING, call.index, first, per_task, seed)
            tasks.append(task)
            self.tasks.append(task)
            self.emit(TaskSubmitted(self.work, task))
        return tasks

    def _refused(self, tasks: list[TaskRecord], exc: ImagegenError) -> None:
        """A definitive refusal while polling (HTTP 404 "task not found", 400) ends the tasks still pending.

        Anything transient (an HTML page, a 5xx after retries, a rate limit, a lost connection, a key to fix)
        leaves them pending: ``tasks wait`` polls them again.
        """
        if not gateway_refused(exc):
            return
        for task in tasks:
            if task.state == TaskState.PENDING:
                self._set_state(task, TaskState.FAILED, exc.message)

    def _set_state(
        self, task: TaskRecord, state: TaskState, error: str | None, expires_at: float | None = None
    ) -> None:
        task.state, task.error = state, error
        self.emit(TaskUpdated(self.work, task, expires_at))

    # ------------------------------------------------------------------ tasks
    async def _resume_task(self, task: TaskRecord) -> None:
        from imagegen_cli.providers.http import DeadlineExceeded

        key = f"task:{task.remote_id}"
        self.emit(CallSent(self.work, key, f"{self.provider.name} {task.remote_id}", 100))
        try:
            async with self.limiter:
                self._start_clock()
                images = await self._poll(task, key)
            await self._hand_over(task.first_image, task.count, task.seed, images, task)
        except DeadlineExceeded:
            self.deadline_hit = True  # still pending: the task's own state tells the story
        except ImagegenError as exc:
            self._refused([task], exc)
            self._fail(exc)
        except Exception as exc:  # noqa: BLE001
            self._fail(as_job_error(exc, f"{self.provider.name}: task {task.remote_id}"))
        finally:
            self.emit(CallDone(self.work, key))

    async def _poll(self, task: TaskRecord, key: str) -> list[RemoteImage]:
        from imagegen_cli.providers.dialects import parse_task_status, task_error

        url = self.provider.task_url(self.provider.profile.task_path, task.remote_id)
        interval = self.poll_interval
        self.waiting_on = f"task {task.remote_id}"
        glitch_said = False
        while True:
            try:
                data = await self.client.request_json("GET", url)
                status = parse_task_status(data, self.provider.name, task.remote_id)
            except InvalidResponse as exc:
                # A "Just a moment..." page or a truncated answer: the task is not failed, ask again in a while.
                if not glitch_said:
                    glitch_said = True
                    self.emit(Note(self.work, f"{clean_text(exc.message, 200)}; polling again", now=True))
                await self.deadline.sleep(interval)
                continue
            state = TaskState(status.state)
            if state == TaskState.PENDING:
                self.emit(Progress(self.work, key, status.progress or 0))
                await self.deadline.sleep(interval)
                interval = min(interval * 1.5, max(self.poll_interval, 10.0))
                continue
            if state != TaskState.SUCCEEDED:
                # The gateway's own word: the task failed (or was cancelled, or its images expired).
                self._set_state(task, state, status.error)
                raise task_error(self.provider.name, task.remote_id, status)
            expiries = [i.expires_at for i in status.images if i.expires_at]
            self._set_state(task, TaskState.SUCCEEDED, None, min(expiries) if expiries else None)
            self.emit(Progress(self.work, key, 100))
            return list(status.images)

    # ------------------------------------------------------------------ images
    async def _hand_over(
        self, first: int, count: int, seed: int | None, images: list[RemoteImage], task: TaskRecord | None
    ) -> None:
        if len(images) > count:
            self.emit(
                Note(
                    self.work, f"{self.provider.name} answered {len(images)} images for {count}; kept the first {count}"
                )
            )
        images = images[:count]
        counts_up = count == 1 or self.provider.caps.seed_counts_up
        for offset, image in enumerate(images):
            await self._hand_over_one(
                image, first + offset, seed + offset if seed is not None and counts_up else None, task
            )
        if len(images) < count:
            short = InvalidResponse(f"{self.provider.name}: asked for {count} image(s), got {len(images)}")
            if task is not None:
                # The gateway's own answer is short: polling again would give the same, so the task is over.
                self._set_state(task, TaskState.FAILED, short.message)
            self._fail(short)

    async def _hand_over_one(self, image: RemoteImage, index: int, seed: int | None, task: TaskRecord | None) -> None:
        from imagegen_cli.providers.dialects import image_bytes

        revised = clean_text(image.revised_prompt, 2000) if image.revised_prompt else None
        what = f"task {task.remote_id}: image {index}" if task else f"image {index}"
        self.waiting_on = f"the download of image {index}"
        data: bytes | None = None
        fetch: Callable[[IO[bytes]], object] | None = None
        if image.error is not None:
            self._fail(as_job_error(InvalidResponse(image.error), f"image {index}"))
            return
        if image.b64 is not None:
            try:
                data = image_bytes(image, f"{self.provider.name}: image {index}")
            except ImagegenError as exc:
                self._fail(as_job_error(exc, f"image {index}"))
                return
        else:

            async def fetch(sink: IO[bytes]) -> None:
                await self._download(image, what, sink)

        event = ImageReady(
            self.work,
            index,
            seed,
            replace(self.meta, revised_prompt=revised),
            data=data,
            fetch=fetch,  # type: ignore[arg-type]
            remote_id=task.remote_id if task else None,
            url=image.url,
            revised_prompt=revised,
            patience=max(self.deadline.remaining(), 0.0),
        )
        if await self.channel.emit_image(event):
            self.saved.add(index)

    async def _download(self, image: RemoteImage, what: str, sink: IO[bytes]) -> None:
        from imagegen_cli.errors import DownloadError

        assert image.url is not None
        try:
            await self.client.download(image.url, sink, MAX_DOWNLOAD_BYTES)
        except DownloadError as exc:
            # Clocks differ: the link is tried whatever its expiry says, and only a refusal after the expiry time
            # is reported as expired (the gateway's own word that the image is gone).
            if exc.status in (403, 404, 410) and image.expires_at and image.expires_at < time.time() + 60:
                raise ImagesExpired(
                    f"{self.provider.name}: {what} expired at {_format_time(image.expires_at)}",
                    hint="generate it again",
                ) from None
            raise


def gateway_refused(exc: ImagegenError) -> bool:
    """The gateway's own definitive word on a request (a 4xx other than auth, timeout and rate limit)."""
    from imagegen_cli.errors import AuthError, GatewayError

    if isinstance(exc, AuthError) or not isinstance(exc, GatewayError) or isinstance(exc, InvalidResponse):
        return False
    status = exc.status
    return status is not None and 400 <= status < 500 and status not in (408, 425, 429)
