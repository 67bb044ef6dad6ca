"""``tasks records list --all`` streams: each page is printed before the next is asked for (issue 20 item 13)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imagegen_cli.cli.render import Output
from tests.conftest import gateway_env, run_cli
from tests.fakegateway import FakeGateway

IDS = [f"img_{n:02d}" for n in range(7)]  # 7 records, pages of 2: 4 pages


def listing_requests(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, events: list[str], fail_at: int = 0
) -> None:
    """Note each page request in ``events``; the ``fail_at``-th one (1-based) is refused with a 400."""
    gateway.records.extend({"id": i, "status": "completed", "model": "m", "prompt": f"p {i}"} for i in IDS)
    real = gateway._records

    def records(handler: Any, method: str, rest: str) -> None:
        if method == "GET" and rest.split("?", maxsplit=1)[0].strip("/") == "images":
            events.append("request")
            if events.count("request") == fail_at:
                handler._send_json(400, {"error": {"message": "bad cursor", "type": "invalid_request_error"}})
                return
        real(handler, method, rest)

    monkeypatch.setattr(gateway, "_records", records)


def printed(monkeypatch: pytest.MonkeyPatch, events: list[str]) -> None:
    """Note in ``events`` every piece of stdout the CLI writes."""
    real = Output.write

    def write(self: Output, text: str) -> None:
        events.append(text)
        real(self, text)

    monkeypatch.setattr(Output, "write", write)


@pytest.mark.parametrize("json_out", [False, True], ids=["lines", "json"])
def test_records_list_all_prints_each_page_before_asking_for_the_next(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, json_out: bool
) -> None:
    events: list[str] = []
    listing_requests(gateway, monkeypatch, events)
    printed(monkeypatch, events)
    args = ["tasks", "records", "list", "--limit", "2", "--all", "--order", "asc"] + (["--json"] if json_out else [])
    result = run_cli(*args, env=gateway_env(gateway))
    assert result.returncode == 0, result.stderr
    assert events.count("request") == 4
    # Record n belongs to page n // 2 + 1: it is printed after that page's request and before the next one.
    for n, record_id in enumerate(IDS):
        first = next(k for k, e in enumerate(events) if e != "request" and record_id in e)
        assert events[:first].count("request") == n // 2 + 1, (record_id, events)
    if json_out:
        assert [r["id"] for r in json.loads(result.stdout)] == IDS  # still one valid JSON array
    else:
        assert [line.split()[0] for line in result.stdout.splitlines()] == IDS


@pytest.mark.parametrize("json_out", [False, True], ids=["lines", "json"])
def test_records_list_all_keeps_the_pages_read_when_a_later_one_fails(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, json_out: bool
) -> None:
    events: list[str] = []
    listing_requests(gateway, monkeypatch, events, fail_at=3)
    args = ["tasks", "records", "list", "--limit", "2", "--all", "--order", "asc"] + (["--json"] if json_out else [])
    result = run_cli(*args, env=gateway_env(gateway))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad cursor" in errors[0], result.stderr
    assert all(i in result.stdout for i in IDS[:4]) and not any(i in result.stdout for i in IDS[4:])
    if json_out:
        # The array is left open: no JSON parser takes the pages read for the whole listing.
        assert result.stdout.lstrip().startswith("[")
        with pytest.raises(json.JSONDecodeError):
            json.loads(result.stdout)


def test_list_records_hands_over_pages_and_keeps_none(gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagegen_cli.providers.records import list_records
    from imagegen_cli.providers.registry import resolve_provider
    from imagegen_cli.settings import load_settings

    events: list[str] = []
    listing_requests(gateway, monkeypatch, events)
    for name, value in gateway_env(gateway).items():
        monkeypatch.setenv(name, value)
    provider = resolve_provider(load_settings().profiles(), "token360", None, None)
    pages: list[tuple[int, list[str]]] = []
    count = list_records(
        provider,
        limit=2,
        after=None,
        before=None,
        order="asc",
        all_pages=True,
        on_page=lambda page: pages.append((events.count("request"), [r["id"] for r in page])),
    )
    assert count == 7  # a count, not the records: the caller keeps what it wants of each page
    assert pages == [(1, IDS[0:2]), (2, IDS[2:4]), (3, IDS[4:6]), (4, IDS[6:])]
