"""`Client`: every tracking operation, explicit about the run it acts on. The fluent API builds on it."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelyard import config
from modelyard.errors import InvalidArgument, InvalidState, NotFound
from modelyard.schemas import (
    BatchSequence,
    DatasetInput,
    Experiment,
    Metric,
    MetricHistory,
    Param,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    SearchRunsPage,
    ViewType,
)
from modelyard.store import validation

if TYPE_CHECKING:
    import pandas as pd

    from modelyard.artifacts import ArtifactStore
    from modelyard.schemas.artifacts import FileInfo
    from modelyard.store.base import TrackingStore
    from modelyard.tracking.writer import BufferedWriter


def _now() -> int:
    return int(time.time() * 1000)


def _journal_folder(tracking_uri: str) -> Path:
    """The buffered writer's journals for one store: a folder per tracking URI, so that a process replays
    only points that belong to the store it talks to."""
    return config.home() / "journal" / hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]


class Client:
    """Tracking client for one store (`tracking_uri`, default: the embedded SQLite store)."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri or config.tracking_uri()
        self._store: TrackingStore | None = None
        self._writer: BufferedWriter | None = None
        self._steps: dict[tuple[str, str], int] = {}  # last step per (run, key), for auto-increment
        self._created: set[str] = set()  # runs whose stored steps are known (created or looked up here)
        self._artifact_uris: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client(tracking_uri={self.tracking_uri!r})"

    @property
    def store(self) -> TrackingStore:
        if self._store is None:
            from modelyard.store.registry import tracking_store_for

            self._store = tracking_store_for(self.tracking_uri)
        return self._store

    @property
    def writer(self) -> BufferedWriter:
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    from modelyard.tracking.writer import BufferedWriter

                    self._writer = BufferedWriter(
                        self._store_batch, _journal_folder(self.tracking_uri), config.get("flush_interval")
                    )
        return self._writer

    def _store_batch(self, run_id: str, metrics: Sequence[Metric], sequence: BatchSequence) -> None:
        self.store.log_batch(run_id, metrics=metrics, sequence=sequence)

    # experiments -----------------------------------------------------------------------------------------
    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> str:
        return self.store.create_experiment(name, artifact_location, _str_dict(tags))

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self.store.get_experiment(str(experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return self.store.get_experiment_by_name(name)

    def get_or_create_experiment(self, name: str) -> str:
        """The id of the active experiment `name`, created when missing."""
        from modelyard.errors import AlreadyExists

        exp = self.store.get_experiment_by_name(name)
        if exp is not None and exp.lifecycle_stage.value == "active":
            return exp.experiment_id
        try:
            return self.store.create_experiment(name)
        except AlreadyExists:  # created concurrently by another process
            found = self.store.get_experiment_by_name(name)
            assert found is not None
            return found.experiment_id

    def search_experiments(
        self,
        view_type: ViewType | str = ViewType.ACTIVE_ONLY,
        name_like: str | None = None,
        max_results: int = 1000,
    ) -> list[Experiment]:
        return self.store.search_experiments(ViewType(view_type), name_like, max_results)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self.store.rename_experiment(str(experiment_id), new_name)

    def delete_experiment(self, experiment_id: str) -> None:
        self.store.delete_experiment(str(experiment_id))

    def restore_experiment(self, experiment_id: str) -> None:
        self.store.restore_experiment(str(experiment_id))

    def purge_experiment(self, experiment_id: str, delete_artifacts: bool = True) -> None:
        """Remove a deleted experiment, its runs and (by default) their artifacts for good.

        Only the runs' own folders are deleted, never the experiment's whole artifact location, which
        another experiment may share."""
        exp = self.store.get_experiment(str(experiment_id))
        if exp.lifecycle_stage.value != "deleted":  # checked before any artifact goes
            raise InvalidState(
                f"Experiment {exp.experiment_id} ({exp.name!r}) is active; delete it before purging it."
            )
        token = None
        while delete_artifacts:
            page = self.store.search_runs(
                [exp.experiment_id], max_results=10_000, page_token=token, view_type=ViewType.ALL
            )
            for run in page.runs:
                self._delete_run_artifacts(run)
            token = page.next_page_token
            if token is None:
                break
        self.store.purge_experiment(exp.experiment_id)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        self.store.set_experiment_tag(str(experiment_id), key, str(value))

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        """NotFound if the experiment has no tag `key`."""
        self.store.delete_experiment_tag(str(experiment_id), key)

    def _experiment_ids(self, experiments: Iterable[str] | str | None) -> list[str]:
        """Accept experiment ids or names (a name that does not exist is an error naming it)."""
        if experiments is None:
            return [e.experiment_id for e in self.store.search_experiments()]
        items = [experiments] if isinstance(experiments, (str, int)) else list(experiments)
        ids = []
        for item in items:
            item = str(item)
            if item.isdigit():
                ids.append(item)
                continue
            exp = self.store.get_experiment_by_name(item)
            if exp is None:
                raise NotFound(f"No experiment named {item!r}. List them with: modelyard experiments list")
            ids.append(exp.experiment_id)
        return ids

    # runs ------------------------------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        start_time: int | None = None,
        description: str | None = None,
    ) -> Run:
        run = self.store.create_run(
            str(experiment_id),
            run_name=run_name,
            start_time=start_time,
            parent_run_id=parent_run_id,
            tags=_str_dict(tags),
            params=_str_dict(params),
            description=description,
        )
        self._artifact_uris[run.run_id] = run.info.artifact_uri
        self._created.add(run.run_id)
        return run

    def get_run(self, run_id: str) -> Run:
        return self.store.get_run(run_id)

    def update_run(
        self,
        run_id: str,
        status: RunStatus | str | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> RunInfo:
        return self.store.update_run(
            run_id, status=RunStatus(status) if status else None, run_name=name, description=description
        )

    def set_terminated(
        self, run_id: str, status: RunStatus | str = RunStatus.FINISHED, end_time: int | None = None
    ) -> RunInfo:
        """Store the run's buffered metrics (and those a killed process left) and mark it ended; its last
        points are stored in the same transaction as its end."""
        return self.writer.finish(
            run_id,
            lambda points, sequence: self.store.end_run(
                run_id, RunStatus(status), end_time, metrics=points, sequence=sequence
            ),
        )

    def delete_run(self, run_id: str) -> None:
        self.store.delete_run(run_id)

    def restore_run(self, run_id: str) -> None:
        self.store.restore_run(run_id)

    def purge_run(self, run_id: str, delete_artifacts: bool = True) -> None:
        """Remove a deleted run and (by default) its artifacts for good."""
        run = self.store.get_run(run_id)
        if run.info.lifecycle_stage.value != "deleted":  # checked before any artifact goes
            raise InvalidState(f"Run {run_id} is active; delete it before purging it.")
        if delete_artifacts:
            self._delete_run_artifacts(run)
        self.store.purge_run(run_id)

    def _delete_run_artifacts(self, run: Run) -> None:
        """Through the server's proxy when remote (the run must still exist there), else the run's folder."""
        if hasattr(self.store, "artifact_store"):
            self.artifact_store(run.run_id).delete()
        else:
            _delete_run_folder(run.info.artifact_uri)

    def deleted_runs(self, older_than: int | None = None) -> list[Run]:
        """Runs deleted (at or before `older_than`, ms since the epoch) and not yet purged."""
        return self.store.deleted_runs(older_than)

    def close(self) -> None:
        """Store buffered points and stop the writer thread. The store stays open: other clients in this
        process share it (one connection pool per URI)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # params, metrics, tags ------------------------------------------------------------------------------
    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, params=[Param(key=key, value=str(value))])

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.log_batch(run_id, params=[Param(key=k, value=str(v)) for k, v in params.items()])

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: Any,
        step: int | None = None,
        timestamp: int | None = None,
        synchronous: bool = False,
    ) -> None:
        """Record one point. Buffered: returns at once, stored within `flush_interval` (or at `flush()`).

        Without `step`, the step counts up per key from 0 (or from the last explicit step + 1)."""
        validation.validate_key("Metric", key)
        value = validation.validate_metric_value(key, value)
        step = self._next_step(run_id, key, step)
        ts = timestamp if timestamp is not None else int(time.time() * 1000)
        if synchronous:
            self.store.log_batch(run_id, metrics=[Metric(key=key, value=value, step=step, timestamp=ts)])
        else:
            self.writer.add(run_id, key, value, step, ts)

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, Any],
        step: int | None = None,
        timestamp: int | None = None,
        synchronous: bool = False,
    ) -> None:
        ts = timestamp if timestamp is not None else _now()
        for key, value in metrics.items():
            self.log_metric(run_id, key, value, step=step, timestamp=ts, synchronous=synchronous)

    def _next_step(self, run_id: str, key: str, step: int | None) -> int:
        if step is None:
            last = self._steps.get((run_id, key))
            if last is None and run_id not in self._created:
                last = self._stored_steps(run_id).get(key)  # a resumed run continues after its last step
            step = 0 if last is None else last + 1
        elif isinstance(step, bool) or not isinstance(step, int):
            try:
                step = int(step)  # numpy integers
            except (TypeError, ValueError):
                raise InvalidArgument(f"Metric {key!r}: step must be an integer, got {step!r}.") from None
        self._steps[(run_id, key)] = step
        return step

    def _stored_steps(self, run_id: str) -> dict[str, int]:
        """Last stored step per metric of a run this client did not create (fetched once per run)."""
        self._created.add(run_id)
        steps = {m.key: m.step for m in self.store.get_latest_metrics(run_id)}
        for key, step in steps.items():
            self._steps.setdefault((run_id, key), step)
        return steps

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        """Store metrics, params and tags now, in one transaction."""
        self.store.log_batch(run_id, metrics=metrics, params=params, tags=tags)

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, tags=[RunTag(key=key, value=str(value))])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.log_batch(run_id, tags=[RunTag(key=k, value=str(v)) for k, v in tags.items()])

    def delete_tag(self, run_id: str, key: str) -> None:
        self.store.delete_tag(run_id, key)

    def get_metric_history(self, run_id: str, key: str) -> MetricHistory:
        """Every stored point of `key` (call `flush()` first to include points still buffered)."""
        return self.store.get_metric_history(run_id, key)

    def flush(self) -> bool:
        """Wait until every buffered point is stored, and those that earlier processes left unstored (killed,
        or ended while the store was down). False if some could not be stored: they wait on disk."""
        return self.writer.flush()

    # datasets --------------------------------------------------------------------------------------------
    def log_dataset(
        self,
        run_id: str,
        data: Any,
        name: str | None = None,
        context: str | None = None,
        source: str | None = None,
    ) -> DatasetInput:
        """Record the dataset a run used: its content digest, source, schema and row count."""
        from modelyard.tracking.datasets import dataset_from

        item = DatasetInput(dataset=dataset_from(data, name=name, source=source), context=context)
        self.store.log_inputs(run_id, [item])
        return item

    # search ----------------------------------------------------------------------------------------------
    def search_runs(
        self,
        experiments: Iterable[str] | str | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | str | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view_type: ViewType | str = ViewType.ACTIVE_ONLY,
        output: Literal["list", "pandas", "page"] = "list",
    ) -> list[Run] | pd.DataFrame | SearchRunsPage:
        """Runs of `experiments` (ids or names; default: all active) matching `filter`, e.g.
        ``metrics.acc > 0.9 AND (params.model = 'cnn' OR tags.team LIKE 'cv%')``.

        `output="page"` returns the page with its `next_page_token`; `"pandas"` a DataFrame, one row a run."""
        orders = [order_by] if isinstance(order_by, str) else order_by
        page = self.store.search_runs(
            self._experiment_ids(experiments), filter, orders, max_results, page_token, ViewType(view_type)
        )
        if output == "page":
            return page
        if output == "pandas":
            import pandas as pd

            return pd.DataFrame([r.to_flat_dict() for r in page.runs])
        if output != "list":
            raise InvalidArgument(f"output must be 'list', 'pandas' or 'page', got {output!r}.")
        return page.runs

    # artifacts -------------------------------------------------------------------------------------------
    def artifact_store(self, run_id: str) -> ArtifactStore:
        from modelyard.artifacts import artifact_store_for

        uri = self._artifact_uris.get(run_id)
        if uri is None:
            uri = self._artifact_uris[run_id] = self.store.get_run(run_id).info.artifact_uri
        proxied = getattr(self.store, "artifact_store", None)  # a server: through its artifact proxy
        if proxied is not None:
            return proxied(run_id, uri)  # type: ignore[no-any-return]
        return artifact_store_for(uri)

    def log_artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload one file into the run's artifacts (under folder `artifact_path` if given)."""
        local = Path(local_path)
        if not local.is_file():
            raise InvalidArgument(f"{str(local)!r} is not a file; use log_artifacts for a folder.")
        dest = f"{artifact_path.strip('/')}/{local.name}" if artifact_path else local.name
        self.artifact_store(run_id).put_file(local, dest)

    def log_artifacts(self, run_id: str, local_dir: str | Path, artifact_path: str | None = None) -> None:
        local = Path(local_dir)
        if not local.is_dir():
            raise InvalidArgument(f"{str(local)!r} is not a folder; use log_artifact for a file.")
        self.artifact_store(run_id).put_dir(local, artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.artifact_store(run_id).put_bytes(text.encode("utf-8"), artifact_file)

    def log_dict(self, run_id: str, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Write a dict as JSON, or YAML when `artifact_file` ends in .yaml/.yml."""
        if artifact_file.endswith((".yaml", ".yml")):
            import yaml

            text = yaml.safe_dump(dict(dictionary), sort_keys=False)
        else:
            text = json.dumps(dictionary, indent=2, default=str)
        self.log_text(run_id, text, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        """Save a matplotlib figure (format from the file extension, e.g. .png, .svg, .pdf)."""
        if not callable(getattr(figure, "savefig", None)):
            raise InvalidArgument(
                f"log_figure takes a matplotlib figure (with .savefig), not {type(figure).__name__}; "
                "for an image array use log_image."
            )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            try:
                figure.savefig(path, bbox_inches="tight")
            except ValueError as exc:  # matplotlib: "Format 'txt' is not supported (supported formats: ...)"
                raise InvalidArgument(f"Cannot save the figure as {artifact_file!r}: {exc}") from None
            self.artifact_store(run_id).put_file(path, artifact_file)

    def log_image(self, run_id: str, image: Any, artifact_file: str) -> None:
        """Save a numpy array (H×W, H×W×3 or H×W×4; uint8, or floats in [0, 1]) or a PIL image."""
        from modelyard.tracking.images import to_pil

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            to_pil(image).save(path)
            self.artifact_store(run_id).put_file(path, artifact_file)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        return self.artifact_store(run_id).list(path or "")

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | Path | None = None) -> Path:
        """Download a file or folder of the run's artifacts; returns the local path."""
        store = self.artifact_store(run_id)
        if dst_path is not None:
            return store.download(path, Path(dst_path))
        dest = Path(tempfile.mkdtemp(prefix="modelyard-"))
        try:
            return store.download(path, dest)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)  # no empty temp folder left behind on a failed download
            raise


def _delete_run_folder(artifact_uri: str) -> None:
    """Delete `<experiment location>/<run id>`, the folder that holds the run's `artifacts/`."""
    from modelyard.artifacts import artifact_store_for

    root = artifact_uri[: -len("/artifacts")] if artifact_uri.endswith("/artifacts") else artifact_uri
    artifact_store_for(root).delete()


def _str_dict(values: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (values or {}).items()}
