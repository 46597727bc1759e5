"""`print(my.lineage(...))` prints a readable tree, the shape `modelyard models lineage` prints."""

from __future__ import annotations

import modelyard as my
from modelyard.registry.lineage import Lineage, LineageEdge, LineageNode


def test_str_is_a_tree_with_attributes_under_each_label() -> None:
    graph = Lineage(
        root="mv",
        nodes=[
            LineageNode(id="mv", kind="model_version", label="churn version 1", attributes={"stage": "None"}),
            LineageNode(
                id="run",
                kind="run",
                label="run train (9f0c)",
                attributes={"status": "FINISHED", "metrics": {"acc": 0.912345}, "empty": ""},
            ),
            LineageNode(id="code", kind="code", label="code abc123", attributes={"dirty": False}),
            LineageNode(id="params", kind="params", label="1 params", attributes={"lr": "0.1"}),
            LineageNode(
                id="dep",
                kind="deployment",
                label="churn on http://h:8080 (RUNNING, 100%)",
                attributes={"deployment_id": "d1", "state": "RUNNING", "target": "local"},
            ),
        ],
        edges=[
            LineageEdge(source="mv", target="run", relation="produced_by"),
            LineageEdge(source="run", target="code", relation="code"),
            LineageEdge(source="run", target="params", relation="params"),
            LineageEdge(source="mv", target="dep", relation="served_by"),
        ],
    )
    assert str(graph).splitlines() == [
        "churn version 1",
        "stage=None",
        "├── produced_by: run train (9f0c)",
        "│   status=FINISHED  metrics=acc=0.9123",
        "│   ├── code: code abc123",
        "│   │   dirty=False",
        "│   └── params: 1 params",
        "│       lr=0.1",
        "└── served_by: churn on http://h:8080 (RUNNING, 100%)",
        "    deployment_id=d1  target=local",  # state is in the label already
    ]


def test_str_of_a_real_lineage(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    client = my.Client(uri)
    run_id = client.create_run("0", run_name="train").run_id
    client.log_param(run_id, "lr", "0.1")
    client.set_terminated(run_id)
    my.RegistryClient(uri).register_model(f"runs:/{run_id}/model", "churn")

    text = str(my.lineage("models:/churn/1", uri))
    lines = text.splitlines()
    assert lines[0] == "churn version 1"
    assert f"└── produced_by: run train ({run_id})" in lines
    assert "        lr=0.1" in lines
    assert "start_time=20" in text  # a date, not milliseconds
    assert "Lineage(" not in text and "nodes=" not in text
