"""The SQL tracking store: SQLAlchemy Core on SQLite (default) or PostgreSQL. One call, one transaction."""

from __future__ import annotations

import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Row, Table, bindparam, func, insert, literal_column, select, update
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from modelyard import config
from modelyard.errors import AlreadyExists, Conflict, InvalidArgument, InvalidState, NotFound, Unavailable
from modelyard.schemas import (
    BatchSequence,
    Dataset,
    DatasetInput,
    Experiment,
    LifecycleStage,
    Metric,
    MetricHistory,
    Param,
    Run,
    RunData,
    RunInfo,
    RunStatus,
    RunTag,
    SearchRunsPage,
    ViewType,
)
from modelyard.store import validation as v
from modelyard.store.base import TrackingStore
from modelyard.store.filter import parse_filter, parse_order_by
from modelyard.store.sql import search
from modelyard.store.sql.engine import create_engines, ensure_schema, redact
from modelyard.store.sql.raw import AnyConnection, RawStatements, Record
from modelyard.store.sql.tables import (
    datasets,
    experiment_tags,
    experiments,
    latest_metrics,
    metric_sequences,
    metrics,
    params,
    permissions,
    registry_events,
    run_inputs,
    runs,
    tags,
)

_ADJECTIVES = [
    "amber",
    "bold",
    "brave",
    "calm",
    "clever",
    "crisp",
    "eager",
    "fast",
    "gentle",
    "keen",
    "lucid",
    "merry",
    "nimble",
    "quiet",
    "rapid",
    "sharp",
    "sunny",
    "swift",
    "vivid",
    "wise",
]
_NOUNS = [
    "badger",
    "crane",
    "falcon",
    "fox",
    "heron",
    "ibis",
    "lynx",
    "marten",
    "otter",
    "owl",
    "panda",
    "raven",
    "robin",
    "seal",
    "sparrow",
    "stoat",
    "swan",
    "tiger",
    "wolf",
    "yak",
]


def now_ms() -> int:
    return int(time.time() * 1000)


def _random_run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(1, 999)}"


def _float_out(value: float | None) -> float:
    return float("nan") if value is None else value


_METRIC_COLUMNS = ("run_uuid", "key", "step", "timestamp", "value")  # metrics and latest_metrics rows


def _float_in(value: float) -> float | None:
    return None if value != value else value  # NaN is stored as NULL (see tables.metrics)


def _experiment_int_id(experiment_id: str | int) -> int:
    try:
        value = int(experiment_id)
        if not 0 <= value <= v.INT64_MAX:
            raise ValueError
        return value
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"Invalid experiment id {experiment_id!r}: experiment ids are integers such as '1'."
        ) from None


