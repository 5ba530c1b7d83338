"""Layer helpers shared by the model families: spectral norm, (self-modulated) BatchNorm.

Self-modulated BN: Chen, Lucic, Houlsby, Gelly, "On Self Modulation for Generative Adversarial
Networks", ICLR 2019 -- BN without learned affine, whose per-channel scale and shift are
one-hidden-layer MLPs of z (32 hidden units), the scale's bias starting at 1.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    """Wrap `module` in torch's spectral-norm parametrization when `enabled` (1 power iteration per step)."""
    return spectral_norm(module) if enabled else module


def xavier(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """Xavier-uniform weights and zero bias (SN-GAN's initialisation); apply before `maybe_sn`."""
    nn.init.xavier_uniform_(module.weight, gain)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def has_spectral_norm(module: nn.Module) -> bool:
    return any(hasattr(m, "parametrizations") and "weight" in m.parametrizations for m in module.modules())


class SelfModulatedBN(nn.Module):
    """BatchNorm2d whose scale and shift are MLPs of z: y = gamma(z) * BN(x) + beta(z).

    x: [B, C, H, W], z: [B, Z] -> [B, C, H, W].
    """

    def __init__(self, channels: int, z_dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.hidden = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU())
        self.gamma = nn.Linear(hidden, channels)
        self.beta = nn.Linear(hidden, channels)
        for lin in (self.gamma, self.beta):  # start close to plain BN: gamma ~ 1, beta ~ 0
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)
        nn.init.ones_(self.gamma.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.hidden(z)  # [B, hidden]
        return self.gamma(h)[:, :, None, None] * self.bn(x) + self.beta(h)[:, :, None, None]


class PlainBN(nn.BatchNorm2d):
    """BatchNorm2d with the same (x, z) call signature as SelfModulatedBN; z is ignored."""

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)


def modulated_bn(channels: int, z_dim: int, self_modulation: bool) -> nn.Module:
    return SelfModulatedBN(channels, z_dim) if self_modulation else PlainBN(channels)
