"""Shared fixtures of the conformance meta-tests."""

from __future__ import annotations

import pytest
from hypothesis import settings

from dirac_conformance.runner import profile_settings
from dirac_conformance.target import Target, load_target


@pytest.fixture(scope="session")
def reference() -> Target:
    return load_target("numpy")


@pytest.fixture(scope="session")
def quick() -> settings:
    """The ci profile cut to a few examples: enough to exercise a check end to end."""
    return settings(profile_settings("ci"), max_examples=8)
