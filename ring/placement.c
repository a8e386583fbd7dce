#include "placement.h"

#include <math.h>

static inline uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

uint64_t ring_hash(struct str s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < s.len; i++) {
		h ^= (uint8_t)s.p[i];
		h *= 0x100000001b3ULL;
	}
	return splitmix64(h);
}

double ring_score(uint64_t user_hash, const struct ring_candidate *c)
{
	if (c->weight == 0)
		return 0.0;
	uint64_t h = splitmix64(user_hash ^ c->id_hash);
	/* 53 random bits, offset by half a step so u is never 0 or 1. */
	double u = ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
	return (double)c->weight / -log(u);
}

size_t ring_rank(const struct ring_candidate *cands, size_t n,
		 uint64_t user_hash, uint32_t *order_r, size_t max)
{
	size_t found = 0;
	/* A small insertion list of the best `max` so far; max is tiny
	 * (fallback depth), so this stays O(n * max). */
	double best[RING_RANK_MAX];

	if (max > RING_RANK_MAX)
		max = RING_RANK_MAX;
	if (max == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const struct ring_candidate *c = &cands[i];
		if (c->weight == 0)
			continue;
		uint64_t h = splitmix64(user_hash ^ c->id_hash);
		double u = ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
		/* The score w / -ln(u) is below w / (1 - u) (-ln(u) > 1 - u
		 * on (0, 1)): when that bound cannot enter a full list, skip
		 * the log. Exact: the same ranking as scoring every one, at
		 * a fraction of the cost with many backends. */
		if (found == max && (double)c->weight <= best[max - 1] * (1.0 - u))
			continue;
		double s = (double)c->weight / -log(u);
		if (s <= 0.0)
			continue;
		size_t pos = found;
		while (pos > 0 && best[pos - 1] < s)
			pos--;
		if (pos >= max)
			continue;
		size_t last = found < max ? found : max - 1;
		for (size_t j = last; j > pos; j--) {
			best[j] = best[j - 1];
			order_r[j] = order_r[j - 1];
		}
		best[pos] = s;
		order_r[pos] = (uint32_t)i;
		if (found < max)
			found++;
	}
	return found;
}

long ring_pick(const struct ring_candidate *cands, size_t n,
	       uint64_t user_hash)
{
	uint32_t idx;
	return ring_rank(cands, n, user_hash, &idx, 1) == 1 ? (long)idx : -1;
}
