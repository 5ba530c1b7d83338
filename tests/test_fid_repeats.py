"""gan_ssl.evaluation.fid_repeats and `gan-ssl fid --repeats K`: one value per sample seed, mean and sample std of them, repeat k equal
to a plain `fid --seed (seed + k)`, the reference statistics computed once, and fixed inputs refused. The tiny offline
extractor and the private $TORCH_HOME come from tests/test_metrics.py's fixtures."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_metrics import CNN, FID, env, ext_home, real  # noqa: F401  (fixtures: tiny extractor, fresh $TORCH_HOME, real images)

from gan_ssl.cli import cli
from gan_ssl.evaluation import fid_repeats

REF = "fashion-mnist:test"


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_three_seeds_give_three_values_each_a_plain_fid_run(tiny_run: Path, env: Path) -> None:  # noqa: F811
    code, out, err = _run("fid", str(tiny_run), REF, "--n", "64", "--seed", "5", "--repeats", "3", "--kid", "--kid-subset-size", "32",
                          "--json", "--quiet")
    assert code == 0, err
    r = json.loads(out)
    assert r["repeats"] == 3 and r["seeds"] == [5, 6, 7] and "ddof=1" in r["std"]
    m = r["metrics"][FID]
    assert len(m["values"]) == 3 and len(set(m["values"])) == 3
    assert m["mean"] == pytest.approx(statistics.fmean(m["values"]), rel=1e-12)
    assert m["std"] == pytest.approx(float(np.std(m["values"], ddof=1)), rel=1e-12)
    assert set(r["metrics"]) == {FID, f"kid[{CNN}]", f"kid_std[{CNN}]"}
    cached = [run["input2"]["reference_cached"] for run in r["runs"]]
    assert cached == [False, True, True]  # the reference side: computed by the first repeat, then read from the cache
    assert [run["input1"]["seed"] for run in r["runs"]] == [5, 6, 7]
    for seed, value in zip((5, 6, 7), m["values"]):
        code, out, err = _run("fid", str(tiny_run), REF, "--n", "64", "--seed", str(seed), "--kid", "--kid-subset-size", "32",
                              "--json", "--quiet")
        assert code == 0, err
        assert json.loads(out)["metrics"][FID] == value, seed


def test_text_output_names_mean_std_and_seeds(tiny_run: Path) -> None:
    code, out, err = _run("fid", str(tiny_run), REF, "--n", "32", "--repeats", "2", "--quiet")
    assert code == 0, err
    assert "over 2 sample seeds (0..1): mean ± sample standard deviation over repeats (ddof=1)" in out
    line = next(ln for ln in out.splitlines() if ln.startswith(FID))
    assert " ± " in line and "per seed: " in line and len(line.split("per seed: ")[1].split(", ")) == 2
    assert "EMA samples, seed 0..1" in out and "input2 statistics: computed 1 of 2 times" in out


def test_one_repeat_keeps_todays_output(tiny_run: Path) -> None:
    plain = _run("fid", str(tiny_run), REF, "--n", "32", "--json", "--quiet")
    one = _run("fid", str(tiny_run), REF, "--n", "32", "--repeats", "1", "--json", "--quiet")
    a, b = json.loads(plain[1]), json.loads(one[1])
    assert a["metrics"] == b["metrics"] and "repeats" not in b


def test_two_checkpoints_share_each_seed(tiny_run: Path) -> None:
    r = fid_repeats.compute(str(tiny_run), str(tiny_run), 2, n=32)
    assert r["metrics"][FID]["values"] == pytest.approx([0.0, 0.0], abs=1e-6)  # the same images on both sides


def test_repeats_of_fixed_inputs_are_one_line_errors(real: torch.Tensor, tmp_path: Path) -> None:  # noqa: F811
    np.save(tmp_path / "a.npy", real[:20].numpy())
    for args in ([str(tmp_path / "a.npy"), str(tmp_path / "a.npy")], [str(tmp_path / "a.npy"), REF]):
        code, _, err = _run("fid", *args, "--repeats", "3", "--quiet")
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "checkpoint" in err, err
    code, _, err = _run("fid", str(tmp_path / "missing.npy"), REF, "--repeats", "3")
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    code, _, err = _run("fid", str(tmp_path / "a.npy"), str(tmp_path / "a.npy"), "--repeats", "0")
    assert code == 2 and err.count("\n") == 1
