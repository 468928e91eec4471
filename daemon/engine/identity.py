"""Which file a job is about: the one it saw and sent, not whatever is at its path now.

A job journals its input's size and mtime when it is seen and its sha256 when it is
prepared. :func:`is_same_file` compares the file now at the path with those: a different
size or mtime is another file (a new version dropped over the old one); equal ones are
ambiguous (a copy that kept the mtime) and the content hash decides. Hashes are cached in
memory by (path, device, inode, size, mtime), so a job that looks again, or a disposal
right after the prepare, does not read the whole file twice; the cache is only a cache.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

from daemon.jobs import Job

_HASH_CHUNK = 1024 * 1024
_CACHE_SIZE = 256

_Key = tuple[str, int, int, int, int]
_cache: OrderedDict[_Key, str] = OrderedDict()
_lock = threading.Lock()


def _key(path: Path, st: os.stat_result) -> _Key:
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def open_as_seen(job: Job) -> BinaryIO | None:
    """Open ``job``'s input if it is still the file the job saw (its size and mtime); None
    when another file is at the path now (a new version dropped over it: its own job).

    What is read from the handle is that file, even if another is put at the path later
    (a rename over it leaves this one open), so a hash or an upload from it is of the
    version checked. Raises ``OSError`` (``FileNotFoundError``: nothing there).
    """
    handle = open(job.source.path, "rb")
    st = os.fstat(handle.fileno())
    if st.st_size != job.size or st.st_mtime != job.mtime or not stat.S_ISREG(st.st_mode):
        handle.close()
        return None
    return handle


def sha256_of_handle(path: Path, handle: BinaryIO) -> str:
    """The sha256 of the open file ``handle`` (of ``path``), from its start; cached."""
    key = _key(path, os.fstat(handle.fileno()))
    with _lock:
        known = _cache.get(key)
    if known is not None:
        return known
    handle.seek(0)
    digest = hashlib.sha256()
    while chunk := handle.read(_HASH_CHUNK):
        digest.update(chunk)
    if _key(path, os.fstat(handle.fileno())) == key:  # not written to while it was read
        with _lock:
            _cache[key] = digest.hexdigest()
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    """The file's sha256 (from the cache while its inode, size and mtime are unchanged)."""
    with open(path, "rb") as handle:
        return sha256_of_handle(path, handle)


def is_same_file(job: Job) -> bool | None:
    """Whether the file at ``job``'s path is the one the job saw (``None``: nothing there).

    Size or mtime differ: another file. Both equal: the sha256 decides when the job has
    one (a job that failed before hashing has none: size and mtime are all it knows)."""
    path = job.source.path
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    if st.st_size != job.size or st.st_mtime != job.mtime:
        return False
    if job.sha256 is None:
        return True
    try:
        return sha256_of(path) == job.sha256
    except OSError:
        return False  # unreadable now: never dispose of a file we cannot tell apart


__all__ = ["is_same_file", "open_as_seen", "sha256_of", "sha256_of_handle"]
