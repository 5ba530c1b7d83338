"""The fault and correctness sweep (issue 22): each test names the defect it guards and fails on the code before
its fix. Torn log lines, damaged checkpoints, early refusals, exact resume of a streamed folder, checkpoint
rotation past step 999,999, augmented lazy R1, the lazy-phase Adam correction, derived seeds, input checks
that survive `python -O`, a seeded evaluation sample of a folder, and values that used to be silent defaults."""
import contextlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_cfg
from test_train import _small, assert_same_run

from gan_ssl.api import train
from gan_ssl.core.errors import CheckpointError, ConfigError, DataError
from gan_ssl.core.seeds import derive_seed
from gan_ssl.data import EpochSampler, FolderSource, ImageData, load_images
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.engine.rundir import numbered_checkpoints
from gan_ssl.engine.state import build_state, correct_lazy_optimizers, lazy_ratios
from gan_ssl.families import FAMILIES, StepContext
from gan_ssl.families.resolve import resolve


def _folder(tmp_path, n=48, classes=("a", "b", "c", "d")):
    from PIL import Image

    root = tmp_path / "imgs"
    for i in range(n):
        d = root / classes[i * len(classes) // n]  # sorted order = class order: the first files are one class
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 20), (i * 5) % 256, dtype=np.uint8)).save(d / f"{i:03d}.png")
    return root


# --- metrics.jsonl ------------------------------------------------------------------------------
def test_a_torn_last_log_line_does_not_stop_resume_report_or_api(tmp_path, fmnist_small):
    """A kill during an append leaves half a JSON line: resume, the report and api.last_eval drop it (was a
    JSONDecodeError traceback); a bad line anywhere else is a one-line DataError."""
    from gan_ssl import api
    from gan_ssl.evaluation.report import read_metrics

    common = ("train.ckpt_every=2", "train.log_every=1", "data.limit=40")
    data = _small(fmnist_small, 40)
    run = tmp_path / "run"
    train(tiny_cfg("train.steps=2", *common), run, progress=False, data=data)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "d_lo')  # the torn line
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")[0]] == [1, 2]
    assert api.last_eval(run) == {}
    train(tiny_cfg("train.steps=4", *common), run, resume=True, progress=False, data=data)
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=r"metrics.jsonl:2 is not a JSON line"):
        read_metrics(run / "metrics.jsonl")


# --- damaged checkpoints ------------------------------------------------------------------------
@pytest.mark.parametrize("section", ["optims", "nets", "data", "rng", "config", "buffers"])
def test_a_checkpoint_without_a_section_is_a_one_line_error(tiny_run, tmp_path, section):
    """Was a bare KeyError traceback from --resume, sample and the other commands."""
    ck = ckpt_io.load(tiny_run / "checkpoints" / "latest.pt")
    del ck[section]
    path = tmp_path / "damaged.pt"
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match=f"damaged gan_ssl checkpoint: its '{section}' section is missing"):
        ckpt_io.load(path)
    r = subprocess.run([sys.executable, "-m", "gan_ssl", "sample", str(path), "--n", "4", "--out", str(tmp_path / "s.png")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "section is missing" in r.stderr


def test_a_checkpoint_without_a_buffer_is_refused(tiny_run, tmp_path):
    """Missing buffers were skipped silently (the fixed latents of the grid then came from the fresh init)."""
    from gan_ssl import api

    ck = ckpt_io.load(tiny_run / "checkpoints" / "latest.pt")
    del ck["buffers"]["fixed_z"]
    path = tmp_path / "no_buffer.pt"
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match="checkpoint has no buffer 'fixed_z'"):
        api.load(path)


def test_an_export_without_its_buffers_is_refused(tiny_run, tmp_path):
    from gan_ssl.inference.export import CONFIG_FILE, export, load_generator

    out = tmp_path / "export"
    export(tiny_run / "checkpoints" / "latest.pt", out)
    meta = json.loads((out / CONFIG_FILE).read_text())
    meta["files"] = {k: v for k, v in meta["files"].items() if v["kind"] != "buffers"}
    (out / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="buffers"):
        load_generator(out)


# --- refusals before training -------------------------------------------------------------------
@pytest.mark.parametrize("config", ["configs/inpaint_fmnist.yaml", "configs/sr2x_fmnist.yaml"])
def test_in_training_fid_on_an_image_to_image_family_is_refused_before_training(config):
    """Was refused at the first evaluation, after steps were spent and a checkpoint written."""
    with pytest.raises(ConfigError, match="draws no unconditional samples"):
        resolve(config, ["eval.every=10"])
    cfg = resolve(config, ["eval.every=10", "eval.fid=false"])  # the probe of D still runs
    assert cfg.eval.probe


# --- exact resume of a streamed folder ----------------------------------------------------------
def test_a_streamed_folder_run_resumes_bit_exactly(tmp_path):
    """The DataLoader drew its base seed from the global RNG when rebuilt on resume, shifting every later
    random draw; it now has its own generator."""
    root = _folder(tmp_path)
    common = (f"data.name=folder:{root}", "data.storage=stream", "data.workers=1", "data.limit=0", "data.resolution=16",
              "train.ckpt_every=5", "train.log_every=1", "train.sample_every=0")
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_cfg("train.steps=12", *common, model="dcgan"), full, progress=False)
    train(tiny_cfg("train.steps=5", *common, model="dcgan"), part, progress=False)
    train(tiny_cfg("train.steps=12", *common, model="dcgan"), part, resume=True, progress=False)
    assert_same_run(full, part)


