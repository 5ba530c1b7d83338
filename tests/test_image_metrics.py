"""PSNR/SSIM against skimage on fixed images, hole vs full-image PSNR, the bicubic baseline on images whose
answer is known, and LPIPS' VGG trunk: loaded from a small test file, hash reported, absent = exit 2."""
import hashlib
import math

import pytest
import torch
from click.testing import CliRunner
from pretext_helpers import sr_ckpt  # noqa: F401  (fixture)
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gan_ssl.cli import cli
from gan_ssl.core.errors import DataError, WeightsError
from gan_ssl.evaluation import image_quality as im
from gan_ssl.evaluation.baselines import constant_fill, nearest_context_fill, upsample
from gan_ssl.nn import lpips as lpips_mod
from gan_ssl.nn.masks import center_mask


def pair(channels=3, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, 32, 32, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


def _np(t):
    return t.permute(1, 2, 0).double().numpy()


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_and_ssim_match_skimage(channels):
    x, y = pair(channels)
    ref_psnr = [peak_signal_noise_ratio(_np(a), _np(b), data_range=1.0) for a, b in zip(x, y)]
    ref_ssim = [structural_similarity(_np(a), _np(b), channel_axis=2, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=1.0) for a, b in zip(x, y)]
    torch.testing.assert_close(im.psnr(x, y).double(), torch.tensor(ref_psnr), atol=1e-4, rtol=0)
    torch.testing.assert_close(im.ssim(x, y).double(), torch.tensor(ref_ssim), atol=1e-4, rtol=0)


def test_luma_is_bt601_as_skimage_and_grey_is_its_own():
    x, _ = pair(3, 2)
    ref = torch.from_numpy(rgb2ycbcr(_np(x[0]))[..., 0]) / 255.0  # Y in [16, 235] / 255
    torch.testing.assert_close(im.to_y(x)[0, 0].double(), ref, atol=1e-5, rtol=0)
    g, _ = pair(1, 2)
    assert im.to_y(g) is g
    r = im.full_reference(g, g.flip(-1), crop=2)
    assert torch.equal(r["psnr"], r["psnr_y"]) and torch.equal(r["ssim"], r["ssim_y"])


def test_metrics_refuse_images_outside_0_1_and_are_per_image():
    x, y = pair(1)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        im.psnr(x * 2 - 1, y * 2 - 1)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        im.ssim(x * 2 - 1, y * 2 - 1)
    torch.testing.assert_close(im.unit(x * 2 - 1), x)
    whole = im.full_reference(x, y, crop=2)
    for k, v in im.full_reference(x[1:3], y[1:3], crop=2).items():  # batch composition does not change a value
        torch.testing.assert_close(v, whole[k][1:3])
    assert im.full_reference(x, y, crop=4)["psnr"].shape == (4,)


def test_hole_psnr_differs_from_full_psnr_by_the_hole_share():
    x, y = pair(1)
    m = center_mask(4, 32, 32)
    done = y * m + x * (1 - m)  # context exact, hole wrong
    hole = im.hole_psnr(done, x, m)
    crop = im.psnr(done[..., 8:24, 8:24], x[..., 8:24, 8:24])  # the hole is the central 16 x 16 square
    torch.testing.assert_close(hole, crop, atol=1e-4, rtol=0)
    full = im.psnr(done, x)
    torch.testing.assert_close(full - hole, torch.full((4,), 10 * math.log10(4)), atol=1e-4, rtol=0)  # +6.02 dB: 3/4 exact
    with pytest.raises(DataError, match="empty"):
        im.hole_psnr(done, x, torch.zeros_like(m))


def test_bicubic_baseline_known_values():
    # a checkerboard at the Nyquist frequency averages to 0.5 in every 2x2 cell: any upsampling gives 0.5, MSE 0.25, 6.0206 dB
    i, j = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    board = ((i + j) % 2).float().view(1, 1, 32, 32)
    lr = torch.nn.functional.avg_pool2d(board, 2)
    assert torch.equal(lr, torch.full_like(lr, 0.5))
    for mode in ("nearest", "bilinear", "bicubic"):
        torch.testing.assert_close(im.psnr(upsample(lr, 2, mode), board), torch.tensor([10 * math.log10(4)]), atol=1e-4, rtol=0)
    # a linear ramp: HR pixel centres sit at LR offsets t = 1/4 and 3/4, where Keys' cubic kernel with a = -0.75 (torch's,
    # OpenCV's) weighs taps -1, 0, 1, 2 by a*0.140625, 0.87890625, 0.26171875, a*0.046875: it misses f(x) = x by
    # 0.296875 - 0.25 = 0.046875 LR pixels of slope, +- alternating (a = -0.5, MATLAB's, would be exact)
    ramp = (torch.arange(32).float() / 40 + 0.05).expand(1, 1, 32, 32).contiguous()  # slope 0.05 per LR pixel
    lr = torch.nn.functional.avg_pool2d(ramp, 2)
    inner = (slice(None), slice(None), slice(4, 28), slice(4, 28))
    err = (upsample(lr, 2, "bicubic") - ramp)[inner]
    torch.testing.assert_close(err.abs(), torch.full_like(err, 0.046875 * 0.05), atol=1e-6, rtol=0)
    assert (err[..., 0::2] < 0).all() and (err[..., 1::2] > 0).all()
    known = -20 * math.log10(0.046875 * 0.05)  # 52.60 dB (piq adds 1e-8 to the MSE of 5.5e-6: -0.008 dB)
    torch.testing.assert_close(im.psnr(upsample(lr, 2, "bicubic")[inner], ramp[inner]), torch.tensor([known]), atol=0.02, rtol=0)
    assert (upsample(lr, 2, "bilinear") - ramp)[inner].abs().max() < 1e-6  # linear interpolation is exact on a ramp
    assert (upsample(lr, 2, "nearest") - ramp)[inner].abs().max() > 0.01

def test_constant_and_nearest_neighbour_fills():
    x, _ = pair(1, 3)
    m = center_mask(3, 32, 32)
    assert torch.equal(constant_fill(x, m, 0.25)[..., 8:24, 8:24], torch.full((3, 1, 16, 16), 0.25))
    db = torch.cat([torch.rand(5, 1, 32, 32), x[1:2]])  # the database holds image 1 itself: its context is at distance 0
    filled, idx = nearest_context_fill(x, m, db, chunk=4)
    assert idx[1] == 5 and torch.equal(filled[1], x[1])
    assert torch.equal(filled[0] * (1 - m[0]), x[0] * (1 - m[0]))


# ---- LPIPS ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def small_trunk(tmp_path_factory):
    """A VGG-16 `features.*` state dict with random weights in float16 (~29 MB instead of torchvision's 528 MB)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    feats = make_layers(cfgs["D"])
    path = tmp_path_factory.mktemp("trunk") / "vgg16-test.pth"
    torch.save({f"features.{k}": v.half() for k, v in feats.state_dict().items()}, path)
    return path


def test_lpips_loads_the_trunk_file_and_reports_its_hash(small_trunk):
    lp = lpips_mod.LPIPS(small_trunk)
    sd = torch.load(small_trunk, weights_only=True)
    assert torch.equal(lp.net.net.slice1[0].weight, sd["features.0.weight"].float())
    assert torch.equal(getattr(lp.net.net.slice5, "28").bias, sd["features.28.bias"].float())
    d = lp.describe()
    assert d["trunk"] == str(small_trunk) and d["trunk_is_torchvision"] is False and d["trunk_sha256"] == hashlib.sha256(small_trunk.read_bytes()).hexdigest()
    x, y = pair(1, 3)
    same, diff = lp(x, x), lp(x, y)
    assert same.shape == (3,) and same.abs().max() < 1e-6 and (diff > 0).all()
    assert (lp(x, (x + 0.3 * (y - x)).clamp(0, 1)) < diff).all()  # closer images, smaller distance


def test_lpips_hub_cache_file_must_be_torchvisions(tmp_path, monkeypatch, small_trunk):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match=r"vgg16-397923af\.pth in .*hub/checkpoints"):
        lpips_mod.find_vgg_trunk()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / lpips_mod.VGG_FILE).write_bytes(small_trunk.read_bytes())
    with pytest.raises(WeightsError, match="not torchvision's 397923af"):
        lpips_mod.find_vgg_trunk()


def test_missing_lpips_trunk_exits_2_naming_the_file(tmp_path, monkeypatch, sr_ckpt):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    res = CliRunner().invoke(cli, ["eval-sr", str(sr_ckpt), "--lpips", "--n", "8", "--quiet"])
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert "vgg16-397923af.pth" in lines[0] and str(tmp_path / "empty" / "hub" / "checkpoints") in lines[0]


def test_eval_sr_with_a_trunk_file_reports_lpips_and_the_hash(sr_ckpt, small_trunk):
    res = CliRunner().invoke(cli, ["eval-sr", str(sr_ckpt), "--lpips-weights", str(small_trunk), "--n", "8", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "LPIPS-VGG" in res.output and "NOT torchvision's file" in res.output and hashlib.sha256(small_trunk.read_bytes()).hexdigest()[:12] in res.output
