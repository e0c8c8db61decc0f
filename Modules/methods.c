/* methods.c -- every Python-visible method of POP3 and POP3_SSL (and the
 * test-only module function _sasl_exchange), the method tables and the
 * two type specs.
 *
 * Each method parses its arguments with the one argument parser
 * (cpoplib_parse_args, args.c), claims the connection when it does I/O
 * (cpoplib_claim: before anything is sent, so a refused call sends
 * nothing), calls its C implementation and releases the claim.  Every
 * method has a docstring whose first line is its __text_signature__, so
 * inspect.signature(), help() and mock.create_autospec() see exact
 * signatures.  The constructors' signatures (their timeout default is a
 * sentinel object a text signature cannot express) are given by the
 * Python package, which wraps tp_init in an __init__ with poplib's exact
 * signature.
 *
 * May call: args.c, auth.c, commands.c, connect.c, connection.c,
 * errors.c, pipeline.c, protocol.c, retrieval.c, sasl.c.  No Python code
 * of its own besides what those run.
 */
#include "connection.h"
#include "sasl.h"

/* ---- constructors ---- */

PyDoc_STRVAR(pop3_doc,
"A POP3 client connection (RFC 1939), the drop-in equivalent of\n"
"poplib.POP3: it connects on creation and reads the greeting.  Commands\n"
"are methods: user(), pass_(), stat(), list(), retr(), dele(), noop(),\n"
"rset(), quit(), rpop(), apop(), top(), uidl(), utf8(), capa(), stls();\n"
"server errors raise error_proto.  Subclasses may override any of the\n"
"underscore hooks.");

static int
pop3_tp_init(PyObject *self, PyObject *args, PyObject *kwargs)
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
    rc = cpoplib_pop3_init_impl((POP3Object *)self, st, argv[0], port,
                                timeout);
    Py_DECREF(argv[0]);
    Py_DECREF(port);
    Py_DECREF(timeout);
    return rc;
}

PyDoc_STRVAR(pop3_ssl_doc,
"A POP3 connection over TLS from the first byte (POP3S), the drop-in\n"
"equivalent of poplib.POP3_SSL.  Without a context, the one of\n"
"ssl._create_stdlib_context() is used, as poplib does.");

static int
pop3_ssl_tp_init(PyObject *self, PyObject *args, PyObject *kwargs)
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
    rc = cpoplib_pop3_ssl_init_impl((POP3Object *)self, st, argv[HOST], port,
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

/* A command with one required argument, sent as `fmt % arg` (fmt: one of
 * the state's fmt_* strings). */
static PyObject *
command1(POP3Object *self, const cpoplib_argspec *spec, PyObject *fmt,
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

    return command1(self, &spec, cpoplib_pop3_state(self)->fmt_user, 0,
                    args, nargs, kwnames);
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

    return command1(self, &spec, cpoplib_pop3_state(self)->fmt_pass, 0,
                    args, nargs, kwnames);
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

    return command1(self, &spec, cpoplib_pop3_state(self)->fmt_dele, 0,
                    args, nargs, kwnames);
}

PyDoc_STRVAR(pop3_rpop_doc,
"rpop($self, /, user)\n--\n\nSend RPOP.");

static PyObject *
pop3_rpop(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"user", NULL};
    static const cpoplib_argspec spec = {"rpop", names, 0, 1, 1};

    return command1(self, &spec, cpoplib_pop3_state(self)->fmt_rpop, 0,
                    args, nargs, kwnames);
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

    return command1(self, &spec, cpoplib_pop3_state(self)->fmt_retr, 1,
                    args, nargs, kwnames);
}

/* A command without arguments: `line` (one of the state's cmd_*
 * strings), a short response. */
