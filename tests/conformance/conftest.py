"""Shared fixtures of the conformance meta-tests."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from dirac_conformance.meta import Kill, hunt
from dirac_conformance.runner import profile_settings
from dirac_conformance.target import Target, load_target


@pytest.fixture(scope="session")
def reference() -> Target:
    return load_target("numpy")


@cache
def _hunted(mutant: Any) -> Kill:
    return hunt(mutant)


@pytest.fixture(scope="session")
def hunted() -> Callable[[Any], Kill]:
    """``hunt(mutant)`` with its defaults, once per mutant and test session: the meta-suite's
    tests and the command's ``--mutants`` test look at the same kills."""
    return _hunted


@pytest.fixture(scope="session")
def quick() -> settings:
    """The ci profile cut to a few examples: enough to exercise a check end to end."""
    return settings(profile_settings("ci"), max_examples=8)


GPULESS = """
from dirac_core.reference import NumpyBackend


class GpulessBackend(NumpyBackend):
    # Knows CUDA devices, as a GPU framework does, on a machine that has none.
    name = "gpuless"

    def from_numpy(self, a, device=None):
        if device in (None, "cpu"):
            return super().from_numpy(a, device)
        if str(device).partition(":")[0] == "cuda":
            raise ValueError(f"device={device!r}: this machine has no CUDA device")
        raise ValueError(f"device={device!r} is not a device; use 'cpu' or 'cuda[:N]'")
"""


@pytest.fixture
def gpuless(tmp_path: Path) -> Path:
    """A backend file whose ``cuda`` device this machine lacks (any other name is refused as
    no device at all)."""
    path = tmp_path / "gpuless.py"
    path.write_text(GPULESS)
    return path
