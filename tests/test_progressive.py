"""Progressive growing (pggan, and stylegan through the same schedule): the schedule, fade-in of G, D and
the reals, the rotation head at every level of detail, optimizer resets, exact resume mid-fade (also after
SIGINT), the wall-clock budget, and the bundle (sample, info, features, probe, fid) on their checkpoints."""
import contextlib
import json
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from gan_ssl import api
from gan_ssl.api import train
from gan_ssl.cli import cli
from gan_ssl.core.errors import ConfigError
from gan_ssl.data import ImageData
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.engine.loop import train_step
from gan_ssl.engine.state import build_state
from gan_ssl.families import FAMILIES, StepContext
from gan_ssl.families.progressive import GrowConfig, GrowState, fade_reals, grow_schedule
from gan_ssl.families.resolve import resolve
from gan_ssl.models import build
from gan_ssl.models.pggan import upscale
from gan_ssl.nn.layers import MinibatchStdDev, blur2d

# 8 images per batch: 4x4 for 16 images (steps 0-1), 8x8 fades in over 32 (steps 2-5: alpha 0, .25, .5, .75),
# stabilises for 16 (steps 6-7), 16x16 fades over steps 8-11, ...
GROW = ["loss.grow.enabled=true", "loss.grow.stabilize_images=16", "loss.grow.fade_images=32"]
TINY = ["data.limit=512", "model.z_dim=16", "model.g_width=8", "model.d_width=8", "train.batch_size=8", "train.steps=4",
        "train.log_every=1", "train.sample_every=2", "train.ckpt_every=2", "train.sample_grid=4", "train.channels_last=false"]
ROT = ["aux.rotation.d_weight=1.0", "aux.rotation.g_weight=0.2"]


def pcfg(model="pggan", *overrides):
    extra = ["model.w_dim=16", "loss.r1_every=2"] if model == "stylegan" else []
    return resolve(None, [f"model.name={model}", *TINY, *GROW, *extra, *overrides])


def _ctx():
    return StepContext(torch.device("cpu"), contextlib.nullcontext, lambda loss: loss.backward())


def _small(data, n):
    return ImageData(data.images[:n], data.labels[:n], data.name, data.classes)


def assert_same_run(a, b):
    """tests/test_train.py's check (bit-identical nets, EMAs, optimizers, counters, RNG, data order), imported when
    called: importing test_train at collection would register its toy model before test_models is parametrized."""
    from test_train import assert_same_run as check

    check(a, b)


# --- the schedule ------------------------------------------------------------------------------------
def test_grow_schedule_levels_alpha_and_batch_sizes():
    g = GrowConfig(stabilize_images=100, fade_images=50)
    at = lambda images: grow_schedule(images, 32, g, 64)  # noqa: E731
    assert (at(0).level, at(0).alpha, at(99).level) == (0, 1.0, 0)
    assert (at(100).level, at(100).alpha) == (1, 0.0)  # fade-in of 8x8 starts
    assert (at(125).level, at(125).alpha) == (1, 0.5)
    assert (at(150).level, at(150).alpha, at(249).alpha) == (1, 1.0, 1.0)  # stabilise
    assert (at(250).level, at(250).alpha, at(400).level, at(400).alpha) == (2, 0.0, 3, 0.0)
    assert (at(10**9).level, at(10**9).alpha, at(10**9).resolution) == (3, 1.0, 32)
    assert at(0).batch_size == 64
    sized = GrowConfig(stabilize_images=100, fade_images=50, batch_sizes="256,128")
    assert [grow_schedule(i, 32, sized, 64).batch_size for i in (0, 100, 250, 400)] == [256, 128, 128, 128]
    assert grow_schedule(0, 32, GrowConfig(enabled=False), 64) == GrowState(3, 1.0, 64)
    start8 = GrowConfig(start_resolution=8, stabilize_images=10, fade_images=10)
    assert [grow_schedule(i, 32, start8, 8).level for i in (0, 9, 10, 30, 50)] == [1, 1, 2, 3, 3]


@pytest.mark.parametrize("override,needle", [
    ("loss.grow.start_resolution=12", "start_resolution"), ("loss.grow.start_resolution=64", "start_resolution"),
    ("loss.grow.batch_sizes=64,x", "batch_sizes"), ("loss.grow.batch_sizes=1", "at least 2"),
    ("data.resolution=24", "4 * 2^k"), ("loss.grow.fade_images=-1", "out of range"), ("loss.gp_lambda=-1", "out of range")])
def test_bad_grow_config(override, needle):
    with pytest.raises(ConfigError, match=needle.replace("*", r"\*").replace("^", r"\^")):
        pcfg("pggan", override)


