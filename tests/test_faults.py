"""Fault injection: every family's training killed with SIGKILL at random moments and inside checkpoint writes
(half a temp file written, or all of it before the rename), then resumed until done. Every checkpoint on disk must
load, no torn temp file may survive the resume, and the result must be bit-identical to one uninterrupted run."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import assert_same_run

from gan_ssl.engine import checkpoint as ckpt_io

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["data.limit=64", "train.batch_size=8", "train.threads=1", "train.minutes=0", "train.steps=12", "train.ckpt_every=2",
          "train.sample_every=6", "train.log_every=1", "train.sample_grid=4", "train.precision=fp32"]
FAMILIES = {  # config, its tiny sizes
    "gan-dcgan-rotation": ("ssgan_fmnist.yaml", ["model.z_dim=16", "model.g_width=8", "model.d_width=8"]),
    "gan-sngan-paper": ("ssgan_paper.yaml", ["model.z_dim=16", "model.g_width=8", "model.d_width=8"]),
    "pggan": ("pggan_fmnist.yaml", ["model.z_dim=16", "model.g_width=16", "model.d_width=16"]),
    "stylegan": ("stylegan_fmnist.yaml", ["model.z_dim=16", "model.w_dim=16", "model.g_width=8", "model.d_width=8", "loss.r1_every=4"]),
    "bigbigan": ("bigbigan_fmnist.yaml", ["model.g_width=8", "model.d_width=8", "model.e_width=8"]),
    "context_encoder": ("inpaint_fmnist.yaml", ["model.width=8", "model.d_width=8", "loss.pretrain_steps=3"]),
    "srgan": ("sr2x_fmnist.yaml", ["model.g_width=8", "model.n_blocks=2", "model.d_width=8", "loss.pretrain_steps=3"]),
}


def _args(config: str, sets: list[str], out: Path, resume: bool = False) -> list[str]:
    args = [str(ROOT / "configs" / config), "--out", str(out), "--quiet"]
    for s in [*COMMON, *sets]:
        args += ["--set", s]
    return args + (["--resume"] if resume else [])


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "tests") + os.pathsep + str(ROOT)}


def _cli(args: list[str], kill_after: float | None = None) -> int:
    """`gan-ssl train` in a subprocess; SIGKILL after kill_after seconds (if it still runs). Returns its exit code."""
    proc = subprocess.Popen([sys.executable, "-m", "gan_ssl", "train", *args], cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode in (0, -signal.SIGKILL), err[-2000:]
    return proc.returncode


def _all_checkpoints_load(run: Path) -> None:
    for p in sorted((run / "checkpoints").glob("*.pt")):
        ckpt_io.load(p)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_sigkill_at_random_moments_and_inside_checkpoint_writes_then_resume_bit_exactly(tmp_path: Path, name: str) -> None:
    config, sets = FAMILIES[name]
    rng = random.Random(f"faults-{name}")
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert _cli(_args(config, sets, ref)) == 0
    # 1. killed inside a checkpoint write: the 3rd or 4th (step 4's numbered file or its latest.pt; step 2's are whole)
    write, mode = rng.choice([3, 4]), rng.choice(["half", "rename"])
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "fault_helper.py"), str(write), mode, *_args(config, sets, run)],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert list((run / "checkpoints").glob(".*.tmp")), "the torn temp file is there before the resume"
    _all_checkpoints_load(run)
    # 2. resumed, and killed again at a random moment (startup, a step, a checkpoint write or the final save)
    t0 = time.time()
    _cli(_args(config, sets, run, resume=True), kill_after=rng.uniform(2.0, 6.0))
    _all_checkpoints_load(run)
    # 3. resumed to the end
    if ckpt_io.load(run / "checkpoints" / "latest.pt")["step"] < 12:
        assert _cli(_args(config, sets, run, resume=True)) == 0
    assert time.time() - t0 < 120
    _all_checkpoints_load(run)
    assert not list((run / "checkpoints").glob(".*.tmp"))
    assert_same_run(ref, run)
