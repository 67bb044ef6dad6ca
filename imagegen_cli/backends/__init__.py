"""The driver's types: a planned job and what every job of a run shares.

Engines (``imagegen_cli.engines``: the registry, the protocol) plan lines and make images; the driver
(``backends.driver``, ``saving``) runs them and records what they emit. The batch runner, the Python API and the
CLI know only these types and the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagegen_cli.engines import LOCAL, Engine, ModelRef, engine_for, resolve_model_ref
from imagegen_cli.events import StopToken
from imagegen_cli.plans import LinePlan

if TYPE_CHECKING:
    from imagegen_cli.events import TaskRecord
    from imagegen_cli.options import GenerateOptions, PromptLine
    from imagegen_cli.result import JobResult, ProgressSink
    from imagegen_cli.settings import Settings
    from imagegen_cli.store.journal import Job, Journal
    from imagegen_cli.store.writer import OutputSpec

__all__ = ["LOCAL", "Engine", "LinePlan", "ModelRef", "PlannedJob", "RunContext", "engine_for", "resolve_model_ref"]


@dataclass
class PlannedJob:
    """One prompt line, planned and ready to run, with the result it fills in."""

    line: PromptLine
    options: GenerateOptions
    engine: Engine
    plan: LinePlan
    result: JobResult
    spec: OutputSpec | None = None  # built just before running: a dry run creates no directory
    key: str = ""  # identity of the line for --resume
    previous: Job | None = None  # the journalled job of an earlier run (--resume, tasks wait)
    todo: LinePlan | None = None  # what is left to generate: the plan, or (resuming) only the missing images
    resume_tasks: list[TaskRecord] = field(default_factory=list)  # remote tasks to poll again before that
    uploads: dict[str, tuple[str, float]] = field(default_factory=dict)  # the earlier run's uploaded inputs

    def __post_init__(self) -> None:
        if self.todo is None and self.previous is None:
            self.todo = self.plan


@dataclass
class RunContext:
    """What every job of a run shares."""

    settings: Settings
    journal: Journal
    sink: ProgressSink
    timeout: float
    concurrency: int | None = None
    stop: StopToken = field(default_factory=StopToken)
    shared_deadline: bool = False  # one --timeout for the whole run (tasks wait), not one per job
