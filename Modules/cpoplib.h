/* cpoplib.h -- declarations shared by the C files of cpoplib._cpoplib.
 *
 *   _cpoplib.c     module definition, module state, APOP digest
 *   connection.c   the POP3 and POP3_SSL types (see connection.h)
 *   commands.c     the POP3 commands of those types
 *   reader.c       the per-connection read buffer and its file view
 *   pop3_parser.c  the pure-C line parser (no Python; see pop3_parser.h)
 */
#ifndef CPOPLIB_H
#define CPOPLIB_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

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
    PyObject *error_proto;

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
    PyObject *str_keyfile, *str_certfile;

    PyObject *bytes_crlf;            /* b'\r\n' */
    PyObject *bytes_plus;            /* b'+' */
    PyObject *bytes_dot;             /* b'.' */
    PyObject *bytes_dotdot;          /* b'..' */
    PyObject *str_rb;                /* 'rb' */
    PyObject *str_ascii;             /* 'ascii' */
    PyObject *str_stls_cap;          /* 'STLS' */
} cpoplib_state;

extern PyModuleDef cpoplib_module_def;

/* Module state of the module that defined `type` (or a base of it). */
cpoplib_state *cpoplib_state_from_type(PyTypeObject *type);

/* Raise error_proto(msg) with a str argument. */
void cpoplib_error(cpoplib_state *st, const char *msg);

/* MD5 of data as 32 lowercase hex digits plus NUL, with OpenSSL's EVP
 * API.  Returns 0, or -1 with an exception set. */
int cpoplib_md5_hex(const char *data, size_t len, char out[33]);

/* ---- reader.c ---- */

typedef struct {
    PyObject_HEAD
    PyObject *module;        /* owner of the state; strong */
    PyObject *sock;          /* read with recv_into(); NULL once closed */
    PyObject *buffer;        /* a bytearray; NULL once closed */
    Py_ssize_t pos;          /* first unread byte */
    Py_ssize_t end;          /* one past the last buffered byte */
    int busy;                /* a read is in progress (Python code may run) */
    PyObject *weakreflist;
} ReaderObject;

extern PyType_Spec cpoplib_reader_spec;

/* A new reader over `sock`: what sock.makefile('rb') is for poplib. */
PyObject *cpoplib_reader_new(cpoplib_state *st, PyObject *sock);

/* Next protocol line, at most `limit` bytes (limit >= 1).  On POP3_LINE
 * sets *line and *base (the line's first byte, valid until the next call
 * on this reader) and consumes it; on POP3_TOO_LONG consumes `limit`
 * bytes; POP3_EOF consumes nothing.  Returns -1 with an exception set on
 * error.  May run Python code (the socket's recv_into). */
int cpoplib_reader_next_line(ReaderObject *r, Py_ssize_t limit,
                             pop3_line *line, const char **base);

/* Drop whatever is buffered and close the reader. */
void cpoplib_reader_discard(ReaderObject *r);

/* ---- connection.c ---- */

int cpoplib_connection_add_types(PyObject *module, cpoplib_state *st);

#endif /* CPOPLIB_H */
