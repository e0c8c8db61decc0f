/* engine.c -- the sans-IO side of the C core, for the asyncio client
 * (cpoplib.aio): the ResponseEngine type, the FetchWindow type and the
 * module functions the client builds commands and reads replies with.
 *
 * A ResponseEngine is a read buffer (buffer.c's, as the blocking
 * SocketReader has) with no socket: an asyncio.BufferedProtocol hands
 * get_buffer() and buffer_updated() to the event loop, which receives
 * straight into the buffer; then the client asks for the next response
 * of the kind it expects -- short(), long(), message(), stream(),
 * listing(), skip() -- and gets it, or None while it is not complete.
 * Each of those runs in C over every line buffered so far, with
 * pop3_parser.c's functions as the blocking reader runs them: lines are
 * framed by pop3_next_line_from() under _MAXLINE, bodies are unstuffed
 * and copied by pop3_copy_body() or pop3_unstuff(), octets are counted
 * as poplib counts them, MAX_RESPONSE_SIZE is applied the same way, and
 * failure replies are classified by errors.c (the typed response-code
 * classes).  The exceptions are the blocking client's, raised where it
 * raises them.  No Python code runs per line.
 *
 * A response in progress keeps its partial result here (lines so far,
 * the message's bytes so far), so a response that arrives in many reads
 * is scanned once.  skip() reads a response into nothing: what a
 * cancelled command's reply is drained with.  A failure that leaves the
 * stream inside a response (a line too long, EOF, past
 * MAX_RESPONSE_SIZE) makes the engine refuse all further reads: the
 * client closes the connection.
 *
 * FetchWindow is window.c's rule for fetch_many()'s pipelined RETRs, the
 * same as the blocking iterator's.
 *
 * May call: args.c, buffer.c, errors.c, pop3_parser.c, reader.c,
 * settings.c, window.c, wire.c.  Python code it runs: the response classifier, the
 * functions of wire.c.
 */
#include "cpoplib.h"

#include "window.h"

/* The free space get_buffer() hands out at least, and the size the
 * buffer shrinks back to; the first size of a message's bytes; the size
 * of the chunks stream() gives. */
#define ENGINE_CHUNK ((Py_ssize_t)256 * 1024)
#define MESSAGE_INITIAL ((Py_ssize_t)16 * 1024)
#define STREAM_CHUNK ((Py_ssize_t)256 * 1024)

typedef enum {
    KIND_IDLE = 0,
    KIND_SHORT,
    KIND_LONG,
    KIND_MESSAGE,
    KIND_STREAM,
    KIND_LISTING,
    KIND_SKIP_SHORT,
    KIND_SKIP_LONG
} engine_kind;

typedef struct {
    PyObject_HEAD
    PyObject *module;           /* owner of the state; strong until dealloc */
    PyObject *buffer;           /* a bytearray, or NULL when empty */
    Py_ssize_t pos;             /* first unread byte */
    Py_ssize_t end;             /* one past the last buffered byte */
    size_t scanned;             /* LF-free bytes from pos (one line) */
    PyObject *lent;             /* borrowed: the buffer get_buffer() lent */
    int eof;
    int broken;                 /* the stream is inside a response */
    /* the response in progress */
    engine_kind kind;
    int in_body;                /* its status line was taken */
    int numeric;                /* KIND_LISTING: LIST (1) or UIDL (0) */
    Py_ssize_t maxline, window, cap, total;
    PyObject *resp;             /* its status line */
    PyObject *lines;            /* KIND_LONG */
    PyObject *map;              /* KIND_LISTING */
    PyObject *failure;          /* KIND_LISTING: a malformed line's error */
    PyObject *sink;             /* KIND_MESSAGE, KIND_STREAM: bytes */
    Py_ssize_t used;
    unsigned long long octets;
} EngineObject;

/* ---- the response in progress ---- */

static void
engine_reset(EngineObject *e)
{
    e->kind = KIND_IDLE;
    e->in_body = 0;
    e->total = 0;
    e->octets = 0;
    e->used = 0;
    Py_CLEAR(e->resp);
    Py_CLEAR(e->lines);
    Py_CLEAR(e->map);
    Py_CLEAR(e->failure);
    Py_CLEAR(e->sink);
}

/* The stream is somewhere inside a response: nothing more can be read.
 * Returns NULL for the caller's error path. */
static PyObject *
engine_break(EngineObject *e)
{
    e->broken = 1;
    engine_reset(e);
    return NULL;
}

static PyObject *
engine_too_long(EngineObject *e, cpoplib_state *st, const char *what)
{
    cpoplib_error(st, what);
    return engine_break(e);
}

/* Start a response of `kind`: the settings are read now, once, as the
 * blocking client reads them when it starts reading a response. */
