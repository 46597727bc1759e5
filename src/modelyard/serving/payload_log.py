"""Payload logging: a sample of inference requests and their responses, written to the artifact store as
Parquet for drift monitoring, and read back by time window with `read_payloads`.

Layout under the log's URI (a folder, file://, s3://, or any artifact store scheme), partitioned by the
UTC day each request arrived:

    <uri>/<model>/<version>/date=YYYY-MM-DD/part-<YYYYMMDDTHHMMSSffffffZ>-<uuid8>.parquet

One row per input row of a request. Columns: `request_id`, `timestamp` (arrival, UTC), `model`, `version`,
`role` (primary, canary, version when the request named it; shadow for a shadow's answer to a copy of a
request, logged apart under its own version with the same request id), `protocol` (v2, v1, invocations),
`status` (HTTP), `latency_ms`, `error` (null on success), `row` (the row's index in its request), then `input.<name>` per input column or tensor and `output.<name>` per output
(a tensor with more than one dimension gives each row its slice as a list column). A request whose
body could not be decoded has no input columns; a failed request has no output columns. A request whose
inputs or outputs share no row dimension is logged as one row holding the whole tensors.

The request path only samples (`random() < sample`) and appends a reference to the decoded inputs and the
outputs to a buffer. A background thread turns the buffer into Arrow tables and writes them every
`flush_rows` rows or `flush_seconds` seconds, and at shutdown (`close`). Writing never blocks or fails a
request: a failed write is logged and counted (`modelyard_serving_payload_log_errors_total`), and when the
buffer holds `max_buffer_rows` rows (the store is slow or down) new records are dropped and counted.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import random
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.errors import InvalidArgument
from modelyard.models.signature import to_numpy
from modelyard.schemas.models import Schema

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from modelyard.artifacts.base import ArtifactStore
    from modelyard.serving.metrics import ServingMetrics

logger = logging.getLogger(__name__)

META_COLUMNS = (
    "request_id",
    "timestamp",
    "model",
    "version",
    "role",
    "protocol",
    "status",
    "latency_ms",
    "error",
    "row",
)


@dataclass(frozen=True)
class PayloadLogConfig:
    """Where and how much to log: `sample` is the fraction of requests logged (0 to 1)."""

    uri: str
    sample: float = 1.0
    flush_rows: int = 10_000
    flush_seconds: float = 60.0
    max_buffer_rows: int = 200_000
    seed: int | None = None  # for a reproducible sample (tests)

    def __post_init__(self) -> None:
        if not self.uri:
            raise InvalidArgument("The payload log needs a URI: a folder, file://... or s3://bucket/prefix.")
        if not 0.0 <= self.sample <= 1.0:
            raise InvalidArgument(
                f"The payload log sample must be a fraction from 0 to 1, not {self.sample}."
            )
        if self.flush_rows < 1 or self.max_buffer_rows < self.flush_rows:
            raise InvalidArgument("flush_rows must be at least 1, and max_buffer_rows at least flush_rows.")
        if self.flush_seconds <= 0:
            raise InvalidArgument("flush_seconds must be positive.")


@dataclass(eq=False)
class PayloadRecord:
    """One logged request: `inputs` as the model takes them (None if the body could not be decoded),
    `outputs` this request's part of the model's output (None if it failed)."""

    request_id: str
    timestamp: float  # seconds since the epoch, when the request arrived
    model: str
    version: str
    protocol: str
    status: int
    latency: float  # seconds
    error: str | None
    inputs: Any
    outputs: Any
    rows: int
    input_schema: Schema | None = None
    output_schema: Schema | None = None
    role: str = "primary"  # how the version answered: primary, canary, version (named), shadow (a copy)


class PayloadLogger:
    """Buffers sampled requests and writes them as Parquet from a background thread."""

    def __init__(
        self,
        config: PayloadLogConfig,
        metrics: ServingMetrics | None = None,
        store: ArtifactStore | None = None,
    ) -> None:
        # Everything the writer thread needs is imported here, in the caller's thread: a module imported in
        # the background (pyarrow imports pandas lazily) is seen half-initialized by the request path.
        try:
            import pyarrow
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise InvalidArgument("Payload logging writes Parquet: pip install pyarrow") from None
        with contextlib.suppress(ImportError):
            import pandas  # noqa: F401
        from modelyard.artifacts import artifact_store_for

        self.config = config
        self.metrics = metrics  # counts written and dropped rows and failed writes, when set
        self._store = store if store is not None else artifact_store_for(config.uri)  # unsupported: fail now
        self._random = random.Random(config.seed).random
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._records: list[PayloadRecord] = []
        self._rows = 0
        self._oldest: float | None = None  # time.monotonic() of the oldest buffered record
        self._thread: threading.Thread | None = None
        self._closing = False
        self.written_rows = 0
        self.dropped_rows = 0
        self.errors = 0
        self.files: list[str] = []  # paths written, relative to the URI (the last 1,000)
        _open.add(self)  # written at interpreter exit if never closed (a server run without its lifespan)

    def sampled(self) -> bool:
        """Whether to log the request being answered (decided before it runs)."""
        sample = self.config.sample
        return sample > 0.0 and (sample >= 1.0 or self._random() < sample)

    def log(self, record: PayloadRecord) -> None:
        """Buffer `record` for the next write; never blocks on I/O and never raises."""
        with self._lock:
            if self._closing or self._rows + record.rows > self.config.max_buffer_rows:
                self._dropped(record.rows)
                return
            self._records.append(record)
            self._rows += record.rows
            if self._oldest is None:
                self._oldest = time.monotonic()
            full = self._rows >= self.config.flush_rows
            start = self._thread is None
            if start:
                self._thread = threading.Thread(target=self._run, name="modelyard-payload-log", daemon=True)
        if start:
            assert self._thread is not None
            self._thread.start()
        if full:
            self._wake.set()

    def flush(self) -> None:
        """Write what is buffered now, in the calling thread."""
        with self._lock:
            records, self._records, self._rows, self._oldest = self._records, [], 0, None
        if records:
            self._write(records)

    def close(self, timeout: float | None = 60.0) -> None:
        """Stop taking records, write the buffered ones and stop the writer thread."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        self.flush()  # whatever the thread left (or all of it, if it never started)
        _open.discard(self)

    # -- the writer thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        flush_seconds = self.config.flush_seconds
        while True:
            oldest = self._oldest
            wait = flush_seconds if oldest is None else oldest + flush_seconds - time.monotonic()
            self._wake.wait(max(wait, 0.0))
            self._wake.clear()
            closing = self._closing
            oldest = self._oldest
            if (
                closing
                or self._rows >= self.config.flush_rows
                or (oldest is not None and time.monotonic() - oldest >= flush_seconds)
            ):
                self.flush()
            if closing:
                return

    def _write(self, records: list[PayloadRecord]) -> None:
        groups: dict[tuple[str, str, date], list[PayloadRecord]] = {}
        for record in records:
            day = datetime.fromtimestamp(record.timestamp, timezone.utc).date()
            groups.setdefault((record.model, record.version, day), []).append(record)
        for (model, version, day), group in groups.items():
            rows = sum(r.rows for r in group)
            try:
                for table in tables(group):
                    path = part_path(model, version, day)
                    self._store.put_bytes(to_parquet(table), path)
                    self.files = [*self.files[-999:], path]
            except Exception:
                self.errors += 1
                self._dropped(rows)
                if self.metrics is not None:
                    self.metrics.payload_log_errors.inc()
                logger.exception(
                    "Could not write %d payload log rows of %s version %s to %s; they are dropped.",
                    rows, model, version, self.config.uri,
                )  # fmt: skip
            else:
                self.written_rows += rows
                if self.metrics is not None:
                    self.metrics.payload_log_rows.labels("written").inc(rows)

    def _dropped(self, rows: int) -> None:
        self.dropped_rows += rows
        if self.metrics is not None:
            self.metrics.payload_log_rows.labels("dropped").inc(rows)


