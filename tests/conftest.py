"""Shared fixtures: tiny configs and a tiny trained run, built once per session on the CPU."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from gan_ssl.config import Config
from gan_ssl.data import ImageData, load_images
from gan_ssl.families.resolve import resolve

torch.set_num_threads(int(os.environ.get("GAN_SSL_TEST_THREADS", min(2, os.cpu_count() or 1))))  # 1 when sharing the CPU

TINY = [
    "data.limit=512",
    "model.z_dim=16",
    "model.g_width=8",
    "model.d_width=8",
    "train.batch_size=8",
    "train.steps=4",
    "train.log_every=2",
    "train.sample_every=2",
    "train.ckpt_every=2",
    "train.sample_grid=4",
]


def tiny_cfg(*overrides: str, model: str = "sngan", rotation: bool = True) -> Config:
    """A CPU-tiny config (width 8, batch 8) on the first 512 Fashion-MNIST training images."""
    rot = ["aux.rotation.d_weight=1.0", "aux.rotation.g_weight=0.2"] if rotation else []
    return resolve(None, [f"model.name={model}", *TINY, *rot, *overrides])


@pytest.fixture(scope="session")
def fmnist_small() -> ImageData:
    """512 real Fashion-MNIST training images padded to 32x32 (needs the Debian package or $GAN_SSL_DATA)."""
    return load_images("fashion-mnist", "train", 32, 1, limit=512)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, fmnist_small: ImageData) -> Path:
    """A 4-step SSGAN run directory; its checkpoints/latest.pt is a real gan_ssl checkpoint."""
    from gan_ssl.api import train

    out = tmp_path_factory.mktemp("tiny_run")
    train(tiny_cfg(), out, progress=False, data=fmnist_small)
    return out
