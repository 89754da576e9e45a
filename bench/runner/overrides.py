"""Command-line overrides of a spec (``bench run`` and ``bench plan``: ``--grid``, ``--ladder``, ``--optuna``,
``--trials``, ``--test-ids``, ``--splits``), applied to the spec's parsed TOML table.

The overridden table is written back as the spec's text and parsed again: the text is what the results
database stores, so workers that join later see the same experiment. A spec whose overrides change nothing
keeps its text (and its hash).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

from bench.errors import SpecError
from bench.spec.model import Spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["override_spec", "set_key", "dump_toml"]

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def override_spec(spec: Spec, *, design: str | None = None, trials: int | None = None,
                  test_ids: list[str] | None = None, splits: str | None = None,
                  options: Mapping[str, str] | None = None) -> Spec:
    """``spec`` with the given settings replaced (``None``: keep the spec's), validated again.

    ``options`` names the command-line option behind each argument, for messages: ``"trials"`` and, for
    designs, their names (``{"full": "--grid", "optuna": "--optuna", ...}``).
    """
    from bench.design import design_class, design_classes
    from bench.runner.spec import parse_spec

    opts = dict(options or {})
    raw = tomllib.loads(spec.text)
    edited = tomllib.loads(spec.text)
    if design is not None and design != spec.design:
        cls = design_class(design)
        if cls.needs_factors and not spec.factors:
            raise SpecError(f"{spec.source}: {opts.get(design, f'design = {design!r}')} needs factors")
        set_key(edited, "design", design)
    if trials is not None:
        if not design_class(design or spec.design).searches:
            searchers = [c.name for c in design_classes() if c.searches]
            how = [opts[n] for n in searchers if n in opts] + [f"design = {n!r}" for n in searchers]
            raise SpecError(f"{opts.get('trials', 'optuna.trials')} is only used by Optuna searches "
                            f"({' or '.join(how)})")
        if trials != spec.optuna.trials:
            set_key(edited, "trials", trials, table="optuna")
    # the IDs themselves go into the stored spec, not the file they came from
    if test_ids is not None and tuple(test_ids) != spec.data.test_ids:
        set_key(edited, "test_ids", list(test_ids), table="data")
    if splits is not None and str(splits) != spec.data.splits:
        set_key(edited, "splits", str(splits), table="data")
    if edited == raw:
        return spec
    return parse_spec(dump_toml(edited), spec.source)


def set_key(raw: dict[str, Any], key: str, value: Any, table: str | None = None) -> None:
    """Set ``key = value`` at the top level of the parsed TOML ``raw`` (or in its table ``[table]``)."""
    target = raw
    if table is not None:
        target = raw.setdefault(table, {})
        if not isinstance(target, dict):
            raise SpecError(f"[{table}] must be a table, not {target!r}")
    target[key] = value


def dump_toml(raw: Mapping[str, Any]) -> str:
    """TOML text of a parsed spec table: plain keys first, then ``[tables]`` and ``[[arrays of tables]]``
    (``tomllib.loads(dump_toml(t)) == t`` for the strings, numbers, booleans, lists and tables of a spec)."""
    lines: list[str] = []
    _dump_table(raw, (), lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _dump_table(table: Mapping[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    plain = {k: v for k, v in table.items() if not _is_table(v) and not _is_table_array(v)}
    for k, v in plain.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in table.items():
        if _is_table(v):
            sub = (*path, k)
            if any(not _is_table(x) for x in v.values()) or not v:
                lines += ["", f"[{'.'.join(_key(p) for p in sub)}]"]
            _dump_table(v, sub, lines)
        elif _is_table_array(v):
            for item in v:
                lines += ["", f"[[{'.'.join(_key(p) for p in (*path, k))}]]"]
                _dump_table(item, (*path, k), lines)


def _is_table(v: Any) -> bool:
    return isinstance(v, Mapping)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise SpecError(f"cannot write {v!r} ({type(v).__name__}) into a spec")
