/* fuzz_sasl.c -- libFuzzer harness for Modules/sasl.c (the SASL client
 * state machines and base64).
 *
 * Input layout:
 *
 *   byte 0     m = byte % 9: 0..7 a sasl_mech (PLAIN, LOGIN, CRAM-MD5,
 *              SCRAM-SHA-1, SCRAM-SHA-256, XOAUTH2, OAUTHBEARER,
 *              EXTERNAL); 8: base64 only (the text is the rest of the
 *              input)
 *   byte 1     flags:
 *                bits 0-1  SCRAM client nonce: 0 NULL (RAND_bytes),
 *                          1 RFC 5802's "fyko+d2lbbFgONRv9qkxdawL",
 *                          2 a chunk mapped to valid nonce characters,
 *                          3 a raw chunk (may be invalid)
 *                bit 2     server-first-message: 0 built by the harness
 *                          from a chunk, 1 a raw chunk
 *                bit 3     server-final-message: 0 built by the harness
 *                          with the ServerSignature it computes, 1 a raw
 *                          chunk
 *                bit 4     corrupt one byte of a server message (the two
 *                          bytes after the flags: position, xor mask)
 *                bit 5     ... of the server-final (else server-first)
 *                bit 6     built messages carry an extension ",x=..."
 *                          (its text is a chunk after the config chunk)
 *                bit 7     error buffer of sasl_client_new(): its size
 *                          is the next byte % 40 (0: NULL), else 256
 *   [2 bytes]  corruption position, xor mask (if bit 4)
 *   [1 byte]   error buffer size (if bit 7)
 *   chunks     each: a length byte L, L < 255: L bytes follow; L = 255:
 *              a little-endian u16 length, then the bytes (clamped to
 *              what is left).  In order: user, secret, [nonce if nonce
 *              mode 2/3], then the server challenges.  Missing chunks
 *              are empty or end the exchange.
 *
 * SCRAM's server messages, when the harness builds them:
 *   server-first: a config chunk: byte 0: iterations = 1 + byte % 64,
 *              variant = byte >> 6 (0, 1: valid; 2: the server nonce adds
 *              nothing to the client's; 3: by byte 1 >> 6: i=0,
 *              i=10000001, an empty salt, an "m=" extension first);
 *              byte 1: salt length = 1 + (byte & 31) % 24; the salt
 *              bytes; the rest: the server's nonce part (mapped to
 *              printable characters without ',').  Then, if flag bit 6,
 *              a chunk of extension text.
 *   server-final: an optional chunk: byte 0 % 4: 0 the right signature,
 *              1 a signature of byte 1 % 67 bytes (a prefix of the
 *              right one, then the chunk's bytes: too short, too long),
 *              2 the right one without its '=' padding, 3 "e=" and the
 *              rest of the chunk as text.
 * Challenges after those are raw chunks.
 *
 * The client is driven exactly as sasl.h says (sasl_client_new,
 * sasl_client_initial, sasl_client_step per challenge, stopping after
 * any SASL_FAILED_* like the caller (Modules/auth.c) does -- except that
 * after SASL_FAILED_RESPOND, as in auth.c, one more challenge may come
 * and must be cancelled -- sasl_client_complete,
 * sasl_client_error, sasl_client_free), and every output is compared
 * with an independent reference written below: the exact initial
 * response and responses of every mechanism (SCRAM's ClientProof and
 * ServerSignature recomputed with libcrypto; the reference is checked
 * against the RFC 5802 / RFC 7677 / RFC 2195 examples once at start-up),
 * which inputs sasl_client_new() must refuse, the status of every step,
 * and that sasl_client_complete() is 1 for SCRAM exactly when a
 * server-final carrying the right signature was processed (positively:
 * an uncorrupted built exchange must verify; a corrupted one must not).
 * Every `out` is copied byte by byte out of the library (so ASan checks
 * all `len` bytes), every error text must be NUL-terminated printable
 * ASCII, statuses must be in range.
 *
 * Base64 on every input: encode/decode round trips (strict and lenient,
 * with and without padding), and decoding the input as text into a
 * buffer of exactly the documented size (in_len / 4 * 3 + 3) must agree
 * with a reference decoder (accept/reject and bytes) and re-encode to
 * the (padded) text.  sasl_mech_from_name() is checked on the input too.
 *
 * Iteration counts: built server-first messages use 1..64.  A raw
 * server-first message the reference accepts with more than
 * RAW_ITER_CAP iterations is not sent (it would only make the run slow;
 * counts above sasl.c's 10,000,000 limit are still sent: they are
 * refused before any PBKDF2).
 *
 * Any violated invariant calls abort().  Build with
 *   clang -fsanitize=fuzzer,address,undefined -I Modules \
 *         fuzz/fuzz_sasl.c Modules/sasl.c -lcrypto
 * or, without libFuzzer (replays files / directories given on the command
 * line, plus optional random inputs: -r N; -seeds DIR writes the seed
 * corpus, see fuzz/corpus_sasl):
 *   gcc -DFUZZ_STANDALONE -fsanitize=address,undefined -I Modules \
 *         fuzz/fuzz_sasl.c Modules/sasl.c -lcrypto
 */
#include "sasl.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "fuzz_sasl.c:%d: invariant violated: %s\n",    \
                    __LINE__, #cond);                                      \
            abort();                                                       \
        }                                                                  \
    } while (0)

#define RAW_ITER_CAP 4096UL

/* Outcome counters, printed by the standalone main() (to see that the
   seeds and random inputs reach every branch). */
static unsigned long n_refused, n_first_rejected, n_first_skipped,
    n_verified, n_untrusted, n_final_cancel, n_other_ok, n_other_failed;
#define SCRAM_MAX_ITER 10000000UL        /* sasl.c's documented limit */
#define RFC5802_NONCE "fyko+d2lbbFgONRv9qkxdawL"

/* ------------------------------------------------------------------ */
/* Byte strings                                                        */

typedef struct {
    unsigned char *d;
    size_t n, cap;
} bytes;

static void
bs_add(bytes *b, const void *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) {
            cap *= 2;
        }
        b->d = realloc(b->d, cap);
        CHECK(b->d != NULL);
        b->cap = cap;
    }
    if (n) {
        memcpy(b->d + b->n, p, n);
    }
    b->n += n;
    b->d[b->n] = 0;
}

static void
bs_adds(bytes *b, const char *s)
{
    bs_add(b, s, strlen(s));
}

static void
bs_addc(bytes *b, unsigned char ch)
{
    bs_add(b, &ch, 1);
}

static void
bs_free(bytes *b)
{
    free(b->d);
    b->d = NULL;
    b->n = b->cap = 0;
}

static int
bs_eq(const bytes *b, const unsigned char *p, size_t n)
{
    return b->n == n && (n == 0 || memcmp(b->d, p, n) == 0);
}

/* Exactly-sized heap blocks (so ASan sees any access past the end);
   xfree() releases them. */
static unsigned char empty_block[1];

static unsigned char *
exact_alloc(size_t n)
{
    unsigned char *c = malloc(n);

    if (c == NULL) {
        CHECK(n == 0);
        return empty_block;
    }
    return c;
}

