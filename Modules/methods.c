/* methods.c -- the Python-visible methods of POP3 and POP3_SSL.
 *
 * One argument parser (cpoplib_parse_args) for every C method of the
 * extension, the reader's included; each method here parses its
 * arguments, claims the connection when it does I/O (cpoplib_claim:
 * before anything is sent, so a refused call sends nothing), calls its C
 * implementation and releases the claim.  Every method has a docstring
 * whose first line is its __text_signature__, so inspect.signature(),
 * help() and mock.create_autospec() see exact signatures.  The
 * constructors' signatures (their timeout default is a sentinel object a
 * text signature cannot express) are given by the Python package, which
 * wraps tp_init in an __init__ with poplib's exact signature.
 *
 * May call: connection.c, protocol.c and commands.c; no Python code of
 * its own besides what those run.
 */
#include "connection.h"

/* ---- the argument parser ---- */

static Py_ssize_t
count_names(const cpoplib_argspec *spec)
{
    Py_ssize_t n = 0;

    while (spec->names[n] != NULL) {
        n++;
    }
    return n;
}

int
cpoplib_parse_args(const cpoplib_argspec *spec, PyObject *const *args,
                   Py_ssize_t nargs, PyObject *kwnames, PyObject **out)
{
    Py_ssize_t n = count_names(spec), i, j;

    for (i = 0; i < n; i++) {
        out[i] = NULL;
    }
    if (nargs > spec->maxpos) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %d positional argument%s "
                     "(%zd given)", spec->fname, spec->maxpos,
                     spec->maxpos == 1 ? "" : "s", nargs);
        return -1;
    }
    for (i = 0; i < nargs; i++) {
        out[i] = args[i];
    }
    if (kwnames != NULL) {
        for (i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            for (j = 0; j < n; j++) {
                if (PyUnicode_Check(key)
                    && PyUnicode_CompareWithASCIIString(key,
                                                        spec->names[j]) == 0) {
                    break;
                }
            }
            if (j == n) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got an unexpected keyword argument '%S'",
                             spec->fname, key);
                return -1;
            }
            if (j < spec->posonly) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got some positional-only arguments "
                             "passed as keyword arguments: '%s'",
                             spec->fname, spec->names[j]);
                return -1;
            }
            if (out[j] != NULL) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got multiple values for argument '%s'",
                             spec->fname, spec->names[j]);
                return -1;
            }
            out[j] = args[nargs + i];
        }
    }
    for (i = 0; i < spec->required; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing required argument '%s' (pos %zd)",
                         spec->fname, spec->names[i], i + 1);
            return -1;
        }
    }
    return 0;
}

#define MAX_PARAMS 8

int
cpoplib_parse_tuple(const cpoplib_argspec *spec, PyObject *args,
                    PyObject *kwargs, PyObject **out)
{
    PyObject *stack[MAX_PARAMS];
    PyObject *kwnames = NULL, *key, *value;
    Py_ssize_t nargs = PyTuple_GET_SIZE(args), nkw, pos = 0, i = 0;
    int rc;

    nkw = kwargs == NULL ? 0 : PyDict_GET_SIZE(kwargs);
    assert(count_names(spec) <= MAX_PARAMS);
    if (nargs > spec->maxpos || nargs + nkw > count_names(spec)) {
        if (nargs <= spec->maxpos) {
            PyErr_Format(PyExc_TypeError,
                         "%s() takes at most %zd arguments (%zd given)",
                         spec->fname, count_names(spec), nargs + nkw);
            return -1;
        }
        /* reports "takes at most N positional arguments" */
        return cpoplib_parse_args(spec, &PyTuple_GET_ITEM(args, 0), nargs,
                                  NULL, out);
    }
    for (i = 0; i < nargs; i++) {
        stack[i] = PyTuple_GET_ITEM(args, i);
    }
    if (nkw > 0) {
        kwnames = PyTuple_New(nkw);
        if (kwnames == NULL) {
            return -1;
        }
        i = 0;
        while (PyDict_Next(kwargs, &pos, &key, &value)) {
            PyTuple_SET_ITEM(kwnames, i, Py_NewRef(key));
            stack[nargs + i] = value;
            i++;
        }
    }
    rc = cpoplib_parse_args(spec, stack, nargs, kwnames, out);
    Py_XDECREF(kwnames);
    return rc;
}

