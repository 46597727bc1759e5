"""Input rules shared by every store backend, with errors that say what to fix."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from modelyard.errors import InvalidArgument

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_NAME_LENGTH = 256

_KEY_RE = re.compile(r"^[\w\-. /:]+$")
_RUN_ID_RE = re.compile(r"^[a-zA-Z0-9_\-]{1,64}$")
_valid_keys: set[str] = set()  # keys seen valid already: log_metric is hot, the regex is not free


def validate_key(kind: str, key: object) -> str:
    if isinstance(key, str) and key in _valid_keys:
        return key
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"{kind} key must be a non-empty string, got {key!r}.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(
            f"{kind} key {key[:40]!r}... is {len(key)} characters; the limit is {MAX_KEY_LENGTH}."
        )
    if not _KEY_RE.match(key) or key != key.strip() or key.startswith("/") or ".." in key.split("/"):
        raise InvalidArgument(
            f"Invalid {kind} key {key!r}: use letters, digits, '_', '-', '.', ' ', ':' and '/' "
            "(no leading '/', no '..' segment, no surrounding spaces)."
        )
    if len(_valid_keys) < 100_000:
        _valid_keys.add(key)
    return key


def validate_param_value(key: str, value: str) -> str:
    validate_text(f"Param {key!r}", value)
    if len(value) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidArgument(
            f"Param {key!r} has a {len(value)}-character value; the limit is {MAX_PARAM_VALUE_LENGTH}. "
            "Log long values as an artifact instead (log_text / log_dict)."
        )
    return value


def validate_tag_value(key: str, value: str) -> str:
    validate_text(f"Tag {key!r}", value)
    if len(value) > MAX_TAG_VALUE_LENGTH:
        raise InvalidArgument(
            f"Tag {key!r} has a {len(value)}-character value; the limit is {MAX_TAG_VALUE_LENGTH}."
        )
    return value


def validate_metric_value(key: str, value: object) -> float:
    """The value as a float. NaN and infinities are values; a number past the float range (the integer
    10**400) is an error, not infinity."""
    try:
        return float(value)  # type: ignore[arg-type]  # ints, numpy scalars, 0-d tensors
    except OverflowError:
        raise InvalidArgument(
            f"Metric {key!r} is a number past the float range (about ±1.8e308), which a metric cannot hold; "
            "scale it down (or log float('inf') if infinity is meant)."
        ) from None
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"Metric {key!r} must be a number, got {type(value).__name__} {value!r}."
        ) from None


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def validate_int64(what: str, value: int) -> int:
    """Steps, timestamps and ids are stored as 64-bit integers."""
    if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
        raise InvalidArgument(
            f"{what} must be an integer between {INT64_MIN} and {INT64_MAX}, got {value!r}."
        )
    return value


def validate_text(what: str, value: str | None) -> str | None:
    """Text the databases can store: no NUL character (PostgreSQL refuses it), valid Unicode (no lone
    surrogate halves, which cannot be encoded as UTF-8)."""
    if value is None:
        return None
    if "\x00" in value:
        raise InvalidArgument(f"{what} contains a NUL character (\\x00); remove it.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(
            f"{what} is not valid Unicode (it contains a lone surrogate); fix its encoding."
        ) from None
    return value


def validate_experiment_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument(f"Experiment name must be a non-empty string, got {name!r}.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"Experiment name is {len(name)} characters; the limit is {MAX_NAME_LENGTH}.")
    validate_text("Experiment name", name)
    return name


def validate_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise InvalidArgument(f"Invalid run id {run_id!r}: expected a 32-character hex id such as 'a1b2...'.")
    return run_id


def validate_max_results(max_results: int, limit: int = 50_000) -> int:
    if not isinstance(max_results, int) or max_results < 1 or max_results > limit:
        raise InvalidArgument(f"max_results must be an integer between 1 and {limit}, got {max_results!r}.")
    return max_results


def is_loopback_host(host: str) -> bool:
    """Whether `host` names this machine only: localhost, ip6-localhost, 127.0.0.0/8 or ::1."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_http_url(url: str) -> bool:
    """Whether `url` is an http(s):// URL with a host, a valid port if any, printable and at most 2,000
    characters (webhook receivers, deployment endpoints)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https") and bool(parts.hostname) and len(url) <= 2000 and url.isprintable()
    )
