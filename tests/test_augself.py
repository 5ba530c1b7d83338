"""AugSelf-GAN (Hou et al. 2023): DiffAugment's parameters, the regression targets on each side, the originals as
extra D rows, and the config rules."""
import contextlib

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_cfg

from gan_ssl.core.errors import ConfigError
from gan_ssl.families import FAMILIES, StepContext
from gan_ssl.families.resolve import resolve
from gan_ssl.families.ssl import Augmented, AugSelfTask
from gan_ssl.models import build
from gan_ssl.nn.augment import PARAM_DIMS, diff_augment, diff_augment_with_params

OFF = ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0"]
AUGSELF = [*OFF, "train.diffaug=translation,cutout", "aux.augself.d_weight=1", "aux.augself.g_weight=1"]


def _ctx():
    return StepContext(torch.device("cpu"), contextlib.nullcontext, lambda loss: loss.backward())


def test_params_come_from_the_same_draws_and_describe_what_was_done():
    """diff_augment_with_params makes the images diff_augment makes from the same RNG state, and its parameters
    give back each image's translation and cutout centre (normalised to [0, 1] as the official code does)."""
    x = torch.rand(32, 3, 16, 16) + 1  # strictly positive: zeros mark filled or cut pixels
    torch.manual_seed(5)
    plain = diff_augment(x, ["color", "translation", "cutout"])
    torch.manual_seed(5)
    out, params = diff_augment_with_params(x, ["color", "translation", "cutout"])
    torch.testing.assert_close(out, plain, rtol=0, atol=0)
    assert {k: tuple(v.shape) for k, v in params.items()} == {op: (32, PARAM_DIMS[op]) for op in ("color", "translation", "cutout")}
    assert all(((v >= 0) & (v <= 1)).all() for v in params.values())

    torch.manual_seed(1)
    shifted, p = diff_augment_with_params(x, ["translation"])
    s = 2  # 1/8 of 16 pixels
    for img, aug, (px, py) in zip(x, shifted, p["translation"]):
        tx, ty = round(float((px - 0.5) * 2 * s)), round(float((py - 0.5) * 2 * s))
        pad = F.pad(img, (s, s, s, s))  # out[i, j] = img[i + tx, j + ty], zero outside
        torch.testing.assert_close(aug, pad[:, s + tx : s + tx + 16, s + ty : s + ty + 16])

    torch.manual_seed(2)
    cut, p = diff_augment_with_params(x, ["cutout"])
    for aug, (px, py) in zip(cut, p["cutout"]):
        cx, cy = round(float(px * 16)), round(float(py * 16))  # an 8-pixel square: centre range 0..16
        zero = (aug[0] == 0).nonzero()
        assert zero[:, 0].min() == max(cx - 4, 0) and zero[:, 0].max() == min(cx + 3, 15)
        assert zero[:, 1].min() == max(cy - 4, 0) and zero[:, 1].max() == min(cy + 3, 15)


class _Lin(torch.nn.Module):
    feature_dim, spectral_norm = 3, False


@pytest.mark.parametrize("fuse", ["difference", "single"])
def test_augself_targets_on_each_side_match_a_hand_computation(fuse):
    """D: MSE(pred, omega) on reals, MSE(pred, -omega) on fakes; G: MSE(pred, omega) - MSE(pred, -omega); the head
    reads D(aug) - D(original) (difference) or D(aug) alone (single), one head per op, losses summed over ops."""
    torch.manual_seed(0)
    task = AugSelfTask(_Lin(), d_weight=0.5, g_weight=2.0, fuse=fuse, ops=["translation", "cutout"])
    x, orig = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    omega = {"translation": torch.rand(4, 2), "cutout": torch.rand(4, 2)}
    extra, context = task.extra_inputs(x, "d", Augmented(orig, omega))
    assert torch.equal(extra, orig) if fuse == "difference" else extra.shape[0] == 0
    up, ex = torch.randn(4, 3), torch.randn(4 if fuse == "difference" else 0, 3)
    feats = up - ex if fuse == "difference" else up
    pred = {op: task.heads[op](feats) for op in omega}
    want = {
        "d": 0.5 * sum(F.mse_loss(pred[op], omega[op]) for op in omega),
        "d_fake": 0.5 * sum(F.mse_loss(pred[op], -omega[op]) for op in omega),
        "g": 2.0 * sum(F.mse_loss(pred[op], omega[op]) - F.mse_loss(pred[op], -omega[op]) for op in omega),
    }
    for side, value in want.items():
        got, logs = task.loss(side, up, ex, context)
        torch.testing.assert_close(got, value)
        assert any(k.startswith("augself_") for k in logs)