/* ---- constructors ---- */

const char cpoplib_pop3_doc[] = PyDoc_STR(
"A POP3 client connection (RFC 1939), the drop-in equivalent of\n"
"poplib.POP3: it connects on creation and reads the greeting.  Commands\n"
"are methods (user, pass_, stat, list, retr, dele, noop, rset, quit,\n"
"rpop, apop, top, uidl, utf8, capa, stls); server errors raise\n"
"error_proto.  Subclasses may override any of the underscore hooks.");

int
cpoplib_pop3_tp_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static const char *const names[] = {"host", "port", "timeout", NULL};
    static const cpoplib_argspec spec = {"POP3", names, 0, 1, 3};
    cpoplib_state *st = cpoplib_pop3_state((POP3Object *)self);
    PyObject *argv[3], *port, *timeout;
    int rc;

    if (cpoplib_parse_tuple(&spec, args, kwargs, argv) < 0) {
        return -1;
    }
    port = argv[1] != NULL ? Py_NewRef(argv[1]) : PyLong_FromLong(110);
    if (port == NULL) {
        return -1;
    }
    timeout = Py_NewRef(argv[2] != NULL ? argv[2] : st->default_timeout);
    Py_INCREF(argv[0]);
    rc = cpoplib_pop3_init((POP3Object *)self, st, argv[0], port, timeout);
    Py_DECREF(argv[0]);
    Py_DECREF(port);
    Py_DECREF(timeout);
    return rc;
}

const char cpoplib_pop3_ssl_doc[] = PyDoc_STR(
"A POP3 connection over TLS from the first byte (POP3S), the drop-in\n"
"equivalent of poplib.POP3_SSL.  Without a context, the one of\n"
"ssl._create_stdlib_context() is used, as poplib does.");

int
cpoplib_pop3_ssl_tp_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
#if PY_VERSION_HEX < 0x030C0000
    /* 3.10 and 3.11 still take the deprecated keyfile and certfile */
    static const char *const names[] = {"host", "port", "keyfile",
                                        "certfile", "timeout", "context",
                                        NULL};
    static const cpoplib_argspec spec = {"POP3_SSL", names, 0, 1, 6};
    enum { HOST, PORT, KEYFILE, CERTFILE, TIMEOUT, CONTEXT, NPARAMS };
#else
    static const char *const names[] = {"host", "port", "timeout",
                                        "context", NULL};
    static const cpoplib_argspec spec = {"POP3_SSL", names, 0, 1, 2};
    enum { HOST, PORT, TIMEOUT, CONTEXT, NPARAMS };
#endif
    cpoplib_state *st = cpoplib_pop3_state((POP3Object *)self);
    PyObject *argv[NPARAMS], *keyfile = NULL, *certfile = NULL;
    PyObject *port = NULL, *timeout, *context;
    int rc = -1;

    if (cpoplib_parse_tuple(&spec, args, kwargs, argv) < 0) {
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    keyfile = Py_NewRef(argv[KEYFILE] != NULL ? argv[KEYFILE] : Py_None);
    certfile = Py_NewRef(argv[CERTFILE] != NULL ? argv[CERTFILE] : Py_None);
#endif
    port = argv[PORT] != NULL ? Py_NewRef(argv[PORT]) : PyLong_FromLong(995);
    if (port == NULL) {
        goto done;
    }
    timeout = argv[TIMEOUT] != NULL ? argv[TIMEOUT] : st->default_timeout;
    context = argv[CONTEXT] != NULL ? argv[CONTEXT] : Py_None;
    Py_INCREF(argv[HOST]);
    Py_INCREF(timeout);
    Py_INCREF(context);
    rc = cpoplib_pop3_ssl_init((POP3Object *)self, st, argv[HOST], port,
                               keyfile, certfile, timeout, context);
    Py_DECREF(argv[HOST]);
    Py_DECREF(timeout);
    Py_DECREF(context);

done:
    Py_XDECREF(keyfile);
    Py_XDECREF(certfile);
    Py_XDECREF(port);
    return rc;
}

/* ---- the hooks ---- */

