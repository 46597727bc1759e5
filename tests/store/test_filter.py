"""Tests for the run-search filter parser: concrete cases, every error class, and property tests."""

from __future__ import annotations

import pickle
import random
import re
import sys
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidArgument
from modelyard.store.filter import (
    ATTRIBUTES,
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_LISTED_VALUES,
    MAX_SUBQUERY_CONDITIONS,
    And,
    Comparison,
    Expr,
    FilterSyntaxError,
    Identifier,
    Not,
    Or,
    OrderBy,
    parse_filter,
    parse_order_by,
)

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def metric(key: str, op: str, value: object) -> Comparison:
    return Comparison(Identifier("metric", key), op, value)  # type: ignore[arg-type]


def param(key: str, op: str, value: object) -> Comparison:
    return Comparison(Identifier("param", key), op, value)  # type: ignore[arg-type]


def attr(key: str, op: str, value: object) -> Comparison:
    return Comparison(Identifier("attribute", key), op, value)  # type: ignore[arg-type]


A, B, C, D = (metric(k, ">", 1) for k in "abcd")


def parse_error(text: str) -> FilterSyntaxError:
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    return info.value


def assert_caret(err: FilterSyntaxError, text: str, position: int, what: str = "filter") -> None:
    """The message states the position, then quotes the text with a caret under that position."""
    assert err.position == position
    first, shown, caret = err.message.split("\n")
    assert first.startswith(f"Invalid {what} at position {position}: ")
    assert shown == "  " + text
    assert caret == "  " + " " * position + "^"


# --- values, operators, identifiers -----------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t "])
def test_blank_filter_is_none(text: str | None) -> None:
    assert parse_filter(text) is None


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_metric_comparison_operators(op: str) -> None:
    assert parse_filter(f"metrics.acc {op} 0.5") == metric("acc", op, 0.5)
    assert parse_filter(f"metrics.acc{op}0.5") == metric("acc", op, 0.5)


