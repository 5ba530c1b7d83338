"""tools/gpu_check.sh (issue 25) in its CPU dry mode: every section runs and the resumed torchrun run is exact."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_passes_on_the_cpu(tmp_path: Path, fmnist_small) -> None:
    from gan_ssl.evaluation import extractor as ev

    home = tmp_path / "home"  # a tiny offline FID extractor, as every FID test makes its own
    ev.train_evaluator("fashion-mnist", epochs=1, batch_size=64, width=4, feature_dim=16, limit=512,
                       out=home / "evaluators" / "fashion-mnist-cnn.pt", progress=False)
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "GAN_SSL_HOME": str(home), "OMP_NUM_THREADS": "2"}
    args = ["bash", str(ROOT / "tools" / "gpu_check.sh"), "--cpu", "--steps", "2", "--fid-n", "200", "--images", "256",
            "--set", "model.g_width=8", "--set", "model.d_width=8", "--mimicry", str(tmp_path / "no_mimicry"), "--out", str(out)]
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    res = json.loads(out.read_text())
    assert res["failed"] == []
    assert res["env"]["device"] == "cpu" and res["env"]["matmul_fp32_tflops_2048"] > 0
    for precision in ("fp32", "bf16", "fp16"):
        cell = res["throughput"][precision]
        assert cell["s_per_step"] > 0 and cell["img_s"] > 0
        assert cell["scaler"] == (precision == "fp16")  # fp16 trains with GradScaler
    assert res["torchrun"]["exact"] and res["torchrun"]["backend"] == "gloo" and res["torchrun"]["tensors"] > 10
    assert any(k.startswith("fid[") for k in res["fid"]["result"]["metrics"])
    assert "skipped" in res["mimicry"]


def test_gpu_check_without_a_gpu_says_so_in_one_line(tmp_path: Path) -> None:
    r = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), "--out", str(tmp_path / "x.json")],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["error: no CUDA device here; run with --cpu for the dry run"]
