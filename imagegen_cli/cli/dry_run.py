"""``generate --dry-run``: the requests exactly as they would be sent (key redacted), or a local plan's calls."""

from __future__ import annotations

import json
from typing import Any

from imagegen_cli.cli.render import Output

# A local plan without --seed describes its seeds as null (local.planning.LocalPlan.describe): say why.
SEED_AT_RUN_TIME = (
    "no --seed: the run draws a random seed when it starts (each image records its own); --seed N fixes it"
)


def print_dry_run(output: Output, described: list[dict[str, Any]], *, batch: bool) -> None:
    """The requests exactly as they would be sent (key redacted), or the pipeline calls of a local model."""
    for each in described:
        if each.get("provider") == "local" and "seed" in each and each["seed"] is None:
            each["notes"] = [*each["notes"], SEED_AT_RUN_TIME]
    if output.json_mode:
        output.json({"dry_run": True, "lines": described} if batch else {"dry_run": True, **described[0]})
        return
    if batch:
        for document in described:
            output.line(json.dumps(document, ensure_ascii=False))
        return
    document = described[0]
    for note in document["notes"]:
        output.note(note)
    calls = document["calls"]
    if not all("method" in call and "url" in call for call in calls):
        # Not HTTP requests (a local pipeline's calls): the plan as JSON.
        output.line(json.dumps({k: v for k, v in document.items() if k != "notes"}, indent=2, ensure_ascii=False))
        return
    for number, call in enumerate(calls, 1):
        if len(calls) > 1:
            output.line(f"# call {number} of {len(calls)}")
        output.line(f"{call['method']} {call['url']}")
        for key, value in call["headers"].items():
            output.line(f"{key}: {value}")
        output.line("")
        if "body_text" in call:
            output.line(call["body_text"])  # the exact bytes sent (UTF-8)
        elif "multipart" in call:
            output.line(json.dumps(call["multipart"], ensure_ascii=False, indent=2))
        if number < len(calls):
            output.line("")
