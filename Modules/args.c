/* args.c -- the one argument parser of the C core.
 *
 * Every C method of the extension (the POP3 methods, the reader's file
 * methods, the module's functions) parses its arguments with
 * cpoplib_parse_args() from a cpoplib_argspec, in the manner of CPython's
 * Argument Clinic: positional-only, positional-or-keyword and keyword-only
 * parameters, the wording of CPython's own TypeErrors.  tp_init-style
 * calls go through cpoplib_parse_tuple().
 *
 * May call: nothing of cpoplib.  Runs no Python code (key comparisons
 * are of exact str objects).
 */
#include "cpoplib.h"

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
