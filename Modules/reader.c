/* reader.c -- the read buffer of a connection and its file view.
 *
 * Each connection owns one SocketReader.  The C core asks it for
 * protocol lines (cpoplib_reader_next_line), and it is also what a POP3
 * object exposes as `self.file`: a read-only binary file positioned on the
 * protocol stream, so bytes are never read twice or lost between the C
 * core and Python code calling file.readline().
 *
 * The buffer is a bytearray filled with large sock.recv_into() calls made
 * through the socket object, so plain sockets and ssl.SSLSocket behave the
 * same and the socket's timeout applies.  While recv_into() runs (Python
 * code, GIL released inside the socket module) the reader is marked busy:
 * a second read on the same reader raises RuntimeError instead of racing
 * on pos/end, and the memoryview handed out keeps the bytearray exported,
 * so it cannot be resized or freed under the callee.
 *
 * Lines are handed out as spans (offset + generation), never as pointers:
 * every fill and close bumps the generation, and a span is turned into a
 * pointer only by cpoplib_reader_span_data(), which checks it.
 *
 * As socket.SocketIO does, a read that timed out makes every later read
 * fail with OSError('cannot read from timed out object'): the stream may
 * be in the middle of a response, and reading on would hand one
 * command's reply to the next.  After each fill pending signals are
 * handled (PyErr_CheckSignals), so Ctrl-C works while data streams in.
 *
 * While the C core is in the middle of a response the reader can be held
 * (cpoplib.h, CPOPLIB_HOLD_*): its file methods then refuse to read.  It
 * counts in the socket's _io_refs as a makefile() file does.
 *
 * May call: args.c, buffer.c, errors.c, pop3_parser.c.  Python code it
 * runs: the socket's recv_into, settimeout (login()'s deadline), fileno
 * and _decref_socketios, signal handlers.
 */
#include "cpoplib.h"

#include <time.h>

/* Size of the buffer and of each recv_into() request. */
#define READER_CHUNK ((Py_ssize_t)64 * 1024)

#if defined(Py_DEBUG) || defined(CPOPLIB_CHECKED)
#  define SPAN_CHECK_ABORTS 1
#else
#  define SPAN_CHECK_ABORTS 0
#endif

static int
reader_check_open(ReaderObject *r)
{
    if (r->buffer == NULL) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed file.");
        return -1;
    }
    if (r->timed_out) {
        PyErr_SetString(PyExc_OSError, "cannot read from timed out object");
        return -1;
    }
    if (r->busy) {
        PyErr_Format(PyExc_RuntimeError, "reentrant call inside %R",
                     (PyObject *)r);
        return -1;
    }
    return 0;
}

