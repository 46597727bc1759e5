"""The fluent API: `with my.start_run(...)`, then `my.log_metric(...)` and friends act on the active run."""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from modelyard import config
from modelyard.errors import InvalidArgument, InvalidState
from modelyard.schemas import DatasetInput, Run, RunStatus
from modelyard.tracking.client import Client

_lock = threading.RLock()
_client: Client | None = None
_client_uri: str | None = None
_active: list[ActiveRun] = []
_experiment_name: str | None = None


def get_client() -> Client:
    """The client for the current tracking URI (`set_tracking_uri` or MODELYARD_TRACKING_URI)."""
    global _client
    uri = _client_uri or config.tracking_uri()
    with _lock:
        if _client is None or _client.tracking_uri != uri:
            _client = Client(uri)
        return _client


def set_tracking_uri(uri: str | None) -> None:
    global _client_uri
    _client_uri = uri


def get_tracking_uri() -> str:
    return _client_uri or config.tracking_uri()


def set_experiment(name: str) -> str:
    """Make `name` the experiment of runs started without one (created when missing); returns its id."""
    global _experiment_name
    experiment_id = get_client().get_or_create_experiment(name)
    _experiment_name = name
    return experiment_id


class ActiveRun:
    """A started run; ends itself as FINISHED, FAILED (the block raised) or KILLED (Ctrl-C) on exit."""

    def __init__(self, run: Run, client: Client) -> None:
        self._run = run
        self.client = client

    @property
    def info(self) -> Any:
        return self._run.info

    @property
    def run_id(self) -> str:
        return self._run.run_id

    def __repr__(self) -> str:
        return f"<ActiveRun {self._run.info.run_name!r} id={self.run_id}>"

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            status = RunStatus.FINISHED
        elif issubclass(exc_type, KeyboardInterrupt):
            status = RunStatus.KILLED
        else:
            status = RunStatus.FAILED
        end_run(status, run=self)


def start_run(
    experiment: str | int | None = None,
    name: str | None = None,
    *,
    run_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    nested: bool | None = None,
    capture: bool = True,
) -> ActiveRun:
    """Start (or with `run_id`, resume) a run and make it the active one.

    `experiment` is a name (created when missing) or id; default: `set_experiment`'s, else
    MODELYARD_EXPERIMENT_NAME, else "Default". A run started while another is active becomes its child.
    With `capture`, the run records git commit/branch/remote/dirty state (and the diff when dirty), the entry
    point, Python version, host, user and the installed packages."""
    client = get_client()
    if run_id is not None:
        run = client.get_run(run_id)
        if run.info.status.is_terminal:
            client.update_run(run_id, status=RunStatus.RUNNING)
        active = ActiveRun(client.get_run(run_id), client)
    else:
        parent = _active[-1].run_id if _active and nested is not False else None
        experiment_id = _resolve_experiment(client, experiment)
        run_tags = {}
        if capture:
            from modelyard.tracking import context

            run_tags.update(context.run_tags())
        run_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
        run = client.create_run(
            experiment_id,
            run_name=name,
            tags=run_tags,
            params=params,
            parent_run_id=parent,
            description=description,
        )
        active = ActiveRun(run, client)
        if capture:
            log_environment(client, run.run_id)
    with _lock:
        _active.append(active)
    return active


def _resolve_experiment(client: Client, experiment: str | int | None) -> str:
    if isinstance(experiment, int) and not isinstance(experiment, bool):
        experiment = str(experiment)  # an experiment id, as MLflow code passes it
    elif experiment is not None and not isinstance(experiment, str):
        raise InvalidArgument(
            f"experiment must be an experiment name or id, not {type(experiment).__name__} {experiment!r}."
        )
    name = experiment or _experiment_name or os.environ.get("MODELYARD_EXPERIMENT_NAME")
    if name is None:
        return "0"
    if name.isdigit():
        return client.get_experiment(name).experiment_id
    return client.get_or_create_experiment(name)


