"""`gan-ssl`: a thin click CLI over the Python API (gan_ssl.api). User errors print one line and exit with code 2.

Commands import the package lazily, inside each command, so that `gan-ssl --help` stays fast.
"""
from __future__ import annotations

from gan_ssl.cli import evaluation, pretext, run
from gan_ssl.cli.common import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="gan-ssl")


if __name__ == "__main__":
    main()
