#ifndef MR_RING_PLACEMENT_H
#define MR_RING_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "str.h"

/*
 * Placement: weighted rendezvous (highest-random-weight) hashing.
 *
 * Each (user, backend) pair gets a pseudo-random score; the user goes to the
 * eligible backend with the highest weighted score. With score
 * w / -ln(u), u uniform in (0,1), the winner is backend i with probability
 * w_i / sum(w): an exponential race. Consequences the ring relies on:
 *   - same user + same backend set => same answer on every proxy;
 *   - adding a backend takes users only onto the new backend, removing one
 *     moves only its own users, and a weight change moves only the users
 *     that must move: the minimal share, with no shared table;
 *   - the ranking gives each user an ordered list of fallbacks.
 *
 * The hash functions are part of the wire contract between proxies and
 * across versions: changing them remaps every user. The unit test pins
 * known values so that cannot happen by accident.
 */

struct ring_candidate {
	uint64_t id_hash; /* ring_hash() of the backend id */
	uint32_t weight;  /* 0 = not eligible (drained or down) */
};

/* A stable 64-bit hash of bytes (FNV-1a, then a splitmix64 finaliser). */
uint64_t ring_hash(struct str s);

/* The weighted score of one backend for one user; higher wins. Returns 0
 * for weight 0. */
double ring_score(uint64_t user_hash, const struct ring_candidate *c);

/* The deepest ranking ring_rank gives: fallbacks past this are pointless. */
#define RING_RANK_MAX 16

/* Ranks the eligible candidates for user_hash, best first. Writes up to
 * max (at most RING_RANK_MAX) indices into order_r and returns how many were written (0 when no
 * candidate has a weight). Ties, which need equal 64-bit scores, break by
 * the lower index. */
size_t ring_rank(const struct ring_candidate *cands, size_t n,
		 uint64_t user_hash, uint32_t *order_r, size_t max);

/* The best candidate's index, or -1 when none is eligible. */
long ring_pick(const struct ring_candidate *cands, size_t n,
	       uint64_t user_hash);

#endif
