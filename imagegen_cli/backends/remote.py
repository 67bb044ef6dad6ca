"""The remote backend: gateways in both dialects (a synchronous images API, or tasks to poll).

``plan`` maps a line onto a provider (``providers.planning``); ``run`` sends the planned calls of
every job concurrently (one HTTP client, a bound on calls in flight and a throttle per provider),
polls tasks, and saves each image through :class:`saving.JobRecorder`. Each job has its own
``--timeout`` deadline, with a short backstop over it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING

from imagegen_cli.backends import LinePlan, PlannedJob, RunContext
from imagegen_cli.errors import ConfigError, UsageError
from imagegen_cli.signals import StopSignal

if TYPE_CHECKING:
    from imagegen_cli.backends import ModelRef
    from imagegen_cli.backends.remote_run import SharedTransport
    from imagegen_cli.options import GenerateOptions, PromptLine
    from imagegen_cli.providers.planning import Plan, PlannedCall
    from imagegen_cli.providers.registry import ResolvedProvider
    from imagegen_cli.settings import Settings
    from imagegen_cli.store.journal import Job

PROVIDER_CONCURRENCY = {"apimart": 8}  # task gateways mostly wait: more tasks in flight cost nothing
DEFAULT_CONCURRENCY = 4


def _remote_plan(plan: LinePlan) -> Plan:
    from imagegen_cli.providers.planning import Plan

    assert isinstance(plan, Plan)
    return plan


class RemoteBackend:
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

    def journal_plan(self, job: Job, settings: Settings) -> Plan:
        from imagegen_cli.providers.planning import build_plan
        from imagegen_cli.request import GenerationRequest

        provider = journal_provider(job, settings)
        request = replace(GenerationRequest.from_dict(job.request), strict=False)
        return build_plan(request, provider)

    def run(self, jobs: list[PlannedJob], context: RunContext) -> None:
        from imagegen_cli.providers.throttle import ProviderThrottle

        for job in jobs:
            _remote_plan(job.plan).provider.require_key()
        names = {job.plan.provider_name for job in jobs}

        def bound(provider: str) -> int:
            configured = context.concurrency or context.settings.concurrency
            return configured or PROVIDER_CONCURRENCY.get(provider, DEFAULT_CONCURRENCY)

        async def main() -> None:
            from imagegen_cli.backends.remote_run import SharedTransport
            from imagegen_cli.providers.http import make_async_client

            # One bound across the batch when --concurrency is given, else one per provider.
            shared_limit = asyncio.Semaphore(context.concurrency) if context.concurrency else None
            limiters = {name: shared_limit or asyncio.Semaphore(bound(name)) for name in names}
            throttles = {name: ProviderThrottle(bound(name), name) for name in names}
            queue: asyncio.Queue[PlannedJob] = asyncio.Queue()
            for job in jobs:
                queue.put_nowait(job)
            loop, main_task = asyncio.get_running_loop(), asyncio.current_task()
            assert main_task is not None

            def stop() -> None:
                loop.call_soon_threadsafe(main_task.cancel)

            StopSignal.hook = stop
            # Twice the call slots: while one line's images are decoded and written, another line's call is out.
            workers = 2 * (context.concurrency or sum(bound(name) for name in names))
            async with make_async_client() as http:

                async def worker() -> None:
                    while not queue.empty():
                        job = queue.get_nowait()
                        name = job.plan.provider_name
                        await _run_job(job, context, SharedTransport(http, limiters[name], throttles[name]))

                await asyncio.gather(*(worker() for _ in range(max(1, min(workers, len(jobs))))))

        try:
            asyncio.run(main())
        except (KeyboardInterrupt, asyncio.CancelledError):
            # Every job was cancelled in order (files being placed were finished and recorded). Ctrl-C arrives
            # as KeyboardInterrupt, SIGTERM (through StopSignal.hook) as the main task's cancellation; either
            # way run_jobs says, for each started job, how far it got.
            raise KeyboardInterrupt from None
        finally:
            StopSignal.hook = None


def journal_provider(job: Job, settings: Settings) -> ResolvedProvider:
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


async def _run_job(job: PlannedJob, context: RunContext, shared: SharedTransport) -> None:
    from imagegen_cli.backends.remote_run import RemoteJobRunner
    from imagegen_cli.saving import as_job_error, begin_job, end_job

    writer = begin_job(job, context)
    runner = RemoteJobRunner(job, context, shared, writer)
    try:
        await runner.run()
    except TimeoutError:  # the backstop (runner.run) fired: nothing outlives --timeout by more than a moment
        runner.timed_out()
    except asyncio.CancelledError:
        job.result.interrupted = True
        raise
    except Exception as exc:  # noqa: BLE001 - one line's failure never stops the batch
        job.result.errors.append(as_job_error(exc, f"{job.plan.provider_name} call"))
    finally:
        runner.say_pending()
        end_job(job, context)
