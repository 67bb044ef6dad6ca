"""``SavedImage``: what the writer reports for each image it saved, in a module light enough for any importer.

It lives apart from ``store.writer`` (which imports the containers, the metadata builders and the placement
code) so that results, the journal rows and a ``--dry-run`` can name it without loading the writer.
"""

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
