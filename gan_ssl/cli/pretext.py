"""`gan-ssl` commands of the pretext tasks (context-encoder inpainting, super-resolution) and their evaluations;
registered on the group of gan_ssl.cli.common."""
from __future__ import annotations

import click

from gan_ssl.cli.common import SEED_MAX, check_device, cli, compute_options, emit, set_threads


@cli.command()
@click.argument("ckpt", type=click.Path())
@click.option("--input", "source", required=True, help="An image, a folder of images, an .npy (uint8) or a dataset spec (fashion-mnist:test).")
@click.option("--mask", type=click.Choice(["center", "blocks", "region", "mixed"]), default="center", help="Holes to cut (one per image, seeded).")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Folder for masked/, completed/, mask/ and grid.png.")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, help="Mask seed.")
@click.option("--limit", type=click.IntRange(0), default=64, help="Images read from a folder or dataset spec (0 = all).")
@click.option("--batch-size", type=click.IntRange(1), default=256)
@compute_options
def inpaint(ckpt: str, source: str, mask: str, out: str, seed: int, limit: int, batch_size: int, device: str, threads: int) -> None:
    """Cut holes into images and fill them with a context-encoder checkpoint.

    \b
    Examples:
      gan-ssl inpaint runs/inpaint_fmnist --input fashion-mnist:test --limit 16 --mask center --out inpainted/
      gan-ssl inpaint runs/inpaint_fmnist --input photo.png --mask region --out inpainted/
    """
    from gan_ssl.evaluation import pretext

    set_threads(threads)
    r = pretext.inpaint(ckpt, source, out, mask, seed, limit, batch_size, check_device(device))
    click.echo(f"inpainted {r['n']} images ({r['mask']} holes, seed {r['seed']}) -> {r['out']}/completed, grid {r['out']}/grid.png; "
               f"hole PSNR {r['hole_psnr']:.2f} dB, PSNR {r['psnr']:.2f} dB against the originals")


@cli.command("super-resolve")
@click.argument("ckpt", type=click.Path())
@click.option("--input", "source", required=True, help="An image, a folder of images (one size), an .npy (uint8) or a dataset spec.")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Folder for sr/ (and lr/) and grid.png.")
@click.option("--degrade", is_flag=True, help="Treat the inputs as high-resolution references: downsample them by the scale first and compare.")
@click.option("--net", type=click.Choice(["G", "G_psnr"]), default="G", help="G: the GAN-stage generator; G_psnr: the L1-stage one.")
@click.option("--limit", type=click.IntRange(0), default=64, help="Images read from a folder or dataset spec (0 = all).")
@click.option("--batch-size", type=click.IntRange(1), default=256)
@compute_options
def super_resolve(ckpt: str, source: str, out: str, degrade: bool, net: str, limit: int, batch_size: int, device: str, threads: int) -> None:
    """Upscale images by an SRGAN checkpoint's scale (2x or 4x).

    \b
    Examples:
      gan-ssl super-resolve runs/sr2x_fmnist --input fashion-mnist:test --limit 16 --degrade --out sr/
      gan-ssl super-resolve runs/sr4x_fmnist --input small_images/ --out sr/
    """
    from gan_ssl.evaluation import pretext

    set_threads(threads)
    r = pretext.super_resolve(ckpt, source, out, degrade, net, limit, batch_size, check_device(device))
    size = "x".join(map(str, r["input_size"])) + " -> " + "x".join(map(str, r["output_size"]))
    extra = f"; PSNR {r['psnr']:.2f} dB (bicubic {r['psnr_bicubic']:.2f} dB)" if degrade else ""
    click.echo(f"super-resolved {r['n']} images {size} with {r['net']} -> {r['out']}/sr, grid {r['out']}/grid.png{extra}")


@cli.command("eval-inpaint")
@click.argument("ckpt", type=click.Path())
@click.option("--mask", type=click.Choice(["center", "blocks", "region", "mixed"]), default="center", help="Holes (the same for every method).")
@click.option("--split", type=click.Choice(["train", "test"]), default="test")
@click.option("--n", "n", type=click.IntRange(0), default=0, help="Evaluation images (0 = the whole split).")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, help="Mask seed.")
@click.option("--nn-database", type=click.IntRange(0), default=0, help="Training images the nearest-neighbour fill searches (0 = all).")
@click.option("--batch-size", type=click.IntRange(1), default=256)
@compute_options
@click.option("--quiet", is_flag=True, help="No progress.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_inpaint(ckpt: str, mask: str, split: str, n: int, seed: int, nn_database: int, batch_size: int, device: str, threads: int,
                 quiet: bool, as_json: bool) -> None:
    """Hole PSNR and composite PSNR/SSIM of a context encoder beside zero, mean, nearest-neighbour and Telea fills.

    \b
    Examples:
      gan-ssl eval-inpaint runs/inpaint_fmnist
      gan-ssl eval-inpaint runs/inpaint_fmnist --mask region --n 2000 --json
    """
    from gan_ssl.evaluation import pretext

    set_threads(threads)
    r = pretext.eval_inpaint(ckpt, split, n, mask, seed, nn_database, batch_size, check_device(device), progress=not quiet)
    emit(r, as_json, pretext.format_inpaint)


@cli.command("eval-sr")
@click.argument("ckpt", type=click.Path())
@click.option("--lpips", is_flag=True, help="Also LPIPS (VGG trunk vgg16-397923af.pth from the torch hub cache).")
@click.option("--lpips-weights", type=click.Path(dir_okay=False), default=None, help="VGG-16 trunk file for LPIPS (implies --lpips; its hash is reported).")
@click.option("--split", type=click.Choice(["train", "test"]), default="test")
@click.option("--n", "n", type=click.IntRange(0), default=0, help="Evaluation images (0 = the whole split).")
@click.option("--batch-size", type=click.IntRange(1), default=256)
@compute_options
@click.option("--quiet", is_flag=True, help="No progress.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_sr(ckpt: str, lpips: bool, lpips_weights: str | None, split: str, n: int, batch_size: int, device: str, threads: int,
            quiet: bool, as_json: bool) -> None:
    """PSNR/SSIM (RGB and Y, border cropped) and LPIPS of an SRGAN checkpoint beside nearest/bilinear/bicubic upsampling.

    \b
    Examples:
      gan-ssl eval-sr runs/sr2x_fmnist
      gan-ssl eval-sr runs/sr4x_fmnist --lpips --n 2000
    """
    from gan_ssl.evaluation import pretext

    set_threads(threads)
    r = pretext.eval_sr(ckpt, split, n, lpips, lpips_weights, batch_size, check_device(device), progress=not quiet)
    emit(r, as_json, pretext.format_sr)
