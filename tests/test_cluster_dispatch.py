"""The Ray dispatcher's decisions, on a scripted stand-in for Ray (no processes, so every ordering is chosen).

What a real cluster does rarely and at random is made to happen here on purpose: a worker dying with two calls
on it (only the one running is blamed), a call that kills every worker it reaches (its line fails, the others
are made), a worker the cluster has no room for (it never holds a call), workers that never start (the run gives
up, bounded), a Ctrl-C while a call is half made (its line ends interrupted). ``tests/test_cluster.py`` runs the
same code on a real Ray instance.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from imagegen_cli import __version__
from imagegen_cli.cluster import dispatch as dispatch_module
from imagegen_cli.cluster.connect import ClusterError, Sizing
from imagegen_cli.cluster.dispatch import MAX_TRIES, PER_WORKER, Dispatch, Unit
from imagegen_cli.cluster.worker import Made, Shipped
from imagegen_cli.engines import EngineJob
from imagegen_cli.events import CallFailed, Event, JobFinished, Note, StopToken, Workers


class RayError(Exception):
    pass


class RayActorError(RayError):
    pass


class ObjectLostError(RayError):
    pass


class GetTimeoutError(RayError):
    pass


class RayTaskError(RayError):
    """The call's own code raised."""


class OutOfMemoryError(RayError):
    """Ray's memory monitor killed the worker (not a RayActorError)."""


class ActorDiedError(RayActorError):
    def __init__(self, message: str, *, preempted: bool = False) -> None:
        super().__init__(message)
        self.preempted = preempted


@dataclass(eq=False)
class Ref:
    """A call's result: ``value`` (or ``error``) once ``done``."""

    value: Any = None
    error: BaseException | None = None
    done: bool = True


Behaviour = Callable[[int, Any], Any]  # (actor number, plan) → a Made, or an exception the call ends with


@dataclass(eq=False)
class Actor:
    number: int
    behaviour: Behaviour
    starts: bool | BaseException = True  # False: the cluster has no room for it (identity() never answers)
    version: str = __version__
    made_calls: list[Any] = field(default_factory=list)
    cancelled: bool = False

    def __getattr__(self, method: str) -> Any:
        actor = self

        class Method:
            def options(self, **_: Any) -> Method:
                return self

            def remote(self, *args: Any) -> Ref:
                if method == "identity":
                    if isinstance(actor.starts, BaseException):
                        return Ref(error=actor.starts)
                    return Ref({"version": actor.version}, done=bool(actor.starts))
                if method == "cancel":
                    actor.cancelled = True
                    return Ref()
                assert method == "make"
                actor.made_calls.append(args[1])
                outcome = actor.behaviour(actor.number, args[1])
                return Ref(error=outcome) if isinstance(outcome, BaseException) else Ref(outcome)

        return Method()


class FakeRay:
    """``wait`` hands back the *last* finished call first (the order Ray promises nothing about)."""

    exceptions = SimpleNamespace(
        RayError=RayError,
        RayActorError=RayActorError,
        ObjectLostError=ObjectLostError,
        GetTimeoutError=GetTimeoutError,
        RayTaskError=RayTaskError,
    )

    def __init__(self) -> None:
        self.killed: list[int] = []

    def wait(self, refs: list[Ref], num_returns: int, timeout: float) -> tuple[list[Ref], list[Ref]]:
        done = [ref for ref in refs if ref.done][::-1][:num_returns]
        return done, [ref for ref in refs if ref not in done]

    def get(self, ref: Ref, timeout: float | None = None) -> Any:
        if not ref.done:
            raise GetTimeoutError("not ready")
        if ref.error is not None:
            raise ref.error
        return ref.value

    def kill(self, handle: Actor, no_restart: bool) -> None:
        self.killed.append(handle.number)


class Channel:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.stop = StopToken()

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


def made(plan: Any, *, stopped: bool = False, count: int | None = None) -> Made:
    batch = plan.batches[0]
    indices = [batch.first + k for k in range(len(batch.seeds))][:count]
    return Made(images=[Shipped(i, 7, SimpleNamespace(), png=b"png") for i in indices], stopped=stopped)


