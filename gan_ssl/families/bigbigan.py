"""The `bigbigan` family: a generator G, an encoder E and a joint discriminator D over (x, z).

Donahue & Simonyan, "Large Scale Adversarial Representation Learning", NeurIPS 2019 (BigBiGAN), which
extends BiGAN / ALI (Donahue et al. 2017; Dumoulin et al. 2017) with unary scores. D scores a pair by
s_x (from F(x)), s_z (from H(z)) and s_xz (from J(F(x), H(z))). With y = +1 for data pairs (x, E(x))
and y = -1 for generated pairs (G(z), z):
    D minimises   sum_k w_k h(y s_k)         h(t) = relu(1 - t), k in {x, z, xz}     (per-term hinge)
    E, G minimise sum_k w_k y s_k            E through s_z and s_xz, G through s_x and s_xz
w_xz = 1; `loss.sx_weight` and `loss.sz_weight` switch the unary terms (both 0: plain BiGAN).

Optional (off at weight 0): `loss.latent_regression_weight` adds to E's loss w * mean over the batch and dims of
(mu(G(z)) - z)^2 with G frozen, the latent regressor of the BiGAN paper (Donahue et al. 2017, sec. 4), here on top of
the adversarial terms; E sees [x, G(z)] in one pass (BatchNorm statistics over both halves). `loss.cycle_weight` adds
w * mean (G(E(x)) - x)^2, ALICE's cycle consistency (Li et al. 2017) in x space, through the frozen G (E learns only).

E's loss reads only data pairs and G's only generated pairs, so the joint E/G step of the paper is two
phases, each with its own optimizer and no work done twice. Per loop step: "D" (train.n_dis times, a real
batch each), "E" (a real batch; Adam at train.lr_g * loss.e_lr_mult), "G" (no batch). The rotation task
(`aux.rotation`, Chen et al. 2019) may attach to F: rotated reals in the D phase, rotated fakes in G's.

Representations: "encoder" (every stage of E plus its pooled BN+CReLU output, as D's blocks are read; `--layers pool`
or `--layers bn_crelu` for the paper's pooled readouts alone) and "D" (F's blocks, as for the gan family).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from gan_ssl.core.errors import ConfigError
from gan_ssl.families.base import Batch, Family, Logs, Phase, Representation, StepContext, build_model, register_family
from gan_ssl.families.gan import EMAGeneratorSampling, d_representation
from gan_ssl.families.ssl import AuxTask, build_aux_tasks
from gan_ssl.models.bigbigan import Encoder
from gan_ssl.nn.losses import bigan_d_hinge, bigan_ge_loss

if TYPE_CHECKING:
    from gan_ssl.config import Config


@dataclass
class BigBiGANLoss:
    sx_weight: float = 1.0  # unary score on x, s_x = F's linear head (BigBiGAN: 1); 0 removes the term for D and G
    sz_weight: float = 1.0  # unary score on z, s_z = H's linear head (BigBiGAN: 1); 0 removes it for D and E; both 0 = BiGAN
    e_lr_mult: float = 1.0  # E's learning rate = train.lr_g * this (E and G share Adam betas); 1 = G's rate
    latent_regression_weight: float = 0.0  # E also regresses z from G(z): w * mean (mu(G(z)) - z)^2 (BiGAN paper's latent
                                           # regressor baseline, Donahue et al. 2017, sec. 4); 0 = pure BigBiGAN
    cycle_weight: float = 0.0  # E also reconstructs x through G: w * mean (G(E(x)) - x)^2 with G frozen (ALICE's
                               # cycle consistency, Li et al. 2017, in x space); 0 = pure BigBiGAN

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"sx_weight": (0, 1e6), "sz_weight": (0, 1e6), "e_lr_mult": (1e-6, 1e6),
                                                        "latent_regression_weight": (0, 1e6), "cycle_weight": (0, 1e6)}


def encoder_representation(E: Encoder, name: str = "encoder") -> Representation:
    """E as a feature extractor. 'all' = every stage plus E's pooled representation ("bn_crelu", or "pool" without
    it): the protocol of the D representations (every block, pooled by `features.pool_map`). "pool" and
    "bn_crelu" alone are the BigBiGAN paper's readouts."""
    return Representation(name, E, E.features, [*E.stages.keys(), "bn_crelu" if E.bn_crelu else "pool"], E.layer_names())


