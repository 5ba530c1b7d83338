"""Project error types: user mistakes that the CLI reports as one line with exit code 2."""
from __future__ import annotations


class GanSslError(ValueError):
    """Base class for errors caused by input the user can fix (config, data, files, weights)."""


class ConfigError(GanSslError):
    """An unknown config key, a wrong type or an out-of-range value."""


class DataError(GanSslError):
    """Missing, unreadable or malformed data."""


class CheckpointError(GanSslError):
    """A missing, corrupt or foreign checkpoint file."""


class WeightsError(GanSslError):
    """Pretrained weights that are absent and cannot be downloaded."""


class DivergenceError(GanSslError):
    """A loss became NaN or infinite; training stopped before it reached a checkpoint."""
