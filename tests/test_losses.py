"""Adversarial losses against their formulas, and R1 (with its lazy scaling) against autograd."""
import contextlib

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_cfg

from gan_ssl.families import FAMILIES, StepContext
from gan_ssl.nn.losses import (
    d_hinge,
    d_nonsaturating,
    d_relativistic_average,
    d_wgan,
    drift_penalty,
    g_hinge,
    g_nonsaturating,
    g_relativistic_average,
    g_wgan,
    gradient_penalty,
    r1_penalty,
)


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


def test_wgan_drift_and_relativistic_losses_match_their_formulas_by_hand():
    real, fake = [2.0, -1.0, 0.5], [-3.0, 0.2, 1.0]
    r, f = torch.tensor(real), torch.tensor(fake)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    softplus = lambda v: float(torch.log1p(torch.exp(torch.tensor(v))))  # noqa: E731
    assert d_wgan(r, f).item() == pytest.approx(mean(fake) - mean(real))
    assert g_wgan(f).item() == pytest.approx(-mean(fake))
    assert drift_penalty(r).item() == pytest.approx(mean([v * v for v in real]))
    mr, mf = mean(real), mean(fake)
    d_ra = mean([softplus(-(v - mf)) for v in real]) + mean([softplus(v - mr) for v in fake])
    g_ra = mean([softplus(v - mf) for v in real]) + mean([softplus(-(v - mr)) for v in fake])
    assert d_relativistic_average(r, f).item() == pytest.approx(d_ra, rel=1e-6)
    assert g_relativistic_average(r, f).item() == pytest.approx(g_ra, rel=1e-6)


def test_gradient_penalty_matches_a_critic_with_a_known_gradient():
    """D(x) = sum(w * x) has gradient w everywhere: GP = (||w|| - 1)^2 at any interpolate; for a quadratic critic
    D(x) = sum(x^2) the gradient 2 x_hat is taken at x_hat = real + u (fake - real)."""
    w = torch.randn(1, 1, 4, 4)
    real, fake, u = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4), torch.rand(3, 1, 1, 1)
    gp = gradient_penalty(lambda x: (x * w).flatten(1).sum(1), real, fake, u)
    assert gp.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)
    gp2 = gradient_penalty(lambda x: x.square().flatten(1).sum(1), real, fake, u)
    x_hat = real + u * (fake - real)
    by_hand = ((2 * x_hat).flatten(1).norm(dim=1) - 1).square().mean()
    assert gp2.item() == pytest.approx(by_hand.item(), rel=1e-5)
    w_param = torch.nn.Parameter(w.clone())
    gradient_penalty(lambda x: (x * w_param).flatten(1).sum(1), real, fake, u).backward()  # differentiable: GP trains D
    torch.testing.assert_close(w_param.grad, 2 * (w.norm() - 1) * w / w.norm())
