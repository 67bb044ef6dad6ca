"""Jobs of a local run made on a running ``imagegen serve`` (found and judged by ``local/served.py``).

One OpenAI-dialect request per pipeline call, with imagegen's extensions (``seed``, ``steps``, ``guidance``,
``negative_prompt``, ``params``), several jobs in flight so that the server can batch them. Each image comes back
as a PNG carrying its record; it is emitted as the same ``ImageReady`` an in-process run emits, so the driver
saves, journals and reports it the same way. The requests go out from a few threads (``local/served_http.py``);
what they make is recorded in the run's own thread. The run's stop (Ctrl-C) closes the connections, and the
server cancels what it has not made. A server that stops answering mid-run leaves the rest to this process.
"""

from __future__ import annotations

import base64
import io
import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import ImagegenError
from imagegen_cli.events import CallDone, CallFailed, CallSent, Event, ImageReady, JobFinished, JobStarted, Note
from imagegen_cli.jsontypes import loads
from imagegen_cli.local.served import KEY_ENV, Server, find_server
from imagegen_cli.meta import ImageMeta

if TYPE_CHECKING:
    from imagegen_cli.engines import Channel, EngineJob
    from imagegen_cli.local.planning import LocalBatch, LocalPlan
    from imagegen_cli.local.served_http import Client

RETRY_AFTER_MAX = 30.0
MAX_THREADS = 32  # requests in flight at most (the server's --max-batch is at most 32)
STOP_WAIT = 2.0  # after a stop, how long a thread may take to say it is done (an abort wakes it at once)
WAKE = Note(-1, "")  # put by a stop: the run's thread stops waiting with no bound


class ServerGone(Exception):
    """The server stopped answering (or is stopping): what is left runs in this process."""


class ServerError(ImagegenError):
    """The server refused or failed a request: that job's error, as in-process it would be."""

    code = "local"


