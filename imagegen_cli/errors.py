"""Error hierarchy, the exit-code enum, and secret redaction shared by every output path."""

from __future__ import annotations

import json
import re
import threading
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; scripts depend on these (see README, "Exit codes")."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    PARTIAL = 3
    AUTH = 4
    PENDING = 5
    INTERRUPTED = 130
    BROKEN_PIPE = 141  # stdout closed early (`| head -1`), as a process killed by SIGPIPE would exit
    TERMINATED = 143


class ImagegenError(Exception):
    """Base of every error the CLI reports as one line plus an optional hint."""

    exit_code: ExitCode = ExitCode.FAILURE
    code: str = "error"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(ImagegenError):
    """Bad flags or values: nothing was sent."""

    exit_code = ExitCode.USAGE
    code = "usage"


class LineErrors(UsageError):
    """Several bad lines of one prompt file, all reported (an ``error:`` line each, then one hint): nothing sent.

    The exit code is the most serious of theirs (a config error in one line is exit 4).
    """

    def __init__(self, errors: list[ImagegenError]) -> None:
        self.errors = tuple(errors)
        hint = next((e.hint for e in errors if e.hint), None)
        fix = f"fix the {len(errors)} lines above; nothing was sent"
        super().__init__(errors[0].message, hint=f"{hint} ({fix})" if hint else fix)
        self.exit_code = max((e.exit_code for e in errors), key=int)


class ConfigError(ImagegenError):
    """Missing key, unusable configuration, or a key the gateway refused."""

    exit_code = ExitCode.AUTH
    code = "config"


class AuthError(ConfigError):
    """The gateway answered 401 or 403."""

    code = "auth"


class GatewayError(ImagegenError):
    """The gateway answered with an error, or could not be reached."""

    code = "gateway"

    def __init__(self, message: str, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class InsufficientBalance(GatewayError):
    """HTTP 402: the account has no credit; never retried."""

    code = "insufficient_balance"


class InvalidResponse(GatewayError):
    """The gateway answered 2xx with something that is not a usable result."""

    code = "invalid_response"


class DownloadError(GatewayError):
    """An image could not be fetched or did not decode."""

    code = "download"


class TaskFailed(GatewayError):
    """A remote task ended failed or cancelled."""

    code = "task_failed"


class ImagesExpired(GatewayError):
    """A task's result images expired before they were fetched."""

    code = "expired"


class PendingTimeout(ImagegenError):
    """``--timeout`` ran out while remote tasks were still running."""

    exit_code = ExitCode.PENDING
    code = "timeout"


class ImageBusy(PendingTimeout):
    """Another live imagegen process is saving this image right now (exit 5: it will be there, or wait again)."""

    code = "busy"

    def __init__(self, message: str, index: int, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.index = index


class JournalBusy(ImagegenError):
    """Another process held the journal's write lock for longer than this command may wait (exit 5: run again)."""

    exit_code = ExitCode.PENDING
    code = "busy"


class SaveError(ImagegenError):
    """The output could not be written (permissions, disk full, name taken)."""

    code = "save"


# Every secret the process has loaded is registered here, so that any text leaving the process
# (stdout, stderr, files, metadata) can be scrubbed even when it came from a third-party exception.
class SecretRegistry:
    """The secrets one process has loaded, scrubbed from all its output; safe from several threads at once.

    It belongs to the process on purpose, not to a run: a key a long-lived process (a server, a notebook) loaded
    for one job must stay redacted in every later output of that process, whichever run prints it.
    """

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()  # longest first; replaced whole, so readers never see it half-built
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        with self._lock:
            if value not in self._secrets:
                self._secrets = tuple(sorted({*self._secrets, value}, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


SECRETS = SecretRegistry()
_QUERY_SECRET = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|signature|sig)=)[^&\s\"']+")


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` removes it from any later output."""
    if not value:
        return
    # Also as it may be shown: stripped of the blanks around it, and escaped as JSON writes it.
    for form in {value, value.strip(), json.dumps(value)[1:-1]}:
        if len(form) >= 4:
            SECRETS.add(form)


def redact(text: str) -> str:
    """Replace every registered secret and key-like URL query value with a placeholder."""
    return _QUERY_SECRET.sub(r"\1***", SECRETS.scrub(text))


# Escape sequences in their 7-bit (ESC ...) and 8-bit C1 forms (CSI U+009B, OSC U+009D ... ST U+009C, and the
# other string controls DCS/SOS/PM/APC): a terminal acts on either.
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-9;?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[@-_]"
)
# Every other control (C0, DEL, C1) and the marks that reorder text (bidi embeddings, overrides, isolates, the
# implicit marks) or break lines (U+2028/9): gateway text must read on the terminal as it is.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str, limit: int = 500) -> str:
    """Make gateway-provided text safe for one terminal line: no escapes, no controls, bounded."""
    text = _ANSI.sub("", text)
    text = _CONTROL.sub(" ", text.replace("\n", " ").replace("\t", " "))
    text = re.sub(r"\s{2,}", " ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return redact(text)


def as_job_error(exc: BaseException, what: str) -> ImagegenError:
    """Any exception met while making one image, as the error recorded for it (never an "internal error")."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]  # anyio wraps a bad port in a task group: the leaf says what happened
    if isinstance(exc, ImagegenError):
        if what not in exc.message:
            exc.message = f"{what}: {exc.message}"
        return exc
    if isinstance(exc, OSError) and exc.errno is not None:
        return SaveError(
            f"cannot save {what}: {exc.strerror or exc}",
            hint="check free space and permissions of the output directory",
        )
    if isinstance(exc, RecursionError):
        return DownloadError(f"{what}: the answer is nested too deeply to read")
    return DownloadError(f"{what}: {type(exc).__name__}: {clean_text(str(exc), 200)}")


class DeadlineReached(Exception):
    """The run's own ``--timeout`` ran out while waiting: not one image's failure (the job says what is pending)."""
