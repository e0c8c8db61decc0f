/* sasl.c -- the built-in SASL client mechanisms; see sasl.h.
 *
 * No Python: plain C and OpenSSL's libcrypto (EVP digests, HMAC(),
 * PKCS5_PBKDF2_HMAC(), RAND_bytes(), CRYPTO_memcmp(), OPENSSL_cleanse()).
 * Every buffer that may hold a credential or a key is wiped before it is
 * freed, whether it held one or not.
 *
 * May call: nothing of cpoplib.
 */
#include "sasl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#  include <openssl/core_names.h>
#endif
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define SCRAM_NONCE_BYTES 18          /* 24 characters of base64 */
/* PBKDF2 iterations between two calls of the progress callback: about
 * 10 ms of SHA-256 on a current x86-64 core. */
#define PBKDF2_CHUNK 20000UL

/* ---- a growable byte buffer, wiped when freed ---- */

typedef struct {
    unsigned char *data;
    size_t len;
    size_t cap;
} sasl_buf;

static void
buf_wipe(sasl_buf *b)
{
    if (b->data != NULL) {
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }
    b->data = NULL;
    b->len = b->cap = 0;
}

static void
buf_clear(sasl_buf *b)
{
    if (b->data != NULL) {
        OPENSSL_cleanse(b->data, b->cap);
    }
    b->len = 0;
}

/* Make room for `extra` more bytes (plus a NUL); 0 or -1. */
static int
buf_reserve(sasl_buf *b, size_t extra)
{
    size_t need, cap;
    unsigned char *data;

    if (extra > SIZE_MAX - b->len - 1) {
        return -1;
    }
    need = b->len + extra + 1;
    if (need <= b->cap) {
        return 0;
    }
    cap = b->cap ? b->cap : 64;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    /* never realloc(): the old block would be freed without a wipe */
    data = malloc(cap);
    if (data == NULL) {
        return -1;
    }
    if (b->data != NULL) {
        memcpy(data, b->data, b->len);
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int
buf_add(sasl_buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len) < 0) {
        return -1;
    }
    if (len > 0) {
        memcpy(b->data + b->len, data, len);
    }
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

static int
buf_adds(sasl_buf *b, const char *s)
{
    return buf_add(b, s, strlen(s));
}

static int
buf_add_b64(sasl_buf *b, const unsigned char *data, size_t len)
{
    size_t n = SASL_B64_LEN(len);

    if (len > (SIZE_MAX - 3) / 4 * 3 || buf_reserve(b, n) < 0) {
        return -1;
    }
    sasl_b64_encode(data, len, (char *)b->data + b->len);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

/* ---- base64 ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void
sasl_b64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t i = 0, o = 0;

    for (; i + 2 < n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8)
                     | in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
}

static int
b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') {
        return ch - 'A';
    }
    if (ch >= 'a' && ch <= 'z') {
        return ch - 'a' + 26;
    }
    if (ch >= '0' && ch <= '9') {
        return ch - '0' + 52;
    }
    if (ch == '+') {
        return 62;
    }
    if (ch == '/') {
        return 63;
    }
    return -1;
}

int
sasl_b64_decode(const char *in, size_t in_len, unsigned char *out,
                size_t *out_len, int lenient_padding)
{
    size_t data_len = in_len, pads, i, o = 0, rem;
    uint32_t acc = 0;
    int bits = 0;

    while (data_len > 0 && in[data_len - 1] == '=') {
        data_len--;
    }
    pads = in_len - data_len;
    rem = data_len % 4;
    if (pads > 2 || rem == 1) {
        return -1;
    }
    if (pads > 0 && (data_len + pads) % 4 != 0) {
        return -1;                /* wrong amount of padding */
    }
    if (pads == 0 && rem != 0 && !lenient_padding) {
        return -1;                /* padding missing */
    }
    for (i = 0; i < data_len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0) {
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) {
        return -1;                /* non-zero bits in the last character */
    }
    *out_len = o;
    return 0;
}

/* ---- mechanism names ---- */

