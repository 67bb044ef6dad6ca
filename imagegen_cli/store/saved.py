"""``SavedImage``: an image the writer placed (a light module: results and reports import it without the writer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SavedImage:
    """An image on disk (or on stdout); ``notes`` say what the writer changed (a conversion), for the user."""

    path: str
    index: int
    width: int
    height: int
    fmt: str
    seed: int | None = None
    url: str | None = None
    revised_prompt: str | None = None
    notes: tuple[str, ...] = ()
