"""`modelyard models ...`: the model registry: register, list, show, promote, alias, gates, lineage."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from modelyard.cli.common import (
    DIM,
    ID_STYLE,
    State,
    err,
    esc,
    fmt_time,
    json_option,
    key_value_grid,
    new_table,
    out,
    parse_key_values,
    pass_state,
    print_json,
    table_console,
    tracking_uri_option,
)

if TYPE_CHECKING:
    from rich.tree import Tree

    from modelyard.registry.lineage import Lineage

STAGE_STYLES = {"Production": "green", "Staging": "yellow", "Archived": "dim", "None": ""}


def _registry(state: State):  # type: ignore[no-untyped-def]
    from modelyard.registry.client import RegistryClient

    return RegistryClient(state.tracking_uri)


def _stage(stage: str) -> str:
    style = STAGE_STYLES.get(stage, "")
    return f"[{style}]{stage}[/]" if style else stage


@click.group("models")
def models() -> None:
    """Register trained models, promote them through Staging to Production, and trace where they came from.

    A model URI is `models:/NAME/VERSION`, `models:/NAME@ALIAS`, `models:/NAME/STAGE` or `runs:/RUN_ID/PATH`.

    \b
    Example:
      modelyard models register runs:/9f0c2d.../model churn
      modelyard models gates set churn "metrics.accuracy >= 0.9" "metrics.accuracy >= champion"
      modelyard models promote churn 3 Production --archive-existing
      modelyard models lineage models:/churn/Production
    """


@models.command("list")
@click.option(
    "--filter",
    "filter_string",
    metavar="FILTER",
    help="e.g. \"name LIKE 'churn%'\" or \"tags.team = 'growth'\".",
)
@tracking_uri_option
@json_option
@pass_state
def list_models(state: State, filter_string: str | None, as_json: bool) -> None:
    """List registered models with their live versions and aliases.

    \b
    Example:
      modelyard models list --filter "tags.team = 'growth'"
    """
    found = _registry(state).search_registered_models(filter_string)
    if as_json:
        print_json(found)
        return
    if not found:
        err().print("No registered models yet. Register one with: modelyard models register RUNS_URI NAME")
        return
    table = new_table("Name", "Latest", "Production", "Staging", "Aliases", "Updated")
    for m in found:
        by_stage = {mv.stage.value: mv.version for mv in m.latest_versions}
        latest = max((mv.version for mv in m.latest_versions), default=None)
        aliases = ", ".join(f"{a}→v{v}" for a, v in m.aliases.items())
        table.add_row(
            esc(m.name),
            f"v{latest}" if latest else "",
            f"[green]v{by_stage['Production']}[/]" if "Production" in by_stage else "",
            f"[yellow]v{by_stage['Staging']}[/]" if "Staging" in by_stage else "",
            esc(aliases),
            fmt_time(m.last_updated_time, short=True),
        )
    out().print(table)


@models.command("show")
@click.argument("name")
@tracking_uri_option
@json_option
@pass_state
def show_model(state: State, name: str, as_json: bool) -> None:
    """Show a model: its versions (stage, aliases, key metrics, tags, rollouts), and its gate policy.

    \b
    Example:
      modelyard models show churn
    """
    registry = _registry(state)
    model = registry.get_registered_model(name)
    versions = registry.search_model_versions(f"name = '{name.replace(chr(39), chr(39) * 2)}'")
    gates = registry.get_gates(name)
    if as_json:
        print_json({"model": model, "versions": versions, "gates": gates})
        return
    rows = [("Name", esc(model.name)), ("Description", esc(model.description) or "[dim]-[/]"),
            ("Tags", esc(", ".join(f"{k}={v}" for k, v in model.tags.items())) or "[dim]-[/]"),
            ("Gates", "\n".join(esc(r.rule) + (f" [dim](on {', '.join(r.on)})[/]" if r.on else "") for r in gates.rules)
             or "[dim]none[/]")]  # fmt: skip
    out().print(key_value_grid(rows))
    metrics = _key_metrics(state, versions, gates.rules)
    rolled_out = any(k.startswith(ROLLOUT_TAG) for mv in versions for k in mv.tags)
    headers = ["Version", "Stage", "Aliases", "Metrics", "Tags", *(["Rollout"] if rolled_out else []), "Run",
               "Source", "Created", "By"]  # fmt: skip
    table = new_table(*headers)
    table.columns[0].style = ID_STYLE
    for mv in versions:
        tags = "\n".join(f"{k}={v}" for k, v in sorted(mv.tags.items()) if not k.startswith(ROLLOUT_TAG))
        rollout = [esc(_rollout_history(mv.tags))] if rolled_out else []
        table.add_row(
            str(mv.version), _stage(mv.stage.value), esc(", ".join(mv.aliases)), esc(metrics.get(mv.version, "")),
            esc(tags), *rollout, mv.run_id or "", esc(mv.source), fmt_time(mv.creation_time, short=True),
            esc(mv.created_by or ""),
        )  # fmt: skip
    table_console()[0].print(table)  # piped: nothing cut, ids and sources whole


ROLLOUT_TAG = "rollout."  # the tags `modelyard rollout` records on the candidate version (serving/rollout.py)
KEY_METRICS = 3


def _key_metrics(state: State, versions: list[Any], rules: list[Any]) -> dict[int, str]:
    """Each version's key metrics from its run: those the gates name first, then the run's others, up to
    KEY_METRICS. A run this store does not hold (registered from elsewhere) shows none."""
    from modelyard.errors import ModelyardError

    named = list(dict.fromkeys(m for r in rules for m in re.findall(r"metrics\.([\w./:-]+)", r.rule)))
    shown: dict[int, str] = {}
    for mv in versions:
        if not mv.run_id:
            continue
        try:
            values = state.client.get_run(mv.run_id).data.metrics
        except ModelyardError:
            continue
        keys = [k for k in named if k in values] + sorted(k for k in values if k not in named)
        shown[mv.version] = "\n".join(f"{k}={values[k]:.4g}" for k in keys[:KEY_METRICS])
    return shown


def _rollout_history(tags: dict[str, str]) -> str:
    """The rollout's outcome, then one short line per step (`10%: 30 s, 1,234 requests, errors 0% -> next`)."""
    steps = sorted(
        (int(k.rsplit(".", 1)[1]), v) for k, v in tags.items() if re.fullmatch(r"rollout\.step\.\d+", k)
    )
    lines = [tags.get(ROLLOUT_TAG + "state", "")]
    if ROLLOUT_TAG + "reason" in tags:
        lines.append("why: " + tags[ROLLOUT_TAG + "reason"])
    for _, summary in steps:
        head, _, decision = summary.partition(" -> ")
        lines.append(", ".join(head.split(", ")[:3]) + (f" -> {decision}" if decision else ""))
    return "\n".join(line for line in lines if line)


