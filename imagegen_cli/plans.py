"""What a planned line is, for every engine: the ``LinePlan`` protocol and what the journal keeps of a plan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from imagegen_cli.request import GenerationRequest

__all__ = ["JournalEntry", "JournalledJob", "LinePlan"]


@dataclass(frozen=True)
class JournalEntry:
    """What the journal keeps of a plan to resume it: the dialect, where it was sent, the calls."""

    dialect: str
    base_url: str
    calls: list[dict[str, Any]]


class LinePlan(Protocol):
    """An engine's plan of one prompt line: validated, with the exact calls it will make."""

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


class JournalledJob(Protocol):
    """A job as the journal keeps it (``store.job_rows.Job``), as far as an engine rebuilds its plan from it."""

    @property
    def id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def request(self) -> dict[str, Any]: ...
