"""The 3D U-Net: configurable depth, width, normalisation, block type and output head.

- ``BLOCKS``: block types a U-Net level is made of (slot ``model.block``): ``"plain"`` (two 3x3x3
  convolutions) and ``"dense"`` (densely connected convolutions + 1x1 transition; the ``dense_blocks`` trick).
- ``HEADS``: how the output is formed from the decoder (slot ``model.head``): ``"single"`` (a 1x1 convolution
  on the finest decoder scale) and ``"self_ensemble"`` (a 1x1 convolution on every decoder scale combined as
  y_S = ỹ_S, y_s = Up(y_{s+1}, 2) + ỹ_s; see :func:`self_ensemble_combine`).

Any input size works: sizes that are not a multiple of ``2**depth`` are zero-padded (background) and the
output is cropped back. ``forward(x, all_scales=True)`` returns the per-scale logits ``[ỹ_1 (finest), ...,
ỹ_S]`` (heads must exist at every scale: head ``"self_ensemble"`` or ``"deep"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.engine.config import ModelConfig

__all__ = ["UNet3D", "build_model", "BLOCKS", "HEADS", "PlainBlock", "DenseBlock", "self_ensemble_combine",
           "upsample2", "count_parameters"]


def _norm(cfg: ModelConfig, ch: int) -> nn.Module:
    if cfg.norm == "instance":
        return nn.InstanceNorm3d(ch, affine=True)
    if cfg.norm == "batch":
        return nn.BatchNorm3d(ch)
    if cfg.norm == "group":
        return nn.GroupNorm(min(cfg.groups, ch), ch)
    raise ValueError(f"unknown norm {cfg.norm!r}")


class ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, cfg: ModelConfig, *, kernel: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv3d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            _norm(cfg, cout),
            nn.LeakyReLU(0.01, inplace=True),
        )


class PlainBlock(nn.Sequential):
    """Two 3x3x3 convolutions with normalisation and LeakyReLU."""

    def __init__(self, cin: int, cout: int, cfg: ModelConfig, **_: Any):
        super().__init__(ConvNormAct(cin, cout, cfg), ConvNormAct(cout, cout, cfg))


class DenseBlock(nn.Module):
    """``layers`` densely connected 3x3x3 convolutions (each sees all previous feature maps), then a 1x1x1
    transition to ``cout`` channels. Growth rate (channels per layer): ``max(4, round(growth * cout))``."""

    def __init__(self, cin: int, cout: int, cfg: ModelConfig, layers: int = 3, growth: float = 0.5):
        super().__init__()
        g = max(4, round(growth * cout))
        self.layers = nn.ModuleList(ConvNormAct(cin + i * g, g, cfg) for i in range(max(1, layers)))
        self.transition = ConvNormAct(cin + len(self.layers) * g, cout, cfg, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1) if len(feats) > 1 else x))
        return self.transition(torch.cat(feats, 1))


BLOCKS: dict[str, Callable[..., nn.Module]] = {"plain": PlainBlock, "dense": DenseBlock}
# head name -> whether it needs a 1x1 output convolution on every decoder scale
HEADS: dict[str, bool] = {"single": False, "self_ensemble": True, "deep": True}


def upsample2(y: torch.Tensor, size: tuple[int, ...] | None = None) -> torch.Tensor:
    """Up(y, 2) of the self-ensemble recursion: trilinear, align_corners=False."""
    if size is None:
        size = tuple(2 * s for s in y.shape[2:])
    return F.interpolate(y, size=size, mode="trilinear", align_corners=False)


def self_ensemble_combine(per_scale: list[torch.Tensor]) -> torch.Tensor:
    """y_S = ỹ_S; y_s = Up(y_{s+1}, 2) + ỹ_s for s = S-1..1; returns y_1. ``per_scale[0]`` is the finest."""
    y = per_scale[-1]
    for yt in reversed(per_scale[:-1]):
        y = upsample2(y, tuple(yt.shape[2:])) + yt
    return y


class UNet3D(nn.Module):
    """3D U-Net with ``cfg.depth`` down-samplings (strided convolutions) and transposed-convolution
    up-sampling; widths ``min(width * 2**level, max_width)``."""

    def __init__(self, cfg: ModelConfig, block: str = "plain", head: str = "single",
                 block_options: dict[str, Any] | None = None, extra_outputs: int = 0):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block type {block!r}; known: {', '.join(BLOCKS)}")
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; known: {', '.join(HEADS)}")
        self.cfg, self.block_type, self.head_type = cfg, block, head
        self.block_options = dict(block_options or {})
        self.extra_outputs = int(extra_outputs)

        def make(cin: int, cout: int, cfg: ModelConfig) -> nn.Module:
            return BLOCKS[block](cin, cout, cfg, **self.block_options)

        widths = [min(cfg.width * 2**lvl, cfg.max_width) for lvl in range(cfg.depth + 1)]
        self.widths = widths
        self.enc = nn.ModuleList([make(cfg.in_channels, widths[0], cfg)])
        self.down = nn.ModuleList()
        for lvl in range(1, cfg.depth + 1):
            self.down.append(ConvNormAct(widths[lvl - 1], widths[lvl], cfg, stride=2))
            self.enc.append(make(widths[lvl], widths[lvl], cfg))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for lvl in range(cfg.depth - 1, -1, -1):  # coarse to fine
            self.up.append(nn.ConvTranspose3d(widths[lvl + 1], widths[lvl], 2, stride=2, bias=False))
            self.dec.append(make(2 * widths[lvl], widths[lvl], cfg))
        n_heads = cfg.depth if HEADS[head] else 1
        # heads[i] is the 1x1 convolution of decoder scale i (0 = finest)
        n_out = cfg.n_classes + self.extra_outputs
        self.heads = nn.ModuleList(nn.Conv3d(widths[i], n_out, 1) for i in range(n_heads))

    @property
    def multiple(self) -> int:
        return 2**self.cfg.depth

    def forward(self, x: torch.Tensor, all_scales: bool = False) -> torch.Tensor | list[torch.Tensor]:
        size = tuple(x.shape[2:])
        m = self.multiple
        pads = [(-s) % m for s in size]
        if any(pads):
            x = F.pad(x, [p for d in reversed(pads) for p in (0, d)])
        skips = []
        h = self.enc[0](x)
        for down, enc in zip(self.down, self.enc[1:]):
            skips.append(h)
            h = enc(down(h))
        feats: list[torch.Tensor] = []  # decoder outputs, coarse to fine
        for up, dec in zip(self.up, self.dec):
            h = dec(torch.cat([up(h), skips.pop()], 1))
            feats.append(h)
        feats.reverse()  # feats[0] = finest scale
        if all_scales or self.head_type != "single":
            if len(self.heads) < len(feats):
                raise ValueError("this model has an output head only at the finest scale (head='single')")
            per_scale = [head(f) for head, f in zip(self.heads, feats)]
            if any(pads):
                per_scale = [self._crop_scale(y, size, i) for i, y in enumerate(per_scale)]
            if all_scales:
                return per_scale
            return self_ensemble_combine(per_scale)
        y = self.heads[0](feats[0])
        if any(pads):
            y = y[(Ellipsis, *(slice(0, s) for s in size))]
        return y

    @staticmethod
    def _crop_scale(y: torch.Tensor, size: tuple[int, ...], scale: int) -> torch.Tensor:
        # the padded region of scale i covers ceil(size / 2**i) voxels of valid input
        keep = [-(-s // 2**scale) for s in size]
        return y[(Ellipsis, *(slice(0, k) for k in keep))]  # type: ignore[index]


def build_model(cfg: ModelConfig, block: str = "plain", head: str = "single",
                block_options: dict[str, Any] | None = None, extra_outputs: int = 0) -> UNet3D:
    """The model builder the engine uses (block, its options, head and extra outputs come from the recipe's
    ``model.*`` slots and are stored in checkpoints as the model's architecture)."""
    return UNet3D(cfg, block=block, head=head, block_options=block_options, extra_outputs=extra_outputs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
