"""Run a plan: send the calls (concurrently, bounded), poll tasks, fetch and save every image.

The result object is filled in as images land, so an interrupt or timeout still reports exactly
what was saved; the CLI layer turns it into stdout, the JSON document and the exit code.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from imagegen_cli.errors import (
    AuthError,
    ConfigError,
    DownloadError,
    ExitCode,
    ImagegenError,
    PendingTimeout,
    SaveError,
    clean_text,
)
from imagegen_cli.providers.dialects import (
    CANCELLED,
    FAILED,
    PENDING,
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
    from imagegen_cli.providers.planning import Plan, PlannedCall

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
    error: str | None = None


@dataclass
class GenerationResult:
    """What a run produced so far: saved images, tasks, notes, errors, usage."""

    provider: str
    model: str
    requested: int
    notes: list[str] = field(default_factory=list)
    images: list[SavedImage] = field(default_factory=list)
    tasks: list[TaskRecord] = field(default_factory=list)
    errors: list[ImagegenError] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)
    no_wait: bool = False
    interrupted: bool = False

    @property
    def pending(self) -> list[TaskRecord]:
        return [t for t in self.tasks if t.status == PENDING]

    def status(self) -> str:
        if self.no_wait and not self.errors:
            return "submitted"
        if self.images and len(self.images) >= self.requested and not self.errors:
            return "succeeded"
        if self.images:
            return "partial"
        if self.pending:
            return "submitted"
        return "failed"

    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if self.no_wait:
            return ExitCode.OK if self.tasks and not self.errors else self._failure_code()
        if self.pending:
            return ExitCode.PENDING
        if len(self.images) >= self.requested and not self.errors:
            return ExitCode.OK
        if self.images:
            return ExitCode.PARTIAL
        return self._failure_code()

    def _failure_code(self) -> ExitCode:
        if any(isinstance(e, AuthError | ConfigError) for e in self.errors):
            return ExitCode.AUTH
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


class RemoteRun:
    """Executes one plan against its provider."""

    def __init__(
        self,
        plan: Plan,
        writer: ImageWriter,
        result: GenerationResult,
        reporter: Reporter,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        no_wait: bool = False,
    ) -> None:
        self.plan = plan
        self.writer = writer
        self.result = result
        self.reporter = reporter
        self.concurrency = max(1, concurrency)
        self.no_wait = no_wait
        self.provider = plan.provider
        request = plan.request
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
        }
        self.poll_interval = float(os.environ.get("IMAGEGEN_POLL_INTERVAL", self.provider.profile.poll_interval))

    async def run(self, timeout: float) -> None:
        from imagegen_cli.providers.http import Deadline, GatewayClient, make_async_client

        deadline = Deadline(timeout)
        semaphore = asyncio.Semaphore(self.concurrency)
        async with make_async_client() as http:
            client = GatewayClient(self.provider, deadline, http)

            async def guarded(call: PlannedCall) -> None:
                async with semaphore:
                    await self._run_call(client, call)

            await asyncio.gather(*(guarded(call) for call in self.plan.calls))

    async def _run_call(self, client: GatewayClient, call: PlannedCall) -> None:
        from imagegen_cli.providers.http import DeadlineExceeded

        key = f"call{call.index}"
        label = f"{self.provider.name}:{self.provider.model}"
        span = (
            f"image {call.first_image}"
            if call.count == 1
            else f"images {call.first_image}-{call.first_image + call.count - 1}"
        )
        self.reporter.start(key, f"{label} {span}", 100 if self.provider.profile.is_async else None)
        tasks: list[TaskRecord] = []
        try:
            method, url = self.plan.method_url
            data = await client.request_json(method, url, body=call.body, headers=call.headers)
            if self.provider.profile.is_async:
                remote_ids = parse_submit_response(data, self.provider.name)
                tasks = [TaskRecord(rid, PENDING, call.index) for rid in remote_ids]
                self.result.tasks.extend(tasks)
                if self.no_wait:
                    return
                images = await self._poll_all(client, tasks, key)
            else:
                parsed = parse_images_response(data, self.provider.name)
                if parsed.usage:
                    self.result.usage.append(parsed.usage)
                images = parsed.images
            await self._save_all(client, call, images)
        except DeadlineExceeded:
            if not any(t.status == PENDING for t in tasks):
                self.result.errors.append(
                    PendingTimeout(f"{self.provider.name}: no answer within --timeout for {span}")
                )
        except ImagegenError as exc:
            for task in tasks:
                if task.status == PENDING:  # the gateway refused to tell us more: not resumable as is
                    task.status = FAILED
                    task.error = exc.message
            self.result.errors.append(exc)
        finally:
            self.reporter.finish(key)

    async def _poll_all(self, client: GatewayClient, tasks: list[TaskRecord], key: str) -> list[RemoteImage]:
        images: list[RemoteImage] = []
        for task in tasks:
            images.extend(await self._poll(client, task, key))
        return images

    async def _poll(self, client: GatewayClient, task: TaskRecord, key: str) -> list[RemoteImage]:
        url = self.provider.url(self.provider.profile.task_path.format(id=task.remote_id))
        interval = self.poll_interval
        while True:
            data = await client.request_json("GET", url)
            status = parse_task_status(data, self.provider.name, task.remote_id)
            if status.state == PENDING:
                self.reporter.update(key, completed=status.progress, description=None)
                await client.deadline.sleep(interval)
                interval = min(interval * 1.5, max(self.poll_interval, 10.0))
                continue
            if status.state in (FAILED, CANCELLED):
                task.status = status.state
                task.error = status.error
                raise task_error(self.provider.name, task.remote_id, status)
            task.status = "succeeded"
            self.reporter.update(key, completed=100)
            return status.images

    async def _save_all(self, client: GatewayClient, call: PlannedCall, images: list[RemoteImage]) -> None:
        if len(images) > call.count:
            images = images[: call.count]  # a gateway that over-delivers does not change the index plan
        for offset, image in enumerate(images):
            index = call.first_image + offset
            seed = call.seed if call.count == 1 else None
            try:
                saved = await self._save_one(client, image, index, seed)
            except ImagegenError as exc:
                self.result.errors.append(exc)
                continue
            self.result.images.append(saved)
        missing = call.count - len(images)
        if missing > 0:
            self.result.errors.append(
                DownloadError(f"{self.provider.name}: asked for {call.count} image(s), got {len(images)}")
            )

    async def _save_one(self, client: GatewayClient, image: RemoteImage, index: int, seed: int | None) -> SavedImage:
        meta = build_metadata(
            self.meta_base,
            index=index,
            seed=seed,
            width=0,
            height=0,
            revised_prompt=clean_text(image.revised_prompt, 2000) if image.revised_prompt else None,
        )
        try:
            if image.b64 is not None:
                try:
                    data = base64.b64decode(image.b64, validate=True)
                except (binascii.Error, ValueError):
                    raise DownloadError(f"{self.provider.name}: image {index} has invalid base64 data") from None
                saved = await asyncio.to_thread(self.writer.save_bytes, data, index=index, seed=seed, meta=meta)
            else:
                assert image.url is not None
                handle, tmp = self.writer.temp_file()
                try:
                    with handle:
                        await client.download(image.url, handle, MAX_DOWNLOAD_BYTES)
                    saved = await asyncio.to_thread(self.writer.finish, tmp, index=index, seed=seed, meta=meta)
                finally:
                    tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise SaveError(
                f"cannot save image {index}: {exc.strerror or exc}",
                hint="check free space and permissions of the output directory",
            ) from None
        return SavedImage(
            saved.path,
            saved.index,
            saved.width,
            saved.height,
            saved.fmt,
            seed,
            url=image.url,
            revised_prompt=meta.get("revised_prompt"),
        )
