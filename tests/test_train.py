"""The one loop on real Fashion-MNIST slices: learning signal, phases, exact resume (also after SIGINT),
checkpoints by name and their v1 migration, divergence, budgets, spectral-norm caching."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import toy_family  # noqa: F401  (registers the test-toy family)
from conftest import tiny_cfg

from gan_ssl import api
from gan_ssl.api import train
from gan_ssl.core.errors import CheckpointError, ConfigError, DivergenceError
from gan_ssl.data import ImageData
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.engine import loop
from gan_ssl.engine.loop import run_phase, train_step
from gan_ssl.engine.state import build_state, lr_scale, run_progress
from gan_ssl.families import gan as gan_family
from gan_ssl.families.resolve import resolve
from gan_ssl.nn.losses import g_hinge


def _metrics(run):
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


def _small(data, n):
    return ImageData(data.images[:n], data.labels[:n], "fashion-mnist", data.classes)


def _walk(obj, prefix):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{prefix}{k}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{prefix}{i}.")
    else:
        yield prefix, obj


def _flat_state(ck):
    return {k: v for group in ("nets", "emas", "optims", "buffers") for k, v in _walk(ck[group], f"{group}.")}


def assert_same_run(a_dir, b_dir):
    """Bit-identical networks, EMAs, optimizer states, counters, RNG and data order."""
    a, b = ckpt_io.load(a_dir / "checkpoints" / "latest.pt"), ckpt_io.load(b_dir / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] and a["counters"] == b["counters"] and a["images"] == b["images"]
    fa, fb = _flat_state(a), _flat_state(b)
    assert fa.keys() == fb.keys() and len(fa) > 20
    for k in fa:
        if isinstance(fa[k], torch.Tensor):
            assert torch.equal(fa[k], fb[k]), k
        else:
            assert fa[k] == fb[k], k
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]) and a["data"] == b["data"]


@pytest.mark.parametrize("model", ["sngan", "dcgan"])
def test_short_run_moves_d_loss(tmp_path, fmnist_small, model):
    cfg = tiny_cfg("train.steps=30", "train.log_every=5", "train.sample_every=0", "train.ckpt_every=0", model=model)
    last = train(cfg, tmp_path, progress=False, data=fmnist_small)
    rows = _metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(5, 35, 5))
    first, final = rows[0], rows[-1]
    assert abs(final["d_adv"] - first["d_adv"]) > 0.1, (first, final)
    assert all(k in final for k in ("d_loss", "g_loss", "rot_d", "rot_g", "rot_acc_fake", "it_s", "img_s", "minutes"))
    assert last == tmp_path / "checkpoints" / "latest.pt" and last.is_file()
    assert (tmp_path / "samples" / "step_000030.png").is_file()


@pytest.mark.parametrize("model", ["sngan", "dcgan"])
def test_resume_is_exact(tmp_path, fmnist_small, model):
    common = ("train.ckpt_every=3", "train.sample_every=3", "train.log_every=1", "data.limit=40", "aux.rotation.protocol=one")
    data = _small(fmnist_small, 40)  # 5 batches per epoch: resumes cross epoch boundaries
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_cfg("train.steps=6", *common, model=model), full, progress=False, data=data)
    train(tiny_cfg("train.steps=3", *common, model=model), part, progress=False, data=data)
    train(tiny_cfg("train.steps=6", *common, model=model), part, resume=True, progress=False, data=data)
    assert_same_run(full, part)
    assert [r["step"] for r in _metrics(part)] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(_metrics(full), _metrics(part)):
        drop = ("it_s", "img_s", "minutes")
        assert {k: v for k, v in ra.items() if k not in drop} == {k: v for k, v in rb.items() if k not in drop}


def test_n_dis_runs_d_phase_repeatedly(tmp_path, fmnist_small):
    train(tiny_cfg("train.steps=3", "train.n_dis=3", "loss.r1_gamma=1.0", "loss.r1_every=2"), tmp_path, progress=False, data=fmnist_small)
    ck = ckpt_io.load(tmp_path / "checkpoints" / "latest.pt")
    assert ck["counters"] == {"D": 9, "Dreg": 2, "G": 3}  # R1 at steps 0 and 2
    assert ck["images"] == (9 + 2) * 8 and ck["optims"]["D"]["state"][0]["step"] == 11
    assert "dreg_loss" in _metrics(tmp_path)[0] and "r1" in _metrics(tmp_path)[0]


def test_g_phase_leaves_d_and_aux_unchanged(fmnist_small):
    st = build_state(tiny_cfg(), fmnist_small)
    fam = st.family
    run_phase(st, fam.phases[0], 8)  # one D step so that D's optimizer has state
    before = {n: [p.detach().clone() for p in fam.nets[n].parameters()] for n in ("D", "aux")}
    opt_before = [s["exp_avg"].clone() for s in fam.optimizers["D"].state.values()]
    g_before = [p.detach().clone() for p in fam.G.parameters()]
    g_phase = next(p for p in fam.phases if p.name == "G")
    run_phase(st, g_phase, 8)
    for n, ps in before.items():
        for p, q in zip(fam.nets[n].parameters(), ps):
            assert torch.equal(p, q) and p.grad is None, n
    assert all(torch.equal(a["exp_avg"], b) for a, b in zip(fam.optimizers["D"].state.values(), opt_before))
    assert any(not torch.equal(p, q) for p, q in zip(fam.G.parameters(), g_before))


def test_one_power_iteration_per_phase(fmnist_small, monkeypatch):
    """D sees reals (with rotations) and fakes in one D phase: spectral norm must run once, one sigma for both."""
    from torch.nn.utils import parametrizations

    calls = {"n": 0}
    real_power = parametrizations._SpectralNorm._power_method

    def counting(self, *a, **k):
        calls["n"] += 1
        return real_power(self, *a, **k)

    monkeypatch.setattr(parametrizations._SpectralNorm, "_power_method", counting)
    st = build_state(tiny_cfg(), fmnist_small)
    n_sn = sum(1 for m in list(st.family.D.modules()) + list(st.family.aux.modules()) if hasattr(m, "parametrizations"))
    calls["n"] = 0
    run_phase(st, st.family.phases[0], 8)  # D phase: D runs on reals + rotations, then on fakes
    assert calls["n"] == n_sn


def test_toy_family_phases_schedule_and_inputs(tmp_path, fmnist_small):
    """A non-GAN family with other net names, intervals, repeats, a batch-size schedule and seeded inputs."""
    cfg = resolve(None, ["family=test-toy", "train.steps=6", "train.batch_size=4", "train.log_every=1", "train.sample_every=3",
                         "train.ckpt_every=3", "train.sample_grid=4", "data.limit=64"])
    st = build_state(cfg, _small(fmnist_small, 64))
    for _ in range(6):
        train_step(st)
    fam = st.family
    assert st.counters == {"fit": 12, "shrink": 3, "grow": 2}
    assert [s for s in fam.seen if s[0] != "fit"] == [("shrink", 0, 0), ("grow", 0, 4), ("shrink", 2, 0), ("grow", 3, 4), ("shrink", 4, 0)]
    assert {s[2] for s in fam.seen if s[0] == "fit" and s[1] < 4} == {4} and {s[2] for s in fam.seen if s[0] == "fit" and s[1] >= 4} == {6}
    assert st.images == 4 * 8 + 6 * 4 + 4 * 2
    # the same run through train(), split by a resume, is bit-identical, masks included
    full, part = tmp_path / "full", tmp_path / "part"
    train(cfg, full, progress=False, data=_small(fmnist_small, 64))
    train(resolve(cfg.to_dict(), ["train.steps=3"]), part, progress=False, data=_small(fmnist_small, 64))
    train(cfg, part, resume=True, progress=False, data=_small(fmnist_small, 64))
    assert_same_run(full, part)
    assert (part / "samples" / "step_000006.png").is_file()
    assert api.info(part / "checkpoints" / "latest.pt")["counters"] == {"fit": 12, "shrink": 3, "grow": 2}


def test_checkpoint_is_weights_only_and_keyed_by_name(tiny_run):
    path = tiny_run / "checkpoints" / "latest.pt"
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "gan_ssl.checkpoint" and raw["version"] == 2 and raw["step"] == 4 and raw["family"] == "gan"
    assert raw["config"]["aux"]["rotation"]["d_weight"] == 1.0 and raw["config"]["aux"]["rotation"]["g_weight"] == 0.2
    assert set(raw["nets"]) == {"G", "D", "aux"} and set(raw["emas"]) == {"G_ema"} and set(raw["optims"]) == {"G", "D"}
    assert raw["counters"] == {"D": 4, "G": 4} and set(raw["buffers"]) == {"fixed_z"}
    assert sorted(p.name for p in (tiny_run / "checkpoints").glob("*.pt")) == ["latest.pt", "step_000002.pt", "step_000004.pt"]
    assert not list((tiny_run / "checkpoints").glob("*.tmp"))


def _to_v1(ck):
    """The version-1 layout gan_ssl 0.1 wrote (flat model section, G/D/G_ema/aux models)."""
    cfg = json.loads(json.dumps(ck["config"]))
    cfg.pop("family")
    cfg["model"] = {"name": "sngan", "z_dim": 16, "g_width": 8, "d_width": 8, "self_modulation": True, "spectral_norm": False}
    cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in ("minutes", "ema_ramp")}
    cfg["data"] = {k: v for k, v in cfg["data"].items() if k not in ("storage", "max_memory_gb", "workers")}
    cfg["aux"]["rotation"].pop("protocol")
    return {"format": "gan_ssl.checkpoint", "version": 1, "config": cfg, "step": ck["step"], "d_steps": ck["counters"]["D"],
            "models": {"G": ck["nets"]["G"], "D": ck["nets"]["D"], "G_ema": ck["emas"]["G_ema"], "aux": ck["nets"]["aux"]},
            "optim": ck["optims"], "scaler": {}, "sampler": {"epoch": ck["data"]["epoch"], "pos": ck["data"]["pos"]},
            "rng": ck["rng"], "fixed_z": ck["buffers"]["fixed_z"], "best": {}, "meta": {"torch": "2.14.1"}}


def test_version_1_checkpoints_load_and_resume(tiny_run, tmp_path, fmnist_small):
    v2 = ckpt_io.load(tiny_run / "checkpoints" / "latest.pt")
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    torch.save(_to_v1(v2), old / "checkpoints" / "latest.pt")
    migrated = ckpt_io.load(old)
    assert migrated["version"] == 2 and migrated["meta"]["migrated_from"] == 1 and migrated["config"]["train"]["ema_ramp"] == "none"
    assert torch.equal(api.sample(old, 6, seed=3), api.sample(tiny_run, 6, seed=3))
    info = api.info(old)
    assert info["migrated_from"] == 1 and info["counters"] == {"D": 4, "G": 4} and info["model"] == "sngan"
    rep = api.load(old).representation()
    assert rep.name == "D" and rep.layers == ["block1", "block2", "block3", "block4"]
    cfg = resolve(migrated["config"], ["train.steps=5"])  # a v1 run resumes under its own (migrated) config
    train(cfg, old, resume=True, progress=False, data=fmnist_small)
    assert ckpt_io.load(old)["step"] == 5


def test_existing_run_needs_resume_and_matching_config(tiny_run, fmnist_small):
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_cfg(), tiny_run, progress=False, data=fmnist_small)
    with pytest.raises(ConfigError, match="model.g_width"):
        train(tiny_cfg("train.steps=8", "model.g_width=16"), tiny_run, resume=True, progress=False, data=fmnist_small)


def test_resume_without_checkpoint(tmp_path, fmnist_small):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(tiny_cfg(), tmp_path, resume=True, progress=False, data=fmnist_small)


def test_nan_stops_before_a_checkpoint(tmp_path, fmnist_small, monkeypatch):
    train(tiny_cfg("train.steps=2"), tmp_path, progress=False, data=fmnist_small)
    good = ckpt_io.load(tmp_path / "checkpoints" / "latest.pt")
    nan_hinge = (lambda real, fake: (real.mean() + fake.mean()) * float("nan"), g_hinge)
    monkeypatch.setitem(gan_family.ADVERSARIAL, "hinge", nan_hinge)
    with pytest.raises(DivergenceError, match="d_adv.*NaN.*step 3.*latest.pt"):
        train(tiny_cfg("train.steps=4", "train.log_every=1"), tmp_path, resume=True, progress=False, data=fmnist_small)
    after = ckpt_io.load(tmp_path / "checkpoints" / "latest.pt")
    assert after["step"] == 2
    for k, v in _flat_state(after).items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            assert torch.isfinite(v).all(), k
    torch.testing.assert_close(_flat_state(after), _flat_state(good))
    assert not (tmp_path / "samples" / "step_000003.png").exists()


def test_sigint_in_the_middle_of_a_step_resumes_exactly(tmp_path, fmnist_small, monkeypatch):
    """SIGINT arriving inside the D optimizer step of step 3 (after opt_d.step, before the G phase): the step
    completes, a checkpoint is written at its end, and resuming gives the uninterrupted run's bits."""
    common = ("train.steps=6", "train.ckpt_every=0", "train.sample_every=0", "train.log_every=1")
    data = _small(fmnist_small, 64)
    train(tiny_cfg(*common), tmp_path / "full", progress=False, data=data)
    calls = {"n": 0}
    real_step = torch.optim.Adam.step

    def step(self, *a, **k):
        out = real_step(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 5:  # D and G alternate: call 5 is the D step of loop step 3
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(*common), tmp_path / "part", progress=False, data=data)
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    ck = ckpt_io.load(tmp_path / "part")
    assert ck["step"] == 3 and ck["counters"] == {"D": 3, "G": 3}  # saved at the step boundary, never mid-step
    train(tiny_cfg(*common), tmp_path / "part", resume=True, progress=False, data=data)
    assert_same_run(tmp_path / "full", tmp_path / "part")


