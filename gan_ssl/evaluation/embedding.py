"""A picture of a representation: a 2-D t-SNE embedding of features, coloured by class (van der Maaten & Hinton
2008, scikit-learn's implementation: Barnes-Hut, PCA initialisation, PCA to 50 dimensions first as is usual).

Used by `gan-ssl features ... --plot PNG`. t-SNE keeps neighbourhoods, not distances between clusters: read it
for which classes separate and which mix, not for how far apart they are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan_ssl.core.errors import DataError

MAX_POINTS = 3000  # a seeded sample above this: Barnes-Hut t-SNE of 3,000 points takes about 10 s on 2 cores


def tsne_2d(features: torch.Tensor, seed: int = 0, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """features [N, F] -> (xy [n, 2], the rows of features embedded [n]); n = min(N, max_points), a seeded sample."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = features.float().numpy()
    if x.ndim != 2 or len(x) < 5:
        raise DataError(f"t-SNE needs at least 5 feature rows [N, F], got {tuple(x.shape)}")
    rows = np.sort(np.random.default_rng(seed).permutation(len(x))[:max_points])
    x = x[rows]
    with threadpool_limits(max(1, torch.get_num_threads())):
        if x.shape[1] > 50:
            x = PCA(n_components=50, random_state=seed).fit_transform(x)
        xy = TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(x) - 1) / 3), random_state=seed).fit_transform(x)
    return xy, rows


def plot_embedding(xy: np.ndarray, labels: np.ndarray, classes: list[str], path: str | Path | Any, title: str) -> str | Path | Any:
    """A scatter of xy [n, 2] coloured by labels [n] (-1: unlabelled, grey), a legend with the class names, as a PNG
    written to `path` (a file name, or a binary file object such as io.BytesIO)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(path, (str, Path)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    unl = labels < 0
    if unl.any():
        ax.scatter(xy[unl, 0], xy[unl, 1], s=4, c="lightgrey", label="unlabelled")
    for c in sorted(set(labels[~unl].tolist())):
        m = labels == c
        name = classes[c] if c < len(classes) else str(c)
        ax.scatter(xy[m, 0], xy[m, 1], s=4, color=cmap(c % cmap.N), label=name)
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    ax.legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path
