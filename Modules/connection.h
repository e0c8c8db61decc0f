/* connection.h -- shared by the files that implement the POP3 and
 * POP3_SSL types: methods.c (the Python-visible methods), connection.c
 * (the types, connecting, TLS, closing, the claim), protocol.c (hooks,
 * sending, reading) and commands.c (the POP3 commands).  Nothing here is
 * exported from the extension.
 *
 * Naming: cpoplib_X_impl() is the C implementation of poplib's method X;
 * cpoplib_X() does what poplib's `self.X(...)` does: it calls a Python
 * override of X if there is one, else cpoplib_X_impl().
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
} POP3Object;

static inline cpoplib_state *
cpoplib_pop3_state(POP3Object *self)
{
    return PyModule_GetState(self->module);
}

/* ---- methods.c ---- */

extern PyMethodDef cpoplib_pop3_methods[];
extern PyMethodDef cpoplib_pop3_ssl_methods[];
extern const char cpoplib_pop3_doc[];
extern const char cpoplib_pop3_ssl_doc[];
int cpoplib_pop3_tp_init(PyObject *self, PyObject *args, PyObject *kwargs);
int cpoplib_pop3_ssl_tp_init(PyObject *self, PyObject *args,
                             PyObject *kwargs);

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

/* POP3.__init__ and POP3_SSL.__init__ once the arguments are parsed. */
int cpoplib_pop3_init(POP3Object *self, cpoplib_state *st, PyObject *host,
                      PyObject *port, PyObject *timeout);
int cpoplib_pop3_ssl_init(POP3Object *self, cpoplib_state *st,
                          PyObject *host, PyObject *port, PyObject *keyfile,
                          PyObject *certfile, PyObject *timeout,
                          PyObject *context);
PyObject *cpoplib_create_socket_impl(POP3Object *self, cpoplib_state *st,
                                     PyObject *timeout);
PyObject *cpoplib_ssl_create_socket_impl(POP3Object *self,
                                         cpoplib_state *st,
                                         PyObject *timeout);
PyObject *cpoplib_make_file(cpoplib_state *st, PyObject *sock);
PyObject *cpoplib_create_stdlib_context(cpoplib_state *st, PyObject *kwargs);
PyObject *cpoplib_wrap_socket(cpoplib_state *st, PyObject *context,
                              PyObject *sock, PyObject *host);
PyObject *cpoplib_close_impl(POP3Object *self, cpoplib_state *st);
PyObject *cpoplib_getstate(POP3Object *self);

/* ---- protocol.c ---- */

/* What reading a multi-line body can end in besides success (0). */
typedef enum {
    CPOPLIB_BODY_ERROR = -1,         /* an exception is set */
    CPOPLIB_BODY_TOO_LONG = -2,      /* past MAX_RESPONSE_SIZE; none set */
    CPOPLIB_BODY_WRITE_FAILED = -3,  /* a destination's write() failed */
    CPOPLIB_BODY_SWITCH = -4         /* the bulk path stops: go on line by
                                        line through the hooks */
} cpoplib_body_status;

/* 1 if _getlongresp() may take its bulk path now: _getline() is ours, no
 * wire debugging, and self.file is our reader (then a new reference in
 * *reader); 0 if not; -1 on error.  Runs Python code (the attributes). */
int cpoplib_body_reader(POP3Object *self, cpoplib_state *st,
                        PyObject **reader);

int cpoplib_debugging(POP3Object *self, cpoplib_state *st, int wire);
int cpoplib_debug_print(const char *tag, PyObject *obj);
PyObject *cpoplib_encode_text(PyObject *text, PyObject *encoding);
PyObject *cpoplib_format_command(const char *fmt, PyObject *args);
int cpoplib_is_reader(cpoplib_state *st, PyObject *file);
/* 1 if exc (may be NULL) is error_proto for an -ERR reply read whole:
 * its args are the reply line (bytes); the stream is in step after it */
