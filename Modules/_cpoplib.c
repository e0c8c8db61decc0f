/* _cpoplib.c -- the module cpoplib._cpoplib: its definition and state,
 * the interned names, the module functions that the package calls, and
 * module exec, which creates every type from its spec.
 *
 * Multi-phase initialisation (PEP 489): every Python object the C code
 * needs (types, error_proto, interned names and command lines, the
 * socket, ssl and base64 modules) lives in the module state, never in C
 * globals, so that each (sub)interpreter has its own.  The state's
 * fields are listed once, in cpoplib.h's X-macros, and exec, traverse and
 * clear all follow those lists.
 *
 * May call: durability.c, engine.c, methods.c, pipeline.c, reader.c,
 * saslobj.c.  Python code
 * it runs: imports (socket, ssl, io, re, base64, builtins, poplib) at
 * exec.
 */
#include "connection.h"
#include "sasl.h"

#include <openssl/crypto.h>

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
intern_strings(cpoplib_state *st)
{
#define INTERN(field, text)                                   \
    st->field = PyUnicode_InternFromString(text);             \
    if (st->field == NULL) {                                  \
        return -1;                                            \
    }
    CPOPLIB_STRINGS(INTERN)
#undef INTERN
    static const char *const hooks[HOOK_COUNT] = {
        [HOOK_PUTLINE] = "_putline", [HOOK_PUTCMD] = "_putcmd",
        [HOOK_GETLINE] = "_getline", [HOOK_GETRESP] = "_getresp",
        [HOOK_GETLONGRESP] = "_getlongresp", [HOOK_SHORTCMD] = "_shortcmd",
        [HOOK_LONGCMD] = "_longcmd", [HOOK_CAPA] = "capa",
        [HOOK_CLOSE] = "close",
    };
    for (int i = 0; i < HOOK_COUNT; i++) {
        st->hook_names[i] = PyUnicode_InternFromString(hooks[i]);
        if (st->hook_names[i] == NULL) {
            return -1;
        }
    }
    return 0;
}

/* The constants of the state: bytes and ints the core compares with. */
static int
make_constants(cpoplib_state *st)
{
    st->bytes_crlf = PyBytes_FromStringAndSize("\r\n", 2);
    st->bytes_cr = PyBytes_FromStringAndSize("\r", 1);
    st->bytes_plus = PyBytes_FromStringAndSize("+", 1);
    st->bytes_dot = PyBytes_FromStringAndSize(".", 1);
    st->bytes_dotdot = PyBytes_FromStringAndSize("..", 2);
    st->bytes_star = PyBytes_FromStringAndSize("*", 1);
    st->int_one = PyLong_FromLong(1);
    if (st->bytes_crlf == NULL || st->bytes_cr == NULL
        || st->bytes_plus == NULL || st->bytes_dot == NULL
        || st->bytes_dotdot == NULL || st->bytes_star == NULL
        || st->int_one == NULL) {
        return -1;
    }
    return 0;
}

/* module.name, or NULL with the error set */
static PyObject *
import_attr(const char *module, const char *name)
{
    PyObject *mod = PyImport_ImportModule(module), *attr;

    if (mod == NULL) {
        return NULL;
    }
    attr = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return attr;
}

/* The modules and objects of the standard library the core uses. */
static int
import_stdlib(cpoplib_state *st)
{
    PyObject *re, *pattern;

    st->socket_module = PyImport_ImportModule("socket");
    if (st->socket_module == NULL) {
        return -1;
    }
    st->socket_type = PyObject_GetAttrString(st->socket_module, "socket");
    if (st->socket_type == NULL) {
        return -1;
    }
    st->socket_makefile = PyObject_GetAttr(st->socket_type,
                                           st->str_makefile);
    st->default_timeout = PyObject_GetAttrString(
        st->socket_module, "_GLOBAL_DEFAULT_TIMEOUT");
    st->shut_rdwr = PyObject_GetAttrString(st->socket_module, "SHUT_RDWR");
    st->base64_module = PyImport_ImportModule("base64");
    st->builtins_module = PyImport_ImportModule("builtins");
    st->unsupported_operation = import_attr("io", "UnsupportedOperation");
    if (st->socket_makefile == NULL || st->default_timeout == NULL
        || st->shut_rdwr == NULL || st->base64_module == NULL
        || st->builtins_module == NULL || st->unsupported_operation == NULL) {
        return -1;
    }
    st->ssl_module = PyImport_ImportModule("ssl");
    if (st->ssl_module == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ImportError)) {
            return -1;
        }
        PyErr_Clear();              /* as poplib: no ssl, no POP3_SSL */
    }
    else {
        st->ssl_socket_type = PyObject_GetAttrString(st->ssl_module,
                                                     "SSLSocket");
        if (st->ssl_socket_type == NULL) {
            return -1;
        }
    }
    re = PyImport_ImportModule("re");
    if (re == NULL) {
        return -1;
    }
    pattern = PyBytes_FromString("\\+OK.[^<]*(<.*>)");
    st->timestamp_re = pattern == NULL ? NULL
        : PyObject_CallMethod(re, "compile", "O", pattern);
    Py_XDECREF(pattern);
    Py_DECREF(re);
    return st->timestamp_re == NULL ? -1 : 0;
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

