"""The driver's side of ``--engine ray``: pipeline calls streamed to actors, what they made emitted as events.

Each job's plan is split into its pipeline calls (the unit a pipeline makes at once, with its seeds). Long-lived
actors (:class:`~imagegen_cli.cluster.worker.ImageWorker`, one warm pipeline each) get at most ``PER_WORKER``
calls at a time: one running and one waiting behind it, so an actor never waits for the driver and the driver never
holds more than two calls' images per actor. A call's images come back together, PNG-encoded (or already placed
with ``--worker-writes``), and are emitted as ``ImageReady`` events: the driver's writer, journal and progress
record them as they record an in-process run's.

Faults: a call whose actor died (killed, out of memory, its node gone) made nothing this driver recorded, so it is
sent again to another actor (with ``--worker-writes``, minus the files the dead actor had already placed, found by
their records): each image is saved once. A replacement actor is started for each one lost, up to the number asked
for. A stop (Ctrl-C, SIGTERM) asks every actor to stop between steps, saves what the calls in flight return within
``STOP_GRACE`` seconds, and ends the run as interrupted; the driver's own death is the journal's business
(``--resume`` makes only what is missing).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegen_cli.cluster import import_ray
from imagegen_cli.errors import ImagegenError, UsageError
from imagegen_cli.events import CallDone, CallFailed, CallSent, ImageReady, JobFinished, JobStarted, Note, Workers
from imagegen_cli.local.planning import LocalPlan

if TYPE_CHECKING:
    from collections.abc import Callable

    from imagegen_cli.cluster.worker import Made
    from imagegen_cli.engines import Channel, EngineJob
    from imagegen_cli.options import ClusterOptions

PER_WORKER = 2  # calls in flight per actor: one running, the next queued behind it
MAX_TRIES = 3  # a call that three actors died making fails its line (it is what kills them)
STOP_GRACE = 30.0  # seconds a stop waits for the calls in flight to return what they made
WAIT = 0.25  # seconds between looks at the stop while calls run


class ClusterError(ImagegenError):
    """The Ray cluster could not be reached or used."""

    code = "cluster"


@dataclass
class Unit:
    """One pipeline call of one job: its plan holds just that call's images."""

    job: EngineJob
    plan: LocalPlan
    tries: int = 0

    @property
    def indices(self) -> list[int]:
        return [b.first + k for b in self.plan.batches for k in range(len(b.seeds))]

    @property
    def key(self) -> str:
        return f"batch{self.indices[0]}"

    @property
    def label(self) -> str:
        first, last = self.indices[0], self.indices[-1]
        images = f"image {first}" if first == last else f"images {first}-{last}"
        return f"line {self.job.line} {images}" if self.job.line is not None else images


@dataclass
class Worker:
    """One actor as the driver sees it."""

    name: str
    handle: Any
    running: list[Unit] = field(default_factory=list)
    lost: bool = False
    warned: bool = False  # its imagegen version differs from the driver's (said once)

    @property
    def state(self) -> str:
        if self.lost:
            return "lost"
        return self.running[0].label if self.running else "idle"


