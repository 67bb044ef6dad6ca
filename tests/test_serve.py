"""``imagegen serve`` (issue 23, first part): the OpenAI SDK as the client, batching, keep-alive, the queue bound,
a disconnect, SIGTERM, and the key rules. The server runs in this process (uvicorn in a thread) except where a
signal or the command line is the point; no test waits on a clock for its assertion (the worker is held to queue
requests, and state is polled with a generous bound).
"""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import IMAGEGEN, rounding_apart, run_cli
from tests.fakegateway import free_port

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("diffusers")


def _until(check: Callable[[], bool], what: str, bound: float = 60.0) -> None:
    ends = time.monotonic() + bound
    while not check():
        if time.monotonic() > ends:
            raise AssertionError(f"never: {what}")
        time.sleep(0.02)


@contextmanager
def server(*, keep_alive: float = -1, queue: int = 64, max_batch: int = 4, api_key: str | None = None) -> Iterator[Any]:
    from imagegen_cli.local.runner import LocalEngine
    from imagegen_cli.local_options import LocalOptions
    from imagegen_cli.serve.app import ServeState, create_app
    from imagegen_cli.serve.metrics import Metrics
    from imagegen_cli.serve.worker import Worker

    metrics = Metrics()
    worker = Worker(LocalEngine(), metrics, keep_alive=keep_alive, queue=queue, max_batch=max_batch)
    state = ServeState(worker, metrics, LocalOptions(device="cpu"), "tiny", ("tiny",), api_key)
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(create_app(state), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    _until(lambda: instance.started, "the server started")
    state.base = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        worker.hold(False)
        instance.should_exit = True
        thread.join(30)
        worker.drain(30)


def _pixels(b64: str) -> bytes:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return image.convert("RGB").tobytes()


def _metric(state: Any, name: str) -> str:
    return "\n".join(line for line in httpx.get(f"{state.base}/metrics").text.splitlines() if line.startswith(name))


def test_the_openai_sdk_gets_the_same_pixels_as_the_cli(tmp_path) -> None:
    import openai

    with server() as state:
        client = openai.OpenAI(base_url=f"{state.base}/v1", api_key="unused")
        answer = client.images.generate(
            model="tiny", prompt="a lighthouse", n=2, size="64x64", response_format="b64_json", extra_body={"seed": 7}
        )
        assert len(answer.data) == 2
        served = [_pixels(item.b64_json or "") for item in answer.data]
    made = run_cli("generate", "a lighthouse", "-m", "local:tiny", "-n", "2", "--seed", "7", "--size", "64x64",
                   "--json", "-o", str(tmp_path))  # fmt: skip
    assert made.returncode == 0, made.stderr
    local = []
    for image in sorted(made.json()["images"], key=lambda i: i["index"]):
        with Image.open(image["path"]) as opened:
            local.append(opened.convert("RGB").tobytes())
    assert served == local  # seed 7 and 8, as in-process
    assert served[0] != served[1]


def test_eight_concurrent_requests_are_answered_in_batches() -> None:
    with server(max_batch=4) as state:
        state.worker.hold(True)  # queued while held: the worker then takes compatible ones together
        results: list[httpx.Response] = []

        def ask(number: int) -> None:
            body = {"model": "tiny", "prompt": f"prompt {number}", "seed": number, "size": "64x64"}
            results.append(httpx.post(f"{state.base}/v1/images/generations", json=body, timeout=120))

        threads = [threading.Thread(target=ask, args=(number,)) for number in range(8)]
        for thread in threads:
            thread.start()
        _until(lambda: httpx.get(f"{state.base}/health").json()["queue"] == 8, "8 requests queued")
        state.worker.hold(False)
        for thread in threads:
            thread.join(120)
        assert [r.status_code for r in results] == [200] * 8
        assert all(len(r.json()["data"]) == 1 for r in results)
        assert "imagegen_batch_size_count 2" in _metric(state, "imagegen_batch_size_count")
        assert 'imagegen_batch_size_bucket{le="2"} 0' in _metric(state, "imagegen_batch_size_bucket")


def test_a_batched_image_is_the_same_request_alone_to_a_rounding_step() -> None:
    """The same seed makes the same starting noise in any batch; the batch's kernels sum in another order, so a few
    values may come out one step apart (as on any GPU). --max-batch 1 gives bit-identical pixels."""
    with server(max_batch=4) as state:
        body = {"model": "tiny", "prompt": "prompt 3", "seed": 3, "size": "64x64"}
        alone = httpx.post(f"{state.base}/v1/images/generations", json=body, timeout=120).json()
        state.worker.hold(True)
        answers: dict[int, Any] = {}

        def ask(number: int) -> None:
            body = {"model": "tiny", "prompt": f"prompt {number}", "seed": number, "size": "64x64"}
            answers[number] = httpx.post(f"{state.base}/v1/images/generations", json=body, timeout=120).json()

        threads = [threading.Thread(target=ask, args=(number,)) for number in (1, 2, 3)]
        for thread in threads:
            thread.start()
        _until(lambda: httpx.get(f"{state.base}/health").json()["queue"] == 3, "3 requests queued")
        state.worker.hold(False)
        for thread in threads:
            thread.join(120)
        assert "imagegen_batch_size_count 2" in _metric(state, "imagegen_batch_size_count")  # alone, then 3
        largest, share = rounding_apart(
            _pixels(answers[3]["data"][0]["b64_json"]), _pixels(alone["data"][0]["b64_json"])
        )
        assert largest <= 1 and share < 0.01, (largest, share)
        other = rounding_apart(_pixels(answers[2]["data"][0]["b64_json"]), _pixels(alone["data"][0]["b64_json"]))
        assert other[0] > 1 and other[1] > 0.5, other  # the measure tells another seed apart


def test_a_full_queue_answers_429_with_retry_after() -> None:
    with server(queue=2) as state:
        state.worker.hold(True)
        threads = [
            threading.Thread(
                target=httpx.post,
                args=(f"{state.base}/v1/images/generations",),
                kwargs={"json": {"prompt": f"p{n}", "size": "64x64"}, "timeout": 120},
            )
            for n in range(2)
        ]
        for thread in threads:
            thread.start()
        _until(lambda: httpx.get(f"{state.base}/health").json()["queue"] == 2, "2 requests queued")
        refused = httpx.post(f"{state.base}/v1/images/generations", json={"prompt": "third"}, timeout=30)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "queue_full"
        state.worker.hold(False)
        for thread in threads:
            thread.join(120)


def test_an_idle_model_is_unloaded_after_keep_alive() -> None:
    with server(keep_alive=0.3) as state:
        answer = httpx.post(f"{state.base}/v1/images/generations", json={"prompt": "a", "size": "64x64"}, timeout=120)
        assert answer.status_code == 200
        _until(lambda: httpx.get(f"{state.base}/health").json()["loaded"] == [], "the model unloaded")
        assert "imagegen_model_unloads_total 1" in _metric(state, "imagegen_model_unloads_total")
        again = httpx.post(f"{state.base}/v1/images/generations", json={"prompt": "b", "size": "64x64"}, timeout=120)
        assert again.status_code == 200  # loaded again on use
        assert "imagegen_model_loads_total 2" in _metric(state, "imagegen_model_loads_total")


def test_a_client_that_disconnects_has_its_work_cancelled() -> None:
    with server() as state:
        state.worker.hold(True)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{state.base}/v1/images/generations", json={"prompt": "gone"}, timeout=0.5)
        _until(lambda: httpx.get(f"{state.base}/health").json()["queue"] == 0, "the request dropped from the queue")
        state.worker.hold(False)
        _until(lambda: 'outcome="cancelled"} 1' in _metric(state, "imagegen_requests_total"), "counted as cancelled")
        assert "imagegen_images_total 0" in _metric(state, "imagegen_images_total")


def test_a_wrong_key_is_401_and_bad_input_400() -> None:
    with server(api_key="right-key") as state:
        url = f"{state.base}/v1/images/generations"
        wrong = httpx.post(url, json={"prompt": "a"}, headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{state.base}/v1/models").status_code == 401
        key = {"Authorization": "Bearer right-key"}
        for body, text in (
            ({"prompt": ""}, "prompt is required"),
            ({"prompt": "a", "n": 11}, "n must be an integer from 1 to 10"),
            ({"prompt": "a", "size": "9000x9000"}, "too large"),
            ({"prompt": "a", "model": "/etc"}, "is not served here"),
            ({"prompt": "a", "bogus": 1}, "unknown parameter 'bogus'"),
        ):
            answer = httpx.post(url, json=body, headers=key)
            assert answer.status_code == 400 and text in answer.json()["error"]["message"], answer.text
        edits = f"{state.base}/v1/images/edits"
        for files, text in (
            ({"image": ("x.png", b"not a png", "image/png")}, "image x.png is not an image"),
            ({"photo": ("x.png", b"", "image/png")}, "unknown file 'photo'"),
            ({}, "an edit needs an image file"),
        ):
            answer = httpx.post(edits, data={"prompt": "a"}, files=files or None, headers=key)
            assert answer.status_code == 400 and text in answer.json()["error"]["message"], answer.text
        models = httpx.get(f"{state.base}/v1/models", headers=key).json()
        assert "tiny" in [m["id"] for m in models["data"]]


def test_binding_beyond_loopback_needs_a_key() -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--port", "1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: --host 0.0.0.0 is not a loopback address: an API key is required")


def test_sigterm_finishes_the_request_in_flight_and_exits_0() -> None:
    port = free_port()
    process = subprocess.Popen(
        [str(IMAGEGEN), "serve", "-m", "local:tiny", "--port", str(port), "--device", "cpu"],
        env=os.environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/health").status_code == 200
            except httpx.TransportError:
                return False

        _until(up, "the server answered", bound=120)
        answers: list[httpx.Response] = []
        body = {"prompt": "slow", "size": "64x64", "steps": 16}
        thread = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{base}/v1/images/generations", json=body, timeout=120))
        )
        thread.start()
        _until(lambda: httpx.get(f"{base}/health").json()["busy"], "the request is running")
        process.send_signal(signal.SIGTERM)
        thread.join(120)
        assert answers and answers[0].status_code == 200, answers
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_a_compiled_model_is_compiled_and_warmed_once_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagegen_cli.local import runner

    calls: list[tuple[str, object]] = []

    class Engine:  # records what serve asks of the engine; a real compile needs a GPU and minutes
        def load(self, plan: Any, emit: Any) -> None:
            calls.append(("load", plan.options.compile))

        def run(self, work: int, plan: Any, emit: Any, stop: Any) -> None:
            calls.append(("run", [batch.seeds for batch in plan.batches]))

        def loaded_pipelines(self) -> list[Any]:
            return []

    monkeypatch.setattr(runner, "LocalEngine", Engine)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    before = signal.getsignal(signal.SIGTERM)
    try:
        compiled = run_cli("serve", "-m", "local:tiny", "--compile", "--port", "0")
        assert compiled.returncode == 0, compiled.stderr
        assert calls == [("load", True), ("run", [(0,)])]  # one warm-up image, at load
        assert "tiny compiled and warm in" in compiled.stderr
        calls.clear()
        assert run_cli("serve", "-m", "local:tiny", "--port", "0").returncode == 0
        assert calls == [("load", False)]
    finally:
        signal.signal(signal.SIGTERM, before)
