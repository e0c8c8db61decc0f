/* pipeline.c -- POP3.fetch_many(): many messages in order, with a
 * bounded window of RETR commands in flight when the server pipelines
 * (RFC 2449 PIPELINING), and DELE for each message once the caller has
 * come back for the next one.
 *
 * The iterator reserves the connection from its first step until it is
 * exhausted or closed: between two steps the caller's own code runs, and
 * any other command on the connection would read a reply meant for a
 * RETR in flight, so it is refused (RuntimeError) before it sends
 * anything.  Responses are read in the order the commands went out; a
 * queue of (kind, index) entries says what each one answers.
 *
 * Failure: when a RETR or DELE gets -ERR, every response still in flight
 * is read and dropped, so the connection stays in step, and error_proto
 * is raised with the message number in its `which` attribute (its args
 * are poplib's).  Every message before it has been handed over; none is
 * lost, repeated or given another's number.  Closing the iterator early
 * (break out of the loop, close(), garbage collection) drains the same
 * way and deletes nothing more.
 *
 * Memory: at most `window` RETR commands are in flight.  Bytes in flight
 * are bounded by the kernel's socket buffers (the server blocks once they
 * are full); cpoplib reads only one response at a time, into the
 * message it is building.
 *
 * May call: commands.c, connection.c, errors.c, protocol.c, reader.c,
 * retrieval.c.  Python code it runs: the hooks, capa(), attribute reads.
 */
#include "connection.h"

/* The default window: RETR commands in flight at once. */
#define DEFAULT_WINDOW 8

enum { ENTRY_RETR, ENTRY_DELE };

typedef struct {
    int kind;
    Py_ssize_t index;           /* into `which` */
} entry;

typedef struct {
    PyObject_HEAD
    POP3Object *conn;           /* strong */
    PyObject *which;            /* a list of message numbers */
    Py_ssize_t window;
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
queue_push(FetchIterObject *it, int kind, Py_ssize_t index)
{
    if (it->count >= it->queue_cap) {
        /* cannot happen: at most 2 * window entries are in flight */
        PyErr_SetString(PyExc_SystemError,
                        "fetch_many(): too many commands in flight");
        return -1;
    }
    it->queue[(it->head + it->count) % it->queue_cap] = (entry){kind, index};
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
send_command(FetchIterObject *it, int kind, Py_ssize_t index)
{
    cpoplib_state *st = cpoplib_pop3_state(it->conn);
    PyObject *which = PyList_GET_ITEM(it->which, index);
    PyObject *line, *res;

    if (it->count >= it->queue_cap) {
        return queue_push(it, kind, index);     /* raises */
    }
    Py_INCREF(which);
    line = cpoplib_format_command(kind == ENTRY_RETR ? st->fmt_retr
                                                     : st->fmt_dele, which);
    Py_DECREF(which);
    if (line == NULL) {
        return -1;
    }
    res = cpoplib_putcmd(it->conn, st, line);
    Py_DECREF(line);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    if (queue_push(it, kind, index) < 0) {
        return -1;
    }
    if (kind == ENTRY_RETR) {
        it->retr_in_flight++;
    }
    return 0;
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
        *message = cpoplib_read_message(it->conn, it->cap);
        res = *message;
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

/* Whether to pipeline: CAPA's PIPELINING, asked once per connection. */
static int
server_pipelines(POP3Object *conn)
{
    cpoplib_state *st = cpoplib_pop3_state(conn);
    PyObject *caps;
    int has;

    if (conn->pipelining >= 0) {
        return conn->pipelining;
    }
    caps = cpoplib_capa(conn, st);
    if (caps == NULL) {
        /* capa() turns the server's -ERR into its own error_proto, with
           the reply as __context__: only that means "no CAPA" */
        PyObject *exc = cpoplib_fetch_exception();
        PyObject *reply = PyException_GetContext(exc);
        int refused = cpoplib_is_err_reply(st, exc)
                      || (PyObject_TypeCheck(exc,
                                             (PyTypeObject *)st->error_proto)
                          && cpoplib_is_err_reply(st, reply));
        Py_XDECREF(reply);
        if (!refused) {
            cpoplib_restore_exception(exc);
            return -1;
        }
        Py_DECREF(exc);          /* no CAPA: no pipelining */
        conn->pipelining = 0;
        return 0;
    }
    has = PySequence_Contains(caps, st->str_pipelining_cap);
    Py_DECREF(caps);
    if (has < 0) {
        return -1;
    }
    conn->pipelining = has;
    return has;
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
            int pipelines = server_pipelines(it->conn);
            if (pipelines < 0) {
                goto error;
            }
            it->pipeline = pipelines;
        }
        if (!it->pipeline) {
            it->window = 1;
        }
    }
    /* the caller came back: the message handed over last may go */
    if (it->to_delete >= 0) {
        Py_ssize_t index = it->to_delete;
        it->to_delete = -1;
        if (!it->pipeline && (drain(it) < 0 || PyErr_Occurred())) {
            goto error;
        }
        if (send_command(it, ENTRY_DELE, index) < 0) {
            goto error;
        }
    }
    while (it->retr_in_flight < it->window && it->next_send < n) {
        if (!it->pipeline && it->count > 0
            && (drain(it) < 0 || PyErr_Occurred())) {
            goto error;
        }
        if (send_command(it, ENTRY_RETR, it->next_send) < 0) {
            goto error;
        }
        it->next_send++;
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

static PyMethodDef fetch_iter_methods[] = {
    {"close", (PyCFunction)fetch_iter_close, METH_NOARGS,
     fetch_iter_close_doc},
    {NULL, NULL}
};

PyDoc_STRVAR(fetch_iter_doc,
"The iterator of POP3.fetch_many(): (which, message) pairs in order.");

static PyType_Slot fetch_iter_slots[] = {
    {Py_tp_doc, (void *)fetch_iter_doc},
    {Py_tp_dealloc, fetch_iter_dealloc},
    {Py_tp_finalize, fetch_iter_finalize},
    {Py_tp_traverse, fetch_iter_traverse},
    {Py_tp_clear, fetch_iter_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, fetch_iter_next},
    {Py_tp_methods, fetch_iter_methods},
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

PyObject *
cpoplib_fetch_many_impl(POP3Object *self, PyObject *which,
                        PyObject *delete_, PyObject *pipeline,
                        PyObject *window)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    FetchIterObject *it;
    Py_ssize_t w = DEFAULT_WINDOW, cap;
    int del = 0, pipe = tristate(pipeline);

    if (pipeline != NULL && pipeline != Py_None && pipe < 0) {
        return NULL;
    }
    if (delete_ != NULL) {
        del = PyObject_IsTrue(delete_);
        if (del < 0) {
            return NULL;
        }
    }
    if (window != NULL && window != Py_None) {
        w = PyNumber_AsSsize_t(window, PyExc_OverflowError);
        if (w == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (w < 1 || w > 1024) {
            PyErr_SetString(PyExc_ValueError,
                            "window must be between 1 and 1024");
            return NULL;
        }
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
    it->window = w;
    it->delete_ = del;
    it->pipeline = pipe;
    it->cap = cap;
    it->to_delete = -1;
    /* at most w RETRs in flight, and a DELE is read at most w RETRs
       after it was sent */
    it->queue_cap = 2 * w + 2;
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
