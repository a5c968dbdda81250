"""User functions of views, referenced by import path ("module:function") so any process can load them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from ..errors import InvalidInputError

UserFn = Callable[[pa.Table], Any]


def path_of(fn: UserFn | str) -> str:
    """The import path of a module-level function (or a "module:function" string, checked)."""
    if isinstance(fn, str):
        load(fn)
        return fn
    qualname = getattr(fn, "__qualname__", "")
    module = getattr(fn, "__module__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise InvalidInputError(
            f"view function {fn!r} must be a module-level function importable by other processes "
            "(not a lambda, closure or __main__ function); define it in a module and pass it or 'module:function'"
        )
    path = f"{module}:{qualname}"
    load(path)
    return path


def load(path: str) -> UserFn:
    """Import the function a path names."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise InvalidInputError(f"function path {path!r} must look like 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"cannot import view function {path!r}: {exc}; is its module on the path?") from exc
    if not callable(obj):
        raise InvalidInputError(f"view function {path!r} is not callable")
    fn: UserFn = obj
    return fn


def as_table(value: Any, where: str) -> pa.Table:
    """A function's result as a table (anything pa.table() accepts)."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    try:
        return pa.table(value)
    except (TypeError, ValueError, pa.ArrowInvalid) as exc:
        raise InvalidInputError(f"{where} returned {type(value).__name__}, not a table: {exc}") from exc
