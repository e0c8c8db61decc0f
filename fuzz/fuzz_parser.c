/* fuzz_parser.c -- libFuzzer harness for Modules/pop3_parser.c.
 *
 * Input layout:
 *
 *   byte 0-1   limit = 1 + (little-endian u16 % 4096), i.e. 1..4096
 *              (poplib uses limit = _MAXLINE + 1 = 2049)
 *   byte 2     k = byte & 15: number of split-schedule bytes that follow
 *   k bytes    chunk sizes (each byte b means b + 1 bytes), used cyclically
 *              to deliver the stream to a simulated reader; k = 0 means a
 *              fixed chunk size of 7
 *   rest       the server byte stream
 *
 * For the stream, a simulated reader (fixed buffer of exactly `limit`
 * bytes, compaction before every refill, chunks delivered at the split
 * points, `at_eof` once the stream is exhausted) pulls lines through
 * pop3_next_line() in single-line mode and in multi-line mode (status
 * line, then pop3_unstuff() on each line until the terminator, like
 * poplib's _getlongresp), and the result must equal a one-shot parse of
 * the whole stream.  Every event is checked against independent
 * reimplementations of poplib's rules written below.
 *
 * The same input is also given to pop3_apop_timestamp() (checked against
 * a naive backtracking transcription of re.match(rb'\+OK.[^<]*(<.*>)'))
 * and pop3_find_control().
 *
 * Any violated invariant calls abort().  Build with
 *   clang -fsanitize=fuzzer,address,undefined -I Modules \
 *         fuzz/fuzz_parser.c Modules/pop3_parser.c
 * or, without libFuzzer (replays files / directories given on the command
 * line, plus optional random inputs: -r N):
 *   gcc -DFUZZ_STANDALONE -fsanitize=address,undefined -I Modules \
 *         fuzz/fuzz_parser.c Modules/pop3_parser.c
 */
#include "pop3_parser.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "fuzz_parser.c:%d: invariant violated: %s\n",  \
                    __LINE__, #cond);                                      \
            abort();                                                       \
        }                                                                  \
    } while (0)

/* ------------------------------------------------------------------ */
/* Events                                                              */

enum { EV_LINE = 1, EV_TOO_LONG = 2, EV_EOF = 3 };

typedef struct {
    int kind;
    size_t offset;        /* stream offset of the first byte of the line */
    size_t raw_len;
    size_t start, len, octets;
    int is_terminator;
    int unstuffed;        /* pop3_unstuff() was applied */
} event;

typedef struct {
    event *ev;
    size_t n, cap;
} event_log;

static void
log_push(event_log *log, const event *e)
{
    if (log->n == log->cap) {
        size_t cap = log->cap ? log->cap * 2 : 64;
        event *p = realloc(log->ev, cap * sizeof(*p));
        CHECK(p != NULL);
        log->ev = p;
        log->cap = cap;
    }
    log->ev[log->n++] = *e;
}

/* ------------------------------------------------------------------ */
/* Independent reference of poplib's _getline stripping                */

static void
ref_strip(const unsigned char *raw, size_t n, size_t *start, size_t *len)
{
    /* line[-2:] == CRLF -> line[:-2]; line[:1] == CR -> line[1:-1];
       else line[:-1]  (Python slices clamp at 0) */
    if (n >= 2 && raw[n - 2] == 13 && raw[n - 1] == 10) {
        *start = 0;
        *len = n - 2;
    }
    else if (raw[0] == 13) {
        *start = 1;
        *len = n >= 2 ? n - 2 : 0;
    }
    else {
        *start = 0;
        *len = n - 1;
    }
}

/* ------------------------------------------------------------------ */
/* The simulated reader                                                */

typedef struct {
    const unsigned char *stream;
    size_t total;
    size_t limit;
    const unsigned char *sched;   /* chunk sizes, NULL: one shot */
    size_t nsched;
    int multi;
} run_params;

/* Call pop3_next_line on an exactly-sized heap copy so that ASan sees
   any read outside buf[0..n). */