PyDoc_STRVAR(pop3_create_socket_doc,
"_create_socket($self, /, timeout)\n--\n\n"
"Open the connection; timeout=0 is refused with ValueError.");

static PyObject *
pop3_create_socket(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    static const char *const names[] = {"timeout", NULL};
    static const cpoplib_argspec spec = {"_create_socket", names, 0, 1, 1};
    PyObject *timeout;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &timeout) < 0) {
        return NULL;
    }
    return cpoplib_create_socket_impl(self, cpoplib_pop3_state(self),
                                      timeout);
}

PyDoc_STRVAR(pop3_ssl_create_socket_doc,
"_create_socket($self, /, timeout)\n--\n\n"
"Open the connection through POP3._create_socket(), then wrap it with\n"
"self.context for self.host.");

static PyObject *
pop3_ssl_create_socket(POP3Object *self, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"timeout", NULL};
    static const cpoplib_argspec spec = {"_create_socket", names, 0, 1, 1};
    PyObject *timeout;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &timeout) < 0) {
        return NULL;
    }
    return cpoplib_ssl_create_socket_impl(self, cpoplib_pop3_state(self),
                                          timeout);
}

PyDoc_STRVAR(pop3_putline_doc,
"_putline($self, /, line)\n--\n\n"
"Send one line (bytes); CRLF is appended.  Raises the audit event\n"
"poplib.putline.");

static PyObject *
pop3_putline(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    static const char *const names[] = {"line", NULL};
    static const cpoplib_argspec spec = {"_putline", names, 0, 1, 1};
    PyObject *line, *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &line) < 0
        || cpoplib_claim_hook(self) < 0) {
        return NULL;
    }
    res = cpoplib_putline_impl(self, cpoplib_pop3_state(self), line);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_putcmd_doc,
"_putcmd($self, /, line)\n--\n\n"
"Encode a command with self.encoding and send it through _putline().\n"
"ValueError if it contains a control character.");

static PyObject *
pop3_putcmd(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    static const char *const names[] = {"line", NULL};
    static const cpoplib_argspec spec = {"_putcmd", names, 0, 1, 1};
    PyObject *line, *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &line) < 0
        || cpoplib_claim_hook(self) < 0) {
        return NULL;
    }
    res = cpoplib_putcmd_impl(self, cpoplib_pop3_state(self), line);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_getline_doc,
"_getline($self, /)\n--\n\n"
"Read one line: (line without its line ending, octets read).");

static PyObject *
pop3_getline(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *line, *octets, *pair;
    int rc;

    if (cpoplib_claim_hook(self) < 0) {
        return NULL;
    }
    rc = cpoplib_getline_impl(self, cpoplib_pop3_state(self), &line,
                              &octets);
    cpoplib_release(self);
    if (rc < 0) {
        return NULL;
    }
    pair = PyTuple_Pack(2, line, octets);
    Py_DECREF(line);
    Py_DECREF(octets);
    return pair;
}

PyDoc_STRVAR(pop3_getresp_doc,
"_getresp($self, /)\n--\n\n"
"Read a status line; error_proto unless it starts with '+'.");

static PyObject *
pop3_getresp(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *res;

    if (cpoplib_claim_hook(self) < 0) {
        return NULL;
    }
    res = cpoplib_getresp_impl(self, cpoplib_pop3_state(self));
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_getlongresp_doc,
"_getlongresp($self, /)\n--\n\n"
"Read a multi-line response: (response, [line, ...], octets).");

static PyObject *
pop3_getlongresp(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *res;

    if (cpoplib_claim_hook(self) < 0) {
        return NULL;
    }
    res = cpoplib_getlongresp_impl(self, cpoplib_pop3_state(self));
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_shortcmd_doc,
"_shortcmd($self, /, line)\n--\n\n"
"Send a command and return its status line.");

static PyObject *
pop3_shortcmd(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    static const char *const names[] = {"line", NULL};
    static const cpoplib_argspec spec = {"_shortcmd", names, 0, 1, 1};
    PyObject *line, *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &line) < 0
        || cpoplib_claim_hook(self) < 0) {
        return NULL;
    }
    res = cpoplib_shortcmd_impl(self, cpoplib_pop3_state(self), line);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_longcmd_doc,
