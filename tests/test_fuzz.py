"""Fuzzing with hypothesis: random flags through the planners, random JSON through every parser.

Whatever comes in, only the project's own errors may come out (they carry the message and exit code).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegen_cli.errors import ImagegenError
from imagegen_cli.providers.dialects import parse_images_response, parse_submit_response, parse_task_status
from imagegen_cli.providers.http import error_message
from imagegen_cli.providers.planning import build_plan
from imagegen_cli.providers.profiles import BUILTIN_PROFILES
from imagegen_cli.providers.registry import ResolvedProvider
from imagegen_cli.request import GenerationRequest, Ratio, Size, parse_param
from imagegen_cli.store.naming import render_name

EXAMPLES = 300
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = [(name, model) for name, profile in BUILTIN_PROFILES.items() for model in [*profile.models, "unknown-x"]]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
# Shapes close to real answers find deeper paths than pure noise.
image_items = st.lists(
    st.dictionaries(
        st.sampled_from(["url", "b64_json", "revised_prompt", "expires_at"]),
        json_values | st.lists(st.text(max_size=10), max_size=3),
        max_size=4,
    ),
    max_size=3,
)
answers = (
    json_values
    | st.fixed_dictionaries({"data": image_items | json_values}, optional={"usage": json_values})
    | st.fixed_dictionaries(
        {
            "code": st.integers(0, 600) | st.text(max_size=3),
            "data": json_values
            | st.fixed_dictionaries(
                {
                    "status": st.sampled_from(["completed", "failed", "pending", "cancelled", "weird"]),
                    "result": st.fixed_dictionaries({"images": image_items}) | json_values,
                },
                optional={"error": json_values, "progress": json_values, "id": json_values},
            ),
        }
    )
)


@FUZZ
@given(answers)
def test_response_parsers_raise_only_project_errors(data: Any) -> None:
    for parse in (
        lambda d: parse_images_response(d, "p"),
        lambda d: parse_submit_response(d, "p"),
        lambda d: parse_task_status(d, "p", "t1"),
    ):
        try:
            parse(data)
        except ImagegenError:
            pass


@FUZZ
@given(
    st.binary(max_size=400) | st.text(max_size=400).map(str.encode) | json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(["", "application/json", "text/html"]),
)
def test_error_message_is_always_one_clean_line(body: bytes, content_type: str) -> None:
    text = error_message(body, content_type)
    assert isinstance(text, str) and text
    assert "\n" not in text and "\x1b" not in text and len(text) <= 300


sizes = st.builds(lambda w, h: f"{w}x{h}", st.integers(1, 5000), st.integers(1, 5000))
ratios = st.builds(lambda w, h: f"{w}:{h}", st.integers(1, 30), st.integers(1, 30))


@FUZZ
@given(
    st.sampled_from(MODELS),
    st.fixed_dictionaries(
        {},
        optional={
            "n": st.integers(-2, 120),
            "size": sizes | st.text(max_size=8),
            "ratio": ratios | st.text(max_size=6),
            "resolution": st.sampled_from(["1K", "2K", "4K"]),
            "seed": st.integers(-5, 2**40),
            "quality": st.sampled_from(["standard", "hd", "low", "medium", "high", "auto", "ultra"]),
            "style": st.sampled_from(["vivid", "natural", "odd"]),
            "negative_prompt": st.text(max_size=20),
            "steps": st.integers(-1, 200),
            "guidance": st.floats(-5, 50),
            "response_format": st.sampled_from(["url", "b64_json", "png"]),
            "user": st.text(max_size=8),
            "on_behalf_of": st.text(max_size=8),
            "strict": st.booleans(),
            "params": st.lists(st.text(max_size=12), max_size=3),
        },
    ),
    st.text(max_size=1200),
)
def test_planner_raises_only_usage_errors(model: tuple[str, str], flags: dict[str, Any], prompt: str) -> None:
    provider, model_id = model
    profile = BUILTIN_PROFILES[provider]
    resolved = ResolvedProvider(profile, model_id, profile.caps_for(model_id), profile.base_url, "sk-x", None)
    try:
        values = dict(flags)
        if "size" in values:
            values["size"] = Size.parse(values["size"])
        if "ratio" in values:
            values["ratio"] = Ratio.parse(values["ratio"])
        values["params"] = tuple(parse_param(p) for p in values.get("params", []))
        request = GenerationRequest(prompt=prompt, provider=provider, model=model_id, **values)
        plan = build_plan(request, resolved)
    except ImagegenError as exc:
        assert exc.exit_code == 2
        return
    assert sum(call.count for call in plan.calls) == request.n
    assert all(call.body["prompt"] == prompt for call in plan.calls)


@FUZZ
@given(
    st.sampled_from([("local", "tiny"), ("local", "sd-turbo"), ("local", "z-image-turbo")]),
    st.fixed_dictionaries(
        {},
        optional={
            "n": st.integers(1, 20),
            "size": sizes,
            "ratio": ratios,
            "resolution": st.sampled_from(["1K", "2K", "4K"]),
            "quality": st.sampled_from(["standard", "hd", "low", "high"]),
            "steps": st.integers(1, 60),
            "seed": st.integers(0, 2**40),
            "style": st.sampled_from(["vivid", "natural"]),
            "strict": st.booleans(),
        },
    ),
)
def test_local_planner_raises_only_usage_errors(model: tuple[str, str], flags: dict[str, Any]) -> None:
    from imagegen_cli.local.planning import LocalOptions, build_local_plan, resolve_source

    try:
        values = dict(flags)
        if "size" in values:
            values["size"] = Size.parse(values["size"])
        if "ratio" in values:
            values["ratio"] = Ratio.parse(values["ratio"])
        request = GenerationRequest(prompt="x", provider="local", model=model[1], **values)
        plan = build_local_plan(request, resolve_source(model[1]), LocalOptions(device="cpu"))
    except ImagegenError as exc:
        assert exc.exit_code == 2
        return
    seeds = [s for batch in plan.batches for s in batch.seeds]
    assert len(seeds) == request.n and seeds == list(range(seeds[0], seeds[0] + request.n))
    assert plan.width is None or plan.width % 8 == 0


@FUZZ
@given(st.text(max_size=3000), st.text(max_size=40), st.integers(0, 2**40) | st.none())
def test_file_names_are_always_safe(prompt: str, model: str, seed: int | None) -> None:
    from datetime import datetime

    name = render_name(
        "{datetime}-{slug}-{seed}-{model}-{index}.{ext}",
        ext="png",
        when=datetime(2026, 1, 1),
        prompt=prompt,
        index=1,
        n=1,
        seed=seed,
        provider="p",
        model=model,
    )
    assert name.endswith(".png") and len(name) <= 180 and not name.startswith(".")
    assert not any(ch in name for ch in "/\\\x00\x1b\u202e")


def test_non_finite_numbers_from_json() -> None:
    # json.loads turns Infinity and NaN into floats: a progress or expiry of that kind is ignored.
    data = json.loads('{"code": 200, "data": {"status": "processing", "progress": Infinity}}')
    assert parse_task_status(data, "p", "t").progress is None
    done = json.loads(
        '{"code": 200, "data": {"status": "completed", "result": {"images": '
        '[{"url": "https://x/y.png", "expires_at": NaN}]}}}'
    )
    assert parse_task_status(done, "p", "t").images[0].expires_at is None
