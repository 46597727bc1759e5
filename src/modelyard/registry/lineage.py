"""Lineage: from a model version (or a run's model) back to the run, code, parameters and data that made it,
and what a person needs to reproduce a run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from modelyard.schemas import Run
from modelyard.schemas.deployments import Deployment
from modelyard.tracking.context import DIFF_ARTIFACT, PACKAGES_ARTIFACT, TAG_PREFIX

GIT = TAG_PREFIX + "source.git."


class LineageNode(BaseModel):
    id: str
    kind: str  # model_version, run, parent_run, code, dataset, params, deployment
    label: str
    attributes: dict[str, Any] = Field(default_factory=dict)


class LineageEdge(BaseModel):
    source: str
    target: str
    relation: str  # produced_by, child_of, code, input, params, served_by (version -> deployment)


class Lineage(BaseModel):
    """A small graph rooted at `root`: edges point from a thing to what it came from."""

    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]

    def node(self, node_id: str) -> LineageNode:
        return next(n for n in self.nodes if n.id == node_id)

    def children(self, node_id: str) -> list[tuple[str, LineageNode]]:
        return [(e.relation, self.node(e.target)) for e in self.edges if e.source == node_id]

    def __str__(self) -> str:
        """The graph as a plain-text tree, as `modelyard models lineage` prints it: each node's label (after
        the relation that leads to it), then its attributes as key=value on the next line."""
        lines: list[str] = []

        def add(node: LineageNode, relation: str | None, lead: str, rest: str, seen: frozenset[str]) -> None:
            lines.append(lead + (f"{relation}: " if relation else "") + node.label)
            attrs = _attribute_text(node)
            children = [] if node.id in seen else self.children(node.id)
            if attrs:
                lines.append(rest + attrs)
            for i, (child_relation, child) in enumerate(children):
                last = i == len(children) - 1
                add(
                    child,
                    child_relation,
                    rest + ("└── " if last else "├── "),
                    rest + ("    " if last else "│   "),
                    seen | {node.id},
                )

        add(self.node(self.root), None, "", "", frozenset())
        return "\n".join(lines)


_SAID_BY_LABEL = {"deployment": {"endpoint", "state", "role", "percent", "created_time"}}


def _attribute_text(node: LineageNode) -> str:
    """A node's attributes as `key=value  key=value` (times as local time, metrics as name=value)."""
    parts = []
    for key, value in node.attributes.items():
        if key in _SAID_BY_LABEL.get(node.kind, ()) or value in (None, "", [], {}):
            continue
        if key.endswith("_time") and isinstance(value, int):
            value = datetime.fromtimestamp(value / 1000).strftime("%Y-%m-%d %H:%M:%S")
        elif isinstance(value, dict):
            value = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
            )
        parts.append(f"{key}={value}")
    return "  ".join(parts)


class Reproduction(BaseModel):
    """What to check out, install, feed and run to make a run again."""

    run_id: str
    experiment_id: str
    git_commit: str | None = None
    git_branch: str | None = None
    git_repo_url: str | None = None
    git_dirty: bool = False
    diff_artifact: str | None = None  # the uncommitted changes, as a patch artifact of the run
    command: str | None = None
    python_version: str | None = None
    packages_artifact: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    datasets: list[dict[str, Any]] = Field(default_factory=list)


def reproduction(run: Run) -> Reproduction:
    tags = run.data.tags
    dirty = tags.get(GIT + "dirty") == "true"
    return Reproduction(
        run_id=run.run_id,
        experiment_id=run.info.experiment_id,
        git_commit=tags.get(GIT + "commit"),
        git_branch=tags.get(GIT + "branch"),
        git_repo_url=tags.get(GIT + "repo_url"),
        git_dirty=dirty,
        diff_artifact=DIFF_ARTIFACT if dirty else None,
        command=tags.get(TAG_PREFIX + "source.command") or tags.get(TAG_PREFIX + "source.name"),
        python_version=tags.get(TAG_PREFIX + "python_version"),
        packages_artifact=PACKAGES_ARTIFACT if TAG_PREFIX + "python_version" in tags else None,
        params=dict(sorted(run.data.params.items())),
        datasets=[
            {
                "name": i.dataset.name,
                "digest": i.dataset.digest,
                "source": i.dataset.source,
                "context": i.context,
                "num_rows": i.dataset.num_rows,
            }
            for i in run.inputs
        ],
    )