# --- checkpoint rotation ------------------------------------------------------------------------
def test_keep_ckpts_orders_by_step_past_999999(tmp_path):
    """Sorted as text, step_1000000.pt came before step_999999.pt and keep_ckpts deleted the newest."""
    for s in (999_998, 999_999, 1_000_000, 1_000_001):
        (tmp_path / f"step_{s:06d}.pt").write_bytes(b"")
    (tmp_path / "step_best.pt").write_bytes(b"")
    assert [p.name for p in numbered_checkpoints(tmp_path)] == ["step_999998.pt", "step_999999.pt", "step_1000000.pt", "step_1000001.pt"]


# --- lazy R1 under DiffAugment ------------------------------------------------------------------
@pytest.mark.parametrize("config", ["gan", "stylegan"])
def test_lazy_r1_sees_the_augmented_reals(config):
    """The gan family's Dreg read un-augmented reals while DiffAugment was on; R1 is now the gradient of
    D(aug(x)) with respect to x (StyleGAN2-ADA) in both families, with the same augmentation draw."""
    over = ["loss.r1_gamma=1.0", "loss.r1_every=4", "train.diffaug=translation,cutout", "train.precision=fp32",
            "train.channels_last=false"]
    if config == "gan":
        cfg = tiny_cfg(*over, model="dcgan", rotation=False)
    else:
        cfg = resolve("configs/stylegan_fmnist.yaml", [*over, "model.z_dim=16", "model.w_dim=16", "model.g_width=8",
                                                        "model.d_width=8", "train.batch_size=8", "loss.grow.enabled=false"])
    fam = FAMILIES[cfg.family](cfg, "cpu", training=True)
    fam.D.eval()
    phase = next(p for p in fam.phases if p.name == "Dreg")
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    torch.manual_seed(5)
    logs = phase.fn({"image": real}, StepContext(torch.device("cpu"), contextlib.nullcontext, lambda loss: None))
    torch.manual_seed(5)
    x = (fam.reals({"image": real}) if hasattr(fam, "reals") else real).detach().requires_grad_(True)
    out = fam.D(fam.augment(x), fam.alpha) if hasattr(fam, "alpha") else fam.D(fam.augment(x))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert logs["r1"].item() == pytest.approx(grad.square().sum(dim=(1, 2, 3)).mean().item(), rel=1e-4)
    plain = torch.autograd.grad((fam.D(x, fam.alpha) if hasattr(fam, "alpha") else fam.D(x)).sum(), x)[0]
    assert logs["r1"].item() != pytest.approx(plain.square().sum(dim=(1, 2, 3)).mean().item(), rel=1e-2)  # not the un-augmented R1


