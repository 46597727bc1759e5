"""`modelyard artifacts ...`: list and download the files a run logged."""

from __future__ import annotations

from pathlib import Path

import click

from modelyard.cli.common import (
    DIM,
    State,
    err,
    esc,
    fmt_size,
    json_option,
    new_table,
    out,
    pass_state,
    print_json,
)


@click.group("artifacts")
def artifacts() -> None:
    """List and download the files runs logged.

    Runs log models, figures, data and environment files as artifacts.

    \b
    Example:
      modelyard artifacts list RUN_ID
      modelyard artifacts download RUN_ID model --dest ./model
    """


@artifacts.command("list")
@click.argument("run_id")
@click.argument("path", required=False, default="")
@click.option(
    "--recursive", "-r", is_flag=True, help="List every file below PATH, not just its direct children."
)
@json_option
@pass_state
def list_artifacts(state: State, run_id: str, path: str, recursive: bool, as_json: bool) -> None:
    """List a run's artifacts.

    Lists the direct children of folder PATH (default: the top folder), or with -r every file below it.

    \b
    Example:
      modelyard artifacts list 3f2a9c0e5b7d4c1e8a6f0b2d4e6a8c0e
      modelyard artifacts list 3f2a9c0e5b7d4c1e8a6f0b2d4e6a8c0e _modelyard -r
    """
    client = state.client
    files = (
        client.artifact_store(run_id).list_recursive(path)
        if recursive
        else client.list_artifacts(run_id, path)
    )
    if as_json:
        print_json(files)
        return
    if not files:
        err().print(f"No artifacts under {path!r}." if path else "This run has no artifacts.")
        return
    table = new_table("Path", "Size")
    table.columns[0].overflow = "fold"
    table.columns[1].justify = "right"
    for info in files:
        shown = f"[bold blue]{esc(info.path)}/[/]" if info.is_dir else esc(info.path)
        table.add_row(shown, fmt_size(info.file_size))
    out().print(table)


@artifacts.command("download")
@click.argument("run_id")
@click.argument("path", required=False, default="")
@click.option(
    "--dest",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to download into (default: a new temporary folder).",
)
@pass_state
def download_artifacts(state: State, run_id: str, path: str, dest: Path | None) -> None:
    """Download artifacts and print where they are.

    Downloads the file or folder PATH (default: everything). The artifact layout is kept: PATH lands at
    DEST/PATH. Only the local path goes to stdout, so scripts can use it.

    \b
    Example:
      modelyard artifacts download 3f2a9c0e5b7d4c1e8a6f0b2d4e6a8c0e model.pkl --dest .
    """
    local = state.client.download_artifacts(run_id, path, dst_path=dest)
    err().print(f"[{DIM}]Downloaded {esc(path) or 'all artifacts'} to:[/]")
    click.echo(str(local.resolve()))
