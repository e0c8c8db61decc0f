#!/bin/sh
# fuzz/run.sh -- build and run the fuzzers: fuzz_parser.c (the POP3
# response parser, Modules/pop3_parser.c, corpus fuzz/corpus) and
# fuzz_sasl.c (the SASL client mechanisms and base64, Modules/sasl.c,
# corpus fuzz/corpus_sasl; linked with -lcrypto).
#
#   fuzz/run.sh [SECONDS]        libFuzzer runs with clang, ASan and UBSan,
#                                on temporary copies of the corpora,
#                                SECONDS in all (default 60): two thirds
#                                for the parser, the rest for SASL (40 s +
#                                20 s; the parser's input space -- limits,
#                                chunk schedules, multi-line state -- is
#                                the larger one, while the SASL harness
#                                builds valid exchanges itself and its
#                                state machines are at most three steps
#                                deep).  Both always run; non-zero exit
#                                (the first failure's) on any crash.
#   fuzz/run.sh --gcc [N]        no clang needed: gcc + ASan/UBSan builds of
#                                both harnesses with their own main(),
#                                each replays its corpus and N (default
#                                20000) random inputs.
#
# Needs (Debian 12): apt-get install clang libclang-rt-14-dev libssl-dev
# (the libclang-rt-NN-dev matching the installed clang).  The newest
# installed clang-NN that can link -fsanitize=fuzzer is used; set CLANG to
# override.  Artifacts land in fuzz/build/: crash-*, leak-*, timeout-*
# from the parser, sasl-crash-*, sasl-leak-*, sasl-timeout-* from SASL;
# the standalone binaries replay them, e.g.
#   fuzz/build/fuzz_sasl_standalone fuzz/build/sasl-crash-*
# fuzz/corpus_sasl was written by `fuzz_sasl_standalone -seeds DIR`.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build="$here/build"
mkdir -p "$build"
srcs="$here/fuzz_parser.c $root/Modules/pop3_parser.c"
sasl_srcs="$here/fuzz_sasl.c $root/Modules/sasl.c"

if [ "${1:-}" = "--gcc" ]; then
    iterations=${2:-20000}
    cc=${CC:-gcc}
    flags="-std=c99 -D_DEFAULT_SOURCE -DFUZZ_STANDALONE -g -O1 -Wall -Wextra
        -fsanitize=address,undefined -fno-sanitize-recover=all
        -fno-omit-frame-pointer -I $root/Modules"
    $cc $flags $srcs -o "$build/fuzz_parser_standalone"
    $cc $flags $sasl_srcs -lcrypto -o "$build/fuzz_sasl_standalone"
    status=0
    sasl_status=0
    "$build/fuzz_parser_standalone" "$here/corpus" -r "$iterations" || status=$?
    "$build/fuzz_sasl_standalone" "$here/corpus_sasl" -r "$iterations" ||
        sasl_status=$?
    [ "$status" -ne 0 ] || status=$sasl_status
    exit "$status"
fi

seconds=${1:-60}
parser_seconds=$((seconds * 2 / 3))
[ "$parser_seconds" -ge 1 ] || parser_seconds=1
sasl_seconds=$((seconds - parser_seconds))
[ "$sasl_seconds" -ge 1 ] || sasl_seconds=1

pick_clang() {
    if [ -n "${CLANG:-}" ]; then
        echo "$CLANG"
        return 0
    fi
    probe="$build/probe.c"
    printf '%s\n' '#include <stdint.h>' '#include <stddef.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
        > "$probe"
    # newest versioned clang first, plain "clang" last
    for cc in $(ls /usr/bin/clang-[0-9]* /usr/local/bin/clang-[0-9]* 2>/dev/null \
                | grep -E 'clang-[0-9]+$' | sort -t- -k2 -n -r) clang; do
        if command -v "$cc" >/dev/null 2>&1 &&
           "$cc" -fsanitize=fuzzer,address,undefined "$probe" \
                 -o "$build/probe" >/dev/null 2>&1; then
            echo "$cc"
            return 0
        fi
    done
    return 1
}

if ! cc=$(pick_clang); then
    echo "fuzz/run.sh: no clang able to link -fsanitize=fuzzer found." >&2
    echo "  Debian/Ubuntu: apt-get install clang libclang-rt-\$(clang --version | sed -n 's/.*version \([0-9]*\).*/\1/p')-dev" >&2
    echo "  (or run: fuzz/run.sh --gcc)" >&2
    exit 2
fi
echo "fuzz/run.sh: using $cc ($("$cc" --version | head -n 1))"

fflags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
    -fno-omit-frame-pointer -I $root/Modules"
"$cc" $fflags $srcs -o "$build/fuzz_parser"
"$cc" $fflags $sasl_srcs -lcrypto -o "$build/fuzz_sasl"

work=$(mktemp -d "${TMPDIR:-/tmp}/cpoplib-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
cp -R "$here/corpus" "$work/corpus"
cp -R "$here/corpus_sasl" "$work/corpus_sasl"

# libFuzzer exits non-zero on a crash, a leak, a timeout or an OOM; that
# becomes our exit status (the first failing run's).
status=0

# -max_len: big enough for lines around _MAXLINE (2048) several times over.
echo "fuzz/run.sh: parser, $parser_seconds s"
"$build/fuzz_parser" "$work/corpus" \
    -max_total_time="$parser_seconds" -max_len=12000 -timeout=20 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/" ||
    status=$?
if [ "$status" -ne 0 ]; then
    echo "fuzz/run.sh: parser FAILED (exit $status); reproducer in $build/" >&2
fi

# -max_len: the SASL messages are short; long chunks only cost time.
echo "fuzz/run.sh: sasl, $sasl_seconds s"
sasl_status=0
"$build/fuzz_sasl" "$work/corpus_sasl" \
    -max_total_time="$sasl_seconds" -max_len=2048 -timeout=20 \
    -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/sasl-" || sasl_status=$?
if [ "$sasl_status" -ne 0 ]; then
    echo "fuzz/run.sh: sasl FAILED (exit $sasl_status); reproducer in $build/" >&2
    [ "$status" -ne 0 ] || status=$sasl_status
fi

if [ "$status" -ne 0 ]; then
    exit "$status"
fi
echo "fuzz/run.sh: OK ($parser_seconds s parser + $sasl_seconds s sasl, no crash)"
