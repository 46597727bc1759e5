"""The tracking store interface. Writes are batch-oriented: one call, one transaction."""

from __future__ import annotations

import abc
from collections.abc import Sequence

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


class TrackingStore(abc.ABC):
    """Experiments, runs and everything logged to them. Implementations must be safe for concurrent writers."""

    DEFAULT_EXPERIMENT_ID = "0"
    DEFAULT_EXPERIMENT_NAME = "Default"
    # True when a write's cost is the local database's own work (no network round trip, no lock held across
    # one): an async server may then call the store on its event loop, where a threadpool hop would cost
    # more than a small write itself. A wrapper (or any store that does not know) keeps False: threadpool.
    writes_are_local = False

    # experiments -----------------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        """Create an experiment and return its id; AlreadyExists if an active one has the name."""

    @abc.abstractmethod
    def get_experiment(self, experiment_id: str) -> Experiment: ...

    @abc.abstractmethod
    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The active experiment with this name (or a deleted one when no active one has it)."""

    @abc.abstractmethod
    def search_experiments(
        self,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        name_like: str | None = None,
        max_results: int = 1000,
    ) -> list[Experiment]: ...

    @abc.abstractmethod
    def rename_experiment(self, experiment_id: str, new_name: str) -> None: ...

    @abc.abstractmethod
    def delete_experiment(self, experiment_id: str) -> None:
        """Soft delete: the experiment and its runs become `deleted` and can be restored."""

    @abc.abstractmethod
    def restore_experiment(self, experiment_id: str) -> None: ...

    @abc.abstractmethod
    def purge_experiment(self, experiment_id: str) -> None:
        """Remove a deleted experiment and its runs for good, freeing its name."""

    @abc.abstractmethod
    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None: ...

    @abc.abstractmethod
    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        """NotFound if the experiment has no such tag."""

    # runs ------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        start_time: int | None = None,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        description: str | None = None,
    ) -> Run: ...

    @abc.abstractmethod
    def get_run(self, run_id: str) -> Run: ...

    @abc.abstractmethod
    def update_run(
        self,
        run_id: str,
        status: RunStatus | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
        description: str | None = None,
    ) -> RunInfo:
        """Change status (a terminal status sets end_time), end time, name or description."""

    @abc.abstractmethod
    def end_run(
        self,
        run_id: str,
        status: RunStatus,
        end_time: int | None = None,
        metrics: Sequence[Metric] = (),
        sequence: BatchSequence | None = None,
    ) -> RunInfo:
        """Store the run's last metric points and set its terminal status, in one transaction (`sequence`: as
        in `log_batch`)."""

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> None: ...

    @abc.abstractmethod
    def restore_run(self, run_id: str) -> None: ...

    @abc.abstractmethod
    def purge_run(self, run_id: str) -> None: ...

    @abc.abstractmethod
    def deleted_runs(self, older_than: int | None = None) -> list[Run]:
        """Runs in the `deleted` stage (deleted at or before `older_than` ms, if given), for garbage collection."""

    # logging ---------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
        sequence: BatchSequence | None = None,
    ) -> None:
        """Store everything in one transaction; Conflict if a param would change value.

        With `sequence` (the buffered writer's numbering of `metrics`), points this store already has from
        that writer for this run are skipped: a batch re-sent after a lost reply or a crash is stored once."""

    @abc.abstractmethod
    def delete_tag(self, run_id: str, key: str) -> None: ...

    @abc.abstractmethod
    def log_inputs(self, run_id: str, inputs: Sequence[DatasetInput]) -> None: ...

    @abc.abstractmethod
    def get_metric_history(self, run_id: str, key: str) -> MetricHistory: ...

    @abc.abstractmethod
    def get_latest_metrics(self, run_id: str) -> list[Metric]:
        """The latest point (highest step, then latest timestamp) of each of the run's metrics."""

    # search ----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
    ) -> SearchRunsPage: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
