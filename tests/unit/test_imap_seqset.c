#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/imap_seqset.h"
#include "buf.h"
#include "str.h"

static struct imap_seqset *must_parse(const char *s)
{
	struct imap_seqset *set = NULL;
	const char *error = NULL;

	if (imap_seqset_parse(str_cstr(s), &set, &error) < 0)
		fail_msg("parse '%s' failed: %s", s, error);
	assert_non_null(set);
	return set;
}

/* Renders the values 1..max that the set contains under star, checking
 * contains(), the value iterator and the range iterator agree. */
static char *render(const struct imap_seqset *set, uint32_t star, uint32_t max)
{
	static char out[512];
	struct buf *b = buf_new(64, 400);
	struct imap_seqset_iter it;
	uint32_t v, expect = 0;

	imap_seqset_iter_init(&it, set, star, max);
	for (uint32_t i = 1; i <= max; i++) {
		if (!imap_seqset_contains(set, i, star))
			continue;
		assert_true(imap_seqset_iter_next(&it, &v));
		assert_int_equal(v, i);
		buf_printf(b, "%s%u", b->len > 0 ? "," : "", i);
	}
	assert_false(imap_seqset_iter_next(&it, &v));

	/* ranges: disjoint, ascending, non-adjacent, covering the same */
	uint32_t lo, hi;
	imap_seqset_iter_init(&it, set, star, max);
	while (imap_seqset_iter_next_range(&it, &lo, &hi)) {
		assert_true(lo <= hi);
		assert_true(lo > expect + 1 || expect == 0);
		for (uint64_t k = lo; k <= hi; k++)
			assert_true(
			    imap_seqset_contains(set, (uint32_t)k, star));
		expect = hi;
	}
	str_copy(buf_str(b), out, sizeof(out));
	buf_free(&b);
	return out;
}

#define EXPECT_SET(s, star, max, want)                                         \
	do {                                                                   \
		struct imap_seqset *set_ = must_parse(s);                      \
		assert_string_equal(render(set_, star, max), want);            \
		imap_seqset_free(&set_);                                       \
		assert_null(set_);                                             \
	} while (0)

static void test_max(void **state)
{
	(void)state;
	struct imap_seqset *set = must_parse("3,7:9");
	assert_int_equal(imap_seqset_max(set, 100), 9);
	imap_seqset_free(&set);
	set = must_parse("2:*");
	assert_int_equal(imap_seqset_max(set, 50), 50);
	assert_int_equal(imap_seqset_max(set, 0), 0); /* empty mailbox */
	imap_seqset_free(&set);
	set = must_parse("100:*");
	assert_int_equal(imap_seqset_max(set, 5), 100); /* 5:100 */
	imap_seqset_free(&set);
}

static void test_basic(void **state)
{
	(void)state;
	EXPECT_SET("1", 10, 10, "1");
	EXPECT_SET("3:5", 10, 10, "3,4,5");
	EXPECT_SET("5:3", 10, 10, "3,4,5");
	EXPECT_SET("1,3:5,7", 10, 10, "1,3,4,5,7");
	EXPECT_SET("9,2,4:3", 10, 10, "2,3,4,9");
	EXPECT_SET("007", 10, 10, "7");
	/* values above max are in the set but not iterated */
	EXPECT_SET("8:20", 10, 10, "8,9,10");
}

static void test_merge(void **state)
{
	struct imap_seqset *set;
	(void)state;

	set = must_parse("1,2,3:5,4,6,10:12,11");
	assert_int_equal(imap_seqset_range_count(set), 2);
	assert_true(imap_seqset_contains(set, 6, 0));
	assert_false(imap_seqset_contains(set, 7, 0));
	assert_false(imap_seqset_contains(set, 0, 0));
	imap_seqset_free(&set);

	set = must_parse("4294967295,1:4294967294");
	assert_int_equal(imap_seqset_range_count(set), 1);
	assert_true(imap_seqset_contains(set, UINT32_MAX, 0));
	assert_false(imap_seqset_has_star(set));
	imap_seqset_free(&set);
	imap_seqset_free(&set); /* NULL is fine */
}

static void test_star(void **state)
{
	(void)state;
	EXPECT_SET("*", 7, 10, "7");
	EXPECT_SET("5:*", 7, 10, "5,6,7");
	EXPECT_SET("*:5", 7, 10, "5,6,7");
	EXPECT_SET("*:*", 7, 10, "7");
	/* n:* with n past the end is star:n, so it holds the last message */
	EXPECT_SET("9:*", 7, 10, "7,8,9");
	EXPECT_SET("100:*", 7, 10, "7,8,9,10");
	/* several star ranges and fixed ranges merge */
	EXPECT_SET("1,3:*,*:5,9", 4, 10, "1,3,4,5,9");
	EXPECT_SET("2,*", 3, 10, "2,3");
	EXPECT_SET("1:*", 1, 10, "1");
	/* star resolves at evaluation time */
	struct imap_seqset *set = must_parse("2:*");
	assert_true(imap_seqset_has_star(set));
	assert_string_equal(render(set, 3, 10), "2,3");
	assert_string_equal(render(set, 5, 10), "2,3,4,5");
	imap_seqset_free(&set);
}

