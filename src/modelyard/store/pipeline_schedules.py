"""The pipeline schedule store interface, and the rules every implementation shares: names, targets,
parameters, cron expressions and time zones.

Two implementations: `sql.pipeline_schedules.SqlPipelineScheduleStore` on the tracking database (what the
server and its scheduler use, and `modelyard pipelines schedules` pointed at a database) and
`rest_schedules.RestScheduleStore` over a running server's /api/v1/pipelines/schedules.

Cron expressions have 5 fields (minute hour day-of-month month day-of-week: `*`, lists, ranges, steps,
month and day names) or are one of @hourly, @daily, @weekly, @monthly, @yearly; they are read by `croniter`
(the `server` extra) in the schedule's time zone (an IANA name, default UTC).
"""

from __future__ import annotations

import abc
import json
import re
from datetime import datetime
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.schemas.pipelines import PipelineSchedule

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_PARAM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ALIASES = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
CRON_HELP = (
    "use 5 fields: minute hour day-of-month month day-of-week (e.g. '0 3 * * *' every day at 03:00, "
    "'*/15 * * * *' every 15 minutes, '0 6 * * MON-FRI'), or @hourly, @daily, @weekly, @monthly"
)
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidArgument(
            f"Invalid schedule name {name!r}: use 1-128 letters, digits, '_', '.' or '-', starting with a "
            "letter or digit."
        )
    return name


def is_file_target(source: str) -> bool:
    return source.endswith(".py") or "/" in source or "\\" in source


def is_file(path: str) -> bool:
    """Whether `path` is a file here (False for a name the OS refuses: too long, NUL, ...)."""
    from pathlib import Path

    try:
        return Path(path).expanduser().is_file()
    except (OSError, ValueError):
        return False


def validate_target(target: object) -> str:
    """`FILE.py:FUNCTION` with an absolute FILE, or `package.module:FUNCTION` (the syntax only)."""
    text = target.strip() if isinstance(target, str) else ""
    if not text.isprintable():
        raise InvalidArgument(f"Invalid pipeline target {target!r}: it holds control characters.")
    source, sep, func = text.rpartition(":")
    if not sep or not source or not func.isidentifier():
        raise InvalidArgument(
            f"Invalid pipeline target {target!r}: give FILE.py:FUNCTION or package.module:FUNCTION."
        )
    if is_file_target(source):
        if not (source.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", source)):
            raise InvalidArgument(
                f"The pipeline file in {target!r} must be an absolute path (it is run on the server's host)."
            )
    elif not all(part.isidentifier() for part in source.split(".")):
        raise InvalidArgument(f"Invalid module name {source!r} in pipeline target {target!r}.")
    return text


def validate_params(params: object) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidArgument("Schedule params must be an object of parameter names to values.")
    for key, value in params.items():
        if not isinstance(key, str) or not _PARAM_RE.match(key):
            raise InvalidArgument(f"Invalid pipeline parameter name {key!r}.")
        if "\\u0000" in json.dumps(value):
            raise InvalidArgument(f"Parameter {key!r}: its value holds a NUL character.")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise InvalidArgument(
                f"Parameter {key!r}: its value must be JSON (no NaN or infinity)."
            ) from None
    if len(json.dumps(params)) > 60_000:
        raise InvalidArgument("Schedule params take at most 60,000 characters as JSON.")
    return dict(params)


def param_args(params: dict[str, Any]) -> list[str]:
    """The `--param KEY=VALUE` texts of `params`: strings as they are, other values as JSON."""
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items()]


def validate_timezone(name: object) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    text = name.strip() if isinstance(name, str) else ""
    try:
        if not text or len(text) > 64 or text.startswith(("/", ".")) or ".." in text:
            raise ValueError
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(
            f"Unknown time zone {name!r}: give an IANA name such as UTC, Europe/Paris or America/New_York."
        ) from None
    return text


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:  # pragma: no cover - installed with the server extra
        raise InvalidArgument(
            "Pipeline schedules need the croniter package: pip install 'modelyard[server]'"
        ) from None
    return croniter


def validate_cron(expression: object, timezone: str = "UTC") -> str:
    """The expression with its fields separated by one space; InvalidArgument saying what is wrong."""
    text = " ".join(expression.split()) if isinstance(expression, str) else ""
    if not text:
        raise InvalidArgument(f"Empty cron expression: {CRON_HELP}.")
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise InvalidArgument(f"Unknown cron alias {text!r}: {CRON_HELP}.")
        return text.lower()
    fields = text.split(" ")
    if len(fields) != 5:
        raise InvalidArgument(f"Cron expression {text!r} has {len(fields)} fields, not 5: {CRON_HELP}.")
    croniter = _croniter()
    try:
        croniter(text)
    except Exception as exc:  # CroniterBadCronError (a ValueError), and whatever else a strange text gives
        raise InvalidArgument(f"Invalid cron expression {text!r} ({exc}): {CRON_HELP}.") from None
    next_run_time(text, timezone, 0)  # an expression that never fires (e.g. Feb 30) is an error too
    return text


def next_run_time(expression: str, timezone: str, after_ms: int) -> int:
    """The first time (ms) strictly after `after_ms` at which the expression fires, in `timezone`."""
    from zoneinfo import ZoneInfo

    croniter = _croniter()
    start = datetime.fromtimestamp(after_ms / 1000, ZoneInfo(timezone))
    try:
        when = croniter(expression, start).get_next(datetime)
    except Exception as exc:  # CroniterBadDateError: no such date
        raise InvalidArgument(f"Cron expression {expression!r} never fires ({exc}): {CRON_HELP}.") from None
    fires = int(when.timestamp() * 1000)
    return fires if fires > after_ms else next_run_time(expression, timezone, after_ms + 1000)


class PipelineScheduleStore(abc.ABC):
    """Schedules by name. Through a server, every call needs an admin (a schedule runs code on its host)."""

    @abc.abstractmethod
    def create_schedule(
        self,
        name: str,
        target: str,
        cron: str,
        params: dict[str, Any] | None = None,
        experiment: str | None = None,
        timezone: str = "UTC",
        enabled: bool = True,
    ) -> PipelineSchedule:
        """AlreadyExists if the name is taken; the first run is at the expression's next time from now."""

    @abc.abstractmethod
    def get_schedule(self, name: str) -> PipelineSchedule:
        """NotFound if there is no such schedule."""

    @abc.abstractmethod
    def list_schedules(self) -> list[PipelineSchedule]:
        """Every schedule, by name."""

    @abc.abstractmethod
    def update_schedule(
        self,
        name: str,
        enabled: bool | None = None,
        cron: str | None = None,
        params: dict[str, Any] | None = None,
        timezone: str | None = None,
    ) -> PipelineSchedule:
        """Pause (enabled=False) or resume a schedule, or change its expression, time zone or params.
        Resuming or changing the expression moves the next run to the expression's next time from now."""

    @abc.abstractmethod
    def delete_schedule(self, name: str) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...


__all__ = [
    "ALIASES",
    "PipelineScheduleStore",
    "is_file",
    "is_file_target",
    "next_run_time",
    "param_args",
    "validate_cron",
    "validate_name",
    "validate_params",
    "validate_target",
    "validate_timezone",
]
