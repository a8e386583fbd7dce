#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "ring/placement.h"
#include "str.h"

#define USERS 1000000u
#define MAX_NODES 16

struct fleet {
	struct ring_candidate c[MAX_NODES];
	size_t n;
};

static void fleet_add(struct fleet *f, const char *id, uint32_t weight)
{
	f->c[f->n].id_hash = ring_hash(str_cstr(id));
	f->c[f->n].weight = weight;
	f->n++;
}

static uint64_t user_hash(unsigned i)
{
	char name[32];
	int len = snprintf(name, sizeof(name), "user%u@example.net", i);
	return ring_hash(str_from(name, (size_t)len));
}

/* The hash is a contract between proxies and across releases: changing it
 * remaps every user. These values pin it. */
static void test_hash_is_stable(void **state)
{
	(void)state;
	assert_true(ring_hash(STR("")) == 0xc3817c016ba4ff30ULL);
	assert_true(ring_hash(STR("user1")) == 0xf0a306be29f1db90ULL);
	assert_true(ring_hash(STR("backend-a")) == 0x0ad6af29990952c5ULL);
	assert_true(ring_hash(STR("user1")) != ring_hash(STR("user2")));
}

static void test_pinned_vectors(void **state)
{
	(void)state;
	struct fleet f = { .n = 0 };
	fleet_add(&f, "b1", 1);
	fleet_add(&f, "b2", 2);
	fleet_add(&f, "b3", 3);
	/* Recorded once; a change here means every deployed user moves. */
	static const long expect[8] = { 1, 1, 1, 2, 0, 1, 0, 2 };
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(ring_pick(f.c, f.n, user_hash(i)), expect[i]);
}

static void test_no_eligible(void **state)
{
	(void)state;
	struct fleet f = { .n = 0 };
	uint32_t order[4];
	assert_int_equal(ring_pick(f.c, 0, 1), -1);
	fleet_add(&f, "drained", 0);
	assert_int_equal(ring_pick(f.c, f.n, 1), -1);
	assert_int_equal(ring_rank(f.c, f.n, 1, order, 4), 0);
	assert_int_equal(ring_rank(f.c, f.n, 1, order, 0), 0);
}

static void test_rank_orders_fallbacks(void **state)
{
	(void)state;
	struct fleet f = { .n = 0 };
	const char *ids[] = { "a", "b", "c", "d", "e" };
	for (int i = 0; i < 5; i++)
		fleet_add(&f, ids[i], (uint32_t)(i + 1));
	f.c[2].weight = 0; /* drained: never ranked */
	for (unsigned u = 0; u < 1000; u++) {
		uint32_t order[RING_RANK_MAX];
		uint64_t h = user_hash(u);
		size_t k = ring_rank(f.c, f.n, h, order, RING_RANK_MAX);
		assert_int_equal(k, 4);
		assert_int_equal(order[0], ring_pick(f.c, f.n, h));
		for (size_t j = 0; j < k; j++) {
			assert_int_not_equal(order[j], 2);
			if (j > 0)
				assert_true(ring_score(h, &f.c[order[j - 1]]) >=
					    ring_score(h, &f.c[order[j]]));
		}
		/* removing the winner promotes the runner-up, nothing else */
		struct fleet g = f;
		g.c[order[0]].weight = 0;
		assert_int_equal(ring_pick(g.c, g.n, h), order[1]);
	}
}

/* 1,000,000 users over 10 backends of weights 1-4: each share within 2%
 * (relative) of its weight share. */
static void test_weighted_shares(void **state)
{
	(void)state;
	static const uint32_t weights[10] = { 1, 2, 3, 4, 1, 2, 3, 4, 2, 3 };
	struct fleet f = { .n = 0 };
	unsigned count[10] = { 0 };
	uint32_t total = 0;
	char id[32];

	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "backend%d", i);
		fleet_add(&f, id, weights[i]);
		total += weights[i];
	}
	for (unsigned u = 0; u < USERS; u++)
		count[ring_pick(f.c, f.n, user_hash(u))]++;
	for (int i = 0; i < 10; i++) {
		double want = (double)USERS * weights[i] / total;
		double rel = ((double)count[i] - want) / want;
		print_message("backend%d weight %u: %u users (%.3f%% off)\n", i,
			      weights[i], count[i], rel * 100);
		assert_true(rel < 0.02 && rel > -0.02);
	}
}