static pop3_status
next_line_exact(const unsigned char *buf, size_t n, size_t limit,
                int at_eof, pop3_line *line, unsigned char **copy)
{
    pop3_status st;

    *copy = malloc(n ? n : 1);
    CHECK(*copy != NULL);
    if (n) {
        memcpy(*copy, buf, n);
    }
    memset(line, 0xA5, sizeof(*line));
    st = pop3_next_line((const char *)*copy, n, limit, at_eof, line);

    /* pop3_next_line_from() with any valid hint (a prefix known to hold
       no LF) must agree with the search from the start. */
    size_t window = pop3_scanned(n, limit);
    const unsigned char *lf = window ? memchr(*copy, '\n', window) : NULL;
    size_t lf_free = lf ? (size_t)(lf - *copy) : window;
    size_t hints[2] = {lf_free / 2, lf_free};
    for (int i = 0; i < 2; i++) {
        pop3_line other;
        memset(&other, 0xA5, sizeof(other));
        CHECK(pop3_next_line_from((const char *)*copy, n, limit, at_eof,
                                  hints[i], &other) == st);
        if (st == POP3_LINE) {
            CHECK(other.raw_len == line->raw_len
                  && other.start == line->start && other.len == line->len
                  && other.octets == line->octets);
        }
    }
    return st;
}

static void
run_reader(const run_params *p, event_log *log)
{
    size_t limit = p->limit;
    size_t cap = limit;               /* a reader never needs more */
    unsigned char *buf = malloc(cap);
    size_t have = 0;                  /* bytes in buf */
    size_t fed = 0;                   /* stream bytes given to buf */
    size_t consumed = 0;              /* stream bytes consumed as lines */
    size_t sched_i = 0;
    int at_eof = 0;
    int in_body = 0;                  /* multi-line: inside a response */
    size_t iterations = 0;
    size_t max_iterations = 4 * (p->total + 4);

    CHECK(buf != NULL);
    if (p->sched == NULL) {
        /* one shot: the whole stream at once, already at EOF.  Use a
           buffer as large as the stream. */
        free(buf);
        cap = p->total ? p->total : 1;
        buf = malloc(cap);
        CHECK(buf != NULL);
        if (p->total) {
            memcpy(buf, p->stream, p->total);
        }
        have = fed = p->total;
        at_eof = 1;
    }

    for (;;) {
        pop3_line line;
        unsigned char *copy;
        pop3_status st;
        event e;

        CHECK(++iterations <= max_iterations);        /* termination */
        st = next_line_exact(buf, have, limit, at_eof, &line, &copy);
        memset(&e, 0, sizeof(e));
        e.offset = consumed;

        switch (st) {
        case POP3_NEED_MORE:
            CHECK(!at_eof);
            CHECK(have < limit);
            CHECK(memchr(buf, '\n', have) == NULL);
            free(copy);
            /* refill: the buffer was compacted after the last line */
            if (fed == p->total) {
                at_eof = 1;
                continue;
            }
            {
                size_t chunk = p->nsched ? (size_t)p->sched[sched_i++ % p->nsched] + 1
                                         : 7;
                size_t room = cap - have;
                CHECK(room > 0);
                if (chunk > room) {
                    chunk = room;
                }
                if (chunk > p->total - fed) {
                    chunk = p->total - fed;
                }
                memcpy(buf + have, p->stream + fed, chunk);
                have += chunk;
                fed += chunk;
            }
            continue;

        case POP3_TOO_LONG:
            CHECK(have >= limit);
            CHECK(limit == 1 || memchr(buf, '\n', limit - 1) == NULL);
            free(copy);
            e.kind = EV_TOO_LONG;
            e.raw_len = limit;                       /* consume exactly limit */
            log_push(log, &e);
            consumed += limit;
            memmove(buf, buf + limit, have - limit);
            have -= limit;
            in_body = 0;
            continue;

        case POP3_EOF:
            CHECK(at_eof);
            CHECK(have == 0);
            free(copy);
            e.kind = EV_EOF;
            log_push(log, &e);
            /* every byte consumed exactly once */
            CHECK(consumed == p->total);
            CHECK(fed == p->total);
            free(buf);
            return;

        case POP3_LINE: {
            size_t rs, rl;
            const unsigned char *lf;

            CHECK(line.raw_len >= 1);
            CHECK(line.raw_len <= have);
            CHECK(line.raw_len <= limit - 1);
            CHECK(line.start <= line.raw_len);
            CHECK(line.len <= line.raw_len - line.start);
            CHECK(line.octets == line.raw_len);
            CHECK(line.is_terminator == 0);
            /* the line ends at the first LF, or is the EOF tail */
            lf = memchr(copy, '\n', line.raw_len);
            if (lf != NULL) {
                CHECK((size_t)(lf - copy) == line.raw_len - 1);
            }
            else {
                CHECK(at_eof && line.raw_len == have);
            }
            ref_strip(copy, line.raw_len, &rs, &rl);
            CHECK(line.start == rs && line.len == rl);

            if (p->multi && in_body) {
                pop3_line before = line;
                const unsigned char *pl = copy + before.start;
                int lone_dot = before.len == 1 && pl[0] == '.';
                int stuffed = before.len >= 2 && pl[0] == '.' && pl[1] == '.';

                pop3_unstuff((const char *)copy, &line);
                e.unstuffed = 1;
                CHECK(line.raw_len == before.raw_len);
                CHECK(line.start + line.len <= line.raw_len);
                CHECK(line.is_terminator == lone_dot);
                if (stuffed) {
                    CHECK(line.octets == line.raw_len - 1);
                    CHECK(line.start == before.start + 1);
                    CHECK(line.len == before.len - 1);
                    CHECK(copy[line.start - 1] == '.' && copy[line.start] == '.');
                }
                else {
                    CHECK(line.octets == line.raw_len);
                    CHECK(line.start == before.start);
                    CHECK(line.len == before.len);
                }
                if (line.is_terminator) {
                    in_body = 0;
                }
            }
            else if (p->multi) {
                in_body = 1;     /* that was the status line */
            }
            CHECK(line.octets == line.raw_len || line.octets == line.raw_len - 1);

            e.kind = EV_LINE;
            e.raw_len = line.raw_len;
            e.start = line.start;
            e.len = line.len;
            e.octets = line.octets;
            e.is_terminator = line.is_terminator;
            log_push(log, &e);
            consumed += line.raw_len;
            memmove(buf, buf + line.raw_len, have - line.raw_len);
            have -= line.raw_len;
            free(copy);
            continue;
        }
        default:
            CHECK(0 && "unknown status");
        }
    }
}

