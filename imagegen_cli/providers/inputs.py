"""Input images on a gateway call: which models take them, and how each sends them (``ImageInputs``).

Checked before anything is sent: a model that takes no image, too many images, a mask where none is taken, a
URL where the model needs the bytes, a file above the model's byte limit. An ``edits`` model gets a multipart
body (each image a file; the mask converted to OpenAI's rule, transparent where the image changes); a ``field``
model gets the images in one JSON field, a URL as given and a local file as a ``data:`` URI. Either way the bytes
go only in the call to the provider's own URL: no upload anywhere else.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import UsageError
from imagegen_cli.inputs import check_input_limit
from imagegen_cli.providers.calls import FilePart, HttpCall, MultipartPayload

if TYPE_CHECKING:
    from imagegen_cli.inputs import SourceImage
    from imagegen_cli.providers.registry import ResolvedProvider
    from imagegen_cli.request import GenerationRequest, Notes


@dataclass(frozen=True)
class Upload:
    """One local input sent ahead of the generation call (apimart); the body names it by ``placeholder``."""

    sha256: str
    name: str
    http: HttpCall

    @property
    def placeholder(self) -> str:
        return upload_placeholder(self.sha256)


def upload_placeholder(sha256: str) -> str:
    """What the planned body holds where an upload's URL goes (the dry run shows it; the run replaces it)."""
    return f"<url of upload {sha256}>"


def inline_placeholder(sha256: str) -> str:
    """What the planned body holds where a file's ``data:`` URI goes: the file is read (and checked) when sent."""
    return f"<data: URI of {sha256}>"


@dataclass(frozen=True)
class InputPlan:
    """The input images of a planned call: files for a multipart edit, JSON fields, or uploads first."""

    path: str | None  # the endpoint (edits); None: the generation path
    files: tuple[FilePart, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)
    uploads: tuple[Upload, ...] = ()
    inlines: tuple[SourceImage, ...] = ()  # files sent as data: URIs, read when the call goes out

    def multipart(self, body: dict[str, Any]) -> MultipartPayload:
        """``body`` as multipart text fields (numbers and booleans as JSON text), with the files."""
        merged = {**body, **self.fields}
        texts = tuple((name, value if isinstance(value, str) else json.dumps(value)) for name, value in merged.items())
        return MultipartPayload(fields=texts, files=self.files)


def takers(provider: ResolvedProvider) -> list[str]:
    """``provider:model`` of every built-in model that takes an input image (for the refusal's hint)."""
    from imagegen_cli.providers.profiles import BUILTIN_PROFILES

    refs = [
        f"{name}:{caps.id}"
        for name, profile in BUILTIN_PROFILES.items()
        for caps in profile.models.values()
        if caps.image_inputs is not None and not caps.retired
    ]
    # The provider's own first, then one of each other provider's, then local: a short, varied hint.
    own = [ref for ref in refs if ref.startswith(f"{provider.name}:")][:3]
    others = {ref.partition(":")[0]: ref for ref in reversed(refs) if not ref.startswith(f"{provider.name}:")}
    return [*own, *reversed(others.values()), "local:MODEL (img2img, inpainting)"]


