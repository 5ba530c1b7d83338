"""The GAN objective: forward and backward for each training phase, so the loop never sees a loss.

Phases (StyleGAN2-ADA style): "D" (adversarial + auxiliary terms on D), "Dreg" (lazy R1 on real
images), "G" (adversarial + auxiliary terms on G). Each call returns detached terms to log.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from gan_ssl.config import LossConfig
from gan_ssl.losses import ADVERSARIAL, r1_penalty
from gan_ssl.models.base import Discriminator, Generator

Logs = dict[str, torch.Tensor]


class GANObjective:
    """Unconditional GAN loss with pluggable auxiliary tasks on D.

    Args:
        G, D: the networks. aux: tasks from `gan_ssl.aux.build_aux_tasks`.
        loss: the loss config. autocast: a context-manager factory (AMP or a no-op).
        backward: how to backpropagate a loss (plain, or through a GradScaler).
    """

    def __init__(
        self,
        G: Generator,
        D: Discriminator,
        aux: nn.ModuleDict,
        loss: LossConfig,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    ) -> None:
        self.G, self.D, self.aux, self.cfg = G, D, aux, loss
        self.d_adv, self.g_adv = ADVERSARIAL[loss.adversarial]
        self.autocast, self.backward = autocast, backward
        self.do_r1 = loss.r1_gamma > 0
        self.do_d_adv = loss.d_adv_weight > 0

    def _aux_terms(self, side: str, x: torch.Tensor, feat: torch.Tensor, logs: Logs) -> torch.Tensor:
        """Sum of the weighted aux losses of one side ("d" or "g") of every task whose weight is > 0."""
        total = feat.new_zeros(())
        for task in self.aux.values():
            if getattr(task, f"{side}_weight") > 0:
                term, extra = (task.d_loss if side == "d" else task.g_loss)(self.D, x, feat)
                total = total + term
                logs.update(extra)
        return total

    def phase_d(self, real: torch.Tensor, z: torch.Tensor) -> Logs:
        """real: [B, C, H, W] in [-1, 1]; z: [B, z_dim]."""
        logs: Logs = {}
        with self.autocast():
            real_logits, real_feat = self.D.forward_with_feature(real)  # [B], [B, F]
            loss = real_logits.new_zeros(())
            if self.do_d_adv:
                with torch.no_grad():
                    fake = self.G(z)
                fake_logits = self.D(fake)
                adv = self.d_adv(real_logits, fake_logits)
                loss = loss + self.cfg.d_adv_weight * adv
                logs.update(d_adv=adv.detach(), d_real=real_logits.detach().mean(), d_fake=fake_logits.detach().mean())
            loss = loss + self._aux_terms("d", real, real_feat, logs)
        self.backward(loss)
        logs["d_loss"] = loss.detach()
        return logs

    def phase_dreg(self, real: torch.Tensor, every: int) -> Logs:
        """Lazy R1: gamma / 2 * E||grad D(x)||^2, scaled by the interval `every`."""
        if not self.do_r1:
            return {}
        real = real.detach().requires_grad_(True)
        with self.autocast():
            logits = self.D(real)
        penalty = r1_penalty(logits.float(), real)
        self.backward(penalty * (self.cfg.r1_gamma / 2 * every))
        return {"r1": penalty.detach()}

    def phase_g(self, z: torch.Tensor) -> Logs:
        """z: [B, z_dim]. D's parameters should have requires_grad off (the trainer does it)."""
        logs: Logs = {}
        with self.autocast():
            fake = self.G(z)  # [B, C, H, W]
            fake_logits, fake_feat = self.D.forward_with_feature(fake)
            adv = self.g_adv(fake_logits)
            loss = adv + self._aux_terms("g", fake, fake_feat, logs)
        self.backward(loss)
        logs.update(g_adv=adv.detach(), g_loss=loss.detach())
        return logs
