"""Datasets: Fashion-MNIST from IDX files, image folders, conversions, errors and the resumable sampler."""
import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from gan_ssl.core.errors import DataError
from gan_ssl.data import EpochSampler, ImageData, fit_resolution, load_images, parse_spec, to_float, to_uint8
from gan_ssl.data import sources as data_mod


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


def _folder(tmp_path, n=40):
    from PIL import Image

    root = tmp_path / "imgs"
    for i in range(n):
        d = root / ("cats" if i % 2 else "dogs")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 20), i * 6, dtype=np.uint8)).save(d / f"{i:03d}.png")
    return root


def test_streamed_folder_gives_the_in_memory_batches_and_resumes(tmp_path):
    from gan_ssl.data import BatchStream, FolderSource

    root = _folder(tmp_path)
    mem = load_images(f"folder:{root}", resolution=16, channels=1)
    src = FolderSource(str(root), "train", 16, 1)
    assert len(src) == len(mem) and torch.equal(src.labels, mem.labels) and src.classes == mem.classes
    a = BatchStream(mem, 8, seed=3)
    b = BatchStream(src, 8, seed=3, workers=2)
    seq_a = [a.next() for _ in range(7)]  # crosses epoch boundaries (5 batches per epoch)
    seq_b = [b.next() for _ in range(4)]
    state = b.state_dict()
    c = BatchStream(src, 8, seed=3, workers=0)
    c.load_state_dict(state)
    seq_b += [c.next() for _ in range(3)]
    for x, y in zip(seq_a, seq_b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"]) and torch.equal(x["index"], y["index"])
    assert torch.equal(c.next(6)["image"], a.next(6)["image"])  # a new batch size restarts the loader at the same place


def test_storage_choice_and_streamed_training(tmp_path):
    from conftest import tiny_cfg

    from gan_ssl.api import train
    from gan_ssl.core.errors import DataError
    from gan_ssl.data import FolderSource, open_training_data
    from gan_ssl.families.resolve import resolve

    root = _folder(tmp_path)
    cfg = resolve(None, [f"data.name=folder:{root}"])
    assert isinstance(open_training_data(cfg), ImageData)  # small: held in memory
    assert isinstance(open_training_data(resolve(None, [f"data.name=folder:{root}", "data.max_memory_gb=0.000001"])), FolderSource)
    with pytest.raises(DataError, match="storage=stream reads image folders"):
        open_training_data(resolve(None, ["data.storage=stream"]))
    cfg = tiny_cfg(f"data.name=folder:{root}", "data.storage=stream", "data.workers=1", "data.limit=0", "train.steps=3")
    train(cfg, tmp_path / "run", progress=False)
    memory = tiny_cfg(f"data.name=folder:{root}", "data.storage=memory", "data.limit=0", "train.steps=3")
    train(memory, tmp_path / "memory", progress=False)
    from test_train import assert_same_run

    assert_same_run(tmp_path / "run", tmp_path / "memory")  # streaming changes where images come from, nothing else


def test_make_inputs_are_seeded_per_batch():
    from gan_ssl.data import BatchStream

    data = ImageData(torch.zeros(32, 1, 4, 4, dtype=torch.uint8), torch.zeros(32, dtype=torch.long), "x")
    noise = lambda batch, g: {**batch, "mask": torch.rand(batch["image"].shape[0], generator=g)}  # noqa: E731
    a, b = BatchStream(data, 4, seed=1, make_inputs=noise), BatchStream(data, 4, seed=1, make_inputs=noise)
    first = [a.next()["mask"] for _ in range(5)]
    b.load_state_dict({**a.state_dict(), "epoch": 0, "pos": 8, "drawn": 2})
    assert torch.equal(b.next()["mask"], first[2]) and not torch.equal(first[0], first[1])
