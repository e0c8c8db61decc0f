/* pipeline.c -- POP3.fetch_many(): many messages in order, with a window
 * of RETR commands in flight when the server pipelines (RFC 2449
 * PIPELINING), and DELE for each message once the caller has come back
 * for the next one; POP3.top_many(), the same iterator sending TOP n
 * howmuch instead of RETR (the headers of many messages, for a filter);
 * POP3.dele_many(), DELE for many messages the same way; and
 * POP3.list_many(), LIST n for many messages ({n: octets}).
 *
 * The iterator reserves the connection from its first step until it is
 * exhausted or closed: between two steps the caller's own code runs, and
 * any other command on the connection would read a reply meant for a
 * RETR in flight, so it is refused (RuntimeError) before it sends
 * anything, and the connection's file refuses to be read.  Responses are
 * read in the order the commands went out; a queue of (kind, index,
 * size) entries says what each one answers.  The commands of one refill
 * leave in one write (the connection is corked around it), so that
 * Nagle's algorithm does not hold them back a round trip.
 *
 * The window (window.h, shared with the asyncio client): fixed when the
 * caller gives one; with window=None it adapts to the link, as TCP's slow
 * start does, from 8 commands up to 128, and with the messages' sizes
 * known (sizes=) the replies in flight never exceed 32 MiB (but one
 * message always may go): an early stop then drains at most that much.
 * The client's memory does not grow with the window -- replies in flight
 * wait in the kernel's buffers and the server's, and one message is read
 * at a time.
 *
 * Failure: when a RETR or DELE gets -ERR, every response still in flight
 * is read and dropped, so the connection stays in step, and error_proto
 * is raised with the message number in its `which` attribute (its args
 * are poplib's).  Every message before it has been handed over; none is
 * lost, repeated or given another's number.  Closing the iterator early
 * (break out of the loop, close(), garbage collection) drains the same
 * way and deletes nothing more.
 *
 * May call: commands.c, connection.c, errors.c, protocol.c, reader.c, retrieval.c, settings.c, window.c, wire.c.
 * Python code it runs: the hooks, capa(), attribute reads, the sizes
 * mapping, int() of the numbers list_many() is given.
 */
#include "connection.h"

#include "window.h"

enum { ENTRY_RETR, ENTRY_DELE };

typedef struct {
    int kind;
    Py_ssize_t index;           /* into `which` */
    Py_ssize_t size;            /* RETR: the message's size if known */
} entry;

typedef struct {
    PyObject_HEAD
    POP3Object *conn;           /* strong */
    PyObject *which;            /* a list of message numbers */
    PyObject *sizes;            /* a mapping number -> octets, or NULL */
    PyObject *top_lines;        /* top_many(): howmuch (an int); NULL:
                                   fetch_many(), RETR */
    pop3_window win;            /* RETR commands allowed in flight */
    Py_ssize_t bytes_in_flight; /* of the RETRs in flight, as known */
    int delete_;
    int pipeline;               /* -1: ask CAPA at the first step */
    int started;
    int finished;
    int broken;                 /* a read failed inside a response */
    Py_ssize_t cap;             /* MAX_RESPONSE_SIZE when it was called */
    ReaderObject *held;         /* strong: the connection's reader, held
                                   (CPOPLIB_HOLD_ITERATION) between steps */
    Py_ssize_t next_send;       /* next RETR to send */
    Py_ssize_t retr_in_flight;
    Py_ssize_t to_delete;       /* handed over, DELE not sent yet; -1 */
    entry *queue;               /* ring of what is in flight */
    Py_ssize_t queue_cap, head, count;
} FetchIterObject;

/* ---- the queue of commands in flight ---- */

static int
queue_push(FetchIterObject *it, int kind, Py_ssize_t index, Py_ssize_t size)
{
    if (it->count >= it->queue_cap) {
        /* cannot happen: at most 2 * window entries are in flight */
        PyErr_SetString(PyExc_SystemError,
                        "fetch_many(): too many commands in flight");
        return -1;
    }
    it->queue[(it->head + it->count) % it->queue_cap] =
        (entry){kind, index, size};
    it->count++;
    return 0;
}

static entry
queue_pop(FetchIterObject *it)
{
    entry e = it->queue[it->head];

    it->head = (it->head + 1) % it->queue_cap;
    it->count--;
    return e;
}

/* ---- steps ---- */