static unsigned char *
exact_copy(const unsigned char *p, size_t n)
{
    unsigned char *c = exact_alloc(n);

    if (n) {
        memcpy(c, p, n);
    }
    return c;
}

static void
xfree(void *p)
{
    if (p != (void *)empty_block) {
        free(p);
    }
}

/* ------------------------------------------------------------------ */
/* Reference base64 (written group by group, unlike sasl.c's bit
   accumulator)                                                        */

static const char B64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void
ref_b64_encode(const unsigned char *in, size_t n, bytes *out)
{
    for (size_t i = 0; i < n; i += 3) {
        unsigned char g[3] = {0, 0, 0};
        size_t k = n - i < 3 ? n - i : 3;
        char q[4];

        memcpy(g, in + i, k);
        q[0] = B64[g[0] >> 2];
        q[1] = B64[((g[0] & 3) << 4) | (g[1] >> 4)];
        q[2] = k > 1 ? B64[((g[1] & 15) << 2) | (g[2] >> 6)] : '=';
        q[3] = k > 2 ? B64[g[2] & 63] : '=';
        bs_add(out, q, 4);
    }
}

static int
ref_b64_val(unsigned char ch)
{
    const char *p = ch ? strchr(B64, ch) : NULL;
    return p ? (int)(p - B64) : -1;
}

/* sasl.h: "only alphabet characters and trailing '=' are accepted. With
   lenient_padding, missing '=' padding is accepted."  Canonical only:
   the unused bits of the last character must be zero (sasl.c's rule;
   it keeps decode(text) re-encoding to the text). */
static int
ref_b64_decode(const unsigned char *t, size_t n, int lenient, bytes *out)
{
    size_t pads = 0, data, i;

    while (pads < n && t[n - 1 - pads] == '=') {
        pads++;
    }
    data = n - pads;
    if (pads > 2) {
        return -1;
    }
    if (pads > 0 ? n % 4 != 0 : data % 4 != 0 && (!lenient || data % 4 == 1)) {
        return -1;
    }
    for (i = 0; i + 4 <= data; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            if ((v[k] = ref_b64_val(t[i + k])) < 0) {
                return -1;
            }
        }
        bs_addc(out, (unsigned char)((v[0] << 2) | (v[1] >> 4)));
        bs_addc(out, (unsigned char)(((v[1] & 15) << 4) | (v[2] >> 2)));
        bs_addc(out, (unsigned char)(((v[2] & 3) << 6) | v[3]));
    }
    if (data - i >= 2) {
        int v[3] = {0, 0, 0};
        size_t k, tail = data - i;
        for (k = 0; k < tail; k++) {
            if ((v[k] = ref_b64_val(t[i + k])) < 0) {
                return -1;
            }
        }
        bs_addc(out, (unsigned char)((v[0] << 2) | (v[1] >> 4)));
        if (tail == 3) {
            bs_addc(out, (unsigned char)(((v[1] & 15) << 4) | (v[2] >> 2)));
            if (v[2] & 3) {
                return -1;
            }
        }
        else if (v[1] & 15) {
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* base64 checks                                                       */

static void
check_b64_roundtrip(const unsigned char *x, size_t n)
{
    size_t elen = SASL_B64_LEN(n), dlen = 0, pads = 0;
    char *enc = (char *)exact_alloc(elen);
    unsigned char *dec;
    bytes ref = {0};

    sasl_b64_encode(x, n, enc);
    ref_b64_encode(x, n, &ref);
    CHECK(bs_eq(&ref, (const unsigned char *)enc, elen));
    for (int lenient = 0; lenient <= 1; lenient++) {
        dec = exact_alloc(elen / 4 * 3 + 3);
        dlen = (size_t)-1;
        CHECK(sasl_b64_decode(enc, elen, dec, &dlen, lenient) == 0);
        CHECK(dlen == n && (n == 0 || memcmp(dec, x, n) == 0));
        xfree(dec);
    }
    /* unpadded */
    while (pads < elen && enc[elen - 1 - pads] == '=') {
        pads++;
    }
    CHECK(pads <= 2);
    if (pads > 0) {
        size_t un = elen - pads;
        dec = exact_alloc(un / 4 * 3 + 3);
        CHECK(sasl_b64_decode(enc, un, dec, &dlen, 0) == -1);
        dlen = (size_t)-1;
        CHECK(sasl_b64_decode(enc, un, dec, &dlen, 1) == 0);
        CHECK(dlen == n && memcmp(dec, x, n) == 0);
        xfree(dec);
    }
    xfree(enc);
    bs_free(&ref);
}

static void
check_b64_decode_text(const unsigned char *t, size_t n)
{
    unsigned char *in = exact_copy(t, n);
    bytes got[2] = {{0}, {0}};
    int rcs[2];

    for (int lenient = 0; lenient <= 1; lenient++) {
        size_t bound = n / 4 * 3 + 3, olen = (size_t)-1;
        unsigned char *out = malloc(bound);
        bytes ref = {0};
        int rc, want;

        CHECK(out != NULL);
        rc = sasl_b64_decode((const char *)in, n, out, &olen, lenient);
        want = ref_b64_decode(t, n, lenient, &ref);
        CHECK(rc == 0 || rc == -1);
        CHECK(rc == want);
        rcs[lenient] = rc;
        if (rc == 0) {
            bytes re = {0};
            CHECK(olen <= bound && olen <= n / 4 * 3 + 2);
            CHECK(bs_eq(&ref, out, olen));
            bs_add(&got[lenient], out, olen);
            /* re-encodes to the text, padded */
            ref_b64_encode(out, olen, &re);
            CHECK(re.n >= n && re.n - n <= 2 && (n == 0 || memcmp(re.d, t, n) == 0));
            for (size_t i = n; i < re.n; i++) {
                CHECK(re.d[i] == '=');
            }
            CHECK(lenient || re.n == n);
            bs_free(&re);
        }
        bs_free(&ref);
        free(out);
    }
    /* strict success implies lenient success with the same bytes;
       lenient success on padded-length text implies strict success */
    if (rcs[0] == 0) {
        CHECK(rcs[1] == 0 && got[0].n == got[1].n
              && (got[0].n == 0 || memcmp(got[0].d, got[1].d, got[0].n) == 0));
    }
    if (rcs[1] == 0 && n % 4 == 0) {
        CHECK(rcs[0] == 0);
    }
    bs_free(&got[0]);
    bs_free(&got[1]);
    xfree(in);
}

static void
check_b64(const unsigned char *data, size_t size)
{
    check_b64_roundtrip(data, size);
    check_b64_decode_text(data, size);
}

/* ------------------------------------------------------------------ */
/* Mechanism names                                                     */

static const char *const NAMES[SASL_MECH_COUNT] = {
    "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256",
    "XOAUTH2", "OAUTHBEARER", "EXTERNAL",
};

static void
check_mech_name(const unsigned char *data, size_t size)
{
    unsigned char *in = exact_copy(data, size);
    int want = -1;

    for (int m = 0; m < SASL_MECH_COUNT; m++) {
        size_t k = strlen(NAMES[m]), i;
        if (k != size) {
            continue;
        }
        for (i = 0; i < k; i++) {
            unsigned char ch = data[i];
            if (ch >= 'a' && ch <= 'z') {
                ch = (unsigned char)(ch - 32);
            }
            if (ch != (unsigned char)NAMES[m][i]) {
                break;
            }
        }
        if (i == k) {
            want = m;
        }
    }
    CHECK(sasl_mech_from_name((const char *)in, size) == want);
    xfree(in);
}

/* ------------------------------------------------------------------ */
/* Reference SCRAM (RFC 5802)                                          */

typedef struct {
    const EVP_MD *md;
    size_t dlen;
} scram_md;

static scram_md
md_of(int mech)
{
    scram_md m;
    m.md = mech == SASL_SCRAM_SHA_1 ? EVP_sha1() : EVP_sha256();
    m.dlen = (size_t)EVP_MD_size(m.md);
    CHECK(m.dlen > 0 && m.dlen <= EVP_MAX_MD_SIZE);
    return m;
}

static void
add_saslname(bytes *b, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ',') {
            bs_adds(b, "=2C");
        }
        else if (p[i] == '=') {
            bs_adds(b, "=3D");
        }
        else {
            bs_addc(b, p[i]);
        }
    }
}

