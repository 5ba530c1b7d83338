"""`gan-ssl report` rendered in a real headless browser, and the optional TensorBoard mirror (train.tensorboard)."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gan_ssl.cli import cli
from gan_ssl.data import ImageData

FID = "fid64_train[fashion-mnist-cnn]"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Reports each <img>'s decode state, natural size and place on the page into the DOM, for --dump-dom.
PROBE_JS = """<script>window.addEventListener('load', () => {
  const r = [...document.images].map(i => { const b = i.getBoundingClientRect();
    return {complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,  // content box, inside any border
            x: b.left + i.clientLeft, y: b.top + i.clientTop, dw: i.clientWidth, dh: i.clientHeight}; });
  const el = document.createElement('pre'); el.id = 'probe'; el.style.display = 'none';
  el.textContent = JSON.stringify({images: r, height: document.documentElement.scrollHeight, width: innerWidth});
  document.body.appendChild(el); });</script>"""


def cli_run(*args: object) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    return res.exit_code, res.output, res.stderr


def assert_one_line_error(code: int, output: str, stderr: str, needle: str) -> None:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, output)
    assert needle in lines[0] and "Traceback" not in output, lines


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory: pytest.TempPathFactory, fmnist_small: ImageData) -> Path:
    """A 6-step SSGAN run with TensorBoard on, grids at steps 2, 4, 6 and an evaluation (stub FID + probe) every 2 steps."""
    from conftest import tiny_cfg

    from gan_ssl.api import train

    scores = iter([(30.0, 0.5), (20.0, 0.6), (15.0, 0.65)])

    def stub(bundle: object) -> dict[str, float]:  # the real evaluators need the FID extractor's weights; the record path is the loop's
        fid, acc = next(scores)
        return {FID: fid, "probe_acc": acc}

    out = tmp_path_factory.mktemp("report_run")
    train(tiny_cfg("train.steps=6", "eval.every=2", "train.tensorboard=true"), out, progress=False, data=fmnist_small,
          evaluators=[stub])
    return out


def chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium is needed for the report test: apt-get install chromium (tools/setup.sh installs it)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={user_dir}", "--hide-scrollbars",
             "--force-device-scale-factor=1"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


def test_report_renders_in_a_browser(tb_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, output, _ = cli_run("report", tb_run, "--out", out, "--embedding", "300")
    assert code == 0 and str(out) in output, output
    page = out.read_text()
    # self-contained: nothing fetched from anywhere, no scripts
    assert not re.search(r"<script|<link|src=\"(?!data:image/png;base64,)|url\(", page, re.I)
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    plots = ["losses", "rotation accuracy", "FID", "evaluations", "img/s", "it/s"]
    assert all(f'alt="{a}"' in page for a in plots)
    assert [int(s) for s in re.findall(r"<figcaption>step (\d+)</figcaption>", page)] == [2, 4, 6]
    assert len(uris) == len(plots) + 3 + 1  # + the t-SNE picture of D's features of 300 test images
    assert 'alt="t-SNE of D features, 300 fashion-mnist test images' in page
    assert "tensorboard: true" in page and "probe_n: 5000" in page  # the resolved config, as text
    assert "Machine generating this report" in page and re.search(r"<th>precision</th><td>(bf16|fp32)</td>", page)
    originals = [Image.open(io.BytesIO(base64.b64decode(u))).convert("RGB") for u in uris]

    # 1) every image decodes in the browser, at its natural size
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE_JS + "</body>"))
    dom = chromium("--window-size=1200,1000", "--dump-dom", probe.as_uri(), user_dir=tmp_path / "chr1").stdout
    found = re.search(r'<pre id="probe"[^>]*>(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    info = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    imgs = info["images"]
    assert len(imgs) == len(originals)
    for im, orig in zip(imgs, originals):
        assert im["complete"] and (im["w"], im["h"]) == orig.size, im

    # 2) the screenshot shows them: each image's box on the page looks like the image itself, and is not blank
    shot = tmp_path / "report.png"
    chromium(f"--window-size=1200,{info['height']}", f"--screenshot={shot}", out.as_uri(), user_dir=tmp_path / "chr2")
    screen = np.asarray(Image.open(shot).convert("RGB")).astype(np.float32)
    assert screen.shape[1] == info["width"] and screen.shape[0] >= max(i["y"] + i["dh"] for i in imgs)
    for im, orig in zip(imgs, originals):
        x, y, w, h = (round(im[k]) for k in ("x", "y", "dw", "dh"))
        box = screen[y : y + h, x : x + w]
        pixelated = im["dw"] >= 2 * im["w"]  # the grids are scaled up without smoothing (image-rendering: pixelated)
        ref = np.asarray(orig.resize((box.shape[1], box.shape[0]), Image.NEAREST if pixelated else Image.BILINEAR)).astype(np.float32)
        assert box.std() > 10, im  # not an empty box
        assert np.abs(box - ref).mean() < 12, (im, np.abs(box - ref).mean())  # a missing image: about 100
        if not pixelated:  # a plot: its first curve is drawn in matplotlib's first colour (tab:blue)
            assert (np.abs(box - np.array([31, 119, 180])).max(axis=2) < 30).sum() > 50, im


def test_tensorboard_mirrors_metrics_and_grids(tb_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recs = [json.loads(ln) for ln in (tb_run / "metrics.jsonl").read_text().splitlines()]
    ea = EventAccumulator(str(tb_run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"d_loss", "g_loss", "rot_acc_real", "img_s", "it_s", f"eval/{FID}", "eval/probe_acc"} <= tags
    logged = {r["step"]: r["d_loss"] for r in recs if "d_loss" in r}
    assert {e.step: round(e.value, 5) for e in ea.Scalars("d_loss")} == pytest.approx(logged, abs=1e-5)
    assert {e.step: e.value for e in ea.Scalars("eval/probe_acc")} == pytest.approx({2: 0.5, 4: 0.6, 6: 0.65})
    grids = ea.Images("samples")
    assert [g.step for g in grids] == [2, 4, 6]
    png = Image.open(tb_run / "samples" / "step_000006.png")
    assert (grids[-1].width, grids[-1].height) == png.size


def test_tensorboard_may_change_on_resume(tmp_path: Path) -> None:
    """A run trained without train.tensorboard resumes with it on (and mirrors only the steps after the resume);
    a key that may not change is still refused."""
    from conftest import tiny_cfg

    from gan_ssl.api import train
    from gan_ssl.core.errors import ConfigError
    from gan_ssl.engine.state import check_resume_compatible

    check_resume_compatible(tiny_cfg("train.tensorboard=true"), tiny_cfg().to_dict())
    with pytest.raises(ConfigError, match="train.batch_size"):
        check_resume_compatible(tiny_cfg("train.tensorboard=true", "train.batch_size=4"), tiny_cfg().to_dict())
    run = tmp_path / "run"
    train(tiny_cfg("train.steps=2"), run, progress=False)
    assert not (run / "tensorboard").exists()
    train(tiny_cfg("train.steps=4", "train.tensorboard=true"), run, resume=True, progress=False)
    assert any((run / "tensorboard").iterdir())


def test_tensorboard_without_the_package_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gan_ssl.engine.tensorboard import MISSING

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` now raises ImportError
    out = tmp_path / "run"
    code, output, stderr = cli_run("train", "configs/ssgan_fmnist.yaml", "--out", out, "--quiet", "--set", "train.tensorboard=true")
    assert_one_line_error(code, output, stderr, MISSING)
    assert not out.exists()  # failed at the start, before anything was written


def test_report_errors_are_one_line(tmp_path: Path) -> None:
    assert_one_line_error(*cli_run("report", tmp_path / "nope"), "run directory not found")
    assert_one_line_error(*cli_run("report", tmp_path), "has no metrics.jsonl")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "d_loss": 1.0}\nnot json\n')
    assert_one_line_error(*cli_run("report", tmp_path), "metrics.jsonl:2 is not a JSON line")


def test_report_of_a_bare_run_and_grid_spacing(tmp_path: Path) -> None:
    """A run with only metrics (no checkpoint, config or eval) still gets a page; many grids are thinned evenly, last kept."""
    from gan_ssl.evaluation.report import sample_grids, write_report

    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "d_loss": 1.0 / s, "img_s": 100.0}) + "\n" for s in (1, 2, 3)))
    (tmp_path / "samples").mkdir()
    for s in range(10, 210, 10):
        Image.new("L", (4, 4), s).save(tmp_path / "samples" / f"step_{s:06d}.png")
    picked = [s for s, _ in sample_grids(tmp_path / "samples")]
    assert len(picked) == 8 and picked[0] == 10 and picked[-1] == 200 and picked == sorted(picked)
    page = write_report(tmp_path).read_text()
    assert (tmp_path / "report.html").is_file() and "no in-training evaluations" in page and "does not exist" in page
    assert page.count("<figcaption>") == 8 and "img_s mean" in page
