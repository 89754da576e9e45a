"""Small checks shared by the spec parser and the designs' own rules: each failure is one
:class:`~bench.errors.SpecError` line naming the spec file and the key, and what is accepted."""

from __future__ import annotations

import difflib
from typing import Any

from bench.errors import SpecError

__all__ = ["err", "closest", "check_keys", "typed", "int_list"]


def err(source: str, msg: str) -> SpecError:
    """``SpecError("<source>: <msg>")``."""
    return SpecError(f"{source}: {msg}")


def closest(key: str, valid: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest valid name, or ``""``."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_keys(source: str, where: str, table: dict[str, Any], valid: Any) -> None:
    """Refuse a key of ``table`` that is not in ``valid`` (with the closest valid key)."""
    valid = list(valid)
    for key in table:
        if key not in valid:
            raise err(source, f"unknown key {key!r} in {where}{closest(key, valid)} "
                              f"(accepted: {', '.join(valid)})")


def typed(source: str, key: str, value: Any, typ: type | tuple[type, ...], what: str) -> Any:
    """``value`` if it has type ``typ`` (a bool is no integer; an integer is a float), else a SpecError."""
    if isinstance(value, bool) and typ is not bool and (typ is int or (isinstance(typ, tuple) and bool not in typ)):
        raise err(source, f"{key} = {value!r} must be {what}")
    if typ is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, typ):
        raise err(source, f"{key} = {value!r} must be {what}")
    return value


def int_list(source: str, key: str, value: Any, *, count_ok: bool) -> tuple[int, ...]:
    """A non-empty list of distinct integers >= 0 (or, with ``count_ok``, a count N meaning 0..N-1)."""
    if count_ok and isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise err(source, f"{key} = {value} must be >= 1 (a count) or a list of indices")
        return tuple(range(value))
    if not isinstance(value, list) or not value or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise err(source, f"{key} = {value!r} must be a non-empty list of integers")
    if len(set(value)) != len(value):
        raise err(source, f"{key} = {value!r} has duplicates")
    if any(v < 0 for v in value):
        raise err(source, f"{key} = {value!r}: values must be >= 0")
    return tuple(value)
