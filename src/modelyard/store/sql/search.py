"""Compile a parsed run filter and order-by list into one SQL query with keyset (cursor) pagination."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, not_, or_, select
from sqlalchemy.sql.expression import FromClause

from modelyard.errors import InvalidArgument
from modelyard.store.filter import And, Comparison, Expr, Identifier, Not, Or, OrderBy
from modelyard.store.sql.tables import datasets, latest_metrics, params, run_inputs, runs, tags

_ATTRIBUTE_COLUMNS = {
    "run_id": runs.c.run_uuid,
    "run_name": runs.c.name,
    "status": runs.c.status,
    "start_time": runs.c.start_time,
    "end_time": runs.c.end_time,
    "artifact_uri": runs.c.artifact_uri,
    "lifecycle_stage": runs.c.lifecycle_stage,
    "parent_run_id": runs.c.parent_run_id,
    "description": runs.c.description,
}
_KEYED_TABLES = {"metric": latest_metrics, "param": params, "tag": tags}
MAX_KEYS = 50  # keys a search may filter or sort by: one join each, and SQLite joins at most 64 tables
USER_TAG = "modelyard.user"
DEFAULT_ORDER = (OrderBy(Identifier("attribute", "start_time"), descending=True),)


def _apply(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    match op:
        case "=":
            return col == value  # type: ignore[no-any-return]
        case "!=":
            return col != value  # type: ignore[no-any-return]
        case "<":
            return col < value  # type: ignore[no-any-return]
        case "<=":
            return col <= value  # type: ignore[no-any-return]
        case ">":
            return col > value  # type: ignore[no-any-return]
        case ">=":
            return col >= value  # type: ignore[no-any-return]
        case "LIKE":
            return col.like(value)  # type: ignore[no-any-return]
        case "NOT LIKE":
            return col.not_like(value)  # type: ignore[no-any-return]
        case "ILIKE":
            return col.ilike(value)  # type: ignore[no-any-return]
        case "NOT ILIKE":
            return col.not_ilike(value)  # type: ignore[no-any-return]
        case "IN":
            return col.in_(list(value))  # type: ignore[no-any-return]
        case "NOT IN":
            return col.not_in(list(value))  # type: ignore[no-any-return]
    raise InvalidArgument(f"Unsupported operator {op!r}.")  # pragma: no cover - the parser refuses it first


def _required_keys(expr: Expr | None) -> set[tuple[str, str]]:
    """Keys whose rows must exist for the filter to match: top-level AND-ed comparisons other than IS NULL.
    Those are joined with INNER JOIN, which lets the database drive the query from their index."""
    items = expr.items if isinstance(expr, And) else (expr,) if expr is not None else ()
    return {
        (c.ident.kind, c.ident.key)
        for c in items
        if isinstance(c, Comparison) and c.ident.kind in _KEYED_TABLES and c.op != "IS NULL"
    }


class _Compiler:
    def __init__(self, required: set[tuple[str, str]]) -> None:
        self.required = required
        self.joins: dict[tuple[str, str], tuple[FromClause, bool]] = {}

    def keyed(self, kind: str, key: str) -> FromClause:
        if (kind, key) not in self.joins:
            if len(self.joins) == MAX_KEYS:
                raise InvalidArgument(
                    f"A search filters and sorts by at most {MAX_KEYS} different metric, param and tag keys; "
                    "split the search."
                )
            alias = _KEYED_TABLES[kind].alias(f"{kind}_{len(self.joins)}")
            self.joins[(kind, key)] = (alias, (kind, key) in self.required)
        return self.joins[(kind, key)][0]

    def column(self, ident: Identifier) -> Any:
        if ident.kind == "attribute":
            if ident.key == "user":
                return self.keyed("tag", USER_TAG).c.value
            return _ATTRIBUTE_COLUMNS[ident.key]
        if ident.kind in _KEYED_TABLES:
            return self.keyed(ident.kind, ident.key).c.value
        raise InvalidArgument(f"Cannot order by {ident.kind} fields.")

    def where(self, expr: Expr) -> ColumnElement[bool]:
        if isinstance(expr, And):
            return and_(*(self.where(e) for e in expr.items))
        if isinstance(expr, Or):
            return or_(*(self.where(e) for e in expr.items))
        if isinstance(expr, Not):
            return not_(self.where(expr.item))
        return self.comparison(expr)

    def comparison(self, c: Comparison) -> ColumnElement[bool]:
        kind, key = c.ident.kind, c.ident.key
        if kind == "dataset":
            return self.dataset(c)
        if kind in _KEYED_TABLES or (kind == "attribute" and key == "user"):
            alias = self.keyed(*(("tag", USER_TAG) if kind == "attribute" else (kind, key)))
            present = alias.c.run_uuid  # NULL when the run has no such key (a metric's NULL value is NaN)
            if c.op == "IS NULL":
                return present.is_(None)
            if c.op == "IS NOT NULL":
                return present.is_not(None)
            return _apply(alias.c.value, c.op, c.value)
        col = _ATTRIBUTE_COLUMNS[key]
        if c.op == "IS NULL":
            return col.is_(None)  # type: ignore[no-any-return]
        if c.op == "IS NOT NULL":
            return col.is_not(None)  # type: ignore[no-any-return]
        return _apply(col, c.op, c.value)

    def dataset(self, c: Comparison) -> ColumnElement[bool]:
        linked = run_inputs.c.run_uuid == runs.c.run_uuid
        if c.op in ("IS NULL", "IS NOT NULL"):
            any_input = exists().where(linked)
            return not_(any_input) if c.op == "IS NULL" else any_input
        col = run_inputs.c.context if c.ident.key == "context" else datasets.c[c.ident.key]
        return exists(
            select(1)
            .select_from(run_inputs.join(datasets, datasets.c.dataset_id == run_inputs.c.dataset_id))
            .where(linked, _apply(col, c.op, c.value))
        )


def build_query(
    experiment_ids: Sequence[int],
    stages: Sequence[str],
    expr: Expr | None,
    order_by: Sequence[OrderBy],
    after: list[Any] | None,
    limit: int,
) -> Select[Any]:
    """SELECT runs.* plus one labelled sort column per sort key (`sk0`, ...; the last is run_uuid)."""
    compiler = _Compiler(_required_keys(expr))
    conditions: list[ColumnElement[bool]] = [
        runs.c.experiment_id.in_(experiment_ids),
        runs.c.lifecycle_stage.in_(stages),
    ]
    if expr is not None:
        conditions.append(compiler.where(expr))
    sort = [(compiler.column(o.ident), o.descending) for o in (*order_by, *_default_tail(order_by))]
    sort.append((runs.c.run_uuid, False))
    if after is not None:
        conditions.append(_after(sort, after))

    source: FromClause = runs
    for (_kind, key), (alias, inner) in compiler.joins.items():
        on = and_(alias.c.run_uuid == runs.c.run_uuid, alias.c.key == key)
        source = source.join(alias, on) if inner else source.outerjoin(alias, on)
    columns = [*runs.c, *(col.label(f"sk{i}") for i, (col, _) in enumerate(sort))]
    ordering = [(col.desc() if desc else col.asc()).nulls_last() for col, desc in sort]
    return select(*columns).select_from(source).where(*conditions).order_by(*ordering).limit(limit)


def _default_tail(order_by: Sequence[OrderBy]) -> tuple[OrderBy, ...]:
    has_start = any(o.ident == DEFAULT_ORDER[0].ident for o in order_by)
    return () if has_start else DEFAULT_ORDER


def _after(sort: list[tuple[Any, bool]], last: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after `last` in the (NULLS LAST) sort order: the keyset pagination condition."""
    if len(last) != len(sort):
        raise InvalidArgument("The page token does not match this query; start again without a page token.")
    disjuncts = []
    for i, ((col, desc), value) in enumerate(zip(sort, last)):
        equal_before = [
            col_j.is_(None) if v is None else col_j == v for (col_j, _), v in zip(sort[:i], last[:i])
        ]
        if value is None:
            continue  # NULLs sort last: nothing comes after a NULL but equal NULLs
        beyond = (col < value) if desc else (col > value)
        disjuncts.append(and_(*equal_before, or_(beyond, col.is_(None))))
    return or_(*disjuncts) if disjuncts else false()


def query_fingerprint(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:12]


def encode_page_token(sort_values: list[Any], fingerprint: str) -> str:
    payload = json.dumps({"k": sort_values, "q": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode()


def decode_page_token(token: str, fingerprint: str) -> list[Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        values, owner = payload["k"], payload["q"]
        assert isinstance(values, list)
    except Exception:
        raise InvalidArgument(
            f"Invalid page token {token[:40]!r}: pass the next_page_token of a previous page."
        ) from None
    if owner != fingerprint:
        raise InvalidArgument(
            "The page token belongs to a different search (filter, order or experiments changed); "
            "start again without a page token."
        )
    return values


__all__ = ["build_query", "decode_page_token", "encode_page_token", "query_fingerprint"]
