/* pop3_parser.c -- the POP3 line parser, body copier and listing-line
 * parser; see pop3_parser.h for the contract.  No Python here.
 *
 * May call: nothing of cpoplib.
 */
#include "pop3_parser.h"

#include <string.h>

void
pop3_strip_line(const char *buf, size_t n, pop3_line *line)
{
    line->raw_len = n;
    line->octets = n;
    line->is_terminator = 0;
    if (n >= 2 && buf[n - 2] == '\r' && buf[n - 1] == '\n') {
        line->start = 0;
        line->len = n - 2;
    }
    else if (n >= 1 && buf[0] == '\r') {
        /* line[1:-1]: empty when the line is the lone CR */
        line->start = 1;
        line->len = n >= 2 ? n - 2 : 0;
    }
    else {
        line->start = 0;
        line->len = n >= 1 ? n - 1 : 0;
    }
}

pop3_status
pop3_scan_line(const char *buf, size_t n, size_t window, int at_eof,
               size_t scanned, size_t *len)
{
    size_t upto = n < window ? n : window;
    const char *lf = NULL;

    if (scanned < upto) {
        lf = memchr(buf + scanned, '\n', upto - scanned);
    }
    if (lf != NULL) {
        *len = (size_t)(lf - buf) + 1;
        return POP3_LINE;
    }
    if (n >= window) {
        return POP3_TOO_LONG;
    }
    if (!at_eof) {
        return POP3_NEED_MORE;
    }
    *len = n;
    return POP3_EOF;
}

pop3_status
pop3_next_line_from(const char *buf, size_t n, size_t limit, int at_eof,
                    size_t scanned, pop3_line *line)
{
    /* readline(limit) stops after `limit` bytes; a line that needs all of
       them (LF included) is longer than _MAXLINE = limit - 1. */
    size_t len = 0;
    pop3_status st = pop3_scan_line(buf, n, limit, at_eof, scanned, &len);

    if (st == POP3_LINE && len == limit) {
        st = POP3_TOO_LONG;
    }
    if (st == POP3_EOF && len > 0) {
        st = POP3_LINE;                /* the unterminated tail */
    }
    if (st == POP3_LINE) {
        pop3_strip_line(buf, len, line);
    }
    return st;
}

pop3_status
pop3_next_line(const char *buf, size_t n, size_t limit, int at_eof,
               pop3_line *line)
{
    return pop3_next_line_from(buf, n, limit, at_eof, 0, line);
}

size_t
pop3_scanned(size_t n, size_t limit)
{
    return n < limit ? n : limit;
}

void
pop3_unstuff(const char *buf, pop3_line *line)
{
    const char *p = buf + line->start;

    if (line->len == 1 && p[0] == '.') {
        line->is_terminator = 1;
    }
    else if (line->len >= 2 && p[0] == '.' && p[1] == '.') {
        line->start += 1;
        line->len -= 1;
        line->octets -= 1;
    }
}

pop3_status
pop3_copy_body(const char *buf, size_t n, size_t limit, int at_eof,
               char *out, size_t room, pop3_copy *res)
{
    size_t scanned = res->scanned;

    res->consumed = res->produced = 0;
    res->octets = 0;
    res->need = 0;
    for (;;) {
        const char *line_start = buf + res->consumed;
        size_t avail = n - res->consumed;
        pop3_line line;
        pop3_status st = pop3_next_line_from(line_start, avail, limit,
                                             at_eof, scanned, &line);

        if (st == POP3_NEED_MORE) {
            res->scanned = pop3_scanned(avail, limit);
            return POP3_NEED_MORE;
        }
        res->scanned = 0;
        if (st != POP3_LINE) {
            return st;               /* POP3_TOO_LONG or POP3_EOF */
        }
        scanned = 0;
        pop3_unstuff(line_start, &line);
        if (line.is_terminator) {
            res->consumed += line.raw_len;
            return POP3_LINE;
        }
        if (room - res->produced < line.len + 2) {
            res->need = line.len + 2;
            return POP3_NEED_ROOM;
        }
        memcpy(out + res->produced, line_start + line.start, line.len);
        memcpy(out + res->produced + line.len, "\r\n", 2);
        res->produced += line.len + 2;
        res->consumed += line.raw_len;
        res->octets += line.octets;
    }
}

/* Spaces and tabs from buf[i]; the index of the first other byte. */
static size_t
skip_blanks(const char *buf, size_t n, size_t i)
{
    while (i < n && (buf[i] == ' ' || buf[i] == '\t')) {
        i++;
    }
    return i;
}

/* A decimal number buf[i..) up to a blank or the end, below 10**18: its
 * end index, or 0 with *value untouched if there is none. */
static size_t
parse_decimal(const char *buf, size_t n, size_t i, long long *value)
{
    long long v = 0;
    size_t digits = 0;

    for (; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) {
        if (++digits > 18) {
            return 0;
        }
        v = v * 10 + (buf[i] - '0');
    }
    if (digits == 0 || (i < n && buf[i] != ' ' && buf[i] != '\t')) {
        return 0;
    }
    *value = v;
    return i;
}

int
pop3_parse_listing(const char *buf, size_t n, int numeric,
                   long long *number, long long *value, size_t *start,
                   size_t *end)
{
    size_t i = parse_decimal(buf, n, skip_blanks(buf, n, 0), number);
    size_t j;

    if (i == 0) {
        return 0;
    }
    i = skip_blanks(buf, n, i);
    for (j = i; j < n && buf[j] != ' ' && buf[j] != '\t'; j++) {
    }
    if (j == i) {
        return 0;
    }
    if (numeric && parse_decimal(buf, j, i, value) != j) {
        return 0;
    }
    *start = i;
    *end = j;
    return 1;
}

size_t
pop3_find_control(const char *buf, size_t n)
{
    const unsigned char *p = (const unsigned char *)buf;
    size_t i;

    for (i = 0; i < n; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f) {
            break;
        }
    }
    return i;
}

int
pop3_apop_timestamp(const char *buf, size_t n, size_t *start, size_t *len)
{
    const char *open, *newline, *close;
    size_t from, to;

    /* "\+OK." -- the dot matches any byte but LF */
    if (n < 4 || memcmp(buf, "+OK", 3) != 0 || buf[3] == '\n') {
        return 0;
    }
    /* "[^<]*<" -- the group can only start at the first '<' */
    open = memchr(buf + 4, '<', n - 4);
    if (open == NULL) {
        return 0;
    }
    from = (size_t)(open - buf);
    /* ".*>" -- greedy up to the last '>' before the next LF */
    newline = memchr(open + 1, '\n', n - from - 1);
    to = newline ? (size_t)(newline - buf) : n;
    close = NULL;
    for (size_t i = to; i > from + 1; i--) {
        if (buf[i - 1] == '>') {
            close = buf + i - 1;
            break;
        }
    }
    if (close == NULL) {
        return 0;
    }
    *start = from;
    *len = (size_t)(close - open) + 1;
    return 1;
}
