"""gan_ssl: generative self-supervised learning with GANs.

Python API (the CLI `gan-ssl` is a thin layer over these):
    gan_ssl.config.resolve(preset, overrides) -> Config
    gan_ssl.train.train(cfg, out_dir, resume=False) -> Path of the final checkpoint
    gan_ssl.api.sample(ckpt, n, seed) -> uint8 tensor [N, C, H, W]
    gan_ssl.api.info(ckpt) -> dict
"""
from gan_ssl.errors import GanSslError

__version__ = "0.1.0"
__all__ = ["GanSslError", "__version__"]
