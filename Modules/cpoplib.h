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
 *   0      window.c       fetch_many()'s window of pipelined commands:
 *                         plain C, no Python (window.h)
 *   1      errors.c       raising and chaining exceptions
 *   1      args.c         the one argument parser of every C method
 *   1      durability.c   syncfs(2) and fstatfs(2) for the fetcher
 *   1      settings.c     _MAXLINE, MAX_RESPONSE_SIZE and
 *                         SCRAM_MAX_ITERATIONS as read at run time
 *   1      buffer.c       the read buffer's room: compacting, growing,
 *                         shrinking (both readers below)
 *   2      reader.c       the read buffer of a connection and its file
 *                         type (SocketReader); the monotonic clock
 *   2      connection.c   the POP3 object's life cycle, the claim,
 *                         poplib's close() and __getstate__
 *   2      wire.c         command lines encoded and checked; listing
 *                         lines, STAT, CAPA and the APOP digest
 *   3      protocol.c     hooks through self, sending, reading lines and
 *                         responses, running a command, closing while
 *                         keeping an error, debug output
 *   3      engine.c       the sans-IO response engine (ResponseEngine,
 *                         FetchWindow) and the module functions the
 *                         asyncio client builds commands with
 *   3      saslobj.c      sasl.c's exchange one reply at a time, shared
 *                         by login() and the asyncio client (SASLClient)
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
#include "sasl.h"

/* ---- compatibility: the one place that knows Python versions ---- */

#if PY_VERSION_HEX >= 0x030C0000
#  define CPOPLIB_T_PYSSIZET Py_T_PYSSIZET
#  define CPOPLIB_T_LONGLONG Py_T_LONGLONG
#  define CPOPLIB_READONLY Py_READONLY
#else
#  include "structmember.h"
#  define CPOPLIB_T_PYSSIZET T_PYSSIZET
#  define CPOPLIB_T_LONGLONG T_LONGLONG
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
    X(str_which, "which") X(str_empty, "")                                  \
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
    X(POP3_Type) X(POP3_SSL_Type) X(Reader_Type) X(FetchIter_Type)         \
    X(Engine_Type) X(FetchWindow_Type) X(SASLClient_Type)

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

/* 1 if exc (may be NULL) is error_proto for an -ERR reply read whole:
 * its args are the reply line (bytes); the stream is in step after it */
int cpoplib_is_err_reply(cpoplib_state *st, PyObject *exc);

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

/* ---- settings.c ---- */

/* The package's _MAXLINE, as poplib's readline(_MAXLINE + 1) takes it
 * (may be negative: -1 makes every line too long before anything is
 * read, less than -1 after a line was read without limit), and
 * MAX_RESPONSE_SIZE (-1: none), validated.  0, or -1 with an exception
 * set. */
int cpoplib_current_maxline(cpoplib_state *st, Py_ssize_t *maxline);
int cpoplib_current_response_cap(cpoplib_state *st, Py_ssize_t *cap);
/* The scanning window (pop3_parser.h's `limit`) of a _MAXLINE value:
 * maxline + 1, or no limit for a negative one. */
Py_ssize_t cpoplib_line_window(Py_ssize_t maxline);
/* Add `n` octets to *total, unless that would pass `cap` (-1: none):
 * 1, or 0 when the response is too long. */
int cpoplib_within_cap(Py_ssize_t cap, Py_ssize_t *total, Py_ssize_t n);
/* SCRAM_MAX_ITERATIONS, validated (1 to 999,999,999); *cap is left as
 * it is when the setting is absent. */
int cpoplib_scram_iteration_cap(cpoplib_state *st, unsigned long *cap);

/* ---- buffer.c ---- */

/* How much room to ask for when `avail` bytes are buffered and up to
 * `limit` are wanted: grow geometrically (by at least `chunk`), never
 * all at once. */
Py_ssize_t cpoplib_buffer_need(Py_ssize_t avail, Py_ssize_t limit,
                               Py_ssize_t chunk);
/* Make room for `need` bytes from *pos in *buffer (a bytearray, or NULL:
 * one is made), keeping [*pos, *end): *buffer may be replaced, *pos and
 * *end moved.  0, or -1 with an exception set.  Runs no Python code. */
