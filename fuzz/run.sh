#!/bin/sh
# fuzz/run.sh -- build and run the parser fuzzer.
#
#   fuzz/run.sh [SECONDS]        libFuzzer run (default 60 s) with clang,
#                                ASan and UBSan, on a temporary copy of
#                                fuzz/corpus; non-zero exit on any crash.
#   fuzz/run.sh --gcc [N]        no clang needed: gcc + ASan/UBSan build of
#                                the harness with its own main(), replays
#                                fuzz/corpus and N (default 20000) random
#                                inputs.
#
# Needs (Debian 12): apt-get install clang libclang-rt-14-dev
# (the libclang-rt-NN-dev matching the installed clang).  The newest
# installed clang-NN that can link -fsanitize=fuzzer is used; set CLANG to
# override.  Artifacts (crash-*, leak-*, timeout-*) land in fuzz/build/.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build="$here/build"
mkdir -p "$build"
srcs="$here/fuzz_parser.c $root/Modules/pop3_parser.c"

if [ "${1:-}" = "--gcc" ]; then
    iterations=${2:-20000}
    cc=${CC:-gcc}
    $cc -std=c99 -D_DEFAULT_SOURCE -DFUZZ_STANDALONE -g -O1 -Wall -Wextra \
        -fsanitize=address,undefined -fno-sanitize-recover=all \
        -fno-omit-frame-pointer -I "$root/Modules" $srcs \
        -o "$build/fuzz_parser_standalone"
    exec "$build/fuzz_parser_standalone" "$here/corpus" -r "$iterations"
fi

seconds=${1:-60}

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

"$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -fno-omit-frame-pointer -I "$root/Modules" $srcs -o "$build/fuzz_parser"

work=$(mktemp -d "${TMPDIR:-/tmp}/cpoplib-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
cp -R "$here/corpus" "$work/corpus"

# -max_len: big enough for lines around _MAXLINE (2048) several times over.
# libFuzzer exits non-zero on a crash, a leak, a timeout or an OOM; set -e
# turns that into our exit status.
status=0
"$build/fuzz_parser" "$work/corpus" \
    -max_total_time="$seconds" -max_len=12000 -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/" || status=$?
if [ "$status" -ne 0 ]; then
    echo "fuzz/run.sh: FAILED (exit $status); reproducer in $build/" >&2
    exit "$status"
fi
echo "fuzz/run.sh: OK ($seconds s, no crash)"
