/* standalone.h -- the standalone (gcc, no libFuzzer) driver parts the
 * fuzz harnesses share: replaying a corpus file or directory through
 * LLVMFuzzerTestOneInput(), and a deterministic random generator for
 * the random inputs each harness builds in its own way.
 *
 * Included by fuzz_parser.c and fuzz_sasl.c under FUZZ_STANDALONE only,
 * after their LLVMFuzzerTestOneInput() is declared.
 */
#ifndef CPOPLIB_FUZZ_STANDALONE_H
#define CPOPLIB_FUZZ_STANDALONE_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int
replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;

    if (f == NULL) {
        perror(path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(n ? (size_t)n : 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "%s: read error\n", path);
        fclose(f);
        free(buf);
        return 1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

static int
replay(const char *path, size_t *count)
{
    struct stat st;
    int rc = 0;

    if (stat(path, &st) != 0) {
        perror(path);
        return 1;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;

        if (d == NULL) {
            perror(path);
            return 1;
        }
        while ((de = readdir(d)) != NULL) {
            char sub[4096];

            if (de->d_name[0] == '.') {
                continue;
            }
            snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
            rc |= replay(sub, count);
        }
        closedir(d);
        return rc;
    }
    (*count)++;
    return replay_file(path);
}

/* xorshift64*: deterministic, the same sequence on every run */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t
rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

#endif /* CPOPLIB_FUZZ_STANDALONE_H */
