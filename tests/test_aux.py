"""SSGAN rotation task: exact rotations, labels, heads, and which images each loss sees."""
import numpy as np
import pytest
import torch

from gan_ssl.aux import AUX_TASKS, RotationTask, build_aux_tasks, register_aux, rotate_batch
from gan_ssl.config import LossConfig, resolve
from gan_ssl.models import build
from gan_ssl.objective import GANObjective


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
    # a single marked pixel moves where a 90-degree counter-clockwise turn puts it
    y = torch.zeros(1, 1, 4, 4)
    y[0, 0, 0, 3] = 1  # top-right corner
    r, _ = rotate_batch(y, (1,))
    assert r[0, 0, 0, 0] == 1  # -> top-left


def test_rotation_head_and_weights():
    _, D = build("sngan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8)
    task = RotationTask(D, 1.0, 0.2)
    assert hasattr(task.head, "parametrizations")  # spectral-normalised like D
    assert task.head.out_features == 4 and task.head.in_features == D.feature_dim
    cfg = resolve(None, ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0"])
    assert len(build_aux_tasks(cfg.aux, D)) == 0
    cfg = resolve(None, ["aux.rotation.d_weight=1.0", "aux.rotation.g_weight=0.2"])
    tasks = build_aux_tasks(cfg.aux, D)
    assert list(tasks) == ["rotation"] and tasks["rotation"].g_weight == 0.2


def test_register_aux_validates():
    with pytest.raises(ValueError, match="already registered"):
        register_aux("rotation")(RotationTask)
    with pytest.raises(TypeError):
        register_aux("not-a-task")(object)
    assert "not-a-task" not in AUX_TASKS


class _Spy:
    """Wraps D to record which batches reach the real/fake head and which only the pooled feature."""

    def __init__(self, D):
        self.D, self.adv_inputs, self.feature_inputs = D, [], []
        self._fwf, self._f = D.forward_with_feature, D.feature
        D.forward_with_feature = self.fwf
        D.forward = lambda x: self.fwf(x)[0]

    def fwf(self, x):
        self.adv_inputs.append(x.detach().clone())
        f = self._f(x)
        return self.D.head(f).squeeze(1), f


def test_adversarial_loss_sees_upright_images_only():
    torch.manual_seed(0)
    G, D = build("sngan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8)
    aux = torch.nn.ModuleDict({"rotation": RotationTask(D, 1.0, 0.2)})
    spy = _Spy(D)
    obj = GANObjective(G, D, aux, LossConfig())
    real = torch.rand(4, 1, 32, 32) * 2 - 1
    logs = obj.phase_d(real, torch.randn(4, 16))
    assert [x.shape[0] for x in spy.adv_inputs] == [4, 4]  # upright reals, upright fakes
    torch.testing.assert_close(spy.adv_inputs[0], real)
    assert {"rot_d", "rot_acc_real", "d_adv"} <= set(logs) and "rot_g" not in logs
    spy.adv_inputs.clear()
    logs = obj.phase_g(torch.randn(4, 16))
    assert [x.shape[0] for x in spy.adv_inputs] == [4]
    assert {"rot_g", "rot_acc_fake", "g_adv"} <= set(logs)


def test_rotation_loss_weights_enter_total():
    torch.manual_seed(0)
    G, D = build("sngan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8)
    real, z = torch.rand(4, 1, 32, 32) * 2 - 1, torch.randn(4, 16)
    aux = torch.nn.ModuleDict({"rotation": RotationTask(D, 1.0, 0.2)})
    obj = GANObjective(G, D, aux, LossConfig())
    torch.manual_seed(1)
    d = obj.phase_d(real, z)
    assert d["d_loss"].item() == pytest.approx(d["d_adv"].item() + 1.0 * d["rot_d"].item(), rel=1e-5)
    g = obj.phase_g(z)
    assert g["g_loss"].item() == pytest.approx(g["g_adv"].item() + 0.2 * g["rot_g"].item(), rel=1e-5)


def test_rotation_only_discriminator_skips_adversarial_term():
    G, D = build("sngan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8)
    aux = torch.nn.ModuleDict({"rotation": RotationTask(D, 1.0, 0.0)})
    obj = GANObjective(G, D, aux, LossConfig(d_adv_weight=0.0))
    logs = obj.phase_d(torch.rand(4, 1, 32, 32) * 2 - 1, torch.randn(4, 16))
    assert "d_adv" not in logs
    assert logs["d_loss"].item() == pytest.approx(logs["rot_d"].item(), rel=1e-6)
