"""The server's one worker per device: a bounded queue, compatible requests batched into one pipeline call, and a
warm pipeline that is unloaded after ``--keep-alive`` of idleness.

Requests are planned (and refused) by the same ``build_local_plan`` as ``imagegen generate -m local:...`` before
they are queued; the worker runs them with the same ``LocalEngine``, so a seed gives the same pixels here as
in-process: image i of a request has the request's seed + i, one CPU generator per image, whatever the batch. (A
batch sums in another order than a call alone: a few values may round one step apart. ``--max-batch 1`` keeps
every request alone, bit-identical.)
"""

from __future__ import annotations

import concurrent.futures
import io
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import ImagegenError
from imagegen_cli.events import CallDone, CallSent, Event, ImageReady, StopToken
from imagegen_cli.local.planning import LocalBatch, LocalPlan

if TYPE_CHECKING:
    from PIL import Image

    from imagegen_cli.local.runner import LocalEngine
    from imagegen_cli.serve.metrics import Metrics


class QueueFull(Exception):
    """The queue holds ``--queue`` requests already: answered 429 with Retry-After."""


class Draining(Exception):
    """The server is stopping (SIGTERM): it finishes what it has and accepts nothing new."""


@dataclass
class Job:
    """One HTTP request's images: its plan (checked before it was queued) and where its answer goes."""

    plan: LocalPlan
    seed: int
    future: concurrent.futures.Future[list[tuple[int, bytes]]] = field(default_factory=concurrent.futures.Future)
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def n(self) -> int:
        return self.plan.request.n

    def compatible(self, other: Job) -> bool:
        """Same model, size, steps, guidance, negative prompt and options: one pipeline call can make both."""
        return _shape(self.plan) == _shape(other.plan)


def _shape(plan: LocalPlan) -> tuple[object, ...]:
    request = plan.request  # an edit starts from its own image: batched only with the same one
    return (plan.source.location, plan.options, plan.width, plan.height, plan.steps, plan.guidance,
            plan.negative_prompt, plan.extra, request.images, request.mask, request.strength)  # fmt: skip


