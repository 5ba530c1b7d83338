"""The bottom layer: errors, device and precision, seeding, files, progress, the run log. Imports no other layer."""

__version__ = "0.1.0"  # the package version (pyproject.toml states it too)
