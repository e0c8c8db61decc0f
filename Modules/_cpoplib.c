/* _cpoplib.c -- module definition and state of cpoplib._cpoplib, the
 * helpers that raise and chain exceptions, and the APOP digest.
 *
 * Multi-phase initialisation (PEP 489): every Python object the C code
 * needs (types, error_proto, interned names, the socket and ssl modules)
 * lives in the module state, never in C globals.  May call: the type
 * set-up of connection.c (cpoplib_connection_add_types) and reader.c
 * (cpoplib_reader_spec); nothing else.  Python code it calls: the
 * response-code classifier that the cpoplib package registers (which
 * picks error_proto's subclass for a "-ERR [CODE]" reply) and the
 * exception classes' constructors.
 */
#include "cpoplib.h"
#include "sasl.h"

#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>

cpoplib_state *
cpoplib_state_from_type(PyTypeObject *type)
{
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *module = PyType_GetModuleByDef(type, &cpoplib_module_def);
    if (module == NULL) {
        return NULL;
    }
    return PyModule_GetState(module);
#else
    /* PyType_GetModuleByDef() is new in 3.11: walk the MRO by hand. */
    PyObject *mro = type->tp_mro;
    for (Py_ssize_t i = 0; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!PyType_HasFeature(base, Py_TPFLAGS_HEAPTYPE)) {
            continue;
        }
        PyObject *module = ((PyHeapTypeObject *)base)->ht_module;
        if (module != NULL && PyModule_GetDef(module) == &cpoplib_module_def) {
            return PyModule_GetState(module);
        }
    }
    PyErr_Format(PyExc_TypeError,
                 "PyType_GetModuleByDef: No superclass of '%s' has "
                 "the given module", type->tp_name);
    return NULL;
#endif
}

void
cpoplib_error(cpoplib_state *st, const char *msg)
{
    PyObject *text = PyUnicode_FromString(msg);

    if (text != NULL) {
        PyErr_SetObject(st->error_proto, text);
        Py_DECREF(text);
    }
}

/* The class to raise for the failure reply `obj`: error_proto, or the
 * subclass that the response-code classifier (registered by the cpoplib
 * package, see _set_response_classifier) picks for a bytes reply that
 * starts with "-ERR [" (RFC 2449 response codes).  The classifier returns
 * a subclass of error_proto or None (no class for this reply).  A new
 * reference, or NULL with an exception set. */
static PyObject *
error_class_for(cpoplib_state *st, PyObject *obj)
{
    static const char prefix[] = "-ERR [";
    const Py_ssize_t plen = (Py_ssize_t)sizeof(prefix) - 1;
    PyObject *classifier, *cls;

    if (st->response_classifier == NULL || !PyBytes_Check(obj)
        || PyBytes_GET_SIZE(obj) < plen
        || memcmp(PyBytes_AS_STRING(obj), prefix, (size_t)plen) != 0) {
        return Py_NewRef(st->error_proto);
    }
    /* a strong reference: the call may re-register the classifier */
    classifier = Py_NewRef(st->response_classifier);
    cls = PyObject_CallOneArg(classifier, obj);
    Py_DECREF(classifier);
    if (cls == NULL) {
        goto error;
    }
    if (cls == Py_None) {
        Py_SETREF(cls, Py_NewRef(st->error_proto));
    }
    else if (!PyType_Check(cls)
             || !PyType_IsSubtype((PyTypeObject *)cls,
                                  (PyTypeObject *)st->error_proto)) {
        PyErr_Format(PyExc_TypeError,
                     "the response classifier must return a subclass of "
                     "error_proto or None, not %R", cls);
        goto error;
    }
    return cls;

error:
    Py_XDECREF(cls);
    return NULL;
}

