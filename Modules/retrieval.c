/* retrieval.c -- getting messages without a list of lines: fetch()
 * (the message as one bytes object), fetch_into() (streamed into a
 * file's write()), uidl_map(), list_map(), listing_maps() and
 * stat_and_uidl_map() (two commands in one write).  The pipelined
 * fetch_many() iterator is in pipeline.c.
 *
 * A message is what b"".join(line + b"\r\n" for line in retr(n)[1]) is
 * for poplib: dot-unstuffed, every line ending in CRLF.  When the
 * connection's own reader is in use and none of the hooks that read a
 * multi-line response (_longcmd, _getlongresp, _getline) is overridden
 * and wire debugging is off, the body goes straight from the read buffer
 * into the result (pop3_copy_body(), with the GIL released for large
 * chunks); otherwise retr()'s path runs, through every hook, and its
 * lines are joined.
 *
 * While a body is copied the reader is held (CPOPLIB_HOLD_BODY): a
 * destination's write(), another thread or a signal handler reading the
 * connection's file meanwhile gets RuntimeError instead of bytes from the
 * middle of the message.
 *
 * May call: commands.c, errors.c, protocol.c, reader.c, settings.c,
 * wire.c.  Python code it runs: the hooks, the destination's write(),
 * close() after a failed write.
 */
#include "connection.h"

/* Initial size of fetch()'s result, and the chunk fetch_into() writes. */
#define FETCH_INITIAL ((Py_ssize_t)64 * 1024)
#define FETCH_INTO_CHUNK ((Py_ssize_t)256 * 1024)

/* Where a body goes: one bytes object that grows (fetch), or a buffer
 * that is written to `file` whenever it holds `chunk` bytes
 * (fetch_into). */
typedef struct {
    PyObject *bytes;            /* private (refcount 1) until returned */
    Py_ssize_t used;
    PyObject *write;            /* file.write, looked up before RETR is
                                   sent; NULL: keep everything */
    unsigned long long written;
} body_sink;

/* Room for `need` more bytes in sink->bytes, at least doubling it. */
static int
sink_grow(body_sink *sink, Py_ssize_t need)
{
    Py_ssize_t size = PyBytes_GET_SIZE(sink->bytes);
    Py_ssize_t want;

    if (need > PY_SSIZE_T_MAX - sink->used) {
        PyErr_NoMemory();
        return -1;
    }
    want = sink->used + need;
    if (want <= size) {
        return 0;
    }
    if (size <= PY_SSIZE_T_MAX / 2 && want < size * 2) {
        want = size * 2;
    }
    return _PyBytes_Resize(&sink->bytes, want);
}

/* write(data) until all of `data` is taken: a raw file may take part
 * of it; None counts as all (a hashing wrapper's write()).  `data` is a
 * bytes object of our own that write() may keep.  Runs Python code. */