"_longcmd($self, /, line)\n--\n\n"
"Send a command and return its multi-line response.");

static PyObject *
pop3_longcmd(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    static const char *const names[] = {"line", NULL};
    static const cpoplib_argspec spec = {"_longcmd", names, 0, 1, 1};
    PyObject *line, *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &line) < 0
        || cpoplib_claim_hook(self) < 0) {
        return NULL;
    }
    res = cpoplib_longcmd_impl(self, cpoplib_pop3_state(self), line);
    cpoplib_release(self);
    return res;
}

/* ---- the commands ---- */

PyDoc_STRVAR(pop3_getwelcome_doc,
"getwelcome($self, /)\n--\n\n"
"Return the server's greeting line.");

static PyObject *
pop3_getwelcome(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return PyObject_GetAttr((PyObject *)self,
                            cpoplib_pop3_state(self)->str_welcome);
}

PyDoc_STRVAR(pop3_set_debuglevel_doc,
"set_debuglevel($self, /, level)\n--\n\n"
"1 prints commands, 2 also every line sent and received.");

static PyObject *
pop3_set_debuglevel(POP3Object *self, PyObject *const *args,
                    Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"level", NULL};
    static const cpoplib_argspec spec = {"set_debuglevel", names, 0, 1, 1};
    PyObject *level;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &level) < 0
        || PyObject_SetAttr((PyObject *)self,
                            cpoplib_pop3_state(self)->str_debugging,
                            level) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* A command with one required argument, sent as `fmt % arg`. */
static PyObject *
command1(POP3Object *self, const cpoplib_argspec *spec, const char *fmt,
         int longcmd, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames)
{
    PyObject *arg, *res;

    if (cpoplib_parse_args(spec, args, nargs, kwnames, &arg) < 0
        || cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_command1(self, fmt, arg, longcmd);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_user_doc,
"user($self, /, user)\n--\n\nSend USER.");

static PyObject *
pop3_user(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"user", NULL};
    static const cpoplib_argspec spec = {"user", names, 0, 1, 1};

    return command1(self, &spec, "USER %s", 0, args, nargs, kwnames);
}

PyDoc_STRVAR(pop3_pass_doc,
"pass_($self, /, pswd)\n--\n\n"
"Send PASS; the server usually locks the mailbox until quit().");

static PyObject *
pop3_pass_(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    static const char *const names[] = {"pswd", NULL};
    static const cpoplib_argspec spec = {"pass_", names, 0, 1, 1};

    return command1(self, &spec, "PASS %s", 0, args, nargs, kwnames);
}

PyDoc_STRVAR(pop3_dele_doc,
"dele($self, /, which)\n--\n\n"
"Mark a message for deletion.");

static PyObject *
pop3_dele(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"which", NULL};
    static const cpoplib_argspec spec = {"dele", names, 0, 1, 1};

    return command1(self, &spec, "DELE %s", 0, args, nargs, kwnames);
}

PyDoc_STRVAR(pop3_rpop_doc,
"rpop($self, /, user)\n--\n\nSend RPOP.");

static PyObject *
pop3_rpop(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"user", NULL};
    static const cpoplib_argspec spec = {"rpop", names, 0, 1, 1};

    return command1(self, &spec, "RPOP %s", 0, args, nargs, kwnames);
}

PyDoc_STRVAR(pop3_retr_doc,
"retr($self, /, which)\n--\n\n"
"Retrieve a message: (response, [line, ...], octets).");

static PyObject *
pop3_retr(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"which", NULL};
    static const cpoplib_argspec spec = {"retr", names, 0, 1, 1};

    return command1(self, &spec, "RETR %s", 1, args, nargs, kwnames);
}