static int
engine_start(EngineObject *e, cpoplib_state *st, engine_kind kind)
{
    if (e->broken) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the response engine is out of step: a response "
                        "was cut off");
        return -1;
    }
    if (e->kind == kind) {
        return 0;
    }
    if (e->kind != KIND_IDLE) {
        /* a response being read for one kind may be dropped, never
           turned into another kind */
        if (kind != KIND_SKIP_LONG && kind != KIND_SKIP_SHORT) {
            PyErr_SetString(PyExc_RuntimeError,
                            "another kind of response is being read");
            return -1;
        }
        Py_CLEAR(e->lines);
        Py_CLEAR(e->map);
        Py_CLEAR(e->failure);
        Py_CLEAR(e->sink);
        e->kind = e->in_body || kind == KIND_SKIP_LONG ? KIND_SKIP_LONG
                                                       : KIND_SKIP_SHORT;
        return 0;
    }
    if (cpoplib_current_maxline(st, &e->maxline) < 0
        || cpoplib_current_response_cap(st, &e->cap) < 0) {
        return -1;
    }
    e->window = cpoplib_line_window(e->maxline);
    e->kind = kind;
    e->in_body = 0;
    e->total = 0;
    e->octets = 0;
    return 0;
}

/* ---- lines ---- */

typedef enum { LINE_MORE, LINE_OK, LINE_FAILED } line_status;

/* The next line in the buffer, under _MAXLINE: LINE_OK with *line and
 * *data (valid until the next call that can run Python code: copy what
 * is needed first), LINE_MORE when it is not complete yet, LINE_FAILED
 * with error_proto('line too long') or ('-ERR EOF') set and the engine
 * broken. */
static line_status
engine_line(EngineObject *e, cpoplib_state *st, pop3_line *line,
            const char **data)
{
    const char *buf = e->buffer != NULL
                      ? PyByteArray_AS_STRING(e->buffer) + e->pos : "";
    size_t avail = (size_t)(e->end - e->pos);
    pop3_status status;

    if (e->maxline == -1) {
        engine_too_long(e, st, "line too long");   /* readline(0) is b'' */
        return LINE_FAILED;
    }
    status = pop3_next_line_from(buf, avail, (size_t)e->window, e->eof,
                                 e->scanned, line);
    if (status == POP3_NEED_MORE) {
        e->scanned = pop3_scanned(avail, (size_t)e->window);
        return LINE_MORE;
    }
    e->scanned = 0;
    if (status == POP3_TOO_LONG) {
        e->pos += e->window;          /* readline(limit) took `limit` */
        engine_too_long(e, st, "line too long");
        return LINE_FAILED;
    }
    if (e->maxline < 0) {             /* readline(-n), then too long */
        engine_too_long(e, st, "line too long");
        return LINE_FAILED;
    }
    if (status == POP3_EOF) {
        engine_too_long(e, st, "-ERR EOF");
        return LINE_FAILED;
    }
    *data = buf;
    e->pos += (Py_ssize_t)line->raw_len;
    return LINE_OK;
}

/* The status line: 1 when taken (a '+' line, in e->resp), 0 when not
 * complete yet, -1 with the error set: error_proto(line) -- or the
 * response-code class the classifier picks -- for any other line (the
 * stream is in step after it), the errors of engine_line(). */
static int
engine_status(EngineObject *e, cpoplib_state *st)
{
    pop3_line line;
    const char *data;
    PyObject *resp;
    line_status ls = engine_line(e, st, &line, &data);

    if (ls != LINE_OK) {
        return ls == LINE_MORE ? 0 : -1;
    }
    resp = PyBytes_FromStringAndSize(data + line.start,
                                     (Py_ssize_t)line.len);
    if (resp == NULL) {
        engine_break(e);
        return -1;
    }
    if (line.len == 0 || data[line.start] != '+') {
        engine_reset(e);
        cpoplib_error_obj(st, resp);
        Py_DECREF(resp);
        return -1;
    }
    Py_XSETREF(e->resp, resp);
    e->in_body = 1;
    return 1;
}

/* ---- bodies ---- */

/* KIND_LONG and KIND_LISTING: line by line, as _getlongresp() reads
 * them.  1 at the terminator, 0 for more, -1 on error. */
