"""Weighted k-nearest-neighbour classification of frozen features: the kNN monitor of SSL papers.

Wu et al. 2018 ("Unsupervised Feature Learning via Non-Parametric Instance Discrimination", sec. 3.4), as
solo-learn and others use it: features are L2-normalised, similarity is the cosine, the k most similar labelled
images vote for their class with weight exp(similarity / T), T = 0.07, and the class with the largest summed
weight wins. No training and no hyper-parameter chosen on the test set, so it complements the linear probe.

A leaf module: the labelled subsets come from the caller (the linear probe's, so both protocols see the same labels).
"""
from __future__ import annotations

import numpy as np
import torch

KS = (20, 200)  # the neighbourhood sizes solo-learn reports
TEMPERATURE = 0.07  # Wu et al.'s


def knn_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, k: int = 20,
                temperature: float = TEMPERATURE, n_classes: int | None = None, chunk: int | None = None) -> torch.Tensor:
    """Predicted labels [M] of test_x [M, F] from labelled train_x [N, F] / train_y [N] (int, >= 0).

    Batched matrix products over chunks of test rows (default: about 2**24 similarities, 64 MB, per chunk);
    k is capped at N."""
    train = torch.nn.functional.normalize(train_x.float(), dim=1)
    test = torch.nn.functional.normalize(test_x.float(), dim=1)
    labels = train_y.long()
    classes = int(n_classes if n_classes is not None else labels.max() + 1)
    k = min(k, train.shape[0])
    chunk = chunk or max(1, 2**24 // max(1, train.shape[0]))
    preds = []
    for start in range(0, test.shape[0], chunk):
        sim = test[start : start + chunk] @ train.T  # [m, N] cosine similarities
        top, idx = sim.topk(k, dim=1)  # [m, k]
        votes = torch.zeros(sim.shape[0], classes).scatter_add_(1, labels[idx], (top / temperature).exp())
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def run_knn(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
            subsets: dict[str, list[np.ndarray]], ks: tuple[int, ...] = KS, temperature: float = TEMPERATURE) -> dict[str, dict]:
    """kNN test accuracy per k and label fraction. subsets: {fraction key: [labelled row indices per seed]}.

    Returns {"k20": {"0.01": {"mean", "std", "accs", "n_labels"}, ...}, "k200": {...}}."""
    classes = int(max(train_y.max(), test_y.max()) + 1)
    out: dict[str, dict] = {}
    for k in ks:
        cells = {}
        for key, runs in subsets.items():
            accs = []
            for rows in runs:
                idx = torch.as_tensor(rows, dtype=torch.long)
                pred = knn_predict(train_x[idx], train_y[idx], test_x, k, temperature, classes)
                accs.append(float((pred == test_y.long()).float().mean()))
            cells[key] = {"mean": float(np.mean(accs)), "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                          "accs": accs, "n_labels": int(len(runs[0]))}
        out[f"k{k}"] = cells
    return out
