"""Parser for the run-search filter and order-by grammar (a superset of MLflow's).

    expr       := and_expr (OR and_expr)*
    and_expr   := unary (AND unary)*
    unary      := NOT unary | '(' expr ')' | comparison
    comparison := identifier op [value | '(' value (',' value)* ')']
    identifier := prefix '.' (bare-key | `quoted key` | "quoted key")

The result is a small immutable AST; compiling it to SQL lives elsewhere. Every mistake raises
`FilterSyntaxError` with the character offset and a caret under it, because filters are typed by
people at a prompt and "invalid filter" alone is useless to them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, NoReturn, TypeAlias

from modelyard.errors import InvalidArgument

Kind = Literal["metric", "param", "tag", "attribute", "dataset"]


@dataclass(frozen=True)
class Identifier:
    kind: Kind
    key: str  # metric/param/tag key, attribute name, or dataset field


@dataclass(frozen=True)
class Comparison:
    ident: Identifier
    op: str
    value: float | int | str | tuple[str | float, ...] | None  # None for IS [NOT] NULL, tuple for [NOT] IN


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


Expr: TypeAlias = Comparison | And | Or | Not


@dataclass(frozen=True)
class OrderBy:
    ident: Identifier
    descending: bool


ATTRIBUTES: dict[str, str] = {
    "run_id": "string", "run_name": "string", "status": "string", "artifact_uri": "string",
    "lifecycle_stage": "string", "parent_run_id": "string", "user": "string", "description": "string",
    "start_time": "number", "end_time": "number",
}  # fmt: skip
DATASET_FIELDS = ("name", "digest", "context", "source")
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")

_PREFIXES: dict[str, Kind] = {
    **dict.fromkeys(("metric", "metrics"), "metric"),
    **dict.fromkeys(("param", "params", "parameter", "parameters"), "param"),
    **dict.fromkeys(("tag", "tags"), "tag"),
    **dict.fromkeys(("attribute", "attributes", "attr", "run"), "attribute"),
    **dict.fromkeys(("dataset", "datasets"), "dataset"),
}

_COMPARE = ("=", "!=", "<", "<=", ">", ">=")
_MATCH = ("=", "!=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE")
_IN = ("IN", "NOT IN")
_NULL = ("IS NULL", "IS NOT NULL")
_NUMBER_OPS = _COMPARE + _IN + _NULL  # metrics
_STRING_OPS = _MATCH + _IN + _NULL  # params, tags, datasets, string attributes
_TIME_OPS = _COMPARE + _NULL  # start_time / end_time
# What one query holds on every backend, so that a filter past them is a clear error (not a database's):
# SQLite's parser overflows at about 32 levels of parentheses and NOT, and it refuses an expression over
# 1,000 levels deep (n conditions joined by OR or AND make n levels); PostgreSQL refuses a statement
# with over 65,535 values, and takes seconds to plan 100 subqueries joined by AND (one per condition on
# datasets here, on tags in registry searches), minutes for 500 (measured).
MAX_DEPTH = 25
MAX_CONDITIONS = 500
MAX_SUBQUERY_CONDITIONS = 25
MAX_LISTED_VALUES = 10_000  # the values of every IN list in the filter together

# One pass of one regex does all the lexing. A quoted key is glued to its "prefix." word (no space
# allowed) so that `params."a b"` is an identifier while `= "a b"` stays a string value.
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    |(?P<word>[A-Za-z_][\w\-./:]*(?:(?<=\.)(?:`[^`]*`|"[^"]*"))?)
    |(?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    |(?P<op><=|>=|!=|<>|==|=|<|>)
    |(?P<punct>[(),])
    |(?P<btick>`[^`]*`)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {q: re.compile(rf"\\(.)|{q}{q}", re.DOTALL) for q in "'\""}
_OP_ALIASES = {"==": "=", "<>": "!="}
_FLAT = str.maketrans("\t\n\r\v\f", "     ")  # one column per char keeps the caret aligned
_Token: TypeAlias = tuple[str, str, int]  # (kind, source text, start offset)


class FilterSyntaxError(InvalidArgument):
    """A malformed filter or order-by clause.

    `.position` is the 0-based character offset of the problem and `.reason` the bare explanation;
    the message adds the offending text with a caret line under that offset.
    """

    def __init__(self, reason: str, text: str, position: int, what: str = "filter") -> None:
        self.reason, self.text, self.position, self.what = reason, text, position, what
        super().__init__(f"Invalid {what} at position {position}: {reason}\n{_caret(text, position)}")

    def __reduce__(self) -> tuple[type[FilterSyntaxError], tuple[str, str, int, str]]:
        return type(self), (self.reason, self.text, self.position, self.what)  # picklable despite 4 args


def _caret(text: str, position: int, window: int = 60) -> str:
    shown = text.translate(_FLAT)
    lo = max(0, min(position - window, len(shown) - 2 * window))  # long filters: show the part that matters
    hi = lo + 2 * window
    snippet, col = shown[lo:hi], position - lo
    if lo > 0:
        snippet, col = "..." + snippet, col + 3
    if hi < len(shown):
        snippet += "..."
    return f"  {snippet}\n  {' ' * col}^"


def _unescape(body: str, quote: str) -> str:
    # \' \" \\ and doubled quotes collapse; any other backslash pair is kept so LIKE escapes ('%\_%') survive.
    def repl(m: re.Match[str]) -> str:
        ch = m.group(1)
        if ch is None:
            return m.group(0)[0]
        return ch if ch in "\\'\"" else "\\" + ch

    return _ESCAPES[quote].sub(repl, body) if ("\\" in body or quote * 2 in body) else body


def _punct(tok: _Token, ch: str) -> bool:
    return tok[0] == "punct" and tok[1] == ch


def _describe(tok: _Token) -> str:
    return "the end of the text" if tok[0] == "eof" else repr(tok[1])


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.text, self.what, self.i, self.depth = text, what, 0, 0
        self.conditions = self.subqueries = self.listed = 0
        self.toks = self._tokenize(text)

    def fail(self, position: int, reason: str) -> NoReturn:
        raise FilterSyntaxError(reason, self.text, position, self.what)

    def _tokenize(self, text: str) -> list[_Token]:
        toks: list[_Token] = []
        pos, n, match = 0, len(text), _TOKEN.match
        while pos < n:
            m = match(text, pos)
            if m is None:
                ch = text[pos]
                if ch in "'\"`":
                    self.fail(pos, f"unterminated quoted text starting here; close it with {ch}")
                self.fail(pos, f"unexpected character {ch!r}")
            kind = m.lastgroup
            assert kind is not None
            if kind != "ws":
                toks.append((kind, m.group(), pos))
            pos = m.end()
        toks.append(("eof", "", n))
        return toks

    def peek(self) -> _Token:
        return self.toks[self.i]

    def take(self) -> _Token:
        tok = self.toks[self.i]
        if tok[0] != "eof":
            self.i += 1
        return tok

    def at(self, *keywords: str) -> str | None:
        """The upper-cased keyword if the next token is one of `keywords`."""
        kind, src, _ = self.toks[self.i]
        if kind == "word" and src.upper() in keywords:
            return src.upper()
        return None

    # expressions -------------------------------------------------------------------------------------
    def expr(self) -> Expr:
        items = [self.conjunction()]
        while self.at("OR"):
            self.i += 1
            items.append(self.conjunction())
        return _join(Or, items)

    def conjunction(self) -> Expr:
        items = [self.unary()]
        while self.at("AND"):
            self.i += 1
            items.append(self.unary())
        return _join(And, items)

    def unary(self) -> Expr:
        tok = self.peek()
        if self.depth > MAX_DEPTH:
            self.fail(tok[2], f"the filter nests deeper than {MAX_DEPTH} levels of parentheses and NOT")
        if self.at("NOT"):
            self.i += 1
            self.depth += 1
            inner = self.unary()
            self.depth -= 1
            return Not(inner)
        if _punct(tok, "("):
            self.i += 1
            self.depth += 1
            inner = self.expr()
            self.depth -= 1
            close = self.take()
            if close[0] == "eof":
                self.fail(close[2], f"expected ')' to close the '(' at position {tok[2]}")
            if close[1] != ")":
                self.fail(close[2], f"expected AND, OR or ')', found {_describe(close)}")
            return inner
        return self.comparison()

    def comparison(self) -> Expr:
        start = self.peek()[2]
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            self.fail(
                start,
                f"a filter holds at most {MAX_CONDITIONS} conditions; list the values of one key with IN, "
                "e.g. metrics.m IN (1, 2, 3), or split the search",
            )
        ident, shown = self.identifier(self.take())
        self.subqueries += ident.kind == "dataset"
        if self.subqueries > MAX_SUBQUERY_CONDITIONS:
            self.fail(start, f"a filter holds at most {MAX_SUBQUERY_CONDITIONS} conditions on datasets")
        ops, want = _rules(ident)
        op, op_pos = self.operator(shown, ops)
        if op not in ops:
            self.fail(op_pos, f"{shown} does not support {op}; use one of {', '.join(ops)}")
        if op in _NULL:
            return Comparison(ident, op, None)
        if op not in _IN:
            return Comparison(ident, op, self.value(ident, shown, op, want))
        opener = self.take()
        if not _punct(opener, "("):
            self.fail(opener[2], f"expected '(' after {op}, e.g. {shown} {op} ({_example(want)}, ...)")
        values: list[str | float] = []
        while True:
            if not values and _punct(self.peek(), ")"):
                self.fail(self.peek()[2], f"{op} needs at least one value, e.g. {op} ({_example(want)})")
            values.append(self.value(ident, shown, op, want))
            self.listed += 1
            if self.listed > MAX_LISTED_VALUES:
                self.fail(
                    opener[2],
                    f"a filter's IN lists hold at most {MAX_LISTED_VALUES:,} values; split the search",
                )
            sep = self.take()
            if _punct(sep, ")"):
                return Comparison(ident, op, tuple(values))
            if not _punct(sep, ","):
                self.fail(sep[2], f"expected ',' or ')' in the {op} list, found {_describe(sep)}")

    def identifier(self, tok: _Token) -> tuple[Identifier, str]:
        kind, src, pos = tok
        if kind == "btick":
            self.fail(pos, f"a quoted key needs a prefix: write metrics.{src}, params.{src} or tags.{src}")
        if kind != "word" or src.upper() in ("AND", "OR", "NOT"):
            wanted = (
                "a condition such as metrics.acc > 0.9"
                if self.what == "filter"
                else "an identifier such as metrics.acc DESC"
            )
            self.fail(pos, f"expected {wanted}, found {_describe(tok)}")
        dot = src.find(".")
        if dot < 0:
            if src.lower() in ATTRIBUTES:
                self.fail(pos, f"{src!r} needs a prefix: write attributes.{src.lower()}")
            self.fail(pos, f"{src!r} needs a prefix: write metrics.{src}, params.{src} or tags.{src}")
        prefix, rest, key_pos = src[:dot].lower(), src[dot + 1 :], pos + dot + 1
        if prefix not in _PREFIXES:
            self.fail(
                pos, f"unknown prefix {src[:dot]!r}; use metrics., params., tags., attributes. or datasets."
            )
        if rest[:1] in ("`", '"'):
            key = rest[1:-1]  # the regex guarantees the closing quote
        elif "`" in rest or '"' in rest:
            q = min(i for i in (rest.find("`"), rest.find('"')) if i >= 0)
            self.fail(key_pos + q, f"quote the whole key, e.g. {src[:dot]}.`{rest.replace('`', '')}`")
        else:
            key = rest
        if not key:
            self.fail(key_pos, f"expected a key after {src[: dot + 1]!r}, e.g. {src[: dot + 1]}`my key`")
        ident_kind = _PREFIXES[prefix]
        if ident_kind == "attribute":
            key = key.lower()
            if key not in ATTRIBUTES:
                self.fail(key_pos, f"unknown attribute {key!r}; valid attributes: {', '.join(ATTRIBUTES)}")
        elif ident_kind == "dataset":
            key = key.lower()
            if key not in DATASET_FIELDS:
                self.fail(
                    key_pos, f"unknown dataset field {key!r}; valid fields: {', '.join(DATASET_FIELDS)}"
                )
        return Identifier(ident_kind, key), src

    def operator(self, shown: str, ops: tuple[str, ...]) -> tuple[str, int]:
        kind, src, pos = self.take()
        if kind == "op":
            return _OP_ALIASES.get(src, src), pos
        word = src.upper() if kind == "word" else ""
        if word in ("LIKE", "ILIKE", "IN"):
            return word, pos
        if word == "NOT":
            nxt = self.at("LIKE", "ILIKE", "IN")
            if nxt is None:
                self.fail(
                    self.peek()[2], f"expected LIKE, ILIKE or IN after NOT, found {_describe(self.peek())}"
                )
            self.i += 1
            return f"NOT {nxt}", pos
        if word == "IS":
            negate = self.at("NOT") is not None
            self.i += negate
            if self.at("NULL") is None:
                self.fail(
                    self.peek()[2], f"expected NULL or NOT NULL after IS, found {_describe(self.peek())}"
                )
            self.i += 1
            return ("IS NOT NULL" if negate else "IS NULL"), pos
        self.fail(
            pos,
            f"expected an operator after {shown} (one of {', '.join(ops)}), found {_describe((kind, src, pos))}",
        )

    def value(self, ident: Identifier, shown: str, op: str, want: str) -> str | float:
        kind, src, pos = self.take()
        value: str | float
        if kind == "num":
            try:
                value = float(src) if any(c in src for c in ".eE") else int(src)
            except ValueError:  # ints longer than sys.get_int_max_str_digits()
                self.fail(pos, "the number is too long")
        elif kind == "str":
            value = _unescape(src[1:-1], src[0])
        else:
            hint = ""
            if src.upper() == "NULL":  # SQL habit: `= NULL` never matches anything
                hint = f"; write {shown} IS {'NOT ' if op == '!=' else ''}NULL"
            elif kind in ("word", "btick") and want == "string":
                hint = f"; quote strings: {shown} {op} '{src.strip('`')}'"
            self.fail(pos, f"expected a value after {op!r}, found {_describe((kind, src, pos))}{hint}")
        listed = op in _IN
        if want == "number" and isinstance(value, str):
            fix = _number_or_none(value) or "0.5"
            if listed:
                self.fail(pos, f"{shown} compares to numbers: write {fix} without quotes")
            self.fail(pos, f"{shown} compares to a number: write {shown} {op} {fix}")
        if want == "string" and not isinstance(value, str):
            if listed:
                self.fail(pos, f"{shown} compares to strings: quote each value, e.g. '{src}'")
            self.fail(pos, f"{shown} compares to a string: write {shown} {op} '{src}'")
        if ident == _STATUS and op in ("=", "!=", "IN", "NOT IN"):
            assert isinstance(value, str)
            value = value.upper()  # statuses are stored upper-case; accept any case from people
            if value not in RUN_STATUSES:
                self.fail(pos, f"{shown} must be one of {', '.join(RUN_STATUSES)}, not {src}")
        return value


_STATUS = Identifier("attribute", "status")


def _rules(ident: Identifier) -> tuple[tuple[str, ...], str]:
    """The operators an identifier accepts and the type of value it compares to."""
    if ident.kind == "metric":
        return _NUMBER_OPS, "number"
    if ident.kind == "attribute" and ATTRIBUTES[ident.key] == "number":
        return _TIME_OPS, "number"
    return _STRING_OPS, "string"


def _example(want: str) -> str:
    return "0.5" if want == "number" else "'a'"


def _number_or_none(text: str) -> str | None:
    m = _TOKEN.fullmatch(text.strip())
    return text.strip() if m is not None and m.lastgroup == "num" else None


def _join(cls: type[And] | type[Or], items: list[Expr]) -> Expr:
    if len(items) == 1:
        return items[0]
    flat: list[Expr] = []
    for item in items:  # (a AND b) AND c is just a AND b AND c
        flat.extend(item.items if isinstance(item, cls) else (item,))
    return cls(tuple(flat))


def parse_filter(text: str | None) -> Expr | None:
    """Parse a run-search filter; None or blank text means "no filter" and returns None."""
    if text is None:
        return None
    parser = _Parser(text, "filter")
    if parser.peek()[0] == "eof":
        return None
    expr = parser.expr()
    tok = parser.peek()
    if _punct(tok, ")"):
        parser.fail(tok[2], "unmatched ')'")
    if tok[0] != "eof":
        parser.fail(
            tok[2], f"unexpected {_describe(tok)} after a complete condition; join conditions with AND or OR"
        )
    return expr


def parse_order_by(text: str) -> OrderBy:
    """Parse one order-by clause: `<identifier> [ASC|DESC]`, ascending by default."""
    parser = _Parser(text, "order_by")
    ident, shown = parser.identifier(parser.take())
    direction = parser.at("ASC", "DESC")
    parser.i += direction is not None
    tok = parser.peek()
    if tok[0] != "eof":
        parser.fail(tok[2], f"expected ASC or DESC after {shown}, found {_describe(tok)}")
    return OrderBy(ident, direction == "DESC")
