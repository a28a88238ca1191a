// PCG32 (O'Neill, pcg-random.org): 64-bit LCG state, xorshift-rotate output. Small, fast, and its
// whole state is two integers, so checkpoints can store it and a resumed run draws the same numbers.
#include "core.h"

#include <math.h>

void ib_rng_seed(ib_rng *r, uint64_t seed, uint64_t stream) {
    r->state = 0;
    r->inc = (stream << 1u) | 1u;
    ib_rng_u32(r);
    r->state += seed;
    ib_rng_u32(r);
}

uint32_t ib_rng_u32(ib_rng *r) {
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ULL + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

uint32_t ib_rng_below(ib_rng *r, uint32_t n) {
    IB_ASSERT(n > 0, "ib_rng_below: n must be positive");
    uint32_t threshold = (uint32_t)(-n) % n;   // reject the low values that would bias the modulo
    for (;;) {
        uint32_t x = ib_rng_u32(r);
        if (x >= threshold) return x % n;
    }
}

float ib_rng_uniform(ib_rng *r) { return (float)(ib_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

float ib_rng_normal(ib_rng *r) {
    // Box-Muller with one draw per call (the pair's second half is dropped: simpler state).
    double u1 = ((double)(ib_rng_u32(r) >> 8) + 1.0) / 16777217.0;   // (0, 1]
    double u2 = (double)(ib_rng_u32(r) >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void ib_rng_fill_uniform(ib_rng *r, float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * ib_rng_uniform(r);
}

void ib_rng_fill_normal(ib_rng *r, float *x, int64_t n, float mean, float std) {
    for (int64_t i = 0; i < n; i++) x[i] = mean + std * ib_rng_normal(r);
}

void ib_rng_shuffle(ib_rng *r, int *idx, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)ib_rng_below(r, (uint32_t)i + 1);
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