@dataclass
class ServedJobs:
    """Which jobs of a run go to the server, and what each job is told about where it runs."""

    server: Server | None = None
    jobs: list[EngineJob] = field(default_factory=list)
    notes: dict[int, str] = field(default_factory=dict)  # work → note (said once the job has started)
    started: set[int] = field(default_factory=set)  # jobs begun on the server (the rest run here from the start)

    @classmethod
    def choose(cls, jobs: list[EngineJob], plan_of: Any) -> ServedJobs:
        chosen = cls()
        found: dict[str, Server | None] = {}  # each address asked once per run
        for job in jobs:
            plan: LocalPlan = plan_of(job.full)
            if job.plan is None or plan.server is None:
                continue
            if plan.server not in found:
                found[plan.server] = find_server(plan.server)
            server = found[plan.server]
            if server is None or server.gone:
                continue  # nothing listens there: in this process, as without a server
            why = server.refusal(plan)
            if why is None:
                chosen.server = server
                chosen.jobs.append(job)
                chosen.notes[job.work] = f"made by the imagegen server at {server.url} (--no-server: in this process)"
            else:
                chosen.notes[job.work] = f"not on the imagegen server at {server.url}: {why}; made in this process"
        return chosen

    def run(self, channel: Channel, plan_of: Any) -> dict[int, list[int]]:
        """Make the chosen jobs on the server; returns, per job the server could not finish, the images left.

        Raises KeyboardInterrupt when the run was stopped (every started job is finished as interrupted).
        """
        from imagegen_cli.local.served_http import Client

        assert self.server is not None
        server = self.server
        left: dict[int, list[int]] = {}
        # The key goes only to a server that wants one: a server without auth is never handed it.
        headers = {"Authorization": f"Bearer {server.key}"} if server.key and server.auth else {}
        client = Client(server.url, headers)
        jobs: queue.SimpleQueue[EngineJob] = queue.SimpleQueue()
        for job in self.jobs:
            jobs.put(job)
        # The threads only talk to the server; what they make is recorded here, in the run's own thread (the
        # journal's connection belongs to it), in the order each thread said it.
        said: queue.SimpleQueue[Event | BaseException | None] = queue.SimpleQueue()
        stopped = threading.Event()
        stopping: list[bool] = []  # a plain flag: Event.set takes a lock, which a signal's stop would wait on

        def stop() -> None:
            if stopping:  # once: a signal arriving while the run's thread is in here returns at once
                return
            stopping.append(True)
            stopped.set()
            client.abort()  # every request in flight ends now; the server cancels what it has not made
            said.put(WAKE)  # the run's thread, waiting with no bound, now waits with one (SimpleQueue: signal-safe)

        def worker() -> None:
            # A job starts when a worker takes it (as a gateway's do): a stop leaves the rest unstarted.
            try:
                while not stopped.is_set() and not server.gone:
                    try:
                        job = jobs.get_nowait()
                    except queue.Empty:
                        break
                    self._job(client, job, plan_of(job.plan), said.put, left, stopped)
            except BaseException as exc:  # noqa: BLE001 - a bug here is the run's, raised in its own thread
                said.put(exc)
            finally:
                said.put(None)

        unsubscribe = channel.stop.subscribe(stop)
        if channel.stop.requested:  # stopped while the server was being asked: a subscription never fires
            stop()
        # Enough requests in flight for the server to fill its batches; a worker makes whole jobs, one at a time.
        count = min(len(self.jobs), MAX_THREADS, max(2, server.max_batch))
        failure: BaseException | None = None
        running = 0
        begun: set[int] = set()  # jobs whose start is recorded and whose end is not, as recorded here
        try:
            for _ in range(count):
                threading.Thread(target=worker, daemon=True).start()
                running += 1
            while running:
                try:
                    # After a stop, a thread still connecting cannot be woken: it is left behind (it makes nothing).
                    item = said.get(timeout=STOP_WAIT) if stopped.is_set() else said.get()
                except queue.Empty:
                    break
                except KeyboardInterrupt:
                    stop()  # Ctrl-C raised here rather than through the run's stop: the same end
                    continue
                if item is None:
                    running -= 1
                elif item is WAKE:
                    continue
                elif isinstance(item, BaseException):
                    failure = failure or item
                    stop()
                else:
                    channel.emit(item)
                    if isinstance(item, JobStarted):
                        begun.add(item.work)
                    elif isinstance(item, JobFinished):
                        begun.discard(item.work)
        except BaseException:
            # Recording failed (a second Ctrl-C while an image was saved, the disk): stop the server's work, and
            # end every job whose start was recorded as interrupted before the error goes on.
            stop()
            self._interrupted(channel, begun)
            raise
        finally:
            unsubscribe()
        if failure is not None or stopped.is_set():
            self._interrupted(channel, begun)
            left.clear()
            raise failure or KeyboardInterrupt()
        for job in self.jobs:
            if job.work not in self.started:  # the server stopped answering before this job's turn
                self.notes[job.work] = f"not on the imagegen server at {server.url}: it stopped answering; made here"
        return left

    def _interrupted(self, channel: Channel, begun: set[int]) -> None:
        """End as interrupted every job whose start was recorded and whose end was not (those the server left to
        this process too); each on its own, so that one failing to be recorded leaves the others ended."""
        error: BaseException | None = None
        for work in sorted(begun):
            try:
                channel.emit(JobFinished(work, interrupted=True))
            except BaseException as exc:  # noqa: BLE001 - raised once every other job is ended
                error = error or exc
            else:
                begun.discard(work)
        if error is not None:
            raise error

    def _job(
        self,
        client: Client,
        job: EngineJob,
        plan: LocalPlan,
        emit: Callable[[Event], None],
        left: dict[int, list[int]],
        stopped: threading.Event,
    ) -> None:
        from imagegen_cli.local.served_http import Aborted

        assert self.server is not None
        emit(JobStarted(job.work))
        self.started.add(job.work)
        emit(Note(job.work, self.notes[job.work]))
        todo = [batch.first + offset for batch in plan.batches for offset in range(len(batch.seeds))]
        try:
            for batch in plan.batches:
                for first, seeds in _runs(batch):
                    if self.server.gone:
                        raise ServerGone("stopped answering")
                    self._call(client, job.work, plan, first, seeds, emit, stopped)
                    todo = [index for index in todo if not first <= index < first + len(seeds)]
        except Aborted:
            return  # the run was stopped: the job stays open, and the run finishes it as interrupted
        except ServerGone as exc:
            self.server.gone = True
            left[job.work] = todo  # the in-process engine finishes the job
            emit(Note(job.work, f"the imagegen server at {self.server.url} {exc}; the rest is made here"))
            return
        except ImagegenError as exc:  # the server's answer, or an input file that changed since it was checked
            emit(CallFailed(job.work, exc))
        emit(JobFinished(job.work))

    def _call(
        self,
        client: Client,
        work: int,
        plan: LocalPlan,
        first: int,
        seeds: tuple[int, ...],
        emit: Callable[[Event], None],
        stopped: threading.Event,
    ) -> None:
        from imagegen_cli.local.served_http import Aborted

        assert self.server is not None
        server = self.server
        last = first + len(seeds) - 1
        key = f"batch{first}"
        label = f"image {first}" if last == first else f"images {first}-{last}"
        body: dict[str, Any] = {
            "model": server.model_id(plan),
            "prompt": plan.request.prompt,
            "n": len(seeds),
            "seed": seeds[0],
            "response_format": "b64_json",
        }
        if plan.width and plan.height:
            body["size"] = f"{plan.width}x{plan.height}"
        for name, value in (
            ("steps", plan.steps),
            ("guidance", plan.guidance),
            ("negative_prompt", plan.negative_prompt),
        ):
            if value is not None:
                body[name] = value
        if plan.extra:
            body["params"] = dict(plan.extra)
        request = plan.request
        if request.strength is not None:
            body["strength"] = request.strength
        emit(CallSent(work, key, f"{plan.source.name} {label} (server)", None))
        try:
            while True:
                try:
                    if request.images:  # an edit: the files as OpenAI's /images/edits takes them, read now
                        files = [("image", (s.name, s.read(), s.content_type)) for s in request.images]
                        if request.mask is not None:
                            files.append(("mask", (request.mask.name, request.mask.read(), request.mask.content_type)))
                        form = {k: json.dumps(v) if k == "params" else str(v) for k, v in body.items()}
                        answer = client.post_form("/v1/images/edits", form, files)
                    else:
                        answer = client.post_json("/v1/images/generations", body)
                except OSError as exc:
                    raise ServerGone(f"stopped answering ({type(exc).__name__})") from None
                if answer.status == 429:
                    if stopped.wait(answer.retry_after(RETRY_AFTER_MAX)):
                        raise Aborted
                    continue
                break
        finally:
            emit(CallDone(work, key))
        if answer.status in (502, 503, 504):
            raise ServerGone(f"is stopping (HTTP {answer.status})")
        if answer.status == 401:
            raise ServerGone(f"refused the API key in {KEY_ENV}")
        data = answer.json()
        if answer.status != 200:
            raise ServerError(
                f"the imagegen server answered {answer.status}: {answer.error_message()}",
                hint="run it in this process with --no-server",
            )
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(seeds):
            raise ServerError(f"the imagegen server answered {len(items or [])} images for {len(seeds)}")
        for offset, item in enumerate(items):
            pixels, record = _decode(item)
            meta = served_meta(plan, record)
            emit(ImageReady(work, first + offset, seeds[offset], meta, pixels=pixels))


