"""The restricted unpickler: arrays, dicts, lists and bytes load; code never runs."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from diracnets.safe_pickle import safe_load


class Exploit:
    """Unpickling this with the plain pickle module would call os.system."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_like_batch_round_trips(protocol):
    data = np.arange(2 * 3072, dtype=np.uint64).reshape(2, 3072).astype(np.uint8)
    batch = {b"data": data, b"labels": [3, 7], b"filenames": [b"a.png", b"b.png"]}
    loaded = safe_load(pickle.dumps(batch, protocol=protocol))
    assert loaded[b"labels"] == [3, 7]
    assert loaded[b"filenames"] == [b"a.png", b"b.png"]
    np.testing.assert_array_equal(loaded[b"data"], data)
    assert loaded[b"data"].dtype == np.uint8


def test_legacy_numpy_core_names_are_accepted():
    # Pickles written by NumPy 1 (and the CIFAR files) name numpy.core, not numpy._core.
    blob = pickle.dumps(np.arange(6, dtype=np.uint8), protocol=2)
    legacy = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in legacy
    np.testing.assert_array_equal(safe_load(legacy), np.arange(6, dtype=np.uint8))


@pytest.mark.parametrize("payload", [Exploit(), CallsEval(), {b"data": Exploit()}])
def test_code_execution_is_refused(payload):
    blob = pickle.dumps(payload, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refused to load global"):
        safe_load(blob)


def test_arbitrary_class_is_refused():
    blob = pickle.dumps({b"x": {1, 2}.__class__}, protocol=4)  # the global builtins.set
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.set"):
        safe_load(blob)


def test_object_arrays_are_refused():
    blob = pickle.dumps({b"data": np.array([1, "a"], dtype=object)}, protocol=4)
    with pytest.raises(pickle.UnpicklingError, match="only plain numeric arrays"):
        safe_load(blob)