static int
write_all(PyObject *write, PyObject *data)
{
    Py_ssize_t size = PyBytes_GET_SIZE(data), done = 0;
    PyObject *part = Py_NewRef(data);

    while (done < size) {
        PyObject *res = PyObject_CallOneArg(write, part);
        Py_ssize_t n;

        if (res == NULL) {
            goto error;
        }
        if (res == Py_None) {
            Py_DECREF(res);
            break;
        }
        n = PyNumber_AsSsize_t(res, PyExc_OverflowError);
        Py_DECREF(res);
        if (n == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (n <= 0 || n > size - done) {
            PyErr_Format(PyExc_OSError, "write() returned %zd for %zd bytes",
                         n, size - done);
            goto error;
        }
        done += n;
        if (done < size) {
            Py_SETREF(part, PyBytes_FromStringAndSize(
                PyBytes_AS_STRING(data) + done, size - done));
            if (part == NULL) {
                return -1;
            }
        }
    }
    Py_DECREF(part);
    return 0;

error:
    Py_DECREF(part);
    return -1;
}

/* Hand what the sink holds to its file.  Runs Python code. */
static int
sink_flush(body_sink *sink)
{
    PyObject *chunk;
    int rc;

    if (sink->write == NULL || sink->used == 0) {
        return 0;
    }
    chunk = PyBytes_FromStringAndSize(PyBytes_AS_STRING(sink->bytes),
                                      sink->used);
    if (chunk == NULL) {
        return -1;
    }
    rc = write_all(sink->write, chunk);
    Py_DECREF(chunk);
    if (rc == 0) {
        sink->written += (unsigned long long)sink->used;
        sink->used = 0;
    }
    return rc;
}


/* Append `data` (a line, CRLF added) to the sink: 0, CPOPLIB_BODY_ERROR or
 * CPOPLIB_BODY_WRITE_FAILED. */
static int
sink_append_line(body_sink *sink, const char *data, Py_ssize_t len)
{
    if (len > PY_SSIZE_T_MAX - 2 || sink_grow(sink, len + 2) < 0) {
        return CPOPLIB_BODY_ERROR;
    }
    memcpy(PyBytes_AS_STRING(sink->bytes) + sink->used, data, (size_t)len);
    memcpy(PyBytes_AS_STRING(sink->bytes) + sink->used + len, "\r\n", 2);
    sink->used += len + 2;
    if (sink->write != NULL && sink->used >= FETCH_INTO_CHUNK
        && sink_flush(sink) < 0) {
        return CPOPLIB_BODY_WRITE_FAILED;
    }
    return 0;
}

/* The body of a multi-line response, from our reader into the sink.
 * The reader is held meanwhile (CPOPLIB_HOLD_BODY): a write() of the
 * sink's file, a signal handler or another thread cannot read from the
 * middle of the body.  Runs Python code between chunks (recv_into,
 * write()). */
static int
read_body(cpoplib_state *st, ReaderObject *reader, Py_ssize_t cap,
          body_sink *sink)
{
    Py_ssize_t maxline, total = 0;
    pop3_copy res;
    int rc;

    memset(&res, 0, sizeof(res));
    if (cpoplib_current_maxline(st, &maxline) < 0) {
        return CPOPLIB_BODY_ERROR;
    }
    if (maxline < 0) {
        cpoplib_error(st, "line too long");
        return CPOPLIB_BODY_ERROR;
    }
    reader->held |= CPOPLIB_HOLD_BODY;
    for (;;) {
        Py_ssize_t room = PyBytes_GET_SIZE(sink->bytes) - sink->used;
        int st_copy = cpoplib_reader_copy_body(
            reader, maxline == PY_SSIZE_T_MAX - 1 ? maxline : maxline + 1,
            PyBytes_AS_STRING(sink->bytes) + sink->used, (size_t)room,
            &res);

        if (st_copy < 0) {
            rc = CPOPLIB_BODY_ERROR;
            break;
        }
        sink->used += (Py_ssize_t)res.produced;
        if ((Py_ssize_t)res.consumed > PY_SSIZE_T_MAX - total) {
            total = PY_SSIZE_T_MAX;
        }
        else {
            total += (Py_ssize_t)res.consumed;
        }
        if (cap >= 0 && total > cap) {
            rc = CPOPLIB_BODY_TOO_LONG;
            break;
        }
        if (st_copy == POP3_LINE) {
            rc = 0;
            break;
        }
        if (st_copy == POP3_TOO_LONG) {
            cpoplib_error(st, "line too long");
            rc = CPOPLIB_BODY_ERROR;
            break;
        }
        if (st_copy == POP3_EOF) {
            cpoplib_error(st, "-ERR EOF");
            rc = CPOPLIB_BODY_ERROR;
            break;
        }
        if (st_copy == POP3_NEED_ROOM && (sink->write == NULL
                                          || sink->used == 0)) {
            if (sink_grow(sink, (Py_ssize_t)res.need) < 0) {
                rc = CPOPLIB_BODY_ERROR;
                break;
            }
            continue;
        }
        /* POP3_NEED_ROOM with a file, or POP3_NEED_MORE: hand a full
           chunk (or whatever blocks the next line) to write() */
        if (sink->write != NULL
            && (st_copy == POP3_NEED_ROOM
                || sink->used >= FETCH_INTO_CHUNK)) {
            if (sink_flush(sink) < 0) {
                rc = CPOPLIB_BODY_WRITE_FAILED;
                break;
            }
            /* write() ran Python code: what was known of the line ahead
               is stale */
            res.scanned = 0;
            if (PyBytes_GET_SIZE(sink->bytes) < (Py_ssize_t)res.need
                && sink_grow(sink, (Py_ssize_t)res.need) < 0) {
                rc = CPOPLIB_BODY_ERROR;
                break;
            }
        }
    }
    reader->held &= ~CPOPLIB_HOLD_BODY;
    return rc;
}

/* 1 when the body can be read by read_body(): _getlongresp is ours and
 * _getlongresp()'s own bulk path applies (a new reference to the reader
 * in *reader); 0 otherwise; -1 on error. */
static int
can_read_directly(POP3Object *self, cpoplib_state *st, PyObject **reader)
{
    int is_default = cpoplib_hook_is_default(self, st, HOOK_GETLONGRESP);

    *reader = NULL;
    if (is_default <= 0) {
        return is_default;
    }
    return cpoplib_body_reader(self, st, reader);
}

/* The lines of a (resp, lines, octets) result appended to the sink. */
static int
append_lines(PyObject *result, body_sink *sink)
{
    PyObject *lines, *it = NULL, *line;
    int rc = CPOPLIB_BODY_ERROR;

    lines = PySequence_GetItem(result, 1);
    if (lines == NULL) {
        return CPOPLIB_BODY_ERROR;
    }
    it = PyObject_GetIter(lines);
    if (it == NULL) {
        goto done;
    }
    while ((line = PyIter_Next(it)) != NULL) {
        Py_buffer view;
        int appended;

        if (PyObject_GetBuffer(line, &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(line);
            goto done;
        }
        appended = sink_append_line(sink, view.buf, view.len);
        PyBuffer_Release(&view);
        Py_DECREF(line);
        if (appended < 0) {
            rc = appended;
            goto done;
        }
    }
    if (!PyErr_Occurred()) {
        rc = sink_flush(sink) < 0 ? CPOPLIB_BODY_WRITE_FAILED : 0;
    }

done:
    Py_XDECREF(it);
    Py_DECREF(lines);
    return rc;
}

/* The response to a RETR already sent, into the sink: straight from the
 * reader when can_read_directly(), else through self._getlongresp(). */
static int
read_response(POP3Object *self, cpoplib_state *st, Py_ssize_t cap,
              body_sink *sink)
{
    PyObject *reader = NULL, *res;
    int direct, rc = CPOPLIB_BODY_ERROR;

    direct = can_read_directly(self, st, &reader);
    if (direct < 0) {
        return CPOPLIB_BODY_ERROR;
    }
    if (!direct) {
        res = cpoplib_getlongresp(self, st);
        if (res == NULL) {
            return CPOPLIB_BODY_ERROR;
        }
        rc = append_lines(res, sink);
        Py_DECREF(res);
        return rc;
    }
    res = cpoplib_getresp(self, st);
    if (res != NULL) {
        Py_DECREF(res);
        rc = read_body(st, (ReaderObject *)reader, cap, sink);
        if (rc == 0) {
            rc = sink_flush(sink) < 0 ? CPOPLIB_BODY_WRITE_FAILED : 0;
        }
    }
    Py_DECREF(reader);
    return rc;
}

/* What a failed read into a sink leaves behind: past MAX_RESPONSE_SIZE
 * or after a failed write() the rest of the message is still on the
 * wire, so the connection is closed (the error stays the one raised). */
static void
cleanup_failed_read(POP3Object *self, cpoplib_state *st, int rc)
{
    if (rc == CPOPLIB_BODY_TOO_LONG) {
        cpoplib_fail_too_long(self, st);
    }
    else if (rc == CPOPLIB_BODY_WRITE_FAILED) {
        cpoplib_close_keeping_error(self, st);
    }
}

/* fetch() and fetch_into(): RETR through self._putcmd(), then the
 * response into the sink.  A _longcmd override is used as retr() would
 * use it. */
static int
fetch_to_sink(POP3Object *self, PyObject *which, body_sink *sink)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *line, *res;
    Py_ssize_t cap;
    int is_default, rc;

    is_default = cpoplib_hook_is_default(self, st, HOOK_LONGCMD);
    if (is_default < 0) {
        return CPOPLIB_BODY_ERROR;
    }
    if (!is_default) {
        res = cpoplib_command1(self, st->fmt_retr, which, 1);
        if (res == NULL) {
            return CPOPLIB_BODY_ERROR;
        }
        rc = append_lines(res, sink);
        Py_DECREF(res);
        cleanup_failed_read(self, st, rc);
        return rc;
    }
    if (cpoplib_current_response_cap(st, &cap) < 0) {
        return CPOPLIB_BODY_ERROR;
    }
    line = cpoplib_format_command(st->fmt_retr, which);
    if (line == NULL) {
        return CPOPLIB_BODY_ERROR;
    }
    res = cpoplib_putcmd(self, st, line);
    Py_DECREF(line);
    if (res == NULL) {
        return CPOPLIB_BODY_ERROR;
    }
    Py_DECREF(res);
    rc = read_response(self, st, cap, sink);
    cleanup_failed_read(self, st, rc);
    return rc;
}

/* What a sink gives back: its bytes, trimmed to what was written, after
 * `rc` (0, or a BODY_* failure with an exception set).  Steals the sink's
 * reference. */
static PyObject *
sink_result(body_sink *sink, int rc)
{
    if (rc < 0) {
        Py_XDECREF(sink->bytes);
        return NULL;
    }
    if (_PyBytes_Resize(&sink->bytes, sink->used) < 0) {
        return NULL;
    }
    return sink->bytes;
}

PyObject *
cpoplib_read_message(POP3Object *self, Py_ssize_t cap)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    body_sink sink = {NULL, 0, NULL, 0};
    int rc;

    sink.bytes = PyBytes_FromStringAndSize(NULL, FETCH_INITIAL);
    if (sink.bytes == NULL) {
        return NULL;
    }
    rc = read_response(self, st, cap, &sink);
    if (rc < 0) {
        cleanup_failed_read(self, st, rc);
    }
    return sink_result(&sink, rc);
}

