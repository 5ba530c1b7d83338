"""Figures from a checkpoint that need more than `sample`: StyleGAN's style-mixing grid."""
from __future__ import annotations

from pathlib import Path

from gan_ssl.core.errors import ConfigError
from gan_ssl.families.stylegan import StyleGANFamily
from gan_ssl.inference.load import load


def style_mix_grid(path: str | Path, rows: int, cols: int, out: str | Path, seed: int = 0, truncation: float = 1.0,
                   device: str = "cpu") -> Path:
    """Write a stylegan checkpoint's style-mixing figure (see `StyleGANFamily.style_mix`) as one PNG."""
    import torchvision.utils as vutils  # lazy: importing torchvision costs seconds

    bundle = load(path, device)
    fam = bundle.family
    if not isinstance(fam, StyleGANFamily):
        raise ConfigError(f"style mixing needs a stylegan checkpoint; {bundle.path} is family {bundle.cfg.family}")
    if rows < 1 or cols < 1:
        raise ConfigError(f"--style-mix needs ROWS,COLS of at least 1 each, got {rows},{cols}")
    images = fam.style_mix(rows, cols, seed, truncation)
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"the style-mixing grid is one image: --out must end in .png, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    vutils.save_image(images.float() / 255.0, str(out), nrow=cols + 1, padding=1)
    return out
