"""Linear probe: accuracy on easy and impossible data, seeded stratified subsets, validation hygiene,
feature-file checks and the trainer hook."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gan_ssl.cli import cli
from gan_ssl.data import ImageData
from gan_ssl.evaluation import features as fe
from gan_ssl.evaluation import monitors
from gan_ssl.evaluation import probe as pr


def _blobs(n: int, seed: int, classes: int = 10, dim: int = 32, sep: float = 8.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    means = torch.eye(classes, dim) * sep  # [classes, dim], far apart: linearly separable
    y = torch.arange(n) % classes
    return means[y] + torch.randn(n, dim, generator=g), y


def test_separable_features_reach_100_percent():
    x, y = _blobs(2000, 0)
    xt, yt = _blobs(500, 1)
    r = pr.run_probe(x, y, xt, yt, fractions=(0.1, 1.0), seeds=2)
    for f in ("0.1", "1"):
        assert r["fractions"][f]["mean"] >= 0.99


def test_random_labels_give_chance():
    g = torch.Generator().manual_seed(0)
    x, xt = torch.randn(2000, 32, generator=g), torch.randn(2000, 32, generator=g)
    y, yt = torch.randint(0, 10, (2000,), generator=g), torch.randint(0, 10, (2000,), generator=g)
    acc = pr.run_probe(x, y, xt, yt, fractions=(1.0,), seeds=1)["fractions"]["1"]["mean"]
    assert 0.06 < acc < 0.14


def test_warm_start_reaches_the_cold_optimum():
    # logistic regression is convex: starting from another L2 strength's weights must land on the same model
    x, y = _blobs(1500, 0, sep=1.5)  # overlapping classes, so the L2 strength matters
    X, Y = x.numpy(), y.numpy()
    cold = pr._fit(X, Y, 1e-4)
    warm = pr._fit(X, Y, 1e-4, init=pr._fit(X, Y, 1e-1))
    assert (cold.predict(X) == warm.predict(X)).mean() >= 0.99
    np.testing.assert_allclose(warm[-1].coef_, cold[-1].coef_, atol=0.05 * np.abs(cold[-1].coef_).max())
    assert warm[-1].n_iter_[0] < cold[-1].n_iter_[0]  # and it gets there in fewer lbfgs steps


def test_probe_walks_the_l2_grid_strong_to_weak_warm_started(monkeypatch):
    calls = []
    real_fit = pr._fit

    def spy(X, y, l2, init=None):
        calls.append((len(y), l2, init is not None))
        return real_fit(X, y, l2, init)

    monkeypatch.setattr(pr, "_fit", spy)
    x, y = _blobs(600, 0, sep=1.0)
    r = pr.probe_once(x.numpy(), y.numpy(), x.numpy(), y.numpy(), fraction=1.0, seed=0)
    grid = sorted(pr.L2_GRID, reverse=True)
    assert [c[1] for c in calls[:-1]] == grid  # every strength, strongest first
    assert [c[2] for c in calls] == [False] + [True] * len(grid)  # each later fit, and the refit, start warm
    assert calls[-1] == (600, r["l2"], True)  # the refit uses the whole labelled subset at the chosen strength
    calls.clear()
    pr.probe_once(x.numpy(), y.numpy(), x.numpy(), y.numpy(), fraction=1.0, seed=0, warm_start=False)
    assert not any(c[2] for c in calls)


def test_fits_run_side_by_side_on_one_thread_each_with_the_same_results(monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info

    seen = []  # (worker thread, BLAS/OpenMP threads inside lbfgs)
    real_fit = LogisticRegression.fit

    def spy(self, X, y, *a, **k):
        import threading

        seen.append((threading.get_ident(), max(i["num_threads"] for i in threadpool_info())))
        return real_fit(self, X, y, *a, **k)

    x, y = _blobs(800, 0, sep=1.5)
    xt, yt = _blobs(300, 1, sep=1.5)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = pr.run_probe(x, y, xt, yt, fractions=(0.1, 1.0), seeds=3)
        monkeypatch.setattr(LogisticRegression, "fit", spy)
        torch.set_num_threads(2)
        assert (pr._workers(4), pr._workers(1)) == (2, 1)  # torch's threads over one per fit, at most the jobs
        two = pr.run_probe(x, y, xt, yt, fractions=(0.1, 1.0), seeds=3)  # 6 fits: both workers get some
    finally:
        torch.set_num_threads(old)
    for f in ("0.1", "1"):  # the same fits in the same order: the same numbers, however many ran at once
        assert one["fractions"][f]["accs"] == two["fractions"][f]["accs"]
        assert one["fractions"][f]["l2"] == two["fractions"][f]["l2"]
    assert {n for _, n in seen} == {1}  # every fit on one BLAS/OpenMP thread
    assert len({t for t, _ in seen}) == 2  # two worker threads at torch's 2 threads


def test_stratified_subset_is_seeded_and_stratified():
    labels = np.repeat(np.arange(10), [100, 200, 100, 100, 100, 100, 100, 100, 100, 300])
    a = pr.stratified_subset(labels, 0.1, seed=0)
    assert np.array_equal(a, pr.stratified_subset(labels, 0.1, seed=0))
    assert not np.array_equal(a, pr.stratified_subset(labels, 0.1, seed=1))
    assert np.array_equal(np.bincount(labels[a]), [10, 20, 10, 10, 10, 10, 10, 10, 10, 30])
    assert len(np.unique(a)) == len(a) and np.all(np.diff(a) > 0)
    assert np.bincount(labels[pr.stratified_subset(labels, 0.001, seed=0)]).min() == 2  # >= 2 per class
    assert len(pr.stratified_subset(labels, 1.0, seed=3)) == len(labels)
    with pytest.raises(pr.ConfigError):
        pr.stratified_subset(labels, 0.0, seed=0)


def test_validation_split_is_carved_from_training_labels_only():
    x, y = _blobs(600, 0, sep=1.0)
    xt, yt = _blobs(300, 1, sep=1.0)
    X, Y = x.numpy(), y.numpy()
    r = pr.probe_once(X, Y, xt.numpy(), yt.numpy(), fraction=0.5, seed=0)
    fit, val, subset = r["fit"], r["val"], r["subset"]
    assert len(np.intersect1d(fit, val)) == 0 and np.array_equal(np.union1d(fit, val), subset)
    assert subset.max() < len(Y)  # indices into the training set
    assert np.array_equal(np.bincount(Y[val]), np.full(10, 6))  # 20% of 30 per class
    # the L2 choice cannot depend on test data: garbage test features and labels leave it unchanged
    noise = np.random.default_rng(0).normal(size=xt.shape).astype(np.float32) * 100
    r2 = pr.probe_once(X, Y, noise, np.zeros_like(yt.numpy()), fraction=0.5, seed=0)
    assert (r2["l2"], r2["val_acc"]) == (r["l2"], r["val_acc"])


def test_parse_fractions():
    assert pr.parse_fractions("0.01,0.1,1.0") == (0.01, 0.1, 1.0)
    for bad in ("0", "1.5", "a", ""):
        with pytest.raises(pr.ConfigError):
            pr.parse_fractions(bad)


def test_cli_defaults_match_module_defaults():
    opts = {p.name: p.default for p in cli.commands["probe"].params}
    assert pr.parse_fractions(opts["fractions"]) == pr.FRACTIONS and opts["seeds"] == pr.SEEDS
    assert opts["pool"] == fe.DEFAULT_POOL and opts["grid"] == fe.DEFAULT_GRID and opts["layers"] == fe.DEFAULT_LAYERS
    fopts = {p.name: p.default for p in cli.commands["features"].params}
    assert fopts["pool"] == fe.DEFAULT_POOL and fopts["batch_size"] == fe.DEFAULT_BATCH


def test_cli_probe_checkpoint_with_baselines(tiny_run):
    r = CliRunner().invoke(cli, ["probe", str(tiny_run), "--data", "fashion-mnist", "--limit", "200", "--seeds", "2",
                                 "--label-fraction", "0.1,1.0", "--baseline", "pixels", "--baseline", "random-d", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out["rows"]) == {"D", "pixels", "random D"} and out["n_train"] == 200 and out["n_test"] == 200
    for row in out["rows"].values():
        assert set(row["fractions"]) == {"0.1", "1"} and len(row["fractions"]["0.1"]["accs"]) == 2
        assert all(0.0 <= a <= 1.0 for a in row["fractions"]["1"]["accs"])
    assert out["rows"]["pixels"]["dim"] == 32 * 32 and out["rows"]["D"]["dim"] == 4 * 2 * 8
    table = pr.format_table(out)
    assert "random D" in table and "100% labels" in table


def _export(tiny_run, tmp_path, split: str, n: int):
    fs = fe.export(tiny_run, "fashion-mnist", split, limit=n, pool="avg")
    return fe.save_features(fs, tmp_path / f"{split}.pt"), fs


def test_cli_probe_feature_files_and_label_mismatch(tiny_run, tmp_path):
    train_p, fs = _export(tiny_run, tmp_path, "train", 120)
    test_p, _ = _export(tiny_run, tmp_path, "test", 60)
    ok = CliRunner().invoke(cli, ["probe", str(train_p), "--test-features", str(test_p), "--data", "fashion-mnist",
                                  "--label-fraction", "1.0", "--seeds", "1", "--json", "--quiet"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["rows"]["D"]["checkpoint_sha256"] == fs["checkpoint_sha256"]
    # labels that do not belong to the data: one clear line, exit code 2
    fs["labels"] = fs["labels"].roll(1)
    bad = fe.save_features(fs, tmp_path / "bad.pt")
    r = CliRunner().invoke(cli, ["probe", str(bad), "--test-features", str(test_p), "--data", "fashion-mnist"])
    assert r.exit_code == 2 and "does not match" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    # swapped splits are caught the same way
    r = CliRunner().invoke(cli, ["probe", str(test_p), "--test-features", str(train_p), "--data", "fashion-mnist"])
    assert r.exit_code == 2 and "does not match" in r.output
    # a feature file without --test-features says what to do
    r = CliRunner().invoke(cli, ["probe", str(train_p), "--data", "fashion-mnist"])
    assert r.exit_code == 2 and "--test-features" in r.output


def test_feature_file_rows_and_labels_disagree(tmp_path):
    fs = fe.make_feature_file(torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), ["x"], [3], "avg", 1, "pixels", "fashion-mnist", "train")
    fs["labels"] = torch.zeros(4, dtype=torch.long)
    p = fe.save_features(fs, tmp_path / "f.pt")
    with pytest.raises(pr.DataError, match="5 feature rows but 4 labels"):
        fe.load_features(p)


def test_probe_evaluator_restores_mode(tiny_run, fmnist_small):
    from conftest import tiny_cfg

    from gan_ssl import api

    cfg = tiny_cfg("eval.probe_n=60")
    bundle = api.load(tiny_run)
    D = bundle.representation().module
    D.train()
    ev = monitors.probe_evaluator(cfg, fmnist_small)
    out = ev(bundle)
    assert set(out) == {"probe_acc"} and 0.0 <= out["probe_acc"] <= 1.0
    assert D.training
    assert ev(bundle) == out  # fixed subsets


def test_probe_evaluator_without_labels_is_off(fmnist_small):
    from conftest import tiny_cfg

    unlabeled = ImageData(fmnist_small.images[:20], torch.full((20,), -1), "folder:x")
    assert monitors.probe_evaluator(tiny_cfg(), unlabeled)(SimpleNamespace()) == {}


def test_trainer_logs_probe_acc(tmp_path, fmnist_small):
    from conftest import tiny_cfg

    from gan_ssl.api import train

    cfg = tiny_cfg("eval.every=2", "eval.fid=false", "eval.probe_n=40", "train.steps=2")
    train(cfg, tmp_path / "run", progress=False, data=fmnist_small)
    evals = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"eval"' in ln]
    assert evals and "probe_acc" in evals[-1]["eval"]


def test_in_training_probe_leaves_the_run_unchanged(tmp_path, fmnist_small):
    """A run with the in-training probe (D in eval mode, features, a fit) every 2 steps ends with the same
    networks, optimizers and RNG as the run without it (what the demo's eval.every relies on)."""
    from conftest import tiny_cfg

    from gan_ssl.api import train
    from gan_ssl.engine import checkpoint as ckpt_io

    with_eval = tiny_cfg("eval.every=2", "eval.fid=false", "eval.probe_n=40", "train.steps=4")
    train(with_eval, tmp_path / "a", progress=False, data=fmnist_small)
    train(tiny_cfg("train.steps=4"), tmp_path / "b", progress=False, data=fmnist_small)
    a, b = ckpt_io.load(tmp_path / "a"), ckpt_io.load(tmp_path / "b")
    assert any("eval" in line for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines())
    for sec in ("nets", "emas"):
        for name in a[sec]:
            assert all(torch.equal(t, b[sec][name][k]) for k, t in a[sec][name].items()), (sec, name)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_knn_matches_a_hand_computation_on_a_toy_set():
    """Weighted kNN (Wu et al. 2018): cosine similarity to each labelled point, the k nearest vote with exp(sim / T)."""
    from gan_ssl.evaluation.knn import knn_predict

    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.2]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    test = torch.tensor([[0.8, 0.3], [0.2, 1.0], [-1.0, 0.0], [0.6, 0.4]])  # no ties in similarity
    T = 0.07

    def by_hand(q, k):
        sims = [float(torch.dot(q / q.norm(), t / t.norm())) for t in train]
        order = sorted(range(len(sims)), key=lambda i: -sims[i])[:k]
        votes = {}
        for i in order:
            votes[int(labels[i])] = votes.get(int(labels[i]), 0.0) + float(np.exp(sims[i] / T))
        return max(votes, key=votes.get)

    for k in (1, 2, 3, 5, 50):  # k above N is capped at N
        pred = knn_predict(train * 3.0, labels, test * 0.5, k=k, temperature=T, chunk=2)  # scale-free: L2-normalised
        assert pred.tolist() == [by_hand(q, k) for q in test], k


