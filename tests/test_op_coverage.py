"""Every op of the specification is implemented, checked and documented everywhere it must be.

Adding an op to ``dirac_core.OPS`` without its conformance check, its torch or CuPy method, or
its entry in ``docs/spec.md`` fails here (the checklist is in ``CONTRIBUTING.md``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import dirac_core as dc
from dirac_conformance.checks import CHECKS

SPEC = (Path(__file__).parents[1] / "docs" / "spec.md").read_text()


def _own_methods(cls: type) -> set[str]:
    """Methods a backend class defines itself (not inherited from the reference)."""
    return {name for klass in cls.__mro__ if klass.__module__.split(".")[0] != "dirac_core"
            for name in vars(klass)}


def _backend_classes() -> dict[str, type]:
    pytest.importorskip("torch")
    from dirac_cupy.backend import CupyBackend
    from dirac_torch.backend import TorchBackend

    return {"torch": TorchBackend, "cupy": CupyBackend}


@pytest.mark.parametrize("op", dc.OPS)
def test_op_has_a_conformance_check(op: str) -> None:
    assert op in CHECKS, f"dirac_conformance has no check for {op!r}"


@pytest.mark.parametrize("op", dc.OPS)
def test_op_is_specified(op: str) -> None:
    assert re.search(rf"`{op}\(", SPEC), f"docs/spec.md does not define `{op}(...)`"


@pytest.mark.parametrize("op", dc.OPS)
@pytest.mark.parametrize("backend", ["torch", "cupy"])
def test_op_is_implemented(op: str, backend: str) -> None:
    cls = _backend_classes()[backend]
    assert op in _own_methods(cls), f"{cls.__qualname__} does not implement {op!r} itself"
    assert callable(getattr(cls, op))


def test_the_checks_catch_a_missing_op() -> None:
    """The helpers above would notice an op nobody implemented."""
    class Partial:
        def conv(self) -> None: ...

    assert "conv" in _own_methods(Partial)
    assert "conv_vjp" not in _own_methods(Partial)
    assert not re.search(r"`no_such_op\(", SPEC)
