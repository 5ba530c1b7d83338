"""Fine-tuning with few labels (gan_ssl.evaluation.finetune) and `gan-ssl classify`, on a separable toy folder with the tiny run's D."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from gan_ssl.cli import cli
from gan_ssl.core.errors import CheckpointError
from gan_ssl.evaluation import finetune as ft


def _toy(root, per_class=40):
    """Two classes anyone can tell apart: dark and bright images with noise; train/ and test/ splits."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for c, level in (("dark", 40), ("bright", 200)):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(level + rng.normal(0, 25, (28, 28)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


def test_finetuning_learns_a_separable_task_and_scratch_sees_the_same_labels(tiny_run, tmp_path, monkeypatch):
    root = _toy(tmp_path / "toy")
    calls, recipes = [], []
    real_train = ft.train_classifier

    def recording(model, data, fit, val, seed, flip, max_steps=ft.MAX_STEPS, epochs=ft.EPOCHS, recipe="full"):
        calls.append((seed, tuple(fit.tolist()), tuple(val.tolist()), flip))
        recipes.append(recipe)
        return real_train(model, data, fit, val, seed, flip, max_steps, epochs, recipe=recipe)

    monkeypatch.setattr(ft, "train_classifier", recording)
    r = ft.finetune(tiny_run, f"folder:{root}", fractions=(0.5,), seeds=2, max_steps=60, save=tmp_path / "clf.pt")
    assert set(r["rows"]) == {"finetuned D", "scratch D"}
    assert r["rows"]["finetuned D"]["fractions"]["0.5"]["mean"] >= 0.95  # separable: fine-tuning learns it
    assert r["rows"]["scratch D"]["fractions"]["0.5"]["n_labels"] == r["rows"]["finetuned D"]["fractions"]["0.5"]["n_labels"] == 40
    # per seed, the scratch run trained on exactly the finetuned run's labelled rows and validation rows
    assert len(calls) == 4 and calls[0] == calls[1] and calls[2] == calls[3] and calls[0] != calls[2]
    assert all(flip for *_, flip in calls)  # a folder of photos-like images: flips on
    assert recipes == ["lp-ft", "full", "lp-ft", "full"]  # the trained D from its probe, scratch with the full recipe
    assert "finetuned D" in ft.format_table(r) and r["saved"] == str(tmp_path / "clf.pt")

    out = tmp_path / "labels.json"
    res = CliRunner().invoke(cli, ["classify", str(tmp_path / "clf.pt"), "--input", str(root / "test" / "bright"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    labels = json.loads(out.read_text())["classes"]
    assert len(labels) == 20 and labels.count("bright") >= 19


def test_augmentation_crops_with_background_and_flips_only_when_asked():
    x = torch.linspace(-1, 1, 8).view(1, 1, 1, 8).expand(4, 1, 8, 8).contiguous()
    g = torch.Generator().manual_seed(0)
    out = ft.augment(x, flip=False, g=g)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, x)  # shifted somewhere
    rows = out[:, 0, 4]  # a middle row: increasing where not padded, never reversed without flips
    assert all((r[1:] - r[:-1] >= -1e-6).all() or (r == -1).any() for r in rows)
    flipped = ft.augment(x, flip=True, g=torch.Generator().manual_seed(3))
    assert any(bool((r[1:] - r[:-1] < -1e-6).any()) for r in flipped[:, 0, 4])  # some rows mirrored


def test_a_foreign_classifier_file_is_one_line(tmp_path):
    torch.save({"format": "something else"}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a gan_ssl classifier"):
        ft.load_classifier(tmp_path / "x.pt")
    r = CliRunner().invoke(cli, ["classify", str(tmp_path / "x.pt"), "--input", "fashion-mnist:test", "--limit", "4"])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1


def test_augmentation_crops_are_the_padded_image_shifted_per_sample():
    """The batched crop equals cropping each padded image at its own offset (the same draws)."""
    x = torch.rand(5, 2, 8, 8) * 2 - 1
    out = ft.augment(x, flip=False, g=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    dy, dx = torch.randint(0, 3, (5,), generator=g), torch.randint(0, 3, (5,), generator=g)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=-1.0)
    for i in range(5):
        assert torch.equal(out[i], padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8])


@pytest.mark.parametrize("spec, flips", [("digits", False), ("fashion-mnist", True)])
def test_handwritten_digits_are_never_flipped(tiny_run, monkeypatch, spec, flips):
    """A mirrored 2 or 7 is not a digit of its class: MNIST and scikit-learn's digits train without flips."""
    seen = []

    def recording(model, data, fit, val, seed, flip, max_steps=ft.MAX_STEPS, epochs=ft.EPOCHS, recipe="full"):
        seen.append(flip)
        raise StopIteration  # the flag is all this test needs

    monkeypatch.setattr(ft, "train_classifier", recording)
    with pytest.raises(StopIteration):
        ft.finetune(tiny_run, spec, fractions=(0.1,), seeds=1, max_steps=1, limit=200)
    assert seen == [flips]


def test_lp_ft_starts_from_the_linear_probe_and_keeps_batchnorm_statistics(tiny_run, tmp_path):
    """lp-ft: the classifier is the probe's pipeline (its standardisation as a fixed layer, its logistic regression as
    the head: the same predictions as scikit-learn's), epoch 0 is that probe, fine-tuning leaves BatchNorm's running
    statistics alone, and a saved classifier keeps the standardisation."""
    from gan_ssl.evaluation import features as fe
    from gan_ssl.evaluation.probe import L2_GRID, _fit

    root = _toy(tmp_path / "toy", per_class=30)
    rep, cfg, _ = fe.load_representation(tiny_run)
    data = fe.load_data(cfg, f"folder:{root}", "train")
    torch.manual_seed(0)
    model = ft._classifier(rep, data, None)
    y = data.labels.numpy()
    fit, val = np.arange(0, 60, 2), np.arange(1, 60, 2)
    info = ft.linear_probe_head(model, data, fit, val)
    assert info["probe_l2"] in L2_GRID
    model.eval()
    with torch.no_grad():
        X = model.embed(data.batch(torch.arange(60)))
        ours = model(data.batch(torch.arange(60))).argmax(1).numpy()
    sk = _fit(X[fit].numpy(), y[fit], info["probe_l2"])
    assert (ours == sk.predict(X.numpy())).mean() >= 0.98  # float32 head vs float64 pipeline: ties may differ

    stats = {n: b.clone() for n, b in model.named_buffers() if "running" in n}
    model2 = ft._classifier(fe.load_representation(tiny_run)[0], data, None)
    r = ft.train_classifier(model2, data, fit, val, seed=0, flip=False, epochs=0, recipe="lp-ft")
    assert r["best_epoch"] == 0 and r["val_acc"] == r["start_val_acc"]  # no epochs: the probe itself
    r = ft.train_classifier(model2, data, fit, val, seed=0, flip=False, max_steps=4, epochs=2, recipe="lp-ft")
    assert r["val_acc"] >= r["start_val_acc"] and r["steps"] >= 1
    for n, b in model2.named_buffers():
        if "running" in n:
            torch.testing.assert_close(b, stats[n])  # eval-mode BatchNorm: statistics untouched by fine-tuning
    ft.save_classifier(model2, cfg, rep.name, data.classes, f"folder:{root}", {}, tmp_path / "clf.pt")
    loaded, _ = ft.load_classifier(tmp_path / "clf.pt")
    assert not torch.equal(loaded.scale, torch.ones_like(loaded.scale))
    with torch.no_grad():
        torch.testing.assert_close(loaded(data.batch(torch.arange(8))), model2.eval()(data.batch(torch.arange(8))))


def test_an_unknown_recipe_is_a_config_error(tiny_run):
    from gan_ssl.core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown fine-tuning recipe"):
        ft.finetune(tiny_run, "fashion-mnist", fractions=(0.1,), seeds=1, recipe="linear")