def test_sigint_at_random_moments_then_resume_is_bit_identical(tmp_path):
    """The real CLI under real signals: SIGINT at random times, --resume until done, equals one uninterrupted run."""
    args = ["--set", "data.limit=64", "--set", "model.g_width=8", "--set", "model.d_width=8", "--set", "model.z_dim=16",
            "--set", "train.batch_size=8", "--set", "train.steps=60", "--set", "train.ckpt_every=0", "--set", "train.sample_every=0",
            "--set", "train.log_every=5", "--set", "train.threads=1", "--quiet"]
    cmd = [sys.executable, "-m", "gan_ssl", "train", "configs/ssgan_fmnist.yaml"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([*cmd, "--out", str(tmp_path / "full"), *args], check=True, capture_output=True, env=env)
    rng, part, steps = random.Random(1), tmp_path / "part", []
    metrics = part / "metrics.jsonl"
    for attempt in range(4):
        resume = ["--resume"] if (part / "checkpoints" / "latest.pt").is_file() else []
        lines = len(metrics.read_text().splitlines()) if resume else 0
        p = subprocess.Popen([*cmd, "--out", str(part), *args, *resume], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:  # wait until this session has trained a few steps
            if metrics.is_file() and len(metrics.read_text().splitlines()) > lines:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))  # then a random moment inside some step
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        if p.returncode == 0:
            break
        assert p.returncode == 130 and "Traceback" not in err, err
        steps.append(ckpt_io.load(part)["step"])
    subprocess.run([*cmd, "--out", str(part), *args, "--resume"], capture_output=True, env=env)
    assert len(steps) >= 2 and steps == sorted(steps) and 0 < steps[0] < 60, steps
    assert_same_run(tmp_path / "full", part)


