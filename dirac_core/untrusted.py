"""Input from outside, treated as untrusted in one place: bounded reads, strict JSON, typed fields.

Every file the project reads that a user, a download or another program could have written
(``config.json``, ``summary.json``, ``metrics.jsonl``, run markers, the architecture stored in a
safetensors file, xfail files, ...) is read and parsed here before anything is built from it:

- **bounded reads** (:func:`read_bytes`, :func:`open_regular`): only regular files; a FIFO, a
  device (``/dev/zero``), a directory or a sparse file is refused before a byte is read, and a
  file larger than the caller's cap is refused from its size (and again while reading, for
  files whose size the system does not report);
- **strict JSON** (:func:`parse_json`, :func:`read_json`, :func:`read_json_lines`): no ``NaN``
  or infinite numbers, at most :data:`MAX_DEPTH` levels of nesting, integers of at most
  4300 digits;
- **typed fields** (:func:`from_dict`, :func:`require`): a dict becomes a dataclass only when
  every key is a field, every required field is there and every value has the field's
  annotated type (``int`` never accepts ``True``, ``float`` accepts ints but not NaN).

Everything refused raises :class:`UntrustedInputError` (a ``ValueError``) whose one-line
message names the file (or source), the field, the value given and what is accepted; a
missing file stays a ``FileNotFoundError`` naming it.

Why a module of ours rather than pydantic or msgspec: the schemas are few and small (flat
dataclasses that already exist), while most of what makes input safe is not a schema question
(refusing FIFOs, devices and sparse files, capping sizes, checking tensors against the bytes a
file stores, which the torch half in ``dirac_torch.untrusted`` does); both libraries would add
a compiled dependency to the NumPy-only core and the conformance package and still need this
module around them, and neither raises ``ValueError`` subclasses (pydantic's
``ValidationError`` and msgspec's ``ValidationError`` would have to be translated at every
door). The dataclasses stay the single definition of each record.

Examples
--------
>>> import dataclasses
>>> @dataclasses.dataclass
... class Point:
...     x: int
...     label: str = ""
>>> from_dict(Point, parse_json('{"x": 3}', "point.json"), "point.json")
Point(x=3, label='')
>>> from_dict(Point, {"x": "3"}, "point.json")
Traceback (most recent call last):
...
dirac_core.untrusted.UntrustedInputError: point.json: x='3' is a string; accepted: an int
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

# caps of the files read whole (bytes): a run's JSON records stay far below these
JSON_LIMIT = 16 * 2**20
JSONL_LIMIT = 64 * 2**20
MAX_DEPTH = 32  # nesting of JSON values; the deepest record the project writes has 4
# a file bigger than this whose disk blocks cover under half its size is refused as sparse
SPARSE_MIN_SIZE = 2**20

T = TypeVar("T")


class UntrustedInputError(ValueError):
    """A file or value from outside that is refused; the message names the source, the field
    and what is accepted."""


def _describe(mode: int) -> str | None:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), None)


def check_regular(path: str | os.PathLike[str], what: str,
                  limit: int | None = None) -> os.stat_result:
    """Refuse ``path`` unless it is a regular, non-sparse file of at most ``limit`` bytes.

    Parameters
    ----------
    path
        The file.
    what
        What the file is, for the message (``"config.json"``, ``"--xfails file"``).
    limit
        The largest size accepted, in bytes; ``None``: no cap.

    Returns
    -------
    os.stat_result
        The file's status (following symbolic links).

    Raises
    ------
    FileNotFoundError
        Nothing at ``path`` (a dangling symbolic link included).
    UntrustedInputError
        A directory, FIFO, device or socket; a sparse file; a file over ``limit``.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist") from None
    except OSError as exc:
        raise UntrustedInputError(f"{what} {str(path)!r} cannot be read: "
                                  f"{exc.strerror or exc}") from None
    _check_status(info, path, what, limit)
    return info


