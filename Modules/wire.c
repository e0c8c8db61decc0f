/* wire.c -- what goes on the wire and what comes back means, apart from
 * any connection: a command line encoded and checked, a listing line
 * added to a map, LIST n's reply, STAT's fields, CAPA's lines, the APOP
 * digest of a greeting, fetch_many()'s window and sizes arguments.  The
 * blocking client (protocol.c, commands.c, retrieval.c, pipeline.c) and
 * the sans-IO side that the asyncio client drives (engine.c) call
 * these, so both send the same bytes and read replies the same way.
 *
 * May call: errors.c, pop3_parser.c.  Python code it runs: the codec of
 * an encoding, str.split() and bytes.decode() of CAPA lines, int() of
 * STAT's fields and of the number LIST n asked for, a custom timestamp
 * pattern, the sizes mapping, the response classifier (through
 * errors.c).
 */
#include "cpoplib.h"

#include <openssl/err.h>
#include <openssl/evp.h>

#include "window.h"

/* ---- command lines ---- */

PyObject *
cpoplib_encode_text(PyObject *text, PyObject *encoding)
{
    if (PyUnicode_Check(text) && PyUnicode_Check(encoding)) {
        const char *enc = PyUnicode_AsUTF8(encoding);
        if (enc == NULL) {
            return NULL;
        }
        return PyUnicode_AsEncodedString(text, enc, NULL);
    }
    return PyObject_CallFunctionObjArgs((PyObject *)&PyBytes_Type, text,
                                        encoding, NULL);
}

PyObject *
cpoplib_encode_command(PyObject *line, PyObject *encoding)
{
    PyObject *encoded = cpoplib_encode_text(line, encoding);

    if (encoded == NULL) {
        return NULL;
    }
    if (!PyBytes_Check(encoded)) {
        PyErr_Format(PyExc_TypeError, "encoding a command gave %.200s, not "
                     "bytes", Py_TYPE(encoded)->tp_name);
        Py_DECREF(encoded);
        return NULL;
    }
    /* CVE-2025-15367 (CPython gh-143923): no CR, LF or other control
       characters, so a command can never smuggle a second one. */
    if (pop3_find_control(PyBytes_AS_STRING(encoded),
                          (size_t)PyBytes_GET_SIZE(encoded))
        != (size_t)PyBytes_GET_SIZE(encoded)) {
        Py_DECREF(encoded);
        PyErr_SetString(PyExc_ValueError,
                        "Control characters not allowed in commands");
        return NULL;
    }
    return encoded;
}

/* ---- listings ---- */

int
cpoplib_listing_line(cpoplib_state *st, PyObject *map, PyObject *command,
                     const char *p, Py_ssize_t n, int numeric)
{
    PyObject *key = NULL, *value = NULL, *line, *msg;
    size_t start = 0, end = 0;
    long long num = 0, second = 0;
    int rc = -1;

    if (!pop3_parse_listing(p, (size_t)n, numeric, &num, &second, &start,
                            &end)) {
        line = PyBytes_FromStringAndSize(p, n);
        if (line == NULL) {
            return -1;
        }
        msg = PyUnicode_FromFormat("malformed %U line: %R", command, line);
        Py_DECREF(line);
        if (msg != NULL) {
            cpoplib_error_obj(st, msg);
            Py_DECREF(msg);
        }
        return -1;
    }
    key = PyLong_FromLongLong(num);
    value = numeric ? PyLong_FromLongLong(second)
                    : PyBytes_FromStringAndSize(p + start,
                                                (Py_ssize_t)(end - start));
    if (key != NULL && value != NULL) {
        rc = PyDict_SetItem(map, key, value);
    }
    Py_XDECREF(key);
    Py_XDECREF(value);
    return rc;
}

/* ---- LIST n ---- */

