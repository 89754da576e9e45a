"""Label conventions: MSD and BraTS 2023 labels map to the right BraTS 2019 regions."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data.formats import (
    BRATS2019,
    BRATS2023,
    MSD,
    brats_affine,
    brats_to_classes,
    classes_to_brats,
    from_brats,
    region_masks,
    to_brats,
)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_msd_enhancing_is_label_3_not_2(dtype: type) -> None:
    msd = np.array([0, 1, 2, 3], dtype=dtype)  # bg, edema, non-enhancing, enhancing
    assert to_brats(msd, MSD).tolist() == [0, 2, 1, 4]
    masks = region_masks(msd, MSD)
    assert masks["ET"].tolist() == [False, False, False, True]
    assert masks["TC"].tolist() == [False, False, True, True]
    assert masks["WT"].tolist() == [False, True, True, True]


def test_round_trips_and_unknown_values() -> None:
    brats = np.array([0, 1, 2, 4], dtype=np.uint8)
    for conv in (BRATS2019, BRATS2023, MSD):
        assert np.array_equal(to_brats(from_brats(brats, conv), conv), brats)
        # regions agree whatever the convention the same tissue is written in
        for region, mask in region_masks(from_brats(brats, conv), conv).items():
            assert np.array_equal(mask, region_masks(brats, BRATS2019)[region])
    assert np.array_equal(classes_to_brats(brats_to_classes(brats)), brats)
    assert to_brats(np.array([3, 300, -1], dtype=np.int16), BRATS2019).tolist() == [255, 255, 255]


def test_brats_affine_matches_real_files() -> None:
    a = brats_affine((240, 240, 155))
    assert np.array_equal(np.diag(a), [-1, -1, 1, 1]) and a[1, 3] == 239 and a[0, 3] == 0 and a[2, 3] == 0
