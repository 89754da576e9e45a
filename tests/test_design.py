"""Design family: the registry, the planner's use of it, and the fractional designs' properties (3-11 factors)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.design import list_designs
from bench.design.fractional import GENERATORS, LETTERS, choose, foldover, fraction
from bench.errors import SpecError
from bench.runner.plan import plan
from bench.runner.spec import parse_spec

TRICKS = ["warmup", "heuristic_sampling", "focal_loss", "patch_fusion", "multitask", "random_patch_size",
          "model_fusion", "semi_supervised", "dense_blocks", "self_ensemble", "hard_mining"]


def _spec(design: str, factors: list[str], extra: str = "") -> str:
    return (f'name = "t"\ndesign = "{design}"\nfactors = {factors!r}\n{extra}\n'.replace("'", '"')
            + "[data]\npath = \"synthetic\"\n")


def test_registry_lists_every_design():
    assert {"full", "ladder", "list", "optuna", "fractional"} <= set(list_designs())


def test_full_and_ladder_plans_are_unchanged():
    full = plan(parse_spec(_spec("full", ["warmup", "focal_loss"], "seeds = [0, 1]")))
    assert [c.label for c in full.configurations] == ["BL", "BL+warmup", "BL+focal_loss", "BL+warmup+focal_loss"]
    assert len(full.cells) == 8 and {c.stage for c in full.cells} == {"main"}
    lad = plan(parse_spec(_spec("ladder", ["warmup", "focal_loss"])))
    assert [c.label for c in lad.configurations] == ["BL", "BL+warmup", "BL+warmup+focal_loss"]


@pytest.mark.parametrize("k", range(3, 12))
def test_every_table_design_has_its_stated_resolution_and_orthogonal_columns(k):
    for runs, res, gens in GENERATORS[k]:
        f = fraction(k, gens)  # verify() runs inside: words constant, balanced, orthogonal, no repeated row
        assert f.runs == runs and f.resolution == res
        assert len(f.words) == 2 ** len(gens) - 1
        x = 2 * f.matrix - 1
        # resolution R: every product of fewer than R columns is balanced (orthogonal to the mean)...
        for order in range(1, res):
            for cols in itertools.combinations(range(k), order):
                assert np.prod(x[:, cols], axis=1).sum() == 0
        # ...and some product of R columns is constant (a word of length R)
        assert any(abs(np.prod(x[:, sorted(w)], axis=1).sum()) == runs for w in f.words if len(w) == res)


@pytest.mark.parametrize("k", range(3, 12))
def test_alias_chains_match_the_column_products(k):
    f = choose(k, resolution=3)
    x = 2 * f.matrix - 1
    cols = {}
    for e in [frozenset([i]) for i in range(k)] + [frozenset(p) for p in itertools.combinations(range(k), 2)]:
        cols[e] = np.prod(x[:, sorted(e)], axis=1)
    for group in f.alias_classes():
        for a, b in itertools.combinations(group, 2):
            assert abs(cols[a] @ cols[b]) == f.runs  # aliased: identical up to sign
    groups = f.alias_classes()
    for g1, g2 in itertools.combinations(groups, 2):
        assert cols[g1[0]] @ cols[g2[0]] == 0  # different classes: orthogonal contrasts


def test_eleven_factors_resolution_four_is_the_issue_table():
    f = choose(11, resolution=4)
    assert f.runs == 32 and f.generators == ("F=ABC", "G=BCD", "H=CDE", "J=ACD", "K=ADE", "L=BDE")
    assert choose(11, resolution=5).runs == 128 and choose(11, resolution=5).resolution == 5
    assert choose(11, runs=64).resolution == 4
    assert choose(3, resolution=4).words == ()  # no 3-factor fraction of resolution IV: the full 2^3


def test_foldover_clears_main_effects_of_two_factor_interactions():
    f = choose(7, resolution=3)
    assert f.resolution == 3
    both = foldover(f)
    assert both.runs == 16 and both.resolution == 4
    both.verify()
    assert all(len(g) == 1 or len(g[0]) == 2 for g in both.alias_classes())


def test_fractional_spec_plans_with_stages_and_describes_aliases():
    text = _spec("fractional", ["warmup", "heuristic_sampling", "focal_loss", "patch_fusion", "multitask"],
                 "resolution = 3\nfoldover = true\nseeds = [0, 1]")
    p = plan(parse_spec(text))
    assert len(p.configurations) == 16 and len(p.cells) == 32
    assert [c.stage for c in p.cells].count("foldover") == 16
    from bench.design import get_design

    d = get_design(parse_spec(text)).describe()
    assert d["generators"] == ["D=AB", "E=AC"] and d["resolution"] == 3 and d["combined_resolution"] == 4
    assert d["defining_relation"] == "I = ABD = ACE = BCDE"
    main = [e for e in d["estimable"] if e["kind"] == "main"]
    assert len(main) == 5 and not any(e["aliased"] for e in main)
    assert any(e["aliased"] and " + " in e["name"] for e in d["estimable"])


def test_fractional_refuses_a_conflicting_pair_and_bad_keys():
    with pytest.raises(SpecError, match=r"'focal_loss' and 'hard_mining'.*split them into two specs.*list"):
        parse_spec(_spec("fractional", ["warmup", "focal_loss", "hard_mining"]))
    with pytest.raises(SpecError, match="resolution = 6 must be 3, 4 or 5"):
        parse_spec(_spec("fractional", ["warmup", "focal_loss", "multitask"], "resolution = 6"))
    with pytest.raises(SpecError, match="runs = 12: with 4 factors accepted 8, 16"):
        parse_spec(_spec("fractional", ["warmup", "focal_loss", "multitask", "patch_fusion"], "runs = 12"))
    with pytest.raises(SpecError, match="only used by design = 'fractional'"):
        parse_spec(_spec("full", ["warmup"], "resolution = 4"))
    with pytest.raises(SpecError, match="foldover = true adds nothing"):
        parse_spec(_spec("fractional", ["warmup", "focal_loss", "multitask", "patch_fusion"], "foldover = true"))


def test_letters_skip_i():
    assert LETTERS == "ABCDEFGHJKL" and len(TRICKS) == 11


def test_cell_stages_are_stored_and_returned_by_the_queries(tmp_path):
    from bench.runner import state
    from bench.store import open_store
    from bench.store import queries as q

    spec = parse_spec(_spec("fractional", ["warmup", "heuristic_sampling", "focal_loss", "patch_fusion",
                                           "multitask"], "resolution = 3\nfoldover = true"))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = open_store(url)
    state.register_experiment(store, spec, plan(spec))
    cells = q.cells(url, "t")
    assert cells["stage"].value_counts().to_dict() == {"main": 8, "foldover": 8}
    assert q.case_metrics(url, "t").columns[-1] == "stage"
