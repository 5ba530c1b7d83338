"""SSGAN rotation task: exact rotations and labels per protocol, heads, weights, and which images each loss sees."""
import contextlib

import numpy as np
import pytest
import torch
from conftest import tiny_cfg

from gan_ssl.families import FAMILIES, StepContext
from gan_ssl.families.resolve import resolve
from gan_ssl.families.ssl import (
    AUX_TASKS,
    RotationTask,
    build_aux_tasks,
    register_aux,
    rotate_batch,
    rotate_by_label,
    rotation_labels,
)
from gan_ssl.models import build


def _ctx():
    return StepContext(torch.device("cpu"), contextlib.nullcontext, lambda loss: loss.backward())


def _family(*overrides, model="sngan"):
    torch.manual_seed(0)
    cfg = tiny_cfg("train.channels_last=false", *overrides, model=model)
    return FAMILIES["gan"](cfg, "cpu", training=True)


def test_rotate_batch_pixels_and_labels_exact():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    rotated, labels = rotate_batch(x)
    assert rotated.shape == (8, 3, 4, 4)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    xn = x.numpy()
    for k in range(4):
        for i in range(2):
            expected = np.rot90(xn[i], k, axes=(1, 2))  # counter-clockwise, like numpy
            np.testing.assert_array_equal(rotated[k * 2 + i].numpy(), expected)
    y = torch.zeros(1, 1, 4, 4)
    y[0, 0, 0, 3] = 1  # top-right corner
    r, _ = rotate_batch(y, (1,))
    assert r[0, 0, 0, 0] == 1  # -> top-left


def test_split_and_one_labels_and_rotations_exact():
    assert rotation_labels(8, "split").tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert rotation_labels(6, "split").tolist() == [0, 0, 1, 2, 2, 3]  # uneven batches keep every rotation
    torch.manual_seed(0)
    k = rotation_labels(400, "one")
    counts = torch.bincount(k, minlength=4)
    assert counts.sum() == 400 and (counts > 70).all()  # uniform over the four rotations
    x = torch.randn(7, 1, 5, 5)
    k = torch.tensor([0, 3, 1, 0, 2, 1, 3])
    images, labels, rows = rotate_by_label(x, k)
    assert images.shape[0] == 5 and sorted(rows.tolist()) == [1, 2, 4, 5, 6]  # k = 0 rows are not recomputed
    for img, lab, row in zip(images, labels, rows):
        assert lab == k[row]
        torch.testing.assert_close(img, torch.rot90(x[row], int(lab), dims=(1, 2)), rtol=0, atol=0)


