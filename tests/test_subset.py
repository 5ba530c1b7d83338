"""data.subset: a seeded, class-balanced random subset for low-data studies, recorded in the checkpoint."""
import pytest
import torch
from conftest import tiny_cfg

from gan_ssl.core.errors import CheckpointError, DataError
from gan_ssl.data import FolderSource, ImageData
from gan_ssl.data.subset import subset_rows, take_subset


def _labels(per_class=(100,) * 10):
    return torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])[torch.randperm(sum(per_class), generator=torch.Generator().manual_seed(1))]


@pytest.mark.parametrize("subset,k", [(120, 120), (0.02, 20), (25, 25), (3, 3)])
def test_subset_is_class_balanced_sized_and_sorted(subset, k):
    labels = _labels()
    rows = subset_rows(labels, subset, seed=0)
    assert rows.shape == (k,) and torch.equal(rows, rows.sort().values) and rows.unique().numel() == k
    counts = torch.bincount(labels[rows], minlength=10)
    if k >= 10:
        assert counts.max() - counts.min() <= 1 and int(counts.min()) == k // 10  # floor(k / C) each, k mod C get one more
    else:
        assert int(counts.sum()) == k  # fewer rows than classes: a plain random draw


def test_subset_is_seeded_and_the_seed_matters():
    labels = _labels()
    assert torch.equal(subset_rows(labels, 120, 0), subset_rows(labels, 120, 0))
    assert not torch.equal(subset_rows(labels, 120, 0), subset_rows(labels, 120, 1))


def test_subset_without_labels_is_a_random_draw():
    rows = subset_rows(torch.full((50,), -1), 10, 3)
    assert rows.shape == (10,) and rows.unique().numel() == 10 and int(rows.max()) < 50


@pytest.mark.parametrize("subset,message", [(1.5, "whole count"), (2000, "asks for 2000 of 1000"), (0.0001, "asks for 0 of 1000")])
def test_bad_subsets_are_refused(subset, message):
    with pytest.raises(DataError, match=message):
        subset_rows(_labels(), subset, 0)


def test_a_class_too_small_for_a_balanced_subset_is_refused():
    with pytest.raises(DataError, match="has 2 images"):
        subset_rows(_labels((100, 2)), 20, 0)


def test_take_subset_keeps_images_with_their_labels_and_records_rows():
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 4, 4).contiguous()
    labels = torch.arange(40) % 4
    data = ImageData(images, labels, "toy")
    sub = take_subset(data, 8, 0)
    assert len(sub) == 8 and torch.equal(sub.images[:, 0, 0, 0].long(), sub.rows) and torch.equal(sub.labels, sub.rows % 4)
    assert take_subset(data, 0, 0) is data


def test_take_subset_of_a_streamed_folder(tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(6):
            Image.new("L", (8, 8), color=10 * i).save(tmp_path / c / f"{i}.png")
    src = FolderSource(str(tmp_path), "train", 8, 1)
    sub = take_subset(src, 4, 0)
    assert isinstance(sub, FolderSource) and len(sub) == 4 and torch.bincount(sub.labels).tolist() == [2, 2]
    assert [sub.files[i] for i in range(4)] == [src.files[int(r)] for r in sub.rows] and len(src) == 12  # the source is untouched
    assert sub[0][0].shape == (1, 8, 8)


def test_training_on_a_subset_records_it_and_resume_checks_it(tmp_path, fmnist_small):
    from gan_ssl.api import train
    from gan_ssl.core.files import write_atomic
    from gan_ssl.engine.checkpoint import load, to_bytes

    cfg = tiny_cfg("train.steps=2", "data.subset=40", "data.subset_seed=3", "train.ckpt_every=2")
    train(cfg, tmp_path / "r", progress=False, data=fmnist_small)
    ck = load(tmp_path / "r" / "checkpoints" / "latest.pt")
    assert torch.equal(ck["subset_rows"], subset_rows(fmnist_small.labels, 40, 3))
    assert ck["config"]["data"]["subset"] == 40 and ck["config"]["data"]["subset_seed"] == 3
    ck["subset_rows"] = ck["subset_rows"] + 1  # as if the dataset had changed under the run
    write_atomic(to_bytes(ck), tmp_path / "r" / "checkpoints" / "latest.pt")
    with pytest.raises(CheckpointError, match="data.subset drawn now is not the one"):
        train(tiny_cfg("train.steps=4", "data.subset=40", "data.subset_seed=3", "train.ckpt_every=2"), tmp_path / "r",
              resume=True, progress=False, data=fmnist_small)


def test_a_bad_subset_exits_2_with_one_line(tmp_path):
    from click.testing import CliRunner

    from gan_ssl.cli import cli

    r = CliRunner().invoke(cli, ["train", "configs/ssgan_fmnist.yaml", "--out", str(tmp_path / "r"), "--set", "data.subset=1.5",
                                 "--set", "data.limit=200"])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "whole count of images" in r.output and len(r.output.strip().splitlines()) == 1, r.output
