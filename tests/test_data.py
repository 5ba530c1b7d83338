"""Datasets: Fashion-MNIST from IDX files, image folders, conversions, errors and the resumable sampler."""
import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from gan_ssl import data as data_mod
from gan_ssl.data import EpochSampler, fit_resolution, load_images, parse_spec, to_float, to_uint8
from gan_ssl.errors import DataError


def test_fashion_mnist_real_data(fmnist_small):
    d = fmnist_small
    assert d.images.shape == (512, 1, 32, 32) and d.images.dtype == torch.uint8
    assert d.labels.shape == (512,) and set(d.labels.tolist()) <= set(range(10)) and d.has_labels
    assert len(set(d.labels.tolist())) == 10
    # 28 px padded to 32 with black borders; the content is untouched
    assert d.images[:, :, :2].max() == 0 and d.images[:, :, :, -2:].max() == 0
    x = d.batch(torch.arange(4))
    assert x.shape == (4, 1, 32, 32) and x.min() >= -1 and x.max() <= 1 and x.min() == -1


def test_fashion_mnist_test_split_and_rgb():
    d = load_images("fashion-mnist:test", limit=16, channels=3, resolution=64)
    assert d.images.shape == (16, 3, 64, 64)
    assert torch.equal(d.images[:, 0], d.images[:, 2])  # gray expanded to RGB


def _write_idx(path, arr):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_lookup_in_user_root(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "SYSTEM_DATA_DIR", tmp_path / "nowhere")
    root = tmp_path / "mine"
    root.mkdir()
    imgs = np.random.RandomState(0).randint(0, 256, (5, 28, 28))
    _write_idx(root / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(root / "t10k-labels-idx1-ubyte.gz", np.arange(5))
    d = load_images("fashion-mnist", "test", root=str(root))
    assert d.labels.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(d.images[:, 0, 2:30, 2:30], torch.from_numpy(imgs.astype(np.uint8)))


def test_missing_data_names_every_path(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.setenv("GAN_SSL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GAN_SSL_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(data_mod, "_try_download", lambda name, root: None)
    with pytest.raises(DataError) as e:
        load_images("fashion-mnist", root=str(tmp_path / "root"))
    msg = str(e.value)
    for p in ("root", "env", "system/fashion-mnist", "home"):
        assert str(tmp_path / p) in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def _png(path, value, size=(20, 24), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def test_folder_with_classes(tmp_path):
    for cls, v in (("cats", 10), ("dogs", 200)):
        for i in range(3):
            _png(tmp_path / cls / "sub" / f"{i}.png", v)
    (tmp_path / "notes.txt").write_text("not an image")
    d = load_images(f"folder:{tmp_path}", resolution=16, channels=1)
    assert d.images.shape == (6, 1, 16, 16)
    assert d.classes == ["cats", "dogs"] and d.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert d.images[0].float().mean().item() == pytest.approx(10, abs=1)


def test_folder_splits_and_unlabelled(tmp_path):
    for split in ("train", "test"):
        _png(tmp_path / split / "a.png", 5, mode="RGB")
    d = load_images(f"folder:{tmp_path}:test", resolution=8, channels=3)
    assert d.images.shape == (1, 3, 8, 8) and d.labels.tolist() == [-1] and not d.has_labels


def test_corrupt_image_names_the_file(tmp_path):
    _png(tmp_path / "ok.png", 1)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match="broken.png"):
        load_images(f"folder:{tmp_path}")


def test_bad_specs(tmp_path):
    with pytest.raises(DataError, match="unknown dataset"):
        parse_spec("imagenet")
    with pytest.raises(DataError, match="unknown split"):
        parse_spec("mnist:val")
    with pytest.raises(DataError, match="not found"):
        load_images(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="no images"):
        load_images(f"folder:{tmp_path}")


def test_conversions_roundtrip():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(to_uint8(to_float(x)), x)
    y = fit_resolution(torch.full((2, 3, 40, 60), 7, dtype=torch.uint8), 32, pad_small=False)
    assert y.shape == (2, 3, 32, 32) and (y == 7).all()


def test_sampler_is_seeded_and_resumable():
    a = EpochSampler(10, 4, seed=1)
    seq = [a.next().tolist() for _ in range(5)]  # crosses epochs (2 full batches each)
    assert sorted(seq[0] + seq[1]) == sorted(set(seq[0] + seq[1]))  # no repeats inside an epoch
    assert seq != [EpochSampler(10, 4, seed=2).next().tolist() for _ in range(5)]
    b = EpochSampler(10, 4, seed=1)
    for _ in range(3):
        b.next()
    state = b.state_dict()
    c = EpochSampler(10, 4, seed=1)
    c.load_state_dict(state)
    assert [c.next().tolist() for _ in range(2)] == seq[3:]
    with pytest.raises(DataError, match="fewer than one batch"):
        EpochSampler(3, 4, 0)