# --- Adam correction of lazy phases -------------------------------------------------------------
def test_lazy_phases_scale_lr_and_betas_as_stylegan2_ada():
    """Lazy phases took extra Adam steps with no correction; now lr x r and betas ** r, r = k / (k + 1)."""
    cfg = resolve("configs/ssgan_fmnist.yaml", ["train.precision=fp32"])  # rotation in Daux/Gaux every 4 steps
    fam = FAMILIES["gan"](cfg, "cpu", training=True)
    assert lazy_ratios(fam.phases) == {"D": pytest.approx(0.8), "G": pytest.approx(0.8)}
    correct_lazy_optimizers(fam)
    for name in ("D", "G"):
        group = fam.optimizers[name].param_groups[0]
        assert group["lr"] == pytest.approx(2e-4 * 0.8)
        assert group["betas"] == pytest.approx((0.5**0.8, 0.999**0.8))
    r1 = FAMILIES["gan"](tiny_cfg("loss.r1_gamma=1", "loss.r1_every=16", "train.n_dis=2", rotation=False), "cpu", training=True)
    assert lazy_ratios(r1.phases) == {"D": pytest.approx(32 / 33)}  # one R1 step per 32 D steps
    fold = FAMILIES["gan"](resolve("configs/ssgan_fmnist.yaml", ["aux.rotation.lazy=fold"]), "cpu", training=True)
    assert lazy_ratios(fold.phases) == {}  # folded rotation takes no extra steps: nothing to correct
    data = load_images("fashion-mnist", "train", 32, 1, limit=64)
    st = build_state(resolve("configs/ssgan_fmnist.yaml", ["train.lazy_correction=false"]), data)  # the main job opts out
    assert st.family.optimizers["D"].param_groups[0]["lr"] == 2e-4
    st = build_state(resolve("configs/ssgan_fmnist.yaml", ["train.lazy_correction=true"]), data)
    assert st.family.optimizers["D"].param_groups[0]["lr"] == pytest.approx(1.6e-4)


# --- seeds --------------------------------------------------------------------------------------
def test_derived_seeds_are_distinct_and_stable():
    """Epoch 1's permutation and batch 0's input generator both got seed * 1_000_003 + 1."""
    assert derive_seed(3, "epoch", 1) != derive_seed(3, "inputs", 0, 0)
    assert derive_seed(3, "epoch", 1) == derive_seed(3, "epoch", 1) and derive_seed(3, "epoch", 1) != derive_seed(4, "epoch", 1)
    assert derive_seed(0, "a", 1) != derive_seed(0, "a1") and derive_seed(0, 1) != derive_seed(0, "1")
    seeds = {derive_seed(s, p, i) for s in range(20) for p in ("epoch", "inputs", "loader", "rank") for i in range(50)}
    assert len(seeds) == 20 * 4 * 50 and all(0 <= s < 2**63 for s in seeds)
    a, b = EpochSampler(64, 8, seed=3), EpochSampler(64, 8, seed=3)
    assert torch.equal(a._perm, b._perm)


# --- input checks that survive python -O --------------------------------------------------------
def test_image_data_checks_its_input_even_under_python_O():
    with pytest.raises(DataError, match="uint8 tensor"):
        ImageData(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), "x")
    with pytest.raises(DataError, match="one per image"):
        ImageData(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), "x")
    code = ("import torch; from gan_ssl.data import ImageData\n"
            "try:\n ImageData(torch.zeros(4, 8, 8, dtype=torch.uint8), torch.zeros(4), 'x')\n"
            "except Exception as e: print(type(e).__name__)")
    r = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "DataError", r.stderr


# --- evaluation images of a streamed folder -----------------------------------------------------
def test_a_streamed_folder_is_evaluated_on_a_seeded_sample_of_every_class(tmp_path):
    """In-training evaluation read the first N files in sorted order: the first classes only."""
    root = _folder(tmp_path, n=48)
    src = FolderSource(str(root), "train", 16, 1)
    sample = src.sample(12, seed=1)
    assert len(sample) == 12 and set(sample.labels.tolist()) == {0, 1, 2, 3}
    assert torch.equal(sample.images, src.sample(12, seed=1).images) and not torch.equal(sample.labels, src.sample(12, seed=2).labels)
    for img, i in zip(sample.images, sample.labels):
        assert img.shape == (1, 16, 16)


