"""The 3D U-Net: every paper patch size, padding of other sizes, per-scale outputs, normalisations."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.engine.config import ModelConfig
from bench.engine.model import build_model, count_parameters, self_ensemble_combine


@pytest.mark.parametrize("size", [64, 80, 96, 112, 128, 144])
def test_accepts_every_paper_patch_size(size: int) -> None:
    model = build_model(ModelConfig(width=2, depth=4, max_width=8)).eval()
    with torch.no_grad():
        y = model(torch.zeros(1, 4, size, size, size))
    assert y.shape == (1, 4, size, size, size)


@pytest.mark.parametrize("shape", [(20, 20, 20), (17, 33, 24), (16, 16, 16), (8, 8, 8)])
def test_other_sizes_are_padded_and_cropped_back(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, depth=2)).eval()
    x = torch.randn(1, 4, *shape)
    with torch.no_grad():
        y = model(x)
        # padding is with zeros up to the next multiple of 4: same as padding by hand
        m = 4
        padded = torch.nn.functional.pad(x, [p for s in reversed(shape) for p in (0, (-s) % m)])
        ref = model(padded)[..., : shape[0], : shape[1], : shape[2]]
    assert y.shape == (1, 4, *shape)
    assert torch.allclose(y, ref, atol=1e-6)


def test_all_scales_and_self_ensemble_head() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, depth=3), head="self_ensemble").eval()
    x = torch.randn(2, 4, 32, 32, 32)
    with torch.no_grad():
        scales = model(x, all_scales=True)
        y = model(x)
    assert [tuple(s.shape) for s in scales] == [(2, 4, 32, 32, 32), (2, 4, 16, 16, 16), (2, 4, 8, 8, 8)]
    assert torch.allclose(y, self_ensemble_combine(scales))


@pytest.mark.parametrize("norm", ["instance", "batch", "group"])
def test_normalisations_train(norm: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(width=4, depth=2, norm=norm, groups=2)
    model = build_model(cfg, block="dense", block_options={"layers": 2})
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, t = torch.randn(2, 4, 16, 16, 16), torch.randint(0, 4, (2, 16, 16, 16))
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_widths_and_config_validation() -> None:
    from bench.errors import SpecError

    model = build_model(ModelConfig(width=8, depth=4, max_width=32))
    assert model.widths == [8, 16, 32, 32, 32]
    assert count_parameters(model) > 0
    with pytest.raises(SpecError, match="model.norm"):
        dataclasses.replace(ModelConfig(), norm="layer").validate()
    with pytest.raises(SpecError, match="model.depth"):
        dataclasses.replace(ModelConfig(), depth=9).validate()