static const char *const mech_names[SASL_MECH_COUNT] = {
    [SASL_PLAIN] = "PLAIN",
    [SASL_LOGIN] = "LOGIN",
    [SASL_CRAM_MD5] = "CRAM-MD5",
    [SASL_SCRAM_SHA_1] = "SCRAM-SHA-1",
    [SASL_SCRAM_SHA_256] = "SCRAM-SHA-256",
    [SASL_XOAUTH2] = "XOAUTH2",
    [SASL_OAUTHBEARER] = "OAUTHBEARER",
    [SASL_EXTERNAL] = "EXTERNAL",
};

int
sasl_mech_from_name(const char *name, size_t len)
{
    for (int m = 0; m < SASL_MECH_COUNT; m++) {
        const char *known = mech_names[m];
        size_t i;
        if (strlen(known) != len) {
            continue;
        }
        for (i = 0; i < len; i++) {
            char ch = name[i];
            if (ch >= 'a' && ch <= 'z') {
                ch = (char)(ch - 'a' + 'A');
            }
            if (ch != known[i]) {
                break;
            }
        }
        if (i == len) {
            return m;
        }
    }
    return -1;
}

const char *
sasl_mech_name(sasl_mech mech)
{
    return (unsigned)mech < SASL_MECH_COUNT ? mech_names[mech] : "?";
}

/* ---- the client ---- */

struct sasl_client {
    sasl_mech mech;
    int step;                 /* challenges answered so far */
    int verified;             /* SCRAM: the server signature matched */
    int failed;               /* a step failed: every later step fails */
    sasl_buf user;
    sasl_buf secret;
    sasl_buf out;             /* the last response */
    /* SCRAM */
    const EVP_MD *md;
    size_t dlen;
    sasl_buf nonce;           /* the client nonce */
    sasl_buf client_first_bare;
    unsigned char server_signature[EVP_MAX_MD_SIZE];
    unsigned long max_iterations;
    int (*progress)(void *arg);
    void *progress_arg;
    char error[512];
};

/* Record a failure message; `detail` (may be NULL) is server-supplied text
 * of `detail_len` bytes, copied with unprintable bytes shown as '?'. */
