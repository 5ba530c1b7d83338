"""StyleGAN: truncation and w_avg, style mixing (training and the grid), lazy R1, sampling determinism, the CLI."""
import contextlib

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from test_progressive import ROT, pcfg

from gan_ssl import api
from gan_ssl.api import train
from gan_ssl.cli import cli
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.families import FAMILIES, StepContext
from gan_ssl.families.progressive import GrowState


def _ctx():
    return StepContext(torch.device("cpu"), contextlib.nullcontext, lambda loss: loss.backward())


@pytest.fixture(scope="module")
def style_run(tmp_path_factory, fmnist_small):
    """A stylegan run at full resolution (no growing), with rotation, R1 every 2 steps."""
    out = tmp_path_factory.mktemp("stylegan_run")
    train(pcfg("stylegan", "loss.grow.enabled=false", "train.steps=6", "loss.r1_gamma=1.0", *ROT), out, progress=False, data=fmnist_small)
    return out


def test_w_avg_is_tracked_and_survives_save_and_load(style_run):
    ck = ckpt_io.load(style_run)
    w_avg = ck["nets"]["G"]["w_avg"]
    assert w_avg.shape == (16,) and w_avg.abs().sum() > 0  # tracked from zero by the G phases
    assert torch.equal(ck["emas"]["G_ema"]["w_avg"], w_avg)  # the EMA copies buffers
    raw = torch.load(style_run / "checkpoints" / "latest.pt", weights_only=True)
    assert torch.equal(raw["nets"]["G"]["w_avg"], w_avg)
    fam = api.load(style_run).family
    assert torch.equal(fam.ema_module("G_ema").w_avg, w_avg) and torch.equal(fam.G.w_avg, w_avg)


def test_w_avg_ema_beta():
    cfg = pcfg("stylegan")
    G = FAMILIES["stylegan"](cfg, "cpu", training=False).G
    w = torch.randn(5, 16)
    G.track_w_avg(w, 0.995)
    torch.testing.assert_close(G.w_avg, 0.005 * w.mean(0))
    G.track_w_avg(w, 0.995)
    torch.testing.assert_close(G.w_avg, (0.005 + 0.995 * 0.005) * w.mean(0))