def _check_status(info: os.stat_result, path: str | os.PathLike[str], what: str,
                  limit: int | None) -> None:
    kind = _describe(info.st_mode)
    if kind is not None:
        raise UntrustedInputError(f"{what} {str(path)!r} is {kind}, not a regular file")
    if limit is not None and info.st_size > limit:
        raise UntrustedInputError(f"{what} {str(path)!r} is {info.st_size:,} bytes; at most "
                                  f"{limit:,} are read")
    blocks = getattr(info, "st_blocks", None)
    if blocks is not None and info.st_size > SPARSE_MIN_SIZE and blocks * 512 < info.st_size // 2:
        raise UntrustedInputError(
            f"{what} {str(path)!r} is a sparse file ({info.st_size:,} bytes, "
            f"{blocks * 512:,} of them on disk); refused")


def open_regular(path: str | os.PathLike[str], what: str, limit: int | None = None) -> BinaryIO:
    """Open ``path`` for reading in binary mode after :func:`check_regular`'s checks, made on
    the opened file itself (so a file swapped in between is caught, and opening a FIFO never
    blocks).

    Raises
    ------
    FileNotFoundError, UntrustedInputError
        As :func:`check_regular`.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise UntrustedInputError(f"{what} {str(path)!r} is a directory, not a regular "
                                  "file") from None
    except OSError as exc:
        raise UntrustedInputError(f"{what} {str(path)!r} cannot be read: "
                                  f"{exc.strerror or exc}") from None
    try:
        _check_status(os.fstat(fd), path, what, limit)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """The content of the regular file ``path``, at most ``limit`` bytes.

    Raises
    ------
    FileNotFoundError, UntrustedInputError
        As :func:`check_regular`; also a file that grows past ``limit`` while it is read.
    """
    with open_regular(path, what, limit) as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise UntrustedInputError(f"{what} {str(path)!r} holds more than {limit:,} bytes; "
                                  "refused")
    return data


def read_text(path: str | os.PathLike[str], what: str, limit: int) -> str:
    """:func:`read_bytes` decoded as UTF-8 (an undecodable file is an
    :class:`UntrustedInputError`)."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UntrustedInputError(f"{what} {str(path)!r} is not UTF-8 text (byte "
                                  f"{exc.start}): {exc.reason}") from None