static void
set_error(sasl_client *c, const char *msg, const unsigned char *detail,
          size_t detail_len)
{
    size_t n = 0, max = sizeof(c->error) - 1;

    while (*msg != '\0' && n < max) {
        c->error[n++] = *msg++;
    }
    for (size_t i = 0; detail != NULL && i < detail_len && n < max; i++) {
        unsigned char ch = detail[i];
        c->error[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    c->error[n] = '\0';
}

/* The reason of libcrypto's first queued error, after `what`. */
static sasl_status
crypto_error(sasl_client *c, const char *what)
{
    char reason[256] = "";
    unsigned long code = ERR_get_error();

    if (code != 0) {
        ERR_error_string_n(code, reason, sizeof(reason));
    }
    ERR_clear_error();
    set_error(c, what, (const unsigned char *)reason, strlen(reason));
    return SASL_ERR_CRYPTO;
}

static sasl_status
nomem(sasl_client *c)
{
    set_error(c, "out of memory", NULL, 0);
    return SASL_ERR_NOMEM;
}

static int
contains_byte(const sasl_buf *b, unsigned char ch)
{
    return b->len > 0 && memchr(b->data, ch, b->len) != NULL;
}

/* SCRAM's saslname (RFC 5802 5.1): ',' as "=2C", '=' as "=3D". */
static int
add_saslname(sasl_buf *b, const sasl_buf *name)
{
    for (size_t i = 0; i < name->len; i++) {
        unsigned char ch = name->data[i];
        int rc = ch == ',' ? buf_adds(b, "=2C")
                 : ch == '=' ? buf_adds(b, "=3D")
                 : buf_add(b, &ch, 1);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

static sasl_status
scram_setup(sasl_client *c, const char *nonce, size_t nonce_len)
{
    unsigned char raw[SCRAM_NONCE_BYTES];
    char encoded[SASL_B64_LEN(SCRAM_NONCE_BYTES)];

    c->md = c->mech == SASL_SCRAM_SHA_1 ? EVP_sha1() : EVP_sha256();
    c->dlen = (size_t)EVP_MD_size(c->md);
    if (c->dlen == 0 || c->dlen > EVP_MAX_MD_SIZE) {
        return crypto_error(c, "SCRAM digest unavailable: ");
    }
    if (c->user.len == 0) {
        set_error(c, "SCRAM needs a user name", NULL, 0);
        return SASL_ERR_INPUT;
    }
    if (nonce != NULL) {
        for (size_t i = 0; i < nonce_len; i++) {
            if (nonce[i] < 0x21 || nonce[i] > 0x7e || nonce[i] == ',') {
                set_error(c, "SCRAM nonce must be printable, without ','",
                          NULL, 0);
                return SASL_ERR_INPUT;
            }
        }
        if (nonce_len == 0 || buf_add(&c->nonce, nonce, nonce_len) < 0) {
            if (nonce_len == 0) {
                set_error(c, "empty SCRAM nonce", NULL, 0);
                return SASL_ERR_INPUT;
            }
            return nomem(c);
        }
    }
    else {
        if (RAND_bytes(raw, sizeof(raw)) != 1) {
            return crypto_error(c, "RAND_bytes failed: ");
        }
        sasl_b64_encode(raw, sizeof(raw), encoded);
        OPENSSL_cleanse(raw, sizeof(raw));
        if (buf_add(&c->nonce, encoded, sizeof(encoded)) < 0) {
            return nomem(c);
        }
    }
    if (buf_adds(&c->client_first_bare, "n=") < 0
        || add_saslname(&c->client_first_bare, &c->user) < 0
        || buf_adds(&c->client_first_bare, ",r=") < 0
        || buf_add(&c->client_first_bare, c->nonce.data, c->nonce.len) < 0) {
        return nomem(c);
    }
    return SASL_CONTINUE;
}

sasl_client *
sasl_client_new(sasl_mech mech, const sasl_credentials *cred,
                const char *nonce, size_t nonce_len, sasl_status *status,
                char *error, size_t error_size)
{
    sasl_client *c;
    sasl_status rc = SASL_CONTINUE;

    if (error_size > 0) {
        error[0] = '\0';
    }
    if ((unsigned)mech >= SASL_MECH_COUNT) {
        snprintf(error, error_size, "unknown mechanism");
        *status = SASL_ERR_INPUT;
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(error, error_size, "out of memory");
        *status = SASL_ERR_NOMEM;
        return NULL;
    }
    c->mech = mech;
    c->max_iterations = SASL_SCRAM_MAX_ITERATIONS;
    if (buf_add(&c->user, cred->user, cred->user_len) < 0
        || buf_add(&c->secret, cred->secret, cred->secret_len) < 0) {
        rc = nomem(c);
        goto done;
    }
    switch (mech) {
    case SASL_PLAIN:
        if (contains_byte(&c->user, 0) || contains_byte(&c->secret, 0)) {
            set_error(c, "PLAIN cannot send a NUL character", NULL, 0);
            rc = SASL_ERR_INPUT;
        }
        break;
    case SASL_EXTERNAL:
        /* RFC 4422 A.1: the authzid is UTF-8 without NUL */
        if (contains_byte(&c->user, 0)) {
            set_error(c, "EXTERNAL cannot send a NUL character", NULL, 0);
            rc = SASL_ERR_INPUT;
        }
        break;
    case SASL_XOAUTH2:
    case SASL_OAUTHBEARER:
        if (contains_byte(&c->user, 1) || contains_byte(&c->secret, 1)
            || contains_byte(&c->user, 0) || contains_byte(&c->secret, 0)) {
            set_error(c, "an OAuth user or token cannot contain \\x00 "
                      "or \\x01", NULL, 0);
            rc = SASL_ERR_INPUT;
        }
        break;
    case SASL_SCRAM_SHA_1:
    case SASL_SCRAM_SHA_256:
        if (contains_byte(&c->user, 0) || contains_byte(&c->secret, 0)) {
            set_error(c, "SCRAM cannot send a NUL character", NULL, 0);
            rc = SASL_ERR_INPUT;
            break;
        }
        rc = scram_setup(c, nonce, nonce_len);
        break;
    default:
        break;
    }

done:
    if (rc != SASL_CONTINUE) {
        *status = rc;
        snprintf(error, error_size, "%s", c->error);
        sasl_client_free(c);
        return NULL;
    }
    return c;
}

void
sasl_client_free(sasl_client *c)
{
    if (c == NULL) {
        return;
    }
    buf_wipe(&c->user);
    buf_wipe(&c->secret);
    buf_wipe(&c->out);
    buf_wipe(&c->nonce);
    buf_wipe(&c->client_first_bare);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

void
sasl_client_set_max_iterations(sasl_client *c, unsigned long n)
{
    c->max_iterations = n;
}

void
sasl_client_set_progress(sasl_client *c, int (*progress)(void *arg),
                         void *arg)
{
    c->progress = progress;
    c->progress_arg = arg;
}

int
sasl_client_initial(sasl_client *c, const unsigned char **out, size_t *len)
{
    static const unsigned char nul = 0;
    static const unsigned char ctrl_a = 1;
    int ok = 0;

    buf_clear(&c->out);
    switch (c->mech) {
    case SASL_PLAIN:
        /* empty authzid: act as the authenticated user */
        ok = buf_add(&c->out, &nul, 1) == 0
             && buf_add(&c->out, c->user.data, c->user.len) == 0
             && buf_add(&c->out, &nul, 1) == 0
             && buf_add(&c->out, c->secret.data, c->secret.len) == 0;
        break;
    case SASL_SCRAM_SHA_1:
    case SASL_SCRAM_SHA_256:
        ok = buf_adds(&c->out, "n,,") == 0
             && buf_add(&c->out, c->client_first_bare.data,
                        c->client_first_bare.len) == 0;
        break;
    case SASL_XOAUTH2:
        ok = buf_adds(&c->out, "user=") == 0
             && buf_add(&c->out, c->user.data, c->user.len) == 0
             && buf_add(&c->out, &ctrl_a, 1) == 0
             && buf_adds(&c->out, "auth=Bearer ") == 0
             && buf_add(&c->out, c->secret.data, c->secret.len) == 0
             && buf_add(&c->out, &ctrl_a, 1) == 0
             && buf_add(&c->out, &ctrl_a, 1) == 0;
        break;
    case SASL_OAUTHBEARER:
        /* gs2 header with the user as authzid (RFC 7628 3.1) */
        ok = buf_adds(&c->out, "n,") == 0
             && (c->user.len == 0
                 || (buf_adds(&c->out, "a=") == 0
                     && add_saslname(&c->out, &c->user) == 0))
             && buf_adds(&c->out, ",") == 0
             && buf_add(&c->out, &ctrl_a, 1) == 0
             && buf_adds(&c->out, "auth=Bearer ") == 0
             && buf_add(&c->out, c->secret.data, c->secret.len) == 0
             && buf_add(&c->out, &ctrl_a, 1) == 0
             && buf_add(&c->out, &ctrl_a, 1) == 0;
        break;
    case SASL_EXTERNAL:
        /* the authorization identity, or nothing: act as the identity
           the certificate (or whatever is outside SASL) establishes */
        ok = buf_add(&c->out, c->user.data, c->user.len) == 0;
        break;
    default:
        return 0;             /* LOGIN, CRAM-MD5: the server speaks first */
    }
    if (!ok) {
        /* only buf_* can fail, and only for lack of memory: report it
           as an empty response the caller cannot mistake for success */
        buf_clear(&c->out);
        nomem(c);
        *out = NULL;
        *len = 0;
        return -1;
    }
    *out = c->out.data;
    *len = c->out.len;
    return 1;
}

/* ---- SCRAM ---- */

/* The value of attribute `name` at the start of msg[*pos..len), which
 * then points past the value's ',' (or at len).  0, or -1 if the next
 * attribute is not `name`. */
static int
scram_attr(const unsigned char *msg, size_t len, size_t *pos, char name,
           const unsigned char **value, size_t *value_len)
{
    size_t start = *pos, end;

    if (len - start < 2 || msg[start] != (unsigned char)name
        || msg[start + 1] != '=') {
        return -1;
    }
    start += 2;
    for (end = start; end < len && msg[end] != ','; end++) {
    }
    *value = msg + start;
    *value_len = end - start;
    *pos = end < len ? end + 1 : end;
    return 0;
}

static int
hmac(const EVP_MD *md, const unsigned char *key, size_t key_len,
     const unsigned char *data, size_t data_len, unsigned char *out)
{
    unsigned int out_len = 0;

    if (key_len > INT32_MAX) {
        return -1;
    }
    if (HMAC(md, key, (int)key_len, data, data_len, out, &out_len) == NULL) {
        return -1;
    }
    return (int)out_len;
}

/* SaltedPassword := Hi(password, salt, i) (RFC 5802 2.2): PBKDF2 with
 * HMAC over c->md and one block of its output length, computed
 * iteration by iteration so that the progress callback runs every
 * PBKDF2_CHUNK iterations.  0, -1 on a libcrypto failure, -2 when the
 * callback asked to stop. */
static int
scram_hi(sasl_client *c, const unsigned char *salt, size_t salt_len,
         unsigned long iterations, unsigned char *out)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    EVP_MAC *mac = NULL;
    EVP_MAC_CTX *ctx = NULL;
    OSSL_PARAM params[2];
    unsigned char u[EVP_MAX_MD_SIZE];
    static const unsigned char block1[4] = {0, 0, 0, 1};
    size_t ulen = 0;
    int rc = -1;

    params[0] = OSSL_PARAM_construct_utf8_string(
        OSSL_MAC_PARAM_DIGEST, (char *)EVP_MD_get0_name(c->md), 0);
    params[1] = OSSL_PARAM_construct_end();
    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    /* U1 = HMAC(password, salt || INT(1)) */
    if (ctx == NULL
        || !EVP_MAC_init(ctx, c->secret.data, c->secret.len, params)
        || !EVP_MAC_update(ctx, salt, salt_len)
        || !EVP_MAC_update(ctx, block1, sizeof(block1))
        || !EVP_MAC_final(ctx, u, &ulen, sizeof(u)) || ulen != c->dlen) {
        goto done;
    }
    memcpy(out, u, ulen);
    /* Ui = HMAC(password, Ui-1); the result is U1 ^ U2 ^ ... ^ Ui */
    for (unsigned long i = 2; i <= iterations; i++) {
        if (!EVP_MAC_init(ctx, NULL, 0, NULL)
            || !EVP_MAC_update(ctx, u, ulen)
            || !EVP_MAC_final(ctx, u, &ulen, sizeof(u))) {
            goto done;
        }
        for (size_t k = 0; k < ulen; k++) {
            out[k] ^= u[k];
        }
        if (i % PBKDF2_CHUNK == 0 && c->progress != NULL
            && c->progress(c->progress_arg) != 0) {
            rc = -2;
            goto done;
        }
    }
    rc = 0;

done:
    OPENSSL_cleanse(u, sizeof(u));
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
#else
    /* OpenSSL 1.1: one call, so the callback only runs after it */
    if (c->secret.len > INT32_MAX || salt_len > INT32_MAX
        || iterations > INT32_MAX
        || PKCS5_PBKDF2_HMAC((const char *)c->secret.data,
                             (int)c->secret.len, salt, (int)salt_len,
                             (int)iterations, c->md, (int)c->dlen,
                             out) != 1) {
        return -1;
    }
    if (c->progress != NULL && c->progress(c->progress_arg) != 0) {
        return -2;
    }
    return 0;
#endif
}

static sasl_status
scram_server_first(sasl_client *c, const unsigned char *msg, size_t len)
{
    const unsigned char *nonce, *salt_b64, *iter;
    size_t nonce_len, salt_b64_len, iter_len, pos = 0, salt_len = 0;
    unsigned char *salt = NULL;
    unsigned long iterations = 0;
    unsigned char salted[EVP_MAX_MD_SIZE], client_key[EVP_MAX_MD_SIZE];
    unsigned char stored_key[EVP_MAX_MD_SIZE];
    unsigned char client_sig[EVP_MAX_MD_SIZE];
    unsigned char server_key[EVP_MAX_MD_SIZE];
    unsigned int stored_len = 0;
    int dlen = (int)c->dlen;
    sasl_buf auth_message = {0};
    sasl_status rc = SASL_FAILED_CANCEL;

    if (memchr(msg, 0, len) != NULL) {
        set_error(c, "SCRAM server-first-message contains a NUL byte",
                  NULL, 0);
        goto done;
    }
    if (len >= 2 && msg[0] == 'm' && msg[1] == '=') {
        set_error(c, "SCRAM server requires an unsupported extension: ",
                  msg, len);
        goto done;
    }
    if (scram_attr(msg, len, &pos, 'r', &nonce, &nonce_len) < 0
        || scram_attr(msg, len, &pos, 's', &salt_b64, &salt_b64_len) < 0
        || scram_attr(msg, len, &pos, 'i', &iter, &iter_len) < 0) {
        set_error(c, "malformed SCRAM server-first-message: ", msg, len);
        goto done;
    }
    if (nonce_len <= c->nonce.len
        || memcmp(nonce, c->nonce.data, c->nonce.len) != 0) {
        set_error(c, "SCRAM server nonce does not extend the client "
                  "nonce: ", msg, len);
        goto done;
    }
    for (size_t i = 0; i < nonce_len; i++) {
        if (nonce[i] < 0x21 || nonce[i] > 0x7e) {
            set_error(c, "SCRAM server nonce is not printable", NULL, 0);
            goto done;
        }
    }
    if (iter_len == 0 || iter_len > 9) {
        set_error(c, "bad SCRAM iteration count: ", msg, len);
        goto done;
    }
    for (size_t i = 0; i < iter_len; i++) {
        if (iter[i] < '0' || iter[i] > '9') {
            set_error(c, "bad SCRAM iteration count: ", msg, len);
            goto done;
        }
        iterations = iterations * 10 + (unsigned long)(iter[i] - '0');
    }
    if (iterations == 0 || iterations > c->max_iterations) {
        char msgbuf[96];
        snprintf(msgbuf, sizeof(msgbuf), "SCRAM iteration count out of "
                 "range (1 to %lu): ", c->max_iterations);
        set_error(c, msgbuf, iter, iter_len);
        goto done;
    }
    salt = malloc(salt_b64_len / 4 * 3 + 3);
    if (salt == NULL) {
        rc = nomem(c);
        goto done;
    }
    if (sasl_b64_decode((const char *)salt_b64, salt_b64_len, salt,
                        &salt_len, 0) < 0 || salt_len == 0) {
        set_error(c, "bad SCRAM salt: ", msg, len);
        goto done;
    }

    /* RFC 5802 3: SaltedPassword, ClientKey, StoredKey, AuthMessage */
    switch (scram_hi(c, salt, salt_len, iterations, salted)) {
    case 0:
        break;
    case -2:
        set_error(c, "SCRAM key derivation interrupted", NULL, 0);
        rc = SASL_ERR_INTERRUPTED;
        goto done;
    default:
        rc = crypto_error(c, "PBKDF2 failed: ");
        goto done;
    }
    buf_clear(&c->out);
    if (buf_adds(&c->out, "c=biws,r=") < 0
        || buf_add(&c->out, nonce, nonce_len) < 0
        || buf_add(&auth_message, c->client_first_bare.data,
                   c->client_first_bare.len) < 0
        || buf_adds(&auth_message, ",") < 0
        || buf_add(&auth_message, msg, len) < 0
        || buf_adds(&auth_message, ",") < 0
        || buf_add(&auth_message, c->out.data, c->out.len) < 0) {
        rc = nomem(c);
        goto done;
    }
    if (hmac(c->md, salted, c->dlen, (const unsigned char *)"Client Key",
             10, client_key) != dlen
        || !EVP_Digest(client_key, c->dlen, stored_key, &stored_len, c->md,
                       NULL)
        || stored_len != c->dlen
        || hmac(c->md, stored_key, c->dlen, auth_message.data,
                auth_message.len, client_sig) != dlen
        || hmac(c->md, salted, c->dlen, (const unsigned char *)"Server Key",
                10, server_key) != dlen
        || hmac(c->md, server_key, c->dlen, auth_message.data,
                auth_message.len, c->server_signature) != dlen) {
        rc = crypto_error(c, "SCRAM key derivation failed: ");
        goto done;
    }
    for (size_t i = 0; i < c->dlen; i++) {
        client_key[i] ^= client_sig[i];          /* now the ClientProof */
    }
    if (buf_adds(&c->out, ",p=") < 0
        || buf_add_b64(&c->out, client_key, c->dlen) < 0) {
        rc = nomem(c);
        goto done;
    }
    rc = SASL_CONTINUE;

done:
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(stored_key, sizeof(stored_key));
    OPENSSL_cleanse(client_sig, sizeof(client_sig));
    OPENSSL_cleanse(server_key, sizeof(server_key));
    buf_wipe(&auth_message);
    free(salt);
    return rc;
}

static sasl_status
scram_server_final(sasl_client *c, const unsigned char *msg, size_t len)
{
    const unsigned char *value;
    size_t value_len, pos = 0, sig_len = 0;
    unsigned char sig[EVP_MAX_MD_SIZE + 3];

    if (scram_attr(msg, len, &pos, 'e', &value, &value_len) == 0) {
        set_error(c, "SCRAM server error: ", value, value_len);
        return SASL_FAILED_CANCEL;
    }
    if (scram_attr(msg, len, &pos, 'v', &value, &value_len) < 0) {
        set_error(c, "malformed SCRAM server-final-message: ", msg, len);
        return SASL_FAILED_CANCEL;
    }
    if (value_len > SASL_B64_LEN(EVP_MAX_MD_SIZE)
        || sasl_b64_decode((const char *)value, value_len, sig, &sig_len,
                           0) < 0
        || sig_len != c->dlen
        || CRYPTO_memcmp(sig, c->server_signature, c->dlen) != 0) {
        set_error(c, "SCRAM server signature mismatch: the server does not "
                  "know the password (not the server it claims to be)",
                  NULL, 0);
        return SASL_FAILED_UNTRUSTED;
    }
    c->verified = 1;
    buf_clear(&c->out);
    return SASL_CONTINUE;     /* an empty response; +OK follows */
}

/* ---- CRAM-MD5 ---- */

static sasl_status
cram_md5(sasl_client *c, const unsigned char *challenge, size_t len)
{
    static const char hexdigits[] = "0123456789abcdef";
    unsigned char digest[EVP_MAX_MD_SIZE];
    char hex[2 * 16];
    int n;

    if (len == 0) {
        set_error(c, "CRAM-MD5 challenge is empty", NULL, 0);
        return SASL_FAILED_CANCEL;
    }
    n = hmac(EVP_md5(), c->secret.data, c->secret.len, challenge, len,
             digest);
    if (n != 16) {
        OPENSSL_cleanse(digest, sizeof(digest));
        return crypto_error(c, "CRAM-MD5 needs HMAC-MD5: ");
    }
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = hexdigits[digest[i] >> 4];
        hex[2 * i + 1] = hexdigits[digest[i] & 0xf];
    }
    OPENSSL_cleanse(digest, sizeof(digest));
    buf_clear(&c->out);
    if (buf_add(&c->out, c->user.data, c->user.len) < 0
        || buf_adds(&c->out, " ") < 0
        || buf_add(&c->out, hex, sizeof(hex)) < 0) {
        return nomem(c);
    }
    return SASL_CONTINUE;
}

/* ---- the step ---- */

static sasl_status
unexpected(sasl_client *c, const unsigned char *challenge, size_t len)
{
    char msg[96];

    snprintf(msg, sizeof(msg), "unexpected %s challenge: ",
             sasl_mech_name(c->mech));
    set_error(c, msg, challenge, len);
    return SASL_FAILED_CANCEL;
}

static sasl_status
client_step(sasl_client *c, const unsigned char *challenge,
            size_t challenge_len, const unsigned char **out, size_t *len)
{
    static const unsigned char ctrl_a = 1;
    sasl_status rc;
    int step = c->step++;

    switch (c->mech) {
    case SASL_LOGIN:
        if (step > 1) {
            return unexpected(c, challenge, challenge_len);
        }
        /* "Username:" then "Password:"; the prompts' text is not relied
           upon (servers word them differently) */
        rc = buf_add(&c->out, step == 0 ? c->user.data : c->secret.data,
                     step == 0 ? c->user.len : c->secret.len) < 0
             ? nomem(c) : SASL_CONTINUE;
        break;
    case SASL_CRAM_MD5:
        if (step > 0) {
            return unexpected(c, challenge, challenge_len);
        }
        rc = cram_md5(c, challenge, challenge_len);
        break;
    case SASL_SCRAM_SHA_1:
    case SASL_SCRAM_SHA_256:
        if (step == 0) {
            rc = scram_server_first(c, challenge, challenge_len);
        }
        else if (step == 1) {
            rc = scram_server_final(c, challenge, challenge_len);
        }
        else {
            return unexpected(c, challenge, challenge_len);
        }
        break;
    case SASL_XOAUTH2:
    case SASL_OAUTHBEARER:
        if (step > 0) {
            return unexpected(c, challenge, challenge_len);
        }
        /* A challenge after the token is the error (a JSON object,
           RFC 7628 3.2.2); the client answers with an empty response
           (XOAUTH2) or a lone %x01 (OAUTHBEARER), then the server
           fails the command. */
        set_error(c, "server rejected the token: ", challenge,
                  challenge_len);
        if (c->mech == SASL_OAUTHBEARER
            && buf_add(&c->out, &ctrl_a, 1) < 0) {
            return nomem(c);
        }
        rc = SASL_FAILED_RESPOND;
        break;
    default:          /* PLAIN, EXTERNAL: the initial response is all
                         there is */
        return unexpected(c, challenge, challenge_len);
    }
    if (rc == SASL_CONTINUE || rc == SASL_FAILED_RESPOND) {
        *out = c->out.data != NULL ? c->out.data
                                   : (const unsigned char *)"";
        *len = c->out.len;
    }
    return rc;
}

sasl_status
sasl_client_step(sasl_client *c, const unsigned char *challenge,
                 size_t challenge_len, const unsigned char **out,
                 size_t *len)
{
    sasl_status rc;

    *out = NULL;
    *len = 0;
    c->error[0] = '\0';
    buf_clear(&c->out);
    if (c->failed) {
        /* A caller that goes on after a failure must not reach a later
           state with what the failed step left behind (a SCRAM server
           signature never computed is all zero bytes). */
        set_error(c, "the exchange already failed", NULL, 0);
        return SASL_FAILED_CANCEL;
    }
    rc = client_step(c, challenge, challenge_len, out, len);
    if (rc != SASL_CONTINUE && rc != SASL_FAILED_RESPOND) {
        c->failed = 1;
    }
    return rc;
}

int
sasl_client_complete(const sasl_client *c)
{
    if (c->mech == SASL_SCRAM_SHA_1 || c->mech == SASL_SCRAM_SHA_256) {
        return c->verified;
    }
    return 1;
}

const char *
sasl_client_error(const sasl_client *c)
{
    return c->error;
}
