#include "imap_seqset.h"

#include <stdlib.h>

#include "xmalloc.h"

/* "*" ranges are kept apart from the fixed ones: "n:*" is [n, star] or
 * [star, n], and every such range contains star, so their union is one
 * interval [min(lo, star), max(hi, star)] where lo and hi are the smallest
 * and largest fixed endpoints given with a "*". A bare "*" adds no
 * endpoint. So any number of "*" elements costs three fields. */
struct seq_range {
	uint32_t lo, hi;
};

struct imap_seqset {
	struct seq_range *ranges; /* sorted, disjoint, non-adjacent */
	size_t count;
	bool has_star;
	bool star_anchored; /* some "n:*" gave anchor_lo/anchor_hi */
	uint32_t anchor_lo, anchor_hi;
};

#define SEQSET_ERROR "Invalid messageset"

/* Parses one seq-number at s[*pos]: a number 1..2^32-1 or "*" (returned as
 * star true). */
static bool parse_number(struct str s, size_t *pos, uint32_t *value_r,
			 bool *star_r)
{
	size_t i = *pos;

	*star_r = false;
	if (i < s.len && s.p[i] == '*') {
		*star_r = true;
		*value_r = 0;
		*pos = i + 1;
		return true;
	}
	uint64_t v = 0;
	size_t start = i;
	while (i < s.len && s.p[i] >= '0' && s.p[i] <= '9') {
		v = v * 10 + (uint64_t)(s.p[i] - '0');
		if (v > UINT32_MAX)
			return false;
		i++;
	}
	if (i == start || v == 0)
		return false;
	*value_r = (uint32_t)v;
	*pos = i;
	return true;
}

static int range_cmp(const void *a, const void *b)
{
	const struct seq_range *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->hi < y->hi ? -1 : (x->hi > y->hi);
}

static void add_anchor(struct imap_seqset *set, uint32_t v)
{
	if (!set->star_anchored) {
		set->star_anchored = true;
		set->anchor_lo = set->anchor_hi = v;
		return;
	}
	if (v < set->anchor_lo)
		set->anchor_lo = v;
	if (v > set->anchor_hi)
		set->anchor_hi = v;
}

int imap_seqset_parse(struct str s, struct imap_seqset **set_r,
		      const char **error_r)
{
	struct imap_seqset *set = xcalloc(1, sizeof(*set));
	/* Each element takes at least two bytes with its comma, so this
	 * bounds the array by the input length. */
	size_t cap = s.len / 2 + 1, n = 0;
	size_t pos = 0;

	*set_r = NULL;
	set->ranges = xreallocarray(NULL, cap, sizeof(*set->ranges));
	if (s.len == 0)
		goto fail;
	for (;;) {
		uint32_t a, b;
		bool a_star, b_star;

		if (!parse_number(s, &pos, &a, &a_star))
			goto fail;
		b = a;
		b_star = a_star;
		if (pos < s.len && s.p[pos] == ':') {
			pos++;
			if (!parse_number(s, &pos, &b, &b_star))
				goto fail;
		}
		if (a_star || b_star) {
			set->has_star = true;
			if (!a_star)
				add_anchor(set, a);
			if (!b_star)
				add_anchor(set, b);
		} else {
			if (n == cap)
				goto fail; /* cannot happen: see cap */
			set->ranges[n].lo = a < b ? a : b;
			set->ranges[n].hi = a < b ? b : a;
			n++;
		}
		if (pos == s.len)
			break;
		if (s.p[pos] != ',')
			goto fail;
		pos++;
	}

	if (n > 1)
		qsort(set->ranges, n, sizeof(*set->ranges), range_cmp);
	size_t out = 0;
	for (size_t i = 0; i < n; i++) {
		struct seq_range r = set->ranges[i];
		/* Merge overlapping and adjacent ranges: 1:3,4:5 is 1:5. */
		if (out > 0 &&
		    (uint64_t)r.lo <= (uint64_t)set->ranges[out - 1].hi + 1) {
			if (r.hi > set->ranges[out - 1].hi)
				set->ranges[out - 1].hi = r.hi;
			continue;
		}
		set->ranges[out++] = r;
	}
	set->count = out;
	if (set->count + (set->has_star ? 1 : 0) > IMAP_SEQSET_MAX_RANGES) {
		*error_r = "Too many ranges in messageset";
		imap_seqset_free(&set);
		return -1;
	}
	*set_r = set;
	return 0;
fail:
	*error_r = SEQSET_ERROR;
	imap_seqset_free(&set);
	return -1;
}