void
cpoplib_error_obj(cpoplib_state *st, PyObject *obj)
{
    PyObject *cls, *exc;

    cls = error_class_for(st, obj);
    if (cls == NULL) {
        return;
    }
    exc = PyObject_CallOneArg(cls, obj);
    Py_DECREF(cls);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

#if PY_VERSION_HEX >= 0x030C0000
PyObject *
cpoplib_fetch_exception(void)
{
    return PyErr_GetRaisedException();
}

void
cpoplib_restore_exception(PyObject *exc)
{
    PyErr_SetRaisedException(exc);
}
#else
PyObject *
cpoplib_fetch_exception(void)
{
    PyObject *type, *value, *tb;

    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_DECREF(type);
    Py_XDECREF(tb);
    return value;
}

void
cpoplib_restore_exception(PyObject *exc)
{
    if (exc == NULL) {
        return;
    }
    PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
}
#endif

void
cpoplib_chain_context(PyObject *context)
{
    PyObject *exc;

    if (context == NULL) {
        return;
    }
    exc = cpoplib_fetch_exception();
    if (exc == NULL) {
        cpoplib_restore_exception(context);   /* nothing newer: re-raise */
        return;
    }
    if (exc != context) {
        PyException_SetContext(exc, context);
    }
    else {
        Py_DECREF(context);
    }
    cpoplib_restore_exception(exc);
}

void
cpoplib_replace_error(cpoplib_state *st, const char *msg)
{
    PyObject *cause = cpoplib_fetch_exception();

    cpoplib_error(st, msg);
    cpoplib_chain_context(cause);
}

double
cpoplib_monotonic(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int
cpoplib_md5_hex(const char *data, size_t len, char out[33])
{
    static const char hexdigits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!EVP_Digest(data, len, md, &mdlen, EVP_md5(), NULL) || mdlen != 16) {
        unsigned long code = ERR_get_error();
        char reason[256] = "MD5 digest failed";
        if (code != 0) {
            ERR_error_string_n(code, reason, sizeof(reason));
        }
        ERR_clear_error();
        PyErr_Format(PyExc_ValueError, "APOP needs MD5: %s", reason);
        return -1;
    }
    for (unsigned int i = 0; i < mdlen; i++) {
        out[2 * i] = hexdigits[md[i] >> 4];
        out[2 * i + 1] = hexdigits[md[i] & 0xf];
    }
    out[32] = '\0';
    return 0;
}

PyDoc_STRVAR(bind_namespace_doc,
"_bind_namespace($module, namespace, /)\n--\n\n"
"Read run-time settings such as _MAXLINE from the given dict (the\n"
"cpoplib package's globals).");

static PyObject *
bind_namespace(PyObject *module, PyObject *namespace)
{
    cpoplib_state *st = PyModule_GetState(module);

    if (!PyDict_Check(namespace)) {
        PyErr_SetString(PyExc_TypeError, "namespace must be a dict");
        return NULL;
    }
    Py_XSETREF(st->namespace, Py_NewRef(namespace));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_response_classifier_doc,
"_set_response_classifier($module, classifier, /)\n--\n\n"
"Register classifier(reply) -> subclass of error_proto or None, called\n"
"for a failure reply that starts with b'-ERR [' to pick the class\n"
"raised (RFC 2449 response codes).  None unregisters it.");

static PyObject *
set_response_classifier(PyObject *module, PyObject *classifier)
{
    cpoplib_state *st = PyModule_GetState(module);

    if (classifier != Py_None && !PyCallable_Check(classifier)) {
        PyErr_SetString(PyExc_TypeError,
                        "classifier must be callable or None");
        return NULL;
    }
    Py_XSETREF(st->response_classifier,
               classifier == Py_None ? NULL : Py_NewRef(classifier));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"_bind_namespace", bind_namespace, METH_O, bind_namespace_doc},
    {"_sasl_exchange", (PyCFunction)(void (*)(void))cpoplib_sasl_exchange,
     METH_FASTCALL | METH_KEYWORDS, cpoplib_sasl_exchange_doc},
    {"_set_response_classifier", set_response_classifier, METH_O,
     set_response_classifier_doc},
#ifdef CPOPLIB_HAVE_SYNCFS
    {"_syncfs", cpoplib_syncfs, METH_O, cpoplib_syncfs_doc},
    {"_fs_type", cpoplib_fs_type, METH_O, cpoplib_fs_type_doc},
#endif
    {NULL, NULL}
};

