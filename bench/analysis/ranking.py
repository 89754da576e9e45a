"""Challenge-style ranking of an experiment's configurations: BraTS rank-then-aggregate, PermRanker's pairwise
permutation tests and challengeR's bootstrap ranking stability.

Input: the per-case DataFrame of :func:`bench.store.queries.case_metrics` (one row per cell, test case and
region). A *criterion* is one (metric column, region) pair, e.g. (``dice``, ``ET``) or (``hd95``, ``WT``).

1. **Rank** (BraTS, PermRanker): for every test case and every criterion the configurations are ranked, 1 the
   best (Dice: higher is better; HD95: lower is better). Ties get the smallest rank of the tied group (``min``,
   the tie rule of challengeR's rank-then-aggregate and of R/pandas ``rank``); a missing value ranks last, as
   a missing prediction does in BraTS. A configuration's value for a case is the mean over its runs
   (fold x seed), like every per-case statistic of the report.
2. **Aggregate**: a configuration's *case score* is the mean of its ranks over the criteria of that case
   (BraTS' cumulative rank); its *ranking score* is the mean of its case scores; the final rank orders the
   ranking scores (lower is better, ties ``min``).
3. **Permutation tests** (PermRanker): for two configurations A and B the per-case differences of case scores
   ``d_c`` are exchangeable under "A and B are equally good"; the test swaps A and B within each case (flips the
   sign of ``d_c``) and counts how often the mean difference is at least as favourable to A as observed.
   One-sided p for "A ranks better than B"; exact (all 2^C swaps enumerated) when 2^C is at most the number of
   permutations asked for, Monte Carlo with the (1 + k) / (1 + n) estimator otherwise. Not corrected for
   multiplicity (as PermRanker reports them).
4. **Bootstrap stability** (challengeR): each resample draws the test cases with replacement (one draw shared by
   every configuration, so cases stay paired) and, for a configuration with several runs, its runs with
   replacement; per-case values are re-averaged over the drawn runs, re-ranked per case and criterion and
   re-aggregated. The rank distribution over resamples says how stable each rank is. With one run per
   configuration it covers test-case sampling only, and the output says so.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.errors import StoreError

__all__ = [
    "RankMetric", "RANK_METRIC_SETS", "RankInput", "Ranking", "metric_set", "rank_input", "rank_then_aggregate",
    "permutation_pvalues", "bootstrap_ranks", "kendall_tau_b", "rank", "COVERS_CASES_AND_RUNS", "COVERS_CASES_ONLY",
]


@dataclass(frozen=True)
class RankMetric:
    """One per-case column ranked per region: its name in the results DB, its title and its direction."""

    column: str
    title: str
    higher_is_better: bool


#: What ``bench report --rank --metric NAME`` ranks by: the (column, direction) pairs of each metric choice.
#: A new evaluation rule plugs in by adding its per-case columns here under the name ``--metric`` accepts.
RANK_METRIC_SETS: dict[str, tuple[RankMetric, ...]] = {
    "dice": (RankMetric("dice", "Dice", True), RankMetric("hd95", "HD95", False)),
    "lesion_dice": (
        RankMetric("lesion_dice", "lesion-wise Dice", True),
        RankMetric("lesion_hd95", "lesion-wise HD95", False),
    ),
}

COVERS_CASES_AND_RUNS = "test cases and runs (seed/fold)"
COVERS_CASES_ONLY = "test cases only; run-to-run variance not measured (1 run per configuration)"

_REGION_ORDER = ("ET", "TC", "WT")


def metric_set(name: str) -> tuple[RankMetric, ...]:
    """The metrics ranked for ``--metric name``; :class:`StoreError` naming the accepted ones otherwise."""
    try:
        return RANK_METRIC_SETS[name]
    except KeyError:
        raise StoreError(
            f"--metric {name!r}: cannot rank by it; accepted with --rank: {', '.join(RANK_METRIC_SETS)}"
        ) from None


@dataclass
class RankInput:
    """The values ranked: per configuration a ``(runs, cases, criteria)`` array, NaN where not evaluated."""

    labels: list[str]
    cases: list[str]
    criteria: list[tuple[RankMetric, str]]  # (metric, region)
    values: list[np.ndarray]
    runs: list[list[tuple[int, int]]]  # (fold, seed) of each run, per configuration
    dropped_cases: int = 0
    no_data: list[str] = field(default_factory=list)  # configurations without any finished run

    def oriented(self) -> list[np.ndarray]:
        """The values with every criterion turned into higher-is-better (HD95 negated)."""
        sign = np.array([1.0 if m.higher_is_better else -1.0 for m, _ in self.criteria])
        return [v * sign for v in self.values]


def _region_key(r: str) -> tuple[int, str]:
    return (_REGION_ORDER.index(r) if r in _REGION_ORDER else len(_REGION_ORDER), r)


def rank_input(metrics: pd.DataFrame, metrics_ranked: Sequence[RankMetric], *, labels: Sequence[str] | None = None,
               what: str = "the experiment") -> RankInput:
    """Arrange a :func:`~bench.store.queries.case_metrics` DataFrame for ranking.

    ``labels``: the configurations in display order (default: by ``position``). Kept test cases: those every
    run of every configuration was evaluated on (the rest are counted in ``dropped_cases``). Criteria: every
    (metric, region) with at least one value. :class:`StoreError` when a column is missing or empty.
    """
    df = metrics
    for m in metrics_ranked:
        if m.column not in df.columns or df[m.column].notna().sum() == 0:
            raise StoreError(f"--metric: {what} has no {m.title} values (column {m.column!r}) to rank by")
    if labels is None:
        labels = list(dict.fromkeys(df.sort_values("position", kind="mergesort")["label"].astype(str)))
    df = df.assign(label=df["label"].astype(str), case_id=df["case_id"].astype(str))
    df = df[df["label"].isin(list(labels))]  # rows of other configurations must not decide which cases are kept
    present = set(df["label"])
    no_data = [lab for lab in labels if lab not in present]
    labels = [lab for lab in labels if lab in present]
    regions = sorted(set(df["region"].astype(str)), key=_region_key)
    criteria = [(m, r) for m in metrics_ranked for r in regions
                if df.loc[df["region"] == r, m.column].notna().any()]
    runs_of = df.groupby(["label", "fold", "seed"]).size().reset_index()[["label", "fold", "seed"]]
    per_case = df.drop_duplicates(["case_id", "label", "fold", "seed"]).groupby("case_id").size()
    all_cases = sorted(per_case.index)
    cases = sorted(per_case[per_case == len(runs_of)].index)
    df = df[df["case_id"].isin(cases)]
    case_pos = {c: i for i, c in enumerate(cases)}
    values, runs = [], []
    for lab in labels:
        sub = df[df["label"] == lab]
        run_keys = sorted({(int(f), int(s)) for f, s in zip(sub["fold"], sub["seed"])})
        run_pos = {k: i for i, k in enumerate(run_keys)}
        arr = np.full((len(run_keys), len(cases), len(criteria)), np.nan)
        ri = np.array([run_pos[(int(f), int(s))] for f, s in zip(sub["fold"], sub["seed"])], dtype=int)
        ci = sub["case_id"].map(case_pos).to_numpy(dtype=int)
        reg = sub["region"].astype(str).to_numpy()
        for k, (m, r) in enumerate(criteria):
            sel = reg == r
            arr[ri[sel], ci[sel], k] = sub[m.column].to_numpy(dtype=float)[sel]
        values.append(arr)
        runs.append(run_keys)
    return RankInput(labels, cases, criteria, values, runs, len(all_cases) - len(cases), no_data)


def _ranks_min(y: np.ndarray) -> np.ndarray:
    """Ranks over axis -3 (configurations) of ``y`` (..., N, C, K), higher is better, ties ``min``, NaN last."""
    # a missing value becomes -inf: beaten by every present value, tied with the other missing ones
    y = np.where(np.isnan(y), -np.inf, y)
    better = np.expand_dims(y, -4) > np.expand_dims(y, -3)  # [..., i, j, c, k]: j beats i
    return 1 + better.sum(axis=-3)


def _final_ranks(totals: np.ndarray) -> np.ndarray:
    """Ranks (1 = lowest total, ties ``min``) along the last axis."""
    return 1 + (totals[..., None, :] < totals[..., :, None]).sum(axis=-1)


def _case_means(oriented: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack([v.mean(axis=0) for v in oriented])  # (N, C, K); NaN in a run propagates (ranks last)


def rank_then_aggregate(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BraTS ranking of ``values`` (N configurations, C cases, K criteria), higher is better.

    Returns ``(ranks, case_scores, final)``: the per-case, per-criterion ranks (N, C, K), the case scores (mean
    rank over the criteria, N x C) and the final rank of each configuration (N,) by the mean case score."""
    ranks = _ranks_min(np.asarray(values, dtype=float))
    totals = ranks.sum(axis=(1, 2)).astype(float)  # integer sums: ties stay exact
    return ranks, ranks.mean(axis=2), _final_ranks(totals)


