"""gan_ssl: generative self-supervised learning with GANs.

Python API (the CLI `gan-ssl` is a thin layer over it; see gan_ssl.api):
    gan_ssl.resolve(preset, overrides) -> Config
    gan_ssl.train(cfg, out_dir, resume=False) -> Path of the final checkpoint
    gan_ssl.load(ckpt_or_run) -> Bundle (.sample(n, seed), .representation(name), .family)
    gan_ssl.load_generator(export_dir) -> Bundle (from `gan-ssl export`: safetensors + config.json, no pickle)
    gan_ssl.load_images(spec, split) -> ImageData

Layers, each importing only those below it:
    core <- nn <- models <- config <- data <- families <- engine <- inference <- evaluation <- api <- cli
"""
from typing import Any

from gan_ssl.core import __version__
from gan_ssl.core.errors import GanSslError

_API = ("resolve", "train", "load", "load_generator", "load_images")
__all__ = ["GanSslError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    """The API's entry points, imported on first use so that `import gan_ssl` (and the CLI's --help) stays free of torch."""
    if name == "train":
        import importlib

        return importlib.import_module("gan_ssl.train")  # a callable module: gan_ssl.train(cfg, out) and gan_ssl.train.train
    if name in _API:
        from gan_ssl import api

        return getattr(api, name)
    raise AttributeError(f"module 'gan_ssl' has no attribute {name!r}")