def test_psi_zero_makes_every_sample_the_w_avg_image(style_run):
    b = api.load(style_run)
    fam, G = b.family, b.family.ema_module("G_ema")
    with torch.no_grad():
        G.w_avg.copy_(torch.randn(16))  # a distinctive average
    imgs = b.sample(5, seed=0, truncation=0.0, noise="none")
    assert all(torch.equal(imgs[i], imgs[0]) for i in range(5))
    with torch.no_grad():
        avg = fam.synthesize(G.w_avg.expand(1, -1), fam._noise(0, 1, 0, "none"))
    torch.testing.assert_close(imgs[:1], ((avg.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8), atol=1, rtol=0)
    free = b.sample(5, seed=0, noise="none")
    assert not torch.equal(free[0], free[1])  # without truncation the samples differ
    half = b.sample(5, seed=0, truncation=0.5, cutoff=2, noise="none")
    assert not torch.equal(half, free) and not torch.equal(half[0], half[1])


def test_truncation_interpolates_w_towards_w_avg():
    G = FAMILIES["stylegan"](pcfg("stylegan"), "cpu", training=False).G
    with torch.no_grad():
        G.w_avg.copy_(torch.randn(16))
    w = torch.randn(3, 16)
    ws = G.truncate(w, 0.7, cutoff=3)
    assert ws.shape == (3, G.num_ws, 16)
    torch.testing.assert_close(ws[:, :3], G.w_avg + 0.7 * (w - G.w_avg).unsqueeze(1).expand(-1, 3, -1))
    torch.testing.assert_close(ws[:, 3:], w.unsqueeze(1).expand(-1, G.num_ws - 3, -1))
    torch.testing.assert_close(G.truncate(w, 0.0)[:, -1], G.w_avg.expand(3, -1))


def test_samples_are_seeded_and_independent_of_batch_size(style_run):
    a = api.sample(style_run, 7, seed=4, batch_size=3)
    assert a.shape == (7, 1, 32, 32)
    # the same latents and noise at any batch size; CPU kernels may round a pixel by one grey level differently
    # when the batch shape changes, so equality is up to that
    assert (a.int() - api.sample(style_run, 7, seed=4).int()).abs().max() <= 1
    assert (a.int() - api.sample(style_run, 7, seed=5).int()).abs().max() > 1
    torch.manual_seed(0)
    before = torch.get_rng_state()
    api.sample(style_run, 2, seed=4)
    assert torch.equal(before, torch.get_rng_state())  # sampling never touches the global RNG


def test_style_mixing_in_training_fakes(monkeypatch):
    fam = FAMILIES["stylegan"](pcfg("stylegan", "loss.grow.enabled=false", "loss.style_mixing=1.0"), "cpu", training=True)
    seen = []
    real_synthesis = type(fam.G).synthesis
    monkeypatch.setattr(type(fam.G), "synthesis", lambda self, ws, *a, **k: (seen.append(ws.detach().clone()), real_synthesis(self, ws, *a, **k))[1])
    torch.manual_seed(0)
    for _ in range(5):
        fam.fakes(4, torch.device("cpu"))
    for ws in seen:  # one crossover per batch: layers [0, k) share one w, [k, num_ws) another
        same = [torch.equal(ws[:, i], ws[:, 0]) for i in range(ws.shape[1])]
        k = same.index(False)
        assert 1 <= k < ws.shape[1] and not any(same[k:]) and all(torch.equal(ws[:, i], ws[:, k]) for i in range(k, ws.shape[1]))
    assert len({tuple(s) for s in [[torch.equal(ws[:, i], ws[:, 0]) for i in range(8)] for ws in seen]}) > 1  # crossovers vary
    fam.cfg.loss.style_mixing = 0.0
    seen.clear()
    fam.fakes(4, torch.device("cpu"))
    assert all(torch.equal(seen[0][:, i], seen[0][:, 0]) for i in range(8))  # weight 0: no mixing


def test_style_mix_grid_rows_take_coarse_and_columns_fine_styles(style_run, tmp_path):
    fam = api.load(style_run).family
    grid = fam.style_mix(2, 3, seed=0)  # [(2 + 1) * (3 + 1), 1, 32, 32], row-major
    assert grid.shape == (12, 1, 32, 32) and (grid[0] == 128).all()
    top, left = grid[1:4], grid[[4, 8]]
    cells = torch.stack([grid[5:8], grid[9:12]])  # [2, 3, ...]
    for i in range(2):
        for j in range(3):
            assert not torch.equal(cells[i, j], top[j]) and not torch.equal(cells[i, j], left[i])  # mixing changes the image
    assert not torch.equal(cells[0, 0], cells[1, 0]) and not torch.equal(cells[0, 0], cells[0, 1])
    # crossover at the last layer: everything but the last style comes from the row source
    fam2 = api.load(style_run).family
    G = fam2.ema_module("G_ema")
    with torch.no_grad():
        for layer in G.layers[:-1]:
            layer.adain.style.weight.zero_()  # only the last layer's style matters now
    flat = fam2.style_mix(2, 3, seed=0, crossover=G.num_ws - 1)
    torch.testing.assert_close(flat[5:8], flat[1:4], atol=1, rtol=0)  # = the column sources
    torch.testing.assert_close(flat[9:12], flat[1:4], atol=1, rtol=0)


def test_style_mixing_changes_the_synthesised_image():
    torch.manual_seed(0)
    G = FAMILIES["stylegan"](pcfg("stylegan"), "cpu", training=False).G
    for layer in G.layers:
        torch.nn.init.normal_(layer.noise.weight)
    w1, w2 = G.mapping(torch.randn(2, 16)), G.mapping(torch.randn(2, 16))
    noise = [torch.randn(2, 1, r, r) for r in G.noise_resolutions()]
    ws = w1.unsqueeze(1).repeat(1, G.num_ws, 1)
    base = G.synthesis(ws, noise=noise)
    for k in (2, 4, 6):
        mixed = ws.clone()
        mixed[:, k:] = w2.unsqueeze(1)
        assert (G.synthesis(mixed, noise=noise) - base).abs().max() > 1e-4, k


class _TinyD(torch.nn.Module):
    """D(x) = v . tanh(W x + c) on 4x4 images: grad_x D = W^T (v * (1 - tanh^2)) in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(16, 5)
        self.v = torch.nn.Parameter(torch.randn(5))

    def forward(self, x, alpha=1.0):
        return torch.tanh(self.lin(x.flatten(1))) @ self.v


def test_r1_phase_matches_closed_form_gradient():
    torch.manual_seed(0)
    cfg = pcfg("stylegan", "loss.r1_gamma=0.5", "loss.r1_every=4", "train.n_dis=2")
    fam = FAMILIES["stylegan"](cfg, "cpu", training=True)
    fam.grow = GrowState(0, 1.0, 8)
    fam.D = D = _TinyD()
    batch = {"image": torch.rand(6, 1, 32, 32) * 2 - 1}
    logs = fam.phase_dreg(batch, _ctx())
    x = torch.nn.functional.avg_pool2d(batch["image"], 8).flatten(1)  # the 4x4 reals D saw
    W, c, v = D.lin.weight.detach().clone().requires_grad_(), D.lin.bias.detach().clone().requires_grad_(), D.v.detach().clone().requires_grad_()
    grad_x = (v * (1 - torch.tanh(x @ W.T + c) ** 2)) @ W  # [6, 16]
    r1 = grad_x.square().sum(1).mean()
    torch.testing.assert_close(logs["r1"], r1.detach())
    lazy = 0.5 / 2 * 4 * 2  # gamma / 2 * r1_every * n_dis
    torch.testing.assert_close(logs["loss"], (r1 * lazy).detach())
    (r1 * lazy).backward()
    torch.testing.assert_close(D.lin.weight.grad, W.grad)
    torch.testing.assert_close(D.lin.bias.grad, c.grad)
    torch.testing.assert_close(D.v.grad, v.grad)


def test_r1_phase_runs_every_r1_every_steps(style_run):
    ck = ckpt_io.load(style_run)
    assert ck["counters"] == {"D": 6, "Dreg": 3, "G": 6}  # steps 0, 2, 4


def test_cli_truncation_and_style_mix(style_run, tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["sample", str(style_run), "--n", "3", "--out", str(tmp_path / "t.npy"), "--truncation", "0"])
    assert r.exit_code == 0, r.output
    import numpy as np

    arr = np.load(tmp_path / "t.npy")
    assert arr.shape == (3, 1, 32, 32)
    torch.testing.assert_close(torch.from_numpy(arr), api.sample(style_run, 3, truncation=0.0))
    r = runner.invoke(cli, ["sample", str(style_run), "--style-mix", "3,4", "--out", str(tmp_path / "mix.png")])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "mix.png").size == (5 * 33 + 1, 4 * 33 + 1)  # (cols + 1) x (rows + 1) cells of 32 px + padding
    for args, needle in [(["--style-mix", "3"], "ROWS,COLS"), (["--style-mix", "0,2"], "at least 1"),
                         (["--style-mix", "2,2", "--out", str(tmp_path / "m.npy")], "must end in .png")]:
        if "--out" not in args:
            args = [*args, "--out", str(tmp_path / "m.png")]
        r = runner.invoke(cli, ["sample", str(style_run), *args])
        assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_style_mix_needs_a_stylegan_checkpoint(tiny_run, tmp_path):
    r = CliRunner().invoke(cli, ["sample", str(tiny_run), "--style-mix", "2,2", "--out", str(tmp_path / "m.png")])
    assert r.exit_code == 2 and "style mixing needs a stylegan checkpoint" in r.stderr


def test_info_of_a_non_progressive_stylegan(style_run):
    r = CliRunner().invoke(cli, ["info", str(style_run)])
    assert r.exit_code == 0 and "resolution: 32 px of 32 (level of detail 0, fade-in alpha 1)" in r.output
    assert "Dreg" in r.output and "rotation" in r.output