# --- values that were silent defaults -----------------------------------------------------------
def test_the_inpainting_fill_is_the_training_mean_of_the_data_at_hand(tmp_path):
    """loss.fill defaulted to the Fashion-MNIST mean for every dataset; `mean` now computes it from the
    training images and keeps it in the checkpoint; a number still works; anything else is refused."""
    from gan_ssl import api

    root = _folder(tmp_path, n=16)
    data = load_images(f"folder:{root}", resolution=32, channels=1)
    over = [f"data.name=folder:{root}", "data.limit=0", "model.width=8", "train.batch_size=8", "train.steps=2",
            "train.ckpt_every=2", "train.sample_every=0", "train.log_every=1", "train.sample_grid=4"]
    run = tmp_path / "run"
    train(resolve("configs/inpaint_fmnist.yaml", over), run, progress=False)
    expected = data.images.float().mean() / 127.5 - 1
    fam = api.load(run / "checkpoints" / "latest.pt").family
    assert fam.fill_value().flatten().item() == pytest.approx(expected.item(), abs=1e-5)
    assert abs(expected.item() - (-0.562)) > 0.05  # not the Fashion-MNIST value
    assert FAMILIES["context_encoder"](resolve("configs/inpaint_fmnist.yaml", ["loss.fill=0.25"]), "cpu").fill_value().item() == 0.25
    for bad in ("avg", "2"):
        with pytest.raises(ConfigError, match="loss.fill"):
            resolve("configs/inpaint_fmnist.yaml", [f"loss.fill={bad}"])


def test_srgan_without_pretraining_has_no_g_psnr():
    """With pretrain_steps=0, G_psnr stayed at its initial weights and was used as if trained."""
    cfg = resolve("configs/sr2x_fmnist.yaml", ["loss.pretrain_steps=0"])
    fam = FAMILIES["srgan"](cfg, "cpu", training=False)
    low = torch.zeros(2, 1, 16, 16)
    assert fam.upscale(low, "G").shape == (2, 1, 32, 32)
    with pytest.raises(ConfigError, match="no pre-training stage"):
        fam.upscale(low, "G_psnr")


def test_only_torch_fidelity_input_checks_read_as_rejected_inputs():
    """Every ValueError inside torch-fidelity was reported as 'rejected the inputs', bugs included."""
    from torch_fidelity.helpers import vassert

    from gan_ssl.evaluation.fid import _raised_by_fidelity_check

    try:
        vassert(False, "input1 is empty")
    except ValueError as e:
        assert _raised_by_fidelity_check(e)
    try:
        int("x")
    except ValueError as e:
        assert not _raised_by_fidelity_check(e)


# --- the CLI: more inputs that gave tracebacks --------------------------------------------------
def test_more_bad_cli_inputs_are_one_line(tiny_run, tmp_path):
    from click.testing import CliRunner

    from gan_ssl.cli import cli

    def run(*args):
        r = CliRunner().invoke(cli, [str(a) for a in args])
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        assert r.exit_code == 2 and len(lines) == 1, (r.exit_code, r.output)
        return lines[0]

    (tmp_path / "mix.png").write_bytes(b"x")
    assert "is a file" in run("sample", tiny_run, "--n", "4", "--out", tmp_path / "mix.png")
    (tmp_path / "dir.npy").mkdir()
    assert "is a folder" in run("sample", tiny_run, "--n", "4", "--out", tmp_path / "dir.npy")
    assert "SEED" in run("sample", tiny_run, "--n", "4", "--seed", str(2**64), "--out", tmp_path / "s.npy").upper()
    assert "finite" in run("train", "configs/ssgan_fmnist.yaml", "--out", tmp_path / "r", "--set", "data.subset=.inf")
    assert "must be 1 (greyscale) or 3" in run("train", "configs/ssgan_fmnist.yaml", "--out", tmp_path / "r", "--set", "data.channels=2")


def test_a_foreign_cifar_file_is_one_line(tmp_path, monkeypatch):
    import pickle

    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / name).write_bytes(pickle.dumps({"images": [1, 2, 3]}))  # a pickle, but not a CIFAR-10 batch
    with pytest.raises(DataError, match="is not a CIFAR-10 python batch"):
        load_images("cifar10", "test", 32, 3, root=str(tmp_path))


def test_inputs_of_the_wrong_height_are_fitted_like_the_wrong_width(tmp_path):
    from PIL import Image

    from gan_ssl.evaluation.pretext import read_images

    Image.fromarray(np.zeros((28, 32), dtype=np.uint8)).save(tmp_path / "a.png")  # 32 wide, 28 high
    assert tuple(read_images(tmp_path / "a.png", 1, 32).shape) == (1, 1, 32, 32)