PyObject *
cpoplib_fetch_impl(POP3Object *self, PyObject *which)
{
    body_sink sink = {NULL, 0, NULL, 0};

    sink.bytes = PyBytes_FromStringAndSize(NULL, FETCH_INITIAL);
    if (sink.bytes == NULL) {
        return NULL;
    }
    return sink_result(&sink, fetch_to_sink(self, which, &sink));
}

PyObject *
cpoplib_fetch_into_impl(POP3Object *self, PyObject *which,
                        PyObject *file)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    body_sink sink = {NULL, 0, NULL, 0};
    int rc;

    /* before anything is sent: a destination that cannot take the
       message must not cost the connection */
    sink.write = PyObject_GetAttr(file, st->str_write);
    if (sink.write == NULL || !PyCallable_Check(sink.write)) {
        if (sink.write == NULL
            && !PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return NULL;
        }
        PyErr_Clear();
        Py_XDECREF(sink.write);
        PyErr_Format(PyExc_TypeError,
                     "fetch_into() needs a file with a write() method, "
                     "not %.200s", Py_TYPE(file)->tp_name);
        return NULL;
    }
    sink.bytes = PyBytes_FromStringAndSize(NULL, FETCH_INTO_CHUNK);
    if (sink.bytes == NULL) {
        Py_DECREF(sink.write);
        return NULL;
    }
    rc = fetch_to_sink(self, which, &sink);
    Py_XDECREF(sink.bytes);
    Py_DECREF(sink.write);
    if (rc < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(sink.written);
}

