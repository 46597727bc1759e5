"""`modelyard experiments ...`: list, create, delete, restore and rename experiments."""

from __future__ import annotations

import click

from modelyard.cli.common import (
    DIM,
    ID_STYLE,
    State,
    err,
    esc,
    fmt_time,
    json_option,
    new_table,
    out,
    parse_key_values,
    pass_state,
    print_json,
    resolve_experiment,
)


@click.group("experiments")
def experiments() -> None:
    """Create and manage experiments, the folders that group runs.

    \b
    Example:
      modelyard experiments create churn --tag team=growth
      modelyard experiments list
    """


@experiments.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include deleted experiments.")
@click.option("--deleted", "only_deleted", is_flag=True, help="Show only deleted experiments.")
@json_option
@pass_state
def list_experiments(state: State, show_all: bool, only_deleted: bool, as_json: bool) -> None:
    """List experiments.

    Active ones only, unless --all or --deleted.

    \b
    Example:
      modelyard experiments list --all
    """
    if show_all and only_deleted:
        raise click.BadParameter("use either --all or --deleted, not both", param_hint="--all/--deleted")
    view = "ALL" if show_all else "DELETED_ONLY" if only_deleted else "ACTIVE_ONLY"
    found = state.client.search_experiments(view_type=view)
    if as_json:
        print_json(found)
        return
    if not found:
        err().print("No experiments." if only_deleted else "No experiments yet. Try: modelyard quickstart")
        return
    table = new_table("ID", "Name", "Artifact location", "Created", "Tags")
    for column in table.columns:
        column.no_wrap = True
    table.columns[0].style = ID_STYLE
    table.columns[2].overflow = "fold"
    table.columns[2].no_wrap = False
    if show_all:
        table.add_column("Stage")
    for exp in found:
        tags = ", ".join(f"{k}={v}" for k, v in sorted(exp.tags.items()))
        row = [
            exp.experiment_id,
            esc(exp.name),
            esc(exp.artifact_location),
            fmt_time(exp.creation_time, short=True),
            esc(tags),
        ]
        if show_all:
            stage = exp.lifecycle_stage.value
            row.append(f"[red]{stage}[/]" if stage == "deleted" else stage)
        table.add_row(*row)
    out().print(table)


@experiments.command("create")
@click.argument("name")
@click.option(
    "--artifact-location",
    metavar="URI",
    help="Where its runs' artifacts go (a folder, s3://... or gs://...).",
)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag to set; repeat for more.")
@pass_state
def create_experiment(state: State, name: str, artifact_location: str | None, tags: tuple[str, ...]) -> None:
    """Create an experiment and print its id.

    \b
    Example:
      modelyard experiments create churn --tag team=growth --artifact-location s3://ml/churn
    """
    tag_dict = parse_key_values(tags, "--tag")
    experiment_id = state.client.create_experiment(name, artifact_location=artifact_location, tags=tag_dict)
    exp = state.client.get_experiment(experiment_id)
    out().print(f"Created experiment [bold]{esc(exp.name)}[/] with id [{ID_STYLE}]{experiment_id}[/]")
    out().print(f"[{DIM}]Artifacts go to {esc(exp.artifact_location)}[/]", soft_wrap=True)


@experiments.command("delete")
@click.argument("id_or_name")
@pass_state
def delete_experiment(state: State, id_or_name: str) -> None:
    """Delete an experiment and its runs.

    They can be restored until `modelyard gc` purges them.

    \b
    Example:
      modelyard experiments delete churn
    """
    exp = resolve_experiment(state.client, id_or_name)
    state.client.delete_experiment(exp.experiment_id)
    out().print(
        f"Deleted experiment [bold]{esc(exp.name)}[/] ([{ID_STYLE}]{exp.experiment_id}[/]) and its runs."
    )
    out().print(
        f"[{DIM}]Undo with: modelyard experiments restore {exp.experiment_id}; "
        "purge for good with: modelyard gc[/]"
    )


@experiments.command("restore")
@click.argument("id_or_name")
@pass_state
def restore_experiment(state: State, id_or_name: str) -> None:
    """Restore a deleted experiment and its runs.

    The runs deleted together with the experiment come back with it.

    \b
    Example:
      modelyard experiments restore churn
    """
    exp = resolve_experiment(state.client, id_or_name)
    state.client.restore_experiment(exp.experiment_id)
    out().print(f"Restored experiment [bold]{esc(exp.name)}[/] ([{ID_STYLE}]{exp.experiment_id}[/]).")


@experiments.command("rename")
@click.argument("id_or_name")
@click.argument("new_name")
@pass_state
def rename_experiment(state: State, id_or_name: str, new_name: str) -> None:
    """Rename an experiment.

    Its id and runs stay the same.

    \b
    Example:
      modelyard experiments rename churn churn-2024
    """
    exp = resolve_experiment(state.client, id_or_name)
    state.client.rename_experiment(exp.experiment_id, new_name)
    out().print(
        f"Renamed experiment [{ID_STYLE}]{exp.experiment_id}[/] from [bold]{esc(exp.name)}[/] to [bold]{esc(new_name)}[/]."
    )