@models.command("register")
@click.argument("model_uri")
@click.argument("name")
@click.option("--description", default="", help="What this version is.")
@click.option(
    "--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag on the new version (repeatable)."
)
@tracking_uri_option
@pass_state
def register(state: State, model_uri: str, name: str, description: str, tags: tuple[str, ...]) -> None:
    """Register the model at MODEL_URI as a new version of NAME (created if new).

    \b
    Example:
      modelyard models register runs:/9f0c2d.../model churn --tag data=2026-11
    """
    mv = _registry(state).register_model(model_uri, name, description, parse_key_values(tags, "--tag"))
    err().print(
        f"Registered [bold]{esc(mv.name)}[/] version [{ID_STYLE}]{mv.version}[/] from {esc(mv.source)}."
    )


@models.command("promote")
@click.argument("name")
@click.argument("version")
@click.argument("stage", metavar="STAGE")
@click.option("--archive-existing", is_flag=True, help="Archive the versions already in STAGE.")
@click.option("--comment", default="", help="Why, for the stage history.")
@tracking_uri_option
@pass_state
def promote(state: State, name: str, version: str, stage: str, archive_existing: bool, comment: str) -> None:
    """Move VERSION of NAME to STAGE (None, Staging, Production or Archived), once the gates pass.

    \b
    Example:
      modelyard models promote churn 3 Production --archive-existing --comment "beats v2 on Nov data"
    """
    mv = _registry(state).transition_stage(name, version, stage, archive_existing, comment)
    err().print(f"{esc(mv.name)} version {mv.version} is now in {_stage(mv.stage.value)}.")


