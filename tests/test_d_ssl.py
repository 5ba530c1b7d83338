"""More self-supervision on D: SSGAN-LA labels, the contrastive D's losses and stop-gradient head, DiffAugment ops."""
import contextlib
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_cfg

from gan_ssl.core.errors import ConfigError
from gan_ssl.families import FAMILIES, StepContext
from gan_ssl.families.resolve import resolve
from gan_ssl.families.ssl import ContrastiveTask, LabelAugTask
from gan_ssl.models import build
from gan_ssl.nn.augment import cutout, diff_augment, parse_policy, random_resized_crop, simclr_view, translation
from gan_ssl.nn.losses import nt_xent, supcon_fakes


def _ctx():
    return StepContext(torch.device("cpu"), contextlib.nullcontext, lambda loss: loss.backward())


def _D():
    torch.manual_seed(0)
    return build("sngan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8)[1]


def test_label_augmentation_targets_for_each_side_and_rotation():
    D = _D()
    task = LabelAugTask(D, d_weight=0.5, g_weight=2.0, protocol="all").eval()  # fixed spectral-norm vectors
    assert task.head.out_features == 8 and task.weight("d") == task.weight("d_fake") == 0.5 and task.weight("g") == 2.0
    B = 2
    upright, extra = torch.randn(B, D.feature_dim), torch.randn(3 * B, D.feature_dim)
    logits = task.head(torch.cat([upright, extra])).float()  # rows grouped by k: 0, 0, 1, 1, 2, 2, 3, 3
    real_t = torch.tensor([0, 0, 2, 2, 4, 4, 6, 6])  # real rotated by k -> 2k
    fake_t = real_t + 1  # fake rotated by k -> 2k + 1
    d_real, _ = task.loss("d", upright, extra, None)
    d_fake, _ = task.loss("d_fake", upright, extra, None)
    g, logs = task.loss("g", upright, extra, None)
    torch.testing.assert_close(d_real, 0.5 * F.cross_entropy(logits, real_t))
    torch.testing.assert_close(d_fake, 0.5 * F.cross_entropy(logits, fake_t))
    torch.testing.assert_close(g, 2.0 * (F.cross_entropy(logits, real_t) - F.cross_entropy(logits, fake_t)))
    assert {"la_g", "la_fooled"} <= set(logs)


def test_label_augmentation_one_vs_all_shapes():
    D = _D()
    x = torch.randn(8, 1, 32, 32)
    allt, onet = LabelAugTask(D, protocol="all"), LabelAugTask(D, protocol="one")
    assert allt.extra_inputs(x)[0].shape == (24, 1, 32, 32)
    torch.manual_seed(3)
    images, (k, labels) = onet.extra_inputs(x)
    assert images.shape[0] == int((k != 0).sum()) < 8 + 1 and sorted(labels.tolist()) == sorted(k[k != 0].tolist())
    feats, kk = onet.rotated_features(torch.randn(8, D.feature_dim), torch.randn(images.shape[0], D.feature_dim), (k, labels))
    assert feats.shape[0] == kk.shape[0] == 8  # one rotated copy per image


def test_nt_xent_matches_a_hand_computation():
    torch.manual_seed(0)
    z1, z2 = torch.randn(3, 4), torch.randn(3, 4)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    tau, total = 0.5, 0.0
    for i in range(6):
        pos = (i + 3) % 6
        num = math.exp(float(z[i] @ z[pos]) / tau)
        den = sum(math.exp(float(z[i] @ z[j]) / tau) for j in range(6) if j != i)
        total += -math.log(num / den)
    assert nt_xent(z1, z2, tau).item() == pytest.approx(total / 6, rel=1e-5)


def test_supcon_on_fakes_matches_a_hand_computation():
    torch.manual_seed(1)
    f, r = F.normalize(torch.randn(3, 4), dim=1), F.normalize(torch.randn(2, 4), dim=1)
    tau, total = 0.2, 0.0
    for i in range(3):
        den = sum(math.exp(float(f[i] @ f[a]) / tau) for a in range(3) if a != i) + sum(math.exp(float(f[i] @ r[m]) / tau) for m in range(2))
        total += -sum(math.log(math.exp(float(f[i] @ f[p]) / tau) / den) for p in range(3) if p != i) / 2
    assert supcon_fakes(f, r, tau).item() == pytest.approx(total / 3, rel=1e-5)


def test_contrastive_head_reads_stop_gradient_features_in_the_d_phase_only():
    D = _D()
    task = ContrastiveTask(D, d_weight=1.0)
    feats = torch.randn(4, D.feature_dim, requires_grad=True)
    d_logits = task.adversarial_logits(feats, "d")
    assert d_logits.shape == (4,) and torch.autograd.grad(d_logits.sum(), feats, allow_unused=True)[0] is None
    g_logits = task.adversarial_logits(feats, "g")
    assert torch.autograd.grad(g_logits.sum(), feats)[0].abs().sum() > 0  # G learns through D's trunk
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    views, _ = task.extra_inputs(x, "d")  # the second real view; the first is the adversarial row
    assert views.shape == (4, 1, 32, 32) and task.extra_inputs(torch.zeros(4, 1, 32, 32), "d_fake")[0].shape[0] == 0
    assert task.adversarial_view(x, "d").shape == x.shape and not torch.equal(task.adversarial_view(x, "d"), x)
    assert task.balance_inputs(x, "d_fake").shape == x.shape and task.balance_inputs(x, "d").shape[0] == 0


def test_contrastive_family_trains_d_trunk_only_through_contrastive_terms():
    torch.manual_seed(0)
    fam = FAMILIES["gan"](tiny_cfg("aux.rotation.d_weight=0", "aux.rotation.g_weight=0", "aux.contrastive.d_weight=1.0",
                                   "train.channels_last=false"), "cpu", training=True)
    assert fam.head_task is not None and [p.name for p in fam.phases] == ["D", "G"]
    logs = fam.phase_d({"image": torch.rand(8, 1, 32, 32) * 2 - 1}, _ctx())
    assert {"con_real", "con_fake", "d_adv"} <= set(logs)
    assert all(p.grad is None for p in fam.D.head.parameters())  # D's own linear head is not used
    fam.D.zero_grad(), fam.aux.zero_grad()
    fam.tasks[0].d_weight = 0.0  # without the contrastive terms, the adversarial loss reaches the head but not the trunk
    fam.phase_d({"image": torch.rand(8, 1, 32, 32) * 2 - 1}, _ctx())
    trunk = [p.grad for p in fam.D.blocks.parameters()]
    assert all(g is None or g.abs().sum() == 0 for g in trunk)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in fam.aux["contrastive"].disc.parameters())


