"""Splits of a prepared dataset: drawn (stratified folds and a held-out test set) or fixed by the user.

A drawn split comes from :func:`make_splits` (folds, test fraction, seed). A fixed split comes from
:func:`fixed_splits`: a list of held-out test IDs (``test_ids``: IDs, or a text file with one ID a line),
folds from a file (``splits``: nnU-Net's ``splits_final.json``, a list of ``{"train": [...], "val": [...]}``,
or bench's own ``splits.json``), or both. Every ID is checked against the dataset: unknown IDs, a test case
that is also in a fold, and an empty fold are errors; a labeled case in no split is a warning (the case is not
used) and is recorded under ``"unassigned"``.

The splits dictionary stored in a prepared cache::

    {"n_folds": k, "test": [...], "val": [[...] per fold], "train": [[...] per fold] (fixed folds only),
     "seed": s, "test_fraction": f, "source": "drawn" | "test_ids" | "nnunet" | "bench", "unassigned": [...]}
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.errors import DataError, SpecError

__all__ = ["make_splits", "max_folds", "read_id_list", "read_splits_file", "fixed_splits", "SplitOptions"]

# How the options that shape a split are called by the caller (CLI flags or spec keys), for messages.
SplitOptions = tuple[str, str]
CLI_OPTIONS: SplitOptions = ("--folds", "--test-fraction")


def _n_test(n: int, test_fraction: float) -> int:
    return int(round(test_fraction * n))


def max_folds(n_cases: int, test_fraction: float) -> int:
    """The most folds a drawn split of ``n_cases`` labeled cases allows (1 = no validation split)."""
    return max(1, n_cases - _n_test(n_cases, test_fraction))


def make_splits(
    case_ids: Sequence[str], has_et: Sequence[bool], folds: int, test_fraction: float, seed: int = 0,
    *, options: SplitOptions = CLI_OPTIONS,
) -> dict:
    """Deterministic stratified splits: a held-out test set (about ``test_fraction`` of the cases) and
    ``folds`` validation folds over the rest. Cases with and without ET are spread evenly.

    ``options`` names the two settings in the message when the cases are too few (the caller's flags or keys).
    Returns {"n_folds", "test": [...], "val": [[...] per fold], ...} with sorted ID lists.
    """
    if folds < 1:
        raise SpecError(f"{options[0]} must be >= 1, got {folds}")
    if not 0.0 <= test_fraction < 1.0:
        raise SpecError(f"{options[1]} must be in [0, 1), got {test_fraction}")
    base = {"n_folds": folds, "seed": seed, "test_fraction": test_fraction, "source": "drawn", "unassigned": []}
    if not case_ids:  # an unlabeled-only dataset (e.g. MSD imagesTs for pseudo-labelling): empty splits
        return {**base, "test": [], "val": [[] for _ in range(folds)]}
    rng = np.random.default_rng(seed)
    ids = sorted(case_ids)
    et = dict(zip(case_ids, has_et))
    order: list[str] = []
    for group in ([c for c in ids if not et[c]], [c for c in ids if et[c]]):
        order += [group[i] for i in rng.permutation(len(group))]
    n = len(order)
    n_test = _n_test(n, test_fraction)
    test = {order[int((j + 0.5) * n / n_test)] for j in range(n_test)} if n_test else set()
    rest = [c for c in order if c not in test]
    if folds > 1 and len(rest) < folds:
        raise SpecError(
            f"{folds} folds need at least {folds} cases outside the test split, but only {len(rest)} of "
            f"{n} labeled cases remain (lower {options[0]} or {options[1]})"
        )
    val: list[list[str]] = [[] for _ in range(folds)]
    if folds > 1:
        for i, c in enumerate(rest):
            val[i % folds].append(c)
    return {**base, "test": sorted(test), "val": [sorted(v) for v in val]}


def read_id_list(path: Path | str, *, what: str = "--test-ids") -> list[str]:
    """Case IDs from a text file, one a line (blank lines and ``#`` comments ignored)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{what} {p}: cannot be read ({exc.strerror or exc}); expected a text file with one "
                        "case ID a line") from None
    ids = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise DataError(f"{what} {p}: no case IDs (expected one case ID a line)")
    return ids


def _id_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where} must be a list of case ID strings")
    return sorted(value)


