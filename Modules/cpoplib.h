/* cpoplib.h -- the C core of cpoplib (the extension cpoplib._cpoplib):
 * its layers, the rules every file keeps, the module state, and the
 * declarations of the files below the connection object.  connection.h
 * declares the rest.
 *
 * Layers, bottom to top.  A file calls only files of lower layers: no
 * file calls one of its own layer or above, so there is no cycle.
 * .ci/layers derives the calls from the compiled objects' symbols and
 * fails on any other edge, and on a "May call:" line in a file's header
 * that differs from what the file calls.
 *
 *   layer  file           owns
 *   0      pop3_parser.c  lines, bodies, listing lines, the APOP
 *                         timestamp: plain C, no Python (pop3_parser.h)
 *   0      sasl.c         the SASL client mechanisms: plain C and
 *                         libcrypto, no Python (sasl.h)
 *   1      errors.c       raising and chaining exceptions
 *   1      args.c         the one argument parser of every C method
 *   1      durability.c   syncfs(2) and fstatfs(2) for the fetcher
 *   2      reader.c       the read buffer of a connection and its file
 *                         type (SocketReader); the monotonic clock
 *   2      connection.c   the POP3 object's life cycle, the claim,
 *                         poplib's close() and __getstate__
 *   3      protocol.c     hooks through self, sending, reading lines and
 *                         responses, running a command, closing while
 *                         keeping an error, debug output
 *   4      commands.c     the POP3 commands and capa()
 *   5      connect.c      __init__: the socket, its file, the greeting;
 *                         TLS (POP3_SSL, stls())
 *   5      retrieval.c    fetch(), fetch_into(), uidl_map(), list_map()
 *   5      auth.c         auth() and login()
 *   6      pipeline.c     the fetch_many() iterator type
 *   7      methods.c      every Python-visible method and function:
 *                         argument parsing, the claim, docstrings with
 *                         signatures, method tables, the POP3 and
 *                         POP3_SSL type specs
 *   8      _cpoplib.c     the module: its state, interned names, module
 *                         functions, the creation of every type
 *
 * Naming: every non-static name shared between files starts with
 * cpoplib_ (pop3_ and sasl_ in the two plain-C files).  For poplib's
 * method X, cpoplib_X_impl() is its C implementation, called once the
 * arguments are parsed and the connection is claimed; for a hook X (a
 * method poplib itself calls through self: _putline ... _longcmd, capa,
 * close), cpoplib_X() does what poplib's `self.X(...)` does -- a Python
 * override if there is one, else cpoplib_X_impl().  The Python-visible
 * wrappers are static in methods.c.
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
 *     called before returning (exception chaining aside, done explicitly
 *     with cpoplib_fetch_exception()/cpoplib_chain_context()).
 *   - Helpers take borrowed, non-NULL arguments; a caller checks what it
 *     allocated at the call that allocated it.  Names, command lines and
 *     constants used at run time are interned in the module state.
 *   - The GIL is held everywhere except around calls that touch no Python
 *     object: socket I/O happens inside the socket module's own methods
 *     (which release it); reader.c copies large bodies, auth.c runs a
 *     SASL step (SCRAM's key derivation) and durability.c calls syncfs(2)
 *     with it released, each on C memory nothing else can free meanwhile.
 *
 * Free-threaded builds are not supported yet: docs/developers/
 * free-threading.rst says what declaring Py_MOD_GIL_NOT_USED would take.
 */
#ifndef CPOPLIB_H
#define CPOPLIB_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "pop3_parser.h"

/* ---- compatibility: the one place that knows Python versions ---- */

#if PY_VERSION_HEX >= 0x030C0000
#  define CPOPLIB_T_PYSSIZET Py_T_PYSSIZET
#  define CPOPLIB_READONLY Py_READONLY
#else
#  include "structmember.h"
#  define CPOPLIB_T_PYSSIZET T_PYSSIZET
#  define CPOPLIB_READONLY READONLY
#endif

/* ---- the module state ---- */

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

/* Interned str objects of the state: (field, text).  Attribute and
 * method names, then command lines and the formats of commands with
 * arguments (poplib builds them with `%`). */
