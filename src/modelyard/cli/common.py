"""What every command shares: the lazily built `Client`, rich consoles, JSON output and humane formatting."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from modelyard.schemas import Experiment, Run
    from modelyard.store.accounts import AccountStore
    from modelyard.tracking.client import Client

F = TypeVar("F", bound=Callable[..., Any])

STATUS_STYLES = {
    "RUNNING": "cyan",
    "SCHEDULED": "blue",
    "FINISHED": "green",
    "FAILED": "red",
    "KILLED": "yellow",
}
HEADER = "bold"
ID_STYLE = "cyan"
DIM = "dim"


@dataclass
class State:
    """Per-invocation state: the `--tracking-uri` option and the one `Client` built from it on first use."""

    tracking_uri: str | None = None
    _client: Client | None = field(default=None, repr=False)
    _accounts: AccountStore | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            from modelyard.tracking.client import Client

            self._client = Client(self.tracking_uri)
        return self._client

    @property
    def accounts(self) -> AccountStore:
        """Users, tokens and grants: in the database itself, or through a server (as MODELYARD_TOKEN's user)."""
        if self._accounts is None:
            from modelyard.tracking.accounts import account_store_for

            self._accounts = account_store_for(self.tracking_uri)
        return self._accounts

    def close(self) -> None:
        for opened in (self._client, self._accounts):
            if opened is None:
                continue
            try:
                opened.close()
            except Exception:  # closing must never hide the command's own result or error
                pass


pass_state = click.make_pass_decorator(State, ensure=True)


def _set_tracking_uri(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(State).tracking_uri = value


def tracking_uri_option(func: F) -> F:
    """`--tracking-uri` after the subcommand too (`modelyard users create x --tracking-uri ...`)."""
    return click.option(
        "--tracking-uri",
        metavar="URI",
        expose_value=False,
        is_eager=True,
        callback=_set_tracking_uri,
        help="A database (full rights) or a server http://HOST:PORT (as MODELYARD_TOKEN's user); "
        "default: the global --tracking-uri.",
    )(func)


# -- output ------------------------------------------------------------------------------------------------


def out() -> Console:
    """A console on stdout (created per command so test runners that swap sys.stdout see the output)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def table_console() -> tuple[Console, int | None]:
    """stdout for a table, and the width its columns must fit (None: any). At a terminal narrow ones drop
    columns; piped or redirected, nothing is dropped or cut, so ids and URIs print whole."""
    console = out()
    if console.is_terminal:
        return console, console.width
    console.width = 1_000
    return console, None


def err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def json_option(func: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table."
    )(func)


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
    """A table in the house style: bold header over a rule, no borders, two spaces between columns."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        header_style=HEADER,
        title_justify="left",
        title_style="bold",
    )
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


def fmt_time(ms: int | None, short: bool = False) -> str:
    """Milliseconds since the epoch as local time, always with its date and time zone (a time alone is ambiguous
    once copied elsewhere): 2024-05-01 14:03:07 CEST, or with `short` (tables) 2024-05-01 14:03 CEST."""
    if ms is None:
        return "-"
    when = datetime.fromtimestamp(ms / 1000).astimezone()
    zone = when.tzname() or when.strftime("%z")
    return when.strftime("%Y-%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S") + f" {zone}"


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
        raise NotFound(
            f"No experiment with id or name {id_or_name!r}. List them with: modelyard experiments list"
        )
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
    """The metric columns worth showing: `preferred` ones first, then those that differ between the runs."""
    return differing_keys([run.data.metrics for run in runs], preferred, limit)


def differing_keys(
    rows: Sequence[Mapping[str, Any]], preferred: Sequence[str] = (), limit: int = 4
) -> list[str]:
    """Keys worth a column: `preferred` ones first (when some row has them), then those whose value differs
    between the rows (or that some rows lack), those most rows have first. One row: all its keys differ."""
    counts = Counter(key for row in rows for key in row)
    keys = [k for k in dict.fromkeys(preferred) if k in counts]
    for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(keys) >= limit:
            break
        values = {repr(row.get(key)) for row in rows}
        if key not in keys and (len(rows) == 1 or len(values) > 1):
            keys.append(key)
    return keys[:limit]


@dataclass
class _Column:
    header: str
    cells: list[Any]
    keep: int  # narrow consoles drop the lowest first
    options: dict[str, Any] = field(default_factory=dict)

    def width(self) -> int:
        texts = [self.header, *(c.plain if hasattr(c, "plain") else str(c) for c in self.cells)]
        return max(len(t) for t in texts)


def runs_table(
    runs: Sequence[Run],
    client: Client,
    preferred_metrics: Sequence[str] = (),
    metrics_first: bool = False,
    width: int | None = None,
    preferred_params: Sequence[str] = (),
) -> Table:
    """Run id, name, experiment, status, start, duration, and the metrics and params that differ between the
    runs (and those named in `preferred_*`), one row per run.

    When the columns do not fit `width`, the least useful go first: start time, experiment, duration, then
    params, status and metrics (metrics outlast the status with `metrics_first`, as in a search)."""
    experiment_ids = list(dict.fromkeys(r.info.experiment_id for r in runs))
    names = {i: client.get_experiment(i).name for i in experiment_ids}
    metric_keys = pick_metric_keys(runs, preferred_metrics)
    param_keys = differing_keys([r.data.params for r in runs], preferred_params)
    status_keep, metric_keep = (30, 45) if metrics_first else (45, 30)
    columns = [
        _Column("Run ID", [r.run_id for r in runs], 100, {"style": ID_STYLE, "no_wrap": True}),
        _Column("Name", [esc(r.info.run_name) for r in runs], 90, {"overflow": "fold"}),
        _Column("Experiment", [esc(names[r.info.experiment_id]) for r in runs], 12, {"overflow": "fold"}),
        _Column("Status", [status_text(r.info.status.value) for r in runs], status_keep, {"no_wrap": True}),
        _Column("Started", [fmt_time(r.info.start_time, short=True) for r in runs], 10, {"no_wrap": True}),
        _Column("Duration", [run_duration(r) for r in runs], 14, {"no_wrap": True, "justify": "right"}),
    ]
    for i, key in enumerate(metric_keys):
        cells = [fmt_metric(r.data.metrics.get(key)) for r in runs]
        columns.append(_Column(esc(key), cells, metric_keep - i, {"justify": "right", "no_wrap": True}))
    for i, key in enumerate(param_keys):
        cells = [esc(r.data.params.get(key, "")) for r in runs]
        keep = (metric_keep if key in preferred_params else 25) - i
        columns.append(_Column(f"params.{esc(key)}", cells, keep, {"overflow": "fold"}))
    if width is not None:
        while sum(c.width() for c in columns) + 2 * (len(columns) - 1) > width and len(columns) > 2:
            columns.remove(min(columns, key=lambda c: c.keep))
    table = new_table()
    for column in columns:
        table.add_column(column.header, **column.options)
    for row in zip(*(c.cells for c in columns)):
        table.add_row(*row)
    return table