@pytest.mark.parametrize("op", [translation, cutout, random_resized_crop, simclr_view])
def test_augmentations_keep_shapes_and_gradients(op):
    torch.manual_seed(0)
    x = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    y = op(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_and_cutout_do_what_they_say():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8) + 1  # strictly positive, so zeros mark filled or cut pixels
    t = translation(x)  # a shift of at most 1 pixel (1/8 of 8), zero-filled
    for a, b in zip(x, t):
        shifts = []
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                pad = F.pad(a, (1, 1, 1, 1))
                shifted = pad[:, 1 + dx : 9 + dx, 1 + dy : 9 + dy]
                shifts.append(torch.equal(shifted, b))
        assert any(shifts)
    c = cutout(x)
    cut = c == 0
    assert cut.any(dim=(1, 2, 3)).all() and (cut.sum(dim=(1, 2, 3)) <= 16).all()  # a square of at most half the side
    torch.testing.assert_close(c[~cut], x[~cut])


def test_diffaug_policy_checks():
    assert parse_policy("translation, cutout", 1) == ["translation", "cutout"] and parse_policy("", 1) == []
    with pytest.raises(ConfigError, match="rotation.*undercut"):
        parse_policy("translation,rotation", 1)
    with pytest.raises(ConfigError, match="needs colour data"):
        parse_policy("color", 1)
    with pytest.raises(ConfigError, match="unknown DiffAugment op 'flip'"):
        parse_policy("flip", 3)
    x = torch.rand(2, 3, 8, 8)
    assert diff_augment(x, []) is x and diff_augment(x, ["color", "translation", "cutout"]).shape == x.shape