static PyObject *
command0(POP3Object *self, PyObject *line)
{
    PyObject *res;

    if (cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_run_command(self, line, 0);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_noop_doc,
"noop($self, /)\n--\n\nSend NOOP.");

static PyObject *
pop3_noop(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return command0(self, cpoplib_pop3_state(self)->cmd_noop);
}

PyDoc_STRVAR(pop3_rset_doc,
"rset($self, /)\n--\n\n"
"Unmark messages marked for deletion.");

static PyObject *
pop3_rset(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return command0(self, cpoplib_pop3_state(self)->cmd_rset);
}

PyDoc_STRVAR(pop3_utf8_doc,
"utf8($self, /)\n--\n\n"
"Ask for UTF-8 mode (RFC 6856); returns the response.");

static PyObject *
pop3_utf8(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return command0(self, cpoplib_pop3_state(self)->cmd_utf8);
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
    res = cpoplib_stat_impl(self);
    cpoplib_release(self);
    return res;
}

/* LIST [which] or UIDL [which] */
static PyObject *
listing(POP3Object *self, const cpoplib_argspec *spec, PyObject *bare,
        PyObject *fmt, PyObject *const *args, Py_ssize_t nargs,
        PyObject *kwnames)
{
    PyObject *which, *res;

    if (cpoplib_parse_args(spec, args, nargs, kwnames, &which) < 0
        || cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_listing_impl(self, bare, fmt, which);
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

    cpoplib_state *st = cpoplib_pop3_state(self);

    return listing(self, &spec, st->cmd_list, st->fmt_list, args, nargs,
                   kwnames);
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

    cpoplib_state *st = cpoplib_pop3_state(self);

    return listing(self, &spec, st->cmd_uidl, st->fmt_uidl, args, nargs,
                   kwnames);
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
    res = cpoplib_top_impl(self, argv[0], argv[1]);
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
    res = cpoplib_apop_impl(self, argv[0], argv[1]);
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
    res = cpoplib_stls_impl(self, context);
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
    res = cpoplib_fetch_impl(self, which);
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
    res = cpoplib_fetch_into_impl(self, argv[0], argv[1]);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_fetch_many_doc,
"fetch_many($self, /, which, *, delete=False, pipeline=None, window=None,\n"
"           sizes=None)\n"
"--\n\n"
"Iterate over (which, message) for each message number in which, in\n"
"order; each message as fetch() returns it.  With pipelining (the\n"
"server's CAPA lists PIPELINING, or pipeline=True) several RETR\n"
"commands are in flight at once: window of them if given, else a window\n"
"that adapts to the link -- from 8, growing each round while that\n"
"raises the throughput, up to 128 -- and sizes ({number: octets}, say\n"
"list_map()) keeps the replies in flight under 32 MiB.  The iterator's\n"
"window attribute says where it is.  With delete=True a message is\n"
"deleted (DELE, committed at quit()) once the caller asks for the next\n"
"one.  On -ERR the responses in flight are drained and error_proto is\n"
"raised with the message number as its `which` attribute.  Until the\n"
"iterator is exhausted or closed, other commands on the connection, and\n"
"reads of its file, raise RuntimeError.");

static PyObject *
pop3_fetch_many(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    static const char *const names[] = {"which", "delete", "pipeline",
                                        "window", "sizes", NULL};
    static const cpoplib_argspec spec = {"fetch_many", names, 0, 1, 1};
    PyObject *argv[5];

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, argv) < 0) {
        return NULL;
    }
    return cpoplib_fetch_many_impl(self, argv[0], argv[1], argv[2],
                                   argv[3], argv[4]);
}

PyDoc_STRVAR(pop3_top_many_doc,
"top_many($self, /, which, howmuch, *, pipeline=None, window=None)\n"
"--\n\n"
"Iterate over (which, text) for each message number in which, in order:\n"
"the reply to TOP which howmuch -- the message's headers, the blank line\n"
"and the first howmuch lines of its body -- as fetch() returns a message\n"
"(dot-unstuffed, every line ending in CRLF).  Pipelined as fetch_many():\n"
"several TOP commands in flight when the server pipelines (or\n"
"pipeline=True), window of them if given, else the adaptive window.\n"
"Nothing is deleted.  On -ERR the responses in flight are drained and\n"
"error_proto is raised with the message number as its `which`\n"
"attribute.  Until the iterator is exhausted or closed, other commands\n"
"on the connection, and reads of its file, raise RuntimeError.");

static PyObject *
pop3_top_many(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    static const char *const names[] = {"which", "howmuch", "pipeline",
                                        "window", NULL};
    static const cpoplib_argspec spec = {"top_many", names, 0, 2, 2};
    PyObject *argv[4];

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, argv) < 0) {
        return NULL;
    }
    return cpoplib_top_many_impl(self, argv[0], argv[1], argv[2], argv[3]);
}

PyDoc_STRVAR(pop3_dele_many_doc,
"dele_many($self, /, which)\n--\n\n"
"Mark each message number in which for deletion (DELE; the server\n"
"deletes at quit()), pipelined in one write per window when the server\n"
"pipelines.  Returns the list of responses.  On -ERR the responses in\n"
"flight are read, nothing more is sent, and error_proto is raised with\n"
"the message number as its `which` attribute (the DELEs before it\n"
"stand).");

static PyObject *
pop3_dele_many(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    static const char *const names[] = {"which", NULL};
    static const cpoplib_argspec spec = {"dele_many", names, 0, 1, 1};
    PyObject *which, *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &which) < 0
        || cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_dele_many_impl(self, which);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_list_many_doc,
