"""The one status vocabulary of jobs and remote tasks, and the one rule that derives a job's status.

Used by the journal, ``tasks list``, every ``--json`` document, the batch summary and the exit code;
nothing else decides what state a job is in. Only the standard library: the journal imports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job stands. The same words in the journal, ``tasks list``, and every ``--json`` document."""

    QUEUED = "queued"  # journalled, nothing sent yet
    SUBMITTED = "submitted"  # remote tasks are pending, no image saved yet
    RUNNING = "running"  # some images saved, remote tasks still pending
    SUCCEEDED = "succeeded"  # every image saved
    PARTIAL = "partial"  # some images saved, the rest failed
    FAILED = "failed"  # nothing saved, nothing pending
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # the gateway's result links expired before they were fetched


OPEN_STATUSES = (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING)


class TaskState(StrEnum):
    """A remote task's state, as the dialect parsers report it."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"  # done remotely; its images may still be waiting to be fetched
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    # A task-creating call whose answer never arrived (the run was stopped while it was out): the gateway may have
    # created (and billed) a task whose id imagegen never learned. Never resumable; said precisely.
    SUBMITTING = "submitting"


RESUMABLE_TASK_STATES = (TaskState.PENDING, TaskState.SUCCEEDED)


def task_resumable(state: str, indices: range, saved: set[int]) -> bool:
    """Whether ``tasks wait`` can still finish a task: pending, or done remotely with images not saved yet."""
    return state in RESUMABLE_TASK_STATES and not set(indices) <= saved


def job_status(
    *,
    requested: int,
    saved: int,
    resumable: bool,
    cancelled: bool = False,
    expired: bool = False,
) -> JobStatus:
    """The rule, once a run is over. ``resumable``: some task is :func:`task_resumable`."""
    if saved >= requested:
        return JobStatus.SUCCEEDED
    if resumable:
        return JobStatus.RUNNING if saved else JobStatus.SUBMITTED
    if cancelled and not saved:
        return JobStatus.CANCELLED
    if expired and not saved:
        return JobStatus.EXPIRED
    return JobStatus.PARTIAL if saved else JobStatus.FAILED


def job_status_of(
    requested: int, saved: set[int], tasks: Iterable[tuple[str, range]], *, cancelled: bool = False
) -> JobStatus:
    """:func:`job_status` of one job from its saved image indices and its tasks' (state, image indices).

    ``cancelled``: the user cancelled the job (``tasks cancel``), whether or not it had tasks to cancel.
    """
    states = list(tasks)
    return job_status(
        requested=requested,
        saved=len(saved),
        resumable=any(task_resumable(state, indices, saved) for state, indices in states),
        cancelled=cancelled or any(state == TaskState.CANCELLED for state, _ in states),
        expired=any(state == TaskState.EXPIRED for state, _ in states),
    )


def in_flight_message(provider: str, first_image: int, count: int) -> str:
    """What is unknown about a task-creating call that was out when its run stopped (said by tasks wait, --resume)."""
    images = f"image {first_image}" if count == 1 else f"images {first_image}-{first_image + count - 1}"
    return (
        f"the call for {images} was out when the run stopped and its answer never arrived: {provider} may have "
        "created (and billed) a task whose id imagegen never learned"
    )
