"""What every generator and discriminator exposes, so the trainer and evaluators need no family code."""
from __future__ import annotations

import torch
from torch import nn


class Generator(nn.Module):
    """z [B, z_dim] -> images [B, C, H, W] in [-1, 1]."""

    z_dim: int
    resolution: int
    channels: int

    def sample_z(self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """Standard-normal latents [n, z_dim] (drawn on the CPU so a seed gives the same z on any device)."""
        return torch.randn(n, self.z_dim, generator=generator).to(device)


class Discriminator(nn.Module):
    """images [B, C, H, W] -> real/fake logits [B], through named blocks and a pooled feature.

    Subclasses set `blocks` (an ordered nn.ModuleDict of feature-map stages), `pool`
    ([B, C, H, W] -> [B, feature_dim]), `head` (nn.Linear(feature_dim, 1)) and `feature_dim`.
    """

    blocks: nn.ModuleDict
    head: nn.Module
    feature_dim: int
    spectral_norm: bool = False

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def feature(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (globally pooled) feature [B, feature_dim]: what auxiliary heads read."""
        h = x
        for block in self.blocks.values():
            h = block(h)
        return self.pool(h)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every block's output ([B, C, H, W]) by name, plus 'penultimate' [B, feature_dim]."""
        out: dict[str, torch.Tensor] = {}
        h = x
        for name, block in self.blocks.items():
            h = block(h)
            out[name] = h
        out["penultimate"] = self.pool(h)
        return out

    def forward_with_feature(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B], penultimate feature [B, feature_dim]) from one pass."""
        f = self.feature(x)
        return self.head(f).squeeze(1), f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_feature(x)[0]


@torch.no_grad()
def refresh_bn_stats(G: Generator, device: torch.device | str, n_batches: int = 8, batch_size: int = 64, seed: int = 0) -> None:
    """Recompute G's BatchNorm running statistics for its current weights ("standing statistics",
    Brock et al. 2019) from a fixed-seed set of latents, so eval-mode sampling matches averaged weights.
    Leaves G in eval mode; the global RNG is untouched."""
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    G.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_batches):
        G(G.sample_z(batch_size, g, device))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    G.eval()
