/* cpoplib.h -- declarations shared by the C files of cpoplib._cpoplib.
 *
 *   _cpoplib.c     module definition and state; raising and chaining
 *                  exceptions; the APOP digest (OpenSSL)
 *   methods.c      the Python-visible methods of POP3 and POP3_SSL: one
 *                  argument parser, docstrings with signatures, claiming
 *                  the connection, the method tables
 *   connection.c   the POP3 and POP3_SSL types: construction, connecting,
 *                  TLS set-up, closing, the connection claim
 *   protocol.c     hooks (dispatch through self), sending, reading lines
 *                  and responses, debug output
 *   commands.c     the POP3 commands (user, retr, stat, capa, stls, ...)
 *   reader.c       the per-connection read buffer and its file view
 *   pop3_parser.c  the pure-C line parser (no Python; see pop3_parser.h)
 *
 * Every non-static name shared between files starts with cpoplib_.
 *
 * Rules every file keeps:
 *   - Any attribute read, truth test, comparison, hook call, print() or
 *     socket call can run Python code, which may read from, refill or
 *     close the connection's reader, rebind attributes or switch threads.
 *     No raw pointer into the read buffer survives such a call: a line is
 *     a cpoplib_span (offset + generation), turned into a pointer by
 *     cpoplib_reader_span_data() only where no Python code runs until the
 *     bytes are copied out.
 *   - After a call that failed, nothing else that runs Python code is
 *     called before returning (exception chaining aside, done explicitly).
 *   - The GIL is held everywhere; it is released only inside the socket
 *     module's own calls (recv_into, sendall).
 *
 * Free-threaded CPython (3.13t and later): not supported yet.  No
 * Py_mod_gil slot is declared, so importing the module on such a build
 * re-enables the GIL (CPython warns).  Before declaring
 * Py_MOD_GIL_NOT_USED (for PY_VERSION_HEX >= 0x030D0000):
 *   - The claim (cpoplib_claim_as/cpoplib_release): the test of depth,
 *     owner, hook_depth, out_of_step and reserved and the setting of
 *     owner/depth become one step inside Py_BEGIN_CRITICAL_SECTION(self),
 *     as does every other write of those fields and of pipelining --
 *     including the fetch_many() iterator's finalizer and tp_clear, which
 *     clear reserved or set out_of_step without the claim, in whatever
 *     thread drops the last reference.  The critical section is not held
 *     for a whole command: CPython suspends it whenever the thread
 *     detaches (recv_into, sendall, any hook, print(), a signal handler),
 *     so the claim stays what keeps a second thread out; the critical
 *     section only makes taking and giving back the claim atomic.  The
 *     iterator's queue and counters then need nothing more: they change
 *     only under the claim.
 *   - The reader: busy, pos, end, generation, timed_out and buffer are
 *     read and written inside Py_BEGIN_CRITICAL_SECTION(r), ended before
 *     any call that runs Python code; reader_check_open()'s test of busy
 *     and reader_fill()'s setting of it become one step (self.file can be
 *     read from another thread while the C core reads).  Spans already
 *     survive refills (offset + generation).
 *   - Strong references: PyDict_GetItemRef() (3.13+; an #if or a shim for
 *     3.10-3.12) instead of the borrowed results of
 *     PyDict_GetItemWithError() on the package namespace (_MAXLINE,
 *     MAX_RESPONSE_SIZE: another thread may rebind them) and on the
 *     instance __dict__ (hook overrides).
 *   - Unchanged requirements: module state written only by module exec,
 *     no C globals holding Python objects (both true today).
 *   - Tests on a free-threaded build first: the suite with PYTHON_GIL=0,
 *     threads sharing one connection and one fetch_many() iterator (each
 *     call runs or raises RuntimeError, never a crash or mixed replies),
 *     and a ThreadSanitizer build.
 */
#ifndef CPOPLIB_H
#define CPOPLIB_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "pop3_parser.h"

/* Internal methods that a Python subclass (or a monkeypatch) may
 * override; the C core calls them through `self` unless they are the
 * built-in ones. */
typedef enum {
    HOOK_PUTLINE,
    HOOK_PUTCMD,
    HOOK_GETLINE,
    HOOK_GETRESP,
    HOOK_GETLONGRESP,
    HOOK_SHORTCMD,
    HOOK_LONGCMD,
    HOOK_CAPA,
    HOOK_CLOSE,
    HOOK_COUNT
} cpoplib_hook;

