/*
 * A C program for wizening tests: static constructors plus real init work.
 *
 * The constructors (run by `__wasm_call_ctors`) set up a registry on the heap.  The init
 * work parses an embedded text table of chemical elements into a chained hash map,
 * sieves the primes below SIEVE_LIMIT into a table, and builds a CRC-32 table; all of it
 * lives in linear memory (malloc'd) and in mutable globals (the stack pointer, the
 * allocator's state).
 *
 * Exports, in the style of Wizer's `wizer.h`:
 *   wizer-initialize  constructors, then the init work (what a pre-initializer calls);
 *   wizer.resume      `main` without the constructors: rename it with `-r _start=wizer.resume`;
 *   _start            the ordinary command entry (constructors, main, destructors);
 *   lookup(i) -> i32           the i-th prime (0-based), or -1;
 *   weight(sym) -> i32         atomic weight x 1000 of the element whose symbol is packed
 *                              little-endian into `sym` ('H' = 0x48, "He" = 0x6548), or -1;
 *   element_count() -> i32, ctor_runs() -> i32, init_runs() -> i32;
 *   checksum() -> i32          CRC-32 over every table, in a fixed order.
 * `main` runs the constructors and the init work lazily and prints a summary, so the original
 * `_start`, `wizer-initialize` + `wizer.resume`, and a wizened `_start` all print the same.
 * (The lazy constructor call matters with Debian's wasi-libc 2022-05: its `_start` leaves the
 * constructors to wasm-ld's export wrappers, which wasm-ld omits once the program itself
 * references `__wasm_call_ctors`.)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(name)))

extern void __wasm_call_ctors(void);
extern void __wasm_call_dtors(void);
extern int __main_void(void);
#include <wasi/api.h>

enum { SIEVE_LIMIT = 300000, BUCKETS = 64 };

/* Symbol, atomic number, standard atomic weight (abridged), one element a line. */
static const char ELEMENTS[] =
    "H 1 1.008\nHe 2 4.0026\nLi 3 6.94\nBe 4 9.0122\nB 5 10.81\nC 6 12.011\nN 7 14.007\n"
    "O 8 15.999\nF 9 18.998\nNe 10 20.180\nNa 11 22.990\nMg 12 24.305\nAl 13 26.982\n"
    "Si 14 28.085\nP 15 30.974\nS 16 32.06\nCl 17 35.45\nAr 18 39.95\nK 19 39.098\n"
    "Ca 20 40.078\nSc 21 44.956\nTi 22 47.867\nV 23 50.942\nCr 24 51.996\nMn 25 54.938\n"
    "Fe 26 55.845\nCo 27 58.933\nNi 28 58.693\nCu 29 63.546\nZn 30 65.38\nGa 31 69.723\n"
    "Ge 32 72.630\nAs 33 74.922\nSe 34 78.971\nBr 35 79.904\nKr 36 83.798\nRb 37 85.468\n"
    "Sr 38 87.62\nY 39 88.906\nZr 40 91.224\nNb 41 92.906\nMo 42 95.95\nTc 43 97\n"
    "Ru 44 101.07\nRh 45 102.91\nPd 46 106.42\nAg 47 107.87\nCd 48 112.41\nIn 49 114.82\n"
    "Sn 50 118.71\nSb 51 121.76\nTe 52 127.60\nI 53 126.90\nXe 54 131.29\nCs 55 132.91\n"
    "Ba 56 137.33\nLa 57 138.91\nCe 58 140.12\nPr 59 140.91\nNd 60 144.24\nPm 61 145\n"
    "Sm 62 150.36\nEu 63 151.96\nGd 64 157.25\nTb 65 158.93\nDy 66 162.50\nHo 67 164.93\n"
    "Er 68 167.26\nTm 69 168.93\nYb 70 173.05\nLu 71 174.97\nHf 72 178.49\nTa 73 180.95\n"
    "W 74 183.84\nRe 75 186.21\nOs 76 190.23\nIr 77 192.22\nPt 78 195.08\nAu 79 196.97\n"
    "Hg 80 200.59\nTl 81 204.38\nPb 82 207.2\nBi 83 208.98\nPo 84 209\nAt 85 210\n"
    "Rn 86 222\nFr 87 223\nRa 88 226\nAc 89 227\nTh 90 232.04\nPa 91 231.04\nU 92 238.03\n";

struct element {
    struct element *next;
    char *symbol;
    int number;
    int milli_weight;
};

/* Set up by the constructors. */
struct registry {
    uint32_t magic;
    int ctor_order[2];
    struct element **buckets;
};
static struct registry *registry;
static int ctor_runs_count;

/* Built by the init work. */
static int init_runs_count;
static int element_total;
static int32_t *primes;
static int prime_total;
static uint32_t crc_table[256];