def test_rotation_head_and_weights():
    _, D = build("sngan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8)
    task = RotationTask(D, 1.0, 0.2)
    assert hasattr(task.head, "parametrizations")  # spectral-normalised like D
    assert task.head.out_features == 4 and task.head.in_features == D.feature_dim
    cfg = resolve(None, ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0"])
    assert len(build_aux_tasks(cfg.aux, D)) == 0
    cfg = resolve(None, ["aux.rotation.d_weight=1.0", "aux.rotation.g_weight=0.2", "aux.rotation.protocol=split"])
    tasks = build_aux_tasks(cfg.aux, D)
    assert list(tasks) == ["rotation"] and tasks["rotation"].g_weight == 0.2 and tasks["rotation"].protocol == "split"


def test_register_aux_validates():
    with pytest.raises(ValueError, match="already registered"):
        register_aux("rotation")(RotationTask)
    with pytest.raises(TypeError):
        register_aux("not-a-task")(object)
    assert "not-a-task" not in AUX_TASKS


class _Spy:
    """Records every batch that reaches D (either entry point) and the logits the adversarial losses receive."""

    def __init__(self, fam):
        self.D_inputs, self.adv = [], []
        D = fam.D
        fwf, feature = D.forward_with_feature, D.feature

        def spy_fwf(x):
            self.D_inputs.append(x.detach().clone())
            f = feature(x)
            return D.head(f).squeeze(1), f

        def spy_feature(x):
            self.D_inputs.append(x.detach().clone())
            return feature(x)

        D.forward_with_feature = spy_fwf
        D.forward = lambda x: spy_fwf(x)[0]
        D.feature = spy_feature
        d_adv, g_adv = fam.d_adv, fam.g_adv
        fam.d_adv = lambda r, f: (self.adv.append(("d", r.detach().clone(), f.detach().clone())), d_adv(r, f))[1]
        fam.g_adv = lambda f: (self.adv.append(("g", f.detach().clone())), g_adv(f))[1]


@pytest.mark.parametrize("protocol", ["all", "split", "one"])
def test_adversarial_loss_sees_upright_images_only(protocol):
    fam = _family(f"aux.rotation.protocol={protocol}")
    fam.D.eval()  # spectral norm stops its power iteration, so D is one fixed function in this test
    spy = _Spy(fam)
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    logs = fam.phase_d({"image": real}, _ctx())
    seen = torch.cat(spy.D_inputs)
    torch.testing.assert_close(seen[:8], real, rtol=0, atol=0)  # upright reals first ...
    extra, fakes = seen[8:-8], seen[-8:]  # ... then only rotated copies, for the rotation head; then 8 upright fakes
    assert extra.shape[0] == {"all": 24, "split": 6}.get(protocol, extra.shape[0]) and extra.shape[0] > 0
    for img in extra:  # every extra row is a 90/180/270-degree rotation of some real image
        assert any(torch.equal(img, torch.rot90(r, k, dims=(1, 2))) for r in real for k in (1, 2, 3))
    assert not any(torch.equal(f, r) for f in fakes for r in real)
    (_, real_logits, fake_logits), = spy.adv
    with torch.no_grad():
        torch.testing.assert_close(real_logits, fam.D.head(fam.D.feature(real)).squeeze(1), rtol=1e-4, atol=1e-4)
    assert real_logits.shape == fake_logits.shape == (8,)
    assert {"rot_d", "rot_acc_real", "d_adv"} <= set(logs) and "rot_g" not in logs

    spy.D_inputs.clear(), spy.adv.clear()
    logs = fam.phase_g(None, _ctx())
    g_in = torch.cat(spy.D_inputs)
    (_, g_logits), = spy.adv
    assert g_logits.shape == (8,) and g_in.shape[0] > 8  # the G loss reads the upright rows of the one pass
    with torch.no_grad():
        torch.testing.assert_close(g_logits, fam.D.head(fam.D.feature(g_in[:8])).squeeze(1), rtol=1e-4, atol=1e-4)
    assert {"rot_g", "rot_acc_fake", "g_adv"} <= set(logs)


def test_rotation_loss_weights_enter_total():
    """The rotation terms, computed here by hand (4-way CE of the head over D's features of the four rotations of
    the reals, and of the fakes), enter D's and G's losses with weights 0.7 and 0.3."""
    fam = _family("aux.rotation.d_weight=0.7", "aux.rotation.g_weight=0.3", "aux.rotation.protocol=all", "train.precision=fp32")
    fam.D.eval()  # spectral norm without power-iteration updates: the same D for the phase and the hand computation
    head = fam.aux["rotation"].head

    def rotation_ce(x):
        rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
        labels = torch.arange(4).repeat_interleave(x.shape[0])
        return torch.nn.functional.cross_entropy(head(fam.D.feature(rotated)).float(), labels)

    real = torch.rand(8, 1, 32, 32) * 2 - 1
    d = fam.phase_d({"image": real}, _ctx())
    with torch.no_grad():
        hand = rotation_ce(real).item()
    assert d["rot_d"].item() == pytest.approx(hand, rel=1e-5)
    assert d["loss"].item() - d["d_adv"].item() == pytest.approx(0.7 * hand, rel=1e-4)
    torch.manual_seed(3)
    g = fam.phase_g(None, _ctx())
    torch.manual_seed(3)
    with torch.no_grad():
        fake = fam.G(fam.G.sample_z(8))
        hand_g = rotation_ce(fake).item()
    assert g["rot_g"].item() == pytest.approx(hand_g, rel=1e-4)
    assert g["loss"].item() - g["g_adv"].item() == pytest.approx(0.3 * hand_g, rel=1e-4)


def test_rotation_only_switches_off_both_adversarial_terms():
    fam = _family("loss.d_adv_weight=0")
    logs = fam.phase_d({"image": torch.rand(8, 1, 32, 32) * 2 - 1}, _ctx())
    assert "d_adv" not in logs and logs["loss"].item() == pytest.approx(logs["rot_d"].item(), rel=1e-6)
    g = fam.phase_g(None, _ctx())
    assert "g_adv" not in g and g["loss"].item() == pytest.approx(0.2 * g["rot_g"].item(), rel=1e-6)
    no_g = _family("loss.d_adv_weight=0", "aux.rotation.g_weight=0")
    assert [p.name for p in no_g.phases] == ["D"]  # G has nothing to learn: no G phase at all


def test_batchnorm_discriminator_sees_upright_and_rotated_in_one_pass():
    fam = _family(model="dcgan")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in fam.D.modules())
    spy = _Spy(fam)
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    fam.phase_d({"image": real}, _ctx())
    assert [x.shape[0] for x in spy.D_inputs] == [32, 32]  # one pass of upright + 3 rotations; the fakes get the same rows for BN
    spy.D_inputs.clear()
    fam.phase_g(None, _ctx())
    assert [x.shape[0] for x in spy.D_inputs] == [32]
