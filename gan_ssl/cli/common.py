"""What every `gan-ssl` command shares: the group (user errors print one line and exit with code 2), output and
the --device/--threads options."""
from __future__ import annotations

import json
import logging
import sys
from typing import Any, Callable

import click

from gan_ssl.core.errors import GanSslError

SEED_MAX = 2**63 - 2  # torch generators take 64-bit seeds; --style-mix also uses seed + 1


def fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


class _Group(click.Group):
    """Turns project errors, usage errors, missing files and interrupts into one line instead of a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("standalone_mode", None)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as e:  # bad option values, unknown options, missing arguments
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            fail(f"{e.format_message()}{where}")
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GanSslError as e:
            fail(str(e))
        except FileNotFoundError as e:
            fail(f"file not found: {e.filename or e}")
        except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as e:  # a path the user gave
            fail(f"cannot use {e.filename or ''}: {e.strerror or type(e).__name__}")
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("-v", "--verbose", is_flag=True, help="Log more detail.")
def cli(verbose: bool) -> None:
    """gan_ssl: self-supervised GANs, FID from one command, discriminator features for few labels."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def emit(result: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    click.echo(json.dumps(result, indent=2) if as_json else text(result))


def check_device(value: str) -> str:
    """Validate --device like train.device (one line and exit 2 when it is not usable here)."""
    from gan_ssl.core.device import resolve_device

    return str(resolve_device(value))


def set_threads(n: int) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def compute_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--device and --threads, shared by every command that computes."""
    f = click.option("--threads", type=click.IntRange(0, 1024), default=0, help="torch intra-op threads (0 = torch's default).")(f)
    return click.option("--device", default="cpu", help="cpu, cuda, cuda:N or mps.")(f)