int cpoplib_is_err_reply(cpoplib_state *st, PyObject *exc);
/* 1 if self.<hook> is the built-in implementation, 0 if it may be
 * replaced, -1 on error */
int cpoplib_hook_is_default(POP3Object *self, cpoplib_state *st,
                            cpoplib_hook hook);
/* the package's _MAXLINE and MAX_RESPONSE_SIZE (-1: none), validated */
int cpoplib_current_maxline(cpoplib_state *st, Py_ssize_t *maxline);
/* The next line from our reader under _MAXLINE = maxline, as poplib's
 * readline(_MAXLINE + 1) and `len(line) > _MAXLINE` treat it: a pop3
 * status (POP3_LINE or POP3_EOF), or -1 with error_proto('line too long')
 * or another exception set. */
int cpoplib_reader_line(cpoplib_state *st, ReaderObject *reader,
                        Py_ssize_t maxline, cpoplib_span *span);
int cpoplib_current_response_cap(cpoplib_state *st, Py_ssize_t *cap);
/* Close the connection through self.close(), keeping the pending
 * exception as the one raised: after it, the stream is somewhere no
 * command can go on from (the rest of a response on the wire, an
 * exchange the server still waits in).  An error in close() is raised
 * with the pending one as its __context__. */
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

PyObject *cpoplib_putcmd(POP3Object *self, cpoplib_state *st,
                         PyObject *line);
PyObject *cpoplib_getresp(POP3Object *self, cpoplib_state *st);
PyObject *cpoplib_getlongresp(POP3Object *self, cpoplib_state *st);
PyObject *cpoplib_capa(POP3Object *self, cpoplib_state *st);
PyObject *cpoplib_close(POP3Object *self, cpoplib_state *st);

/* Send `line` (a str; stolen, NULL passes its error through) through
 * self._shortcmd() or self._longcmd() and return the response. */
PyObject *cpoplib_run_command(POP3Object *self, PyObject *line,
                              int longcmd);

/* ---- commands.c ---- */

PyObject *cpoplib_capa_impl(POP3Object *self, cpoplib_state *st);
PyObject *cpoplib_stat(POP3Object *self);
PyObject *cpoplib_apop(POP3Object *self, PyObject *user, PyObject *password);
PyObject *cpoplib_stls(POP3Object *self, PyObject *context);
PyObject *cpoplib_quit(POP3Object *self);
/* `fmt % arg` as a short (longcmd = 0) or multi-line command */
PyObject *cpoplib_command1(POP3Object *self, const char *fmt, PyObject *arg,
                           int longcmd);
PyObject *cpoplib_listing(POP3Object *self, const char *bare,
                          const char *fmt, PyObject *which);
PyObject *cpoplib_top(POP3Object *self, PyObject *which, PyObject *howmuch);

/* ---- pipeline.c ---- */

extern PyType_Spec cpoplib_fetch_iter_spec;
PyObject *cpoplib_fetch_many(POP3Object *self, PyObject *which,
                             PyObject *delete_, PyObject *pipeline,
                             PyObject *window);

/* ---- retrieval.c ---- */

PyObject *cpoplib_fetch(POP3Object *self, PyObject *which);
PyObject *cpoplib_fetch_into(POP3Object *self, PyObject *which,
                             PyObject *file);
/* The response to a RETR already sent, as fetch() returns it; `cap` is
 * MAX_RESPONSE_SIZE as read (and validated) by the caller, -1 for none. */
PyObject *cpoplib_read_message(POP3Object *self, Py_ssize_t cap);
PyObject *cpoplib_listing_map(POP3Object *self, const char *command,
                              int numeric);

/* ---- auth.c ---- */

/* POP3.auth() and POP3.login(), with their docstrings */
extern const char cpoplib_pop3_auth_doc[];
extern const char cpoplib_pop3_login_doc[];
PyObject *cpoplib_pop3_auth(POP3Object *self, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames);
PyObject *cpoplib_pop3_login(POP3Object *self, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *kwnames);

#endif /* CPOPLIB_CONNECTION_H */
