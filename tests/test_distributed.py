"""Data-parallel training through the real `torchrun` on the CPU (gloo): N x B equals 1 x N*B, exact resume,
world-size checks, batch sharding, SyncBatchNorm conversion, and every family under DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from gan_ssl.data import BatchStream, ImageData
from gan_ssl.engine.distributed import convert_sync_bn
from gan_ssl.nn.layers import PlainBN

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.limit=512", "train.sample_grid=4", "train.threads=1", "train.minutes=0", "train.log_every=1"]


def _train(config: str, out: Path, *sets: str, procs: int = 1, resume: bool = False) -> subprocess.CompletedProcess:
    """`gan-ssl train` in `procs` processes: torchrun (torch.distributed.run) for 2+, plain python for 1."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"] if procs > 1 else [sys.executable]
    args = [*launcher, "-m", "gan_ssl", "train", str(ROOT / "configs" / config), "--out", str(out), "--quiet"]
    for s in [*TINY, *sets]:
        args += ["--set", s]
    if resume:
        args.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def _ok(r: subprocess.CompletedProcess) -> None:
    errors = [ln for ln in r.stderr.splitlines() if "Error" in ln or "error" in ln or "terminate" in ln]
    assert r.returncode == 0, "\n".join(errors[-30:]) + "\n" + r.stderr[-2000:]


def _ckpt(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "latest.pt", map_location="cpu", weights_only=False)


def _max_diff(a: dict, b: dict) -> float:
    worst = 0.0
    for sec in ("nets", "emas"):
        assert a[sec].keys() == b[sec].keys()
        for name in a[sec]:
            for k, t in a[sec][name].items():
                if t.dtype.is_floating_point:
                    worst = max(worst, (t - b[sec][name][k]).abs().max().item())
    return worst


