"""The pretext-task commands: inpaint and super-resolve images with a checkpoint, and score both against
classical baselines with honest image metrics (`gan_ssl.evaluation.image_quality`).

    >>> from gan_ssl import pretext
    >>> r = pretext.eval_inpaint("runs/inpaint_fmnist", mask="center")   # hole PSNR, composite PSNR/SSIM
    >>> print(pretext.format_inpaint(r))
    >>> r = pretext.eval_sr("runs/sr2x_fmnist")                          # PSNR/SSIM (RGB and Y), LPIPS optional
    >>> pretext.super_resolve("runs/sr2x_fmnist", "fashion-mnist:test", "out/", limit=16, degrade=True)

Evaluation protocol: the checkpoint's dataset, test split, at its resolution (Fashion-MNIST padded to 32);
every metric on [0, 1] images, per image, then averaged. Inpainting masks come from one seeded generator
(`seed`), the same for the model and every baseline. SR inputs are the test images area-downsampled by
the model's scale; metrics drop `scale` border pixels.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan_ssl.core.errors import ConfigError, DataError
from gan_ssl.core.progress import track
from gan_ssl.data import IMAGE_SUFFIXES, read_image, fit_resolution, list_images, load_images, parse_spec
from gan_ssl.evaluation import image_quality as im
from gan_ssl.evaluation.baselines import (
    UPSAMPLERS,
    constant_fill,
    nearest_context_fill,
    telea_available,
    telea_fill,
    upsample,
)
from gan_ssl.families.bundle import Bundle
from gan_ssl.inference.load import load, save_images
from gan_ssl.nn.lpips import LPIPS
from gan_ssl.nn.masks import MASKS, draw_masks

# The one table of defaults for the Python API and the CLI.
DEFAULTS: dict[str, Any] = {
    "split": "test",  # evaluation split of the checkpoint's dataset
    "n": 0,  # evaluation images (0 = the whole split: 10,000 for Fashion-MNIST)
    "mask": "center",  # the targets' hole: the central quarter
    "seed": 0,  # seeds the masks (the same for the model and every baseline)
    "nn_database": 0,  # training images searched by the nearest-neighbour fill (0 = all)
    "batch_size": 256,
    "limit": 64,  # images `inpaint` / `super-resolve` read from a dataset spec
}


# ---- inputs --------------------------------------------------------------------------------------

def read_images(source: str | Path, channels: int, resolution: int | None = None, limit: int = 0) -> torch.Tensor:
    """uint8 [N, C, H, W] from an image file, a folder of images (one size), an .npy or a dataset spec
    (`fashion-mnist:test`); `resolution` fits dataset specs, files and folders to that size when given."""
    p = Path(str(source)).expanduser()
    if p.is_file() and p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"cannot read {p} as a numpy array: {str(e)[:150] or type(e).__name__}") from None
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim not in (3, 4) or len(arr) == 0:
            if not isinstance(arr, np.ndarray):
                raise DataError(f"{p} is an .npz archive, not one array; save the images with np.save")
            raise DataError(f"{p} must hold uint8 images [N, C, H, W] or [N, H, W], got {arr.dtype} {arr.shape}")
        x = torch.from_numpy(np.ascontiguousarray(arr if arr.ndim == 4 else arr[:, None]))
    elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        x = read_image(p, channels).unsqueeze(0)
    elif p.is_dir():
        files = list_images(p)[: limit or None]
        if not files:
            raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {p}")
        imgs = [read_image(f, channels) for f in files]
        if resolution is None and len({tuple(i.shape) for i in imgs}) > 1:
            raise DataError(f"images under {p} differ in size; super-resolve one size at a time")
        x = torch.stack([fit_resolution(i[None], resolution, pad_small=False)[0] for i in imgs]) if resolution else torch.stack(imgs)
    elif p.exists():
        raise DataError(f"{p} is not an image, a folder of images, an .npy or a dataset spec")
    else:
        parse_spec(str(source))  # a DataError naming the accepted forms when it is not a spec either
        x = load_images(str(source), None, resolution or 32, channels, limit=limit).images
    if x.shape[1] != channels:
        raise DataError(f"{source}: images have {x.shape[1]} channels, the model takes {channels}")
    if resolution and tuple(x.shape[-2:]) != (resolution, resolution):
        x = fit_resolution(x, resolution)
    return x[: limit or None]


def _bundle(ckpt: str | Path, family: str, device: str) -> Bundle:
    b = load(ckpt, device)
    if b.cfg.family != family:
        command = {"context_encoder": "inpaint / eval-inpaint", "srgan": "super-resolve / eval-sr"}[family]
        raise ConfigError(f"{ckpt} is a {b.cfg.family} checkpoint; {command} needs a {family} one")
    return b


def _batches(n: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _save_pngs(images: torch.Tensor, folder: Path) -> None:
    """float [N, C, H, W] in [0, 1] -> folder/000000.png, ..."""
    save_images((images * 255).round().clamp(0, 255).to(torch.uint8).cpu(), folder)


def _save_rows(columns: list[torch.Tensor], path: Path, rows: int = 16) -> None:
    """One image per row, the columns side by side (each [N, C, H, W] in [0, 1], upsampled to the widest)."""
    import torch.nn.functional as F
    import torchvision.utils as vutils

    size = max(c.shape[-1] for c in columns)
    cols = [F.interpolate(c[:rows], size=(size, size), mode="nearest") if c.shape[-1] != size else c[:rows] for c in columns]
    grid = torch.stack(cols, dim=1).flatten(0, 1)  # [rows * cols, C, H, W], row-major
    path.parent.mkdir(parents=True, exist_ok=True)
    vutils.save_image(grid.float(), str(path), nrow=len(columns), padding=1)


# ---- inpaint / super-resolve ---------------------------------------------------------------------

def inpaint(ckpt: str | Path, source: str | Path, out: str | Path, mask: str = DEFAULTS["mask"], seed: int = DEFAULTS["seed"],
            limit: int = DEFAULTS["limit"], batch_size: int = DEFAULTS["batch_size"], device: str = "cpu") -> dict[str, Any]:
    """Cut holes (`mask`, seeded) into the images of `source` and fill them with a context-encoder checkpoint.

    Writes out/masked/, out/completed/, out/mask/ (PNGs, one per image) and out/grid.png (rows: masked |
    completed | original). Returns {n, mask, seed, out, hole_psnr, psnr} (metrics against the originals)."""
    if mask not in MASKS:
        raise ConfigError(f"unknown mask {mask!r}; use one of {', '.join(MASKS)}")
    b = _bundle(ckpt, "context_encoder", device)
    fam, cfg = b.family, b.cfg
    x = im.unit(read_images(source, cfg.data.channels, cfg.data.resolution, limit))  # [N, C, R, R] in [0, 1]
    masks = draw_masks(mask, x.shape[0], x.shape[2], x.shape[3], torch.Generator().manual_seed(seed))
    done = torch.cat([fam.complete(x[s].to(b.device) * 2 - 1, masks[s].to(b.device))[1].cpu() for s in _batches(len(x), batch_size)])
    done = (done + 1) / 2
    masked = (fam.context(x * 2 - 1, masks) + 1) / 2
    out = Path(out)
    _save_pngs(masked, out / "masked")
    _save_pngs(done, out / "completed")
    _save_pngs(masks.expand_as(x), out / "mask")
    _save_rows([masked, done, x], out / "grid.png")
    return {"n": int(x.shape[0]), "mask": mask, "seed": seed, "out": str(out),
            "hole_psnr": float(im.hole_psnr(done, x, masks).mean()), "psnr": float(im.psnr(done, x).mean())}


def super_resolve(ckpt: str | Path, source: str | Path, out: str | Path, degrade: bool = False, net: str = "G",
                  limit: int = DEFAULTS["limit"], batch_size: int = DEFAULTS["batch_size"], device: str = "cpu") -> dict[str, Any]:
    """Upscale the images of `source` by the checkpoint's scale with G (or `net="G_psnr"`, the L1-stage generator).

    With `degrade`, each input is first area-downsampled by the scale (and fitted to the model's
    resolution), so the original is the reference: writes out/lr/, out/sr/, out/grid.png (rows: LR
    (nearest) | bicubic | G_psnr | G | original) and returns PSNR figures. Without it the inputs are the
    low-resolution images: out/sr/ and out/grid.png (input | bicubic | SR)."""
    b = _bundle(ckpt, "srgan", device)
    fam, cfg = b.family, b.cfg
    s = fam.scale
    x = im.unit(read_images(source, cfg.data.channels, cfg.data.resolution if degrade else None, limit))
    lr = torch.nn.functional.avg_pool2d(x, s) if degrade else x
    if degrade and x.shape[-1] % s:
        raise DataError(f"images of {x.shape[-1]} px cannot be downsampled by {s}")

    def run(name: str) -> torch.Tensor:
        return torch.cat([(fam.upscale(lr[sl].to(b.device) * 2 - 1, name).cpu() + 1) / 2 for sl in _batches(len(lr), batch_size)])

    sr, out_p = run(net), Path(out)
    bicubic = upsample(lr, s, "bicubic")
    _save_pngs(sr, out_p / "sr")
    result: dict[str, Any] = {"n": int(x.shape[0]), "scale": s, "net": net, "degrade": degrade, "out": str(out_p),
                              "input_size": list(lr.shape[-2:]), "output_size": list(sr.shape[-2:])}
    if degrade:
        _save_pngs(lr, out_p / "lr")
        stages = [run("G_psnr")] if cfg.loss.pretrain_steps > 0 else []  # no L1 stage, no G_psnr row
        _save_rows([upsample(lr, s, "nearest"), bicubic, *stages, run("G"), x], out_p / "grid.png")
        result.update(psnr=float(im.psnr(im.crop_border(sr, s), im.crop_border(x, s)).mean()),
                      psnr_bicubic=float(im.psnr(im.crop_border(bicubic, s), im.crop_border(x, s)).mean()))
    else:
        _save_rows([lr, bicubic, sr], out_p / "grid.png")
    return result


# ---- evaluation ----------------------------------------------------------------------------------

def _eval_data(b: Bundle, split: str, n: int) -> torch.Tensor:
    d = b.cfg.data
    return im.unit(load_images(d.name, split, d.resolution, d.channels, d.root, limit=n).images)  # [N, C, R, R]


def _summary(values: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    return {k: float(torch.cat(v).double().mean()) for k, v in values.items()}


def _score(rows: dict[str, dict[str, list[torch.Tensor]]], name: str, pred: torch.Tensor, ref: torch.Tensor,
           crop: int = 0, mask: torch.Tensor | None = None, lpips: Any = None) -> None:
    r = rows.setdefault(name, {})
    metrics = im.full_reference(pred, ref, crop)
    if mask is not None:
        metrics["hole_psnr"] = im.hole_psnr(pred, ref, mask)
        metrics["hole_psnr_y"] = im.hole_psnr(im.to_y(pred), im.to_y(ref), mask)
    if lpips is not None:
        with torch.no_grad():
            metrics["lpips"] = lpips(im.crop_border(pred, crop), im.crop_border(ref, crop)).cpu()
    for k, v in metrics.items():
        r.setdefault(k, []).append(v.cpu())


def eval_inpaint(ckpt: str | Path, split: str = DEFAULTS["split"], n: int = DEFAULTS["n"], mask: str = DEFAULTS["mask"],
                 seed: int = DEFAULTS["seed"], nn_database: int = DEFAULTS["nn_database"], batch_size: int = DEFAULTS["batch_size"],
                 device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Hole PSNR, composite PSNR and SSIM of a context-encoder checkpoint and the classical fills on one set of masks.

    Returns {data, split, n, mask, seed, train_mean, fill, nn_database, telea, rows: {name: {metric: mean}}, seconds}."""
    if mask not in MASKS:
        raise ConfigError(f"unknown mask {mask!r}; use one of {', '.join(MASKS)}")
    t0 = time.perf_counter()
    b = _bundle(ckpt, "context_encoder", device)
    fam, d = b.family, b.cfg.data
    x = _eval_data(b, split, n)
    train = load_images(d.name, "train", d.resolution, d.channels, d.root, limit=nn_database).images  # uint8 [M, C, R, R]
    mean = float(train.double().mean() / 255.0)
    database = train.float() / 255.0
    masks = draw_masks(mask, x.shape[0], x.shape[2], x.shape[3], torch.Generator().manual_seed(seed))
    name = f"context encoder (step {b.step})"
    rows: dict[str, dict[str, list[torch.Tensor]]] = {}
    for sl in track(_batches(len(x), batch_size), desc="eval-inpaint", unit="batch", enabled=progress):
        xb, mb = x[sl], masks[sl]
        done = (fam.complete(xb.to(b.device) * 2 - 1, mb.to(b.device))[1].cpu() + 1) / 2
        _score(rows, name, done, xb, mask=mb)
        _score(rows, "zero fill", constant_fill(xb, mb, 0.0), xb, mask=mb)
        _score(rows, "mean fill", constant_fill(xb, mb, mean), xb, mask=mb)
        _score(rows, f"nearest neighbour ({len(database)} train)", nearest_context_fill(xb, mb, database)[0], xb, mask=mb)
        if telea_available():
            _score(rows, "telea (opencv)", telea_fill(xb, mb), xb, mask=mb)
    return {"checkpoint": str(b.path), "step": b.step, "data": d.name, "split": split, "n": int(x.shape[0]), "channels": d.channels,
            "mask": mask, "seed": seed, "hole_fraction": float(masks.mean()), "train_mean": round(mean, 5),
            "fill": float(b.family.fill_value().mean()), "nn_database": len(database), "telea": telea_available(),
            "rows": {k: _summary(v) for k, v in rows.items()}, "seconds": round(time.perf_counter() - t0, 1)}


