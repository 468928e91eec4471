"""Which filesystem is an inbox on, and does it deliver file events? (``poll = "auto"``)

Native events (inotify, FSEvents) only report changes made *through this machine's kernel*:
a file another machine writes to an SMB/NFS share, or a FUSE backend changes by itself,
raises no event here. So an inbox on a network or FUSE filesystem is polled, and so is one
on a filesystem this module does not know (as coreutils' ``tail -f`` does). The type comes
from ``/proc/self/mountinfo`` (Linux): the longest mount point above the inbox's real path.
Where there is no mountinfo (macOS, Windows) the type is unknown too, but native events are
used there: polling every inbox on every Mac would be a silent slowdown for the common
case; ``poll = true`` is the answer for a share there (the log line says so).

Parsing and the decision are pure (:func:`parse_mountinfo`, :func:`filesystem_of`,
:func:`choose`); :func:`watch_mode` reads the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")

NETWORK_TYPES: frozenset[str] = frozenset(
    {
        "cifs", "smb3", "smbfs", "smb", "nfs", "nfs4", "ncpfs", "afpfs", "afs", "9p",
        "virtiofs", "ceph", "glusterfs", "lustre", "gpfs", "davfs", "vboxsf", "vmhgfs",
        "prl_fs", "coda", "ocfs2", "gfs2", "beegfs", "orangefs", "fuse", "sshfs",
    }
)  # fmt: skip
LOCAL_TYPES: frozenset[str] = frozenset(
    {
        "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "apfs", "hfs", "hfsplus", "tmpfs",
        "ramfs", "f2fs", "jfs", "reiserfs", "bcachefs", "vfat", "msdos", "exfat", "ntfs",
        "ntfs3", "fuseblk", "overlay", "ufs", "nilfs2", "udf", "iso9660", "squashfs",
        "devtmpfs", "erofs",
    }
)  # fmt: skip
"""``fuseblk`` is ntfs-3g/exfat-fuse on a local disk: its writes pass through this kernel."""


@dataclass(frozen=True)
class Mount:
    mount_point: str
    fstype: str
    source: str


_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of ``/proc/self/mountinfo`` text, in order; malformed lines are skipped.

    A line: ``36 35 98:0 /root /mnt/point rw,noatime master:1 - ext4 /dev/sda1 rw``; the
    optional fields before ``-`` vary in number."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            dash = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < dash + 3:
            continue
        mounts.append(Mount(_unescape(fields[4]), fields[dash + 1], _unescape(fields[dash + 2])))
    return mounts


def filesystem_of(real_path: str, mounts: Sequence[Mount]) -> Mount | None:
    """The mount ``real_path`` (already resolved) lives on: the longest mount point above
    it; the last one wins for a point mounted over (mountinfo lists mounts in order)."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point
        inside = real_path == point or real_path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = mount
    return best


def choose(mount: Mount | None) -> tuple[bool, str]:
    """(poll?, why) for an inbox on ``mount`` (None: its filesystem is unknown)."""
    if mount is None:
        return True, "filesystem type unknown (not in mountinfo): polling to be safe"
    kind = mount.fstype
    where = f"{kind} at {mount.mount_point}"
    if kind in NETWORK_TYPES or kind.startswith(("fuse.", "nfs")):
        return True, f"network or FUSE filesystem ({where}): other machines' writes raise no events"
    if kind in LOCAL_TYPES:
        return False, f"local filesystem ({where})"
    return True, f"filesystem type {kind!r} not known to deliver events ({where}): polling"


def watch_mode(path: Path, *, mountinfo: Path = MOUNTINFO) -> tuple[bool, str]:
    """(poll?, why) for the inbox folder ``path``, from the running system's mounts."""
    try:
        text = mountinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False, (
            "filesystem type cannot be read on this platform: native events "
            "(set poll = true for a network share)"
        )
    return choose(filesystem_of(os.path.realpath(path), parse_mountinfo(text)))
