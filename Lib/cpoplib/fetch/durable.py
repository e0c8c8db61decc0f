"""Durable file operations of the fetcher: fsync of files and directories,
syncfs(2) of a filesystem, atomic replacement of a file, directory
creation that makes the new names durable.

Every sync the fetcher does goes through here and names its site (see
SYNC_SITES): the crash-state exploration (tests/crash/) turns each one
off in turn, through faults.sync_skipped(), and shows that some crash then
loses or duplicates mail.
"""
import os
import sys
import threading

from .. import _cpoplib
from . import faults

# What each sync makes durable.  A batch is synced either by one syncfs
# (--sync fs) or by an fsync of each staged file and then of the staging
# directory (--sync file).
SYNC_SITES = {
    "mkdir-parent": "the parent of each directory the fetcher creates, "
                    "so the new name survives",
    "maildir-dirs": "a new Maildir and its parent, once made",
    "batch-syncfs": "the destination's filesystem after a batch is "
                    "written (--sync fs)",
    "batch-files": "each staged file of a batch (--sync file)",
    "batch-staging-dir": "the staging directory after a batch, so the "
                         "staged names survive (--sync file)",
    "publish-dirs": "the final and staging directories after a batch's "
                    "renames",
    "recover-dirs": "the directories after a killed run's renames are "
                    "finished and its orphans removed",
    "state-file": "the state file after it is written",
    "state-dir": "the state's directory after the file is replaced",
    "mbox-file": "the mbox after a batch is appended",
    "mbox-truncate": "the mbox after a killed run's uncommitted tail is cut",
    "mbox-dir": "the directory of a newly created mbox",
    "mbox-lock-dir": "the mbox's directory after its dot lock is removed, "
                     "before the state says so",
}


def fsync(fd, site):
    assert site in SYNC_SITES, site
    if not faults.sync_skipped(site):
        os.fsync(fd)


def fsync_dir(path, site):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd, site)
    finally:
        os.close(fd)


def syncfs(fd, site):
    assert site in SYNC_SITES, site
    if not faults.sync_skipped(site):
        _cpoplib._syncfs(fd)


def linux_at_least(major, minor):
    if not sys.platform.startswith("linux"):
        return False
    release = os.uname().release.split(".")
    try:
        version = int(release[0]), int(release[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    return version >= (major, minor)


# Filesystems whose sync (syncfs) writes back and commits what fsync of
# each file would: ext2/3/4, XFS, btrfs (statfs(2) magic numbers).  Not
# FUSE or 9p, which do not pass syncfs on to where the data lives.
SYNCFS_FILESYSTEMS = {0xEF53: "ext4", 0x58465342: "xfs",
                      0x9123683E: "btrfs"}

SYNC_MODES = ("auto", "fs", "file")


def syncfs_available():
    """syncfs(2) that reports write-back errors: Linux 5.8 or later."""
    return hasattr(_cpoplib, "_syncfs") and linux_at_least(5, 8)


def syncfs_usable(fd):
    """True where one syncfs(2) of the filesystem holding `fd` stands for
    fsync() of each file of a batch: Linux 5.17+ (syncfs reports write-back
    errors since 5.8 and journal commit errors since 5.17) on one of
    SYNCFS_FILESYSTEMS."""
    if not hasattr(_cpoplib, "_syncfs") or not linux_at_least(5, 17):
        return False
    try:
        return _cpoplib._fs_type(fd) in SYNCFS_FILESYSTEMS
    except OSError:
        return False


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path, data, file_site="state-file", dir_site="state-dir"):
    """Replace `path` with `data` (bytes): temporary file, fsync,
    os.replace, fsync of the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = "%s.tmp.%d.%d" % (path, os.getpid(), threading.get_ident())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, data)
        fsync(fd, file_site)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(directory, dir_site)


def makedirs(path, mode=0o700):
    """os.makedirs, fsyncing each parent of a directory it created."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    makedirs(parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    fsync_dir(parent, "mkdir-parent")