def eval_sr(ckpt: str | Path, split: str = DEFAULTS["split"], n: int = DEFAULTS["n"], lpips: bool = False,
            lpips_weights: str | Path | None = None, batch_size: int = DEFAULTS["batch_size"], device: str = "cpu",
            progress: bool = False) -> dict[str, Any]:
    """PSNR/SSIM (RGB and Y, border cropped by the scale) and optionally LPIPS (VGG) of an SR checkpoint's generators
    (G_psnr at the end of the L1 stage, G after the GAN stage) beside nearest, bilinear and bicubic upsampling."""
    t0 = time.perf_counter()
    b = _bundle(ckpt, "srgan", device)
    if (lpips or lpips_weights) and b.cfg.data.resolution - 2 * b.family.scale < 16:
        raise ConfigError(f"LPIPS (VGG-16) needs images of at least 16 px after the {b.family.scale}-px border crop; these are "
                          f"{b.cfg.data.resolution - 2 * b.family.scale} px: leave out --lpips")
    lp = LPIPS(lpips_weights).to(b.device) if lpips or lpips_weights else None  # fails fast when the trunk is missing
    fam, s, loss = b.family, b.family.scale, b.cfg.loss
    x = _eval_data(b, split, n)
    nets = [("G_psnr", f"srgan L1 stage (G_psnr, step {min(b.step, loss.pretrain_steps)})")] if loss.pretrain_steps > 0 else []
    if b.step > loss.pretrain_steps or loss.pretrain_steps == 0:
        nets.append(("G", f"srgan GAN stage (G, step {b.step})"))
    rows: dict[str, dict[str, list[torch.Tensor]]] = {}
    for sl in track(_batches(len(x), batch_size), desc="eval-sr", unit="batch", enabled=progress):
        hr = x[sl]
        lr = torch.nn.functional.avg_pool2d(hr, s)
        for mode in UPSAMPLERS:
            _score(rows, mode, upsample(lr, s, mode), hr, crop=s, lpips=lp)
        for net, label in nets:
            sr = (fam.upscale(lr.to(b.device) * 2 - 1, net).cpu() + 1) / 2
            _score(rows, label, sr, hr, crop=s, lpips=lp)
    res = {"checkpoint": str(b.path), "step": b.step, "data": b.cfg.data.name, "split": split, "n": int(x.shape[0]),
           "channels": b.cfg.data.channels, "scale": s, "crop": s, "degradation": "area (box) downsampling",
           "rows": {k: _summary(v) for k, v in rows.items()}, "seconds": round(time.perf_counter() - t0, 1)}
    if lp is not None:
        res["lpips"] = {"net": "vgg", **lp.describe()}
    return res