/* ---- uidl_map() and list_map() ---- */

/* {msgnum: value} from the lines of a listing result (resp, lines,
 * octets) of `command`; the value is the second field as bytes (UIDL) or
 * as an int (LIST).  Each line goes through wire.c's
 * cpoplib_listing_line() (pop3_parse_listing(), fuzzed with the rest of
 * the parser). */
static PyObject *
parse_listing(cpoplib_state *st, PyObject *result, PyObject *command,
              int numeric)
{
    PyObject *lines = NULL, *it = NULL, *line, *map;

    map = PyDict_New();
    if (map == NULL) {
        return NULL;
    }
    lines = PySequence_GetItem(result, 1);
    if (lines == NULL) {
        goto error;
    }
    it = PyObject_GetIter(lines);
    if (it == NULL) {
        goto error;
    }
    while ((line = PyIter_Next(it)) != NULL) {
        int rc;

        if (!PyBytes_Check(line)) {
            PyErr_Format(PyExc_TypeError, "%U line is %.200s, not bytes",
                         command, Py_TYPE(line)->tp_name);
            Py_DECREF(line);
            goto error;
        }
        rc = cpoplib_listing_line(st, map, command, PyBytes_AS_STRING(line),
                                  PyBytes_GET_SIZE(line), numeric);
        Py_DECREF(line);
        if (rc < 0) {
            goto error;
        }
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(it);
    Py_DECREF(lines);
    return map;

error:
    Py_XDECREF(it);
    Py_XDECREF(lines);
    Py_DECREF(map);
    return NULL;
}

PyObject *
cpoplib_listing_map(POP3Object *self, PyObject *command, int numeric)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *result = cpoplib_run_command(self, command, 1), *map;

    if (result == NULL) {
        return NULL;
    }
    map = parse_listing(st, result, command, numeric);
    Py_DECREF(result);
    return map;
}

/* The UIDL half of listing_maps(): None, with no exception, for the
 * server's -ERR (no UIDL), else what parse_listing() gives. */
static PyObject *
uidl_or_none(POP3Object *self, cpoplib_state *st, PyObject *result)
{
    PyObject *exc;

    if (result != NULL) {
        PyObject *map = parse_listing(st, result, st->cmd_uidl, 0);
        Py_DECREF(result);
        return map;
    }
    exc = cpoplib_fetch_exception();
    if (cpoplib_is_err_reply(st, exc)) {
        Py_DECREF(exc);
        Py_RETURN_NONE;
    }
    cpoplib_restore_exception(exc);
    return NULL;
}