/* A type from its spec, added to the module under its name. */
static PyTypeObject *
add_type(PyObject *module, PyType_Spec *spec, PyObject *base)
{
    PyTypeObject *type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, spec, base);

    if (type == NULL) {
        return NULL;
    }
    if (PyModule_AddType(module, type) < 0) {
        Py_DECREF(type);
        return NULL;
    }
    return type;
}

/* POP3 (and POP3_SSL when ssl is there), the reader and the iterator;
 * the sans-IO types of the asyncio client. */
static int
create_types(PyObject *module, cpoplib_state *st)
{
    st->Reader_Type = add_type(module, &cpoplib_reader_spec, NULL);
    st->POP3_Type = add_type(module, &cpoplib_pop3_spec, NULL);
    if (st->Reader_Type == NULL || st->POP3_Type == NULL) {
        return -1;
    }
    st->Engine_Type = add_type(module, &cpoplib_engine_spec, NULL);
    st->FetchWindow_Type = add_type(module, &cpoplib_fetch_window_spec,
                                    NULL);
    st->SASLClient_Type = add_type(module, &cpoplib_sasl_client_spec, NULL);
    if (st->Engine_Type == NULL || st->FetchWindow_Type == NULL
        || st->SASLClient_Type == NULL) {
        return -1;
    }
    if (PyObject_SetAttr((PyObject *)st->POP3_Type, st->str_encoding,
                         st->str_utf_8) < 0
        || PyObject_SetAttr((PyObject *)st->POP3_Type, st->str_timestamp,
                            st->timestamp_re) < 0) {
        return -1;
    }
    for (int i = 0; i < HOOK_COUNT; i++) {
        st->hook_defaults[i] = PyObject_GetAttr((PyObject *)st->POP3_Type,
                                                st->hook_names[i]);
        if (st->hook_defaults[i] == NULL) {
            return -1;
        }
    }
    /* not added to the module: made only by fetch_many() */
    st->FetchIter_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &cpoplib_fetch_iter_spec, NULL);
    if (st->FetchIter_Type == NULL) {
        return -1;
    }
    if (st->ssl_module != NULL) {
        st->POP3_SSL_Type = add_type(module, &cpoplib_pop3_ssl_spec,
                                     (PyObject *)st->POP3_Type);
        if (st->POP3_SSL_Type == NULL) {
            return -1;
        }
    }
    return 0;
}

static int
add_constants(PyObject *module, cpoplib_state *st)
{
    PyObject *lf, *version;

    if (PyModule_AddIntConstant(module, "POP3_PORT", 110) < 0
        || PyModule_AddIntConstant(module, "POP3_SSL_PORT", 995) < 0
        || PyModule_AddIntConstant(module, "_MAXLINE", 2048) < 0
        || PyModule_AddObjectRef(module, "MAX_RESPONSE_SIZE", Py_None) < 0
        || PyModule_AddIntConstant(module, "SCRAM_MAX_ITERATIONS",
                                   (long)SASL_SCRAM_MAX_ITERATIONS) < 0
        || PyModule_AddObjectRef(module, "HAVE_SSL",
                                 st->ssl_module != NULL ? Py_True
                                                        : Py_False) < 0
        || PyModule_AddObjectRef(module, "CRLF", st->bytes_crlf) < 0
        || PyModule_AddObjectRef(module, "CR", st->bytes_cr) < 0
        || PyModule_AddObjectRef(module, "error_proto",
                                 st->error_proto) < 0) {
        return -1;
    }
    lf = PyBytes_FromStringAndSize("\n", 1);
    if (lf == NULL || PyModule_AddObject(module, "LF", lf) < 0) {
        Py_XDECREF(lf);
        return -1;
    }
    version = PyUnicode_FromString(OpenSSL_version(OPENSSL_VERSION));
    if (version == NULL
        || PyModule_AddObject(module, "_OPENSSL_VERSION", version) < 0) {
        Py_XDECREF(version);
        return -1;
    }
    return 0;
}

static int
module_exec(PyObject *module)
{
    cpoplib_state *st = PyModule_GetState(module);

    st->namespace = Py_NewRef(PyModule_GetDict(module));
    if (intern_strings(st) < 0 || make_constants(st) < 0
        || import_stdlib(st) < 0) {
        return -1;
    }
    st->error_proto = make_error_proto();
    if (st->error_proto == NULL || create_types(module, st) < 0
        || add_constants(module, st) < 0
        || PyModule_AddFunctions(module, cpoplib_engine_functions) < 0) {
        return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    cpoplib_state *st = PyModule_GetState(module);

#define VISIT(field) Py_VISIT(st->field);
#define VISIT_STRING(field, text) Py_VISIT(st->field);
    CPOPLIB_TYPES(VISIT)
    CPOPLIB_OBJECTS(VISIT)
    CPOPLIB_STRINGS(VISIT_STRING)
#undef VISIT
#undef VISIT_STRING
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
#define CLEAR_STRING(field, text) Py_CLEAR(st->field);
    CPOPLIB_TYPES(CLEAR)
    CPOPLIB_OBJECTS(CLEAR)
    CPOPLIB_STRINGS(CLEAR_STRING)
#undef CLEAR
#undef CLEAR_STRING
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

static PyModuleDef module_def = {
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
    return PyModuleDef_Init(&module_def);
}
