"""The public Python API: one façade over the layers (the CLI `gan-ssl` is a thin layer over it).

    >>> import gan_ssl
    >>> cfg = gan_ssl.resolve("configs/ssgan_fmnist.yaml", ["train.minutes=3"])   # a validated Config
    >>> ckpt = gan_ssl.train(cfg, "runs/ssgan")                                    # path of the last checkpoint
    >>> b = gan_ssl.load("runs/ssgan")                                             # a Bundle (any family)
    >>> imgs = b.sample(16, seed=0)                                                # uint8 [16, 1, 32, 32]
    >>> g = gan_ssl.load_generator("export/ssgan")                                 # a `gan-ssl export` folder
    >>> data = gan_ssl.load_images("fashion-mnist", "test")                        # ImageData, uint8 in memory
"""
from __future__ import annotations

from pathlib import Path

from gan_ssl.config import Config
from gan_ssl.data import FolderSource, ImageData, load_images
from gan_ssl.engine import loop
from gan_ssl.evaluation.monitors import default_evaluators
from gan_ssl.evaluation.report import write_report
from gan_ssl.families.resolve import from_dict, resolve
from gan_ssl.inference.export import export, load_generator
from gan_ssl.inference.load import build_family, checkpoint_file, config_of, info, last_eval, load, sample, save_images

__all__ = ["build_family", "checkpoint_file", "config_of", "export", "from_dict", "info", "last_eval", "load",
           "load_generator", "load_images", "resolve", "sample", "save_images", "train", "write_report"]


def train(cfg: Config, out_dir: str | Path, resume: bool = False, progress: bool = True,
          evaluators: list[loop.Evaluator] | loop.EvaluatorFactory | None = None,
          data: ImageData | FolderSource | None = None) -> Path:
    """Train `cfg` into `out_dir` with the in-training evaluators `cfg.eval` asks for (FID, the fast probe)
    unless `evaluators` are given; returns the path of the last checkpoint. See `gan_ssl.engine.loop.train`."""
    return loop.train(cfg, out_dir, resume, progress, default_evaluators if evaluators is None else evaluators, data)
