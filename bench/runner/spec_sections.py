"""Two sections of a spec with rules of their own: ``[evaluation]`` (which BraTS year's metrics the test cases get)
and ``[replication]`` (adaptive replication over seeds). Parsed here so that :mod:`bench.runner.spec` stays one
screenful of top-level checks."""

from __future__ import annotations

from typing import Any

from bench.errors import SpecError
from bench.spec.checks import check_keys, err, int_list, typed
from bench.spec.model import EvaluationSpec, ReplicationSpec

__all__ = ["COHORTS", "evaluation_section", "replication_section"]

_EVALUATION_KEYS = ("lesionwise", "rules", "cohort")
COHORTS = ("gli", "ssa", "ped", "men", "met")  # bench.evaluation.lesionwise.COHORTS
_REPLICATION_KEYS = ("halfwidth", "looks", "max_seeds", "margin", "alpha", "allocation")


def evaluation_section(source: str, table: Any) -> EvaluationSpec:
    """``[evaluation]``: the BraTS year's rules and cohort of the test-set metrics (``lesionwise = COHORT`` is
    ``rules = "2023"`` with that cohort)."""
    if not isinstance(table, dict):
        raise err(source, "[evaluation] must be a table")
    check_keys(source, "[evaluation]", table, _EVALUATION_KEYS)
    cohort = table.get("lesionwise")
    if cohort is not None and (not isinstance(cohort, str) or cohort.strip().lower() not in COHORTS):
        raise err(source, f"evaluation.lesionwise = {cohort!r} is not one of {', '.join(COHORTS)}")
    lesionwise = cohort.strip().lower() if cohort is not None else None
    rules, year_cohort = table.get("rules"), table.get("cohort")
    if rules is None:
        if year_cohort is not None:
            raise err(source, "evaluation.cohort needs evaluation.rules (\"2023\", \"2024\" or \"2025\")")
        return EvaluationSpec(lesionwise=lesionwise)
    from bench.evaluation.rules import RULES

    if isinstance(rules, int) and not isinstance(rules, bool):
        rules = str(rules)
    if not isinstance(rules, str) or rules.strip() not in RULES:
        raise err(source, f"evaluation.rules = {rules!r} is not one of {', '.join(repr(y) for y in RULES)}")
    year = RULES[rules.strip()]
    if year_cohort is not None and not isinstance(year_cohort, str):
        raise err(source, f"evaluation.cohort = {year_cohort!r} is not one of {', '.join(year.cohorts())}")
    try:
        name = year.cohort(year_cohort, where="evaluation.cohort")
    except SpecError as exc:
        raise err(source, str(exc)) from None
    if year.year == "2017":
        return EvaluationSpec(lesionwise=lesionwise)
    if year.year == "2023":  # the lesion-wise columns: the same spec as lesionwise = COHORT
        if lesionwise is not None and lesionwise != name:
            raise err(source, f"evaluation.lesionwise = {lesionwise!r} and evaluation.cohort = {name!r} differ")
        return EvaluationSpec(lesionwise=name)
    return EvaluationSpec(lesionwise=lesionwise, rules=year.year, cohort=name)


def replication_section(source: str, raw: dict[str, Any], cls: Any) -> ReplicationSpec | None:
    """``[replication]`` of a design class ``cls`` that accepts it (adaptive replication over seeds)."""
    rep = raw.get("replication")
    if rep is None:
        return None
    if not isinstance(rep, dict):
        raise err(source, "[replication] must be a table")
    check_keys(source, "[replication]", rep, _REPLICATION_KEYS)
    if not cls.replicable:
        from bench.design import design_classes

        ok = [c.name for c in design_classes() if c.replicable]
        raise err(source, f"[replication] cannot be used with design = {cls.name!r} (accepted with "
                           f"{', '.join(ok[:-1])} and {ok[-1]} designs)")
    out = ReplicationSpec(
        halfwidth=typed(source, "replication.halfwidth", rep.get("halfwidth", 0.01), float, "a number"),
        margin=typed(source, "replication.margin", rep.get("margin", 0.005), float, "a number"),
        alpha=typed(source, "replication.alpha", rep.get("alpha", 0.05), float, "a number"),
        max_seeds=typed(source, "replication.max_seeds", rep.get("max_seeds", 12), int, "an integer"),
        looks=int_list(source, "replication.looks", rep.get("looks", [3, 5, 8, 12]), count_ok=False),
        allocation=typed(source, "replication.allocation", rep.get("allocation", "balanced"), str, "a string"),
    )
    if out.allocation not in ("balanced", "variance"):
        raise err(source, f"replication.allocation = {out.allocation!r} must be \"balanced\" or \"variance\"")
    if not out.halfwidth > 0:
        raise err(source, f"replication.halfwidth = {out.halfwidth} must be > 0 (Dice)")
    if out.margin < 0:
        raise err(source, f"replication.margin = {out.margin} must be >= 0 (Dice)")
    if not 0 < out.alpha < 1:
        raise err(source, f"replication.alpha = {out.alpha} must be in (0, 1)")
    if list(out.looks) != sorted(out.looks) or out.looks[0] < 2:
        raise err(source, f"replication.looks = {list(out.looks)} must be increasing seed counts, the first >= 2 "
                           "(one seed cannot measure run-to-run variance)")
    if out.looks[-1] > out.max_seeds:
        raise err(source, f"replication.looks = {list(out.looks)}: the last look exceeds max_seeds = "
                           f"{out.max_seeds}")
    return out
