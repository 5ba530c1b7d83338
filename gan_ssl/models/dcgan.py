"""DCGAN: Radford, Metz, Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR 2016.

G: z -> 4x4 map -> stride-2 transposed convs (BN + ReLU) -> tanh. D: stride-2 convs with
LeakyReLU(0.2), BN after all but the first (or spectral norm instead of BN, as in the SN-GAN
paper's "standard CNN"), then a linear head on the flattened 4x4 map.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from gan_ssl.models.base import Discriminator, Generator
from gan_ssl.models.registry import register_model
from gan_ssl.nn.layers import maybe_sn


def _n_stages(resolution: int) -> int:
    n = math.log2(resolution / 4)
    if resolution < 8 or not n.is_integer():
        raise ValueError(f"dcgan needs a resolution of 4 * 2^k >= 8, got {resolution}")
    return int(n)


def _dcgan_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(Generator):
    def __init__(self, resolution: int = 32, channels: int = 1, z_dim: int = 128, width: int = 64) -> None:
        super().__init__()
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        n = _n_stages(resolution)
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]  # e.g. 256, 128, 64 at 32 px
        self.project = nn.Sequential(nn.Linear(z_dim, widths[0] * 16, bias=False))
        self.bn0 = nn.Sequential(nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self._w0 = widths[0]
        _dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.bn0(self.project(z).view(-1, self._w0, 4, 4))  # [B, w0, 4, 4]
        return self.body(h)  # [B, C, R, R]


class DCGANDiscriminator(Discriminator):
    def __init__(self, resolution: int = 32, channels: int = 1, width: int = 64, spectral_norm: bool = False) -> None:
        super().__init__()
        n = _n_stages(resolution)
        self.spectral_norm = spectral_norm
        blocks: dict[str, nn.Module] = {}
        cin = channels
        for i in range(n):
            cout = width * 2**i
            conv = nn.Conv2d(cin, cout, 4, 2, 1, bias=spectral_norm or i == 0)
            _dcgan_init(conv)
            layers: list[nn.Module] = [maybe_sn(conv, spectral_norm)]
            if i > 0 and not spectral_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            blocks[f"block{i + 1}"] = nn.Sequential(*layers)
            cin = cout
        self.blocks = nn.ModuleDict(blocks)
        self.feature_dim = cin * 16  # flattened 4x4 map, as in Radford et al.
        head = nn.Linear(self.feature_dim, 1)
        _dcgan_init(head)
        self.head = maybe_sn(head, spectral_norm)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        return h.flatten(1)  # [B, C*4*4]


@register_model("dcgan")
def dcgan(resolution: int = 32, channels: int = 1, z_dim: int = 128, g_width: int = 64, d_width: int = 64, spectral_norm: bool = False) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    """DCGAN at any resolution 4 * 2^k; `spectral_norm` swaps D's BatchNorm for SN."""
    return (
        DCGANGenerator(resolution, channels, z_dim, g_width),
        DCGANDiscriminator(resolution, channels, d_width, spectral_norm),
    )
