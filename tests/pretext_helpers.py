"""Tiny context-encoder and SRGAN configs and trained checkpoints shared by the pretext tests."""
from __future__ import annotations

import pytest

from gan_ssl.config import Config
from gan_ssl.families.resolve import resolve

COMMON = ["data.limit=512", "train.batch_size=8", "train.steps=4", "train.log_every=1", "train.sample_every=2",
          "train.ckpt_every=2", "train.sample_grid=9"]


def ce_cfg(*overrides: str) -> Config:
    """Context encoder, width 8, code 16, batch 8: 2 reconstruction-only steps, then D and G."""
    return resolve("configs/inpaint_fmnist.yaml", [*COMMON, "model.width=8", "model.bottleneck=16", "model.d_width=8",
                                                   "loss.pretrain_steps=2", *overrides])


def sr_cfg(*overrides: str, scale: int = 2) -> Config:
    """SRGAN, width 8, 2 residual blocks, batch 8: 2 L1-only steps, then D and G."""
    return resolve("configs/sr2x_fmnist.yaml", [*COMMON, f"model.scale={scale}", "model.g_width=8", "model.n_blocks=2",
                                                "model.d_width=8", "loss.pretrain_steps=2", *overrides])


@pytest.fixture(scope="session")
def ce_ckpt(tmp_path_factory, fmnist_small):
    from gan_ssl.api import train

    out = tmp_path_factory.mktemp("ce_run")
    return train(ce_cfg(), out, progress=False, data=fmnist_small)


@pytest.fixture(scope="session")
def sr_ckpt(tmp_path_factory, fmnist_small):
    from gan_ssl.api import train

    out = tmp_path_factory.mktemp("sr_run")
    return train(sr_cfg(), out, progress=False, data=fmnist_small)
