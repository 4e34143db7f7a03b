/*
 * The small regex workload: a WASI reactor that compiles a handful of POSIX extended
 * regexes with musl's regcomp in `wizer-initialize` (the C counterpart of the Rust Wizer's
 * regex bench, which compiles `^1\d*$`).
 *
 * Exports: wizer-initialize; run() -> i32, the number of (pattern, subject) pairs that match
 * (the first call the benchmark times); count() -> i32, patterns compiled.
 */
#include <regex.h>
#include <stddef.h>

static const char *const PATTERNS[] = {
    "^1[0-9]*$",
    "^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$",
    "^([0-9]{4})-([0-9]{2})-([0-9]{2})$",
    "^(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}$",
    "(Firefox|Chrome|Safari)/([0-9]+)\\.([0-9]+)",
};
static const char *const SUBJECTS[] = {"12345", "wizer@example.org", "2026-11-22",
                                       "192.168.10.1", "Mozilla/5.0 Firefox/120.0"};
enum { N = sizeof PATTERNS / sizeof *PATTERNS };

static regex_t compiled[N];
static int compiled_count;

__attribute__((export_name("wizer-initialize"))) void wizer_initialize(void) {
    for (int i = 0; i < N; i++)
        if (regcomp(&compiled[i], PATTERNS[i], REG_EXTENDED | REG_ICASE) == 0) compiled_count++;
}

__attribute__((export_name("run"))) int run(void) {
    int matches = 0;
    for (int i = 0; i < compiled_count; i++)
        matches += regexec(&compiled[i], SUBJECTS[i], 0, NULL, 0) == 0;
    return matches;
}

__attribute__((export_name("count"))) int count(void) { return compiled_count; }
