"""Code fingerprints: a hash of a step function and of the project functions and classes it uses.

The source is hashed as its syntax tree, so comments, blank lines and formatting do not change it; a change to
the step body, its default arguments, or any function or class it calls that lives outside site-packages and
the standard library does. Installed libraries are covered by the step's declared environment instead.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
import sysconfig
import textwrap
import types
from collections.abc import Callable
from functools import lru_cache
from typing import Any

_LIBRARY_ROOTS = tuple(
    {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")} | {sys.prefix}
)


def fingerprint(func: Callable[..., Any]) -> str:
    """SHA-256 over the normalized source of `func` and of the local code it reaches."""
    sha = hashlib.sha256()
    seen: set[int] = set()
    _visit(func, sha, seen)
    return sha.hexdigest()


def _is_local(obj: Any) -> bool:
    """Defined in the user's project (not in an installed package, the standard library or Modelyard)."""
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    if path is None:
        return getattr(obj, "__module__", None) == "__main__"
    return not path.startswith(_LIBRARY_ROOTS) and not (obj.__module__ or "").startswith("modelyard.")


def _is_local_module(module: types.ModuleType) -> bool:
    path: str | None = getattr(module, "__file__", None)
    return (
        path is not None
        and not path.startswith(_LIBRARY_ROOTS)
        and not module.__name__.startswith("modelyard")
    )


def _visit(obj: Any, sha: Any, seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    func = getattr(obj, "__wrapped__", obj)  # a Step, or a decorated function
    sha.update(_normalized_source(func).encode())
    code = getattr(func, "__code__", None)
    scope: dict[str, Any] = dict(getattr(func, "__globals__", {}))
    if inspect.isclass(func):
        scope = vars(sys.modules.get(func.__module__, types.ModuleType("x")))
        names = _class_names(func)
    else:
        names = _code_names(code) if code else set()
        if func.__closure__:
            for name, cell in zip(func.__code__.co_freevars, func.__closure__):
                try:
                    scope[name] = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
    for name in sorted(names):
        target = scope.get(name)
        if isinstance(target, types.ModuleType):
            if _is_local_module(target):  # `helpers.norm(x)`: the project module's functions it names
                for attr in sorted(names):
                    found = getattr(target, attr, None)
                    if (
                        inspect.isfunction(found) or inspect.isclass(found)
                    ) and found.__module__ == target.__name__:
                        _visit(found, sha, seen)
            continue
        target = getattr(target, "__wrapped__", target)
        if (inspect.isfunction(target) or inspect.isclass(target)) and _is_local(target):
            _visit(target, sha, seen)
        elif isinstance(target, (int, float, str, bool, bytes, tuple)) and not name.startswith("__"):
            sha.update(f"{name}={target!r}".encode())  # module-level constants the code reads


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names) | set(code.co_freevars)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _class_names(cls: type) -> set[str]:
    names: set[str] = set()
    for value in vars(cls).values():
        value = getattr(value, "__func__", value)
        if inspect.isfunction(value):
            names |= _code_names(value.__code__)
    return names


def _normalized_source(obj: Any) -> str:
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):  # no source (built in a REPL or by exec): fall back to the bytecode
        code = getattr(obj, "__code__", None)
        return repr(code.co_code) if code else repr(obj)
    return _ast_dump(textwrap.dedent(source))


@lru_cache(maxsize=1024)
def _ast_dump(source: str) -> str:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in ast.walk(tree):  # decorators and docstrings do not change what the code computes
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node.decorator_list = []
            first = node.body[0] if node.body else None
            docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if docstring and isinstance(first.value.value, str):  # type: ignore[union-attr]
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)