class Dispatch:
    """One run of ``--engine ray``: connect, start the actors, stream the calls, record, tidy up."""

    def __init__(self, jobs: list[EngineJob], channel: Channel, narrow: Callable[[LocalPlan, list[int]], LocalPlan]):
        self.narrow = narrow  # the local engine's: a plan making only some of its images, each with its seed
        self.jobs = jobs
        self.channel = channel
        self.workers: list[Worker] = []
        self.left: dict[int, int] = {}  # work → its calls not settled yet
        self.started: set[int] = set()
        self.failed: set[int] = set()
        self.shown: tuple[tuple[str, str], ...] = ()
        self.replacements = 0  # actors started for lost ones (at most as many as asked for)
        self.count = 0
        self.actor_class: Any = None
        self.notes: list[str] = []  # said on the first job, once it starts (a note belongs to a job)

    # ------------------------------------------------------------------ the run
    def run(self) -> None:
        units: deque[Unit] = deque()
        for job in self.jobs:
            plan = job.plan
            if plan is None:  # every image saved before (--resume): nothing to send
                self.channel.emit(JobStarted(job.work))
                self.channel.emit(JobFinished(job.work))
                continue
            assert isinstance(plan, LocalPlan)
            calls = [Unit(job, replace(plan, batches=(batch,))) for batch in plan.batches]
            self.left[job.work] = len(calls)
            units.extend(calls)
        if not units:
            return
        options = units[0].plan.cluster
        assert options is not None
        ray = import_ray()
        _errors_to_stderr()
        owned = self._connect(ray, options)
        try:
            self._start_workers(ray, options)
            self._loop(ray, units)
        finally:
            for worker in self.workers:
                if not worker.lost:
                    ray.kill(worker.handle, no_restart=True)
            if owned:
                ray.shutdown()

    def _connect(self, ray: Any, options: ClusterOptions) -> bool:
        """Join the cluster (or start one here); True when this run started the connection (and so ends it)."""
        if ray.is_initialized():
            return False  # a Python API caller's own connection
        address = options.address
        local = address == "local" or (address is None and not os.environ.get("RAY_ADDRESS"))
        # Ray's own output never reaches stdout (the contract's), and its INFO lines stay out of stderr.
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if local:
            kwargs["include_dashboard"] = False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats prompt, no report (often no network)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = "a local Ray instance" if local else f"the Ray cluster at {address or os.environ['RAY_ADDRESS']}"
            raise ClusterError(
                f"could not start or reach {where}: {_first_line(exc)}",
                hint="start one with: ray start --head (then --ray-address auto), or drop --ray-address",
            ) from None
        return True

    def _start_workers(self, ray: Any, options: ClusterOptions) -> None:
        from imagegen_cli.cluster.worker import ImageWorker

        resources = ray.cluster_resources()
        gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
        per = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if gpus else 0.0)
        if per > gpus:
            raise UsageError(
                f"--gpus-per-worker {per:g}: the Ray cluster has {gpus:g} GPUs",
                hint="use --gpus-per-worker 0 to run on CPUs, or add GPU nodes",
            )
        count = options.workers or (max(1, int(gpus // per)) if per else 1)
        # Workers on CPUs share the cluster's cores (Ray gives each its share as torch's thread count).
        cpu_each = 1.0 if per else max(1.0, float(int(cpus // count)))
        fits = int(gpus // per) if per else int(cpus // cpu_each)
        self.count = count
        if fits < count:
            self.notes.append(f"the cluster has room for {fits} of {count} workers now; the rest start as it grows")
        self.actor_class = ray.remote(ImageWorker).options(
            num_cpus=cpu_each, num_gpus=per, max_concurrency=PER_WORKER + 1
        )
        for _ in range(count):
            self._add_worker()
        where = "a local Ray instance" if not options.address or options.address == "local" else options.address
        plural = "s" if count != 1 else ""
        self.notes.append(f"ray: {count} worker{plural} on {where} ({per:g} GPU, {cpu_each:g} CPU each)")

    def _add_worker(self) -> None:
        number = len(self.workers) + 1
        self.workers.append(Worker(f"w{number}", self.actor_class.remote()))

    def _loop(self, ray: Any, queue: deque[Unit]) -> None:
        pending: dict[Any, tuple[Worker, Unit]] = {}
        stop = self.channel.stop
        while (queue or pending) and not stop.requested:
            self._fill(queue, pending)
            if not pending:
                break  # no worker left to send to (each lost, no replacement)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT)
            for ref in ready:
                worker, unit = pending.pop(ref)
                self._settle(ray, ref, worker, unit, queue)
            self._say_workers()
        for unit in list(queue):
            if not stop.requested:
                self._fail(unit, ClusterError("every Ray worker was lost", hint="see the notes for why"))
        if not stop.requested:
            return
        for worker in self.workers:
            if not worker.lost:
                worker.handle.cancel.remote()
        deadline = time.monotonic() + STOP_GRACE
        while pending and time.monotonic() < deadline:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT)
            for ref in ready:
                worker, unit = pending.pop(ref)
                self._settle(ray, ref, worker, unit, deque(), retry=False)
        for work in sorted(self.started):
            if self.left.get(work, 0) > 0:
                self.left[work] = 0
                self.channel.emit(JobFinished(work, interrupted=True))
        raise KeyboardInterrupt

    def _fill(self, queue: deque[Unit], pending: dict[Any, tuple[Worker, Unit]]) -> None:
        """Give each live worker calls up to ``PER_WORKER``, the least busy first (calls spread over the actors)."""
        while queue:
            live = [w for w in self.workers if not w.lost and len(w.running) < PER_WORKER]
            if not live:
                return
            worker = min(live, key=lambda w: len(w.running))
            unit = queue.popleft()
            if unit.job.work in self.failed:
                self._done(unit)
                continue
            self._start(unit.job)
            placing = self._placing(unit.job)
            ref = worker.handle.make.remote(unit.job.work, unit.plan, placing)
            pending[ref] = (worker, unit)
            worker.running.append(unit)
            self.channel.emit(CallSent(unit.job.work, unit.key, unit.label, None, shown=False))

    def _start(self, job: EngineJob) -> None:
        if job.work not in self.started:
            self.started.add(job.work)
            self.channel.emit(JobStarted(job.work))  # journalled now: the job id exists from here on
            for text in self.notes:
                self.channel.emit(Note(job.work, text))
            self.notes.clear()

    def _placing(self, job: EngineJob) -> Any:
        options = getattr(job.full, "cluster", None)
        if options is None or not options.worker_writes:
            return None
        from imagegen_cli.cluster.worker import Placing

        assert job.spec is not None
        # Workers on other nodes have other working directories: the folder is passed as an absolute path.
        return Placing(replace(job.spec, directory=job.spec.directory.resolve()), job.job_id)

    # ------------------------------------------------------------------ results
    def _settle(self, ray: Any, ref: Any, worker: Worker, unit: Unit, queue: deque[Unit], retry: bool = True) -> None:
        if unit in worker.running:
            worker.running.remove(unit)
        try:
            made: Made = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            self._lose(worker, exc)
            if retry:
                self._retry(unit, queue, f"worker {worker.name} died: {_first_line(exc)}")
            # Stopping: the call stays unsettled, so its job ends as interrupted (--resume makes its images).
            return
        except ray.exceptions.RayError as exc:  # the call raised something other than an ImagegenError
            from imagegen_cli.local.runner import LocalError

            self._fail(unit, LocalError(f"worker {worker.name} failed on {unit.label}: {_first_line(exc)}"))
            return
        self._check_version(worker, unit, made.version)
        self._record(unit, made)

    def _check_version(self, worker: Worker, unit: Unit, version: str) -> None:
        from imagegen_cli import __version__

        if version != __version__ and not worker.warned:
            worker.warned = True
            self.channel.emit(
                Note(
                    unit.job.work,
                    f"worker {worker.name} runs imagegen {version or 'unknown'}, this driver {__version__}: "
                    "install the same imagegen-cli on every node (records and pixels may differ)",
                    now=True,
                )
            )

    def _record(self, unit: Unit, made: Made) -> None:
        from imagegen_cli.cluster.worker import decode_png

        work, spec = unit.job.work, unit.job.spec
        keep_png = spec is None or spec.fmt in (None, "png")
        for text in made.notes:
            self.channel.emit(Note(work, text))
        for image in made.images:
            if image.placed is not None:
                event = ImageReady(work, image.index, image.seed, image.meta, placed=image.placed)
            elif keep_png:
                event = ImageReady(work, image.index, image.seed, image.meta, data=image.png)
            else:  # another format: encoded from the pixels by the driver's writer, as an in-process run does
                assert image.png is not None
                event = ImageReady(work, image.index, image.seed, image.meta, pixels=decode_png(image.png))
            self.channel.emit(event)
        self.channel.emit(CallDone(work, unit.key))
        if made.error is not None:
            self._fail(unit, made.error, done=False)
        self._done(unit)

    def _retry(self, unit: Unit, queue: deque[Unit], why: str) -> None:
        self.channel.emit(CallDone(unit.job.work, unit.key))
        unit.tries += 1
        if unit.job.work in self.failed:
            self._done(unit)
            return
        todo = self._adopt_placed(unit)
        if not todo:
            self._done(unit)
            return
        if unit.tries >= MAX_TRIES:
            self._fail(
                unit,
                ClusterError(
                    f"{unit.label}: {unit.tries} workers died making it ({why})",
                    hint="out of memory? try --offload model, a smaller --size, or fewer images per line",
                ),
            )
            return
        unit.plan = self.narrow(unit.plan, todo) if todo != unit.indices else unit.plan
        self.channel.emit(Note(unit.job.work, f"{why}; {unit.label} sent to another worker", now=True))
        queue.appendleft(unit)

    def _adopt_placed(self, unit: Unit) -> list[int]:
        """``--worker-writes``: the images of ``unit`` a dead worker placed are recorded; the rest are returned."""
        placing = self._placing(unit.job)
        if placing is None or not placing.job_id:
            return unit.indices
        from imagegen_cli.store.reader import find_job_images
        from imagegen_cli.store.saved_image import SavedImage

        found = find_job_images(placing.spec.directory, placing.job_id, set(unit.indices))
        for index, (path, meta) in sorted(found.items()):
            saved = SavedImage(str(path), index, meta.width or 0, meta.height or 0, _fmt(path), seed=meta.seed)
            self.channel.emit(ImageReady(unit.job.work, index, meta.seed, meta, placed=saved))
        return [i for i in unit.indices if i not in found]

    def _lose(self, worker: Worker, exc: BaseException) -> None:
        if worker.lost:
            return
        worker.lost = True
        self._say_workers()
        if self.replacements < self.count:
            self.replacements += 1
            self._add_worker()

    def _fail(self, unit: Unit, error: ImagegenError, *, done: bool = True) -> None:
        """The job of ``unit`` failed: its error is recorded once, its calls not yet sent are dropped."""
        if unit.job.work not in self.failed:
            self.failed.add(unit.job.work)
            self._start(unit.job)
            self.channel.emit(CallFailed(unit.job.work, error))
        if done:
            self._done(unit)

    def _done(self, unit: Unit) -> None:
        work = unit.job.work
        self.left[work] -= 1
        if self.left[work] == 0:
            self._start(unit.job)
            self.channel.emit(JobFinished(work))

    # ------------------------------------------------------------------ saying
    def _say_workers(self) -> None:
        states = tuple((w.name, w.state) for w in self.workers)
        if states != self.shown:
            self.shown = states
            self.channel.emit(Workers(0, states))


def _errors_to_stderr() -> None:
    """Ray prints the cluster's error messages (a worker died...) to the driver's stdout, which is the contract's
    (saved paths, JSON): they are sent to stderr. Ray has no option for it; without the hook, nothing is changed."""
    try:
        from ray._private import worker as ray_worker
    except ImportError:
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "imagegen_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.imagegen_stderr = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_stderr


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def _fmt(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return "jpeg" if suffix == "jpg" else suffix
