/* connection.h -- the POP3 object (POP3 and POP3_SSL share one layout)
 * and the declarations of the files from connection.c up, in the order
 * of their layers (cpoplib.h has the table and the naming rule).
 * Nothing here is exported from the extension.
 */
#ifndef CPOPLIB_CONNECTION_H
#define CPOPLIB_CONNECTION_H

#include "cpoplib.h"

typedef struct {
    PyObject_HEAD
    PyObject *dict;
    PyObject *weakreflist;
    PyObject *module;          /* owner of the state; strong until dealloc */
    /* The claim (cpoplib_claim): which thread runs a command on this
       connection, how deeply nested, and how many Python hooks the C
       core is running right now. */
    unsigned long owner;
    int depth;
    int hook_depth;
    /* A fetch_many() iterator that holds the connection between two of
       its steps (borrowed: the iterator clears it before it goes away);
       only it may claim the connection meanwhile. */
    void *reserved;
    /* Whether CAPA listed PIPELINING: -1 not asked yet on this
       connection (or since STLS). */
    int pipelining;
    /* Responses are in flight that nobody will read (a fetch_many()
       iterator was finalized while it could not drain): every command
       fails from then on. */
    int out_of_step;
    /* While not NULL (a bytearray), the built-in _putline() appends each
       line here instead of sending it; cpoplib_uncork() sends them all
       with one sendall(): pipelined commands leave in one segment, not
       one each (which Nagle's algorithm would hold back a round trip). */
    PyObject *corked;
} POP3Object;

static inline cpoplib_state *
cpoplib_pop3_state(POP3Object *self)
{
    return PyModule_GetState(self->module);
}

/* ---- connection.c ---- */

/* Claim the connection before anything is sent: 0, or -1 with
 * RuntimeError when another thread (or a signal handler, or any code
 * that is not one of our hooks) is in a command on it.  A hook the C core
 * called may call back into the connection (super()._getresp()). */
int cpoplib_claim(POP3Object *self);
/* The same for a hook primitive (_getresp, ...), which a hook the C core
 * called may call back while a command is in progress. */
int cpoplib_claim_hook(POP3Object *self);
/* The same for the holder of a reservation (`token`, see `reserved`). */
int cpoplib_claim_as(POP3Object *self, void *token);
void cpoplib_release(POP3Object *self);

/* The slots of the POP3 types (their specs are in methods.c). */
PyObject *cpoplib_pop3_new(PyTypeObject *type, PyObject *args,
                           PyObject *kwds);
int cpoplib_pop3_traverse(POP3Object *self, visitproc visit, void *arg);
int cpoplib_pop3_clear(POP3Object *self);
void cpoplib_pop3_dealloc(POP3Object *self);

/* poplib's close() and __getstate__ */
PyObject *cpoplib_close_impl(POP3Object *self, cpoplib_state *st);
PyObject *cpoplib_getstate_impl(POP3Object *self);

/* ---- protocol.c ---- */

/* What reading a multi-line body can end in besides success (0). */
typedef enum {
    CPOPLIB_BODY_ERROR = -1,         /* an exception is set */
    CPOPLIB_BODY_TOO_LONG = -2,      /* past MAX_RESPONSE_SIZE; none set */
    CPOPLIB_BODY_WRITE_FAILED = -3,  /* a destination's write() failed */
    CPOPLIB_BODY_SWITCH = -4         /* the bulk path stops: go on line by
                                        line through the hooks */
} cpoplib_body_status;

/* `self._debugging > 1` when wire is set, else `bool(self._debugging)`:
 * 1, 0, or -1.  print(tag, repr(obj)) with the builtin print. */
int cpoplib_debugging(POP3Object *self, cpoplib_state *st, int wire);
int cpoplib_debug_print(cpoplib_state *st, const char *tag, PyObject *obj);
/* `fmt % args` as poplib builds command lines (fmt: one of the state's
 * fmt_* strings) */
PyObject *cpoplib_format_command(PyObject *fmt, PyObject *args);
/* 1 if self.<hook> is the built-in implementation, 0 if it may be
 * replaced, -1 on error */
int cpoplib_hook_is_default(POP3Object *self, cpoplib_state *st,
                            cpoplib_hook hook);
/* self.<hook>() or self.<hook>(arg) through Python (arg may be NULL) */
PyObject *cpoplib_call_hook(POP3Object *self, cpoplib_state *st,
                            cpoplib_hook hook, PyObject *arg);