def setup(
    lines: int,
    behaviour: Behaviour,
    *,
    workers: int = 1,
    starts: Callable[[int], bool | BaseException] = lambda n: True,
    version: str = __version__,
) -> tuple[Dispatch, Channel, FakeRay, deque[Unit], list[Actor]]:
    """A dispatcher with ``lines`` one-image jobs and ``workers`` actors whose calls behave as ``behaviour`` says."""
    channel, ray, actors = Channel(), FakeRay(), []

    def new_actor() -> Actor:
        actors.append(Actor(len(actors) + 1, behaviour, starts(len(actors) + 1), version=version))
        return actors[-1]

    dispatch = Dispatch([], channel, lambda plan, indices: plan)  # type: ignore[arg-type]
    dispatch.sizing = Sizing(workers, 0.0, 1.0)
    dispatch.actor_class = SimpleNamespace(remote=new_actor)
    units: deque[Unit] = deque()
    for line in range(1, lines + 1):
        plan = SimpleNamespace(batches=(SimpleNamespace(first=1, seeds=(7,)),), line=line)
        job = EngineJob(line, SimpleNamespace(cluster=None), plan, line=line)  # type: ignore[arg-type]
        units.append(Unit(job, plan))  # type: ignore[arg-type]
        dispatch.left[line] = 1
    dispatch.first = units[0].job
    for _ in range(workers):
        dispatch._add_worker()
    return dispatch, channel, ray, units, actors


def finished(channel: Channel) -> dict[int, bool]:
    return {event.work: event.interrupted for event in channel.of(JobFinished)}


def test_a_worker_dying_with_two_calls_blames_only_the_one_it_was_running() -> None:
    def first_actor_dies(number: int, plan: Any) -> Any:
        return RayActorError("killed") if number == 1 else made(plan)

    dispatch, channel, ray, units, actors = setup(2, first_actor_dies)
    first, second = units
    dispatch._loop(ray, units)
    # The call queued behind the running one reached the driver first: it is still not the one blamed.
    assert (first.tries, second.tries) == (1, 0)
    assert ray.killed[0] == 1 and len(actors) == 2  # the dead one killed (it cannot come back), one replacement
    assert finished(channel) == {1: False, 2: False} and not channel.of(CallFailed)
    assert len(actors[0].made_calls) == PER_WORKER  # one running, one waiting behind it


def test_a_call_that_kills_every_worker_fails_its_line_and_the_others_are_made() -> None:
    def line_two_kills(number: int, plan: Any) -> Any:
        return RayActorError("out of memory") if plan.line == 2 else made(plan)

    dispatch, channel, ray, units, actors = setup(5, line_two_kills)
    dispatch._loop(ray, units)
    (failure,) = channel.of(CallFailed)
    assert failure.work == 2 and isinstance(failure.error, ClusterError)
    assert f"{MAX_TRIES} workers died" in failure.error.message
    # With one worker asked for, the run goes on past MAX_TRIES deaths: every other line is made.
    assert finished(channel) == dict.fromkeys(range(1, 6), False)
    assert len(actors) == MAX_TRIES + 1


def test_a_worker_the_cluster_has_no_room_for_never_holds_a_call() -> None:
    dispatch, channel, ray, units, actors = setup(6, lambda n, plan: made(plan), workers=2, starts=lambda n: n != 2)
    dispatch._loop(ray, units)
    assert finished(channel) == dict.fromkeys(range(1, 7), False)
    assert len(actors[0].made_calls) == 6 and actors[1].made_calls == []
    last = channel.of(Workers)[-1].states
    assert last == (("w1", "idle", 6), ("w2", "starting", 0))


def test_no_worker_starting_gives_up_after_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch_module, "START_WAIT", 0.0)
    dispatch, channel, ray, units, actors = setup(3, lambda n, plan: made(plan), starts=lambda n: False)
    dispatch._loop(ray, units)
    failures = channel.of(CallFailed)
    assert [f.work for f in failures] == [1, 2, 3]
    assert "no Ray worker started within 0 s" in failures[0].error.message
    assert actors[0].made_calls == []


def test_workers_that_die_starting_are_replaced_a_bounded_number_of_times() -> None:
    dispatch, channel, ray, units, actors = setup(
        2, lambda n, plan: made(plan), workers=2, starts=lambda n: RayActorError("No module named 'imagegen_cli'")
    )
    dispatch._loop(ray, units)
    assert len(actors) == 2 + 2 + MAX_TRIES  # the two asked for, then replacements up to the bound
    assert all("every Ray worker was lost" in f.error.message for f in channel.of(CallFailed))
    said = [event.text for event in channel.of(Note)] + dispatch.notes
    assert any("w1 could not start: No module named 'imagegen_cli'" in text for text in said)


