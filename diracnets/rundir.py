"""Run folders: one folder belongs to one run, and one process at a time.

A run folder carries a marker file, ``.diracnets-run.json``, written when the run claims the
folder: ``{"format", "run_id", "kind", "owner", "files"}``. ``run_id`` is a random token that
every checkpoint of the run records too, so a checkpoint is resumed only in the folder of the
run that wrote it (a copied or moved-in checkpoint does not match the folder's marker), and a
folder is recognised as a run's by that token, never by the names of the files in it.
``files`` lists every file the run wrote there: replacing a run (``overwrite``) removes exactly
those and leaves anything else in the folder alone.

While a run is active it holds an exclusive lock on ``.diracnets-run.lock`` in its folder
(:mod:`filelock`; released when the process ends, however it ends), so a second process
that tries to use the folder is refused at once.

Rules (``docs/training.md``): a new run goes into a folder that does not exist or is empty; a
folder that holds a run is replaced only with ``overwrite``; a folder that is neither (the
user's files, or a marker that cannot be read) is never written to.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dirac_core.untrusted import read_json

from .atomic import atomic_write_bytes, unwatch, watch

MARKER = ".diracnets-run.json"
LOCK = ".diracnets-run.lock"
FORMAT = "diracnets-run"
MARKER_LIMIT = 2**20  # a marker lists file names; a run writes a few dozen
_OWN = (MARKER, LOCK)


class RunFolderError(ValueError):
    """A run folder that may not be used as asked (foreign, busy, not a folder)."""


class RunFolderBusy(RunFolderError):
    """Another process holds the run folder's lock."""


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file of an interrupted atomic write (``.NAME.*.tmp``)."""
    return name.startswith(".") and (name.endswith(".tmp") or name.endswith(".tmp.png"))


@dataclass
class Marker:
    """The content of a folder's marker file."""

    run_id: str
    kind: str = "train"
    owner: str | None = None
    files: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        value = {"format": FORMAT, "run_id": self.run_id, "kind": self.kind,
                 "owner": self.owner, "files": sorted(set(self.files))}
        return (json.dumps(value, indent=2) + "\n").encode()


def _plain_name(name: Any) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and "\0" not in name)


def read_marker(folder: str | os.PathLike) -> Marker | None:
    """The folder's marker, or ``None`` when it has none or one that is not a valid marker."""
    path = Path(folder) / MARKER
    try:
        value = read_json(path, "run marker", MARKER_LIMIT)
    except (OSError, ValueError):
        return None
    if not (isinstance(value, dict) and value.get("format") == FORMAT):
        return None
    run_id, kind, owner, files = (value.get(k) for k in ("run_id", "kind", "owner", "files"))
    if not (isinstance(run_id, str) and run_id and isinstance(kind, str)
            and (owner is None or isinstance(owner, str))
            and isinstance(files, list) and all(_plain_name(f) for f in files)):
        return None
    return Marker(run_id, kind, owner, list(files))


def foreign_entries(folder: Path) -> list[str]:
    """Names in ``folder`` other than the lock file (what makes a folder "not empty")."""
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK)


def check_location(folder: Path, option: str = "--out") -> None:
    """Refuse an empty path, a path that is a file, and a path below a file."""
    if str(folder) in ("", "."):
        raise RunFolderError(f"{option} {str(folder)!r}: give a run folder, not the current "
                             "directory")
    for part in (folder, *folder.parents):
        if part.is_symlink() and not part.exists():
            raise RunFolderError(f"{option} {str(folder)!r}: {str(part)!r} is a symbolic link "
                                 f"to {os.readlink(part)!r}, which does not exist; create its "
                                 "target or pick another location")
        if part.exists() and not part.is_dir():
            raise RunFolderError(f"{option} {str(folder)!r}: {str(part)!r} is a file, not a "
                                 "folder; pick another location")


