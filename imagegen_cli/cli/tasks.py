"""``imagegen tasks``: the journal of generation jobs, resuming, cancelling, pruning, and remote records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from imagegen_cli.cli.options import JsonOpt, QuietOpt, YesOpt
from imagegen_cli.cli.render import Output, report_errors
from imagegen_cli.errors import ExitCode, UsageError, clean_text

if TYPE_CHECKING:
    from imagegen_cli.settings import Settings

tasks_app = typer.Typer(
    help="The journal of generation jobs: list, show, wait for, cancel and prune them.\n\n"
    "Example: imagegen tasks wait 1m80bnk3kgjv",
)


def _complete_ids(incomplete: str) -> list[str]:
    from imagegen_cli.store.journal import Journal, journal_path

    if not journal_path().exists():
        return []
    with Journal.open() as journal:
        return journal.task_ids(incomplete)


IdsArg = Annotated[
    list[str], typer.Argument(metavar="ID...", help="Local job ids (or remote task ids).", autocompletion=_complete_ids)
]
IdArg = Annotated[
    str, typer.Argument(metavar="ID", help="Local job id (or remote task id).", autocompletion=_complete_ids)
]


def _age(stamp: str) -> str:
    from datetime import datetime

    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")


@tasks_app.callback(invoke_without_command=True)
def tasks_root(ctx: typer.Context) -> None:
    """The journal of generation jobs (alone: the same as ``tasks list``)."""
    if ctx.invoked_subcommand is None:
        list_tasks(status=None, provider=None, limit=20, json_out=False)


@tasks_app.command("list")
def list_tasks(
    status: Annotated[
        str | None,
        typer.Option(
            "--status", metavar="STATUS", help="queued submitted running succeeded partial failed cancelled expired"
        ),
    ] = None,
    provider: Annotated[str | None, typer.Option("--provider", metavar="NAME", help="Only this provider.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first (0: all).")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """List journalled jobs, newest first.

    Example: imagegen tasks list --status submitted --json
    """
    output = Output(json_mode=json_out)
    with report_errors(output):
        from imagegen_cli.store.journal import JOB_STATES, Journal, journal_path

        if status and status not in JOB_STATES:
            raise UsageError(f"invalid --status {status!r}", hint="one of " + ", ".join(JOB_STATES))
        if limit < 0:
            raise UsageError(f"--limit {limit} is negative", hint="give a count, or 0 for every job")
        jobs = []
        if journal_path().exists():
            with Journal.open() as journal:
                jobs = journal.jobs(status=status, provider=provider, limit=limit)
        if json_out:
            output.json([job.to_dict() for job in jobs])
            return
        if not jobs:
            output.note("no jobs yet" if not status and not provider else "no job matches")
            return
        rows = [("JOB", "CREATED", "STATUS", "SAVED", "MODEL", "PROMPT")]
        for job in jobs:
            data = job.to_dict()
            prompt = str(job.request.get("prompt", "")).replace("\n", " ")
            prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
            rows.append(
                (
                    job.id,
                    _age(data["created_at"]),
                    job.status,
                    f"{len(job.saved)}/{job.n}",
                    f"{job.provider}:{job.model}",
                    prompt,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:  # a header row, then one aligned row a job
            output.line("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[5]]))


@tasks_app.command("show")
def show(task_id: IdArg, json_out: JsonOpt = False) -> None:
    """Show one job: its request, remote tasks, saved paths and error.

    Example: imagegen tasks show 1m80bnk3kgjv --json
    """
    output = Output(json_mode=json_out)
    with report_errors(output):
        from imagegen_cli.store.journal import Journal

        with Journal.open() as journal:
            data = journal.get(task_id).to_dict()
        if json_out:
            output.json(data)
            return
        for key in (
            "id",
            "status",
            "provider",
            "model",
            "n",
            "out_dir",
            "name_template",
            "created_at",
            "updated_at",
            "error",
        ):
            if data.get(key) is not None:
                output.line(f"{key + ':':<15}{clean_text(str(data[key]), 2000)}")
        output.line(f"{'prompt:':<15}{clean_text(str(data['request'].get('prompt', '')), 2000)}")
        for task in data["tasks"]:
            # Remote ids and errors are gateway text: stripped of escapes before they reach the terminal.
            output.line(
                f"{'remote task:':<15}{clean_text(str(task['remote_id']), 200)}  {clean_text(str(task['status']), 40)}"
                + (f"  {clean_text(str(task['error']), 500)}" if task.get("error") else "")
            )
        for path in data["paths"]:
            output.line(f"{'image:':<15}{path}")


@tasks_app.command("wait")
def wait(
    task_ids: IdsArg,
    timeout: Annotated[
        float | None, typer.Option("--timeout", metavar="SECONDS", help="Overall bound [default: config timeout, 300].")
    ] = None,
    out: Annotated[
        str | None, typer.Option("-o", "--out", metavar="DIR", help="Save here instead of the job's own output dir.")
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Resume jobs: poll their tasks and save the images not saved yet (never twice).

    Prints every saved image path of the jobs; with --json one document per job (a list for several ids).

    Example: imagegen tasks wait 1m80bnk3kgjv -o out/
    """
    output = Output(json_mode=json_out, quiet=quiet)
    with report_errors(output):
        from imagegen_cli import api

        run = api.resume(task_ids, out_dir=out, timeout=timeout, sink=output.sink(batch=False))
        if json_out:
            documents = [job.document() for job in run.jobs]
            output.json(documents[0] if len(documents) == 1 else documents)
            for job in run.jobs:
                for error in job.errors:
                    output.error(error)
        else:
            output.run_result(run, batch=False)
        code = run.exit_code()
        if code != ExitCode.OK:
            raise typer.Exit(int(code))