def test_replacements_resume_once_a_call_comes_back() -> None:
    deaths = {1, 2, 3, 4, 6, 7, 8, 9}  # actors 5 and 10 make a call each between the deaths

    def dies(number: int, plan: Any) -> Any:
        return RayActorError("preempted") if number in deaths else made(plan)

    dispatch, channel, ray, units, _ = setup(3, dies)
    dispatch._loop(ray, units)
    assert not channel.of(CallFailed) and finished(channel) == {1: False, 2: False, 3: False}


def test_ctrl_c_while_a_call_is_half_made_ends_its_line_interrupted() -> None:
    dispatch, channel, ray, units, actors = setup(3, lambda n, plan: made(plan, stopped=True, count=0))
    dispatch.started = [1, 2]
    channel.stop.request()
    pending = {actors[0].make.remote(1, units[0].plan): (dispatch.workers[0], units[0])}
    dispatch.workers[0].ready = True
    dispatch.workers[0].running.append(units[0])
    with pytest.raises(KeyboardInterrupt):
        dispatch._stop(ray, pending)
    assert actors[0].cancelled
    assert finished(channel) == {1: True, 2: True}  # half made, and never sent: both interrupted


def test_a_worker_on_another_imagegen_version_is_said_once_when_it_starts() -> None:
    dispatch, channel, ray, units, _ = setup(4, lambda n, plan: made(plan), version="0.0.1")
    dispatch._loop(ray, units)
    said = [event.text for event in channel.of(Note)] + dispatch.notes
    assert [text for text in said if "0.0.1" in text] == [
        f"worker w1 runs imagegen 0.0.1, this driver {__version__}: install the same imagegen-cli on every node"
        " (records and pixels may differ)"
    ]
    same, _, _, units, _ = setup(2, lambda n, plan: made(plan))
    same._loop(ray, units)
    assert not any("runs imagegen" in text for text in same.notes)


def test_a_long_run_whose_workers_are_all_lost_waits_for_the_replacements_from_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wait for a started worker counts from when none is left, not from the run's start."""
    now = [0.0]
    monkeypatch.setattr(dispatch_module, "time", SimpleNamespace(monotonic=lambda: now[0], time=lambda: 0.0))

    def first_dies_late(number: int, plan: Any) -> Any:
        return RayActorError("node preempted") if number == 1 and plan.line == 12 else made(plan)

    dispatch, channel, ray, units, actors = setup(14, first_dies_late)
    real_wait = ray.wait

    def slow_wait(refs: list[Ref], num_returns: int, timeout: float) -> tuple[list[Ref], list[Ref]]:
        now[0] += 100.0  # each call takes 100 s: the loss comes some 1,000 s into the run
        return real_wait(refs, num_returns, timeout)

    ray.wait = slow_wait  # type: ignore[method-assign]
    dispatch._loop(ray, units)
    assert not channel.of(CallFailed) and len(finished(channel)) == 14
    assert len(actors) == 2 and actors[1].made_calls


def test_a_worker_killed_out_of_memory_is_a_lost_worker_and_its_call_is_the_suspect() -> None:
    def line_two_fills_memory(number: int, plan: Any) -> Any:
        return (
            OutOfMemoryError("Task was killed due to the node running low on memory") if plan.line == 2 else made(plan)
        )

    dispatch, channel, ray, units, _ = setup(4, line_two_fills_memory)
    dispatch._loop(ray, units)
    (failure,) = channel.of(CallFailed)
    assert failure.work == 2 and "out of memory?" in (failure.error.hint or "")
    assert finished(channel) == dict.fromkeys(range(1, 5), False) and ray.killed == [1, 2, 3]


def test_a_call_whose_own_code_raised_fails_its_line_and_keeps_the_worker() -> None:
    def line_two_has_a_bug(number: int, plan: Any) -> Any:
        return RayTaskError("ZeroDivisionError: division by zero") if plan.line == 2 else made(plan)

    dispatch, channel, ray, units, actors = setup(3, line_two_has_a_bug)
    dispatch._loop(ray, units)
    (failure,) = channel.of(CallFailed)
    assert failure.work == 2 and "ZeroDivisionError" in failure.error.message
    assert len(actors) == 1 and not ray.killed and len(actors[0].made_calls) == 3


