/* connection.h -- shared by connection.c (the POP3 and POP3_SSL types),
 * protocol.c (hook dispatch, sending and receiving) and commands.c (the
 * POP3 commands).  Nothing here is exported from the extension. */
#ifndef CPOPLIB_CONNECTION_H
#define CPOPLIB_CONNECTION_H

#include "cpoplib.h"

typedef struct {
    PyObject_HEAD
    PyObject *dict;
    PyObject *weakreflist;
    PyObject *module;          /* owner of the state; strong */
} POP3Object;

static inline cpoplib_state *
pop3_state(POP3Object *self)
{
    return PyModule_GetState(self->module);
}

#define DEBUG_ON 1      /* `if self._debugging:` */
#define DEBUG_WIRE 2    /* `if self._debugging > 1:` */

/* ---- connection.c ---- */

PyObject *get_attr(POP3Object *self, PyObject *name);
int set_attr(POP3Object *self, PyObject *name, PyObject *value);
void replace_error(cpoplib_state *st, const char *msg);
int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames, const char *const *names, Py_ssize_t min,
               Py_ssize_t max, PyObject **out);
PyObject *one_arg(const char *fname, const char *argname,
                  PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames);
int optional_arg(const char *fname, const char *argname,
                 PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                 PyObject **arg);
PyObject *format_command(const char *fmt, PyObject *args);
PyObject *format_command2(const char *fmt, PyObject *a, PyObject *b);
PyObject *encode_text(PyObject *text, PyObject *encoding);
int debug_flags(POP3Object *self, cpoplib_state *st);
int debug_print(const char *tag, PyObject *obj);
PyObject *make_file(cpoplib_state *st, PyObject *sock);
PyObject *create_stdlib_context(cpoplib_state *st, PyObject *kwargs);
PyObject *wrap_socket(cpoplib_state *st, PyObject *context, PyObject *sock,
                      PyObject *host);
PyObject *close_impl(POP3Object *self, cpoplib_state *st);

/* ---- protocol.c ---- */

/* The C implementations of poplib's hooks (self._putline() etc. when not
 * overridden). */
PyObject *putline_impl(POP3Object *self, cpoplib_state *st, PyObject *line);
PyObject *putcmd_impl(POP3Object *self, cpoplib_state *st, PyObject *line);
int getline_impl(POP3Object *self, cpoplib_state *st, PyObject **line,
                 PyObject **octets);
PyObject *getresp_impl(POP3Object *self, cpoplib_state *st);
PyObject *getlongresp_impl(POP3Object *self, cpoplib_state *st);
PyObject *shortcmd_impl(POP3Object *self, cpoplib_state *st, PyObject *line);
PyObject *longcmd_impl(POP3Object *self, cpoplib_state *st, PyObject *line);
int is_reader(cpoplib_state *st, PyObject *file);

/* self._shortcmd(line) etc.: the override if there is one, else C */
PyObject *do_putline(POP3Object *self, cpoplib_state *st, PyObject *line);
PyObject *do_putcmd(POP3Object *self, cpoplib_state *st, PyObject *line);
PyObject *do_shortcmd(POP3Object *self, cpoplib_state *st, PyObject *line);
PyObject *do_longcmd(POP3Object *self, cpoplib_state *st, PyObject *line);
PyObject *do_getresp(POP3Object *self, cpoplib_state *st);
PyObject *do_getlongresp(POP3Object *self, cpoplib_state *st);
PyObject *do_capa(POP3Object *self, cpoplib_state *st);
PyObject *do_close(POP3Object *self, cpoplib_state *st);
PyObject *run_command(POP3Object *self, PyObject *line, int longcmd);
PyObject *simple_shortcmd(POP3Object *self, const char *command);
PyObject *formatted_cmd(POP3Object *self, const char *fmt, PyObject *arg,
                        int longcmd);

/* ---- commands.c ---- */

PyObject *capa_impl(POP3Object *self, cpoplib_state *st);

#define CPOPLIB_NOARGS_METHOD(name) \
    PyObject *name(POP3Object *self, PyObject *ignored)
#define CPOPLIB_FASTKW_METHOD(name) \
    PyObject *name(POP3Object *self, PyObject *const *args, \
                   Py_ssize_t nargs, PyObject *kwnames)

CPOPLIB_NOARGS_METHOD(pop3_stat);
CPOPLIB_NOARGS_METHOD(pop3_capa);
CPOPLIB_NOARGS_METHOD(pop3_getwelcome);
CPOPLIB_NOARGS_METHOD(pop3_noop);
CPOPLIB_NOARGS_METHOD(pop3_rset);
CPOPLIB_NOARGS_METHOD(pop3_utf8);
CPOPLIB_NOARGS_METHOD(pop3_quit);
CPOPLIB_FASTKW_METHOD(pop3_apop);
CPOPLIB_FASTKW_METHOD(pop3_stls);
CPOPLIB_FASTKW_METHOD(pop3_set_debuglevel);
CPOPLIB_FASTKW_METHOD(pop3_user);
CPOPLIB_FASTKW_METHOD(pop3_pass_);
CPOPLIB_FASTKW_METHOD(pop3_dele);
CPOPLIB_FASTKW_METHOD(pop3_rpop);
CPOPLIB_FASTKW_METHOD(pop3_retr);
CPOPLIB_FASTKW_METHOD(pop3_list);
CPOPLIB_FASTKW_METHOD(pop3_uidl);
CPOPLIB_FASTKW_METHOD(pop3_top);

#endif /* CPOPLIB_CONNECTION_H */
