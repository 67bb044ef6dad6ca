"""``--scheduler NAME``: the sampler names people know, mapped to diffusers scheduler classes.

A scheduler is swapped with ``Class.from_config(pipe.scheduler.config, **overrides)``, which keeps the
model's noise schedule (betas, prediction type, shift). Schedulers come in families that cannot replace
each other: diffusion schedulers (noise-prediction models: SD, SDXL, PixArt...) and flow-matching schedulers
(rectified-flow models: SD3, Flux, Sana, Qwen-Image...). A swap across families is refused. No torch here:
classes are looked up by name in diffusers only when the swap happens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import UsageError

if TYPE_CHECKING:
    from types import ModuleType

DIFFUSION = "diffusion"
FLOW = "flow-matching"


@dataclass(frozen=True)
class SchedulerChoice:
    """One ``--scheduler`` name."""

    name: str
    cls: str  # diffusers class name
    family: str
    overrides: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


SCHEDULERS: dict[str, SchedulerChoice] = {
    s.name: s
    for s in (
        SchedulerChoice("euler", "EulerDiscreteScheduler", DIFFUSION),
        SchedulerChoice("euler-a", "EulerAncestralDiscreteScheduler", DIFFUSION, aliases=("eulerancestral",)),
        SchedulerChoice(
            "dpm++2m",
            "DPMSolverMultistepScheduler",
            DIFFUSION,
            {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
        ),
        SchedulerChoice(
            "dpm++2m-karras",
            "DPMSolverMultistepScheduler",
            DIFFUSION,
            {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
        ),
        SchedulerChoice("dpm++2m-sde", "DPMSolverMultistepScheduler", DIFFUSION, {"algorithm_type": "sde-dpmsolver++"}),
        SchedulerChoice("unipc", "UniPCMultistepScheduler", DIFFUSION),
        SchedulerChoice("ddim", "DDIMScheduler", DIFFUSION),
        SchedulerChoice("lcm", "LCMScheduler", DIFFUSION),
        SchedulerChoice("heun", "HeunDiscreteScheduler", DIFFUSION),
        SchedulerChoice("flow-match", "FlowMatchEulerDiscreteScheduler", FLOW, aliases=("flowmatcheuler", "flow")),
        SchedulerChoice("flow-match-heun", "FlowMatchHeunDiscreteScheduler", FLOW),
    )
}


def _key(text: str) -> str:
    return re.sub(r"[\s_\-]", "", text).lower()


def find_scheduler(name: str) -> SchedulerChoice:
    """A name, alias or diffusers class name (any case, spaces and dashes ignored: ``DPM++ 2M Karras``)."""
    wanted = _key(name)
    for choice in SCHEDULERS.values():
        if wanted in (_key(choice.name), *choice.aliases):
            return choice
    for choice in SCHEDULERS.values():
        if wanted == _key(choice.cls) and not choice.overrides:
            return choice
    raise UsageError(f"unknown --scheduler {name!r}", hint="use one of " + ", ".join(SCHEDULERS))


def family_of(scheduler: object) -> str | None:
    """Diffusion (a beta schedule), flow-matching (a shift, no betas), or None for anything else."""
    config = getattr(scheduler, "config", None) or {}
    if "beta_schedule" in config or "trained_betas" in config:
        return DIFFUSION
    if "shift" in config or type(scheduler).__name__.startswith("FlowMatch"):
        return FLOW
    return None


def swap_scheduler(diffusers: ModuleType, pipe: Any, name: str) -> str:
    """Replace ``pipe.scheduler`` by the named one, built from the current config; returns its class name."""
    choice = find_scheduler(name)
    pipeline = type(pipe).__name__
    current = getattr(pipe, "scheduler", None)
    if current is None or hasattr(pipe, "decoder_pipe") or hasattr(pipe, "prior_pipe"):
        raise UsageError(
            f"--scheduler cannot be set on {pipeline}", hint="its stages keep their own schedulers: drop --scheduler"
        )
    family = family_of(current)
    if family != choice.family:
        fitting = [c.name for c in SCHEDULERS.values() if c.family == family]
        what = f"a {family} model" if family else f"a model with a {type(current).__name__}"
        raise UsageError(
            f"--scheduler {choice.name} ({choice.family}) does not fit {pipeline}: it is {what}",
            hint=("use one of " + ", ".join(fitting)) if fitting else "drop --scheduler",
        )
    cls = getattr(diffusers, choice.cls)
    pipe.scheduler = cls.from_config(current.config, **choice.overrides)
    return choice.cls
