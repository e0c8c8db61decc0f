/* pop3_parser.h -- the POP3 response line parser of cpoplib.
 *
 * Plain C with no Python dependency, so that it can be unit-tested and
 * fuzzed on its own (see fuzz/).  It knows nothing about sockets: callers
 * hand it the bytes they have buffered and it says where the next line
 * ends, what poplib would return for it and how many octets it counts.
 *
 * The rules are those of the standard library's poplib:
 *
 *   - a line ends at the first LF; a line is "too long" when it reaches
 *     `limit` bytes (limit = _MAXLINE + 1) without ending earlier -- the
 *     same as file.readline(limit) followed by `len(line) > _MAXLINE`;
 *   - at end of stream an unterminated tail is a line of its own;
 *   - a line ending in CRLF loses both; else a line led by CR loses its
 *     first and last byte; else it loses its last byte;
 *   - in a multi-line response the line "." (after stripping) ends the
 *     response, and a line starting with ".." loses its first dot and
 *     one octet.
 */
#ifndef CPOPLIB_POP3_PARSER_H
#define CPOPLIB_POP3_PARSER_H

#include <stddef.h>

typedef enum {
    POP3_NEED_MORE = 0,   /* no complete line yet: read more bytes */
    POP3_LINE = 1,        /* a line was found, see pop3_line */
    POP3_TOO_LONG = 2,    /* `limit` bytes without LF: consume `limit` */
    POP3_EOF = 3,         /* end of stream and nothing buffered */
    POP3_NEED_ROOM = 4    /* pop3_copy_body(): the output is full */
} pop3_status;

typedef struct {
    size_t raw_len;       /* bytes the line occupies in the stream */
    size_t start;         /* payload offset from the start of the line */
    size_t len;           /* payload length after stripping/unstuffing */
    size_t octets;        /* what poplib counts for this line */
    int is_terminator;    /* multi-line mode only: the lone "." line */
} pop3_line;

/* Where the next line of buf[0..n) ends: the first LF within its first
 * `window` bytes (window >= 1).  POP3_LINE: *len is the line's length,
 * LF included (at most window); POP3_TOO_LONG: `window` bytes are there
 * and none is LF; POP3_NEED_MORE: fewer than `window` bytes and no LF,
 * more may come; POP3_EOF (at_eof set, no LF): *len is the unterminated
 * tail, 0 if nothing is left.  buf[0..scanned) is known to hold no LF
 * (scanned <= n), so a long line arriving in pieces is scanned once.
 * Never reads outside buf[0..n). */
pop3_status pop3_scan_line(const char *buf, size_t n, size_t window,
                           int at_eof, size_t scanned, size_t *len);

/* Look for the next line in buf[0..n).  `limit` must be >= 1.  `at_eof`
 * says that no byte will follow buf[n-1].  On POP3_LINE, *line describes
 * it (with single-line stripping only: see pop3_unstuff()); on
 * POP3_TOO_LONG the caller consumes exactly `limit` bytes.  Never reads
 * outside buf[0..n). */
pop3_status pop3_next_line(const char *buf, size_t n, size_t limit,
                           int at_eof, pop3_line *line);

/* pop3_next_line() for a caller that already knows that buf[0..scanned)
 * holds no LF (scanned <= n): the search starts there, so a long line
 * that arrives in many pieces is scanned once, not once per piece.  With
 * scanned = 0 it is pop3_next_line(). */
pop3_status pop3_next_line_from(const char *buf, size_t n, size_t limit,
                                int at_eof, size_t scanned,
                                pop3_line *line);

/* After pop3_next_line_from(buf, n, limit, ...) returned POP3_NEED_MORE:
 * how many leading bytes it found free of LF (what to pass as `scanned`
 * once more bytes have been appended). */
size_t pop3_scanned(size_t n, size_t limit);

/* Strip a whole raw line (as readline() returned it) in place of
 * pop3_next_line(): fills start/len/octets for buf[0..n), n >= 1. */
void pop3_strip_line(const char *buf, size_t n, pop3_line *line);

/* Apply the multi-line rules to a stripped line: set is_terminator, or
 * undo dot-stuffing (start/len/octets adjusted). */
void pop3_unstuff(const char *buf, pop3_line *line);

/* What pop3_copy_body() did. */
typedef struct {
    size_t consumed;      /* input bytes used (whole lines only) */
    size_t produced;      /* output bytes written */
    unsigned long long octets;   /* poplib's octet count of those lines */
    size_t scanned;       /* in/out: LF-free bytes at the start of the
                             first unconsumed line (pop3_next_line_from) */
    size_t need;          /* POP3_NEED_ROOM: output bytes the next line
                             needs */
} pop3_copy;

/* Copy the lines of a multi-line response body from buf[0..n) to
 * out[0..room): each line stripped and unstuffed as poplib's
 * _getlongresp() returns it, followed by CRLF -- exactly
 * b"".join(line + b"\r\n" for line in lines).  Stops at the terminator
 * line (consumed, not copied; returns POP3_LINE), when only an incomplete
 * line is left (POP3_NEED_MORE), when the next line does not fit in the
 * output (POP3_NEED_ROOM, res->need says how much it needs), at a line
 * of `limit` bytes without LF (POP3_TOO_LONG, nothing of it consumed)
 * or at the end of the stream (at_eof set: an unterminated tail is a
 * line, then POP3_EOF).  res->consumed/produced/octets count what was
 * done; res->scanned must be 0 or what the previous call left for the
 * same first line.  Never reads outside buf[0..n) or writes outside
 * out[0..room). */
pop3_status pop3_copy_body(const char *buf, size_t n, size_t limit,
                           int at_eof, char *out, size_t room,
                           pop3_copy *res);

/* A line of a LIST or UIDL listing, "number field ...": leading spaces
 * and tabs, a decimal message number (at most 18 digits' worth, i.e.
 * below 10**18), spaces or tabs, then the second field up to the next
 * space or tab.  With `numeric`, the field must itself be such a number
 * (LIST's size) and *value is set.  1 and *number, [*start, *end) of the
 * field; 0 if the line is not of that form. */
int pop3_parse_listing(const char *buf, size_t n, int numeric,
                       long long *number, long long *value, size_t *start,
                       size_t *end);

/* Index of the first byte of buf[0..n) that poplib forbids in a command
 * (0x00-0x1F, 0x7F), or n if there is none. */
size_t pop3_find_control(const char *buf, size_t n);

/* The APOP timestamp of a greeting, matched like the regular expression
 * rb'\+OK.[^<]*(<.*>)' with re.match, in linear time.  On success returns
 * 1 and sets [*start, *start + *len) to the group; returns 0 when the
 * greeting has no timestamp. */
int pop3_apop_timestamp(const char *buf, size_t n,
                        size_t *start, size_t *len);

#endif /* CPOPLIB_POP3_PARSER_H */
