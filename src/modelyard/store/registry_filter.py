"""The registry's search filter: comparisons joined by AND, as MLflow's registry search writes them.

name = 'churn' AND tags.team = 'growth'
name LIKE 'churn%'            run_id IN ('9f0c...', '41aa...')            stage = 'Production'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelyard.errors import InvalidArgument
from modelyard.store.filter import MAX_CONDITIONS, MAX_LISTED_VALUES, MAX_SUBQUERY_CONDITIONS

_CLAUSE = re.compile(
    r"""\s*(?P<subject>tags?\.(?:`[^`]+`|"[^"]+"|[\w.\-/: ]+?)|[A-Za-z_]+)\s*
        (?P<op>=|!=|NOT\s+IN|IN|NOT\s+LIKE|LIKE|ILIKE)\s*
        (?P<value>'(?:[^']|'')*'|"(?:[^"]|"")*"|-?\d+|\((?:[^()'"]|'(?:[^']|'')*'|"(?:[^"]|"")*")*\))\s*""",
    re.VERBOSE | re.IGNORECASE,
)
_AND = re.compile(r"\s*AND\s+", re.IGNORECASE)
_ITEM = re.compile(r"""\s*('(?:[^']|'')*'|"(?:[^"]|"")*"|-?\d+)\s*(?:,|$)""")


@dataclass(frozen=True)
class Clause:
    field: str  # an attribute, or '' for a tag
    op: str  # =, !=, IN, NOT IN, LIKE, ILIKE
    value: str | list[str]
    tag: str | None = None


def _literal(text: str) -> str:
    if text[0] in "'\"":
        return text[1:-1].replace(text[0] * 2, text[0])
    return text


def parse_registry_filter(text: str | None, fields: tuple[str, ...]) -> list[Clause]:
    """Clauses to AND together; InvalidArgument naming the offending part and the fields allowed."""
    if not text or not text.strip():
        return []
    clauses: list[Clause] = []
    pos = listed = tags = 0
    while True:
        if len(clauses) == MAX_CONDITIONS:
            raise InvalidArgument(
                f"A filter holds at most {MAX_CONDITIONS} conditions; list the values of one field with IN, "
                "e.g. name IN ('a', 'b'), or split the search."
            )
        match = _CLAUSE.match(text, pos)
        if not match:
            raise InvalidArgument(
                f"Cannot read the filter at character {pos}: {text[pos : pos + 40]!r}. Write comparisons joined by AND, "
                f"e.g. name = 'churn' AND tags.team = 'growth'; fields: {', '.join(fields)}, tags.<key>."
            )
        subject, op, raw = match["subject"], " ".join(match["op"].upper().split()), match["value"]
        if op == "NOT LIKE":
            raise InvalidArgument("NOT LIKE is not supported in registry filters; use LIKE or !=.")
        if raw.startswith("("):
            if op not in ("IN", "NOT IN"):
                raise InvalidArgument(f"A list of values needs IN or NOT IN, not {op}.")
            inner, items, at = raw[1:-1], [], 0
            while at < len(inner):
                item = _ITEM.match(inner, at)
                if not item:
                    raise InvalidArgument(f"Cannot read the list {raw!r}: write ('a', 'b').")
                items.append(_literal(item[1]))
                at = item.end()
            listed += len(items)
            if listed > MAX_LISTED_VALUES:
                raise InvalidArgument(
                    f"A filter's IN lists hold at most {MAX_LISTED_VALUES:,} values; split the search."
                )
            value: str | list[str] = items
        elif op in ("IN", "NOT IN"):
            raise InvalidArgument(f"{op} needs a list of values in parentheses, e.g. ('a', 'b').")
        else:
            value = _literal(raw)
        if subject.lower().startswith(("tag.", "tags.")):
            key = subject.split(".", 1)[1].strip('`"')
            clauses.append(Clause("", op, value, tag=key))
            tags += 1
            if tags > MAX_SUBQUERY_CONDITIONS:
                raise InvalidArgument(f"A filter holds at most {MAX_SUBQUERY_CONDITIONS} conditions on tags.")
        elif subject.lower() in fields:
            clauses.append(Clause(subject.lower(), op, value))
        else:
            raise InvalidArgument(
                f"Unknown field {subject!r} in the filter: use {', '.join(fields)} or tags.<key>."
            )
        pos = match.end()
        if pos >= len(text):
            return clauses
        joined = _AND.match(text, pos)
        if not joined:
            raise InvalidArgument(f"Expected AND at character {pos} of the filter: {text[pos : pos + 40]!r}.")
        pos = joined.end()