def check_new(folder: str | os.PathLike, *, overwrite: bool = False, kind: str = "train",
              owner: str | None = None, option: str = "--out") -> Marker | None:
    """Raise :class:`RunFolderError` unless a new run may start in ``folder`` (and
    :class:`RunFolderBusy` when another process holds it).

    Returns the marker of the run it would replace (``overwrite``), else ``None``.
    """
    folder = Path(folder)
    if folder.is_dir() and read_marker(folder) is not None:
        _probe_lock(folder, option)
    return _new_run_rules(folder, overwrite, kind, owner, option)


def _new_run_rules(folder: Path, overwrite: bool, kind: str, owner: str | None,
                   option: str) -> Marker | None:
    check_location(folder, option)
    if not folder.exists() or not foreign_entries(folder):
        return None
    marker = read_marker(folder)
    if marker is None:
        raise RunFolderError(
            f"{option} {str(folder)!r} is not empty and holds no diracnets run; nothing is "
            "written there (not even with --overwrite): pick a new or empty folder")
    if owner is not None and marker.owner != owner:
        raise RunFolderError(f"{str(folder)!r} holds a run that is not part of this "
                             "experiment; move it away or pick another --out")
    if not overwrite:
        hint = f"continue it with --resume {folder / 'last.pt'}, " if marker.kind == "train" \
            else ""
        raise RunFolderError(f"{option} {str(folder)!r} already holds a run; {hint}pick "
                             "another folder, or pass --overwrite to replace it")
    if marker.kind != kind:
        raise RunFolderError(f"{option} {str(folder)!r} holds a {marker.kind} run, not a "
                             f"{kind} run; pick another folder")
    return marker


def check_resume(folder: str | os.PathLike, run_id: Any, option: str = "--resume") -> Marker:
    """Raise :class:`RunFolderError` unless ``folder`` is the run folder of ``run_id`` (and
    :class:`RunFolderBusy` when another process holds it)."""
    folder = Path(folder)
    if read_marker(folder) is not None:
        _probe_lock(folder, option)
    return _resume_rules(folder, run_id)


def _resume_rules(folder: Path, run_id: Any) -> Marker:
    marker = read_marker(folder)
    if not isinstance(run_id, str) or marker is None or marker.run_id != run_id:
        raise RunFolderError(
            f"the checkpoint's folder {str(folder)!r} is not the folder of the run that wrote "
            "it (its run marker is missing or names another run); a run is resumed only in "
            "its own folder: move or copy the whole run folder, not just the checkpoint")
    return marker


