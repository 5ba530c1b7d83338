"""Context Encoder: Pathak, Krähenbühl, Donahue, Darrell, Efros, "Context Encoders: Feature Learning by
Inpainting", CVPR 2016 (figure 2 and section 3), at small resolution.

G is an encoder-decoder. The encoder reads the masked image ([B, C, H, W], hole filled with the data
mean) plus the mask as one more channel and halves the size with 4x4 stride-2 convs (BN, LeakyReLU 0.2)
down to 4x4, then a 4x4 valid conv to a [B, bottleneck, 1, 1] code (the paper's channel-wise fully
connected layer, at 4x4 a plain fully connected one). The decoder mirrors it: a 4x4 transposed conv to
4x4, then nearest-neighbour upsampling + 3x3 conv stages (BN, ReLU) back to H x W and tanh. It predicts
the whole image; the family composites its hole into the context.

D judges completed images: DCGAN's discriminator with spectral norm instead of BatchNorm (its blocks
and features are the `D` representation). The encoder's blocks are the `encoder` representation,
read on full images (mask channel 0: nothing hidden).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from gan_ssl.models.dcgan import DCGANDiscriminator, _dcgan_init
from gan_ssl.models.registry import register_model


def _n_down(resolution: int) -> int:
    n = math.log2(resolution / 4)
    if resolution < 16 or not n.is_integer():
        raise ValueError(f"context_encoder needs a resolution of 4 * 2^k >= 16, got {resolution}")
    return int(n)


class Encoder(nn.Module):
    """(image [B, C, H, W], mask [B, 1, H, W]) -> named maps block1 .. block{n} (stride 2 each, down to 4x4)
    and `code` [B, bottleneck, 1, 1]."""

    def __init__(self, resolution: int, channels: int, width: int, bottleneck: int) -> None:
        super().__init__()
        n = _n_down(resolution)
        blocks: dict[str, nn.Module] = {}
        cin = channels + 1  # the mask travels as one more channel
        for i in range(n):
            cout = width * 2 ** i
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=i == 0)]
            if i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            blocks[f"block{i + 1}"] = nn.Sequential(*layers)
            cin = cout
        blocks["code"] = nn.Sequential(nn.Conv2d(cin, bottleneck, 4, 1, 0, bias=False), nn.BatchNorm2d(bottleneck),
                                       nn.LeakyReLU(0.2, inplace=True))
        self.blocks = nn.ModuleDict(blocks)
        self.out_channels = cin

    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every block's output by name; `mask` None means nothing is hidden (features of full images)."""
        if mask is None:
            mask = x.new_zeros(x.shape[0], 1, *x.shape[2:])
        h = torch.cat([x, mask.to(x)], dim=1)  # [B, C + 1, H, W]
        out: dict[str, torch.Tensor] = {}
        for name, block in self.blocks.items():
            h = block(h)
            out[name] = h
        return out


class ContextEncoderG(nn.Module):
    """(masked image [B, C, H, W] in [-1, 1], mask [B, 1, H, W]) -> predicted image [B, C, H, W] in [-1, 1]."""

    def __init__(self, resolution: int = 32, channels: int = 1, width: int = 32, bottleneck: int = 256) -> None:
        super().__init__()
        self.resolution, self.channels = resolution, channels
        self.encoder = Encoder(resolution, channels, width, bottleneck)
        n = _n_down(resolution)
        top = width * 2 ** (n - 1)
        self.expand = nn.Sequential(nn.ConvTranspose2d(bottleneck, top, 4, 1, 0, bias=False), nn.BatchNorm2d(top), nn.ReLU(inplace=True))
        ups: list[nn.Module] = []
        cin = top
        for i in range(n - 1):
            cout = top // 2 ** (i + 1)
            ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                                     nn.BatchNorm2d(cout), nn.ReLU(inplace=True)))
            cin = cout
        self.ups = nn.Sequential(*ups)
        self.to_image = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, channels, 3, 1, 1), nn.Tanh())
        _dcgan_init(self)

    def forward(self, masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        code = self.encoder.features(masked, mask)["code"]  # [B, bottleneck, 1, 1]
        out = self.to_image(self.ups(self.expand(code)))
        assert out.shape == masked.shape, (out.shape, masked.shape)
        return out


@register_model("context_encoder", family="context_encoder")
def context_encoder(resolution: int = 32, channels: int = 1,
                    width: int = 32,  # encoder's first conv channels (then 2x per stage); 32 trains in minutes on a CPU
                    bottleneck: int = 256,  # code size: the paper's 4000 is for 128 px ImageNet; 256 suffices at 32 px
                    d_width: int = 32,  # D's first conv channels (DCGAN layout, spectral norm)
                    ) -> tuple[ContextEncoderG, DCGANDiscriminator]:
    """Context-encoder G (encoder-decoder over masked image + mask) and a spectral-norm DCGAN D."""
    return ContextEncoderG(resolution, channels, width, bottleneck), DCGANDiscriminator(resolution, channels, d_width, spectral_norm=True)

