#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "crc32.h"

/* The check value of CRC-32/ISO-HDLC, and feeding in pieces. */
static void test_known_values(void **state)
{
	const char *s = "123456789";
	(void)state;

	assert_int_equal(crc32_update(0, s, 9), 0xcbf43926u);
	assert_int_equal(crc32_update(0, "", 0), 0);
	uint32_t c = crc32_update(0, s, 4);
	assert_int_equal(crc32_update(c, s + 4, 5), 0xcbf43926u);
	/* zlib.crc32(b"The quick brown fox jumps over the lazy dog") */
	const char *fox = "The quick brown fox jumps over the lazy dog";
	assert_int_equal(crc32_update(0, fox, strlen(fox)), 0x414fa339u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
