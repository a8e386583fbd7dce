#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base64.h"

static void roundtrip(const char *plain, size_t len, const char *enc)
{
	struct buf *b = buf_new(16, 1024);
	assert_int_equal(base64_encode(plain, len, b), 0);
	assert_string_equal(buf_cstr(b), enc);
	buf_reset(b);
	assert_int_equal(base64_decode(str_cstr(enc), b), 0);
	assert_int_equal(b->len, len);
	assert_memory_equal(b->data, plain, len);
	buf_free(&b);
}

static void test_vectors(void **state)
{
	(void)state;
	/* RFC 4648 section 10 */
	roundtrip("", 0, "");
	roundtrip("f", 1, "Zg==");
	roundtrip("fo", 2, "Zm8=");
	roundtrip("foo", 3, "Zm9v");
	roundtrip("foob", 4, "Zm9vYg==");
	roundtrip("fooba", 5, "Zm9vYmE=");
	roundtrip("foobar", 6, "Zm9vYmFy");
	/* SASL PLAIN with NULs */
	roundtrip("\0user1\0pass", 11, "AHVzZXIxAHBhc3M=");
}

static void test_invalid(void **state)
{
	(void)state;
	static const char *bad[] = {
		"Zg=", "Zg", "Z", "Zg==Zg==", "Zm9v\r\n", "Zm 9v", "Zm9v=",
		"Z===", "====", "Zh==", /* non-zero unused bits */
		"Zm9=", "Zm9vY!==", "AHVz\x80ZXIx",
	};
	struct buf *b = buf_new(16, 1024);
	buf_append_cstr(b, "keep");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(base64_decode(str_cstr(bad[i]), b), -1);
		assert_string_equal(buf_cstr(b), "keep");
	}
	buf_free(&b);
}

static void test_limits(void **state)
{
	(void)state;
	struct buf *b = buf_new(4, 5);
	assert_int_equal(base64_decode(STR("Zm9vYmFy"), b), -1);
	assert_int_equal(b->len, 0);
	assert_int_equal(base64_encode("foob", 4, b), -1);
	assert_int_equal(b->len, 0);
	assert_int_equal(base64_encode("f", 1, b), 0);
	buf_free(&b);
}

static void test_unpadded(void **state)
{
	(void)state;
	struct buf *b = buf_new(16, 1024);
	assert_int_equal(base64_decode_unpadded(STR("Zm9vYg"), b), 0);
	assert_string_equal(buf_cstr(b), "foob");
	buf_reset(b);
	assert_int_equal(base64_decode_unpadded(STR("Zm9vYmE"), b), 0);
	assert_string_equal(buf_cstr(b), "fooba");
	buf_reset(b);
	assert_int_equal(base64_decode_unpadded(STR("Zm9vYmE="), b), 0);
	assert_string_equal(buf_cstr(b), "fooba");
	buf_reset(b);
	/* still strict about everything but the padding */
	assert_int_equal(base64_decode_unpadded(STR("Zm9vY"), b), -1);
	assert_int_equal(base64_decode_unpadded(STR("Zm9v!g"), b), -1);
	assert_int_equal(base64_decode_unpadded(STR("Zh"), b), -1);
	assert_int_equal(b->len, 0);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_unpadded),
	};
	return cmocka_run_group_tests_name("base64", tests, NULL, NULL);
}