def test_cli_probe_knn_rows_on_the_same_labels(tiny_run):
    r = CliRunner().invoke(cli, ["probe", str(tiny_run), "--data", "fashion-mnist", "--limit", "200", "--seeds", "2",
                                 "--label-fraction", "0.1,1.0", "--baseline", "pixels", "--knn", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    for row in out["rows"].values():
        assert set(row["knn"]) == {"k20", "k200"}
        for k, cells in row["knn"].items():
            assert set(cells) == {"0.1", "1"} and len(cells["0.1"]["accs"]) == 2
            assert cells["0.1"]["n_labels"] == row["fractions"]["0.1"]["n_labels"]  # the linear probe's labels
            assert all(0.0 <= a <= 1.0 for a in cells["1"]["accs"])
    assert out["rows"]["pixels"]["knn"]["k20"]["1"]["mean"] > 0.5  # pixels kNN on Fashion-MNIST is far above chance
    assert "kNN 20" in pr.format_table(out) and "kNN 200" in pr.format_table(out)


def test_cli_probe_each_layer_gives_one_row_per_block(tiny_run):
    r = CliRunner().invoke(cli, ["probe", str(tiny_run), "--data", "fashion-mnist", "--limit", "120", "--seeds", "1",
                                 "--label-fraction", "1.0", "--layers", "each", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    rep = fe.load_representation(tiny_run)[0]
    per_layer = [name for name in out["rows"] if name != "D"]
    assert per_layer == [f"D {layer}" for layer in rep.layers]  # one row per block, in order
    assert sum(out["rows"][n]["dim"] for n in per_layer) == out["rows"]["D"]["dim"]  # the blocks together are the "D" row
    assert all(out["rows"][n]["layer"] == n.split(" ", 1)[1] for n in per_layer)
    assert all(f"D {layer}" in pr.format_table(out) for layer in rep.layers)


def test_features_plot_writes_a_tsne_picture_coloured_by_class(tiny_run, tmp_path):
    from PIL import Image

    from gan_ssl.evaluation.embedding import tsne_2d

    r = CliRunner().invoke(cli, ["features", str(tiny_run), "--data", "fashion-mnist", "--split", "test", "--limit", "150",
                                 "--out", str(tmp_path / "f.pt"), "--plot", str(tmp_path / "tsne.png"), "--quiet"])
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "tsne.png") as im:
        assert im.size[0] > 400 and im.size[1] > 400
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
    assert len(colours) > 10  # ten class colours and the legend, not a blank canvas
    feats = fe.load_features(tmp_path / "f.pt")["features"]
    xy, rows = tsne_2d(feats, seed=0, max_points=100)
    assert xy.shape == (100, 2) and len(set(rows.tolist())) == 100 and np.isfinite(xy).all()
    xy2, rows2 = tsne_2d(feats, seed=0, max_points=100)
    assert np.array_equal(rows, rows2) and np.allclose(xy, xy2)  # seeded


def test_transfer_a_fashion_mnist_d_to_digits(tiny_run):
    """A D trained on Fashion-MNIST probed on another dataset (scikit-learn's bundled digits, offline): the
    images are fitted to D's resolution, the split is fixed and stratified."""
    from gan_ssl.data import load_images

    train, test = load_images("digits", "train", 32, 1), load_images("digits", "test", 32, 1)
    assert len(train) + len(test) == 1797 and abs(len(test) - 1797 / 3) < 10
    assert tuple(train.images.shape[1:]) == (1, 32, 32) and set(test.labels.tolist()) == set(range(10))
    assert torch.equal(load_images("digits", "test", 32, 1).images, test.images)  # the same split every time
    r = CliRunner().invoke(cli, ["probe", str(tiny_run), "--data", "digits", "--seeds", "1", "--label-fraction", "1.0",
                                 "--baseline", "pixels", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["data"] == "digits" and out["rows"]["pixels"]["fractions"]["1"]["mean"] > 0.8  # digits are easy from pixels