PyObject *
cpoplib_scan_listing(cpoplib_state *st, PyObject *number, PyObject *resp)
{
    PyObject *asked = NULL, *key = NULL, *value = NULL, *msg = NULL;
    PyObject *pair = NULL;
    long long num = 0, octets = 0;
    size_t start = 0, end = 0;
    int same;

    if (!PyBytes_Check(resp)) {
        PyErr_Format(PyExc_TypeError, "LIST response is %.200s, not bytes",
                     Py_TYPE(resp)->tp_name);
        return NULL;
    }
    if (PyBytes_GET_SIZE(resp) < 4
        || memcmp(PyBytes_AS_STRING(resp), "+OK ", 4) != 0
        || !pop3_parse_listing(PyBytes_AS_STRING(resp) + 4,
                               (size_t)PyBytes_GET_SIZE(resp) - 4, 1,
                               &num, &octets, &start, &end)) {
        msg = PyUnicode_FromFormat("malformed LIST response: %R", resp);
        goto error;
    }
    asked = PyNumber_Long(number);
    key = asked == NULL ? NULL : PyLong_FromLongLong(num);
    if (key == NULL) {
        goto done;
    }
    same = PyObject_RichCompareBool(asked, key, Py_EQ);
    if (same < 0) {
        goto done;
    }
    if (!same) {
        msg = PyUnicode_FromFormat("LIST %S answered for another message: "
                                   "%R", number, resp);
        goto error;
    }
    value = PyLong_FromLongLong(octets);
    if (value != NULL) {
        pair = PyTuple_Pack(2, key, value);
    }
    goto done;

error:
    if (msg != NULL) {
        cpoplib_error_obj(st, msg);
        Py_DECREF(msg);
    }

done:
    Py_XDECREF(asked);
    Py_XDECREF(key);
    Py_XDECREF(value);
    return pair;
}

/* ---- STAT ---- */

PyObject *
cpoplib_stat_result(cpoplib_state *st, PyObject *fields)
{
    PyObject *count = NULL, *size = NULL, *result = NULL;
    Py_ssize_t n;

    /* As CPython main validates it: error_proto, never IndexError or
       ValueError, for a malformed +OK reply. */
    n = PyObject_Length(fields);
    if (n < 0) {
        return NULL;
    }
    if (n < 3) {
        cpoplib_error(st, "Invalid STAT response format");
        return NULL;
    }
    for (Py_ssize_t i = 1; i <= 2; i++) {
        PyObject *field = PySequence_GetItem(fields, i);
        PyObject *value = field ? PyNumber_Long(field) : NULL;
        Py_XDECREF(field);
        if (value == NULL) {
            if (field != NULL && PyErr_ExceptionMatches(PyExc_ValueError)) {
                cpoplib_replace_error(st, "Invalid STAT response data: "
                                  "non-numeric values");
            }
            goto done;
        }
        if (i == 1) {
            count = value;
        }
        else {
            size = value;
        }
    }
    result = PyTuple_Pack(2, count, size);

done:
    Py_XDECREF(count);
    Py_XDECREF(size);
    return result;
}

/* ---- CAPA ---- */

/* One capability line into caps: caps[name] = [args...], as poplib's
 * `capa()` splits it.  Runs Python code (decode, split). */
static int
add_capability(cpoplib_state *st, PyObject *caps, PyObject *capline)
{
    PyObject *text = NULL, *words = NULL, *name = NULL, *args = NULL;
    int rc = -1;

    text = PyObject_CallMethodOneArg(capline, st->str_decode, st->str_ascii);
    if (text == NULL) {
        goto done;
    }
    words = PyObject_CallMethodNoArgs(text, st->str_split);
    if (words == NULL) {
        goto done;
    }
    name = PySequence_GetItem(words, 0);
    if (name == NULL) {
        goto done;
    }
    args = PySequence_GetSlice(words, 1, PY_SSIZE_T_MAX);
    if (args == NULL) {
        goto done;
    }
    rc = PyObject_SetItem(caps, name, args);

done:
    Py_XDECREF(text);
    Py_XDECREF(words);
    Py_XDECREF(name);
    Py_XDECREF(args);
    return rc;
}