static void
check_same(const event_log *a, const event_log *b)
{
    CHECK(a->n == b->n);
    for (size_t i = 0; i < a->n; i++) {
        const event *x = &a->ev[i], *y = &b->ev[i];
        CHECK(x->kind == y->kind);
        CHECK(x->offset == y->offset);
        CHECK(x->raw_len == y->raw_len);
        CHECK(x->start == y->start);
        CHECK(x->len == y->len);
        CHECK(x->octets == y->octets);
        CHECK(x->is_terminator == y->is_terminator);
        CHECK(x->unstuffed == y->unstuffed);
    }
}

/* ------------------------------------------------------------------ */
/* pop3_strip_line on its own                                           */

static void
check_strip(const unsigned char *data, size_t size)
{
    size_t n = size < 8 ? size : 8;
    pop3_line line;
    size_t rs, rl;
    unsigned char *copy;

    if (n == 0) {
        return;
    }
    copy = malloc(n);
    CHECK(copy != NULL);
    memcpy(copy, data + size - n, n);
    pop3_strip_line((const char *)copy, n, &line);
    ref_strip(copy, n, &rs, &rl);
    CHECK(line.raw_len == n && line.octets == n && !line.is_terminator);
    CHECK(line.start == rs && line.len == rl);
    free(copy);
}

/* ------------------------------------------------------------------ */
/* APOP timestamp: a naive backtracking transcription of                */
/*     re.match(rb'\+OK.[^<]*(<.*>)', s)                               */
/* '.' matches any byte except LF; [^<] matches any byte except '<'.    */