/* The next line from our reader under _MAXLINE = maxline: POP3_LINE or
 * POP3_EOF, or -1 with error_proto('line too long') or another exception
 * set. */
int cpoplib_reader_line(cpoplib_state *st, ReaderObject *reader,
                        Py_ssize_t maxline, cpoplib_span *span);
/* 1 if _getlongresp() may take its bulk path now: _getline() is ours, no
 * wire debugging, and self.file is our reader (then a new reference in
 * *reader); 0 if not; -1 on error.  Runs Python code (the attributes). */
int cpoplib_body_reader(POP3Object *self, cpoplib_state *st,
                        PyObject **reader);
/* Close the connection through self.close(), keeping the pending
 * exception as the one raised: after it, the stream is somewhere no
 * command can go on from (the rest of a response on the wire, an
 * exchange the server still waits in).  An error in close() is raised
 * with the pending one as its __context__, as in a `finally:` block. */
void cpoplib_close_keeping_error(POP3Object *self, cpoplib_state *st);
/* A response passed MAX_RESPONSE_SIZE: raise error_proto('response too
 * long') and close the connection (the rest is still on the wire). */
void cpoplib_fail_too_long(POP3Object *self, cpoplib_state *st);

PyObject *cpoplib_putline_impl(POP3Object *self, cpoplib_state *st,
                               PyObject *line);
PyObject *cpoplib_putcmd_impl(POP3Object *self, cpoplib_state *st,
                              PyObject *line);
int cpoplib_getline_impl(POP3Object *self, cpoplib_state *st,
                         PyObject **line, PyObject **octets);
PyObject *cpoplib_getresp_impl(POP3Object *self, cpoplib_state *st);
PyObject *cpoplib_getlongresp_impl(POP3Object *self, cpoplib_state *st);
PyObject *cpoplib_shortcmd_impl(POP3Object *self, cpoplib_state *st,
                                PyObject *line);
PyObject *cpoplib_longcmd_impl(POP3Object *self, cpoplib_state *st,
                               PyObject *line);

/* the hooks as poplib calls them: self._putcmd(line), ... */
PyObject *cpoplib_putcmd(POP3Object *self, cpoplib_state *st,
                         PyObject *line);
PyObject *cpoplib_getresp(POP3Object *self, cpoplib_state *st);
PyObject *cpoplib_getlongresp(POP3Object *self, cpoplib_state *st);
PyObject *cpoplib_close(POP3Object *self, cpoplib_state *st);

/* Start collecting the lines the built-in _putline() sends (see
 * POP3Object.corked); cpoplib_uncork() sends what was collected in one
 * sendall() and stops collecting, and must be called before anything is
 * read.  0, or -1 with an exception set (then nothing was sent). */
int cpoplib_cork(POP3Object *self);
int cpoplib_uncork(POP3Object *self, cpoplib_state *st);

/* Send `line` (a str) through self._shortcmd() or self._longcmd() and
 * return the response. */
PyObject *cpoplib_run_command(POP3Object *self, PyObject *line,
                              int longcmd);

/* ---- commands.c ---- */

/* self.capa(), and poplib's capa() */
PyObject *cpoplib_capa(POP3Object *self, cpoplib_state *st);
PyObject *cpoplib_capa_impl(POP3Object *self, cpoplib_state *st);
PyObject *cpoplib_stat_impl(POP3Object *self);
/* stat()'s (count, octets) from STAT's +OK response, debug line included */
PyObject *cpoplib_stat_of_response(POP3Object *self, cpoplib_state *st,
                                   PyObject *resp);
PyObject *cpoplib_apop_impl(POP3Object *self, PyObject *user,
                            PyObject *password);
PyObject *cpoplib_top_impl(POP3Object *self, PyObject *which,
                           PyObject *howmuch);
/* LIST [which] / UIDL [which]: `bare` (a command line) without which,
 * `fmt % which` with it */
PyObject *cpoplib_listing_impl(POP3Object *self, PyObject *bare,
                               PyObject *fmt, PyObject *which);
PyObject *cpoplib_quit_impl(POP3Object *self);
/* Whether to pipeline on this connection: CAPA's PIPELINING, asked once
 * per connection (or since STLS; login() records what its CAPA said).
 * 1, 0 (no CAPA counts as no), or -1 with an exception set. */
