"""Atomic file writes, announced to whoever watches the folder before they happen.

A reader of a file written here sees the old content or the new one, never half: the bytes
go to a temporary file ``.NAME.*.tmp`` next to the target, are flushed to disk and renamed
over it. A folder can be watched (:func:`watch`): every write into it, by this module or by
another writer that calls :func:`announce_write`, is reported first. :mod:`.rundir` watches the
run folders this process holds, to record which files each run wrote.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

# folder (resolved) -> callback(file name), for the folders being watched
_WATCHERS: dict[Path, Callable[[str], None]] = {}


def watch(folder: str | os.PathLike, callback: Callable[[str], None]) -> None:
    """Call ``callback(name)`` before each announced write of a file ``name`` in ``folder``."""
    _WATCHERS[Path(folder).resolve()] = callback


def unwatch(folder: str | os.PathLike) -> None:
    """Stop watching ``folder`` (idempotent)."""
    _WATCHERS.pop(Path(folder).resolve(), None)


def announce_write(path: str | os.PathLike) -> None:
    """Tell the watcher of ``path``'s folder, if any, that ``path`` is about to be written."""
    path = Path(path)
    callback = _WATCHERS.get(path.parent.resolve())
    if callback is not None:
        callback(path.name)


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it where the system says
    it (Linux's ``/proc/self/status``), else by setting it and putting it back."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The write goes to a temporary file ``.NAME.*.tmp`` in the same folder, is flushed to disk,
    then ``os.replace``-d over ``path``; it is announced first (:func:`announce_write`). The
    file gets the mode a plain ``open()`` would give it (``0666`` less the umask). An
    ``OSError`` (a full disk, say) leaves no temporary file behind and names ``path``.

    Examples
    --------
    >>> import tempfile
    >>> atomic_write_bytes(tempfile.mkdtemp() + "/note.txt", b"done").read_bytes()
    b'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    announce_write(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes it 0600; a plain open() honours the umask
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
