"""The backend interface: plan a prompt line, describe the plan (``--dry-run``), run planned jobs.

Remote gateways and local pipelines are two implementations of :class:`Backend`, chosen once from
the model reference by :func:`backend_for`. The batch runner, the Python API and the CLI know only
this interface; a new engine (a warm server, a cluster) is one more implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from imagegen_cli.errors import UsageError

if TYPE_CHECKING:
    from imagegen_cli.options import GenerateOptions, PromptLine
    from imagegen_cli.providers.profiles import ProviderProfile
    from imagegen_cli.request import GenerationRequest
    from imagegen_cli.result import JobResult, ProgressSink, TaskRecord
    from imagegen_cli.settings import Settings
    from imagegen_cli.store.journal import Job, Journal, JournalEntry
    from imagegen_cli.store.writer import OutputSpec

LOCAL = "local"


@dataclass(frozen=True)
class ModelRef:
    """A resolved ``[PROVIDER:]MODEL``: the provider, and the model (``None``: the provider's default)."""

    provider: str
    model: str | None

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}" if self.model else self.provider


def resolve_model_ref(
    model: str | None, provider: str | None, settings: Settings, profiles: dict[str, ProviderProfile]
) -> ModelRef:
    """``-m``/``--provider``/``IMAGEGEN_MODEL``/``default_model`` → one :class:`ModelRef`."""
    from imagegen_cli.local.catalog import LOCAL_MODELS

    names = {*profiles, LOCAL}
    if model is None and provider is None:
        model = settings.default_model
    if model is None:
        assert provider is not None
        return ModelRef(_known_provider(provider, names), None)
    prefix, sep, rest = model.partition(":")
    if sep and prefix in names:
        if provider and provider != prefix:
            raise UsageError(
                f"--provider {provider} conflicts with model {model!r}",
                hint=f"drop --provider, or write -m {provider}:{rest}",
            )
        return ModelRef(prefix, rest or None)
    if provider:
        return ModelRef(_known_provider(provider, names), model)
    owners = sorted(name for name, profile in profiles.items() if profile.builtin and model in profile.models)
    if model in LOCAL_MODELS:
        owners.append(LOCAL)
    if len(owners) == 1:
        return ModelRef(owners[0], model)
    if owners:
        raise UsageError(
            f"model {model!r} is offered by several providers: {', '.join(owners)}",
            hint=f"name one, e.g. -m {owners[0]}:{model}",
        )
    if sep and prefix and "/" not in prefix and not prefix.startswith((".", "~")):
        # "foo:bar" with an unknown foo: the user meant a provider, not a model called "foo:bar".
        raise UsageError(f"unknown provider {prefix!r}", hint="known providers: " + ", ".join(sorted(names)))
    raise UsageError(
        f"unknown model {model!r} and no provider given",
        hint="prefix it with a provider (" + ", ".join(sorted(names)) + "), e.g. -m openai:" + model,
    )


def _known_provider(name: str, names: set[str]) -> str:
    if name not in names:
        raise UsageError(f"unknown provider {name!r}", hint="known providers: " + ", ".join(sorted(names)))
    return name


class LinePlan(Protocol):
    """A backend's plan of one prompt line: validated, with the exact calls it will make."""

    @property
    def request(self) -> GenerationRequest: ...
    @property
    def notes(self) -> tuple[str, ...]: ...
    @property
    def provider_name(self) -> str: ...
    @property
    def model_name(self) -> str: ...
    def describe(self) -> dict[str, Any]: ...
    def journal_entry(self) -> JournalEntry: ...


@dataclass
class PlannedJob:
    """One prompt line, planned and ready to run, with the result it fills in."""

    line: PromptLine
    options: GenerateOptions
    backend: Backend
    plan: LinePlan
    result: JobResult
    spec: OutputSpec | None = None  # built just before running: a dry run creates no directory
    key: str = ""  # identity of the line for --resume
    previous: Job | None = None  # the journalled job of an earlier run (--resume, tasks wait)
    todo: LinePlan | None = None  # what is left to generate: the plan, or (resuming) only the missing images
    resume_tasks: list[TaskRecord] = field(default_factory=list)  # remote tasks to poll again before that

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


class Backend(Protocol):
    """An engine: plans lines, describes plans for ``--dry-run``, and runs planned jobs."""

    name: str

    def plan(self, line: PromptLine, options: GenerateOptions, ref: ModelRef, settings: Settings) -> LinePlan:
        """Validate one line against the model and lay out its calls; raises UsageError, sends nothing."""
        ...

    def run(self, jobs: list[PlannedJob], context: RunContext) -> None:
        """Run the jobs (each job's result is filled in as images land); never raises for one job's failure."""
        ...

    def narrow(self, plan: LinePlan, indices: list[int]) -> LinePlan:
        """The same plan, making only images ``indices`` (1-based; each keeps its own seed)."""
        ...

    def journal_plan(self, job: Job, settings: Settings) -> LinePlan:
        """Rebuild the plan of a journalled job (``tasks wait``, ``--resume``) as it was sent."""
        ...


def backend_for(ref: ModelRef) -> Backend:
    """The backend of a model reference: chosen here, once."""
    if ref.provider == LOCAL:
        from imagegen_cli.backends.local import LocalBackend

        return LocalBackend()
    from imagegen_cli.backends.remote import RemoteBackend

    return RemoteBackend()
