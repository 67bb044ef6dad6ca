"""Opt-in interop check: imagegen against a real LiteLLM proxy on 127.0.0.1 (not part of the default tests).

Run it through ``scripts/interop_litellm.sh``, which makes a scratch virtual environment for LiteLLM (its
dependencies must not mix with imagegen's). Nothing leaves the machine: LiteLLM answers every image call
with ``mock_response`` (a URL served by a local file server, or a ``data:`` URL), so no upstream key or
network is needed. Each check prints one line, PASS or FAIL; the exit code is the number of failures.

    python scripts/interop_litellm.py --litellm /path/to/venv/bin/litellm [--imagegen .venv/bin/imagegen]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MASTER_KEY = "sk-interop-master-7d1f"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def png(width: int = 64, height: int = 48) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (220, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()


@contextlib.contextmanager
def file_server(directory: Path) -> Iterator[str]:
    """A static file server on 127.0.0.1 (the "CDN" that mock_response URLs point at)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def litellm_config(cdn: str) -> str:
    data_url = "data:image/png;base64," + base64.b64encode(png(32, 32)).decode()
    models: list[dict[str, Any]] = [
        # A catalog id, answered with a URL on the local file server.
        {
            "model_name": "gpt-image-2.5-flare",
            "litellm_params": {
                "model": "openai/gpt-image-1.5",
                "api_key": "sk-unused",
                "mock_response": f"{cdn}/fox.png",
            },
            "model_info": {"mode": "image_generation"},
        },
        # An alias imagegen does not know, answered with a data: URL.
        {
            "model_name": "my-painter",
            "litellm_params": {"model": "openai/gpt-image-1.5", "api_key": "sk-unused", "mock_response": data_url},
            "model_info": {"mode": "image_generation"},
        },
        {
            "model_name": "chat-model",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-unused", "mock_response": "hello"},
            "model_info": {"mode": "chat"},
        },
    ]
    # JSON is valid YAML: no YAML writer needed.
    return json.dumps({"model_list": models, "general_settings": {"master_key": MASTER_KEY}}, indent=2)