"list_many($self, /, which)\n--\n\n"
"{number: size in octets} for each message number in which, from LIST\n"
"n, pipelined as dele_many() is.  On -ERR (no such message) the\n"
"responses in flight are read and error_proto is raised with the\n"
"message number as its `which` attribute; a reply for another message\n"
"than the one asked is error_proto too.");

static PyObject *
pop3_list_many(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    static const char *const names[] = {"which", NULL};
    static const cpoplib_argspec spec = {"list_many", names, 0, 1, 1};
    PyObject *which, *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &which) < 0
        || cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_list_many_impl(self, which);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_stat_and_uidl_map_doc,
"stat_and_uidl_map($self, /)\n--\n\n"
"(stat(), uidl_map()) from one round trip: STAT and UIDL in one write\n"
"when the server pipelines.  The second is None when the server answers\n"
"UIDL with -ERR (it has no unique ids).  With listing_maps(), the way\n"
"to learn what is new in a big mailbox without the sizes of all of it.");

static PyObject *
pop3_stat_and_uidl_map(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *res;

    if (cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_stat_and_uidl_map_impl(self);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_listing_maps_doc,
"listing_maps($self, /)\n--\n\n"
"(list_map(), uidl_map()) from one round trip: LIST and UIDL in one\n"
"write when the server pipelines.  The second is None when the server\n"
"answers UIDL with -ERR (it has no unique ids).");

static PyObject *
pop3_listing_maps(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *res;

    if (cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_listing_maps_impl(self);
    cpoplib_release(self);
    return res;
}

/* uidl_map() and list_map() */
static PyObject *
listing_map(POP3Object *self, PyObject *command, int numeric)
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
    return listing_map(self, cpoplib_pop3_state(self)->cmd_uidl, 0);
}

PyDoc_STRVAR(pop3_list_map_doc,
"list_map($self, /)\n--\n\n"
"{message number: size in octets} from one LIST.");

static PyObject *
pop3_list_map(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return listing_map(self, cpoplib_pop3_state(self)->cmd_list, 1);
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
    res = cpoplib_quit_impl(self);
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
    return cpoplib_getstate_impl(self);
}

PyDoc_STRVAR(pop3_auth_doc,
"auth($self, /, mechanism, authobject=None, initial_response=None)\n--\n\n"
"Authenticate with AUTH (RFC 5034), as CPython main's poplib does.\n"
"\n"
"With initial_response (bytes, or str encoded with self.encoding) it is\n"
"sent base64-encoded on the AUTH line.  With authobject, a callable\n"
"taking each decoded server challenge (bytes) and returning the response\n"
"(bytes, str or None for an empty one; b'*' cancels).  The two are\n"
"mutually exclusive (ValueError).  Returns the final +OK response;\n"
"raises error_proto on -ERR.  For the built-in mechanisms use login().");

static PyObject *
pop3_auth(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"mechanism", "authobject",
                                        "initial_response", NULL};
    static const cpoplib_argspec spec = {"auth", names, 0, 1, 3};
    PyObject *argv[3], *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, argv) < 0
        || cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_auth_impl(self, argv[0], argv[1] ? argv[1] : Py_None,
                            argv[2] ? argv[2] : Py_None);
    cpoplib_release(self);
    return res;
}

PyDoc_STRVAR(pop3_login_doc,
"login($self, /, user, password=None, *, mechanism=None, token=None,\n"
"      allow_plaintext=False)\n--\n\n"
"Log in with the strongest mechanism the server offers.\n"
"\n"
"With a password, from CAPA's SASL list: SCRAM-SHA-256, SCRAM-SHA-1,\n"
"CRAM-MD5, then APOP (if the greeting has a timestamp), then PLAIN,\n"
"LOGIN or USER/PASS.  With token= (an OAuth 2.0 access token, or a\n"
"callable returning one): OAUTHBEARER if offered, else XOAUTH2.\n"
"With neither, over TLS: EXTERNAL (RFC 4422), the client certificate\n"
"of the TLS context being the credential and user the authorization\n"
"identity ('' for the certificate's own).\n"
"mechanism= names one of those instead.  A password or token is never\n"
"sent in the clear over an unencrypted connection unless\n"
"allow_plaintext=True.  Returns the final +OK response; error_proto on\n"
"failure.  A SCRAM server that cannot prove it knows the password is\n"
"refused and the connection closed.");