__attribute__((constructor(101))) static void make_registry(void) {
    registry = calloc(1, sizeof *registry);
    registry->magic = 0x57495a52u; /* "WIZR" */
    registry->ctor_order[0] = ++ctor_runs_count;
}

__attribute__((constructor(200))) static void make_buckets(void) {
    registry->buckets = calloc(BUCKETS, sizeof *registry->buckets);
    registry->ctor_order[1] = ++ctor_runs_count;
}

static uint32_t hash_symbol(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Parses "1.008" into 1008 (three decimals, truncated). */
static int parse_milli(const char *s, const char **end) {
    int whole = 0, frac = 0, digits = 0;
    while (*s >= '0' && *s <= '9') whole = whole * 10 + (*s++ - '0');
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9') {
            if (digits < 3) frac = frac * 10 + (*s - '0'), digits++;
            s++;
        }
    }
    while (digits++ < 3) frac *= 10;
    *end = s;
    return whole * 1000 + frac;
}

static void parse_elements(void) {
    const char *p = ELEMENTS;
    while (*p) {
        const char *sym = p;
        while (*p != ' ') p++;
        struct element *e = malloc(sizeof *e);
        e->symbol = strndup(sym, (size_t)(p - sym));
        e->number = (int)strtol(p + 1, (char **)&p, 10);
        e->milli_weight = parse_milli(p + 1, &p);
        p++; /* newline */
        struct element **slot = &registry->buckets[hash_symbol(e->symbol) % BUCKETS];
        e->next = *slot;
        *slot = e;
        element_total++;
    }
}

static void sieve_primes(void) {
    uint8_t *composite = calloc(SIEVE_LIMIT, 1);
    int count = 0;
    for (int i = 2; i < SIEVE_LIMIT; i++) {
        if (composite[i]) continue;
        count++;
        for (int64_t j = (int64_t)i * i; j < SIEVE_LIMIT; j += i) composite[j] = 1;
    }
    primes = malloc((size_t)count * sizeof *primes);
    for (int i = 2; i < SIEVE_LIMIT; i++)
        if (!composite[i]) primes[prime_total++] = i;
    free(composite);
}

static void make_crc_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static void init(void) {
    init_runs_count++;
    make_crc_table();
    parse_elements();
    sieve_primes();
}

static uint32_t crc_update(uint32_t crc, const void *data, size_t len) {
    const uint8_t *b = data;
    for (size_t i = 0; i < len; i++) crc = crc_table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

EXPORT("wizer-initialize") void wizer_initialize(void) {
    __wasm_call_ctors();
    init();
}

EXPORT("wizer.resume") void wizer_resume(void) {
    int status = __main_void();
    __wasm_call_dtors();
    if (status) __wasi_proc_exit((__wasi_exitcode_t)status);
}

EXPORT("lookup") int32_t lookup(int32_t i) {
    return i >= 0 && i < prime_total ? primes[i] : -1;
}

EXPORT("weight") int32_t weight(int32_t packed) {
    char sym[5] = {0};
    memcpy(sym, &packed, 4);
    if (!registry || !registry->buckets) return -1;
    for (struct element *e = registry->buckets[hash_symbol(sym) % BUCKETS]; e; e = e->next)
        if (strcmp(e->symbol, sym) == 0) return e->milli_weight;
    return -1;
}

EXPORT("element_count") int32_t element_count(void) { return element_total; }
EXPORT("ctor_runs") int32_t ctor_runs(void) { return ctor_runs_count; }
EXPORT("init_runs") int32_t init_runs(void) { return init_runs_count; }

EXPORT("checksum") int32_t checksum(void) {
    uint32_t crc = 0xffffffffu;
    crc = crc_update(crc, registry, sizeof registry->magic + sizeof registry->ctor_order);
    for (int b = 0; b < BUCKETS; b++)
        for (struct element *e = registry->buckets[b]; e; e = e->next) {
            crc = crc_update(crc, e->symbol, strlen(e->symbol));
            crc = crc_update(crc, &e->number, sizeof e->number);
            crc = crc_update(crc, &e->milli_weight, sizeof e->milli_weight);
        }
    crc = crc_update(crc, primes, (size_t)prime_total * sizeof *primes);
    return (int32_t)~crc;
}

int main(void) {
    if (!ctor_runs_count) __wasm_call_ctors();
    if (!init_runs_count) init();
    printf("%d constructor calls, in order %d,%d; init ran %d time(s)\n", ctor_runs_count,
           registry->ctor_order[0], registry->ctor_order[1], init_runs_count);
    printf("%d elements; Fe weighs %d, U weighs %d\n", element_total, weight(0x6546),
           weight('U'));
    printf("%d primes below %d; the 10000th is %d\n", prime_total, SIEVE_LIMIT, lookup(9999));
    printf("checksum %08x\n", (unsigned)checksum());
    /* That wasi-libc's `_start` doesn't run the destructors (which flush stdio) either. */
    fflush(stdout);
    return 0;
}
