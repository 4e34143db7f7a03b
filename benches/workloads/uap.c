/*
 * The UAP workload: a WASI reactor whose `wizer-initialize` compiles every user-agent,
 * OS and device regex of uap-core's regexes.yaml with musl's POSIX regcomp (the C
 * counterpart of the Rust Wizer's UAP bench, which builds a RegexSet from the same file).
 * uap_regexes.h is generated from regexes.yaml by benches/workloads.py, which rewrites the
 * PCRE syntax into POSIX ERE where it can and leaves out what ERE cannot say (lookaround).
 *
 * Exports: wizer-initialize; count() -> i32, regexes compiled (the first call the benchmark
 * times); classify() -> i32, index of the first regex matching a Firefox user agent.
 */
#include <regex.h>
#include <stdlib.h>

#include "uap_regexes.h"

enum { N = sizeof UAP_REGEXES / sizeof *UAP_REGEXES };

static regex_t *compiled;
static int compiled_count;

__attribute__((export_name("wizer-initialize"))) void wizer_initialize(void) {
    compiled = calloc(N, sizeof *compiled);
    for (int i = 0; i < N; i++) {
        int flags = REG_EXTENDED | REG_NOSUB | (UAP_ICASE[i] ? REG_ICASE : 0);
        if (regcomp(&compiled[compiled_count], UAP_REGEXES[i], flags) == 0) compiled_count++;
    }
}

__attribute__((export_name("count"))) int count(void) { return compiled_count; }

__attribute__((export_name("classify"))) int classify(void) {
    static const char UA[] =
        "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
    for (int i = 0; i < compiled_count; i++)
        if (regexec(&compiled[i], UA, 0, NULL, 0) == 0) return i;
    return -1;
}
