"""A family that is not a GAN, registered for tests: proves the loop runs any named nets and phases.

Nets "A" and "B" (tiny convs), two optimizers, an EMA of A, phases "fit" (every step, twice, a batch each),
"shrink" (every 2nd step, no batch) and "grow" (every 3rd step, lazy 3). The schedule changes the batch
size at step 4, and `make_inputs` adds a seeded random mask to each batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gan_ssl.families import Family, Phase, Representation, register_family
from gan_ssl.models import register_model
from gan_ssl.nn.ema import EMA


@register_model("test-toy-net", family="test-toy")
def toy_net(resolution: int = 32, channels: int = 1, width: int = 4) -> tuple[nn.Module, nn.Module]:
    return nn.Conv2d(channels, width, 3, padding=1), nn.Conv2d(width, channels, 3, padding=1)


@dataclass
class ToyLoss:
    scale: float = 1.0


@register_family("test-toy")
class ToyFamily(Family):
    loss_config = ToyLoss
    default_model = "test-toy-net"
    representations = ("A",)

    def __init__(self, cfg: Any, device: Any = "cpu", training: bool = True) -> None:
        super().__init__(cfg, device, training)
        A, B = toy_net(cfg.data.resolution, cfg.data.channels, cfg.model.width)
        self.nets = {"A": A.to(self.device), "B": B.to(self.device)}
        self.emas = {"A_ema": ("A", EMA(A, cfg.train.ema_beta, cfg.train.ema_ramp))}
        self.buffers = {"probe_x": torch.randn(2, cfg.data.channels, 8, 8, generator=torch.Generator().manual_seed(cfg.seed))}
        self.seen: list[tuple[str, int, int]] = []  # (phase, step, batch size)
        self.masks: list[torch.Tensor] = []
        if training:
            self.optimizers = {"A": torch.optim.Adam(A.parameters(), lr=1e-2), "B": torch.optim.SGD(B.parameters(), lr=1e-2, momentum=0.9)}
            self.phases = [Phase("fit", ("A", "B"), "A", self.fit, repeat=2), Phase("shrink", ("B",), "B", self.shrink, every=2, batch=False),
                           Phase("grow", ("A",), "A", self.grow, every=3)]

    def schedule(self, ctx: Any) -> dict[str, float]:
        return {"batch_size": 4 if ctx.step < 4 else 6, "alpha": min(1.0, ctx.step / 4)}

    def make_inputs(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        b = batch["image"]
        return {**batch, "mask": (torch.rand(b.shape[0], 1, *b.shape[2:], generator=generator) > 0.5).to(b)}

    def fit(self, batch: Any, ctx: Any) -> dict[str, torch.Tensor]:
        x = batch["image"] * batch["mask"]
        self.seen.append(("fit", ctx.step, x.shape[0]))
        self.masks.append(batch["mask"].clone())
        loss = (self.nets["B"](torch.relu(self.nets["A"](x))) - batch["image"]).square().mean()
        ctx.backward(loss)
        return {"loss": loss.detach()}

    def shrink(self, batch: Any, ctx: Any) -> dict[str, torch.Tensor]:
        assert batch is None
        self.seen.append(("shrink", ctx.step, 0))
        loss = sum(p.square().sum() for p in self.nets["B"].parameters()) * 1e-3
        ctx.backward(loss)
        return {"loss": loss.detach(), "alpha": torch.tensor(ctx.sched["alpha"])}

    def grow(self, batch: Any, ctx: Any) -> dict[str, torch.Tensor]:
        self.seen.append(("grow", ctx.step, batch["image"].shape[0]))
        loss = -3.0 * self.nets["A"](batch["image"]).std() * 1e-2
        ctx.backward(loss)
        return {"loss": loss.detach()}

    @torch.no_grad()
    def grid(self) -> torch.Tensor:
        return torch.tanh(self.nets["B"](self.ema_module("A_ema")(torch.zeros(4, self.cfg.data.channels, 8, 8))))

    def representation(self, name: str | None = None) -> Representation:
        A = self.nets["A"]
        return Representation("A", A, lambda x: {"conv": A(x)}, ["conv"], ["conv"])
