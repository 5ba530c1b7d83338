"""tools/bench_bigbigan.py's targets (issues 12 and 26) as a pure function of the probe rows and reconstructions, and
tools/bench_train.py's FLOP count (--roofline)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> Any:
    """tools/NAME.py as a module (the tools are scripts, not part of the package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(**means: float) -> dict[str, Any]:
    return {"probe": {"fractions": {k: {"mean": v} for k, v in means.items()}}}


def test_bigbigan_checks_read_the_issue_targets() -> None:
    b = _tool("bench_bigbigan")
    rows = {"E pool": _row(**{"0.01": 0.70, "1": 0.88}), "random E pool": _row(**{"0.01": 0.64, "1": 0.85}),
            "E all": _row(**{"0.01": 0.80, "1": 0.89}), "random E all": _row(**{"0.01": 0.77, "1": 0.87}),
            "pixels": _row(**{"0.01": 0.78, "1": 0.845})}
    c = b.checks(rows, {"class_agreement": {"recon": 0.74, "real": 0.92, "n": 2000}})
    assert c["E pool >= random E pool + 5 points @1%"] is True  # +6
    assert c["E all >= random E all + 5 points @1%"] is False  # +3
    assert c["E all > random E all @1%"] is True
    assert c["E pool >= pixels + 4 points @100%"] is False and c["E all >= pixels + 4 points @100%"] is True
    assert c["G(E(x)) keeps x's class >= 75%"] is False
    assert b.checks(rows, {"class_agreement": {"recon": 0.75}})["G(E(x)) keeps x's class >= 75%"] is True
    assert b.checks(rows)["G(E(x)) keeps x's class >= 75%"] is None  # no classifier: not judged
    assert "E bn_crelu >= random E bn_crelu + 5 points @1%" not in c  # rows that were not probed are not checked


def test_roofline_flop_count_matches_torch_and_counts_a_gradient_penalty() -> None:
    """tools/bench_train.py --roofline: the dispatch-level count equals FlopCounterMode's on a plain step, and it
    also counts a step whose loss holds autograd.grad (R1, WGAN-GP), where FlopCounterMode's module hooks fail."""
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    bt = _tool("bench_train")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    with bt._FlopCount() as mine:
        net(x).sum().backward()
    with FlopCounterMode(display=False) as ref:
        net(x).sum().backward()
    assert mine.total == ref.get_total_flops() > 0
    with bt._FlopCount() as gp:
        out = net(x).sum()
        (g,) = torch.autograd.grad(out, x, create_graph=True)
        (out + g.pow(2).sum()).backward()
    assert gp.total > mine.total  # the penalty's double backward costs convolutions and matmuls of its own
