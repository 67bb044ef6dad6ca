"""Command-line text checked before it is planned: argv that is not UTF-8 is a usage error naming the byte."""

from __future__ import annotations

from imagegen_cli.errors import UsageError


def refuse_undecodable(texts: dict[str, str | list[str] | None]) -> None:
    """Text from argv that is not UTF-8 (a Latin-1 terminal: Python keeps the bytes as lone surrogates) is a
    usage error here, before it is planned, journalled or sent (where it would fail as "cannot send")."""
    for where, value in texts.items():
        for text in [value] if isinstance(value, str) else value or []:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(
                    f"{where} is not valid UTF-8 ({first_bad_byte(text)})",
                    hint="the terminal sent it in another encoding: use a UTF-8 locale (e.g. LANG=C.UTF-8), "
                    "or save the prompt as UTF-8 and pass --prompt-file FILE",
                ) from None


def first_bad_byte(text: str) -> str:
    """``byte 0xe9 at position 0``: the first byte of the argument as it arrived that is not UTF-8."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes Python decoded argv from
        raw.decode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate"  # not from argv's decoding: no bytes to show
    except UnicodeDecodeError as exc:
        return f"byte 0x{raw[exc.start]:02x} at position {exc.start}"
    return "a lone surrogate"