int cpoplib_buffer_room(PyObject **buffer, Py_ssize_t *pos, Py_ssize_t *end,
                        Py_ssize_t need, Py_ssize_t chunk);

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

/* ---- wire.c ---- */

/* bytes(text, encoding) */
PyObject *cpoplib_encode_text(PyObject *text, PyObject *encoding);
/* A command line (str) as bytes in `encoding`, refused with ValueError
 * when it holds a control character (CR, LF, ...). */
PyObject *cpoplib_encode_command(PyObject *line, PyObject *encoding);
/* One line p[0..n) of a LIST (numeric) or UIDL listing into map, or
 * error_proto("malformed <command> line: ..."): 0 or -1. */
int cpoplib_listing_line(cpoplib_state *st, PyObject *map,
                         PyObject *command, const char *p, Py_ssize_t n,
                         int numeric);
/* (n, octets) from LIST n's reply "+OK n octets", or error_proto when it
 * is malformed or answers for another message than `number`. */
PyObject *cpoplib_scan_listing(cpoplib_state *st, PyObject *number,
                               PyObject *resp);
/* (count, size) from STAT's reply split in fields, as CPython main
 * validates them. */
PyObject *cpoplib_stat_result(cpoplib_state *st, PyObject *fields);
/* capa()'s dict from the lines of CAPA's response. */
PyObject *cpoplib_capa_from_lines(cpoplib_state *st, PyObject *rawcaps);
/* The APOP digest (a str of 32 hex digits) of timestamp + secret, the
 * timestamp found in `welcome` with `pattern` (the default one in C). */
PyObject *cpoplib_apop_digest(cpoplib_state *st, PyObject *welcome,
                              PyObject *pattern, PyObject *secret);
/* fetch_many()'s window argument: 0 for None (adaptive), else 1 to
 * POP3_WINDOW_MAX (ValueError otherwise).  0 or -1. */
int cpoplib_window_arg(PyObject *window, Py_ssize_t *w);
/* The size of `key` in the sizes mapping: 0 when unknown (no entry, not
 * a non-negative int), -1 with an exception set when the mapping fails
 * otherwise.  Runs Python code (the mapping). */
Py_ssize_t cpoplib_known_size(PyObject *sizes, PyObject *key);

/* ---- engine.c ---- */

extern PyType_Spec cpoplib_engine_spec;
extern PyType_Spec cpoplib_fetch_window_spec;
/* module functions of the asyncio client: _encode_command(line,
 * encoding), _stat_result(fields), _capa_from_lines(lines),
 * _apop_digest(welcome, timestamp, secret) */
extern PyMethodDef cpoplib_engine_functions[];

/* ---- saslobj.c ---- */

/* Pseudo-mechanisms login() also knows besides sasl.c's. */
#define CPOPLIB_MECH_APOP (SASL_MECH_COUNT + 1)
#define CPOPLIB_MECH_USER (SASL_MECH_COUNT + 2)

/* Wipe and release a bytes object (a str line) made from a secret, when
 * the caller owns the last reference; NULL is allowed. */
void cpoplib_wipe_bytes(PyObject *obj);
void cpoplib_wipe_line(PyObject *line);
/* prefix + base64 of data, as an ASCII str. */
PyObject *cpoplib_b64_line(const char *prefix, const unsigned char *data,
                           size_t len);
/* error_proto("-ERR <MECH>: <detail>"), and the exception of a local
 * failure (memory, libcrypto, credentials) of sasl.c. */
void cpoplib_sasl_failure(cpoplib_state *st, int mech, const char *detail);
void cpoplib_sasl_local_error(cpoplib_state *st, int status, int mech,
                              const char *detail);
/* A client of sasl.c for mech with user and secret (str): SASLprep'ed
 * for SCRAM, under SCRAM_MAX_ITERATIONS.  NULL with an exception set. */
sasl_client *cpoplib_sasl_prepare(cpoplib_state *st, int mech,
                                  PyObject *user, PyObject *secret);
/* The AUTH line of c (*initial_pending: the initial response does not
 * fit and follows an empty challenge); the initial response alone; the
 * decoded challenge of a "+ base64" reply (PyMem_Malloc'ed). */
