"""`gan_ssl.train`: the training function, and (for code written against the flat layout) the module that held
it: `gan_ssl.train.train`, `build_state`, `train_step`, `run_phase`, `TrainState` still import from here.

    >>> gan_ssl.train(cfg, "runs/x")        # same as gan_ssl.api.train
"""
import sys
import types
from typing import Any

from gan_ssl.api import train
from gan_ssl.core.device import resolve_device, resolve_precision
from gan_ssl.engine.loop import Evaluator, run_phase, train_step
from gan_ssl.engine.state import TrainState, build_state, load_family_weights, load_state_dict, state_dict

__all__ = ["Evaluator", "TrainState", "build_state", "load_family_weights", "load_state_dict", "resolve_device",
           "resolve_precision", "run_phase", "state_dict", "train", "train_step"]


class _CallableModule(types.ModuleType):
    """`gan_ssl.train(...)` calls the function even after `import gan_ssl.train` bound the module to that name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