class SqlTrackingStore(TrackingStore):
    def __init__(self, uri: str, default_artifact_root: str | None = None) -> None:
        self.uri = uri
        self._write, self._read = create_engines(uri)
        ensure_schema(self._write, uri)
        self._artifact_root = (default_artifact_root or config.artifact_uri()).rstrip("/")
        self._driver_error = self._write.dialect.loaded_dbapi.OperationalError
        self._driver_data_error = self._write.dialect.loaded_dbapi.DataError
        self._upsert: Callable[[Table], Any]  # the dialect's INSERT ... ON CONFLICT
        if self._write.dialect.name == "postgresql":  # imported only then: the dialect costs ~40 ms to import
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            self._upsert = pg_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            self._upsert = sqlite_insert
        self.writes_are_local = self._write.dialect.name == "sqlite"  # see TrackingStore.writes_are_local
        self._prepare_statements()
        self._ensure_default_experiment()

    def _prepare_statements(self) -> None:
        """Build the hot-path statements once; they run through `RawStatements` (see raw.py for why)."""
        self._raw = RawStatements(self._write)
        self._select_run = select(runs).where(runs.c.run_uuid == bindparam("rid"))
        self._select_params = select(params.c.key, params.c.value).where(
            params.c.run_uuid == bindparam("rid")
        )
        tag_upsert = self._upsert(tags)
        self._upsert_tags = tag_upsert.on_conflict_do_update(
            index_elements=["run_uuid", "key"], set_={"value": tag_upsert.excluded.value}
        )
        latest = self._upsert(latest_metrics)
        ex, cur = latest.excluded, latest_metrics.c
        self._upsert_latest = latest.on_conflict_do_update(
            index_elements=["run_uuid", "key"],
            set_={"step": ex.step, "timestamp": ex.timestamp, "value": ex.value},
            # Only a newer point (by step, then timestamp) replaces the latest value.
            where=(ex.step > cur.step) | ((ex.step == cur.step) & (ex.timestamp >= cur.timestamp)),
        )
        self._select_history = (
            select(metrics.c.step, metrics.c.value, metrics.c.timestamp)
            .where(metrics.c.run_uuid == bindparam("rid"), metrics.c.key == bindparam("key"))
            .order_by(metrics.c.step, metrics.c.timestamp)
        )
        self._select_experiment = select(experiments).where(experiments.c.experiment_id == bindparam("eid"))
        self._update_run = (
            update(runs)
            .where(runs.c.run_uuid == bindparam("rid"), runs.c.lifecycle_stage == literal_column("'active'"))
            .returning(*runs.c)
        )
        self._insert_runs, self._insert_params = runs.insert(), params.insert()  # metrics: see _write_metrics
        seq = metric_sequences.c
        self._insert_sequence = (
            self._upsert(metric_sequences)
            .values(writer_id=bindparam("wid"), run_uuid=bindparam("rid"), last_seq=bindparam("last"))
            .on_conflict_do_nothing()
            .returning(seq.last_seq)
        )
        # FOR UPDATE (PostgreSQL; SQLite writes one at a time anyway): two sends of one batch take turns.
        self._select_sequence = (
            select(seq.last_seq)
            .where(seq.writer_id == bindparam("wid"), seq.run_uuid == bindparam("rid"))
            .with_for_update()
        )
        self._update_sequence = (
            update(metric_sequences)
            .where(seq.writer_id == bindparam("wid"), seq.run_uuid == bindparam("rid"))
            .values(last_seq=bindparam("last"))
        )

    def __repr__(self) -> str:
        return f"SqlTrackingStore({redact(self.uri)!r})"

    def checkpoint_in_background(self) -> None:
        """For a long-running process that writes from its event loop (the server): see RawStatements."""
        self._raw.checkpoint_in_background()

    def close(self) -> None:
        self._raw.close()
        self._write.dispose()
        self._read.dispose()

    # transactions ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _unavailable_as_error(self) -> Iterator[None]:
        """A database that cannot be reached (or stays locked past the busy timeout) is `Unavailable`."""
        try:
            yield
        except (OperationalError, self._driver_error) as exc:
            reason = getattr(exc, "orig", None) or exc
            raise Unavailable(f"Tracking database {redact(self.uri)} unavailable: {reason}") from None
        except (DataError, self._driver_data_error, UnicodeEncodeError, OverflowError) as exc:
            # Backstop for values the validators let through but the database refuses: the caller's mistake.
            reason = getattr(exc, "orig", None) or exc
            raise InvalidArgument(f"The database refused a value: {reason}") from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._unavailable_as_error(), self._write.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _fast_tx(self) -> Iterator[Any]:
        """A write transaction on the driver connection, for the hot paths (see raw.py)."""
        with self._unavailable_as_error(), self._raw.transaction() as dbapi:
            yield dbapi

    @contextlib.contextmanager
    def _ro(self) -> Iterator[Connection]:
        with self._unavailable_as_error(), self._read.connect() as conn:
            yield conn

    def _ensure_default_experiment(self) -> None:
        with self._tx() as conn:
            stmt = self._upsert(experiments).values(
                experiment_id=0,
                name=self.DEFAULT_EXPERIMENT_NAME,
                artifact_location=f"{self._artifact_root}/0",
                creation_time=now_ms(),
                last_update_time=now_ms(),
            )
            conn.execute(stmt.on_conflict_do_nothing())

    # experiments -----------------------------------------------------------------------------------------
    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        v.validate_experiment_name(name)
        v.validate_text("artifact_location", artifact_location)
        for key, value in (tags or {}).items():
            v.validate_tag_value(v.validate_key("Tag", key), value)
        now = now_ms()
        try:
            with self._tx() as conn:
                experiment_id = conn.execute(
                    experiments.insert()
                    .values(name=name, artifact_location="", creation_time=now, last_update_time=now)
                    .returning(experiments.c.experiment_id)
                ).scalar_one()
                location = (artifact_location or f"{self._artifact_root}/{experiment_id}").rstrip("/")
                conn.execute(
                    update(experiments)
                    .where(experiments.c.experiment_id == experiment_id)
                    .values(artifact_location=location)
                )
                if tags:
                    conn.execute(
                        experiment_tags.insert(),
                        [
                            {"experiment_id": experiment_id, "key": k, "value": str(val)}
                            for k, val in tags.items()
                        ],
                    )
        except IntegrityError:
            raise AlreadyExists(
                f"An active experiment named {name!r} already exists; pick another name, or delete and purge "
                "the old one to free the name."
            ) from None
        return str(experiment_id)

    def _experiment_row(self, conn: AnyConnection, experiment_id: str | int) -> Record:
        rows = self._raw.fetch(
            conn, self._raw.compile(self._select_experiment), {"eid": _experiment_int_id(experiment_id)}
        )
        row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"No experiment with id {experiment_id!r}.")
        return row

    def _experiments(self, conn: Connection, rows: Sequence[Row[Any] | Record]) -> list[Experiment]:
        ids = [r.experiment_id for r in rows]
        tag_map: dict[int, dict[str, str]] = {i: {} for i in ids}
        if ids:
            for t in conn.execute(select(experiment_tags).where(experiment_tags.c.experiment_id.in_(ids))):
                tag_map[t.experiment_id][t.key] = t.value
        return [
            Experiment(
                experiment_id=str(r.experiment_id),
                name=r.name,
                artifact_location=r.artifact_location,
                lifecycle_stage=r.lifecycle_stage,
                creation_time=r.creation_time,
                last_update_time=r.last_update_time,
                tags=tag_map[r.experiment_id],
            )
            for r in rows
        ]

    def get_experiment(self, experiment_id: str) -> Experiment:
        with self._ro() as conn:
            return self._experiments(conn, [self._experiment_row(conn, experiment_id)])[0]

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        with self._ro() as conn:
            rows = conn.execute(
                select(experiments)
                .where(experiments.c.name == name)
                .order_by(
                    (experiments.c.lifecycle_stage == "active").desc(), experiments.c.experiment_id.desc()
                )
                .limit(1)
            ).all()
            return self._experiments(conn, rows)[0] if rows else None

    def search_experiments(
        self,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        name_like: str | None = None,
        max_results: int = 1000,
    ) -> list[Experiment]:
        v.validate_max_results(max_results)
        query = select(experiments).where(experiments.c.lifecycle_stage.in_(ViewType(view_type).stages()))
        if name_like:
            query = query.where(experiments.c.name.ilike(name_like))
        with self._ro() as conn:
            rows = conn.execute(query.order_by(experiments.c.experiment_id).limit(max_results)).all()
            return self._experiments(conn, rows)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        v.validate_experiment_name(new_name)
        try:
            with self._tx() as conn:
                if self._experiment_row(conn, experiment_id).lifecycle_stage != "active":
                    raise InvalidState(
                        f"Experiment {experiment_id} is deleted; restore it before renaming it."
                    )
                conn.execute(
                    update(experiments)
                    .where(experiments.c.experiment_id == int(experiment_id))
                    .values(name=new_name, last_update_time=now_ms())
                )
        except IntegrityError:
            raise AlreadyExists(f"An active experiment named {new_name!r} already exists.") from None

    def _set_experiment_stage(self, experiment_id: str, stage: str) -> None:
        with self._tx() as conn:
            row = self._experiment_row(conn, experiment_id)
            if row.lifecycle_stage == stage:
                raise InvalidState(f"Experiment {experiment_id} ({row.name!r}) is already {stage}.")
            in_experiment = runs.c.experiment_id == row.experiment_id
            # The deletion time identifies the runs deleted with the experiment, so it must differ from the
            # time of any run deleted on its own before.
            last_run_deletion = conn.execute(
                select(func.max(runs.c.deleted_time)).where(in_experiment)
            ).scalar()
            now = max(now_ms(), (last_run_deletion or 0) + 1)
            conn.execute(
                update(experiments)
                .where(experiments.c.experiment_id == row.experiment_id)
                .values(lifecycle_stage=stage, last_update_time=now)
            )
            if stage == "deleted":
                conn.execute(
                    update(runs)
                    .where(in_experiment, runs.c.lifecycle_stage == "active")
                    .values(lifecycle_stage="deleted", deleted_time=now)
                )
            else:  # bring back the runs that were deleted together with the experiment
                conn.execute(
                    update(runs)
                    .where(in_experiment, runs.c.deleted_time == row.last_update_time)
                    .values(lifecycle_stage="active", deleted_time=None)
                )

    def delete_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, "deleted")

    def restore_experiment(self, experiment_id: str) -> None:
        try:
            self._set_experiment_stage(experiment_id, "active")
        except IntegrityError:
            raise AlreadyExists(
                f"Cannot restore experiment {experiment_id}: an active experiment now has its name. "
                "Rename that one first."
            ) from None

    def purge_experiment(self, experiment_id: str) -> None:
        with self._tx() as conn:
            row = self._experiment_row(conn, experiment_id)
            if row.lifecycle_stage != "deleted":
                raise InvalidState(
                    f"Experiment {experiment_id} ({row.name!r}) is active; delete it before purging it."
                )
            conn.execute(experiments.delete().where(experiments.c.experiment_id == row.experiment_id))
            # Grants outlive nothing they name: a later experiment may reuse the id.
            conn.execute(
                permissions.delete().where(
                    permissions.c.resource_type == "experiment",
                    permissions.c.resource_id == str(row.experiment_id),
                )
            )

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        v.validate_tag_value(v.validate_key("Tag", key), value)
        with self._tx() as conn:
            row = self._experiment_row(conn, experiment_id)
            stmt = self._upsert(experiment_tags).values(experiment_id=row.experiment_id, key=key, value=value)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["experiment_id", "key"], set_={"value": value})
            )

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        with self._tx() as conn:
            row = self._experiment_row(conn, experiment_id)
            deleted = conn.execute(
                experiment_tags.delete().where(
                    experiment_tags.c.experiment_id == row.experiment_id, experiment_tags.c.key == key
                )
            ).rowcount
            if not deleted:
                raise NotFound(f"Experiment {experiment_id} has no tag {key!r}.")

    # runs ------------------------------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        start_time: int | None = None,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        description: str | None = None,
    ) -> Run:
        run_id = uuid.uuid4().hex
        v.validate_text("Run name", run_name)
        v.validate_text("Run description", description)
        if start_time is not None:
            v.validate_int64("start_time", start_time)
        tag_rows = [RunTag(key=k, value=str(val)) for k, val in (tags or {}).items()]
        param_rows = [Param(key=k, value=str(val)) for k, val in (params or {}).items()]
        self._validate(param_rows=param_rows, tag_rows=tag_rows)
        with self._fast_tx() as conn:
            exp = self._experiment_row(conn, experiment_id)
            if exp.lifecycle_stage != "active":
                raise InvalidState(
                    f"Experiment {experiment_id} ({exp.name!r}) is deleted; restore it to add runs."
                )
            if parent_run_id is not None:
                self._active_run(conn, v.validate_run_id(parent_run_id))
            values = {
                "run_uuid": run_id,
                "experiment_id": exp.experiment_id,
                "name": run_name or _random_run_name(),
                "status": RunStatus.RUNNING.value,
                "start_time": start_time if start_time is not None else now_ms(),
                "artifact_uri": f"{exp.artifact_location}/{run_id}/artifacts",
                "parent_run_id": parent_run_id,
                "description": description,
                "lifecycle_stage": "active",
            }
            self._raw.execute_many(conn, self._raw.compile(self._insert_runs, tuple(values)), [values])
            if param_rows:  # a new run has no params yet: no immutability check needed
                self._raw.execute_many(
                    conn,
                    self._raw.compile(self._insert_params),
                    [{"run_uuid": run_id, "key": p.key, "value": p.value} for p in param_rows],
                )
            self._write_batch(conn, run_id, (), (), tag_rows)
        data = RunData.model_construct(
            metrics={}, params={p.key: p.value for p in param_rows}, tags={t.key: t.value for t in tag_rows}
        )
        return Run.model_construct(info=self._info(values), data=data, inputs=[])

    @staticmethod
    def _info(r: Any) -> RunInfo:
        """RunInfo from a stored row; trusted data, so pydantic's validation is skipped (hot path)."""
        row: Any = r if isinstance(r, dict) else r._mapping
        return RunInfo.model_construct(
            run_id=row["run_uuid"],
            experiment_id=str(row["experiment_id"]),
            run_name=row["name"],
            status=RunStatus(row["status"]),
            start_time=row["start_time"],
            end_time=row.get("end_time"),
            artifact_uri=row["artifact_uri"],
            lifecycle_stage=LifecycleStage(row.get("lifecycle_stage") or "active"),
            parent_run_id=row.get("parent_run_id"),
            description=row.get("description"),
        )

    def _run_row(self, conn: AnyConnection, run_id: str) -> Record:
        rows = self._raw.fetch(conn, self._raw.compile(self._select_run), {"rid": v.validate_run_id(run_id)})
        row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"No run with id {run_id!r}.")
        return row

    def _active_run(self, conn: AnyConnection, run_id: str) -> Record:
        row = self._run_row(conn, run_id)
        if row.lifecycle_stage != "active":
            raise InvalidState(f"Run {run_id} is deleted; restore it before logging to it.")
        return row

    def _load_runs(self, conn: Connection, rows: Sequence[Row[Any] | Record]) -> list[Run]:
        """Build full runs for `rows` with one query per table, not one per run."""
        ids = [r.run_uuid for r in rows]
        if not ids:
            return []
        data: dict[str, dict[str, dict[str, Any]]] = {
            i: {"metrics": {}, "params": {}, "tags": {}} for i in ids
        }
        # .all() fetches in one call; iterating a result fetches row by row through SQLAlchemy.
        for rid, key, value in conn.execute(
            select(latest_metrics.c.run_uuid, latest_metrics.c.key, latest_metrics.c.value).where(
                latest_metrics.c.run_uuid.in_(ids)
            )
        ).all():
            data[rid]["metrics"][key] = _float_out(value)
        for table, kind in ((params, "params"), (tags, "tags")):
            for rid, key, value in conn.execute(
                select(table.c.run_uuid, table.c.key, table.c.value).where(table.c.run_uuid.in_(ids))
            ).all():
                data[rid][kind][key] = value
        inputs: dict[str, list[DatasetInput]] = {i: [] for i in ids}
        for r in conn.execute(
            select(run_inputs.c.run_uuid, run_inputs.c.context, datasets)
            .join(datasets, datasets.c.dataset_id == run_inputs.c.dataset_id)
            .where(run_inputs.c.run_uuid.in_(ids))
        ).all():
            inputs[r.run_uuid].append(
                DatasetInput(
                    context=r.context or None,
                    dataset=Dataset(
                        name=r.name,
                        digest=r.digest,
                        source=r.source,
                        source_type=r.source_type,
                        schema=json.loads(r.schema) if r.schema else None,
                        num_rows=r.num_rows,
                        profile=r.profile,
                    ),
                )
            )
        return [  # stored data: skip pydantic's validation
            Run.model_construct(
                info=self._info(r),
                data=RunData.model_construct(None, **data[r.run_uuid]),
                inputs=inputs[r.run_uuid],
            )
            for r in rows
        ]

    def get_run(self, run_id: str) -> Run:
        with self._ro() as conn:
            return self._load_runs(conn, [self._run_row(conn, run_id)])[0]

    def update_run(
        self,
        run_id: str,
        status: RunStatus | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
        description: str | None = None,
    ) -> RunInfo:
        changes: dict[str, Any] = {}
        if status is not None:
            try:
                changes["status"] = RunStatus(status).value
            except ValueError:
                raise InvalidArgument(
                    f"Invalid run status {status!r}: use one of {', '.join(s.value for s in RunStatus)}."
                ) from None
            if RunStatus(status).is_terminal:
                changes["end_time"] = end_time if end_time is not None else now_ms()
        if end_time is not None:
            changes["end_time"] = v.validate_int64("end_time", end_time)
        if run_name is not None:
            changes["name"] = v.validate_text("Run name", run_name)
        if description is not None:
            changes["description"] = v.validate_text("Run description", description)
        v.validate_run_id(run_id)
        with self._tx() as conn:
            row = self._update_run_row(conn, run_id, changes) if changes else None
            if row is None:
                row = self._active_run(conn, run_id)  # raises NotFound / InvalidState, or nothing to change
        return self._info(row)

    def end_run(
        self,
        run_id: str,
        status: RunStatus,
        end_time: int | None = None,
        metrics: Sequence[Metric] = (),
        sequence: BatchSequence | None = None,
    ) -> RunInfo:
        status = RunStatus(status)
        if not status.is_terminal:
            raise InvalidArgument(f"end_run needs FINISHED, FAILED or KILLED, got {status.value}.")
        self._validate(metrics)
        changes = {
            "status": status.value,
            "end_time": v.validate_int64("end_time", end_time if end_time is not None else now_ms()),
        }
        with self._fast_tx() as conn:
            row = self._update_run_row(conn, v.validate_run_id(run_id), changes)
            if row is None:
                self._active_run(conn, run_id)  # raises NotFound / InvalidState
            if sequence is not None:
                metrics = self._not_yet_stored(conn, run_id, metrics, sequence)
            if metrics:
                self._write_metrics(conn, run_id, metrics)
        return self._info(row)

    def _update_run_row(self, conn: AnyConnection, run_id: str, changes: dict[str, Any]) -> Record | None:
        """Apply `changes` to an active run and return the updated row (None: missing or deleted)."""
        sql = self._raw.compile(self._update_run, tuple(sorted(changes)))
        rows = self._raw.fetch(conn, sql, {"rid": run_id, **changes})
        if rows and "status" in changes and RunStatus(changes["status"]).is_terminal:
            self._run_event(conn, rows[0], changes["status"])
        return rows[0] if rows else None

    def _run_event(self, conn: AnyConnection, row: Record, status: str) -> None:
        """A run ended: an event (run.finished, run.failed or run.killed) in the same transaction, for webhooks."""
        event = {
            "time": now_ms(),
            "type": f"run.{status.lower()}",
            "experiment_id": str(row.experiment_id),
            "run_id": row.run_uuid,
            "payload": json.dumps({"status": status, "run_name": row.name}),
        }
        self._raw.fetch(conn, self._raw.compile(insert(registry_events), tuple(sorted(event))), event)

    def _set_run_stage(self, run_id: str, stage: str) -> None:
        with self._tx() as conn:
            row = self._run_row(conn, run_id)
            if stage == "active" and row.lifecycle_stage == "active":
                return
            if stage == "active":
                exp = self._experiment_row(conn, row.experiment_id)
                if exp.lifecycle_stage != "active":
                    raise InvalidState(
                        f"Run {run_id} belongs to deleted experiment {exp.experiment_id}; restore that first."
                    )
            deleted_time = now_ms() if stage == "deleted" else None
            conn.execute(
                update(runs)
                .where(runs.c.run_uuid == run_id)
                .values(lifecycle_stage=stage, deleted_time=deleted_time)
            )

    def delete_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, "deleted")

    def restore_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, "active")

    def purge_run(self, run_id: str) -> None:
        with self._tx() as conn:
            if self._run_row(conn, run_id).lifecycle_stage != "deleted":
                raise InvalidState(f"Run {run_id} is active; delete it before purging it.")
            conn.execute(runs.delete().where(runs.c.run_uuid == run_id))

    def deleted_runs(self, older_than: int | None = None) -> list[Run]:
        query = select(runs).where(runs.c.lifecycle_stage == "deleted")
        if older_than is not None:
            v.validate_int64("older_than", older_than)
            query = query.where(runs.c.deleted_time <= older_than)
        with self._ro() as conn:
            return [Run(info=self._info(r)) for r in conn.execute(query.order_by(runs.c.deleted_time))]

    # logging ---------------------------------------------------------------------------------------------
    @staticmethod
    def _validate(
        metric_rows: Sequence[Metric] = (), param_rows: Sequence[Param] = (), tag_rows: Sequence[RunTag] = ()
    ) -> None:
        # A batch is mostly thousands of points of a few keys: each key checked once, each point cheaply.
        for key in dict.fromkeys(m.key for m in metric_rows):
            v.validate_key("Metric", key)
        low, high = v.INT64_MIN, v.INT64_MAX
        for m in metric_rows:
            step, ts = m.step, m.timestamp
            if (
                type(step) is not int
                or type(ts) is not int
                or not (low <= step <= high and low <= ts <= high)
            ):
                v.validate_int64(f"Metric {m.key!r} step", step)  # says what is wrong, or lets it pass
                v.validate_int64(f"Metric {m.key!r} timestamp", ts)
        for p in param_rows:
            v.validate_param_value(v.validate_key("Param", p.key), p.value)
        for t in tag_rows:
            v.validate_tag_value(v.validate_key("Tag", t.key), t.value)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
        sequence: BatchSequence | None = None,
    ) -> None:
        self._validate(metrics, params, tags)
        with self._fast_tx() as conn:
            self._active_run(conn, run_id)
            if sequence is not None:
                metrics = self._not_yet_stored(conn, run_id, metrics, sequence)
            self._write_batch(conn, run_id, metrics, params, tags)

    def _not_yet_stored(
        self, conn: AnyConnection, run_id: str, metric_rows: Sequence[Metric], sequence: BatchSequence
    ) -> Sequence[Metric]:
        """The points of a numbered batch that this store does not have yet; records the batch as stored.
        Two statements: the writer's number for the run is read (and locked), then raised; or, for the
        writer's first batch to the run, inserted (when a concurrent send inserted it first, read again)."""
        if not metric_rows:
            return metric_rows
        key = {"wid": sequence.writer_id, "rid": run_id, "last": sequence.first_seq + len(metric_rows) - 1}
        select_sql = self._raw.compile(self._select_sequence)
        found = self._raw.fetch_tuples(conn, select_sql, key)
        if not found:
            if self._raw.fetch_tuples(conn, self._raw.compile(self._insert_sequence), key):
                return metric_rows  # the writer's first batch to this run
            found = self._raw.fetch_tuples(conn, select_sql, key)  # a concurrent send inserted it first
        last = found[0][0]
        if key["last"] > last:
            self._raw.fetch(conn, self._raw.compile(self._update_sequence), key)
        return metric_rows[max(0, last - sequence.first_seq + 1) :]

    def _write_batch(
        self,
        conn: AnyConnection,
        run_id: str,
        metric_rows: Sequence[Metric],
        param_rows: Sequence[Param],
        tag_rows: Sequence[RunTag],
    ) -> None:
        if param_rows:
            self._write_params(conn, run_id, param_rows)
        if tag_rows:
            latest_tags = {t.key: t.value for t in tag_rows}
            self._raw.execute_many(
                conn,
                self._raw.compile(self._upsert_tags),
                [{"run_uuid": run_id, "key": k, "value": val} for k, val in latest_tags.items()],
            )
        if metric_rows:
            self._write_metrics(conn, run_id, metric_rows)

    def _write_params(self, conn: AnyConnection, run_id: str, param_rows: Sequence[Param]) -> None:
        wanted: dict[str, str] = {}
        for p in param_rows:
            if wanted.setdefault(p.key, p.value) != p.value:
                raise Conflict(
                    f"Param {p.key!r} appears twice in one batch with values {wanted[p.key]!r} and {p.value!r}."
                )
        stored = dict(self._raw.fetch_tuples(conn, self._raw.compile(self._select_params), {"rid": run_id}))
        for key, value in wanted.items():
            if key in stored and stored[key] != value:
                raise Conflict(
                    f"Param {key!r} of run {run_id} is already {stored[key]!r}; params are immutable, so the new "
                    f"value {value!r} was refused. Log it under another key or start a new run."
                )
        new = [{"run_uuid": run_id, "key": k, "value": val} for k, val in wanted.items() if k not in stored]
        if new:
            self._raw.execute_many(conn, self._raw.compile(self._insert_params), new)

    def _write_metrics(self, conn: AnyConnection, run_id: str, metric_rows: Sequence[Metric]) -> None:
        # The hottest loop of the store: one tuple per point, in _METRIC_COLUMNS order; NaN is stored as NULL.
        self._raw.insert_rows(
            conn,
            metrics,
            _METRIC_COLUMNS,
            [
                (run_id, m.key, m.step, m.timestamp, None if m.value != m.value else m.value)
                for m in metric_rows
            ],
        )
        newest: dict[str, Metric] = {}
        for m in metric_rows:
            cur = newest.get(m.key)
            if cur is None or m.step > cur.step or (m.step == cur.step and m.timestamp >= cur.timestamp):
                newest[m.key] = m
        self._raw.execute_many(
            conn,
            self._raw.compile_positional(self._upsert_latest, _METRIC_COLUMNS),
            [(run_id, k, m.step, m.timestamp, _float_in(m.value)) for k, m in newest.items()],
        )

    def delete_tag(self, run_id: str, key: str) -> None:
        with self._tx() as conn:
            self._active_run(conn, run_id)
            deleted = conn.execute(tags.delete().where(tags.c.run_uuid == run_id, tags.c.key == key)).rowcount
            if not deleted:
                raise NotFound(f"Run {run_id} has no tag {key!r}.")

    def log_inputs(self, run_id: str, inputs: Sequence[DatasetInput]) -> None:
        with self._tx() as conn:
            run = self._active_run(conn, run_id)
            for item in inputs:
                ds = item.dataset
                identity = {"experiment_id": run.experiment_id, "name": ds.name, "digest": ds.digest}
                conn.execute(
                    self._upsert(datasets)
                    .values(
                        **identity,
                        source=ds.source,
                        source_type=ds.source_type,
                        schema=json.dumps(ds.schema_) if ds.schema_ is not None else None,
                        num_rows=ds.num_rows,
                        profile=ds.profile,
                    )
                    .on_conflict_do_nothing()
                )
                dataset_id = conn.execute(select(datasets.c.dataset_id).filter_by(**identity)).scalar_one()
                conn.execute(
                    self._upsert(run_inputs)
                    .values(run_uuid=run_id, dataset_id=dataset_id, context=item.context or "")
                    .on_conflict_do_nothing()
                )

    def get_metric_history(self, run_id: str, key: str) -> MetricHistory:
        with self._ro() as conn:
            self._run_row(conn, run_id)
            rows = self._raw.fetch_tuples(
                conn, self._raw.compile(self._select_history), {"rid": run_id, "key": key}
            )
        if not rows:
            return MetricHistory(key=key, steps=[], values=[], timestamps=[])
        # One comprehension per column: zip(*rows) over 100,000 rows costs several times more.
        steps = [r[0] for r in rows]
        values = [r[1] for r in rows]
        timestamps = [r[2] for r in rows]
        if None in values:
            values = [_float_out(x) for x in values]
        return MetricHistory.model_construct(key=key, steps=steps, values=values, timestamps=timestamps)

    def get_latest_metrics(self, run_id: str) -> list[Metric]:
        with self._ro() as conn:
            self._run_row(conn, run_id)
            rows = conn.execute(
                select(
                    latest_metrics.c.key,
                    latest_metrics.c.value,
                    latest_metrics.c.step,
                    latest_metrics.c.timestamp,
                )
                .where(latest_metrics.c.run_uuid == run_id)
                .order_by(latest_metrics.c.key)
            ).all()
        return [Metric(key=k, value=_float_out(val), step=step, timestamp=ts) for k, val, step, ts in rows]

    # search ----------------------------------------------------------------------------------------------
    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
    ) -> SearchRunsPage:
        v.validate_max_results(max_results)
        ids = [_experiment_int_id(e) for e in _as_list(experiment_ids)]
        expr = parse_filter(v.validate_text("The filter", filter_string))
        orders = [parse_order_by(o) for o in (order_by or [])]
        stages = ViewType(view_type).stages()
        fingerprint = search.query_fingerprint(sorted(ids), filter_string, list(order_by or []), stages)
        after = search.decode_page_token(page_token, fingerprint) if page_token else None
        query = search.build_query(ids, stages, expr, orders, after, max_results + 1)
        with self._ro() as conn:
            rows = conn.execute(query).all()
            page, more = rows[:max_results], len(rows) > max_results
            token = None
            if more:
                last = page[-1]._mapping
                token = search.encode_page_token(
                    [last[f"sk{i}"] for i in range(len(last) - len(runs.c))], fingerprint
                )
            return SearchRunsPage(runs=self._load_runs(conn, page), next_page_token=token)


def _as_list(items: Iterable[str] | str) -> list[str]:
    return [items] if isinstance(items, (str, int)) else list(items)