def test_minutes_budget_stops_and_resumes(tmp_path, fmnist_small):
    cfg = tiny_cfg("train.steps=100000", "train.minutes=0.002", "train.ckpt_every=0")
    train(cfg, tmp_path, progress=False, data=fmnist_small)
    ck = ckpt_io.load(tmp_path)
    assert 0 < ck["step"] < 100000 and ck["elapsed"] >= 0.12
    assert (tmp_path / "samples" / f"step_{ck['step']:06d}.png").is_file()
    more = (ck["elapsed"] + 0.2) / 60  # a larger budget on resume continues the same run (even if a slow first step overshot)
    train(tiny_cfg("train.steps=100000", f"train.minutes={more}", "train.ckpt_every=0"), tmp_path, resume=True, progress=False, data=fmnist_small)
    ck2 = ckpt_io.load(tmp_path)
    assert ck2["step"] > ck["step"] and ck2["elapsed"] >= more * 60


def test_lr_scale_and_run_progress():
    t = tiny_cfg("train.steps=100").train
    assert [lr_scale(t, p) for p in (0.0, 0.5, 1.0)] == [1.0, 1.0, 1.0]  # lr_decay none
    t = tiny_cfg("train.steps=100", "train.lr_decay=linear").train
    assert [lr_scale(t, p) for p in (0.0, 0.25, 0.99, 1.0)] == pytest.approx([1.0, 0.75, 0.01, 0.0])
    t = tiny_cfg("train.steps=100", "train.lr_decay=linear", "train.lr_decay_start=0.5").train
    assert [lr_scale(t, p) for p in (0.2, 0.5, 0.75, 1.0)] == pytest.approx([1.0, 1.0, 0.5, 0.0])
    assert run_progress(t, 25, 1e6) == 0.25  # no minutes budget: steps alone
    t = tiny_cfg("train.steps=1000000", "train.minutes=2").train
    assert run_progress(t, 25, 30.0) == 0.25 and run_progress(t, 25, 500.0) == 1.0  # the budget ends the run first