@pytest.mark.parametrize("overrides,message", [
    (["aux.label_aug.d_weight=1"], "are alternatives"),
    (["train.diffaug=translation,rotation"], "may not hold 'rotation'"),
    (["aux.rotation.d_weight=0", "aux.rotation.g_weight=0", "aux.contrastive.d_weight=1", "loss.d_adv_weight=0"], "keep loss.d_adv_weight"),
])
def test_conflicting_settings_exit_2(tmp_path, overrides, message):
    from click.testing import CliRunner

    from gan_ssl.cli import cli

    with pytest.raises(ConfigError, match=message):
        resolve("configs/ssgan_fmnist.yaml", overrides)
    args = ["train", "configs/ssgan_fmnist.yaml", "--out", str(tmp_path / "r")] + [a for o in overrides for a in ("--set", o)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1, r.output


@pytest.mark.parametrize("overrides", [
    ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0", "aux.label_aug.d_weight=1", "aux.label_aug.g_weight=1", "aux.label_aug.protocol=one"],
    ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0", "aux.label_aug.d_weight=1", "aux.label_aug.g_weight=1", "loss.d_adv_weight=0"],
    ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0", "aux.contrastive.d_weight=1"],
    ["train.diffaug=translation,cutout"],
    ["aux.rotation.every=2", "aux.rotation.protocol=one"],
    ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0", "train.diffaug=translation,cutout", "aux.augself.d_weight=1", "aux.augself.g_weight=1"],
    ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0", "train.diffaug=translation,cutout", "aux.augself.d_weight=1", "aux.augself.fuse=single"],
], ids=["la-one", "la-all-no-gan-loss", "contrastive", "diffaug+rotation", "lazy-rotation", "augself", "augself-single"])
def test_each_method_trains_and_resumes_exactly(tmp_path, fmnist_small, overrides):
    from test_train import _small, assert_same_run

    from gan_ssl.api import train

    data = _small(fmnist_small, 40)
    common = ("train.ckpt_every=2", "train.sample_every=2", "data.limit=40", *overrides)
    train(tiny_cfg("train.steps=4", *common), tmp_path / "full", progress=False, data=data)
    train(tiny_cfg("train.steps=2", *common), tmp_path / "part", progress=False, data=data)
    train(tiny_cfg("train.steps=4", *common), tmp_path / "part", resume=True, progress=False, data=data)
    assert_same_run(tmp_path / "full", tmp_path / "part")


SMALL = {"configs/inpaint_fmnist.yaml": ["loss.pretrain_steps=0", "model.width=8", "model.d_width=8"],
         "configs/sr2x_fmnist.yaml": ["loss.pretrain_steps=0", "model.d_width=8"]}


@pytest.mark.parametrize("config", ["configs/ssgan_fmnist.yaml", "configs/pggan_fmnist.yaml", "configs/stylegan_fmnist.yaml",
                                    "configs/bigbigan_fmnist.yaml", "configs/inpaint_fmnist.yaml", "configs/sr2x_fmnist.yaml"])
def test_diffaug_is_applied_by_every_family(config, fmnist_small, monkeypatch):
    """With train.diffaug set, every batch D sees, in every phase of a step (D on reals and fakes, G, lazy rotation
    and R1 phases), went through DiffAugment: the op is replaced by one that shifts every pixel by +100, and hooks on
    D's image-facing convolutions check every row they get for the shift (rotations, crops, resizing and
    concatenations keep it)."""
    from gan_ssl.data import ImageData
    from gan_ssl.engine.loop import run_phase
    from gan_ssl.engine.state import build_state
    from gan_ssl.nn import augment

    monkeypatch.setitem(augment.DIFFAUG_OPS, "translation", [lambda x, *a, **k: (x + 100.0, x.new_zeros(x.shape[0], 2).float())])
    small = SMALL.get(config, ["model.g_width=8", "model.d_width=8"])
    if "sr2x" in config:  # SRGAN's content loss compares D's features of SR and HR pixel by pixel: un-augmented by design
        small = [*small, "loss.feature_weight=0"]
    cfg = resolve(config, ["train.diffaug=translation", "train.batch_size=8", "data.limit=64", "train.precision=fp32", *small])
    st = build_state(cfg, ImageData(fmnist_small.images[:64], fmnist_small.labels[:64], "fashion-mnist"))
    fam, phase, seen = st.family, [""], {}

    def hook(module, args):
        rows_ok = args[0].detach().flatten(1).min(dim=1).values > 50  # every row shifted: augmented
        seen.setdefault(phase[0], []).append(bool(rows_ok.all()))

    def reads_images(m):  # a convolution with C input channels (fromRGB at every level of a progressive D)
        w = getattr(m, "weight", None)
        return isinstance(w, torch.Tensor) and w.ndim == 4 and w.shape[1] == cfg.data.channels

    image_convs = [m for m in fam.D.modules() if reads_images(m)]
    assert image_convs
    for m in image_convs:
        m.register_forward_pre_hook(hook)
    st.sched = fam.schedule(st)
    due = [ph for ph in fam.phases if ph.due(0, st.sched)]
    for ph in due:
        phase[0] = ph.name
        run_phase(st, ph, cfg.train.batch_size)
    expected = {ph.name for ph in due if ph.name != "G_pre"}  # the L1 pre-training phase has no D
    assert set(seen) == expected, f"{config}: D ran in {sorted(seen)}, phases due {sorted(expected)}"
    for name, calls in seen.items():
        assert calls and all(calls), f"{config}: phase {name} fed D un-augmented rows ({calls})"


@pytest.mark.parametrize("config,aux", [("configs/pggan_fmnist.yaml", "label_aug"), ("configs/bigbigan_fmnist.yaml", "contrastive"),
                                        ("configs/sr2x_fmnist.yaml", "rotation")])
def test_families_refuse_aux_tasks_they_do_not_apply(config, aux):
    with pytest.raises(ConfigError, match=f"does not apply aux.{aux}"):
        resolve(config, [f"aux.{aux}.d_weight=1.0"])


@pytest.mark.parametrize("model", ["sngan", "dcgan"])
def test_lazy_rotation_runs_in_its_own_phases_every_k_steps(fmnist_small, model):
    """aux.rotation.every=k: the D and G phases carry no rotation; Daux/Gaux run at steps 0, k, 2k, ... with the
    weights scaled by k (like lazy R1), for a spectral-norm and a BatchNorm D alike."""
    from gan_ssl.data import ImageData
    from gan_ssl.engine.loop import train_step
    from gan_ssl.engine.state import build_state

    cfg = tiny_cfg(f"model.name={model}", "aux.rotation.every=3", "aux.rotation.protocol=one", "train.precision=fp32", model=model)
    st = build_state(cfg, ImageData(fmnist_small.images[:64], fmnist_small.labels[:64], "fashion-mnist"))
    fam = st.family
    assert fam.tasks == [] and len(fam.lazy_tasks) == 1 and fam.aux_every == 3
    assert [p.name for p in fam.phases] == ["D", "Daux", "G", "Gaux"]
    for _ in range(7):
        train_step(st)
    assert st.counters == {"D": 7, "Daux": 3, "G": 7, "Gaux": 3}  # steps 0, 3, 6
    no_backward = StepContext(torch.device("cpu"), contextlib.nullcontext, lambda loss: None)
    logs = fam.phase_d_aux(st.stream.next(8), no_backward)
    torch.testing.assert_close(logs["loss"], 3 * cfg.aux.rotation.d_weight * logs["rot_d"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model,n_dis", [("dcgan", 1), ("sngan", 2)])
def test_folded_lazy_rotation_joins_the_d_and_g_passes_of_every_kth_step(fmnist_small, model, n_dis):
    """aux.rotation.lazy=fold: no phases of its own; the rotated rows join the D pass (the first of n_dis) and the G
    pass at steps 0, k, 2k, ..., with the weights scaled by k; the other steps carry no rotation."""
    from gan_ssl.data import ImageData
    from gan_ssl.engine.loop import train_step
    from gan_ssl.engine.state import build_state

    cfg = tiny_cfg(f"model.name={model}", "aux.rotation.every=3", "aux.rotation.protocol=one", "aux.rotation.lazy=fold",
                   f"train.n_dis={n_dis}", "train.precision=fp32", model=model)
    st = build_state(cfg, ImageData(fmnist_small.images[:64], fmnist_small.labels[:64], "fashion-mnist"))
    fam = st.family
    assert fam.fold and fam.tasks == [] and len(fam.lazy_tasks) == 1
    assert [p.name for p in fam.phases] == ["D", "G"]
    task, calls = fam.lazy_tasks[0], []
    loss = task.loss
    task.loss = lambda side, *rest: calls.append((st.step, side)) or loss(side, *rest)  # records when rotation rows are scored
    for _ in range(7):
        train_step(st)
    assert calls == [(s, side) for s in (0, 3, 6) for side in ("d", "g")]  # one of the n_dis D phases per due step
    no_backward = StepContext(torch.device("cpu"), contextlib.nullcontext, lambda loss: None)  # step 0: a folded step
    logs = fam.phase_d(st.stream.next(8), no_backward)
    torch.testing.assert_close(logs["loss"] - logs["d_adv"], 3 * cfg.aux.rotation.d_weight * logs["rot_d"], rtol=1e-4, atol=1e-5)


def test_lazy_rotation_needs_the_adversarial_loss():
    with pytest.raises(ConfigError, match="lazy rotation"):
        tiny_cfg("aux.rotation.every=4", "loss.d_adv_weight=0")


def _sym_cases():
    off = ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0"]
    cases = {}
    for every in (1, 4):
        for protocol in ("all", "split", "one"):
            cases[f"rotation-{protocol}-every{every}"] = [f"aux.rotation.protocol={protocol}", f"aux.rotation.every={every}"]
            cases[f"rotation-{protocol}-every{every}+contrastive"] = [f"aux.rotation.protocol={protocol}", f"aux.rotation.every={every}",
                                                                      "aux.contrastive.d_weight=1"]
        cases[f"rotation-{protocol}-every4-fold"] = [f"aux.rotation.protocol={protocol}", "aux.rotation.every=4", "aux.rotation.lazy=fold"]
        cases[f"rotation-{protocol}-every4-fold+contrastive"] = [f"aux.rotation.protocol={protocol}", "aux.rotation.every=4",
                                                                 "aux.rotation.lazy=fold", "aux.contrastive.d_weight=1"]
    for protocol in ("all", "split", "one"):
        la = [*off, "aux.label_aug.d_weight=1", "aux.label_aug.g_weight=1", f"aux.label_aug.protocol={protocol}"]
        cases[f"la-{protocol}"] = la
        cases[f"la-{protocol}-no-gan-loss"] = [*la, "loss.d_adv_weight=0"]
        cases[f"la-{protocol}+contrastive"] = [*la, "aux.contrastive.d_weight=1"]
    cases["contrastive"] = [*off, "aux.contrastive.d_weight=1"]
    cases["contrastive-no-fake-term"] = [*off, "aux.contrastive.d_weight=1", "aux.contrastive.fake_weight=0"]
    cases["contrastive+diffaug"] = [*off, "aux.contrastive.d_weight=1", "train.diffaug=translation,cutout"]
    cases["rotation-rotation-g-only"] = ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0.2"]
    augself = ["train.diffaug=translation,cutout", "aux.augself.d_weight=1", "aux.augself.g_weight=1"]
    for fuse in ("difference", "single"):
        cases[f"augself-{fuse}"] = [*off, *augself, f"aux.augself.fuse={fuse}"]
        cases[f"augself-{fuse}-d-only"] = [*off, *augself, f"aux.augself.fuse={fuse}", "aux.augself.g_weight=0"]
        cases[f"augself-{fuse}+rotation-one-every4-fold"] = [*augself, f"aux.augself.fuse={fuse}", "aux.rotation.protocol=one",
                                                             "aux.rotation.every=4", "aux.rotation.lazy=fold"]
        cases[f"augself-{fuse}+la-all"] = [*off, *augself, f"aux.augself.fuse={fuse}", "aux.label_aug.d_weight=1", "aux.label_aug.g_weight=1"]
        cases[f"augself-{fuse}-quarter"] = [*off, *augself, f"aux.augself.fuse={fuse}", "aux.augself.rows=0.25"]
    return cases


@pytest.mark.parametrize("overrides", list(_sym_cases().values()), ids=list(_sym_cases()))
def test_batchnorm_d_sees_real_and_fake_passes_of_the_same_size(overrides):
    """A BatchNorm D must not be able to tell the real pass from the fake pass by its batch statistics: in every
    phase that scores reals against fakes, every BatchNorm layer of D normalises as many rows of reals as of fakes
    (for every aux task, protocol, lazy or every-step schedule, and combination the config allows)."""
    torch.manual_seed(0)
    cfg = tiny_cfg("model.name=dcgan", "train.precision=fp32", "train.channels_last=false", *overrides, model="dcgan")
    fam = FAMILIES["gan"](cfg, "cpu", training=True)
    assert fam.joint_pass
    bns = [m for m in fam.D.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    rows: list[int] = []
    hooks = [bn.register_forward_pre_hook(lambda m, inp: rows.append(inp[0].shape[0])) for bn in bns[:1]]
    batch = {"image": torch.rand(8, 1, 32, 32) * 2 - 1}
    for ph in fam.phases:
        if ph.name != "D":
            continue
        rows.clear()
        ph.fn(batch, _ctx())
        assert len(rows) == 2 and rows[0] == rows[1], f"{ph.name}: D's passes had {rows} rows (real pass, fake pass)"
    for h in hooks:
        h.remove()


def test_contrad_scores_views_of_reals_and_fakes_in_both_passes(monkeypatch):
    """ContraD (official code): D's adversarial rows are SimCLR views of reals and of fakes, never the raw images;
    the fake term's negatives are both real views (2B rows)."""
    import gan_ssl.families.ssl as aux_mod

    calls = []
    real_view = aux_mod.simclr_view
    monkeypatch.setattr(aux_mod, "simclr_view", lambda x: calls.append(x.shape[0]) or real_view(x))
    torch.manual_seed(0)
    cfg = tiny_cfg("model.name=dcgan", "train.precision=fp32", "aux.rotation.d_weight=0", "aux.rotation.g_weight=0",
                   "aux.contrastive.d_weight=1", model="dcgan")
    fam = FAMILIES["gan"](cfg, "cpu", training=True)
    seen = {}

    def recording_supcon(fake, real, temperature):
        seen["shapes"] = (fake.shape[0], real.shape[0])
        return supcon_fakes(fake, real, temperature)

    monkeypatch.setattr(aux_mod, "supcon_fakes", recording_supcon)
    fam.phase_d({"image": torch.rand(8, 1, 32, 32) * 2 - 1}, _ctx())
    assert calls == [8, 8, 8, 8] and seen["shapes"] == (8, 16)  # real: view 1 + view 2; fake: view + balance view
    calls.clear()
    ctx = _ctx()
    ctx.sched["batch_size"] = 8
    fam.phase_g(None, ctx)
    assert calls == [8]  # G is scored on a view of its fakes


@pytest.mark.parametrize("config,adversarial", [("configs/ssganla_fmnist.yaml", False), ("configs/ssganla_plus_fmnist.yaml", True)])
def test_ssganla_preset_is_the_papers_method_and_la_plus_keeps_the_gan_loss(config, adversarial):
    """SSGAN-LA (Hou et al. 2021, official mode ssgan_la): the 8-way head replaces the real/fake loss for D and G;
    the 'plus' preset (ssgan_la_plus) adds it to the real/fake loss."""
    cfg = resolve(config, ["model.g_width=8", "model.d_width=8", "model.z_dim=16", "train.batch_size=8", "train.precision=fp32"])
    la = cfg.aux.label_aug
    assert (la.d_weight, la.g_weight) == (1.0, 1.0) and (cfg.loss.d_adv_weight > 0) == adversarial
    assert cfg.aux.rotation.d_weight == cfg.aux.rotation.g_weight == 0
    torch.manual_seed(0)
    fam = FAMILIES["gan"](cfg, "cpu", training=True)
    d_logs = fam.phase_d({"image": torch.rand(8, 1, 32, 32) * 2 - 1}, _ctx())
    ctx = _ctx()
    ctx.sched["batch_size"] = 8
    g_logs = fam.phase_g(None, ctx)
    assert {"la_real", "la_fake"} <= set(d_logs) and "la_g" in g_logs
    assert ("d_adv" in d_logs) == adversarial and ("g_adv" in g_logs) == adversarial
    if not adversarial:  # nothing reaches D's own real/fake head
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in fam.D.head.parameters())


def test_paper_presets_are_the_ssgan_setting_and_differ_only_in_the_rotation_weights():
    from gan_ssl.config import flatten

    ss, sn = resolve("configs/ssgan_paper.yaml"), resolve("configs/sngan_paper.yaml")
    a, b = flatten(ss.to_dict()), flatten(sn.to_dict())
    assert {k for k in a if a[k] != b[k]} == {"aux.rotation.d_weight", "aux.rotation.g_weight"}
    assert (ss.aux.rotation.d_weight, ss.aux.rotation.g_weight, ss.aux.rotation.protocol, ss.aux.rotation.every) == (1.0, 0.2, "all", 1)
    assert sn.aux.rotation.d_weight == sn.aux.rotation.g_weight == 0
    m = ss.model
    assert (m.name, m.g_width, m.d_width, m.z_dim, m.self_modulation) == ("sngan", 256, 128, 128, True)
    assert (ss.train.n_dis, ss.train.batch_size, ss.train.beta1_d, ss.train.beta2_d, ss.train.lr_d) == (2, 64, 0.0, 0.9, 2e-4)
    _, D = build("sngan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8)
    assert D.spectral_norm
