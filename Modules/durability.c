/* durability.c -- _cpoplib._syncfs(fd) and _cpoplib._fs_type(fd): the
 * fetcher's batched durability.
 *
 * cpoplib fetch (Lib/cpoplib/fetcher.py) writes a batch of messages, then
 * makes the whole batch durable before it records their UIDLs or sends
 * DELE.  Calling fsync() on each of the batch's files costs one journal
 * commit per file on ext4 and XFS; syncfs(2) on a descriptor of the
 * destination writes back every dirty file of that filesystem and commits
 * its journal once, and Linux waits for that I/O to complete.  Whether
 * that is as good as fsync() of every file depends on the kernel and the
 * filesystem:
 *
 *   - since Linux 5.8 a write-back error on the filesystem after the
 *     descriptor was opened is reported by syncfs, and since 5.17 an
 *     error of the filesystem's own sync (a journal commit) is too;
 *   - FUSE and 9p filesystems do not pass syncfs on to the process or
 *     host that holds the data, while they do pass fsync on.
 *
 * So the fetcher uses syncfs on its own only on Linux 5.17 and later and
 * on ext2/3/4, XFS and btrfs, which it recognises by _fs_type(); anywhere
 * else it fsyncs file by file unless told otherwise (--sync fs).
 *
 * Only defined where the kernel headers know SYS_syncfs (cpoplib.h).
 *
 * May call: nothing of cpoplib.  Runs no Python code while the GIL is
 * released around the system calls.
 */
#include "cpoplib.h"

#ifdef CPOPLIB_HAVE_SYNCFS

#include <sys/vfs.h>
#include <unistd.h>

const char cpoplib_syncfs_doc[] =
"_syncfs(fd, /)\n--\n\n"
"syncfs(2): write back and commit everything dirty on the filesystem\n"
"holding the open file descriptor fd; OSError on failure.  Used by\n"
"cpoplib fetch to make a batch of delivered messages durable at once.";

PyObject *
cpoplib_syncfs(PyObject *module, PyObject *arg)
{
    int fd;
    long rc;

    (void)module;
    fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = syscall(SYS_syncfs, fd);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

const char cpoplib_fs_type_doc[] =
"_fs_type(fd, /)\n--\n\n"
"The f_type of fstatfs(2) for the open file descriptor fd: the magic\n"
"number of its filesystem (0xEF53 for ext2/3/4, 0x58465342 for XFS, ...).";

PyObject *
cpoplib_fs_type(PyObject *module, PyObject *arg)
{
    struct statfs buf;
    int fd, rc;

    (void)module;
    fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = fstatfs(fd, &buf);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromUnsignedLong((unsigned long)buf.f_type);
}

#endif /* CPOPLIB_HAVE_SYNCFS */