def served_meta(plan: LocalPlan, record: dict[str, Any]) -> ImageMeta:
    """The record an in-process run writes: what was asked from this run's request, what made it from the server's."""
    made = ImageMeta.from_record(record)
    return ImageMeta.of_request(
        plan.request,
        provider="local",
        model=plan.source.name,
        negative_prompt=made.negative_prompt,
        steps=made.steps,
        guidance=made.guidance,
        scheduler=made.scheduler,
        loras=made.loras,
        quantize=made.quantize,
        variant=made.variant,
        pipeline=made.pipeline,
        source=made.source,
        device=made.device,
        dtype=made.dtype,
        versions=dict(made.versions),
        params=dict(plan.extra),
        style=None,
        extra=dict(made.extra),  # the pipeline call's details (generator and created are fields, set by the writer)
    )


def _runs(batch: LocalBatch) -> list[tuple[int, tuple[int, ...]]]:
    """A batch as (first image, seeds) runs of consecutive seeds: the server makes seed, seed+1, ..."""
    runs: list[tuple[int, tuple[int, ...]]] = []
    for offset, seed in enumerate(batch.seeds):
        if runs and runs[-1][1][-1] + 1 == seed:
            runs[-1] = (runs[-1][0], (*runs[-1][1], seed))
        else:
            runs.append((batch.first + offset, (seed,)))
    return runs


def _decode(item: Any) -> tuple[Any, dict[str, Any]]:
    """One answered image: its pixels and the record the server embedded."""
    from PIL import Image, UnidentifiedImageError

    try:
        png = base64.b64decode(item["b64_json"], validate=True)
        image = Image.open(io.BytesIO(png))
        image.load()
        record = loads(image.info.get("imagegen") or "{}")
    except (KeyError, TypeError, ValueError, OSError, UnidentifiedImageError):
        raise ServerError("the imagegen server answered an image that does not decode") from None
    return image.convert("RGB") if image.mode != "RGB" else image, record if isinstance(record, dict) else {}