class Worker:
    """Runs queued jobs one pipeline call at a time, in its own thread."""

    def __init__(self, engine: LocalEngine, metrics: Metrics, *, keep_alive: float, queue: int, max_batch: int) -> None:
        self.engine = engine
        self.metrics = metrics
        self.keep_alive = keep_alive  # seconds; < 0: never unload
        self.queue_limit = queue
        self.max_batch = max_batch
        self.queue: deque[Job] = deque()
        self.cond = threading.Condition()
        self.accepting = True
        self.running: list[Job] = []
        self.stop: StopToken | None = None
        self.last_used = time.monotonic()
        self.paused = False  # tests hold the worker to queue requests deterministically
        # What is loaded, as the worker last saw it: the engine's own list waits for its lock, held for a whole run,
        # and /health must answer while a run goes on.
        self.loaded: list[str] = []
        self.loaded = [type(pipe).__name__ for pipe in engine.loaded_pipelines()]  # preloaded (-m)
        self.thread = threading.Thread(target=self._loop, name="imagegen-worker", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ called from the event loop
    def submit(self, job: Job) -> None:
        with self.cond:
            if not self.accepting:
                raise Draining
            if len(self.queue) >= self.queue_limit:
                raise QueueFull
            self.queue.append(job)
            self.metrics.queue_depth = len(self.queue)
            self.cond.notify_all()

    def cancel(self, job: Job) -> None:
        """A client that went away: its queued job is dropped; a running batch of only cancelled jobs stops."""
        with self.cond:
            job.cancelled.set()
            if job in self.queue:
                self.queue.remove(job)
                self.metrics.queue_depth = len(self.queue)
            if self.running and all(each.cancelled.is_set() for each in self.running) and self.stop is not None:
                self.stop.request()

    def hold(self, paused: bool) -> None:
        with self.cond:
            self.paused = paused
            self.cond.notify_all()

    def state(self) -> dict[str, Any]:
        with self.cond:
            return {
                "queue": len(self.queue),
                "busy": bool(self.running),
                "accepting": self.accepting,
                "loaded": list(self.loaded),
            }

    def drain(self, timeout: float | None = None) -> None:
        """Accept nothing new; return when every queued and running job is answered (SIGTERM)."""
        ends = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            self.accepting = False
            self.paused = False
            self.cond.notify_all()
            while self.queue or self.running:
                left = None if ends is None else ends - time.monotonic()
                if left is not None and left <= 0:
                    break
                self.cond.wait(left)

    # ------------------------------------------------------------------ the worker thread
    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.queue or self.paused:
                    if not self.accepting and not self.queue:
                        return
                    self.cond.wait(self._idle_wait())
                    if self._idle_expired():
                        self._unload()
                jobs = self._take()
                self.running = jobs
                self.stop = StopToken()
                stop = self.stop
            try:
                self._run(jobs, stop)
            finally:
                loaded = [type(pipe).__name__ for pipe in self.engine.loaded_pipelines()]
                with self.cond:
                    self.running = []
                    self.stop = None
                    self.loaded = loaded
                    self.last_used = time.monotonic()
                    self.cond.notify_all()

    def _idle_wait(self) -> float | None:
        if self.keep_alive < 0 or not self.engine.loaded_pipelines():
            return None if self.accepting else 0.1
        return max(0.0, self.keep_alive - (time.monotonic() - self.last_used)) + 0.01

    def _idle_expired(self) -> bool:
        return (
            self.keep_alive >= 0
            and not self.queue
            and bool(self.engine.loaded_pipelines())
            and time.monotonic() - self.last_used >= self.keep_alive
        )

    def _unload(self) -> None:
        import gc

        self.engine.unload()
        self.loaded = []
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the device's memory goes back, not only Python's references
        except ImportError:  # pragma: no cover - the local extra is installed wherever serve runs
            pass
        with self.metrics.lock:
            self.metrics.unloads += 1

    def _take(self) -> list[Job]:
        """The first job, and the queued jobs compatible with it, up to ``max_batch`` images in all."""
        first = self.queue.popleft()
        jobs, images = [first], first.n
        for job in list(self.queue):
            if images + job.n > self.max_batch:
                continue
            if job.compatible(first):
                self.queue.remove(job)
                jobs.append(job)
                images += job.n
        self.metrics.queue_depth = len(self.queue)
        return jobs

    def _run(self, jobs: list[Job], stop: StopToken) -> None:
        images: dict[int, Image.Image] = {}
        metas: dict[int, Any] = {}
        loaded_at: list[float] = []

        def emit(event: Event) -> None:
            if isinstance(event, ImageReady) and event.pixels is not None:
                images[event.index] = event.pixels
                metas[event.index] = event.meta
            elif isinstance(event, CallSent) and event.key == "load":
                loaded_at.append(time.monotonic())
            elif isinstance(event, CallDone) and event.key == "load" and loaded_at:
                with self.metrics.lock:
                    self.metrics.loads += 1
                    self.metrics.load_seconds += time.monotonic() - loaded_at[0]

        seeds = tuple(job.seed + i for job in jobs for i in range(job.n))
        plan = jobs[0].plan
        if len(jobs) > 1:
            prompts = tuple(job.plan.request.prompt for job in jobs for _ in range(job.n))
            request = replace(plan.request, n=len(seeds))
            plan = replace(plan, request=request, batches=(LocalBatch(1, seeds, prompts),))
        else:
            plan = replace(plan, batches=(LocalBatch(1, seeds),))
        with self.metrics.lock:
            self.metrics.batch_sizes.observe(len(seeds))
        try:
            self.engine.run(0, plan, emit, stop)
        except ImagegenError as exc:
            for job in jobs:
                job.future.set_exception(exc)
            with self.metrics.lock:
                self.metrics.errors += 1
            return
        except Exception as exc:  # noqa: BLE001 - a pipeline bug is this batch's error, not the server's end
            for job in jobs:
                job.future.set_exception(ImagegenError(f"the pipeline failed: {type(exc).__name__}: {exc}"[:300]))
            with self.metrics.lock:
                self.metrics.errors += 1
            return
        index = 1
        for job in jobs:
            answer = []
            for offset in range(job.n):
                if index in images:
                    pixels = images[index]
                    meta = metas[index].with_image(
                        prompt=job.plan.request.prompt,
                        seed=job.seed + offset,
                        index=offset + 1,
                        width=pixels.width,
                        height=pixels.height,
                    )
                    answer.append((job.seed + offset, _png(images[index], meta.to_record())))
                index += 1
            if len(answer) < job.n:
                job.future.set_exception(ImagegenError("the request was cancelled before its images were made"))
                continue
            with self.metrics.lock:
                self.metrics.images += len(answer)
            job.future.set_result(answer)


def preload(engine: LocalEngine, plan: LocalPlan, metrics: Metrics) -> float | None:
    """Load ``plan``'s model now (``serve -m``); a compiled one also makes one warm-up image, so its compilation
    is paid here, once, not by the first request. Returns the warm-up's seconds (None: not compiled)."""
    started = time.monotonic()
    engine.load(plan, lambda event: None)
    with metrics.lock:
        metrics.loads += 1
        metrics.load_seconds += time.monotonic() - started
    if not plan.options.compile:
        return None
    started = time.monotonic()
    engine.run(0, replace(plan, batches=(LocalBatch(1, (0,)),)), lambda event: None, StopToken())
    seconds = time.monotonic() - started
    with metrics.lock:
        metrics.compile_seconds += seconds
    return seconds


def _png(image: Image.Image, record: dict[str, Any]) -> bytes:
    """The image as PNG bytes with its record embedded, as the file writer embeds it in a PNG."""
    from PIL import PngImagePlugin

    from imagegen_cli.store.metadata import png_texts

    info = PngImagePlugin.PngInfo()
    for key, value in png_texts(record):
        info.add_itxt(key, value)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()