def test_fade_reals_box_downsample_and_blend():
    x = torch.randn(2, 1, 32, 32)
    x8 = F.avg_pool2d(x, 4)
    torch.testing.assert_close(fade_reals(x, 8, 1.0), x8)
    torch.testing.assert_close(fade_reals(x, 8, 0.0), upscale(F.avg_pool2d(x, 8), 8))  # the 4x4 reals, upsampled
    torch.testing.assert_close(fade_reals(x, 8, 0.25), 0.75 * upscale(F.avg_pool2d(x, 8), 8) + 0.25 * x8)
    torch.testing.assert_close(fade_reals(x, 32, 1.0), x)


# --- fade-in of the networks ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pggan", "stylegan"])
def test_fade_start_equals_previous_level_upsampled(name):
    torch.manual_seed(0)
    G, D = build(name, resolution=32, channels=1, z_dim=16, g_width=16, d_width=16)
    z = torch.randn(4, 16)
    for level in (1, 2, 3):
        r = 4 * 2**level
        if name == "stylegan":
            ws = G.mapping(z)
            noise = [torch.randn(4, 1, s, s) for s in G.noise_resolutions(level)]
            grown, prev = G.synthesis(ws, level, 0.0, noise), G.synthesis(ws, level - 1, 1.0, noise[:-2])
            half = G.synthesis(ws, level, 0.5, noise)
        else:
            grown, prev, half = G.raw(z, level, 0.0), G.raw(z, level - 1, 1.0), G.raw(z, level, 0.5)
        assert grown.shape == (4, 1, r, r)
        torch.testing.assert_close(grown, upscale(prev, r), rtol=0, atol=0)
        assert not torch.allclose(half, grown)  # the new level does contribute once alpha > 0
        x = torch.randn(4, 1, r, r)
        torch.testing.assert_close(D(x, alpha=0.0), D(F.avg_pool2d(x, 2), alpha=1.0), rtol=0, atol=0)
        torch.testing.assert_close(D.feature(x, alpha=0.0), D.feature(F.avg_pool2d(x, 2)), rtol=0, atol=0)
        assert not torch.allclose(D(x, alpha=0.5), D(x, alpha=0.0))


@pytest.mark.parametrize("name", ["pggan", "stylegan"])
def test_idle_parameters_at_full_resolution_are_the_lower_rgb_layers(name):
    G, D = build(name, resolution=16, channels=1, z_dim=8, g_width=8, d_width=8)
    rgb = lambda attr: {f"{attr}.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}  # noqa: E731
    assert G.idle_parameters() == rgb("to_rgb") and D.idle_parameters() == rgb("from_rgb")
    (G(torch.randn(4, 8)).mean() + D(torch.randn(4, 1, 16, 16)).mean()).backward()
    for net in (G, D):
        for n, p in net.named_parameters():
            assert (p.grad is None) == (n in net.idle_parameters()), n


def test_generator_output_is_clamped_but_raw_is_not():
    torch.manual_seed(0)
    G, _ = build("pggan", resolution=16, channels=1, z_dim=8, g_width=8, d_width=8)
    with torch.no_grad():
        G.to_rgb[2].bias.fill_(3.0)
    z = torch.randn(2, 8)
    assert G.raw(z).max() > 1 and G(z).max() <= 1


def test_blur2d_is_the_normalised_binomial_filter():
    x = torch.zeros(1, 2, 7, 7)
    x[0, 1, 3, 3] = 16.0
    y = blur2d(x)
    assert y.shape == x.shape and y[0, 0].abs().sum() == 0  # per channel
    assert torch.equal(y[0, 1, 2:5, 2:5], torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]])) and y.sum() == 16
    assert torch.allclose(blur2d(torch.ones(1, 1, 5, 5))[0, 0, 1:4, 1:4], torch.ones(3, 3))  # flat stays flat inside


