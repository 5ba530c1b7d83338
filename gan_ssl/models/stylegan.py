"""StyleGAN: Karras, Laine, Aila, "A Style-Based Generator Architecture for Generative Adversarial
Networks", CVPR 2019 (fig. 1b, sec. 2-3), at widths given as arguments.

G = mapping f: z -> w (pixel norm, `mapping_depth` equalized dense layers with lr multiplier 0.01)
  + synthesis g: a learned constant 4x4 input; per level two layers, each (nearest 2x up +) conv3x3,
    a noise input (per-channel weight starting at 0), LeakyReLU, AdaIN with its own style w_i; a 1x1
    toRGB per level. The synthesis takes one w per layer, ws [B, num_ws, w_dim] (num_ws = 2 per level),
    which is how style mixing and truncation act. Levels fade in exactly as PGGAN's (lerp of toRGBs).
G.w_avg is a registered buffer (saved in checkpoints, copied into the EMA) that tracks the mean w with an
EMA (beta 0.995) for the truncation trick (sec. 3 / appendix B): w' = w_avg + psi (w - w_avg).
D is PGGAN's discriminator (as in the paper), from gan_ssl.models.pggan.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gan_ssl.models.base import Generator
from gan_ssl.models.pggan import PGGANDiscriminator, idle_rgb_parameters, level_channels, n_levels, upscale
from gan_ssl.models.registry import register_model
from gan_ssl.nn.layers import AdaIN, EqualizedConv2d, EqualizedLinear, NoiseInput, blur2d, pixel_norm

LRELU = 0.2


class MappingNetwork(nn.Module):
    """z [B, z_dim] -> w [B, w_dim]: pixel norm, then `depth` equalized dense layers + LeakyReLU(0.2)."""

    def __init__(self, z_dim: int, w_dim: int, depth: int, lr_mul: float) -> None:
        super().__init__()
        dims = [z_dim] + [w_dim] * depth
        self.layers = nn.ModuleList(EqualizedLinear(a, b, lr_mul=lr_mul) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = pixel_norm(z)
        for layer in self.layers:
            h = F.leaky_relu(layer(h), LRELU)
        return h


class StyleLayer(nn.Module):
    """(nearest 2x up +) conv3x3 (none for the constant input's layer) (+ binomial blur after an up-sampling
    conv, the paper's sec. 2, when `blur`), noise, LeakyReLU, AdaIN(w). x [B, Cin, r, r], w [B, w_dim] -> [B, Cout, r', r']."""

    def __init__(self, cin: int, cout: int, w_dim: int, conv: bool, up: bool, blur: bool = False) -> None:
        super().__init__()
        self.up, self.blur = up, blur and up
        self.conv = EqualizedConv2d(cin, cout, 3) if conv else None
        self.bias = None if conv else nn.Parameter(torch.zeros(cout))  # the const layer's bias (a conv has its own)
        self.noise = NoiseInput(cout)
        self.adain = AdaIN(cout, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv(x) if self.conv is not None else x + self.bias.view(1, -1, 1, 1)
        if self.blur:
            x = blur2d(x)
        return self.adain(F.leaky_relu(self.noise(x, noise), LRELU), w)


class StyleGANGenerator(Generator):
    """z [B, z_dim] -> images [B, C, 4 * 2^level, ...] via `mapping` and `synthesis`; `raw` is unclamped
    (what G trains with), `forward` clamps to [-1, 1] like every generator of the zoo."""

    def __init__(self, resolution: int = 32, channels: int = 1, z_dim: int = 128, w_dim: int = 128, width: int = 128,
                 mapping_depth: int = 4, mapping_lr_mul: float = 0.01, blur: bool = False) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.resolution, self.channels = z_dim, w_dim, resolution, channels
        self.max_level = n_levels(resolution)
        self.num_ws = 2 * (self.max_level + 1)
        ch = [level_channels(width, lv) for lv in range(self.max_level + 1)]
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_depth, mapping_lr_mul)
        self.const = nn.Parameter(torch.ones(1, ch[0], 4, 4))
        layers = [StyleLayer(ch[0], ch[0], w_dim, conv=False, up=False), StyleLayer(ch[0], ch[0], w_dim, conv=True, up=False)]
        for lv in range(1, self.max_level + 1):
            layers += [StyleLayer(ch[lv - 1], ch[lv], w_dim, conv=True, up=True, blur=blur), StyleLayer(ch[lv], ch[lv], w_dim, conv=True, up=False)]
        self.layers = nn.ModuleList(layers)
        self.to_rgb = nn.ModuleList(EqualizedConv2d(c, channels, 1, gain=1.0) for c in ch)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def noise_resolutions(self, level: int | None = None) -> list[int]:
        """The side of each noise map used at `level`, one per layer (4, 4, 8, 8, ...)."""
        level = self.max_level if level is None else level
        return [4 * 2 ** (i // 2) for i in range(2 * (level + 1))]

    def synthesis(self, ws: torch.Tensor, level: int | None = None, alpha: float = 1.0,
                  noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """ws [B, num_ws, w_dim] (or one w [B, w_dim] for every layer) -> unclamped images [B, C, r, r].

        noise: one [B, 1, r_i, r_i] map per layer in use (`noise_resolutions(level)`), or None to draw them
        from torch's global RNG."""
        level = self.max_level if level is None else level
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).expand(-1, self.num_ws, -1)
        assert ws.shape[1:] == (self.num_ws, self.w_dim), f"ws must be [B, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}"
        n_layers = 2 * (level + 1)
        assert noise is None or len(noise) == n_layers, f"{n_layers} noise maps needed at level {level}, got {len(noise)}"
        h = self.const.expand(ws.shape[0], -1, -1, -1)
        prev = h
        for i in range(n_layers):
            if i % 2 == 0 and i > 0:
                prev = h  # the previous level's output, for the fade-in
            h = self.layers[i](h, ws[:, i], None if noise is None else noise[i])
        out = self.to_rgb[level](h)  # [B, C, r, r]
        if level > 0 and alpha < 1.0:
            out = torch.lerp(upscale(self.to_rgb[level - 1](prev), out.shape[-1]).to(out.dtype), out, alpha)  # dtypes differ under autocast
        return out

    def truncate(self, w: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """Truncation trick: ws [B, num_ws, w_dim] with w_avg + psi (w - w_avg) for layers < cutoff (all when None)."""
        ws = w.unsqueeze(1).expand(-1, self.num_ws, -1) if w.ndim == 2 else w
        if psi == 1.0:
            return ws
        k = self.num_ws if cutoff is None else min(cutoff, self.num_ws)
        trunc = torch.lerp(self.w_avg.view(1, 1, -1).to(ws), ws[:, :k], psi)
        return torch.cat([trunc, ws[:, k:]], dim=1)

    @torch.no_grad()
    def track_w_avg(self, w: torch.Tensor, beta: float) -> None:
        """w_avg <- beta * w_avg + (1 - beta) * mean(w) over the batch (w [B, w_dim])."""
        self.w_avg.lerp_(w.detach().float().mean(dim=0), 1.0 - beta)

    def raw(self, z: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        return self.synthesis(self.mapping(z), level, alpha)

    def forward(self, z: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        return self.raw(z, level, alpha).clamp(-1.0, 1.0)

    def idle_parameters(self) -> set[str]:
        """Names of the parameters a full-resolution forward does not use (the lower levels' toRGB layers)."""
        return idle_rgb_parameters(self, "to_rgb")


@register_model("stylegan", family="stylegan")
def stylegan(resolution: int = 32, channels: int = 1,
             z_dim: int = 128,  # latent size (paper: 512); 128 is plenty for 32-px grayscale
             w_dim: int = 128,  # intermediate latent (style) size (paper: 512)
             mapping_depth: int = 4,  # mapping MLP depth (paper: 8; StyleGAN2-ADA uses 2 for small data sets)
             mapping_lr_mul: float = 0.01,  # learning-rate multiplier of the mapping net (paper: 0.01)
             g_width: int = 128,  # synthesis channels at 4x4 and 8x8, halved per further doubling (paper: 512)
             d_width: int = 128,  # D channels (PGGAN's D)
             mbstd_group: int = 4,  # D's minibatch-stddev group size (paper: 4)
             blur: bool = False,  # the paper's binomial low-pass after each up-sampling conv of G and before each
                                  # down-sampling conv of D (sec. 2); off = PGGAN's plain nearest / average pooling
             ) -> tuple[StyleGANGenerator, PGGANDiscriminator]:
    """StyleGAN G and PGGAN's D for 4 * 2^k-pixel images; progressive growing is the family's schedule."""
    G = StyleGANGenerator(resolution, channels, z_dim, w_dim, g_width, mapping_depth, mapping_lr_mul, blur)
    return G, PGGANDiscriminator(resolution, channels, d_width, mbstd_group, blur)
