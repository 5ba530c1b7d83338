"""Every registered model: shapes, features, backward, spectral norm, self-modulation."""
import pytest
import torch
import torch.nn.functional as F

from gan_ssl.models import MODELS, Discriminator, Generator, build, register_model
from gan_ssl.nn.layers import SelfModulatedBN

torch.manual_seed(0)
GAN_MODELS = sorted(n for n, m in MODELS.items() if m.family == "gan")  # (Generator, Discriminator) builders; other families test their own


@pytest.mark.parametrize("name", GAN_MODELS)
@pytest.mark.parametrize("resolution,channels", [(32, 1), (32, 3), (64, 3)])
def test_shapes_features_backward(name, resolution, channels):
    G, D = build(name, resolution=resolution, channels=channels, z_dim=16, g_width=8, d_width=8)
    assert isinstance(G, Generator) and isinstance(D, Discriminator)
    z = torch.randn(4, 16)
    x = G(z)
    assert x.shape == (4, channels, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1
    logits = D(x)
    assert logits.shape == (4,)
    D.eval()  # in train mode every forward runs a power iteration, which moves SN weights slightly
    feats = D.features(x)
    assert feats["penultimate"].shape == (4, D.feature_dim)
    assert list(feats)[-1] == "penultimate" and len(feats) >= 3
    assert all(v.shape[0] == 4 and v.ndim == 4 for k, v in feats.items() if k != "penultimate")
    torch.testing.assert_close(D.feature(x), feats["penultimate"])
    torch.testing.assert_close(D(x), D.head(feats["penultimate"]).squeeze(1))
    D.train()
    (logits.mean() + x.mean()).backward()
    for net in (G, D):
        idle = net.idle_parameters() if hasattr(net, "idle_parameters") else set()  # progressive nets: lower levels' toRGB/fromRGB
        grads = [p.grad for n, p in net.named_parameters() if p.requires_grad and n not in idle]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


def test_registry_rejects_duplicates_and_unknown():
    with pytest.raises(ValueError, match="already registered"):
        register_model("sngan")(lambda: None)
    with pytest.raises(ValueError, match="unknown model"):
        build("no-such-gan")


def _sigma(module: torch.nn.Module) -> float:
    w = module.weight  # the parametrized (normalised) weight
    return torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item()


@pytest.mark.parametrize("name,kwargs", [("sngan", {}), ("dcgan", {"spectral_norm": True})])
def test_spectral_norm_active(name, kwargs):
    torch.manual_seed(0)  # 20 power iterations reach sigma 1 +- 0.05 for most draws, not all: fix the draw, whatever ran before
    _, D = build(name, resolution=32, channels=1, z_dim=16, g_width=8, d_width=16, **kwargs)
    assert D.spectral_norm
    layers = [m for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and hasattr(m, "parametrizations")]
    assert len(layers) >= 4
    with torch.no_grad():  # blow the raw weights up: the parametrization must still normalise them
        for m in layers:
            m.parametrizations.weight.original.copy_(torch.randn_like(m.parametrizations.weight.original) * 3)
    x = torch.randn(8, 1, 32, 32)
    for _ in range(20):  # power iterations run on each training-mode forward
        D(x)
    for m in layers:
        assert _sigma(m) == pytest.approx(1.0, abs=0.05)
        raw = m.parametrizations.weight.original
        assert torch.linalg.matrix_norm(raw.reshape(raw.shape[0], -1), ord=2).item() > 2


def test_dcgan_without_sn_uses_batchnorm():
    _, D = build("dcgan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8, spectral_norm=False)
    assert not D.spectral_norm
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())


def test_self_modulated_bn_depends_on_z():
    bn = SelfModulatedBN(6, z_dim=10)
    x = torch.randn(8, 6, 4, 4)
    z1, z2 = torch.randn(8, 10), torch.randn(8, 10)
    assert not torch.allclose(bn(x, z1), bn(x, z2))
    # starts near plain BN (scale ~ 1, shift ~ 0)
    plain = torch.nn.functional.batch_norm(x, None, None, training=True)
    assert (bn(x, z1) - plain).abs().mean() < 0.2


def test_sngan_self_modulation_switch():
    G_mod, _ = build("sngan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8, self_modulation=True)
    G_plain, _ = build("sngan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8, self_modulation=False)
    assert sum(isinstance(m, SelfModulatedBN) for m in G_mod.modules()) == 2 * len(G_mod.blocks) + 1
    assert not any(isinstance(m, SelfModulatedBN) for m in G_plain.modules())
    # G's output for one z depends on the other z's only through batch statistics; in eval mode it depends on z alone
    G_mod.eval()
    z = torch.randn(4, 16)
    torch.testing.assert_close(G_mod(z)[:2], G_mod(z[:2]))


@pytest.mark.parametrize("name", sorted(n for n in MODELS if not n.startswith("test-")))  # the package's models, not test doubles
def test_bad_resolution(name):
    with pytest.raises(ValueError, match="resolution"):
        build(name, resolution=30, channels=1)


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_then_pool_as_one_strided_conv(channels_last):
    """gan_ssl.nn.resample: 3x3 conv + 2x2 average pooling as one 4x4 stride-2 conv."""
    from gan_ssl.nn.resample import conv3x3_then_pool2

    torch.manual_seed(0)
    x = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    w, b = torch.randn(7, 5, 3, 3, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    torch.testing.assert_close(conv3x3_then_pool2(x, w, b), F.avg_pool2d(F.conv2d(x, w, b, padding=1), 2))
    torch.testing.assert_close(conv3x3_then_pool2(x, w, None), F.avg_pool2d(F.conv2d(x, w, None, padding=1), 2))


def test_sngan_fast_resample_is_the_same_function():
    """The SN-GAN pair with fast_resample (the default) and without: same parameters, same outputs and gradients
    (float64, train mode: BatchNorm batch statistics and one spectral-norm power iteration per forward)."""
    torch.manual_seed(0)
    fast_g, fast_d = build("sngan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8)
    slow_g, slow_d = build("sngan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8, fast_resample=False)
    slow_g.load_state_dict(fast_g.state_dict())
    slow_d.load_state_dict(fast_d.state_dict())
    assert all(b.fast for b in (*fast_g.blocks, *fast_d.blocks.values()))  # the option reaches every block
    assert not any(b.fast for b in (*slow_g.blocks, *slow_d.blocks.values()))
    for net in (fast_g, fast_d, slow_g, slow_d):
        net.double().train()
    z = torch.randn(4, 16, dtype=torch.float64)
    outs = []
    for g, d in ((fast_g, fast_d), (slow_g, slow_d)):
        x = g(z)
        score = d(x).sum()
        score.backward()
        outs.append((x.detach(), score.detach(), [p.grad.clone() for p in (*g.parameters(), *d.parameters())]))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])
    for a, b in zip(outs[0][2], outs[1][2]):
        torch.testing.assert_close(a, b)