def read_splits_file(path: Path | str, *, what: str = "--splits") -> dict:
    """Folds from nnU-Net's ``splits_final.json`` or bench's ``splits.json``, as
    {"format": "nnunet" | "bench", "train": [[...]] | None, "val": [[...]], "test": [...] | None}."""
    p = Path(path).expanduser()
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{what} {p}: cannot be read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} {p}: not valid JSON ({exc})") from None
    accepted = ('expected nnU-Net\'s splits_final.json (a list of {"train": [...], "val": [...]}) '
                'or bench\'s splits.json ({"n_folds", "val", "test"})')
    if isinstance(raw, list):
        if not raw or not all(isinstance(f, dict) and set(f) >= {"train", "val"} for f in raw):
            raise DataError(f"{what} {p}: {accepted}")
        train: list[list[str]] | None = [_id_list(f["train"], f"{what} {p}: fold {i} train")
                                         for i, f in enumerate(raw)]
        val = [_id_list(f["val"], f"{what} {p}: fold {i} val") for i, f in enumerate(raw)]
        return {"format": "nnunet", "train": train, "val": val, "test": None}
    if isinstance(raw, dict) and "val" in raw and isinstance(raw["val"], list):
        val = [_id_list(v, f"{what} {p}: val[{i}]") for i, v in enumerate(raw["val"])]
        test = _id_list(raw.get("test", []), f"{what} {p}: test")
        train = None
        if isinstance(raw.get("train"), list):
            train = [_id_list(v, f"{what} {p}: train[{i}]") for i, v in enumerate(raw["train"])]
        return {"format": "bench", "train": train, "val": val, "test": test}
    raise DataError(f"{what} {p}: {accepted}")


def _check_known(ids: Sequence[str], known: Sequence[str], where: str) -> None:
    bad = [c for c in ids if c not in set(known)]
    if bad:
        hint = difflib.get_close_matches(bad[0], list(known), n=1, cutoff=0.0)
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        near = f"; closest existing ID to {bad[0]}: {hint[0]}" if hint else ""
        raise DataError(f"{where}: {len(bad)} unknown case ID(s): {shown}{near}")


def fixed_splits(
    case_ids: Sequence[str], *, test_ids: Sequence[str] | None, folds_file: dict | None,
    test_where: str = "--test-ids", splits_where: str = "--splits", folds: int = 5, seed: int = 0,
    has_et: Sequence[bool] | None = None, options: SplitOptions = CLI_OPTIONS,
) -> dict:
    """The splits dictionary of a user-given split (see the module docstring).

    ``test_ids``: the held-out cases (None: the file's test list, or none); ``folds_file``: the result of
    :func:`read_splits_file` (None: ``folds`` folds drawn over the cases outside the test set with ``seed``).
    ``*_where`` name the option or key in messages. Raises DataError on unknown IDs, overlaps and empty folds.
    """
    ids = sorted(case_ids)
    if test_ids is not None:
        dup = sorted({c for c in test_ids if list(test_ids).count(c) > 1})
        if dup:
            raise DataError(f"{test_where}: case ID(s) listed twice: {', '.join(dup)}")
        _check_known(test_ids, ids, test_where)
    if folds_file is None:
        test = sorted(test_ids or [])
        rest = [c for c in ids if c not in set(test)]
        et = dict(zip(case_ids, has_et)) if has_et is not None else {c: True for c in ids}
        drawn = make_splits(rest, [et[c] for c in rest], folds, 0.0, seed, options=options)
        return {**drawn, "test": test, "test_fraction": len(test) / len(ids) if ids else 0.0,
                "source": "test_ids"}
    val, train = folds_file["val"], folds_file["train"]
    test = sorted(test_ids if test_ids is not None else (folds_file["test"] or []))
    for i, v in enumerate(val):
        _check_known(v, ids, f"{splits_where}: fold {i} val")
        if train is not None:
            _check_known(train[i], ids, f"{splits_where}: fold {i} train")
    if folds_file["test"] is not None:
        _check_known(folds_file["test"], ids, f"{splits_where}: test")
    test_set = set(test)
    for i, v in enumerate(val):
        members = set(v) | set(train[i] if train is not None else [])
        both = sorted(members & test_set)
        if both:
            raise DataError(f"{splits_where}: fold {i} holds test case(s) {', '.join(both[:5])} "
                            f"(from {test_where if test_ids is not None else 'its test list'}); a test case "
                            "must be in no fold")
        if train is not None:
            inside = sorted(set(train[i]) & set(v))
            if inside:
                raise DataError(f"{splits_where}: fold {i} has case(s) {', '.join(inside[:5])} in both train "
                                "and val")
            if not train[i]:
                raise DataError(f"{splits_where}: fold {i} has no training case")
        if not v and len(val) > 1:
            raise DataError(f"{splits_where}: fold {i} has no validation case")
    if train is None:
        covered = test_set | {c for v in val for c in v}
        unassigned = [c for c in ids if c not in covered] if len(val) > 1 else []
    else:
        covered = test_set | {c for i in range(len(val)) for c in (*val[i], *train[i])}
        unassigned = [c for c in ids if c not in covered]
    out = {"n_folds": len(val), "test": test, "val": [sorted(v) for v in val], "seed": None,
           "test_fraction": len(test) / len(ids) if ids else 0.0, "source": folds_file["format"],
           "unassigned": unassigned}
    if train is not None:
        out["train"] = [sorted(t) for t in train]
    return out
