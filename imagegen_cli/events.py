"""What engines produce: a stream of typed events, recorded by one driver for every engine.

An engine (a local pipeline, a gateway, a fake in the tests, later a warm server or a Ray actor) makes images and
says what happens through ``emit(event)``; it never claims, writes, journals or prints. The driver
(``imagegen_cli.backends.driver``) turns each event into the journal row, the file, the progress bar and the result.

``emit`` returns once the driver has recorded the event: a ``TaskSubmitted`` is in the journal before the engine
goes on, and an ``ImageReady`` is saved (or its failure recorded) when ``await emit(...)`` returns. Synchronous
engines (local pipelines) get a plain function, asynchronous ones (gateways) an awaitable one.

Every event names its *work item* (``work``): the driver's handle for one job (one prompt line) of the run.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

from imagegen_cli.status import TaskState, task_resumable

if TYPE_CHECKING:
    from PIL import Image

    from imagegen_cli.errors import ImagegenError
    from imagegen_cli.meta import ImageMeta
    from imagegen_cli.store.saved_image import SavedImage

__all__ = [
    "AsyncEmit",
    "CallDone",
    "CallFailed",
    "CallSent",
    "Emit",
    "Event",
    "ImageReady",
    "JobFinished",
    "JobStarted",
    "Note",
    "Preview",
    "Progress",
    "StopToken",
    "SubmitSettled",
    "Submitting",
    "TaskRecord",
    "TaskSubmitted",
    "TaskUpdated",
    "Usage",
    "Workers",
]


@dataclass(frozen=True)
class Event:
    """Something an engine says about one work item."""

    work: int


@dataclass(frozen=True)
class JobStarted(Event):
    """The engine is about to send this job's first call (the driver journals the job first)."""


@dataclass(frozen=True)
class JobFinished(Event):
    """The engine is done with this job (``interrupted``: stopped by Ctrl-C/SIGTERM before the end)."""

    interrupted: bool = False


@dataclass(frozen=True)
class CallSent(Event):
    """A call went out (a gateway request, a pipeline call): the job really began; ``key`` names its progress."""

    key: str
    label: str
    total: int | None = None
    sends: bool = True  # False for work before any call (loading a model): the job has not begun yet
    shown: bool = True  # False: no progress row of its own (a cluster's calls are counted on its one line)


@dataclass(frozen=True)
class Progress(Event):
    """How far the call ``key`` is (steps, or percent for a task)."""

    key: str
    completed: int | None


@dataclass(frozen=True)
class CallDone(Event):
    """The call ``key`` is over (its images follow as ``ImageReady``)."""

    key: str


@dataclass(frozen=True)
class Note(Event):
    """Something the user should know; ``now``: say it at once (a retry), not only in the result."""

    text: str
    now: bool = False


@dataclass(frozen=True)
class TaskSubmitted(Event):
    """A gateway created a task: recorded (journalled) before the engine goes on."""

    task: TaskRecord


@dataclass(frozen=True)
class InputUploaded(Event):
    """An input image was uploaded to the gateway (apimart): journalled, so a resume reuses the URL while valid."""

    sha256: str
    url: str
    expires_at: float  # seconds since the epoch


@dataclass(frozen=True)
class Submitting(Event):
    """A task-creating call is about to go out: recorded as in flight first, so a stop while it is out is known."""

    call: int
    first_image: int
    count: int


@dataclass(frozen=True)
class SubmitSettled(Event):
    """The answer to call ``call`` arrived (its tasks, if any, follow as ``TaskSubmitted``): no longer in flight."""

    call: int


@dataclass(frozen=True)
class TaskUpdated(Event):
    """A task's state changed (``task`` carries it); ``expires_at``: when its image links expire."""

    task: TaskRecord
    expires_at: float | None = None


@dataclass(frozen=True)
class Usage(Event):
    """What a gateway says the call cost (token counts)."""

    usage: dict[str, Any]


@dataclass(frozen=True)
class Workers(Event):
    """Where a cluster's workers stand, said as it changes: each one's name, state ("starting", "line 3 image 1",
    "idle", "lost") and the images it has made."""

    states: tuple[tuple[str, str, int], ...]


@dataclass(frozen=True)
class CallFailed(Event):
    """A call (or a task, or one image) failed: the error goes on the job; the other images go on."""

    error: ImagegenError


@dataclass(frozen=True)
class Preview(Event):
    """An intermediate image of image ``index`` (optional: a cheap latent preview during the steps)."""

    index: int
    image: Image.Image


class _TaskRow(Protocol):
    """A journal row of a task (``store.job_rows.TaskRow``), as far as a record is read from it."""

    remote_id: str
    status: str
    call_index: int
    first_image: int
    count: int
    seed: int | None
    error: str | None


@dataclass
class TaskRecord:
    """A remote task of a job and where it stands."""

    remote_id: str
    state: TaskState
    call: int
    first_image: int = 1
    count: int = 1
    seed: int | None = None
    error: str | None = None

    @property
    def indices(self) -> range:
        return range(self.first_image, self.first_image + self.count)

    def resumable(self, saved: set[int]) -> bool:
        return task_resumable(self.state, self.indices, saved)

    @classmethod
    def from_row(cls, row: _TaskRow) -> TaskRecord:
        """The one journal row → record conversion."""
        state = TaskState(row.status)
        return cls(row.remote_id, state, row.call_index, row.first_image, row.count, row.seed, row.error)


Fetch = Callable[[IO[bytes]], Awaitable[None]]


@dataclass(frozen=True)
class ImageReady(Event):
    """Image ``index`` is made. Exactly one of ``pixels`` (decoded, from a pipeline), ``data`` (encoded bytes),
    ``fetch`` (streams the encoded bytes into a file the driver gives, once the driver has claimed the image) or
    ``placed`` (a file a cluster worker already wrote, record and all, on a filesystem the nodes share) is set.

    ``meta`` is what made it; the driver adds the job, the index and the file's own size when it writes it.
    """

    index: int
    seed: int | None
    meta: ImageMeta
    pixels: Image.Image | None = None
    data: bytes | None = None
    fetch: Fetch | None = None
    placed: SavedImage | None = None
    remote_id: str | None = None  # the gateway task it came from
    url: str | None = None
    revised_prompt: str | None = None
    patience: float = 0.0  # how long the driver may wait for another process saving the same image


Emit = Callable[[Event], None]
AsyncEmit = Callable[[Event], Awaitable[None]]


@dataclass
class StopToken:
    """Cancellation, owned by one run: the driver sets it on Ctrl-C/SIGTERM, an engine looks at it between steps."""

    event: threading.Event = field(default_factory=threading.Event)
    terminated: bool = False  # SIGTERM rather than Ctrl-C (exit 143, not 130)
    _subscribers: list[Callable[[], None]] = field(default_factory=list)

    def request(self, *, terminated: bool = False) -> None:
        """Ask the run to stop (from any thread, or a signal handler)."""
        self.terminated = self.terminated or terminated
        if self.event.is_set():
            return  # said once: a signal seen by both the handler and the watcher is one stop
        self.event.set()
        for callback in list(self._subscribers):
            callback()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when a stop is requested (an event loop cancels its main task); returns the undo."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    @property
    def requested(self) -> bool:
        return self.event.is_set()