@models.command("approve")
@click.argument("name")
@click.argument("version")
@click.option("--user", help="Who approves (default: you).")
@click.option("--comment", default="approved", show_default=True)
@tracking_uri_option
@pass_state
def approve(state: State, name: str, version: str, user: str | None, comment: str) -> None:
    """Approve VERSION of NAME (gate rules like `approvals >= 2` count approvals).

    \b
    Example:
      modelyard models approve churn 3 --comment "reviewed the eval report"
    """
    _registry(state).approve(name, version, user, comment)
    err().print(f"Approved {esc(name)} version {esc(version)}.")


@models.group("alias")
def alias() -> None:
    """Point named aliases (champion, challenger, ...) at versions.

    \b
    Example:
      modelyard models alias set churn champion 3
      modelyard models alias delete churn challenger
    """


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version")
@tracking_uri_option
@pass_state
def set_alias(state: State, name: str, alias_name: str, version: str) -> None:
    """Point ALIAS of NAME at VERSION (moving it if it is elsewhere), once the gates pass.

    \b
    Example:
      modelyard models alias set churn champion 3
    """
    mv = _registry(state).set_alias(name, alias_name, version)
    err().print(f"models:/{esc(name)}@{esc(alias_name)} → version {mv.version}.")


@alias.command("delete")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@tracking_uri_option
@pass_state
def delete_alias(state: State, name: str, alias_name: str) -> None:
    """Remove ALIAS from NAME.

    \b
    Example:
      modelyard models alias delete churn challenger
    """
    _registry(state).delete_alias(name, alias_name)
    err().print(f"Deleted alias {esc(alias_name)} of {esc(name)}.")


@models.group("gates")
def gates() -> None:
    """Promotion gates: rules a version must pass to enter Staging or Production, or take an alias.

    \b
    Rules: metrics.<key> >= 0.9   metrics.<key> >= champion   metrics.<key> <= Production
           tags.<key> == 'yes'    tags.<key> exists            approvals >= 2
    Add " on Production,@champion" to a rule to limit it to some targets.

    \b
    Example:
      modelyard models gates set churn "metrics.accuracy >= 0.9" "approvals >= 1 on Production"
      modelyard models gates check churn 4 Production
    """


def _rule(text: str) -> dict[str, object]:
    head, sep, targets = text.rpartition(" on ")
    if sep and targets and all(t.strip() for t in targets.split(",")):
        return {"rule": head.strip(), "on": [t.strip() for t in targets.split(",")]}
    return {"rule": text.strip()}


@gates.command("set")
@click.argument("name")
@click.argument("rules", nargs=-1)
@tracking_uri_option
@pass_state
def set_gates(state: State, name: str, rules: tuple[str, ...]) -> None:
    """Replace the gate policy of NAME with RULES (none: remove every gate).

    \b
    Example:
      modelyard models gates set churn "metrics.accuracy >= 0.9" "metrics.accuracy >= champion on @champion"
    """
    policy = _registry(state).set_gates(name, [_rule(r) for r in rules])
    err().print(f"{esc(name)} has {len(policy.rules)} gate rule(s).")


@gates.command("show")
@click.argument("name")
@tracking_uri_option
@json_option
@pass_state
def show_gates(state: State, name: str, as_json: bool) -> None:
    """Show the gate policy of NAME.

    \b
    Example:
      modelyard models gates show churn
    """
    policy = _registry(state).get_gates(name)
    if as_json:
        print_json(policy)
        return
    if not policy.rules:
        err().print(f"{esc(name)} has no gates: any version may be promoted.")
    for rule in policy.rules:
        out().print(esc(rule.rule) + (f" [{DIM}](on {', '.join(rule.on)})[/]" if rule.on else ""))


@gates.command("check")
@click.argument("name")
@click.argument("version")
@click.argument("target")
@tracking_uri_option
@pass_state
def check_gates(state: State, name: str, version: str, target: str) -> None:
    """Dry run: would VERSION pass the gates into TARGET (a stage, or @alias)?  Exit status 1 if not.

    \b
    Example:
      modelyard models gates check churn 4 Production
      modelyard models gates check churn 4 @champion
    """
    from modelyard.schemas.registry import Stage

    if not target.startswith("@"):
        target = Stage.parse(target).value
    checks = _registry(state).check_gates(name, version, target)
    if not checks:
        out().print(f"No gate guards {esc(target)}.")
    for c in checks:
        mark = "[green]PASS[/]" if c.passed else "[red]FAIL[/]"
        out().print(f"{mark}  {esc(c.rule)}  [{DIM}]{esc(c.detail)}[/]")
    if any(not c.passed for c in checks):
        raise SystemExit(1)