#define CPOPLIB_STRINGS(X)                                                  \
    X(str_host, "host") X(str_port, "port") X(str_sock, "sock")             \
    X(str_file, "file") X(str_welcome, "welcome")                           \
    X(str_debugging, "_debugging")                                          \
    X(str_tls_established, "_tls_established") X(str_context, "context")   \
    X(str_encoding, "encoding") X(str_timestamp, "timestamp")               \
    X(str_maxline, "_MAXLINE") X(str_max_response, "MAX_RESPONSE_SIZE")     \
    X(str_scram_max, "SCRAM_MAX_ITERATIONS")                                \
    X(str_create_socket, "_create_socket")                                  \
    X(str_create_connection, "create_connection")                           \
    X(str_create_stdlib_context, "_create_stdlib_context")                  \
    X(str_wrap_socket, "wrap_socket")                                       \
    X(str_server_hostname, "server_hostname") X(str_makefile, "makefile")   \
    X(str_sendall, "sendall") X(str_recv_into, "recv_into")                 \
    X(str_readline, "readline") X(str_write, "write") X(str_close, "close") \
    X(str_shutdown, "shutdown") X(str_settimeout, "settimeout")             \
    X(str_gettimeout, "gettimeout") X(str_fileno, "fileno")                 \
    X(str_io_refs, "_io_refs") X(str_decref_socketios, "_decref_socketios") \
    X(str_match, "match") X(str_group, "group") X(str_split, "split")       \
    X(str_decode, "decode") X(str_startswith, "startswith")                 \
    X(str_rstrip, "rstrip") X(str_errno, "errno") X(str_keyfile, "keyfile") \
    X(str_certfile, "certfile") X(str_b64decode, "b64decode")               \
    X(str_validate, "validate") X(str_saslprep, "saslprep")                 \
    X(str_saslprep_module, "cpoplib._saslprep")                             \
    X(str_print, "print") X(str_rb, "rb") X(str_ascii, "ascii")             \
    X(str_utf_8, "UTF-8") X(str_stls_cap, "STLS")                           \
    X(str_pipelining_cap, "PIPELINING") X(str_sasl_cap, "SASL")             \
    X(str_which, "which")                                                   \
    X(cmd_capa, "CAPA") X(cmd_stat, "STAT") X(cmd_stls, "STLS")             \
    X(cmd_quit, "QUIT") X(cmd_noop, "NOOP") X(cmd_rset, "RSET")             \
    X(cmd_utf8, "UTF8") X(cmd_list, "LIST") X(cmd_uidl, "UIDL")             \
    X(cmd_cancel, "*")                                                      \
    X(fmt_user, "USER %s") X(fmt_pass, "PASS %s") X(fmt_rpop, "RPOP %s")    \
    X(fmt_dele, "DELE %s") X(fmt_retr, "RETR %s") X(fmt_list, "LIST %s")    \
    X(fmt_uidl, "UIDL %s") X(fmt_top, "TOP %s %s")                          \
    X(fmt_apop, "APOP %s %s")

/* Other objects of the state, made or imported by module init (or set
 * by the package: namespace, response_classifier). */
#define CPOPLIB_OBJECTS(X)                                                  \
    X(error_proto)                                                          \
    X(response_classifier)  /* picks error_proto's subclass for a         \
                               "-ERR [CODE]" reply; may be NULL */          \
    X(namespace)            /* the package's globals: _MAXLINE, ... */      \
    X(socket_module) X(socket_type) X(socket_makefile)                      \
    X(default_timeout)      /* socket._GLOBAL_DEFAULT_TIMEOUT */            \
    X(shut_rdwr)                                                            \
    X(ssl_module)           /* NULL when ssl is unavailable */              \
    X(ssl_socket_type)      /* ssl.SSLSocket, or NULL */                    \
    X(base64_module) X(builtins_module)                                     \
    X(timestamp_re)         /* the default POP3.timestamp */               \
    X(unsupported_operation)                                                \
    X(bytes_crlf) X(bytes_cr) X(bytes_plus) X(bytes_dot) X(bytes_dotdot)   \
    X(bytes_star) X(int_one)

/* The types, created by module init from their specs. */
#define CPOPLIB_TYPES(X)                                                    \
    X(POP3_Type) X(POP3_SSL_Type) X(Reader_Type) X(FetchIter_Type)

typedef struct {
#define CPOPLIB_TYPE_FIELD(name) PyTypeObject *name;
#define CPOPLIB_OBJECT_FIELD(name) PyObject *name;
#define CPOPLIB_STRING_FIELD(name, text) PyObject *name;
    CPOPLIB_TYPES(CPOPLIB_TYPE_FIELD)
    CPOPLIB_OBJECTS(CPOPLIB_OBJECT_FIELD)
    CPOPLIB_STRINGS(CPOPLIB_STRING_FIELD)
#undef CPOPLIB_TYPE_FIELD
#undef CPOPLIB_OBJECT_FIELD
#undef CPOPLIB_STRING_FIELD
    PyObject *hook_names[HOOK_COUNT];
    PyObject *hook_defaults[HOOK_COUNT];
} cpoplib_state;

/* ---- errors.c ---- */

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

/* ---- args.c ---- */

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
    int timed_out;           /* a read timed out: refuse all reads, as
                                socket.SocketIO does */
    double deadline;         /* cpoplib_monotonic() time after which a
                                fill times out; 0: none (login()) */
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

/* Seconds of the monotonic clock (CLOCK_MONOTONIC); no Python. */
double cpoplib_monotonic(void);

/* 1 if `file` is one of our readers (an exact SocketReader). */
int cpoplib_is_reader(cpoplib_state *st, PyObject *file);

/* A new reader over `sock`: what sock.makefile('rb') is for poplib,
 * counted in sock._io_refs as such a file is. */
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

#endif /* CPOPLIB_H */
