"""The Dirac tensor: paper eq. 2 (square), eq. 7-8 (tiled), groups, the "min" policy."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dirac_core as dc
from dirac_core.delta import is_tap, tap_columns, tap_indices, weight_geometry

kernels = st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple)


@given(c=st.integers(1, 6), kernel=kernels)
def test_square_is_identity_at_floor_centre(c, kernel):
    delta = dc.dirac_tensor((c, c, *kernel))
    centre = tuple(k // 2 for k in kernel)
    expected = np.zeros((c, c, *kernel))
    for o in range(c):
        expected[(o, o, *centre)] = 1
    np.testing.assert_array_equal(delta, expected)


@given(n=st.integers(1, 4), m=st.integers(1, 4), kernel=kernels, wide=st.booleans())
def test_tile_is_block_repetition_when_divisible(n, m, kernel, wide):
    """Eq. 7-8: [I I ... I] along the longer channel axis."""
    shape = (n, n * m) if wide else (n * m, n)
    delta = dc.dirac_tensor((*shape, *kernel))
    centre = tuple(k // 2 for k in kernel)
    blocks = np.tile(np.eye(n), (1, m) if wide else (m, 1))
    np.testing.assert_array_equal(delta[(slice(None), slice(None), *centre)], blocks)
    assert delta.sum() == n * m


@given(o=st.integers(1, 7), i=st.integers(1, 7))
def test_tile_cyclic_rule(o, i):
    n = min(o, i)
    got = dc.dirac_tensor((o, i))
    want = np.array([[float(a % n == b % n) for b in range(i)] for a in range(o)])
    np.testing.assert_array_equal(got, want)


@given(groups=st.integers(1, 3), no=st.integers(1, 3), ni=st.integers(1, 3), kernel=kernels,
       policy=st.sampled_from(["tile", "min"]))
def test_groups_are_block_diagonal(groups, no, ni, kernel, policy):
    delta = dc.dirac_tensor((groups * no, ni, *kernel), groups=groups, policy=policy)
    single = dc.dirac_tensor((no, ni, *kernel), policy=policy)
    for g in range(groups):
        np.testing.assert_array_equal(delta[g * no:(g + 1) * no], single)


@given(o=st.integers(1, 6), i=st.integers(1, 6), kernel=kernels)
def test_min_policy_ones_only_on_leading_diagonal(o, i, kernel):
    delta = dc.dirac_tensor((o, i, *kernel), policy="min")
    centre = tuple(k // 2 for k in kernel)
    expected = np.zeros((o, i))
    expected[np.arange(min(o, i)), np.arange(min(o, i))] = 1
    np.testing.assert_array_equal(delta[(slice(None), slice(None), *centre)], expected)
    assert delta.sum() == min(o, i)


@pytest.mark.parametrize("shape,groups", [((4, 2, 3), 1), ((6, 2, 3, 3), 3), ((4, 4, 2, 3, 5), 2),
                                          ((5, 3, 4, 4), 1), ((2, 5, 2), 1)])
def test_min_policy_matches_torch_dirac_init(shape, groups):
    torch = pytest.importorskip("torch")
    t = torch.empty(shape, dtype=torch.float64)
    torch.nn.init.dirac_(t, groups=groups)
    np.testing.assert_array_equal(dc.dirac_tensor(shape, groups=groups, policy="min"), t.numpy())


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", np.float32])
def test_dtype_is_honoured(dtype):
    delta = dc.dirac_tensor((3, 3, 3), dtype=dtype)
    assert delta.dtype == np.dtype(dtype)
    assert delta.sum() == 3


@given(
    o_per_group=st.integers(1, 6),
    groups=st.integers(1, 3),
    ni=st.integers(1, 6),
    kernel=kernels,
    policy=st.sampled_from(["tile", "min"]),
)
def test_tap_indices_and_predicate_are_the_dirac_tensor(o_per_group, groups, ni, kernel, policy):
    """The index forms the training paths use instead of the tensor: the taps, the candidate
    grid with its validity, and the iota predicate all mark exactly the tensor's ones."""
    shape = (o_per_group * groups, ni, *kernel)
    geo = weight_geometry(shape, groups, policy)
    want = dc.dirac_tensor(shape, groups=groups, policy=policy).reshape(shape[0], -1) == 1
    got = np.zeros_like(want)
    got[tap_indices(geo)] = True
    np.testing.assert_array_equal(got, want)
    rows, cols = np.arange(shape[0])[:, None], np.arange(geo.length)[None, :]
    np.testing.assert_array_equal(is_tap(geo, rows, cols), want)
    cols, valid = tap_columns(geo)
    assert cols.shape == (shape[0], geo.taps_per_row) and cols.min() >= 0
    assert cols.max() < geo.length and valid.sum() == want.sum()


def test_geometry_centre_is_floor_half_of_each_kernel_dim():
    geo = weight_geometry((3, 2, 4, 5, 2), 1, "tile")
    # centre (2, 2, 1) of (4, 5, 2) in row-major order: 2*10 + 2*2 + 1
    assert (geo.spatial, geo.centre, geo.length, geo.n) == (40, 25, 80, 2)
    assert weight_geometry((6, 4), 3, "min").delta_args() == (1, 0, 2, 2, 1)
