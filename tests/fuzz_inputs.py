"""Hypothesis strategies for the fuzz tests of every loader: junk JSON and one-value edits.

A loader is fuzzed by taking a valid record, replacing one value anywhere in it (or the whole
record) by junk, and asserting that only the documented exception types come out.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# any JSON value, including NaN/inf floats, huge ints and nesting
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70) | st.floats()
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)
# (junk, where): the value reached by following ``where`` (indices modulo the sizes met) is
# replaced by ``junk``; an empty ``where`` replaces the whole record
MUTATIONS = st.tuples(JSON, st.lists(st.integers(0, 50), max_size=6))


def replace(value: Any, path: list[int], junk: Any) -> Any:
    """``value`` with the entry at ``path`` replaced by ``junk`` (see :data:`MUTATIONS`)."""
    if not path:
        return junk
    if isinstance(value, dict) and value:
        key = sorted(value)[path[0] % len(value)]
        return {**value, key: replace(value[key], path[1:], junk)}
    if isinstance(value, list) and value:
        index = path[0] % len(value)
        return [*value[:index], replace(value[index], path[1:], junk), *value[index + 1:]]
    return junk