static int
ref_apop(const unsigned char *s, size_t n, size_t *gs, size_t *ge)
{
    size_t run, i, j, e;

    if (n < 4 || s[0] != '+' || s[1] != 'O' || s[2] != 'K' || s[3] == '\n') {
        return 0;
    }
    /* [^<]* is greedy: the longest run first, then shorter ones */
    run = 4;
    while (run < n && s[run] != '<') {
        run++;
    }
    for (i = run + 1; i-- > 4;) {          /* i: where '<' must be */
        if (i >= n || s[i] != '<') {
            continue;
        }
        /* .* greedy from i + 1 */
        e = i + 1;
        while (e < n && s[e] != '\n') {
            e++;
        }
        for (j = e + 1; j-- > i + 1;) {    /* j: where '>' must be */
            if (j < n && s[j] == '>') {
                *gs = i;
                *ge = j + 1;
                return 1;
            }
        }
    }
    return 0;
}

static void
check_apop(const unsigned char *data, size_t size)
{
    unsigned char *copy = calloc(1, size ? size : 1);
    size_t start = (size_t)-1, len = (size_t)-1, rs = 0, re_ = 0;
    int got, want;

    CHECK(copy != NULL);
    if (size) {
        memcpy(copy, data, size);
    }
    got = pop3_apop_timestamp((const char *)copy, size, &start, &len);
    want = ref_apop(copy, size, &rs, &re_);
    CHECK(got == 0 || got == 1);
    CHECK(got == want);
    if (got) {
        CHECK(start < size);
        CHECK(len >= 2);
        CHECK(len <= size - start);
        CHECK(copy[start] == '<');
        CHECK(copy[start + len - 1] == '>');
        CHECK(memchr(copy + start, '\n', len) == NULL);
        CHECK(start == rs && start + len == re_);
    }
    free(copy);
}

/* With a "+OK" prefix forced, so that the interesting part of
   pop3_apop_timestamp is reached by most inputs. */
static void
check_apop_prefixed(const unsigned char *data, size_t size)
{
    unsigned char *s = malloc(size + 3);

    CHECK(s != NULL);
    memcpy(s, "+OK", 3);
    if (size) {
        memcpy(s + 3, data, size);
    }
    check_apop(s, size + 3);
    free(s);
}

/* ------------------------------------------------------------------ */

static void
check_find_control(const unsigned char *data, size_t size)
{
    unsigned char *copy = calloc(1, size ? size : 1);
    size_t i, want = size;

    CHECK(copy != NULL);
    if (size) {
        memcpy(copy, data, size);
    }
    for (i = 0; i < size; i++) {
        if (copy[i] <= 0x1F || copy[i] == 0x7F) {
            want = i;
            break;
        }
    }
    CHECK(pop3_find_control((const char *)copy, size) == want);
    free(copy);
}

/* ------------------------------------------------------------------ */

/* pop3_parse_listing() against a reference written another way: split
 * the line into blank-separated words; the first must be all digits
 * (1 to 18 of them), there must be a second, and with `numeric` the
 * second must be all digits too (1 to 18). */
static int
ref_digits(const unsigned char *w, size_t n, long long *value)
{
    long long v = 0;

    if (n == 0 || n > 18) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (w[i] < '0' || w[i] > '9') {
            return 0;
        }
        v = v * 10 + (w[i] - '0');
    }
    *value = v;
    return 1;
}