# ---- tables --------------------------------------------------------------------------------------

def _table(result: dict[str, Any], cols: list[tuple[str, str, str]]) -> list[str]:
    head = f"{'method':<40}" + "".join(f"{title:>13}" for _, title, _ in cols)
    lines = [head]
    for name, r in result["rows"].items():
        lines.append(f"{name:<40}" + "".join(f"{format(r[k], fmt):>13}" if k in r else f"{'-':>13}" for k, _, fmt in cols))
    return lines


def format_inpaint(result: dict[str, Any]) -> str:
    """The eval-inpaint table: hole PSNR and composite PSNR / SSIM per method (Y columns for colour data)."""
    cols = [("hole_psnr", "hole PSNR", ".2f"), ("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".4f")]
    if result["channels"] == 3:
        cols[1:1] = [("hole_psnr_y", "hole PSNR-Y", ".2f")]
        cols += [("psnr_y", "PSNR-Y", ".2f"), ("ssim_y", "SSIM-Y", ".4f")]
    r = result
    lines = [f"inpainting on {r['data']}:{r['split']} ({r['n']} images, mask {r['mask']} seed {r['seed']}, "
             f"holes {r['hole_fraction']:.1%} of the pixels); [0, 1] images, piq; PSNR in dB",
             *_table(r, cols),
             "hole PSNR: the hole alone; PSNR / SSIM: the composited image (context pixels kept).",
             f"mean fill uses the training mean {r['train_mean']:.4f}; the model's input fill is {(r['fill'] + 1) / 2:.4f}; "
             f"telea: {'OpenCV ' if r['telea'] else 'not installed (pip install opencv-python-headless)'}  ({r['seconds']} s)"]
    return "\n".join(lines)


def format_sr(result: dict[str, Any]) -> str:
    """The eval-sr table: PSNR / SSIM (RGB and Y) and LPIPS per method."""
    r = result
    cols = [("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".4f")]
    if r["channels"] == 3:
        cols += [("psnr_y", "PSNR-Y", ".2f"), ("ssim_y", "SSIM-Y", ".4f")]
    if "lpips" in r:
        cols.append(("lpips", "LPIPS-VGG", ".4f"))
    lines = [f"{r['scale']}x super-resolution on {r['data']}:{r['split']} ({r['n']} images, {r['degradation']}, "
             f"{r['crop']} px border cropped); [0, 1] images, piq; PSNR in dB", *_table(r, cols)]
    if r["channels"] == 1:
        lines.append("1-channel images: the grey channel is the luma, so the Y (BT.601) figures equal these.")
    if "lpips" in r:
        lp = r["lpips"]
        ok = "torchvision's file" if lp["trunk_is_torchvision"] else "NOT torchvision's file: not comparable with published LPIPS"
        lines.append(f"LPIPS trunk {lp['trunk']} (sha256 {lp['trunk_sha256'][:12]}..., {ok}); lower is better")
    lines.append(f"({r['seconds']} s)")
    return "\n".join(lines)
