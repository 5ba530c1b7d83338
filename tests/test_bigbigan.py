"""BigBiGAN: score shapes, the per-term hinge and its unary switches, E's stochastic head, reconstructions,
encoder features through `features`/`probe`, three optimizers resuming exactly, and the CLI."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from gan_ssl import api
from gan_ssl.api import train
from gan_ssl.cli import cli
from gan_ssl.core.errors import ConfigError
from gan_ssl.data import ImageData, load_images
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.engine.loop import run_phase, train_step
from gan_ssl.engine.state import build_state
from gan_ssl.evaluation import features as fe
from gan_ssl.evaluation.probe import probe
from gan_ssl.families.bigbigan import encoder_representation
from gan_ssl.families.resolve import resolve
from gan_ssl.inference import reconstruct as rc
from gan_ssl.models import build
from gan_ssl.models.bigbigan import Encoder, JointDiscriminator
from gan_ssl.models.sngan import SNGANDiscriminator, SNGANGenerator
from gan_ssl.nn.losses import bigan_d_hinge, bigan_ge_loss


def _metrics(run):
    from test_train import _metrics as metrics  # imported when run, not at collection (it registers the test-toy model)

    return metrics(run)


def assert_same_run(a, b):
    from test_train import assert_same_run as same

    same(a, b)


TINY_BIG = ["family=bigbigan", "data.limit=512", "model.z_dim=16", "model.g_width=8", "model.d_width=8", "model.e_width=4",
            "model.e_head_width=16", "model.h_width=16", "model.j_width=16", "train.batch_size=8", "train.steps=4",
            "train.log_every=2", "train.sample_every=2", "train.ckpt_every=2", "train.sample_grid=4"]


def big_cfg(*overrides: str):
    """A CPU-tiny BigBiGAN config (widths 4-16, batch 8) on the first 512 Fashion-MNIST training images."""
    return resolve(None, [*TINY_BIG, *overrides])


def _small(data: ImageData, n: int) -> ImageData:
    return ImageData(data.images[:n], data.labels[:n], data.name, data.classes)


@pytest.fixture(scope="module")
def big_run(tmp_path_factory, fmnist_small):
    """A 4-step BigBiGAN run directory (rotation on F, so every part of the family runs)."""
    out = tmp_path_factory.mktemp("big_run")
    train(big_cfg("aux.rotation.d_weight=1.0", "aux.rotation.g_weight=0.2"), out, progress=False, data=fmnist_small)
    return out


# --- networks --------------------------------------------------------------------------------------

def test_networks_and_score_shapes():
    G, E, D = build("bigbigan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8, e_width=4, e_depth=2,
                    e_head_width=16, h_width=16, j_width=16)
    assert isinstance(G, SNGANGenerator) and isinstance(D.F, SNGANDiscriminator)  # the SN-GAN builder's networks
    assert isinstance(E, Encoder) and isinstance(D, JointDiscriminator)
    x, z = torch.randn(6, 1, 32, 32), torch.randn(6, 16)
    D.eval()  # no power iteration per forward: the same sigma for every call below
    s = D(x, z)
    assert set(s) == {"x", "z", "xz"} and all(v.shape == (6,) for v in s.values())
    assert set(D(x, z, terms=("xz",))) == {"xz"} and set(D(x, z, terms=("x", "xz"))) == {"x", "xz"}
    torch.testing.assert_close(D(x, z, terms=("xz",))["xz"], s["xz"])
    # J must read z as well as x: the skips of H keep H(z) from vanishing next to F(x) (sum-pooled, large)
    fx, perm = D.F.feature(x), torch.tensor([1, 2, 3, 4, 5, 0])
    by_z = (D.scores(fx, z[perm], ("xz",))["xz"] - s["xz"]).abs().mean()
    by_x = (D.scores(fx[perm], z, ("xz",))["xz"] - s["xz"]).abs().mean()
    assert by_z > 0.2 * by_x, (by_z, by_x)
    f = E.features(x)
    assert [tuple(f[k].shape) for k in E.layer_names()] == [(6, 4, 16, 16), (6, 8, 8, 8), (6, 16, 4, 4), (6, 16), (6, 32)]
    assert E(x).shape == (6, 16) and G(z).shape == (6, 1, 32, 32)
    assert len(E.stages["stage1"]) == 2  # e_depth blocks per stage
    sn = [m for m in D.modules() if hasattr(m, "parametrizations")]
    assert len(sn) == sum(1 for m in D.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))  # every layer of D
    _, E2, _ = build("bigbigan", resolution=32, channels=1, z_dim=16, e_width=4, e_bn_crelu=False)
    assert "bn_crelu" not in E2.features(x) and E2.layer_names()[-1] == "pool"
    assert encoder_representation(E2).layers == ["stage1", "stage2", "stage3", "pool"]  # 'all' ends in the pooled readout


def test_encoder_sample_has_the_heads_mean_and_std():
    torch.manual_seed(0)
    E = Encoder(32, 1, z_dim=8, width=4, head_width=16).eval()
    x = torch.randn(1, 1, 32, 32).expand(4000, 1, 32, 32)  # one image, many draws of eps
    with torch.no_grad():
        mu, sigma = E.encode(x[:1])
        z = E(x)
        torch.testing.assert_close(E(x[:3], deterministic=True), mu.expand(3, 8), rtol=1e-5, atol=1e-6)
    assert (sigma > 0).all()
    torch.testing.assert_close(z.mean(0), mu[0], atol=4 * float(sigma.max()) / 4000**0.5, rtol=0)
    torch.testing.assert_close(z.std(0), sigma[0], rtol=0.05, atol=0)
    det = Encoder(32, 1, z_dim=8, width=4, head_width=16, stochastic=False).eval()
    with torch.no_grad():
        assert torch.equal(det(x[:2]), det.encode(x[:2])[0]) and not torch.equal(E(x[:2]), E(x[:2]))  # e_stochastic=False: E(x) = mu


# --- objective -------------------------------------------------------------------------------------

def test_per_term_hinge_values():
    real = {"x": torch.tensor([2.0, 0.5]), "z": torch.tensor([0.0, -1.0]), "xz": torch.tensor([1.5, 0.0])}
    fake = {"x": torch.tensor([-2.0, 0.5]), "z": torch.tensor([1.0, 0.0]), "xz": torch.tensor([0.0, -3.0])}
    loss, logs = bigan_d_hinge(real, fake, {"x": 1.0, "z": 0.5, "xz": 1.0})
    hx = (0 + 0.5) / 2 + (0 + 1.5) / 2  # relu(1 - s) on reals, relu(1 + s) on fakes
    hz = (1 + 2) / 2 + (2 + 1) / 2
    hxz = (0 + 1) / 2 + (1 + 0) / 2
    assert logs["d_hinge_x"].item() == pytest.approx(hx) and logs["d_hinge_z"].item() == pytest.approx(hz)
    assert loss.item() == pytest.approx(hx + 0.5 * hz + hxz)
    w = {"x": 1.0, "z": 0.5, "xz": 1.0}
    assert bigan_ge_loss(real, +1.0, w).item() == pytest.approx(1.25 + 0.5 * -0.5 + 0.75)
    assert bigan_ge_loss(fake, -1.0, w).item() == pytest.approx(-(-0.75 + 0.5 * 0.5 - 1.5))


@pytest.mark.parametrize("off", ["x", "z"])
def test_unary_weight_zero_removes_its_term_from_the_losses(off):
    scores = lambda: {k: torch.randn(4, requires_grad=True) for k in ("x", "z", "xz")}  # noqa: E731
    real, fake = scores(), scores()
    w = {"x": 1.0, "z": 1.0, "xz": 1.0, off: 0.0}
    loss, logs = bigan_d_hinge(real, fake, w)
    (loss + bigan_ge_loss(real, 1.0, w) + bigan_ge_loss(fake, -1.0, w)).backward()
    assert real[off].grad is None and fake[off].grad is None and f"d_hinge_{off}" not in logs
    on = "z" if off == "x" else "x"
    assert real[on].grad is not None and real["xz"].grad is not None
    del real[off], fake[off]  # an absent score is fine when its weight is 0
    assert bigan_d_hinge(real, fake, w)[0].item() == pytest.approx(loss.item())


@pytest.mark.parametrize("overrides,frozen,trained", [
    (["loss.sx_weight=0"], ["F.head"], ["z_head", "xz_head"]),
    (["loss.sz_weight=0"], ["z_head"], ["F.head", "xz_head"]),
    (["loss.sx_weight=0", "loss.sz_weight=0"], ["F.head", "z_head"], ["xz_head", "H", "J"]),  # plain BiGAN
    ([], [], ["F.head", "z_head", "xz_head"]),
])
def test_unary_weight_zero_leaves_its_head_untouched(fmnist_small, overrides, frozen, trained):
    st = build_state(big_cfg(*overrides), fmnist_small)
    D = st.family.D
    before = {n: [p.detach().clone() for p in D.get_submodule(n).parameters()] for n in frozen + trained}
    meter_logs = []

    class Meter:
        def add(self, logs):
            meter_logs.append(logs)

    for ph in st.family.phases:  # one D, one E, one G step
        run_phase(st, ph, 8, Meter())
    changed = {n: any(not torch.equal(p, q) for p, q in zip(D.get_submodule(n).parameters(), ps)) for n, ps in before.items()}
    assert not any(changed[n] for n in frozen) and all(changed[n] for n in trained), changed
    d_logs = meter_logs[0]
    for k in ("x", "z"):
        assert (f"d_hinge_{k}" in d_logs) == (f"loss.s{k}_weight=0" not in overrides)


def test_phase_losses_are_the_objective(fmnist_small):
    """D's loss is the weighted per-term hinge; E's gradient is that of +(w_z s_z + s_xz) on (x, E(x)) and G's that of
    -(w_x s_x + s_xz) on (G(z), z): each phase is replayed by hand from the same RNG state."""
    st = build_state(big_cfg("loss.sx_weight=0.5", "loss.sz_weight=2.0", "train.precision=fp32"), fmnist_small)  # replays run in fp32
    fam, x = st.family, fmnist_small.batch(torch.arange(8))
    G, E, D = fam.G, fam.E, fam.D
    D.eval()  # spectral norm without a power iteration per forward: replays see the same sigma

    def grads(net):
        return [p.grad.clone() for p in net.parameters() if p.grad is not None]

    def zero():
        for net in fam.nets.values():
            net.zero_grad(set_to_none=True)

    torch.manual_seed(1)
    d_logs = fam.phase_d({"image": x}, st)
    torch.manual_seed(1)
    with torch.no_grad():
        z_hat = E(x)
        z = G.sample_z(8)
        fake = G(z)
        real_s, fake_s = D(x, z_hat), D(fake, z)
    expect, _ = bigan_d_hinge(real_s, fake_s, {"x": 0.5, "z": 2.0, "xz": 1.0})
    torch.testing.assert_close(d_logs["loss"], expect)

    for name, net, y in (("E", E, 1.0), ("G", G, -1.0)):
        zero()
        torch.manual_seed(2)
        (fam.phase_e({"image": x}, st) if name == "E" else fam.phase_g(None, st))
        got = grads(net)
        zero()
        torch.manual_seed(2)
        if name == "E":
            s = D(x, E(x))
            manual = (2.0 * s["z"] + s["xz"]).mean()
        else:
            z = G.sample_z(8)
            s = D(G(z), z)
            manual = -(0.5 * s["x"] + s["xz"]).mean()
        manual.backward()
        want = grads(net)
        assert len(got) == len(want) > 0
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_e_learning_rate_multiplier_and_phases(fmnist_small):
    st = build_state(big_cfg("loss.e_lr_mult=5", "train.lr_g=1e-4", "train.n_dis=2"), fmnist_small)
    fam = st.family
    assert set(fam.optimizers) == {"D", "E", "G"}
    assert fam.optimizers["E"].param_groups[0]["lr"] == pytest.approx(5e-4) and fam.optimizers["G"].param_groups[0]["lr"] == pytest.approx(1e-4)
    assert [(p.name, p.nets, p.opt, p.repeat, p.batch) for p in fam.phases] == [
        ("D", ("D", "aux"), "D", 2, True), ("E", ("E",), "E", 1, True), ("G", ("G",), "G", 1, False)]
    g0, e0 = [p.clone() for p in fam.G.parameters()], [p.clone() for p in fam.E.parameters()]
    train_step(st)
    assert st.counters == {"D": 2, "E": 1, "G": 1} and st.images == 3 * 8
    assert any(not torch.equal(a, b) for a, b in zip(fam.G.parameters(), g0))
    assert any(not torch.equal(a, b) for a, b in zip(fam.E.parameters(), e0))


def _e_phase_with_term(data, key: str, weight: float, flag: str, log_key: str, seed: int):
    """E's phase once with loss.KEY off (checks FLAG is off and LOG_KEY is not logged), then with KEY=weight on a batch
    of 8 with D in eval mode and G frozen as the loop freezes it: (x, family, logs, E's gradients)."""
    x = data.batch(torch.arange(8))
    off = build_state(big_cfg("train.precision=fp32"), data)
    assert not getattr(off.family, flag) and log_key not in off.family.phase_e({"image": x}, off)
    st = build_state(big_cfg(f"loss.{key}={weight}", "train.precision=fp32"), data)
    fam = st.family
    fam.D.eval()
    fam.G.requires_grad_(False)
    for net in fam.nets.values():
        net.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    logs = fam.phase_e({"image": x}, st)
    assert all(p.grad is None for p in fam.G.parameters())  # G is frozen in E's phase: no gradient reaches it
    return x, fam, logs, [p.grad.clone() for p in fam.E.parameters()]


def test_latent_regression_is_off_at_weight_zero_and_reaches_e_when_on(fmnist_small):
    """loss.latent_regression_weight: at 0 E's phase is pure BigBiGAN (no term, no log); above 0 E's gradient is that of
    +(w_z s_z + s_xz) on (x, E(x)) plus w * mean (mu(G(z)) - z)^2, with E seeing [x, G(z)] in one pass and G untouched."""
    x, fam, logs, got = _e_phase_with_term(fmnist_small, "latent_regression_weight", 0.5, "do_latent_regression",
                                           "e_latent_reg", seed=3)
    G, E, D = fam.G, fam.E, fam.D
    E.zero_grad(set_to_none=True)
    torch.manual_seed(3)
    z_gen = G.sample_z(8)  # [8, z_dim]
    with torch.no_grad():
        fake = G(z_gen)  # [8, C, H, W]
    z_all, mu_all, _ = E.sample(torch.cat([x, fake]))  # [16, z_dim] each
    assert z_all.shape == (16, 16)
    s = D.scores(D.F.feature(x), z_all[:8])
    reg = (mu_all[8:] - z_gen).square().mean()
    assert logs["e_latent_reg"].item() == pytest.approx(reg.item(), rel=1e-5)
    ((s["z"] + s["xz"]).mean() + 0.5 * reg).backward()
    for a, b in zip(got, [p.grad for p in E.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert any(float(g.abs().sum()) > 0 for g in got)


def test_cycle_term_is_off_at_weight_zero_and_reaches_e_through_frozen_g(fmnist_small):
    """loss.cycle_weight (ALICE's x-space cycle): E's gradient is that of +(w_z s_z + s_xz) + w * mean (G(E(x)) - x)^2,
    where G(E(x)) uses E's sampled z; G gets no gradient."""
    x, fam, logs, got = _e_phase_with_term(fmnist_small, "cycle_weight", 2.0, "do_cycle", "e_cycle", seed=4)
    G, E, D = fam.G, fam.E, fam.D
    E.zero_grad(set_to_none=True)
    torch.manual_seed(4)
    z_hat = E(x)  # [8, z_dim]
    s = D.scores(D.F.feature(x), z_hat)
    rec = G(z_hat)  # [8, C, H, W]
    assert rec.shape == x.shape
    cyc = (rec - x).square().mean()
    assert logs["e_cycle"].item() == pytest.approx(cyc.item(), rel=1e-5)
    ((s["z"] + s["xz"]).mean() + 2.0 * cyc).backward()
    for a, b in zip(got, [p.grad for p in E.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert any(float(g.abs().sum()) > 0 for g in got)


@pytest.mark.parametrize("backbone,e_arch", [("dcgan", "conv"), ("dcgan", "resnet"), ("sngan", "conv")])
def test_dcgan_backbone_and_conv_encoder(backbone, e_arch):
    from gan_ssl.models.dcgan import DCGANDiscriminator, DCGANGenerator

    G, E, D = build("bigbigan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8, e_width=4, e_head_width=16,
                    h_width=16, j_width=16, backbone=backbone, e_arch=e_arch, j_x_scale=1.0)
    if backbone == "dcgan":
        assert isinstance(G, DCGANGenerator) and isinstance(D.F, DCGANDiscriminator) and D.F.spectral_norm
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())  # F sees reals and fakes in one pass
    x, z = torch.randn(6, 1, 32, 32), torch.randn(6, 16)
    D.eval()
    s = D(x, z)
    assert all(v.shape == (6,) for v in s.values()) and G(z).shape == (6, 1, 32, 32) and E(x).shape == (6, 16)
    f = E.features(x)
    assert [tuple(f[k].shape) for k in E.layer_names()] == [(6, 4, 16, 16), (6, 8, 8, 8), (6, 16, 4, 4), (6, 16), (6, 32)]
    sum(v.sum() for v in D(G(z), E(x)).values()).backward()
    assert all(p.grad is not None for p in E.parameters()) and all(p.grad is not None for p in G.parameters())


def test_j_projection_adds_the_inner_product_to_s_xz_only():
    kw = dict(resolution=32, channels=1, z_dim=16, g_width=8, d_width=8, e_width=4, e_head_width=16, h_width=16, j_width=16)
    torch.manual_seed(0)
    _, _, D0 = build("bigbigan", **kw)
    torch.manual_seed(0)
    _, _, D = build("bigbigan", j_projection=True, **kw)
    assert D0.proj is None and D.proj is not None and hasattr(D.proj, "parametrizations")  # spectral norm, like every layer of D
    D.load_state_dict({**D0.state_dict(), **{k: v for k, v in D.state_dict().items() if k.startswith("proj.")}})
    D0.eval(), D.eval()
    x, z = torch.randn(6, 1, 32, 32), torch.randn(6, 16)
    with torch.no_grad():
        s0, s, fx = D0(x, z), D(x, z), D.F.feature(x)
        torch.testing.assert_close(s["xz"] - s0["xz"], (D.proj(fx * D.j_x_scale) * D.H(z)).sum(1))  # [6]
    torch.testing.assert_close(s["x"], s0["x"])  # assert_close returns None: one call per check
    torch.testing.assert_close(s["z"], s0["z"])


def test_bad_backbone_or_encoder_arch_is_a_config_error():
    with pytest.raises(ConfigError, match="backbone must be one of sngan, dcgan"):
        build("bigbigan", resolution=32, channels=1, backbone="vgg")
    with pytest.raises(ConfigError, match="arch must be one of resnet, conv"):
        build("bigbigan", resolution=32, channels=1, e_arch="vit")


def test_bad_resolution_is_a_config_error():
    with pytest.raises(ConfigError, match="4 \\* 2\\^k >= 16"):
        big_cfg("data.resolution=24")
    with pytest.raises(ValueError, match="resolution"):
        build("bigbigan", resolution=30, channels=1)


# --- training, resume ------------------------------------------------------------------------------

def test_short_run_logs_every_term(tmp_path, fmnist_small):
    train(big_cfg("train.steps=20", "train.log_every=5", "train.sample_every=0", "train.ckpt_every=0"), tmp_path, progress=False, data=fmnist_small)
    rows = _metrics(tmp_path)
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert all(k in rows[-1] for k in ("d_loss", "e_loss", "g_loss", "d_hinge_x", "d_hinge_z", "d_hinge_xz", "e_sigma", "g_adv"))
    assert rows[-1]["d_hinge_x"] < rows[0]["d_hinge_x"] - 0.1, rows  # D learns (the tiny D's unary x term moves first)
    assert (tmp_path / "samples" / "step_000020.png").is_file()


def test_resume_is_exact_with_three_optimizers(tmp_path, fmnist_small):
    common = ("train.ckpt_every=3", "train.sample_every=3", "train.log_every=1", "data.limit=40", "train.n_dis=2",
              "aux.rotation.d_weight=1.0", "aux.rotation.g_weight=0.2", "aux.rotation.protocol=one")
    data = _small(fmnist_small, 40)  # 5 batches per epoch: the resume crosses epoch boundaries
    full, part = tmp_path / "full", tmp_path / "part"
    train(big_cfg("train.steps=6", *common), full, progress=False, data=data)
    train(big_cfg("train.steps=3", *common), part, progress=False, data=data)
    train(big_cfg("train.steps=6", *common), part, resume=True, progress=False, data=data)
    assert_same_run(full, part)
    ck = ckpt_io.load(part)
    assert set(ck["optims"]) == {"D", "E", "G"} and ck["counters"] == {"D": 12, "E": 6, "G": 6}
    assert all(ck["optims"][k]["state"] for k in ("D", "E", "G"))  # every optimizer has Adam moments to restore
    drop = ("it_s", "img_s", "minutes")
    for ra, rb in zip(_metrics(full), _metrics(part)):
        assert {k: v for k, v in ra.items() if k not in drop} == {k: v for k, v in rb.items() if k not in drop}


def test_checkpoint_is_weights_only_and_info_names_the_encoder(big_run):
    raw = torch.load(big_run / "checkpoints" / "latest.pt", weights_only=True)
    assert raw["family"] == "bigbigan" and set(raw["nets"]) == {"G", "E", "D", "aux"} and set(raw["emas"]) == {"G_ema"}
    info = api.info(big_run)
    assert info["representations"] == ["encoder", "D"] and info["aux_tasks"] == ["rotation"]
    assert info["encoder_layers"] == ["stage1", "stage2", "stage3", "pool", "bn_crelu"]
    assert api.sample(big_run, 3, seed=1).shape == (3, 1, 32, 32)


# --- features, probe, reconstruct ------------------------------------------------------------------

def test_features_cli_exports_encoder_and_d(big_run, tmp_path):
    for net, layers, dim in [("encoder", "all", 2 * (4 + 8 + 16) + 32), ("encoder", "pool", 16), ("encoder", "bn_crelu", 32), ("encoder", "stage1,pool", 2 * 4 + 16), ("D", "all", 4 * 2 * 8)]:
        out = tmp_path / f"{net}_{layers}.pt"
        r = CliRunner().invoke(cli, ["features", str(big_run), "--data", "fashion-mnist", "--split", "test", "--limit", "20",
                                     "--net", net, "--layers", layers, "--out", str(out), "--quiet"])
        assert r.exit_code == 0, r.output
        fs = torch.load(out, weights_only=True)
        assert fs["features"].shape == (20, dim) and fs["net"] == net, (net, layers, fs["features"].shape)
    r = CliRunner().invoke(cli, ["features", str(big_run), "--data", "fashion-mnist", "--net", "encoder", "--layers", "block1",
                                 "--out", str(tmp_path / "x.pt")])
    assert r.exit_code == 2 and "unknown layer" in r.output and "bn_crelu" in r.output


def test_encoder_features_are_eval_mode_and_batch_independent(big_run, fmnist_small):
    rep, _, _ = fe.load_representation(big_run)
    assert rep.name == "encoder" and rep.layers == ["stage1", "stage2", "stage3", "bn_crelu"]  # every stage + the pooled readout
    data = _small(fmnist_small, 30)
    a, _, _ = fe.representation_features(rep, data, "pool,bn_crelu", batch_size=7)
    b, _, _ = fe.representation_features(rep, data, "pool,bn_crelu", batch_size=30)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    cfg = api.load(big_run).cfg
    r, _, _ = fe.representation_features(fe.random_representation(cfg, "encoder"), data, "pool")
    assert r.shape == a[:, :16].shape and not torch.allclose(r, a[:, :16])  # random init: other weights


def test_probe_works_on_encoder_features(big_run):
    r = probe(big_run, "fashion-mnist", fractions=(1.0,), seeds=1, baselines=("pixels", "random"), limit=200)
    assert list(r["rows"]) == ["encoder", "pixels", "random encoder"]
    assert r["rows"]["encoder"]["dim"] == 88 and r["rows"]["random encoder"]["dim"] == 88 and r["rows"]["pixels"]["dim"] == 1024
    assert r["rows"]["encoder"]["net"] == "encoder" and r["n_train"] == 200
    for row in r["rows"].values():
        assert 0.1 <= row["fractions"]["1"]["mean"] <= 1.0  # ten classes: anything learned beats 10% chance
    code = CliRunner().invoke(cli, ["probe", str(big_run), "--data", "fashion-mnist", "--net", "encoder", "--layers", "bn_crelu",
                                    "--label-fraction", "1.0", "--seeds", "1", "--limit", "100", "--quiet", "--json"])
    assert code.exit_code == 0, code.output
    out = json.loads(code.output)
    assert out["rows"]["encoder"]["dim"] == 32 and out["rows"]["encoder"]["layers"] == ["bn_crelu"]


def test_reconstruct_round_trips_shapes(big_run, tmp_path):
    out = tmp_path / "recon.png"
    r = rc.reconstruct(big_run, "fashion-mnist", n=5, out=out, seed=3)
    test = load_images("fashion-mnist", "test", 32, 1)
    idx = torch.tensor(r["indices"])
    assert r["pairs"].shape == (5, 2, 1, 32, 32) and r["pairs"].dtype == torch.uint8
    assert torch.equal(r["pairs"][:, 0], test.images[idx]) and len(set(r["indices"])) == 5
    b = api.load(big_run)
    from gan_ssl.data import to_float, to_uint8

    m = rc.reconstruct(big_run, "fashion-mnist", n=5, seed=3, sample=False)
    expect = to_uint8(b.family.ema_module("G_ema")(b.family.E.encode(to_float(test.images[idx]))[0]))
    assert torch.equal(m["pairs"][:, 1], expect) and m["z"] == "mean"  # G_ema(mu(x)): E's mean, no sampling
    again = rc.reconstruct(big_run, "fashion-mnist", n=5, seed=3)
    assert torch.equal(again["pairs"], r["pairs"]) and r["z"] == "sample" and r["mse"] > 0  # a seeded draw: reproducible
    assert not torch.equal(r["pairs"][:, 1], m["pairs"][:, 1])
    w, h = Image.open(out).size
    assert (w, h) == (6 * 33 + 1, 2 * 33 + 1)  # 3 pairs per row: x, G(E(x)), x, G(E(x)), ...


def test_reconstruct_cli(big_run, tiny_run, tmp_path):
    out = tmp_path / "g.png"
    r = CliRunner().invoke(cli, ["reconstruct", str(big_run), "--data", "fashion-mnist", "--n", "16", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["n"] == 16 and res["generator"] == "G_ema" and out.is_file() and Image.open(out).size == (8 * 33 + 1, 4 * 33 + 1)
    r = CliRunner().invoke(cli, ["reconstruct", str(tiny_run), "--data", "fashion-mnist", "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "without an encoder" in r.output, r.output
    r = CliRunner().invoke(cli, ["reconstruct", str(big_run), "--data", "fashion-mnist", "--out", str(tmp_path / "x.jpg")])
    assert r.exit_code == 2 and ".png" in r.output, r.output


def test_preset_trains_from_the_cli(tmp_path):
    cfg = resolve("configs/bigbigan_fmnist.yaml")
    assert cfg.family == "bigbigan" and cfg.model.name == "bigbigan"
    out = tmp_path / "run"
    args = ["train", "configs/bigbigan_fmnist.yaml", "--out", str(out), "--quiet", "--set", "data.limit=64", "--set", "model.g_width=8",
            "--set", "model.d_width=8", "--set", "model.e_width=4", "--set", "train.batch_size=8", "--set", "train.steps=2",
            "--set", "train.sample_grid=4"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "training bigbigan/bigbigan" in r.output and ckpt_io.load(out)["counters"] == {"D": 2, "E": 2, "G": 2}
