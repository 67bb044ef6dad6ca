"""Engines and their registry: what an engine is, what it is given, and how one is chosen for a model.

An engine plans prompt lines for its models and makes their images, saying everything it does as events
(``imagegen_cli.events``) on the :class:`Channel` the driver gives it; it never writes a file or a journal row and
never prints. Engines are registered by name (:func:`register_engine`) and chosen from the model reference and the
settings (:func:`engine_for`): ``local:...`` runs the in-process diffusers engine, every gateway the remote engine,
and a provider may be served by another registered engine (a warm-server client, a cluster, a fake in the tests).
The registry names engines by import path, so choosing one imports only that engine.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from imagegen_cli.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from imagegen_cli.events import Event, ImageReady, StopToken, TaskRecord
    from imagegen_cli.options import GenerateOptions, PromptLine
    from imagegen_cli.plans import JournalledJob, LinePlan
    from imagegen_cli.providers.profiles import ProviderProfile
    from imagegen_cli.settings import Settings
    from imagegen_cli.store.output_spec import OutputSpec

__all__ = [
    "LOCAL",
    "Channel",
    "Engine",
    "EngineJob",
    "ModelRef",
    "engine_for",
    "register_engine",
    "resolve_model_ref",
]

LOCAL = "local"


@dataclass(frozen=True)
class ModelRef:
    """A resolved ``[PROVIDER:]MODEL``: the provider, and the model (``None``: the provider's default)."""

    provider: str
    model: str | None

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}" if self.model else self.provider


@dataclass
class EngineJob:
    """One job as an engine sees it: what to make, what to poll again, and the driver's handle (``work``)."""

    work: int
    full: LinePlan  # the line's whole plan (what every image's record says)
    plan: LinePlan | None  # what is left to make: the plan, only the missing images (resuming), or nothing
    resume_tasks: list[TaskRecord] = field(default_factory=list)  # remote tasks to poll again first
    no_wait: bool = False
    resume_hint: str | None = None  # how the user finishes this job later (said with a timeout)
    uploads: dict[str, tuple[str, float]] = field(default_factory=dict)  # inputs uploaded before: SHA-256 → URL, expiry
    line: int | None = None  # its line of the prompt file (None: a single prompt)
    job_id: str | None = None  # the journal's id of the job, once its JobStarted is recorded
    spec: OutputSpec | None = None  # where its images go (an engine whose workers write the files reads it)


class Channel(Protocol):
    """What the driver gives an engine for one run: where events go, the run's stop and bounds."""

    @property
    def settings(self) -> Settings: ...
    @property
    def stop(self) -> StopToken: ...
    @property
    def timeout(self) -> float: ...
    @property
    def concurrency(self) -> int | None: ...
    @property
    def shared_deadline(self) -> bool:
        """One --timeout for every job of the run (``tasks wait``), not one per job."""
        ...

    def emit(self, event: Event) -> None:
        """Record one event; returns once it is recorded (an ``ImageReady`` with ``pixels`` or ``data``: saved)."""
        ...

    async def emit_image(self, event: ImageReady) -> bool:
        """Claim, fetch (``event.fetch``) and save one image; True once it is saved (by this run or another)."""
        ...


class Engine(Protocol):
    """An engine: plans lines, describes plans for ``--dry-run``, makes images as events."""

    name: str

    def plan(self, line: PromptLine, options: GenerateOptions, ref: ModelRef, settings: Settings) -> LinePlan:
        """Validate one line against the model and lay out its calls; raises UsageError, sends nothing."""
        ...

    def narrow(self, plan: LinePlan, indices: list[int]) -> LinePlan:
        """The same plan, making only images ``indices`` (1-based; each keeps its own seed)."""
        ...

    def journal_plan(self, job: JournalledJob, settings: Settings) -> LinePlan:
        """Rebuild the plan of a journalled job (``tasks wait``, ``--resume``) as it was sent."""
        ...

    def execute(self, jobs: list[EngineJob], channel: Channel) -> None:
        """Make every job's images, emitting events; one job's failure is an event, never an exception.

        Raises KeyboardInterrupt when the run was stopped (Ctrl-C, SIGTERM, ``channel.stop``).
        """
        ...


_FACTORIES: dict[str, str | Callable[[], Engine]] = {
    "local": "imagegen_cli.local.engine:LocalBackend",
    "remote": "imagegen_cli.providers.engine:RemoteEngine",
    "ray": "imagegen_cli.cluster.engine:RayBackend",  # --engine ray: local models on a Ray cluster's actors
}
_PROVIDERS: dict[str, str] = {LOCAL: "local"}  # providers served by an engine other than "remote"
_INSTANCES: dict[str, Engine] = {}  # one long-lived object per engine: a local engine keeps its model loaded


def register_engine(name: str, factory: str | Callable[[], Engine], *, providers: tuple[str, ...] = ()) -> None:
    """Make engine ``name`` available (``factory``: a callable, or ``"module:attribute"`` imported when chosen);
    ``providers`` are served by it (``-m PROVIDER:MODEL`` runs on it unless the settings say otherwise)."""
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)
    for provider in providers:
        _PROVIDERS[provider] = name


def unregister_engine(name: str) -> None:
    """Forget engine ``name`` and the providers it served (tests)."""
    _FACTORIES.pop(name, None)
    _INSTANCES.pop(name, None)
    for provider in [p for p, engine in _PROVIDERS.items() if engine == name]:
        del _PROVIDERS[provider]


def engine_providers() -> set[str]:
    """Providers that exist because an engine serves them (``local``, and those of registered engines)."""
    return set(_PROVIDERS)


def engine_for(ref: ModelRef, settings: Settings | None = None, chosen: str | None = None) -> Engine:
    """The engine of a model reference: ``chosen`` (``--engine``, local models only), the settings' ``engines``
    table, then the registry's default."""
    if chosen is not None and ref.provider != LOCAL:
        raise UsageError(
            f"--engine {chosen} runs local models; {ref} is a remote gateway",
            hint="drop --engine, or use -m local:MODEL",
        )
    configured = settings.engines.get(ref.provider) if settings is not None else None
    name = chosen or configured or _PROVIDERS.get(ref.provider, "remote")
    engine = _INSTANCES.get(name)
    if engine is not None:
        return engine
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ConfigError(
            f"no engine {name!r} for provider {ref.provider!r}",
            hint="engines: " + ", ".join(sorted(_FACTORIES)) + " (the config file's [engines] table chooses)",
        )
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        factory = getattr(importlib.import_module(module), attribute)
    engine = _INSTANCES[name] = factory()
    return engine


def resolve_model_ref(
    model: str | None, provider: str | None, settings: Settings, profiles: dict[str, ProviderProfile]
) -> ModelRef:
    """``-m``/``--provider``/``IMAGEGEN_MODEL``/``default_model`` → one :class:`ModelRef`."""
    from imagegen_cli.local.catalog import LOCAL_MODELS

    names = {*profiles, *engine_providers()}
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
