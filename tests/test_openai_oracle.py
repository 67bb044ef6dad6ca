"""The official ``openai`` package as the oracle for every body imagegen plans for OpenAI.

For every model of the OpenAI catalog and a matrix of flags, the planned request body (what
``--dry-run`` prints and what is sent) is checked key by key and value by value against the
annotations of ``openai.types.image_generate_params.ImageGenerateParamsNonStreaming``; the field
docstrings of that file (read with ``ast``) say which fields are legacy and which values are
deprecated, and ``openai.types.image_model.ImageModel`` lists the models. When a new ``openai``
release changes any of it, this test says what to update in ``providers/catalog_openai.py``.
"""

from __future__ import annotations

import ast
import inspect
import re
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
from openai.types import image_generate_params, image_model
from openai.types.image_generate_params import ImageGenerateParamsNonStreaming
from typing_extensions import is_typeddict

from imagegen_cli.errors import UsageError
from imagegen_cli.providers.planning import build_plan
from imagegen_cli.providers.profiles import OPENAI
from imagegen_cli.providers.registry import load_profiles, resolve_provider
from imagegen_cli.request import QUALITIES, GenerationRequest, Ratio, Size, parse_param

HINTS = get_type_hints(ImageGenerateParamsNonStreaming)
GATEWAY = "https://gateway.example/v1"  # where retired models are passed through


def field_docs(module: types.ModuleType, class_name: str) -> dict[str, str]:
    """The docstring under each annotated field of a class, as the source file writes it."""
    tree = ast.parse(inspect.getsource(module))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    docs: dict[str, str] = {}
    for field, doc in zip(cls.body, cls.body[1:], strict=False):
        if isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name):
            if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant):
                docs[field.target.id] = str(doc.value.value)
    return docs


def deprecated_values(doc: str) -> set[str]:
    """The quoted values listed under a docstring's "Deprecated values:" section."""
    _, _, section = doc.partition("Deprecated values:")
    values: set[str] = set()
    for line in section.splitlines():
        if line.strip().startswith("- "):
            values.update(re.findall(r'"([^"]+)"', line.split(":", 1)[0]))
    return values


DOCS = field_docs(image_generate_params, "ImageGenerateParamsBase")
LEGACY_FIELDS = {name for name, doc in DOCS.items() if doc.lstrip().startswith(("Legacy", "Deprecated"))}
DEPRECATED = {name: deprecated_values(doc) for name, doc in DOCS.items()}
# ImageModel's docstring is the string right after the alias (ast.get_docstring reads only the module's).
MODEL_DOC = next(
    str(node.value.value)
    for node in ast.parse(inspect.getsource(image_model)).body
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
)
RETIRED_MODELS = deprecated_values(MODEL_DOC)


