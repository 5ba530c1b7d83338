"""The EMA of G: the ramp's values, the update maths against a hand computation, buffers, and the start step."""
import pytest
import torch
from torch import nn

from gan_ssl.nn.ema import EMA, ema_beta


def test_ramp_values():
    assert ema_beta(0, 0.999) == pytest.approx(0.1)  # (1 + 0) / (10 + 0): the first average mostly follows the net
    assert ema_beta(90, 0.999) == pytest.approx(91 / 100)
    assert ema_beta(10**6, 0.999) == 0.999  # capped at beta
    assert ema_beta(0, 0.999, "none") == 0.999 and ema_beta(5, 0.999, "step", start=10) == 0.0
    assert ema_beta(10, 0.999, "step", start=10) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown EMA ramp"):
        ema_beta(0, 0.9, "cosine")


def test_random_init_weight_after_1000_steps():
    """The share of the random initial weights left in the average: beta^t without the ramp, tiny with it."""
    left = {ramp: 1.0 for ramp in ("none", "step")}
    for t in range(1000):
        for ramp in left:
            left[ramp] *= ema_beta(t, 0.999, ramp)
    assert left["none"] == pytest.approx(0.999**1000) and 0.36 < left["none"] < 0.37
    assert left["step"] < 1e-3


def test_update_matches_hand_computation_and_copies_buffers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(net, beta=0.9, ramp="step")
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    expected = [p.detach().clone() for p in ema.module.parameters()]
    for step in range(5):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net(torch.randn(8, 3))  # moves BN running statistics (buffers)
        b = ema.update(net, step)
        assert b == pytest.approx(min(0.9, (1 + step) / (10 + step)))
        expected = [b * e + (1 - b) * p.detach() for e, p in zip(expected, net.parameters())]
        for e, p in zip(expected, ema.module.parameters()):
            torch.testing.assert_close(p, e)
        for be, bm in zip(ema.module.buffers(), net.buffers()):
            assert torch.equal(be, bm)
