"""gan_ssl: generative self-supervised learning with GANs.

Python API (the CLI `gan-ssl` is a thin layer over these):
    gan_ssl.config.resolve(preset, overrides) -> Config
    gan_ssl.train.train(cfg, out_dir, resume=False) -> Path of the final checkpoint
    gan_ssl.api.sample(ckpt, n, seed) -> uint8 tensor [N, C, H, W]
    gan_ssl.api.info(ckpt) -> dict
    gan_ssl.load_generator(export_dir) -> Bundle (from `gan-ssl export`: safetensors + config.json, no pickle)
"""
from typing import Any

from gan_ssl.errors import GanSslError

__version__ = "0.1.0"
__all__ = ["GanSslError", "__version__", "load_generator"]


def __getattr__(name: str) -> Any:
    """`gan_ssl.load_generator`, imported on first use so that `import gan_ssl` (and the CLI) stays free of torch."""
    if name == "load_generator":
        from gan_ssl.api import load_generator

        return load_generator
    raise AttributeError(f"module 'gan_ssl' has no attribute {name!r}")