/* The first half of two_listings(): LIST's map, or STAT's (count,
 * octets), from its response (NULL: the command failed). */
static PyObject *
first_of_two(POP3Object *self, cpoplib_state *st, PyObject *resp,
             int stat_first)
{
    PyObject *res;

    if (resp == NULL) {
        return NULL;
    }
    res = stat_first ? cpoplib_stat_of_response(self, st, resp)
                     : parse_listing(st, resp, st->cmd_list, 1);
    Py_DECREF(resp);
    return res;
}

/* listing_maps() (LIST, then UIDL) and stat_and_uidl_map() (STAT, then
 * UIDL): both commands in one write when the server pipelines and the
 * hooks that send them are poplib's own, else one after the other. */
static PyObject *
two_listings(POP3Object *self, int stat_first)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *first_cmd = stat_first ? st->cmd_stat : st->cmd_list;
    PyObject *first = NULL, *uidls = NULL, *resp, *uidl, *res;
    PyObject *pending;
    Py_ssize_t cap;
    int pipelines, direct, rc;

    pipelines = cpoplib_server_pipelines(self);
    if (pipelines < 0) {
        return NULL;
    }
    direct = pipelines ? cpoplib_hook_is_default(
                             self, st, stat_first ? HOOK_SHORTCMD
                                                  : HOOK_LONGCMD)
                       : 0;
    if (direct < 0) {
        return NULL;
    }
    if (!direct) {
        /* one after the other, through self._shortcmd()/_longcmd() */
        first = first_of_two(self, st,
                             cpoplib_run_command(self, first_cmd, !stat_first),
                             stat_first);
        if (first == NULL) {
            return NULL;
        }
        uidls = uidl_or_none(self, st,
                             cpoplib_run_command(self, st->cmd_uidl, 1));
        goto done;
    }
    /* both commands in one write, then both responses */
    if (cpoplib_current_response_cap(st, &cap) < 0
        || cpoplib_cork(self) < 0) {
        return NULL;
    }
    res = cpoplib_putcmd(self, st, first_cmd);
    rc = res == NULL ? -1 : 0;
    Py_XDECREF(res);
    if (rc == 0) {
        res = cpoplib_putcmd(self, st, st->cmd_uidl);
        rc = res == NULL ? -2 : 0;      /* -2: the first went, UIDL did not */
        Py_XDECREF(res);
    }
    if (rc < 0) {
        pending = cpoplib_fetch_exception();
        if (cpoplib_uncork(self, st) == 0 && rc == -2) {
            /* read the first response, so that the connection stays in
               step */
            Py_XDECREF(stat_first ? cpoplib_getresp(self, st)
                                  : cpoplib_getlongresp(self, st));
            PyErr_Clear();
        }
        cpoplib_chain_context(pending);
        return NULL;
    }
    if (cpoplib_uncork(self, st) < 0) {
        return NULL;
    }
    resp = stat_first ? cpoplib_getresp(self, st)
                      : cpoplib_getlongresp(self, st);
    if (resp == NULL) {
        /* the first failed: UIDL's response is still to read */
        pending = cpoplib_fetch_exception();
        if (cpoplib_is_err_reply(st, pending)) {
            Py_XDECREF(cpoplib_getlongresp(self, st));
            PyErr_Clear();
        }
        else {
            self->out_of_step = 1;      /* inside the first response */
        }
        cpoplib_restore_exception(pending);
        return NULL;
    }
    uidl = cpoplib_getlongresp(self, st);
    /* UIDL's failure waits while the first response is parsed */
    pending = uidl == NULL ? cpoplib_fetch_exception() : NULL;
    first = first_of_two(self, st, resp, stat_first);
    if (first == NULL) {
        Py_XDECREF(uidl);
        Py_XDECREF(pending);
        return NULL;
    }
    cpoplib_restore_exception(pending);
    uidls = uidl_or_none(self, st, uidl);

done:
    if (uidls == NULL) {
        Py_DECREF(first);
        return NULL;
    }
    res = PyTuple_Pack(2, first, uidls);
    Py_DECREF(first);
    Py_DECREF(uidls);
    return res;
}

PyObject *
cpoplib_listing_maps_impl(POP3Object *self)
{
    return two_listings(self, 0);
}

PyObject *
cpoplib_stat_and_uidl_map_impl(POP3Object *self)
{
    return two_listings(self, 1);
}