static int
engine_lines(EngineObject *e, cpoplib_state *st, PyObject *command)
{
    for (;;) {
        pop3_line line;
        const char *data;
        line_status ls = engine_line(e, st, &line, &data);
        int rc;

        if (ls != LINE_OK) {
            return ls == LINE_MORE ? 0 : -1;
        }
        if (!cpoplib_within_cap(e->cap, &e->total,
                                (Py_ssize_t)line.raw_len)) {
            engine_too_long(e, st, "response too long");
            return -1;
        }
        pop3_unstuff(data, &line);
        if (line.is_terminator) {
            return 1;
        }
        e->octets += line.octets;
        if (e->kind == KIND_SKIP_LONG) {
            continue;
        }
        if (e->kind == KIND_LISTING) {
            if (e->failure != NULL) {
                continue;        /* the first malformed line stands */
            }
            rc = cpoplib_listing_line(st, e->map, command,
                                      data + line.start,
                                      (Py_ssize_t)line.len, e->numeric);
            if (rc < 0) {
                if (!PyErr_ExceptionMatches(st->error_proto)) {
                    engine_break(e);
                    return -1;
                }
                /* read on to the terminator: the stream stays in step */
                e->failure = cpoplib_fetch_exception();
            }
            continue;
        }
        else {
            PyObject *bytes = PyBytes_FromStringAndSize(
                data + line.start, (Py_ssize_t)line.len);
            rc = bytes == NULL ? -1 : PyList_Append(e->lines, bytes);
            Py_XDECREF(bytes);
        }
        if (rc < 0) {
            engine_break(e);
            return -1;
        }
    }
}

/* Room for `need` more bytes in e->sink, at least doubling it. */
static int
sink_grow(EngineObject *e, Py_ssize_t need)
{
    Py_ssize_t size = PyBytes_GET_SIZE(e->sink), want;

    if (need > PY_SSIZE_T_MAX - e->used) {
        PyErr_NoMemory();
        return -1;
    }
    want = e->used + need;
    if (want <= size) {
        return 0;
    }
    if (size <= PY_SSIZE_T_MAX / 2 && want < size * 2) {
        want = size * 2;
    }
    return _PyBytes_Resize(&e->sink, want);
}

/* The bytes of e->sink so far, taken out of it. */
static PyObject *
sink_take(EngineObject *e)
{
    PyObject *out;

    if (_PyBytes_Resize(&e->sink, e->used) < 0) {
        return NULL;
    }
    out = e->sink;
    e->sink = NULL;
    e->used = 0;
    return out;
}

/* KIND_MESSAGE and KIND_STREAM: pop3_copy_body() from the buffer into
 * e->sink, as fetch() copies a body.  1 at the terminator, 0 for more,
 * 2 (KIND_STREAM) when a chunk is ready, -1 on error. */
static int
engine_copy(EngineObject *e, cpoplib_state *st)
{
    Py_ssize_t first = e->kind == KIND_STREAM ? STREAM_CHUNK
                                              : MESSAGE_INITIAL;

    if (e->maxline < 0) {
        engine_too_long(e, st, "line too long");
        return -1;
    }
    if (e->sink == NULL) {
        e->sink = PyBytes_FromStringAndSize(NULL, first);
        e->used = 0;
        if (e->sink == NULL) {
            engine_break(e);
            return -1;
        }
    }
    for (;;) {
        const char *buf = e->buffer != NULL
                          ? PyByteArray_AS_STRING(e->buffer) + e->pos : "";
        pop3_copy res;
        pop3_status status;

        res.scanned = e->scanned;
        status = pop3_copy_body(buf, (size_t)(e->end - e->pos),
                                (size_t)e->window, e->eof,
                                PyBytes_AS_STRING(e->sink) + e->used,
                                (size_t)(PyBytes_GET_SIZE(e->sink) - e->used),
                                &res);
        e->scanned = res.scanned;
        e->pos += (Py_ssize_t)res.consumed;
        e->used += (Py_ssize_t)res.produced;
        e->octets += res.octets;
        if ((Py_ssize_t)res.consumed > PY_SSIZE_T_MAX - e->total) {
            e->total = PY_SSIZE_T_MAX;
        }
        else {
            e->total += (Py_ssize_t)res.consumed;
        }
        if (e->cap >= 0 && e->total > e->cap) {
            engine_too_long(e, st, "response too long");
            return -1;
        }
        switch (status) {
        case POP3_LINE:
            return 1;
        case POP3_TOO_LONG:
            engine_too_long(e, st, "line too long");
            return -1;
        case POP3_EOF:
            engine_too_long(e, st, "-ERR EOF");
            return -1;
        case POP3_NEED_MORE:
            return e->kind == KIND_STREAM && e->used >= ENGINE_CHUNK ? 2 : 0;
        default:                        /* POP3_NEED_ROOM */
            if (e->kind == KIND_STREAM && e->used > 0) {
                return 2;
            }
            if (sink_grow(e, (Py_ssize_t)res.need) < 0) {
                engine_break(e);
                return -1;
            }
        }
    }
}

/* ---- reading a response ---- */

/* Read what is buffered of a response of `kind`: the result, None while
 * it is not complete, or NULL with an exception set. */