def _losses(run: Path) -> list[dict]:
    drop = ("it_s", "img_s", "minutes")
    return [{k: v for k, v in json.loads(ln).items() if k not in drop} for ln in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_at_b_match_one_process_at_2b(tmp_path: Path) -> None:
    """SRGAN (no BatchNorm, no latent noise: both stages deterministic given the batch): 3 L1 steps, then
    3 GAN steps with D and G; 2 ranks at batch 4 end with the parameters of 1 process at batch 8."""
    sets = ["model.g_width=8", "model.n_blocks=2", "model.d_width=8", "loss.pretrain_steps=3", "train.steps=6",
            "train.ckpt_every=3", "train.sample_every=3", "train.precision=fp32"]
    two, one = tmp_path / "two", tmp_path / "one"
    _ok(_train("sr2x_fmnist.yaml", two, *sets, "train.batch_size=4", procs=2))
    _ok(_train("sr2x_fmnist.yaml", one, *sets, "train.batch_size=8"))
    a, b = _ckpt(two), _ckpt(one)
    assert a["step"] == b["step"] == 6 and a["images"] == b["images"] == 6 * 8 + 3 * 8  # G_pre/G draw a batch, D too
    assert a["world_size"] == 2 and b["world_size"] == 1 and len(a["rng"]["ranks"]) == 2
    assert _max_diff(a, b) < 1e-6
    for la, lb in zip(_losses(two), _losses(one), strict=True):  # logged losses: the mean over ranks = the global batch's
        assert la.keys() == lb.keys()
        for k in la:
            assert la[k] == pytest.approx(lb[k], abs=2e-4), (la["step"], k)


def test_two_process_run_resumes_exactly(tmp_path: Path) -> None:
    """The main config (BN D, lazy rotation phases, EMA), 2 ranks: 4 steps then 4 more equal 8 straight,
    parameters, EMAs, per-rank RNG states and metrics; rank 0 alone wrote the run directory."""
    sets = ["model.z_dim=16", "model.g_width=8", "model.d_width=8", "train.batch_size=8", "train.ckpt_every=4",
            "train.sample_every=4"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _ok(_train("ssgan_fmnist.yaml", straight, *sets, "train.steps=8", procs=2))
    _ok(_train("ssgan_fmnist.yaml", resumed, *sets, "train.steps=4", procs=2))
    _ok(_train("ssgan_fmnist.yaml", resumed, *sets, "train.steps=8", procs=2, resume=True))
    a, b = _ckpt(straight), _ckpt(resumed)
    assert a["step"] == b["step"] == 8
    assert _max_diff(a, b) == 0.0
    assert all(torch.equal(x["torch"], y["torch"]) for x, y in zip(a["rng"]["ranks"], b["rng"]["ranks"], strict=True))
    assert not torch.equal(a["rng"]["ranks"][0]["torch"], a["rng"]["ranks"][1]["torch"])  # ranks draw different latents
    assert _losses(straight) == _losses(resumed)
    assert sorted(p.name for p in (straight / "samples").iterdir()) == ["step_000004.png", "step_000008.png"]
    assert len((straight / "metrics.jsonl").read_text().splitlines()) == 8  # one writer, one line per step

    # another world size: refused with one line, exit 2; allowed with the opt-in key
    r = _train("ssgan_fmnist.yaml", resumed, *sets, "train.steps=9", resume=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "trained by 2 process(es), this run has 1" in r.stderr and "train.allow_world_change=true" in r.stderr
    _ok(_train("ssgan_fmnist.yaml", resumed, *sets, "train.steps=9", "train.allow_world_change=true", resume=True))
    assert _ckpt(resumed)["step"] == 9 and _ckpt(resumed)["world_size"] == 1


@pytest.mark.parametrize("config,sets", [
    ("pggan_fmnist.yaml", ["model.z_dim=16", "model.g_width=16", "model.d_width=16"]),
    ("stylegan_fmnist.yaml", ["loss.r1_every=2"]),  # lazy R1: a double-backward phase under DDP
    ("bigbigan_fmnist.yaml", ["model.g_width=8", "model.d_width=8", "model.e_width=8"]),
    ("inpaint_fmnist.yaml", ["model.width=8", "model.d_width=8", "loss.pretrain_steps=1"]),
    ("sr2x_fmnist.yaml", ["model.g_width=8", "model.n_blocks=2", "model.d_width=8", "loss.pretrain_steps=1"]),
    ("ssgan_fmnist.yaml", ["model.z_dim=16", "model.g_width=8", "model.d_width=8"]),
    ("ssgan_fmnist.yaml", ["model.z_dim=16", "model.g_width=8", "model.d_width=8", "aux.rotation.lazy=fold"]),
    ("contrad_fmnist.yaml", ["model.z_dim=16", "model.g_width=8", "model.d_width=8"]),
], ids=["pggan", "stylegan", "bigbigan", "context_encoder", "srgan", "gan-rotation", "gan-rotation-fold", "gan-contrad"])
def test_every_family_trains_data_parallel(tmp_path: Path, config: str, sets: list[str]) -> None:
    """Each family's phases run in DDP from the names they declare, and the two ranks end with one set of weights:
    train.ddp_check compares every parameter and buffer of every net and EMA across ranks at each checkpoint
    (steps 2 and 4) and stops the run on any difference."""
    out = tmp_path / "run"
    _ok(_train(config, out, *sets, "train.batch_size=4", "train.steps=4", "train.ckpt_every=2", "train.sample_every=4",
               "train.ddp_check=true", procs=2))
    ck = _ckpt(out)
    assert ck["step"] == 4 and ck["world_size"] == 2 and (out / "samples" / "step_000004.png").is_file()


def test_the_rank_check_finds_one_differing_element(tmp_path: Path) -> None:
    """What train.ddp_check rests on: every rank learns which tensors differ from rank 0's, down to one element."""
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(ROOT / "tests" / "dist_check_helper.py"), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    _ok(subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT))
    results = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]
    assert [r["rank"] for r in results] == [0, 1] and all(r["differ"] == ["b.bias"] for r in results)


def test_in_training_evaluation_under_ddp(tmp_path: Path) -> None:
    """eval.every > 0 with 2 ranks: rank 0 evaluates, every rank takes part in the collectives around it."""
    out = tmp_path / "run"
    _ok(_train("ssgan_fmnist.yaml", out, "model.z_dim=16", "model.g_width=8", "model.d_width=8", "train.batch_size=4",
               "train.steps=4", "train.ckpt_every=2", "train.sample_every=4", "eval.every=2", "eval.fid=false",
               "eval.probe_n=64", procs=2))
    evals = [r for r in _losses(out) if "eval" in r]
    assert [r["step"] for r in evals] == [2, 4] and all(0 <= r["eval"]["probe_acc"] <= 1 for r in evals)


def test_one_failing_rank_stops_every_rank_within_seconds(tmp_path: Path) -> None:
    """Rank 0 alone fails (its FID evaluator finds no Inception weights) while rank 1 waits in the loop's first
    collective: both end within seconds (was: rank 0 stuck in close()'s barrier, rank 1 in the collective, until
    the 30-minute timeout), and the one-line error of rank 0 is printed."""
    import time

    t0 = time.time()
    env_home = tmp_path / "home"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "gan_ssl", "train",
            str(ROOT / "configs" / "ssgan_fmnist.yaml"), "--out", str(tmp_path / "run"), "--quiet"]
    for s in [*TINY, "model.z_dim=16", "model.g_width=8", "model.d_width=8", "train.batch_size=4", "train.steps=50",
              "eval.every=10", "eval.features=inception"]:
        args += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_HOME": str(env_home), "GAN_SSL_HOME": str(env_home)}
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)
    assert r.returncode != 0 and time.time() - t0 < 90
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert errors and "Inception weights not found" in errors[0], r.stderr[-3000:]
    assert not (tmp_path / "run" / "checkpoints" / "latest.pt").exists()