static void
check_listing(const unsigned char *data, size_t size)
{
    unsigned char *copy = malloc(size ? size : 1);
    size_t word[2][2], nwords = 0, i = 0;

    CHECK(copy != NULL);
    if (size) {
        memcpy(copy, data, size);
    }
    /* the first two words and where they are */
    while (nwords < 2) {
        while (i < size && (copy[i] == ' ' || copy[i] == '\t')) {
            i++;
        }
        if (i == size) {
            break;
        }
        word[nwords][0] = i;
        while (i < size && copy[i] != ' ' && copy[i] != '\t') {
            i++;
        }
        word[nwords++][1] = i;
    }
    for (int numeric = 0; numeric <= 1; numeric++) {
        long long num = -1, value = -1, rnum = -2, rvalue = -2;
        size_t start = 0, end = 0;
        int want = nwords == 2
            && ref_digits(copy + word[0][0], word[0][1] - word[0][0], &rnum)
            && (!numeric
                || ref_digits(copy + word[1][0], word[1][1] - word[1][0],
                              &rvalue));
        int got = pop3_parse_listing((const char *)copy, size, numeric,
                                     &num, &value, &start, &end);

        CHECK(got == want);
        if (got) {
            CHECK(num == rnum);
            CHECK(start == word[1][0] && end == word[1][1]);
            CHECK(!numeric || value == rvalue);
        }
    }
    free(copy);
}

/* pop3_scan_line() for every window against memchr over the whole
 * buffer, and with every valid `scanned` hint. */
static void
check_scan_line(const unsigned char *data, size_t size)
{
    unsigned char *copy = malloc(size ? size : 1);
    const unsigned char *lf;
    size_t first;

    CHECK(copy != NULL);
    if (size) {
        memcpy(copy, data, size);
    }
    lf = size ? memchr(copy, '\n', size) : NULL;
    first = lf ? (size_t)(lf - copy) : size;    /* index of the first LF */
    for (size_t window = 1; window <= size + 2 && window <= 64; window++) {
        for (int at_eof = 0; at_eof <= 1; at_eof++) {
            size_t free_prefix = first < window ? first : window;
            pop3_status want;
            size_t want_len = 0;

            if (lf != NULL && first < window) {
                want = POP3_LINE;
                want_len = first + 1;
            }
            else if (size >= window) {
                want = POP3_TOO_LONG;
            }
            else if (!at_eof) {
                want = POP3_NEED_MORE;
            }
            else {
                want = POP3_EOF;
                want_len = size;
            }
            if (free_prefix > size) {
                free_prefix = size;
            }
            for (size_t hint = 0; hint <= free_prefix; hint += 1 + hint) {
                size_t len = 12345;
                pop3_status st = pop3_scan_line((const char *)copy, size,
                                                window, at_eof, hint, &len);
                CHECK(st == want);
                if (want == POP3_LINE || want == POP3_EOF) {
                    CHECK(len == want_len);
                }
            }
        }
    }
    free(copy);
}

/* ------------------------------------------------------------------ */

/* pop3_copy_body() against the line-by-line rules: the stream is taken
 * as a multi-line body; the reference copies each line (pop3_next_line,
 * pop3_unstuff) plus CRLF until the terminator, a line too long or the
 * end; the body copier gets the stream in chunks of the schedule's sizes
 * and an output that starts tiny and grows only when it asks for room. */
