#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ring/director.h"
#include "ring/placement.h"

#define EXPIRE 60000u
#define STATE_MAGIC_FOR_TEST "mailring-director-state 1\n"

static struct str user(unsigned i, char *buf, size_t size)
{
	int n = snprintf(buf, size, "user%u@example.net", i);
	return str_from(buf, (size_t)n);
}

static enum director_route route(struct director *d, struct str u, uint64_t now,
				 char out[DIRECTOR_NAME_MAX])
{
	char fb[4][DIRECTOR_NAME_MAX];
	size_t nfb;
	return director_route(d, u, NULL, now, out, fb, 4, &nfb);
}

static struct director *three(void)
{
	struct director *d = director_new(EXPIRE);
	assert_int_equal(director_backend_add(d, "b1", 100, NULL), 0);
	assert_int_equal(director_backend_add(d, "b2", 100, NULL), 0);
	assert_int_equal(director_backend_add(d, "b3", 100, NULL), 0);
	return d;
}

static void test_backends(void **state)
{
	(void)state;
	struct director *d = three();
	struct director_backend_info info;
	assert_int_equal(director_backend_add(d, "b1", 1, NULL), -1); /* dup */
	assert_int_equal(director_backend_add(d, "", 1, NULL), -1);
	assert_int_equal(director_backend_add(d, "a b", 1, NULL), -1);
	assert_int_equal(director_backend_add(d, "x", 1, "bad tag"), -1);
	assert_int_equal(director_backend_count(d), 3);
	assert_int_equal(director_backend_set_weight(d, "b2", 0), 0);
	assert_int_equal(director_backend_set_weight(d, "nope", 0), -1);
	assert_true(director_backend_find(d, "b2", &info));
	assert_int_equal(info.weight, 0);
	assert_int_equal(director_backend_remove(d, "b2"), 0);
	assert_int_equal(director_backend_remove(d, "b2"), -1);
	assert_false(director_backend_find(d, "b2", &info));
	director_backend_get(d, 1, &info);
	assert_string_equal(info.name, "b3");
	director_free(&d);
	assert_null(d);
}

static void test_route_and_sticky(void **state)
{
	(void)state;
	struct director *d = three();
	char ub[64], b[DIRECTOR_NAME_MAX], b2[DIRECTOR_NAME_MAX];
	struct str u = user(1, ub, sizeof(ub));

	assert_int_equal(route(d, u, 0, b), DIRECTOR_ROUTE_HASHED);
	assert_string_equal(director_session_begin(d, u, b, 0), b);
	assert_int_equal(route(d, u, 1, b2), DIRECTOR_ROUTE_MAPPED);
	assert_string_equal(b, b2);
	/* first writer wins: a second proxy's different choice loses */
	const char *other = strcmp(b, "b1") == 0 ? "b2" : "b1";
	assert_string_equal(director_session_begin(d, u, other, 2), b);
	unsigned sessions;
	assert_true(director_user_lookup(d, u, 3, b2, &sessions));
	assert_int_equal(sessions, 2);
	director_session_end(d, u, b, 10);
	director_session_end(d, u, b, 20);
	/* no session left: the mapping holds for user_expire */
	assert_int_equal(route(d, u, 20 + EXPIRE - 1, b2), DIRECTOR_ROUTE_MAPPED);
	assert_int_equal(route(d, u, 20 + EXPIRE, b2), DIRECTOR_ROUTE_HASHED);
	/* an extra end (after a flush, say) is harmless */
	director_session_end(d, u, b, 30);
	director_free(&d);
}

/* I2: with 100,000 users mapped, adding a backend and changing weights
 * moves none of them; after their mappings expire the share moves in
 * proportion. */
static void test_i2_minimal_disruption(void **state)
{
	(void)state;
	enum { N = 100000 };
	struct director *d = three();
	char ub[64], b[DIRECTOR_NAME_MAX];
	static char before[N][4];

	for (unsigned i = 0; i < N; i++) {
		struct str u = user(i, ub, sizeof(ub));
		assert_int_equal(route(d, u, 0, b), DIRECTOR_ROUTE_HASHED);
		director_session_begin(d, u, b, 0);
		director_session_end(d, u, b, 0);
		memcpy(before[i], b, 3);
	}
	assert_int_equal(director_mapping_count(d), N);
	assert_int_equal(director_backend_add(d, "b4", 300, NULL), 0);
	assert_int_equal(director_backend_set_weight(d, "b1", 10), 0);
	unsigned moved = 0;
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(route(d, user(i, ub, sizeof(ub)), 1, b),
				 DIRECTOR_ROUTE_MAPPED);
		moved += memcmp(before[i], b, 3) != 0;
	}
	assert_int_equal(moved, 0);

	/* the mappings expire: now placement decides, by the new weights */
	assert_int_equal(director_expire(d, EXPIRE + 1), N);
	unsigned on_b4 = 0;
	for (unsigned i = 0; i < N; i++) {
		route(d, user(i, ub, sizeof(ub)), EXPIRE + 2, b);
		on_b4 += strcmp(b, "b4") == 0;
	}
	/* b4 has 300 of 510 weight */
	double share = (double)on_b4 / N, want = 300.0 / 510.0;
	print_message("after expiry b4 has %.4f of users (weight share %.4f)\n",
		      share, want);
	assert_true(share > want * 0.97 && share < want * 1.03);
	director_free(&d);
}