/* The value of attribute `name` at msg[*pos], up to ',' or the end. */
static int
attr(const unsigned char *m, size_t n, size_t *pos, char name,
     const unsigned char **v, size_t *vn)
{
    size_t s = *pos, e;

    if (s + 2 > n || m[s] != (unsigned char)name || m[s + 1] != '=') {
        return -1;
    }
    for (e = s + 2; e < n && m[e] != ','; e++) {
    }
    *v = m + s + 2;
    *vn = e - s - 2;
    *pos = e < n ? e + 1 : e;
    return 0;
}

typedef struct {
    int ok;
    unsigned long iterations;
    bytes client_final;                    /* with proof */
    unsigned char server_sig[EVP_MAX_MD_SIZE];
} scram_ref;

/* Whether the client must accept server-first `m` (RFC 5802 5.1 as
   sasl.c documents it), and if so the expected client-final-message and
   ServerSignature.  With compute = 0 only ok and iterations are set. */
static void
ref_server_first(const scram_md *md, const bytes *cfb, const bytes *cnonce,
                 const bytes *secret, const unsigned char *m, size_t n,
                 int compute, scram_ref *r)
{
    const unsigned char *nonce, *salt_b64, *it;
    size_t nn, sn, in, pos = 0;
    bytes salt = {0}, cfwp = {0}, auth = {0};
    unsigned char salted[EVP_MAX_MD_SIZE], ck[EVP_MAX_MD_SIZE];
    unsigned char sk[EVP_MAX_MD_SIZE], stored[EVP_MAX_MD_SIZE];
    unsigned char csig[EVP_MAX_MD_SIZE];
    unsigned int l = 0;

    memset(r, 0, sizeof(*r));
    if (n > 0 && memchr(m, 0, n) != NULL) {
        return;
    }
    if (n >= 2 && m[0] == 'm' && m[1] == '=') {
        return;                  /* mandatory extension: unsupported */
    }
    if (attr(m, n, &pos, 'r', &nonce, &nn) < 0
        || attr(m, n, &pos, 's', &salt_b64, &sn) < 0
        || attr(m, n, &pos, 'i', &it, &in) < 0) {
        return;
    }
    if (nn <= cnonce->n || memcmp(nonce, cnonce->d, cnonce->n) != 0) {
        return;
    }
    for (size_t i = 0; i < nn; i++) {
        if (nonce[i] < 0x21 || nonce[i] > 0x7e) {
            return;
        }
    }
    if (in == 0 || in > 9) {
        return;
    }
    for (size_t i = 0; i < in; i++) {
        if (it[i] < '0' || it[i] > '9') {
            return;
        }
        r->iterations = r->iterations * 10 + (unsigned long)(it[i] - '0');
    }
    if (r->iterations == 0 || r->iterations > SCRAM_MAX_ITER) {
        return;
    }
    if (ref_b64_decode(salt_b64, sn, 0, &salt) < 0 || salt.n == 0) {
        bs_free(&salt);
        return;
    }
    r->ok = 1;
    if (!compute) {
        bs_free(&salt);
        return;
    }
    bs_adds(&cfwp, "c=biws,r=");
    bs_add(&cfwp, nonce, nn);
    bs_add(&auth, cfb->d, cfb->n);
    bs_adds(&auth, ",");
    bs_add(&auth, m, n);
    bs_adds(&auth, ",");
    bs_add(&auth, cfwp.d, cfwp.n);

    CHECK(PKCS5_PBKDF2_HMAC(secret->n ? (const char *)secret->d : "",
                            (int)secret->n, salt.d, (int)salt.n,
                            (int)r->iterations, md->md, (int)md->dlen,
                            salted) == 1);
    CHECK(HMAC(md->md, salted, (int)md->dlen,
               (const unsigned char *)"Client Key", 10, ck, &l) && l == md->dlen);
    CHECK(EVP_Digest(ck, md->dlen, stored, &l, md->md, NULL) && l == md->dlen);
    CHECK(HMAC(md->md, stored, (int)md->dlen, auth.d, auth.n, csig, &l)
          && l == md->dlen);
    CHECK(HMAC(md->md, salted, (int)md->dlen,
               (const unsigned char *)"Server Key", 10, sk, &l) && l == md->dlen);
    CHECK(HMAC(md->md, sk, (int)md->dlen, auth.d, auth.n, r->server_sig, &l)
          && l == md->dlen);
    for (size_t i = 0; i < md->dlen; i++) {
        ck[i] ^= csig[i];
    }
    bs_add(&r->client_final, cfwp.d, cfwp.n);
    bs_adds(&r->client_final, ",p=");
    ref_b64_encode(ck, md->dlen, &r->client_final);
    bs_free(&salt);
    bs_free(&cfwp);
    bs_free(&auth);
}

/* 1 if the client must accept server-final `m` as proof (sig must
   match), 0 if it must report SASL_FAILED_UNTRUSTED, -1 if it must
   cancel (server error "e=", or no "v="). */
static int
ref_server_final(const scram_md *md, const unsigned char *sig,
                 const unsigned char *m, size_t n)
{
    const unsigned char *v;
    size_t vn, pos = 0;
    bytes dec = {0};
    int ok;

    if (attr(m, n, &pos, 'e', &v, &vn) == 0) {
        return -1;
    }
    pos = 0;
    if (attr(m, n, &pos, 'v', &v, &vn) < 0) {
        return -1;
    }
    ok = ref_b64_decode(v, vn, 0, &dec) == 0 && dec.n == md->dlen
         && memcmp(dec.d, sig, md->dlen) == 0;
    bs_free(&dec);
    return ok;
}

/* ------------------------------------------------------------------ */
/* Driving the client                                                  */

typedef struct {
    const unsigned char *p;
    size_t n, pos;
} reader;

static unsigned
rd_byte(reader *r)
{
    return r->pos < r->n ? r->p[r->pos++] : 0;
}

