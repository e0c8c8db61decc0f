/* buffer.c -- the read buffer both readers of the C core keep: a
 * bytearray holding the unread bytes [pos, end), made room in before each
 * read.  The blocking client's SocketReader (reader.c) fills it with
 * sock.recv_into(); the sans-IO ResponseEngine (engine.c) hands its free
 * space to an asyncio transport (get_buffer()).  One policy for both:
 * the unread tail moves to the front when it is in the way, the buffer
 * grows geometrically (cpoplib_buffer_need) for a long line, and gives
 * the memory of a long line back once it is gone.
 *
 * A buffer that is exported (a memoryview an event loop still holds
 * while it calls back) cannot be resized: it is then replaced by a new
 * bytearray with the unread bytes copied over, and the old one lives on
 * until its last view is released.
 *
 * May call: nothing of cpoplib.  Runs no Python code.
 */
#include "cpoplib.h"

Py_ssize_t
cpoplib_buffer_need(Py_ssize_t avail, Py_ssize_t limit, Py_ssize_t chunk)
{
    Py_ssize_t step = avail > chunk ? avail : chunk;

    if (limit - avail <= step) {
        return limit;
    }
    return avail + step;
}

/* Resize *buffer to `size` bytes keeping [0, keep); a new bytearray when
 * the old one is exported (or absent). */
static int
buffer_resize(PyObject **buffer, Py_ssize_t size, Py_ssize_t keep)
{
    PyObject *fresh;

    if (*buffer != NULL) {
        if (PyByteArray_Resize(*buffer, size) == 0) {
            return 0;
        }
        if (!PyErr_ExceptionMatches(PyExc_BufferError)) {
            return -1;
        }
        PyErr_Clear();
    }
    fresh = PyByteArray_FromStringAndSize(NULL, size);
    if (fresh == NULL) {
        return -1;
    }
    if (*buffer != NULL && keep > 0) {
        memcpy(PyByteArray_AS_STRING(fresh), PyByteArray_AS_STRING(*buffer),
               (size_t)keep);
    }
    Py_XSETREF(*buffer, fresh);
    return 0;
}

int
cpoplib_buffer_room(PyObject **buffer, Py_ssize_t *pos, Py_ssize_t *end,
                    Py_ssize_t need, Py_ssize_t chunk)
{
    Py_ssize_t avail = *end - *pos;
    Py_ssize_t cap = *buffer == NULL ? 0 : PyByteArray_GET_SIZE(*buffer);

    /* Move the unread tail to the front when it is in the way. */
    if (*pos > 0 && (avail == 0 || cap - *pos < need
                     || cap - *end < cap / 2)) {
        char *data = PyByteArray_AS_STRING(*buffer);
        memmove(data, data + *pos, (size_t)avail);
        *pos = 0;
        *end = avail;
    }
    if (cap - *pos < need) {
        /* callers grow `need` geometrically (cpoplib_buffer_need) */
        if (buffer_resize(buffer, *pos + need, *end) < 0) {
            return -1;
        }
    }
    else if (cap > chunk && *pos == 0 && *end <= chunk && need <= chunk) {
        /* a long line is gone: give its memory back, never below what
           is still buffered */
        if (buffer_resize(buffer, chunk, *end) < 0) {
            return -1;
        }
    }
    return 0;
}