/* Counts users whose backend differs between two fleets. */
static unsigned moved(const struct fleet *a, const struct fleet *b)
{
	unsigned n = 0;
	for (unsigned u = 0; u < USERS; u++) {
		uint64_t h = user_hash(u);
		long pa = ring_pick(a->c, a->n, h);
		long pb = ring_pick(b->c, b->n, h);
		/* backends are compared by identity, not by index */
		if (a->c[pa].id_hash != b->c[pb].id_hash)
			n++;
	}
	return n;
}

static void base_fleet(struct fleet *f)
{
	static const uint32_t weights[10] = { 1, 2, 3, 4, 1, 2, 3, 4, 2, 3 };
	char id[32];
	f->n = 0;
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "backend%d", i);
		fleet_add(f, id, weights[i]);
	}
}

static void assert_minimal(unsigned got, double optimal_fraction,
			   const char *what)
{
	double optimal = optimal_fraction * USERS;
	print_message("%s: moved %u users, optimal %.0f (ratio %.4f)\n", what,
		      got, optimal, got / optimal);
	assert_true(got <= 1.1 * optimal);
	/* and it must actually move users onto new capacity */
	assert_true(got >= 0.9 * optimal);
}

static void test_minimal_disruption(void **state)
{
	(void)state;
	struct fleet a, b;
	base_fleet(&a); /* total weight 25 */

	b = a;
	fleet_add(&b, "backend-new", 3);
	assert_minimal(moved(&a, &b), 3.0 / 28, "add weight 3");

	b = a;
	b.c[3] = b.c[9];
	b.n = 9; /* remove backend3, weight 4 */
	assert_minimal(moved(&a, &b), 4.0 / 25, "remove weight 4");

	b = a;
	b.c[0].weight = 4; /* backend0 1 -> 4 */
	assert_minimal(moved(&a, &b), 4.0 / 28 - 1.0 / 25, "reweight 1->4");

	b = a;
	b.c[7].weight = 1; /* backend7 4 -> 1 */
	assert_minimal(moved(&a, &b), 4.0 / 25 - 1.0 / 22, "reweight 4->1");
}

/* ring_rank skips the log for candidates whose upper bound cannot enter
 * the list: its answer must be exactly the full scoring's, for every
 * depth, with weights that differ and some that are 0. */
static void test_rank_matches_full_scoring(void **state)
{
	enum { N = 500, NUSERS = 300 };
	struct ring_candidate cands[N];
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	(void)state;

	for (size_t i = 0; i < N; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		cands[i].id_hash = seed;
		cands[i].weight = (uint32_t)((seed >> 33) % 7 == 0 ? 0
								: (seed >> 40) % 300 + 1);
	}
	for (uint64_t u = 0; u < NUSERS; u++) {
		uint64_t uh = u * 0x2545f4914f6cdd1dull + 7;
		uint32_t got[RING_RANK_MAX];
		size_t n = ring_rank(cands, N, uh, got, RING_RANK_MAX);
		assert_int_equal(n, RING_RANK_MAX);
		/* the reference: score all, select the best one by one */
		bool used[N] = { false };
		for (size_t k = 0; k < n; k++) {
			double best = 0.0;
			size_t bi = N;
			for (size_t i = 0; i < N; i++) {
				double sc = ring_score(uh, &cands[i]);
				if (!used[i] && sc > best) {
					best = sc;
					bi = i;
				}
			}
			assert_true(bi < N);
			used[bi] = true;
			assert_int_equal(got[k], bi);
		}
		assert_int_equal(ring_pick(cands, N, uh), (long)got[0]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash_is_stable),
		cmocka_unit_test(test_pinned_vectors),
		cmocka_unit_test(test_no_eligible),
		cmocka_unit_test(test_rank_orders_fallbacks),
		cmocka_unit_test(test_weighted_shares),
		cmocka_unit_test(test_minimal_disruption),
		cmocka_unit_test(test_rank_matches_full_scoring),
	};
	return cmocka_run_group_tests_name("ring_placement", tests, NULL, NULL);
}
