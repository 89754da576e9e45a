"""Challenge-style ranking (`bench report --rank`): rank-then-aggregate with ties by hand, PermRanker's
permutation p-values on constructed cases, the bootstrap rank distribution over cases and runs, and the CLI on
stored experiments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.analysis.ranking import (
    COVERS_CASES_AND_RUNS,
    COVERS_CASES_ONLY,
    RANK_METRIC_SETS,
    bootstrap_ranks,
    permutation_pvalues,
    rank,
    rank_input,
    rank_then_aggregate,
)
from bench.errors import StoreError
from bench.report.demo import DemoRow, fill_results, ladder_rows


def _frame(values: dict[str, list[list[tuple[float, float]]]], region: str = "ET") -> pd.DataFrame:
    """case_metrics-like rows: values[label][run][case] = (dice, hd95)."""
    rows = []
    for pos, (label, runs) in enumerate(values.items()):
        for seed, cases in enumerate(runs):
            for k, (d, h) in enumerate(cases):
                rows.append({"configuration_id": pos + 1, "label": label, "position": pos, "fold": 0, "seed": seed,
                             "case_id": f"c{k}", "region": region, "dice": d, "hd95": h,
                             "lesion_dice": np.nan, "lesion_hd95": np.nan})
    return pd.DataFrame(rows)


def test_rank_then_aggregate_with_ties_by_hand():
    # case 0: Dice A=B=D .9 > C .8 -> A1 B1 D1 C4; HD95 A=C=D 2 < B 3 -> A1 C1 D1 B4
    # case 1: Dice B=C .8 > A=D .7 -> B1 C1 A3 D3; HD95 B 4 < A=D 5 < C 6 -> B1 A2 D2 C4
    vals = {"A": [[(0.9, 2.0), (0.7, 5.0)]], "B": [[(0.9, 3.0), (0.8, 4.0)]],
            "C": [[(0.8, 2.0), (0.8, 6.0)]], "D": [[(0.9, 2.0), (0.7, 5.0)]]}
    inp = rank_input(_frame(vals), RANK_METRIC_SETS["dice"])
    assert [(m.column, r) for m, r in inp.criteria] == [("dice", "ET"), ("hd95", "ET")]
    ranks, case_scores, final = rank_then_aggregate(np.stack([v.mean(axis=0) for v in inp.oriented()]))
    np.testing.assert_array_equal(ranks[:, 0, :], [[1, 1], [1, 4], [4, 1], [1, 1]])
    np.testing.assert_array_equal(ranks[:, 1, :], [[3, 2], [1, 1], [1, 4], [3, 2]])
    np.testing.assert_allclose(case_scores, [[1.0, 2.5], [2.5, 1.0], [2.5, 2.5], [1.0, 2.5]])
    np.testing.assert_array_equal(final, [1, 1, 4, 1])  # A, B, D tie on 1.75 and share rank 1; C is 4th
    r = rank(inp, n_boot=200, n_permutations=1000)
    np.testing.assert_allclose(r.score, [1.75, 1.75, 2.5, 1.75])
    assert [r.labels[i] for i in r.order()] == ["A", "B", "D", "C"]
    # a missing value ranks last, tied with the other missing ones
    ranks, _, _ = rank_then_aggregate(np.array([[[0.5]], [[np.nan]], [[0.7]], [[np.nan]]]))
    np.testing.assert_array_equal(ranks[:, 0, 0], [2, 3, 1, 3])


def test_permutation_pvalues_exact_and_monte_carlo():
    # A better than B on all 5 cases: only the identity of the 2^5 swaps is as extreme -> p = 1/32
    p, exact, n = permutation_pvalues(np.array([[1.0] * 5, [2.0] * 5]), n_permutations=10000)
    assert exact and n == 32
    assert p[0, 1] == pytest.approx(1 / 32) and p[1, 0] == pytest.approx(1.0)
    # A better on 4 cases, worse on 1: sum of d = -3; swaps with at least 4 negative signs: 5 + 1 of 32
    p, exact, _ = permutation_pvalues(np.array([[1, 1, 1, 1, 2.0], [2, 2, 2, 2, 1.0]]), n_permutations=10000)
    assert exact and p[0, 1] == pytest.approx(6 / 32) and p[1, 0] == pytest.approx(31 / 32)
    # 20 cases: 2^20 > 10000 swaps, Monte Carlo with the (1 + k) / (1 + n) estimator
    p, exact, n = permutation_pvalues(np.array([[1.0] * 20, [2.0] * 20]), n_permutations=10000, seed=3)
    assert not exact and n == 10000 and 1 / 10001 <= p[0, 1] <= 3 / 10001 and p[1, 0] == pytest.approx(1.0)
    # equal configurations: no evidence either way
    p, _, _ = permutation_pvalues(np.array([[1.0, 2.0] * 3, [2.0, 1.0] * 3]), n_permutations=10000)
    assert p[0, 1] == pytest.approx(p[1, 0]) and p[0, 1] > 0.5


def _runs(rng: np.random.Generator, mean: float, runs: int, cases: int, sd: float = 0.05) -> list:
    return [[(float(mean + e), 5.0 - float(e)) for e in rng.normal(0, sd, size=cases)] for _ in range(runs)]


def test_bootstrap_better_configuration_concentrated_equal_ones_spread():
    rng = np.random.default_rng(0)
    vals = {"best": _runs(rng, 0.85, 3, 30), "eq1": _runs(rng, 0.6, 3, 30), "eq2": _runs(rng, 0.6, 3, 30)}
    r = rank(rank_input(_frame(vals), RANK_METRIC_SETS["dice"]), n_boot=500, seed=1)
    freq = r.frequencies()
    assert freq[0, 0] == 1.0  # the clearly better one is first in every resample
    assert 0.2 < freq[1, 1] < 0.8 and 0.2 < freq[2, 1] < 0.8  # the two equal ones share ranks 2 and 3
    assert freq[1, 1:].sum() == pytest.approx(1.0) and freq[2, 1:].sum() == pytest.approx(1.0)
    assert freq[1, 1] + freq[2, 1] >= 1.0  # one of them is 2nd in every resample; both when their scores tie
    assert r.covers == COVERS_CASES_AND_RUNS and len(r.run_ranks) == 3
    lo, hi = r.rank_interval()
    assert (lo[0], hi[0]) == (1, 1) and (lo[1], hi[1]) == (2, 3)


def test_bootstrap_resamples_runs_not_only_cases():
    # "noisy" beats "steady" on every case by its mean over 3 runs (0.6067 > 0.6), but one of its runs is far
    # worse: resampling cases alone would keep it first every time, resampling its runs does not
    cases = 20
    vals = {"steady": [[(0.6, 5.0)] * cases] * 3, "noisy": [[(0.3, 5.0)] * cases, [(0.9, 5.0)] * cases,
                                                             [(0.62, 5.0)] * cases]}
    inp = rank_input(_frame(vals), RANK_METRIC_SETS["dice"])
    r = rank(inp, n_boot=400, seed=0)
    assert list(r.rank) == [2, 1]
    p_first = r.frequencies()[1, 0]
    assert 0.3 < p_first < 0.9  # the 27 run draws: noisy first when its drawn mean exceeds 0.6 (17 of 27)
    assert p_first == pytest.approx(17 / 27, abs=0.08)
    one_run = {k: v[-1:] for k, v in vals.items()}  # runs 0.6 vs 0.62: cases only, always first
    r1 = rank(rank_input(_frame(one_run), RANK_METRIC_SETS["dice"]), n_boot=200)
    assert r1.frequencies()[1, 0] == 1.0 and r1.covers == COVERS_CASES_ONLY and not r1.run_ranks
    b = bootstrap_ranks(inp.oriented(), 50, seed=0)
    assert b.shape == (50, 2) and set(np.unique(b)) <= {1, 2}


def test_missing_metric_and_one_configuration_are_store_errors():
    vals = {"A": [[(0.9, 2.0)] * 3], "B": [[(0.8, 3.0)] * 3]}
    with pytest.raises(StoreError, match="lesion-wise Dice"):
        rank_input(_frame(vals), RANK_METRIC_SETS["lesion_dice"])
    with pytest.raises(StoreError, match="needs two or more"):
        rank(rank_input(_frame({"A": vals["A"]}), RANK_METRIC_SETS["dice"]))


def _independent_scores(url: str, experiment: str) -> pd.Series:
    """The BraTS ranking score straight from the stored rows with pandas (another route than the module)."""
    from bench.store import queries

    df = queries.case_metrics(url, experiment)
    long = df.melt(id_vars=["label", "seed", "case_id", "region"], value_vars=["dice", "hd95"], var_name="metric")
    per_case = long.groupby(["label", "case_id", "region", "metric"])["value"].mean().reset_index()
    per_case["oriented"] = np.where(per_case["metric"] == "dice", per_case["value"], -per_case["value"])
    per_case["rank"] = per_case.groupby(["case_id", "region", "metric"])["oriented"].rank(method="min",
                                                                                         ascending=False)
    return per_case.groupby(["label", "case_id"])["rank"].mean().groupby("label").mean()


def test_cli_rank_on_a_stored_experiment(tmp_path, run_cli):
    url = f"sqlite:///{tmp_path / 'results.db'}"
    rows = ladder_rows(["warmup", "fuse"])

    def metric(ci, fold, seed, k, region):
        return 0.6 + 0.03 * ci + 0.02 * np.sin(3 * k + ci + seed), 6.0 - 0.5 * ci + 0.3 * np.cos(k + 2 * ci)

    fill_results(url, "ladder", "ladder", rows, metric, seeds=(0, 1), cases=8)
    out = tmp_path / "o"
    r = run_cli("report", "ladder", "--results", url, "--out", out, "--rank", "--no-pdf",
                "--format", "markdown,csv,html,latex", "--resamples", "300")
    assert r.code == 0, r.err
    d = out / "ladder"
    table = pd.read_csv(d / "ranking.csv")
    expected = _independent_scores(url, "ladder")
    got = table.set_index("label")["score"]
    np.testing.assert_allclose(got[expected.index].to_numpy(), expected.to_numpy(), rtol=1e-6)
    assert list(table["rank"]) == sorted(table["rank"]) and table["label"].iloc[0] == "BL+warmup+fuse"
    assert {"rank_fold0_seed0", "rank_fold0_seed1", "boot_rank_lo", "boot_rank_hi", "p_vs_next"} <= set(table)
    pv = pd.read_csv(d / "ranking_pvalues.csv", index_col=0)
    assert pv.shape == (3, 3) and np.isnan(pv.to_numpy().diagonal()).all()
    freq = pd.read_csv(d / "rank_frequencies.csv").set_index("label")
    np.testing.assert_allclose(freq.sum(axis=1), 1.0)
    assert (d / "rank_stability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (d / "report.md").read_text()
    assert md.index("## Ranking (dice)") < md.index("## Reproducibility")
    assert COVERS_CASES_AND_RUNS in md.replace("\\_", "_")
    assert "![Rank stability" in md and "(rank_stability.png)" in md
    assert "rank_stability.png" in (d / "report.html").read_text()
    tex = (d / "report.tex").read_text()
    assert r"\section*{Ranking (dice)}" in tex and "rank_stability.pdf" in tex
    assert tex.index("Ranking (dice)") < tex.index(r"\section*{Reproducibility}") < tex.index(r"\end{document}")
    assert "| Rank | Configuration | Score |" in r.out  # printed with Table 1
    # one seed: the output says the resampling covers test cases only
    fill_results(url, "one-seed", "ladder", rows, metric, seeds=(0,), cases=8)
    r = run_cli("report", "one-seed", "--results", url, "--out", out, "--rank", "--no-pdf", "--no-plots",
                "--format", "markdown", "--resamples", "200")
    assert r.code == 0, r.err
    assert COVERS_CASES_ONLY in (out / "one-seed" / "ranking.md").read_text().replace("\\_", "_")
    assert not (out / "one-seed" / "ranking.csv").exists()  # --format markdown: no CSV


def test_cli_rank_bad_input_one_line_exit_2(tmp_path, run_cli):
    url = f"sqlite:///{tmp_path / 'results.db'}"
    fill_results(url, "two", "ladder", ladder_rows(["warmup"]), lambda ci, f, s, k, r: (0.5 + 0.1 * ci, 4.0), cases=4)
    fill_results(url, "single", "ladder", [DemoRow("BL", {})], lambda *x: (0.5, 4.0), cases=4)
    cases = [
        (["two", "--rank", "--metric", "nope"], "--metric 'nope'"),
        (["two", "--rank", "--metric", "lesion_dice"], "lesion"),
        (["two", "--rank", "--permutations", "5"], "--permutations 5"),
        (["single", "--rank"], "needs two or more"),
    ]
    for argv, expected in cases:
        r = run_cli("report", *argv, "--results", url, "--out", tmp_path / "o", "--no-pdf", "--no-plots")
        lines = [ln for ln in r.err.splitlines() if ln.strip()]
        assert r.code == 2 and len(lines) == 1 and lines[0].startswith("bench: error:"), (argv, r.err)
        assert expected in lines[0], (argv, lines[0])
    assert not (tmp_path / "o" / "single").exists()  # nothing written for a refused ranking


def test_kendall_tau_b_equals_scipy_with_ties():
    from scipy.stats import kendalltau

    from bench.analysis.ranking import kendall_tau_b

    x = np.array([1, 1, 3, 4, 5, 5, 7, 8])
    ys = np.random.default_rng(0).integers(1, 9, size=(50, 8))
    np.testing.assert_allclose(kendall_tau_b(x, ys), [kendalltau(x, y).statistic for y in ys], atol=1e-12)


def test_lesion_wise_metric_ranks_the_lesion_columns():
    df = _frame({"A": [[(0.9, 2.0)] * 4], "B": [[(0.8, 3.0)] * 4]})
    df["lesion_dice"] = np.where(df["label"] == "A", 0.5, 0.7)  # lesion-wise order opposite to whole-image
    df["lesion_hd95"] = np.where(df["label"] == "A", 30.0, 10.0)
    r = rank(rank_input(df, RANK_METRIC_SETS["lesion_dice"]), metric="lesion_dice", n_boot=100)
    assert [(m.column, reg) for m, reg in r.criteria] == [("lesion_dice", "ET"), ("lesion_hd95", "ET")]
    assert list(r.rank) == [2, 1] and list(rank(rank_input(df, RANK_METRIC_SETS["dice"]), n_boot=100).rank) == [1, 2]


def test_cli_rank_by_stored_lesion_wise_values(tmp_path, run_cli):
    from sqlalchemy import update

    from bench.store import open_store
    from bench.store.models import CaseMetric

    url = f"sqlite:///{tmp_path / 'results.db'}"
    spec = 'name = "lw"\ndesign = "ladder"\nfactors = ["warmup"]\n\n[evaluation]\nlesionwise = "gli"\n'
    # whole-image: BL+warmup better; lesion-wise (stored below): BL better
    fill_results(url, "lw", "ladder", ladder_rows(["warmup"]),
                 lambda ci, f, s, k, r: (0.6 + 0.1 * ci + 0.01 * k, 5.0 - ci), cases=6, spec=spec)
    with open_store(url).session() as s:
        s.execute(update(CaseMetric).values(lesion_dice=1.6 - CaseMetric.dice, lesion_hd95=CaseMetric.hd95 * -1 + 20,
                                            num_tp=1, num_fp=0, num_fn=0))
        s.commit()
    for metric, first in (("dice", "BL+warmup"), ("lesion_dice", "BL")):
        r = run_cli("report", "lw", "--results", url, "--out", tmp_path / "o", "--rank", "--metric", metric,
                    "--no-pdf", "--no-plots", "--format", "markdown,csv", "--resamples", "200")
        assert r.code == 0, r.err
        d = tmp_path / "o" / ("lw" if metric == "dice" else "lw-lesionwise")
        table = pd.read_csv(d / "ranking.csv")
        assert table["label"].iloc[0] == first and list(table["rank"]) == [1, 2]
        assert table["p_vs_next"].iloc[0] == pytest.approx(1 / 64)  # 6 cases, all won: exact 1 / 2^6
        cols = {c for c in table if c.startswith("mean_rank_")}
        prefix = "lesion_" if metric == "lesion_dice" else ""
        assert cols == {f"mean_rank_{prefix}{m}_{reg}" for m in ("dice", "hd95") for reg in ("ET", "TC", "WT")}


def test_cases_kept_are_those_of_every_run_of_the_ranked_configurations():
    vals = {"A": [[(0.9, 2.0)] * 4, [(0.9, 2.0)] * 4], "B": [[(0.8, 3.0)] * 4, [(0.8, 3.0)] * 3],
            "X": [[(0.1, 9.0)] * 2]}
    df = _frame(vals)  # B's second run lacks case c3; X (not ranked) has only c0, c1
    inp = rank_input(df, RANK_METRIC_SETS["dice"], labels=["A", "B"])
    assert inp.cases == ["c0", "c1", "c2"] and inp.dropped_cases == 1 and [v.shape for v in inp.values] == \
        [(2, 3, 2), (2, 3, 2)]
    inp = rank_input(df, RANK_METRIC_SETS["dice"], labels=["A", "B", "Z"])
    assert inp.no_data == ["Z"] and inp.labels == ["A", "B"]
