"""Layer helpers shared by the model families: spectral norm, (self-modulated) BatchNorm, and the
PGGAN/StyleGAN layers (equalized learning rate, pixel norm, minibatch stddev, AdaIN, noise inputs).

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


# --- PGGAN / StyleGAN layers (Karras et al. 2018, 2019) --------------------------------------------


class EqualizedLinear(nn.Module):
    """Linear layer with equalized learning rate (Karras et al. 2018, sec. 4.1).

    Raw weights are drawn N(0, 1) / lr_mul and scaled at run time by gain / sqrt(fan_in) * lr_mul, so
    Adam's per-parameter step moves every layer at the same relative speed. `lr_mul` < 1 slows a layer
    down (StyleGAN's mapping network: 0.01); the bias is not scaled by He's constant, only by lr_mul
    (as in StyleGAN), so with lr_mul = 1 it is a plain bias. x [B, in] -> [B, out].
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, gain: float = 2**0.5,
                 lr_mul: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.scale = gain / in_features**0.5 * lr_mul  # applied at run time, never stored in the weights
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.lr_mul if self.bias is not None else None
        return nn.functional.linear(x, self.weight * self.scale, b)


class EqualizedConv2d(nn.Module):
    """Conv2d ('same' padding, stride 1) with equalized learning rate: weights N(0, 1) scaled at run time by
    gain / sqrt(in_channels * k * k); the bias is unscaled. x [B, Cin, H, W] -> [B, Cout, H, W]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True, gain: float = 2**0.5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / (in_channels * kernel_size * kernel_size) ** 0.5
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


def blur2d(x: torch.Tensor) -> torch.Tensor:
    """Low-pass filter of StyleGAN (Karras et al. 2019, sec. 2; Zhang 2019): the separable 2nd-order binomial
    [1, 2, 1] / 4 per channel, zero padded ('same' size). x [B, C, H, W] -> same shape. No parameters."""
    k = torch.tensor([1.0, 2.0, 1.0], device=x.device, dtype=x.dtype)
    k = (k[:, None] * k[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    return nn.functional.conv2d(x, k, padding=1, groups=x.shape[1])


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pixelwise feature normalisation (Karras et al. 2018, sec. 4.2): each pixel's feature vector scaled to
    unit root-mean-square over channels. x [B, C, ...] -> same shape."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


class PixelNorm(nn.Module):
    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x, self.eps)


def mbstd_group(batch: int, group_size: int) -> int:
    """The group size minibatch stddev uses for a batch: the largest divisor of `batch` not above
    min(group_size, batch) (PGGAN needs the batch divisible by the group; 6 images, group 4 -> groups of 3)."""
    g = max(1, min(group_size, batch))
    while batch % g:
        g -= 1
    return g


class MinibatchStdDev(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, sec. 3): the batch is split into groups (image i
    in group i mod M, as in PGGAN's reshape), each feature's stddev is taken over the group, averaged over
    channels and pixels, and appended to every image of the group as one constant map.
    x [B, C, H, W] -> [B, C + 1, H, W]."""

    def __init__(self, group_size: int = 4, eps: float = 1e-8) -> None:
        super().__init__()
        self.group_size, self.eps = group_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        g = mbstd_group(B, self.group_size)
        y = x.float().reshape(g, B // g, C, H, W)  # [G, M, C, H, W]
        y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over the group [M, C, H, W]
        y = (y + self.eps).sqrt().mean(dim=(1, 2, 3))  # [M]
        y = y.to(x.dtype).repeat(g).view(B, 1, 1, 1).expand(B, 1, H, W)
        return torch.cat([x, y], dim=1)


class AdaIN(nn.Module):
    """Adaptive instance normalisation (Huang & Belongie 2017; StyleGAN, Karras et al. 2019, eq. 1):
    instance-normalise x, then y = (1 + s) * x_norm + b with (s, b) = A(w) an equalized affine map of the
    style w. The affine starts at zero bias, so a zero style (A(w) = 0) is plain instance norm.
    x [B, C, H, W], w [B, w_dim] -> [B, C, H, W]."""

    def __init__(self, channels: int, w_dim: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.style = EqualizedLinear(w_dim, 2 * channels, gain=1.0)
        self.eps = eps

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = nn.functional.instance_norm(x, eps=self.eps)
        s, b = self.style(w)[:, :, None, None].chunk(2, dim=1)  # [B, C, 1, 1] each
        return x * (1 + s) + b


class NoiseInput(nn.Module):
    """Per-layer noise (StyleGAN, sec. 2): one N(0, 1) map [B, 1, H, W] per image, times a learned per-channel
    weight that starts at 0. noise=None draws it from torch's global RNG. x [B, C, H, W] -> same shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + self.weight.view(1, -1, 1, 1) * noise