static PyObject *
pop3_login(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    static const char *const names[] = {"user", "password", "mechanism",
                                        "token", "allow_plaintext", NULL};
    static const cpoplib_argspec spec = {"login", names, 0, 1, 2};
    PyObject *argv[5], *res;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, argv) < 0
        || cpoplib_claim(self) < 0) {
        return NULL;
    }
    res = cpoplib_login_impl(self, argv[0], argv[1] ? argv[1] : Py_None,
                             argv[2] ? argv[2] : Py_None,
                             argv[3] ? argv[3] : Py_None,
                             argv[4] ? argv[4] : Py_False);
    cpoplib_release(self);
    return res;
}

#define FAST(fn) ((PyCFunction)(void (*)(void))(fn))
#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef pop3_methods[] = {
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
    {"top_many", FAST(pop3_top_many), FASTKW, pop3_top_many_doc},
    {"dele_many", FAST(pop3_dele_many), FASTKW, pop3_dele_many_doc},
    {"listing_maps", (PyCFunction)pop3_listing_maps, METH_NOARGS,
     pop3_listing_maps_doc},
    {"stat_and_uidl_map", (PyCFunction)pop3_stat_and_uidl_map, METH_NOARGS,
     pop3_stat_and_uidl_map_doc},
    {"list_many", FAST(pop3_list_many), FASTKW, pop3_list_many_doc},
    {"uidl_map", (PyCFunction)pop3_uidl_map, METH_NOARGS, pop3_uidl_map_doc},
    {"list_map", (PyCFunction)pop3_list_map, METH_NOARGS, pop3_list_map_doc},
    {"__getstate__", (PyCFunction)pop3_getstate, METH_NOARGS,
     pop3_getstate_doc},
    {"auth", FAST(pop3_auth), FASTKW, pop3_auth_doc},
    {"login", FAST(pop3_login), FASTKW, pop3_login_doc},
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

static PyMethodDef pop3_ssl_methods[] = {
    {"_create_socket", FAST(pop3_ssl_create_socket), FASTKW,
     pop3_ssl_create_socket_doc},
    {"stls", FAST(pop3_ssl_stls), FASTKW, pop3_ssl_stls_doc},
    {NULL, NULL}
};

/* ---- the type specs (their life-cycle slots are in connection.c) ---- */

static PyMemberDef pop3_members[] = {
    {"__dictoffset__", CPOPLIB_T_PYSSIZET, offsetof(POP3Object, dict),
     CPOPLIB_READONLY, NULL},
    {"__weaklistoffset__", CPOPLIB_T_PYSSIZET,
     offsetof(POP3Object, weakreflist), CPOPLIB_READONLY, NULL},
    {NULL}
};

static PyGetSetDef pop3_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL}
};

static PyType_Slot pop3_slots[] = {
    {Py_tp_doc, (void *)pop3_doc},
    {Py_tp_new, cpoplib_pop3_new},
    {Py_tp_init, pop3_tp_init},
    {Py_tp_dealloc, cpoplib_pop3_dealloc},
    {Py_tp_traverse, cpoplib_pop3_traverse},
    {Py_tp_clear, cpoplib_pop3_clear},
    {Py_tp_methods, pop3_methods},
    {Py_tp_members, pop3_members},
    {Py_tp_getset, pop3_getset},
    {0, NULL}
};

