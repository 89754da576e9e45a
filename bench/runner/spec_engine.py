"""The spec's ``[engine]`` section: the engine's name and its own keys, validated by the engine together with
the ``[model]``, ``[train]`` and ``[inference]`` tables it reads (:mod:`bench.engines`)."""

from __future__ import annotations

from typing import Any

from bench.errors import BenchError
from bench.spec.checks import err
from bench.spec.model import EngineSpec, Spec

__all__ = ["engine_section", "check_engine_forms"]


def engine_section(source: str, raw: dict[str, Any]) -> tuple[EngineSpec, dict[str, dict[str, Any]] | None]:
    """``[engine]``: the engine's name and its keys, validated by the engine (with the ``[model]``, ``[train]``
    and ``[inference]`` tables it reads); ``None`` tables for the native engine, whose tables the spec parser checks itself."""
    from bench.engines import get_engine

    table = raw.get("engine", {})
    if not isinstance(table, dict):
        raise err(source, "[engine] must be a table, e.g. [engine] name = \"nnunet\"")
    name = table.get("name", "native")
    if not isinstance(name, str):
        raise err(source, f"engine.name = {name!r} must be a string")
    try:
        eng = get_engine(name)
    except BenchError as exc:
        raise err(source, f"engine.name: {exc}") from None
    options = {k: v for k, v in table.items() if k != "name"}
    if name == "native" and not options:
        return EngineSpec(), None
    tables = eng.validate(source, {"engine": options, "model": raw.get("model", {}), "train": raw.get("train", {}),
                                   "inference": raw.get("inference", {})})
    if name == "native":
        return EngineSpec(), None
    return EngineSpec(name, dict(tables["engine"])), tables


def check_engine_forms(spec: Spec) -> None:
    """Tricks of the spec that have no form on its engine, refused in one line before anything runs."""
    if spec.engine.name == "native":
        return
    from bench.engines import get_engine

    eng = get_engine(spec.engine.name)
    forms = eng.trick_forms()
    names = [*spec.fixed, *spec.factors, *(t for r in spec.rows for t in r.tricks)]
    missing = sorted({n for n in names if forms.get(n) is None and not n.startswith("trainer:")})
    if missing:
        accepted = [t for t, f in forms.items() if f is not None]
        raise err(spec.source, f"engine {spec.engine.name!r} has no form of {', '.join(missing)} "
                               f"(accepted: {', '.join(accepted) or 'none'}; `bench tricks --engine "
                               f"{spec.engine.name}` lists them)")
