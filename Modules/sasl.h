/* sasl.h -- the client side of the SASL mechanisms cpoplib has built in.
 *
 *   PLAIN          RFC 4616
 *   LOGIN          draft-murchison-sasl-login (user name, then password)
 *   CRAM-MD5       RFC 2195
 *   SCRAM-SHA-1    RFC 5802 (no channel binding: gs2 header "n,,")
 *   SCRAM-SHA-256  RFC 7677
 *   XOAUTH2        Google's and Microsoft's bearer-token mechanism
 *   OAUTHBEARER    RFC 7628 (no host/port fields)
 *   EXTERNAL       RFC 4422 appendix A: the credential is outside SASL (a
 *                  TLS client certificate); the client sends only the
 *                  authorization identity, the "user" (empty: act as the
 *                  identity the certificate gives), and no secret
 *
 * Plain C with no Python dependency, so that it can be unit-tested and
 * fuzzed on its own (see fuzz/).  Digests, HMAC, PBKDF2 and the SCRAM
 * nonce come from OpenSSL's libcrypto.  It knows nothing about POP3 or
 * its base64 framing: it takes decoded challenges and produces raw
 * responses; the caller (auth.c) base64-encodes them and sends them.
 *
 * A mechanism is a state machine:
 *
 *   c = sasl_client_new(mech, &credentials, NULL, 0, &status, error,
 *                       sizeof(error));
 *   if sasl_client_initial(c, &out, &len): out is the initial response
 *       (sent on the AUTH line, or after the server's first, empty,
 *       challenge);
 *   for each server challenge: status = sasl_client_step(c, challenge,
 *       len, &out, &len), see sasl_status for what to do with `out`;
 *   on the server's +OK: trust it only if sasl_client_complete(c);
 *   sasl_client_free(c).
 *
 * Credentials are copied in; every copy, and every intermediate secret
 * (salted password, keys, proofs), is wiped with OPENSSL_cleanse before
 * its memory is released.  The user name and password of SCRAM must
 * already be SASLprep'ed (RFC 4013) UTF-8; the other mechanisms send
 * the bytes they are given.
 */
#ifndef CPOPLIB_SASL_H
#define CPOPLIB_SASL_H

#include <stddef.h>

typedef enum {
    SASL_PLAIN,
    SASL_LOGIN,
    SASL_CRAM_MD5,
    SASL_SCRAM_SHA_1,
    SASL_SCRAM_SHA_256,
    SASL_XOAUTH2,
    SASL_OAUTHBEARER,
    SASL_EXTERNAL,
    SASL_MECH_COUNT
} sasl_mech;

typedef enum {
    /* Send `out` (may be empty) as the response to the challenge. */
    SASL_CONTINUE = 0,
    /* The server reported a failure inside a challenge (an OAuth JSON
       error): send `out`, the response the RFC requires, then read the
       server's final -ERR.  sasl_client_error() says what failed. */
    SASL_FAILED_RESPOND,
    /* The challenge is malformed or unexpected, or the server reported a
       failure for which no response is defined (SCRAM "e="), or sent a
       challenge to a mechanism that has none (EXTERNAL): cancel the
       exchange with "*".  sasl_client_error() says why. */
    SASL_FAILED_CANCEL,
    /* The server could not prove it knows the password (a wrong SCRAM
       server signature): it is not the server it claims to be.  Send
       nothing more; the connection must not be used again. */
    SASL_FAILED_UNTRUSTED,
    /* Local failures: out of memory, libcrypto failed (e.g. MD5 disabled
       by a FIPS provider); sasl_client_error() has the details. */
    SASL_ERR_NOMEM,
    SASL_ERR_CRYPTO,
    /* sasl_client_new(): the credentials cannot be sent with this
       mechanism (a NUL byte in a PLAIN or SCRAM credential or in an
       EXTERNAL authorization identity, a NUL or \x01 in an OAuth user or
       token, an empty SCRAM user name). */
    SASL_ERR_INPUT,
    /* The progress callback asked to stop the SCRAM key derivation. */
    SASL_ERR_INTERRUPTED
} sasl_status;

/* The default and largest SCRAM iteration count a client accepts: a
 * hostile server could otherwise keep the client busy for as long as it
 * likes (10,000,000 iterations of SHA-256 take about 5 s). */