@contextlib.contextmanager
def litellm_proxy(litellm: str, config: Path, log: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the cost map
        "LITELLM_TELEMETRY": "False",
        "NO_PROXY": "*",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - the path is the user's own LiteLLM
            [litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"LiteLLM exited with {proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{base}/health/liveliness", timeout=2):  # noqa: S310
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise SystemExit(f"LiteLLM did not start within 120 s; see {log}")
        yield base + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class Checks:
    """Runs imagegen commands and records one PASS/FAIL line each."""

    def __init__(self, imagegen: str, env: dict[str, str], out: Path) -> None:
        self.imagegen, self.env, self.out = imagegen, env, out
        self.failures = 0

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            [self.imagegen, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def check(self, name: str, test: Callable[[], str | None]) -> None:
        try:
            problem = test()
        except Exception as exc:  # noqa: BLE001 - a check that crashes is a failed check
            problem = f"{type(exc).__name__}: {exc}"
        print(f"{'FAIL' if problem else 'PASS'}  {name}" + (f": {problem}" if problem else ""))
        self.failures += bool(problem)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--litellm", required=True, help="the litellm executable (in its own virtual environment)")
    parser.add_argument("--imagegen", default=str(Path(sys.executable).with_name("imagegen")))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="imagegen-interop-") as tmp:
        root = Path(tmp)
        (root / "cdn").mkdir()
        (root / "cdn" / "fox.png").write_bytes(png())
        with file_server(root / "cdn") as cdn:
            config = root / "litellm.yaml"
            config.write_text(litellm_config(cdn))
            with litellm_proxy(args.litellm, config, root / "litellm.log") as base_url:
                env = {
                    **os.environ,
                    "IMAGEGEN_OPENAI_BASE_URL": base_url,
                    "IMAGEGEN_OPENAI_API_KEY": MASTER_KEY,
                    "XDG_CONFIG_HOME": str(root / "config"),
                    "XDG_DATA_HOME": str(root / "data"),
                    "NO_COLOR": "1",
                }
                checks = Checks(args.imagegen, env, root / "out")
                run_checks(checks, base_url, root)
                if checks.failures:
                    print((root / "litellm.log").read_text()[-4000:], file=sys.stderr)
                return checks.failures


def run_checks(checks: Checks, base_url: str, root: Path) -> None:
    out = str(root / "out")

    def generate_catalog_model() -> str | None:
        result = checks.run("generate", "a fox", "-m", "openai:gpt-image-2.5-flare", "-o", out, "--json")
        doc = json.loads(result.stdout or "{}")
        if result.returncode != 0 or len(doc.get("images", [])) != 1:
            return f"exit {result.returncode}: {result.stderr.strip()}"
        return None

    def two_images() -> str | None:
        # LiteLLM's mock answers one image whatever n is: imagegen must say so, keep the one, exit 3.
        result = checks.run("generate", "a fox", "-m", "openai:gpt-image-2.5-flare", "-n", "2", "-o", out, "--json")
        doc = json.loads(result.stdout or "{}")
        if result.returncode != 3 or len(doc.get("images", [])) != 1 or len(doc.get("errors", [])) != 1:
            return f"exit {result.returncode}: {result.stderr.strip()}"
        return None

    def webp() -> str | None:
        result = checks.run("generate", "a fox", "-m", "openai:gpt-image-2.5-flare", "--format", "webp", "-o", out)
        if result.returncode != 0 or not result.stdout.strip().endswith(".webp"):
            return f"exit {result.returncode}: {result.stderr.strip()}"
        return None

    def unknown_alias_gets_no_response_format() -> str | None:
        result = checks.run("generate", "a fox", "-m", "openai:my-painter", "-o", out)
        return None if result.returncode == 0 else f"exit {result.returncode}: {result.stderr.strip()}"

    def custom_provider() -> str | None:
        config = root / "config" / "imagegen" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f'[providers.litellm]\nbase_url = "{base_url}"\ndialect = "openai"\n'
            f'api_key_env = "LITELLM_MASTER_KEY"\ndefault_model = "my-painter"\n'
        )
        result = checks.run(
            "generate", "a fox", "--provider", "litellm", "-o", out, env={"LITELLM_MASTER_KEY": MASTER_KEY}
        )
        return None if result.returncode == 0 else f"exit {result.returncode}: {result.stderr.strip()}"

    def live_models() -> str | None:
        result = checks.run("models", "list", "--live", "--provider", "openai", "--json")
        doc = json.loads(result.stdout or "{}")
        live = {m["id"] for m in doc.get("models", []) if m.get("live")}
        if result.returncode != 0 or not {"gpt-image-2.5-flare", "my-painter"} <= live:
            return f"exit {result.returncode}, live: {sorted(live)}: {result.stderr.strip()}"
        if "chat-model" not in doc.get("hidden", []):
            return f"chat-model not reported as hidden: {doc.get('hidden')}"
        return None

    def proxy_errors() -> str | None:
        unknown = checks.run("generate", "a fox", "-m", "openai:no-such-model", "-o", out)
        refused = checks.run(
            "generate", "a fox", "-m", "openai:my-painter", "-o", out, env={"IMAGEGEN_OPENAI_API_KEY": "sk-wrong"}
        )
        problems = []
        if unknown.returncode != 1 or len([x for x in unknown.stderr.splitlines() if x.startswith("error:")]) != 1:
            problems.append(f"unknown model: exit {unknown.returncode}: {unknown.stderr.strip()}")
        # With a database LiteLLM answers a wrong key 401 (exit 4); without one, 400 "no_db_connection" (exit 1).
        errors = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
        if refused.returncode not in (1, 4) or len(errors) != 1 or "sk-wrong" in refused.stderr + refused.stdout:
            problems.append(f"bad key: exit {refused.returncode}: {refused.stderr.strip()}")
        return "; ".join(problems) or None

    checks.check("generate with a catalog model (URL answer from the local CDN)", generate_catalog_model)
    checks.check("-n 2 against a mock that answers one image (exit 3, the one image saved)", two_images)
    checks.check("--format webp", webp)
    checks.check(
        "an alias imagegen does not know (data: URL answer, no response_format)", unknown_alias_gets_no_response_format
    )
    checks.check("a custom provider in the config file", custom_provider)
    checks.check("models list --live (LiteLLM's mode field)", live_models)
    checks.check("the proxy's own error answers (unknown model, bad key)", proxy_errors)


if __name__ == "__main__":
    sys.exit(main())
