"""A fake engine (in the spirit of llm's ``MockModel``): registered like any engine, it makes PNGs of one colour
per seed without torch or HTTP, so the driver's batch, resume, Ctrl-C and journal are tested in-process.

What it does is steered by the prompt: ``stop-after:K`` requests the run's stop after its K-th image (as Ctrl-C
does), ``kill-after:K`` ends the process with SIGKILL after its K-th image (a run killed mid-way), ``fail:I``
fails image I. Every call it makes is counted in ``FakeEngine.made`` (seeds of the images it made).
"""

from __future__ import annotations

import io
import os
import signal
from dataclasses import dataclass, field, replace
from typing import Any

from imagegen_cli.engines import Channel, EngineJob, ModelRef
from imagegen_cli.errors import GatewayError
from imagegen_cli.events import CallDone, CallFailed, CallSent, ImageReady, JobFinished, JobStarted, Progress
from imagegen_cli.meta import ImageMeta
from imagegen_cli.plans import JournalEntry, LinePlan
from imagegen_cli.request import GenerationRequest

NAME = "fake"


def png(seed: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256)).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class FakePlan:
    """A plan of the fake engine: image i (1-based) gets seed ``seeds[i - 1]``."""

    request: GenerationRequest
    indices: tuple[int, ...]
    notes: tuple[str, ...] = ()

    @property
    def provider_name(self) -> str:
        return NAME

    @property
    def model_name(self) -> str:
        return self.request.model

    def seed(self, index: int) -> int:
        return self.request.seed_for(index - 1) if self.request.seed is not None else 1000 + index

    def describe(self) -> dict[str, Any]:
        return {"provider": NAME, "model": self.request.model, "images": list(self.indices)}

    def journal_entry(self) -> JournalEntry:
        return JournalEntry("fake", "fake://", [{"first_image": i, "count": 1} for i in self.indices])


@dataclass
class FakeEngine:
    """Makes one 16x16 PNG per image; every image it made is in ``made`` (prompt, index, seed)."""

    name: str = NAME
    made: list[tuple[str, int, int]] = field(default_factory=list)

    def plan(self, line: Any, options: Any, ref: ModelRef, settings: Any) -> FakePlan:
        request = options.request.to_request(line.prompt, NAME, ref.model or "default")
        return FakePlan(request, tuple(range(1, request.n + 1)))

    def narrow(self, plan: LinePlan, indices: list[int]) -> FakePlan:
        assert isinstance(plan, FakePlan)
        return replace(plan, indices=tuple(sorted(indices)))

    def journal_plan(self, job: Any, settings: Any) -> FakePlan:
        request = GenerationRequest.from_dict(job.request)
        return FakePlan(request, tuple(range(1, request.n + 1)))

    def execute(self, jobs: list[EngineJob], channel: Channel) -> None:
        for job in jobs:
            channel.emit(JobStarted(job.work))
            plan = job.plan
            assert plan is None or isinstance(plan, FakePlan)
            try:
                for index in plan.indices if plan is not None else ():
                    self._one(job, plan, index, channel)
                    if channel.stop.requested:
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                channel.emit(JobFinished(job.work, interrupted=True))
                raise
            channel.emit(JobFinished(job.work))

    def _one(self, job: EngineJob, plan: FakePlan, index: int, channel: Channel) -> None:
        prompt = plan.request.prompt
        key = f"image{index}"
        channel.emit(CallSent(job.work, key, f"fake image {index}", 1))
        if f"fail:{index}" in prompt.split():
            channel.emit(CallFailed(job.work, GatewayError(f"fake: image {index} failed as asked")))
            channel.emit(CallDone(job.work, key))
            return
        seed = plan.seed(index)
        channel.emit(Progress(job.work, key, 1))
        channel.emit(CallDone(job.work, key))
        meta = ImageMeta(prompt=prompt, provider=NAME, model=plan.request.model, steps=1)
        channel.emit(ImageReady(job.work, index, seed, meta, data=png(seed)))
        self.made.append((prompt, index, seed))
        for word in prompt.split():
            verb, _, count = word.partition(":")
            if verb == "stop-after" and len(self.made) >= int(count):
                channel.stop.request()
            if verb == "kill-after" and len(self.made) >= int(count):
                os.kill(os.getpid(), signal.SIGKILL)