def test_linear_lr_decay_reaches_every_optimizer_and_resumes_exactly(tmp_path, fmnist_small, monkeypatch):
    common = ("train.ckpt_every=3", "train.sample_every=0", "train.log_every=1", "train.lr_decay=linear",
              "train.lr_g=1e-3", "train.lr_d=4e-3", "aux.rotation.every=2")  # a lazy phase: D's lr is corrected first
    data = _small(fmnist_small, 40)
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_cfg("train.steps=6", *common), full, progress=False, data=data)
    real_step, calls = loop.train_step, {"n": 0}

    def step(*a, **k):  # Ctrl-C after loop step 3: the same 6-step schedule, stopped and resumed
        real_step(*a, **k)
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(loop, "train_step", step)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg("train.steps=6", *common), part, progress=False, data=data)
    monkeypatch.setattr(loop, "train_step", real_step)
    assert ckpt_io.load(part)["step"] == 3
    train(tiny_cfg("train.steps=6", *common), part, resume=True, progress=False, data=data)
    assert_same_run(full, part)
    assert [r["lr_scale"] for r in _metrics(full)] == pytest.approx([1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])  # step 0 at the full lr
    ck = ckpt_io.load(full / "checkpoints" / "latest.pt")
    groups = {name: opt["param_groups"] for name, opt in ck["optims"].items()}
    assert groups.keys() >= {"G", "D"}
    for name, gs in groups.items():
        for g in gs:  # the last step (5 of 6) ran at 1/6 of each group's base rate
            assert g["lr"] == pytest.approx(g["base_lr"] / 6), name
    # the lazy correction's rates (x 2/3 for a phase every 2nd step) are the base, not the config's
    assert groups["G"][0]["base_lr"] == pytest.approx(1e-3 * 2 / 3) and groups["D"][0]["base_lr"] == pytest.approx(4e-3 * 2 / 3)


