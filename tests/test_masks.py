"""Inpainting masks: the promised areas, one mask per sample, seeded, and no hole pixel reaching G."""
import pytest
import torch

from gan_ssl.core.errors import ConfigError
from gan_ssl.nn.masks import MASKS, apply_mask, blocks_mask, center_mask, composite, draw_masks, overlap_ring, region_mask


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_center_is_the_central_quarter():
    m = center_mask(3, 32, 32)
    assert m.shape == (3, 1, 32, 32) and set(m.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(m.sum(dim=(1, 2, 3)), torch.full((3,), 256.0))  # 16 x 16 = a quarter of 32 x 32
    assert m[0, 0, 8:24, 8:24].all() and m[0, 0, :8].sum() == 0 and m[0, 0, 24:].sum() == 0 and m[0, 0, :, :8].sum() == 0


def test_blocks_cover_at_most_a_quarter_and_differ_per_sample():
    m = blocks_mask(256, 32, 32, gen())
    area = m.mean(dim=(1, 2, 3))
    assert (area > 0).all() and (area <= 0.25).all()
    assert area.min() <= 16 / 1024 + 1e-6 and area.max() > 0.15  # from one small square to several large ones
    flat = m.flatten(1)
    assert len({tuple(r.nonzero().flatten().tolist()) for r in flat}) > 250  # per sample, not one mask for the batch


def test_region_covers_20_to_30_percent_in_smooth_blobs():
    m = region_mask(128, 32, 32, gen(1))
    area = m.mean(dim=(1, 2, 3))
    assert (area >= 0.2 - 1e-6).all() and (area <= 0.3 + 1e-6).all()
    assert area.std() > 0.01  # the share itself is drawn per sample
    # smooth: most hole pixels have all four neighbours in the hole (salt-and-pepper noise would have ~6%)
    inner = m[:, :, 1:-1, 1:-1] * m[:, :, :-2, 1:-1] * m[:, :, 2:, 1:-1] * m[:, :, 1:-1, :-2] * m[:, :, 1:-1, 2:]
    assert inner.sum() / m[:, :, 1:-1, 1:-1].sum() > 0.7
    assert len({tuple(r.nonzero().flatten().tolist()) for r in m.flatten(1)}) == 128


def test_mixed_draws_every_kind_and_masks_are_seeded():
    m = draw_masks("mixed", 64, 32, 32, gen(2))
    centre = (m == center_mask(64, 32, 32)).flatten(1).all(1)
    assert 5 < int(centre.sum()) < 40  # about a third are central squares, the rest blocks or regions
    for kind in MASKS:
        assert torch.equal(draw_masks(kind, 8, 32, 32, gen(5)), draw_masks(kind, 8, 32, 32, gen(5)))
    assert not torch.equal(draw_masks("region", 8, 32, 32, gen(5)), draw_masks("region", 8, 32, 32, gen(6)))
    with pytest.raises(ConfigError, match="unknown mask 'ring'"):
        draw_masks("ring", 2, 32, 32, gen())


def test_overlap_ring_is_the_context_next_to_the_hole():
    m = center_mask(1, 32, 32)
    ring = overlap_ring(m, 1)
    assert (ring * m).sum() == 0 and ring.sum() == 18 * 18 - 16 * 16
    assert ring[0, 0, 7, 7] == 1 and ring[0, 0, 6, 6] == 0 and overlap_ring(m, 0).sum() == 0


def test_hole_pixels_never_reach_the_input():
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    m = draw_masks("blocks", 4, 32, 32, gen(3))
    y = x.clone()
    y[m.expand_as(y) > 0] = 0.77  # change every hole pixel
    assert torch.equal(apply_mask(x, m, -0.5), apply_mask(y, m, -0.5))
    assert torch.equal(apply_mask(x, m, -0.5)[m.expand_as(x) > 0], torch.full_like(x[m.expand_as(x) > 0], -0.5))
    pred = torch.zeros_like(x)
    done = composite(pred, x, m)
    assert torch.equal(done[m.expand_as(x) == 0], x[m.expand_as(x) == 0]) and (done[m.expand_as(x) > 0] == 0).all()