/* Send `fmt % which[index]` through self._putcmd() and queue it. */
static int
send_command(FetchIterObject *it, int kind, Py_ssize_t index,
             Py_ssize_t size)
{
    cpoplib_state *st = cpoplib_pop3_state(it->conn);
    PyObject *which = PyList_GET_ITEM(it->which, index);
    PyObject *line, *res;

    if (it->count >= it->queue_cap) {
        return queue_push(it, kind, index, size);     /* raises */
    }
    if (kind == ENTRY_RETR && it->top_lines != NULL) {
        PyObject *args = PyTuple_Pack(2, which, it->top_lines);

        if (args == NULL) {
            return -1;
        }
        line = cpoplib_format_command(st->fmt_top, args);
        Py_DECREF(args);
    }
    else {
        Py_INCREF(which);
        line = cpoplib_format_command(kind == ENTRY_RETR ? st->fmt_retr
                                                         : st->fmt_dele,
                                      which);
        Py_DECREF(which);
    }
    if (line == NULL) {
        return -1;
    }
    res = cpoplib_putcmd(it->conn, st, line);
    Py_DECREF(line);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    if (queue_push(it, kind, index, size) < 0) {
        return -1;
    }
    if (kind == ENTRY_RETR) {
        it->retr_in_flight++;
        it->bytes_in_flight += size;
    }
    return 0;
}

/* The size of which[index] from the sizes mapping: 0 when unknown, -1
 * with an exception set when the mapping itself fails otherwise. */
static Py_ssize_t
known_size(FetchIterObject *it, Py_ssize_t index)
{
    if (it->sizes == NULL) {
        return 0;
    }
    return cpoplib_known_size(it->sizes, PyList_GET_ITEM(it->which, index));
}

/* The error being raised answers which[index]: record that on it. */
static void
tag_error(FetchIterObject *it, Py_ssize_t index)
{
    cpoplib_state *st = cpoplib_pop3_state(it->conn);
    PyObject *exc = cpoplib_fetch_exception();

    if (exc != NULL && PyObject_TypeCheck(exc,
                                          (PyTypeObject *)st->error_proto)) {
        if (PyObject_SetAttr(exc, st->str_which,
                             PyList_GET_ITEM(it->which, index)) < 0) {
            cpoplib_chain_context(exc);
            return;
        }
    }
    cpoplib_restore_exception(exc);
}

/* Read the response at the front of the queue: a message (a new bytes
 * object in *message) for RETR, nothing for DELE.  0 or -1. */
static int
read_front(FetchIterObject *it, entry *e, PyObject **message)
{
    cpoplib_state *st = cpoplib_pop3_state(it->conn);
    PyObject *res, *exc;

    *e = queue_pop(it);
    *message = NULL;
    if (e->kind == ENTRY_RETR) {
        it->retr_in_flight--;
        it->bytes_in_flight -= e->size;
        *message = cpoplib_read_message(it->conn, it->cap);
        res = *message;
        if (res != NULL) {
            pop3_window_received(&it->win, PyBytes_GET_SIZE(res),
                                 cpoplib_monotonic());
        }
    }
    else {
        res = cpoplib_getresp(it->conn, st);
        Py_XDECREF(res);
    }
    if (res != NULL) {
        return 0;
    }
    /* only a whole -ERR reply leaves the stream in step */
    exc = cpoplib_fetch_exception();
    if (!cpoplib_is_err_reply(st, exc)) {
        it->broken = 1;
    }
    cpoplib_restore_exception(exc);
    return -1;
}

/* Read and drop every response still in flight, keeping the pending
 * exception (if any) as the one raised: a later failure while draining
 * gets it as __context__.  An -ERR reply leaves the stream in step and
 * draining goes on; any other failure (a line too long or EOF inside a
 * message, a socket error, an exception from a hook or a signal handler)
 * leaves it somewhere inside a response: the connection is marked out of
 * step, so that every later command fails instead of reading a stale
 * reply.  Returns 0, or -1 when it marked the connection. */
static int
drain(FetchIterObject *it)
{
    PyObject *pending = cpoplib_fetch_exception();

    while (it->count > 0 && !it->broken) {
        entry e;
        PyObject *message;

        if (read_front(it, &e, &message) == 0) {
            Py_XDECREF(message);
            continue;
        }
        if (it->broken) {
            cpoplib_chain_context(pending);
            pending = cpoplib_fetch_exception();
            break;
        }
        if (pending == NULL) {
            tag_error(it, e.index);
            pending = cpoplib_fetch_exception();
        }
        else {
            PyErr_Clear();       /* a later -ERR: the first one stands */
        }
    }
    cpoplib_restore_exception(pending);
    if (it->broken) {
        /* somewhere inside a response: nothing more can be read */
        it->count = 0;
        it->conn->out_of_step = 1;
        return -1;
    }
    return 0;
}