@register_family("bigbigan")
class BigBiGANFamily(EMAGeneratorSampling, Family):
    loss_config = BigBiGANLoss
    default_model = "bigbigan"
    representations = ("encoder", "D")
    supported_aux = ("rotation",)

    def __init__(self, cfg: "Config", device: torch.device | str = "cpu", training: bool = True) -> None:
        super().__init__(cfg, device, training)
        t, loss = cfg.train, cfg.loss
        G, E, D = build_model(cfg)
        aux = build_aux_tasks(cfg.aux, D.F)
        self.G, self.E, self.D, self.aux = self.place(G), self.place(E), self.place(D), aux.to(self.device)
        self.nets = {"G": self.G, "E": self.E, "D": self.D, "aux": self.aux}
        self.track_generator(self.G)
        self.weights = {"x": loss.sx_weight, "z": loss.sz_weight, "xz": 1.0}
        self.do_latent_regression = loss.latent_regression_weight > 0
        self.do_cycle = loss.cycle_weight > 0
        self.tasks: list[AuxTask] = list(aux.values())
        if not training:
            return
        self.optimizers = {
            "D": torch.optim.Adam([*D.parameters(), *aux.parameters()], lr=t.lr_d, betas=(t.beta1_d, t.beta2_d)),
            "E": torch.optim.Adam(E.parameters(), lr=t.lr_g * loss.e_lr_mult, betas=(t.beta1_g, t.beta2_g)),
            "G": torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=(t.beta1_g, t.beta2_g)),
        }
        self.phases = [Phase("D", ("D", "aux"), "D", self.phase_d, repeat=t.n_dis),
                       Phase("E", ("E",), "E", self.phase_e),
                       Phase("G", ("G",), "G", self.phase_g, batch=False)]

    @classmethod
    def validate(cls, cfg: "Config") -> None:
        r = cfg.data.resolution
        if r < 16 or r & (r - 1):
            raise ConfigError(f"bigbigan needs data.resolution = 4 * 2^k >= 16 (G and F are SN-GAN's), got {r}")

    # --- phases --------------------------------------------------------------------------------
    def _terms(self, *keys: str) -> tuple[str, ...]:
        """The scores with a weight above 0 among `keys` (the joint score is always on)."""
        return tuple(k for k in keys if self.weights[k] > 0)

    def _aux(self, side: str, x: torch.Tensor, fx: torch.Tensor, logs: Logs) -> torch.Tensor:
        """Weighted auxiliary terms (rotation on F) for images x [B, ...] whose F features fx [B, F] exist."""
        total = fx.new_zeros(())
        for task in self.tasks:
            if task.weight(side) > 0:
                images, context = task.extra_inputs(x)
                term, extra_logs = task.loss(side, fx, self.D.F.feature(images), context)
                total = total + term
                logs.update(extra_logs)
        return total

    def phase_d(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """Per-term hinge on (x, E(x)) [y = +1] and (G(z), z) [y = -1] + weighted auxiliary terms on reals."""
        assert batch is not None
        x = batch["image"]  # [B, C, H, W]
        B = x.shape[0]
        with ctx.autocast():
            with torch.no_grad():
                z_hat = self.E(x)  # [B, z_dim], sampled
                z = self.G.sample_z(B, device=ctx.device)
                fake = self.G(z)
            f = self.D.F.feature(self.augment(torch.cat([x, fake])))  # [2B, F]: no BatchNorm in F, one pass for both halves
            fx, ff = f[:B], f[B:]
            terms = self._terms("x", "z", "xz")
            real_s, fake_s = self.D.scores(fx, z_hat, terms), self.D.scores(ff, z, terms)
            real_s, fake_s = {k: v.float() for k, v in real_s.items()}, {k: v.float() for k, v in fake_s.items()}
            loss, logs = bigan_d_hinge(real_s, fake_s, self.weights)
            logs.update(d_real_xz=real_s["xz"].detach().mean(), d_fake_xz=fake_s["xz"].detach().mean())
            loss = loss + self._aux("d", x, fx, logs)
        ctx.backward(loss)
        logs["loss"] = loss.detach()
        return logs

    def phase_e(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """E minimises w_z s_z + s_xz of data pairs (x, E(x)) (s_x does not depend on E), plus, when its weight is
        above 0, the latent regression w * mean (mu(G(z)) - z)^2 on generated images and the cycle term
        w * mean (G(E(x)) - x)^2 (G frozen in both)."""
        assert batch is not None
        x = batch["image"]
        B, logs = x.shape[0], {}
        with ctx.autocast():
            if self.do_latent_regression:
                with torch.no_grad():
                    z_gen = self.G.sample_z(B, device=ctx.device)  # [B, z_dim]
                    inputs = torch.cat([x, self.G(z_gen).to(x.dtype)])  # [2B, C, H, W]: one E pass, reals first
            else:
                inputs = x
            z_all, mu_all, sigma_all = self.E.sample(inputs)  # [B or 2B, z_dim] each
            z_hat, mu, sigma = z_all[:B], mu_all[:B], sigma_all[:B]
            with torch.no_grad():
                fx = self.D.F.feature(self.augment(x))  # F(x) carries no gradient to E
            s = self.D.scores(fx, z_hat, self._terms("z", "xz"))
            loss = bigan_ge_loss({k: v.float() for k, v in s.items()}, +1.0, self.weights)
            if self.do_latent_regression:
                reg = (mu_all[B:].float() - z_gen.float()).square().mean()
                logs["e_latent_reg"] = reg.detach()
                loss = loss + self.cfg.loss.latent_regression_weight * reg
            if self.do_cycle:
                cyc = (self.G(z_hat).float() - x.float()).square().mean()  # G(E(x)) [B, C, H, W] vs x
                logs["e_cycle"] = cyc.detach()
                loss = loss + self.cfg.loss.cycle_weight * cyc
        ctx.backward(loss)
        logs.update(loss=loss.detach(), e_sigma=sigma.detach().float().mean(), e_mu_norm=mu.detach().float().norm(dim=1).mean())
        return logs

    def phase_g(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """G minimises -(w_x s_x + s_xz) of generated pairs (G(z), z) (s_z does not depend on G) + auxiliary terms."""
        B, logs = int(ctx.sched.get("batch_size", self.cfg.train.batch_size)), {}
        with ctx.autocast():
            z = self.G.sample_z(B, device=ctx.device)
            fake = self.G(z)  # [B, C, H, W]
            ff = self.D.F.feature(self.augment(fake))
            s = self.D.scores(ff, z, self._terms("x", "xz"))
            loss = bigan_ge_loss({k: v.float() for k, v in s.items()}, -1.0, self.weights)
            logs["g_adv"] = loss.detach()
            loss = loss + self._aux("g", fake, ff, logs)
        ctx.backward(loss)
        logs["loss"] = loss.detach()
        return logs

    # --- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, ema: bool = True, sample: bool = True, seed: int = 0) -> torch.Tensor:
        """G(E(x)): x [B, C, H, W] in [-1, 1] -> [B, C, H, W] in [-1, 1], with the EMA generator (or the trained one
        when not `ema`). z = mu + sigma * eps with eps drawn from `seed` (the global RNG is untouched), as G was
        trained on; or E's mean when not `sample` (|mu| is below the prior's sqrt(z_dim), so early in training G maps
        it to faint images). E runs in eval mode and is put back as found."""
        G = self.ema_module("G_ema") if ema else self.G
        was = self.E.training
        self.E.eval()
        try:
            mu, sigma = self.E.encode(x.to(self.device))  # [B, z_dim] each
        finally:
            self.E.train(was)
        if sample:
            eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed)).to(mu)
            mu = mu + sigma * eps
        return G(mu)

    def representation(self, name: str | None = None) -> Representation:
        name = self.check_representation(name)
        return encoder_representation(self.E) if name == "encoder" else d_representation(self.D.F, "D")

    def describe(self) -> dict[str, Any]:
        return {"resolution": self.cfg.data.resolution, "aux_tasks": list(self.aux.keys()),
                "loss": dataclasses.asdict(self.cfg.loss), "encoder_feature_dim": self.E.feature_dim,
                "encoder_layers": self.E.layer_names()}