/* I4: down, move and flush drop or change mappings; drained keeps them. */
static void test_i4_down_move_flush_drain(void **state)
{
	(void)state;
	struct director *d = three();
	char ub[64], b[DIRECTOR_NAME_MAX], b2[DIRECTOR_NAME_MAX];
	struct str u = user(7, ub, sizeof(ub));

	route(d, u, 0, b);
	director_session_begin(d, u, b, 0);
	/* drained (weight 0): the mapped user stays, new users go elsewhere */
	director_backend_set_weight(d, b, 0);
	assert_int_equal(route(d, u, 1, b2), DIRECTOR_ROUTE_MAPPED);
	assert_string_equal(b, b2);
	for (unsigned i = 100; i < 200; i++) {
		char ub2[64];
		route(d, user(i, ub2, sizeof(ub2)), 1, b2);
		assert_string_not_equal(b, b2);
	}
	director_backend_set_weight(d, b, 100);
	/* down: the mapping goes, the user is placed elsewhere */
	director_backend_set_state(d, b, DIRECTOR_BACKEND_DOWN);
	assert_int_equal(route(d, u, 2, b2), DIRECTOR_ROUTE_HASHED);
	assert_string_not_equal(b, b2);
	struct director_backend_info info;
	director_backend_find(d, b, &info);
	assert_int_equal(info.users, 0);
	assert_int_equal(info.sessions, 0);
	/* coming back up does not steal anyone */
	director_session_begin(d, u, b2, 3);
	director_backend_set_state(d, b, DIRECTOR_BACKEND_UP);
	char b3[DIRECTOR_NAME_MAX];
	assert_int_equal(route(d, u, 4, b3), DIRECTOR_ROUTE_MAPPED);
	assert_string_equal(b3, b2);
	/* move */
	assert_int_equal(director_move(d, u, "nope", 5), -1);
	assert_int_equal(director_move(d, u, b, 5), 0);
	assert_int_equal(route(d, u, 6, b3), DIRECTOR_ROUTE_MAPPED);
	assert_string_equal(b3, b);
	/* an idle mapping can be dropped, a busy one cannot */
	assert_false(director_unmap_idle(d, u, "nope"));
	director_session_begin(d, u, b, 7);
	assert_false(director_unmap_idle(d, u, b));
	director_session_end(d, u, b, 8);
	assert_true(director_unmap_idle(d, u, b));
	assert_int_equal(director_move(d, u, b, 9), 0);
	/* flush */
	assert_int_equal(director_flush(d, b), 1);
	assert_int_equal(director_flush(d, b), 0);
	assert_int_equal(director_mapping_count(d), 0);
	director_free(&d);
}

static void test_tags(void **state)
{
	(void)state;
	struct director *d = director_new(EXPIRE);
	char ub[64], b[DIRECTOR_NAME_MAX], fb[4][DIRECTOR_NAME_MAX];
	size_t nfb;
	director_backend_add(d, "plain", 100, NULL);
	director_backend_add(d, "vip1", 100, "vip");
	director_backend_add(d, "vip2", 100, "vip");
	for (unsigned i = 0; i < 50; i++) {
		struct str u = user(i, ub, sizeof(ub));
		assert_int_equal(director_route(d, u, "vip", 0, b, fb, 4, &nfb),
				 DIRECTOR_ROUTE_HASHED);
		assert_true(strncmp(b, "vip", 3) == 0);
		assert_int_equal(nfb, 1);
		assert_true(strncmp(fb[0], "vip", 3) == 0);
		assert_int_equal(director_route(d, u, NULL, 0, b, fb, 4, &nfb),
				 DIRECTOR_ROUTE_HASHED);
		assert_string_equal(b, "plain");
	}
	assert_int_equal(director_route(d, STR("x"), "gold", 0, b, fb, 4, &nfb),
			 DIRECTOR_ROUTE_NONE);
	director_free(&d);
}

static void count_user(const char *u, unsigned sessions, void *ctx)
{
	(void)u;
	(void)sessions;
	(*(unsigned *)ctx)++;
}

