#ifndef MR_FUZZ_COMMON_H
#define MR_FUZZ_COMMON_H

/*
 * What every parser fuzz target shares: it feeds the same input once whole
 * and once in data-driven chunks, hashes the events each run produced, and
 * aborts if the two hashes differ (a parser must not depend on how its
 * input was split).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "str.h"

/* FNV-1a over the events of one run. */
static inline void fuzz_mix(uint64_t *hash, const void *p, size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++) {
		*hash ^= b[i];
		*hash *= 1099511628211ULL;
	}
}

static inline void fuzz_mix_u64(uint64_t *hash, uint64_t v)
{
	fuzz_mix(hash, &v, sizeof(v));
}

/* Mixes a slice, reading every byte of it (so ASan catches a slice that
 * points outside its buffer). forbid_nul: a NUL in it is a parser bug. */
static inline void fuzz_mix_str(uint64_t *hash, struct str s, int forbid_nul)
{
	fuzz_mix_u64(hash, s.len);
	if (s.len > 0) {
		if (s.p == NULL || (forbid_nul && memchr(s.p, 0, s.len) != NULL))
			abort();
		fuzz_mix(hash, s.p, s.len);
	}
}

/* Chunk sizes of 1..64 bytes drawn from a seed; seed 0 means "all at
 * once". */
struct fuzz_chunker {
	unsigned int seed;
	uint32_t rng;
};

static inline void fuzz_chunker_init(struct fuzz_chunker *c, unsigned int seed)
{
	c->seed = seed;
	c->rng = seed * 2654435761u + 1;
}

/* How many of the left bytes to feed next. */
static inline size_t fuzz_chunk_next(struct fuzz_chunker *c, size_t left)
{
	if (c->seed == 0)
		return left;
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 17;
	c->rng ^= c->rng << 5;
	size_t n = 1 + c->rng % (1 + (c->seed & 63));
	return n < left ? n : left;
}

#endif