void imap_seqset_free(struct imap_seqset **set)
{
	if (*set == NULL)
		return;
	free((*set)->ranges);
	xfree(set);
}

/* The resolved "*" range; false when there is none (no "*" or an empty
 * mailbox). */
static bool star_range(const struct imap_seqset *set, uint32_t star,
		       uint32_t *lo_r, uint32_t *hi_r)
{
	if (!set->has_star || star == 0)
		return false;
	*lo_r = star;
	*hi_r = star;
	if (set->star_anchored) {
		if (set->anchor_lo < *lo_r)
			*lo_r = set->anchor_lo;
		if (set->anchor_hi > *hi_r)
			*hi_r = set->anchor_hi;
	}
	return true;
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t value,
			  uint32_t star)
{
	uint32_t lo, hi;

	if (value == 0)
		return false;
	if (star_range(set, star, &lo, &hi) && value >= lo && value <= hi)
		return true;
	size_t l = 0, r = set->count;
	while (l < r) {
		size_t mid = l + (r - l) / 2;
		if (value < set->ranges[mid].lo)
			r = mid;
		else if (value > set->ranges[mid].hi)
			l = mid + 1;
		else
			return true;
	}
	return false;
}

bool imap_seqset_has_star(const struct imap_seqset *set)
{
	return set->has_star;
}

size_t imap_seqset_range_count(const struct imap_seqset *set)
{
	return set->count + (set->has_star ? 1 : 0);
}

void imap_seqset_iter_init(struct imap_seqset_iter *it,
			   const struct imap_seqset *set, uint32_t star,
			   uint32_t max)
{
	*it = (struct imap_seqset_iter){.set = set, .star = star, .max = max};
	it->star_pending = star_range(set, star, &it->star_lo, &it->star_hi);
	it->cur = 1;
	it->cur_hi = 0;
}

bool imap_seqset_iter_next_range(struct imap_seqset_iter *it, uint32_t *lo_r,
				 uint32_t *hi_r)
{
	const struct imap_seqset *set = it->set;
	uint64_t lo, hi;

	/* Take whichever source starts lowest, then absorb everything from
	 * both sources that overlaps or touches it. */
	if (it->idx < set->count &&
	    (!it->star_pending || set->ranges[it->idx].lo <= it->star_lo)) {
		lo = set->ranges[it->idx].lo;
		hi = set->ranges[it->idx].hi;
		it->idx++;
	} else if (it->star_pending) {
		lo = it->star_lo;
		hi = it->star_hi;
		it->star_pending = false;
	} else {
		return false;
	}
	for (;;) {
		if (it->idx < set->count && set->ranges[it->idx].lo <= hi + 1) {
			if (set->ranges[it->idx].hi > hi)
				hi = set->ranges[it->idx].hi;
			it->idx++;
		} else if (it->star_pending && it->star_lo <= hi + 1) {
			if (it->star_hi > hi)
				hi = it->star_hi;
			it->star_pending = false;
		} else {
			break;
		}
	}
	/* Ranges come in ascending order, so one past max ends the walk. */
	if (lo > it->max) {
		it->idx = set->count;
		it->star_pending = false;
		return false;
	}
	*lo_r = (uint32_t)lo;
	*hi_r = (uint32_t)(hi > it->max ? it->max : hi);
	return true;
}

bool imap_seqset_iter_next(struct imap_seqset_iter *it, uint32_t *value_r)
{
	if (it->cur > it->cur_hi) {
		uint32_t lo, hi;
		if (!imap_seqset_iter_next_range(it, &lo, &hi))
			return false;
		it->cur = lo;
		it->cur_hi = hi;
	}
	*value_r = (uint32_t)it->cur++;
	return true;
}

uint32_t imap_seqset_max(const struct imap_seqset *set, uint32_t star)
{
	struct imap_seqset_iter it;
	uint32_t lo, hi, max = 0;

	imap_seqset_iter_init(&it, set, star, UINT32_MAX);
	while (imap_seqset_iter_next_range(&it, &lo, &hi))
		max = hi;
	return max;
}