PyObject *cpoplib_sasl_auth_line(cpoplib_state *st, int mech,
                                 sasl_client *c, int *initial_pending);
PyObject *cpoplib_sasl_initial_line(cpoplib_state *st, int mech,
                                    sasl_client *c);
unsigned char *cpoplib_sasl_challenge(cpoplib_state *st, int mech,
                                      PyObject *resp, size_t *len);
/* sasl_client_step() with the GIL released, stopping at `deadline`
 * (cpoplib_monotonic() seconds, 0: none) or when *stop (may be NULL)
 * becomes non-zero: a sasl_status; on SASL_ERR_INTERRUPTED an exception
 * is set. */
int cpoplib_sasl_step_nogil(sasl_client *c, double deadline,
                            volatile int *stop,
                            const unsigned char *challenge, size_t len,
                            const unsigned char **out, size_t *out_len);
/* login()'s mechanism= argument (a sasl_mech or CPOPLIB_MECH_*), or -1
 * with an exception; the name of one; CAPA's SASL list as a bit set
 * (bit m for sasl_mech m); the mechanism login() picks from a bit set
 * (-1: APOP if the greeting allows it, else cpoplib_pick_without_apop);
 * the one it picks without a password or a token (SASL_EXTERNAL when
 * offered over TLS, else -1). */
int cpoplib_named_mechanism(PyObject *name);
const char *cpoplib_mechanism_name(int mech);
long cpoplib_mechanism_mask(PyObject *list);
int cpoplib_pick_mechanism(long offered, int token);
int cpoplib_pick_without_apop(long offered);
int cpoplib_pick_without_secret(long offered, int encrypted);
/* error_proto and -1 when mech would send a password or token in the
 * clear over an unencrypted connection without allow_plaintext. */
int cpoplib_refuse_cleartext(cpoplib_state *st, int mech, int token,
                             int encrypted, int allow);
/* 1 if exc is error_proto for a reply line starting with "-ERR". */
int cpoplib_is_err_line(cpoplib_state *st, PyObject *exc);

/* The exchange of a built-in mechanism, one server reply at a time; the
 * blocking login() and the asyncio client's drive the same machine:
 *   line = cpoplib_sasl_begin() -- send it;
 *   for each reply: if reading it raised, cpoplib_sasl_refused() says
 *   what is left to do; else cpoplib_sasl_feed(): SEND (send *line),
 *   STEP (cpoplib_sasl_step() gives the line to send), DONE, or -1 with
 *   *after set. */
typedef struct {
    sasl_client *c;
    int mech;
    int initial_pending;
    int failed;                  /* a step answered a reported failure */
    unsigned char *challenge;    /* decoded, waiting for its step */
    size_t challenge_len;
} cpoplib_sasl_run;
enum { CPOPLIB_SASL_SEND, CPOPLIB_SASL_STEP, CPOPLIB_SASL_DONE };
/* What a failed exchange leaves for the caller to do. */
enum {
    CPOPLIB_AFTER_IN_STEP,       /* the server ended it with -ERR */
    CPOPLIB_AFTER_CANCEL,        /* send "*" and read the server's -ERR */
    CPOPLIB_AFTER_CLOSE          /* the server's state is unknown */
};
void cpoplib_sasl_exchange_init(cpoplib_sasl_run *ex, sasl_client *c,
                                int mech);
/* frees the client too */
void cpoplib_sasl_exchange_clear(cpoplib_sasl_run *ex);
PyObject *cpoplib_sasl_begin(cpoplib_state *st, cpoplib_sasl_run *ex);
int cpoplib_sasl_feed(cpoplib_state *st, cpoplib_sasl_run *ex,
                      PyObject *raw, PyObject **line, int *after);
int cpoplib_sasl_step(cpoplib_state *st, cpoplib_sasl_run *ex,
                      double deadline, volatile int *stop, PyObject **line,
                      int *after);
void cpoplib_sasl_refused(cpoplib_state *st, cpoplib_sasl_run *ex,
                          int *after);
extern PyType_Spec cpoplib_sasl_client_spec;

#endif /* CPOPLIB_H */
