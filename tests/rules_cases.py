"""Random and adversarial label maps in the BraTS 2023+ numbering (1 NETC, 2 SNFH, 3 ET, 4 RC) for the tests
of the 2024 and 2025 rules: nested blobs, touching and merged lesions, one prediction over two lesions,
specks, empty masks, resection cavities present or absent, anisotropic voxels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SHAPE = (26, 22, 18)


def ball(shape, centre, radius) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius**2


def random_label(rng: np.random.Generator, shape=SHAPE, n_lesions: int = 3, rc: bool = True,
                 labels=(1, 2, 3, 4)) -> np.ndarray:
    """Blobs of SNFH around NETC around ET, resection cavities beside some of them."""
    netc, snfh, et, rcl = labels
    lab = np.zeros(shape, np.uint8)
    for _ in range(n_lesions):
        c = [rng.uniform(0, n) for n in shape]
        r = rng.uniform(0.8, 5.0)
        lab[ball(shape, c, r)] = snfh
        if rng.random() < 0.7:
            lab[ball(shape, c, r * 0.6)] = netc
        if rng.random() < 0.7:
            lab[ball(shape, [x + rng.normal(0, 1.0) for x in c], r * 0.4)] = et
        if rc and rng.random() < 0.5:
            lab[ball(shape, [x + rng.uniform(-r, r) for x in c], r * 0.5)] = rcl
    return lab


def perturb(rng: np.random.Generator, lab: np.ndarray, labels=(1, 2, 3, 4)) -> np.ndarray:
    out = lab.copy()
    kind = int(rng.integers(0, 5))
    if kind == 0:
        out = np.roll(out, tuple(int(v) for v in rng.integers(-2, 3, 3)), axis=(0, 1, 2))
    elif kind == 1:
        grown = ndimage.grey_dilation(out, size=(2, 2, 2))
        out = np.where(out == 0, grown, out)
    elif kind == 2:
        out[ndimage.binary_erosion(out > 0) == 0] = 0
    elif kind == 3:
        flip = rng.random(out.shape) < 0.03
        out[flip] = rng.choice(np.array((0, *labels), np.uint8), size=int(flip.sum()))
    for _ in range(int(rng.integers(0, 4))):  # specks
        x = tuple(int(rng.integers(0, n)) for n in out.shape)
        out[x] = rng.choice(np.array(labels, np.uint8))
    return out


def adversarial_cases(shape=SHAPE) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, prediction, reference) pairs that stress matching and merging."""
    z = np.zeros(shape, np.uint8)
    cases = []
    a = z.copy()
    a[ball(shape, (8, 8, 8), 3)] = 2
    a[ball(shape, (8, 8, 8), 1.5)] = 3
    b = z.copy()
    b[ball(shape, (8, 8, 8), 3)] = 2
    b[ball(shape, (8, 14, 8), 3)] = 2  # a second lesion touching the first
    b[ball(shape, (8, 14, 8), 1.5)] = 3
    cases.append(("touching lesions", a, b))
    two = z.copy()
    two[5:9, 5:9, 5:9] = 3
    two[5:9, 12:16, 5:9] = 3
    one = z.copy()
    one[5:9, 5:16, 5:9] = 3  # one prediction spanning two lesions
    cases.append(("one prediction over two lesions", one, two))
    cases.append(("two predictions in one lesion", two, one))
    merged = two.copy()
    merged[5:9, 9:12, 5:9] = 1  # NETC bridging two ET lesions: merged across tissues
    cases.append(("NETC bridges ET", one, merged))
    specks = a.copy()
    for i in range(0, shape[0], 5):
        specks[i, 1, 1] = 3
        specks[i, shape[1] - 2, shape[2] - 2] = 2
    cases.append(("specks", specks, a))
    cases.append(("empty prediction", z.copy(), a))
    cases.append(("empty reference", a, z.copy()))
    cases.append(("both empty", z.copy(), z.copy()))
    rc = a.copy()
    rc[ball(shape, (18, 14, 10), 3)] = 4
    rc[ball(shape, (18, 14, 10), 1)] = 1
    cases.append(("cavity only in reference", a, rc))
    cases.append(("cavity in both", rc, rc))
    far = z.copy()
    far[ball(shape, (20, 16, 12), 2.5)] = 2
    cases.append(("disjoint masks", far, a))
    edge = z.copy()
    edge[0:4, 0:5, :] = 3
    cases.append(("touching the volume edge", edge, np.roll(edge, 1, axis=1)))
    return cases
