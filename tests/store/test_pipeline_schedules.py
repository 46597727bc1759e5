"""The pipeline schedule store on SQLite and PostgreSQL: CRUD, unique names, validation of cron expressions,
time zones, targets and params, pausing, and the scheduler's claim, which exactly one of several
concurrent schedulers wins."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from modelyard.errors import AlreadyExists, InvalidArgument, NotFound
from modelyard.store.pipeline_schedules import (
    next_run_time,
    param_args,
    validate_cron,
    validate_target,
    validate_timezone,
)
from modelyard.store.sql.pipeline_schedules import SqlPipelineScheduleStore
from modelyard.store.sql.store import SqlTrackingStore

TARGET = "/srv/flows/train.py:training"


def ms(*args: int, tz: str = "UTC") -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp() * 1000)  # type: ignore[arg-type,misc]


@pytest.fixture
def tracking(store_uri: str, tmp_path: Path) -> Iterator[SqlTrackingStore]:
    t = SqlTrackingStore(store_uri, default_artifact_root=(tmp_path / "artifacts").as_uri())
    yield t
    t.close()


@pytest.fixture
def schedules(tracking: SqlTrackingStore) -> SqlPipelineScheduleStore:
    return SqlPipelineScheduleStore(tracking)


# cron expressions ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 3 * * *", ms(2024, 5, 1, 2, 59), ms(2024, 5, 1, 3, 0)),
        ("0 3 * * *", ms(2024, 5, 1, 3, 0), ms(2024, 5, 2, 3, 0)),  # strictly after
        ("*/15 * * * *", ms(2024, 5, 1, 10, 16), ms(2024, 5, 1, 10, 30)),
        ("0,30 9-10 * * *", ms(2024, 5, 1, 10, 30), ms(2024, 5, 2, 9, 0)),
        ("0 6 * * MON-FRI", ms(2024, 5, 3, 7, 0), ms(2024, 5, 6, 6, 0)),  # Friday -> Monday
        ("0 0 1 */3 *", ms(2024, 5, 1, 0, 0), ms(2024, 7, 1, 0, 0)),
        ("0 0 29 2 *", ms(2024, 3, 1), ms(2028, 2, 29)),
        ("@hourly", ms(2024, 5, 1, 10, 1), ms(2024, 5, 1, 11, 0)),
        ("@daily", ms(2024, 5, 1, 10, 1), ms(2024, 5, 2)),
        ("@weekly", ms(2024, 5, 1), ms(2024, 5, 5)),  # Sunday
        ("@monthly", ms(2024, 5, 1), ms(2024, 6, 1)),
    ],
)
def test_next_run_time(expression: str, after: int, expected: int) -> None:
    assert next_run_time(validate_cron(expression), "UTC", after) == expected


def test_next_run_time_in_a_time_zone_across_daylight_saving() -> None:
    paris = "Europe/Paris"
    assert next_run_time("0 3 * * *", paris, ms(2024, 6, 1, 12, 0)) == ms(2024, 6, 2, 1, 0)  # 03:00 CEST
    assert next_run_time("0 3 * * *", paris, ms(2024, 12, 1, 12, 0)) == ms(2024, 12, 2, 2, 0)  # 03:00 CET
    # New York springs forward at 02:00 on 2024-03-10: 02:30 does not exist that day; the run is not lost
    fired = next_run_time("30 2 * * *", "America/New_York", ms(2024, 3, 10, 5, 0))
    assert ms(2024, 3, 10, 6, 0) <= fired <= ms(2024, 3, 11, 6, 30)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("", "Empty cron expression"),
        ("* * * *", "has 4 fields, not 5"),
        ("0 0 * * * *", "has 6 fields, not 5"),
        ("61 * * * *", "Invalid cron expression '61 * * * *'"),
        ("* 24 * * *", "Invalid cron expression"),
        ("* * 0 * *", "Invalid cron expression"),
        ("* * * 13 *", "Invalid cron expression"),
        ("*/0 * * * *", "Invalid cron expression"),
        ("a b c d e", "Invalid cron expression"),
        ("@reboot", "Unknown cron alias"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_bad_cron_expressions_say_what_is_wrong(expression: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match="minute hour day-of-month month day-of-week") as err:
        validate_cron(expression)
    assert fragment in err.value.message


def test_cron_is_normalised() -> None:
    assert validate_cron("  0   3 * *  * ") == "0 3 * * *"
    assert validate_cron("@DAILY") == "@daily"


def test_targets_time_zones_and_params() -> None:
    assert validate_target(TARGET) == TARGET
    assert validate_target("flows.nightly:etl") == "flows.nightly:etl"
    for bad in ("train.py", "flows/train.py:training", "train.py:", ":f", "a b:f", "x.py:not-a-name"):
        with pytest.raises(InvalidArgument):
            validate_target(bad)
    assert validate_timezone("Europe/Paris") == "Europe/Paris"
    for bad in ("Mars/Olympus", "", "../etc/passwd", "/etc/localtime"):
        with pytest.raises(InvalidArgument, match="Unknown time zone"):
            validate_timezone(bad)
    assert param_args({"lr": 0.5, "name": "x y", "flag": True, "sizes": [1, 2]}) == [
        "lr=0.5",
        "name=x y",
        "flag=true",
        "sizes=[1, 2]",
    ]


# the store -------------------------------------------------------------------------------------------------
def test_create_get_list_update_delete(schedules: SqlPipelineScheduleStore) -> None:
    now = ms(2024, 5, 1, 10, 0)
    made = schedules.create_schedule(
        "nightly", TARGET, "0 3 * * *", {"lr": 0.1, "tag": "a"}, "exp", created_by="root", now=now
    )
    assert made.name == "nightly" and made.target == TARGET and made.params == {"lr": 0.1, "tag": "a"}
    assert made.experiment == "exp" and made.timezone == "UTC" and made.enabled and made.created_by == "root"
    assert (
        made.next_run_time == ms(2024, 5, 2, 3, 0) and made.last_status is None and made.created_time == now
    )
    assert schedules.get_schedule("nightly") == made
    with pytest.raises(AlreadyExists, match="'nightly' exists already"):
        schedules.create_schedule("nightly", TARGET, "@hourly")
    schedules.create_schedule("another", "flows.etl:run", "@hourly", timezone="Europe/Paris", now=now)
    assert [s.name for s in schedules.list_schedules()] == ["another", "nightly"]

    paused = schedules.update_schedule("nightly", enabled=False, now=now)
    assert not paused.enabled and paused.next_run_time is None
    assert schedules.due(ms(2030, 1, 1)) == [schedules.get_schedule("another")]
    later = ms(2024, 6, 1, 12, 0)
    # resumed: the times missed while paused are skipped
    resumed = schedules.update_schedule("nightly", enabled=True, now=later)
    assert resumed.enabled and resumed.next_run_time == ms(2024, 6, 2, 3, 0)
    changed = schedules.update_schedule("nightly", cron="30 4 * * *", params={"lr": 0.2}, now=later)
    assert changed.cron == "30 4 * * *" and changed.params == {"lr": 0.2}
    assert changed.next_run_time == ms(2024, 6, 2, 4, 30)
    same = schedules.update_schedule("nightly", params={"lr": 0.3}, now=ms(2025, 1, 1))
    assert same.next_run_time == changed.next_run_time  # only params changed: the time stays
    zoned = schedules.update_schedule("nightly", timezone="Europe/Paris", now=later)
    assert zoned.next_run_time == ms(2024, 6, 2, 4, 30, tz="Europe/Paris")

    with pytest.raises(InvalidArgument, match="has 3 fields"):
        schedules.update_schedule("nightly", cron="* * *")
    with pytest.raises(NotFound, match="No pipeline schedule named 'ghost'"):
        schedules.update_schedule("ghost", enabled=False)
    schedules.delete_schedule("nightly")
    with pytest.raises(NotFound):
        schedules.get_schedule("nightly")
    with pytest.raises(NotFound):
        schedules.delete_schedule("nightly")


def test_validation_on_create(schedules: SqlPipelineScheduleStore) -> None:
    for name in ("", "-x", "a b", "x" * 129, "a/b"):
        with pytest.raises(InvalidArgument, match="Invalid schedule name"):
            schedules.create_schedule(name, TARGET, "@daily")
    with pytest.raises(InvalidArgument, match="absolute path"):
        schedules.create_schedule("x", "train.py:training", "@daily")
    with pytest.raises(InvalidArgument, match="Invalid pipeline parameter name"):
        schedules.create_schedule("x", TARGET, "@daily", {"not valid": 1})
    with pytest.raises(InvalidArgument, match="Unknown time zone"):
        schedules.create_schedule("x", TARGET, "@daily", timezone="Nowhere/Land")
    assert schedules.list_schedules() == []
    paused = schedules.create_schedule("x", TARGET, "@daily", enabled=False)
    assert paused.next_run_time is None and schedules.due(ms(2100, 1, 1)) == []


def test_claim_moves_to_the_next_time_after_now_so_missed_times_run_once(
    schedules: SqlPipelineScheduleStore,
) -> None:
    made = schedules.create_schedule("hourly", TARGET, "@hourly", now=ms(2024, 5, 1, 10, 30))
    assert made.next_run_time == ms(2024, 5, 1, 11, 0)
    assert schedules.due(ms(2024, 5, 1, 10, 59)) == []
    back = ms(2024, 5, 1, 15, 10)  # the server was down from 10:45 to 15:10: five times missed
    due = schedules.due(back)
    assert [s.name for s in due] == ["hourly"]
    claimed = schedules.claim(due[0], back)
    assert claimed is not None and claimed.next_run_time == ms(2024, 5, 1, 16, 0)
    assert claimed.last_status == "RUNNING" and claimed.last_run_time == back
    assert schedules.get_schedule("hourly") == claimed
    assert schedules.due(back) == []
    assert schedules.claim(due[0], back) is None  # stale: it was claimed already

    assert schedules.record_result(made.schedule_id, back, "a" * 32, "FINISHED")
    done = schedules.get_schedule("hourly")
    assert (done.last_run_id, done.last_status, done.last_error) == ("a" * 32, "FINISHED", None)
    assert not schedules.record_result(made.schedule_id, back - 1, "b" * 32, "FAILED")  # not the latest run
    started = schedules.start_now("hourly", back + 5)
    assert started.last_status == "RUNNING" and started.next_run_time == ms(2024, 5, 1, 16, 0)
    assert schedules.record_result(made.schedule_id, back + 5, None, "FAILED", "x" * 10_000)
    assert len(schedules.get_schedule("hourly").last_error or "") == 7000
    with pytest.raises(NotFound):
        schedules.start_now("ghost")


def test_exactly_one_of_concurrent_claimers_wins(store_uri: str, schedules: SqlPipelineScheduleStore) -> None:
    """Several schedulers (each with its own engines, like server processes) see a schedule due at once."""
    made = schedules.create_schedule("race", TARGET, "* * * * *", now=ms(2024, 5, 1, 10, 0, 30))
    now = ms(2024, 5, 1, 10, 5)
    others = [SqlPipelineScheduleStore.open(store_uri) for _ in range(4)]
    try:
        seen = [o.due(now) for o in others]
        assert all([s.schedule_id for s in found] == [made.schedule_id] for found in seen)
        barrier = threading.Barrier(len(others))
        won: list[object] = []
        errors: list[BaseException] = []

        def claim(store: SqlPipelineScheduleStore, due: list) -> None:  # type: ignore[type-arg]
            try:
                barrier.wait()
                if store.claim(due[0], now) is not None:
                    won.append(store)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=claim, args=(o, s)) for o, s in zip(others, seen)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == [] and len(won) == 1
        after = schedules.get_schedule("race")
        assert after.next_run_time == ms(2024, 5, 1, 10, 6) and after.last_status == "RUNNING"
    finally:
        for o in others:
            o.close()


def test_schedule_times_are_utc_milliseconds() -> None:
    fired = next_run_time("0 12 * * *", "UTC", ms(2024, 1, 1))
    assert datetime.fromtimestamp(fired / 1000, timezone.utc).hour == 12