/* Between two steps responses are in flight: hold the connection's reader
 * (if it is ours) so that nobody reads from the middle of them. */
static int
hold_reader(FetchIterObject *it)
{
    cpoplib_state *st = cpoplib_pop3_state(it->conn);
    PyObject *file = PyObject_GetAttr((PyObject *)it->conn, st->str_file);

    if (file == NULL) {
        return -1;
    }
    if (cpoplib_is_reader(st, file)) {
        it->held = (ReaderObject *)file;
        it->held->held |= CPOPLIB_HOLD_ITERATION;
    }
    else {
        Py_DECREF(file);
    }
    return 0;
}

static void
release_reader(FetchIterObject *it)
{
    if (it->held != NULL) {
        it->held->held &= ~CPOPLIB_HOLD_ITERATION;
        Py_CLEAR(it->held);
    }
}

/* End the iteration: drain, give the connection back. */
static void
finish(FetchIterObject *it)
{
    if (it->finished) {
        return;
    }
    it->finished = 1;
    release_reader(it);
    (void)drain(it);
    if (it->conn->reserved == (void *)it) {
        it->conn->reserved = NULL;
    }
}

/* Send what the window allows (and the DELE of the message handed over
 * last), corked into one write when pipelining.  0 or -1; whatever was
 * queued has gone out unless the connection broke (it->broken). */
static int
refill(FetchIterObject *it)
{
    cpoplib_state *st = cpoplib_pop3_state(it->conn);
    Py_ssize_t n = PyList_GET_SIZE(it->which);
    int rc = 0;

    if (it->pipeline && cpoplib_cork(it->conn) < 0) {
        return -1;
    }
    /* the caller came back: the message handed over last may go */
    if (it->to_delete >= 0) {
        Py_ssize_t index = it->to_delete;
        it->to_delete = -1;
        if (!it->pipeline && (drain(it) < 0 || PyErr_Occurred())) {
            rc = -1;
        }
        else if (send_command(it, ENTRY_DELE, index, 0) < 0) {
            rc = -1;
        }
    }
    while (rc == 0 && it->retr_in_flight < it->win.window
           && it->next_send < n) {
        Py_ssize_t size = known_size(it, it->next_send);

        if (size < 0) {
            rc = -1;
            break;
        }
        if (!pop3_window_may_send(&it->win, it->retr_in_flight,
                                  it->bytes_in_flight, size)) {
            break;                  /* enough bytes on their way */
        }
        if (!it->pipeline && it->count > 0
            && (drain(it) < 0 || PyErr_Occurred())) {
            rc = -1;
            break;
        }
        if (send_command(it, ENTRY_RETR, it->next_send, size) < 0) {
            rc = -1;
            break;
        }
        it->next_send++;
    }
    if (it->pipeline) {
        PyObject *pending = rc < 0 ? cpoplib_fetch_exception() : NULL;

        if (cpoplib_uncork(it->conn, st) < 0) {
            /* how much of the batch left is unknown */
            it->broken = 1;
            cpoplib_chain_context(pending);
            return -1;
        }
        cpoplib_restore_exception(pending);
    }
    return rc;
}

/* One step, with the connection claimed: the next (which, message). */
static PyObject *
fetch_iter_step(FetchIterObject *it)
{
    Py_ssize_t n = PyList_GET_SIZE(it->which);
    PyObject *message = NULL, *result;
    entry e;

    if (!it->started) {
        it->started = 1;
        it->conn->reserved = (void *)it;
        if (it->pipeline < 0 && n > 0) {
            int pipelines = cpoplib_server_pipelines(it->conn);
            if (pipelines < 0) {
                goto error;
            }
            it->pipeline = pipelines;
        }
        if (!it->pipeline) {
            pop3_window_single(&it->win);
        }
        pop3_window_start(&it->win, cpoplib_monotonic());
    }
    if (refill(it) < 0) {
        goto error;
    }
    for (;;) {
        if (it->count == 0) {
            finish(it);          /* StopIteration, or drain's error */
            return NULL;
        }
        if (read_front(it, &e, &message) < 0) {
            tag_error(it, e.index);
            goto error;
        }
        if (e.kind == ENTRY_RETR) {
            break;
        }
    }
    if (it->delete_) {
        it->to_delete = e.index;
    }
    result = PyTuple_Pack(2, PyList_GET_ITEM(it->which, e.index), message);
    Py_DECREF(message);
    if (result == NULL) {
        goto error;
    }
    return result;

error:
    finish(it);
    return NULL;
}

