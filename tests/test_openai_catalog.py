"""Today's OpenAI catalog: retired models fail fast, the current default, and the plan rules per model."""

from __future__ import annotations

from typing import Any

import pytest

from imagegen_cli.errors import UsageError
from imagegen_cli.providers.planning import Plan, build_plan
from imagegen_cli.providers.registry import load_profiles, resolve_provider
from imagegen_cli.request import GenerationRequest, Ratio, Size
from tests.conftest import run_cli
from tests.fakegateway import FakeGateway


def plan(model: str, *, base_url: str | None = None, fmt: str | None = None, **fields: Any) -> Plan:
    provider = resolve_provider(load_profiles({}), "openai", model, base_url)
    fields.setdefault("prompt", "a red fox")
    return build_plan(GenerationRequest(provider="openai", model=model, **fields), provider, output_format=fmt)


@pytest.mark.parametrize(
    ("model", "date", "replacement"),
    [
        ("gpt-image-1", "2026-10-23", "gpt-image-2.5-sunburst or gpt-image-2.5-flare"),
        ("dall-e-2", "2026-05-12", "gpt-image-2.6-sunburst"),
        ("dall-e-3", "2026-05-12", "gpt-image-2.6-sunburst"),
    ],
)
def test_retired_models_fail_fast_naming_the_date_and_the_replacement(
    model: str, date: str, replacement: str, gateway: FakeGateway
) -> None:
    for args in (["--dry-run"], []):
        result = run_cli("generate", "x", "-m", f"openai:{model}", *args, env={"IMAGEGEN_OPENAI_API_KEY": "sk-x"})
        assert result.returncode == 2, result.stderr
        first = result.stderr.splitlines()[0]
        assert first.startswith(f"error: openai:{model} was ") and date in first and replacement in first
        assert "--base-url" in result.stderr  # the hint names the way out
    assert gateway.requests == []


def test_a_retired_model_passes_through_another_base_url_with_a_note(cli, gateway: FakeGateway) -> None:
    dry = run_cli(
        "generate", "x", "-m", "openai:gpt-image-1", "--dry-run", "--json", "--base-url", gateway.base_url("openai")
    )
    assert dry.returncode == 0, dry.stderr
    doc = dry.json()
    assert doc["calls"][0]["body"]["model"] == "gpt-image-1"
    assert any("shut down on 2026-10-23" in note and "sent anyway" in note for note in doc["notes"])
    # and really sent, to the gateway the environment points at (IMAGEGEN_OPENAI_BASE_URL)
    result = cli("generate", "x", "-m", "openai:gpt-image-1")
    assert result.returncode == 0, result.stderr
    assert "note: openai:gpt-image-1 was shut down on 2026-10-23" in result.stderr
    assert gateway.calls("openai")[0].body["model"] == "gpt-image-1"


