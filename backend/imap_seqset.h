#ifndef MR_IMAP_SEQSET_H
#define MR_IMAP_SEQSET_H

/* RFC 3501 sequence sets ("1,3:5,7:*,*:2,*") for sequence numbers and
 * UIDs. Parsing normalises the set once (sorted, overlapping and adjacent
 * ranges merged); "*" stays symbolic and is resolved at evaluation time
 * against the caller's "star" value (the highest sequence number or the
 * highest UID in use), so one parsed set stays right while the mailbox
 * changes under a long command.
 *
 * Semantics of "*" (RFC 3501 section 9, seq-range; as Dovecot):
 *   - "n:*" means every value between n and star inclusive, in either
 *     order: when n > star it is star:n, so "100:*" with star 50 contains
 *     50 (UID FETCH 100:* returns the last message).
 *   - star == 0 means an empty mailbox: ranges with "*" contain nothing
 *     (they cannot name a message that does not exist).
 * The SEARCHRES "$" is not supported. "$" is an invalid set here. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "str.h"

/* Largest number of ranges a set may hold after merging. A set is kept as
 * a sorted array for O(log n) lookups; 10000 ranges are 80 KiB, beyond
 * any real client (a client listing 10000 disjoint UIDs is better served
 * by SEARCHRES or ranges) and small enough that a hostile client cannot
 * make one command cost much memory. Before merging the count is bounded
 * by the input length, which the tokenizer's line limit caps. */
#define IMAP_SEQSET_MAX_RANGES 10000

struct imap_seqset;

/* Parses s (the whole atom) into a new set.
 * Returns 0 and *set_r, or -1 with *error_r (static, client-safe):
 * empty input or element, 0, a value above 2^32-1, any byte other than
 * digits, ':', ',' and '*', or more than IMAP_SEQSET_MAX_RANGES ranges.
 * Leading zeros ("007") are accepted as Dovecot does. */
int imap_seqset_parse(struct str s, struct imap_seqset **set_r,
		      const char **error_r);

/* Frees *set and sets it to NULL; safe on NULL. */
void imap_seqset_free(struct imap_seqset **set);

/* Whether value is in the set when "*" means star (see above). */
bool imap_seqset_contains(const struct imap_seqset *set, uint32_t value,
			  uint32_t star);

/* The highest value the set names when "*" means star (0: none). */
uint32_t imap_seqset_max(const struct imap_seqset *set, uint32_t star);
/* Whether the set uses "*" anywhere. */
bool imap_seqset_has_star(const struct imap_seqset *set);

/* Ranges after merging, "*" ranges counted as one. For limits and tests. */
size_t imap_seqset_range_count(const struct imap_seqset *set);

/* Iterates the set in ascending order, "*" resolved to star, only over
 * 1..max. Plain struct so it lives on the caller's stack; its fields are
 * private. The set must outlive the iterator and not change. */
struct imap_seqset_iter {
	const struct imap_seqset *set;
	uint32_t star, max;
	size_t idx;        /* next fixed range */
	bool star_pending; /* the star range is still to come */
	uint32_t star_lo, star_hi;
	uint64_t cur, cur_hi; /* value iteration: current range, cur > cur_hi
			       * when exhausted */
};

void imap_seqset_iter_init(struct imap_seqset_iter *it,
			   const struct imap_seqset *set, uint32_t star,
			   uint32_t max);
/* Next disjoint, non-adjacent range [*lo_r, *hi_r], ascending; false at
 * the end. Cost is O(ranges) over the whole walk, however wide they are:
 * use this for UID sets (whose "1:*" may span four billion values). */
bool imap_seqset_iter_next_range(struct imap_seqset_iter *it, uint32_t *lo_r,
				 uint32_t *hi_r);
/* Next single value, ascending; false at the end. Do not mix with
 * imap_seqset_iter_next_range on one iterator. */
bool imap_seqset_iter_next(struct imap_seqset_iter *it, uint32_t *value_r);

#endif