static int
rd_chunk(reader *r, const unsigned char **p, size_t *n)
{
    size_t len;

    if (r->pos >= r->n) {
        *p = (const unsigned char *)"";
        *n = 0;
        return 0;
    }
    len = r->p[r->pos++];
    if (len == 255) {
        len = rd_byte(r);
        len |= (size_t)rd_byte(r) << 8;
    }
    if (len > r->n - r->pos) {
        len = r->n - r->pos;
    }
    *p = r->p + r->pos;
    *n = len;
    r->pos += len;
    return 1;
}

/* Error text: NUL-terminated within `max`, printable ASCII. */
static size_t
check_error_text(const char *e, size_t max)
{
    size_t i;

    CHECK(e != NULL);
    for (i = 0; i < max && e[i] != '\0'; i++) {
        CHECK(e[i] >= 0x20 && e[i] < 0x7f);
    }
    CHECK(i < max);
    return i;
}

/* Copy out[0..len) (every byte: ASan checks the whole range). */
static void
grab(const unsigned char *out, size_t len, bytes *dst)
{
    dst->n = 0;
    CHECK(out != NULL);
    bs_add(dst, out, len);
}

static int
has_byte(const unsigned char *p, size_t n, unsigned char b)
{
    return n > 0 && memchr(p, b, n) != NULL;
}

static int
is_scram(unsigned mech)
{
    return mech == SASL_SCRAM_SHA_1 || mech == SASL_SCRAM_SHA_256;
}

/* The expected OAuth error text: prefix + the challenge with
   unprintable bytes as '?', possibly cut short. */
static void
check_oauth_error(const char *e, const unsigned char *chal, size_t n)
{
    static const char prefix[] = "server rejected the token: ";
    size_t len = check_error_text(e, 4096), k = strlen(prefix), i;

    CHECK(len >= k && memcmp(e, prefix, k) == 0);
    CHECK(len - k == n || len >= 255);
    CHECK(len - k <= n);
    for (i = k; i < len; i++) {
        unsigned char ch = chal[i - k];
        CHECK(e[i] == ((ch >= 0x20 && ch < 0x7f) ? (char)ch : '?'));
    }
}

static sasl_status
step(sasl_client *c, const unsigned char *chal, size_t n, bytes *out)
{
    unsigned char *copy = exact_copy(chal, n);
    const unsigned char *o = (const unsigned char *)"junk";
    size_t len = 12345;
    sasl_status st = sasl_client_step(c, copy, n, &o, &len);

    xfree(copy);
    CHECK((int)st >= (int)SASL_CONTINUE && (int)st <= (int)SASL_ERR_CRYPTO);
    CHECK(st != SASL_ERR_NOMEM);
    out->n = 0;
    if (st == SASL_CONTINUE || st == SASL_FAILED_RESPOND) {
        grab(o, len, out);
        if (st == SASL_CONTINUE) {
            CHECK(check_error_text(sasl_client_error(c), 4096) == 0);
        }
    }
    if (st != SASL_CONTINUE) {
        CHECK(check_error_text(sasl_client_error(c), 4096) > 0);
    }
    return st;
}

static void
map_printable(const unsigned char *p, size_t n, bytes *dst)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)(0x21 + p[i] % 94);
        bs_addc(dst, ch == ',' ? '~' : ch);
    }
}

/* Flip bits of one byte among the first `limit` of m. */
static void
corrupt(bytes *m, size_t limit, unsigned pos, unsigned mask)
{
    if (limit > m->n) {
        limit = m->n;
    }
    if (limit > 0) {
        m->d[pos % limit] ^= (unsigned char)(mask ? mask : 1);
    }
}

