/* A component fixture built by a real toolchain (clang + wasm-ld + wasm-tools component new):
   init sieves the primes below LIMIT into a bitmap and a prefix-count table; the exports
   answer from them, sieving first if init has not run. */
#include <stdint.h>

#define LIMIT (1u << 20)

static uint8_t composite[LIMIT / 8];
static uint32_t below[LIMIT / 64 + 1];
static uint32_t initialized;
static uint32_t init_count;

static int is_composite(uint32_t n) { return composite[n >> 3] >> (n & 7) & 1; }

static void sieve(void) {
    composite[0] |= 3; /* 0 and 1 */
    for (uint32_t i = 2; i * i < LIMIT; i++)
        if (!is_composite(i))
            for (uint32_t j = i * i; j < LIMIT; j += i) composite[j >> 3] |= 1u << (j & 7);
    uint32_t count = 0;
    for (uint32_t n = 0; n < LIMIT; n++) {
        if (n % 64 == 0) below[n / 64] = count;
        count += !is_composite(n);
    }
    below[LIMIT / 64] = count;
    initialized = 1;
    init_count++;
}

static void ensure(void) { if (!initialized) sieve(); }

__attribute__((export_name("wizer-initialize"))) void wizer_initialize(void) { sieve(); }

__attribute__((export_name("is-prime"))) int32_t is_prime(uint32_t n) {
    ensure();
    return n < LIMIT && !is_composite(n);
}

__attribute__((export_name("count-below"))) uint32_t count_below(uint32_t n) {
    ensure();
    if (n > LIMIT) n = LIMIT;
    uint32_t count = below[n / 64];
    for (uint32_t k = n & ~63u; k < n; k++) count += !is_composite(k);
    return count;
}

__attribute__((export_name("inits"))) uint32_t inits(void) { return init_count; }
