"""PGGAN: Karras, Aila, Laine, Lehtinen, "Progressive Growing of GANs for Improved Quality, Stability,
and Variation", ICLR 2018 (table 2 networks, scaled by width arguments).

Both networks hold every level of detail from the start (level l works at 4 * 2^l pixels, l = 0..n), so
their parameters, optimizers and checkpoints never change shape; a forward pass takes the level and the
fade-in weight alpha and runs only the layers that level needs (the TF original's `lod` input).

G: pixel-normalised z -> dense 4x4 -> conv3x3 (level 0); each further level: nearest 2x up, two conv3x3;
   LeakyReLU(0.2) and pixel norm after every conv; a 1x1 toRGB per level, linear output. While level l
   fades in, the output is lerp(up(toRGB_{l-1}(h_{l-1})), toRGB_l(h_l), alpha) (sec. 3, fig. 2).
D: a 1x1 fromRGB per level; each level's block: two conv3x3, 2x average pool; the final 4x4 block:
   minibatch stddev, conv3x3, dense, dense -> score. While level l fades in, the block's output is
   lerp(fromRGB_{l-1}(avgpool(x)), block_l(fromRGB_l(x)), alpha). D's "feature" (what the rotation head
   reads) is the 4x4 map entering the final block, *before* minibatch stddev, flattened.
Every conv and dense layer uses equalized learning rate (sec. 4.1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_ssl.models.base import Discriminator, Generator
from gan_ssl.models.registry import register_model
from gan_ssl.nn.layers import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, blur2d, pixel_norm

LRELU = 0.2


def n_levels(resolution: int) -> int:
    """Doublings from 4x4 to `resolution` (32 -> 3); raises ValueError unless resolution = 4 * 2^k >= 8."""
    n = math.log2(resolution / 4) if resolution > 0 else -1
    if resolution < 8 or not float(n).is_integer():
        raise ValueError(f"progressive models need a resolution of 4 * 2^k >= 8, got {resolution}")
    return int(n)


def level_channels(width: int, level: int) -> int:
    """Channels at level `level`: `width` at 4x4 and 8x8, halved per further doubling, at least width / 8
    (PGGAN's 512, 512, 256, ... scaled down)."""
    return max(width >> max(level - 1, 0), max(1, width // 8))


def level_of(x: torch.Tensor) -> int:
    """The level of detail of an image batch [B, C, R, R]: log2(R / 4)."""
    lv = math.log2(x.shape[-1] / 4)
    assert x.shape[-1] == x.shape[-2] and lv.is_integer() and lv >= 0, f"images must be 4 * 2^k square, got {tuple(x.shape)}"
    return int(lv)


def upscale(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Nearest-neighbour upsampling of [B, C, r, r] to [B, C, resolution, resolution] (identity when equal)."""
    f = resolution // x.shape[-1]
    return x if f == 1 else F.interpolate(x, scale_factor=f, mode="nearest")


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LRELU)


class _GBlock(nn.Module):
    """Level l >= 1 of G: [B, Cin, r, r] -> nearest up, conv3x3, lrelu, PN, conv3x3, lrelu, PN -> [B, Cout, 2r, 2r]."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = EqualizedConv2d(cin, cout, 3), EqualizedConv2d(cout, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(_act(self.conv1(F.interpolate(x, scale_factor=2, mode="nearest"))))
        return pixel_norm(_act(self.conv2(x)))


class PGGANGenerator(Generator):
    """z [B, z_dim] -> images [B, C, 4 * 2^level, ...]; `raw` is the linear output G trains with, `forward`
    clamps it to [-1, 1] (the range every generator of the zoo promises; uint8 conversion clamps anyway)."""

    def __init__(self, resolution: int = 32, channels: int = 1, z_dim: int = 128, width: int = 128) -> None:
        super().__init__()
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.max_level = n_levels(resolution)
        ch = [level_channels(width, lv) for lv in range(self.max_level + 1)]
        self.dense = EqualizedLinear(z_dim, ch[0] * 16, gain=2**0.5 / 4)  # PGGAN's gain for the 4x4 dense layer
        self.conv0 = EqualizedConv2d(ch[0], ch[0], 3)
        self.blocks = nn.ModuleList(_GBlock(ch[lv - 1], ch[lv]) for lv in range(1, self.max_level + 1))
        self.to_rgb = nn.ModuleList(EqualizedConv2d(c, channels, 1, gain=1.0) for c in ch)
        self._c0 = ch[0]

    def raw(self, z: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """Unclamped images at level `level` (default: the final one), the newest level weighted by `alpha`."""
        level = self.max_level if level is None else level
        h = _act(self.dense(pixel_norm(z))).view(-1, self._c0, 4, 4)
        h = pixel_norm(_act(self.conv0(pixel_norm(h))))  # [B, c0, 4, 4]
        prev = h
        for lv in range(1, level + 1):
            prev, h = h, self.blocks[lv - 1](h)
        out = self.to_rgb[level](h)  # [B, C, r, r]
        if level > 0 and alpha < 1.0:
            out = torch.lerp(upscale(self.to_rgb[level - 1](prev), out.shape[-1]).to(out.dtype), out, alpha)  # dtypes differ under autocast
        return out

    def forward(self, z: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        return self.raw(z, level, alpha).clamp(-1.0, 1.0)

    def idle_parameters(self) -> set[str]:
        """Names of the parameters a full-resolution forward does not use (the lower levels' toRGB layers)."""
        return idle_rgb_parameters(self, "to_rgb")


def idle_rgb_parameters(net: nn.Module, attr: str) -> set[str]:
    """Parameter names of `net.<attr>[l]` for every level l below the last: unused at full resolution, alpha 1."""
    layers = getattr(net, attr)
    return {f"{attr}.{i}.{n}" for i in range(len(layers) - 1) for n, _ in layers[i].named_parameters()}


class _DBlock(nn.Module):
    """Level l >= 1 of D: [B, Cin, r, r] -> conv3x3, lrelu, (blur,) conv3x3, lrelu, 2x average pool -> [B, Cout, r/2, r/2].
    `blur`: StyleGAN's binomial filter before the downsampling conv (its D; PGGAN has none)."""

    def __init__(self, cin: int, cout: int, blur: bool = False) -> None:
        super().__init__()
        self.conv1, self.conv2 = EqualizedConv2d(cin, cin, 3), EqualizedConv2d(cin, cout, 3)
        self.blur = blur

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _act(self.conv1(x))
        return F.avg_pool2d(_act(self.conv2(blur2d(h) if self.blur else h)), 2)


class _DFinal(nn.Module):
    """D's 4x4 block on the flattened 4x4 map [B, C * 16]: minibatch stddev, conv3x3, dense, dense -> [B, 1].

    It is D's `head`, so D(x) = head(feature(x)) and minibatch stddev only ever mixes the images of one call."""

    def __init__(self, c: int, group: int) -> None:
        super().__init__()
        self.c = c
        self.mbstd = MinibatchStdDev(group)
        self.conv = EqualizedConv2d(c + 1, c, 3)
        self.dense = EqualizedLinear(c * 16, c)
        self.out = EqualizedLinear(c, 1, gain=1.0)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        h = _act(self.conv(self.mbstd(f.view(-1, self.c, 4, 4))))
        return self.out(_act(self.dense(h.flatten(1))))


class PGGANDiscriminator(Discriminator):
    """images [B, C, 4 * 2^level, ...] -> scores [B]; the level is read from the image size.

    blocks: block1 (the full-resolution block) ... blockN (8x8 -> 4x4), in the order a full-resolution
    image passes them; `feature` is the 4x4 map before minibatch stddev, flattened [B, c0 * 16]."""

    def __init__(self, resolution: int = 32, channels: int = 1, width: int = 128, mbstd_group: int = 4, blur: bool = False) -> None:
        super().__init__()
        self.resolution, self.max_level = resolution, n_levels(resolution)
        ch = [level_channels(width, lv) for lv in range(self.max_level + 1)]
        self.from_rgb = nn.ModuleList(EqualizedConv2d(channels, c, 1) for c in ch)
        self.blocks = nn.ModuleDict({f"block{self.max_level - lv + 1}": _DBlock(ch[lv], ch[lv - 1], blur)
                                     for lv in range(self.max_level, 0, -1)})
        self.head = _DFinal(ch[0], mbstd_group)
        self.feature_dim = ch[0] * 16

    def _block(self, level: int) -> nn.Module:
        return self.blocks[f"block{self.max_level - level + 1}"]

    def feature_map(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """The 4x4 map [B, c0, 4, 4] entering the final block, for images at any level (newest level weighted by alpha)."""
        level = level_of(x)
        assert level <= self.max_level, f"D was built for {self.resolution} px, got {tuple(x.shape)}"
        h = _act(self.from_rgb[level](x))
        if level > 0:
            h = self._block(level)(h)
            if alpha < 1.0:
                h = torch.lerp(_act(self.from_rgb[level - 1](F.avg_pool2d(x, 2))).to(h.dtype), h, alpha)  # dtypes differ under autocast
            for lv in range(level - 1, 0, -1):
                h = self._block(lv)(h)
        return h

    def feature(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return self.feature_map(x, alpha).flatten(1)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every block's output at full resolution ([B, C, H, W] by name) and 'penultimate' (the flattened 4x4 map)."""
        h = _act(self.from_rgb[level_of(x)](x))
        out: dict[str, torch.Tensor] = {}
        for lv in range(level_of(x), 0, -1):
            name = f"block{self.max_level - lv + 1}"
            h = out[name] = self.blocks[name](h)
        out["penultimate"] = h.flatten(1)
        return out

    def forward_with_feature(self, x: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.feature(x, alpha)
        return self.head(f).squeeze(1), f

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return self.forward_with_feature(x, alpha)[0]

    def idle_parameters(self) -> set[str]:
        """Names of the parameters a full-resolution forward does not use (the lower levels' fromRGB layers)."""
        return idle_rgb_parameters(self, "from_rgb")


@register_model("pggan", family="pggan")
def pggan(resolution: int = 32, channels: int = 1,
          z_dim: int = 128,  # latent size (paper: 512); 128 is plenty for 32-px grayscale
          g_width: int = 128,  # G channels at 4x4 and 8x8, halved per further doubling (paper: 512)
          d_width: int = 128,  # D channels, mirrored
          mbstd_group: int = 4,  # minibatch-stddev group size (paper: 4)
          ) -> tuple[PGGANGenerator, PGGANDiscriminator]:
    """PGGAN G and D for 4 * 2^k-pixel images, growing from 4x4 (the schedule picks the level)."""
    return PGGANGenerator(resolution, channels, z_dim, g_width), PGGANDiscriminator(resolution, channels, d_width, mbstd_group)