@pytest.mark.parametrize("op", ["=", "!=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"])
def test_string_operators(op: str) -> None:
    assert parse_filter(f"params.opt {op} 'adam%'") == param("opt", op, "adam%")
    assert parse_filter(f"params.opt {op.lower()} 'adam%'") == param("opt", op, "adam%")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.acc IN (1, 2.5, -3)", metric("acc", "IN", (1, 2.5, -3))),
        ("metrics.acc not in (1)", metric("acc", "NOT IN", (1,))),
        ("params.x IN ('a', \"b\")", param("x", "IN", ("a", "b"))),
        ("params.x NOT IN('a','b')", param("x", "NOT IN", ("a", "b"))),
        ("metrics.acc IS NULL", metric("acc", "IS NULL", None)),
        ("metrics.acc is not null", metric("acc", "IS NOT NULL", None)),
        ("params.x IS NOT NULL", param("x", "IS NOT NULL", None)),
        ("attributes.end_time IS NULL", attr("end_time", "IS NULL", None)),
        ("metrics.acc == 1", metric("acc", "=", 1)),
        ("metrics.acc <> 1", metric("acc", "!=", 1)),
    ],
)
def test_in_and_null_operators(text: str, expected: Expr) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("1", 1),
        ("-1", -1),
        ("+7", 7),
        ("0.25", 0.25),
        (".5", 0.5),
        ("1.", 1.0),
        ("-1.5e-3", -1.5e-3),
        ("2E10", 2e10),
        ("12345678901234567890", 12345678901234567890),
    ],
)
def test_numbers(literal: str, value: float) -> None:
    parsed = parse_filter(f"metrics.m > {literal}")
    assert parsed == metric("m", ">", value)
    assert isinstance(parsed, Comparison)
    assert type(parsed.value) is type(value)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'plain'", "plain"),
        ('"double"', "double"),
        ("''", ""),
        (r"'it\'s'", "it's"),
        ("'it''s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        ('"say ""hi"""', 'say "hi"'),
        ("'a\"\"b'", 'a""b'),  # doubling only escapes the enclosing quote
        ("\"a''b\"", "a''b"),
        (r"'back\\slash'", "back\\slash"),
        (r"'%\_%'", r"%\_%"),  # other backslash pairs survive, so LIKE escapes keep working
        ("'AND OR NOT ( ) ,'", "AND OR NOT ( ) ,"),
        ("'multi\nline'", "multi\nline"),
    ],
)
def test_string_literals(literal: str, value: str) -> None:
    assert parse_filter(f"tags.t = {literal}") == Comparison(Identifier("tag", "t"), "=", value)


@pytest.mark.parametrize(
    ("prefix", "kind"),
    [
        *[(p, "metric") for p in ("metric", "metrics", "METRICS")],
        *[(p, "param") for p in ("param", "params", "parameter", "parameters", "Params")],
        *[(p, "tag") for p in ("tag", "tags", "TAGS")],
    ],
)
def test_prefix_aliases(prefix: str, kind: str) -> None:
    value = "1" if kind == "metric" else "'1'"
    parsed = parse_filter(f"{prefix}.k = {value}")
    assert isinstance(parsed, Comparison)
    assert parsed.ident == Identifier(kind, "k")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["attribute", "attributes", "attr", "run", "Attributes"])
def test_attribute_aliases(prefix: str) -> None:
    assert parse_filter(f"{prefix}.run_name = 'x'") == attr("run_name", "=", "x")


@pytest.mark.parametrize("prefix", ["dataset", "datasets"])
@pytest.mark.parametrize("field", ["name", "digest", "context", "source"])
def test_dataset_fields(prefix: str, field: str) -> None:
    expected = Comparison(Identifier("dataset", field), "LIKE", "x%")
    assert parse_filter(f"{prefix}.{field} LIKE 'x%'") == expected


@pytest.mark.parametrize("name", sorted(ATTRIBUTES))
def test_every_attribute(name: str) -> None:
    if ATTRIBUTES[name] == "number":
        assert parse_filter(f"attributes.{name} >= 1700000000000") == attr(name, ">=", 1700000000000)
    elif name == "status":
        assert parse_filter(f"attributes.{name} = 'finished'") == attr(name, "=", "FINISHED")
    else:
        assert parse_filter(f"attributes.{name} != 'x'") == attr(name, "!=", "x")
    assert parse_filter(f"attributes.{name.upper()} IS NULL") == attr(name, "IS NULL", None)


def test_attribute_table() -> None:
    strings = {"run_id", "run_name", "status", "artifact_uri", "lifecycle_stage", "parent_run_id", "user"}
    assert {n for n, t in ATTRIBUTES.items() if t == "string"} == {*strings, "description"}
    assert {n for n, t in ATTRIBUTES.items() if t == "number"} == {"start_time", "end_time"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("metrics.val/loss", "val/loss"),
        ("metrics.val-loss", "val-loss"),
        ("metrics.epoch:3", "epoch:3"),
        ("metrics.1st", "1st"),
        ("metrics.optimizer.lr", "optimizer.lr"),
        ("metrics.`my metric`", "my metric"),
        ('metrics."my metric"', "my metric"),
        ('metrics.`say "x"`', 'say "x"'),
        ('metrics."it\'s `q`"', "it's `q`"),
        ("metrics.`AND (1) = 'x'`", "AND (1) = 'x'"),
        ("metrics.`naïve`", "naïve"),
        ("metrics.naïve", "naïve"),
    ],
)
def test_keys(text: str, key: str) -> None:
    assert parse_filter(f"{text} > 0") == metric(key, ">", 0)


def test_double_quotes_are_a_key_after_a_dot_and_a_string_elsewhere() -> None:
    assert parse_filter('params."a b" = "a b"') == param("a b", "=", "a b")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("attributes.status = 'running'", "RUNNING"),
        ("attributes.status != 'Killed'", "KILLED"),
        ('run.STATUS = "scheduled"', "SCHEDULED"),
    ],
)
def test_status_is_normalised(text: str, value: str) -> None:
    parsed = parse_filter(text)
    assert isinstance(parsed, Comparison)
    assert parsed.value == value


def test_status_lists_are_normalised_and_like_is_left_alone() -> None:
    assert parse_filter("attributes.status IN ('running', 'FAILED')") == attr(
        "status", "IN", ("RUNNING", "FAILED")
    )
    assert parse_filter("attributes.status NOT IN ('finished')") == attr("status", "NOT IN", ("FINISHED",))
    assert parse_filter("attributes.status LIKE 'run%'") == attr("status", "LIKE", "run%")


# --- precedence and structure -------------------------------------------------------------------------

PRECEDENCE = [
    ("metrics.a > 1 AND metrics.b > 1", And((A, B))),
    ("metrics.a > 1 OR metrics.b > 1 AND metrics.c > 1", Or((A, And((B, C))))),
    ("metrics.a > 1 AND metrics.b > 1 OR metrics.c > 1", Or((And((A, B)), C))),
    ("(metrics.a > 1 OR metrics.b > 1) AND metrics.c > 1", And((Or((A, B)), C))),
    ("NOT metrics.a > 1 AND metrics.b > 1", And((Not(A), B))),
    ("NOT (metrics.a > 1 AND metrics.b > 1)", Not(And((A, B)))),
    ("not not metrics.a > 1", Not(Not(A))),
    ("NOT metrics.a > 1 OR NOT metrics.b > 1", Or((Not(A), Not(B)))),
    ("((metrics.a > 1))", A),
    ("(metrics.a > 1 AND metrics.b > 1) AND (metrics.c > 1 AND metrics.d > 1)", And((A, B, C, D))),
    ("metrics.a > 1 OR (metrics.b > 1 OR (metrics.c > 1))", Or((A, B, C))),
    ("metrics.a > 1 AND (metrics.b > 1 OR metrics.c > 1) AND metrics.d > 1", And((A, Or((B, C)), D))),
    ("NOT (metrics.a > 1 AND metrics.b > 1) AND metrics.c > 1", And((Not(And((A, B))), C))),
    ("metrics.a > 1 and metrics.b > 1 Or metrics.c > 1", Or((And((A, B)), C))),
]


@pytest.mark.parametrize(("text", "expected"), PRECEDENCE)
def test_precedence_and_flattening(text: str, expected: Expr) -> None:
    assert parse_filter(text) == expected


def test_ast_is_hashable_and_frozen() -> None:
    parsed = parse_filter("metrics.a IN (1, 2) AND params.b = 'x'")
    assert hash(parsed) == hash(parse_filter("metrics.a IN (1, 2) AND params.b = 'x'"))
    with pytest.raises(AttributeError):
        parsed.items = ()  # type: ignore[misc, union-attr]


# --- errors --------------------------------------------------------------------------------------------

ERRORS = [
    # (filter, position, words the message must contain)
    ("metrics.acc > AND params.lr = '1'", 14, "expected a value after '>'"),
    ("metrics.acc >", 13, "expected a value after '>', found the end"),
    ("params.lr = 0.01", 12, "params.lr compares to a string: write params.lr = '0.01'"),
    ("params.lr IN (0.01)", 14, "quote each value"),
    ("metrics.acc = '0.5'", 14, "metrics.acc compares to a number: write metrics.acc = 0.5"),
    ("metrics.acc IN (1, 'x')", 19, "compares to numbers"),
    ("attributes.start_time > '5'", 24, "compares to a number"),
    ("tags.x = foo", 9, "quote strings: tags.x = 'foo'"),
    ("params.x = `v`", 11, "quote strings"),
    ("metrics.x = NULL", 12, "write metrics.x IS NULL"),
    ("metrics.x != null", 13, "write metrics.x IS NOT NULL"),
    ("status = 'RUNNING'", 0, "write attributes.status"),
    ("acc > 0.5", 0, "write metrics.acc"),
    ("`my metric` > 0.5", 0, "write metrics.`my metric`"),
    ("foo.bar = 1", 0, "unknown prefix 'foo'"),
    ("attributes.colour = 'x'", 11, "unknown attribute 'colour'; valid attributes: run_id, run_name"),
    ("datasets.size = 'x'", 9, "unknown dataset field 'size'; valid fields: name, digest, context, source"),
    ("metrics. > 1", 8, "expected a key after 'metrics.'"),
    ("metrics.`` > 1", 8, "expected a key"),
    ("params.a.\"b\" = 'x'", 9, "quote the whole key"),
    ("metrics.acc 0.5", 12, "expected an operator after metrics.acc"),
    ("metrics.acc", 11, "expected an operator"),
    ("metrics.acc LIKE '%'", 12, "metrics.acc does not support LIKE"),
    ("params.lr < '1'", 10, "params.lr does not support <; use one of =, !="),
    ("tags.t >= 'a'", 7, "does not support >="),
    ("attributes.start_time LIKE '1%'", 22, "does not support LIKE"),
    ("attributes.end_time IN (1)", 20, "does not support IN"),
    ("metrics.a NOT 5", 14, "expected LIKE, ILIKE or IN after NOT"),
    ("metrics.a IS 5", 13, "expected NULL or NOT NULL after IS"),
    ("metrics.a IS NOT 5", 17, "expected NULL or NOT NULL"),
    ("metrics.a IN 1", 13, "expected '(' after IN"),
    ("metrics.a IN ()", 14, "IN needs at least one value"),
    ("params.a NOT IN ( )", 18, "NOT IN needs at least one value"),
    ("metrics.a IN (1 2)", 16, "expected ',' or ')' in the IN list"),
    ("metrics.a IN (1,)", 16, "expected a value"),
    ("metrics.a IN (1", 15, "expected ',' or ')'"),
    ("attributes.status = 'DONE'", 20, "must be one of RUNNING, SCHEDULED, FINISHED, FAILED, KILLED"),
    ("attributes.status IN ('running', 'x')", 33, "must be one of"),
    ("(metrics.a > 1", 14, "expected ')' to close the '(' at position 0"),
    ("(metrics.a > 1 metrics.b > 1)", 15, "expected AND, OR or ')'"),
    ("metrics.a > 1)", 13, "unmatched ')'"),
    ("metrics.a > 1 metrics.b > 2", 14, "join conditions with AND or OR"),
    ("metrics.a > 1 AND", 17, "expected a condition"),
    ("AND metrics.a > 1", 0, "expected a condition such as metrics.acc > 0.9, found 'AND'"),
    ("()", 1, "expected a condition"),
    ("metrics.a > 1 OR OR metrics.b > 1", 17, "found 'OR'"),
    ("NOT", 3, "expected a condition"),
    ("params.a = 'abc", 11, "unterminated quoted text"),
    ('params.a = "abc', 11, "unterminated"),
    ("params.`abc = 'x'", 7, "unterminated"),
    ('params."abc = 1', 7, "unterminated"),
    ("params.a = 'x' & params.b = 'y'", 15, "unexpected character '&'"),
    ("metrics.a > 1 ; DROP TABLE runs", 14, "unexpected character ';'"),
    ("metrics.a > - 1", 12, "unexpected character '-'"),
]


@pytest.mark.parametrize(("text", "position", "words"), ERRORS)
def test_errors(text: str, position: int, words: str) -> None:
    err = parse_error(text)
    assert words in err.reason, err.message
    if len(text) <= 120:
        assert_caret(err, text, position)
    assert err.position == position


@pytest.mark.skipif(not getattr(sys, "get_int_max_str_digits", lambda: 0)(), reason="no int digit limit")
def test_overlong_integer_is_a_syntax_error() -> None:
    err = parse_error("metrics.a > 1" + "0" * sys.get_int_max_str_digits())
    assert (err.position, err.reason) == (12, "the number is too long")


def test_error_is_an_invalid_argument() -> None:
    err = parse_error("metrics.a >")
    assert isinstance(err, InvalidArgument)
    assert err.to_dict()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert err.text == "metrics.a >"
    assert str(err) == err.message


def test_error_survives_pickling() -> None:
    err = parse_error("metrics.a >")
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.position, clone.message) == (err.position, err.message)


def test_caret_on_multiline_filter_stays_aligned() -> None:
    text = "metrics.a > 1\nAND\tparams.b < 'x'"
    err = parse_error(text)
    assert err.position == text.index("<")
    shown, caret = err.message.split("\n")[1:]
    assert shown == "  " + text.replace("\n", " ").replace("\t", " ")
    assert shown[caret.index("^")] == "<"


def test_caret_on_long_filter_shows_a_window() -> None:
    text = " AND ".join(f"metrics.m{i} > {i}" for i in range(40)) + " AND metrics.z > 'x'"
    err = parse_error(text)
    assert err.position == text.index("'x'")
    shown, caret = err.message.split("\n")[1:]
    assert shown.startswith("  ...") and len(shown) < 140
    assert shown[caret.index("^") :].startswith("'x'")


def test_deep_nesting_is_a_syntax_error_not_a_recursion_error() -> None:
    for text in ["(" * 5000 + "metrics.a > 1" + ")" * 5000, "NOT " * 5000 + "metrics.a > 1"]:
        err = parse_error(text)
        assert "nests deeper" in err.reason


def test_filters_past_what_one_query_holds_say_which_limit() -> None:
    ors = " OR ".join(f"metrics.m = {i}" for i in range(MAX_CONDITIONS + 1))
    err = parse_error(ors)
    assert err.position == ors.rindex("metrics.m") and "at most 500 conditions" in err.reason
    assert "IN" in err.reason  # says how to fix it
    assert isinstance(parse_filter(ors.rsplit(" OR ", 1)[0]), Or)  # 500: fine
    values = ", ".join(map(str, range(MAX_LISTED_VALUES)))
    assert parse_filter(f"metrics.m IN ({values})") is not None
    err = parse_error(f"metrics.m IN ({values}) OR params.p IN ('a')")
    assert "at most 10,000 values" in err.reason
    datasets = " AND ".join(f"datasets.name = '{i}'" for i in range(MAX_SUBQUERY_CONDITIONS + 1))
    assert "at most 25 conditions on datasets" in parse_error(datasets).reason
    assert parse_filter(datasets.rsplit(" AND ", 1)[0]) is not None
    nested = "(" * MAX_DEPTH + "metrics.a > 1" + ")" * MAX_DEPTH
    assert parse_filter(nested) == metric("a", ">", 1)
    assert "deeper than 25 levels" in parse_error("NOT " + nested).reason


# --- order by ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.acc DESC", OrderBy(Identifier("metric", "acc"), True)),
        ("metrics.acc", OrderBy(Identifier("metric", "acc"), False)),
        ("params.lr ASC", OrderBy(Identifier("param", "lr"), False)),
        ("attributes.start_time", OrderBy(Identifier("attribute", "start_time"), False)),
        ("  tags.`my tag`  desc ", OrderBy(Identifier("tag", "my tag"), True)),
        ("datasets.name Desc", OrderBy(Identifier("dataset", "name"), True)),
        ("run.status asc", OrderBy(Identifier("attribute", "status"), False)),
    ],
)
def test_order_by(text: str, expected: OrderBy) -> None:
    assert parse_order_by(text) == expected


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("", 0, "expected an identifier such as metrics.acc DESC, found the end"),
        ("metrics.acc DOWN", 12, "expected ASC or DESC after metrics.acc, found 'DOWN'"),
        ("metrics.acc DESC, params.x", 16, "expected ASC or DESC"),
        ("start_time DESC", 0, "write attributes.start_time"),
        ("attributes.nope", 11, "unknown attribute"),
        ("DESC", 0, "needs a prefix"),
        ("metrics.`acc DESC", 8, "unterminated"),
    ],
)
def test_order_by_errors(text: str, position: int, words: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse_order_by(text)
    assert words in info.value.reason
    assert_caret(info.value, text, position, what="order_by")


def test_typical_filter_parses_fast() -> None:
    text = "metrics.acc > 0.9 AND params.lr = '0.01' AND attributes.status IN ('FINISHED', 'RUNNING')"
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        parse_filter(text)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 500e-6  # ~30 µs on a laptop; generous bound so a busy CI box never flakes


# --- property tests ------------------------------------------------------------------------------------

ALIASES = {
    "metric": ["metric", "metrics"],
    "param": ["param", "params", "parameter", "parameters"],
    "tag": ["tag", "tags"],
    "attribute": ["attribute", "attributes", "attr", "run"],
    "dataset": ["dataset", "datasets"],
}
STATUSES = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]
NUM_OPS = ["=", "!=", "<", "<=", ">", ">="]
STR_OPS = ["=", "!=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"]
NULL_OPS = ["IS NULL", "IS NOT NULL"]
BARE_KEY = re.compile(r"[\w\-./:]+")

# Chunks make quotes, doubled quotes and backslashes common; a quoted key cannot hold both ` and ".
CHUNKS = (
    st.sampled_from(["a", " ", "'", '"', "''", '""', "\\", "\\'", "`", "%", "_", ".", "/", "\n"])
    | st.characters()
)
strings = st.lists(CHUNKS, max_size=6).map("".join)
keys = strings.map(lambda k: k.replace("`", "") if '"' in k else k).filter(bool)
numbers = st.one_of(st.integers(-(10**12), 10**12), st.floats(allow_nan=False, allow_infinity=False))


def _comparisons(
    idents: st.SearchStrategy[Identifier], values: st.SearchStrategy, ops: list[str], lists: bool = True
) -> st.SearchStrategy[Comparison]:
    scalar = st.builds(Comparison, idents, st.sampled_from(ops), values)
    null = st.builds(Comparison, idents, st.sampled_from(NULL_OPS), st.none())
    if not lists:
        return scalar | null
    in_ops = st.sampled_from(["IN", "NOT IN"])
    return (
        scalar
        | null
        | st.builds(Comparison, idents, in_ops, st.lists(values, min_size=1, max_size=4).map(tuple))
    )


def _idents(kind: str, names: st.SearchStrategy[str]) -> st.SearchStrategy[Identifier]:
    return st.builds(Identifier, st.just(kind), names)


STATUS = st.just(Identifier("attribute", "status"))
STRING_ATTRS = st.sampled_from(sorted(n for n, t in ATTRIBUTES.items() if t == "string" and n != "status"))
comparisons = st.one_of(
    _comparisons(_idents("metric", keys), numbers, NUM_OPS),
    _comparisons(_idents("param", keys), strings, STR_OPS),
    _comparisons(_idents("tag", keys), strings, STR_OPS),
    _comparisons(
        _idents("dataset", st.sampled_from(["name", "digest", "context", "source"])), strings, STR_OPS
    ),
    _comparisons(_idents("attribute", STRING_ATTRS), strings, STR_OPS),
    _comparisons(
        _idents("attribute", st.sampled_from(["start_time", "end_time"])),
        st.integers(0, 2**45),
        NUM_OPS,
        False,
    ),
    _comparisons(STATUS, st.sampled_from(STATUSES), ["=", "!="]),
    st.builds(Comparison, STATUS, st.sampled_from(["LIKE", "ILIKE", "NOT LIKE"]), strings),
)


expressions = st.recursive(
    comparisons,
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        children.map(Not),
    ),
    max_leaves=8,
)


def flatten(expr: Expr) -> Expr:
    """What the parser returns for a generated AST: nested And/Or of the same kind spliced into the parent."""
    if isinstance(expr, Not):
        return Not(flatten(expr.item))
    if isinstance(expr, (And, Or)):
        items: list[Expr] = []
        for item in map(flatten, expr.items):
            items.extend(item.items if type(item) is type(expr) else (item,))  # type: ignore[union-attr]
        return type(expr)(tuple(items))
    return expr


class Renderer:
    """Writes an AST back as filter text, choosing keyword case, whitespace and quoting at random."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def ws(self) -> str:
        return self.rnd.choice([" ", "  ", "\t", "\n", " \n  "])

    def kw(self, words: str) -> str:
        cased = "".join(c.upper() if self.rnd.random() < 0.5 else c.lower() for c in words)
        return cased.replace(" ", self.ws())

    def paren(self, text: str) -> str:
        inner = self.rnd.choice(["", " "])
        return f"({inner}{text}{inner})"

    def key(self, key: str) -> str:
        if BARE_KEY.fullmatch(key) and self.rnd.random() < 0.6:
            return key
        if "`" not in key and ('"' in key or self.rnd.random() < 0.5):
            return f"`{key}`"
        return f'"{key}"'

    def ident(self, ident: Identifier) -> str:
        key = ident.key
        if ident.kind in ("attribute", "dataset"):
            key = self.kw(key)  # names of attributes and dataset fields are case-insensitive
        return f"{self.kw(self.rnd.choice(ALIASES[ident.kind]))}.{self.key(key)}"

    def value(self, value: object, status: bool) -> str:
        if not isinstance(value, str):
            return repr(value)
        if status:
            value = self.kw(value)
        quote = self.rnd.choice("'\"")
        body = value.replace("\\", "\\\\")
        body = re.sub(quote, lambda _: self.rnd.choice([f"\\{quote}", quote * 2]), body)
        return f"{quote}{body}{quote}"

    def comparison(self, cmp: Comparison) -> str:
        status = cmp.ident == Identifier("attribute", "status") and cmp.op in ("=", "!=", "IN", "NOT IN")
        parts = [self.ident(cmp.ident), self.kw(cmp.op)]
        if isinstance(cmp.value, tuple):
            sep = self.rnd.choice([",", ", ", " , "])
            parts.append(self.paren(sep.join(self.value(v, status) for v in cmp.value)))
        elif cmp.value is not None:
            parts.append(self.value(cmp.value, status))
        return self.ws().join(parts)

    def expr(self, expr: Expr) -> str:
        if isinstance(expr, Comparison):
            text = self.comparison(expr)
        elif isinstance(expr, Not):
            inner = self.expr(expr.item)
            text = (
                self.kw("NOT")
                + self.ws()
                + (self.paren(inner) if isinstance(expr.item, (And, Or)) else inner)
            )
        else:
            word = "AND" if isinstance(expr, And) else "OR"
            parts = [
                self.paren(self.expr(item)) if isinstance(item, Or) and word == "AND" else self.expr(item)
                for item in expr.items
            ]
            text = "".join(
                p if i == 0 else self.ws() + self.kw(word) + self.ws() + p for i, p in enumerate(parts)
            )
        return self.paren(text) if self.rnd.random() < 0.2 else text


@PROPERTY
@given(expressions, st.randoms(use_true_random=False))
def test_rendered_ast_parses_back(expr: Expr, rnd: random.Random) -> None:
    text = Renderer(rnd).expr(expr)
    assert parse_filter(text) == flatten(expr), text


FRAGMENTS = [
    " ", "(", ")", ",", "'", '"', "`", "\\", ".", "-", "metrics.", "params.a", "tags.`t t`", 'params."p"',
    "attributes.status", "attr.start_time", "datasets.name", "foo.bar", "status", "AND", "or", "NOT", "IN",
    "not in", "IS", "NULL", "LIKE", "=", "!=", "<", ">=", "==", "1", "-1.5e3", ".5", "'x'", '"y"', "'running'",
    "''", "\n",
]  # fmt: skip


def check_failure_or_result(parse: Callable[[str], object], text: str) -> None:
    try:
        parse(text)
    except FilterSyntaxError as err:
        assert 0 <= err.position <= len(text)
        assert err.message.startswith("Invalid ")


@PROPERTY
@given(st.text(max_size=60) | st.lists(st.sampled_from(FRAGMENTS), max_size=20).map("".join))
def test_arbitrary_text_only_raises_filter_syntax_error(text: str) -> None:
    check_failure_or_result(parse_filter, text)
    check_failure_or_result(parse_order_by, text)


@PROPERTY
@given(expressions, st.randoms(use_true_random=False), st.data())
def test_truncated_filter_parses_or_fails_cleanly(
    expr: Expr, rnd: random.Random, data: st.DataObject
) -> None:
    text = Renderer(rnd).expr(expr)
    cut = text[: data.draw(st.integers(0, len(text)))]
    try:
        parse_filter(cut)
    except FilterSyntaxError as err:
        assert 0 <= err.position <= len(cut)