def test_stylegan_blur_filters_g_and_d_without_new_weights():
    """model.blur (StyleGAN sec. 2) adds no parameters or buffers: the same weights load either way, and change
    both G's images (after each up-sampling conv) and D's scores (before each down-sampling conv)."""
    torch.manual_seed(0)
    G0, D0 = build("stylegan", resolution=16, channels=1, z_dim=8, w_dim=8, g_width=8, d_width=8)
    G1, D1 = build("stylegan", resolution=16, channels=1, z_dim=8, w_dim=8, g_width=8, d_width=8, blur=True)
    G1.load_state_dict(G0.state_dict())
    D1.load_state_dict(D0.state_dict())
    for layer in list(G0.layers) + list(G1.layers):
        torch.nn.init.ones_(layer.noise.weight)  # non-zero so the noise path matters too
    z, x = torch.randn(4, 8), torch.randn(4, 1, 16, 16)
    noise = [torch.randn(4, 1, r, r) for r in G0.noise_resolutions()]
    with torch.no_grad():
        a, b = G0.synthesis(G0.mapping(z), noise=noise), G1.synthesis(G1.mapping(z), noise=noise)
        assert a.shape == b.shape and not torch.allclose(a, b)
        assert not torch.allclose(D0(x), D1(x))
        assert [m.blur for m in G1.layers] == [False, False, True, False, True, False]
    (G1(z).mean() + D1(x).mean()).backward()
    assert all(p.grad is not None for n, p in G1.named_parameters() if n not in G1.idle_parameters())


# --- self-supervision on D ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pggan", "stylegan"])
def test_rotation_head_at_every_level_in_its_own_d_call(name, fmnist_small, monkeypatch):
    torch.manual_seed(0)
    fam = FAMILIES[name](pcfg(name, *ROT), "cpu", training=True)
    head = fam.aux["rotation"].head
    sizes = []
    real_mbstd = MinibatchStdDev.forward
    monkeypatch.setattr(MinibatchStdDev, "forward", lambda self, x: (sizes.append(x.shape[0]), real_mbstd(self, x))[1])
    batch = {"image": fmnist_small.batch(torch.arange(8))}
    for level in range(4):
        for alpha in (0.5, 1.0) if level else (1.0,):
            fam.grow = GrowState(level, alpha, 8)
            for side, fn in (("d", fam.phase_d), ("g", fam.phase_g)):
                for p in [*fam.D.parameters(), *fam.aux.parameters(), *fam.G.parameters()]:
                    p.grad = None
                logs = fn(batch if side == "d" else None, _ctx())
                key = f"rot_{side}"
                assert torch.isfinite(logs[key]) and 0.5 < logs[key] < 3.0, (level, alpha, logs)
                assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
                assert fam.D.from_rgb[level].weight.grad.abs().sum() > 0  # rotated images enter at this level
                if side == "g":
                    assert fam.G.to_rgb[level].weight.grad.abs().sum() > 0  # G learns from the rotation loss
    assert sizes and set(sizes) == {8}  # minibatch stddev only ever saw one batch of 8 (reals, fakes, interpolates)
    assert fam.D.feature_dim == head.weight.shape[1] == 8 * 16  # the 4x4 map before minibatch stddev


def test_heads_learn_at_the_equalized_lr_rate():
    """The rotation head (a plain nn.Linear) gets lr / sqrt(fan_in) in D's optimizer, like D's equalized-LR layers."""
    fam = FAMILIES["pggan"](pcfg("pggan", *ROT, "train.lr_d=0.01"), "cpu", training=True)
    groups = fam.optimizers["D"].param_groups
    assert [g["lr"] for g in groups] == [0.01, 0.01 / (8 * 16) ** 0.5]
    assert groups[1]["params"] == list(fam.aux.parameters()) and len(groups[0]["params"]) == len(list(fam.D.parameters()))
    assert len(FAMILIES["pggan"](pcfg("pggan"), "cpu", training=True).optimizers["D"].param_groups) == 1  # no heads, one group


def test_rotation_head_learns_at_low_and_full_resolution(fmnist_small):
    """Steps on the rotation loss of faded reals (D's 4x4 features + the head) at 8x8 mid-fade and at 32x32
    lift the head's accuracy well above chance (0.25)."""
    for level, alpha in ((1, 0.5), (3, 1.0)):
        torch.manual_seed(0)
        fam = FAMILIES["pggan"](pcfg("pggan", "aux.rotation.d_weight=1.0", "model.d_width=16"), "cpu", training=True)
        fam.grow = GrowState(level, alpha, 32)
        opt = torch.optim.Adam([*fam.D.parameters(), *fam.aux.parameters()], lr=1e-3)
        accs = []
        for step in range(40):
            opt.zero_grad()
            real, logs = fam.reals({"image": fmnist_small.batch(torch.arange(32 * step, 32 * step + 32) % 512)}), {}
            fam.aux_terms("d", real, fam.D.feature(real, alpha), logs).backward()
            opt.step()
            accs.append(float(logs["rot_acc_real"]))
        assert sum(accs[:5]) / 5 < 0.3 and sum(accs[-10:]) / 10 > 0.4, (level, accs)