PyObject *
cpoplib_capa_from_lines(cpoplib_state *st, PyObject *rawcaps)
{
    PyObject *caps, *it, *capline;

    caps = PyDict_New();
    if (caps == NULL) {
        return NULL;
    }
    it = PyObject_GetIter(rawcaps);
    if (it == NULL) {
        Py_DECREF(caps);
        return NULL;
    }
    while ((capline = PyIter_Next(it)) != NULL) {
        int rc = add_capability(st, caps, capline);
        Py_DECREF(capline);
        if (rc < 0) {
            break;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        Py_DECREF(caps);
        return NULL;
    }
    return caps;
}

/* ---- APOP ---- */

/* MD5 of data as 32 lowercase hex digits plus NUL, with OpenSSL's EVP
 * API.  Returns 0, or -1 with an exception set. */
static int
md5_hex(const char *data, size_t len, char out[33])
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

/* timestamp + secret: the group of the default pattern matched in C in
 * linear time, or pattern.match(welcome).group(1) + secret for a
 * subclass's own pattern, as poplib does. */
static PyObject *
apop_joined(cpoplib_state *st, PyObject *welcome, PyObject *pattern,
            PyObject *secret)
{
    PyObject *match, *one, *group, *joined;
    int found;

    if (pattern == st->timestamp_re && PyBytes_Check(welcome)
        && PyBytes_Check(secret)) {
        size_t start, len;
        Py_ssize_t slen = PyBytes_GET_SIZE(secret);

        if (!pop3_apop_timestamp(PyBytes_AS_STRING(welcome),
                                 (size_t)PyBytes_GET_SIZE(welcome),
                                 &start, &len)) {
            cpoplib_error(st, "-ERR APOP not supported by server");
            return NULL;
        }
        joined = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len + slen);
        if (joined == NULL) {
            return NULL;
        }
        memcpy(PyBytes_AS_STRING(joined),
               PyBytes_AS_STRING(welcome) + start, len);
        memcpy(PyBytes_AS_STRING(joined) + len, PyBytes_AS_STRING(secret),
               (size_t)slen);
        return joined;
    }
    match = PyObject_CallMethodOneArg(pattern, st->str_match, welcome);
    if (match == NULL) {
        return NULL;
    }
    found = PyObject_IsTrue(match);
    if (found <= 0) {
        Py_DECREF(match);
        if (found == 0) {
            cpoplib_error(st, "-ERR APOP not supported by server");
        }
        return NULL;
    }
    one = PyLong_FromLong(1);
    if (one == NULL) {
        Py_DECREF(match);
        return NULL;
    }
    group = PyObject_CallMethodOneArg(match, st->str_group, one);
    Py_DECREF(one);
    Py_DECREF(match);
    if (group == NULL) {
        return NULL;
    }
    joined = PyNumber_Add(group, secret);
    Py_DECREF(group);
    return joined;
}

PyObject *
cpoplib_apop_digest(cpoplib_state *st, PyObject *welcome, PyObject *pattern,
                    PyObject *secret)
{
    PyObject *joined = apop_joined(st, welcome, pattern, secret);
    PyObject *result = NULL;
    Py_buffer view;
    char hex[33];
    int rc;

    if (joined == NULL) {
        return NULL;
    }
    if (PyObject_GetBuffer(joined, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(joined);
        return NULL;
    }
    rc = md5_hex(view.buf, (size_t)view.len, hex);
    PyBuffer_Release(&view);
    Py_DECREF(joined);
    if (rc == 0) {
        result = PyUnicode_FromStringAndSize(hex, 32);
    }
    return result;
}

/* ---- fetch_many()'s arguments ---- */

int
cpoplib_window_arg(PyObject *window, Py_ssize_t *w)
{
    *w = 0;
    if (window == NULL || window == Py_None) {
        return 0;
    }
    *w = PyNumber_AsSsize_t(window, PyExc_OverflowError);
    if (*w == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*w < 1 || *w > POP3_WINDOW_MAX) {
        PyErr_SetString(PyExc_ValueError,
                        "window must be between 1 and 1024");
        return -1;
    }
    return 0;
}

Py_ssize_t
cpoplib_known_size(PyObject *sizes, PyObject *key)
{
    PyObject *value = PyObject_GetItem(sizes, key);
    Py_ssize_t size;

    if (value == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_LookupError)) {
            return -1;
        }
        PyErr_Clear();
        return 0;
    }
    size = PyLong_Check(value) ? PyLong_AsSsize_t(value) : 0;
    Py_DECREF(value);
    if (size == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return size < 0 ? 0 : size;
}
