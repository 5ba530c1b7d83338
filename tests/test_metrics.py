"""gan_ssl.evaluation.fid and `gan-ssl fid`: torch-fidelity wrapper, inputs, cache, errors, in-training FID.

A tiny evaluator CNN (width 4, a few dozen steps) is trained once per session into a temp
$GAN_SSL_HOME; $TORCH_HOME points to a fresh temp folder in every test, so nothing touches the
user's caches and nothing is downloaded ($GAN_SSL_OFFLINE=1).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from gan_ssl.cli import cli
from gan_ssl.core.errors import DataError, WeightsError
from gan_ssl.data import ImageData, load_images
from gan_ssl.evaluation import extractor as ev
from gan_ssl.evaluation import fid as metrics
from gan_ssl.evaluation import fid_extractors as fext
from gan_ssl.evaluation import fid_inputs as finputs
from gan_ssl.evaluation import monitors

CNN = "fashion-mnist-cnn"
FID = f"fid[{CNN}]"


@pytest.fixture(scope="session")
def ext_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A $GAN_SSL_HOME holding a tiny trained fashion-mnist-cnn (16-d features)."""
    home = tmp_path_factory.mktemp("gan_ssl_home")
    ev.train_evaluator("fashion-mnist", epochs=2, batch_size=64, width=4, feature_dim=16, limit=1024,
                       out=home / "evaluators" / f"{CNN}.pt", progress=False)
    return home


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ext_home: Path) -> Path:
    monkeypatch.setenv("GAN_SSL_HOME", str(ext_home))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("GAN_SSL_OFFLINE", "1")
    monkeypatch.delenv("GAN_SSL_INCEPTION_WEIGHTS", raising=False)
    return tmp_path / "torch"


@pytest.fixture(scope="module")
def real() -> torch.Tensor:
    """600 real Fashion-MNIST test images, uint8 [600, 1, 32, 32]."""
    return load_images("fashion-mnist", "test", 32, 1, limit=600).images


def _scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """Independent reference: Heusel et al. 2017, eq. 6, with scipy's matrix square root."""
    from scipy import linalg

    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


# ---- math ----------------------------------------------------------------------------------------

def test_frechet_distance_matches_scipy_on_random_features() -> None:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = np.random.default_rng(0)
    f1 = g.normal(size=(400, 12))
    f2 = g.normal(size=(300, 12)) @ g.normal(size=(12, 12)) * 0.5 + 0.3
    ours = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(f1)),
                                    fid_features_to_statistics(torch.from_numpy(f2)), False)["frechet_inception_distance"]
    assert ours == pytest.approx(_scipy_fid(f1, f2), rel=1e-6)


def test_fid_end_to_end_matches_scipy_on_extracted_features(real: torch.Tensor) -> None:
    a, b = real[:300], torch.flip(real[300:], dims=[3])
    net, _ = ev.load_evaluator(ev.default_path(CNN), CNN)
    net.double()
    with torch.no_grad():
        fa, fb = (net.features(ev.prepare(x, torch.float64)).float().double().numpy() for x in (a, b))
    r = metrics.compute(a, b)
    assert r["metrics"][FID] == pytest.approx(_scipy_fid(fa, fb), rel=1e-4, abs=1e-8)


