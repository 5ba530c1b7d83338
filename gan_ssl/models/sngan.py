"""SN-GAN ResNet: Miyato, Kataoka, Koyama, Yoshida, "Spectral Normalization for Generative
Adversarial Networks", ICLR 2018 (appendix B.4, the 32x32 ResNet), with the generator's
BatchNorm optionally self-modulated (Chen et al., ICLR 2019), as in SSGAN (Chen et al., CVPR 2019).

G: z -> linear -> 4x4 -> k up-sampling residual blocks -> BN, ReLU, conv3x3, tanh.
D: optimized first block (down), down blocks to 8x8, two plain blocks, ReLU, global sum pool,
spectral-normalised linear head. Every conv and linear of D is spectral-normalised.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_ssl.models.base import Discriminator, Generator
from gan_ssl.models.registry import register_model
from gan_ssl.nn.layers import maybe_sn, modulated_bn, xavier
from gan_ssl.nn.resample import conv3x3_then_pool2

_SQRT2 = math.sqrt(2.0)


def _n_up(resolution: int) -> int:
    n = math.log2(resolution / 4)
    if resolution < 16 or not n.is_integer():
        raise ValueError(f"sngan needs a resolution of 4 * 2^k >= 16, got {resolution}")
    return int(n)


class GBlock(nn.Module):
    """Pre-activation up-sampling residual block: [B, Cin, H, W] (+ z) -> [B, Cout, 2H, 2W].

    With `fast` (nearest up-sampling only) the 1x1 shortcut runs before up-sampling (it commutes with it): the same
    function on a quarter of the pixels."""

    def __init__(self, cin: int, cout: int, z_dim: int, self_modulation: bool, upsample: str = "nearest", fast: bool = True) -> None:
        super().__init__()
        self.mode = upsample
        self.fast = fast and upsample == "nearest"
        self.bn1 = modulated_bn(cin, z_dim, self_modulation)
        self.conv1 = xavier(nn.Conv2d(cin, cout, 3, 1, 1), _SQRT2)
        self.bn2 = modulated_bn(cout, z_dim, self_modulation)
        self.conv2 = xavier(nn.Conv2d(cout, cout, 3, 1, 1), _SQRT2)
        self.shortcut = xavier(nn.Conv2d(cin, cout, 1, 1, 0))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self._up(F.relu(self.bn1(x, z))))
        h = self.conv2(F.relu(self.bn2(h, z)))
        return h + (self._up(self.shortcut(x)) if self.fast else self.shortcut(self._up(x)))

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class SNGANGenerator(Generator):
    def __init__(self, resolution: int = 32, channels: int = 1, z_dim: int = 128, width: int = 64, self_modulation: bool = True,
                 upsample: str = "nearest", fast_resample: bool = True) -> None:
        super().__init__()
        self.z_dim, self.resolution, self.channels, self.width = z_dim, resolution, channels, width
        self.self_modulation = self_modulation
        self.linear = xavier(nn.Linear(z_dim, 4 * 4 * width))
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be nearest or bilinear, got {upsample!r}")
        self.blocks = nn.ModuleList(GBlock(width, width, z_dim, self_modulation, upsample, fast_resample) for _ in range(_n_up(resolution)))
        self.bn = modulated_bn(width, z_dim, self_modulation)
        self.to_rgb = xavier(nn.Conv2d(width, channels, 3, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.linear(z).view(-1, self.width, 4, 4)  # [B, W, 4, 4]
        for block in self.blocks:
            h = block(h, z)
        return torch.tanh(self.to_rgb(F.relu(self.bn(h, z))))  # [B, C, R, R]


class DBlock(nn.Module):
    """Residual D block, optionally down-sampling by 2 (average pooling) and/or 'optimized' (first block:
    no pre-activation, shortcut pools before its 1x1 conv). With `fast`, a down-sampling block runs conv2 and the
    pooling as one 4x4 stride-2 convolution and pools before its 1x1 shortcut (`gan_ssl.nn.resample`): the same
    function, fewer FLOPs; spectral norm still normalises the 3x3 kernel, with one power iteration per forward."""

    def __init__(self, cin: int, cout: int, downsample: bool, first: bool = False, sn: bool = True, fast: bool = True) -> None:
        super().__init__()
        self.downsample, self.first, self.fast = downsample, first, fast
        self.conv1 = maybe_sn(xavier(nn.Conv2d(cin, cout, 3, 1, 1), _SQRT2), sn)
        self.conv2 = maybe_sn(xavier(nn.Conv2d(cout, cout, 3, 1, 1), _SQRT2), sn)
        self.learn_shortcut = first or downsample or cin != cout
        if self.learn_shortcut:
            self.shortcut = maybe_sn(xavier(nn.Conv2d(cin, cout, 1, 1, 0)), sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x if self.first else F.relu(x)))
        if self.downsample and self.fast:
            h = conv3x3_then_pool2(h, self.conv2.weight, self.conv2.bias)
        else:
            h = self.conv2(h)
            h = F.avg_pool2d(h, 2) if self.downsample else h
        s = x
        if self.learn_shortcut:
            if self.first or self.fast:  # pool then conv (cheaper, same function up to the order of linear ops)
                s = self.shortcut(F.avg_pool2d(s, 2) if self.downsample else s)
            else:
                s = self.shortcut(s)
                s = F.avg_pool2d(s, 2) if self.downsample else s
        return h + s


class SNGANDiscriminator(Discriminator):
    def __init__(self, resolution: int = 32, channels: int = 1, width: int = 64, spectral_norm: bool = True,
                 fast_resample: bool = True) -> None:
        super().__init__()
        self.spectral_norm = spectral_norm
        n_down = _n_up(resolution) - 1  # down to 8x8, as the 32-px model: 32 -> 16 -> 8
        blocks: dict[str, nn.Module] = {"block1": DBlock(channels, width, True, first=True, sn=spectral_norm, fast=fast_resample)}
        for i in range(1, n_down):
            blocks[f"block{i + 1}"] = DBlock(width, width, True, sn=spectral_norm, fast=fast_resample)
        for i in range(n_down, n_down + 2):
            blocks[f"block{i + 1}"] = DBlock(width, width, False, sn=spectral_norm, fast=fast_resample)
        self.blocks = nn.ModuleDict(blocks)
        self.feature_dim = width
        self.head = maybe_sn(xavier(nn.Linear(width, 1)), spectral_norm)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h).sum(dim=(2, 3))  # global sum pooling, [B, W]


@register_model("sngan")
def sngan(resolution: int = 32, channels: int = 1, z_dim: int = 128, g_width: int = 64, d_width: int = 64, self_modulation: bool = True,
          upsample: str = "nearest", fast_resample: bool = True) -> tuple[SNGANGenerator, SNGANDiscriminator]:
    """SN-GAN ResNet G (self-modulated BN unless `self_modulation=False`) and spectral-normalised ResNet D.

    z_dim 128, widths 256 (G) / 128 (D) in the papers; `upsample` nearest (SN-GAN's chainer code) or bilinear
    (Mimicry's GBlock, for like-for-like comparisons). `fast_resample` runs D's conv + average pooling as one
    stride-2 conv (`gan_ssl.nn.resample`) and the 1x1 shortcuts at the lower resolution: the same function up to
    rounding with the same parameters, so checkpoints load either way; false runs the layers as written."""
    return (
        SNGANGenerator(resolution, channels, z_dim, g_width, self_modulation, upsample, fast_resample),
        SNGANDiscriminator(resolution, channels, d_width, spectral_norm=True, fast_resample=fast_resample),
    )
