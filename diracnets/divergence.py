"""Divergence is failure: finding non-finite values before anything is saved from them.

A run whose loss, validation loss, parameters or batch-norm statistics become NaN or infinite
has diverged. The trainer checks the model before it writes a checkpoint and before the final
weights and ONNX file are written, so no file of a run ever holds a non-finite value.
"""

from __future__ import annotations

import math

from torch import nn

from dirac_torch.untrusted import non_finite_keys


class DivergenceError(RuntimeError):
    """The run diverged (a NaN or infinite loss, parameter or statistic); nothing non-finite
    was saved."""


def non_finite_entries(model: nn.Module) -> list[str]:
    """Names of the parameters and buffers (batch-norm statistics) holding a NaN or inf.

    Examples
    --------
    >>> bn = nn.BatchNorm1d(2)
    >>> bn.running_var[1] = float("inf")
    >>> non_finite_entries(bn)
    ['running_var']
    """
    return non_finite_keys(model.state_dict())


def require_finite_model(model: nn.Module, when: str) -> None:
    """Raise :class:`DivergenceError` naming the non-finite entries of ``model``."""
    bad = non_finite_entries(model)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise DivergenceError(f"the run diverged: {shown} became NaN or infinite {when}")


def require_finite_loss(loss: float, what: str, when: str) -> None:
    """Raise :class:`DivergenceError` when ``loss`` is NaN or infinite."""
    if not math.isfinite(loss):
        raise DivergenceError(f"the run diverged: the {what} became {loss} {when}")
