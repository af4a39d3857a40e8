"""The authors' released v1 ImageNet weights: ``.hkl`` files (hickle, HDF5), read with h5py.

Their notebook (``szagoruyko/diracnets@af0123c``, ``diracnet-export.ipynb``) saved the trained
DiracNet-18-0.75 as ``hkl.dump({"params": ..., "stats": ...})`` (``diracnet-18-0.75-br.hkl``)
and its folded export as ``hkl.dump(params)`` (``diracnet-18-0.75-br-export.hkl``). A hickle
file of that time (versions 2 and 3) stores a dict as a group ``data_0`` holding one group per
key, named by the key's ``repr`` (``'conv'``, or ``u'conv'`` when written by Python 2 from a
unicode key), each holding its value as ``data_0``: a dataset for an array, a group for a dict.

:func:`read_hickle` reads such a file into a flat ``{key: numpy array}`` without hickle and
without unpickling anything, and refuses anything else before reading any array: a file that
is not a regular file or is too large, links (soft, external), external or virtual datasets,
non-numeric data, too many arrays or elements, an uncompressed array larger than the bytes
the file stores for it (a few KB declaring gigabytes never written), a compressed one over
1 MiB that would expand more than 64 times, nesting deeper than the authors' two levels.
:func:`load_hickle` hands the result to :func:`dirac_torch.pretrained.authors_model`: the
trained file becomes a ``paper_imagenet`` network (per-filter ``beta``, scalar alpha, layout
``"v1-released"``).

>>> import tempfile, numpy as np
>>> path = tempfile.mkdtemp() + "/tiny.hkl"
>>> write_hickle(path, {"params": {"fc.bias": np.zeros(3, np.float32)}})
>>> read_hickle(path)
{'params': {'fc.bias': array([0., 0., 0.], dtype=float32)}}
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from dirac_core.untrusted import UntrustedInputError, check_regular

FILE_LIMIT = 2**31  # bytes; the authors' largest v1 network (DiracNet-34) is ~250 MB
ELEMENT_LIMIT = 2**28  # array elements in all
ARRAY_LIMIT = 4096  # arrays in all (a v1 DiracNet-34 has about 500)
# A compressed array may decompress to at most this many times its stored bytes, or 1 MiB:
# trained weights barely compress, and a constant array (zeros, ones) under 1 MiB may expand
# as far as it likes; a tiny file must not inflate to the element budget's 2 GiB.
EXPANSION_LIMIT = 64
SMALL_ARRAY = 2**20
MAX_DEPTH = 3  # {"params": {"group0.block0.conv": array}} is two dict levels
_KEY = re.compile(r"u?'([A-Za-z0-9_.]{1,200})'")
_DTYPES = ("float16", "float32", "float64", "int64", "int32", "uint8")


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ImportError("reading the authors' .hkl files needs h5py: pip install h5py "
                          "(the torch extra of diracnets installs it)") from None
    return h5py


def read_hickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The dict of arrays a hickle (v2/v3) file holds.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    UntrustedInputError
        Not a regular file, over :data:`FILE_LIMIT`, not a hickle dict of arrays, or beyond
        the limits of this module (the message names the entry).
    """
    h5py = _h5py()
    source = f"hickle file {str(path)!r}"
    check_regular(path, "hickle file", FILE_LIMIT)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise UntrustedInputError(f"{source} is not an HDF5 file: {exc}") from None
    with handle:
        budget = {"arrays": 0, "elements": 0}
        root = _child(handle, "data_0", source, h5py)
        if not isinstance(root, h5py.Group):
            raise UntrustedInputError(f"{source} holds no dict (its 'data_0' is an array)")
        plan = _plan(root, source, h5py, 1, budget)
        return _read(plan)


def _child(group: Any, name: str, where: str, h5py: Any) -> Any:
    link = group.get(name, getlink=True)
    if link is None:
        raise UntrustedInputError(f"{where} has no {name!r}; not a hickle file of the "
                                  "authors' (hickle 2/3 layout)")
    if not isinstance(link, h5py.HardLink):
        raise UntrustedInputError(f"{where}/{name} is a {type(link).__name__}; links are "
                                  "refused")
    return group[name]


