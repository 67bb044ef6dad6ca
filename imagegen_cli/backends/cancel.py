"""Cancel a journalled job: stop tracking it, and ask the provider to cancel its pending tasks where it can."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imagegen_cli.errors import ImagegenError
from imagegen_cli.status import TaskState

if TYPE_CHECKING:
    from imagegen_cli.providers.http import GatewayClient
    from imagegen_cli.providers.registry import ResolvedProvider
    from imagegen_cli.settings import Settings
    from imagegen_cli.store.journal import Job, Journal

CANCEL_TIMEOUT = 30.0  # a cancel is one short request per task; the config's timeout may bound it further


def cancel_job(journal: Journal, job: Job, settings: Settings, budget: float | None = None) -> list[str]:
    """Mark the job and its pending tasks cancelled; returns notes on what was asked of the provider.

    ``budget``: seconds left for asking the provider (what is left of ``tasks cancel``'s one overall bound); with
    none left, the job is still cancelled here and the note says the provider was not asked.
    """
    from imagegen_cli.providers.engine import journal_provider

    notes: list[str] = []
    pending = [t for t in job.tasks if t.status == TaskState.PENDING]
    if pending:
        try:
            # Only the provider is needed: a request today's catalog would refuse is still cancelled remotely.
            provider = journal_provider(job, settings)
        except ImagegenError as exc:
            # The provider is gone from the config (or unusable): the job is still cancelled here.
            notes.append(f"{job.provider} was not asked to cancel ({exc.message}); its task(s) may still finish")
        else:
            timeout = min(CANCEL_TIMEOUT, settings.timeout) if budget is None else budget
            if provider.profile.cancel_path and provider.key and timeout > 0.05:
                notes.extend(_cancel_remote(provider, [t.remote_id for t in pending], timeout))
            elif provider.profile.cancel_path and provider.key:
                notes.append(
                    f"{job.provider} was not asked to cancel (tasks cancel's time was spent on earlier jobs); "
                    "its task(s) may still finish"
                )
            else:
                notes.append(f"{job.provider} has no cancel API: its task(s) may still finish (and be billed) remotely")
    for task in pending:
        journal.update_task(job.id, task.remote_id, TaskState.CANCELLED, "cancelled by the user")
    journal.finish_job(job.id, "cancelled by the user", cancelled=True)
    return notes


def _cancel_remote(provider: ResolvedProvider, remote_ids: list[str], timeout: float) -> list[str]:
    from imagegen_cli.providers.http import run_once

    notes: list[str] = []
    cancel_path = provider.profile.cancel_path
    assert cancel_path is not None

    async def work(client: GatewayClient) -> None:
        for remote_id in remote_ids:
            try:
                await client.request_json("POST", provider.task_url(cancel_path, remote_id), body={})
                notes.append(f"asked {provider.name} to cancel {remote_id}")
            except ImagegenError as exc:
                notes.append(f"{provider.name} did not cancel {remote_id}: {exc.message}")

    try:
        run_once(provider, timeout, work, timed_out=f"no answer to the cancel request within {timeout:g} s")
    except ImagegenError as exc:
        # A stalled gateway: the job is still cancelled here, but the remote side may not know.
        notes.append(f"{exc.message}; its task(s) may still finish (and be billed) remotely")
    return notes