static int
intern_names(cpoplib_state *st)
{
#define INTERN(field, text)                                   \
    do {                                                      \
        st->field = PyUnicode_InternFromString(text);         \
        if (st->field == NULL) {                              \
            return -1;                                        \
        }                                                     \
    } while (0)
    INTERN(str_host, "host");
    INTERN(str_port, "port");
    INTERN(str_sock, "sock");
    INTERN(str_file, "file");
    INTERN(str_welcome, "welcome");
    INTERN(str_debugging, "_debugging");
    INTERN(str_tls_established, "_tls_established");
    INTERN(str_context, "context");
    INTERN(str_encoding, "encoding");
    INTERN(str_timestamp, "timestamp");
    INTERN(str_maxline, "_MAXLINE");
    INTERN(str_max_response, "MAX_RESPONSE_SIZE");
    INTERN(str_create_socket, "_create_socket");
    INTERN(str_create_connection, "create_connection");
    INTERN(str_create_stdlib_context, "_create_stdlib_context");
    INTERN(str_wrap_socket, "wrap_socket");
    INTERN(str_server_hostname, "server_hostname");
    INTERN(str_makefile, "makefile");
    INTERN(str_sendall, "sendall");
    INTERN(str_recv_into, "recv_into");
    INTERN(str_readline, "readline");
    INTERN(str_close, "close");
    INTERN(str_shutdown, "shutdown");
    INTERN(str_match, "match");
    INTERN(str_group, "group");
    INTERN(str_split, "split");
    INTERN(str_decode, "decode");
    INTERN(str_startswith, "startswith");
    INTERN(str_errno, "errno");
    INTERN(str_fileno, "fileno");
    INTERN(str_keyfile, "keyfile");
    INTERN(str_certfile, "certfile");
    INTERN(str_write, "write");
    INTERN(str_settimeout, "settimeout");
    INTERN(str_gettimeout, "gettimeout");
    INTERN(str_scram_max, "SCRAM_MAX_ITERATIONS");
    INTERN(str_io_refs, "_io_refs");
    INTERN(str_decref_socketios, "_decref_socketios");
    INTERN(str_rb, "rb");
    INTERN(str_ascii, "ascii");
    INTERN(str_stls_cap, "STLS");
    INTERN(hook_names[HOOK_PUTLINE], "_putline");
    INTERN(hook_names[HOOK_PUTCMD], "_putcmd");
    INTERN(hook_names[HOOK_GETLINE], "_getline");
    INTERN(hook_names[HOOK_GETRESP], "_getresp");
    INTERN(hook_names[HOOK_GETLONGRESP], "_getlongresp");
    INTERN(hook_names[HOOK_SHORTCMD], "_shortcmd");
    INTERN(hook_names[HOOK_LONGCMD], "_longcmd");
    INTERN(hook_names[HOOK_CAPA], "capa");
    INTERN(hook_names[HOOK_CLOSE], "close");
#undef INTERN
    st->bytes_crlf = PyBytes_FromStringAndSize("\r\n", 2);
    st->bytes_cr = PyBytes_FromStringAndSize("\r", 1);
    st->int_one = PyLong_FromLong(1);
    st->bytes_plus = PyBytes_FromStringAndSize("+", 1);
    st->bytes_dot = PyBytes_FromStringAndSize(".", 1);
    st->bytes_dotdot = PyBytes_FromStringAndSize("..", 2);
    if (st->bytes_crlf == NULL || st->bytes_cr == NULL || st->int_one == NULL
        || st->bytes_plus == NULL
        || st->bytes_dot == NULL || st->bytes_dotdot == NULL) {
        return -1;
    }
    return 0;
}

/* error_proto derives from the standard library's poplib.error_proto, so
 * that code catching poplib.error_proto also catches cpoplib's.  When
 * that class cannot be had (poplib aliased to cpoplib, say), Exception. */