def permutation_pvalues(case_rank_sums: np.ndarray, n_permutations: int = 10000, seed: int = 0
                        ) -> tuple[np.ndarray, bool, int]:
    """PermRanker's pairwise tests on per-case scores ``(N, C)`` (lower is better).

    Returns ``(p, exact, n)``: ``p[i, j]`` the one-sided p-value for "i ranks better than j" (NaN on the
    diagonal), whether every one of the ``n = 2^C`` swaps was enumerated, and how many were used."""
    s = np.asarray(case_rank_sums, dtype=float)
    n_conf, c = s.shape
    exact = c <= 30 and 2**c <= n_permutations
    if exact:
        flips = 1.0 - 2.0 * ((np.arange(2**c)[:, None] >> np.arange(c)[None, :]) & 1)
    else:
        flips = np.random.default_rng(seed).choice((-1.0, 1.0), size=(n_permutations, c))
    n = flips.shape[0]
    pairs = list(itertools.combinations(range(n_conf), 2))
    p = np.full((n_conf, n_conf), np.nan)
    if not pairs:
        return p, exact, n
    d = np.stack([s[i] - s[j] for i, j in pairs], axis=1)  # (C, pairs)
    observed = d.sum(axis=0)
    null = flips @ d  # (n, pairs); sums of integers or halves: exact in float64
    tol = 1e-9 * np.maximum(1.0, np.abs(d).sum(axis=0))
    le = (null <= observed + tol).sum(axis=0)  # as favourable to i (lower sum) as observed
    ge = (null >= observed - tol).sum(axis=0)
    for q, (i, j) in enumerate(pairs):
        if exact:  # the identity is one of the enumerated swaps
            p[i, j], p[j, i] = le[q] / n, ge[q] / n
        else:
            p[i, j], p[j, i] = (1 + le[q]) / (1 + n), (1 + ge[q]) / (1 + n)
    return p, exact, n


