"""The driver's side of ``--engine ray``: pipeline calls streamed to actors, what they made emitted as events.

Each job's plan is split into its pipeline calls (the unit a pipeline makes at once, with its seeds). Long-lived
actors (:class:`~imagegen_cli.cluster.worker.ImageWorker`, one warm pipeline each) get calls only once they have
started (a worker the cluster has no room for yet never holds one), at most ``PER_WORKER`` at a time: one running
and one waiting behind it, so an actor never waits for the driver and the driver never holds more than two calls'
images per actor. An actor makes its calls one after another, in the order sent (so the first one it holds is the
one running); its ``cancel`` runs beside them. A call's images come back together, PNG-encoded (or already placed
with ``--worker-writes``), and are emitted as ``ImageReady`` events: the driver's writer, journal and progress
record them as they record an in-process run's.

Faults: a call whose actor died (killed, out of memory, its node gone) made nothing this driver recorded, so it is
sent again to another actor (with ``--worker-writes``, minus the files the dead actor had already placed, found by
their records): each image is saved once. Only the call that was running counts the death against itself: one
that ``MAX_TRIES`` actors died making fails its line. Each lost actor is replaced, until more have been lost since
the last finished call than the run has workers plus ``MAX_TRIES`` (actors that keep dying, or never start, are
not replaced forever). A stop (Ctrl-C) asks every actor to stop between steps, saves what the calls in flight
return within ``STOP_GRACE`` seconds (SIGTERM: less than its own grace), and ends the run as interrupted; the
driver's own death is the journal's business (``--resume`` makes only what is missing).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from imagegen_cli.cluster import import_ray
from imagegen_cli.cluster.calls import Died, Unit, Worker, call_outcome, image_format, kill
from imagegen_cli.cluster.connect import ClusterError, Sizing, connect, first_line, size_workers
from imagegen_cli.errors import ImagegenError
from imagegen_cli.events import CallDone, CallFailed, CallSent, ImageReady, JobFinished, JobStarted, Note, Workers
from imagegen_cli.local.planning import LocalPlan

if TYPE_CHECKING:
    from collections.abc import Callable

    from imagegen_cli.cluster.worker import Made
    from imagegen_cli.engines import Channel, EngineJob

__all__ = ["ClusterError", "Dispatch", "Unit", "Worker"]

PER_WORKER = 2  # calls in flight per actor: one running, the next queued behind it
MAX_TRIES = 3  # a call that three actors died making fails its line (it is what kills them)
STOP_GRACE = 30.0  # seconds a Ctrl-C waits for the calls in flight to return what they made
TERM_STOP_GRACE = 2.5  # the same after SIGTERM (the process ends 5 s after it: the actors are stopped before)
START_WAIT = 900.0  # seconds without any started worker before the run gives up (an autoscaler adds nodes slowly)
SLOW_START = 30.0  # seconds without any started worker before a note says what the run waits for
WAIT = 0.25  # seconds between looks at the stop while calls run
BURY_WAIT = 2.0  # seconds for the calls of a killed actor to end (Ray fails them at once)
CONTROL = "control"  # the actor's concurrency group for identity() and cancel(), beside the calls


class Dispatch:
    """One run of ``--engine ray``: connect, start the actors, stream the calls, record, tidy up."""

    def __init__(self, jobs: list[EngineJob], channel: Channel, narrow: Callable[[LocalPlan, list[int]], LocalPlan]):
        self.narrow = narrow  # the local engine's: a plan making only some of its images, each with its seed
        self.jobs = jobs
        self.channel = channel
        self.workers: list[Worker] = []
        self.starting: dict[Any, Worker] = {}  # identity() call → its actor, until it answers
        self.left: dict[int, int] = {}  # work → its calls not settled yet
        self.started: list[int] = []
        self.failed: set[int] = set()
        self.shown: tuple[tuple[str, str, int], ...] = ()
        self.sizing = Sizing(1, 0.0, 1.0)
        self.lost_since_progress = 0  # actors lost since a call last came back (replacements stop past a bound)
        self.actor_class: Any = None
        self.notes: list[str] = []  # said on the first job, once it starts (a note belongs to a job)
        self.none_ready_since: float | None = None
        self.said_slow = False
        self.term_seen: float | None = None  # when this run's stop became a SIGTERM
        self.first: EngineJob | None = None  # the job a note waits on while no job has started

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
        self.first = units[0].job
        ray = import_ray()
        joined = connect(ray, options)
        try:
            self._start_workers(ray, size_workers(ray, options, owned_local=joined.local), joined.where)
            self._loop(ray, units)
        finally:
            for worker in self.workers:
                if not worker.lost:
                    kill(ray, worker)
            if joined.owned:
                ray.shutdown()

    def _start_workers(self, ray: Any, sizing: Sizing, where: str) -> None:
        from imagegen_cli.cluster.worker import ImageWorker

        self.sizing = sizing
        # Calls run one at a time in the order sent (the default group); identity() and cancel() beside them.
        actor = ray.remote(concurrency_groups={CONTROL: 1})(ImageWorker)
        self.actor_class = actor.options(num_cpus=sizing.cpus, num_gpus=sizing.gpus)
        for _ in range(sizing.count):
            self._add_worker()
        plural = "s" if sizing.count != 1 else ""
        each = f"{sizing.gpus:g} GPU, {sizing.cpus:g} CPU each"
        self.notes += [*sizing.notes, f"ray: {sizing.count} worker{plural} on {where} ({each})"]

    def _add_worker(self) -> None:
        worker = Worker(f"w{len(self.workers) + 1}", self.actor_class.remote())
        self.workers.append(worker)
        self.starting[worker.handle.identity.options(concurrency_group=CONTROL).remote()] = worker

    def _loop(self, ray: Any, queue: deque[Unit]) -> None:
        pending: dict[Any, tuple[Worker, Unit]] = {}
        stop = self.channel.stop
        why = "every Ray worker was lost"
        while (queue or pending) and not stop.requested:
            self._fill(queue, pending)
            if not pending and not self.starting:
                break  # no worker left to send to (each lost, no replacement)
            if not pending and self._gave_up_waiting():
                why = f"no Ray worker started within {START_WAIT:g} s"
                break
            ready, _ = ray.wait([*pending, *self.starting], num_returns=1, timeout=WAIT)
            for ref in ready:
                if ref in self.starting:
                    self._started(ray, ref, self.starting.pop(ref))
                elif ref in pending:  # (not settled already with the rest of a dead worker's calls)
                    self._take(ray, ref, pending, queue)
            self._say_workers()
        for unit in list(queue):
            if not stop.requested:
                self._fail(unit, ClusterError(why, hint="see the notes for why, and: ray status"))
        if stop.requested:
            self._stop(ray, pending)

    def _stop(self, ray: Any, pending: dict[Any, tuple[Worker, Unit]]) -> None:
        """Every actor stops between steps; what the calls in flight made within the grace is saved."""
        for worker in self.workers:
            if worker.ready and not worker.lost:
                worker.handle.cancel.options(concurrency_group=CONTROL).remote()
        began = time.monotonic()
        while pending and self._grace_left(began) > 0:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=min(WAIT, self._grace_left(began)))
            for ref in ready:
                if ref in pending and self._grace_left(began) > 0:
                    self._take(ray, ref, pending, deque(), retry=False)
        for work in self.started:
            if self.left.get(work, 0) > 0:  # a call not sent, lost, stopped part-way or still running
                self.left[work] = 0
                self.channel.emit(JobFinished(work, interrupted=True))
        raise KeyboardInterrupt

    def _grace_left(self, began: float) -> float:
        """Seconds the stop still waits for calls: ``STOP_GRACE`` from the stop, or, once a SIGTERM is seen (first
        or after a Ctrl-C), ``TERM_STOP_GRACE`` from it (the process ends 5 s after a SIGTERM)."""
        now = time.monotonic()
        if self.channel.stop.terminated and self.term_seen is None:
            self.term_seen = now
        end = began + STOP_GRACE
        if self.term_seen is not None:
            end = min(end, self.term_seen + TERM_STOP_GRACE)
        return end - now

    def _gave_up_waiting(self) -> bool:
        """No worker has started (or every started one was lost) for ``START_WAIT`` seconds; said once at
        ``SLOW_START`` what the run waits for."""
        if any(worker.ready and not worker.lost for worker in self.workers):
            self.none_ready_since = None
            return False
        now = time.monotonic()
        if self.none_ready_since is None:
            self.none_ready_since = now
        waited = now - self.none_ready_since
        if waited >= SLOW_START and not self.said_slow:
            self.said_slow = True
            need = f"{self.sizing.gpus:g} GPU and {self.sizing.cpus:g} CPU"
            self._say(f"waiting for the cluster to start a worker ({need} each; see: ray status)")
        return waited >= START_WAIT

    def _fill(self, queue: deque[Unit], pending: dict[Any, tuple[Worker, Unit]]) -> None:
        """Give each started worker calls up to ``PER_WORKER``, the least busy first (calls spread over the actors)."""
        while queue:
            live = [w for w in self.workers if w.ready and not w.lost and len(w.running) < PER_WORKER]
            if not live:
                return
            worker = min(live, key=lambda w: len(w.running))
            unit = queue.popleft()
            if unit.job.work in self.failed:
                self._done(unit)
                continue
            self._start(unit.job)
            unit.sent_at = unit.sent_at or time.time()
            ref = worker.handle.make.remote(unit.job.work, unit.plan, self._placing(unit.job))
            pending[ref] = (worker, unit)
            worker.running.append(unit)
            self.channel.emit(CallSent(unit.job.work, unit.key, unit.label, None, shown=False))

    def _start(self, job: EngineJob) -> None:
        if job.work not in self.started:
            self.started.append(job.work)
            self.channel.emit(JobStarted(job.work))  # journalled now: the job id exists from here on
            for text in self.notes:
                self.channel.emit(Note(job.work, text))
            self.notes.clear()

    def _placing(self, job: EngineJob) -> Any:
        options = getattr(job.full, "cluster", None)
        # Without a job id (the journal could not record the job) a lost worker's files could not be told from
        # another job's: the driver writes that job's images itself.
        if options is None or not options.worker_writes or not job.job_id:
            return None
        from imagegen_cli.cluster.worker import Placing

        assert job.spec is not None
        # Workers on other nodes have other working directories: the folder is passed as an absolute path.
        return Placing(replace(job.spec, directory=job.spec.directory.resolve()), job.job_id)

    # ------------------------------------------------------------------ results
    def _started(self, ray: Any, ref: Any, worker: Worker) -> None:
        """A worker answered identity() (it can take calls), or died starting (it is replaced, within bounds)."""
        try:
            identity = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._say(f"worker {worker.name} could not start: {first_line(exc)}")
            self._lose(ray, worker)
            return
        worker.ready = True
        self.none_ready_since = None  # a later wait (every started worker lost) is counted from its own start
        self._check_version(worker, str(identity.get("version", "")))

    def _take(
        self, ray: Any, ref: Any, pending: dict[Any, tuple[Worker, Unit]], queue: deque[Unit], retry: bool = True
    ) -> None:
        """A call came back. If its actor died, all the actor's calls are settled now, in the order sent: those it
        finished are recorded, and the first that failed is the one it was running when it died (the suspect)."""
        worker, unit = pending[ref]
        outcome = call_outcome(ray, ref)
        if not isinstance(outcome, Died) or worker.lost:
            del pending[ref]
            self._settle(worker, unit, outcome, queue, retry, blame=False)
            return
        # Killed first: an actor only cut off (its node unreachable, not dead) must not go on placing files once its
        # calls are sent elsewhere. Its calls then end at once.
        self._retire(ray, worker)
        mine = [r for u in worker.running for r, (w, v) in pending.items() if w is worker and v is u]
        limit = BURY_WAIT if self.term_seen is None else max(0.0, self.term_seen + TERM_STOP_GRACE - time.monotonic())
        ray.wait(mine, num_returns=len(mine), timeout=limit)
        blame = True
        for each in mine:
            _, unit = pending.pop(each)
            blame = self._settle(worker, unit, call_outcome(ray, each, wait=False), queue, retry, blame)
        self._replace()  # after the calls it finished (they do not count as progress since)

    def _settle(self, worker: Worker, unit: Unit, outcome: Any, queue: deque[Unit], retry: bool, blame: bool) -> bool:
        """Record (or retry, or fail) one call; returns whether a later call of this actor can still be blamed."""
        if unit in worker.running:
            worker.running.remove(unit)
        if isinstance(outcome, Died):
            if retry:
                why = f"worker {worker.name} died: {first_line(outcome.error)}"
                self._retry(unit, queue, why, blame and outcome.blame)
            # Stopping: the call stays unsettled, so its job ends as interrupted (--resume makes its images).
            return False
        if isinstance(outcome, BaseException):  # the call raised something other than an ImagegenError
            from imagegen_cli.local.runner import LocalError

            self._fail(unit, LocalError(f"worker {worker.name} failed on {unit.label}: {first_line(outcome)}"))
            return blame
        self.lost_since_progress = 0
        worker.made += len(outcome.images)
        self._record(unit, outcome)
        return blame

    def _check_version(self, worker: Worker, version: str) -> None:
        from imagegen_cli import __version__

        if version != __version__:
            self._say(
                f"worker {worker.name} runs imagegen {version or 'unknown'}, this driver {__version__}: "
                "install the same imagegen-cli on every node (records and pixels may differ)"
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
        if made.stopped and made.error is None and len(made.images) < len(unit.indices):
            return  # stopped part-way: left unsettled, so its job ends as interrupted
        self._done(unit)

    def _retry(self, unit: Unit, queue: deque[Unit], why: str, blamed: bool) -> None:
        self.channel.emit(CallDone(unit.job.work, unit.key))
        unit.tries += blamed
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
        self._say(f"{why}; {unit.label} sent to another worker", work=unit.job.work)
        queue.appendleft(unit)

    def _adopt_placed(self, unit: Unit) -> list[int]:
        """``--worker-writes``: the images of ``unit`` a dead worker placed are recorded; the rest are returned."""
        placing = self._placing(unit.job)
        if placing is None:
            return unit.indices
        from imagegen_cli.store.reader import find_job_images
        from imagegen_cli.store.saved_image import SavedImage

        # Files are no older than the call's first send (a minute's slack: another node's clock).
        since = unit.sent_at - 60
        found = find_job_images(placing.spec.directory, placing.job_id, set(unit.indices), since=since)
        for index, (path, meta) in sorted(found.items()):
            saved = SavedImage(str(path), index, meta.width or 0, meta.height or 0, image_format(path), seed=meta.seed)
            self.channel.emit(ImageReady(unit.job.work, index, meta.seed, meta, placed=saved))
        return [i for i in unit.indices if i not in found]

    def _lose(self, ray: Any, worker: Worker) -> None:
        """A worker is gone: retired, and replaced within the bound."""
        if not worker.lost:
            self._retire(ray, worker)
            self._replace()

    def _retire(self, ray: Any, worker: Worker) -> None:
        """A worker is gone (or unreachable: killed, so it cannot come back and finish a call made elsewhere)."""
        worker.lost = True
        kill(ray, worker)
        self._say_workers()

    def _replace(self) -> None:
        """One more actor for one lost, unless too many were lost since a call last came back, or the run stops."""
        self.lost_since_progress += 1
        if self.lost_since_progress <= self.sizing.count + MAX_TRIES and not self.channel.stop.requested:
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
    def _say(self, text: str, work: int | None = None) -> None:
        """A note now, on the given job or the latest one started (before any job starts: on the first)."""
        if work is None:
            running = [w for w in self.started if self.left.get(w, 0) > 0]
            work = running[-1] if running else (self.started[-1] if self.started else None)
        if work is None and self.first is not None:  # said now (a wait it explains), on the first job, started now
            self._start(self.first)
            work = self.first.work
        if work is None:
            self.notes.append(text)
        else:
            self.channel.emit(Note(work, text, now=True))

    def _say_workers(self) -> None:
        states = tuple((w.name, w.state, w.made) for w in self.workers)
        if states != self.shown:
            self.shown = states
            self.channel.emit(Workers(0, states))
