"""Context-encoder and SRGAN families on the one loop: stages, per-sample inputs, exact resume, output sizes,
the frozen PSNR generator, features for the probe, and the inpaint / super-resolve / eval-* commands."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from pretext_helpers import ce_cfg, ce_ckpt, sr_cfg, sr_ckpt  # noqa: F401  (fixtures)
from test_train import assert_same_run

from gan_ssl import api
from gan_ssl.api import train
from gan_ssl.cli import cli
from gan_ssl.data import BatchStream, ImageData
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.engine.loop import train_step
from gan_ssl.engine.state import build_state
from gan_ssl.evaluation import features, probe
from gan_ssl.families.srgan import downsample
from gan_ssl.models import build
from gan_ssl.models.srgan import SRGenerator, Upsample2x


def _small(data, n):
    return ImageData(data.images[:n], data.labels[:n], data.name, data.classes)


def _rows(run):
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


def run_cli(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    return res.exit_code, res.output, res.stderr


# ---- context encoder -----------------------------------------------------------------------------

def test_context_encoder_stages_and_per_sample_masks(fmnist_small):
    st = build_state(ce_cfg("loss.mask=region"), fmnist_small)
    masks = []
    fam = st.family
    orig = fam.phase_g_pre
    fam.phases[0] = dataclasses.replace(fam.phases[0], fn=lambda b, c: (masks.append(b["mask"]), orig(b, c))[1])
    for _ in range(4):
        train_step(st)
    assert st.counters == {"G_pre": 2, "D": 2, "G": 2} and st.sched == {"stage": 1.0}
    m = masks[0]
    assert m.shape == (8, 1, 32, 32) and len({tuple(r.nonzero().flatten().tolist()) for r in m.flatten(1)}) == 8
    assert not torch.equal(masks[0], masks[1])  # a new draw for every batch


def test_context_encoder_input_never_sees_the_hole(fmnist_small):
    st = build_state(ce_cfg(), fmnist_small)
    fam = st.family
    fam.G.eval()
    x = fmnist_small.batch(torch.arange(4))
    mask = fam.make_inputs({"image": x}, torch.Generator().manual_seed(0))["mask"]
    y = torch.where(mask.expand_as(x) > 0, torch.rand_like(x), x)  # other pixels in the hole only
    pred_x, done_x = fam.complete(x, mask)
    pred_y, _ = fam.complete(y, mask)
    assert torch.equal(pred_x, pred_y)
    assert torch.equal(done_x[mask.expand_as(x) == 0], x[mask.expand_as(x) == 0])


def test_reconstruction_reads_only_the_hole_and_its_ring(fmnist_small):
    fam = build_state(ce_cfg(), fmnist_small).family
    x = fmnist_small.batch(torch.arange(2))
    mask = fam.make_inputs({"image": x}, torch.Generator())["mask"]
    pred = torch.zeros_like(x)
    far = pred.clone()
    far[..., :4, :] = 0.9  # rows far from the central hole
    assert fam.reconstruction(pred, x, mask) == fam.reconstruction(far, x, mask)
    near = pred.clone()
    near[..., 7, 12] = 0.9  # the 1 px ring above the hole (rows 8..23)
    assert fam.reconstruction(near, x, mask) != fam.reconstruction(pred, x, mask)


@pytest.mark.parametrize("cfg_fn", [ce_cfg, sr_cfg], ids=["context_encoder", "srgan"])
def test_resume_is_exact(tmp_path, fmnist_small, cfg_fn):
    """3 steps + resume to 6 == 6 steps, across the stage switch at step 2 and epoch boundaries (40 images, batch 8)."""
    data = _small(fmnist_small, 40)
    common = ("train.ckpt_every=3", "train.sample_every=3", "data.limit=40")
    full, part = tmp_path / "full", tmp_path / "part"
    train(cfg_fn("train.steps=6", *common), full, progress=False, data=data)
    train(cfg_fn("train.steps=3", *common), part, progress=False, data=data)
    train(cfg_fn("train.steps=6", *common), part, resume=True, progress=False, data=data)
    assert_same_run(full, part)
    drop = ("it_s", "img_s", "minutes")
    assert [{k: v for k, v in r.items() if k not in drop} for r in _rows(full)] == [{k: v for k, v in r.items() if k not in drop} for r in _rows(part)]
    assert [r["stage"] for r in _rows(full)] == [0, 0, 1, 1, 1, 1]
    ck = ckpt_io.load(part)
    assert ck["counters"]["G_pre"] == 2 and ck["counters"]["G"] == 4 and float(ck["buffers"]["grid_filled"]) == 1.0
    assert (part / "samples" / "step_000006.png").is_file()


def test_context_encoder_features_for_the_probe(ce_ckpt, fmnist_small):
    b = api.load(ce_ckpt)
    assert b.representations == ("encoder", "D")
    enc = b.representation("encoder")
    feats = enc.features(fmnist_small.batch(torch.arange(4)))
    assert list(feats) == ["block1", "block2", "block3", "code"] and feats["code"].shape == (4, 16, 1, 1)
    fs = features.export(ce_ckpt, "fashion-mnist", "test", limit=32, net="encoder")
    assert fs["features"].shape[0] == 32 and fs["net"] == "encoder" and torch.isfinite(fs["features"]).all()
    r = probe.probe(ce_ckpt, "fashion-mnist", fractions=(1.0,), seeds=1, baselines=("pixels",), limit=60, net="D")
    assert set(r["rows"]) == {"D", "pixels"}


@pytest.mark.parametrize("resolution,channels", [(32, 1), (32, 3), (64, 3)])
@pytest.mark.parametrize("name", ["context_encoder", "srgan"])
def test_conditional_models_shapes_features_backward(name, resolution, channels):
    kw = {"width": 8, "bottleneck": 16} if name == "context_encoder" else {"g_width": 8, "n_blocks": 1}
    G, D = build(name, resolution=resolution, channels=channels, d_width=8, **kw)
    x = torch.rand(4, channels, resolution, resolution) * 2 - 1
    if name == "context_encoder":
        mask = torch.zeros(4, 1, resolution, resolution)
        mask[..., : resolution // 2, :] = 1
        out = G(x * (1 - mask), mask)
        codes = G.encoder.features(x)
        assert codes["code"].shape == (4, 16, 1, 1) and codes["block1"].shape == (4, 8, resolution // 2, resolution // 2)
    else:
        out = G(torch.nn.functional.avg_pool2d(x, 2))
    assert out.shape == x.shape
    feats = D.features(out)
    assert D(out).shape == (4,) and feats["penultimate"].shape == (4, D.feature_dim)
    (D(out).mean() + out.mean()).backward()
    for net in (G, D):
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


# ---- SRGAN ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale,upsample", [(2, "nearest"), (4, "nearest"), (4, "pixelshuffle")])
def test_sr_output_size_and_start_as_bicubic(scale, upsample):
    G = SRGenerator(1, scale, width=8, n_blocks=1, upsample=upsample)
    lr = torch.rand(3, 1, 32 // scale, 32 // scale) * 2 - 1
    out = G(lr)
    assert out.shape == (3, 1, 32, 32)
    torch.testing.assert_close(out, torch.nn.functional.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False))
    assert SRGenerator(1, scale, 8, 1, upsample)(torch.rand(1, 1, 5, 7)).shape == (1, 1, 5 * scale, 7 * scale)


def test_icnr_pixelshuffle_starts_as_nearest_upsampling():
    up = Upsample2x(4, "pixelshuffle")
    y = up(torch.randn(2, 4, 6, 6))  # [2, 4, 12, 12]
    assert torch.equal(y[..., 0::2, 0::2], y[..., 1::2, 1::2]) and torch.equal(y[..., 0::2, 0::2], y[..., 0::2, 1::2])


def test_sr_batches_carry_low_res(fmnist_small):
    st = build_state(sr_cfg(scale=4), fmnist_small)
    stream = BatchStream(fmnist_small, 8, 0, make_inputs=st.family.make_inputs)
    b = stream.next()
    assert b["low_res"].shape == (8, 1, 8, 8)
    torch.testing.assert_close(b["low_res"][0, 0, 0, 0], b["image"][0, 0, :4, :4].mean())
    torch.testing.assert_close(downsample(b["image"], 4), b["low_res"])


def test_g_psnr_is_g_at_the_end_of_pretraining(tmp_path, fmnist_small):
    data = _small(fmnist_small, 64)
    train(sr_cfg("train.steps=2", "data.limit=64"), tmp_path / "pre", progress=False, data=data)
    train(sr_cfg("train.steps=4", "data.limit=64"), tmp_path / "gan", progress=False, data=data)
    pre, gan = ckpt_io.load(tmp_path / "pre"), ckpt_io.load(tmp_path / "gan")
    for k, v in pre["nets"]["G"].items():
        assert torch.equal(gan["emas"]["G_psnr"][k], v), k
    assert any(not torch.equal(gan["nets"]["G"][k], v) for k, v in pre["nets"]["G"].items())
    assert gan["counters"] == {"G_pre": 2, "D": 2, "G": 2}
    fam = api.load(tmp_path / "gan").family
    lr = torch.zeros(1, 1, 16, 16)
    assert fam.upscale(lr, "G").shape == (1, 1, 32, 32) and fam.upscale(lr, "G_psnr").shape == (1, 1, 32, 32)


def test_sr_discriminator_features(sr_ckpt):
    fs = features.export(sr_ckpt, "fashion-mnist", "test", limit=16)
    assert fs["net"] == "D" and fs["layers"] == ["block1", "block2", "block3"] and fs["features"].shape[0] == 16


# ---- commands ------------------------------------------------------------------------------------

def test_inpaint_command_writes_images(ce_ckpt, tmp_path):
    code, out, _ = run_cli("inpaint", ce_ckpt, "--input", "fashion-mnist:test", "--limit", 5, "--mask", "blocks", "--out", tmp_path / "o")
    assert code == 0, out
    assert "inpainted 5 images" in out and "hole PSNR" in out
    for sub in ("masked", "completed", "mask"):
        pngs = sorted((tmp_path / "o" / sub).glob("*.png"))
        assert len(pngs) == 5 and np.asarray(Image.open(pngs[0])).shape == (32, 32)
    assert Image.open(tmp_path / "o" / "grid.png").size == (3 * 33 + 1, 5 * 33 + 1)  # rows: masked | completed | original
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(tmp_path / "one.png")  # a single file, fitted to 32 px
    code, out, _ = run_cli("inpaint", ce_ckpt, "--input", tmp_path / "one.png", "--out", tmp_path / "p")
    assert code == 0 and "inpainted 1 images" in out


def test_super_resolve_command_writes_upscaled_images(sr_ckpt, tmp_path):
    code, out, _ = run_cli("super-resolve", sr_ckpt, "--input", "fashion-mnist:test", "--limit", 4, "--degrade", "--out", tmp_path / "d")
    assert code == 0, out
    assert "16x16 -> 32x32" in out and "bicubic" in out
    assert np.asarray(Image.open(sorted((tmp_path / "d" / "sr").glob("*.png"))[0])).shape == (32, 32)
    assert np.asarray(Image.open(sorted((tmp_path / "d" / "lr").glob("*.png"))[0])).shape == (16, 16)
    np.save(tmp_path / "small.npy", np.zeros((3, 1, 20, 20), np.uint8))
    code, out, _ = run_cli("super-resolve", sr_ckpt, "--input", tmp_path / "small.npy", "--out", tmp_path / "n", "--net", "G_psnr")
    assert code == 0 and "20x20 -> 40x40" in out, out


def test_eval_tables(ce_ckpt, sr_ckpt):
    code, out, _ = run_cli("eval-inpaint", ce_ckpt, "--n", 16, "--nn-database", 64, "--quiet")
    assert code == 0, out
    for row in ("context encoder (step 4)", "zero fill", "mean fill", "nearest neighbour (64 train)", "telea (opencv)"):
        assert row in out
    assert "hole PSNR" in out and "holes 25.0% of the pixels" in out
    code, out, _ = run_cli("eval-sr", sr_ckpt, "--n", 16, "--quiet", "--json")
    r = json.loads(out)
    assert code == 0 and r["scale"] == 2 and r["crop"] == 2 and r["n"] == 16
    assert list(r["rows"]) == ["nearest", "bilinear", "bicubic", "srgan L1 stage (G_psnr, step 2)", "srgan GAN stage (G, step 4)"]
    assert all(set(v) == {"psnr", "psnr_y", "ssim", "ssim_y"} for v in r["rows"].values())


def test_pretext_commands_refuse_other_checkpoints(ce_ckpt, sr_ckpt, tiny_run, tmp_path):
    for args, needle in [(("eval-sr", ce_ckpt), "needs a srgan one"), (("inpaint", sr_ckpt, "--input", "fashion-mnist:test", "--out", tmp_path),
                                                                       "needs a context_encoder one"),
                         (("eval-inpaint", tiny_run), "is a gan checkpoint"), (("sample", ce_ckpt, "--out", tmp_path / "s.npy"), "gan-ssl inpaint")]:
        code, out, err = run_cli(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, (args, err)


def test_cli_defaults_are_the_api_defaults():
    from gan_ssl.evaluation import pretext

    for name, keys in {"inpaint": ("mask", "seed", "limit", "batch_size"), "super-resolve": ("limit", "batch_size"),
                       "eval-inpaint": ("mask", "split", "n", "seed", "nn_database", "batch_size"),
                       "eval-sr": ("split", "n", "batch_size")}.items():
        opts = {p.name: p.default for p in cli.commands[name].params}
        for k in keys:
            assert opts[k] == pretext.DEFAULTS[k], (name, k)
