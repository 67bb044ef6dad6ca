"""The type of decoded JSON: what ``json.loads`` returns, for values that are walked and narrowed with ``isinstance``.

Containers hold ``object``, not ``JSON``, so that a value read from one is narrowed before it is used.
"""

from __future__ import annotations

from typing import TypeAlias

JSON: TypeAlias = dict[str, object] | list[object] | str | int | float | bool | None