double
cpoplib_monotonic(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int
cpoplib_is_reader(cpoplib_state *st, PyObject *file)
{
    return Py_IS_TYPE(file, st->Reader_Type);
}

/* The reader's one structural invariant: 0 <= pos <= end <= the
 * buffer's size.  Checked after every resize; a violation is a bug in
 * this file, so it aborts in debug and sanitizer builds. */
static int
reader_check_capacity(ReaderObject *r)
{
    if (r->pos < 0 || r->pos > r->end
        || r->end > PyByteArray_GET_SIZE(r->buffer)) {
        if (SPAN_CHECK_ABORTS) {
            Py_FatalError("cpoplib: the read buffer is smaller than what "
                          "it holds");
        }
        PyErr_SetString(PyExc_SystemError,
                        "cpoplib: the read buffer is smaller than what it "
                        "holds");
        return -1;
    }
    return 0;
}

/* What a file method (read, readline, ...) checks first: the reader is
 * open and not held by the C core (cpoplib.h, CPOPLIB_HOLD_*). */
static int
reader_check_readable(ReaderObject *r)
{
    if (reader_check_open(r) < 0) {
        return -1;
    }
    if (r->held & CPOPLIB_HOLD_ITERATION) {
        PyErr_SetString(PyExc_RuntimeError,
                        "reentrant call: a fetch_many() iteration is in "
                        "progress on this POP3 connection; finish it or "
                        "close() the iterator first");
        return -1;
    }
    if (r->held) {
        PyErr_Format(PyExc_RuntimeError,
                     "reentrant call inside %R: the connection is in the "
                     "middle of a message", (PyObject *)r);
        return -1;
    }
    return 0;
}

/* Make room for `need` bytes from r->pos and read once into the free
 * space.  `need` must exceed what is buffered (end - pos): a caller that
 * asks for less has not looked at what it has.  Returns the number of
 * bytes read (0 at end of stream) or -1 with an exception set.  Runs
 * Python code (recv_into, signal handlers); whatever it returns, pos/end
 * describe the buffer. */
static Py_ssize_t
reader_fill(ReaderObject *r, Py_ssize_t need)
{
    cpoplib_state *st = PyModule_GetState(r->module);
    PyObject *buffer;
    PyObject *sock = r->sock;
    PyObject *view = NULL, *window = NULL, *result = NULL;
    Py_ssize_t avail = r->end - r->pos;
    Py_ssize_t cap;
    Py_ssize_t got = -1;

    if (need <= avail) {
        PyErr_Format(PyExc_SystemError,
                     "cpoplib: a fill for %zd bytes with %zd buffered",
                     need, avail);
        return -1;
    }
    r->generation++;
    if (cpoplib_buffer_room(&r->buffer, &r->pos, &r->end, need,
                            READER_CHUNK) < 0) {
        return -1;
    }
    buffer = r->buffer;
    cap = PyByteArray_GET_SIZE(buffer);
    if (reader_check_capacity(r) < 0) {
        return -1;
    }

    Py_INCREF(buffer);
    Py_INCREF(sock);
    r->busy = 1;
    if (r->deadline > 0.0) {
        /* login()'s deadline: the socket waits no longer than what is
           left of it */
        double left = r->deadline - cpoplib_monotonic();
        PyObject *seconds, *res;

        if (left <= 0.0) {
            PyErr_SetString(PyExc_TimeoutError, "timed out");
            r->timed_out = 1;
            goto done;
        }
        seconds = PyFloat_FromDouble(left);
        if (seconds == NULL) {
            goto done;
        }
        res = PyObject_CallMethodOneArg(sock, st->str_settimeout, seconds);
        Py_DECREF(seconds);
        if (res == NULL) {
            goto done;
        }
        Py_DECREF(res);
    }
    view = PyMemoryView_FromObject(buffer);
    if (view == NULL) {
        goto done;
    }
    window = PySequence_GetSlice(view, r->end, cap);
    if (window == NULL) {
        goto done;
    }
    result = PyObject_CallMethodOneArg(sock, st->str_recv_into, window);
    if (result == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TimeoutError)) {
            r->timed_out = 1;
        }
        goto done;
    }
    /* What socket.SocketIO and io.BufferedReader make of the result, as
     * poplib's sock.makefile('rb') would: None (a non-blocking socket
     * with nothing to read) ends this read like the end of the stream;
     * anything that is not a length in range is an OSError. */
    if (result == Py_None) {
        got = 0;
    }
    else {
        got = PyNumber_AsSsize_t(result, PyExc_ValueError);
        if (got == -1 && PyErr_Occurred()) {
            PyObject *cause = cpoplib_fetch_exception(), *exc;

            PyErr_SetString(PyExc_OSError, "raw readinto() failed");
            exc = cpoplib_fetch_exception();
            PyException_SetCause(exc, Py_NewRef(cause));
            PyException_SetContext(exc, cause);
            cpoplib_restore_exception(exc);
            goto done;
        }
        if (got < 0 || got > cap - r->end) {
            PyErr_Format(PyExc_OSError,
                         "raw readinto() returned invalid length %zd "
                         "(should have been between 0 and %zd)",
                         got, cap - r->end);
            got = -1;
            goto done;
        }
    }
    if (r->buffer != buffer) {
        /* recv_into() or the result's __index__ closed the file */
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed file.");
        got = -1;
        goto done;
    }
    r->end += got;
    /* Let signal handlers run between fills, as CPython's own long
       loops do: the bytes just read stay buffered. */
    if (PyErr_CheckSignals() < 0) {
        got = -1;
    }
    else if (r->buffer != buffer) {
        /* a signal handler closed the file */
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed file.");
        got = -1;
    }

done:
    r->busy = 0;
    r->generation++;
    Py_XDECREF(result);
    Py_XDECREF(window);
    Py_XDECREF(view);
    Py_DECREF(sock);
    Py_DECREF(buffer);
    return got;
}

/* How much room to ask of reader_fill() when `avail` bytes are buffered
 * and up to `limit` are wanted: grow geometrically, never all at once. */
