"""gan_ssl.inference.export and `gan-ssl export`: every family round-trips through safetensors + config.json (the rebuilt
generator gives the checkpoint's images, bit for bit), the files hold no pickle, and tampered or foreign inputs
are refused with one line."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_cfg
from pretext_helpers import ce_cfg, sr_cfg

import gan_ssl
from gan_ssl import api
from gan_ssl.api import train
from gan_ssl.cli import cli
from gan_ssl.core.errors import CheckpointError
from gan_ssl.data import ImageData
from gan_ssl.families.resolve import resolve
from gan_ssl.inference import export as ex

SMALL = ["train.steps=2", "train.ckpt_every=2", "train.sample_every=2", "train.log_every=1", "train.sample_grid=4", "data.limit=64",
         "train.batch_size=8"]
# 8x8 fades in over 32 images from the start: after 2 steps the run is mid-fade (level 1, 0 < alpha < 1)
GROW = ["loss.grow.enabled=true", "loss.grow.stabilize_images=0", "loss.grow.fade_images=32", "model.z_dim=16", "model.g_width=8",
        "model.d_width=8", "train.channels_last=false"]
BIG = ["family=bigbigan", "model.z_dim=16", "model.g_width=8", "model.d_width=8", "model.e_width=4", "model.e_head_width=16",
       "model.h_width=16", "model.j_width=16"]
CONFIGS = {
    "dcgan": lambda: tiny_cfg(*SMALL, model="dcgan"),
    "sngan": lambda: tiny_cfg(*SMALL),
    "pggan": lambda: resolve(None, ["model.name=pggan", *GROW, *SMALL]),
    "stylegan": lambda: resolve(None, ["model.name=stylegan", *GROW, "model.w_dim=16", "loss.r1_every=2", *SMALL]),
    "bigbigan": lambda: resolve(None, [*BIG, *SMALL]),
    "context_encoder": lambda: ce_cfg(*SMALL, "loss.pretrain_steps=1"),
    "srgan": lambda: sr_cfg(*SMALL, "loss.pretrain_steps=1"),
}
SAMPLING = ("dcgan", "sngan", "pggan", "stylegan", "bigbigan")


@pytest.fixture(scope="module")
def small_data(fmnist_small: ImageData) -> ImageData:
    d = fmnist_small
    return ImageData(d.images[:64], d.labels[:64], d.name, d.classes)


@pytest.fixture(scope="module", params=list(CONFIGS))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, small_data: ImageData) -> tuple[str, Path, Path]:
    """(name, checkpoint, export folder) of a 2-step run of each family."""
    tmp = tmp_path_factory.mktemp(f"export_{request.param}")
    ckpt = train(CONFIGS[request.param](), tmp / "run", progress=False, data=small_data)
    ex.export(ckpt, tmp / "export")
    return request.param, ckpt, tmp / "export"


def _no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def test_round_trip_gives_the_checkpoints_outputs(exported: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    name, ckpt, folder = exported
    ref = api.load(ckpt)
    with monkeypatch.context() as m:
        _no_pickle(m)
        g = gan_ssl.load_generator(folder)  # config.json + safetensors only
    assert type(g.family) is type(ref.family) and g.step == ref.step and g.family.training is False
    meta = ex.read_config(folder)
    assert meta["family"] == ref.cfg.family and meta["config"] == ref.cfg.to_dict() and meta["gan_ssl"] == gan_ssl.__version__
    gen = meta["generator"]
    assert gen["name"] == ref.family.generator and meta["files"][gen["file"]]["role"] == "generator"
    declared = {(d["kind"], d["name"]) for d in meta["files"].values()}
    assert {("net", n) for n in ref.family.nets} | {("ema", n) for n in ref.family.emas} <= declared
    for k, v in ref.family.buffers.items():
        assert torch.equal(g.family.buffers[k], v), k
    if name in SAMPLING:
        got = g.sample(10, seed=3, batch_size=4)
        assert torch.equal(got, ref.sample(10, seed=3, batch_size=4))
        # another batch size: the same latents, images equal up to a grey level of kernel rounding (Family.sample's
        # contract; oneDNN picks other conv kernels per batch size on some CPUs, e.g. the AMD EPYC)
        assert (got.int() - ref.sample(10, seed=3).int()).abs().max() <= 1
        assert not torch.equal(g.sample(10, seed=4), ref.sample(10, seed=3))
    if name in ("pggan", "stylegan"):  # mid-fade: the level of detail and alpha travel in config.json
        assert meta["extra"] == ref.family.state_extra() and g.family.level == 1 and 0 < g.family.alpha < 1
    if name == "stylegan":  # truncation reads G_ema.w_avg (a buffer in the weight file)
        assert torch.equal(g.sample(6, seed=1, truncation=0.5, cutoff=2), ref.sample(6, seed=1, truncation=0.5, cutoff=2))
    if name == "bigbigan":
        assert "net-E.safetensors" in meta["files"]
    x = ref.family.buffers.get("grid_image")
    if name == "context_encoder":
        mask = ref.family.buffers["grid_mask"]
        assert torch.equal(g.family.complete(x, mask)[1], ref.family.complete(x, mask)[1])
    if name == "srgan":
        from gan_ssl.families.srgan import downsample

        lr = downsample(x, ref.family.scale)
        for net in ("G", "G_psnr"):
            assert torch.equal(g.family.upscale(lr, net), ref.family.upscale(lr, net)), net


def test_files_are_safetensors_and_json_only(exported: tuple[str, Path, Path]) -> None:
    """Each weight file is an 8-byte header length, a JSON header and raw tensor bytes, nothing else."""
    _, _, folder = exported
    meta = json.loads((folder / "config.json").read_text())
    assert sorted(p.name for p in folder.iterdir()) == sorted([*meta["files"], "config.json"])
    for fname, entry in meta["files"].items():
        data = (folder / fname).read_bytes()
        assert not data.startswith(b"PK") and b"\x80\x02" not in data[:2]  # neither torch.save's zip nor a raw pickle
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n])
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        assert 8 + n + max((v["data_offsets"][1] for v in tensors.values()), default=0) == len(data)
        assert {k: v["shape"] for k, v in tensors.items()} == {k: t["shape"] for k, t in entry["tensors"].items()}
        assert json.loads(header["__metadata__"]["gan_ssl.export"])["kind"] == entry["kind"]


def test_export_is_reproducible(tiny_run: Path, tmp_path: Path) -> None:
    a, b = ex.export(tiny_run, tmp_path / "a"), ex.export(tiny_run, tmp_path / "b")
    assert {f: d["sha256"] for f, d in a["files"].items()} == {f: d["sha256"] for f, d in b["files"].items()}


def test_tampered_missing_and_foreign_exports_are_refused(tiny_run: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    ex.export(tiny_run, bad)
    meta = ex.read_config(bad)
    gen = bad / meta["generator"]["file"]
    data = bytearray(gen.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    gen.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        gan_ssl.load_generator(bad)
    gen.unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        gan_ssl.load_generator(bad)
    with pytest.raises(CheckpointError, match="no config.json"):
        gan_ssl.load_generator(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "something else"}')
    with pytest.raises(CheckpointError, match="not a gan_ssl export"):
        gan_ssl.load_generator(tmp_path)
    r = CliRunner().invoke(cli, ["sample", str(bad), "--out", str(tmp_path / "x.npy")])  # not a checkpoint either
    assert r.exit_code == 2


def _cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_cli_export_and_its_errors(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    code, text, err = _cli("export", str(tiny_run), "--format", "safetensors", "--out", str(out))
    assert code == 0, err
    assert "generator  ema-G_ema.safetensors" in text and "gan_ssl.load_generator(" in text
    assert torch.equal(gan_ssl.load_generator(out).sample(8, seed=2), api.sample(tiny_run, 8, seed=2))
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "afile").write_text("x")
    cases = {
        "missing checkpoint": (["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "e1")], "checkpoint not found"),
        "foreign checkpoint": (["export", str(tmp_path / "foreign.pt"), "--out", str(tmp_path / "e2")], "not a valid gan_ssl checkpoint"),
        "non-empty out": (["export", str(tiny_run), "--out", str(out)], "--force"),
        "out is a file": (["export", str(tiny_run), "--out", str(tmp_path / "afile")], ""),
        "unknown format": (["export", str(tiny_run), "--format", "onnx", "--out", str(tmp_path / "e3")], "safetensors"),
    }
    for what, (args, msg) in cases.items():
        code, _, err = _cli(*args)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and msg in err, (what, err)
    code, text, err = _cli("export", str(tiny_run), "--out", str(out), "--force", "--json")
    assert code == 0, err
    assert json.loads(text)["files"] == ex.read_config(out)["files"]