/* A command without arguments: `line`, a short response. */
static PyObject *
command0(POP3Object *self, const char *line)
{
    PyObject *res;

    if (cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_run_command(self, PyUnicode_FromString(line), 0);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_noop_doc,
"noop($self, /)\n--\n\nSend NOOP.");

static PyObject *
pop3_noop(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return command0(self, "NOOP");
}

PyDoc_STRVAR(pop3_rset_doc,
"rset($self, /)\n--\n\n"
"Unmark messages marked for deletion.");

static PyObject *
pop3_rset(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return command0(self, "RSET");
}

PyDoc_STRVAR(pop3_utf8_doc,
"utf8($self, /)\n--\n\n"
"Ask for UTF-8 mode (RFC 6856); returns the response.");

static PyObject *
pop3_utf8(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return command0(self, "UTF8");
}

PyDoc_STRVAR(pop3_stat_doc,
"stat($self, /)\n--\n\n"
"Return (message count, mailbox size) as two ints.");

static PyObject *
pop3_stat(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *res;

    if (cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_stat(self);
    cpoplib_release(self);
    return res;
}

/* LIST [which] or UIDL [which] */
static PyObject *
listing(POP3Object *self, const cpoplib_argspec *spec, const char *bare,
        const char *fmt, PyObject *const *args, Py_ssize_t nargs,
        PyObject *kwnames)
{
    PyObject *which, *res;

    if (cpoplib_parse_args(spec, args, nargs, kwnames, &which) < 0
        || cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_listing(self, bare, fmt, which);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_list_doc,
"list($self, /, which=None)\n--\n\n"
"Without an argument: (response, ['msgnum octets', ...], octets);\n"
"with one: the scan listing line of that message.");

static PyObject *
pop3_list(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"which", NULL};
    static const cpoplib_argspec spec = {"list", names, 0, 0, 1};

    return listing(self, &spec, "LIST", "LIST %s", args, nargs, kwnames);
}

PyDoc_STRVAR(pop3_uidl_doc,
"uidl($self, /, which=None)\n--\n\n"
"Unique ids: (response, ['msgnum uid', ...], octets), or the line of\n"
"one message.");

static PyObject *
pop3_uidl(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"which", NULL};
    static const cpoplib_argspec spec = {"uidl", names, 0, 0, 1};

    return listing(self, &spec, "UIDL", "UIDL %s", args, nargs, kwnames);
}

PyDoc_STRVAR(pop3_top_doc,
"top($self, /, which, howmuch)\n--\n\n"
"Retrieve the headers and the first howmuch body lines of a message.");

static PyObject *
pop3_top(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames)
{
    static const char *const names[] = {"which", "howmuch", NULL};
    static const cpoplib_argspec spec = {"top", names, 0, 2, 2};
    PyObject *argv[2], *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, argv) < 0
        || cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_top(self, argv[0], argv[1]);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_apop_doc,
"apop($self, /, user, password)\n--\n\n"
"Log in with APOP: send the MD5 digest of the greeting's timestamp and\n"
"the password.  Raises error_proto if the greeting has no timestamp.");

static PyObject *
pop3_apop(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"user", "password", NULL};
    static const cpoplib_argspec spec = {"apop", names, 0, 2, 2};
    PyObject *argv[2], *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, argv) < 0
        || cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_apop(self, argv[0], argv[1]);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_capa_doc,
"capa($self, /)\n--\n\n"
"Return the server's capabilities (RFC 2449) as a dict of lists.");

static PyObject *
pop3_capa(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *res;

    if (cpoplib_claim_hook(self) < 0) {
        return NULL;
    }
    res = cpoplib_capa_impl(self, cpoplib_pop3_state(self));
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_stls_doc,
"stls($self, /, context=None)\n--\n\n"
"Switch the connection to TLS with STLS (RFC 2595).  Whatever the server\n"
"sent after its +OK and before the handshake is discarded.");

static PyObject *
pop3_stls(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"context", NULL};
    static const cpoplib_argspec spec = {"stls", names, 0, 0, 1};
    PyObject *context, *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &context) < 0
        || cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_stls(self, context);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_fetch_doc,
"fetch($self, /, which)\n--\n\n"
"Retrieve a message as one bytes object: dot-unstuffed, every line\n"
"ending in CRLF, as b''.join(line + b'\\r\\n' for line in\n"
"self.retr(which)[1]) gives it.");

static PyObject *
pop3_fetch(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    static const char *const names[] = {"which", NULL};
    static const cpoplib_argspec spec = {"fetch", names, 0, 1, 1};
    PyObject *which, *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &which) < 0
        || cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_fetch(self, which);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_fetch_into_doc,
