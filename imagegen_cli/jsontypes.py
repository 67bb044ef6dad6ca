"""Decoded JSON: its type (what ``json.loads`` returns, narrowed with ``isinstance``) and a depth-bounded decoder.

Containers hold ``object``, not ``JSON``, so that a value read from one is narrowed before it is used.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate, repeat
from operator import sub
from typing import TypeAlias

JSON: TypeAlias = dict[str, object] | list[object] | str | int | float | bool | None


MAX_DEPTH = 128
"""Deeper JSON is refused before it is parsed; nothing imagegen reads nests beyond a handful of levels."""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


class TooDeep(ValueError):
    """JSON nested deeper than :data:`MAX_DEPTH`: a ``ValueError``, so every caller's invalid-JSON path takes it."""


def loads(data: str | bytes, max_depth: int = MAX_DEPTH) -> JSON:
    """``json.loads`` that refuses deep nesting instead of recursing into it.

    The C decoder recurses once per level and stops only at the interpreter's recursion limit. A garbage collection
    that fires down there runs unrelated finalizers with no stack left: they fail, and their errors surface as
    "Exception ignored" noise (or as a failed test under pytest), at random. Counting the brackets first (outside
    strings, in C-speed passes) means the decoder never goes deeper than ``max_depth``.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") > max_depth and _depth(raw) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    value: JSON = json.loads(data)
    return value


def _depth(raw: bytes) -> int:
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET).translate(_STEP)
    # each opening bracket counts +1 and each closing one -1 (bytes 2 and 0, less 1); the deepest running total
    return max(accumulate(map(sub, brackets, repeat(1))), default=0)