def _strict_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` is 1), computed without
    recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict)
                                                  else item))
    return deepest


def parse_json(text: str | bytes, source: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse strict JSON from ``source`` (a file name, ``file:line``, ...).

    Raises
    ------
    UntrustedInputError
        Not JSON, a ``NaN``/``Infinity``/out-of-range number, an integer of more than 4300
        digits, or more than ``max_depth`` levels of nesting.
    """
    too_deep = f"{source}: nested deeper than {max_depth} levels"
    try:
        value = json.loads(text, parse_float=_strict_float, parse_constant=_refuse_constant)
    except RecursionError:
        raise UntrustedInputError(too_deep) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UntrustedInputError(f"{source}: not valid JSON "
                                  f"({' '.join(str(exc).split())})") from None
    if depth(value) > max_depth:
        raise UntrustedInputError(too_deep)
    return value


def read_json(path: str | os.PathLike[str], what: str, limit: int = JSON_LIMIT,
              max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in the file ``path`` (bounded read, then :func:`parse_json`).

    Raises
    ------
    FileNotFoundError, UntrustedInputError
        As :func:`read_text` and :func:`parse_json`.
    """
    return parse_json(read_text(path, what, limit), f"{what} {str(path)!r}", max_depth)


def read_json_lines(path: str | os.PathLike[str], what: str, limit: int = JSONL_LIMIT,
                    max_depth: int = MAX_DEPTH) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of the JSON-lines file ``path``
    (lines starting with ``#`` are comments).

    Raises
    ------
    FileNotFoundError, UntrustedInputError
        As :func:`read_text`; a line as :func:`parse_json` (the message gives ``file:line``).
    """
    text = read_text(path, what, limit)
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, parse_json(stripped, f"{what} {path!s}:{number}", max_depth)


# -- typed fields -------------------------------------------------------------------------------

_ACCEPTED = {"int": "an int", "float": "a finite number", "str": "a string", "bool": "true or "
             "false", "None": "null", "tuple[int, ...]": "a list of ints",
             "list[str]": "a list of strings", "list[Any]": "a list",
             "dict[str, Any]": "an object"}


def _fits(value: Any, kind: str) -> tuple[bool, Any]:
    """Whether ``value`` has the annotated type ``kind``, and the value converted to it."""
    if kind == "None":
        return value is None, value
    if kind == "bool":
        return isinstance(value, bool), value
    if kind == "int":
        return type(value) is int, value
    if kind == "float":
        ok = type(value) in (int, float) and math.isfinite(value)
        return ok, value
    if kind == "str":
        return isinstance(value, str), value
    if kind == "tuple[int, ...]":
        ok = isinstance(value, list | tuple) and all(type(v) is int for v in value)
        return ok, tuple(value) if ok else value
    if kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return ok, list(value) if ok else value
    if kind == "list[Any]":
        return isinstance(value, list), value
    if kind in ("dict[str, Any]", "Any"):
        return kind == "Any" or isinstance(value, dict), value
    raise TypeError(f"from_dict does not know the annotation {kind!r}")


_NAMES = {type(None): "null", dict: "object", list: "list", str: "string", bool: "bool",
          int: "int", float: "float"}


def type_name(value: Any) -> str:
    """What ``value`` is, in JSON's words where it is a JSON value (``null``, ``object``)."""
    return _NAMES.get(type(value), type(value).__name__)


def check_type(value: Any, annotation: str, source: str, name: str) -> Any:
    """``value`` converted to the type an annotation string names (``"int"``, ``"float | None"``,
    ``"tuple[int, ...]"``, ...).

    Raises
    ------
    UntrustedInputError
        ``value`` is of none of the annotation's types.
    """
    kinds = [k.strip() for k in annotation.split("|")]
    for kind in kinds:
        ok, converted = _fits(value, kind)
        if ok:
            return converted
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    accepted = " or ".join(_ACCEPTED.get(k, k) for k in kinds)
    raise UntrustedInputError(f"{source}: {name}={shown} is {_article(type_name(value))}; "
                              f"accepted: {accepted}")


def _article(name: str) -> str:
    return name if name == "null" else ("an " if name[0] in "aeiou" else "a ") + name


def require(value: Any, annotation: str, source: str, name: str = "the value") -> Any:
    """:func:`check_type` for a single value (a whole record or one of its entries)."""
    return check_type(value, annotation, source, name)


def from_dict(cls: type[T], data: Any, source: str, *, rename: dict[str, str] | None = None) -> T:
    """The dataclass ``cls`` built from the untrusted mapping ``data``.

    Every key must be a field of ``cls`` (``rename`` maps old names to fields first), every
    field without a default must be present, and each value must have its field's annotated
    type. The dataclass's own ``__post_init__`` checks (ranges) then run; a ``ValueError`` or
    ``TypeError`` they raise is re-raised as :class:`UntrustedInputError` naming ``source``.

    Raises
    ------
    UntrustedInputError
        ``data`` is not an object; an unknown key; a missing field; a value of the wrong type
        or out of range.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"cls must be a dataclass, got {cls!r}")
    if not isinstance(data, dict):
        raise UntrustedInputError(f"{source}: expected a JSON object, got {type_name(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values = {str((rename or {}).get(k, k)): v for k, v in data.items()}
    unknown = sorted(str(k) for k in set(values) - set(fields))
    if unknown:
        raise UntrustedInputError(f"{source}: unknown fields {unknown}; accepted: "
                                  f"{sorted(fields)}")
    missing = sorted(name for name, f in fields.items() if name not in values
                     and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise UntrustedInputError(f"{source}: lacks the fields {missing}")
    checked = {name: check_type(value, str(fields[name].type), source, name)
               for name, value in values.items()}
    try:
        return cls(**checked)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, UntrustedInputError):
            raise
        raise UntrustedInputError(f"{source}: {' '.join(str(exc).split())}") from None


def positive_ints(data: Any, names: tuple[str, ...], source: str,
                  limit: int = 2**31) -> None:
    """Refuse unless each of ``names`` in the object ``data`` is an int in ``[1, limit]``."""
    for name in names:
        value = data.get(name) if isinstance(data, dict) else None
        if type(value) is not int or not 1 <= value <= limit:
            raise UntrustedInputError(f"{source}: {name}={value!r}; accepted: an int in "
                                      f"[1, {limit}]")


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as messages quote it."""
    return repr(str(Path(path)))