static Py_ssize_t
reader_need(Py_ssize_t avail, Py_ssize_t limit)
{
    return cpoplib_buffer_need(avail, limit, READER_CHUNK);
}

/* The one line scanner of the reader: where the next line ends within
 * `window` bytes of pos, reading from the socket as needed (see
 * pop3_scan_line() for the statuses and *len).  Nothing is consumed.
 * Runs Python code when it fills. */
static int
reader_scan(ReaderObject *r, Py_ssize_t window, Py_ssize_t *len)
{
    size_t scanned = 0, found = 0;
    int at_eof = 0;

    for (;;) {
        const char *data = PyByteArray_AS_STRING(r->buffer) + r->pos;
        Py_ssize_t avail = r->end - r->pos;
        Py_ssize_t got;
        pop3_status st = pop3_scan_line(data, (size_t)avail, (size_t)window,
                                        at_eof, scanned, &found);

        if (st != POP3_NEED_MORE) {
            *len = (Py_ssize_t)found;
            return st;
        }
        scanned = (size_t)avail;
        got = reader_fill(r, reader_need(avail, window));
        if (got < 0) {
            return -1;
        }
        at_eof = (got == 0);
    }
}

int
cpoplib_reader_next_line(ReaderObject *r, Py_ssize_t limit,
                         cpoplib_span *span)
{
    Py_ssize_t len;
    int st;

    assert(limit >= 1);
    if (reader_check_open(r) < 0) {
        return -1;
    }
    st = reader_scan(r, limit, &len);
    if (st < 0) {
        return -1;
    }
    if (st == POP3_TOO_LONG || (st == POP3_LINE && len == limit)) {
        r->pos += limit;              /* readline(limit) took `limit` */
        return POP3_TOO_LONG;
    }
    if (st == POP3_EOF && len == 0) {
        return POP3_EOF;
    }
    pop3_strip_line(PyByteArray_AS_STRING(r->buffer) + r->pos, (size_t)len,
                    &span->line);
    span->offset = r->pos;
    span->generation = r->generation;
    r->pos += len;
    return POP3_LINE;
}

/* Bodies at least this large are copied with the GIL released. */
#define COPY_NOGIL_MIN ((Py_ssize_t)32 * 1024)

/* pop3_copy_body() over what is buffered; large copies with the GIL
 * released.  The caller checked that the reader is open. */
static int
reader_copy_buffered(ReaderObject *r, Py_ssize_t limit, int at_eof,
                     char *out, size_t room, pop3_copy *res)
{
    PyObject *buffer = Py_NewRef(r->buffer);
    Py_ssize_t avail = r->end - r->pos;
    pop3_status st;

    if (avail >= COPY_NOGIL_MIN) {
        /* The reader is busy, so no method of ours touches pos/end; the
           buffer export makes any resize of the bytearray fail (even by
           code that got hold of it through gc or a recv_into override),
           and `buffer` keeps it alive if another thread closes the file
           meanwhile. */
        Py_buffer view;
        if (PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(buffer);
            return -1;
        }
        r->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        st = pop3_copy_body((const char *)view.buf + r->pos, (size_t)avail,
                            (size_t)limit, at_eof, out, room, res);
        Py_END_ALLOW_THREADS
        r->busy = 0;
        PyBuffer_Release(&view);
        if (r->buffer != buffer) {
            Py_DECREF(buffer);
            PyErr_SetString(PyExc_ValueError,
                            "I/O operation on closed file.");
            return -1;
        }
    }
    else {
        st = pop3_copy_body(PyByteArray_AS_STRING(buffer) + r->pos,
                            (size_t)avail, (size_t)limit, at_eof, out, room,
                            res);
    }
    Py_DECREF(buffer);
    r->pos += (Py_ssize_t)res->consumed;
    r->generation++;
    return (int)st;
}

int
cpoplib_reader_copy_body(ReaderObject *r, Py_ssize_t limit,
                         char *out, size_t room, pop3_copy *res)
{
    Py_ssize_t got;
    int st;

    if (reader_check_open(r) < 0) {
        return -1;
    }
    st = reader_copy_buffered(r, limit, 0, out, room, res);
    if (st != POP3_NEED_MORE || res->consumed > 0) {
        return st;
    }
    /* Nothing buffered ends a line, so fewer than `limit` bytes are
       buffered: a fill for more is always a fill for more than that. */
    got = reader_fill(r, reader_need(r->end - r->pos, limit));
    if (got < 0) {
        return -1;
    }
    return reader_copy_buffered(r, limit, got == 0, out, room, res);
}

