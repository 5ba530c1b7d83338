"""Exponential moving average of a network's weights, with a warm-up ramp.

Yazici et al., "The Unusual Effectiveness of Averaging in GAN Training", ICLR 2019. A constant beta
from step 0 keeps beta^t of the random initialisation (37% after 1,000 steps at 0.999); the ramp
beta_t = min(beta, (1 + t) / (10 + t)) lets the early average follow the trained weights instead
(the same idea as StyleGAN2-ADA's `ema_rampup`).
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def ema_beta(step: int, beta: float, ramp: str = "step", start: int = 0) -> float:
    """The averaging weight applied at loop step `step` (0 before `start`: the EMA copies the net)."""
    t = step - start
    if t < 0:
        return 0.0
    if ramp == "step":
        return min(beta, (1.0 + t) / (10.0 + t))
    if ramp == "none":
        return beta
    raise ValueError(f"unknown EMA ramp {ramp!r}; use step or none")


class EMA:
    """A frozen copy of `source` whose parameters follow ema <- beta_t * ema + (1 - beta_t) * source.

    Buffers (BatchNorm statistics, tracked averages) are copied from the source at each update.
    """

    def __init__(self, source: nn.Module, beta: float, ramp: str = "step", start: int = 0) -> None:
        self.module = copy.deepcopy(source).eval().requires_grad_(False)
        self.beta, self.ramp, self.start = beta, ramp, start
        ema_beta(0, beta, ramp, start)  # validates `ramp`

    @torch.no_grad()
    def update(self, source: nn.Module, step: int) -> float:
        """Average `source` in at loop step `step`; returns the beta used."""
        b = ema_beta(step, self.beta, self.ramp, self.start)
        e, m = list(self.module.parameters()), list(source.parameters())
        torch._foreach_lerp_(e, m, 1.0 - b)
        for be, bm in zip(self.module.buffers(), source.buffers()):
            be.copy_(bm)
        return b
