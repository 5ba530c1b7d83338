"""Feature export: shapes per layer and pooling, determinism, the file format, and user errors."""
from __future__ import annotations

import torch
from click.testing import CliRunner

from gan_ssl.cli import cli
from gan_ssl.data import ImageData
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.evaluation import features as fe


def _small(data: ImageData, n: int = 40) -> ImageData:
    return ImageData(data.images[:n], data.labels[:n], data.name, data.classes)


def test_shapes_per_layer_and_pool(tiny_run, fmnist_small):
    D, cfg, meta = fe.load_representation(tiny_run)
    data = _small(fmnist_small)
    w = cfg.model.d_width
    blocks = list(D.module.blocks.keys())
    assert D.name == "D" and D.layers == blocks and D.known == [*blocks, "penultimate"]
    for pool, per in [("avg", w), ("max", w), ("avgmax", 2 * w)]:
        x, names, dims = fe.representation_features(D, data, "all", pool)
        assert names == blocks and dims == [per] * len(blocks)
        assert x.shape == (40, per * len(blocks)) and x.dtype == torch.float32
    x, names, dims = fe.representation_features(D, data, "block1,penultimate", "avg", grid=2)
    assert names == ["block1", "penultimate"] and dims == [4 * w, D.module.feature_dim] and x.shape == (40, 4 * w + D.module.feature_dim)
    assert meta["checkpoint_sha256"] == fe.sha256_file(tiny_run / "checkpoints" / "latest.pt")


def test_deterministic_and_batch_independent(tiny_run, fmnist_small):
    D, _, _ = fe.load_representation(tiny_run)
    data = _small(fmnist_small, 50)
    a, _, _ = fe.representation_features(D, data, batch_size=16)
    b, _, _ = fe.representation_features(D, data, batch_size=16)
    c, _, _ = fe.representation_features(D, data, batch_size=50)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)


def test_restores_mode_and_takes_no_grad(tiny_run, fmnist_small):
    D, _, _ = fe.load_representation(tiny_run)
    D.module.train().requires_grad_(True)
    x, _, _ = fe.representation_features(D, _small(fmnist_small, 8))
    assert D.module.training and not x.requires_grad


def test_cli_writes_weights_only_file(tiny_run, tmp_path):
    out = tmp_path / "f.pt"
    r = CliRunner().invoke(cli, ["features", str(tiny_run), "--data", "fashion-mnist", "--split", "test", "--limit", "24",
                                 "--pool", "avg", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    fs = torch.load(out, weights_only=True)
    assert fs["features"].shape == (24, 4 * 8) and fs["features"].dtype == torch.float32
    assert fs["labels"].dtype == torch.int64 and fs["labels"].shape == (24,)
    assert fs["layers"] == ["block1", "block2", "block3", "block4"] and fs["split"] == "test"
    assert fs["checkpoint_sha256"] == fe.sha256_file(tiny_run / "checkpoints" / "latest.pt")
    assert fe.is_feature_file(out) and not fe.is_feature_file(tiny_run / "checkpoints" / "latest.pt")


def test_checkpoint_without_discriminator_exits_2(tiny_run, tmp_path):
    ck = ckpt_io.load(tiny_run)
    del ck["nets"]["D"]
    bad = tmp_path / "no_d.pt"
    ckpt_io.save({k: v for k, v in ck.items() if k not in ("format", "version")}, bad)
    for cmd in (["features", str(bad), "--data", "fashion-mnist", "--out", str(tmp_path / "x.pt")],
                ["probe", str(bad), "--data", "fashion-mnist"]):
        r = CliRunner().invoke(cli, cmd)
        assert r.exit_code == 2 and "has no network 'D'" in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_unknown_net_exits_2(tiny_run, tmp_path):
    r = CliRunner().invoke(cli, ["features", str(tiny_run), "--data", "fashion-mnist", "--net", "encoder", "--out", str(tmp_path / "x.pt")])
    assert r.exit_code == 2 and "no network 'encoder'" in r.output and "D" in r.output, r.output


def test_bad_layer_and_bad_file_exit_2(tiny_run, tmp_path):
    r = CliRunner().invoke(cli, ["features", str(tiny_run), "--data", "fashion-mnist", "--layers", "block9", "--out", str(tmp_path / "x.pt")])
    assert r.exit_code == 2 and "unknown layer" in r.output and "block1" in r.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a feature file")
    r = CliRunner().invoke(cli, ["probe", str(junk), "--data", "fashion-mnist"])
    assert r.exit_code == 2 and r.output.startswith("error:")