static void test_state_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/mr-test-director-XXXXXX";
	char path[128], err[256];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state", dir);

	struct director *d = three();
	char ub[64], b[DIRECTOR_NAME_MAX], b2[DIRECTOR_NAME_MAX];
	director_backend_set_weight(d, "b2", 0);          /* drained */
	director_backend_set_state(d, "b3", DIRECTOR_BACKEND_DOWN);
	for (unsigned i = 0; i < 500; i++) {
		struct str u = user(i, ub, sizeof(ub));
		route(d, u, 1000, b);
		director_session_begin(d, u, b, 1000);
		if (i % 2 == 0)
			director_session_end(d, u, b, 1000);
	}
	assert_int_equal(director_save(d, path, 2000, err, sizeof(err)), 0);
	assert_int_equal(access(path, F_OK), 0);

	/* a restart: config gives the backends, the state file the rest */
	struct director *r = three();
	assert_int_equal(director_load(r, path, 50, err, sizeof(err)), 0);
	struct director_backend_info info;
	director_backend_find(r, "b2", &info);
	assert_int_equal(info.weight, 0);
	director_backend_find(r, "b3", &info);
	assert_int_equal(info.state, DIRECTOR_BACKEND_DOWN);
	assert_int_equal(director_mapping_count(r), 500);
	for (unsigned i = 0; i < 500; i++) {
		struct str u = user(i, ub, sizeof(ub));
		route(d, u, 2000, b);
		assert_int_equal(route(r, u, 60, b2), DIRECTOR_ROUTE_MAPPED);
		assert_string_equal(b, b2);
	}
	unsigned n = 0;
	director_users(r, "b1", 60, count_user, &n);
	director_backend_find(r, "b1", &info);
	assert_int_equal(n, info.users);
	/* ended sessions kept their remaining time (EXPIRE - 1000) */
	assert_int_equal(director_expire(r, 50 + EXPIRE - 1000 + 1), 250);
	director_free(&r);

	/* damaged files are refused with file:line */
	static const char *bad[] = {
		"", "something else\n", STATE_MAGIC_FOR_TEST "backend b1 x up -\n",
		STATE_MAGIC_FOR_TEST "map u1 b1\n", STATE_MAGIC_FOR_TEST "bogus\n",
		STATE_MAGIC_FOR_TEST "backend b1 1 up -", /* no newline: torn */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		FILE *f = fopen(path, "w");
		fputs(bad[i], f);
		fclose(f);
		struct director *x = three();
		assert_int_equal(director_load(x, path, 0, err, sizeof(err)), -1);
		assert_non_null(strstr(err, path));
		director_free(&x);
	}
	unlink(path);
	struct director *x = three();
	assert_int_equal(director_load(x, path, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file"));
	director_free(&x);
	director_free(&d);
	rmdir(dir);
}

/* Bounded load: with one backend holding far more than its share of the
 * sessions, new users that rank it first overflow to their next-best
 * backend; without the cap they do not; mapped users never move. */
static void test_bounded_load(void **state)
{
	struct director *d = director_new(60000);
	char b[DIRECTOR_NAME_MAX], fb[4][DIRECTOR_NAME_MAX], name[32];
	size_t nfb;
	(void)state;

	assert_int_equal(director_backend_add(d, "b1", 100, NULL), 0);
	assert_int_equal(director_backend_add(d, "b2", 100, NULL), 0);
	assert_int_equal(director_backend_add(d, "b3", 100, NULL), 0);
	/* 300 sessions on b1, none elsewhere */
	for (int i = 0; i < 300; i++) {
		str_printf(name, sizeof(name), "hot%d", i);
		assert_non_null(director_session_begin(d, str_cstr(name), "b1", 0));
	}
	unsigned int to_b1_uncapped = 0, to_b1_capped = 0;
	for (int i = 0; i < 3000; i++) {
		str_printf(name, sizeof(name), "new%d", i);
		director_place(d, str_cstr(name), NULL, b, fb, 4, &nfb);
		to_b1_uncapped += strcmp(b, "b1") == 0;
	}
	director_set_max_load(d, 125);
	for (int i = 0; i < 3000; i++) {
		str_printf(name, sizeof(name), "new%d", i);
		director_place(d, str_cstr(name), NULL, b, fb, 4, &nfb);
		to_b1_capped += strcmp(b, "b1") == 0;
		/* the overflow keeps the whole ranking as fallbacks */
		assert_int_equal(nfb, 2);
	}
	assert_true(to_b1_uncapped > 800);   /* about a third */
	assert_int_equal(to_b1_capped, 0);   /* 300 > 1.25 * 100 + 1 */
	/* a mapped user stays on b1 whatever the load */
	char mapped[DIRECTOR_NAME_MAX];
	assert_int_equal(director_route(d, str_cstr("hot7"), NULL, 0, mapped, fb,
					4, &nfb), DIRECTOR_ROUTE_MAPPED);
	assert_string_equal(mapped, "b1");
	director_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backends),
		cmocka_unit_test(test_route_and_sticky),
		cmocka_unit_test(test_i2_minimal_disruption),
		cmocka_unit_test(test_i4_down_move_flush_drain),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_state_file),
		cmocka_unit_test(test_bounded_load),
	};
	return cmocka_run_group_tests_name("ring_director", tests, NULL, NULL);
}