def deployment_node(deployment: Deployment, name: str, version: int) -> LineageNode:
    """A deployment as a lineage node: "iris on http://host:8080 (RUNNING, 90%)", with its share of the
    version's traffic now ("canary 10%", "shadow 100%", "was 90%" once stopped, "not in its traffic now")."""
    entry = deployment.share_of(name, version)
    if entry is None:
        share = "not in its traffic now"
    else:
        role = "" if entry.role.value == "primary" else f"{entry.role.value} "
        share = f"{'was ' if deployment.state.is_final else ''}{role}{entry.percent:g}%"
    attributes: dict[str, Any] = {
        "deployment_id": deployment.deployment_id,
        "target": deployment.target.value,
        "state": deployment.state.value,
        "endpoint": deployment.endpoint,
        "role": entry.role.value if entry is not None else None,
        "percent": entry.percent if entry is not None else None,
        "created_time": deployment.created_time,
        "updated_time": deployment.updated_time,
        "created_by": deployment.created_by,
    }
    return LineageNode(
        id=f"deployment:{deployment.deployment_id}",
        kind="deployment",
        label=f"{deployment.name} on {deployment.endpoint} ({deployment.state.value}, {share})",
        attributes={k: v for k, v in attributes.items() if v is not None},
    )


def _add_deployments(
    nodes: list[LineageNode],
    edges: list[LineageEdge],
    root: str,
    name: str,
    version: int,
    tracking_uri: str,
    limit: int,
) -> None:
    """The deployments that served (or serve) the version, newest first, at most `limit` of them."""
    if limit <= 0:
        return
    from modelyard.errors import ModelyardError
    from modelyard.registry.deployments import deployment_store_for

    store = deployment_store_for(tracking_uri)
    try:
        found = store.list_deployments(model_name=name, version=version, limit=limit)
    except ModelyardError as exc:
        # A server older than deployment records answers its unknown route with an error code this client
        # has no class for (ENDPOINT_NOT_FOUND): lineage without deployments, then. Known errors stand.
        if type(exc) is not ModelyardError:
            raise
        found = []
    finally:
        store.close()
    for deployment in found:
        node = deployment_node(deployment, name, version)
        nodes.append(node)
        edges.append(LineageEdge(source=root, target=node.id, relation="served_by"))