static void
check_copy_body(const run_params *p)
{
    const unsigned char *s = p->stream;
    size_t n = p->total, limit = p->limit;
    unsigned char *ref = malloc(2 * n + 2), *out, *copy;
    size_t ref_len = 0, ref_consumed = 0, cap = 1, fed = 0, pos = 0;
    size_t produced = 0, sched_i = 0;
    pop3_status ref_status, st;
    pop3_copy res;

    CHECK(ref != NULL);
    for (;;) {
        pop3_line line;
        ref_status = pop3_next_line((const char *)s + ref_consumed,
                                    n - ref_consumed, limit, 1, &line);
        if (ref_status != POP3_LINE) {
            break;
        }
        pop3_unstuff((const char *)s + ref_consumed, &line);
        ref_consumed += line.raw_len;
        if (line.is_terminator) {
            break;
        }
        memcpy(ref + ref_len, s + ref_consumed - line.raw_len + line.start,
               line.len);
        memcpy(ref + ref_len + line.len, "\r\n", 2);
        ref_len += line.len + 2;
    }

    out = malloc(cap);
    CHECK(out != NULL);
    memset(&res, 0, sizeof(res));
    for (;;) {
        int at_eof = fed == n;
        /* an exactly-sized copy of what is buffered, for ASan */
        size_t avail = fed - pos;
        copy = malloc(avail ? avail : 1);
        CHECK(copy != NULL);
        memcpy(copy, s + pos, avail);
        st = pop3_copy_body((const char *)copy, avail, limit, at_eof,
                            (char *)out + produced, cap - produced, &res);
        free(copy);
        CHECK(res.consumed <= avail && res.produced <= cap - produced);
        pos += res.consumed;
        produced += res.produced;
        if (st == POP3_NEED_ROOM) {
            CHECK(res.need > cap - produced);
            cap = produced + res.need;
            out = realloc(out, cap);
            CHECK(out != NULL);
            continue;
        }
        if (st != POP3_NEED_MORE) {
            break;
        }
        CHECK(!at_eof);
        size_t chunk = p->nsched ? (size_t)p->sched[sched_i++ % p->nsched] + 1
                                 : 7;
        fed = fed + chunk < n ? fed + chunk : n;
    }
    if (ref_status == POP3_LINE) {
        CHECK(st == POP3_LINE);
    }
    else {
        CHECK(st == ref_status);
    }
    CHECK(produced == ref_len && memcmp(out, ref, ref_len) == 0);
    if (st == POP3_LINE || st == POP3_EOF) {
        CHECK(pos == ref_consumed);
    }
    free(out);
    free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_params p;
    size_t hdr;
    event_log oneshot = {0}, chunked = {0};

    check_apop(data, size);
    check_apop_prefixed(data, size);
    check_find_control(data, size);
    check_strip(data, size);
    check_listing(data, size);
    check_scan_line(data, size);

    if (size < 3) {
        return 0;
    }
    p.limit = 1 + ((size_t)data[0] | ((size_t)data[1] << 8)) % 4096;
    p.nsched = data[2] & 15;
    hdr = 3 + p.nsched;
    if (size < hdr) {
        return 0;
    }
    p.sched = data + 3;
    p.stream = data + hdr;
    p.total = size - hdr;

    for (int multi = 0; multi <= 1; multi++) {
        run_params one = p;

        p.multi = multi;
        one.multi = multi;
        one.sched = NULL;
        one.nsched = 0;
        oneshot.n = chunked.n = 0;
        run_reader(&one, &oneshot);
        run_reader(&p, &chunked);
        check_same(&oneshot, &chunked);
        if (p.nsched == 0) {
            /* also byte-at-a-time */
            static const unsigned char one_byte[1] = {0};
            run_params bytewise = p;

            bytewise.sched = one_byte;
            bytewise.nsched = 1;
            chunked.n = 0;
            run_reader(&bytewise, &chunked);
            check_same(&oneshot, &chunked);
        }
    }
    check_copy_body(&p);
    free(oneshot.ev);
    free(chunked.ev);
    return 0;
}

/* ------------------------------------------------------------------ */
#ifdef FUZZ_STANDALONE
#include "standalone.h"

static void
random_inputs(long iterations)
{
    static const char alphabet[] = "\r\n.<>+OK-ERR \r\n.\n\x00\xff";
    unsigned char *buf = malloc(9000);

    for (long it = 0; it < iterations; it++) {
        size_t n = (size_t)(rng() % 9000);
        size_t limit = (it % 3 == 0) ? 2048 : (size_t)(rng() % 64);

        for (size_t i = 0; i < n; i++) {
            uint64_t r = rng();
            buf[i] = (r & 3) ? (unsigned char)alphabet[(r >> 8) % (sizeof(alphabet) - 1)]
                             : (unsigned char)(r >> 16);
        }
        if (n >= 3) {
            buf[0] = (unsigned char)(limit & 0xFF);
            buf[1] = (unsigned char)(limit >> 8);
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    free(buf);
}

int
main(int argc, char **argv)
{
    size_t count = 0;
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
            long iterations = strtol(argv[++i], NULL, 10);
            random_inputs(iterations);
            printf("fuzz_parser: %ld random inputs OK\n", iterations);
            continue;
        }
        rc |= replay(argv[i], &count);
    }
    printf("fuzz_parser: replayed %zu inputs%s\n", count, rc ? " (with errors)" : "");
    return rc;
}
#endif
