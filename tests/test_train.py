"""The trainer on real Fashion-MNIST slices: learning signal, exact resume, safe checkpoints, divergence."""
import json

import pytest
import torch

from conftest import tiny_cfg
from gan_ssl import checkpoint as ckpt_io
from gan_ssl import objective
from gan_ssl.errors import CheckpointError, ConfigError, DivergenceError
from gan_ssl.losses import g_hinge
from gan_ssl.train import train


def _metrics(run):
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("model", ["sngan", "dcgan"])
def test_short_run_moves_d_loss(tmp_path, fmnist_small, model):
    cfg = tiny_cfg("train.steps=30", "train.log_every=5", "train.sample_every=0", "train.ckpt_every=0", model=model)
    last = train(cfg, tmp_path, progress=False, data=fmnist_small)
    rows = _metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(5, 35, 5))
    first, final = rows[0], rows[-1]
    assert abs(final["d_adv"] - first["d_adv"]) > 0.1, (first, final)
    assert all(k in final for k in ("d_loss", "g_loss", "rot_d", "rot_g", "rot_acc_fake", "it_s", "img_s"))
    assert last == tmp_path / "checkpoints" / "latest.pt" and last.is_file()
    assert (tmp_path / "samples" / "step_000030.png").is_file()


def _flat_state(ck):
    out = {}
    for group in ("models", "optim"):
        for net, sd in ck[group].items():
            for k, v in _walk(sd, f"{group}.{net}."):
                out[k] = v
    return out


def _walk(obj, prefix):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{prefix}{k}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{prefix}{i}.")
    else:
        yield prefix, obj


@pytest.mark.parametrize("model", ["sngan", "dcgan"])
def test_resume_is_exact(tmp_path, fmnist_small, model):
    common = ("train.ckpt_every=3", "train.sample_every=3", "train.log_every=1", "data.limit=40")
    data = type(fmnist_small)(fmnist_small.images[:40], fmnist_small.labels[:40], "fashion-mnist")  # 5 batches/epoch
    full = tmp_path / "full"
    train(tiny_cfg("train.steps=6", *common, model=model), full, progress=False, data=data)
    part = tmp_path / "part"
    train(tiny_cfg("train.steps=3", *common, model=model), part, progress=False, data=data)
    train(tiny_cfg("train.steps=6", *common, model=model), part, resume=True, progress=False, data=data)
    a, b = ckpt_io.load(full / "checkpoints" / "latest.pt"), ckpt_io.load(part / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 6 and a["d_steps"] == b["d_steps"]
    fa, fb = _flat_state(a), _flat_state(b)
    assert fa.keys() == fb.keys() and len(fa) > 20
    for k in fa:
        if isinstance(fa[k], torch.Tensor):
            assert torch.equal(fa[k], fb[k]), k
        else:
            assert fa[k] == fb[k], k
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]) and a["sampler"] == b["sampler"]
    assert [r["step"] for r in _metrics(part)] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(_metrics(full), _metrics(part)):
        assert {k: v for k, v in ra.items() if k not in ("it_s", "img_s")} == {k: v for k, v in rb.items() if k not in ("it_s", "img_s")}


def test_checkpoint_is_weights_only_and_self_describing(tiny_run):
    path = tiny_run / "checkpoints" / "latest.pt"
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "gan_ssl.checkpoint" and raw["step"] == 4
    assert raw["config"]["aux"]["rotation"] == {"d_weight": 1.0, "g_weight": 0.2}
    assert set(raw["models"]) == {"G", "D", "G_ema", "aux"} and set(raw["optim"]) == {"G", "D"}
    assert sorted(p.name for p in (tiny_run / "checkpoints").glob("*.pt")) == ["latest.pt", "step_000002.pt", "step_000004.pt"]
    assert not list((tiny_run / "checkpoints").glob("*.tmp"))


def test_existing_run_needs_resume_and_matching_config(tiny_run, fmnist_small):
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_cfg(), tiny_run, progress=False, data=fmnist_small)
    with pytest.raises(ConfigError, match="model.g_width"):
        train(tiny_cfg("train.steps=8", "model.g_width=16"), tiny_run, resume=True, progress=False, data=fmnist_small)


def test_resume_without_checkpoint(tmp_path, fmnist_small):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(tiny_cfg(), tmp_path, resume=True, progress=False, data=fmnist_small)


def test_nan_stops_before_a_checkpoint(tmp_path, fmnist_small, monkeypatch):
    cfg = tiny_cfg("train.steps=2")
    train(cfg, tmp_path, progress=False, data=fmnist_small)
    good = ckpt_io.load(tmp_path / "checkpoints" / "latest.pt")
    nan_hinge = (lambda real, fake: (real.mean() + fake.mean()) * float("nan"), g_hinge)
    monkeypatch.setitem(objective.ADVERSARIAL, "hinge", nan_hinge)
    with pytest.raises(DivergenceError, match="d_adv.*NaN.*step 3.*latest.pt"):
        train(tiny_cfg("train.steps=4", "train.log_every=1"), tmp_path, resume=True, progress=False, data=fmnist_small)
    after = ckpt_io.load(tmp_path / "checkpoints" / "latest.pt")
    assert after["step"] == 2
    for k, v in _flat_state(after).items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            assert torch.isfinite(v).all(), k
    torch.testing.assert_close(_flat_state(after), _flat_state(good))


def test_interrupt_saves_a_checkpoint(tmp_path, fmnist_small, monkeypatch):
    from gan_ssl import train as train_mod

    real_step = train_mod.train_step
    calls = {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_step", step)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg("train.steps=10", "train.ckpt_every=0"), tmp_path, progress=False, data=fmnist_small)
    assert ckpt_io.load(tmp_path / "checkpoints" / "latest.pt")["step"] == 2