int cpoplib_server_pipelines(POP3Object *conn);
/* `fmt % arg` as a short (longcmd = 0) or multi-line command */
PyObject *cpoplib_command1(POP3Object *self, PyObject *fmt, PyObject *arg,
                           int longcmd);

/* ---- connect.c ---- */

/* POP3.__init__ and POP3_SSL.__init__ once the arguments are parsed
 * (keyfile and certfile are NULL on 3.12+, where poplib no longer takes
 * them); _create_socket() of each; stls(). */
int cpoplib_pop3_init_impl(POP3Object *self, cpoplib_state *st,
                           PyObject *host, PyObject *port,
                           PyObject *timeout);
int cpoplib_pop3_ssl_init_impl(POP3Object *self, cpoplib_state *st,
                               PyObject *host, PyObject *port,
                               PyObject *keyfile, PyObject *certfile,
                               PyObject *timeout, PyObject *context);
PyObject *cpoplib_create_socket_impl(POP3Object *self, cpoplib_state *st,
                                     PyObject *timeout);
PyObject *cpoplib_ssl_create_socket_impl(POP3Object *self,
                                         cpoplib_state *st,
                                         PyObject *timeout);
PyObject *cpoplib_stls_impl(POP3Object *self, PyObject *context);

/* ---- retrieval.c ---- */

PyObject *cpoplib_fetch_impl(POP3Object *self, PyObject *which);
PyObject *cpoplib_fetch_into_impl(POP3Object *self, PyObject *which,
                                  PyObject *file);
/* {msgnum: value} from `command`'s listing (st->cmd_uidl or
 * st->cmd_list): uidl_map() and list_map() */
PyObject *cpoplib_listing_map(POP3Object *self, PyObject *command,
                              int numeric);
/* listing_maps(): (list_map(), uidl_map() or None when the server has no
 * UIDL), both commands in one write when the server pipelines */
PyObject *cpoplib_listing_maps_impl(POP3Object *self);
/* stat_and_uidl_map(): (stat(), uidl_map() or None), the same way */
PyObject *cpoplib_stat_and_uidl_map_impl(POP3Object *self);
/* The response to a RETR already sent, as fetch() returns it; `cap` is
 * MAX_RESPONSE_SIZE as read (and validated) by the caller, -1 for none. */
PyObject *cpoplib_read_message(POP3Object *self, Py_ssize_t cap);

/* ---- auth.c ---- */

PyObject *cpoplib_auth_impl(POP3Object *self, PyObject *mechanism,
                            PyObject *authobject, PyObject *initial);
PyObject *cpoplib_login_impl(POP3Object *self, PyObject *user,
                             PyObject *password, PyObject *mechanism,
                             PyObject *token, PyObject *allow_plaintext);

/* ---- pipeline.c ---- */

extern PyType_Spec cpoplib_fetch_iter_spec;
/* sizes: a mapping {number: octets} or NULL/None */
PyObject *cpoplib_fetch_many_impl(POP3Object *self, PyObject *which,
                                  PyObject *delete_, PyObject *pipeline,
                                  PyObject *window, PyObject *sizes);
/* The fetch_many() iterator sending TOP n howmuch (an int >= 0) instead
 * of RETR, never deleting: (which, headers and howmuch lines). */
PyObject *cpoplib_top_many_impl(POP3Object *self, PyObject *which,
                                PyObject *howmuch, PyObject *pipeline,
                                PyObject *window);
/* DELE for each of `which`, pipelined when the server pipelines: the
 * list of responses; on -ERR what is in flight is read, nothing more is
 * sent, and error_proto is raised with the number in `which`. */
PyObject *cpoplib_dele_many_impl(POP3Object *self, PyObject *which);
/* LIST n for each of `which`, the same way: {n: octets}; a reply for
 * another message than the one asked is error_proto. */
PyObject *cpoplib_list_many_impl(POP3Object *self, PyObject *which);

/* ---- methods.c ---- */

extern PyType_Spec cpoplib_pop3_spec;
extern PyType_Spec cpoplib_pop3_ssl_spec;
/* _cpoplib._sasl_exchange(): sasl.c's client mechanisms on their own,
 * for known-answer tests (a module function) */
extern const char cpoplib_sasl_exchange_doc[];
PyObject *cpoplib_sasl_exchange(PyObject *module, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames);

#endif /* CPOPLIB_CONNECTION_H */
