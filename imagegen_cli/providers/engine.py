"""The gateway engine: plan lines for a provider, send their calls, poll their tasks, hand over every image.

It runs the jobs of a run concurrently (one HTTP client, a bound on calls in flight and a throttle per provider),
each within its own ``--timeout`` (or one deadline shared by all, for ``tasks wait``). It never writes a file or
a journal row and never prints: every call, task, note and image is an event (``imagegen_cli.events``) that the
driver records. A URL image is an ``ImageReady`` whose ``fetch`` streams the download into the file the driver
gives it once the image is claimed, so an image saved by another process is never downloaded again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from imagegen_cli.errors import (
    ConfigError,
    UsageError,
)

if TYPE_CHECKING:
    from imagegen_cli.engines import Channel, EngineJob, ModelRef
    from imagegen_cli.options import GenerateOptions, PromptLine
    from imagegen_cli.plans import JournalledJob, LinePlan
    from imagegen_cli.providers.planning import Plan, PlannedCall
    from imagegen_cli.providers.registry import ResolvedProvider
    from imagegen_cli.settings import Settings

PROVIDER_CONCURRENCY = {"apimart": 8}  # task gateways mostly wait: more tasks in flight cost nothing
DEFAULT_CONCURRENCY = 4
GRACE_SECONDS = 2.0  # the backstop over the per-request deadlines
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024


def _remote_plan(plan: LinePlan) -> Plan:
    from imagegen_cli.providers.planning import Plan

    assert isinstance(plan, Plan)
    return plan


class RemoteEngine:
    """Gateways: OpenAI-style images APIs and task-style APIs."""

    name = "remote"

    def plan(self, line: PromptLine, options: GenerateOptions, ref: ModelRef, settings: Settings) -> Plan:
        from imagegen_cli.providers.planning import build_plan
        from imagegen_cli.providers.registry import resolve_provider

        provider = resolve_provider(settings.profiles(), ref.provider, ref.model, options.run.base_url)
        request = options.request.to_request(line.prompt, provider.name, provider.model, options.run.base_url)
        plan = build_plan(request, provider, output_format=options.output.format or settings.format)
        notes = list(plan.notes)
        for flag in options.local_flags_given:
            if request.strict:
                raise UsageError(f"{flag} dropped: local only", hint=f"remove {flag}, or drop --strict")
            notes.append(f"{flag} dropped: local only (not used by {provider.name})")
        if options.run.no_wait and not provider.profile.is_async:
            notes.append(f"--no-wait dropped: {provider.name} answers synchronously")
        provider.check_transport()
        return replace(plan, notes=tuple(notes))

    def narrow(self, plan: LinePlan, indices: list[int]) -> Plan:
        """Calls for just ``indices``: one plan per contiguous run, so image i keeps seed+i-1."""
        from imagegen_cli.providers.planning import build_plan

        full = _remote_plan(plan)
        calls: list[PlannedCall] = []
        for first, count in _runs(indices):
            part = build_plan(
                replace(full.request, n=count), full.provider, output_format=full.output_format, first_image=first
            )
            calls.extend(replace(call, index=len(calls) + k) for k, call in enumerate(part.calls))
        return replace(full, calls=tuple(calls))

    def journal_plan(self, job: JournalledJob, settings: Settings) -> Plan:
        from imagegen_cli.providers.planning import build_plan
        from imagegen_cli.request import GenerationRequest

        provider = journal_provider(job, settings)
        provider.require_key()  # one job's missing key is that job's error, beside the others of `tasks wait`
        request = replace(GenerationRequest.from_dict(job.request), strict=False)
        # Only the job's tasks are polled again (nothing is submitted): its inputs need not be read (or exist) now;
        # the request keeps them, for the records of the images.
        bare = replace(request, images=(), mask=None, strength=None, input_fidelity=None)
        return replace(build_plan(bare, provider), request=request)

    def execute(self, jobs: list[EngineJob], channel: Channel) -> None:
        """Run every job concurrently; Ctrl-C (or the run's stop) cancels them all in order."""
        import asyncio

        from imagegen_cli.providers.job_run import RemoteJob, SharedTransport
        from imagegen_cli.providers.throttle import ProviderThrottle

        for job in jobs:
            _remote_plan(job.full).provider.require_key()
        names = {job.full.provider_name for job in jobs}

        def bound(provider: str) -> int:
            configured = channel.concurrency or channel.settings.concurrency
            return configured or PROVIDER_CONCURRENCY.get(provider, DEFAULT_CONCURRENCY)

        async def main() -> None:
            from imagegen_cli.providers.http import Deadline, make_async_client

            # One bound across the batch when --concurrency is given, else one per provider.
            shared_limit = asyncio.Semaphore(channel.concurrency) if channel.concurrency else None
            limiters = {name: shared_limit or asyncio.Semaphore(bound(name)) for name in names}
            throttles = {name: ProviderThrottle(bound(name), name) for name in names}
            task_ids: dict[str, set[str]] = {name: set() for name in names}
            queue: asyncio.Queue[EngineJob] = asyncio.Queue()
            for job in jobs:
                queue.put_nowait(job)
            loop, main_task = asyncio.get_running_loop(), asyncio.current_task()
            assert main_task is not None

            def cancel() -> None:
                loop.call_soon_threadsafe(main_task.cancel)

            unsubscribe = channel.stop.subscribe(cancel)
            # ``tasks wait``: one deadline for every job, started now; else each job's starts with its first slot.
            shared = Deadline(channel.timeout) if channel.shared_deadline else None
            # Twice the call slots: while one line's images are decoded and written, another line's call is out.
            workers = 2 * (channel.concurrency or sum(bound(name) for name in names))
            try:
                async with make_async_client() as http:

                    async def worker() -> None:
                        while not queue.empty():
                            job = queue.get_nowait()
                            name = job.full.provider_name
                            transport = SharedTransport(http, limiters[name], throttles[name], task_ids[name])
                            await RemoteJob(job, channel, transport, shared).run()

                    await asyncio.gather(*(worker() for _ in range(max(1, min(workers, len(jobs))))))
            finally:
                unsubscribe()

        try:
            asyncio.run(main())
        except (KeyboardInterrupt, asyncio.CancelledError):
            # Every job was cancelled in order (files being placed were finished and recorded). Ctrl-C arrives as
            # KeyboardInterrupt, the run's stop (SIGTERM) as the main task's cancellation.
            raise KeyboardInterrupt from None


def journal_provider(job: JournalledJob, settings: Settings) -> ResolvedProvider:
    """The provider of a journalled job as configured today: still there, and safe to send its key to."""
    from imagegen_cli.providers.registry import resolve_provider

    profiles = settings.profiles()
    if job.provider not in profiles:
        raise ConfigError(
            f"provider {job.provider!r} of job {job.id} is no longer configured",
            hint=f"add [providers.{job.provider}] back to the config file",
        )
    provider = resolve_provider(profiles, job.provider, job.model, job.base_url)
    provider.check_transport()
    return provider


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 5, 7, 8] → [(1, 3), (5, 1), (7, 2)]: (first, count) of each contiguous run."""
    runs: list[tuple[int, int]] = []
    for index in sorted(indices):
        if runs and runs[-1][0] + runs[-1][1] == index:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((index, 1))
    return runs
