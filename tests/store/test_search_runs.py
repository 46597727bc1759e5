"""Run search on SQLite and PostgreSQL: every operator, OR and parentheses, ordering, keyset pagination."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from modelyard.errors import InvalidArgument
from modelyard.schemas import Dataset, DatasetInput, Metric, RunStatus, ViewType
from modelyard.store.filter import FilterSyntaxError
from modelyard.store.sql.store import SqlTrackingStore

ROWS = [  # name, acc, lr, team, status
    ("a", 0.95, "0.01", "cv-core", RunStatus.FINISHED),
    ("b", 0.80, "0.1", "CV-edge", RunStatus.FINISHED),
    ("c", 0.60, "0.01", "nlp", RunStatus.FAILED),
    ("d", None, "0.001", "nlp", RunStatus.RUNNING),  # no acc metric
    ("e", float("nan"), "0.01", None, RunStatus.FINISHED),  # acc is NaN, no team tag
]


@pytest.fixture
def populated(store: SqlTrackingStore) -> tuple[SqlTrackingStore, str]:
    eid = store.create_experiment("search")
    for i, (name, acc, lr, team, status) in enumerate(ROWS):
        run = store.create_run(
            eid, run_name=name, start_time=1000 + i, params={"lr": lr}, tags={"team": team} if team else {}
        )
        if acc is not None:
            store.log_batch(run.run_id, metrics=[Metric(key="acc", value=acc, step=0, timestamp=0)])
        if name in ("a", "c"):
            store.log_inputs(
                run.run_id,
                [DatasetInput(dataset=Dataset(name="digits", digest=f"d-{name}"), context="training")],
            )
        store.update_run(run.run_id, status=status)
    return store, eid


def names(store: SqlTrackingStore, eid: str, flt: str | None, order: list[str] | None = None) -> list[str]:
    return [r.info.run_name for r in store.search_runs([eid], flt, order).runs]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (None, ["e", "d", "c", "b", "a"]),  # default order: newest first
        ("metrics.acc > 0.7", ["b", "a"]),
        ("metrics.acc >= 0.8", ["b", "a"]),
        ("metrics.acc < 0.8", ["c"]),  # NaN and missing never compare
        ("metrics.acc <= 0.6", ["c"]),
        ("metrics.acc = 0.6", ["c"]),
        ("metrics.acc != 0.6", ["b", "a"]),
        ("metrics.acc IN (0.6, 0.95)", ["c", "a"]),
        ("metrics.acc IS NULL", ["d"]),
        ("metrics.acc IS NOT NULL", ["e", "c", "b", "a"]),
        ("params.lr = '0.01'", ["e", "c", "a"]),
        ("params.lr != '0.01'", ["d", "b"]),
        ("params.lr IN ('0.1', '0.001')", ["d", "b"]),
        ("params.lr NOT IN ('0.1', '0.001')", ["e", "c", "a"]),
        ("tags.team LIKE 'cv%'", ["a"]),  # LIKE is case-sensitive on both databases
        ("tags.team ILIKE 'cv%'", ["b", "a"]),
        ("tags.team NOT LIKE 'cv%'", ["d", "c", "b"]),
        ("tags.team IS NULL", ["e"]),
        ("attributes.status = 'FAILED'", ["c"]),
        ("attributes.status IN ('RUNNING', 'FAILED')", ["d", "c"]),
        ("attributes.run_name = 'b'", ["b"]),
        ("attributes.start_time >= 1003", ["e", "d"]),
        ("attributes.end_time IS NULL", ["d"]),
        ("datasets.digest = 'd-a'", ["a"]),
        ("datasets.name = 'digits'", ["c", "a"]),
        ("datasets.context = 'training'", ["c", "a"]),
        ("datasets.digest IS NULL", ["e", "d", "b"]),
        ("metrics.acc > 0.9 OR params.lr = '0.001'", ["d", "a"]),
        ("(metrics.acc > 0.9 OR tags.team = 'nlp') AND params.lr = '0.01'", ["c", "a"]),
        ("metrics.acc > 0.9 OR tags.team = 'nlp' AND params.lr = '0.01'", ["c", "a"]),  # AND binds tighter
        ("NOT (params.lr = '0.01')", ["d", "b"]),
    ],
)
def test_filters(populated: tuple[SqlTrackingStore, str], flt: str | None, expected: list[str]) -> None:
    store, eid = populated
    assert names(store, eid, flt) == expected


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (["metrics.acc DESC"], ["a", "b", "c", "e", "d"]),  # NaN and missing sort last
        (["metrics.acc ASC"], ["c", "b", "a", "e", "d"]),
        (["params.lr ASC", "attributes.run_name DESC"], ["d", "e", "c", "a", "b"]),
        (["attributes.start_time"], ["a", "b", "c", "d", "e"]),
        (["params.lr DESC"], ["b", "e", "c", "a", "d"]),  # ties fall back to newest first
    ],
)
def test_order_by(populated: tuple[SqlTrackingStore, str], order: list[str], expected: list[str]) -> None:
    store, eid = populated
    assert names(store, eid, None, order) == expected


@pytest.mark.parametrize(
    "order", [None, ["metrics.acc DESC"], ["params.lr"], ["tags.team DESC", "metrics.acc"]]
)
def test_pagination_walks_every_run_once(
    populated: tuple[SqlTrackingStore, str], order: list[str] | None
) -> None:
    store, eid = populated
    for i in range(20):  # extra runs sharing sort values, to exercise the tie-breaker
        run = store.create_run(eid, run_name=f"x{i}", start_time=1000, params={"lr": "0.01"})
        store.log_batch(run.run_id, metrics=[Metric(key="acc", value=0.5, step=0, timestamp=0)])
    full = [r.run_id for r in store.search_runs([eid], None, order, max_results=1000).runs]
    seen, token = [], None
    while True:
        page = store.search_runs([eid], None, order, max_results=3, page_token=token)
        seen += [r.run_id for r in page.runs]
        token = page.next_page_token
        if token is None:
            break
    assert seen == full and len(full) == 25


def test_page_token_is_tied_to_its_query(populated: tuple[SqlTrackingStore, str]) -> None:
    store, eid = populated
    token = store.search_runs([eid], max_results=2).next_page_token
    assert token
    with pytest.raises(InvalidArgument, match="different search"):
        store.search_runs([eid], "metrics.acc > 0", max_results=2, page_token=token)
    with pytest.raises(InvalidArgument, match="page token"):
        store.search_runs([eid], page_token="garbage!")


def test_view_type_and_experiments(populated: tuple[SqlTrackingStore, str]) -> None:
    store, eid = populated
    victim = store.search_runs([eid], "attributes.run_name = 'a'").runs[0]
    store.delete_run(victim.run_id)
    assert "a" not in names(store, eid, None)
    deleted = store.search_runs([eid], None, view_type=ViewType.DELETED_ONLY).runs
    assert [r.info.run_name for r in deleted] == ["a"]
    assert len(store.search_runs([eid], None, view_type=ViewType.ALL).runs) == 5
    assert store.search_runs(["0"]).runs == []


def test_search_results_are_complete_runs(populated: tuple[SqlTrackingStore, str]) -> None:
    store, eid = populated
    run = store.search_runs([eid], "attributes.run_name = 'a'").runs[0]
    assert run.data.metrics == {"acc": 0.95}
    assert run.data.params == {"lr": "0.01"}
    assert run.data.tags == {"team": "cv-core"}
    assert run.inputs[0].dataset.digest == "d-a"


def test_malformed_filter_points_at_the_problem(populated: tuple[SqlTrackingStore, str]) -> None:
    store, eid = populated
    flt = "metrics.acc > 0.5 AND params.lr = "
    with pytest.raises(InvalidArgument) as err:
        store.search_runs([eid], flt)
    assert f"position {len(flt)}" in err.value.message and "^" in err.value.message
    if isinstance(err.value, FilterSyntaxError):  # in-process; over REST the same message arrives
        assert err.value.position == len(flt)
    with pytest.raises(InvalidArgument, match="max_results"):
        store.search_runs([eid], max_results=0)


def _ors(n: int, start: int = 0) -> str:
    return " OR ".join(f"metrics.acc = {i}" for i in range(start, start + n))


FILTERS_AT_THE_LIMITS = [  # each just inside a documented limit (docs/tracking.md), found on both databases
    _ors(499) + " OR metrics.acc = 0.95",
    "attributes.run_name = 'a' AND metrics.acc IN (" + ", ".join(f"{i}.5" for i in range(9_999)) + ", 0.95)",
    "(attributes.run_name = 'a' AND (metrics.acc < 9 OR " * 12 + "metrics.acc = 0.95" + "))" * 12,
    "metrics.acc = 0.95 AND " + " AND ".join(f"datasets.name != '{i}'" for i in range(25)),
    "metrics.acc = 0.95 OR " + " OR ".join(f"metrics.k{i} = 1" for i in range(48)),  # + acc, + order_by key
]
FILTERS_PAST_THE_LIMITS = [  # each was a database error, answered 503 and retried by the REST client
    (_ors(1100), "at most 500 conditions"),
    ("metrics.acc IN (" + ", ".join(map(str, range(70_000))) + ")", "at most 10,000 values"),
    (
        "(metrics.acc > 0 AND (metrics.acc > 1 OR " * 20 + "metrics.acc > 0" + "))" * 20,
        "deeper than 25 levels",
    ),
    (" AND ".join(f"datasets.name != '{i}'" for i in range(200)), "at most 25 conditions on datasets"),
    (" OR ".join(f"metrics.k{i} = 1" for i in range(70)), "at most 50 different metric, param and tag keys"),
]


def test_filters_within_the_limits_work_on_every_backend(populated: tuple[SqlTrackingStore, str]) -> None:
    store, eid = populated
    for flt in FILTERS_AT_THE_LIMITS:
        assert names(store, eid, flt, ["params.lr"]) == ["a"], flt[:80]


@pytest.mark.parametrize(("flt", "fragment"), FILTERS_PAST_THE_LIMITS, ids=lambda v: str(v)[:30])
def test_filters_past_the_limits_are_invalid_argument_naming_them(
    populated: tuple[SqlTrackingStore, str], flt: str, fragment: str
) -> None:
    store, eid = populated
    with pytest.raises(InvalidArgument) as err:  # the caller's mistake, not Unavailable
        store.search_runs([eid], flt)
    assert fragment in err.value.message and type(err.value).__name__ != "Unavailable"


def test_the_rest_client_does_not_retry_a_refused_filter(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from modelyard.server import ServerSettings, create_app
    from modelyard.store.rest import RestStore

    app = create_app(ServerSettings(backend_store_uri=f"sqlite:///{tmp_path / 's.db'}"))
    sent: list[httpx.Request] = []
    with TestClient(app) as client:
        client.event_hooks["request"].append(sent.append)
        store = RestStore("http://testserver", client=client, retries=3, backoff=0.01)
        with pytest.raises(InvalidArgument, match="at most 500 conditions"):
            store.search_runs(["0"], _ors(1100))
    assert len(sent) == 1