def bootstrap_ranks(oriented: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Final ranks ``(n_boot, N)`` over resamples of the test cases (shared) and of each configuration's runs.

    ``oriented``: per configuration its ``(runs, cases, criteria)`` values, higher is better."""
    rng = np.random.default_rng(seed)
    n_conf = len(oriented)
    _, c, k = oriented[0].shape
    out = np.empty((n_boot, n_conf), dtype=np.int64)
    batch = max(1, int(3e7 // max(1, n_conf * n_conf * c * k)))  # bounds the pairwise comparison array
    flat = [np.nan_to_num(v, nan=0.0).reshape(v.shape[0], c * k) for v in oriented]
    nan_flat = [np.isnan(v).reshape(v.shape[0], c * k).astype(float) for v in oriented]
    fixed = None
    if all(v.shape[0] == 1 for v in oriented):  # one run each: the per-case ranks never change, only case weights
        fixed = _ranks_min(np.stack([v[0] for v in oriented])).sum(axis=2).astype(float)  # (N, C)
        batch = 4096
    for start in range(0, n_boot, batch):
        b = min(batch, n_boot - start)
        case_counts = np.zeros((b, c))
        np.add.at(case_counts, (np.repeat(np.arange(b), c), rng.integers(0, c, size=b * c)), 1.0)
        if fixed is not None:
            out[start:start + b] = _final_ranks(case_counts @ fixed.T)
            continue
        y = np.empty((b, n_conf, c, k))
        for i, (v, vn) in enumerate(zip(flat, nan_flat)):
            s = v.shape[0]
            if s == 1:
                y[:, i] = np.where(vn[0] > 0, np.nan, v[0]).reshape(c, k)
                continue
            w = np.zeros((b, s))
            np.add.at(w, (np.repeat(np.arange(b), s), rng.integers(0, s, size=b * s)), 1.0)
            mean = (w @ v) / s
            y[:, i] = np.where((w @ vn) > 0, np.nan, mean).reshape(b, c, k)
        sums = _ranks_min(y).sum(axis=3).astype(float)  # (b, N, C)
        totals = np.einsum("bnc,bc->bn", sums, case_counts)
        out[start:start + b] = _final_ranks(totals)
    return out


def kendall_tau_b(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of ranking ``x`` (N,) with every row of ``ys`` (B, N); NaN where one side is all ties."""
    iu = np.triu_indices(len(x), k=1)
    sx = np.sign(x[:, None] - x[None, :])[iu].astype(float)  # (P,)
    sy = np.sign(ys[:, :, None] - ys[:, None, :])[:, iu[0], iu[1]].astype(float)  # (B, P)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sy @ sx) / np.sqrt(np.abs(sx).sum() * np.abs(sy).sum(axis=1))


@dataclass
class Ranking:
    """A challenge-style ranking with its tests and its bootstrap stability (all arrays in ``labels`` order)."""

    labels: list[str]
    metric: str
    criteria: list[tuple[RankMetric, str]]
    n_cases: int
    dropped_cases: int
    n_runs: list[int]
    score: np.ndarray  # (N,) ranking score: mean over cases of the mean rank over criteria
    rank: np.ndarray  # (N,) final rank, ties min
    criterion_rank: np.ndarray  # (N, K) mean rank over cases per criterion
    p: np.ndarray  # (N, N) one-sided p for "row ranks better than column"
    exact: bool
    n_permutations: int
    boot_ranks: np.ndarray  # (B, N)
    seed: int
    run_ranks: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # shared run -> final ranks
    no_data: list[str] = field(default_factory=list)

    @property
    def n_boot(self) -> int:
        return int(self.boot_ranks.shape[0])

    @property
    def runs_resampled(self) -> bool:
        return any(n > 1 for n in self.n_runs)

    @property
    def covers(self) -> str:
        """What the bootstrap resamples, in words (shown next to the rank distribution)."""
        if not self.runs_resampled:
            return COVERS_CASES_ONLY
        single = [lab for lab, n in zip(self.labels, self.n_runs) if n == 1]
        if single:
            return (f"{COVERS_CASES_AND_RUNS} for configurations with several runs; test cases only for "
                    f"{', '.join(single)} (1 run: run-to-run variance not measured)")
        return COVERS_CASES_AND_RUNS

    def order(self) -> list[int]:
        """Configuration indices from the first rank to the last (ties by score, then label)."""
        return sorted(range(len(self.labels)), key=lambda i: (self.rank[i], self.score[i], self.labels[i]))

    def frequencies(self) -> np.ndarray:
        """``(N, N)``: fraction of resamples in which configuration i got rank r + 1."""
        n = len(self.labels)
        return np.stack([np.bincount(self.boot_ranks[:, i] - 1, minlength=n)[:n] for i in range(n)]) / self.n_boot

    def rank_interval(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        a = 100 * (1 - level) / 2
        lo, hi = np.percentile(self.boot_ranks, [a, 100 - a], axis=0, method="inverted_cdf")
        return lo.astype(int), hi.astype(int)

    def kendall_tau(self) -> np.ndarray:
        """Kendall's tau-b between the ranking and each bootstrap ranking (challengeR's stability summary)."""
        return kendall_tau_b(self.rank, self.boot_ranks)

    def frame(self) -> pd.DataFrame:
        """One row per configuration in rank order: rank, score, runs, bootstrap rank summary, p vs the next."""
        order = self.order()
        freq = self.frequencies()
        lo, hi = self.rank_interval()
        med = np.median(self.boot_ranks, axis=0)
        rows = []
        for pos, i in enumerate(order):
            nxt = order[pos + 1] if pos + 1 < len(order) else None
            row = {
                "rank": int(self.rank[i]), "label": self.labels[i], "score": float(self.score[i]),
                "runs": int(self.n_runs[i]), "boot_median_rank": float(med[i]), "boot_rank_lo": int(lo[i]),
                "boot_rank_hi": int(hi[i]), "p_rank1": float(freq[i, 0]),
                "next": self.labels[nxt] if nxt is not None else "",
                "p_vs_next": float(self.p[i, nxt]) if nxt is not None else np.nan,
            }
            for (m, r), v in zip(self.criteria, self.criterion_rank[i]):
                row[f"mean_rank_{m.column}_{r}"] = float(v)
            for key, rr in self.run_ranks.items():
                row[f"rank_fold{key[0]}_seed{key[1]}"] = int(rr[i])
            rows.append(row)
        return pd.DataFrame(rows)

    def pvalue_frame(self) -> pd.DataFrame:
        """The full matrix: row ranks better than column (one-sided p), rows and columns in rank order."""
        order = self.order()
        names = [self.labels[i] for i in order]
        return pd.DataFrame(self.p[np.ix_(order, order)], index=names, columns=names)


def rank(inp: RankInput, *, metric: str = "dice", n_boot: int = 1000, n_permutations: int = 10000,
         seed: int = 0, what: str = "the experiment") -> Ranking:
    """Rank the configurations of ``inp``; :class:`StoreError` when fewer than two have results."""
    if len(inp.labels) < 2:
        have = ", ".join(inp.labels) or "none"
        raise StoreError(f"--rank: {what} has {len(inp.labels)} configuration with results ({have}); ranking "
                         "needs two or more")
    if not inp.cases:
        raise StoreError(f"--rank: {what} has no test case evaluated by every run of every configuration")
    oriented = inp.oriented()
    ranks, case_scores, final = rank_then_aggregate(_case_means(oriented))
    p, exact, n_perm = permutation_pvalues(ranks.sum(axis=2), n_permutations, seed)
    boot = bootstrap_ranks(oriented, n_boot, seed)
    shared = set.intersection(*(set(r) for r in inp.runs))
    run_ranks = {}
    if len(shared) > 1:  # one ranking per run that every configuration has: run-to-run variance made visible
        for key in sorted(shared):
            y = np.stack([v[inp.runs[i].index(key)] for i, v in enumerate(oriented)])
            run_ranks[key] = rank_then_aggregate(y)[2]
    return Ranking(
        labels=list(inp.labels), metric=metric, criteria=list(inp.criteria), n_cases=len(inp.cases),
        dropped_cases=inp.dropped_cases, n_runs=[v.shape[0] for v in inp.values], score=case_scores.mean(axis=1),
        rank=final, criterion_rank=ranks.mean(axis=1), p=p, exact=exact, n_permutations=n_perm,
        boot_ranks=boot, seed=seed, run_ranks=run_ranks, no_data=list(inp.no_data),
    )