static void
run_scram(sasl_client *c, unsigned mech, unsigned flags, unsigned cpos,
          unsigned cmask, reader *r, const bytes *user, const bytes *secret,
          const bytes *cnonce_in)
{
    scram_md md = md_of((int)mech);
    bytes cfb = {0}, cnonce = {0}, init = {0}, first = {0}, sent = {0};
    bytes final = {0}, out = {0}, ext = {0};
    const unsigned char *o = NULL, *p;
    size_t len = 0, n;
    int corrupted_first = (flags & 0x10) && !(flags & 0x20);
    int corrupted_final = (flags & 0x10) && (flags & 0x20);
    scram_ref client_view, server_view;
    sasl_status st;
    int want, first_valid = 0, final_valid = 0;
    size_t vlen = 0;

    /* initial response: "n,," client-first-message-bare */
    CHECK(sasl_client_initial(c, &o, &len) == 1);
    grab(o, len, &init);
    bs_adds(&cfb, "n=");
    add_saslname(&cfb, user->d, user->n);
    bs_adds(&cfb, ",r=");
    CHECK(init.n > 3 + cfb.n && memcmp(init.d, "n,,", 3) == 0
          && memcmp(init.d + 3, cfb.d, cfb.n) == 0);
    if (cnonce_in != NULL) {
        CHECK(bs_eq(cnonce_in, init.d + 3 + cfb.n, init.n - 3 - cfb.n));
    }
    else {
        /* RAND_bytes: 18 bytes as 24 characters of base64 */
        CHECK(init.n - 3 - cfb.n == 24);
        for (size_t i = 3 + cfb.n; i < init.n; i++) {
            CHECK(ref_b64_val(init.d[i]) >= 0);
        }
    }
    bs_add(&cnonce, init.d + 3 + cfb.n, init.n - 3 - cfb.n);
    bs_add(&cfb, cnonce.d, cnonce.n);
    CHECK(sasl_client_complete(c) == 0);

    /* server-first-message */
    if (flags & 0x04) {
        if (!rd_chunk(r, &p, &n)) {
            goto out;
        }
        bs_add(&first, p, n);
    }
    else {
        unsigned iter, saltn, variant;
        bytes salt = {0};
        char num[16];

        rd_chunk(r, &p, &n);
        variant = n > 0 ? p[0] >> 6 : 0;
        iter = 1 + (n > 0 ? p[0] : 0) % 64;
        saltn = 1 + (n > 1 ? p[1] & 31 : 7) % 24;
        for (size_t i = 0; i < saltn; i++) {
            bs_addc(&salt, 2 + i < n ? p[2 + i] : (unsigned char)i);
        }
        if (variant == 3) {
            /* a deviation the client must refuse */
            switch ((n > 1 ? p[1] : 0) >> 6) {
            case 0: iter = 0; break;
            case 1: iter = SCRAM_MAX_ITER + 1; break;
            case 2: salt.n = 0; break;
            default: bs_adds(&first, "m=x,"); break;
            }
        }
        bs_adds(&first, "r=");
        bs_add(&first, cnonce.d, cnonce.n);
        if (variant == 2) {
            /* no server part: the nonce does not extend the client's */
        }
        else if (n > 2 + saltn) {
            map_printable(p + 2 + saltn, n - 2 - saltn, &first);
        }
        else {
            bs_adds(&first, "3rfcNHYJY1ZVvWVs7j");
        }
        bs_adds(&first, ",s=");
        ref_b64_encode(salt.d, salt.n, &first);
        snprintf(num, sizeof(num), ",i=%u", iter);
        bs_adds(&first, num);
        if (flags & 0x40) {
            rd_chunk(r, &p, &n);
            bs_adds(&ext, ",x=");
            map_printable(p, n, &ext);
            bs_add(&first, ext.d, ext.n);
        }
        bs_free(&salt);
        first_valid = variant < 2;
    }
    bs_add(&sent, first.d, first.n);
    if (corrupted_first) {
        corrupt(&sent, sent.n, cpos, cmask);
    }
    ref_server_first(&md, &cfb, &cnonce, secret, sent.d, sent.n, 0,
                     &client_view);
    if (client_view.ok && client_view.iterations > RAW_ITER_CAP) {
        n_first_skipped++;
        goto out;                          /* too slow to be useful */
    }
    ref_server_first(&md, &cfb, &cnonce, secret, sent.d, sent.n, 1,
                     &client_view);
    st = step(c, sent.d, sent.n, &out);
    CHECK(sasl_client_complete(c) == 0);
    if (!(flags & 0x04) && !corrupted_first) {
        /* the harness built it valid, or deliberately not */
        CHECK(client_view.ok == first_valid);
    }
    if (!client_view.ok) {
        n_first_rejected++;
        CHECK(st == SASL_FAILED_CANCEL);
        goto out;
    }
    CHECK(st == SASL_CONTINUE);
    CHECK(bs_eq(&client_view.client_final, out.d, out.n));

    /* server-final-message, from the server's view of the exchange */
    if (flags & 0x08) {
        if (!rd_chunk(r, &p, &n)) {
            bs_free(&client_view.client_final);
            goto out;
        }
        bs_add(&final, p, n);
    }
    else {
        /* optional config chunk: byte 0 % 4 = 0 the right signature,
           1 a signature of byte 1 % 67 bytes (the right one's prefix,
           then bytes of the chunk), 2 the right one without '='
           padding, 3 "e=" and the chunk's text */
        unsigned variant = 0;

        if (rd_chunk(r, &p, &n) && n > 0) {
            variant = p[0] % 4;
        }
        memset(&server_view, 0, sizeof(server_view));
        ref_server_first(&md, &cfb, &cnonce, secret, first.d, first.n, 1,
                         &server_view);
        if (variant == 3) {
            bs_adds(&final, "e=");
            map_printable(p + 1, n - 1, &final);
        }
        else if (variant == 1) {
            size_t k = (n > 1 ? p[1] : 0) % 67;
            bytes sig = {0};

            for (size_t i = 0; i < k; i++) {
                bs_addc(&sig, i < md.dlen ? server_view.server_sig[i]
                               : 2 + (i - md.dlen) < n ? p[2 + (i - md.dlen)]
                               : (unsigned char)i);
            }
            bs_adds(&final, "v=");
            ref_b64_encode(sig.d, sig.n, &final);
            bs_free(&sig);
        }
        else {
            bs_adds(&final, "v=");
            ref_b64_encode(server_view.server_sig, md.dlen, &final);
            while (variant == 2 && final.d[final.n - 1] == '=') {
                final.n--;
            }
        }
        final_valid = variant == 0;
        vlen = final.n;
        bs_add(&final, ext.d, ext.n);
        bs_free(&server_view.client_final);
    }
    if (corrupted_final) {
        /* a built one: only within "v=..." (the extension is free text) */
        corrupt(&final, (flags & 0x08) ? final.n : vlen, cpos, cmask);
    }
    want = ref_server_final(&md, client_view.server_sig, final.d, final.n);
    st = step(c, final.d, final.n, &out);
    bs_free(&client_view.client_final);
    if (want < 0) {
        n_final_cancel++;
        CHECK(st == SASL_FAILED_CANCEL);
        CHECK(sasl_client_complete(c) == 0);
        goto out;
    }
    /* exactly the right signature verifies ... */
    CHECK(sasl_client_complete(c) == want);
    CHECK(st == (want ? SASL_CONTINUE : SASL_FAILED_UNTRUSTED));
    /* ... a built server-final always does, unless a byte of either
       server message was corrupted: then it never does */
    if (final_valid) {
        CHECK(want == !(flags & 0x10));
    }
    if (!want) {
        n_untrusted++;
        goto out;
    }
    n_verified++;
    CHECK(out.n == 0);

    /* nothing more is expected */
    if (rd_chunk(r, &p, &n)) {
        st = step(c, p, n, &out);
        CHECK(st == SASL_FAILED_CANCEL);
    }

out:
    bs_free(&cfb);
    bs_free(&cnonce);
    bs_free(&init);
    bs_free(&first);
    bs_free(&sent);
    bs_free(&final);
    bs_free(&out);
    bs_free(&ext);
}

static int
ref_hmac_md5_hex(const bytes *key, const unsigned char *m, size_t n,
                 char hex[33])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int l = 0;

    if (HMAC(EVP_md5(), key->n ? key->d : (const unsigned char *)"",
             (int)key->n, m, n, d, &l) == NULL || l != 16) {
        return -1;
    }
    for (int i = 0; i < 16; i++) {
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    }
    return 0;
}

static void
run_other(sasl_client *c, unsigned mech, reader *r, const bytes *user,
          const bytes *secret)
{
    bytes want = {0}, got = {0};
    const unsigned char *o = NULL, *p;
    size_t len = 0, n;
    int rc = sasl_client_initial(c, &o, &len);

    switch (mech) {
    case SASL_PLAIN:
        bs_addc(&want, 0);
        bs_add(&want, user->d, user->n);
        bs_addc(&want, 0);
        bs_add(&want, secret->d, secret->n);
        break;
    case SASL_XOAUTH2:
        bs_adds(&want, "user=");
        bs_add(&want, user->d, user->n);
        bs_adds(&want, "\001auth=Bearer ");
        bs_add(&want, secret->d, secret->n);
        bs_adds(&want, "\001\001");
        break;
    case SASL_OAUTHBEARER:
        bs_adds(&want, "n,");
        if (user->n) {
            bs_adds(&want, "a=");
            add_saslname(&want, user->d, user->n);
        }
        bs_adds(&want, ",\001auth=Bearer ");
        bs_add(&want, secret->d, secret->n);
        bs_adds(&want, "\001\001");
        break;
    case SASL_EXTERNAL:
        /* RFC 4422 A.1: the authorization identity alone (may be empty);
           the secret is never sent */
        bs_add(&want, user->d, user->n);
        break;
    default:
        break;
    }
    if (mech == SASL_LOGIN || mech == SASL_CRAM_MD5) {
        CHECK(rc == 0);
    }
    else {
        CHECK(rc == 1);
        grab(o, len, &got);
        CHECK(bs_eq(&want, got.d, got.n));
    }
    CHECK(sasl_client_complete(c) == 1);

    for (int k = 0; rd_chunk(r, &p, &n); k++) {
        sasl_status st = step(c, p, n, &got);
        char hex[33];

        CHECK(sasl_client_complete(c) == 1);
        want.n = 0;
        switch (mech) {
        case SASL_LOGIN:
            if (k < 2) {
                CHECK(st == SASL_CONTINUE);
                bs_add(&want, k == 0 ? user->d : secret->d,
                       k == 0 ? user->n : secret->n);
                CHECK(bs_eq(&want, got.d, got.n));
                continue;
            }
            break;
        case SASL_CRAM_MD5:
            if (k == 0 && n > 0) {
                if (ref_hmac_md5_hex(secret, p, n, hex) < 0) {
                    CHECK(st == SASL_ERR_CRYPTO);      /* e.g. FIPS */
                    goto done;
                }
                CHECK(st == SASL_CONTINUE);
                bs_add(&want, user->d, user->n);
                bs_adds(&want, " ");
                bs_adds(&want, hex);
                CHECK(bs_eq(&want, got.d, got.n));
                continue;
            }
            break;
        case SASL_XOAUTH2:
        case SASL_OAUTHBEARER:
            if (k == 0) {
                CHECK(st == SASL_FAILED_RESPOND);
                if (mech == SASL_OAUTHBEARER) {
                    bs_adds(&want, "\001");
                }
                CHECK(bs_eq(&want, got.d, got.n));
                check_oauth_error(sasl_client_error(c), p, n);
                /* auth.c sends that response and reads on: a server
                   that answers with another challenge is cancelled */
                if (rd_chunk(r, &p, &n)) {
                    CHECK(step(c, p, n, &got) == SASL_FAILED_CANCEL);
                    CHECK(sasl_client_complete(c) == 1);
                }
                goto done;
            }
            break;
        default:
            break;
        }
        CHECK(st == SASL_FAILED_CANCEL);
        goto done;          /* the caller cancels: no more steps */
    }
    n_other_ok++;
    bs_free(&want);
    bs_free(&got);
    return;
done:
    n_other_failed++;
    bs_free(&want);
    bs_free(&got);
}

