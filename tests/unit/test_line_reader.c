#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "line_reader.h"

static int feed(struct line_reader *lr, const char *in, size_t limit,
		size_t *consumed, size_t *end, enum line_reader_error *err,
		size_t *pos)
{
	return line_reader_read(lr, (const uint8_t *)in, strlen(in), limit,
				consumed, end, err, pos);
}

static void test_lines_in_pieces(void **state)
{
	(void)state;
	struct line_reader lr;
	size_t consumed, end, pos;
	enum line_reader_error err;

	line_reader_init(&lr, 64, false);
	assert_int_equal(feed(&lr, "US", 64, &consumed, &end, &err, &pos), 0);
	assert_int_equal(consumed, 2);
	assert_true(line_reader_partial(&lr));
	assert_int_equal(feed(&lr, "ER a\r", 64, &consumed, &end, &err, &pos), 0);
	assert_int_equal(feed(&lr, "\nNEXT\n", 64, &consumed, &end, &err, &pos), 1);
	assert_int_equal(consumed, 1);
	assert_int_equal(end, 6);
	assert_memory_equal(lr.line, "USER a", 6);
	assert_int_equal(lr.line_start, 0);
	/* bare LF, and the next line's offset */
	assert_int_equal(feed(&lr, "NEXT\n", 64, &consumed, &end, &err, &pos), 1);
	assert_int_equal(end, 4);
	assert_int_equal(lr.line_start, 8);
	line_reader_deinit(&lr);
}

static void test_limit_exact_and_recovery(void **state)
{
	(void)state;
	struct line_reader lr;
	size_t consumed, end, pos;
	enum line_reader_error err;

	line_reader_init(&lr, 8, true);
	/* 8 bytes with CRLF: exactly the limit */
	assert_int_equal(feed(&lr, "ABCDEF\r\n", 8, &consumed, &end, &err, &pos), 1);
	assert_int_equal(end, 6);
	/* 9 bytes: one too many */
	assert_int_equal(feed(&lr, "ABCDEFG\r\nOK\r\n", 8, &consumed, &end, &err,
			      &pos), -1);
	assert_int_equal(err, LINE_READER_TOO_LONG);
	assert_int_equal(consumed, 8);
	/* the rest of the long line is skipped, then the next line comes */
	assert_int_equal(feed(&lr, "\r\nOK\r\n", 8, &consumed, &end, &err, &pos), 1);
	assert_memory_equal(lr.line, "OK", 2);
	line_reader_deinit(&lr);
}

static void test_nul_and_skip(void **state)
{
	(void)state;
	struct line_reader lr;
	size_t consumed, end, pos;
	enum line_reader_error err;
	static const uint8_t nul[] = { 'a', 'b', 0, 'c', '\n' };

	line_reader_init(&lr, 64, false);
	assert_int_equal(line_reader_read(&lr, nul, sizeof(nul), 64, &consumed,
					  &end, &err, &pos), -1);
	assert_int_equal(err, LINE_READER_NUL);
	assert_int_equal(pos, 2);
	/* the caller consumed a DATA body itself: offsets move on */
	line_reader_skip(&lr, 100);
	assert_int_equal(feed(&lr, "QUIT\r\n", 64, &consumed, &end, &err, &pos), 1);
	assert_int_equal(lr.line_start, 105);
	line_reader_deinit(&lr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines_in_pieces),
		cmocka_unit_test(test_limit_exact_and_recovery),
		cmocka_unit_test(test_nul_and_skip),
	};
	return cmocka_run_group_tests_name("line_reader", tests, NULL, NULL);
}