def test_precision_resolution(monkeypatch):
    from gan_ssl.core import device as train_mod

    cpu = torch.device("cpu")
    monkeypatch.setattr(train_mod, "native_bf16_cpu", lambda: True)
    assert train_mod.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(train_mod, "native_bf16_cpu", lambda: False)
    assert train_mod.resolve_precision("auto", cpu) == "fp32"  # no native bf16: emulated bf16 is not assumed to win
    assert train_mod.resolve_precision("bf16", cpu) == "bf16" and train_mod.resolve_precision("fp32", cpu) == "fp32"
    assert train_mod.resolve_precision("fp16", cpu) == "fp16"


def test_fp16_scales_the_loss_keeps_fp32_weights_and_resumes_exactly(tmp_path, fmnist_small):
    """fp16 autocast with a GradScaler (here on the CPU): the scaler's state is checkpointed, weights stay fp32,
    and 2 + 2 steps equal 4."""
    cfg = lambda steps: tiny_cfg("train.precision=fp16", f"train.steps={steps}")  # noqa: E731
    train(cfg(4), tmp_path / "straight", progress=False, data=fmnist_small)
    train(cfg(2), tmp_path / "resumed", progress=False, data=fmnist_small)
    train(cfg(4), tmp_path / "resumed", resume=True, progress=False, data=fmnist_small)
    a, b = ckpt_io.load(tmp_path / "straight"), ckpt_io.load(tmp_path / "resumed")
    assert a["meta"]["precision"] == "fp16" and a["scaler"]["scale"] > 0 and a["scaler"] == b["scaler"]
    fa, fb = _flat_state(a), _flat_state(b)
    assert all(v.dtype == torch.float32 for v in fa.values() if isinstance(v, torch.Tensor) and v.is_floating_point())
    assert all(torch.equal(fa[k], fb[k]) for k in fa if isinstance(fa[k], torch.Tensor))


def test_bf16_run_records_its_precision_and_keeps_fp32_weights(tmp_path, fmnist_small):
    train(tiny_cfg("train.precision=bf16", "train.steps=2"), tmp_path, progress=False, data=fmnist_small)
    ck = ckpt_io.load(tmp_path)
    assert ck["meta"]["precision"] == "bf16"
    assert all(v.dtype == torch.float32 for k, v in _flat_state(ck).items() if isinstance(v, torch.Tensor) and v.is_floating_point())


def test_v1_amp_becomes_precision():
    from gan_ssl.engine.checkpoint import migrate_v1_config

    assert migrate_v1_config({"train": {"amp": True, "device": "cpu"}})["train"]["precision"] == "bf16"
    assert migrate_v1_config({"train": {"amp": True, "device": "cuda:0"}})["train"]["precision"] == "fp16"
    assert migrate_v1_config({"train": {"amp": False}})["train"] == {"ema_ramp": "none", "precision": "fp32"}