"fetch_into($self, /, which, file)\n--\n\n"
"Retrieve a message into file.write() in bounded memory; return the\n"
"number of bytes written (the bytes fetch() would return).  If write()\n"
"fails, the connection is closed: the rest of the message is still on\n"
"the wire.");

static PyObject *
pop3_fetch_into(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    static const char *const names[] = {"which", "file", NULL};
    static const cpoplib_argspec spec = {"fetch_into", names, 0, 2, 2};
    PyObject *argv[2], *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, argv) < 0
        || cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_fetch_into(self, argv[0], argv[1]);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_fetch_many_doc,
"fetch_many($self, /, which, *, delete=False, pipeline=None, window=None)\n"
"--\n\n"
"Iterate over (which, message) for each message number in which, in\n"
"order; each message as fetch() returns it.  With pipelining (the\n"
"server's CAPA lists PIPELINING, or pipeline=True) up to window RETR\n"
"commands (default 8) are in flight at once.  With delete=True a\n"
"message is deleted (DELE, committed at quit()) once the caller asks\n"
"for the next one.  On -ERR the responses in flight are drained and\n"
"error_proto is raised with the message number as its `which`\n"
"attribute.  Until the iterator is exhausted or closed, other commands\n"
"on the connection raise RuntimeError.");

static PyObject *
pop3_fetch_many(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    static const char *const names[] = {"which", "delete", "pipeline",
                                        "window", NULL};
    static const cpoplib_argspec spec = {"fetch_many", names, 0, 1, 1};
    PyObject *argv[4];

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, argv) < 0) {
        return NULL;
    }
    return cpoplib_fetch_many(self, argv[0], argv[1], argv[2], argv[3]);
}

