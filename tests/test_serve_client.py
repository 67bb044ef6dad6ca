"""``imagegen generate -m local:X`` on a running ``imagegen serve`` (issue 23, item 4): used by itself when it can
make the job as this process would, with the same pixels, files, records and journal; ``--no-server`` and every
reason not to use it run in-process with a note; Ctrl-C cancels the work on the server; a server that stops
answering leaves the rest to this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from PIL import Image

from imagegen_cli.local.tiny import TINY_VERSION
from tests.conftest import IMAGEGEN, heavy_imports, run_cli
from tests.fakegateway import free_port

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("diffusers")

from tests.test_serve import _metric, _pixels, _until, server


def _run(tmp_path: Path, name: str, *args: str, base: str | None = None) -> Any:
    env = {"IMAGEGEN_SERVER": base} if base else None
    result = run_cli("generate", "a lighthouse", "-m", "local:tiny", "--seed", "7", "--size", "64x64", "--json",
                     "-o", str(tmp_path / name), *args, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def _images(result: Any) -> list[tuple[bytes, dict[str, Any]]]:
    out = []
    for image in sorted(result.json()["images"], key=lambda i: i["index"]):
        with Image.open(image["path"]) as opened:
            out.append((opened.convert("RGB").tobytes(), json.loads(opened.info["imagegen"])))
    return out


def test_a_local_run_uses_the_server_with_the_same_pixels_and_records(tmp_path: Path) -> None:
    with server() as state:
        served = _run(tmp_path, "served", "-n", "2", base=state.base)
        assert "imagegen_images_total 2" in _metric(state, "imagegen_images_total")
        alone = _run(tmp_path, "alone", "-n", "2", "--no-server", base=state.base)
        assert "imagegen_images_total 2" in _metric(state, "imagegen_images_total")  # --no-server: not sent
    assert f"made by the imagegen server at {state.base}" in served.stderr
    assert "imagegen server" not in alone.stderr
    assert [note for note in served.json()["notes"] if "imagegen server" in note]
    here, there = _images(alone), _images(served)
    assert [pixels for pixels, _ in there] == [pixels for pixels, _ in here]
    assert there[0][0] != there[1][0]
    for (_, mine), (_, theirs) in zip(here, there, strict=True):
        differ = {key for key in mine.keys() | theirs.keys() if mine.get(key) != theirs.get(key)}
        assert differ <= {"job", "created"}, differ  # the same record: only the job and the time differ
    assert [image["seed"] for image in served.json()["images"]] == [7, 8]
    listed = run_cli("tasks", "list", "--json")
    assert [job["status"] for job in listed.json()] == ["succeeded", "succeeded"]


def test_a_run_on_the_server_imports_neither_torch_nor_diffusers_nor_httpx(tmp_path: Path, monkeypatch) -> None:
    with server() as state:
        monkeypatch.setenv("IMAGEGEN_SERVER", state.base)
        heavy, (out,) = heavy_imports(
            ["generate", "x", "-m", "local:tiny", "--size", "64x64", "--json", "-o", str(tmp_path)],
            modules=("torch", "diffusers", "transformers", "huggingface_hub", "httpx", "asyncio"),
        )
    assert heavy == []
    assert len(json.loads(out)["images"]) == 1


def test_a_batch_is_sent_at_once_and_the_server_batches_its_lines(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a fox\na hen\na cat\n")
    with server(max_batch=4) as state:
        state.worker.hold(True)
        results: list[Any] = []
        args = ["generate", "--prompt-file", str(prompts), "-m", "local:tiny", "--seed", "3", "--size", "64x64",
                "--json", "-o", str(tmp_path / "out")]  # fmt: skip
        thread = threading.Thread(target=lambda: results.append(run_cli(*args, env={"IMAGEGEN_SERVER": state.base})))
        thread.start()
        _until(lambda: httpx.get(f"{state.base}/health").json()["queue"] == 3, "3 lines queued on the server")
        state.worker.hold(False)
        thread.join(120)
        assert "imagegen_batch_size_count 1" in _metric(state, "imagegen_batch_size_count")
    assert results[0].returncode == 0, results[0].stderr
    lines = results[0].json()["lines"]
    assert [(line["prompt"], line["status"], len(line["paths"])) for line in lines] == [
        ("a fox", "succeeded", 1),
        ("a hen", "succeeded", 1),
        ("a cat", "succeeded", 1),
    ]


def test_what_the_server_cannot_make_runs_here_with_a_note(tmp_path: Path) -> None:
    with server() as state:
        other = _run(tmp_path, "a", "--scheduler", "euler", base=state.base)
        assert "imagegen_images_total 0" in _metric(state, "imagegen_images_total")
    assert (
        f"not on the imagegen server at {state.base}: it runs with --scheduler none, this run asks euler; "
        "made in this process"
    ) in other.stderr
    assert len(other.json()["images"]) == 1


def test_no_server_listening_is_an_ordinary_local_run(tmp_path: Path) -> None:
    result = _run(tmp_path, "a", base=f"http://127.0.0.1:{free_port()}")
    assert "imagegen server" not in result.stderr
    assert len(result.json()["images"]) == 1


class _Vanishing(BaseHTTPRequestHandler):
    """A server that says it is an imagegen server, then drops every generation request."""

    extra: ClassVar[dict[str, Any]] = {"tiny": TINY_VERSION}

    def do_GET(self) -> None:
        options = {"vae_tiling": False, "variant": None, "loras": [], "quantize": None, "gguf": None,
                   "scheduler": None, "device": "cpu", "dtype": "auto"}  # fmt: skip
        health = {"status": "ok", "imagegen": "0", "models": [], "catalog": True, "accepting": True, "auth": False,
                  "options": options, "max_batch": 4, "limits": {"prompt": 1000, "n": 10, "params": 8},
                  **self.extra}  # fmt: skip
        body = json.dumps(health).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.close_connection = True  # no answer: the connection closes

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_that_stops_answering_leaves_the_images_to_this_process(tmp_path: Path) -> None:
    fake = ThreadingHTTPServer(("127.0.0.1", 0), _Vanishing)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    try:
        result = _run(tmp_path, "a", "-n", "2", base=f"http://127.0.0.1:{fake.server_address[1]}")
    finally:
        fake.shutdown()
    assert "stopped answering (RemoteDisconnected); the rest is made here" in result.stderr
    assert [image["seed"] for image in result.json()["images"]] == [7, 8]
    assert all(Path(image["path"]).is_file() for image in result.json()["images"])


def test_ctrl_c_cancels_the_work_on_the_server(tmp_path: Path) -> None:
    with server() as state:
        state.worker.hold(True)
        process = subprocess.Popen(
            [str(IMAGEGEN), "generate", "x", "-m", "local:tiny", "--size", "64x64", "-o", str(tmp_path)],
            env={**os.environ, "IMAGEGEN_SERVER": state.base},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            _until(lambda: httpx.get(f"{state.base}/health").json()["queue"] == 1, "the request queued")
            process.send_signal(signal.SIGINT)
            assert process.wait(60) == 130
            _until(lambda: httpx.get(f"{state.base}/health").json()["queue"] == 0, "the request left the queue")
            state.worker.hold(False)
            _until(lambda: 'outcome="cancelled"} 1' in _metric(state, "imagegen_requests_total"), "it was cancelled")
            assert "imagegen_images_total 0" in _metric(state, "imagegen_images_total")
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate()
    assert list(tmp_path.glob("*.png")) == []


def test_the_server_setting_is_checked_and_shown_in_the_dry_run(tmp_path: Path) -> None:
    bad = run_cli("generate", "x", "-m", "local:tiny", "--dry-run", env={"IMAGEGEN_SERVER": "ftp://host"})
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[0].startswith("error: invalid server 'ftp://host' in IMAGEGEN_SERVER")
    plan = run_cli("generate", "x", "-m", "local:tiny", "--dry-run", "--json",
                   env={"IMAGEGEN_SERVER": "http://127.0.0.1:9"})  # fmt: skip
    assert plan.json()["server"].startswith("http://127.0.0.1:9 ")
    off = run_cli("generate", "x", "-m", "local:tiny", "--dry-run", "--json", "--no-server",
                  env={"IMAGEGEN_SERVER": "http://127.0.0.1:9"})  # fmt: skip
    assert "server" not in off.json()


def test_an_install_without_torch_runs_local_models_on_the_server(tmp_path: Path, monkeypatch) -> None:
    from imagegen_cli.local import weights

    monkeypatch.setattr(weights, "installed", lambda module: module not in ("torch", "diffusers"))
    with server() as state:
        served = _run(tmp_path, "thin", base=state.base)
        assert "imagegen_images_total 1" in _metric(state, "imagegen_images_total")
    assert len(served.json()["images"]) == 1
    alone = run_cli("generate", "x", "-m", "local:tiny", "-o", str(tmp_path / "b"), "--no-server")
    assert alone.returncode == 4 and "needs the local extra" in alone.stderr


def test_a_server_is_also_a_gateway_named_imagegen(tmp_path: Path) -> None:
    with server() as state:
        remote = run_cli("generate", "a lighthouse", "-m", "imagegen:tiny", "--base-url", f"{state.base}/v1",
                         "--seed", "7", "-n", "2", "--size", "64x64", "--json", "-o", str(tmp_path / "r"))  # fmt: skip
        assert remote.returncode == 0, remote.stderr
        assert "imagegen_images_total 2" in _metric(state, "imagegen_images_total")
        # One call of n=2 (image i has seed 7+i there too), made as one batch, as in-process: the same pixels.
        assert 'imagegen_batch_size_bucket{le="1"} 0' in _metric(state, "imagegen_batch_size_bucket")
    here = _run(tmp_path, "here", "-n", "2", "--no-server")
    assert [pixels for pixels, _ in _images(remote)] == [pixels for pixels, _ in _images(here)]
    assert [image["seed"] for image in remote.json()["images"]] == [7, 8]


def test_doctor_says_where_local_runs_go() -> None:
    def server_check(base: str) -> dict[str, Any]:
        result = run_cli("doctor", "--json", env={"IMAGEGEN_SERVER": base})
        return next(check for check in result.json()["checks"] if check["name"] == "server")

    with server() as state:
        found = server_check(state.base)
    assert found["status"] == "ok" and found["value"].startswith(f"{state.base} answers (loaded with -m: tiny)")
    closed = server_check(f"http://127.0.0.1:{free_port()}")
    assert closed["status"] == "info" and "local models run in this process" in closed["value"]
    assert server_check("off")["value"] == "off: local models run in this process"
    with server(api_key="serve-key-0123456789") as state:
        wants = server_check(state.base)
    assert wants["status"] == "info"
    assert wants["value"] == (
        f"{state.base} answers, but it wants an API key (IMAGEGEN_SERVE_API_KEY is not set): "
        "local runs stay in this process"
    )


def test_an_edit_goes_to_the_server_with_the_same_pixels_as_in_process(tmp_path: Path) -> None:
    import openai

    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(photo)
    edit = ("--image", str(photo), "--strength", "0.6", "-n", "2")
    with server() as state:
        served = _run(tmp_path, "served", *edit, base=state.base)
        assert "imagegen_images_total 2" in _metric(state, "imagegen_images_total")
        client = openai.OpenAI(base_url=f"{state.base}/v1", api_key="unused")
        with photo.open("rb") as stream:
            sdk = client.images.edit(model="tiny", image=stream, prompt="a lighthouse", n=2, size="64x64",
                                     extra_body={"seed": 7, "strength": 0.6})  # fmt: skip
    assert f"made by the imagegen server at {state.base}" in served.stderr
    here = _images(_run(tmp_path, "here", *edit, "--no-server"))
    there = _images(served)
    assert [pixels for pixels, _ in there] == [pixels for pixels, _ in here]
    assert [record["inputs"] for _, record in there] == [record["inputs"] for _, record in here]
    assert [_pixels(item.b64_json or "") for item in sdk.data] == [pixels for pixels, _ in here]


def test_strict_reserved_params_and_a_password_in_the_address_stay_here(tmp_path: Path) -> None:
    with server() as state:
        strict = _run(tmp_path, "a", "--strict", base=state.base)
        reserved = _run(tmp_path, "b", "--param", "width=128", base=state.base)
        assert "imagegen_images_total 0" in _metric(state, "imagegen_images_total")
        direct = httpx.post(f"{state.base}/v1/images/generations",
                            json={"prompt": "a", "size": "64x64", "params": {"num_images_per_prompt": 3}})  # fmt: skip
    assert "--strict is judged where the pipeline runs" in strict.stderr
    assert "it takes only plain --param values" in reserved.stderr
    assert direct.status_code == 400 and "not the ones imagegen sets itself" in direct.json()["error"]["message"]
    bad = run_cli("generate", "x", "-m", "local:tiny", "--dry-run", env={"IMAGEGEN_SERVER": "http://u:pw@127.0.0.1:1"})
    assert bad.returncode == 2 and "pw@" not in bad.stderr and "'http://***@127.0.0.1:1'" in bad.stderr


def test_a_key_a_header_cannot_carry_stays_here_and_is_never_shown(tmp_path: Path, monkeypatch) -> None:
    key = "serve-key-0123456789\r"  # e.g. $(cat key.txt) of a file saved on Windows
    monkeypatch.setenv("IMAGEGEN_SERVE_API_KEY", key)
    with server(api_key=key.strip()) as state:
        result = _run(tmp_path, "a", base=state.base)
        metrics = httpx.get(f"{state.base}/metrics", headers={"Authorization": f"Bearer {key.strip()}"}).text
    assert "imagegen_images_total 0" in metrics
    assert "IMAGEGEN_SERVE_API_KEY has a character an HTTP header cannot carry" in result.stderr
    assert len(result.json()["images"]) == 1  # made in this process
    assert "serve-key-0123456789" not in result.stderr + result.stdout


class _Older(_Vanishing):
    """A server started before local:tiny version 2 (its /health does not say which it makes)."""

    extra: ClassVar[dict[str, Any]] = {}


def test_a_server_of_another_tiny_build_is_not_used_for_tiny(tmp_path: Path) -> None:
    older = ThreadingHTTPServer(("127.0.0.1", 0), _Older)
    threading.Thread(target=older.serve_forever, daemon=True).start()
    try:
        result = _run(tmp_path, "a", base=f"http://127.0.0.1:{older.server_address[1]}")
    finally:
        older.shutdown()
    assert f"it makes local:tiny version 1, this run version {TINY_VERSION} (restart it)" in result.stderr
    assert len(result.json()["images"]) == 1  # made in this process, with this build's pixels