static PyObject *
engine_next(EngineObject *e, engine_kind kind, PyObject *command)
{
    cpoplib_state *st = PyModule_GetState(e->module);
    PyObject *result = NULL;
    int rc;

    if (engine_start(e, st, kind) < 0) {
        return NULL;
    }
    kind = e->kind;                     /* a skip may continue a long one */
    if (kind == KIND_SKIP_SHORT) {
        pop3_line line;
        const char *data;
        line_status ls = engine_line(e, st, &line, &data);

        if (ls == LINE_MORE) {
            Py_RETURN_NONE;
        }
        if (ls == LINE_FAILED) {
            return NULL;
        }
        engine_reset(e);
        Py_RETURN_TRUE;
    }
    if (!e->in_body) {
        if (kind == KIND_SKIP_LONG) {
            /* a failure reply is one line: in step after it */
            rc = engine_status(e, st);
            if (rc < 0 && !e->broken) {
                PyErr_Clear();
                Py_RETURN_TRUE;
            }
        }
        else {
            rc = engine_status(e, st);
        }
        if (rc <= 0) {
            if (rc == 0) {
                Py_RETURN_NONE;
            }
            return NULL;
        }
        if (kind == KIND_SHORT) {
            result = e->resp;
            e->resp = NULL;
            engine_reset(e);
            return result;
        }
        if (kind == KIND_LONG) {
            e->lines = PyList_New(0);
            if (e->lines == NULL) {
                return engine_break(e);
            }
        }
        else if (kind == KIND_LISTING) {
            e->map = PyDict_New();
            if (e->map == NULL) {
                return engine_break(e);
            }
        }
    }
    if (kind == KIND_MESSAGE || kind == KIND_STREAM) {
        rc = engine_copy(e, st);
    }
    else {
        rc = engine_lines(e, st, command);
    }
    if (rc < 0) {
        return NULL;
    }
    if (rc == 0) {
        Py_RETURN_NONE;
    }
    switch (kind) {
    case KIND_LONG: {
        PyObject *octets = PyLong_FromUnsignedLongLong(e->octets);
        if (octets != NULL) {
            result = PyTuple_Pack(3, e->resp, e->lines, octets);
            Py_DECREF(octets);
        }
        break;
    }
    case KIND_LISTING:
        if (e->failure != NULL) {
            cpoplib_restore_exception(e->failure);
            e->failure = NULL;
        }
        else {
            result = Py_NewRef(e->map);
        }
        break;
    case KIND_MESSAGE:
        result = sink_take(e);
        break;
    case KIND_STREAM: {
        PyObject *chunk = sink_take(e);
        if (chunk != NULL) {
            result = Py_BuildValue("(NO)", chunk,
                                   rc == 1 ? Py_True : Py_False);
        }
        if (rc == 2) {
            return result;              /* the message goes on */
        }
        break;
    }
    default:                            /* KIND_SKIP_LONG */
        result = Py_NewRef(Py_True);
    }
    if (result == NULL && !PyErr_ExceptionMatches(st->error_proto)) {
        return engine_break(e);
    }
    engine_reset(e);
    return result;
}

PyDoc_STRVAR(engine_short_doc,
"short($self, /)\n--\n\n"
"The next status line (bytes, line ending stripped), or None while it is\n"
"not complete.  error_proto (or the response-code class) unless it\n"
"starts with '+', as _getresp() raises it.");

static PyObject *
engine_short(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    return engine_next(e, KIND_SHORT, NULL);
}

PyDoc_STRVAR(engine_long_doc,
"long($self, /)\n--\n\n"
"The next multi-line response as _getlongresp() gives it:\n"
"(response, [line, ...], octets), or None while it is not complete.");

static PyObject *
engine_long(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    return engine_next(e, KIND_LONG, NULL);
}

PyDoc_STRVAR(engine_message_doc,
"message($self, /)\n--\n\n"
"The next RETR response's message as fetch() returns it (bytes), or\n"
"None while it is not complete.");

static PyObject *
engine_message(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    return engine_next(e, KIND_MESSAGE, NULL);
}

PyDoc_STRVAR(engine_stream_doc,
"stream($self, /)\n--\n\n"
"The next RETR response's message in pieces, for fetch_into():\n"
"(chunk, done) once a chunk of its bytes is ready or it ended, else\n"
"None.");

static PyObject *
engine_stream(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    return engine_next(e, KIND_STREAM, NULL);
}

PyDoc_STRVAR(engine_listing_doc,
"listing($self, command, /)\n--\n\n"
"The next LIST (command 'LIST': {number: size}) or UIDL ('UIDL':\n"
"{number: uid}) response as list_map() and uidl_map() give it, or None\n"
"while it is not complete.");