# --- the loop: optimizer resets, exact resume mid-fade, SIGINT, budget ---------------------------------
@pytest.mark.parametrize("reset", [True, False])
def test_optimizer_state_reset_when_a_level_starts(fmnist_small, reset):
    st = build_state(pcfg("pggan", f"loss.grow.reset_optimizers={reset}"), fmnist_small)
    fam = st.family
    for step in range(3):  # steps 0, 1 at 4x4; step 2 starts the 8x8 fade
        train_step(st)
        assert st.sched["resolution"] == (8 if step == 2 else 4)
    d_step = fam.optimizers["D"].state[fam.D.from_rgb[0].weight]["step"]
    assert float(d_step) == (1 if reset else 3)
    assert float(fam.optimizers["G"].state[fam.G.dense.weight]["step"]) == (1 if reset else 3)


@pytest.mark.parametrize("name", ["pggan", "stylegan"])
def test_resume_in_the_middle_of_a_fade_is_exact(tmp_path, fmnist_small, name):
    common = ["train.ckpt_every=3", "train.sample_every=3", *ROT, "aux.rotation.protocol=one"]
    data = _small(fmnist_small, 40)  # 5 batches per epoch: the resume also crosses an epoch boundary
    full, part = tmp_path / "full", tmp_path / "part"
    train(pcfg(name, "train.steps=8", *common), full, progress=False, data=data)
    train(pcfg(name, "train.steps=4", *common), part, progress=False, data=data)
    mid = ckpt_io.load(part)
    assert mid["sched"]["resolution"] == 8 and 0 < mid["sched"]["alpha"] < 1  # stopped inside the 8x8 fade
    train(pcfg(name, "train.steps=8", *common), part, resume=True, progress=False, data=data)
    assert_same_run(full, part)
    a, b = ckpt_io.load(full), ckpt_io.load(part)
    assert a["sched"] == b["sched"] and a["extra"] == b["extra"]
    if name == "stylegan":
        assert a["counters"]["Dreg"] == 4 and a["nets"]["G"]["w_avg"].abs().sum() > 0