@tasks_app.command("cancel")
def cancel(task_ids: IdsArg) -> None:
    """Stop tracking jobs, and ask the provider to cancel their pending tasks where it can.

    Example: imagegen tasks cancel 1m80bnk3kgjv
    """
    output = Output()
    with report_errors(output):
        from imagegen_cli import api

        cancelled, notes = api.cancel(task_ids)
        for note in notes:
            output.note(note)
        for job_id in cancelled:
            output.line(job_id)


@tasks_app.command("prune")
def prune(
    older_than: Annotated[str, typer.Option("--older-than", metavar="AGE", help="30d, 12h, 90m, 2w.")] = "30d",
    json_out: JsonOpt = False,
) -> None:
    """Forget finished jobs older than AGE (open ones are kept; image files are never touched).

    Example: imagegen tasks prune --older-than 7d
    """
    output = Output(json_mode=json_out)
    with report_errors(output):
        from imagegen_cli import api

        removed = api.prune(older_than)
        if json_out:
            output.json({"removed": removed})
        else:
            output.line(f"removed {removed} job(s)")


def _records_provider(provider: str, settings: Settings | None = None) -> Any:
    from imagegen_cli.providers.registry import resolve_provider
    from imagegen_cli.settings import load_settings

    profiles = (settings or load_settings()).profiles()
    if provider not in profiles:
        raise UsageError(f"unknown provider {provider!r}")
    resolved = resolve_provider(profiles, provider, None, None)
    if not resolved.profile.records_path:
        with_records = sorted(name for name, p in profiles.items() if p.records_path)
        raise UsageError(
            f"{provider} keeps no image records", hint="providers with records: " + ", ".join(with_records)
        )
    resolved.check_transport()
    resolved.require_key()
    return resolved


records_app = typer.Typer(
    help="Provider-side image records (Token360's images API): list, download, delete.\n\n"
    "Example: imagegen tasks records list --provider token360",
    no_args_is_help=True,
)
tasks_app.add_typer(records_app, name="records")
RecordsProvider = Annotated[str, typer.Option("--provider", metavar="NAME", help="Provider with records.")]
RecordsTimeout = Annotated[
    float, typer.Option("--timeout", metavar="SECONDS", min=0.1, help="Overall bound for the gateway's answers.")
]