static PyObject *
engine_listing(EngineObject *e, PyObject *command)
{
    cpoplib_state *st = PyModule_GetState(e->module);
    int numeric;

    if (command != st->cmd_list && command != st->cmd_uidl) {
        numeric = PyUnicode_Check(command)
                  ? PyUnicode_CompareWithASCIIString(command, "LIST") : 1;
        if (numeric != 0 && (!PyUnicode_Check(command)
                             || PyUnicode_CompareWithASCIIString(
                                    command, "UIDL") != 0)) {
            PyErr_SetString(PyExc_ValueError,
                            "command must be 'LIST' or 'UIDL'");
            return NULL;
        }
        command = numeric == 0 ? st->cmd_list : st->cmd_uidl;
    }
    if (e->kind == KIND_IDLE) {
        e->numeric = command == st->cmd_list;
    }
    return engine_next(e, KIND_LISTING, command);
}

PyDoc_STRVAR(engine_skip_doc,
"skip($self, /, multiline)\n--\n\n"
"Read the next response (multi-line: a '+' status line and its body;\n"
"else one line) into nothing, or go on dropping the one being read:\n"
"True once it is over, None while it is not.  Only a cut-off stream\n"
"raises.");

static PyObject *
engine_skip(EngineObject *e, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    static const char *const names[] = {"multiline", NULL};
    static const cpoplib_argspec spec = {"skip", names, 0, 1, 1};
    PyObject *arg;
    int multiline;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &arg) < 0) {
        return NULL;
    }
    multiline = PyObject_IsTrue(arg);
    if (multiline < 0) {
        return NULL;
    }
    return engine_next(e, multiline ? KIND_SKIP_LONG : KIND_SKIP_SHORT,
                       NULL);
}

PyDoc_STRVAR(engine_check_doc,
"check($self, /)\n--\n\n"
"Read _MAXLINE and MAX_RESPONSE_SIZE as a response would, raising what\n"
"a bad value raises: call it before a command is sent.");