def lineage(model_uri: str, tracking_uri: str | None = None, max_deployments: int = 20) -> Lineage:
    """The graph from a model (`models:/...` or `runs:/<run_id>/<path>`) to its run, that run's parent (e.g.
    the pipeline run), code (commit, and diff when dirty), parameters and datasets; and, for a registered
    version, to the deployments that served it (the `max_deployments` newest)."""
    from modelyard.errors import InvalidArgument, NotFound
    from modelyard.registry.client import run_id_of
    from modelyard.registry.uris import model_version_for
    from modelyard.tracking.client import Client
    from modelyard.tracking.fluent import get_tracking_uri

    tracking_uri = tracking_uri or get_tracking_uri()
    nodes: list[LineageNode] = []
    edges: list[LineageEdge] = []
    if model_uri.startswith("models:/"):
        mv = model_version_for(model_uri, tracking_uri)
        root = f"model:{mv.name}/{mv.version}"
        nodes.append(
            LineageNode(
                id=root,
                kind="model_version",
                label=f"{mv.name} version {mv.version}",
                attributes={
                    "stage": mv.stage.value,
                    "aliases": mv.aliases,
                    "source": mv.source,
                    "status": mv.status.value,
                },
            )
        )
        run_id = mv.run_id or run_id_of(mv.source)
        _add_deployments(nodes, edges, root, mv.name, mv.version, tracking_uri, max_deployments)
    else:
        run_id = run_id_of(model_uri)
        if run_id is None:
            raise InvalidArgument(f"Lineage needs a models:/ or runs:/ URI, got {model_uri!r}.")
        root = f"model:{model_uri}"
        nodes.append(LineageNode(id=root, kind="model", label=model_uri))
    if run_id is None:
        return Lineage(root=root, nodes=nodes, edges=edges)

    client = Client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except NotFound:  # a version registered (e.g. through MLflow's API) from a run another server holds
        missing = f"run:{run_id}"
        nodes.append(
            LineageNode(
                id=missing, kind="run", label=f"run {run_id} (not found)", attributes={"found": False}
            )
        )
        edges.append(LineageEdge(source=root, target=missing, relation="produced_by"))
        return Lineage(root=root, nodes=nodes, edges=edges)
    run_node = f"run:{run.run_id}"
    nodes.append(
        LineageNode(
            id=run_node,
            kind="run",
            label=f"run {run.info.run_name} ({run.run_id})",
            attributes={
                "experiment_id": run.info.experiment_id,
                "status": run.info.status.value,
                "start_time": run.info.start_time,
                "metrics": dict(sorted(run.data.metrics.items())),
            },
        )
    )
    edges.append(LineageEdge(source=root, target=run_node, relation="produced_by"))
    if run.info.parent_run_id:
        parent = client.get_run(run.info.parent_run_id)
        parent_node = f"run:{parent.run_id}"
        nodes.append(
            LineageNode(
                id=parent_node,
                kind="parent_run",
                label=f"run {parent.info.run_name} ({parent.run_id})",
                attributes={
                    k: v for k, v in parent.data.tags.items() if k.startswith(TAG_PREFIX + "pipeline")
                },
            )
        )
        edges.append(LineageEdge(source=run_node, target=parent_node, relation="child_of"))
    recipe = reproduction(run)
    if recipe.git_commit or recipe.command:
        code = {
            "commit": recipe.git_commit,
            "branch": recipe.git_branch,
            "repo_url": recipe.git_repo_url,
            "dirty": recipe.git_dirty,
            "diff_artifact": f"runs:/{run.run_id}/{recipe.diff_artifact}" if recipe.diff_artifact else None,
            "command": recipe.command,
        }
        label = f"commit {recipe.git_commit[:12]}" if recipe.git_commit else "code (no git)"
        nodes.append(
            LineageNode(
                id=f"code:{run.run_id}",
                kind="code",
                label=label + (" + uncommitted changes" if recipe.git_dirty else ""),
                attributes={k: v for k, v in code.items() if v not in (None, "")},
            )
        )
        edges.append(LineageEdge(source=run_node, target=f"code:{run.run_id}", relation="code"))
    if recipe.params:
        nodes.append(
            LineageNode(
                id=f"params:{run.run_id}",
                kind="params",
                label=f"{len(recipe.params)} params",
                attributes=recipe.params,
            )
        )
        edges.append(LineageEdge(source=run_node, target=f"params:{run.run_id}", relation="params"))
    for data in recipe.datasets:
        node_id = f"dataset:{data['digest']}"
        if all(n.id != node_id for n in nodes):
            label = f"dataset {data['name']} ({data['digest'][:12]})"
            nodes.append(
                LineageNode(
                    id=node_id,
                    kind="dataset",
                    label=label,
                    attributes={k: v for k, v in data.items() if v is not None},
                )
            )
        edges.append(
            LineageEdge(source=run_node, target=node_id, relation=f"input:{data.get('context') or 'data'}")
        )
    return Lineage(root=root, nodes=nodes, edges=edges)