@records_app.command("list")
def records_list(
    provider: RecordsProvider = "token360",
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="Records per page (1-100).")] = 20,
    after: Annotated[str | None, typer.Option("--after", metavar="ID", help="Page after this record.")] = None,
    before: Annotated[str | None, typer.Option("--before", metavar="ID", help="Page before this record.")] = None,
    order: Annotated[str, typer.Option("--order", metavar="desc|asc", help="Creation order.")] = "desc",
    all_pages: Annotated[bool, typer.Option("--all", help="Follow has_more through every page.")] = False,
    timeout: RecordsTimeout = 120.0,
    json_out: JsonOpt = False,
) -> None:
    """List the provider's image records.

    Example: imagegen tasks records list --provider token360 --limit 50 --all --json
    """
    output = Output(json_mode=json_out)
    with report_errors(output):
        from imagegen_cli.providers.records import list_records

        if order not in ("desc", "asc"):
            raise UsageError("--order must be desc or asc")
        resolved = _records_provider(provider)
        array = output.json_array() if json_out else None

        def show(page: list[dict[str, Any]]) -> None:
            for record in page:
                if array is not None:
                    array.add(record)
                    continue
                # Every field is gateway text: no escape sequence of it may reach the terminal.
                output.line(
                    f"{clean_text(str(record.get('id')), 100)}  {clean_text(str(record.get('status', '?')), 20):<9}  "
                    f"{clean_text(str(record.get('model') or ''), 100)}  "
                    f"{clean_text(str(record.get('prompt') or ''), 50)}"
                )

        # Each page is printed as it comes (``--all`` may read a thousand of them), none is kept.
        list_records(
            resolved,
            limit=limit,
            after=after,
            before=before,
            order=order,
            all_pages=all_pages,
            on_page=show,
            timeout=timeout,
        )
        if array is not None:
            array.close()


@records_app.command("get")
def records_get(
    record_id: Annotated[str, typer.Argument(metavar="ID", help="Image record id.")],
    provider: RecordsProvider = "token360",
    out: Annotated[str | None, typer.Option("-o", "--out", metavar="PATH", help="Directory or file name.")] = None,
    via: Annotated[
        str, typer.Option("--via", metavar="redirect|url|binary", help="How the gateway hands the image over.")
    ] = "redirect",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Allow replacing the file named by -o.")] = False,
    timeout: RecordsTimeout = 120.0,
    json_out: JsonOpt = False,
) -> None:
    """Download one image record (saved atomically, never over an existing file).

    Example: imagegen tasks records get img_123 -o out/
    """
    output = Output(json_mode=json_out)
    with report_errors(output):
        from imagegen_cli.backends.records_get import download_record
        from imagegen_cli.settings import load_settings

        if via not in ("redirect", "url", "binary"):
            raise UsageError("--via must be redirect, url or binary")
        settings = load_settings()
        saved = download_record(
            _records_provider(provider, settings),
            record_id,
            out=out,
            via=via,
            overwrite=overwrite,
            default_dir=settings.output_dir,
            timeout=timeout,
        )
        if json_out:
            output.json({"id": record_id, "path": saved.path, "width": saved.width, "height": saved.height})
        else:
            output.line(saved.path)


@records_app.command("rm")
def records_rm(
    record_id: Annotated[str, typer.Argument(metavar="ID", help="Image record id.")],
    provider: RecordsProvider = "token360",
    yes: YesOpt = False,
    timeout: RecordsTimeout = 120.0,
) -> None:
    """Delete one image record at the provider (asks first unless --yes).

    Example: imagegen tasks records rm img_123 --yes
    """
    output = Output()
    with report_errors(output):
        import sys

        from imagegen_cli.providers.records import delete_record

        resolved = _records_provider(provider)
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("refusing to delete without confirmation", hint="pass --yes")
            if not typer.confirm(f"Delete image record {record_id} at {provider}?", err=True):
                raise typer.Exit(int(ExitCode.FAILURE))
        delete_record(resolved, record_id, timeout)
        output.line(record_id)