static PyObject *
engine_check(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    cpoplib_state *st = PyModule_GetState(e->module);
    Py_ssize_t maxline, cap;

    if (cpoplib_current_maxline(st, &maxline) < 0
        || cpoplib_current_response_cap(st, &cap) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- the buffer, for an asyncio.BufferedProtocol ---- */

PyDoc_STRVAR(engine_get_buffer_doc,
"get_buffer($self, sizehint, /)\n--\n\n"
"A writable memoryview of the buffer's free space (at least 256 KiB),\n"
"for the event loop to receive into.");

static PyObject *
engine_get_buffer(EngineObject *e, PyObject *sizehint)
{
    Py_ssize_t hint = PyNumber_AsSsize_t(sizehint, PyExc_OverflowError);
    Py_ssize_t avail = e->end - e->pos, need;
    PyObject *view, *window;

    if (hint == -1 && PyErr_Occurred()) {
        return NULL;
    }
    need = cpoplib_buffer_need(avail, PY_SSIZE_T_MAX, ENGINE_CHUNK);
    if (hint > need - avail && hint <= PY_SSIZE_T_MAX - avail) {
        need = avail + hint;
    }
    if (cpoplib_buffer_room(&e->buffer, &e->pos, &e->end, need,
                            ENGINE_CHUNK) < 0) {
        return NULL;
    }
    view = PyMemoryView_FromObject(e->buffer);
    if (view == NULL) {
        return NULL;
    }
    window = PySequence_GetSlice(view, e->end, PyByteArray_GET_SIZE(e->buffer));
    Py_DECREF(view);
    if (window != NULL) {
        e->lent = e->buffer;
    }
    return window;
}

PyDoc_STRVAR(engine_buffer_updated_doc,
"buffer_updated($self, nbytes, /)\n--\n\n"
"nbytes were received into what get_buffer() gave.");

static PyObject *
engine_buffer_updated(EngineObject *e, PyObject *arg)
{
    Py_ssize_t n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);

    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (e->lent == NULL || e->lent != e->buffer || n < 0
        || n > PyByteArray_GET_SIZE(e->buffer) - e->end) {
        PyErr_Format(PyExc_RuntimeError,
                     "buffer_updated(%zd) does not match get_buffer()", n);
        return NULL;
    }
    e->lent = NULL;
    e->end += n;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(engine_feed_doc,
"feed($self, data, /)\n--\n\n"
"Append bytes to the buffer (for a protocol that gets data_received()).");

static PyObject *
engine_feed(EngineObject *e, PyObject *data)
{
    Py_buffer view;
    int rc;

    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    rc = cpoplib_buffer_room(&e->buffer, &e->pos, &e->end,
                             e->end - e->pos + (view.len > 0 ? view.len : 1),
                             ENGINE_CHUNK);
    if (rc == 0) {
        memcpy(PyByteArray_AS_STRING(e->buffer) + e->end, view.buf,
               (size_t)view.len);
        e->end += view.len;
        e->lent = NULL;
    }
    PyBuffer_Release(&view);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(engine_eof_received_doc,
"eof_received($self, /)\n--\n\n"
"The stream has ended: an unterminated last line is a line, then EOF.");

static PyObject *
engine_eof_received(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    e->eof = 1;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(engine_clear_doc,
"clear($self, /)\n--\n\n"
"Drop what is buffered (the cleartext after STLS's reply) and free the\n"
"buffer.");

static PyObject *
engine_clear(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    e->pos = e->end = 0;
    e->scanned = 0;
    e->lent = NULL;
    Py_CLEAR(e->buffer);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(engine_trim_doc,
"trim($self, /)\n--\n\n"
"Give the buffer's memory back when nothing is buffered and no response\n"
"is being read (an idle connection keeps no buffer), else shrink it\n"
"after a long line.");

static PyObject *
engine_trim(EngineObject *e, PyObject *Py_UNUSED(ignored))
{
    if (e->buffer == NULL || e->lent != NULL) {
        Py_RETURN_NONE;
    }
    if (e->pos == e->end && e->kind == KIND_IDLE) {
        e->pos = e->end = 0;
        e->scanned = 0;
        Py_CLEAR(e->buffer);
    }
    else if (PyByteArray_GET_SIZE(e->buffer) > 2 * ENGINE_CHUNK
             && e->end - e->pos <= ENGINE_CHUNK
             && cpoplib_buffer_room(&e->buffer, &e->pos, &e->end,
                                    ENGINE_CHUNK, ENGINE_CHUNK) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
engine_get_buffered(EngineObject *e, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(e->end - e->pos);
}

static PyObject *
engine_get_capacity(EngineObject *e, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(e->buffer == NULL ? 0
                              : PyByteArray_GET_SIZE(e->buffer));
}

static PyObject *
engine_get_busy(EngineObject *e, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(e->kind != KIND_IDLE);
}

static PyObject *
engine_get_broken(EngineObject *e, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(e->broken);
}

static PyObject *
engine_get_at_eof(EngineObject *e, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(e->eof);
}

static PyObject *
engine_get_response_bytes(EngineObject *e, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(e->total);
}

/* ---- the type ---- */

static PyObject *
engine_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static const char *const names[] = {NULL};
    static const cpoplib_argspec spec = {"ResponseEngine", names, 0, 0, 0};
    PyObject *none[1];
    EngineObject *e;

    if (cpoplib_parse_tuple(&spec, args, kwargs, none) < 0) {
        return NULL;
    }
    e = (EngineObject *)type->tp_alloc(type, 0);
    if (e == NULL) {
        return NULL;
    }
    e->module = Py_NewRef(PyType_GetModule(type));
    return (PyObject *)e;
}

static int
engine_traverse(EngineObject *e, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(e));
    Py_VISIT(e->module);
    Py_VISIT(e->buffer);
    Py_VISIT(e->resp);
    Py_VISIT(e->lines);
    Py_VISIT(e->map);
    Py_VISIT(e->failure);
    return 0;
}

static int
engine_clear_refs(EngineObject *e)
{
    engine_reset(e);
    e->lent = NULL;
    Py_CLEAR(e->buffer);
    return 0;
}

static void
engine_dealloc(EngineObject *e)
{
    PyTypeObject *tp = Py_TYPE(e);

    PyObject_GC_UnTrack(e);
    (void)engine_clear_refs(e);
    Py_CLEAR(e->module);
    tp->tp_free(e);
    Py_DECREF(tp);
}

static PyMethodDef engine_methods[] = {
    {"short", (PyCFunction)engine_short, METH_NOARGS, engine_short_doc},
    {"long", (PyCFunction)engine_long, METH_NOARGS, engine_long_doc},
    {"message", (PyCFunction)engine_message, METH_NOARGS,
     engine_message_doc},
    {"stream", (PyCFunction)engine_stream, METH_NOARGS, engine_stream_doc},
    {"listing", (PyCFunction)engine_listing, METH_O, engine_listing_doc},
    {"skip", (PyCFunction)(void (*)(void))engine_skip,
     METH_FASTCALL | METH_KEYWORDS, engine_skip_doc},
    {"check", (PyCFunction)engine_check, METH_NOARGS, engine_check_doc},
    {"get_buffer", (PyCFunction)engine_get_buffer, METH_O,
     engine_get_buffer_doc},
    {"buffer_updated", (PyCFunction)engine_buffer_updated, METH_O,
     engine_buffer_updated_doc},
    {"feed", (PyCFunction)engine_feed, METH_O, engine_feed_doc},
    {"eof_received", (PyCFunction)engine_eof_received, METH_NOARGS,
     engine_eof_received_doc},
    {"clear", (PyCFunction)engine_clear, METH_NOARGS, engine_clear_doc},
    {"trim", (PyCFunction)engine_trim, METH_NOARGS, engine_trim_doc},
    {NULL, NULL}
};

static PyGetSetDef engine_getset[] = {
    {"buffered", (getter)engine_get_buffered, NULL,
     "Bytes received and not read yet.", NULL},
    {"capacity", (getter)engine_get_capacity, NULL,
     "The buffer's size in bytes (0: no buffer).", NULL},
    {"busy", (getter)engine_get_busy, NULL,
     "True while a response is partly read.", NULL},
    {"broken", (getter)engine_get_broken, NULL,
     "True once a response was cut off (a line too long, EOF, past\n"
     "MAX_RESPONSE_SIZE): nothing more can be read.", NULL},
    {"at_eof", (getter)engine_get_at_eof, NULL,
     "True once eof_received() was called.", NULL},
    {"response_bytes", (getter)engine_get_response_bytes, NULL,
     "Body bytes of the response being read, so far.", NULL},
    {NULL}
};

PyDoc_STRVAR(engine_doc,
"ResponseEngine()\n--\n\n"
"POP3 responses from bytes, with no socket: the C core's line framing,\n"
"dot-unstuffing, octet counting, limits and reply classification for\n"
"a caller that does the I/O (cpoplib.aio's BufferedProtocol).");

static PyType_Slot engine_slots[] = {
    {Py_tp_doc, (void *)engine_doc},
    {Py_tp_new, engine_new},
    {Py_tp_dealloc, engine_dealloc},
    {Py_tp_traverse, engine_traverse},
    {Py_tp_clear, engine_clear_refs},
    {Py_tp_methods, engine_methods},
    {Py_tp_getset, engine_getset},
    {0, NULL}
};

PyType_Spec cpoplib_engine_spec = {
    .name = "cpoplib._cpoplib.ResponseEngine",
    .basicsize = sizeof(EngineObject),
    .flags = (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
              | Py_TPFLAGS_IMMUTABLETYPE),
    .slots = engine_slots,
};

/* ---- FetchWindow ---- */

typedef struct {
    PyObject_HEAD
    pop3_window win;
} WindowObject;

static PyObject *
window_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static const char *const names[] = {"window", NULL};
    static const cpoplib_argspec spec = {"FetchWindow", names, 0, 0, 1};
    PyObject *arg;
    WindowObject *w;
    Py_ssize_t fixed;

    if (cpoplib_parse_tuple(&spec, args, kwargs, &arg) < 0
        || cpoplib_window_arg(arg, &fixed) < 0) {
        return NULL;
    }
    w = (WindowObject *)type->tp_alloc(type, 0);
    if (w != NULL) {
        pop3_window_init(&w->win, fixed);
    }
    return (PyObject *)w;
}

PyDoc_STRVAR(window_single_doc,
"single($self, /)\n--\n\n"
"No pipelining: one command at a time.");

static PyObject *
window_single(WindowObject *w, PyObject *Py_UNUSED(ignored))
{
    pop3_window_single(&w->win);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(window_start_doc,
"start($self, /)\n--\n\n"
"The first round starts now.");

static PyObject *
window_start(WindowObject *w, PyObject *Py_UNUSED(ignored))
{
    pop3_window_start(&w->win, cpoplib_monotonic());
    Py_RETURN_NONE;
}

PyDoc_STRVAR(window_may_send_doc,
"may_send($self, in_flight, bytes_in_flight, size, /)\n--\n\n"
"Whether one more RETR (of a message of size bytes, 0: unknown) may go\n"
"with in_flight RETRs of bytes_in_flight known bytes out.");

static PyObject *
window_may_send(WindowObject *w, PyObject *const *args, Py_ssize_t nargs)
{
    long long v[3];

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "may_send() takes 3 arguments");
        return NULL;
    }
    for (int i = 0; i < 3; i++) {
        v[i] = PyLong_AsLongLong(args[i]);
        if (v[i] == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    return PyBool_FromLong(pop3_window_may_send(&w->win, v[0], v[1], v[2]));
}

PyDoc_STRVAR(window_received_doc,
"received($self, size, /)\n--\n\n"
"A message of size bytes arrived: the adaptive window's accounting.");

static PyObject *
window_received(WindowObject *w, PyObject *arg)
{
    long long size = PyLong_AsLongLong(arg);

    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    pop3_window_received(&w->win, size, cpoplib_monotonic());
    Py_RETURN_NONE;
}

PyDoc_STRVAR(window_known_size_doc,
"known_size(sizes, which, /)\n--\n\n"
"The size of message which in the sizes mapping, as fetch_many() reads\n"
"it: 0 when unknown (no entry, not a non-negative int).");

static PyObject *
window_known_size(PyObject *Py_UNUSED(cls), PyObject *const *args,
                  Py_ssize_t nargs)
{
    Py_ssize_t size;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "known_size() takes 2 arguments");
        return NULL;
    }
    size = cpoplib_known_size(args[0], args[1]);
    return size < 0 ? NULL : PyLong_FromSsize_t(size);
}

static PyMethodDef window_methods[] = {
    {"known_size", (PyCFunction)(void (*)(void))window_known_size,
     METH_FASTCALL | METH_STATIC, window_known_size_doc},
    {"single", (PyCFunction)window_single, METH_NOARGS, window_single_doc},
    {"start", (PyCFunction)window_start, METH_NOARGS, window_start_doc},
    {"may_send", (PyCFunction)(void (*)(void))window_may_send,
     METH_FASTCALL, window_may_send_doc},
    {"received", (PyCFunction)window_received, METH_O, window_received_doc},
    {NULL, NULL}
};

static PyMemberDef window_members[] = {
    {"window", CPOPLIB_T_LONGLONG, offsetof(WindowObject, win.window),
     CPOPLIB_READONLY, "RETR commands allowed in flight now."},
    {NULL}
};

PyDoc_STRVAR(window_doc,
"FetchWindow(window=None)\n--\n\n"
"fetch_many()'s window of pipelined RETR commands: fixed, or with None\n"
"adaptive (from 8, growing each round while that raises the throughput,\n"
"up to 128; 32 MiB of known sizes in flight at most).");

static PyType_Slot window_slots[] = {
    {Py_tp_doc, (void *)window_doc},
    {Py_tp_new, window_new},
    {Py_tp_methods, window_methods},
    {Py_tp_members, window_members},
    {0, NULL}
};

PyType_Spec cpoplib_fetch_window_spec = {
    .name = "cpoplib._cpoplib.FetchWindow",
    .basicsize = sizeof(WindowObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = window_slots,
};

/* ---- module functions ---- */

PyDoc_STRVAR(encode_command_doc,
"_encode_command($module, line, encoding, /)\n--\n\n"
"A command line as _putcmd() sends it: bytes in the encoding, without\n"
"CRLF; ValueError if it holds a control character.");

static PyObject *
encode_command(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_encode_command() takes 2 "
                        "arguments");
        return NULL;
    }
    return cpoplib_encode_command(args[0], args[1]);
}

PyDoc_STRVAR(stat_result_doc,
"_stat_result($module, fields, /)\n--\n\n"
"stat()'s (count, size) from the fields of its reply, validated as\n"
"stat() does.");

static PyObject *
stat_result(PyObject *module, PyObject *fields)
{
    return cpoplib_stat_result(PyModule_GetState(module), fields);
}

PyDoc_STRVAR(scan_listing_doc,
"_scan_listing($module, number, response, /)\n--\n\n"
"(number, octets) from LIST number's reply, validated as list_many()\n"
"does.");

static PyObject *
scan_listing(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_scan_listing() takes 2 arguments");
        return NULL;
    }
    return cpoplib_scan_listing(PyModule_GetState(module), args[0], args[1]);
}

PyDoc_STRVAR(capa_from_lines_doc,
"_capa_from_lines($module, lines, /)\n--\n\n"
"capa()'s dict from the lines of CAPA's response.");

static PyObject *
capa_from_lines(PyObject *module, PyObject *lines)
{
    return cpoplib_capa_from_lines(PyModule_GetState(module), lines);
}

PyDoc_STRVAR(apop_digest_doc,
"_apop_digest($module, welcome, timestamp, secret, /)\n--\n\n"
"APOP's digest (str) of the greeting's timestamp, found with the\n"
"pattern timestamp, and secret (bytes).");

static PyObject *
apop_digest(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_apop_digest() takes 3 arguments");
        return NULL;
    }
    return cpoplib_apop_digest(PyModule_GetState(module), args[0], args[1],
                               args[2]);
}

PyMethodDef cpoplib_engine_functions[] = {
    {"_encode_command", (PyCFunction)(void (*)(void))encode_command,
     METH_FASTCALL, encode_command_doc},
    {"_stat_result", stat_result, METH_O, stat_result_doc},
    {"_scan_listing", (PyCFunction)(void (*)(void))scan_listing, METH_FASTCALL,
     scan_listing_doc},
    {"_capa_from_lines", capa_from_lines, METH_O, capa_from_lines_doc},
    {"_apop_digest", (PyCFunction)(void (*)(void))apop_digest, METH_FASTCALL,
     apop_digest_doc},
    {NULL, NULL}
};
