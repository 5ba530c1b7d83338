"""The `gan` family: one generator, one discriminator, self-supervised heads on D, an EMA of G.

Phases per loop step (StyleGAN2-ADA's naming): "D" n_dis times (adversarial + auxiliary terms on
real images), "Dreg" every `loss.r1_every` steps (lazy R1, Mescheder et al. 2018, scaled by the
number of D steps it stands for), "G" once (adversarial + auxiliary terms on fakes). Models: dcgan,
sngan (and any model registered for this family that builds a (Generator, Discriminator) pair).

The real/fake loss reads D's logits of upright images only; auxiliary tasks append their images
(rotations) to the same D pass and read the pooled features of those rows (`gan_ssl.families.ssl`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from gan_ssl.core.errors import ConfigError, DataError
from gan_ssl.data import to_uint8
from gan_ssl.families.base import Batch, Family, Logs, Phase, Representation, StepContext, build_model, register_family
from gan_ssl.families.ssl import Augmented, AuxTask, build_aux_tasks
from gan_ssl.models.base import Discriminator, Generator, refresh_bn_stats
from gan_ssl.nn.augment import diff_augment_with_params, parse_policy
from gan_ssl.nn.losses import ADVERSARIAL, r1_penalty

if TYPE_CHECKING:
    from gan_ssl.config import Config


@dataclass
class GANLoss:
    adversarial: str = "hinge"  # hinge | ns (non-saturating); hinge is SN-GAN's and SSGAN's choice
    d_adv_weight: float = 1.0  # 0 trains D on its auxiliary tasks alone (rotation-only ablation); G's adversarial term is then off too
    r1_gamma: float = 0.0  # R1 penalty on real images (Mescheder et al. 2018); 0 = off
    r1_every: int = 16  # lazy R1: a "Dreg" phase every N loop steps, scaled by the D steps it stands for (StyleGAN2)

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"adversarial": tuple(ADVERSARIAL)}
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"d_adv_weight": (0, float("inf")), "r1_gamma": (0, float("inf")),
                                                         "r1_every": (1, 10**6)}


@torch.no_grad()
def generate(G: Generator, n: int, seed: int = 0, batch_size: int = 256, device: torch.device | str = "cpu") -> torch.Tensor:
    """n images from G as uint8 [n, C, H, W]; latents are drawn at once, so batching does not change them."""
    if n < 1:
        raise DataError(f"number of images must be at least 1, got {n}")
    z = G.sample_z(n, torch.Generator().manual_seed(seed))  # [n, z_dim] on the CPU
    return torch.cat([to_uint8(G(z[i : i + batch_size].to(device))).cpu() for i in range(0, n, batch_size)])


def build_g_d_aux(fam: Family) -> tuple[Generator, Discriminator, torch.nn.ModuleDict]:
    """The config's G and D and D's auxiliary heads, placed on the family's device as nets G, D, aux,
    with G's EMA and the grid latents (the gan and progressive families)."""
    G, D = build_model(fam.cfg)
    aux = build_aux_tasks(fam.cfg.aux, D, fam.diffaug)
    fam.G, fam.D, fam.aux = fam.place(G), fam.place(D), aux.to(fam.device)
    fam.nets = {"G": fam.G, "D": fam.D, "aux": fam.aux}
    fam.track_generator(fam.G)
    return fam.G, fam.D, fam.aux


class EMAGeneratorSampling:
    """Sampling from the EMA generator `G_ema` (z -> image), BatchNorm standing statistics refreshed first;
    shared by the families whose G maps a latent alone (gan, bigbigan)."""

    cfg: "Config"
    device: torch.device

    def prepare_eval(self) -> None:
        refresh_bn_stats(self.ema_module("G_ema"), self.device, seed=self.cfg.seed)  # type: ignore[attr-defined]

    @torch.no_grad()
    def grid(self) -> torch.Tensor:
        return self.ema_module("G_ema")(self.buffers["fixed_z"])  # type: ignore[attr-defined]

    def sample(self, n: int, seed: int = 0, batch_size: int = 256, **options: Any) -> torch.Tensor:
        self.check_sample_options(options)  # type: ignore[attr-defined]
        return generate(self.ema_module("G_ema"), n, seed, batch_size, self.device)  # type: ignore[attr-defined]


