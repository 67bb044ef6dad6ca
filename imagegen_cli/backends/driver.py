"""The driver: hands planned jobs to their engine and records every event it emits, for every engine alike.

One :class:`JobRecorder` per job claims, writes, journals and reports; the engine only makes images. The run owns
its stop (:class:`~imagegen_cli.events.StopToken`): Ctrl-C or SIGTERM set it, an async engine's event loop cancels
its work on it, and a synchronous engine (a local pipeline, stuck in one long torch operation) is guarded by
:class:`~imagegen_cli.backends.interrupts.SignalGuard`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagegen_cli.engines import EngineJob
from imagegen_cli.events import ImageReady, JobFinished, JobStarted, StopToken, Workers
from imagegen_cli.saving import JobRecorder, begin_job, end_job

if TYPE_CHECKING:
    from imagegen_cli.backends import PlannedJob, RunContext
    from imagegen_cli.engines import Engine
    from imagegen_cli.events import Event
    from imagegen_cli.settings import Settings


@dataclass
class DriverChannel:
    """The :class:`~imagegen_cli.engines.Channel` of one run of one engine: events go to the jobs' recorders."""

    context: RunContext
    jobs: dict[int, PlannedJob]
    stop: StopToken
    items: dict[int, EngineJob] = field(default_factory=dict)
    recorders: dict[int, JobRecorder] = field(default_factory=dict)
    shared_deadline: bool = False

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def timeout(self) -> float:
        return self.context.timeout

    @property
    def concurrency(self) -> int | None:
        return self.context.concurrency

    def emit(self, event: Event) -> None:
        if isinstance(event, Workers):
            said = getattr(self.context.sink, "workers", None)  # a sink that shows a cluster's line
            if said is not None:
                said(event.states)
            return
        job = self.jobs[event.work]
        if isinstance(event, JobStarted):
            writer = begin_job(job, self.context)
            label = f"line {job.line.number}: " if job.line.number is not None else ""
            recorder = JobRecorder(job.result, self.context.journal, self.context.sink, writer, label)
            writer.on_target = recorder.record_target
            self.recorders[event.work] = recorder
            item = self.items.get(event.work)
            if item is not None and job.result.job_id:
                item.resume_hint = job.result.resume_hint()  # the job id exists from now on
                item.job_id = job.result.job_id
            return
        recorder = self.recorders[event.work]
        if isinstance(event, JobFinished):
            for key in list(recorder.keys):  # a bar left open by an interrupted call
                self.context.sink.finish(f"{event.work}:{key}")
            if event.interrupted:
                job.result.interrupted = True
            end_job(job, self.context)
            return
        recorder.handle(event, key_prefix=f"{event.work}:")

    async def emit_image(self, event: ImageReady) -> bool:
        return await self.recorders[event.work].deliver(event)


def engine_jobs(jobs: list[PlannedJob], first: int = 0) -> list[EngineJob]:
    """What the engine is told of each job (numbered ``first``, ``first + 1``...)."""
    return [
        EngineJob(
            first + number,
            job.plan,
            job.todo,
            list(job.resume_tasks),
            job.result.no_wait,
            resume_hint=job.result.resume_hint(),
            uploads=dict(job.uploads),
            line=job.line.number,
            spec=job.spec,
        )
        for number, job in enumerate(jobs)
    ]


def run_engine(engine: Engine, jobs: list[PlannedJob], context: RunContext) -> None:
    """Run ``jobs`` on ``engine``; raises KeyboardInterrupt when the run was stopped (what was saved is recorded)."""
    from imagegen_cli.backends.interrupts import SignalGuard
    from imagegen_cli.signals import active_stop

    work = engine_jobs(jobs)
    channel = DriverChannel(
        context,
        {item.work: job for item, job in zip(work, jobs, strict=True)},
        context.stop,
        items={item.work: item for item in work},
    )
    channel.shared_deadline = context.shared_deadline
    # Ctrl-C and SIGTERM while a synchronous engine holds the main thread: the first stops between steps, a second
    # (or a SIGTERM the main thread cannot handle at once) ends the process, keeping what is saved.
    with active_stop(context.stop), SignalGuard(context.stop, say=context.sink.note):
        try:
            engine.execute(work, channel)
        except BaseException as exc:
            # An async engine's cancelled run is a stopped run. (No asyncio imported: none could be cancelled; a
            # run on a warm server, or in-process, never imports it.)
            asyncio = sys.modules.get("asyncio")
            if asyncio is not None and isinstance(exc, asyncio.CancelledError):
                raise KeyboardInterrupt from None
            raise