static void
run_sasl(reader *r, unsigned mech)
{
    unsigned flags = rd_byte(r), cpos = 0, cmask = 0;
    size_t error_size = 256;
    const unsigned char *p;
    size_t n;
    bytes user = {0}, secret = {0}, nonce = {0};
    unsigned char *ucopy, *scopy;
    char *error;
    int nonce_mode = flags & 3, expect_input = 0;
    const char *nonce_arg = NULL;
    sasl_credentials cred;
    sasl_client *c;
    sasl_status status = (sasl_status)-1;

    if (flags & 0x10) {
        cpos = rd_byte(r);
        cmask = rd_byte(r);
    }
    if (flags & 0x80) {
        error_size = rd_byte(r) % 40;
    }
    rd_chunk(r, &p, &n);
    bs_add(&user, p, n);
    rd_chunk(r, &p, &n);
    bs_add(&secret, p, n);
    if (nonce_mode == 1) {
        bs_adds(&nonce, RFC5802_NONCE);
    }
    else if (nonce_mode >= 2) {
        rd_chunk(r, &p, &n);
        if (nonce_mode == 2) {
            map_printable(p, n, &nonce);
        }
        else {
            bs_add(&nonce, p, n);
        }
    }
    if (nonce_mode != 0) {
        nonce_arg = nonce.n ? (const char *)nonce.d : "";
    }

    /* which credentials sasl_client_new() must refuse (sasl.h) */
    switch (mech) {
    case SASL_PLAIN:
        expect_input = has_byte(user.d, user.n, 0)
                       || has_byte(secret.d, secret.n, 0);
        break;
    case SASL_SCRAM_SHA_1:
    case SASL_SCRAM_SHA_256:
        expect_input = has_byte(user.d, user.n, 0)
                       || has_byte(secret.d, secret.n, 0) || user.n == 0;
        if (nonce_arg != NULL) {
            expect_input |= nonce.n == 0;
            for (size_t i = 0; i < nonce.n; i++) {
                expect_input |= nonce.d[i] < 0x21 || nonce.d[i] > 0x7e
                                || nonce.d[i] == ',';
            }
        }
        break;
    case SASL_EXTERNAL:
        expect_input = has_byte(user.d, user.n, 0);
        break;
    case SASL_XOAUTH2:
    case SASL_OAUTHBEARER:
        /* sasl.h names \x01; sasl.c also refuses NUL */
        expect_input = has_byte(user.d, user.n, 0)
                       || has_byte(secret.d, secret.n, 0)
                       || has_byte(user.d, user.n, 1)
                       || has_byte(secret.d, secret.n, 1);
        break;
    default:
        break;
    }

    ucopy = exact_copy(user.d, user.n);
    scopy = exact_copy(secret.d, secret.n);
    cred.user = (const char *)ucopy;
    cred.user_len = user.n;
    cred.secret = (const char *)scopy;
    cred.secret_len = secret.n;
    error = error_size ? malloc(error_size) : NULL;
    if (error != NULL) {
        memset(error, 0xA5, error_size);
    }
    {
        unsigned char *ncopy = nonce_arg ? exact_copy(nonce.d, nonce.n) : NULL;
        c = sasl_client_new((sasl_mech)mech, &cred, (const char *)ncopy,
                            nonce.n, &status, error, error_size);
        if (ncopy != NULL) {
            xfree(ncopy);
        }
    }
    /* the credentials were copied in */
    memset(ucopy, 0x5A, user.n);
    memset(scopy, 0x5A, secret.n);
    xfree(ucopy);
    xfree(scopy);
    if (error != NULL) {
        check_error_text(error, error_size);
    }
    if (expect_input) {
        n_refused++;
        CHECK(c == NULL && status == SASL_ERR_INPUT);
        if (error != NULL && error_size > 1) {
            CHECK(error[0] != '\0');
        }
    }
    else {
        CHECK(c != NULL);
        if (error != NULL) {
            CHECK(error[0] == '\0');
        }
        CHECK(check_error_text(sasl_client_error(c), 4096) == 0);
        if (is_scram(mech)) {
            run_scram(c, mech, flags, cpos, cmask, r, &user, &secret,
                      nonce_arg ? &nonce : NULL);
        }
        else {
            run_other(c, mech, r, &user, &secret);
        }
        sasl_client_free(c);
    }
    free(error);
    bs_free(&user);
    bs_free(&secret);
    bs_free(&nonce);
}

/* ------------------------------------------------------------------ */
/* Known answers: the reference itself must be right                   */