/* uidl_map() and list_map() */
static PyObject *
listing_map(POP3Object *self, const char *command, int numeric)
{
    PyObject *res;

    if (cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_listing_map(self, command, numeric);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_uidl_map_doc,
"uidl_map($self, /)\n--\n\n"
"{message number: unique id (bytes)} from one UIDL.");

static PyObject *
pop3_uidl_map(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return listing_map(self, "UIDL", 0);
}

PyDoc_STRVAR(pop3_list_map_doc,
"list_map($self, /)\n--\n\n"
"{message number: size in octets} from one LIST.");

static PyObject *
pop3_list_map(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return listing_map(self, "LIST", 1);
}

PyDoc_STRVAR(pop3_quit_doc,
"quit($self, /)\n--\n\n"
"Send QUIT (the server commits deletions) and close the connection.");

static PyObject *
pop3_quit(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *res;

    if (cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_quit(self);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_close_doc,
"close($self, /)\n--\n\n"
"Close the connection without sending anything.  Allowed from any\n"
"thread at any time, so that a stuck connection can be torn down.");

static PyObject *
pop3_close(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return cpoplib_close_impl(self, cpoplib_pop3_state(self));
}

PyDoc_STRVAR(pop3_getstate_doc,
"__getstate__($self, /)\n--\n\n"
"The instance __dict__ (or None when empty), as for poplib's POP3, so\n"
"that copy.copy() makes a copy sharing the connection.");

static PyObject *
pop3_getstate(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return cpoplib_getstate(self);
}

#define FAST(fn) ((PyCFunction)(void (*)(void))(fn))
#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

PyMethodDef cpoplib_pop3_methods[] = {
    {"_create_socket", FAST(pop3_create_socket), FASTKW,
     pop3_create_socket_doc},
    {"_putline", FAST(pop3_putline), FASTKW, pop3_putline_doc},
    {"_putcmd", FAST(pop3_putcmd), FASTKW, pop3_putcmd_doc},
    {"_getline", (PyCFunction)pop3_getline, METH_NOARGS, pop3_getline_doc},
    {"_getresp", (PyCFunction)pop3_getresp, METH_NOARGS, pop3_getresp_doc},
    {"_getlongresp", (PyCFunction)pop3_getlongresp, METH_NOARGS,
     pop3_getlongresp_doc},
    {"_shortcmd", FAST(pop3_shortcmd), FASTKW, pop3_shortcmd_doc},
    {"_longcmd", FAST(pop3_longcmd), FASTKW, pop3_longcmd_doc},
    {"getwelcome", (PyCFunction)pop3_getwelcome, METH_NOARGS,
     pop3_getwelcome_doc},
    {"set_debuglevel", FAST(pop3_set_debuglevel), FASTKW,
     pop3_set_debuglevel_doc},
    {"user", FAST(pop3_user), FASTKW, pop3_user_doc},
    {"pass_", FAST(pop3_pass_), FASTKW, pop3_pass_doc},
    {"stat", (PyCFunction)pop3_stat, METH_NOARGS, pop3_stat_doc},
    {"list", FAST(pop3_list), FASTKW, pop3_list_doc},
    {"retr", FAST(pop3_retr), FASTKW, pop3_retr_doc},
    {"dele", FAST(pop3_dele), FASTKW, pop3_dele_doc},
    {"noop", (PyCFunction)pop3_noop, METH_NOARGS, pop3_noop_doc},
    {"rset", (PyCFunction)pop3_rset, METH_NOARGS, pop3_rset_doc},
    {"quit", (PyCFunction)pop3_quit, METH_NOARGS, pop3_quit_doc},
    {"close", (PyCFunction)pop3_close, METH_NOARGS, pop3_close_doc},
    {"rpop", FAST(pop3_rpop), FASTKW, pop3_rpop_doc},
    {"apop", FAST(pop3_apop), FASTKW, pop3_apop_doc},
    {"top", FAST(pop3_top), FASTKW, pop3_top_doc},
    {"uidl", FAST(pop3_uidl), FASTKW, pop3_uidl_doc},
    {"utf8", (PyCFunction)pop3_utf8, METH_NOARGS, pop3_utf8_doc},
    {"capa", (PyCFunction)pop3_capa, METH_NOARGS, pop3_capa_doc},
    {"stls", FAST(pop3_stls), FASTKW, pop3_stls_doc},
    {"fetch", FAST(pop3_fetch), FASTKW, pop3_fetch_doc},
    {"fetch_into", FAST(pop3_fetch_into), FASTKW, pop3_fetch_into_doc},
    {"fetch_many", FAST(pop3_fetch_many), FASTKW, pop3_fetch_many_doc},
    {"uidl_map", (PyCFunction)pop3_uidl_map, METH_NOARGS, pop3_uidl_map_doc},
    {"list_map", (PyCFunction)pop3_list_map, METH_NOARGS, pop3_list_map_doc},
    {"__getstate__", (PyCFunction)pop3_getstate, METH_NOARGS,
     pop3_getstate_doc},
    {"auth", FAST(cpoplib_pop3_auth), FASTKW, cpoplib_pop3_auth_doc},
    {"login", FAST(cpoplib_pop3_login), FASTKW, cpoplib_pop3_login_doc},
    {NULL, NULL}
};

/* ---- POP3_SSL ---- */

#if PY_VERSION_HEX < 0x030C0000
#  define SSL_STLS_SIG "stls($self, /, keyfile=None, certfile=None, context=None)"
#else
#  define SSL_STLS_SIG "stls($self, /, context=None)"
#endif

PyDoc_STRVAR(pop3_ssl_stls_doc, SSL_STLS_SIG "\n--\n\n"
"Always raises error_proto: the session is already TLS.");

static PyObject *
pop3_ssl_stls(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
#if PY_VERSION_HEX < 0x030C0000
    static const char *const names[] = {"keyfile", "certfile", "context",
                                        NULL};
    static const cpoplib_argspec spec = {"stls", names, 0, 0, 3};
    PyObject *argv[3];
#else
    static const char *const names[] = {"context", NULL};
    static const cpoplib_argspec spec = {"stls", names, 0, 0, 1};
    PyObject *argv[1];
#endif

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, argv) < 0) {
        return NULL;
    }
    cpoplib_error(cpoplib_pop3_state(self),
                  "-ERR TLS session already established");
    return NULL;
}

PyMethodDef cpoplib_pop3_ssl_methods[] = {
    {"_create_socket", FAST(pop3_ssl_create_socket), FASTKW,
     pop3_ssl_create_socket_doc},
    {"stls", FAST(pop3_ssl_stls), FASTKW, pop3_ssl_stls_doc},
    {NULL, NULL}
};