static PyObject *
make_error_proto(void)
{
    PyObject *base = NULL, *poplib, *error;

    poplib = PyImport_ImportModule("poplib");
    if (poplib == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ImportError)) {
            return NULL;
        }
        PyErr_Clear();
    }
    else {
        base = PyObject_GetAttrString(poplib, "error_proto");
        Py_DECREF(poplib);
        if (base == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                return NULL;
            }
            PyErr_Clear();
        }
        else if (!PyType_Check(base)
                 || !PyType_IsSubtype((PyTypeObject *)base,
                                      (PyTypeObject *)PyExc_Exception)) {
            Py_CLEAR(base);
        }
        else {
            /* a class written in Python, from the real poplib module */
            PyObject *modname = PyObject_GetAttrString(base, "__module__");
            if (modname == NULL) {
                Py_DECREF(base);
                return NULL;
            }
            int is_stdlib = PyUnicode_Check(modname)
                && PyUnicode_CompareWithASCIIString(modname, "poplib") == 0;
            Py_DECREF(modname);
            if (!is_stdlib) {
                Py_CLEAR(base);
            }
        }
    }
    error = PyErr_NewExceptionWithDoc(
        "cpoplib._cpoplib.error_proto",
        "Raised when a POP3 server sends an error or an invalid response.\n"
        "A subclass of the standard library's poplib.error_proto.",
        base, NULL);
    Py_XDECREF(base);
    return error;
}

static int
module_exec(PyObject *module)
{
    cpoplib_state *st = PyModule_GetState(module);
    PyObject *re = NULL, *pattern = NULL;
    int have_ssl = 0;

    if (intern_names(st) < 0) {
        goto error;
    }
    st->namespace = Py_NewRef(PyModule_GetDict(module));

    st->socket_module = PyImport_ImportModule("socket");
    if (st->socket_module == NULL) {
        goto error;
    }
    st->socket_type = PyObject_GetAttrString(st->socket_module, "socket");
    if (st->socket_type == NULL) {
        goto error;
    }
    st->socket_makefile = PyObject_GetAttr(st->socket_type,
                                           st->str_makefile);
    if (st->socket_makefile == NULL) {
        goto error;
    }
    st->default_timeout = PyObject_GetAttrString(
        st->socket_module, "_GLOBAL_DEFAULT_TIMEOUT");
    if (st->default_timeout == NULL) {
        goto error;
    }
    st->shut_rdwr = PyObject_GetAttrString(st->socket_module, "SHUT_RDWR");
    if (st->shut_rdwr == NULL) {
        goto error;
    }
    st->ssl_module = PyImport_ImportModule("ssl");
    if (st->ssl_module == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ImportError)) {
            goto error;
        }
        PyErr_Clear();
    }
    have_ssl = st->ssl_module != NULL;

    PyObject *io = PyImport_ImportModule("io");
    if (io == NULL) {
        goto error;
    }
    st->unsupported_operation = PyObject_GetAttrString(io,
                                                       "UnsupportedOperation");
    Py_DECREF(io);
    if (st->unsupported_operation == NULL) {
        goto error;
    }

    re = PyImport_ImportModule("re");
    if (re == NULL) {
        goto error;
    }
    pattern = PyBytes_FromString("\\+OK.[^<]*(<.*>)");
    if (pattern == NULL) {
        goto error;
    }
    st->timestamp_re = PyObject_CallMethod(re, "compile", "O", pattern);
    if (st->timestamp_re == NULL) {
        goto error;
    }

    st->error_proto = make_error_proto();
    if (st->error_proto == NULL) {
        goto error;
    }
    if (PyModule_AddObjectRef(module, "error_proto", st->error_proto) < 0) {
        goto error;
    }

    st->Reader_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &cpoplib_reader_spec, NULL);
    if (st->Reader_Type == NULL) {
        goto error;
    }
    if (PyModule_AddType(module, st->Reader_Type) < 0) {
        goto error;
    }
    if (cpoplib_connection_add_types(module, st) < 0) {
        goto error;
    }

    if (PyModule_AddIntConstant(module, "POP3_PORT", 110) < 0
        || PyModule_AddIntConstant(module, "POP3_SSL_PORT", 995) < 0
        || PyModule_AddIntConstant(module, "_MAXLINE", 2048) < 0
        || PyModule_AddObjectRef(module, "MAX_RESPONSE_SIZE", Py_None) < 0
        || PyModule_AddIntConstant(module, "SCRAM_MAX_ITERATIONS",
                                   (long)SASL_SCRAM_MAX_ITERATIONS) < 0
        || PyModule_AddObjectRef(module, "HAVE_SSL",
                                 have_ssl ? Py_True : Py_False) < 0
        || PyModule_AddObjectRef(module, "CRLF", st->bytes_crlf) < 0) {
        goto error;
    }
    if (PyModule_AddObjectRef(module, "CR", st->bytes_cr) < 0) {
        goto error;
    }
    PyObject *lf = PyBytes_FromStringAndSize("\n", 1);
    if (lf == NULL || PyModule_AddObject(module, "LF", lf) < 0) {
        Py_XDECREF(lf);
        goto error;
    }
    PyObject *version = PyUnicode_FromString(OpenSSL_version(OPENSSL_VERSION));
    if (version == NULL
        || PyModule_AddObject(module, "_OPENSSL_VERSION", version) < 0) {
        Py_XDECREF(version);
        goto error;
    }

    Py_DECREF(re);
    Py_DECREF(pattern);
    return 0;

