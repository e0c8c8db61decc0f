/* pop3_parser.c -- see pop3_parser.h for the contract.  No Python here. */
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
pop3_next_line_from(const char *buf, size_t n, size_t limit, int at_eof,
                    size_t scanned, pop3_line *line)
{
    /* readline(limit) stops after `limit` bytes; a line that needs all of
       them (LF included) is longer than _MAXLINE = limit - 1. */
    size_t window = n < limit - 1 ? n : limit - 1;
    const char *lf = NULL;

    if (scanned < window) {
        lf = memchr(buf + scanned, '\n', window - scanned);
    }
    if (lf != NULL) {
        pop3_strip_line(buf, (size_t)(lf - buf) + 1, line);
        return POP3_LINE;
    }
    if (n >= limit) {
        return POP3_TOO_LONG;
    }
    if (!at_eof) {
        return POP3_NEED_MORE;
    }
    if (n == 0) {
        return POP3_EOF;
    }
    pop3_strip_line(buf, n, line);
    return POP3_LINE;
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
    return n < limit - 1 ? n : limit - 1;
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
