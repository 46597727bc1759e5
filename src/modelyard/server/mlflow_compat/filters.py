"""MLflow's search dialects on top of Modelyard's.

Runs: our filter grammar is a superset of MLflow's, so an MLflow filter or order-by only needs its
MLflow-only spellings rewritten (`tags.mlflow.runName`, `attributes.user_id`, `created`, identifiers
without a prefix); the store parses the result and reports mistakes with their position.

Experiments: MLflow filters experiments by name, id, times and tags (conditions joined by AND) and orders
them; our store only lists them, so the filter and the order are applied here, on the listed experiments.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.schemas import Experiment
from modelyard.server.mlflow_compat.convert import NOTE_TAG, RUN_NAME_TAG, USER_TAG

# runs ------------------------------------------------------------------------------------------------------
_RUN_TOKEN = re.compile(
    r"""
    (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")     # string values are never rewritten
    |(?P<ident>(?P<prefix>[A-Za-z_]\w*)\.(?P<key>`[^`]*`|"[^"]*"|[\w\-./:]+))
    |(?P<word>[A-Za-z_]\w*)
    |(?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_TAG_PREFIXES = {"tag", "tags"}
_ATTRIBUTE_PREFIXES = {"attribute", "attributes", "attr", "run"}
_TAGS_AS_ATTRIBUTES = {RUN_NAME_TAG: "run_name", NOTE_TAG: "description", USER_TAG: "user"}
_ATTRIBUTE_ALIASES = {"user_id": "user", "created": "start_time", "Created": "start_time"}
_BARE_ATTRIBUTES = {
    "run_id", "run_name", "status", "artifact_uri", "user_id", "start_time", "end_time", "created",
    "Created", "lifecycle_stage",
}  # fmt: skip


def _rewrite_token(m: re.Match[str]) -> str:
    if m.group("ident"):
        prefix, key = m.group("prefix"), m.group("key")
        bare = key[1:-1] if key[:1] in ("`", '"') else key
        if prefix.lower() in _TAG_PREFIXES and bare in _TAGS_AS_ATTRIBUTES:
            return f"attributes.{_TAGS_AS_ATTRIBUTES[bare]}"
        if prefix.lower() in _ATTRIBUTE_PREFIXES and bare in _ATTRIBUTE_ALIASES:
            return f"attributes.{_ATTRIBUTE_ALIASES[bare]}"
    elif m.group("word") in _BARE_ATTRIBUTES:  # MLflow reads an identifier without prefix as an attribute
        word = m.group("word")
        return f"attributes.{_ATTRIBUTE_ALIASES.get(word, word)}"
    return m.group(0)


def run_filter(text: str | None) -> str | None:
    """An MLflow run filter (or one order-by clause) in Modelyard's grammar."""
    return _RUN_TOKEN.sub(_rewrite_token, text) if text else None


# experiments -----------------------------------------------------------------------------------------------
_EXP_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<num>-?[0-9]+)
    |(?P<ident>[A-Za-z_]\w*(?:\.(?:`[^`]*`|"[^"]*"|[\w\-./:]+))?)
    |(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<op><=|>=|!=|<>|==|=|<|>)
    |(?P<punct>[(),])
    """,
    re.VERBOSE | re.DOTALL,
)
_EXP_ATTRIBUTES = {
    "name": "string",
    "experiment_id": "id",
    "creation_time": "number",
    "last_update_time": "number",
}
_OPS = {
    "string": ("=", "!=", "LIKE", "ILIKE"),
    "id": ("=", "!=", "IN", "NOT IN"),
    "number": ("=", "!=", "<", "<=", ">", ">="),
    "tag": ("=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"),
}


@dataclass(frozen=True)
class _Condition:
    field: str  # an attribute name, or "tags.<key>"
    op: str
    value: Any


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _EXP_TOKEN.match(text, pos)
        if m is None:
            raise InvalidArgument(
                f"Invalid experiment filter {text!r}: unexpected {text[pos]!r} at position {pos}."
            )
        if m.lastgroup != "ws":
            out.append((m.lastgroup or "", m.group()))
        pos = m.end()
    return out


def _field(token: tuple[str, str], text: str) -> tuple[str, str]:
    """(field, kind) for an identifier token: `name`, `attribute.name`, `tags.key`, `tag.`quoted key``."""
    kind, src = token
    if kind != "ident":
        raise InvalidArgument(f"Invalid experiment filter {text!r}: expected an identifier, found {src!r}.")
    prefix, dot, key = src.partition(".")
    if key[:1] in ("`", '"'):
        key = key[1:-1]
    if dot and prefix.lower() in ("tag", "tags"):
        return f"tags.{key}", "tag"
    name = key if dot and prefix.lower() in ("attribute", "attributes") else src
    if name not in _EXP_ATTRIBUTES:
        raise InvalidArgument(
            f"Invalid experiment filter {text!r}: {src!r} is not one of {', '.join(_EXP_ATTRIBUTES)} "
            "or tags.<key>."
        )
    return name, _EXP_ATTRIBUTES[name]


def _value(token: tuple[str, str], kind: str, text: str) -> Any:
    tkind, src = token
    if kind == "number":
        if tkind != "num":
            raise InvalidArgument(f"Invalid experiment filter {text!r}: expected a number, found {src!r}.")
        return int(src)
    if tkind != "str":
        raise InvalidArgument(f"Invalid experiment filter {text!r}: expected a quoted string, found {src!r}.")
    return re.sub(r"\\(.)", r"\1", src[1:-1])


def parse_experiment_filter(text: str | None) -> list[_Condition]:
    """MLflow's experiment filter: `<field> <op> <value>` conditions joined by AND."""
    toks = _tokens(text or "")
    conditions: list[_Condition] = []
    i = 0
    while i < len(toks):
        if conditions:
            if toks[i][1].upper() != "AND":
                raise InvalidArgument(f"Invalid experiment filter {text!r}: join conditions with AND.")
            i += 1
        if i >= len(toks):
            raise InvalidArgument(f"Invalid experiment filter {text!r}: a condition is missing after AND.")
        name, kind = _field(toks[i], text or "")
        words = [t[1].upper() for t in toks[i + 1 : i + 4]]
        op, width = _operator(words)
        if op not in _OPS[kind]:
            raise InvalidArgument(
                f"Invalid experiment filter {text!r}: {name} supports {', '.join(_OPS[kind])}, not {op or '?'}."
            )
        i += 1 + width
        if op in ("IS NULL", "IS NOT NULL"):
            conditions.append(_Condition(name, op, None))
            continue
        if op in ("IN", "NOT IN"):
            values, i = _list(toks, i, text or "")
            conditions.append(_Condition(name, op, values))
            continue
        if i >= len(toks):
            raise InvalidArgument(f"Invalid experiment filter {text!r}: a value is missing after {op}.")
        conditions.append(_Condition(name, op, _value(toks[i], kind, text or "")))
        i += 1
    return conditions


def _operator(words: list[str]) -> tuple[str, int]:
    if words[:3] == ["IS", "NOT", "NULL"]:
        return "IS NOT NULL", 3
    if words[:2] in (["IS", "NULL"], ["NOT", "IN"]):
        return " ".join(words[:2]), 2
    if words[:1] and words[0] in ("=", "==", "!=", "<>", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN"):
        return {"==": "=", "<>": "!="}.get(words[0], words[0]), 1
    return (words[0] if words else ""), 1


def _list(toks: list[tuple[str, str]], i: int, text: str) -> tuple[tuple[str, ...], int]:
    if i >= len(toks) or toks[i][1] != "(":
        raise InvalidArgument(f"Invalid experiment filter {text!r}: IN needs a list such as ('1', '2').")
    values, i = [], i + 1
    while i < len(toks):
        values.append(str(_value(toks[i], "id", text) if toks[i][0] == "str" else toks[i][1]))
        if i + 1 < len(toks) and toks[i + 1][1] == ",":
            i += 2
            continue
        if i + 1 < len(toks) and toks[i + 1][1] == ")":
            return tuple(values), i + 2
        break
    raise InvalidArgument(f"Invalid experiment filter {text!r}: close the IN list with ')'.")


def _like(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = (".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _get(exp: Experiment, name: str) -> Any:
    if name.startswith("tags."):
        return exp.tags.get(name[5:])
    return {
        "name": exp.name,
        "experiment_id": exp.experiment_id,
        "creation_time": exp.creation_time,
        "last_update_time": exp.last_update_time,
    }[name]


def _matches(exp: Experiment, c: _Condition) -> bool:
    value = _get(exp, c.field)
    if c.op == "IS NULL":
        return value is None
    if c.op == "IS NOT NULL":
        return value is not None
    if value is None:
        return False
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "LIKE": lambda a, b: _like(b, False).fullmatch(a) is not None,
        "ILIKE": lambda a, b: _like(b, True).fullmatch(a) is not None,
        "IN": lambda a, b: a in b,
        "NOT IN": lambda a, b: a not in b,
    }
    return compare[c.op](value, c.value)


_ORDER = re.compile(r"^\s*(?:attributes?\.)?(\w+)\s*(?:\s(ASC|DESC))?\s*$", re.IGNORECASE)


def order_experiments(experiments: list[Experiment], order_by: Sequence[str]) -> list[Experiment]:
    """MLflow's default order is newest first; the experiment id breaks ties."""
    keys: list[tuple[str, bool]] = []
    for clause in order_by or ["creation_time DESC"]:
        m = _ORDER.match(clause)
        if m is None or m.group(1) not in _EXP_ATTRIBUTES:
            raise InvalidArgument(
                f"Invalid order_by clause {clause!r}: use one of {', '.join(_EXP_ATTRIBUTES)} "
                "followed by ASC or DESC."
            )
        keys.append((m.group(1), (m.group(2) or "ASC").upper() == "DESC"))
    if not any(k == "experiment_id" for k, _ in keys):
        keys.append(("experiment_id", False))
    ordered = list(experiments)
    for key, descending in reversed(keys):  # stable sorts, last key first
        present = [e for e in ordered if _get(e, key) is not None]
        missing = [
            e for e in ordered if _get(e, key) is None
        ]  # nulls last, as in SQL ORDER BY ... NULLS LAST
        sort_key = (
            (lambda e: int(e.experiment_id)) if key == "experiment_id" else (lambda e, k=key: _get(e, k))
        )
        ordered = sorted(present, key=sort_key, reverse=descending) + missing
    return ordered


def search_experiments(
    experiments: list[Experiment], filter_string: str | None, order_by: Sequence[str]
) -> list[Experiment]:
    conditions = parse_experiment_filter(filter_string)
    kept = [e for e in experiments if all(_matches(e, c) for c in conditions)]
    return order_experiments(kept, order_by)


# page tokens ----------------------------------------------------------------------------------------------
def encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        assert isinstance(offset, int) and offset >= 0
    except Exception:
        raise InvalidArgument(
            f"Invalid page token {token[:40]!r}: pass the next_page_token of a previous page."
        ) from None
    return offset