static PyObject *
fetch_iter_next(FetchIterObject *it)
{
    PyObject *result;

    if (it->finished) {
        return NULL;
    }
    if (cpoplib_claim_as(it->conn, (void *)it) < 0) {
        return NULL;
    }
    release_reader(it);
    result = fetch_iter_step(it);
    if (result != NULL && !it->finished && hold_reader(it) < 0) {
        Py_CLEAR(result);
        finish(it);
    }
    cpoplib_release(it->conn);
    return result;
}

PyDoc_STRVAR(fetch_iter_close_doc,
"close($self, /)\n--\n\n"
"Stop: read and drop the responses still in flight (nothing more is\n"
"deleted) and give the connection back.");

static PyObject *
fetch_iter_close(FetchIterObject *it, PyObject *Py_UNUSED(ignored))
{
    if (!it->finished) {
        if (!it->started) {
            it->finished = 1;
        }
        else {
            if (cpoplib_claim_as(it->conn, (void *)it) < 0) {
                return NULL;
            }
            it->to_delete = -1;
            finish(it);
            cpoplib_release(it->conn);
            if (PyErr_Occurred()) {
                return NULL;
            }
        }
    }
    Py_RETURN_NONE;
}

static void
fetch_iter_finalize(FetchIterObject *it)
{
    PyObject *exc = cpoplib_fetch_exception(), *res;

    if (it->conn != NULL && !it->finished) {
        res = fetch_iter_close(it, NULL);
        if (res == NULL) {
            /* Nobody to tell but the connection: whatever went wrong
               (it was closed, the server went away, another command is
               running), its stream cannot be trusted any more; the next
               command says so. */
            it->conn->out_of_step = 1;
            PyErr_Clear();
        }
        Py_XDECREF(res);
    }
    cpoplib_restore_exception(exc);
}

static int
fetch_iter_traverse(FetchIterObject *it, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(it));
    Py_VISIT(it->conn);
    Py_VISIT(it->which);
    Py_VISIT(it->sizes);
    Py_VISIT(it->top_lines);
    Py_VISIT(it->held);
    return 0;
}

static int
fetch_iter_clear(FetchIterObject *it)
{
    release_reader(it);
    if (it->conn != NULL && it->conn->reserved == (void *)it) {
        it->conn->reserved = NULL;
    }
    it->finished = 1;
    Py_CLEAR(it->conn);
    Py_CLEAR(it->which);
    Py_CLEAR(it->sizes);
    Py_CLEAR(it->top_lines);
    return 0;
}

static void
fetch_iter_dealloc(FetchIterObject *it)
{
    PyTypeObject *tp = Py_TYPE(it);

    if (PyObject_CallFinalizerFromDealloc((PyObject *)it) < 0) {
        return;                  /* resurrected */
    }
    PyObject_GC_UnTrack(it);
    (void)fetch_iter_clear(it);
    PyMem_Free(it->queue);
    tp->tp_free(it);
    Py_DECREF(tp);
}

static PyMemberDef fetch_iter_members[] = {
    {"window", CPOPLIB_T_LONGLONG, offsetof(FetchIterObject, win.window),
     CPOPLIB_READONLY,
     "RETR commands the iterator lets be in flight now: the window given,\n"
     "or where the adaptive window (window=None) has got to; 1 without\n"
     "pipelining."},
    {NULL}
};

static PyMethodDef fetch_iter_methods[] = {
    {"close", (PyCFunction)fetch_iter_close, METH_NOARGS,
     fetch_iter_close_doc},
    {NULL, NULL}
};

PyDoc_STRVAR(fetch_iter_doc,
"The iterator of POP3.fetch_many() and POP3.top_many(): (which, message)\n"
"pairs in order.");

static PyType_Slot fetch_iter_slots[] = {
    {Py_tp_doc, (void *)fetch_iter_doc},
    {Py_tp_dealloc, fetch_iter_dealloc},
    {Py_tp_finalize, fetch_iter_finalize},
    {Py_tp_traverse, fetch_iter_traverse},
    {Py_tp_clear, fetch_iter_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, fetch_iter_next},
    {Py_tp_methods, fetch_iter_methods},
    {Py_tp_members, fetch_iter_members},
    {0, NULL}
};

