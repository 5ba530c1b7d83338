"""SRGAN generator and discriminator: Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a
Generative Adversarial Network", CVPR 2017 (figure 4), with the changes later work found better:

* residual blocks without BatchNorm (conv3x3, ReLU, conv3x3, + input; EDSR, Lim et al. 2017; ESRGAN),
  which also removes BN's artefacts and its train/eval gap;
* upsampling by nearest-neighbour x2 + conv3x3 (Odena et al. 2016, "Deconvolution and Checkerboard
  Artifacts"), or by sub-pixel convolution (PixelShuffle) with ICNR initialisation (Aitken et al. 2017),
  which starts it equal to nearest-neighbour upsampling, so neither starts with checkerboards;
* an image-level skip: the network adds its output to the bicubic upsampling of its input (VDSR, Kim et
  al. 2016), so it learns only the missing detail.
G: low-res [B, C, h, w] in [-1, 1] -> [B, C, scale*h, scale*w] (unclamped; callers clamp to [-1, 1]).
D: DCGAN's discriminator with spectral norm on the high-resolution image (its blocks are the `D` features).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_ssl.models.dcgan import DCGANDiscriminator
from gan_ssl.models.registry import register_model

UPSAMPLERS = ("nearest", "pixelshuffle")


def icnr_(weight: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """ICNR (Aitken et al. 2017): init a conv feeding PixelShuffle(factor) so that all factor^2 sub-pixels of an
    output channel share one kernel, i.e. the layer starts as conv + nearest-neighbour upsampling. In place."""
    out_ch, in_ch, kh, kw = weight.shape
    assert out_ch % factor**2 == 0, weight.shape
    sub = torch.empty(out_ch // factor**2, in_ch, kh, kw)
    nn.init.kaiming_normal_(sub)
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(factor**2, dim=0))
    return weight


class ResBlock(nn.Module):
    """x + res_scale * conv(relu(conv(x))): [B, W, h, w] -> same (no BatchNorm)."""

    def __init__(self, width: int, res_scale: float) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(width, width, 3, 1, 1), nn.Conv2d(width, width, 3, 1, 1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x)))


class Upsample2x(nn.Module):
    """[B, W, h, w] -> [B, W, 2h, 2w]: nearest + conv3x3, or conv3x3 (ICNR) + PixelShuffle; then LeakyReLU 0.2."""

    def __init__(self, width: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode == "nearest":
            self.conv = nn.Conv2d(width, width, 3, 1, 1)
        else:
            self.conv = nn.Conv2d(width, 4 * width, 3, 1, 1)
            icnr_(self.conv.weight, 2)
            nn.init.zeros_(self.conv.bias)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return self.act(self.conv(F.interpolate(x, scale_factor=2, mode="nearest")))
        return self.act(F.pixel_shuffle(self.conv(x), 2))


class SRGenerator(nn.Module):
    """Residual SR generator (see the module docstring): low-res [B, C, h, w] -> [B, C, scale*h, scale*w]."""

    def __init__(self, channels: int = 1, scale: int = 2, width: int = 32, n_blocks: int = 8, upsample: str = "nearest",
                 res_scale: float = 1.0, skip: bool = True) -> None:
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"srgan upsamples by 2, 4 or 8, got scale {scale}")
        if upsample not in UPSAMPLERS:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLERS)}, got {upsample!r}")
        self.channels, self.scale, self.skip = channels, scale, skip
        self.head = nn.Conv2d(channels, width, 3, 1, 1)
        self.body = nn.Sequential(*[ResBlock(width, res_scale) for _ in range(n_blocks)], nn.Conv2d(width, width, 3, 1, 1))
        self.up = nn.Sequential(*[Upsample2x(width, upsample) for _ in range(int(math.log2(scale)))])
        self.tail = nn.Conv2d(width, channels, 3, 1, 1)
        if skip:  # start as plain bicubic upsampling: the residual branch adds nothing at step 0
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h = self.head(lr)  # [B, W, h, w]
        h = self.tail(self.up(h + self.body(h)))  # [B, C, s*h, s*w]
        if self.skip:
            h = h + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return h


@register_model("srgan", family="srgan")
def srgan(resolution: int = 32, channels: int = 1,
          scale: int = 2,  # upsampling factor: 2 (16 -> 32 px) or 4 (8 -> 32 px) for Fashion-MNIST
          g_width: int = 32,  # channels of G's residual trunk (SRGAN: 64); 32 keeps a CPU step fast
          n_blocks: int = 8,  # residual blocks (SRGAN: 16); 8 at 16 px input sees the whole image
          upsample: str = "nearest",  # nearest (nearest x2 + conv) | pixelshuffle (sub-pixel conv, ICNR init)
          res_scale: float = 1.0,  # residual scaling (EDSR uses 0.1 for very wide trunks); 1 at this width
          skip: bool = True,  # add G's output to the bicubic upsampling of its input (learn only the detail)
          d_width: int = 32,  # D's first conv channels (DCGAN layout, spectral norm)
          ) -> tuple[SRGenerator, DCGANDiscriminator]:
    """SR generator for `scale` and a spectral-norm DCGAN D at the high `resolution`."""
    if resolution % scale:
        raise ValueError(f"resolution {resolution} is not a multiple of scale {scale}")
    G = SRGenerator(channels, scale, g_width, n_blocks, upsample, res_scale, skip)
    return G, DCGANDiscriminator(resolution, channels, d_width, spectral_norm=True)
