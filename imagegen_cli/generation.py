"""Run a plan: send the calls (concurrently, bounded), poll tasks, fetch and save every image.

The result object is filled in as images land, and every step is written to the task journal,
so an interrupt, a timeout or a killed process still leaves an exact record of what was saved and
what is pending; ``imagegen tasks wait`` resumes from that record.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from imagegen_cli.errors import (
    AuthError,
    ConfigError,
    DownloadError,
    ExitCode,
    ImagegenError,
    ImagesExpired,
    PendingTimeout,
    SaveError,
    clean_text,
    interrupted_code,
)
from imagegen_cli.providers.dialects import (
    FAILED,
    PENDING,
    SUCCEEDED,
    RemoteImage,
    parse_images_response,
    parse_submit_response,
    parse_task_status,
    task_error,
)
from imagegen_cli.store.metadata import build_metadata
from imagegen_cli.store.writer import MAX_DOWNLOAD_BYTES, ImageWriter, SavedImage

if TYPE_CHECKING:
    from imagegen_cli.providers.http import GatewayClient
    from imagegen_cli.providers.planning import PlannedCall
    from imagegen_cli.providers.registry import ResolvedProvider
    from imagegen_cli.request import GenerationRequest
    from imagegen_cli.store.journal import TaskJournal

DEFAULT_CONCURRENCY = 4


class Reporter(Protocol):
    """Progress sink; the CLI supplies a rich one on terminals and a silent one elsewhere."""

    def start(self, key: str, description: str, total: int | None) -> None: ...
    def update(self, key: str, completed: int | None = None, description: str | None = None) -> None: ...
    def finish(self, key: str) -> None: ...


class SilentReporter:
    """Reports nothing."""

    def start(self, key: str, description: str, total: int | None) -> None:
        return None

    def update(self, key: str, completed: int | None = None, description: str | None = None) -> None:
        return None

    def finish(self, key: str) -> None:
        return None


@dataclass
class TaskRecord:
    """A remote task of this run and where it stands."""

    remote_id: str
    status: str
    call: int
    first_image: int = 1
    count: int = 1
    seed: int | None = None
    error: str | None = None


@dataclass
class GenerationResult:
    """What a run produced so far: saved images, tasks, notes, errors, usage."""

    provider: str
    model: str
    requested: int
    job_id: str | None = None
    notes: list[str] = field(default_factory=list)
    images: list[SavedImage] = field(default_factory=list)
    tasks: list[TaskRecord] = field(default_factory=list)
    errors: list[ImagegenError] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)
    already_saved: int = 0
    no_wait: bool = False
    interrupted: bool = False

    @property
    def pending(self) -> list[TaskRecord]:
        return [t for t in self.tasks if t.status == PENDING]

    @property
    def complete(self) -> bool:
        return len(self.images) + self.already_saved >= self.requested and not self.errors

    def status(self) -> str:
        if self.no_wait and not self.errors:
            return "submitted"
        if self.complete:
            return "succeeded"
        if self.images:
            return "partial"
        if self.pending:
            return "submitted"
        return "failed"

    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return interrupted_code()
        if self.no_wait:
            return ExitCode.OK if self.tasks and not self.errors else self._failure_code()
        if self.pending:
            return ExitCode.PENDING
        if self.complete:
            return ExitCode.OK
        if self.images:
            return ExitCode.PARTIAL
        return self._failure_code()

    def _failure_code(self) -> ExitCode:
        if any(isinstance(e, AuthError | ConfigError) for e in self.errors):
            return ExitCode.AUTH
        if self.errors and all(e.exit_code == ExitCode.USAGE for e in self.errors):
            return ExitCode.USAGE  # found only once the run started (e.g. --device cuda without CUDA)
        return ExitCode.FAILURE

    def usage_total(self) -> dict[str, Any] | None:
        if not self.usage:
            return None
        total: dict[str, Any] = {}
        for usage in self.usage:
            for key, value in usage.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    total[key] = total.get(key, 0) + value
        return total


def _format_time(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class SharedTransport:
    """What the lines of a batch share: one HTTP client, a bound on calls in flight, a provider throttle."""

    http: Any
    limiter: asyncio.Semaphore
    throttle: Any


class RemoteRun:
    """Executes calls against one provider (fresh, or resuming a journalled job)."""

    def __init__(
        self,
        provider: ResolvedProvider,
        request: GenerationRequest,
        writer: ImageWriter,
        result: GenerationResult,
        reporter: Reporter,
        *,
        journal: TaskJournal | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        no_wait: bool = False,
        shared: SharedTransport | None = None,
        on_image: Any = None,
    ) -> None:
        self.provider = provider
        self.request = request
        self.writer = writer
        self.result = result
        self.reporter = reporter
        self.journal = journal
        self.job_id = result.job_id
        self.concurrency = max(1, concurrency)
        self.no_wait = no_wait
        self.shared = shared
        self.on_image = on_image
        self.limiter = asyncio.Semaphore(self.concurrency)
        self.meta_base: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "provider": provider.name,
            "model": provider.model,
            "size": str(request.size) if request.size else None,
            "ratio": str(request.ratio) if request.ratio else None,
            "resolution": request.resolution,
            "quality": request.quality,
            "style": request.style,
            "steps": request.steps,
            "guidance": request.guidance,
            "params": dict(request.params) or None,
            "job": self.job_id,
        }
        self.poll_interval = float(os.environ.get("IMAGEGEN_POLL_INTERVAL", provider.profile.poll_interval))

    # ------------------------------------------------------------------ entry points
    async def run(self, calls: tuple[PlannedCall, ...], generate_url: str, timeout: float) -> None:
        """Send every planned call."""

        async def one(client: GatewayClient, call: PlannedCall) -> None:
            await self._run_call(client, call, generate_url)

        await self._with_client(timeout, [(one, call) for call in calls])

    async def resume(self, tasks: list[TaskRecord], timeout: float) -> None:
        """Poll journalled tasks again and save whatever of their images is not saved yet."""

        async def one(client: GatewayClient, task: TaskRecord) -> None:
            key = f"task:{task.remote_id}"
            self.reporter.start(key, f"{self.provider.name} {task.remote_id}", 100)
            try:
                async with self.limiter:
                    images = await self._poll(client, task, key)
                await self._save_all(client, task.first_image, task.count, task.seed, images, task.remote_id)
            except ImagegenError as exc:
                self._task_failed([task], exc)
            finally:
                self.reporter.finish(key)

        await self._with_client(timeout, [(one, task) for task in tasks])

    async def _with_client(self, timeout: float, jobs: list[tuple[Any, Any]]) -> None:
        from imagegen_cli.providers.http import Deadline, DeadlineExceeded, GatewayClient, make_async_client
        from imagegen_cli.providers.throttle import ProviderThrottle

        deadline = Deadline(timeout)

        async def drive(http: Any, limiter: asyncio.Semaphore, throttle: Any) -> None:
            client = GatewayClient(self.provider, deadline, http, throttle)

            self.limiter = limiter

            async def guarded(func: Any, item: Any) -> None:
                # On DeadlineExceeded the task's own state tells the story: pending tasks stay pending.
                with contextlib.suppress(DeadlineExceeded):
                    await func(client, item)

            await asyncio.gather(*(guarded(func, item) for func, item in jobs))

        if self.shared is not None:
            await drive(self.shared.http, self.shared.limiter, self.shared.throttle)
            return
        async with make_async_client() as http:
            await drive(http, asyncio.Semaphore(self.concurrency), ProviderThrottle(self.concurrency))

    # ------------------------------------------------------------------ one call
    async def _run_call(self, client: GatewayClient, call: PlannedCall, generate_url: str) -> None:
        from imagegen_cli.providers.http import DeadlineExceeded

        key = f"call{call.index}"
        label = f"{self.provider.name}:{self.provider.model}"
        last = call.first_image + call.count - 1
        span = f"image {call.first_image}" if call.count == 1 else f"images {call.first_image}-{last}"
        self.reporter.start(key, f"{label} {span}", 100 if self.provider.profile.is_async else None)
        tasks: list[TaskRecord] = []
        try:
            # The limiter bounds calls to the gateway (a task's polling included), not the downloads and
            # saving that follow: the next call starts while this one's images are written.
            finished: list[tuple[TaskRecord | None, list[RemoteImage]]] = []
            async with self.limiter:
                data = await client.request_json("POST", generate_url, body=call.body, headers=call.headers)
                if self.provider.profile.is_async:
                    remote_ids = parse_submit_response(data, self.provider.name)
                    # One task per id; when a gateway returns several ids for one call, each yields one image.
                    per_task = 1 if len(remote_ids) > 1 else call.count
                    for number, remote_id in enumerate(remote_ids):
                        first = call.first_image + number * per_task
                        task = TaskRecord(remote_id, PENDING, call.index, first, per_task, call.seed)
                        tasks.append(task)
                        self.result.tasks.append(task)
                        self._journal("add_task", task)
                    if self.no_wait:
                        return
                    for task in tasks:
                        finished.append((task, await self._poll(client, task, key)))
                else:
                    parsed = parse_images_response(data, self.provider.name)
                    if parsed.usage:
                        self.result.usage.append(parsed.usage)
                    finished.append((None, parsed.images))
            for done, images in finished:
                if done is None:
                    await self._save_all(client, call.first_image, call.count, call.seed, images, None)
                else:
                    await self._save_all(client, done.first_image, done.count, done.seed, images, done.remote_id)
        except DeadlineExceeded as exc:
            if not any(t.status == PENDING for t in tasks):
                waited = f" ({exc})" if str(exc) else ""  # what it waited on, and the last transport error
                self.result.errors.append(
                    PendingTimeout(f"{self.provider.name}: no answer within --timeout for {span}{waited}")
                )
        except ImagegenError as exc:
            self._task_failed(tasks, exc)
        finally:
            self.reporter.finish(key)

    def _task_failed(self, tasks: list[TaskRecord], exc: ImagegenError) -> None:
        for task in tasks:
            if task.status in (PENDING, SUCCEEDED) and not isinstance(exc, SaveError):
                # The gateway refused to tell us more (or the result is gone): not resumable as is.
                task.status = "expired" if isinstance(exc, ImagesExpired) else FAILED
                task.error = exc.message
                self._journal("update_task", task)
        self.result.errors.append(exc)

    def _journal(self, action: str, task: TaskRecord, expires_at: float | None = None) -> None:
        if self.journal is None or self.job_id is None:
            return
        from imagegen_cli.store.journal import TaskRow

        if action == "add_task":
            self.journal.add_task(
                self.job_id, TaskRow(task.remote_id, task.call, task.first_image, task.count, task.seed, task.status)
            )
        else:
            self.journal.update_task(self.job_id, task.remote_id, task.status, task.error, expires_at)

    async def _poll(self, client: GatewayClient, task: TaskRecord, key: str) -> list[RemoteImage]:
        url = self.provider.url(self.provider.profile.task_path.format(id=task.remote_id))
        interval = self.poll_interval
        while True:
            data = await client.request_json("GET", url)
            status = parse_task_status(data, self.provider.name, task.remote_id)
            if status.state == PENDING:
                self.reporter.update(key, completed=status.progress)
                await client.deadline.sleep(interval)
                interval = min(interval * 1.5, max(self.poll_interval, 10.0))
                continue
            if status.state != SUCCEEDED:
                task.status = status.state
                task.error = status.error
                self._journal("update_task", task)
                raise task_error(self.provider.name, task.remote_id, status)
            task.status = SUCCEEDED
            expiries = [i.expires_at for i in status.images if i.expires_at]
            self._journal("update_task", task, min(expiries) if expiries else None)
            self.reporter.update(key, completed=100)
            return status.images

    # ------------------------------------------------------------------ saving
    async def _save_all(
        self,
        client: GatewayClient,
        first: int,
        count: int,
        seed: int | None,
        images: list[RemoteImage],
        remote_id: str | None,
    ) -> None:
        images = images[:count]  # a gateway that over-delivers does not change the index plan
        for offset, image in enumerate(images):
            index = first + offset
            if self.journal is not None and self.job_id and not self.journal.claim_image(self.job_id, index):
                self.result.already_saved += 1  # saved earlier (or being saved by another process)
                continue
            try:
                saved = await self._save_one(client, image, index, seed if count == 1 else None, remote_id)
            except ImagegenError as exc:
                if self.journal is not None and self.job_id:
                    self.journal.release_image(self.job_id, index)
                if isinstance(exc, ImagesExpired) and remote_id:
                    for task in self.result.tasks:
                        if task.remote_id == remote_id:
                            task.status, task.error = "expired", exc.message
                            self._journal("update_task", task)
                self.result.errors.append(exc)
                continue
            except BaseException:
                if self.journal is not None and self.job_id:
                    self.journal.release_image(self.job_id, index)
                raise
            self.result.images.append(saved)
            if self.on_image is not None:
                self.on_image(saved)
            if self.journal is not None and self.job_id:
                self.journal.record_image(
                    self.job_id,
                    index=index,
                    path=saved.path,
                    url=saved.url,
                    seed=saved.seed,
                    width=saved.width,
                    height=saved.height,
                    remote_id=remote_id,
                )
        if count - len(images) > 0:
            self.result.errors.append(
                DownloadError(f"{self.provider.name}: asked for {count} image(s), got {len(images)}")
            )

    async def _save_one(
        self, client: GatewayClient, image: RemoteImage, index: int, seed: int | None, remote_id: str | None = None
    ) -> SavedImage:
        revised = clean_text(image.revised_prompt, 2000) if image.revised_prompt else None
        meta = build_metadata(self.meta_base, index=index, seed=seed, width=0, height=0, revised_prompt=revised)
        what = f"task {remote_id}: image {index}" if remote_id else f"image {index}"
        try:
            if image.b64 is not None:
                try:
                    data = base64.b64decode(image.b64, validate=True)
                except (binascii.Error, ValueError):
                    raise DownloadError(f"{self.provider.name}: image {index} has invalid base64 data") from None
                saved = await asyncio.to_thread(self.writer.save_bytes, data, index=index, seed=seed, meta=meta)
            else:
                assert image.url is not None
                if image.expires_at and image.expires_at < time.time():
                    raise ImagesExpired(
                        f"{self.provider.name}: {what} expired at {_format_time(image.expires_at)}",
                        hint="generate it again",
                    )
                handle, tmp = self.writer.temp_file()
                try:
                    with handle:
                        try:
                            await client.download(image.url, handle, MAX_DOWNLOAD_BYTES)
                        except DownloadError as exc:
                            if (
                                exc.status in (403, 404, 410)
                                and image.expires_at
                                and image.expires_at < time.time() + 60
                            ):
                                raise ImagesExpired(
                                    f"{self.provider.name}: {what} expired at {_format_time(image.expires_at)}",
                                    hint="generate it again",
                                ) from None
                            raise
                    saved = await asyncio.to_thread(self.writer.finish, tmp, index=index, seed=seed, meta=meta)
                finally:
                    tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise SaveError(
                f"cannot save image {index}: {exc.strerror or exc}",
                hint="check free space and permissions of the output directory",
            ) from None
        return SavedImage(
            saved.path, saved.index, saved.width, saved.height, saved.fmt, seed, url=image.url, revised_prompt=revised
        )