def d_representation(D: Discriminator, name: str = "D") -> Representation:
    """D's named block outputs (and 'penultimate') as a representation; 'all' = every block."""
    blocks = list(D.blocks.keys())
    return Representation(name, D, D.features, blocks, [*blocks, "penultimate"])


@register_family("gan")
class GANFamily(EMAGeneratorSampling, Family):
    loss_config = GANLoss
    default_model = "sngan"
    representations = ("D",)
    supported_aux = ("rotation", "label_aug", "contrastive", "augself")
    lazy_aux = True

    def __init__(self, cfg: "Config", device: torch.device | str = "cpu", training: bool = True) -> None:
        super().__init__(cfg, device, training)
        t = cfg.train
        G, D, aux = build_g_d_aux(self)
        loss = cfg.loss
        self.d_adv, self.g_adv = ADVERSARIAL[loss.adversarial]
        self.adv_weight = loss.d_adv_weight  # G's adversarial term follows D's: no real/fake head, no signal for G
        every = {name: int(getattr(getattr(cfg.aux, name), "every", 1)) for name in aux.keys()}
        self.tasks: list[AuxTask] = [task for name, task in aux.items() if every[name] == 1]  # in the D and G phases
        self.lazy_tasks: list[AuxTask] = [task for name, task in aux.items() if every[name] > 1]  # in their own phases
        self.aux_every = max(every.values(), default=1)
        self.fold = cfg.aux.rotation.lazy == "fold" and bool(self.lazy_tasks)  # lazy rows in the D/G passes of every k-th step
        self.head_task = next((task for task in self.tasks if type(task).adversarial_logits is not AuxTask.adversarial_logits), None)
        self.joint_pass = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in D.modules())
        if not training:
            return
        self.optimizers = {
            "G": torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=(t.beta1_g, t.beta2_g)),
            "D": torch.optim.Adam([*D.parameters(), *aux.parameters()], lr=t.lr_d, betas=(t.beta1_d, t.beta2_d)),
        }
        self.phases = [Phase("D", ("D", "aux"), "D", self.phase_d, repeat=t.n_dis)]
        if loss.r1_gamma > 0:
            self.phases.append(Phase("Dreg", ("D",), "D", self.phase_dreg, every=loss.r1_every))
        if self.lazy_tasks and not self.fold:  # lazy self-supervision (like lazy R1): every k steps, its loss scaled by k
            k = self.aux_every
            self.phases.append(Phase("Daux", ("D", "aux"), "D", self.phase_d_aux, every=k))
        if self.adv_weight > 0 or any(task.weight("g") > 0 for task in self.tasks):
            self.phases.append(Phase("G", ("G",), "G", self.phase_g, batch=False))
        if not self.fold and any(task.weight("g") > 0 for task in self.lazy_tasks):
            self.phases.append(Phase("Gaux", ("G",), "G", self.phase_g_aux, every=self.aux_every, batch=False))

    @classmethod
    def validate(cls, cfg: "Config") -> None:
        aux = cfg.aux
        if cfg.loss.d_adv_weight == 0 and not any(getattr(aux, f.name).d_weight > 0 for f in dataclasses.fields(aux)):
            raise ConfigError("D has nothing to learn: loss.d_adv_weight and every aux.*.d_weight are 0")
        if (aux.rotation.d_weight > 0 or aux.rotation.g_weight > 0) and (aux.label_aug.d_weight > 0 or aux.label_aug.g_weight > 0):
            raise ConfigError("aux.rotation (SSGAN) and aux.label_aug (SSGAN-LA) are alternatives: the LA head already predicts the "
                              "rotation; set the weights of one of them to 0")
        if aux.contrastive.d_weight > 0 and cfg.loss.d_adv_weight == 0:
            raise ConfigError("aux.contrastive scores real/fake with a head trained by the adversarial loss; keep loss.d_adv_weight > 0")
        if (aux.augself.d_weight > 0 or aux.augself.g_weight > 0) and not parse_policy(cfg.train.diffaug, cfg.data.channels):
            raise ConfigError("aux.augself predicts DiffAugment's parameters and needs train.diffaug (e.g. translation,cutout)")
        if (aux.augself.d_weight > 0 or aux.augself.g_weight > 0) and aux.contrastive.d_weight > 0:
            raise ConfigError("aux.augself and aux.contrastive are alternatives: ContraD's D sees SimCLR views, not the DiffAugment "
                              "views whose parameters augself predicts; set the weights of one of them to 0")
        if aux.rotation.every > 1 and cfg.loss.d_adv_weight == 0:
            raise ConfigError("aux.rotation.every > 1 (lazy rotation) needs the adversarial loss in the D phase; "
                              "for the rotation-only ablation use aux.rotation.every=1")

    # --- phases --------------------------------------------------------------------------------
    def _augment(self, x: torch.Tensor) -> tuple[torch.Tensor, Augmented | None]:
        """DiffAugment of x [B, C, H, W] (the same draws as `augment`) and what it did (None when off)."""
        if not self.diffaug:
            return x, None
        out, params = diff_augment_with_params(x, self.diffaug)
        return out, Augmented(x, params)

    def _d_pass(self, x: torch.Tensor, side: str, tasks: list[AuxTask] | None = None,
                aug: Augmented | None = None) -> tuple[torch.Tensor, torch.Tensor, list[tuple[AuxTask, int, Any]]]:
        """D over the upright batch x [B, ...] (augmented; `aug` says how) and every active task's extra images (one pass for a BatchNorm D).
        Returns (real/fake logits of the upright rows [B], features of all rows [B + E, F], [(task, n_extra, context)]).
        A task with its own real/fake head (ContraD) supplies the logits and the view of x that D scores."""
        tasks = self.tasks if tasks is None else tasks
        adv = self.head_task.adversarial_view(x, side) if self.head_task is not None and self.head_task in tasks else x
        parts, extras, stats_only = [adv], [], []
        for task in tasks:
            if task.weight(side) > 0:
                images, context = task.extra_inputs(x, side, aug)
                if images.shape[0]:
                    parts.append(images)
                extras.append((task, images.shape[0], context))
            if self.joint_pass:
                # BatchNorm: the fake pass gets the same kind of extra rows as the real pass (for the statistics only),
                # or D could tell the two passes apart by their batch statistics instead of by their images
                balance = task.balance_inputs(x, side)
                if balance.shape[0]:
                    stats_only.append(balance)
        parts += stats_only  # after every row a loss reads
        if len(parts) == 1:
            logits, feats = self.D.forward_with_feature(adv)
        elif self.joint_pass:  # BatchNorm: upright and extra images share one set of batch statistics
            logits, feats = self.D.forward_with_feature(torch.cat(parts))
        else:  # batch-independent D: two passes give the same values, and a 4B batch runs ~14% slower on CPU
            logits, feats = self.D.forward_with_feature(adv)
            feats = torch.cat([feats, self.D.feature(torch.cat(parts[1:]))])
        logits = logits[: x.shape[0]]
        if self.head_task is not None:
            logits = self.head_task.adversarial_logits(feats[: x.shape[0]], side)
        return logits, feats, extras

    def _aux_terms(self, side: str, feats: torch.Tensor, batch: int, extras: list[tuple[AuxTask, int, Any]], logs: Logs) -> torch.Tensor:
        """Sum of the tasks' weighted losses; a lazy task's term is scaled by k, the steps it stands for."""
        total = feats.new_zeros(())
        upright, offset = feats[:batch], batch
        for task, n, context in extras:
            term, extra_logs = task.loss(side, upright, feats[offset : offset + n], context)
            offset += n
            total = total + (self.aux_every * term if task in self.lazy_tasks else term)
            logs.update(extra_logs)
        return total

    def _step_tasks(self, ctx: StepContext, phase: str) -> list[AuxTask]:
        """The tasks of this D or G phase: the every-step ones, plus the lazy ones under lazy=fold on every k-th
        loop step (in the first of the step's n_dis D phases only)."""
        if not self.fold or ctx.step % self.aux_every:
            return self.tasks
        if phase == "D" and ctx.counters.get("D", 0) % self.cfg.train.n_dis:
            return self.tasks
        return self.tasks + self.lazy_tasks

    def phase_d(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """Adversarial loss on upright reals and fakes + weighted auxiliary terms on reals (and on fakes for LA/ContraD)."""
        assert batch is not None
        real, real_aug = self._augment(batch["image"])  # [B, C, H, W]
        B, logs, tasks = real.shape[0], {}, self._step_tasks(ctx, "D")
        with ctx.autocast():
            real_logits, feats, extras = self._d_pass(real, "d", tasks, real_aug)
            loss = self._aux_terms("d", feats, B, extras, logs)
            if self.adv_weight > 0 or any(task.weight("d_fake") > 0 for task in tasks):
                with torch.no_grad():
                    fake = self.G(self.G.sample_z(B, device=ctx.device))
                fake, fake_aug = self._augment(fake)
                fake_logits, fake_feats, fake_extras = self._d_pass(fake, "d_fake", tasks, fake_aug)
                loss = loss + self._aux_terms("d_fake", fake_feats, B, fake_extras, logs)
                if self.adv_weight > 0:
                    adv = self.d_adv(real_logits.float(), fake_logits.float())
                    loss = loss + self.adv_weight * adv
                    logs.update(d_adv=adv.detach(), d_real=real_logits.detach().float().mean(), d_fake=fake_logits.detach().float().mean())
        ctx.backward(loss)
        logs["loss"] = loss.detach()
        return logs

    def phase_dreg(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """Lazy R1: gamma / 2 * E||grad_x D(aug(x))||^2 on reals x (DiffAugment as in the D phase, the gradient
        through it as StyleGAN2-ADA's), times the D steps this phase stands for."""
        assert batch is not None
        real = batch["image"].detach().requires_grad_(True)
        with ctx.autocast():
            logits = self.D(self.augment(real))
        penalty = r1_penalty(logits.float(), real)
        lazy = self.cfg.loss.r1_every * self.cfg.train.n_dis
        loss = penalty * (self.cfg.loss.r1_gamma / 2 * lazy)
        ctx.backward(loss)
        return {"loss": loss.detach(), "r1": penalty.detach()}

    def phase_g(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """Adversarial loss on fakes (unless D has no real/fake head) + weighted auxiliary terms on fakes."""
        B, logs = ctx.sched.get("batch_size", self.cfg.train.batch_size), {}
        with ctx.autocast():
            fake = self.G(self.G.sample_z(int(B), device=ctx.device))  # [B, C, H, W]
            fake, fake_aug = self._augment(fake)
            fake_logits, feats, extras = self._d_pass(fake, "g", self._step_tasks(ctx, "G"), fake_aug)
            loss = feats.new_zeros(())
            if self.adv_weight > 0:
                adv = self.g_adv(fake_logits.float())
                loss = loss + adv
                logs["g_adv"] = adv.detach()
            loss = loss + self._aux_terms("g", feats, fake.shape[0], extras, logs)
        ctx.backward(loss)
        logs["loss"] = loss.detach()
        return logs

    def phase_d_aux(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """Lazy self-supervision on reals (every k steps, weight times k): upright and rotated reals in one D pass,
        no adversarial term, so a BatchNorm D cannot tell real from fake by batch statistics here."""
        assert batch is not None
        (real, real_aug), logs = self._augment(batch["image"]), {}
        with ctx.autocast():
            _, feats, extras = self._d_pass(real, "d", self.lazy_tasks, real_aug)
            loss = self._aux_terms("d", feats, real.shape[0], extras, logs)
        ctx.backward(loss)
        logs["loss"] = loss.detach()
        return logs

    def phase_g_aux(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """Lazy self-supervision on fakes (every k steps, weight times k); D is frozen."""
        B, logs = int(ctx.sched.get("batch_size", self.cfg.train.batch_size)), {}
        with ctx.autocast():
            fake, fake_aug = self._augment(self.G(self.G.sample_z(B, device=ctx.device)))
            _, feats, extras = self._d_pass(fake, "g", self.lazy_tasks, fake_aug)
            loss = self._aux_terms("g", feats, B, extras, logs)
        ctx.backward(loss)
        logs["loss"] = loss.detach()
        return logs

    # --- evaluation ----------------------------------------------------------------------------
    def representation(self, name: str | None = None) -> Representation:
        self.check_representation(name)
        return d_representation(self.D)

    def describe(self) -> dict[str, Any]:
        return {"resolution": self.cfg.data.resolution, "aux_tasks": list(self.aux.keys()),
                "loss": dataclasses.asdict(self.cfg.loss)}
