/* durability.c -- _cpoplib._syncfs(fd): the fetcher's batched durability.
 *
 * cpoplib fetch (Lib/cpoplib/fetcher.py) writes a batch of messages, then
 * makes the whole batch durable before it records their UIDLs or sends
 * DELE.  Calling fsync() on each of the batch's files costs one journal
 * commit per file on ext4 and XFS; syncfs(2) on a descriptor of the
 * destination writes back every dirty file of that filesystem and commits
 * its journal once.  Linux waits for the I/O to complete, so the result
 * is that of fsync() on every file of the filesystem (syncfs(2)), and
 * since Linux 5.8 a write-back error that happened on the filesystem
 * after `fd` was opened is reported by the call; the fetcher only uses it
 * there (and keeps its descriptor open for the whole run).
 *
 * Only defined where the C library has syncfs() (glibc, musl); elsewhere
 * the module has no _syncfs and the fetcher fsyncs file by file.
 *
 * May call: nothing of cpoplib.  Runs no Python code; the GIL is released
 * around the system call.
 */
#include "cpoplib.h"

#ifdef CPOPLIB_HAVE_SYNCFS

#include <errno.h>
#include <unistd.h>

const char cpoplib_syncfs_doc[] =
"_syncfs(fd, /)\n--\n\n"
"syncfs(2): write back and commit everything dirty on the filesystem\n"
"holding the open file descriptor fd; OSError on failure.  Used by\n"
"cpoplib fetch to make a batch of delivered messages durable at once.";

PyObject *
cpoplib_syncfs(PyObject *module, PyObject *arg)
{
    int fd, rc, saved_errno;

    (void)module;
    fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = syncfs(fd);
    saved_errno = errno;
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        errno = saved_errno;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

#endif /* CPOPLIB_HAVE_SYNCFS */
