"""gan_ssl.evaluation.extractor: the offline CNN feature extractor (training, saving, hashing, torch-fidelity registration).

Training here is a handful of steps on a few hundred images; the full 92% run is `gan-ssl evaluator train`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from gan_ssl.cli import cli
from gan_ssl.core.errors import DataError, WeightsError
from gan_ssl.data import fit_resolution, load_images
from gan_ssl.evaluation import extractor as ev

NAME = "fashion-mnist-cnn"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ev") / f"{NAME}.pt"
    return ev.train_evaluator("fashion-mnist", epochs=1, batch_size=32, width=4, feature_dim=16, limit=256, out=out, progress=False)


def test_train_saves_accuracy_and_content_hash(trained: dict) -> None:
    path = Path(trained["path"])
    assert path.is_file() and 0.0 <= trained["test_accuracy"] <= 1.0 and trained["n_train"] == 256
    net, meta = ev.load_evaluator(path, NAME)
    assert meta["sha256"] == trained["sha256"] == ev.state_hash(net.state_dict())
    assert meta["test_accuracy"] == trained["test_accuracy"] and meta["data"] == "fashion-mnist"
    assert trained["meets_target"] is False and trained["feature_dim"] == net.feature_dim == 16
    assert ev.accuracy(net, *_test_set()) == pytest.approx(trained["test_accuracy"], abs=1e-4)
    obj = torch.load(path, weights_only=True)  # tensors, numbers and strings only
    assert obj["format"] == ev.FORMAT


def _test_set() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_images("fashion-mnist", "test", 32, 1, limit=256)
    return d.images, d.labels


def test_training_is_seeded(trained: dict, tmp_path: Path) -> None:
    again = ev.train_evaluator("fashion-mnist", epochs=1, batch_size=32, width=4, feature_dim=16, limit=256, out=tmp_path / "b.pt",
                               progress=False)
    assert again["sha256"] == trained["sha256"]


def test_default_path_follows_gan_ssl_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GAN_SSL_HOME", str(tmp_path))
    assert ev.default_path(NAME) == tmp_path / "evaluators" / f"{NAME}.pt"
    monkeypatch.delenv("GAN_SSL_HOME")
    assert ev.default_path(NAME) == Path.home() / ".cache" / "gan_ssl" / "evaluators" / f"{NAME}.pt"


def test_missing_corrupt_and_foreign_files(trained: dict, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="gan-ssl evaluator train --data fashion-mnist"):
        ev.load_evaluator(tmp_path / "none.pt", NAME)
    obj = torch.load(trained["path"], weights_only=True)
    obj["state_dict"]["fc.bias"] = obj["state_dict"]["fc.bias"] + 1
    torch.save(obj, tmp_path / "tampered.pt")
    with pytest.raises(WeightsError, match="content hash mismatch"):
        ev.load_evaluator(tmp_path / "tampered.pt", NAME)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="cannot read"):
        ev.load_evaluator(tmp_path / "junk.pt", NAME)
    with pytest.raises(WeightsError, match="holds extractor"):
        ev.load_evaluator(trained["path"], "mnist-cnn")


def test_prepare_pads_28_like_the_training_data_and_handles_rgb_and_other_sizes() -> None:
    x28 = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(ev.prepare(x28), ev.prepare(fit_resolution(x28, 32)))
    grey = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
    assert torch.allclose(ev.prepare(grey.expand(-1, 3, -1, -1), torch.float64), ev.prepare(grey, torch.float64), atol=1e-9)
    assert ev.prepare(torch.zeros(2, 3, 64, 48, dtype=torch.uint8)).shape == (2, 1, 32, 32)
    with pytest.raises(DataError, match="uint8"):
        ev.prepare(torch.zeros(2, 1, 32, 32))


def test_registered_into_torch_fidelity(trained: dict) -> None:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import create_feature_extractor

    ev.register(NAME)
    ev.register(NAME)  # idempotent
    assert FEATURE_EXTRACTORS_REGISTRY[NAME] is ev.extractor_class()
    fe = create_feature_extractor(NAME, ["penultimate", "logits"], cuda=False, feature_extractor_weights_path=trained["path"],
                                  feature_extractor_internal_dtype="float64", verbose=False)
    x = torch.randint(0, 256, (10, 1, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pool, logits = fe(x)
    assert pool.shape == (10, 16) and logits.shape == (10, 10) and pool.dtype == torch.float32
    parts = torch.cat([fe(x[i : i + 3])[0] for i in range(0, 10, 3)])
    assert torch.equal(parts, pool)  # float64 inside: features do not depend on the batch
    with pytest.raises(DataError):
        ev.register("cifar10-cnn")


def test_cli_evaluator_train_and_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAN_SSL_HOME", str(tmp_path))
    r = CliRunner().invoke(cli, ["evaluator", "train", "--limit", "128", "--batch-size", "32", "--width", "2", "--feature-dim", "8", "--epochs", "1",
                                 "--quiet", "--json"])
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["path"] == str(tmp_path / "evaluators" / f"{NAME}.pt") and len(rep["sha256"]) == 64
    r = CliRunner().invoke(cli, ["evaluator", "train", "--limit", "128", "--batch-size", "32", "--width", "2", "--feature-dim", "8", "--epochs", "1",
                                 "--quiet"])
    assert r.exit_code == 0 and "test accuracy" in r.stdout and "warning: below the 92% target" in r.stdout
    r = CliRunner().invoke(cli, ["evaluator", "info", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["sha256"] == rep["sha256"]
    r = CliRunner().invoke(cli, ["evaluator", "train", "--data", "cifar10"])
    assert r.exit_code == 2