def plan_inputs(request: GenerationRequest, provider: ResolvedProvider, where: str, notes: Notes) -> InputPlan | None:
    """How ``request``'s ``--image``/``--mask`` go to ``provider``; None when there are none. Raises UsageError."""
    if not request.images:
        return None
    ways = provider.caps.image_inputs
    if ways is None:
        shown = takers(provider)
        raise UsageError(
            f"{where} takes no input image (--image)",
            hint="models that do: " + ", ".join(shown) + " (see imagegen models)",
        )
    images, mask = request.images, request.mask
    if len(images) > ways.max_images:
        raise UsageError(
            f"{len(images)} --image inputs; {where} takes at most {ways.max_images}", hint="give fewer images"
        )
    if mask is not None and not ways.mask:
        raise UsageError(f"{where} takes no --mask", hint="drop --mask, or use a model that inpaints")
    if request.strength is not None:
        notes.dropped("--strength", where, "local models only; not taken")
    if request.input_fidelity is not None:
        if not ways.input_fidelities:
            notes.dropped("--input-fidelity", where)
        elif request.input_fidelity not in ways.input_fidelities:
            raise UsageError(
                f"--input-fidelity {request.input_fidelity} is not accepted by {where}",
                hint="accepted: " + ", ".join(ways.input_fidelities),
            )
    if not ways.confirmed:
        notes.info(f"{where}: the input-image field {ways.field!r} is not documented by {provider.name} (unconfirmed)")
    fidelity = (
        {"input_fidelity": request.input_fidelity}
        if request.input_fidelity and request.input_fidelity in ways.input_fidelities
        else {}
    )
    if ways.way == "upload":
        uploads: dict[str, Upload] = {}
        values = [_uploaded(image, ways.path, ways.max_bytes, where, provider, uploads) for image in images]
        fields_: dict[str, Any] = {ways.field: values, **fidelity}
        if mask is not None:
            fields_[ways.mask_field] = _uploaded(mask, ways.path, ways.mask_max_bytes, where, provider, uploads)
        return InputPlan(None, fields=fields_, uploads=tuple(uploads.values()))
    if ways.way == "field":
        values = [_as_field(image, ways.urls, ways.max_bytes, where) for image in images]
        value: Any = values if ways.as_list or len(values) > 1 else values[0]
        inlines = tuple({image.sha256: image for image in images if not image.is_url}.values())
        return InputPlan(None, fields={ways.field: value, **fidelity}, inlines=inlines)
    files = [_file("image" if len(images) == 1 else "image[]", image, ways.max_bytes, where) for image in images]
    if mask is not None:
        files.append(_mask_file(mask, images[0], ways.mask_max_bytes, where))
    return InputPlan(ways.path, files=tuple(files), fields=fidelity)


def _checked(image: SourceImage, limit: int, where: str) -> None:
    """A file within the model's byte limit (its size as checked when read: the bytes are read when sent)."""
    if image.is_url:
        raise UsageError(
            f"{where} needs the image's bytes; {image.source} is a URL",
            hint="download it first (curl -o in.png URL), then --image in.png",
        )
    check_input_limit(image.byte_size or 0, limit, image, where)


def _uploaded(
    image: SourceImage, path: str, limit: int, where: str, provider: ResolvedProvider, uploads: dict[str, Upload]
) -> str:
    """A URL as given, else the placeholder of the file's upload (one upload per distinct file)."""
    if image.is_url:
        return image.source
    _checked(image, limit, where)
    sha256 = image.sha256 or ""
    if sha256 not in uploads:
        payload = MultipartPayload(files=(FilePart("file", image.name, image.content_type, source=image),))
        uploads[sha256] = Upload(sha256, image.name, provider.call("POST", provider.url(path), payload, {}))
    return upload_placeholder(sha256)


def _file(name: str, image: SourceImage, limit: int, where: str) -> FilePart:
    _checked(image, limit, where)
    return FilePart(name, image.name, image.content_type, source=image)


def _as_field(image: SourceImage, urls: bool, limit: int, where: str) -> str:
    if image.is_url:
        if not urls:
            _checked(image, limit, where)  # raises: this model needs the bytes
        return image.source
    _checked(image, limit, where)
    return inline_placeholder(image.sha256 or "")


def data_uri(image: SourceImage) -> str:
    """The file as a ``data:`` URI (read now, and checked against its SHA-256)."""
    return f"data:{image.content_type};base64,{base64.b64encode(image.read()).decode('ascii')}"


def _mask_file(mask: SourceImage, first: SourceImage, limit: int, where: str) -> FilePart:
    """The mask as OpenAI reads one: a PNG the size of the first image, fully transparent where it changes."""
    from PIL import Image, ImageOps

    from imagegen_cli.inputs import edit_area

    _checked(mask, limit, where)
    area = edit_area(mask.decoded())
    if first.size and area.size != first.size:
        raise UsageError(
            f"--mask is {area.width}x{area.height}, the first --image {first.width}x{first.height}",
            hint="make the mask from the first image (same width and height)",
        )
    converted = Image.new("RGBA", area.size, (0, 0, 0, 255))
    converted.putalpha(ImageOps.invert(area))
    buffer = io.BytesIO()
    converted.save(buffer, format="PNG", optimize=True)
    data = buffer.getvalue()
    check_input_limit(len(data), limit, mask, where)
    return FilePart("mask", mask.name.rsplit(".", 1)[0] + ".png", "image/png", data)
