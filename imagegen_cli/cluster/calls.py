"""What the driver of ``--engine ray`` knows of each pipeline call and each actor, and how it reads what a call
ended with (Ray's many errors sorted into: made, the call's own error, or its actor gone)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imagegen_cli.engines import EngineJob
    from imagegen_cli.local.planning import LocalPlan


@dataclass(eq=False)
class Unit:
    """One pipeline call of one job: its plan holds just that call's images."""

    job: EngineJob
    plan: LocalPlan
    tries: int = 0  # deaths of the actor while this call was the one running
    sent_at: float = 0.0  # wall-clock time it was first sent (files it placed are no older)

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


@dataclass(eq=False)
class Worker:
    """One actor as the driver sees it."""

    name: str
    handle: Any
    running: list[Unit] = field(default_factory=list)  # in the order sent: the first is the one running
    ready: bool = False  # it answered identity(): started on a node, imagegen imported
    lost: bool = False
    made: int = 0  # images it returned

    @property
    def state(self) -> str:
        if self.lost:
            return "lost"
        if not self.ready:
            return "starting"
        return self.running[0].label if self.running else "idle"


@dataclass(frozen=True)
class Died:
    """A call's outcome when its actor (or the node holding its result) is gone."""

    error: BaseException
    blame: bool = True  # the death may be the call's doing (out of memory): it counts against the call


def call_outcome(ray: Any, ref: Any, *, wait: bool = True) -> Any:
    """What a call returned (a ``Made``), the exception its own code raised, or ``Died`` for everything else Ray
    says (the actor died, was killed out of memory, its node or its result's node was lost)."""
    try:
        return ray.get(ref) if wait else ray.get(ref, timeout=0)
    except ray.exceptions.RayTaskError as exc:  # the call's own code raised (not an ImagegenError: a bug)
        return exc
    except (ray.exceptions.GetTimeoutError, ray.exceptions.ObjectLostError) as exc:
        return Died(exc, blame=False)  # not back from a killed actor; a finished result lost with its node
    except ray.exceptions.RayError as exc:
        return Died(exc, blame=not getattr(exc, "preempted", False))  # a preempted node is nobody's doing


def kill(ray: Any, worker: Worker) -> None:
    # Already gone, or its node unreachable: nothing is left to stop.
    with contextlib.suppress(Exception):
        ray.kill(worker.handle, no_restart=True)


def image_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return "jpeg" if suffix == "jpg" else suffix