_open: weakref.WeakSet[PayloadLogger] = weakref.WeakSet()


@atexit.register
def _close_open_loggers() -> None:
    for payload_logger in list(_open):
        with contextlib.suppress(Exception):
            payload_logger.close(timeout=10)


def part_path(model: str, version: str, day: date) -> str:
    """`<model>/<version>/date=YYYY-MM-DD/part-<UTC time>-<uuid8>.parquet` (names sort by write time)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{model}/{version}/date={day.isoformat()}/part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"


def to_parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


# -- records to Arrow tables ---------------------------------------------------------------------------------


def tables(records: list[PayloadRecord]) -> list[pa.Table]:
    """The records as Arrow tables: one in general, one per column layout where layouts cannot be merged."""
    import pyarrow as pa

    by_layout: dict[tuple[Any, ...], list[tuple[PayloadRecord, int, dict[str, Any]]]] = {}
    for record in records:
        rows, columns = _columns(record)
        layout = tuple(
            (name, value.dtype.str, value.shape[1:]) if isinstance(value, np.ndarray) else (name, "list")
            for name, value in columns.items()
        )
        by_layout.setdefault(layout, []).append((record, rows, columns))
    built = [_table(group) for group in by_layout.values()]
    if len(built) == 1:
        return built
    try:
        return [pa.concat_tables(built, promote_options="permissive")]
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return built


def _table(group: list[tuple[PayloadRecord, int, dict[str, Any]]]) -> pa.Table:
    import pyarrow as pa

    counts = np.array([rows for _, rows, _ in group])
    records = [record for record, _, _ in group]

    def repeat(values: list[Any], type: pa.DataType) -> pa.Array:
        return pa.array(np.repeat(np.array(values, dtype=object), counts), type=type)

    micros = np.repeat(np.array([round(r.timestamp * 1e6) for r in records], dtype=np.int64), counts)
    meta: dict[str, pa.Array] = {
        "request_id": repeat([r.request_id for r in records], pa.string()),
        "timestamp": pa.array(micros, pa.timestamp("us", tz="UTC")),
        "model": repeat([r.model for r in records], pa.string()),
        "version": repeat([r.version for r in records], pa.string()),
        "role": repeat([r.role for r in records], pa.string()),
        "protocol": repeat([r.protocol for r in records], pa.string()),
        "status": pa.array(np.repeat(np.array([r.status for r in records], dtype=np.int16), counts)),
        "latency_ms": pa.array(np.repeat(np.array([r.latency * 1000 for r in records]), counts)),
        "error": repeat([r.error for r in records], pa.string()),
        "row": pa.array(np.concatenate([np.arange(n, dtype=np.int32) for n in counts])),
    }
    data: dict[str, pa.Array] = {}
    for name in group[0][2]:
        parts = [columns[name] for _, _, columns in group]
        if isinstance(parts[0], np.ndarray):
            data[name] = _arrow(np.concatenate(parts) if len(parts) > 1 else parts[0])
        else:
            data[name] = _arrow([value for part in parts for value in part])
    return pa.table({**meta, **data})


def _columns(record: PayloadRecord) -> tuple[int, dict[str, Any]]:
    """(rows, {column: values}) of one record: numpy arrays with one entry per row, or lists of one whole
    tensor when the request's tensors share no row dimension."""
    columns: dict[str, np.ndarray] = {}
    if record.inputs is not None:
        columns.update(_named(record.inputs, record.input_schema, "input"))
    if record.outputs is not None:
        columns.update(_named(record.outputs, record.output_schema, "output"))
    rows = record.rows
    if all(a.ndim and a.shape[0] == rows for a in columns.values()):
        return rows, dict(columns)
    return 1, {name: [_python(a)] for name, a in columns.items()}