def test_sigint_in_the_middle_of_a_fade_resumes_exactly(tmp_path, fmnist_small, monkeypatch):
    common = ["train.steps=7", "train.ckpt_every=0", "train.sample_every=0", *ROT]
    data = _small(fmnist_small, 64)
    train(pcfg("pggan", *common), tmp_path / "full", progress=False, data=data)
    calls = {"n": 0}
    real_step = torch.optim.Adam.step

    def step(self, *a, **k):
        out = real_step(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 7:  # D and G alternate: call 7 is the D step of loop step 3 (8x8, alpha 0.25)
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(KeyboardInterrupt):
        train(pcfg("pggan", *common), tmp_path / "part", progress=False, data=data)
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    ck = ckpt_io.load(tmp_path / "part")
    assert ck["step"] == 4 and ck["sched"]["alpha"] == 0.25
    train(pcfg("pggan", *common), tmp_path / "part", resume=True, progress=False, data=data)
    assert_same_run(tmp_path / "full", tmp_path / "part")


@pytest.mark.parametrize("name", ["pggan", "stylegan"])
def test_minutes_budget_stops_and_resumes(tmp_path, fmnist_small, name):
    train(pcfg(name, "train.steps=100000", "train.minutes=0.003", "train.ckpt_every=0"), tmp_path, progress=False, data=fmnist_small)
    ck = ckpt_io.load(tmp_path)
    assert 0 < ck["step"] < 100000 and ck["elapsed"] >= 0.18
    train(pcfg(name, "train.steps=100000", "train.minutes=0.006", "train.ckpt_every=0"), tmp_path, resume=True, progress=False,
          data=fmnist_small)
    ck2 = ckpt_io.load(tmp_path)
    assert ck2["step"] > ck["step"] and ck2["elapsed"] >= 0.36 and ck2["images"] > ck["images"]


# --- checkpoints through the bundle --------------------------------------------------------------------
@pytest.fixture(scope="module")
def grown_run(tmp_path_factory, fmnist_small):
    """A pggan run with rotation stopped halfway through the 8x8 fade (its last step, 4, has alpha 0.5)."""
    out = tmp_path_factory.mktemp("pggan_run")
    train(pcfg("pggan", "train.steps=5", *ROT), out, progress=False, data=fmnist_small)
    return out


def test_bundle_samples_at_the_current_level_upsampled(grown_run):
    b = api.load(grown_run)
    assert (b.family.level, b.family.alpha) == (1, 0.5)
    imgs = api.sample(grown_run, 5, seed=2, batch_size=2)
    assert imgs.shape == (5, 1, 32, 32) and imgs.dtype == torch.uint8
    torch.testing.assert_close(imgs, api.sample(grown_run, 5, seed=2))  # batching does not change images
    assert torch.equal(imgs[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3), imgs)  # 8x8 blocks of 4x4 pixels
    assert (grown_run / "samples" / "step_000004.png").is_file()


def test_info_shows_resolution_and_level_of_detail(grown_run):
    info = api.info(grown_run)
    assert info["current_resolution"] == 8 and info["resolution"] == 32 and info["level_of_detail"] == 2.5
    assert info["schedule"] == {"resolution": 8, "lod": 2.5, "alpha": 0.5, "batch_size": 8}
    r = CliRunner().invoke(cli, ["info", str(grown_run)])
    assert r.exit_code == 0, r.output
    assert "resolution: 8 px of 32 (level of detail 2.5, fade-in alpha 0.5)" in r.output and "rotation" in r.output


def test_features_and_probe_read_d_through_the_bundle(grown_run, tmp_path):
    rep = api.load(grown_run).representation()
    assert rep.name == "D" and rep.layers == ["block1", "block2", "block3"] and rep.known[-1] == "penultimate"
    r = CliRunner().invoke(cli, ["features", str(grown_run), "--data", "fashion-mnist", "--split", "test", "--limit", "40",
                                 "--out", str(tmp_path / "f.pt"), "--quiet"])
    assert r.exit_code == 0, r.output
    fs = torch.load(tmp_path / "f.pt", weights_only=True)
    assert fs["features"].shape[0] == 40 and fs["layers"] == ["block1", "block2", "block3"]
    r = CliRunner().invoke(cli, ["probe", str(grown_run), "--data", "fashion-mnist", "--limit", "200", "--seeds", "1",
                                 "--label-fraction", "1.0", "--baseline", "random-d", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert set(rows) == {"D", "random D"} and rows["D"]["layers"] == ["block1", "block2", "block3"]
    assert rows["D"]["dim"] == rows["random D"]["dim"] > 0 and rows["D"]["fractions"]["1"]["mean"] > 0.2  # chance: 0.1


def test_fid_of_a_checkpoint(grown_run, tmp_path, monkeypatch):
    from gan_ssl.evaluation import extractor as ev
    from gan_ssl.evaluation import fid as metrics

    home = tmp_path / "home"
    ev.train_evaluator("fashion-mnist", epochs=1, batch_size=64, width=4, feature_dim=8, limit=256,
                       out=home / "evaluators" / "fashion-mnist-cnn.pt", progress=False)
    monkeypatch.setenv("GAN_SSL_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("GAN_SSL_OFFLINE", "1")
    r = metrics.compute(str(grown_run), "fashion-mnist:test", n=64, seed=0, cache=False, verbose=False)
    assert r["input1"]["family"] == "pggan" and r["metrics"]["fid[fashion-mnist-cnn]"] > 0


def test_pggan_sampling_takes_no_truncation(grown_run, tmp_path):
    r = CliRunner().invoke(cli, ["sample", str(grown_run), "--n", "2", "--out", str(tmp_path / "x.npy"), "--truncation", "0.5"])
    assert r.exit_code == 2 and "pggan sampling takes no option 'truncation'" in r.stderr


def test_shipped_configs_follow_the_papers():
    from pathlib import Path

    root = Path(__file__).parent.parent / "configs"
    pg, sg, ss = (resolve(root / f"{n}_fmnist.yaml") for n in ("pggan", "stylegan", "ssstylegan"))
    assert (pg.family, pg.loss.gp_lambda, pg.loss.drift, pg.loss.grow.enabled) == ("pggan", 10.0, 0.001, True)
    for c in (pg, sg, ss):
        assert (c.train.beta1_g, c.train.beta2_g, c.train.beta1_d, c.train.beta2_d, c.train.n_dis) == (0.0, 0.99, 0.0, 0.99, 1)
        assert c.data.resolution == 32 and c.loss.grow.start_resolution == 4
    for c in (sg, ss):
        assert (c.family, c.loss.style_mixing, c.loss.w_avg_beta, c.loss.r1_every, c.model.mapping_lr_mul) == ("stylegan", 0.0, 0.995, 16, 0.01)
        assert (c.model.mapping_depth, c.train.ema_beta) == (2, 0.999)  # the mode-coverage choices (docs/pggan-stylegan.md)
    assert (sg.aux.rotation.d_weight, ss.aux.rotation.d_weight, ss.aux.rotation.g_weight) == (0.0, 1.0, 0.2)
    assert {k: v for k, v in ss.to_dict().items() if k != "aux"} == {k: v for k, v in sg.to_dict().items() if k != "aux"}
