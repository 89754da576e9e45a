"""The main effects and two-way interactions of a two-level design (full grid or fraction) for Table 1's
report, with intervals that include run variance when it is measured (:mod:`bench.analysis.factorial`)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from bench.design import traits
from bench.report.model import METRICS, REGIONS, Analysis, ReportData, metric_name

if TYPE_CHECKING:
    from bench.analysis.factorial import EffectSpec

__all__ = ["design_effects"]


def _factors_and_effects(a: Analysis,
                         data: ReportData) -> tuple[list[str], list[EffectSpec], dict[str, Any] | None] | None:
    """The factors and estimable effects of a two-level design, or None with ``a.effects_note`` set."""
    from bench.analysis.factorial import EffectSpec, effect_specs

    factors = [str(f) for f in (data.record.get("factors") or [])]
    if not factors:
        factors = sorted({k for t in a.toggles for k in t})
    if not factors:
        a.effects_note = "no factors recorded: main effects need the toggles of every configuration"
        return None
    if traits(a.design).complete_grid:
        return factors, effect_specs(factors), None
    spec_text = data.record.get("spec")
    try:
        from bench.design import get_design
        from bench.runner.spec import parse_spec

        design = get_design(parse_spec(str(spec_text), "<stored spec>", check_data=False))
        info = design.describe()
    except Exception as exc:  # noqa: BLE001 - a stored spec this version cannot read: say so, keep the report
        a.effects_note = f"the stored spec of this fractional design cannot be read ({exc})"
        return None
    specs = [EffectSpec(e["name"], tuple(e["factors"]), e["kind"], bool(e["aliased"])) for e in info["estimable"]]
    return factors, specs, info


def design_effects(a: Analysis, data: ReportData) -> None:
    """Main effects and two-way interactions (alias sums in a fraction) when the configurations form the
    complete two-level design, with intervals that include run variance when it is measured."""
    from bench.analysis.factorial import factorial_effects

    if traits(a.design).two_level is None:
        return
    found = _factors_and_effects(a, data)
    if found is None:
        return
    factors, specs, info = found
    a.design_info = info
    rows = [i for i in range(len(a.labels)) if a.has_data(i)]
    combos = {tuple(a.toggles[i].get(f, 0) for f in factors): i for i in rows}
    if traits(a.design).complete_grid:
        wanted = list(itertools.product((0, 1), repeat=len(factors)))
    else:
        wanted = [tuple(a.toggles[i].get(f, 0) for f in factors) for i in range(len(a.labels))]
    missing = [c for c in wanted if c not in combos]
    if missing:
        shown = ["+".join(f for f, v in zip(factors, c) if v) or "(none)" for c in missing[:8]]
        a.effects_note = (
            f"main effects are not computed: {len(missing)} of {len(wanted)} combinations of "
            f"{', '.join(factors)} have no results ({', '.join(shown)}{', ...' if len(missing) > 8 else ''})"
        )
        return
    order = [combos[c] for c in dict.fromkeys(wanted)]
    cm = data.case_metrics
    cm = cm[cm["region"].isin(REGIONS)]
    columns = [(m[0], m[1], metric_name(m)) for m in METRICS]
    a.effects = factorial_effects(cm, [a.configuration_ids[i] for i in order], [a.toggles[i] for i in order],
                                  factors, specs, columns, level=a.level, n_boot=a.n_boot, seed=a.seed)
    if a.effects.empty:
        a.effects = None
        a.effects_note = "effects are not computed: no test case was evaluated in every run of every configuration"