PyType_Spec cpoplib_fetch_iter_spec = {
    .name = "cpoplib._cpoplib.FetchIterator",
    .basicsize = sizeof(FetchIterObject),
    .flags = (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
              | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION),
    .slots = fetch_iter_slots,
};

/* A truth value argument: -1 for None (decide), else 0 or 1. */
static int
tristate(PyObject *arg)
{
    if (arg == NULL || arg == Py_None) {
        return -1;
    }
    return PyObject_IsTrue(arg);
}

/* The iterator of fetch_many() (top_lines NULL) or top_many(). */
static PyObject *
new_iterator(POP3Object *self, PyObject *which, int del, PyObject *pipeline,
             PyObject *window, PyObject *sizes, PyObject *top_lines)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    FetchIterObject *it;
    Py_ssize_t w = 0, cap;
    int pipe = tristate(pipeline);

    if (pipeline != NULL && pipeline != Py_None && pipe < 0) {
        return NULL;
    }
    if (cpoplib_window_arg(window, &w) < 0) {
        return NULL;
    }
    if (sizes == Py_None) {
        sizes = NULL;
    }
    if (sizes != NULL && !PyMapping_Check(sizes)) {
        PyErr_Format(PyExc_TypeError,
                     "sizes must be a mapping of message numbers to sizes, "
                     "not %.200s", Py_TYPE(sizes)->tp_name);
        return NULL;
    }
    /* before anything is sent, and once: a bad value must not cost the
       connection in the middle of a batch */
    if (cpoplib_current_response_cap(st, &cap) < 0) {
        return NULL;
    }
    it = (FetchIterObject *)st->FetchIter_Type->tp_alloc(st->FetchIter_Type,
                                                        0);
    if (it == NULL) {
        return NULL;
    }
    it->conn = (POP3Object *)Py_NewRef(self);
    it->sizes = Py_XNewRef(sizes);
    it->top_lines = Py_XNewRef(top_lines);
    pop3_window_init(&it->win, w);
    it->delete_ = del;
    it->pipeline = pipe;
    it->cap = cap;
    it->to_delete = -1;
    /* at most max_window RETRs in flight, and a DELE is read at most that
       many RETRs after it was sent */
    it->queue_cap = 2 * (Py_ssize_t)it->win.max_window + 2;
    it->queue = PyMem_New(entry, it->queue_cap);
    if (it->queue == NULL) {
        Py_DECREF(it);
        return PyErr_NoMemory();
    }
    it->which = PySequence_List(which);
    if (it->which == NULL) {
        Py_DECREF(it);
        return NULL;
    }
    return (PyObject *)it;
}

PyObject *
cpoplib_fetch_many_impl(POP3Object *self, PyObject *which,
                        PyObject *delete_, PyObject *pipeline,
                        PyObject *window, PyObject *sizes)
{
    int del = 0;

    if (delete_ != NULL) {
        del = PyObject_IsTrue(delete_);
        if (del < 0) {
            return NULL;
        }
    }
    return new_iterator(self, which, del, pipeline, window, sizes, NULL);
}

/* ---- top_many() ---- */

PyObject *
cpoplib_top_many_impl(POP3Object *self, PyObject *which, PyObject *howmuch,
                      PyObject *pipeline, PyObject *window)
{
    PyObject *lines, *res;
    Py_ssize_t n;

    /* an integer, checked before anything is sent: a bad one must not
       cost the connection a -ERR per message */
    if (PyBool_Check(howmuch) || !PyLong_Check(howmuch)) {
        PyErr_Format(PyExc_TypeError, "howmuch must be an integer, not "
                     "%.200s", Py_TYPE(howmuch)->tp_name);
        return NULL;
    }
    n = PyLong_AsSsize_t(howmuch);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "howmuch must not be negative");
        return NULL;
    }
    /* formatted as TOP's argument: a plain int, whatever a subclass's
       __str__ says */
    lines = PyLong_FromSsize_t(n);
    if (lines == NULL) {
        return NULL;
    }
    res = new_iterator(self, which, 0, pipeline, window, NULL, lines);
    Py_DECREF(lines);
    return res;
}

/* ---- dele_many() and list_many() ---- */

