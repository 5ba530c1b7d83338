"""Adversarial losses against their formulas, and R1 (with its lazy scaling) against autograd."""
import contextlib

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_cfg
from gan_ssl.families import FAMILIES, StepContext
from gan_ssl.losses import d_hinge, d_nonsaturating, g_hinge, g_nonsaturating, r1_penalty


def test_nonsaturating_and_hinge_match_their_formulas():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 0.2, 1.0])
    sig = torch.sigmoid
    assert d_nonsaturating(real, fake).item() == pytest.approx((-torch.log(sig(real)) - torch.log(1 - sig(fake))).mean().item(), rel=1e-6)
    assert g_nonsaturating(fake).item() == pytest.approx(-torch.log(sig(fake)).mean().item(), rel=1e-6)
    assert d_hinge(real, fake).item() == pytest.approx((F.relu(1 - real).mean() + F.relu(1 + fake).mean()).item())
    assert g_hinge(fake).item() == pytest.approx(-fake.mean().item())
    big = torch.tensor([200.0])  # softplus keeps the non-saturating loss finite where log(sigmoid) underflows
    assert torch.isfinite(d_nonsaturating(-big, big)) and torch.isfinite(g_nonsaturating(-big))


def test_r1_matches_autograd_on_a_tiny_d():
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 1))
    x = torch.randn(5, 1, 6, 6, requires_grad=True)
    penalty = r1_penalty(D(x).squeeze(1), x)
    by_hand = torch.stack([torch.autograd.grad(D(x[i : i + 1]).sum(), x)[0][i].square().sum() for i in range(5)]).mean()
    torch.testing.assert_close(penalty, by_hand)
    penalty.backward()  # differentiable (create_graph): R1 trains D
    assert D[0].weight.grad.abs().sum() > 0 and D[3].weight.grad.abs().sum() > 0


def test_lazy_r1_phase_is_scaled_by_the_d_steps_it_stands_for():
    torch.manual_seed(0)
    cfg = tiny_cfg("loss.r1_gamma=0.5", "loss.r1_every=4", "train.n_dis=2", "train.channels_last=false")
    fam = FAMILIES["gan"](cfg, "cpu", training=True)
    phase = next(p for p in fam.phases if p.name == "Dreg")
    assert phase.every == 4
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    ctx = StepContext(torch.device("cpu"), contextlib.nullcontext, lambda loss: loss.backward())
    fam.D.eval()  # fixed spectral-norm vectors: the same function in both computations
    logs = phase.fn({"image": real}, ctx)
    grads = [None if p.grad is None else p.grad.clone() for p in fam.D.parameters()]
    fam.D.zero_grad()
    x = real.clone().requires_grad_(True)
    expected = r1_penalty(fam.D(x), x)
    (expected * 0.5 / 2 * 8).backward()
    assert logs["r1"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert logs["loss"].item() == pytest.approx(expected.item() * 0.5 / 2 * 8, rel=1e-5)
    assert sum(g is not None for g in grads) >= 8
    for g, p in zip(grads, fam.D.parameters()):
        assert (g is None) == (p.grad is None)
        if g is not None:
            torch.testing.assert_close(g, p.grad)
