"""``design = "fractional"``: a two-level fractional factorial 2^(k-p) over the spec's factors (3-11).

Generators are the standard minimum-aberration ones (Montgomery, *Design and Analysis of Experiments*,
Table 8.14; NIST/SEMATECH e-Handbook 5.3.3.4.7), factors lettered A..H, J, K, L in spec order. For every
design produced the defining relation is computed (all products of the generator words) and its resolution
verified against the table's; the alias chain of each main effect and two-factor interaction follows by
multiplying it with the words.

Spec keys: ``resolution = 3 | 4 | 5`` (the smallest fraction of at least that resolution) or ``runs = N``;
``foldover = true`` adds the mirror fraction (every toggle flipped) as a second stage, ``"foldover"``: the
combined design keeps only the even-length words, so main effects are no longer aliased with two-factor
interactions. A factor pair the trick registry refuses cannot be a two-level factorial and is refused.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np

from bench.design import register
from bench.design._base import CellRequest, Design, RowRequest
from bench.errors import SpecError
from bench.spec.checks import err, typed
from bench.spec.model import FractionalSpec

__all__ = ["LETTERS", "GENERATORS", "Fraction", "fraction", "choose", "FractionalDesign"]

LETTERS = "ABCDEFGHJKL"

#: k -> [(runs, resolution, generators)], generators as "F=ABC"; full factorials are implied.
GENERATORS: dict[int, list[tuple[int, int, tuple[str, ...]]]] = {
    3: [(4, 3, ("C=AB",))],
    4: [(8, 4, ("D=ABC",))],
    5: [(8, 3, ("D=AB", "E=AC")), (16, 5, ("E=ABCD",))],
    6: [(8, 3, ("D=AB", "E=AC", "F=BC")), (16, 4, ("E=ABC", "F=BCD")), (32, 6, ("F=ABCDE",))],
    7: [(8, 3, ("D=AB", "E=AC", "F=BC", "G=ABC")), (16, 4, ("E=ABC", "F=BCD", "G=ACD")),
        (32, 4, ("F=ABCD", "G=ABDE")), (64, 7, ("G=ABCDEF",))],
    8: [(16, 4, ("E=BCD", "F=ACD", "G=ABC", "H=ABD")), (32, 4, ("F=ABC", "G=ABD", "H=BCDE")),
        (64, 5, ("G=ABCD", "H=ABEF"))],
    9: [(16, 3, ("E=ABC", "F=BCD", "G=ACD", "H=ABD", "J=ABCD")),
        (32, 4, ("F=BCDE", "G=ACDE", "H=ABDE", "J=ABCE")), (64, 4, ("G=ABCD", "H=ACEF", "J=CDEF")),
        (128, 6, ("H=ACDFG", "J=BCEFG"))],
    10: [(16, 3, ("E=ABC", "F=BCD", "G=ACD", "H=ABD", "J=ABCD", "K=AB")),
         (32, 4, ("F=ABCD", "G=ABCE", "H=ABDE", "J=ACDE", "K=BCDE")),
         (64, 4, ("G=BCDF", "H=ACDF", "J=ABDE", "K=ABCE")), (128, 5, ("H=ABCG", "J=BCDE", "K=ACDF"))],
    11: [(16, 3, ("E=ABC", "F=BCD", "G=ACD", "H=ABD", "J=ABCD", "K=AB", "L=AC")),
         (32, 4, ("F=ABC", "G=BCD", "H=CDE", "J=ACD", "K=ADE", "L=BDE")),
         (64, 4, ("G=CDE", "H=ABCD", "J=ABF", "K=BDEF", "L=ADEF")),
         (128, 5, ("H=ABCG", "J=BCDE", "K=ACDF", "L=ABCDEFG"))],
}

Word = frozenset[int]  # factor indices (0 = A)


def _word(text: str) -> Word:
    return frozenset(LETTERS.index(ch) for ch in text)


def _name(word: Word) -> str:
    return "".join(LETTERS[i] for i in sorted(word)) or "I"


def _span(words: list[Word]) -> list[Word]:
    """Every non-empty product (symmetric difference) of a subset of ``words``: the defining relation."""
    out = []
    for r in range(1, len(words) + 1):
        for combo in itertools.combinations(words, r):
            w = reduce(lambda a, b: a ^ b, combo)
            if w:
                out.append(frozenset(w))
    return sorted(set(out), key=lambda w: (len(w), sorted(w)))


@dataclass(frozen=True)
class Fraction:
    """A two-level design over ``k`` factors: its rows (0/1), generators, defining relation and aliases."""

    k: int
    matrix: np.ndarray  # (runs, k) of 0/1
    generators: tuple[str, ...]
    words: tuple[Word, ...]  # defining relation (without I)

    @property
    def runs(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def resolution(self) -> int | None:
        """Shortest word length; None for a full factorial (no aliasing)."""
        return min(len(w) for w in self.words) if self.words else None

    def aliases(self, effect: Word, max_order: int | None = None) -> list[Word]:
        """The effects aliased with ``effect`` (its products with every word), shortest first."""
        out = sorted({frozenset(effect ^ w) for w in self.words}, key=lambda w: (len(w), sorted(w)))
        return [w for w in out if max_order is None or len(w) <= max_order]

    def alias_classes(self) -> list[tuple[Word, ...]]:
        """Main effects and two-factor interactions grouped by alias class (each group: what one contrast
        estimates, among effects of order <= 2), in order of the first member."""
        low = [frozenset([i]) for i in range(self.k)] + [frozenset(p) for p in
                                                        itertools.combinations(range(self.k), 2)]
        seen: set[Word] = set()
        out = []
        for e in low:
            if e in seen:
                continue
            group = (e, *[a for a in self.aliases(e) if len(a) <= 2])
            seen.update(group)
            out.append(group)
        return out

    def verify(self) -> None:
        """Check the design against its defining relation: every word's column product is constant over the
        rows, the k columns are balanced and mutually orthogonal, and nothing shorter than the resolution is
        aliased. Raises AssertionError."""
        x = 2.0 * self.matrix - 1.0
        for w in self.words:
            prod = np.prod(x[:, sorted(w)], axis=1)
            assert np.all(prod == prod[0]), f"word {_name(w)} is not constant"
        assert np.all(x.sum(axis=0) == 0), "unbalanced column"
        g = x.T @ x
        assert np.allclose(g, self.runs * np.eye(self.k)), "main-effect columns are not orthogonal"
        rows = {tuple(r) for r in self.matrix.tolist()}
        assert len(rows) == self.runs, "repeated rows"


def _base_matrix(n_base: int) -> np.ndarray:
    return np.array([[(i >> j) & 1 for j in range(n_base)] for i in range(2**n_base)], dtype=int)


def fraction(k: int, generators: tuple[str, ...]) -> Fraction:
    """The fraction of ``k`` factors defined by ``generators`` (``"F=ABC"``: column F is the +-1 product of
    A, B and C), verified."""
    n_base = k - len(generators)
    base = _base_matrix(n_base)
    x = 2 * base - 1
    cols = [x[:, j] for j in range(n_base)]
    words: list[Word] = []
    for j, g in enumerate(generators):
        lhs, rhs = g.split("=")
        if LETTERS.index(lhs) != n_base + j or any(LETTERS.index(ch) >= n_base for ch in rhs):
            raise ValueError(f"generator {g!r}: a generated factor must be defined from the base factors")
        cols.append(np.prod([x[:, LETTERS.index(ch)] for ch in rhs], axis=0))
        words.append(_word(lhs + rhs))
    matrix = ((np.column_stack(cols) + 1) // 2).astype(int)
    f = Fraction(k, matrix, tuple(generators), tuple(_span(words)))
    f.verify()
    return f


def full(k: int) -> Fraction:
    return Fraction(k, _base_matrix(k), (), ())


def foldover(f: Fraction) -> Fraction:
    """The original and its mirror image together (every toggle flipped); the combined relation keeps the
    even-length words."""
    rows = np.vstack([f.matrix, 1 - f.matrix])
    words = tuple(w for w in f.words if len(w) % 2 == 0)
    out = Fraction(f.k, rows, f.generators, words)
    return out


def choose(k: int, *, resolution: int | None = None, runs: int | None = None) -> Fraction:
    """The table's fraction for ``k`` factors: the smallest with at least ``resolution`` (default 4), or the one
    of ``runs`` runs; the full factorial when nothing smaller qualifies. Raises ValueError naming what exists."""
    if k not in GENERATORS:
        raise ValueError(f"a fractional design needs 3 to 11 factors, got {k}")
    table = GENERATORS[k]
    if runs is not None:
        for n, _, gens in table:
            if n == runs:
                return fraction(k, gens)
        if runs == 2**k:
            return full(k)
        accepted = [n for n, _, _ in table] + [2**k]
        raise ValueError(f"runs = {runs}: with {k} factors accepted {', '.join(map(str, accepted))}")
    want = 4 if resolution is None else resolution
    for _, res, gens in table:
        if res >= want:
            return fraction(k, gens)
    return full(k)


def _roman(r: int | None) -> str:
    return "full" if r is None else {3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII"}.get(r, str(r))


@register
class FractionalDesign(Design):
    """Rows of a 2^(k-p) fraction (and its foldover), each run with every fold and seed."""

    name = "fractional"
    two_level = "fractional factorial"
    keys = {
        "resolution": "fractional design: 3, 4 or 5 (the smallest fraction of at least that resolution)",
        "runs": "fractional design: number of rows of the fraction (a power of 2)",
        "foldover": "fractional design: true adds the mirror fraction as a second stage",
    }

    @classmethod
    def settings(cls, source: str, raw: dict[str, Any], factors: tuple[str, ...]) -> dict[str, Any]:
        if not 3 <= len(factors) <= 11:
            raise err(source, f"factors: design = 'fractional' needs 3 to 11 factors, got {len(factors)}")
        if "resolution" in raw and "runs" in raw:
            raise err(source, "resolution and runs both set: give one (resolution = 3, 4 or 5, or runs = N)")
        resolution = raw.get("resolution")
        if resolution is not None and (isinstance(resolution, bool) or resolution not in (3, 4, 5)):
            raise err(source, f"resolution = {resolution!r} must be 3, 4 or 5")
        runs = raw.get("runs")
        if runs is not None:
            runs = typed(source, "runs", runs, int, "an integer (a power of 2)")
        if resolution is None and runs is None:
            resolution = 4
        fold = typed(source, "foldover", raw.get("foldover", False), bool, "true or false")
        return {"fractional": FractionalSpec(resolution, runs, fold)}

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        opts = getattr(spec, "fractional", None)
        resolution = getattr(opts, "resolution", None)
        runs = getattr(opts, "runs", None)
        self.foldover = bool(getattr(opts, "foldover", False))
        try:
            self.fraction = choose(len(spec.factors), resolution=resolution, runs=runs)
        except ValueError as exc:
            raise SpecError(f"{spec.source}: {exc}") from None
        self._check_pairs()
        if self.foldover:
            if not any(len(w) % 2 for w in self.fraction.words):
                raise SpecError(
                    f"{spec.source}: foldover = true adds nothing here: the {self.fraction.runs}-run design has "
                    f"only even-length words, so its mirror image is the design itself (set foldover = false, "
                    f"or choose resolution = 3)")
            self.combined = foldover(self.fraction)
        else:
            self.combined = self.fraction

    def _check_pairs(self) -> None:
        from bench.errors import BenchError
        from tricks import resolve

        spec = self.spec
        for a, b in itertools.combinations(spec.factors, 2):
            names = list(spec.fixed) + [a, b]
            try:
                resolve(names, {t: v for t, v in spec.params.items() if t in names})
            except BenchError as exc:
                raise SpecError(
                    f"{spec.source}: factors {a!r} and {b!r} cannot be on together ({exc}), so they cannot "
                    f"both be factors of a two-level fractional design: split them into two specs, or use "
                    f"design = 'list'") from None

    def _rows(self, matrix: np.ndarray) -> list[RowRequest]:
        spec = self.spec
        out = []
        for r in matrix:
            on = [f for f, v in zip(spec.factors, r) if v]
            out.append(RowRequest(spec.row_label(on), tuple(spec.fixed) + tuple(on), dict(spec.params)))
        return out

    def initial(self) -> list[CellRequest]:
        spec = self.spec
        cells = []
        first = self._rows(self.fraction.matrix)
        seen = {r.tricks for r in first}
        stages = [("main", first)]
        if self.foldover:
            stages.append(("foldover", [r for r in self._rows(1 - self.fraction.matrix) if r.tricks not in seen]))
        for stage, rows in stages:
            for row in rows:
                for fold in spec.folds:
                    for seed in spec.seeds:
                        cells.append(CellRequest(row, fold, seed, stage))
        return cells

    def letters(self) -> dict[str, str]:
        return {LETTERS[i]: f for i, f in enumerate(self.spec.factors)}

    def effect_name(self, word: Word) -> str:
        return " x ".join(self.spec.factors[i] for i in sorted(word))

    def estimable(self) -> list[dict[str, Any]]:
        """One entry per alias class of the combined design among main effects and two-factor interactions:
        ``name`` (an effect, or ``"A + B x C"`` when it is an alias sum), ``word`` (the factors of the
        contrast column), ``aliased`` (bool) and ``members``."""
        out = []
        for group in self.combined.alias_classes():
            members = [self.effect_name(w) for w in group]
            out.append({"name": " + ".join(members), "factors": [self.spec.factors[i] for i in sorted(group[0])],
                        "aliased": len(group) > 1, "members": members,
                        "kind": "main" if len(group[0]) == 1 else "interaction"})
        return out

    def describe(self) -> dict[str, Any]:
        f, c = self.fraction, self.combined
        chains = []
        for group in c.alias_classes():
            head = group[0]
            longer = [a for a in c.aliases(head, max_order=3) if len(a) == 3]
            chains.append(" = ".join([_name(w) for w in group] + [_name(w) for w in longer]))
        return {
            "design": f"2^({f.k}-{f.k - int(np.log2(f.runs))}) {_roman(f.resolution)}, {f.runs} runs"
            if f.words else f"full 2^{f.k}, {f.runs} runs",
            "factors": self.letters(),
            "generators": list(f.generators),
            "defining_relation": "I = " + " = ".join(_name(w) for w in f.words) if f.words else "none (full)",
            "resolution": f.resolution,
            "foldover": self.foldover,
            "combined_runs": c.runs,
            "combined_resolution": c.resolution,
            "alias_chains": chains,
            "estimable": self.estimable(),
        }
