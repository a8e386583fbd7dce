#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "buf.h"
#include "str.h"

static void test_eq(void **state)
{
	(void)state;
	assert_true(str_eq(STR("abc"), STR("abc")));
	assert_false(str_eq(STR("abc"), STR("abd")));
	assert_false(str_eq(STR("abc"), STR("ab")));
	assert_true(str_eq(STR(""), STR_NULL));
	assert_true(str_eq_nocase(STR("LoGiN"), STR("login")));
	assert_false(str_eq_nocase(STR("login"), STR("logon")));
	assert_true(str_has_prefix_nocase(STR("AUTHENTICATE"), STR("auth")));
	assert_false(str_has_prefix_nocase(STR("AU"), STR("auth")));
}

static void test_to_u64(void **state)
{
	uint64_t v = 7;
	(void)state;
	assert_true(str_to_u64(STR("0"), UINT64_MAX, &v));
	assert_int_equal(v, 0);
	assert_true(str_to_u64(STR("18446744073709551615"), UINT64_MAX, &v));
	assert_true(v == UINT64_MAX);
	assert_false(str_to_u64(STR("18446744073709551616"), UINT64_MAX, &v));
	assert_false(str_to_u64(STR(""), UINT64_MAX, &v));
	assert_false(str_to_u64(STR("+1"), UINT64_MAX, &v));
	assert_false(str_to_u64(STR("1 "), UINT64_MAX, &v));
	assert_false(str_to_u64(STR("-1"), UINT64_MAX, &v));
	assert_true(str_to_u64(STR("100"), 100, &v));
	assert_false(str_to_u64(STR("101"), 100, &v));
}

static void test_split_trim_slice(void **state)
{
	struct str h, t;
	(void)state;
	assert_true(str_split(STR("key=value=x"), '=', &h, &t));
	assert_true(str_eq(h, STR("key")));
	assert_true(str_eq(t, STR("value=x")));
	assert_false(str_split(STR("novalue"), '=', &h, &t));
	assert_true(str_eq(h, STR("novalue")));
	assert_int_equal(t.len, 0);
	assert_true(str_eq(str_trim(STR(" \t x y \r\n")), STR("x y")));
	assert_true(str_eq(str_trim(STR("   ")), STR("")));
	assert_true(str_eq(str_slice(STR("abcdef"), 2, 3), STR("cde")));
	assert_true(str_eq(str_slice(STR("abc"), 5, 3), STR("")));
	assert_true(str_eq(str_slice(STR("abc"), 1, 99), STR("bc")));
	assert_int_equal(str_index(STR("abc"), 'c'), 2);
	assert_int_equal(str_index(STR("abc"), 'z'), -1);
	assert_int_equal(str_index(STR_NULL, 'z'), -1);
}

static void test_copy_printf(void **state)
{
	char small[4];
	(void)state;
	assert_true(str_copy(STR("abc"), small, sizeof(small)));
	assert_string_equal(small, "abc");
	assert_false(str_copy(STR("abcd"), small, sizeof(small)));
	assert_string_equal(small, "");
	assert_int_equal(str_printf(small, sizeof(small), "%d", 123), 3);
	assert_int_equal(str_printf(small, sizeof(small), "%d", 1234), -1);
	assert_string_equal(small, "");
}

static void test_sanitize(void **state)
{
	char out[64];
	(void)state;
	assert_string_equal(str_sanitize(STR("a\r\nb"), out, sizeof(out)),
			    "a\\x0d\\x0ab");
	assert_string_equal(str_sanitize(str_from("x\0y", 3), out, sizeof(out)),
			    "x\\x00y");
	assert_string_equal(str_sanitize(STR("\xff\\"), out, sizeof(out)),
			    "\\xff\\x5c");
	char tiny[8];
	str_sanitize(STR("abcdefghijkl"), tiny, sizeof(tiny));
	assert_string_equal(tiny, "abcd...");
	assert_true(strlen(tiny) < sizeof(tiny));
}

static void test_buf_limits(void **state)
{
	(void)state;
	struct buf *b = buf_new(4, 10);
	assert_int_equal(buf_append_cstr(b, "hello"), 0);
	assert_int_equal(buf_append_cstr(b, "world"), 0);
	assert_int_equal(b->len, 10);
	/* one byte past the maximum fails and leaves the content intact */
	assert_int_equal(buf_append_byte(b, '!'), -1);
	assert_int_equal(b->len, 10);
	assert_string_equal(buf_cstr(b), "helloworld");
	assert_int_equal(buf_room(b), 0);
	buf_consume(b, 5);
	assert_string_equal(buf_cstr(b), "world");
	assert_int_equal(buf_printf(b, "%d", 12345), 0);
	assert_int_equal(buf_printf(b, "%d", 1), -1);
	assert_string_equal(buf_cstr(b), "world12345");
	buf_consume(b, 100);
	assert_int_equal(b->len, 0);
	assert_string_equal(buf_cstr(b), "");
	buf_reset(b);
	assert_int_equal(buf_append(b, "\0\0", 2), 0);
	assert_int_equal(b->len, 2);
	buf_free(&b);
	assert_null(b);
	buf_free(&b);

	struct buf *s = buf_new(0, 64);
	assert_int_equal(buf_append_cstr(s, "secret"), 0);
	buf_free_secret(&s);
	assert_null(s);

	/* a secret buffer keeps its content across growth */
	struct buf *sec = buf_new_secret(16, 4096);
	for (int i = 0; i < 100; i++)
		assert_int_equal(buf_append_cstr(sec, "pw-"), 0);
	assert_int_equal(sec->len, 300);
	assert_memory_equal(sec->data, "pw-pw-pw-", 9);
	assert_true(sec->secret);
	buf_free(&sec);

	/* a zero-size maximum refuses everything */
	struct buf *z = buf_new(0, 0);
	assert_int_equal(buf_append_byte(z, 'x'), -1);
	assert_int_equal(buf_append(z, "", 0), 0);
	buf_free(&z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eq),
		cmocka_unit_test(test_to_u64),
		cmocka_unit_test(test_split_trim_slice),
		cmocka_unit_test(test_copy_printf),
		cmocka_unit_test(test_sanitize),
		cmocka_unit_test(test_buf_limits),
	};
	return cmocka_run_group_tests_name("str_buf", tests, NULL, NULL);
}