#define SASL_SCRAM_MAX_ITERATIONS 10000000UL

typedef struct {
    const char *user;        /* authentication identity, UTF-8; EXTERNAL:
                                the authorization identity (may be
                                empty) */
    size_t user_len;
    const char *secret;      /* the password, or the OAuth 2.0 token;
                                EXTERNAL: not used */
    size_t secret_len;
} sasl_credentials;

typedef struct sasl_client sasl_client;

/* The mechanism named `name` (case-insensitive, exact length), or -1. */
int sasl_mech_from_name(const char *name, size_t len);

/* The IANA name of a mechanism, e.g. "SCRAM-SHA-256". */
const char *sasl_mech_name(sasl_mech mech);

/* A new client for `mech`.  `nonce` (printable ASCII without ',') fixes
 * the SCRAM client nonce for known-answer tests; NULL draws 24 bytes of
 * base64 from 18 bytes of RAND_bytes().  On failure NULL, *status set
 * (NOMEM, CRYPTO or INPUT) and the reason in error[0..error_size). */
sasl_client *sasl_client_new(sasl_mech mech, const sasl_credentials *cred,
                             const char *nonce, size_t nonce_len,
                             sasl_status *status, char *error,
                             size_t error_size);

/* Wipe and free; NULL is allowed. */
void sasl_client_free(sasl_client *c);

/* Refuse SCRAM iteration counts above n (1 <= n; the default is
 * SASL_SCRAM_MAX_ITERATIONS). */
void sasl_client_set_max_iterations(sasl_client *c, unsigned long n);

/* Call progress(arg) every few thousand iterations of the SCRAM key
 * derivation (and once after it where libcrypto has no MAC API); when it
 * returns non-zero the step stops with SASL_ERR_INTERRUPTED.  This is how
 * a caller that runs a step without the GIL lets signals and a deadline
 * in. */
void sasl_client_set_progress(sasl_client *c, int (*progress)(void *arg),
                              void *arg);

/* 1 and the initial response in *out and *len if the mechanism has one
 * (PLAIN, SCRAM, XOAUTH2, OAUTHBEARER, EXTERNAL, whose initial response
 * may be empty), 0 if it has none (LOGIN,
 * CRAM-MD5), -1 when out of memory.  *out is valid until the next call
 * on `c`. */
int sasl_client_initial(sasl_client *c, const unsigned char **out,
                        size_t *len);

/* Answer one decoded server challenge (after the initial response, if
 * any, was sent).  *out and *len are set for SASL_CONTINUE and
 * SASL_FAILED_RESPOND and are valid until the next call on `c`.  Once a
 * step returned SASL_FAILED_CANCEL, SASL_FAILED_UNTRUSTED or an error,
 * every later step returns SASL_FAILED_CANCEL and changes nothing. */
sasl_status sasl_client_step(sasl_client *c, const unsigned char *challenge,
                             size_t challenge_len, const unsigned char **out,
                             size_t *len);

/* 1 if a success reply from the server can be trusted now: always for
 * the mechanisms without server authentication; for SCRAM only once the
 * server signature was verified. */
int sasl_client_complete(const sasl_client *c);

/* A NUL-terminated, printable-ASCII description of the last failure
 * (server-supplied text is included with anything unprintable shown as
 * '?'); "" if none. */
const char *sasl_client_error(const sasl_client *c);

/* ---- base64 (RFC 4648, standard alphabet) ---- */

/* Bytes base64 of n bytes takes, without a NUL. */
#define SASL_B64_LEN(n) ((((n) + 2) / 3) * 4)

/* Encode n bytes into out (SASL_B64_LEN(n) bytes, no NUL added). */
void sasl_b64_encode(const unsigned char *in, size_t n, char *out);

/* Decode `in` into out (room for at least in_len / 4 * 3 + 3 bytes);
 * only alphabet characters and trailing '=' are accepted.  With
 * lenient_padding, missing '=' padding is accepted.  0 and *out_len on
 * success, -1 if the input is not base64. */
int sasl_b64_decode(const char *in, size_t in_len, unsigned char *out,
                    size_t *out_len, int lenient_padding);

#endif /* CPOPLIB_SASL_H */
