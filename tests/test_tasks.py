"""The task journal: resuming killed runs exactly once, concurrency, listing, cancel, prune, records."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from PIL import Image

from imagegen_cli.store.journal_schema import SCHEMA_VERSION
from tests.conftest import CAPTURED, IMAGEGEN, TEST_KEY, gateway_env, heavy_imports, run_cli, write_config
from tests.fakegateway import FakeGateway


def journal_file() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "imagegen" / "journal.sqlite3"


def start(gateway: FakeGateway, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **gateway_env(gateway)}
    return subprocess.Popen([str(IMAGEGEN), "generate", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_sigkill_while_polling_then_wait_gets_the_image_exactly_once(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.task_polls = 10_000  # "processing" until the test says otherwise
    out = tmp_path / "out"
    proc = start(gateway, "a slow fox", "-m", "apimart:z-image-turbo", "-o", str(out))
    wait_for(lambda: any("/tasks/" in r.path for r in gateway.requests))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert not list(out.glob("*.png"))

    (job,) = run_cli("tasks", "list", "--json").json()
    assert job["status"] == "submitted" and job["provider"] == "apimart"
    assert job["remote_ids"] == [next(iter(gateway.tasks))]
    for task in gateway.tasks.values():
        task.polls_left = 0  # the gateway finishes the task while nobody watches

    env = gateway_env(gateway)
    first = run_cli("tasks", "wait", job["id"], env=env)
    assert first.returncode == 0, first.stderr
    (path,) = first.lines
    assert Path(path).parent == out and Image.open(path).size == (1024, 1024)
    downloads = len(gateway.image_requests)

    second = run_cli("tasks", "wait", job["id"], env=env)
    assert second.returncode == 0, second.stderr
    assert second.lines == [path]
    assert len(gateway.image_requests) == downloads  # nothing fetched again
    assert sorted(p.name for p in out.iterdir()) == [Path(path).name]  # nothing written again
    shown = run_cli("tasks", "show", job["id"], "--json").json()
    assert shown["status"] == "succeeded" and shown["paths"] == [path]


def test_timeout_exit_5_then_wait_by_remote_id(cli, gateway: FakeGateway) -> None:
    gateway.task_polls = 10_000
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "--timeout", "1", "--json")
    assert result.returncode == 5
    doc = result.json()
    assert f"resume with: imagegen tasks wait {doc['job']}" in result.stderr
    for task in gateway.tasks.values():
        task.polls_left = 0
    remote_id = doc["tasks"][0]["remote_id"]
    resumed = run_cli("tasks", "wait", remote_id, "--json", env=gateway_env(gateway))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.json()["status"] == "succeeded" and len(resumed.json()["images"]) == 1


def test_no_wait_then_wait_into_another_dir(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "-n", "2", "--no-wait")
    assert result.returncode == 0
    (job_id,) = result.lines
    assert f"imagegen tasks wait {job_id}" in result.stderr
    other = tmp_path / "elsewhere"
    waited = run_cli("tasks", "wait", job_id, "-o", str(other), env=gateway_env(gateway))
    assert waited.returncode == 0, waited.stderr
    assert len(waited.lines) == 2 and all(Path(p).parent == other for p in waited.lines)


def test_wait_timeout_is_exit_5_and_interrupt_keeps_record(cli, gateway: FakeGateway) -> None:
    gateway.task_polls = 10_000
    job_id = cli("generate", "x", "-m", "apimart:z-image-turbo", "--no-wait").lines[0]
    waited = run_cli("tasks", "wait", job_id, "--timeout", "0.5", env=gateway_env(gateway))
    assert waited.returncode == 5
    assert run_cli("tasks", "show", job_id, "--json").json()["status"] == "submitted"


def test_wait_refuses_a_timeout_generate_refuses(cli, gateway: FakeGateway) -> None:
    job_id = cli("generate", "x", "-m", "apimart:z-image-turbo", "--no-wait").lines[0]
    polls = len(gateway.requests)
    for bad in ("nan", "inf", "0"):
        waited = run_cli("tasks", "wait", job_id, "--timeout", bad, env=gateway_env(gateway))
        assert waited.returncode == 2 and "--timeout must be a positive number of seconds" in waited.stderr, bad
    assert len(gateway.requests) == polls


def test_two_processes_share_the_journal(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.latency = 0.2
    procs = [
        start(gateway, f"prompt {i}", "-m", model, "-n", "2", "-o", str(tmp_path / f"out{i}"))
        for i, model in enumerate(["apimart:z-image-turbo", "openai:dall-e-2"])
    ]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        CAPTURED.extend([stdout, stderr])
        assert proc.returncode == 0, stderr
        assert len(stdout.splitlines()) == 2
    jobs = run_cli("tasks", "list", "--json").json()
    assert sorted(j["provider"] for j in jobs) == ["apimart", "openai"]
    assert all(j["status"] == "succeeded" and len(j["paths"]) == 2 for j in jobs)


def test_list_json_fields_and_filters(cli, gateway: FakeGateway) -> None:
    cli("generate", "ok", "-m", "openai:dall-e-2")
    gateway.fault("generate", "status", status=500)
    cli("generate", "bad", "-m", "modelmax:imagen-3")
    jobs = run_cli("tasks", "list", "--json").json()
    assert len(jobs) == 2
    for job in jobs:
        assert set(job) >= {
            "id",
            "provider",
            "model",
            "request",
            "remote_ids",
            "status",
            "out_dir",
            "name_template",
            "paths",
            "error",
            "created_at",
            "updated_at",
        }
        assert TEST_KEY not in json.dumps(job)
    assert jobs[0]["id"] > jobs[1]["id"]  # ids sort by creation time, newest listed first
    failed = run_cli("tasks", "list", "--status", "failed", "--json").json()
    assert [j["provider"] for j in failed] == ["modelmax"] and "HTTP 500" in failed[0]["error"]
    assert [j["provider"] for j in run_cli("tasks", "list", "--provider", "openai", "--json").json()] == ["openai"]
    plain = run_cli("tasks")
    assert plain.returncode == 0 and len(plain.lines) == 1 + 2 and "succeeded" in plain.stdout  # a header, 2 jobs
    shown = run_cli("tasks", "show", jobs[0]["id"])
    assert "status:" in shown.stdout and "prompt:" in shown.stdout
    assert run_cli("tasks", "show", "nosuchid").returncode == 2


def test_failed_task_is_final(cli, gateway: FakeGateway) -> None:
    gateway.fault("generate", "failed")
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "--json")
    job_id = result.json()["job"]
    waited = run_cli("tasks", "wait", job_id, env=gateway_env(gateway))
    assert waited.returncode == 1
    assert "content policy violation" in waited.stderr


def test_expired_results_name_the_task_and_time(cli, gateway: FakeGateway) -> None:
    gateway.expires_in = -3600
    # Clocks differ: a link past its expiry time is still tried, and saved when the CDN still serves it.
    skewed = cli("generate", "x", "-m", "apimart:z-image-turbo", "--json")
    assert skewed.returncode == 0 and len(skewed.json()["images"]) == 1
    gateway.fault("image", "status", status=403)
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "--json")
    assert result.returncode == 1
    message = result.json()["errors"][0]["message"]
    assert "task task_" in message and "expired at" in message and "UTC" in message
    job = run_cli("tasks", "show", result.json()["job"], "--json").json()
    assert job["status"] == "expired" and job["tasks"][0]["status"] == "expired"


def test_cancel_asks_the_provider_where_it_can(gateway: FakeGateway, tmp_path: Path) -> None:
    write_config(
        f'[providers.customtasks]\nbase_url = "{gateway.base_url("customtasks")}"\ndialect = "tasks"\n'
        'cancel_path = "tasks/{id}/cancel"\n'
    )
    env = gateway_env(gateway)
    gateway.task_polls = 10_000
    job_id = run_cli("generate", "x", "-m", "customtasks:m", "--no-wait", "-o", str(tmp_path), env=env).lines[0]
    cancelled = run_cli("tasks", "cancel", job_id, env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert any(r.path.endswith("/cancel") for r in gateway.requests)
    assert run_cli("tasks", "show", job_id, "--json").json()["status"] == "cancelled"

    apimart_job = run_cli(
        "generate", "x", "-m", "apimart:z-image-turbo", "--no-wait", "-o", str(tmp_path), env=env
    ).lines[0]
    note = run_cli("tasks", "cancel", apimart_job, env=env)
    assert "apimart has no cancel API" in note.stderr


def test_cancel_of_a_stalled_gateway_still_cancels_the_job(gateway: FakeGateway, tmp_path: Path) -> None:
    write_config(
        f'timeout = 2\n[providers.customtasks]\nbase_url = "{gateway.base_url("customtasks")}"\ndialect = "tasks"\n'
        'cancel_path = "tasks/{id}/cancel"\n'
    )
    env = gateway_env(gateway)
    gateway.task_polls = 10_000
    job_id = run_cli("generate", "x", "-m", "customtasks:m", "--no-wait", "-o", str(tmp_path), env=env).lines[0]
    gateway.latency = 8  # the cancel request gets no answer within the config's timeout
    start = time.monotonic()
    cancelled = run_cli("tasks", "cancel", job_id, env=env)
    assert time.monotonic() - start < 2 + 4  # the config timeout, with room for a loaded machine; far below 8
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.lines == [job_id]
    assert "customtasks: no answer to the cancel request within 2 s" in cancelled.stderr
    assert "may still finish" in cancelled.stderr and "internal error" not in cancelled.stderr
    gateway.latency = 0
    assert run_cli("tasks", "show", job_id, "--json").json()["status"] == "cancelled"


def test_cancel_of_several_jobs_has_one_overall_bound(gateway: FakeGateway, tmp_path: Path) -> None:
    """`tasks cancel A B C` against a stalled gateway: the first job spends the one bound, the others are cancelled
    here without waiting again (before: each job waited the whole timeout)."""
    write_config(
        f'timeout = 1\n[providers.customtasks]\nbase_url = "{gateway.base_url("customtasks")}"\ndialect = "tasks"\n'
        'cancel_path = "tasks/{id}/cancel"\n'
    )
    env = gateway_env(gateway)
    gateway.task_polls = 10_000
    jobs = [
        run_cli("generate", "x", "-m", "customtasks:m", "--no-wait", "-o", str(tmp_path), env=env).lines[0]
        for _ in range(3)
    ]
    gateway.latency = 8  # no cancel request is answered within the bound
    cancelled = run_cli("tasks", "cancel", *jobs, env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert sorted(cancelled.lines) == sorted(jobs)
    assert cancelled.stderr.count("no answer to the cancel request") == 1
    assert cancelled.stderr.count("was not asked to cancel (tasks cancel's time was spent on earlier jobs)") == 2
    gateway.latency = 0
    assert {run_cli("tasks", "show", j, "--json").json()["status"] for j in jobs} == {"cancelled"}


def test_cancel_asks_the_provider_even_when_todays_catalog_rejects_the_request(
    gateway: FakeGateway, tmp_path: Path
) -> None:
    table = (
        f'[providers.customtasks]\nbase_url = "{gateway.base_url("customtasks")}"\ndialect = "tasks"\n'
        'cancel_path = "tasks/{id}/cancel"\n'
    )
    write_config(table)
    env = gateway_env(gateway)
    gateway.task_polls = 10_000
    generated = run_cli(
        "generate", "x", "-m", "customtasks:m", "--quality", "high", "--no-wait", "-o", str(tmp_path), env=env
    )
    assert generated.returncode == 0, generated.stderr
    job_id = generated.lines[0]
    write_config(table + '[providers.customtasks.models.m]\nqualities = ["low"]\n')  # "high" is refused now
    cancelled = run_cli("tasks", "cancel", job_id, env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert [r.path for r in gateway.requests if r.path.endswith("/cancel")] != []
    assert "was not asked" not in cancelled.stderr and "asked customtasks to cancel" in cancelled.stderr


def test_prune(cli, gateway: FakeGateway) -> None:
    cli("generate", "x", "-m", "openai:dall-e-2")
    assert run_cli("tasks", "prune", "--older-than", "1d", "--json").json() == {"removed": 0}
    time.sleep(1.1)
    assert run_cli("tasks", "prune", "--older-than", "1s").stdout.strip() == "removed 1 job(s)"
    assert run_cli("tasks", "list", "--json").json() == []
    assert run_cli("tasks", "prune", "--older-than", "soon").returncode == 2


def test_prune_forgets_final_and_dead_jobs_but_keeps_live_or_resumable_ones(tmp_path: Path) -> None:
    from imagegen_cli.store.journal import Journal, TaskRow

    with Journal.open(tmp_path / "journal.sqlite3") as journal:
        done, live, dead, pending = (
            journal.create_job(provider="p", model="m", dialect="d", base_url="http://127.0.0.1", request={},
                               calls=[], n=1, out_dir=str(tmp_path), output={})
            for _ in range(4)
        )  # fmt: skip
        journal.set_status(done, "succeeded")
        journal.set_status(live, "running")  # run by this process, which is alive
        journal.add_task(pending, TaskRow("remote-1", 0, 0, 1, None, "pending"))
        journal.conn.execute(  # their processes ended: their owner locks are gone
            "UPDATE jobs SET pid = 999999, pid_start = 1, owner = ? WHERE id IN (?, ?)", ("f" * 32, dead, pending)
        )
        journal.set_status(dead, "running")
        assert journal.prune(time.time() + 1) == 2
        assert sorted(job.id for job in journal.jobs(limit=0)) == sorted([live, pending])


def test_journal_schema_is_versioned(cli, gateway: FakeGateway) -> None:
    cli("generate", "x", "-m", "openai:dall-e-2")
    with sqlite3.connect(journal_file()) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("PRAGMA user_version = 99")
    result = run_cli("tasks", "list")
    assert result.returncode == 4 and "newer imagegen" in result.stderr


def test_tasks_list_and_show_import_no_httpx(cli, gateway: FakeGateway) -> None:
    job_id = cli("generate", "x", "-m", "openai:dall-e-2", "--json").json()["job"]
    heavy, (listing, shown) = heavy_imports(["tasks", "list", "--json"], ["tasks", "show", job_id])
    assert heavy == [] and job_id in listing and job_id in shown


# ---------------------------------------------------------------- Token360 image records
def test_records_list_get_rm(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    cli("generate", "koi", "-m", "token360:seedream-4.5", "-n", "3", "--size", "320x200")
    env = gateway_env(gateway)
    first_page = run_cli("tasks", "records", "list", "--limit", "2", "--json", env=env).json()
    assert len(first_page) == 2
    everything = run_cli("tasks", "records", "list", "--limit", "2", "--all", "--json", env=env).json()
    assert len(everything) == 3 and len({r["id"] for r in everything}) == 3
    record_ids = [r["id"] for r in everything]
    before = len(gateway.image_requests)
    for via, record_id in zip(("redirect", "url", "binary"), record_ids, strict=True):
        got = run_cli("tasks", "records", "get", record_id, "--via", via, "-o", str(tmp_path / "rec"), env=env)
        assert got.returncode == 0, got.stderr
        assert Image.open(got.lines[0]).size == (320, 200)
    cdn = gateway.image_requests[before:]
    assert len(cdn) == 2 and all("Authorization" not in r.headers for r in cdn)  # redirect and url forms
    refused = run_cli("tasks", "records", "rm", record_ids[0], env=env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    removed = run_cli("tasks", "records", "rm", record_ids[0], "--yes", env=env)
    assert removed.returncode == 0
    assert len(run_cli("tasks", "records", "list", "--all", "--json", env=env).json()) == 2
    missing = run_cli("tasks", "records", "get", record_ids[0], "-o", str(tmp_path / "rec"), env=env)
    assert missing.returncode == 1 and "Image not found" in missing.stderr
    assert run_cli("tasks", "records", "list", "--provider", "openai", env=env).returncode == 2


def test_records_get_sends_its_own_accept_header(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    cli("generate", "koi", "-m", "token360:seedream-4.5", "--size", "320x200")
    record_id = gateway.records[0]["id"]
    got = run_cli(
        "tasks", "records", "get", record_id, "--via", "binary", "-o", str(tmp_path / "rec"), env=gateway_env(gateway)
    )
    assert got.returncode == 0, got.stderr
    (content,) = [r for r in gateway.requests if r.path.split("?")[0].endswith(f"/{record_id}/content")]
    headers = {name.lower(): value for name, value in content.headers.items()}
    assert headers["accept"] == "*/*"  # the image itself, not the JSON that calls with a body ask for
    assert "content-type" not in headers and headers["authorization"] == f"Bearer {TEST_KEY}"


def test_records_get_reports_a_malformed_data_url(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    cli("generate", "koi", "-m", "token360:seedream-4.5", "--size", "320x200")
    record_id = gateway.records[0]["id"]
    for payload in ("abcde", "****AAAA"):  # bad padding; characters outside the alphabet
        gateway.fault("records", "status", status=200, body=b'{"url": "data:image/png;base64,%s"}' % payload.encode())
        got = run_cli(
            "tasks", "records", "get", record_id, "--via", "url", "-o", str(tmp_path / "rec"), env=gateway_env(gateway)
        )
        assert got.returncode == 1, got.stderr
        errors = [line for line in got.stderr.splitlines() if line.startswith("error:")]
        assert errors == [f"error: token360: record {record_id} has invalid base64 data"], payload


def test_wait_on_two_jobs_polls_both_at_once_within_one_timeout(cli, gateway: FakeGateway) -> None:
    """`tasks wait A B` is one run: each task here finishes only once the other has been polled, which jobs resumed
    one after another (A polled until its own --timeout, then B) can never satisfy."""
    gateway.task_polls = 10_000
    first = cli("generate", "a", "-m", "apimart:z-image-turbo", "--no-wait").lines[0]
    second = cli("generate", "b", "-m", "apimart:z-image-turbo", "--no-wait").lines[0]
    original = gateway._poll

    def poll(handler, task_id: str) -> None:
        with gateway.lock:
            task = gateway.tasks[task_id]
            others = [t for t in gateway.tasks.values() if t.id != task_id]
            # Pending until every other task has been asked about at least once.
            task.polls_left = task.polls + 1 if any(t.polls == 0 for t in others) else 0
        original(handler, task_id)

    gateway._poll = poll  # type: ignore[method-assign]
    waited = run_cli("tasks", "wait", first, second, "--timeout", "20", "--json", env=gateway_env(gateway))
    assert waited.returncode == 0, waited.stderr
    documents = waited.json()  # one document per job, a list for several ids
    assert [d["status"] for d in documents] == ["succeeded", "succeeded"], documents
    assert [d["job"] for d in documents] == [first, second] and all(len(d["images"]) == 1 for d in documents)


def test_one_task_id_answered_for_two_calls_is_saved_once(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault("generate", "task_id", body=b"task_dup", times=2)
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "-n", "2", "--seed", "5", "--json")
    assert len(gateway.calls("apimart")) == 2
    assert result.returncode == 3, result.stderr  # partial: one image, not the same image twice
    doc = result.json()
    assert len(doc["images"]) == 1 and len(list((tmp_path / "out").iterdir())) == 1
    assert "answered task id task_dup for two calls" in result.stderr
