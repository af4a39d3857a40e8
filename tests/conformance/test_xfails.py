"""The xfails file format."""

from __future__ import annotations

import json

import pytest
from fuzz_inputs import MUTATIONS, replace
from hypothesis import HealthCheck, given, settings

from dirac_conformance.xfails import Xfail, find_xfail, load_xfails


def test_load_and_match(tmp_path) -> None:
    path = tmp_path / "known.jsonl"
    path.write_text(
        "# known failures\n\n"
        '{"op": "conv_vjp", "dtype": "bfloat16", "reason": "gh-1"}\n'
        '{"backend": "torch", "op": "ncrelu", "reason": "gh-2", "strict": false}\n'
    )
    xfails = load_xfails(path)
    assert xfails == [
        Xfail("conv_vjp", "gh-1", dtype="bfloat16"),
        Xfail("ncrelu", "gh-2", backend="torch", strict=False),
    ]
    assert find_xfail(xfails, "cupy", "conv_vjp", "bfloat16") is xfails[0]
    assert find_xfail(xfails, "cupy", "conv_vjp", "float32") is None
    assert find_xfail(xfails, "torch@cuda", "ncrelu", "float16") is xfails[1]
    assert find_xfail(xfails, "numpy", "ncrelu", "float16") is None
    assert load_xfails(None) == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"op": "conv"}', r"lacks the fields \['reason'\]"),
        ('{"op": "convolve", "reason": "x"}', "op='convolve' is not a check"),
        ('{"op": "conv", "reason": "x", "dtype": "int8"}', "dtype='int8' is not one of"),
        ('{"op": "conv", "reason": "x", "when": 1}', r"unknown fields \['when'\]"),
        ('{"op": "conv", "reason": "x", "strict": "yes"}',
         "strict='yes' is a string; accepted: true or false"),
    ],
)
def test_malformed_lines_name_the_file_and_line(tmp_path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("# header\n" + line + "\n")
    with pytest.raises(ValueError, match=f"bad.jsonl:2: {message}"):
        load_xfails(path)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MUTATIONS)
def test_fuzz_xfails_lines_raise_only_value_error(tmp_path, mutation) -> None:
    junk, where = mutation
    entry = {"op": "conv", "reason": "x", "dtype": "float32", "backend": "numpy",
             "strict": False}
    path = tmp_path / "fuzz.jsonl"
    path.write_text(json.dumps(replace(entry, where, junk)) + "\n")
    try:
        entries = load_xfails(path)
    except ValueError as exc:
        assert "fuzz.jsonl" in str(exc) and "\n" not in str(exc)
    else:
        assert all(isinstance(e.op, str) and isinstance(e.strict, bool) for e in entries)