static void
kat_scram(unsigned mech, const char *nonce, const char *first,
          const char *client_final, const char *server_final)
{
    scram_md md = md_of((int)mech);
    bytes cfb = {0}, cn = {0}, pw = {0}, v = {0}, out = {0};
    const unsigned char *o;
    size_t len;
    sasl_credentials cred = {"user", 4, "pencil", 6};
    sasl_status st;
    scram_ref r;
    sasl_client *c;

    bs_adds(&cfb, "n=user,r=");
    bs_adds(&cfb, nonce);
    bs_adds(&cn, nonce);
    bs_adds(&pw, "pencil");
    ref_server_first(&md, &cfb, &cn, &pw, (const unsigned char *)first,
                     strlen(first), 1, &r);
    CHECK(r.ok);
    CHECK(bs_eq(&r.client_final, (const unsigned char *)client_final,
                strlen(client_final)));
    bs_adds(&v, "v=");
    ref_b64_encode(r.server_sig, md.dlen, &v);
    CHECK(bs_eq(&v, (const unsigned char *)server_final, strlen(server_final)));

    /* and the library agrees */
    c = sasl_client_new((sasl_mech)mech, &cred, nonce, strlen(nonce), &st,
                        NULL, 0);
    CHECK(c != NULL);
    CHECK(sasl_client_initial(c, &o, &len) == 1);
    CHECK(step(c, (const unsigned char *)first, strlen(first), &out)
          == SASL_CONTINUE);
    CHECK(bs_eq(&out, (const unsigned char *)client_final, strlen(client_final)));
    CHECK(step(c, (const unsigned char *)server_final, strlen(server_final),
               &out) == SASL_CONTINUE);
    CHECK(sasl_client_complete(c) == 1);
    sasl_client_free(c);
    bs_free(&r.client_final);
    bs_free(&cfb);
    bs_free(&cn);
    bs_free(&pw);
    bs_free(&v);
    bs_free(&out);
}

static void
self_test(void)
{
    static int done;
    bytes key = {0};
    char hex[33];

    if (done) {
        return;
    }
    done = 1;
    /* RFC 5802 section 5 */
    kat_scram(SASL_SCRAM_SHA_1, RFC5802_NONCE,
              "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
              "s=QSXCR+Q6sek8bf92,i=4096",
              "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
              "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
              "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    /* RFC 7677 section 3 */
    kat_scram(SASL_SCRAM_SHA_256, "rOprNGfwEbeRWgbNEkqO",
              "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
              "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
              "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
              "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
              "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    /* RFC 2195 section 2 */
    bs_adds(&key, "tanstaaftanstaaf");
    if (ref_hmac_md5_hex(&key, (const unsigned char *)
                         "<1896.697170952@postoffice.reston.mci.net>", 42,
                         hex) == 0) {
        CHECK(strcmp(hex, "b913a602c7eda7a495b4e6e7334d3890") == 0);
    }
    bs_free(&key);
    /* names */
    for (int m = 0; m < SASL_MECH_COUNT; m++) {
        CHECK(strcmp(sasl_mech_name((sasl_mech)m), NAMES[m]) == 0);
    }
    CHECK(strcmp(sasl_mech_name(SASL_MECH_COUNT), "?") == 0);
    CHECK(sasl_mech_from_name("scram-sha-256", 13) == SASL_SCRAM_SHA_256);
    CHECK(sasl_mech_from_name("Cram-Md5", 8) == SASL_CRAM_MD5);
    /* a failed step latches: a SCRAM server-first that fails, then a
       server-final whose signature is the zero bytes a never-computed
       signature would hold, must not make the exchange complete */
    {
        sasl_credentials cred = {"u", 1, "p", 1};
        sasl_status st = SASL_CONTINUE;
        const unsigned char *out;
        size_t len;
        static const char bad_first[] = "r=abc,s=QSXCR+Q6sek8bf92,i=4096";
        static const char zero_final[] = "v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        sasl_client *c = sasl_client_new(SASL_SCRAM_SHA_1, &cred, "abc", 3,
                                          &st, NULL, 0);

        CHECK(c != NULL);
        CHECK(sasl_client_initial(c, &out, &len) == 1);
        CHECK(sasl_client_step(c, (const unsigned char *)bad_first,
                               sizeof(bad_first) - 1, &out, &len)
              == SASL_FAILED_CANCEL);
        CHECK(sasl_client_step(c, (const unsigned char *)zero_final,
                               sizeof(zero_final) - 1, &out, &len)
              == SASL_FAILED_CANCEL);
        CHECK(out == NULL && len == 0);
        CHECK(strcmp(sasl_client_error(c), "the exchange already failed")
              == 0);
        CHECK(sasl_client_complete(c) == 0);
        sasl_client_free(c);
    }
    /* an unknown mechanism; NULL to free */
    {
        sasl_credentials cred = {"u", 1, "p", 1};
        sasl_status st = SASL_CONTINUE;
        char error[64];

        memset(error, 0xA5, sizeof(error));
        CHECK(sasl_client_new(SASL_MECH_COUNT, &cred, NULL, 0, &st, error,
                              sizeof(error)) == NULL);
        CHECK(st == SASL_ERR_INPUT && check_error_text(error, sizeof(error)) > 0);
        sasl_client_free(NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size, 0};
    unsigned mech;

    self_test();
    check_b64(data, size);
    check_mech_name(data, size);
    if (size < 1) {
        return 0;
    }
    mech = (unsigned)(rd_byte(&r) % 9);
    if (mech == 8) {
        check_b64(data + 1, size - 1);
        return 0;
    }
    run_sasl(&r, mech);
    return 0;
}

/* ------------------------------------------------------------------ */
#ifdef FUZZ_STANDALONE
#include "standalone.h"

static void
random_chunk(bytes *b, size_t max)
{
    static const char alphabet[] =
        "r=s=i=v=e=m=,,=2C=3D==AQz+/09" RFC5802_NONCE "\x01\x7f";
    size_t n = (size_t)(rng() % (max + 1));

    bs_addc(b, (unsigned char)n);
    for (size_t i = 0; i < n; i++) {
        uint64_t x = rng();
        bs_addc(b, (x & 3) ? (unsigned char)alphabet[(x >> 8) % (sizeof(alphabet) - 1)]
                           : (unsigned char)(x >> 16));
    }
}

static void
random_inputs(long iterations)
{
    bytes b = {0};

    for (long it = 0; it < iterations; it++) {
        unsigned mech = (unsigned)(rng() % 9), flags = (unsigned)rng() & 0xFF;
        int chunks = (int)(rng() % 7);

        b.n = 0;
        bs_addc(&b, (unsigned char)mech);
        if (mech == 8) {
            /* base64-ish text */
            size_t n = (size_t)(rng() % 40);
            for (size_t i = 0; i < n; i++) {
                uint64_t x = rng();
                bs_addc(&b, (x & 15) ? (unsigned char)B64[(x >> 8) % 64]
                        : (x & 16) ? '=' : (unsigned char)(x >> 16));
            }
            if (rng() % 2) {
                while (b.n > 1 && b.d[b.n - 1] != '=' && b.n % 4 != 1) {
                    b.n--;
                }
            }
        }
        else {
            if (rng() % 2) {
                flags &= ~0x80u;   /* mostly: no error-size byte */
            }
            bs_addc(&b, (unsigned char)flags);
            if (flags & 0x10) {
                bs_addc(&b, (unsigned char)rng());
                bs_addc(&b, (unsigned char)rng());
            }
            if (flags & 0x80) {
                bs_addc(&b, (unsigned char)rng());
            }
            bs_adds(&b, "\004user");             /* user */
            random_chunk(&b, 12);                /* secret */
            while (chunks-- > 0) {
                random_chunk(&b, 120);
            }
        }
        LLVMFuzzerTestOneInput(b.d, b.n);
    }
    bs_free(&b);
}

/* The seed corpus: one valid exchange per mechanism, plus the variants
   that reach each SCRAM branch. */
static void
put(bytes *b, const char *s)
{
    size_t n = strlen(s);
    CHECK(n < 255);
    bs_addc(b, (unsigned char)n);
    bs_add(b, s, n);
}

static void
write_seed(const char *dir, const char *name, const bytes *b)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(b->d, 1, b->n, f) == b->n);
    CHECK(fclose(f) == 0);
    LLVMFuzzerTestOneInput(b->d, b->n);
}

