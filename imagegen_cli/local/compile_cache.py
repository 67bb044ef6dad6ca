"""Where ``--compile`` keeps torch's compiled code: under imagegen's cache, once per machine, not per process.

torch.compile's caches (Inductor's FX-graph and autotuning caches, Triton's kernels) live in ``/tmp`` by default,
which a reboot or a tmp cleaner empties, so every fresh process paid the full compilation again. ``--compile``
points them at ``CACHE/compile/torch-VERSION/MODEL-KEY/``: the torch version and a key of the model's location
and the local options that change the compiled graph (dtype, quantization, LoRAs, scheduler...) name the folder,
so a change of any of them never reuses another's entries (Inductor's own cache keys, which hash the graph and
the device, sit inside). ``imagegen models rm MODEL`` removes a model's folders; ``imagegen doctor`` shows the
total. A ``TORCHINDUCTOR_CACHE_DIR`` the user set is theirs: it is left alone.

No torch import here: the folder is chosen from the torch version the caller passes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagegen_cli.local.planning import LocalPlan

_NAMES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
# What the user set, seen before torch was imported: torch writes TORCHINDUCTOR_CACHE_DIR into the environment
# itself (its default, in /tmp) the first time it looks, so later the variable alone says nothing about the user.
_USERS: list[set[str]] = []  # one entry, once seen


def note_user_env() -> None:
    """Remember which cache variables the user set; called before torch is imported (``runner.import_stack``)."""
    if not _USERS:
        _USERS.append({name for name in _NAMES if os.environ.get(name)})


def compile_root() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("imagegen", appauthor=False)) / "compile"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/")).strip("._")[:60] or "model"


def compile_folder(plan: LocalPlan, dtype: str, torch_version: str) -> Path:
    """The cache folder of ``plan``'s model compiled with its options, on this torch version."""
    options = {**asdict(plan.options), "dtype": dtype, "device": None, "offload": None, "compile": None}
    key = hashlib.sha256(json.dumps([plan.source.location, options], sort_keys=True).encode()).hexdigest()[:12]
    return compile_root() / f"torch-{_safe(torch_version)}" / f"{_safe(plan.source.name)}-{key}"


def use_compile_cache(plan: LocalPlan, dtype: str, torch_version: str) -> Path | None:
    """Point torch's compile caches at ``plan``'s folder (before it compiles); None when the user chose their own."""
    users = _USERS[0] if _USERS else {name for name in _NAMES if os.environ.get(name)}
    if "TORCHINDUCTOR_CACHE_DIR" in users:
        return None
    folder = compile_folder(plan, dtype, torch_version)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    if "TRITON_CACHE_DIR" not in users:
        os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
    return folder


def model_folders(name: str) -> list[Path]:
    """Every compile folder of local model ``name`` (any torch version, any options)."""
    root = compile_root()
    return sorted(root.glob(f"torch-*/{_safe(name)}-" + "[0-9a-f]" * 12)) if root.is_dir() else []


def remove_model(name: str) -> int:
    """Delete the compile folders of ``name``; how many there were."""
    folders = model_folders(name)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return len(folders)


def total_size() -> int:
    root = compile_root()
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file()) if root.is_dir() else 0