PyType_Spec cpoplib_pop3_spec = {
    .name = "cpoplib._cpoplib.POP3",
    .basicsize = sizeof(POP3Object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = pop3_slots,
};

static PyType_Slot pop3_ssl_slots[] = {
    {Py_tp_doc, (void *)pop3_ssl_doc},
    {Py_tp_init, pop3_ssl_tp_init},
    {Py_tp_dealloc, cpoplib_pop3_dealloc},
    {Py_tp_traverse, cpoplib_pop3_traverse},
    {Py_tp_clear, cpoplib_pop3_clear},
    {Py_tp_methods, pop3_ssl_methods},
    {0, NULL}
};

PyType_Spec cpoplib_pop3_ssl_spec = {
    .name = "cpoplib._cpoplib.POP3_SSL",
    .basicsize = sizeof(POP3Object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = pop3_ssl_slots,
};

/* ---- _cpoplib._sasl_exchange(): sasl.c on its own, for tests ---- */

static const char *
status_name(sasl_status status)
{
    switch (status) {
    case SASL_CONTINUE: return "continue";
    case SASL_FAILED_RESPOND: return "failed-respond";
    case SASL_FAILED_CANCEL: return "failed-cancel";
    case SASL_FAILED_UNTRUSTED: return "failed-untrusted";
    case SASL_ERR_NOMEM: return "nomem";
    case SASL_ERR_CRYPTO: return "crypto";
    default: return "input";
    }
}

const char cpoplib_sasl_exchange_doc[] = PyDoc_STR(
"_sasl_exchange($module, /, mechanism, user, secret, challenges,\n"
"               nonce=None)\n--\n\n"
"Test hook: run sasl.c's client for mechanism with user and secret\n"
"(bytes, used as they are) against decoded server challenges (a list of\n"
"bytes), with a fixed SCRAM client nonce if given.  Returns\n"
"(initial response or None, [(status, response or None, error), ...],\n"
"complete); stops at the first status other than 'continue'.");

PyObject *
cpoplib_sasl_exchange(PyObject *module, PyObject *const *args,
                      Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"mechanism", "user", "secret",
                                        "challenges", "nonce", NULL};
    static const cpoplib_argspec spec = {"_sasl_exchange", names, 0, 4, 5};
    PyObject *argv[5], *steps = NULL, *initial = NULL, *result = NULL;
    PyObject *seq = NULL;
    const char *name;
    Py_ssize_t name_len;
    sasl_client *c = NULL;
    sasl_credentials cred;
    sasl_status status;
    const unsigned char *out;
    size_t out_len;
    char error[512];
    int mech, has;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, argv) < 0) {
        return NULL;
    }
    if (!PyUnicode_Check(argv[0]) || !PyBytes_Check(argv[1])
        || !PyBytes_Check(argv[2])
        || (argv[4] != NULL && argv[4] != Py_None
            && !PyBytes_Check(argv[4]))) {
        PyErr_SetString(PyExc_TypeError, "_sasl_exchange(str, bytes, bytes, "
                        "list of bytes, bytes or None)");
        return NULL;
    }
    name = PyUnicode_AsUTF8AndSize(argv[0], &name_len);
    if (name == NULL) {
        return NULL;
    }
    mech = sasl_mech_from_name(name, (size_t)name_len);
    if (mech < 0) {
        PyErr_Format(PyExc_ValueError, "unknown mechanism %R", argv[0]);
        return NULL;
    }
    seq = PySequence_Fast(argv[3], "challenges must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    cred.user = PyBytes_AS_STRING(argv[1]);
    cred.user_len = (size_t)PyBytes_GET_SIZE(argv[1]);
    cred.secret = PyBytes_AS_STRING(argv[2]);
    cred.secret_len = (size_t)PyBytes_GET_SIZE(argv[2]);
    if (argv[4] != NULL && argv[4] != Py_None) {
        c = sasl_client_new((sasl_mech)mech, &cred,
                            PyBytes_AS_STRING(argv[4]),
                            (size_t)PyBytes_GET_SIZE(argv[4]), &status,
                            error, sizeof(error));
    }
    else {
        c = sasl_client_new((sasl_mech)mech, &cred, NULL, 0, &status, error,
                            sizeof(error));
    }
    if (c == NULL) {
        PyErr_Format(PyExc_ValueError, "%s: %s", status_name(status), error);
        goto done;
    }
    has = sasl_client_initial(c, &out, &out_len);
    if (has < 0) {
        PyErr_NoMemory();
        goto done;
    }
    initial = has ? PyBytes_FromStringAndSize((const char *)out,
                                              (Py_ssize_t)out_len)
                  : Py_NewRef(Py_None);
    steps = PyList_New(0);
    if (initial == NULL || steps == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *ch = PySequence_Fast_GET_ITEM(seq, i), *resp, *item;
        if (!PyBytes_Check(ch)) {
            PyErr_SetString(PyExc_TypeError, "challenges must be bytes");
            goto done;
        }
        status = sasl_client_step(c,
                                  (const unsigned char *)PyBytes_AS_STRING(ch),
                                  (size_t)PyBytes_GET_SIZE(ch), &out,
                                  &out_len);
        if (status == SASL_CONTINUE || status == SASL_FAILED_RESPOND) {
            resp = PyBytes_FromStringAndSize((const char *)out,
                                             (Py_ssize_t)out_len);
        }
        else {
            resp = Py_NewRef(Py_None);
        }
        if (resp == NULL) {
            goto done;
        }
        item = Py_BuildValue("(sNs)", status_name(status), resp,
                             sasl_client_error(c));
        if (item == NULL || PyList_Append(steps, item) < 0) {
            Py_XDECREF(item);
            goto done;
        }
        Py_DECREF(item);
        if (status != SASL_CONTINUE) {
            break;
        }
    }
    result = Py_BuildValue("(OOO)", initial, steps,
                           sasl_client_complete(c) ? Py_True : Py_False);

done:
    sasl_client_free(c);
    Py_XDECREF(seq);
    Py_XDECREF(initial);
    Py_XDECREF(steps);
    return result;
}