def log_environment(client: Client, run_id: str) -> None:
    """Store the installed packages (and the git diff when the tree is dirty) with run `run_id`."""
    from modelyard.tracking import context

    store = client.artifact_store(run_id)
    store.put_bytes(context.installed_packages().encode(), context.PACKAGES_ARTIFACT)
    git = context.git_state(context.source_dir())
    if git is not None and git.dirty and git.diff:
        store.put_bytes(git.diff.encode(), context.DIFF_ARTIFACT)


def active_run() -> ActiveRun | None:
    return _active[-1] if _active else None


def _require_run() -> ActiveRun:
    if not _active:
        raise InvalidState("No active run: wrap your code in `with modelyard.start_run():` first.")
    return _active[-1]


def end_run(status: RunStatus | str = RunStatus.FINISHED, run: ActiveRun | None = None) -> None:
    """End the active run (or `run`), and any child still open inside it."""
    with _lock:
        target = run or (active_run())
        if target is None:
            return
        if target not in _active:
            return
        while _active:
            top = _active.pop()
            top.client.set_terminated(top.run_id, RunStatus(status))
            if top is target:
                break


def log_param(key: str, value: Any) -> None:
    run = _require_run()
    run.client.log_param(run.run_id, key, value)


def log_params(params: Mapping[str, Any]) -> None:
    run = _require_run()
    run.client.log_params(run.run_id, params)


def log_metric(key: str, value: Any, step: int | None = None, timestamp: int | None = None) -> None:
    """Buffered: returns at once. Without `step`, the step counts up per key."""
    run = _require_run()
    run.client.log_metric(run.run_id, key, value, step=step, timestamp=timestamp)


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    run = _require_run()
    run.client.log_metrics(run.run_id, metrics, step=step)


def set_tag(key: str, value: Any) -> None:
    run = _require_run()
    run.client.set_tag(run.run_id, key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    run = _require_run()
    run.client.set_tags(run.run_id, tags)


def log_artifact(local_path: str | Path, artifact_path: str | None = None) -> None:
    run = _require_run()
    run.client.log_artifact(run.run_id, local_path, artifact_path)


def log_artifacts(local_dir: str | Path, artifact_path: str | None = None) -> None:
    run = _require_run()
    run.client.log_artifacts(run.run_id, local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    run = _require_run()
    run.client.log_text(run.run_id, text, artifact_file)


def log_dict(dictionary: Mapping[str, Any], artifact_file: str) -> None:
    run = _require_run()
    run.client.log_dict(run.run_id, dictionary, artifact_file)


def log_figure(figure: Any, artifact_file: str) -> None:
    run = _require_run()
    run.client.log_figure(run.run_id, figure, artifact_file)


def log_image(image: Any, artifact_file: str) -> None:
    run = _require_run()
    run.client.log_image(run.run_id, image, artifact_file)


def log_dataset(
    data: Any, name: str | None = None, context: str | None = None, source: str | None = None
) -> DatasetInput:
    """Record a dataset (path, DataFrame, numpy array or pyarrow Table) used by the active run."""
    run = _require_run()
    return run.client.log_dataset(run.run_id, data, name=name, context=context, source=source)


def flush() -> bool:
    """Wait until every buffered metric point is stored, with those that earlier processes left unstored
    (killed, or ended while the store was down). False if some could not be stored: they wait on disk."""
    return get_client().flush()


def search_runs(
    experiments: Sequence[str] | str | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | str | None = None,
    max_results: int = 1000,
    page_token: str | None = None,
    output: str = "list",
) -> Any:
    """See `Client.search_runs`."""
    if output not in ("list", "pandas", "page"):
        raise InvalidArgument(f"output must be 'list', 'pandas' or 'page', got {output!r}.")
    return get_client().search_runs(experiments, filter, order_by, max_results, page_token, output=output)  # type: ignore[arg-type]


@atexit.register
def _end_open_runs() -> None:
    """A script that exits with runs still open ends them as FINISHED (the writer's own exit hook stores
    every buffered point)."""
    try:
        while _active:
            end_run(RunStatus.FINISHED)
    except Exception:  # never fail interpreter shutdown
        pass
