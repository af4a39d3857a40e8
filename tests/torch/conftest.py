"""Shared fixtures of the torch tests: the backend object and a CUDA device (or a clean skip)."""

import pytest
import torch

import dirac_core as dc


@pytest.fixture(scope="session")
def backend():
    """The registered ``torch`` backend, loaded through the entry point like users get it."""
    return dc.get_backend("torch")


@pytest.fixture(scope="session")
def cuda():
    """``torch.device("cuda")``, or skip: the CPU build or machine has no CUDA device."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: torch.cuda.is_available() is False on this machine")
    return torch.device("cuda")
