"""Promotion gates: the rule grammar and how a rule is judged against a model version.

    rule  := subject op value | 'approvals' op integer | subject 'exists'
    subject := metrics.<key> | params.<key> | tags.<key>          (the version's run's metrics and params,
                                                                   the version's own tags)
    op    := >= | > | <= | < | == | !=
    value := number | 'text' | "text" | true | false | <reference>
    reference := champion (any alias) | @champion | Production | Staging   (the same subject on the version
                                                                           that alias or stage points at)

Examples: `metrics.accuracy >= 0.9`, `metrics.accuracy >= champion`, `metrics.latency_ms <= Production`,
`tags.validated == 'true'`, `approvals >= 2`, `tags.reviewed_by exists`.
An approval is a version tag `approval.<user>`.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.schemas.registry import GateCheck

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}  # fmt: skip
_RULE = re.compile(
    r"""^\s*(?P<subject>(?:metrics|params|tags)\.(?:`[^`]+`|[\w.\-/: ]+?)|approvals)\s*
        (?:(?P<exists>exists)|(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>.+?))\s*$""",
    re.VERBOSE,
)
APPROVAL_PREFIX = "approval."
_STAGE_REFS = {"production": "Production", "staging": "Staging"}


@dataclass(frozen=True)
class Reference:
    """Another version: the one an alias or a stage points at."""

    target: str  # '@alias' or a stage name

    def __str__(self) -> str:
        return self.target


@dataclass(frozen=True)
class Rule:
    text: str
    kind: str  # metrics, params, tags, approvals
    key: str
    op: str  # an operator, or 'exists'
    value: float | str | bool | Reference | None = None


@dataclass
class Facts:
    """What a rule may look at for one version."""

    version: int
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def lookup(self, kind: str, key: str) -> float | str | None:
        if kind == "approvals":
            return float(sum(k.startswith(APPROVAL_PREFIX) for k in self.tags))
        return getattr(self, kind).get(key)


def parse_rule(text: str) -> Rule:
    match = _RULE.match(text or "")
    if not match:
        raise InvalidArgument(
            f"Cannot read gate rule {text!r}: write `metrics.<key> >= 0.9`, `metrics.<key> >= champion`, "
            "`tags.<key> == 'yes'`, `tags.<key> exists` or `approvals >= 2`."
        )
    subject = match["subject"]
    kind, _, key = subject.partition(".")
    key = key.strip("`")
    if match["exists"]:
        if kind == "approvals":
            raise InvalidArgument(f"Gate rule {text!r}: write `approvals >= N`, not `approvals exists`.")
        return Rule(text, kind, key, "exists")
    return Rule(text, kind, key, match["op"], _value(text, kind, match["value"].strip()))


def _value(text: str, kind: str, raw: str) -> float | str | bool | Reference:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    if raw.lower() in ("true", "false"):
        return raw.lower()  # tags and params hold text
    try:
        return float(raw)
    except ValueError:
        pass
    if kind == "approvals":
        raise InvalidArgument(f"Gate rule {text!r}: approvals compare with a number, e.g. `approvals >= 2`.")
    if raw.lower() in _STAGE_REFS:
        return Reference(_STAGE_REFS[raw.lower()])
    alias = raw.removeprefix("@")
    if re.fullmatch(r"[A-Za-z_][\w\-]*", alias):
        return Reference("@" + alias)
    raise InvalidArgument(f"Gate rule {text!r}: cannot read the value {raw!r} (quote text: 'like this').")


def judge(rule: Rule, candidate: Facts, reference: Callable[[Reference], Facts | None]) -> GateCheck:
    """How `rule` fares for `candidate`; `reference` finds the version an alias or stage points at."""
    mine = candidate.lookup(rule.kind, rule.key)
    subject = "approvals" if rule.kind == "approvals" else f"{rule.kind}.{rule.key}"
    where = f"version {candidate.version}"
    if rule.op == "exists":
        present = mine is not None
        return GateCheck(
            rule=rule.text,
            passed=present,
            detail=f"{subject} is {'set' if present else 'not set'} on {where}",
        )
    if mine is None:
        return GateCheck(rule=rule.text, passed=False, detail=f"{where} has no {subject}")
    expected = rule.value
    if isinstance(expected, Reference):
        other = reference(expected)
        if other is None:
            return GateCheck(
                rule=rule.text, passed=True, detail=f"nothing is at {expected} yet: no comparison to make"
            )
        theirs = other.lookup(rule.kind, rule.key)
        if theirs is None:
            return GateCheck(
                rule=rule.text,
                passed=True,
                detail=f"version {other.version} ({expected}) has no {subject}: nothing to beat",
            )
        expected, against = theirs, f" (version {other.version}, {expected})"
    else:
        against = ""
    left, right = _comparable(mine, expected)
    passed = bool(_OPS[rule.op](left, right)) if left is not None else False
    detail = f"{subject} of {where} is {_show(mine)}; needs {rule.op} {_show(expected)}{against}"
    return GateCheck(rule=rule.text, passed=passed, detail=detail)


def _comparable(mine: float | str, expected: object) -> tuple[object, object]:
    """Numbers compare as numbers (a param '0.9' with 0.9), anything else as text; NaN never passes."""
    try:
        left, right = float(mine), float(expected)  # type: ignore[arg-type]
        return (None, right) if math.isnan(left) else (left, right)
    except (TypeError, ValueError):
        return str(mine), str(expected)


def _show(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def applies(on: list[str], target: str) -> bool:
    """Whether a rule limited to `on` (stage names and @aliases) guards a move to `target`."""
    return not on or any(t.lower() == target.lower() for t in on)