static void test_empty_mailbox(void **state)
{
	struct imap_seqset *set = must_parse("1:*");
	struct imap_seqset_iter it;
	uint32_t v;
	(void)state;

	/* star 0: an empty mailbox; UID FETCH 1:* names nothing */
	assert_false(imap_seqset_contains(set, 1, 0));
	imap_seqset_iter_init(&it, set, 0, 100);
	assert_false(imap_seqset_iter_next(&it, &v));
	imap_seqset_free(&set);
	set = must_parse("3,*");
	assert_string_equal(render(set, 0, 10), "3");
	imap_seqset_free(&set);
}

static void test_wide_ranges(void **state)
{
	struct imap_seqset *set = must_parse("1:*");
	struct imap_seqset_iter it;
	uint32_t lo, hi;
	(void)state;

	/* one range, however wide: UID sets must not be walked by value */
	imap_seqset_iter_init(&it, set, UINT32_MAX, UINT32_MAX);
	assert_true(imap_seqset_iter_next_range(&it, &lo, &hi));
	assert_int_equal(lo, 1);
	assert_int_equal(hi, UINT32_MAX);
	assert_false(imap_seqset_iter_next_range(&it, &lo, &hi));
	imap_seqset_free(&set);

	set = must_parse("1:3,10:20,4294967290:*");
	imap_seqset_iter_init(&it, set, 15, 100);
	assert_true(imap_seqset_iter_next_range(&it, &lo, &hi));
	assert_int_equal(lo, 1);
	assert_int_equal(hi, 3);
	/* 15:4294967290 swallows 10:20 */
	assert_true(imap_seqset_iter_next_range(&it, &lo, &hi));
	assert_int_equal(lo, 10);
	assert_int_equal(hi, 100);
	assert_false(imap_seqset_iter_next_range(&it, &lo, &hi));
	imap_seqset_free(&set);
}

static void test_errors(void **state)
{
	static const char *const bad[] = {
	    "",
	    "0",
	    "0:3",
	    "3:0",
	    "4294967296",
	    "1,,2",
	    ",1",
	    "1,",
	    "a",
	    "1:2:3",
	    "$",
	    "1 2",
	    "-1",
	    "1:*:2",
	    ":",
	    "1:",
	    ":1",
	    "+1",
	    "99999999999999999999",
	    "**",
	    "1*",
	    "1,2;",
	    "4294967295:4294967296",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct imap_seqset *set = (struct imap_seqset *)&set;
		const char *error = NULL;
		if (imap_seqset_parse(str_cstr(bad[i]), &set, &error) != -1)
			fail_msg("'%s' was accepted", bad[i]);
		assert_null(set);
		assert_string_equal(error, "Invalid messageset");
	}
}

/* "1,3,5,...": n disjoint ranges. */
static char *disjoint(size_t n, size_t *len_r)
{
	char *s = malloc(n * 12 + 1);
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		int w =
		    snprintf(s + len, 13, "%s%zu", i > 0 ? "," : "", 2 * i + 1);
		assert_true(w > 0 && w < 13);
		len += (size_t)w;
	}
	*len_r = len;
	return s;
}

static void test_range_limit(void **state)
{
	struct imap_seqset *set;
	const char *error;
	size_t len;
	char *s;
	(void)state;

	s = disjoint(IMAP_SEQSET_MAX_RANGES, &len);
	assert_int_equal(imap_seqset_parse(str_from(s, len), &set, &error), 0);
	assert_int_equal(imap_seqset_range_count(set), IMAP_SEQSET_MAX_RANGES);
	assert_true(
	    imap_seqset_contains(set, 2 * IMAP_SEQSET_MAX_RANGES - 1, 0));
	assert_false(imap_seqset_contains(set, 2 * IMAP_SEQSET_MAX_RANGES, 0));
	imap_seqset_free(&set);
	free(s);

	s = disjoint(IMAP_SEQSET_MAX_RANGES + 1, &len);
	assert_int_equal(imap_seqset_parse(str_from(s, len), &set, &error), -1);
	assert_null(set);
	assert_string_equal(error, "Too many ranges in messageset");
	free(s);

	/* many elements that merge into few are fine */
	struct buf *b = buf_new(1024, 1 << 20);
	for (unsigned int i = 1; i <= 30000; i++)
		buf_printf(b, "%s%u", i > 1 ? "," : "", i);
	assert_int_equal(imap_seqset_parse(buf_str(b), &set, &error), 0);
	assert_int_equal(imap_seqset_range_count(set), 1);
	imap_seqset_free(&set);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_basic),
	    cmocka_unit_test(test_max),
	    cmocka_unit_test(test_merge),
	    cmocka_unit_test(test_star),
	    cmocka_unit_test(test_empty_mailbox),
	    cmocka_unit_test(test_wide_ranges),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_range_limit),
	};
	return cmocka_run_group_tests_name("imap_seqset", tests, NULL, NULL);
}