@models.command("history")
@click.argument("name")
@click.option("--version", help="Only this version.")
@tracking_uri_option
@json_option
@pass_state
def history(state: State, name: str, version: str | None, as_json: bool) -> None:
    """The stage transitions of NAME: who moved which version where, when and why.

    \b
    Example:
      modelyard models history churn --version 3
    """
    found = _registry(state).stage_history(name, version)
    if as_json:
        print_json(found)
        return
    table = new_table("When", "Version", "From", "To", "Who", "Comment")
    for t in found:
        table.add_row(fmt_time(t.time), str(t.version), _stage(t.from_stage.value), _stage(t.to_stage.value),
                      esc(t.user or ""), esc(t.comment))  # fmt: skip
    out().print(table)


@models.command("events")
@click.argument("name")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@tracking_uri_option
@json_option
@pass_state
def events(state: State, name: str, limit: int, as_json: bool) -> None:
    """Every change to NAME, oldest first (what webhooks deliver).

    \b
    Example:
      modelyard models events churn
    """
    found = _registry(state).events(name, max_results=limit)
    if as_json:
        print_json(found)
        return
    table = new_table("#", "When", "Event", "Version", "Who", "Details")
    for e in found:
        details = ", ".join(f"{k}={v}" for k, v in e.payload.items() if v not in (None, "", []))
        table.add_row(
            str(e.event_id), fmt_time(e.time), e.type, str(e.version or ""), esc(e.user or ""), esc(details)
        )
    out().print(table)


@models.command("delete")
@click.argument("name")
@click.argument("version", required=False)
@click.option("--force", is_flag=True, help="Delete a version even if an alias or a live stage points at it.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@tracking_uri_option
@pass_state
def delete(state: State, name: str, version: str | None, force: bool, yes: bool) -> None:
    """Delete VERSION of NAME, or the whole model when no VERSION is given.

    \b
    Example:
      modelyard models delete churn 2
      modelyard models delete old-model --yes
    """
    what = f"version {version} of {name!r}" if version else f"model {name!r} and all its versions"
    if not yes:
        click.confirm(f"Delete {what}?", abort=True, err=True)
    registry = _registry(state)
    if version:
        registry.delete_model_version(name, version, force)
    else:
        registry.delete_registered_model(name)
    err().print(f"Deleted {esc(what)}.")


@models.command("lineage")
@click.argument("model_uri")
@tracking_uri_option
@json_option
@pass_state
def lineage(state: State, model_uri: str, as_json: bool) -> None:
    """Print where a model came from: its run, code commit (and diff), parameters and datasets, as a tree;
    and, for a registered version, the deployments that served it.

    \b
    Example:
      modelyard models lineage models:/churn@champion
    """
    from modelyard.registry.lineage import lineage as build

    graph = build(model_uri, state.tracking_uri)
    if as_json:
        print_json(graph)
        return
    out().print(lineage_tree(graph))


DEPLOYMENT_IN_LABEL = {"endpoint", "state", "role", "percent", "created_time"}  # said by its label already


def lineage_tree(graph: Lineage) -> Tree:
    """A lineage graph as a rich tree, from the model down to its run, code, params and data (and the
    deployments that served it)."""
    from rich.tree import Tree

    def label(node_id: str, relation: str | None = None) -> str:
        node = graph.node(node_id)
        head = f"[{DIM}]{relation}:[/] " if relation else ""
        hidden = {"metrics"} | (DEPLOYMENT_IN_LABEL if node.kind == "deployment" else set())
        attrs = {k: v for k, v in node.attributes.items() if k not in hidden}
        for key in ("start_time", "updated_time"):
            if key in attrs:
                attrs[key] = fmt_time(attrs[key])
        if node.kind == "run" and node.attributes.get("metrics"):
            attrs["metrics"] = ", ".join(f"{k}={v:.4g}" for k, v in node.attributes["metrics"].items())
        body = "  ".join(
            f"[{DIM}]{esc(k)}=[/]{esc(v)}" for k, v in attrs.items() if v not in (None, "", [], {})
        )
        return f"{head}[bold]{esc(node.label)}[/]" + (f"\n{body}" if body else "")

    tree = Tree(label(graph.root))

    def grow(branch: Tree, node_id: str) -> None:
        for relation, child in graph.children(node_id):
            grow(branch.add(label(child.id, relation)), child.id)

    grow(tree, graph.root)
    return tree
