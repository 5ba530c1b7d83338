"""PGGAN/StyleGAN layers of gan_ssl.nn.layers: equalized LR, pixel norm, minibatch stddev, AdaIN, noise inputs."""
import math

import pytest
import torch
import torch.nn.functional as F

from gan_ssl.nn.layers import AdaIN, EqualizedConv2d, EqualizedLinear, MinibatchStdDev, NoiseInput, mbstd_group, pixel_norm


def test_equalized_linear_unit_raw_weights_runtime_scale_unscaled_bias():
    torch.manual_seed(0)
    layer = EqualizedLinear(512, 256)
    w = layer.weight.detach()
    assert abs(w.mean().item()) < 0.01 and w.std().item() == pytest.approx(1.0, abs=0.01)  # N(0, 1) raw weights
    assert layer.scale == pytest.approx(math.sqrt(2) / math.sqrt(512))  # He's constant, applied at run time
    with torch.no_grad():
        layer.bias.fill_(0.5)
    x = torch.randn(8, 512)
    torch.testing.assert_close(layer(x), x @ (w * layer.scale).T + 0.5)  # the bias is not scaled
    # the gradient of a raw weight is the effective weight's gradient times the scale
    layer(x).sum().backward()
    torch.testing.assert_close(layer.weight.grad, (torch.ones(8, 256).T @ x) * layer.scale)


def test_equalized_linear_lr_multiplier():
    torch.manual_seed(0)
    layer = EqualizedLinear(256, 256, gain=1.0, lr_mul=0.01, bias_init=0.3)
    assert layer.weight.detach().std().item() == pytest.approx(100.0, rel=0.02)  # N(0, 1 / lr_mul)
    effective = layer.weight.detach() * layer.scale
    assert effective.std().item() == pytest.approx(1 / 16, rel=0.02)  # gain / sqrt(fan_in), as without a multiplier
    x = torch.randn(4, 256)
    torch.testing.assert_close(layer(x), x @ effective.T + 0.3)
    layer(x).sum().backward()  # a raw step moves the effective weight lr_mul times less
    torch.testing.assert_close(layer.weight.grad, (torch.ones(4, 256).T @ x) * layer.scale)
    assert layer.scale == pytest.approx(0.01 / 16)


def test_equalized_conv_scale_and_output():
    torch.manual_seed(0)
    conv = EqualizedConv2d(64, 128, 3)
    assert conv.weight.detach().std().item() == pytest.approx(1.0, abs=0.01)
    assert conv.scale == pytest.approx(math.sqrt(2) / math.sqrt(64 * 9))
    x = torch.randn(2, 64, 8, 8)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * conv.scale, conv.bias, padding=1))
    assert conv(x).shape == (2, 128, 8, 8)
    assert EqualizedConv2d(3, 5, 1, gain=1.0).scale == pytest.approx(1 / math.sqrt(3))


def test_pixel_norm_unit_rms_per_pixel():
    x = torch.randn(3, 16, 5, 5) * 7
    y = pixel_norm(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(3, 5, 5))
    torch.testing.assert_close(pixel_norm(torch.zeros(1, 4, 2, 2)), torch.zeros(1, 4, 2, 2))  # eps keeps zeros finite


def _mbstd_reference(x: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    out = torch.empty(x.shape[0])
    for idx in groups:
        s = (x[idx].var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        out[idx] = s
    return out


def test_minibatch_stddev_batch_6_group_4():
    assert mbstd_group(6, 4) == 3 and mbstd_group(8, 4) == 4 and mbstd_group(2, 4) == 2 and mbstd_group(7, 4) == 1
    torch.manual_seed(0)
    x = torch.randn(6, 5, 4, 4)
    y = MinibatchStdDev(4)(x)
    assert y.shape == (6, 6, 4, 4)
    torch.testing.assert_close(y[:, :5], x)
    stat = y[:, 5]
    assert (stat == stat[:, :1, :1]).all()  # one constant map per image
    # groups of 3 with image i in group i mod 2 (PGGAN's reshape), never mixing the two groups
    torch.testing.assert_close(stat[:, 0, 0], _mbstd_reference(x, [[0, 2, 4], [1, 3, 5]]))
    x2 = x.clone()
    x2[1] += 5 * torch.randn(5, 4, 4)  # change an image of group 1: group 0's statistic stays
    stat2 = MinibatchStdDev(4)(x2)[:, 5, 0, 0]
    assert torch.equal(stat2[[0, 2, 4]], stat[[0, 2, 4], 0, 0]) and not torch.allclose(stat2[[1, 3, 5]], stat[[1, 3, 5], 0, 0])


def test_minibatch_stddev_divisible_batch_uses_full_groups():
    torch.manual_seed(1)
    x = torch.randn(8, 3, 2, 2)
    stat = MinibatchStdDev(4)(x)[:, 3, 0, 0]
    torch.testing.assert_close(stat, _mbstd_reference(x, [[0, 2, 4, 6], [1, 3, 5, 7]]))


def test_adain_zero_style_is_instance_norm():
    torch.manual_seed(0)
    ada = AdaIN(6, w_dim=10)
    x = torch.randn(4, 6, 5, 5) * 3 + 2
    w = torch.zeros(4, 10)
    torch.testing.assert_close(ada(x, w), F.instance_norm(x, eps=1e-8))
    # a non-zero style sets each channel's mean to b and its std to 1 + s
    w = torch.randn(4, 10)
    s, b = ada.style(w).chunk(2, dim=1)
    y = ada(x, w)
    torch.testing.assert_close(y.mean(dim=(2, 3)), b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y.std(dim=(2, 3), unbiased=False), (1 + s).abs(), atol=1e-4, rtol=1e-4)


def test_noise_input_starts_at_zero_and_adds_one_map_per_image():
    torch.manual_seed(0)
    layer = NoiseInput(3)
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(layer(x), x)  # weight 0 at init
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 2.0, -1.0]))
    noise = torch.randn(2, 1, 4, 4)
    y = layer(x, noise)
    for c, wc in enumerate([1.0, 2.0, -1.0]):
        torch.testing.assert_close(y[:, c] - x[:, c], wc * noise[:, 0])  # the same map for every channel
    torch.manual_seed(5)
    a = layer(x)
    torch.manual_seed(5)
    assert torch.equal(a, layer(x)) and not torch.equal(a, layer(x))  # drawn from the global RNG when not given
