"""What every command shares: the lazily built `Client`, rich consoles, JSON output and humane formatting."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from modelyard.schemas import Experiment, Run
    from modelyard.tracking.client import Client

F = TypeVar("F", bound=Callable[..., Any])

STATUS_STYLES = {"RUNNING": "cyan", "SCHEDULED": "blue", "FINISHED": "green", "FAILED": "red", "KILLED": "yellow"}
HEADER = "bold"
ID_STYLE = "cyan"
DIM = "dim"
RUN_ID_WIDTH = 32  # full run ids: people copy them into the next command


@dataclass
class State:
    """Per-invocation state: the `--tracking-uri` option and the one `Client` built from it on first use."""

    tracking_uri: str | None = None
    _client: Client | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            from modelyard.tracking.client import Client

            self._client = Client(self.tracking_uri)
        return self._client

    def close(self) -> None:
        if self._client is None:
            return
        try:
            self._client.flush()
            self._client.store.close()
        except Exception:  # closing must never hide the command's own result or error
            pass


pass_state = click.make_pass_decorator(State, ensure=True)


# -- output ------------------------------------------------------------------------------------------------


def out() -> Console:
    """A console on stdout (created per command so test runners that swap sys.stdout see the output)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")(
        func
    )


def to_jsonable(value: Any) -> Any:
    """Pydantic models (and lists of them) as plain JSON values; `schema_` fields keep their wire name."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), indent=2, allow_nan=True))


def new_table(*columns: str, title: str | None = None) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, header_style=HEADER, title_justify="left", title_style="bold")
    for column in columns:
        table.add_column(column)
    return table


def key_value_grid(rows: Iterable[tuple[str, Any]]) -> Table:
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style=DIM, no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(key, value if value is not None else "-")
    return grid


# -- formatting --------------------------------------------------------------------------------------------


def fmt_time(ms: int | None) -> str:
    """Milliseconds since the epoch as local time, e.g. 2024-05-01 14:03:07."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(ms: float | None) -> str:
    """A duration for people: 850ms, 4.2s, 3m 05s, 2h 03m, 3d 4h."""
    if ms is None or ms < 0:
        return "-"
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def run_duration(run: Run) -> str:
    start, end = run.info.start_time, run.info.end_time
    if end is None:
        return fmt_duration(time.time() * 1000 - start) + " …" if run.info.status.value == "RUNNING" else "-"
    return fmt_duration(end - start)


def fmt_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def fmt_metric(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"


def esc(value: object) -> str:
    """`value` as text that rich prints literally (names may contain '[')."""
    from rich.markup import escape

    return escape(str(value))


def status_text(status: str) -> Text:
    from rich.text import Text

    return Text(status, style=STATUS_STYLES.get(status, ""))


# -- shared look-ups ---------------------------------------------------------------------------------------


def resolve_experiment(client: Client, id_or_name: str) -> Experiment:
    """The experiment with this id, else with this name (active first, then deleted)."""
    from modelyard.errors import NotFound

    if id_or_name.isdigit():
        try:
            return client.get_experiment(id_or_name)
        except NotFound:
            pass  # a name made of digits
    exp = client.get_experiment_by_name(id_or_name)
    if exp is None:
        raise NotFound(f"No experiment with id or name {id_or_name!r}. List them with: modelyard experiments list")
    return exp


def parse_key_values(values: Sequence[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        pairs[key.strip()] = value
    return pairs


def pick_metric_keys(runs: Sequence[Run], preferred: Sequence[str] = (), limit: int = 4) -> list[str]:
    """The metric columns worth showing: `preferred` ones first, then those most runs have."""
    counts = Counter(key for run in runs for key in run.data.metrics)
    keys = [k for k in dict.fromkeys(preferred) if k in counts]
    for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(keys) >= limit:
            break
        if key not in keys:
            keys.append(key)
    return keys[:limit]


def runs_table(
    runs: Sequence[Run], client: Client, preferred_metrics: Sequence[str] = (), title: str | None = None
) -> Table:
    """Run id, name, (experiment), status, start, duration and a few metrics, one row per run."""
    from rich import box
    from rich.table import Table

    experiment_ids = list(dict.fromkeys(r.info.experiment_id for r in runs))
    names = {i: client.get_experiment(i).name for i in experiment_ids} if len(experiment_ids) > 1 else {}
    metric_keys = pick_metric_keys(runs, preferred_metrics)
    table = Table(title=title, box=box.SIMPLE_HEAD, header_style=HEADER, title_justify="left", title_style="bold")
    table.add_column("Run ID", style=ID_STYLE, no_wrap=True, min_width=RUN_ID_WIDTH)
    table.add_column("Name", overflow="fold")
    if names:
        table.add_column("Experiment", overflow="fold")
    table.add_column("Status", no_wrap=True)
    table.add_column("Started", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    for key in metric_keys:
        table.add_column(esc(key), justify="right", overflow="fold")
    for run in runs:
        row: list[Any] = [run.run_id, esc(run.info.run_name)]
        if names:
            row.append(esc(names[run.info.experiment_id]))
        row += [status_text(run.info.status.value), fmt_time(run.info.start_time), run_duration(run)]
        row += [fmt_metric(run.data.metrics.get(k)) for k in metric_keys]
        table.add_row(*row)
    return table
