/* settings.c -- the package's run-time settings as the C core reads them:
 * _MAXLINE (and the scanning window a value of it gives),
 * MAX_RESPONSE_SIZE and SCRAM_MAX_ITERATIONS, looked up in the package's
 * globals at each use so that `cpoplib._MAXLINE = N` works as
 * `poplib._MAXLINE = N` does.  The blocking client (protocol.c, auth.c,
 * retrieval.c, pipeline.c) and the sans-IO side (engine.c, saslobj.c)
 * read them through these functions only.
 *
 * May call: nothing of cpoplib.  Python code it runs: `_MAXLINE + 1`
 * and __index__ when _MAXLINE is not an int.
 */
#include "cpoplib.h"

int
cpoplib_current_maxline(cpoplib_state *st, Py_ssize_t *maxline)
{
    PyObject *value = PyDict_GetItemWithError(st->namespace, st->str_maxline);
    PyObject *limit;
    Py_ssize_t n;

    if (value == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_NameError,
                            "name '_MAXLINE' is not defined");
        }
        return -1;
    }
    if (PyLong_CheckExact(value)) {
        n = PyNumber_AsSsize_t(value, PyExc_OverflowError);
        if (n == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (n == PY_SSIZE_T_MAX) {          /* _MAXLINE + 1 overflows */
            PyErr_SetString(PyExc_OverflowError,
                            "cannot fit 'int' into an index-sized integer");
            return -1;
        }
        *maxline = n;
        return 0;
    }
    Py_INCREF(value);
    limit = PyNumber_Add(value, st->int_one);
    Py_DECREF(value);
    if (limit == NULL) {
        return -1;
    }
    if (limit == Py_None) {
        n = PY_SSIZE_T_MAX;                 /* readline(None): no limit */
    }
    else if (!PyIndex_Check(limit)) {
        PyErr_Format(PyExc_TypeError,
                     "argument should be integer or None, not '%.200s'",
                     Py_TYPE(limit)->tp_name);
        Py_DECREF(limit);
        return -1;
    }
    else {
        n = PyNumber_AsSsize_t(limit, PyExc_OverflowError);
    }
    Py_DECREF(limit);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    *maxline = n == PY_SSIZE_T_MIN ? n : n - 1;
    return 0;
}

Py_ssize_t
cpoplib_line_window(Py_ssize_t maxline)
{
    return maxline < 0 || maxline == PY_SSIZE_T_MAX - 1 ? PY_SSIZE_T_MAX
                                                         : maxline + 1;
}

int
cpoplib_current_response_cap(cpoplib_state *st, Py_ssize_t *cap)
{
    PyObject *value = PyDict_GetItemWithError(st->namespace,
                                              st->str_max_response);
    int overflow;
    long long n;

    *cap = -1;
    if (value == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (value == Py_None) {
        return 0;
    }
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError,
                     "MAX_RESPONSE_SIZE must be None or an int, not %.200s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    n = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow < 0 || (overflow == 0 && n < 0)) {
        PyErr_SetString(PyExc_ValueError,
                        "MAX_RESPONSE_SIZE must be None or >= 0");
        return -1;
    }
    /* a cap past what a Py_ssize_t counts is no cap at all */
    *cap = overflow > 0 || n > PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX
                                                : (Py_ssize_t)n;
    return 0;
}

int
cpoplib_within_cap(Py_ssize_t cap, Py_ssize_t *total, Py_ssize_t n)
{
    if (n <= 0) {
        return 1;
    }
    if (cap >= 0 && n > cap - *total) {
        return 0;
    }
    *total = n > PY_SSIZE_T_MAX - *total ? PY_SSIZE_T_MAX : *total + n;
    return 1;
}

int
cpoplib_scram_iteration_cap(cpoplib_state *st, unsigned long *cap)
{
    PyObject *value = PyDict_GetItemWithError(st->namespace,
                                              st->str_scram_max);
    long n;

    if (value == NULL) {
        return PyErr_Occurred() ? -1 : 0;      /* unset: the default */
    }
    if (!PyLong_Check(value) || PyBool_Check(value)) {
        PyErr_Format(PyExc_TypeError,
                     "SCRAM_MAX_ITERATIONS must be an int, not %.200s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    n = PyLong_AsLong(value);
    if (n == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        n = -1;
    }
    if (n < 1 || n > 999999999L) {
        PyErr_SetString(PyExc_ValueError,
                        "SCRAM_MAX_ITERATIONS must be from 1 to 999999999");
        return -1;
    }
    *cap = (unsigned long)n;
    return 0;
}