static void
write_seeds(const char *dir)
{
    bytes b = {0};
    static const char cfg[] = "\x0f\x0b" "saltsaltsalt" "3rfcNHYJY1ZVvWVs7j";
    const unsigned char bcfg[] = {(unsigned char)(sizeof(cfg) - 1)};

#define SEED(name, body) do { b.n = 0; body; write_seed(dir, name, &b); } while (0)
    SEED("plain", bs_addc(&b, SASL_PLAIN); bs_addc(&b, 0);
         put(&b, "user"); put(&b, "pencil"));
    SEED("login", bs_addc(&b, SASL_LOGIN); bs_addc(&b, 0);
         put(&b, "user"); put(&b, "pencil");
         put(&b, "Username:"); put(&b, "Password:"));
    SEED("cram_md5", bs_addc(&b, SASL_CRAM_MD5); bs_addc(&b, 0);
         put(&b, "tim"); put(&b, "tanstaaftanstaaf");
         put(&b, "<1896.697170952@postoffice.reston.mci.net>"));
    /* built server messages, RFC 5802 nonce */
    SEED("scram_sha1_built", bs_addc(&b, SASL_SCRAM_SHA_1); bs_addc(&b, 0x01);
         put(&b, "user"); put(&b, "pencil");
         bs_add(&b, bcfg, 1); bs_add(&b, cfg, sizeof(cfg) - 1));
    /* raw RFC 5802 exchange */
    SEED("scram_sha1_rfc", bs_addc(&b, SASL_SCRAM_SHA_1); bs_addc(&b, 0x0d);
         put(&b, "user"); put(&b, "pencil");
         put(&b, "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                 "s=QSXCR+Q6sek8bf92,i=4096");
         put(&b, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="));
    /* raw RFC 7677 exchange, nonce given as a raw chunk */
    SEED("scram_sha256_rfc", bs_addc(&b, SASL_SCRAM_SHA_256); bs_addc(&b, 0x0f);
         put(&b, "user"); put(&b, "pencil"); put(&b, "rOprNGfwEbeRWgbNEkqO");
         put(&b, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                 "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
         put(&b, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));
    /* random nonce, user needing saslname escapes, extensions */
    SEED("scram_sha256_ext", bs_addc(&b, SASL_SCRAM_SHA_256); bs_addc(&b, 0x40);
         put(&b, "us,e=r"); put(&b, "p\xc3\xa4ss");
         bs_add(&b, bcfg, 1); bs_add(&b, cfg, sizeof(cfg) - 1);
         put(&b, "ext"));
    /* a corrupted server-final must not verify */
    SEED("scram_sha256_bad_final", bs_addc(&b, SASL_SCRAM_SHA_256);
         bs_addc(&b, 0x32); bs_addc(&b, 7); bs_addc(&b, 0x20);
         put(&b, "user"); put(&b, "pencil"); put(&b, "clientnonce");
         bs_add(&b, bcfg, 1); bs_add(&b, cfg, sizeof(cfg) - 1));
    /* a server nonce that does not extend the client's (variant 2) */
    SEED("scram_sha1_nonce_not_extended", bs_addc(&b, SASL_SCRAM_SHA_1);
         bs_addc(&b, 0x01); put(&b, "user"); put(&b, "pencil");
         put(&b, "\x8f\x0b" "saltsaltsalt"));
    /* a server-final with a 66-byte signature (88 characters) */
    SEED("scram_sha256_long_sig", bs_addc(&b, SASL_SCRAM_SHA_256);
         bs_addc(&b, 0x01); put(&b, "user"); put(&b, "pencil");
         bs_add(&b, bcfg, 1); bs_add(&b, cfg, sizeof(cfg) - 1);
         put(&b, "\x01\x42"));
    /* an iteration count above sasl.c's limit (refused before PBKDF2) */
    SEED("scram_sha1_iter_range", bs_addc(&b, SASL_SCRAM_SHA_1); bs_addc(&b, 0x05);
         put(&b, "user"); put(&b, "pencil");
         put(&b, "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                 "s=QSXCR+Q6sek8bf92,i=99999999"));
    /* a server error */
    SEED("scram_sha1_error", bs_addc(&b, SASL_SCRAM_SHA_1); bs_addc(&b, 0x09);
         put(&b, "user"); put(&b, "pencil");
         bs_add(&b, bcfg, 1); bs_add(&b, cfg, sizeof(cfg) - 1);
         put(&b, "e=invalid-proof"));
    SEED("xoauth2", bs_addc(&b, SASL_XOAUTH2); bs_addc(&b, 0);
         put(&b, "someuser@example.com"); put(&b, "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");
         put(&b, "{\"status\":\"401\",\"schemes\":\"bearer\","
                 "\"scope\":\"https://mail.google.com/\"}"));
    SEED("oauthbearer", bs_addc(&b, SASL_OAUTHBEARER); bs_addc(&b, 0);
         put(&b, "user@example.com"); put(&b, "vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==");
         put(&b, "{\"status\":\"invalid_token\"}"));
    SEED("external", bs_addc(&b, SASL_EXTERNAL); bs_addc(&b, 0);
         put(&b, "alice"); put(&b, ""));
    /* the certificate's own identity; a challenge it must cancel */
    SEED("external_empty", bs_addc(&b, SASL_EXTERNAL); bs_addc(&b, 0);
         put(&b, ""); put(&b, "ignored"); put(&b, ""));
    SEED("b64", bs_addc(&b, 8); bs_adds(&b, "cGVuY2lsAA=="));
    SEED("b64_unpadded", bs_addc(&b, 8); bs_adds(&b, "dXNlcg"));
#undef SEED
    bs_free(&b);
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
            printf("fuzz_sasl: %ld random inputs OK\n", iterations);
            continue;
        }
        if (strcmp(argv[i], "-seeds") == 0 && i + 1 < argc) {
            write_seeds(argv[++i]);
            printf("fuzz_sasl: seeds written to %s\n", argv[i]);
            continue;
        }
        rc |= replay(argv[i], &count);
    }
    printf("fuzz_sasl: replayed %zu inputs%s\n", count, rc ? " (with errors)" : "");
    printf("fuzz_sasl: new() refused %lu; SCRAM: server-first rejected %lu, "
           "skipped (i > %lu) %lu, verified %lu, untrusted %lu, final "
           "cancelled %lu; others: ran out of challenges %lu, stopped on "
           "a failure %lu\n", n_refused, n_first_rejected, RAW_ITER_CAP,
           n_first_skipped, n_verified, n_untrusted, n_final_cancel,
           n_other_ok, n_other_failed);
    return rc;
}
#endif