error:
    Py_XDECREF(re);
    Py_XDECREF(pattern);
    return -1;
}

#define STATE_OBJECTS(X)                                                    \
    X(POP3_Type) X(POP3_SSL_Type) X(Reader_Type) X(FetchIter_Type)          \
    X(error_proto)                                                          \
    X(namespace) X(socket_module) X(socket_type) X(socket_makefile)         \
    X(default_timeout) X(shut_rdwr) X(ssl_module) X(timestamp_re)           \
    X(unsupported_operation) X(response_classifier)                         \
    X(str_host) X(str_port) X(str_sock) X(str_file) X(str_welcome)          \
    X(str_debugging) X(str_tls_established) X(str_context)                  \
    X(str_encoding) X(str_timestamp) X(str_maxline) X(str_max_response)     \
    X(str_create_socket) X(str_create_connection)                           \
    X(str_create_stdlib_context) X(str_wrap_socket)                         \
    X(str_server_hostname) X(str_makefile)                                  \
    X(str_sendall) X(str_recv_into) X(str_readline) X(str_close)            \
    X(str_shutdown) X(str_match) X(str_group) X(str_split) X(str_decode)    \
    X(str_startswith) X(str_errno) X(str_fileno) X(str_keyfile)             \
    X(str_certfile) X(str_write) X(str_settimeout) X(str_gettimeout)   \
    X(str_scram_max) X(str_io_refs) X(str_decref_socketios) X(bytes_crlf) X(bytes_cr) X(int_one) X(bytes_plus) X(bytes_dot)                \
    X(bytes_dotdot) X(str_rb) X(str_ascii) X(str_stls_cap)

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    cpoplib_state *st = PyModule_GetState(module);

#define VISIT(field) Py_VISIT(st->field);
    STATE_OBJECTS(VISIT)
#undef VISIT
    for (int i = 0; i < HOOK_COUNT; i++) {
        Py_VISIT(st->hook_names[i]);
        Py_VISIT(st->hook_defaults[i]);
    }
    return 0;
}

static int
module_clear(PyObject *module)
{
    cpoplib_state *st = PyModule_GetState(module);

#define CLEAR(field) Py_CLEAR(st->field);
    STATE_OBJECTS(CLEAR)
#undef CLEAR
    for (int i = 0; i < HOOK_COUNT; i++) {
        Py_CLEAR(st->hook_names[i]);
        Py_CLEAR(st->hook_defaults[i]);
    }
    return 0;
}

static void
module_free(void *module)
{
    (void)module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL}
};

PyDoc_STRVAR(module_doc,
"C core of cpoplib: POP3 and POP3_SSL, drop-in replacements for the\n"
"classes of the standard library's poplib.");

PyModuleDef cpoplib_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cpoplib._cpoplib",
    .m_doc = module_doc,
    .m_size = sizeof(cpoplib_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__cpoplib(void)
{
    return PyModuleDef_Init(&cpoplib_module_def);
}