def test_augself_family_feeds_the_originals_and_trains_the_heads():
    """In the D phase D sees [augmented reals, original reals] and [augmented fakes, original fakes], in the G phase
    [augmented fakes, original fakes]; the heads get gradients in the D phase."""
    torch.manual_seed(0)
    cfg = tiny_cfg("model.name=dcgan", "train.precision=fp32", "train.channels_last=false", *AUGSELF, model="dcgan")
    fam = FAMILIES["gan"](cfg, "cpu", training=True)
    inputs = []
    conv = next(m for m in fam.D.modules() if isinstance(m, torch.nn.Conv2d))  # D's first layer sees every row
    hook = conv.register_forward_pre_hook(lambda m, a: inputs.append(a[0].detach().clone()))
    batch = {"image": torch.rand(8, 1, 32, 32) * 2 - 1}
    fam.phase_d(batch, _ctx())
    hook.remove()
    real_rows = inputs[0]
    assert real_rows.shape[0] == 16 and torch.equal(real_rows[8:], batch["image"])  # originals after the augmented rows
    assert not torch.equal(real_rows[:8], batch["image"])
    assert inputs[1].shape[0] == 16
    heads = fam.aux["augself"].heads
    assert set(heads) == {"translation", "cutout"}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.parameters())
    inputs.clear()
    hook = conv.register_forward_pre_hook(lambda m, a: inputs.append(a[0].shape[0]))
    ctx = _ctx()
    ctx.sched["batch_size"] = 8
    logs = fam.phase_g(None, ctx)
    hook.remove()
    assert inputs == [16] and "augself_g" in logs


@pytest.mark.parametrize("overrides,message", [
    ([*OFF, "aux.augself.d_weight=1"], "needs train.diffaug"),
    ([*OFF, "aux.augself.d_weight=1", "train.diffaug=,"], "needs train.diffaug"),
    ([*AUGSELF, "aux.contrastive.d_weight=1"], "are alternatives"),
    ([*AUGSELF, "aux.augself.fuse=both"], "aux.augself.fuse"),
])
def test_augself_config_rules(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve("configs/ssgan_fmnist.yaml", overrides)


def test_augself_preset_is_diffaug_plus_the_papers_weights():
    cfg = resolve("configs/augself_fmnist.yaml", [])
    assert cfg.train.diffaug == "translation,cutout"
    assert (cfg.aux.augself.d_weight, cfg.aux.augself.g_weight, cfg.aux.augself.fuse) == (1.0, 1.0, "difference")
    assert cfg.aux.rotation.d_weight == 0 and cfg.aux.contrastive.d_weight == 0
    fam = FAMILIES["gan"](cfg, "cpu", training=False)
    assert list(fam.aux.keys()) == ["augself"]


def test_other_families_refuse_augself():
    with pytest.raises(ConfigError, match="does not apply aux.augself"):
        resolve("configs/pggan_fmnist.yaml", ["train.diffaug=translation", "aux.augself.d_weight=1"])


def test_spectral_norm_d_gets_spectral_norm_heads():
    D = build("sngan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8)[1]
    task = AugSelfTask(D, ops=["translation"])
    assert any("parametrizations" in n or "weight_orig" in n for n, _ in task.heads.named_parameters())


def test_augself_rows_reads_the_first_share_of_the_batch_and_adds_only_their_originals():
    """rows=0.25 (the augself-quarter variant): the first quarter of the batch carries the loss, and only those
    originals are extra D rows, in the real and the fake pass alike."""
    torch.manual_seed(0)
    task = AugSelfTask(_Lin(), ops=["translation"], rows=0.25)
    x, orig, omega = torch.rand(8, 1, 8, 8), torch.rand(8, 1, 8, 8), {"translation": torch.rand(8, 2)}
    extra, context = task.extra_inputs(x, "d", Augmented(orig, omega))
    assert torch.equal(extra, orig[:2]) and torch.equal(context["translation"], omega["translation"][:2])
    up, ex = torch.randn(8, 3), torch.randn(2, 3)
    got, _ = task.loss("d", up, ex, context)
    torch.testing.assert_close(got, F.mse_loss(task.heads["translation"](up[:2] - ex), omega["translation"][:2]))
    cfg = tiny_cfg("model.name=dcgan", "train.precision=fp32", *AUGSELF, "aux.augself.rows=0.25", model="dcgan")
    fam = FAMILIES["gan"](cfg, "cpu", training=True)
    conv = next(m for m in fam.D.modules() if isinstance(m, torch.nn.Conv2d))
    seen = []
    hook = conv.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    fam.phase_d({"image": torch.rand(8, 1, 32, 32) * 2 - 1}, _ctx())
    hook.remove()
    assert seen == [10, 10]
