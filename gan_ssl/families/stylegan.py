"""The `stylegan` family: Karras, Laine, Aila, "A Style-Based Generator Architecture for Generative
Adversarial Networks", CVPR 2019, with StyleGAN2's lazy R1 (Karras et al. 2020, sec. 3.1 / appendix B).

Phases per loop step: "D" (`train.n_dis` times) -- non-saturating logistic loss softplus(D(G(z))) +
softplus(-D(x)) plus the self-supervised terms on rotated reals; "Dreg" every `loss.r1_every` steps --
gamma / 2 * E||grad_x D(x)||^2 on reals, times the D steps it stands for; "G" -- softplus(-D(G(z))) plus
the terms on rotated fakes. Every fake batch uses style mixing regularisation (sec. 3.1): with probability
`loss.style_mixing` a second latent takes over from one random crossover layer on. The G phase updates
G.w_avg (EMA, beta `loss.w_avg_beta`), which truncation reads at sampling time. Progressive growing is
optional and uses the pggan family's schedule (`loss.grow.*`).

Sampling options: `truncation` (psi), `cutoff` (layers truncated; default all), `noise` ("random" per
image from the seed, or "none"). `style_mix_grid` writes the paper's fig. 3: coarse styles from one seed,
fine styles from another.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from gan_ssl.core.errors import ConfigError, DataError
from gan_ssl.core.seeds import derive_seed
from gan_ssl.data import to_uint8
from gan_ssl.families.base import Batch, Logs, Phase, StepContext, register_family
from gan_ssl.families.progressive import GrowConfig, ProgressiveFamily
from gan_ssl.models.pggan import upscale
from gan_ssl.nn.losses import d_nonsaturating, g_nonsaturating, r1_penalty

if TYPE_CHECKING:
    from gan_ssl.config import Config

NOISE_MODES = ("random", "none")


@dataclass
class StyleGANLoss:
    r1_gamma: float = 1.0  # R1 weight gamma on reals (StyleGAN: 10 at 1024 px; small images need far less)
    r1_every: int = 16  # lazy R1: a "Dreg" phase every 16 steps, scaled by the D steps it stands for (StyleGAN2)
    style_mixing: float = 0.9  # probability of mixing two latents in a fake batch (paper: 0.9); 0 = off
    w_avg_beta: float = 0.995  # EMA of the mean w that truncation pulls towards (paper: 0.995)
    grow: GrowConfig = field(default_factory=lambda: GrowConfig(enabled=False))  # progressive growing (off by default)

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"r1_gamma": (0, float("inf")), "r1_every": (1, 10**6),
                                                         "style_mixing": (0, 1), "w_avg_beta": (0, 1),
                                                         **{f"grow.{k}": v for k, v in GrowConfig.RANGES.items()}}


@register_family("stylegan")
class StyleGANFamily(ProgressiveFamily):
    loss_config = StyleGANLoss
    default_model = "stylegan"
    sample_options = ("truncation", "cutoff", "noise")

    def __init__(self, cfg: "Config", device: torch.device | str = "cpu", training: bool = True) -> None:
        super().__init__(cfg, device, training)
        if not training:
            return
        t, loss = cfg.train, cfg.loss
        self.phases = [Phase("D", ("D", "aux"), "D", self.phase_d, repeat=t.n_dis)]
        if loss.r1_gamma > 0:
            self.phases.append(Phase("Dreg", ("D",), "D", self.phase_dreg, every=loss.r1_every))
        self.phases.append(Phase("G", ("G",), "G", self.phase_g, batch=False))

    @classmethod
    def validate(cls, cfg: "Config") -> None:
        super().validate(cfg)
        if cfg.model.mapping_lr_mul <= 0:
            raise ConfigError(f"config key 'model.mapping_lr_mul' = {cfg.model.mapping_lr_mul} must be above 0 (paper: 0.01)")

    # --- phases --------------------------------------------------------------------------------
    def fakes(self, n: int, device: torch.device, track_w_avg: bool = False) -> torch.Tensor:
        """n unclamped fakes at the current level, with style mixing: with probability `loss.style_mixing` a
        second latent's w replaces the first from one random crossover layer on (one per batch). [n, C, r, r]"""
        G, loss = self.G, self.cfg.loss
        w = G.mapping(G.sample_z(n, device=device))  # [n, w_dim]
        if track_w_avg:
            G.track_w_avg(w, loss.w_avg_beta)
        ws = w.unsqueeze(1).repeat(1, G.num_ws, 1)  # [n, num_ws, w_dim]
        if loss.style_mixing > 0 and float(torch.rand(())) < loss.style_mixing:
            layers = 2 * (self.level + 1)  # layers in use at this level
            cutoff = int(torch.randint(1, layers, ()))
            ws[:, cutoff:] = G.mapping(G.sample_z(n, device=device)).unsqueeze(1)
        return G.synthesis(ws, self.level, self.alpha)

    def phase_d(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """Logistic loss on faded reals and (mixed) fakes at the current level + weighted auxiliary terms on reals."""
        assert batch is not None
        real = self.augment(self.reals(batch))  # [B, C, r, r]
        logs: Logs = {}
        with ctx.autocast():
            real_logits, feats = self.D.forward_with_feature(real, self.alpha)
            with torch.no_grad():
                fake = self.fakes(real.shape[0], ctx.device)
            fake_logits = self.D(self.augment(fake), self.alpha)
            adv = d_nonsaturating(real_logits.float(), fake_logits.float())
            loss = adv + self.aux_terms("d", real, feats, logs)
        ctx.backward(loss)
        logs.update(loss=loss.detach(), d_adv=adv.detach(), d_real=real_logits.detach().float().mean(),
                    d_fake=fake_logits.detach().float().mean())
        return logs

    def phase_dreg(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """Lazy R1: gamma / 2 * E||grad_x D(aug(x))||^2 on faded reals x (the gradient through DiffAugment, as
        StyleGAN2-ADA's), times the D steps this phase stands for."""
        assert batch is not None
        real = self.reals(batch).detach().requires_grad_(True)
        with ctx.autocast():
            logits = self.D(self.augment(real), self.alpha)
        penalty = r1_penalty(logits.float(), real)
        loss = penalty * (self.cfg.loss.r1_gamma / 2 * self.cfg.loss.r1_every * self.cfg.train.n_dis)
        ctx.backward(loss)
        return {"loss": loss.detach(), "r1": penalty.detach()}

    def phase_g(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """softplus(-D(G(z))) on (mixed) fakes + weighted auxiliary terms on fakes; updates w_avg."""
        logs: Logs = {}
        with ctx.autocast():
            fake = self.augment(self.fakes(self.batch_size(ctx), ctx.device, track_w_avg=True))
            logits, feats = self.D.forward_with_feature(fake, self.alpha)
            adv = g_nonsaturating(logits.float())
            loss = adv + self.aux_terms("g", fake, feats, logs)
        ctx.backward(loss)
        logs.update(loss=loss.detach(), g_adv=adv.detach())
        return logs

    # --- evaluation ----------------------------------------------------------------------------
    def _noise(self, first: int, count: int, seed: int, mode: str) -> list[torch.Tensor] | None:
        """Noise maps of images first .. first + count - 1, each image's from its own seeded generator (so a
        seed gives the same images at any batch size); zeros for mode 'none'. One [count, 1, r, r] per layer."""
        sides = self.G.noise_resolutions(self.level)
        if mode == "none":
            return [torch.zeros(count, 1, r, r, device=self.device) for r in sides]
        total = sum(r * r for r in sides)
        flat = torch.stack([torch.randn(total, generator=torch.Generator().manual_seed(derive_seed(seed, "noise", i)))
                            for i in range(first, first + count)])  # [count, total]
        return [m.reshape(count, 1, r, r).to(self.device) for m, r in zip(flat.split([r * r for r in sides], dim=1), sides)]

    def synthesize(self, ws: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
        """G_ema's images of ws [B, num_ws, w_dim] at the current level, upsampled to full resolution, clamped."""
        G = self.ema_module("G_ema")
        return upscale(G.synthesis(ws, self.level, self.alpha, noise).clamp(-1, 1), self.cfg.data.resolution)

    @torch.no_grad()
    def grid(self) -> torch.Tensor:
        """The fixed latents with fixed noise (its own generator: the grid never touches the training RNG)."""
        z = self.buffers["fixed_z"]
        return self.synthesize(self.ema_module("G_ema").mapping(z), self._noise(0, z.shape[0], derive_seed(self.cfg.seed, "grid noise"), "random"))

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, batch_size: int = 256, truncation: float = 1.0, cutoff: int | None = None,
               noise: str = "random", **options: Any) -> torch.Tensor:
        """n images uint8 [n, C, R, R]; truncation psi (w_avg + psi (w - w_avg)) on the first `cutoff` layers."""
        self.check_sample_options(options)
        if n < 1:
            raise DataError(f"number of images must be at least 1, got {n}")
        if noise not in NOISE_MODES:
            raise ConfigError(f"noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
        G = self.ema_module("G_ema")
        z = G.sample_z(n, torch.Generator().manual_seed(seed))
        out = []
        for i in range(0, n, batch_size):
            zb = z[i : i + batch_size].to(self.device)
            ws = G.truncate(G.mapping(zb), truncation, cutoff)
            out.append(to_uint8(self.synthesize(ws, self._noise(i, zb.shape[0], seed, noise))).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def style_mix(self, rows: int, cols: int, seed: int = 0, truncation: float = 1.0, crossover: int | None = None) -> torch.Tensor:
        """The style-mixing figure as uint8 images [(rows + 1) * (cols + 1), C, R, R], row-major: a grey corner,
        the column sources (fine styles) along the top, the row sources (coarse styles) down the left, and cell
        (i, j) = coarse layers (< crossover; default: 4x4 and 8x8) of row source i, the rest of column source j.
        Row sources come from `seed`, column sources from `seed + 1`; one noise draw is shared by every cell."""
        G = self.ema_module("G_ema")
        layers = 2 * (self.level + 1)
        k = min(4, layers - 1) if crossover is None else crossover
        if not 1 <= k < layers:
            raise ConfigError(f"crossover must be between 1 and {layers - 1} (layers in use), got {k}")
        w_rows = G.truncate(G.mapping(G.sample_z(rows, torch.Generator().manual_seed(seed)).to(self.device)), truncation)
        w_cols = G.truncate(G.mapping(G.sample_z(cols, torch.Generator().manual_seed(seed + 1)).to(self.device)), truncation)
        noise1 = self._noise(0, 1, seed, "random")

        def render(ws: torch.Tensor) -> torch.Tensor:
            return to_uint8(self.synthesize(ws, [m.expand(ws.shape[0], -1, -1, -1) for m in noise1])).cpu()

        top, left = render(w_cols), render(w_rows)
        mixed = w_cols.unsqueeze(0).repeat(rows, 1, 1, 1)  # [rows, cols, num_ws, w_dim]
        mixed[:, :, :k] = w_rows[:, None, :k]
        cells = render(mixed.flatten(0, 1)).view(rows, cols, *top.shape[1:])
        corner = torch.full_like(top[:1], 128)
        out = [corner, top]
        for i in range(rows):
            out += [left[i : i + 1], cells[i]]
        return torch.cat(out)


def parse_rows_cols(text: str) -> tuple[int, int]:
    """'4,6' -> (4, 6); anything else is a ConfigError naming the expected form."""
    try:
        rows, cols = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--style-mix takes ROWS,COLS (two positive integers, e.g. 4,6), got {text!r}") from None
    if rows < 1 or cols < 1:
        raise ConfigError(f"--style-mix takes ROWS,COLS of at least 1 each, got {text!r}")
    return rows, cols