class RunFolder:
    """A claimed run folder: locked, marked, and recording the files written into it.

    Use :meth:`new` (a fresh run), :meth:`reopen` (resume a run) or :meth:`continued`
    (an experiment folder that may already hold this experiment); :meth:`release` (or leaving
    a ``with`` block) gives the lock back.

    Examples
    --------
    >>> import tempfile
    >>> with RunFolder.new(tempfile.mkdtemp() + "/run") as run:
    ...     sorted(p.name for p in run.path.iterdir())
    ['.diracnets-run.json', '.diracnets-run.lock']
    """

    def __init__(self, path: Path, marker: Marker, lock: Any) -> None:
        self.path, self.marker, self._lock = path, marker, lock
        watch(path, self.record)  # every file written into the folder is the run's

    @property
    def run_id(self) -> str:
        return self.marker.run_id

    @classmethod
    def new(cls, folder: str | os.PathLike, *, overwrite: bool = False, kind: str = "train",
            owner: str | None = None, option: str = "--out") -> RunFolder:
        """Claim ``folder`` for a new run (see :func:`check_new`; ``overwrite`` removes the
        files the earlier run wrote, nothing else)."""
        folder = Path(folder)
        check_new(folder, overwrite=overwrite, kind=kind, owner=owner, option=option)

        def start() -> Marker:
            old = _new_run_rules(folder, overwrite, kind, owner, option)
            for name in old.files if old else ():
                (folder / name).unlink(missing_ok=True)
            marker = Marker(secrets.token_hex(16), kind, owner)
            _write_marker(folder, marker)
            return marker

        return cls._claim(folder, option, start)

    @classmethod
    def reopen(cls, folder: str | os.PathLike, run_id: Any,
               option: str = "--resume") -> RunFolder:
        """Claim the folder of the run ``run_id`` to continue it (see :func:`check_resume`)."""
        folder = Path(folder)
        check_resume(folder, run_id, option)
        return cls._claim(folder, option, lambda: _resume_rules(folder, run_id))

    @classmethod
    def existing(cls, folder: str | os.PathLike, option: str) -> RunFolder:
        """Claim a folder that holds a run, whichever (to add files to it: ``plot``)."""
        marker = read_marker(folder)
        if marker is None:
            raise RunFolderError(f"{option} {str(folder)!r} is not a diracnets run folder (it "
                                 "has no run marker); nothing is written there")
        return cls.reopen(folder, marker.run_id, option)

    @classmethod
    def continued(cls, folder: str | os.PathLike, kind: str,
                  option: str = "--out") -> RunFolder:
        """Claim ``folder`` for a ``kind`` run that continues there when the folder already
        holds one (the depth experiment), or starts there when it is new or empty."""
        folder = Path(folder)
        marker = read_marker(folder) if folder.is_dir() else None
        if marker is None or marker.kind != kind:
            return cls.new(folder, kind=kind, option=option)

        def same_kind() -> Marker:
            marker = read_marker(folder)
            if marker is None or marker.kind != kind:
                raise RunFolderError(f"{option} {str(folder)!r} changed while it was opened")
            return marker

        return cls._claim(folder, option, same_kind)

    @classmethod
    def _claim(cls, folder: Path, option: str, decide: Callable[[], Marker]) -> RunFolder:
        """Lock ``folder``, apply the rules again under the lock (``decide`` returns the
        marker), remove leftovers of killed writes; release the lock if anything fails."""
        lock = _lock(folder, option)
        try:
            marker = decide()
            _remove_temporaries(folder)
        except BaseException:
            lock.release()
            raise
        return cls(folder, marker, lock)

    @property
    def held(self) -> bool:
        """Whether this process still holds the folder (not yet released)."""
        return bool(self._lock.is_locked)

    def record(self, name: str) -> None:
        """Note that the run writes ``name`` in its folder (before it is written).

        Raises
        ------
        RunFolderError
            ``name`` exists and the run did not write it (a file of the user's): it is never
            written over, nor listed as the run's (which ``overwrite`` would delete).
        """
        if name in _OWN or is_temporary(name) or name in self.marker.files:
            return
        if os.path.lexists(self.path / name):
            raise RunFolderError(f"{str(self.path / name)!r} was not written by this run; it is "
                                 "left alone and nothing is written over it: move it away")
        self.marker.files.append(name)
        _write_marker(self.path, self.marker)

    def release(self) -> None:
        """Give the folder's lock back (idempotent)."""
        unwatch(self.path)
        self._lock.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _probe_lock(folder: Path, option: str) -> None:
    """Raise :class:`RunFolderBusy` now, before any work, when another process holds the
    run folder (the claim takes the lock for good later)."""
    _lock(folder, option).release()


def _lock(folder: Path, option: str) -> Any:
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderBusy(f"{option} {str(folder)!r} is in use by another diracnets process "
                            "(its lock is held); wait for it to finish or pick another "
                            "folder") from None
    return lock


def _write_marker(folder: Path, marker: Marker) -> None:
    atomic_write_bytes(folder / MARKER, marker.to_json())


def _remove_temporaries(folder: Path) -> None:
    """Delete what an interrupted atomic write left behind (only the lock holder may)."""
    for path in folder.iterdir():
        if is_temporary(path.name) and path.is_file():
            path.unlink(missing_ok=True)