def conforms(value: Any, annotation: Any) -> bool:
    """Whether a JSON value is allowed by a TypedDict field annotation."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return any(conforms(value, arg) for arg in get_args(annotation))
    if origin is Literal:
        return value in get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is str:
        return isinstance(value, str)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is bool:
        return isinstance(value, bool)
    if is_typeddict(annotation):
        hints = get_type_hints(annotation)
        return isinstance(value, dict) and all(k in hints and conforms(v, hints[k]) for k, v in value.items())
    raise AssertionError(f"the oracle does not know the annotation {annotation!r}")


def test_the_oracle_reads_the_package() -> None:
    # If these fail, the openai package changed shape: the oracle itself needs a look.
    assert {"model", "prompt", "n", "size", "quality", "output_format", "safety_identifier"} <= set(HINTS)
    assert {"response_format", "style", "user"} <= LEGACY_FIELDS
    assert {"standard", "hd"} <= DEPRECATED["quality"]
    assert {"dall-e-2", "dall-e-3", "gpt-image-1"} <= RETIRED_MODELS
    assert not conforms("ultra", HINTS["quality"]) and conforms("xhigh", HINTS["quality"])
    assert not conforms(True, HINTS["n"]) and conforms(3, HINTS["n"])


def test_the_catalog_is_the_packages_model_list() -> None:
    listed = set(get_args(image_model.ImageModel))
    assert set(OPENAI.models) == listed, "update OPENAI in providers/catalog_openai.py to the ImageModel of openai"
    retired = {model for model, caps in OPENAI.models.items() if caps.retired}
    assert retired == RETIRED_MODELS
    for model in retired:
        caps = OPENAI.models[model]
        assert re.search(r"\d{4}-\d{2}-\d{2}", caps.retired or "") and caps.replacement
    assert OPENAI.default_model in listed and OPENAI.default_model not in RETIRED_MODELS


def _first_size(model: str) -> list[str]:
    caps = OPENAI.models[model]
    if caps.size_mode == "pixels":
        return ["--size", next(s for s in caps.sizes if s != "auto")]
    return ["--size", "1536x864"]


FLAG_SETS: list[list[str]] = [
    [],
    ["-n", "3"],
    ["-n", "12"],
    ["--ratio", "16:9"],
    ["--ratio", "16:9", "--resolution", "2K"],
    ["--ratio", "16:9", "--resolution", "4K"],
    ["--ratio", "1:3"],
    *(["--quality", q] for q in QUALITIES),
    ["--user", "user-7f3a"],
    ["--style", "vivid"],
    ["--response-format", "url"],
    ["--response-format", "b64_json"],
    *(["--format", f] for f in ("png", "jpeg", "webp", "gif", "svg")),
    ["--format", "gif", "--param", "frame_count=4", "--param", "frame_duration_ms=120"],
    ["--format", "svg", "-n", "2"],
    ["--format", "webp", "--param", "output_compression=60", "--param", "background=transparent"],
    ["--param", "moderation=low", "--param", "background=opaque"],
    ["--seed", "7"],
    ["--negative-prompt", "blurry"],
    ["--on-behalf-of", "someone"],
]


def plan_bodies(model: str, flags: list[str]) -> list[dict[str, Any]] | UsageError:
    """The bodies ``imagegen generate "a red fox" -m openai:MODEL FLAGS --dry-run`` prints, or its usage error."""
    args = list(flags)
    fields: dict[str, Any] = {}
    params: list[tuple[str, Any]] = []
    output_format: str | None = None
    while args:
        flag, value = args.pop(0), args.pop(0)
        name = flag.lstrip("-").replace("-", "_")
        if name == "format":
            output_format = value
        elif name == "param":
            params.append(parse_param(value))
        else:
            parse = {"n": int, "seed": int, "size": Size.parse, "ratio": Ratio.parse}.get(name, str)
            fields[name] = parse(value)
    retired = model in OPENAI.models and OPENAI.models[model].retired
    provider = resolve_provider(load_profiles({}), "openai", model, GATEWAY if retired else None)
    try:
        request = GenerationRequest(prompt="a red fox", provider="openai", model=model, params=tuple(params), **fields)
        plan = build_plan(request, provider, output_format=output_format)
    except UsageError as exc:
        return exc
    return [call.body for call in plan.calls]


@pytest.mark.parametrize("model", sorted(OPENAI.models))
def test_every_planned_body_is_valid_for_the_openai_package(model: str) -> None:
    caps = OPENAI.models[model]
    planned = 0
    for flags in [*FLAG_SETS, _first_size(model)]:
        bodies = plan_bodies(model, flags)
        if isinstance(bodies, UsageError):
            continue  # refused before anything is sent: nothing to check against the oracle
        planned += 1
        for body in bodies:
            for key, value in body.items():
                assert key in HINTS, f"{model} {flags}: {key!r} is not an ImageGenerateParams field"
                assert conforms(value, HINTS[key]), f"{model} {flags}: {key}={value!r} is not allowed"
                if not caps.retired:
                    assert key not in LEGACY_FIELDS, f"{model} {flags}: legacy field {key!r} sent"
                    assert value not in DEPRECATED.get(key, set()), f"{model} {flags}: deprecated {key}={value!r}"
            assert 1 <= body.get("n", 1) <= 10
            if body.get("output_format") == "svg":
                assert body.get("n", 1) == 1, "SVG generation requires n=1"
            if "frame_count" in body:
                assert body.get("output_format") == "gif" and 2 <= body["frame_count"] <= 16
        if flags == ["--user", "user-7f3a"]:
            field = "user" if model.startswith("dall-e") else "safety_identifier"  # DALL-E predates it
            assert all(b[field] == "user-7f3a" for b in bodies)
    assert planned >= len(FLAG_SETS) // 2, f"{model}: most of the matrix was refused"


@pytest.mark.parametrize("model", ["gpt-image-2-2026-12-01", "chatgpt-image-next", "my-litellm-painter"])
def test_unknown_model_ids_send_only_what_every_gpt_image_model_takes(model: str) -> None:
    assert model not in OPENAI.models
    for flags in FLAG_SETS:
        bodies = plan_bodies(model, flags)
        if isinstance(bodies, UsageError):
            assert flags[:2] in (["--format", "svg"], ["--format", "gif"]), (flags, bodies)
            continue
        for body in bodies:
            assert set(body) <= set(HINTS), (flags, body)
            # response_format and style are legacy; LiteLLM refuses response_format for GPT image deployments.
            assert not set(body) & {"response_format", "style"}, (flags, body)
