"""Post-processing traps of the phantoms (bench.data.traps): opt-in, labels unchanged, where they are."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from bench.data.synth import CasePlan, make_phantom
from bench.data.traps import FAR_MM


def _pair(low_grade: bool) -> tuple:
    plan = CasePlan(low_grade=low_grade)
    plain = make_phantom((96, 96, 64), np.random.default_rng(3), plan)
    trapped = make_phantom((96, 96, 64), np.random.default_rng(3), dataclasses.replace(plan, trap_seed=7))
    return plain, trapped


def test_traps_change_images_only_where_they_are() -> None:
    plain, trapped = _pair(low_grade=True)
    assert np.array_equal(plain.label, trapped.label) and not (trapped.label == 4).any()
    scale = float(np.mean(np.array((96, 96, 64)) / np.array((240, 240, 155))))
    # FLAIR spots: brighter than before, labelled background, far from every tumour voxel
    spots = trapped.images["flair"].astype(float) > plain.images["flair"].astype(float) * 1.2
    assert spots.sum() > 10 and not trapped.label[spots].any()
    dist = ndimage.distance_transform_edt(trapped.label == 0)
    assert dist[spots].min() > FAR_MM * scale - 4
    # faint enhancement: T1ce raised inside the non-enhancing core, nowhere labelled ET
    spur = (trapped.images["t1ce"].astype(float) > plain.images["t1ce"].astype(float) * 1.2) & (trapped.label == 1)
    assert spur.sum() > 5
    wm = np.median(plain.images["t1ce"][plain.images["t1ce"] > 0])
    assert 1.1 * wm < np.median(trapped.images["t1ce"][spur]) < 1.72 * wm
    # modalities the traps do not touch in the core stay the same there
    core = trapped.label == 1
    assert np.array_equal(plain.images["t1"][core], trapped.images["t1"][core])


def test_high_grade_cases_get_spots_but_no_spurious_enhancement() -> None:
    plain, trapped = _pair(low_grade=False)
    tumour = plain.label > 0
    assert np.array_equal(plain.images["t1ce"][tumour], trapped.images["t1ce"][tumour])
    assert (trapped.images["flair"].astype(float) > plain.images["flair"].astype(float) * 1.2).sum() > 10