def _named(value: Any, schema: Schema | None, prefix: str) -> dict[str, np.ndarray]:
    if isinstance(value, np.ndarray):  # the common case first: one tensor
        return {f"{prefix}.{_tensor_name(value, schema, prefix)}": value}
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif _is_frame(value):
        items = [(str(c), value[c]) for c in value.columns]
    else:
        items = [(_tensor_name(value, schema, prefix), value)]
    return {f"{prefix}.{name}": to_numpy(v) for name, v in items}


def _tensor_name(value: Any, schema: Schema | None, prefix: str) -> str:
    """A lone tensor's name: the signature's, a Series' own, or `input-0`/`output-0` (as in /v2/models/m)."""
    if schema is not None and schema.type == "tensor" and schema.fields[0].name:
        return schema.fields[0].name
    if hasattr(value, "iloc") and getattr(value, "name", None) is not None:
        return str(value.name)
    return f"{prefix}-0"


def _arrow(values: Any) -> pa.Array:
    """One Arrow column: scalars per row, or each row's slice as a (nested) list."""
    import pyarrow as pa

    if isinstance(values, np.ndarray):
        try:
            if values.ndim <= 1:
                return pa.array(values)
            if all(values.shape[1:]):
                flat = pa.array(values.reshape(-1))
                for size in reversed(values.shape[1:]):
                    offsets = pa.array(np.arange(0, len(flat) + 1, size, dtype=np.int32))
                    flat = pa.ListArray.from_arrays(offsets, flat)
                return flat
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError):
            pass
        values = [_python(v) for v in values]
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _python(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def _is_frame(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.DataFrame)


# -- reading ------------------------------------------------------------------------------------------------


def read_payloads(
    uri: str,
    model: str,
    version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """The logged rows of `model` (one version, or all) that arrived in [since, until), oldest first.

    Naive datetimes are taken as UTC. Only the day partitions overlapping the window are read.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from modelyard.artifacts import artifact_store_for

    store = artifact_store_for(uri)
    start, end = _utc(since), _utc(until)
    if version is not None:
        versions = [version]
    else:
        versions = [info.path.rsplit("/", 1)[-1] for info in store.list(model) if info.is_dir]
    frames: list[pd.DataFrame] = []
    for v in versions:
        for partition in store.list(f"{model}/{v}"):
            name = partition.path.rsplit("/", 1)[-1]
            if not partition.is_dir or not name.startswith("date="):
                continue
            try:
                day = date.fromisoformat(name[len("date=") :])
            except ValueError:
                continue
            if (start is not None and day < start.date()) or (end is not None and day > end.date()):
                continue
            for file in store.list(partition.path):
                if file.is_dir or not file.path.endswith(".parquet"):
                    continue
                with store.open_read(file.path) as stream:
                    frames.append(pq.read_table(pa.BufferReader(stream.read())).to_pandas())
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in META_COLUMNS})
    frame = pd.concat(frames, ignore_index=True)
    if start is not None:
        frame = frame[frame["timestamp"] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame[frame["timestamp"] < pd.Timestamp(end)]
    return frame.sort_values(["timestamp", "request_id", "row"], kind="stable").reset_index(drop=True)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
