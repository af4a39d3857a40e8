"""The untrusted-input layer: bounded reads, strict JSON, typed fields (dirac_core.untrusted)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os

import pytest
from fuzz_inputs import MUTATIONS, replace
from hypothesis import given, settings
from hypothesis import strategies as st

from dirac_core import nets
from dirac_core.untrusted import (
    MAX_DEPTH,
    UntrustedInputError,
    from_dict,
    parse_json,
    read_bytes,
    read_json,
    read_json_lines,
)

FAST = settings(max_examples=40, deadline=None)


def test_special_files_are_refused_before_reading(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # reading it would block forever: refused from its type
    with pytest.raises(UntrustedInputError, match="is a FIFO"):
        read_json(fifo, "config.json")
    if os.path.exists("/dev/zero"):  # endless: refused from its type, not read
        with pytest.raises(UntrustedInputError, match="is a character device"):
            read_bytes("/dev/zero", "--xfails file", 1024)
    with pytest.raises(UntrustedInputError, match="is a directory"):
        read_json(tmp_path, "config.json")
    with pytest.raises(FileNotFoundError, match=r"config.json .* does not exist"):
        read_json(tmp_path / "missing", "config.json")
    dangling = tmp_path / "link"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_json(dangling, "config.json")


def test_size_caps_and_sparse_files(tmp_path):
    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 600 + "0]")
    with pytest.raises(UntrustedInputError, match="at most 1,000 are read"):
        read_json(big, "config.json", limit=1000)
    sparse = tmp_path / "sparse.json"
    with open(sparse, "wb") as file:  # 3 GB that are not on disk
        file.truncate(3 * 2**30)
    if os.stat(sparse).st_blocks * 512 >= 2**30:
        pytest.skip("this filesystem does not make sparse files")
    with pytest.raises(UntrustedInputError, match="sparse file"):
        read_bytes(sparse, "config.json", 2**40)


def test_strict_json():
    with pytest.raises(UntrustedInputError, match="nested deeper than 32"):
        parse_json("[" * 33 + "]" * 33, "metrics.jsonl:1")
    with pytest.raises(UntrustedInputError, match="nested deeper"):
        parse_json("[" * 100_000 + "]" * 100_000, "metrics.jsonl:1")
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, "x") is not None
    for text in ("NaN", "[Infinity]", "1e999", "-1e400", "1" * 5000, "{", "\"\\ud800"):
        with pytest.raises(UntrustedInputError, match=r"x\.json: "):
            parse_json(text, "x.json")


def test_json_lines_name_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n\n# note\n{"a": [[[[' + "[" * 40 + "\n")
    lines = read_json_lines(path, "metrics.jsonl")
    assert next(lines) == (1, {"a": 1})
    with pytest.raises(UntrustedInputError, match=r"m.jsonl:4: "):
        next(lines)


@dataclasses.dataclass
class _Record:
    count: int
    scale: float = 1.0
    name: str | None = None
    sizes: tuple[int, ...] = ()
    flag: bool = False

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")


def test_from_dict_types_and_ranges():
    assert from_dict(_Record, {"count": 2, "sizes": [1, 2]}, "r").sizes == (1, 2)
    bad = [({"count": True}, "count=True is a bool; accepted: an int"),
           ({"count": 1.0}, "accepted: an int"),
           ({"count": 1, "scale": float("nan")}, "accepted: a finite number"),
           ({"count": 1, "name": 3}, "accepted: a string or null"),
           ({"count": 1, "sizes": [1, "2"]}, "accepted: a list of ints"),
           ({"count": 1, "flag": 0}, "accepted: true or false"),
           ({"count": -1}, "r: count must be >= 0"),
           ({}, r"lacks the fields \['count'\]"),
           ({"count": 1, "colour": 2}, r"unknown fields \['colour'\]"),
           ([1], "expected a JSON object, got list"),
           (None, "expected a JSON object, got null")]
    for data, message in bad:
        with pytest.raises(UntrustedInputError, match=message):
            from_dict(_Record, data, "r")


SPEC = nets.spec_to_dict(nets.diracnet_cifar(10))


@FAST
@given(MUTATIONS)
def test_fuzz_spec_from_dict_raises_only_untrusted_input_error(mutation):
    junk, path = mutation
    data = json.loads(json.dumps(replace(SPEC, path, junk), allow_nan=True))
    try:
        spec = nets.spec_from_dict(data)
    except UntrustedInputError:
        return
    assert nets.count_parameters(spec) >= 0  # whatever is accepted has sizes that add up


@FAST
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzz_parse_json_raises_only_untrusted_input_error(data):
    with contextlib.suppress(UntrustedInputError):
        parse_json(data, "fuzz")