typedef struct {
    PyTypeObject *POP3_Type;
    PyTypeObject *POP3_SSL_Type;     /* NULL when ssl is unavailable */
    PyTypeObject *Reader_Type;
    PyTypeObject *FetchIter_Type;    /* fetch_many()'s iterator */
    PyObject *error_proto;
    /* picks error_proto's subclass for a "-ERR [CODE]" reply; set by
       the cpoplib package (_set_response_classifier); may be NULL */
    PyObject *response_classifier;

    /* Globals of the cpoplib package: _MAXLINE is read from here at run
       time, so that `cpoplib._MAXLINE = N` takes effect. */
    PyObject *namespace;

    PyObject *socket_module;
    PyObject *socket_type;           /* socket.socket */
    PyObject *socket_makefile;       /* socket.socket.makefile */
    PyObject *default_timeout;       /* socket._GLOBAL_DEFAULT_TIMEOUT */
    PyObject *shut_rdwr;             /* socket.SHUT_RDWR */
    PyObject *ssl_module;            /* NULL when ssl is unavailable */
    PyObject *timestamp_re;          /* the default POP3.timestamp */
    PyObject *unsupported_operation; /* io.UnsupportedOperation */

    PyObject *hook_names[HOOK_COUNT];
    PyObject *hook_defaults[HOOK_COUNT];

    /* interned attribute and method names */
    PyObject *str_host, *str_port, *str_sock, *str_file, *str_welcome;
    PyObject *str_debugging, *str_tls_established, *str_context;
    PyObject *str_encoding, *str_timestamp, *str_maxline, *str_max_response;
    PyObject *str_create_socket, *str_create_connection;
    PyObject *str_create_stdlib_context, *str_wrap_socket;
    PyObject *str_server_hostname, *str_makefile, *str_sendall;
    PyObject *str_recv_into, *str_readline, *str_close, *str_shutdown;
    PyObject *str_match, *str_group, *str_split, *str_decode;
    PyObject *str_startswith, *str_errno, *str_fileno;
    PyObject *str_keyfile, *str_certfile, *str_write;
    PyObject *str_settimeout, *str_gettimeout, *str_scram_max;
    PyObject *str_io_refs, *str_decref_socketios;

    PyObject *bytes_crlf;            /* b'\r\n' */
    PyObject *bytes_cr;              /* b'\r' */
    PyObject *int_one;               /* 1 */
    PyObject *bytes_plus;            /* b'+' */
    PyObject *bytes_dot;             /* b'.' */
    PyObject *bytes_dotdot;          /* b'..' */
    PyObject *str_rb;                /* 'rb' */
    PyObject *str_ascii;             /* 'ascii' */
    PyObject *str_stls_cap;          /* 'STLS' */
} cpoplib_state;

extern PyModuleDef cpoplib_module_def;

/* ---- _cpoplib.c ---- */

/* Module state of the module that defined `type` (or a base of it). */
cpoplib_state *cpoplib_state_from_type(PyTypeObject *type);

/* Raise error_proto(msg) with a str argument. */
void cpoplib_error(cpoplib_state *st, const char *msg);

/* Raise error_proto(obj), or the subclass of error_proto that the
 * registered response-code classifier picks for obj (a "-ERR [CODE]"
 * reply).  The exception's args are (obj,) either way.  Runs Python
 * code (the classifier, the class's __init__). */
void cpoplib_error_obj(cpoplib_state *st, PyObject *obj);

/* The pending exception, normalised, as a new reference (NULL if none);
 * the error indicator is cleared. */
PyObject *cpoplib_fetch_exception(void);

/* Raise `exc` again (nothing when NULL); steals the reference. */
void cpoplib_restore_exception(PyObject *exc);

/* The pending exception gets `context` as its __context__, as if raised
 * while `context` was being handled; with none pending, `context` itself
 * is raised again.  Steals `context` (may be NULL). */
void cpoplib_chain_context(PyObject *context);

/* Replace the pending exception by error_proto(msg), chained to it. */
void cpoplib_replace_error(cpoplib_state *st, const char *msg);

/* Seconds of the monotonic clock (CLOCK_MONOTONIC); no Python. */
double cpoplib_monotonic(void);

/* MD5 of data as 32 lowercase hex digits plus NUL, with OpenSSL's EVP
 * API.  Returns 0, or -1 with an exception set. */
int cpoplib_md5_hex(const char *data, size_t len, char out[33]);

/* ---- methods.c: the one argument parser ---- */

/* The parameters of a C method, in the order of its signature.  The
 * first `posonly` are positional-only, the first `maxpos` may be given
 * positionally, the rest only by keyword; the first `required` must be
 * given.  `names` has one entry per parameter, NULL-terminated. */
typedef struct {
    const char *fname;
    const char *const *names;
    int posonly;
    int required;
    int maxpos;
} cpoplib_argspec;

/* Parse the arguments of a METH_FASTCALL | METH_KEYWORDS call into
 * out[0..n) (n = number of names); parameters not given are left NULL.
 * Borrowed references.  0, or -1 with TypeError set. */
int cpoplib_parse_args(const cpoplib_argspec *spec, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames, PyObject **out);

/* The same for a tp_init-style (args tuple, kwargs dict) call. */
int cpoplib_parse_tuple(const cpoplib_argspec *spec, PyObject *args,
                        PyObject *kwargs, PyObject **out);

/* ---- reader.c ---- */

