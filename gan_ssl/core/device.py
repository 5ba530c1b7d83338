"""Devices and precision: a user's device name checked into a torch.device, and `train.precision` resolved
per device (bf16 autocast where the chip computes it natively)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import torch

from gan_ssl.core.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """torch.device for a user's --device / train.device, with a one-line error when it is not usable here."""
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device {name!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name} asked for, but CUDA is not available on this machine; use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name} asked for, but MPS is not available on this machine; use cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {name!r} is not supported; use cpu, cuda, cuda:N or mps")
    return dev


def native_bf16_cpu() -> bool:
    """Whether this CPU has native bf16 dot products (x86 avx512_bf16 or amx_bf16; read from /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """fp32 | bf16 | fp16 for a `train.precision` value on `device` (auto: bf16 where the chip computes it natively)."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if device.type == "cpu" and native_bf16_cpu() else "fp32"
    return precision  # fp16 autocasts and scales the loss (GradScaler) on every device torch's AMP runs on, CPU included


def autocast_factory(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of autocast contexts: bf16 or fp16 (weights and optimizer states stay fp32), or a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)
