"""Writing files so that nothing is lost: every write goes to a temporary beside its target and is renamed in.

A reader (another process, or this one after a crash) sees either the old file or the complete new one, never a
half-written one: the data goes to a temporary file in the same folder (so the rename stays on one file system),
is flushed to disk with ``fsync``, and :func:`os.replace` swaps it in. A directory (a checkpoint) is built in a
temporary folder and exchanged with the old one in one step (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two
renames, with the old folder kept until the new one is in place). On an error the temporary is removed and the old
file is untouched. Temporaries left by a killed process are named ``.NAME.tmp-PID-...`` and removed by the next
write of the same target once that process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

_TMP = ".tmp-"


def check_can_write(path: str | os.PathLike[str], overwrite: bool, flag: str = "overwrite=True") -> None:
    """Refuse to replace existing output unless asked to.

    Args:
        path: The file or folder about to be written.
        overwrite: Whether replacing it was asked for.
        flag: How the caller asks for it, named in the error (``"--overwrite"`` on the command line).

    Raises:
        FileExistsError: ``path`` is a file, or a non-empty folder, and ``overwrite`` is False.
    """
    path = Path(path)
    if overwrite or not os.path.lexists(path):
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    kind = "a folder that is not empty" if path.is_dir() else "a file"
    raise FileExistsError(f"{path} already exists ({kind}); pass {flag} to replace it")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename; returns the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename; returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that takes a path (e.g. ``safetensors.torch.save_file``).

    On a normal exit the temporary is synced and renamed over ``path``; on an exception it is removed and ``path``
    is left as it was. The parent folder is created.

    Examples:
        >>> with atomic_path("stats.safetensors") as tmp:  # doctest: +SKIP
        ...     save_file(tensors, str(tmp))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path)
    tmp = _temporary(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill (e.g. with ``save_pretrained``), swapped in when complete.

    Until the swap, ``path`` keeps its previous content, whole; the swap itself is one rename (an exchange
    where the platform has one), so ``path`` always holds either the old or the new folder. On an exception the
    temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path)
    tmp = _temporary(path)
    tmp.mkdir()
    try:
        yield tmp
        for root, _, files in os.walk(tmp):
            for name in files:
                _fsync_file(Path(root) / name)
            _fsync_dir(Path(root))
        if path.is_dir() and not path.is_symlink():
            if not _exchange(tmp, path):  # no atomic exchange here: move the old folder aside, then the new in
                old = _temporary(path)
                os.rename(path, old)
                try:
                    os.rename(tmp, path)
                except BaseException:
                    os.rename(old, path)
                    raise
                tmp = old
        else:
            os.replace(tmp, path)
            tmp = None
        _fsync_dir(path.parent)
    finally:
        if tmp is not None:  # the old folder after a swap, or the unfinished new one after an error
            shutil.rmtree(tmp, ignore_errors=True)


def _temporary(path: Path) -> Path:
    return path.parent / f".{path.name}{_TMP}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}"


def _sweep(path: Path) -> None:
    """Remove temporaries of ``path`` left by processes that no longer run (killed mid-write)."""
    prefix = f".{path.name}{_TMP}"
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            if not entry.name.startswith(prefix):
                continue
            pid = entry.name[len(prefix):].split("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        entry.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without renameat2 (glibc < 2.28, musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: the file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Persist a rename (some platforms and file systems cannot open or sync a folder; then the OS decides)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