typedef struct {
    PyObject_HEAD
    PyObject *module;        /* owner of the state; strong until dealloc */
    PyObject *sock;          /* read with recv_into(); NULL once closed */
    PyObject *buffer;        /* a bytearray; NULL once closed */
    Py_ssize_t pos;          /* first unread byte */
    Py_ssize_t end;          /* one past the last buffered byte */
    /* Bumped whenever bytes may move or go away: every fill (compaction,
       resize, recv_into), close.  A cpoplib_span is valid only while the
       generation it was made in lasts. */
    unsigned long long generation;
    int busy;                /* recv_into() is running (Python code) */
    int io_ref;              /* counted in sock._io_refs (as a makefile) */
    int held;                /* CPOPLIB_HOLD_* bits: the C core is in the
                                middle of a response on this stream */
    double deadline;         /* cpoplib_monotonic() time after which a
                                fill times out; 0: none (login()) */
    int timed_out;           /* a read timed out: refuse all reads, as
                                socket.SocketIO does */
    PyObject *weakreflist;
} ReaderObject;

/* A line found in the reader's buffer, as an offset, never a pointer. */
typedef struct {
    pop3_line line;
    Py_ssize_t offset;       /* of the line's first byte in the buffer */
    unsigned long long generation;
} cpoplib_span;

extern PyType_Spec cpoplib_reader_spec;

/* While a reader is held, its file methods (read, readline, peek, ...)
 * raise RuntimeError instead of taking bytes out of the middle of a
 * response the C core is reading: fetch()/fetch_into() hold it while they
 * copy a body (a destination's write() runs meanwhile), a fetch_many()
 * iterator between two of its steps (responses are in flight).  close()
 * is never refused. */
#define CPOPLIB_HOLD_BODY 1
#define CPOPLIB_HOLD_ITERATION 2

/* A new reader over `sock`: what sock.makefile('rb') is for poplib. */
PyObject *cpoplib_reader_new(cpoplib_state *st, PyObject *sock);

/* Next protocol line, at most `limit` bytes (limit >= 1).  On POP3_LINE
 * fills *span and consumes the line; on POP3_TOO_LONG consumes `limit`
 * bytes; POP3_EOF consumes nothing.  Returns -1 with an exception set on
 * error.  Runs Python code (the socket's recv_into, signal handlers). */
int cpoplib_reader_next_line(ReaderObject *r, Py_ssize_t limit,
                             cpoplib_span *span);

/* The first byte of a span's line, or NULL with RuntimeError set if the
 * buffer has moved since the span was made (a bug in the caller: the
 * check aborts in debug and sanitizer builds).  The pointer is valid
 * until the next call that can run Python code. */
const char *cpoplib_reader_span_data(ReaderObject *r,
                                     const cpoplib_span *span);

/* Copy the buffered lines of a multi-line body into out[0..room) with
 * pop3_copy_body() (see pop3_parser.h; *res carries `scanned` from one
 * call to the next, and must be reset to 0 after any call that can run
 * Python code), reading from the socket once when what is buffered holds
 * no complete line.  Large copies run with the GIL released.  Returns a
 * pop3_status, or -1 with an exception set.  Runs Python code when it
 * fills (recv_into, signal handlers). */
int cpoplib_reader_copy_body(ReaderObject *r, Py_ssize_t limit,
                             char *out, size_t room, pop3_copy *res);

/* Drop whatever is buffered and close the reader, giving its socket's
 * file count back (sock._decref_socketios(), which closes a socket that
 * was closed meanwhile).  0, or -1 with an exception set. */
int cpoplib_reader_discard(ReaderObject *r);

/* ---- connection.c ---- */

/* Create POP3 (and POP3_SSL when ssl is there) and add them to module. */
int cpoplib_connection_add_types(PyObject *module, cpoplib_state *st);

/* ---- auth.c ---- */

/* _cpoplib._sasl_exchange(): sasl.c's client mechanisms on their own,
 * for known-answer tests (a module function) */
extern const char cpoplib_sasl_exchange_doc[];
PyObject *cpoplib_sasl_exchange(PyObject *module, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames);

/* ---- durability.c ---- */

/* syncfs(2) and fstatfs(2) are Linux system calls.  syncfs is called
 * through syscall(2), so that a C library that does not declare it (glibc
 * before 2.14, old bionic) still builds, and the module has no _syncfs
 * where the kernel headers do not know it. */
#if defined(__linux__)
#  include <sys/syscall.h>
#  ifdef SYS_syncfs
#    define CPOPLIB_HAVE_SYNCFS 1
/* _cpoplib._syncfs(fd) and _cpoplib._fs_type(fd) (module functions) */
extern const char cpoplib_syncfs_doc[];
PyObject *cpoplib_syncfs(PyObject *module, PyObject *arg);
extern const char cpoplib_fs_type_doc[];
PyObject *cpoplib_fs_type(PyObject *module, PyObject *arg);
#  endif
#endif

#endif /* CPOPLIB_H */
