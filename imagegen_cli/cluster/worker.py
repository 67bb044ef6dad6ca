"""One Ray actor: a warm local engine on a cluster node, making the pipeline calls the driver sends it.

The actor holds the same :class:`~imagegen_cli.local.runner.LocalEngine` that runs in-process and in
``imagegen serve``: the pipeline is loaded by its first call and kept for the next. A call returns what the engine
emitted: each image encoded as PNG by the writer's own encoder (so a PNG saved by the driver is byte for byte the
file an in-process run writes), or, with ``--worker-writes``, already placed in the shared output folder by the
store's writer (atomic, never over another file) with its full record; the driver journals it. Nothing here
journals, prints or decides what to retry.

Ray imports this module by name on every node: each node needs imagegen installed (with the ``local`` extra).
"""

from __future__ import annotations

import io
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagegen_cli.errors import ImagegenError
from imagegen_cli.events import Event, ImageReady, Note, StopToken

if TYPE_CHECKING:
    from PIL import Image

    from imagegen_cli.local.planning import LocalPlan
    from imagegen_cli.local.runner import LocalEngine
    from imagegen_cli.meta import ImageMeta
    from imagegen_cli.store.output_spec import OutputSpec
    from imagegen_cli.store.saved_image import SavedImage


@dataclass(frozen=True)
class Placing:
    """``--worker-writes``: where the job's files go, and the job they belong to (both in each file's record)."""

    spec: OutputSpec
    job_id: str | None


@dataclass(frozen=True)
class Shipped:
    """One image of a call: PNG bytes for the driver to save, or the file a worker placed."""

    index: int
    seed: int | None
    meta: ImageMeta
    png: bytes | None = None
    placed: SavedImage | None = None


@dataclass
class Made:
    """What one call made: its images, notes and error (as the in-process engine would have emitted them)."""

    images: list[Shipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: ImagegenError | None = None
    stopped: bool = False  # the run was stopped: the images not made are the driver's to call interrupted


class ImageWorker:
    """The actor's class (``ray.remote`` wraps it at run time, so importing this module never imports Ray)."""

    def __init__(self) -> None:
        from imagegen_cli.local.runner import LocalEngine

        self.engine: LocalEngine = LocalEngine()
        self.stop = StopToken()

    def identity(self) -> dict[str, str]:
        """Where this worker runs and which imagegen it is: its answer means it can take calls (the driver says
        so when its version is not the driver's)."""
        from imagegen_cli import __version__

        return {"host": socket.gethostname(), "pid": str(os.getpid()), "version": __version__}

    def make(self, work: int, plan: LocalPlan, placing: Placing | None = None) -> Made:
        """Run one pipeline call (``plan`` holds its batch); every image shipped or placed, errors returned."""
        made = Made()
        writer = None
        if placing is not None:
            from imagegen_cli.store.writer import ImageWriter

            prompt, n = plan.request.prompt, plan.request.n
            writer = ImageWriter(placing.spec, prompt=prompt, provider="local", model=plan.model_name, n=n)

        def emit(event: Event) -> None:
            if isinstance(event, ImageReady) and event.pixels is not None:
                try:
                    made.images.append(self._ship(event, event.pixels, placing, writer))
                except ImagegenError as exc:
                    made.error = made.error or exc
                except OSError as exc:  # a full shared disk: this image's failure, as the driver's save would be
                    from imagegen_cli.errors import SaveError

                    made.error = made.error or SaveError(f"image {event.index}: {exc.strerror or exc}")
            elif isinstance(event, Note) and event.text not in made.notes:
                made.notes.append(event.text)
            # Steps and calls are counted by the driver, per call; previews stay here.

        try:
            self.engine.run(work, plan, emit, self.stop)
        except ImagegenError as exc:
            made.error = exc
        made.stopped = self.stop.requested
        return made

    def _ship(self, event: ImageReady, pixels: Image.Image, placing: Placing | None, writer: object) -> Shipped:
        if placing is None:
            from imagegen_cli.store.writer import encode_png

            return Shipped(event.index, event.seed, event.meta, png=encode_png(pixels))
        from imagegen_cli.store.writer import ImageWriter

        assert isinstance(writer, ImageWriter)
        meta = event.meta.saved_as(index=event.index, seed=event.seed, job=placing.job_id)
        saved = writer.save_pil(pixels, index=event.index, seed=event.seed, meta=meta)
        return Shipped(event.index, event.seed, event.meta, placed=saved)

    def cancel(self) -> None:
        """Stop this worker's calls between steps (the run was stopped); what they made so far is returned."""
        self.stop.request()


def decode_png(data: bytes) -> Image.Image:
    """A shipped PNG back to pixels (for a format other than PNG, encoded by the driver's writer as in-process)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.copy()
