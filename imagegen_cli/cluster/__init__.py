"""``--engine ray``: a batch's local pipeline calls made by Ray actors across a cluster, recorded by this driver.

``engine`` plans exactly as the local engine does; ``dispatch`` runs the calls on the actors of ``worker`` and
emits what they made as the engine events every other engine emits. Ray is imported on this path only.
"""

from __future__ import annotations

from typing import Any

from imagegen_cli.errors import UsageError

RAY_HINT = "install it with: pip install 'imagegen-cli[ray]' (on every node of the cluster too)"


def import_ray() -> Any:
    """Ray, imported now (only ``--engine ray`` runs get here); missing, one line with the pip command."""
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray, which is not installed", hint=RAY_HINT) from None
    return ray