def _plan(group: Any, where: str, h5py: Any, depth: int, budget: dict[str, int]) -> Any:
    """The datasets to read, as nested dicts, every entry checked first."""
    if depth > MAX_DEPTH:
        raise UntrustedInputError(f"{where} nests dicts deeper than {MAX_DEPTH} levels")
    plan: dict[str, Any] = {}
    for name in group:
        match = _KEY.fullmatch(name)
        if match is None:
            raise UntrustedInputError(
                f"{where} has an entry {name[:80]!r}; keys are quoted names of letters, "
                "digits, '_' and '.'")
        key, here = match[1], f"{where}/{name}"
        if key in plan:
            raise UntrustedInputError(f"{here}: the key {key!r} appears twice")
        item = _child(_child(group, name, where, h5py), "data_0", here, h5py)
        if isinstance(item, h5py.Group):
            plan[key] = _plan(item, here, h5py, depth + 1, budget)
        elif isinstance(item, h5py.Dataset):
            plan[key] = _check_dataset(item, here, budget)
        else:
            raise UntrustedInputError(f"{here} is neither an array nor a dict")
    return plan


def _check_dataset(item: Any, where: str, budget: dict[str, int]) -> Any:
    if item.is_virtual or item.external:
        raise UntrustedInputError(f"{where} stores its data outside the file; refused")
    if item.dtype.name not in _DTYPES or item.ndim > 4:
        raise UntrustedInputError(f"{where} is {item.dtype} of {item.ndim} dims; accepted: "
                                  f"{_DTYPES}, at most 4 dims")
    declared = int(np.prod(item.shape, dtype=np.int64)) * item.dtype.itemsize
    stored = item.id.get_storage_size()
    # Unfiltered data is stored byte for byte: a tiny file must not declare a huge array
    # that would be allocated (and filled with the fill value) when read.
    filtered = item.id.get_create_plist().get_nfilters() > 0
    if stored < declared and (not filtered or declared > max(EXPANSION_LIMIT * stored,
                                                            SMALL_ARRAY)):
        what = "compressed into" if filtered else "but the file stores"
        raise UntrustedInputError(f"{where} declares {item.shape} of {item.dtype} "
                                  f"({declared:,} bytes) {what} {stored:,}; refused")
    budget["arrays"] += 1
    budget["elements"] += int(np.prod(item.shape, dtype=np.int64))
    if budget["arrays"] > ARRAY_LIMIT or budget["elements"] > ELEMENT_LIMIT:
        raise UntrustedInputError(f"{where}: the file holds more than {ARRAY_LIMIT} arrays or "
                                  f"{ELEMENT_LIMIT:,} elements; refused")
    return item


def _read(plan: Any) -> Any:
    if isinstance(plan, dict):
        return {key: _read(value) for key, value in plan.items()}
    return np.asarray(plan[()])


def write_hickle(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """Write a dict of dicts of arrays in the layout :func:`read_hickle` reads (hickle 3's),
    e.g. to hand weights to code that reads the authors' files."""
    h5py = _h5py()

    def put(group: Any, value: Any) -> None:
        if isinstance(value, Mapping):
            inner = group.create_group("data_0")
            inner.attrs["type"] = [b"<class 'dict'>"]
            for key, item in value.items():
                entry = inner.create_group(repr(str(key)))
                entry.attrs["type"] = [b"dict_item"]
                put(entry, item)
        else:
            group.create_dataset("data_0", data=np.asarray(value))

    with h5py.File(path, "w") as handle:
        handle.attrs["CLASS"] = b"hickle"
        handle.attrs["VERSION"] = "3.4.9"
        put(handle, data)


def load_hickle(path: str | os.PathLike[str]) -> Any:
    """The network an authors' ``.hkl`` file holds, built and loaded (see
    :func:`dirac_torch.pretrained.authors_model`).

    Raises
    ------
    UntrustedInputError
        As :func:`read_hickle`.
    dirac_torch.pretrained.AuthorsCheckpointError
        The arrays are not one of the authors' layouts (the first mismatch named), or hold
        NaN or infinite values; the message names the file.
    """
    import torch

    from .pretrained import AuthorsCheckpointError, authors_model

    def tensors(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: tensors(item) for key, item in value.items()}
        return torch.from_numpy(np.ascontiguousarray(value))

    try:
        return authors_model(tensors(read_hickle(path)))
    except AuthorsCheckpointError as exc:
        raise AuthorsCheckpointError(f"{str(path)!r}: {exc}") from None


__all__ = ["load_hickle", "read_hickle", "write_hickle"]