def test_a_base_url_from_the_config_file_also_counts_as_elsewhere(tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[providers.openai]\nbase_url = "https://litellm.example/v1"\n')
    result = run_cli("generate", "x", "-m", "openai:dall-e-3", "--dry-run", env={"IMAGEGEN_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert "retired on 2026-05-12" in result.stderr


def test_the_default_openai_model_is_a_current_one() -> None:
    result = run_cli("generate", "x", "--provider", "openai", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    assert result.json()["calls"][0]["body"]["model"] == "gpt-image-2.6-sunburst"


def test_user_maps_to_safety_identifier_where_the_model_takes_it() -> None:
    (call,) = plan("gpt-image-2", user="u-1").calls
    assert call.body["safety_identifier"] == "u-1" and "user" not in call.body
    (call,) = plan("dall-e-2", user="u-1", base_url="https://gw.example/v1").calls
    assert call.body["user"] == "u-1" and "safety_identifier" not in call.body
    (call,) = plan("some-alias", user="u-1").calls  # unknown: the field every model accepts
    assert call.body["user"] == "u-1"


def test_xhigh_and_max_where_valid_and_mapped_elsewhere() -> None:
    assert plan("gpt-image-2.5-flare", quality="xhigh").calls[0].body["quality"] == "xhigh"
    assert plan("gpt-image-2.5-sunburst-2026-09-08", quality="max").calls[0].body["quality"] == "max"
    mapped = plan("gpt-image-2", quality="max")
    assert mapped.calls[0].body["quality"] == "high" and "--quality max → high for openai:gpt-image-2" in mapped.notes
    with pytest.raises(UsageError, match="xhigh → high") as strict:
        plan("gpt-image-2.6-flare", quality="xhigh", strict=True)
    assert "drop --strict" in (strict.value.hint or "")
    assert plan("dall-e-3", quality="max", base_url="https://gw.example/v1").calls[0].body["quality"] == "hd"


def test_gif_and_svg_are_asked_of_the_models_that_make_them() -> None:
    gif = plan("gpt-image-2.5-flare", fmt="gif", params=(("frame_count", 4), ("frame_duration_ms", 120)))
    body = gif.calls[0].body
    assert body["output_format"] == "gif" and body["frame_count"] == 4 and body["frame_duration_ms"] == 120
    svg = plan("gpt-image-2.6-sunburst", fmt="svg", n=3)
    assert [c.body["n"] for c in svg.calls] == [1, 1, 1]  # SVG generation requires n=1
    assert all(c.body["output_format"] == "svg" for c in svg.calls)
    with pytest.raises(UsageError, match="does not draw SVG") as refused:
        plan("gpt-image-2", fmt="svg")
    assert "openai:gpt-image-2.5-sunburst" in (refused.value.hint or "")
    still = plan("gpt-image-2", fmt="gif")
    assert "output_format" not in still.calls[0].body and any("one-frame GIF" in n for n in still.notes)


@pytest.mark.parametrize(
    ("model", "fmt", "params", "message"),
    [
        ("gpt-image-2.5-flare", "gif", (("frame_count", 17),), "frame_count=17 is out of range"),
        ("gpt-image-2.5-flare", "gif", (("frame_count", "4"),), "frame_count='4' is out of range"),
        ("gpt-image-2.5-flare", "png", (("frame_count", 4),), "frame_count needs --format gif"),
        ("gpt-image-2", "gif", (("frame_count", 4),), "frame_count needs --format gif"),
        ("gpt-image-2.5-flare", "gif", (("output_compression", 50),), "output_compression does not apply"),
        ("gpt-image-2", "jpeg", (("background", "transparent"),), "background=transparent needs --format png"),
    ],
)
def test_gif_and_svg_parameters_are_checked_before_sending(
    model: str, fmt: str, params: tuple[tuple[str, Any], ...], message: str
) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        plan(model, fmt=fmt, params=params)


def test_unknown_openai_models_get_no_response_format(cli, gateway: FakeGateway) -> None:
    # chatgpt-image-next stands for any id imagegen does not know: a snapshot, a LiteLLM alias.
    result = cli("generate", "x", "-m", "openai:chatgpt-image-next", "--size", "1024x1024", "--user", "u-9")
    assert result.returncode == 0, result.stderr
    (call,) = gateway.calls("openai")
    assert "response_format" not in call.body
    assert call.body["user"] == "u-9"


def test_ratio_and_tier_beyond_the_maximum_are_clamped_with_a_note() -> None:
    clamped = plan("gpt-image-2", ratio=Ratio(16, 9), resolution="4K")
    assert clamped.calls[0].body["size"] == "3840x2160"
    assert any("above the model's maximum" in n for n in clamped.notes)
    with pytest.raises(UsageError):
        plan("gpt-image-2", ratio=Ratio(16, 9), resolution="4K", strict=True)
    assert any("experimental" in n for n in plan("gpt-image-2.5-flare", size=Size(2880, 1616)).notes)


def test_the_experimental_note_names_the_threshold_in_force() -> None:
    (builtin,) = [n for n in plan("gpt-image-2.5-flare", size=Size(2880, 1616)).notes if "experimental" in n]
    assert builtin == "size 2880x1616 is above 2560x1440: experimental for openai:gpt-image-2.5-flare"
    config = {"providers": {"openai": {"models": {"gpt-image-2.5-flare": {"experimental_pixels": 2_000_000}}}}}
    provider = resolve_provider(load_profiles(config), "openai", "gpt-image-2.5-flare", None)
    request = GenerationRequest(provider="openai", model="gpt-image-2.5-flare", prompt="x", size=Size(1920, 1088))
    notes = [n for n in build_plan(request, provider).notes if "experimental" in n]
    assert notes == ["size 1920x1088 is above 2000000 pixels: experimental for openai:gpt-image-2.5-flare"]


def test_the_readme_names_every_openai_model() -> None:
    from pathlib import Path

    from imagegen_cli.providers.profiles import OPENAI

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme[readme.index("Built-in models and what they take:") :]
    table = table[: table.index("Provider notes:")]
    missing = [m for m in OPENAI.models if m not in table and m.removesuffix("-2026-09-08") not in table]
    assert not missing, f"README's model table lacks {missing}"
    assert f"| `openai` | `{OPENAI.base_url}` |" in readme and f"| `{OPENAI.default_model}` |" in readme