/* The command `fmt` % n for each n of `numbers` (a list of the
 * caller's own, which no Python code can reach; one-line replies),
 * pipelined when there are several and the server pipelines: the list of
 * responses; on -ERR nothing more is sent, what is in flight is read,
 * and error_proto is raised with the number in `which`. */
static PyObject *
short_many(POP3Object *self, PyObject *numbers, PyObject *fmt)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *responses = NULL, *failure = NULL, *resp, *line;
    Py_ssize_t n, sent = 0, got = 0, window;
    int pipelines;

    n = PyList_GET_SIZE(numbers);
    pipelines = n > 1 ? cpoplib_server_pipelines(self) : 0;
    if (pipelines < 0) {
        goto error;
    }
    window = pipelines ? POP3_WINDOW_CAP : 1;
    responses = PyList_New(0);
    if (responses == NULL) {
        goto error;
    }
    while (got < sent || (failure == NULL && sent < n)) {
        /* after a -ERR nothing more is sent; what is in flight is read */
        if (failure == NULL && sent < n && sent - got < window) {
            int rc = 0;
            PyObject *pending;

            if (pipelines && cpoplib_cork(self) < 0) {
                goto error;
            }
            while (rc == 0 && sent < n && sent - got < window) {
                line = cpoplib_format_command(
                    fmt, PyList_GET_ITEM(numbers, sent));
                resp = line == NULL ? NULL : cpoplib_putcmd(self, st, line);
                Py_XDECREF(line);
                if (resp == NULL) {
                    rc = -1;
                    break;
                }
                Py_DECREF(resp);
                sent++;
            }
            pending = rc < 0 ? cpoplib_fetch_exception() : NULL;
            if (pipelines && cpoplib_uncork(self, st) < 0) {
                cpoplib_chain_context(pending);
                goto error;
            }
            if (pending != NULL) {
                /* the DELEs sent still have their replies coming */
                failure = pending;
                continue;
            }
        }
        resp = cpoplib_getresp(self, st);
        got++;
        if (resp == NULL) {
            PyObject *exc = cpoplib_fetch_exception();

            if (!cpoplib_is_err_reply(st, exc)) {
                /* not a whole reply: the stream is somewhere inside */
                cpoplib_restore_exception(exc);
                cpoplib_chain_context(failure);
                failure = NULL;
                goto error;
            }
            if (failure == NULL) {
                if (PyObject_SetAttr(exc, st->str_which,
                                     PyList_GET_ITEM(numbers, got - 1)) < 0) {
                    cpoplib_chain_context(exc);
                    goto error;
                }
                failure = exc;
            }
            else {
                Py_DECREF(exc);     /* a later -ERR: the first one stands */
            }
            continue;
        }
        if (PyList_Append(responses, resp) < 0) {
            Py_DECREF(resp);
            goto error;
        }
        Py_DECREF(resp);
    }
    if (failure != NULL) {
        cpoplib_restore_exception(failure);
        failure = NULL;
        Py_CLEAR(responses);
    }
    goto done;

error:
    if (sent > got) {
        /* replies in flight that nobody will read (or commands of which
           nobody knows how much went out) */
        self->out_of_step = 1;
    }
    Py_XDECREF(failure);
    Py_CLEAR(responses);

done:
    return responses;
}

PyObject *
cpoplib_dele_many_impl(POP3Object *self, PyObject *which)
{
    PyObject *numbers = PySequence_List(which), *res;

    if (numbers == NULL) {
        return NULL;
    }
    res = short_many(self, numbers, cpoplib_pop3_state(self)->fmt_dele);
    Py_DECREF(numbers);
    return res;
}

PyObject *
cpoplib_list_many_impl(POP3Object *self, PyObject *which)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *numbers, *responses = NULL, *map = NULL;

    numbers = PySequence_List(which);
    if (numbers == NULL) {
        return NULL;
    }
    responses = short_many(self, numbers, st->fmt_list);
    if (responses == NULL) {
        goto done;
    }
    map = PyDict_New();
    if (map == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(responses); i++) {
        PyObject *pair = cpoplib_scan_listing(
            st, PyList_GET_ITEM(numbers, i), PyList_GET_ITEM(responses, i));
        int rc = pair == NULL ? -1
                 : PyDict_SetItem(map, PyTuple_GET_ITEM(pair, 0),
                                  PyTuple_GET_ITEM(pair, 1));

        Py_XDECREF(pair);
        if (rc < 0) {
            Py_CLEAR(map);
            break;
        }
    }

done:
    Py_DECREF(numbers);
    Py_XDECREF(responses);
    return map;
}