const char *
cpoplib_reader_span_data(ReaderObject *r, const cpoplib_span *span)
{
    if (r->buffer == NULL || span->generation != r->generation) {
        if (SPAN_CHECK_ABORTS) {
            Py_FatalError("cpoplib: a line was used after the read buffer "
                          "moved");
        }
        PyErr_SetString(PyExc_RuntimeError,
                        "cpoplib: the read buffer moved under a line");
        return NULL;
    }
    return PyByteArray_AS_STRING(r->buffer) + span->offset;
}

int
cpoplib_reader_discard(ReaderObject *r)
{
    cpoplib_state *st = PyModule_GetState(r->module);
    PyObject *sock = r->sock, *res;
    int io_ref = r->io_ref;

    r->generation++;
    r->pos = r->end = 0;
    r->io_ref = 0;
    r->sock = NULL;
    Py_CLEAR(r->buffer);
    if (sock == NULL) {
        return 0;
    }
    res = io_ref ? PyObject_CallMethodNoArgs(sock, st->str_decref_socketios)
                 : Py_NewRef(Py_None);
    Py_DECREF(sock);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

PyObject *
cpoplib_reader_new(cpoplib_state *st, PyObject *sock)
{
    PyTypeObject *type = st->Reader_Type;
    ReaderObject *r;
    PyObject *refs, *more, *exc;
    int rc;

    /* sock._io_refs += 1, as socket.makefile() counts the file it makes:
       sock.close() then leaves the descriptor open until the file is
       closed too, so that poplib's connection still works after
       conn.sock.close() */
    refs = PyObject_GetAttr(sock, st->str_io_refs);
    if (refs == NULL) {
        return NULL;
    }
    more = PyNumber_Add(refs, st->int_one);
    Py_DECREF(refs);
    if (more == NULL) {
        return NULL;
    }
    rc = PyObject_SetAttr(sock, st->str_io_refs, more);
    Py_DECREF(more);
    if (rc < 0) {
        return NULL;
    }
    r = (ReaderObject *)type->tp_alloc(type, 0);
    if (r == NULL) {
        goto error;
    }
    r->module = Py_NewRef(PyType_GetModule(type));
    r->sock = Py_NewRef(sock);
    r->io_ref = 1;
    r->buffer = PyByteArray_FromStringAndSize(NULL, READER_CHUNK);
    if (r->buffer == NULL) {
        Py_DECREF(r);            /* its finalizer gives the count back */
        return NULL;
    }
    return (PyObject *)r;

error:
    /* give the count back, keeping the error */
    exc = cpoplib_fetch_exception();
    more = PyObject_CallMethodNoArgs(sock, st->str_decref_socketios);
    Py_XDECREF(more);
    cpoplib_chain_context(exc);
    return NULL;
}

/* ---- the file view ---- */

/* Return buffered bytes [pos, pos + n) as bytes and consume them. */
static PyObject *
reader_take(ReaderObject *r, Py_ssize_t n)
{
    PyObject *out = PyBytes_FromStringAndSize(
        PyByteArray_AS_STRING(r->buffer) + r->pos, n);

    if (out != NULL) {
        r->pos += n;
    }
    return out;
}

/* An optional size argument, converted as io.BufferedReader converts
 * it: None or an integer; -1 when omitted or None. */
static int
reader_size_arg(PyObject *arg, Py_ssize_t *size)
{
    *size = -1;
    if (arg == NULL || arg == Py_None) {
        return 0;
    }
    if (!PyIndex_Check(arg)) {
        PyErr_Format(PyExc_TypeError,
                     "argument should be integer or None, not '%.200s'",
                     Py_TYPE(arg)->tp_name);
        return -1;
    }
    *size = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (*size == -1 && PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

/* Parse `name($self, size=-1, /)`: None or an integer with
 * allow_none (read, readline), only an integer otherwise (read1, peek),
 * as io.BufferedReader has them. */
static int
reader_parse_size(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames, int allow_none, Py_ssize_t *size)
{
    static const char *const names[] = {"size", NULL};
    const cpoplib_argspec spec = {fname, names, 1, 0, 1};
    PyObject *arg;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &arg) < 0) {
        return -1;
    }
    if (allow_none || arg == NULL) {
        return reader_size_arg(arg, size);
    }
    *size = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    return *size == -1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *
reader_unsupported(ReaderObject *r, const char *what)
{
    cpoplib_state *st = PyModule_GetState(r->module);

    PyErr_SetString(st->unsupported_operation, what);
    return NULL;
}

PyDoc_STRVAR(reader_readline_doc,
"readline($self, size=-1, /)\n--\n\n"
"Read and return one line (up to size bytes), LF included.");

static PyObject *
reader_readline_impl(ReaderObject *r, Py_ssize_t size)
{
    Py_ssize_t len;
    int st;

    if (reader_check_readable(r) < 0) {
        return NULL;
    }
    if (size == 0) {
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    st = reader_scan(r, size < 0 ? PY_SSIZE_T_MAX : size, &len);
    if (st < 0) {
        return NULL;
    }
    /* POP3_TOO_LONG: `size` bytes without LF, which is what is returned */
    return reader_take(r, st == POP3_TOO_LONG ? size : len);
}

static PyObject *
reader_readline(ReaderObject *r, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    Py_ssize_t size;

    if (reader_parse_size("readline", args, nargs, kwnames, 1, &size) < 0) {
        return NULL;
    }
    return reader_readline_impl(r, size);
}

PyDoc_STRVAR(reader_readlines_doc,
"readlines($self, hint=-1, /)\n--\n\n"
"Read lines until the end of the stream, or until their total size\n"
"reaches hint (when hint > 0).");

static PyObject *
reader_readlines(ReaderObject *r, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    static const char *const names[] = {"hint", NULL};
    static const cpoplib_argspec spec = {"readlines", names, 1, 0, 1};
    PyObject *arg, *lines, *line;
    Py_ssize_t hint, total = 0;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &arg) < 0
        || reader_size_arg(arg, &hint) < 0) {
        return NULL;
    }
    lines = PyList_New(0);
    if (lines == NULL) {
        return NULL;
    }
    for (;;) {
        line = reader_readline_impl(r, -1);
        if (line == NULL) {
            goto error;
        }
        if (PyBytes_GET_SIZE(line) == 0) {
            Py_DECREF(line);
            break;
        }
        total += PyBytes_GET_SIZE(line);
        if (PyList_Append(lines, line) < 0) {
            Py_DECREF(line);
            goto error;
        }
        Py_DECREF(line);
        if (hint > 0 && total >= hint) {
            break;
        }
    }
    return lines;

error:
    Py_DECREF(lines);
    return NULL;
}

PyDoc_STRVAR(reader_read_doc,
"read($self, size=-1, /)\n--\n\n"
"Read up to size bytes, or to the end of the stream if size < 0.");

static PyObject *
reader_read_impl(ReaderObject *r, Py_ssize_t size)
{
    Py_ssize_t want = size < 0 ? PY_SSIZE_T_MAX : size;
    Py_ssize_t avail;

    if (reader_check_readable(r) < 0) {
        return NULL;
    }
    while (r->end - r->pos < want) {
        Py_ssize_t got = reader_fill(r, reader_need(r->end - r->pos, want));
        if (got < 0) {
            return NULL;
        }
        if (got == 0) {
            break;
        }
    }
    avail = r->end - r->pos;
    return reader_take(r, avail < want ? avail : want);
}

static PyObject *
reader_read(ReaderObject *r, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    Py_ssize_t size;

    if (reader_parse_size("read", args, nargs, kwnames, 1, &size) < 0) {
        return NULL;
    }
    return reader_read_impl(r, size);
}

/* read1(size): at most one call to the socket */
static PyObject *
reader_read1_impl(ReaderObject *r, Py_ssize_t size)
{
    Py_ssize_t avail;

    if (reader_check_readable(r) < 0) {
        return NULL;
    }
    if (size == 0) {
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    if (r->end == r->pos && reader_fill(r, READER_CHUNK) < 0) {
        return NULL;
    }
    avail = r->end - r->pos;
    return reader_take(r, size < 0 || avail < size ? avail : size);
}

PyDoc_STRVAR(reader_read1_doc,
"read1($self, size=-1, /)\n--\n\n"
"Read up to size bytes with at most one call to the socket.");

static PyObject *
reader_read1(ReaderObject *r, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    Py_ssize_t size;

    if (reader_parse_size("read1", args, nargs, kwnames, 0, &size) < 0) {
        return NULL;
    }
    return reader_read1_impl(r, size);
}

PyDoc_STRVAR(reader_peek_doc,
"peek($self, size=0, /)\n--\n\n"
"Return buffered bytes without consuming them (reading once if none).");

static PyObject *
reader_peek(ReaderObject *r, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    Py_ssize_t size;

    if (reader_parse_size("peek", args, nargs, kwnames, 0, &size) < 0
        || reader_check_readable(r) < 0) {
        return NULL;
    }
    if (r->end == r->pos && reader_fill(r, READER_CHUNK) < 0) {
        return NULL;
    }
    return PyBytes_FromStringAndSize(
        PyByteArray_AS_STRING(r->buffer) + r->pos, r->end - r->pos);
}

/* readinto(b) and readinto1(b): read() or read1() into a writable
 * buffer, returning the number of bytes. */
static PyObject *
reader_readinto_common(ReaderObject *r, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames,
                       const char *fname, int once)
{
    static const char *const names[] = {"buffer", NULL};
    const cpoplib_argspec spec = {fname, names, 1, 1, 1};
    PyObject *arg, *data = NULL, *result = NULL;
    Py_buffer view;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &arg) < 0
        || PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    data = once ? reader_read1_impl(r, view.len)
                : reader_read_impl(r, view.len);
    if (data == NULL) {
        goto done;
    }
    memcpy(view.buf, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data));
    result = PyLong_FromSsize_t(PyBytes_GET_SIZE(data));

done:
    Py_XDECREF(data);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(reader_readinto_doc,
"readinto($self, buffer, /)\n--\n\n"
"Read bytes into a writable buffer; return the number read.");

static PyObject *
reader_readinto(ReaderObject *r, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    return reader_readinto_common(r, args, nargs, kwnames, "readinto", 0);
}

PyDoc_STRVAR(reader_readinto1_doc,
"readinto1($self, buffer, /)\n--\n\n"
"Read bytes into a writable buffer with at most one call to the\n"
"socket; return the number read.");

static PyObject *
reader_readinto1(ReaderObject *r, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    return reader_readinto_common(r, args, nargs, kwnames, "readinto1", 1);
}

PyDoc_STRVAR(reader_close_doc,
"close($self, /)\n--\n\n"
"Close the file; buffered bytes are dropped.  The socket stays open.");

static PyObject *
reader_close(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
    if (cpoplib_reader_discard(r) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
reader_check_not_closed(ReaderObject *r)
{
    if (r->buffer == NULL) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed file.");
        return -1;
    }
    return 0;
}

static PyObject *
reader_readable(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
    if (reader_check_not_closed(r) < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *
reader_writable(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
    if (reader_check_not_closed(r) < 0) {
        return NULL;
    }
    Py_RETURN_FALSE;
}

static PyObject *
reader_flush(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
    if (reader_check_not_closed(r) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
reader_fileno(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
    cpoplib_state *st = PyModule_GetState(r->module);
    PyObject *sock = r->sock, *result;

    if (sock == NULL) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed file.");
        return NULL;
    }
    Py_INCREF(sock);
    result = PyObject_CallMethodNoArgs(sock, st->str_fileno);
    Py_DECREF(sock);
    return result;
}

static PyObject *
reader_not_seekable(ReaderObject *r, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)
{
    if (reader_check_not_closed(r) < 0) {
        return NULL;
    }
    return reader_unsupported(r, "underlying stream is not seekable");
}

static PyObject *
reader_not_writable(ReaderObject *r, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)
{
    if (reader_check_not_closed(r) < 0) {
        return NULL;
    }
    return reader_unsupported(r, "not writable");
}

static PyObject *
reader_detach(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
    return reader_unsupported(r, "the connection's reader has no raw "
                                 "stream to detach");
}

static PyObject *
reader_enter(ReaderObject *r, PyObject *Py_UNUSED(ignored))
{
    if (reader_check_not_closed(r) < 0) {
        return NULL;
    }
    return Py_NewRef(r);
}

static PyObject *
reader_exit(ReaderObject *r, PyObject *const *args, Py_ssize_t nargs)
{
    return reader_close(r, NULL);
}

static PyObject *
reader_iter(ReaderObject *r)
{
    if (reader_check_not_closed(r) < 0) {
        return NULL;
    }
    return Py_NewRef(r);
}

static PyObject *
reader_iternext(ReaderObject *r)
{
    PyObject *line = reader_readline_impl(r, -1);

    if (line != NULL && PyBytes_GET_SIZE(line) == 0) {
        Py_DECREF(line);
        return NULL;
    }
    return line;
}

/* `name`, as socket.SocketIO has it: the socket's file descriptor */
static PyObject *
reader_get_name(ReaderObject *r, void *Py_UNUSED(closure))
{
    return reader_fileno(r, NULL);
}

static PyObject *
reader_get_closed(ReaderObject *r, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(r->buffer == NULL);
}

static PyObject *
reader_get_mode(ReaderObject *r, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString("rb");
}

static PyObject *
reader_repr(ReaderObject *r)
{
    return PyUnicode_FromFormat("<%s %s, %zd bytes buffered>",
                                Py_TYPE(r)->tp_name,
                                r->buffer == NULL ? "closed" : "open",
                                r->end - r->pos);
}

static int
reader_traverse(ReaderObject *r, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(r));
    Py_VISIT(r->module);
    Py_VISIT(r->sock);
    Py_VISIT(r->buffer);
    return 0;
}

/* The owner reference (module) stays until dealloc: methods use it. */
static int
reader_clear(ReaderObject *r)
{
    r->generation++;
    r->pos = r->end = 0;
    Py_CLEAR(r->sock);
    Py_CLEAR(r->buffer);
    return 0;
}

/* A reader dropped without close() gives its socket's file count back,
 * as an unclosed socket.SocketIO does when it is collected. */
static void
reader_finalize(ReaderObject *r)
{
    PyObject *exc;

    if (!r->io_ref || r->sock == NULL) {
        return;
    }
    exc = cpoplib_fetch_exception();
    if (cpoplib_reader_discard(r) < 0) {
        PyErr_WriteUnraisable((PyObject *)r);
    }
    cpoplib_restore_exception(exc);
}

static void
reader_dealloc(ReaderObject *r)
{
    PyTypeObject *tp = Py_TYPE(r);

    if (PyObject_CallFinalizerFromDealloc((PyObject *)r) < 0) {
        return;                  /* resurrected */
    }
    PyObject_GC_UnTrack(r);
    if (r->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)r);
    }
    (void)reader_clear(r);
    Py_CLEAR(r->module);
    tp->tp_free(r);
    Py_DECREF(tp);
}

PyDoc_STRVAR(reader_readable_doc,
"readable($self, /)\n--\n\n"
"True: the file can be read (ValueError once closed).");

PyDoc_STRVAR(reader_writable_doc,
"writable($self, /)\n--\n\n"
"False: the file is read-only.");

PyDoc_STRVAR(reader_seekable_doc,
"seekable($self, /)\n--\n\n"
"False: the stream cannot seek.");

PyDoc_STRVAR(reader_isatty_doc,
"isatty($self, /)\n--\n\n"
"False: a socket is no terminal.");

PyDoc_STRVAR(reader_flush_doc,
"flush($self, /)\n--\n\n"
"Nothing to flush on a read-only file.");

PyDoc_STRVAR(reader_fileno_doc,
"fileno($self, /)\n--\n\n"
"The socket's file descriptor.");

PyDoc_STRVAR(reader_tell_doc,
"tell($self, /)\n--\n\n"
"Unsupported: io.UnsupportedOperation.");

PyDoc_STRVAR(reader_seek_doc,
"seek($self, offset, whence=0, /)\n--\n\n"
"Unsupported: io.UnsupportedOperation.");

PyDoc_STRVAR(reader_truncate_doc,
"truncate($self, pos=None, /)\n--\n\n"
"Unsupported: io.UnsupportedOperation.");

PyDoc_STRVAR(reader_write_doc,
"write($self, b, /)\n--\n\n"
"Unsupported: the file is read-only.");

PyDoc_STRVAR(reader_writelines_doc,
"writelines($self, lines, /)\n--\n\n"
"Unsupported: the file is read-only.");

PyDoc_STRVAR(reader_detach_doc,
"detach($self, /)\n--\n\n"
"Unsupported: there is no raw stream to detach.");

PyDoc_STRVAR(reader_enter_doc,
"__enter__($self, /)\n--\n\n"
"Return the file itself.");

PyDoc_STRVAR(reader_exit_doc,
"__exit__($self, *args)\n--\n\n"
"Close the file.");

#define READER_FAST(fn) ((PyCFunction)(void (*)(void))(fn))
#define READER_FASTKW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef reader_methods[] = {
    {"readline", READER_FAST(reader_readline), READER_FASTKW,
     reader_readline_doc},
    {"readlines", READER_FAST(reader_readlines), READER_FASTKW,
     reader_readlines_doc},
    {"read", READER_FAST(reader_read), READER_FASTKW, reader_read_doc},
    {"read1", READER_FAST(reader_read1), READER_FASTKW, reader_read1_doc},
    {"peek", READER_FAST(reader_peek), READER_FASTKW, reader_peek_doc},
    {"readinto", READER_FAST(reader_readinto), READER_FASTKW,
     reader_readinto_doc},
    {"readinto1", READER_FAST(reader_readinto1), READER_FASTKW,
     reader_readinto1_doc},
    {"close", (PyCFunction)reader_close, METH_NOARGS, reader_close_doc},
    {"readable", (PyCFunction)reader_readable, METH_NOARGS,
     reader_readable_doc},
    {"writable", (PyCFunction)reader_writable, METH_NOARGS,
     reader_writable_doc},
    {"seekable", (PyCFunction)reader_writable, METH_NOARGS,
     reader_seekable_doc},
    {"isatty", (PyCFunction)reader_writable, METH_NOARGS,
     reader_isatty_doc},
    {"flush", (PyCFunction)reader_flush, METH_NOARGS, reader_flush_doc},
    {"fileno", (PyCFunction)reader_fileno, METH_NOARGS, reader_fileno_doc},
    {"tell", READER_FAST(reader_not_seekable), READER_FASTKW,
     reader_tell_doc},
    {"seek", READER_FAST(reader_not_seekable), READER_FASTKW,
     reader_seek_doc},
    {"truncate", READER_FAST(reader_not_writable), READER_FASTKW,
     reader_truncate_doc},
    {"write", READER_FAST(reader_not_writable), READER_FASTKW,
     reader_write_doc},
    {"writelines", READER_FAST(reader_not_writable), READER_FASTKW,
     reader_writelines_doc},
    {"detach", (PyCFunction)reader_detach, METH_NOARGS, reader_detach_doc},
    {"__enter__", (PyCFunction)reader_enter, METH_NOARGS,
     reader_enter_doc},
    {"__exit__", READER_FAST(reader_exit), METH_FASTCALL, reader_exit_doc},
    {NULL, NULL}
};

static PyGetSetDef reader_getset[] = {
    {"closed", (getter)reader_get_closed, NULL, "True once closed.", NULL},
    {"mode", (getter)reader_get_mode, NULL, "Always 'rb'.", NULL},
    {"name", (getter)reader_get_name, NULL,
     "The socket's file descriptor, as for socket.SocketIO.", NULL},
    {NULL}
};

static PyMemberDef reader_members[] = {
    {"__weaklistoffset__", CPOPLIB_T_PYSSIZET,
     offsetof(ReaderObject, weakreflist), CPOPLIB_READONLY, NULL},
    {NULL}
};

PyDoc_STRVAR(reader_doc,
"The read side of a POP3 connection: a read-only binary file over the\n"
"connection's buffer, positioned on the protocol stream.  A POP3 object\n"
"exposes it as its `file` attribute, in place of sock.makefile('rb').");

static PyType_Slot reader_slots[] = {
    {Py_tp_doc, (void *)reader_doc},
    {Py_tp_dealloc, reader_dealloc},
    {Py_tp_finalize, reader_finalize},
    {Py_tp_traverse, reader_traverse},
    {Py_tp_clear, reader_clear},
    {Py_tp_repr, reader_repr},
    {Py_tp_iter, reader_iter},
    {Py_tp_iternext, reader_iternext},
    {Py_tp_methods, reader_methods},
    {Py_tp_getset, reader_getset},
    {Py_tp_members, reader_members},
    {0, NULL}
};

PyType_Spec cpoplib_reader_spec = {
    .name = "cpoplib._cpoplib.SocketReader",
    .basicsize = sizeof(ReaderObject),
    .flags = (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
              | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION),
    .slots = reader_slots,
};
