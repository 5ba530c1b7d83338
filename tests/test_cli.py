"""The `gan-ssl` CLI: train/sample/info, and one line + exit code 2 for every user mistake."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from gan_ssl.cli import cli

CONFIG = "configs/ssgan_fmnist.yaml"


def run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    return res.exit_code, res.output, res.stderr


def assert_user_error(code, output, stderr, *needles):
    assert code == 2, output
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in output
    for n in needles:
        assert n in output, output


@pytest.mark.parametrize(
    "override,needle",
    [("train.stepz=5", "unknown config key 'train.stepz'"), ("train.steps=-1", "out of range"),
     ("train.batch_size=big", "must be int"), ("loss.adversarial=wgan", "must be one of")],
)
def test_train_bad_config(tmp_path, override, needle):
    assert_user_error(*run("train", CONFIG, "--out", tmp_path, "--set", override, "--quiet"), needle)


def test_train_missing_config_and_data(tmp_path):
    assert_user_error(*run("train", tmp_path / "nope.yaml", "--out", tmp_path), "config file not found")
    assert_user_error(*run("train", CONFIG, "--out", tmp_path / "r", "--set", f"data.name=folder:{tmp_path / 'none'}"),
                      "image folder not found")


def test_train_corrupt_png_names_file(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("L", (32, 32), i).save(folder / f"{i}.png")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert_user_error(*run("train", CONFIG, "--out", tmp_path / "r", "--set", f"data.name=folder:{folder}"), "bad.png")


def test_train_sample_info_roundtrip(tmp_path):
    out = tmp_path / "run"
    args = ["train", CONFIG, "--out", out, "--quiet", "--set", "data.limit=64", "--set", "model.g_width=8",
            "--set", "model.d_width=8", "--set", "train.batch_size=8", "--set", "train.steps=2", "--set", "train.sample_grid=4"]
    code, output, _ = run(*args)
    assert code == 0, output
    assert "checkpoint:" in output and (out / "checkpoints" / "latest.pt").is_file()
    assert (out / "config.yaml").is_file() and (out / "metrics.jsonl").is_file()
    # a second train into the same folder refuses to overwrite the run
    assert_user_error(*run(*args), "already holds a run", "--resume")
    code, output, _ = run(*(args[:-4] + ["--set", "train.steps=3", "--resume"]))
    assert code == 0, output

    ckpt = out / "checkpoints" / "latest.pt"
    code, output, _ = run("sample", ckpt, "--n", 5, "--out", tmp_path / "s.npy", "--seed", 1)
    assert code == 0, output
    arr = np.load(tmp_path / "s.npy")
    assert arr.shape == (5, 1, 32, 32) and arr.dtype == np.uint8
    code, _, _ = run("sample", out, "--n", 5, "--out", tmp_path / "pngs", "--seed", 1, "--batch-size", 2)
    assert code == 0
    pngs = sorted((tmp_path / "pngs").glob("*.png"))
    assert len(pngs) == 5
    np.testing.assert_array_equal(np.asarray(Image.open(pngs[3])), arr[3, 0])  # batch size and format agree

    code, output, _ = run("info", ckpt)
    assert code == 0 and "step:       3" in output and "rotation" in output and "params:" in output
    code, output, _ = run("info", ckpt, "--json")
    assert code == 0 and '"model": "dcgan"' in output


def test_missing_foreign_and_corrupt_checkpoints(tmp_path):
    assert_user_error(*run("info", tmp_path / "missing.pt"), "checkpoint not found")
    assert_user_error(*run("sample", tmp_path / "missing.pt", "--out", tmp_path / "x.npy"), "checkpoint not found")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    assert_user_error(*run("info", foreign), "not a gan_ssl checkpoint")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"definitely not a zip file")
    assert_user_error(*run("sample", corrupt, "--out", tmp_path / "y.npy"), "cannot load checkpoint")
    assert_user_error(*run("info", tmp_path), "without checkpoints/latest.pt")


def test_console_script_exit_code(tmp_path):
    """The installed entry point (not just click's test runner) exits 2 with one line on stderr."""
    proc = subprocess.run([sys.executable, "-m", "gan_ssl", "info", str(tmp_path / "none.pt")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: checkpoint not found") and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("cmd", [
    ["sample", "{run}", "--out", "{tmp}/x.npy"],
    ["fid", "{run}", "fashion-mnist:test", "--n", "10"],
    ["features", "{run}", "--data", "fashion-mnist", "--out", "{tmp}/f.pt"],
    ["probe", "{run}", "--data", "fashion-mnist"],
])
@pytest.mark.parametrize("device,needle", [("tpu", "is not a device"), ("cuda:7", "CUDA"), ("mps", "MPS")])
def test_device_is_validated_like_train(tiny_run, tmp_path, cmd, device, needle):
    import torch

    if (device.startswith("cuda") and torch.cuda.device_count() > 7) or (device == "mps" and torch.backends.mps.is_available()):
        pytest.skip("this machine has that device")
    args = [a.format(run=tiny_run, tmp=tmp_path) for a in cmd] + ["--device", device]
    assert_user_error(*run(*args), needle)


def test_threads_option_on_commands_that_compute(tiny_run, tmp_path):
    code, output, _ = run("sample", tiny_run, "--n", 3, "--out", tmp_path / "s.npy", "--threads", 1)
    assert code == 0, output
    assert_user_error(*run("sample", tiny_run, "--n", 3, "--out", tmp_path / "s.npy", "--threads", -1), "--threads")


def test_progress_is_plain_lines_when_not_a_terminal(tmp_path, monkeypatch):
    """Under CI (stderr not a TTY) training prints whole lines, never tqdm's carriage-return frames."""
    monkeypatch.setenv("GAN_SSL_PROGRESS_SECONDS", "0")
    proc = subprocess.run([sys.executable, "-m", "gan_ssl", "train", CONFIG, "--out", str(tmp_path / "r"), "--set", "data.limit=64",
                           "--set", "model.g_width=8", "--set", "model.d_width=8", "--set", "train.batch_size=8", "--set", "train.steps=5",
                           "--set", "train.sample_grid=4", "--set", "train.minutes=0"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("train gan/dcgan:")]
    assert len(lines) == 6 and "5/5 step" in lines[-1]  # one per step at a 0-second interval, plus the final line
    from gan_ssl.core.progress import Progress

    monkeypatch.setenv("GAN_SSL_PROGRESS_SECONDS", "30")
    import io

    buf = io.StringIO()
    with Progress(total=1000, desc="x", stream=buf) as bar:
        for _ in range(1000):
            bar.update(1)
    assert buf.getvalue().count("\n") == 1  # a fast loop under the default interval: just the closing line