def test_preempted_nodes_are_nobodys_fault() -> None:
    def preempted_until_the_fifth(number: int, plan: Any) -> Any:
        return ActorDiedError("node preempted", preempted=True) if number < 5 else made(plan)

    dispatch, channel, ray, units, _ = setup(2, preempted_until_the_fifth)
    first, second = units
    dispatch._loop(ray, units)
    assert not channel.of(CallFailed) and (first.tries, second.tries) == (0, 0)


def test_a_stop_starts_no_replacement() -> None:
    dispatch, channel, ray, units, actors = setup(2, lambda n, plan: RayActorError("killed"))
    dispatch.started = [1]
    dispatch.workers[0].ready = True
    pending = {}
    for unit in units:
        pending[actors[0].make.remote(unit.job.work, unit.plan)] = (dispatch.workers[0], unit)
        dispatch.workers[0].running.append(unit)
    channel.stop.request(terminated=True)
    with pytest.raises(KeyboardInterrupt):
        dispatch._stop(ray, pending)
    assert len(actors) == 1 and finished(channel) == {1: True}


def test_a_note_about_the_wait_is_said_during_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch_module, "SLOW_START", 0.0)
    monkeypatch.setattr(dispatch_module, "START_WAIT", 0.0)
    dispatch, channel, ray, units, _ = setup(2, lambda n, plan: made(plan), starts=lambda n: False)
    dispatch.notes.append("no node of the cluster has 1 GPUs now")
    dispatch._loop(ray, units)
    texts = [event.text for event in channel.of(Note)]
    assert texts[0] == "no node of the cluster has 1 GPUs now" and texts[1].startswith("waiting for the cluster")
    first_failure = channel.events.index(channel.of(CallFailed)[0])
    assert all(channel.events.index(note) < first_failure for note in channel.of(Note))


class Nodes:
    """``ray.nodes()`` of a cluster: (GPUs, CPUs) per node."""

    def __init__(self, *nodes: tuple[float, float]) -> None:
        self.listed = [{"Alive": True, "Resources": {"GPU": g, "CPU": c}} for g, c in nodes]

    def nodes(self) -> list[dict[str, Any]]:
        return self.listed

    def cluster_resources(self) -> dict[str, float]:
        return {}


@pytest.mark.parametrize(
    ("nodes", "per", "workers", "count", "gpus", "cpus", "note"),
    [
        ([(1, 8), (1, 8)], 2.0, None, 1, 2.0, 1.0, "no node of the cluster has 2 GPUs now"),
        ([(3, 8), (3, 8)], 2.0, None, 2, 2.0, 1.0, None),
        ([(4, 8)], 0.1, None, 40, 0.1, 1.0, "room for 8 of 40 workers"),
        ([(8, 64)], None, None, 8, 1.0, 1.0, None),
        ([(0, 2), (0, 2)], None, 1, 1, 0.0, 2.0, None),  # a CPU share fits on one node, not the cluster's sum
        ([(0, 2)], None, 3, 3, 0.0, 1.0, "room for 2 of 3 workers"),
    ],
)
def test_workers_are_sized_node_by_node(
    nodes: list[tuple[float, float]], per: float | None, workers: int | None, count: int, gpus: float, cpus: float,
    note: str | None,
) -> None:  # fmt: skip
    from imagegen_cli.cluster.connect import size_workers
    from imagegen_cli.options import ClusterOptions

    sizing = size_workers(Nodes(*nodes), ClusterOptions(workers=workers, gpus_per_worker=per), owned_local=False)
    assert (sizing.count, sizing.gpus, sizing.cpus) == (count, gpus, cpus)
    assert [n for n in sizing.notes if note and note in n] if note else not sizing.notes, sizing.notes


def test_this_machines_own_instance_refuses_gpus_it_does_not_have() -> None:
    from imagegen_cli.cluster.connect import size_workers
    from imagegen_cli.errors import UsageError
    from imagegen_cli.options import ClusterOptions

    with pytest.raises(UsageError, match="this machine has 0 GPUs"):
        size_workers(Nodes((0, 2)), ClusterOptions(gpus_per_worker=1.0), owned_local=True)