def test_self_fid_is_zero_and_noise_fid_is_large(real: torch.Tensor) -> None:
    same = metrics.compute(real, real)["metrics"][FID]
    halves = metrics.compute(real[:300], real[300:])["metrics"][FID]
    noise = torch.randint(0, 256, real.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    vs_noise = metrics.compute(real, noise)["metrics"][FID]
    assert abs(same) < 1e-6
    assert vs_noise > 20 * halves > 0


def test_kid_of_two_halves_is_about_zero(real: torch.Tensor) -> None:
    noise = torch.randint(0, 256, (300, 1, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    halves = metrics.compute(real[:300], real[300:], kid=True, kid_subset_size=100)["metrics"]
    vs_noise = metrics.compute(real[:300], noise, kid=True, kid_subset_size=100)["metrics"]
    assert abs(halves[f"kid[{CNN}]"]) < 0.02 * vs_noise[f"kid[{CNN}]"]
    assert abs(halves[f"kid[{CNN}]"]) < 3 * halves[f"kid_std[{CNN}]"] + 1e-6


def test_results_do_not_depend_on_batch_size(real: torch.Tensor) -> None:
    a, b = real[:200], real[200:400]
    r7 = metrics.compute(a, b, kid=True, kid_subset_size=50, batch_size=7)["metrics"]
    r64 = metrics.compute(a, b, kid=True, kid_subset_size=50, batch_size=64)["metrics"]
    for k in r7:
        assert r7[k] == pytest.approx(r64[k], rel=1e-9, abs=1e-12), k


# ---- inputs and cache ----------------------------------------------------------------------------

def _write_pngs(images: torch.Tensor, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        arr = img.permute(1, 2, 0).numpy()
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(folder / f"{i:04d}.png")
    return folder


def test_folder_npy_and_tensor_inputs_agree(real: torch.Tensor, tmp_path: Path) -> None:
    a, b = real[:100], real[100:200]
    folder = _write_pngs(a, tmp_path / "a")
    np.save(tmp_path / "a_nchw.npy", a.numpy())
    np.save(tmp_path / "a_nhwc.npy", a.permute(0, 2, 3, 1).numpy())
    np.save(tmp_path / "a_nhw.npy", a[:, 0].numpy())
    np.save(tmp_path / "b.npy", b.numpy())
    ref = metrics.compute(a, b)["metrics"][FID]
    for inp in (folder, tmp_path / "a_nchw.npy", tmp_path / "a_nhwc.npy", tmp_path / "a_nhw.npy"):
        r = metrics.compute(str(inp), str(tmp_path / "b.npy"))
        assert r["metrics"][FID] == pytest.approx(ref, rel=1e-12), inp
        assert r["input1"]["n"] == 100 and r["input1"]["shape"] == [1, 32, 32]


def test_dataset_spec_takes_the_other_inputs_size_and_is_cached(tmp_path: Path, env: Path) -> None:
    raw28 = load_images("fashion-mnist", "test", 28, 1, limit=200).images  # [200, 1, 28, 28], unpadded
    _write_pngs(raw28, tmp_path / "ref28")
    np.save(tmp_path / "test28.npy", raw28.numpy())
    spec = f"folder:{tmp_path / 'ref28'}"
    r1 = metrics.compute(str(tmp_path / "test28.npy"), spec)
    assert r1["input2"]["kind"] == "dataset" and r1["input2"]["shape"] == [1, 28, 28] and r1["input2"]["n"] == 200
    assert abs(r1["metrics"][FID]) < 1e-6  # the same pixels
    assert r1["input2"]["reference_cached"] is False
    cached = sorted(p.name for p in (env / "fidelity_cache").iterdir())
    sha = ev.load_evaluator(ev.default_path(CNN), CNN)[1]["sha256"][:12]
    assert cached and all("1x28x28-n200" in n and f"{CNN}-{sha}" in n for n in cached), cached
    r2 = metrics.compute(str(tmp_path / "test28.npy"), spec)
    assert r2["input2"]["reference_cached"] is True and r2["metrics"][FID] == r1["metrics"][FID]
    r3 = metrics.compute(spec, str(tmp_path / "test28.npy"), cache=False)  # spec first: still matched to the npy
    assert r3["input1"]["shape"] == [1, 28, 28] and r3["metrics"][FID] == pytest.approx(r1["metrics"][FID], abs=1e-9)


def test_fashion_mnist_spec_is_padded_like_the_training_data() -> None:
    ext = fext.resolve_extractor(CNN)
    inp = finputs.open_input("fashion-mnist:test", ext, like=(1, 32, 32))
    assert inp.shape == (1, 32, 32) and inp.n == 10000 and inp.info["split"] == "test"
    assert inp.cache_name and inp.cache_name.startswith("gan_ssl-p2-fashion-mnist_test-1x32x32-n10000-")
    assert torch.equal(inp.dataset[0], load_images("fashion-mnist", "test", 32, 1, limit=1).images[0])


def test_checkpoint_input_samples_the_ema_generator(tiny_run: Path, real: torch.Tensor) -> None:
    from gan_ssl import api

    ckpt = tiny_run / "checkpoints" / "latest.pt"
    r = metrics.compute(str(ckpt), real, n=64, seed=3)
    assert r["input1"]["kind"] == "checkpoint" and r["input1"]["n"] == 64 and r["input1"]["seed"] == 3
    same = metrics.compute(api.sample(ckpt, 64, seed=3), real)
    assert r["metrics"][FID] == pytest.approx(same["metrics"][FID], rel=1e-12)
    run_dir = metrics.compute(str(tiny_run), real, n=64, seed=3)  # a run folder means its latest.pt
    assert run_dir["metrics"][FID] == pytest.approx(r["metrics"][FID], rel=1e-12)


def test_cli_fid_json_and_text(real: torch.Tensor, tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", real[:120].numpy())
    np.save(tmp_path / "b.npy", real[120:240].numpy())
    code, out, err = _run("fid", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--kid", "--prc", "--kid-subset-size", "50",
                          "--json", "--quiet")
    assert code == 0, err
    r = json.loads(out)
    assert set(r["metrics"]) == {f"{k}[{CNN}]" for k in ("fid", "kid", "kid_std", "precision", "recall", "f_score")}
    assert r["extractor"]["name"] == CNN and r["extractor"]["sha256"] and "resizer" in r["extractor"]
    assert r["input1"]["n"] == r["input2"]["n"] == 120
    api = metrics.compute(str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), kid=True, prc=True, kid_subset_size=50)
    assert r["metrics"] == api["metrics"]
    code, out, _ = _run("fid", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--quiet")
    assert code == 0 and re.search(rf"^fid\[{CNN}\]\s+\d", out, re.M) and "not comparable with Inception" in out


def test_cli_defaults_are_the_api_defaults() -> None:
    cmd = cli.commands["fid"]
    opts = {p.name: p.default for p in cmd.params}
    for k in ("features", "n", "batch_size", "seed", "kid_subset_size", "device"):
        assert opts[k] == metrics.DEFAULTS[k], k


# ---- bad inputs: one line, exit code 2 -----------------------------------------------------------

def _bad_cases(tmp: Path, real: torch.Tensor) -> dict[str, tuple[list[str], str]]:
    (tmp / "empty").mkdir()
    (tmp / "text").mkdir()
    (tmp / "text" / "notes.txt").write_text("hello")
    (tmp / "corrupt").mkdir()
    (tmp / "corrupt" / "0.png").write_bytes(b"not a png")
    mixed = _write_pngs(real[:3], tmp / "mixed")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(mixed / "9.png")
    np.save(tmp / "a.npy", real[:20].numpy())
    np.save(tmp / "rgb.npy", real[:20].expand(-1, 3, -1, -1).numpy())
    np.save(tmp / "small.npy", real[:20, :, :28, :28].numpy())
    np.save(tmp / "float.npy", real[:20].float().numpy())
    a = str(tmp / "a.npy")
    return {
        "empty folder": ([str(tmp / "empty"), a], "no images"),
        "non-image files": ([str(tmp / "text"), a], "notes.txt"),
        "corrupt image": ([str(tmp / "corrupt"), a], "cannot read image"),
        "mixed sizes in a folder": ([str(mixed), a], "differ in size"),
        "mismatched sizes": ([str(tmp / "small.npy"), a], "1x28x28"),
        "mismatched channels": ([str(tmp / "rgb.npy"), a], "3x32x32"),
        "float array": ([str(tmp / "float.npy"), a], "uint8"),
        "fewer images than KID subset": ([a, a, "--kid"], "lower --kid-subset-size"),
        "unknown extractor": ([a, a, "--features", "resnet"], "unknown feature extractor"),
        "missing path": ([str(tmp / "nope"), a], "does not exist"),
        "unknown dataset": (["imagenet:val", a], "does not exist and is not a dataset spec"),
        "bad split": (["fashion-mnist:val", a], "unknown split"),
        "single image": ([str(mixed / "9.png"), a], "single image"),
    }


def test_bad_inputs_give_one_line_and_exit_2(tmp_path: Path, real: torch.Tensor) -> None:
    for name, (args, msg) in _bad_cases(tmp_path, real).items():
        code, out, err = _run("fid", *args, "--quiet")
        assert code == 2, (name, code, out, err)
        assert err.startswith("error: ") and err.count("\n") == 1 and msg in err, (name, err)


def test_missing_extractor_names_the_command_that_makes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real: torch.Tensor) -> None:
    monkeypatch.setenv("GAN_SSL_HOME", str(tmp_path / "empty_home"))
    np.save(tmp_path / "a.npy", real[:20].numpy())
    code, _, err = _run("fid", str(tmp_path / "a.npy"), "fashion-mnist:test")
    assert code == 2 and "gan-ssl evaluator train --data fashion-mnist" in err and str(tmp_path / "empty_home") in err


# ---- Inception path (random weights: the real code path without the real file) -------------------

@pytest.fixture(scope="module")
def random_inception(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised state dict of torch-fidelity's Inception extractor, saved to a temp file."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as inc

    with mock.patch.object(inc, "load_state_dict_from_url", lambda *a, **k: {}), \
         mock.patch.object(inc.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        torch.manual_seed(0)
        net = inc.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_matches_torch_fidelity_called_directly(random_inception: Path, real: torch.Tensor, tmp_path: Path) -> None:
    import torch_fidelity

    a = _write_pngs(real[:5], tmp_path / "a")  # Inception on a CPU: a handful of images is enough to compare
    b = _write_pngs(torch.flip(real[5:10], dims=[2]), tmp_path / "b")
    code, out, err = _run("fid", str(a), str(b), "--features", "inception", "--inception-weights", str(random_inception),
                          "--kid", "--kid-subset-size", "3", "--json", "--quiet")
    assert code == 0, err
    r = json.loads(out)
    direct = torch_fidelity.calculate_metrics(
        input1=str(a), input2=str(b), fid=True, kid=True, kid_subset_size=3, feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(random_inception), feature_extractor_internal_dtype="float64",
        batch_size=256, cuda=False, cache=False, verbose=False)
    assert r["metrics"]["fid[inception]"] == pytest.approx(direct["frechet_inception_distance"], rel=1e-9)
    assert r["metrics"]["kid[inception]"] == pytest.approx(direct["kernel_inception_distance_mean"], rel=1e-9, abs=1e-12)
    assert r["extractor"]["torch_fidelity_name"] == "inception-v3-compat" and r["extractor"]["feature_dim"] == 2048


def test_inception_weights_from_env_and_torch_cache(random_inception: Path, monkeypatch: pytest.MonkeyPatch, env: Path) -> None:
    monkeypatch.setenv("GAN_SSL_INCEPTION_WEIGHTS", str(random_inception))
    assert fext.resolve_extractor("inception").weights == random_inception
    monkeypatch.delenv("GAN_SSL_INCEPTION_WEIGHTS")
    expected = fext.inception_expected_path()
    assert expected == env / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    expected.parent.mkdir(parents=True)
    expected.symlink_to(random_inception)
    e = fext.resolve_extractor("inception-v3-compat")
    assert e.name == "inception" and e.weights == expected


def test_missing_inception_weights_say_where_to_put_them(env: Path, real: torch.Tensor, tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", real[:20].numpy())
    code, _, err = _run("fid", str(tmp_path / "a.npy"), str(tmp_path / "a.npy"), "--features", "inception")
    expected = env / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    assert code == 2 and err.count("\n") == 1
    assert str(expected) in err and "--inception-weights" in err and "--features fashion-mnist-cnn" in err
    code, _, err = _run("fid", str(tmp_path / "a.npy"), str(tmp_path / "a.npy"), "--features", "inception",
                        "--inception-weights", str(tmp_path / "missing.pth"))
    assert code == 2 and str(tmp_path / "missing.pth") in err
    with pytest.raises(WeightsError):
        fext.find_inception_weights(download=False)


# ---- in-training evaluation ----------------------------------------------------------------------

def test_fid_evaluator_uses_cached_reference_and_keeps_rng(fmnist_small: ImageData, tiny_run: Path, env: Path) -> None:
    from conftest import tiny_cfg

    from gan_ssl import api

    cfg = tiny_cfg("eval.every=2", "eval.n=64", "eval.probe=false")
    evaluate = monitors.fid_evaluator(cfg, fmnist_small)
    bundle = api.load(tiny_run)
    torch.manual_seed(123)
    r1 = evaluate(bundle)
    after = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), after)  # the evaluator did not consume the training RNG
    key = "fid64_train[fashion-mnist-cnn]"  # named for what it is: 64 samples vs the training split
    assert list(r1) == [key] and r1[key] > 0 and metrics.fid_key(2000, "train", "fashion-mnist-cnn") == "fid2k_train[fashion-mnist-cnn]"
    names = [p.name for p in (env / "fidelity_cache").iterdir() if "stat-fid" in p.name]
    assert names and all(f"-p{finputs.PREPROCESSING_VERSION}-" in n and "-float64-tf" in n for n in names)
    assert evaluate(bundle) == r1


def test_trainer_logs_fid_and_keeps_best(fmnist_small: ImageData, tmp_path: Path) -> None:
    from conftest import tiny_cfg

    from gan_ssl.api import train

    out = tmp_path / "run"
    train(tiny_cfg("train.steps=2", "eval.every=1", "eval.n=32", "eval.probe=false"), out, progress=False, data=fmnist_small)
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    key = "fid32_train[fashion-mnist-cnn]"
    assert [e["step"] for e in evals] == [1, 2] and all(list(e["eval"]) == [key] for e in evals)
    best = min(evals, key=lambda e: e["eval"][key])
    ck = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert ck["step"] == best["step"] and ck["best"] == {key: best["eval"][key], "step": best["step"]}


def test_best_checkpoint_holds_the_lowest_fid_step(fmnist_small: ImageData, tmp_path: Path) -> None:
    from conftest import tiny_cfg

    from gan_ssl.api import train

    scores = iter([5.0, 3.0, 4.0, 6.0])  # the lowest comes at step 2, then the run gets worse
    out = tmp_path / "run"
    train(tiny_cfg("train.steps=4", "eval.every=1"), out, progress=False, data=fmnist_small,
          evaluators=[lambda bundle: {"fid9_train[x]": next(scores)}])
    ck = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    latest = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 2 and ck["best"] == {"fid9_train[x]": 3.0, "step": 2} and latest["step"] == 4
    assert not torch.equal(ck["nets"]["G"]["linear.weight"], latest["nets"]["G"]["linear.weight"])


def test_fid_evaluator_fails_early_without_extractor(fmnist_small: ImageData, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from conftest import tiny_cfg

    monkeypatch.setenv("GAN_SSL_HOME", str(tmp_path / "nothing"))
    with pytest.raises(WeightsError, match="gan-ssl evaluator train --data fashion-mnist"):
        monitors.fid_evaluator(tiny_cfg("eval.every=2"), fmnist_small)
    with pytest.raises(DataError, match="unknown feature extractor"):
        monitors.fid_evaluator(tiny_cfg("eval.every=2", "eval.features=resnet"), fmnist_small)


def test_bad_inputs_found_late_are_one_line(real: torch.Tensor, tmp_path: Path) -> None:
    """Inputs that used to give tracebacks: a PNG truncated past its header (read only inside torch-fidelity's
    loader), an .npz under an .npy name, an empty .npy, and one image for FID (a NaN covariance in scipy)."""
    folder = _write_pngs(real[:20], tmp_path / "trunc")
    png = folder / "0003.png"
    png.write_bytes(png.read_bytes()[:60])  # the header survives, the pixels do not
    np.save(tmp_path / "b.npy", real[20:40].numpy())
    code, _, err = _run("fid", str(folder), str(tmp_path / "b.npy"), "--quiet")
    assert code == 2 and err.count("\n") == 1 and "cannot read image" in err and "0003.png" in err, err
    np.savez(tmp_path / "z.npz", real[:20].numpy())
    (tmp_path / "z.npz").rename(tmp_path / "z.npy")
    code, _, err = _run("fid", str(tmp_path / "z.npy"), str(tmp_path / "b.npy"), "--quiet")
    assert code == 2 and err.count("\n") == 1 and ".npz archive" in err, err
    (tmp_path / "empty.npy").write_bytes(b"")
    code, _, err = _run("fid", str(tmp_path / "empty.npy"), str(tmp_path / "b.npy"), "--quiet")
    assert code == 2 and err.count("\n") == 1 and "cannot read" in err, err
    np.save(tmp_path / "one.npy", real[:1].numpy())
    code, _, err = _run("fid", str(tmp_path / "one.npy"), str(tmp_path / "b.npy"), "--quiet")
    assert code == 2 and err.count("\n") == 1 and "at least 2 images" in err, err