def test_ranks_shard_the_global_batch(fmnist_small: ImageData) -> None:
    """Rank r at batch B gets rows [rB, (r+1)B) of the batch one process at 2B gets, across epoch ends."""
    one = BatchStream(fmnist_small, 64, seed=3)
    ranks = [BatchStream(fmnist_small, 32, seed=3, rank=r, world=2) for r in range(2)]
    for _ in range(12):  # 512 images: an epoch every 8 batches of 64
        whole = one.next()
        parts = [s.next() for s in ranks]
        assert torch.equal(torch.cat([p["index"] for p in parts]), whole["index"])
        assert torch.equal(torch.cat([p["image"] for p in parts]), whole["image"])
    assert ranks[1].state_dict() == one.state_dict()


def test_sync_bn_conversion_keeps_parameters_and_calls() -> None:
    """convert_sync_bn swaps BatchNorm2d and PlainBN for SyncBatchNorm sharing their parameters (the optimizer keeps
    working) and PlainBN's (x, z) signature; in eval mode the converted net computes the same outputs."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Sequential(PlainBN(4)))
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[2][0].weight.normal_()
    x = torch.randn(2, 1, 6, 6)
    net.eval()
    before = net[2][0](net[1](net[0](x)), None)
    params = [id(p) for p in net.parameters()]
    convert_sync_bn(net)
    assert isinstance(net[1], nn.SyncBatchNorm) and isinstance(net[2][0], nn.SyncBatchNorm)
    assert [id(p) for p in net.parameters()] == params
    assert torch.allclose(net[2][0](net[1](net[0](x)), torch.zeros(2, 3)), before)


def test_contrastive_losses_gather_across_ranks_so_two_processes_equal_one(tmp_path: Path) -> None:
    """ContraD under torchrun: NT-Xent and the fake term see every rank's embeddings (gathered with gradients), so
    2 processes on halves of a batch give the loss and the DDP-averaged gradients of 1 process on the whole batch."""
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(ROOT / "tests" / "dist_contrastive_helper.py"), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    _ok(r)
    lines = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(x["rank"] for x in lines) == [0, 1]
    for x in lines:
        assert x["world"] == 2 and x["n_grads"] == x["ref_n_grads"] > 0
        assert abs(x["loss"] - x["ref"]) < 1e-5 and x["grad_gap"] < 1e-5, x
