#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "pop3_parse.h"
#include "str.h"
#include "xmalloc.h"

static const struct pop3_parser_limits default_limits = {
    .max_line_len = POP3_LINE_MAX_DEFAULT,
    .max_auth_line_len = 1024,
    .max_args = 4,
};

static const char *kind_name(enum pop3_parse_error_kind kind)
{
	switch (kind) {
	case POP3_PARSE_ERR_NONE:
		return "NONE";
	case POP3_PARSE_ERR_TOO_LONG:
		return "TOO_LONG";
	case POP3_PARSE_ERR_NUL:
		return "NUL";
	case POP3_PARSE_ERR_EMPTY:
		return "EMPTY";
	case POP3_PARSE_ERR_BAD_VERB:
		return "BAD_VERB";
	}
	return "?";
}

static void put_text(struct buf *out, struct str s)
{
	char tmp[2048];
	assert_int_equal(
	    buf_append_cstr(out, str_sanitize(s, tmp, sizeof(tmp))), 0);
}

/* Feeds input to one parser and returns a transcript, one event a line:
 * the first call gets `first` bytes (0: no special first call), later ones
 * at most `chunk` (0: all that is left). "AUTH mech" without an initial
 * response switches to read_line for the next line. */
static char *run_feed(const struct pop3_parser_limits *limits, const void *data,
		      size_t len, size_t chunk, size_t first)
{
	struct pop3_parser *p = pop3_parser_new(limits);
	struct buf *out = buf_new(256, 1 << 20);
	const uint8_t *in = data;
	size_t pos = 0;
	bool line_mode = false;

	while (pos < len) {
		size_t give = len - pos;
		if (pos < first)
			give = first - pos;
		else if (chunk != 0 && chunk < give)
			give = chunk;
		size_t consumed = 99999;
		struct pop3_command cmd;
		struct pop3_parse_error err;
		struct str line;
		enum pop3_parse_result r;

		if (line_mode)
			r = pop3_parser_read_line(p, in + pos, give, &consumed,
						  &line, &err);
		else
			r = pop3_parser_parse(p, in + pos, give, &consumed,
					      &cmd, &err);
		assert_true(consumed <= give);
		pos += consumed;
		switch (r) {
		case POP3_PARSE_MORE:
			assert_int_equal(consumed, give);
			break;
		case POP3_PARSE_COMMAND:
			buf_printf(out, "CMD %d/", (int)cmd.verb);
			put_text(out, cmd.verb_str);
			buf_append_cstr(out, " rest=");
			put_text(out, cmd.rest);
			for (size_t i = 0; i < cmd.arg_count; i++) {
				buf_append_cstr(out, " [");
				put_text(out, cmd.args[i]);
				buf_append_cstr(out, "]");
			}
			if (cmd.args_overflow)
				buf_append_cstr(out, " +overflow");
			buf_printf(out, " @%llu\n",
				   (unsigned long long)cmd.offset);
			if (cmd.verb == POP3_VERB_AUTH && cmd.arg_count == 1)
				line_mode = true;
			break;
		case POP3_PARSE_LINE:
			buf_append_cstr(out, "LINE ");
			put_text(out, line);
			buf_append_cstr(out, "\n");
			line_mode = false;
			break;
		case POP3_PARSE_ERROR:
			assert_non_null(err.msg);
			buf_printf(out, "ERR %s @%llu\n", kind_name(err.kind),
				   (unsigned long long)err.offset);
			line_mode = false;
			break;
		}
	}
	char *s = xstrndup(buf_cstr(out), out->len);
	buf_free(&out);
	pop3_parser_free(&p);
	assert_null(p);
	return s;
}

static void check_same(const char *what, size_t arg, const char *got,
		       const char *expected)
{
	if (strcmp(got, expected) != 0) {
		print_error("%s %zu:\n--- expected\n%s--- got\n%s", what, arg,
			    expected, got);
		fail();
	}
}

/* Checks the transcript fed whole, byte by byte, in a few chunk sizes and
 * split in two at every point. */
static void expect_with(const struct pop3_parser_limits *limits,
			const void *data, size_t len, const char *expected)
{
	static const size_t chunks[] = {0, 1, 2, 3, 7};
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		char *got = run_feed(limits, data, len, chunks[i], 0);
		check_same("chunk", chunks[i], got, expected);
		free(got);
	}
	for (size_t k = 1; k < len; k++) {
		char *got = run_feed(limits, data, len, 0, k);
		check_same("split", k, got, expected);
		free(got);
	}
}

#define EXPECT(input, expected)                                                \
	expect_with(&default_limits, input, sizeof(input) - 1, expected)
#define EXPECT_L(limits, input, expected)                                      \
	expect_with(limits, input, sizeof(input) - 1, expected)

static void test_commands(void **state)
{
	(void)state;
	EXPECT("USER bob\r\nPASS secret\r\nSTAT\r\nquit\n",
	       "CMD 1/USER rest=bob [bob] @0\n"
	       "CMD 2/PASS rest=secret [secret] @10\n"
	       "CMD 8/STAT rest= @23\n"
	       "CMD 7/quit rest= @29\n");
	EXPECT("top 1 10\r\nXYZZY\r\nCAPA\r\nuidl\r\n",
	       "CMD 14/top rest=1 10 [1] [10] @0\n"
	       "CMD 0/XYZZY rest= @10\n"
	       "CMD 5/CAPA rest= @17\n"
	       "CMD 15/uidl rest= @23\n");
	/* rest keeps a password's spaces and 8-bit bytes as sent */
	EXPECT(
	    "PASS  my pass\xc3\xa9 \r\n",
	    "CMD 2/PASS rest= my pass\\xc3\\xa9  [my] [pass\\xc3\\xa9] @0\n");
	/* a partial line is just "more" */
	EXPECT("USER bo", "");
}

static void test_verb_lookup(void **state)
{
	(void)state;
	assert_int_equal(pop3_verb_lookup(STR("apop")), POP3_VERB_APOP);
	assert_int_equal(pop3_verb_lookup(STR("StLs")), POP3_VERB_STLS);
	assert_int_equal(pop3_verb_lookup(STR("XCLIENT")), POP3_VERB_XCLIENT);
	assert_int_equal(pop3_verb_lookup(STR("UTF8")), POP3_VERB_UTF8);
	assert_int_equal(pop3_verb_lookup(STR("USERX")), POP3_VERB_UNKNOWN);
	assert_int_equal(pop3_verb_lookup(STR("")), POP3_VERB_UNKNOWN);
}

static void test_line_ends(void **state)
{
	struct pop3_parser *p = pop3_parser_new(&default_limits);
	struct pop3_command cmd;
	struct pop3_parse_error err;
	size_t consumed;
	(void)state;

	/* CRLF split between reads */
	assert_int_equal(
	    pop3_parser_parse(p, "NOOP\r", 5, &consumed, &cmd, &err),
	    POP3_PARSE_MORE);
	assert_int_equal(
	    pop3_parser_parse(p, "\nRSET\n", 6, &consumed, &cmd, &err),
	    POP3_PARSE_COMMAND);
	assert_int_equal(consumed, 1);
	assert_int_equal(cmd.verb, POP3_VERB_NOOP);
	assert_int_equal(cmd.rest.len, 0);
	assert_non_null(cmd.rest.p);
	/* bare LF is a line end too */
	assert_int_equal(
	    pop3_parser_parse(p, "RSET\n", 5, &consumed, &cmd, &err),
	    POP3_PARSE_COMMAND);
	assert_int_equal(cmd.verb, POP3_VERB_RSET);
	assert_int_equal(cmd.offset, 6);
	pop3_parser_free(&p);
	pop3_parser_free(&p);
	/* only a CR right before the LF is part of the line end */
	EXPECT("USER a\rb\r\r\n",
	       "CMD 1/USER rest=a\\x0db\\x0d [a\\x0db\\x0d] @0\n");
}

static void test_args_limit(void **state)
{
	struct pop3_parser_limits l = default_limits;
	(void)state;

	l.max_args = 2;
	EXPECT_L(&l, "TOP 1 2\r\n", "CMD 14/TOP rest=1 2 [1] [2] @0\n");
	EXPECT_L(&l, "TOP 1 2 3\r\n",
		 "CMD 14/TOP rest=1 2 3 [1] [2] +overflow @0\n");
	EXPECT_L(&l, "TOP  1   2   \r\n",
		 "CMD 14/TOP rest= 1   2    [1] [2] @0\n");
	l.max_args = 0;
	EXPECT_L(&l, "STAT\r\n", "CMD 8/STAT rest= @0\n");
	EXPECT_L(&l, "USER x\r\n", "CMD 1/USER rest=x +overflow @0\n");
}

static void test_line_limit(void **state)
{
	struct pop3_parser_limits l = default_limits;
	char line[300];
	(void)state;

	/* RFC 2449: 255 octets including CRLF: accepted; 256: rejected at
	 * the 256th byte, then the next line is parsed */
	memset(line, 'a', sizeof(line));
	memcpy(line, "USER ", 5);
	memcpy(line + 253, "\r\nNOOP\r\n", 8);
	char a248[249];
	memset(a248, 'a', 248);
	a248[248] = '\0';
	char want[600];
	assert_true(str_printf(want, sizeof(want),
			       "CMD 1/USER rest=%s [%s] @0\n"
			       "CMD 12/NOOP rest= @255\n",
			       a248, a248) > 0);
	char *got = run_feed(&l, line, 261, 0, 0);
	assert_string_equal(got, want);
	free(got);
	got = run_feed(&l, line, 261, 1, 0);
	assert_string_equal(got, want);
	free(got);
	memcpy(line + 253, "a\r\nNOOP\r\n", 9);
	got = run_feed(&l, line, 262, 0, 0);
	assert_string_equal(got, "ERR TOO_LONG @255\nCMD 12/NOOP rest= @256\n");
	free(got);
	got = run_feed(&l, line, 262, 1, 0);
	assert_string_equal(got, "ERR TOO_LONG @255\nCMD 12/NOOP rest= @256\n");
	free(got);

	l.max_line_len = 8;
	EXPECT_L(&l, "USER a\r\nUSER ab\r\nUSER abcdefgh\nQUIT\n",
		 "CMD 1/USER rest=a [a] @0\n"
		 "ERR TOO_LONG @16\n"
		 "ERR TOO_LONG @25\n"
		 "CMD 7/QUIT rest= @31\n");
}

static void test_errors(void **state)
{
	char verb[64];
	(void)state;

	EXPECT("\r\nNOOP\r\n", "ERR EMPTY @0\nCMD 12/NOOP rest= @2\n");
	EXPECT("\n", "ERR EMPTY @0\n");
	EXPECT(" USER x\r\n", "ERR BAD_VERB @0\n");
	EXPECT("US\xc3R x\r\n", "ERR BAD_VERB @2\n");
	EXPECT("US:ER x\r\nNOOP\r\n",
	       "ERR BAD_VERB @2\nCMD 12/NOOP rest= @9\n");
	EXPECT("USER a\0b\r\nNOOP\r\n", "ERR NUL @6\nCMD 12/NOOP rest= @10\n");
	EXPECT("\0\n", "ERR NUL @0\n");

	/* a 40-byte verb is accepted, 41 bytes are not */
	memset(verb, 'X', sizeof(verb));
	memcpy(verb + 40, "\r\n", 2);
	char *got = run_feed(&default_limits, verb, 42, 0, 0);
	assert_string_equal(got,
			    "CMD 0/XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX "
			    "rest= @0\n");
	free(got);
	memcpy(verb + 40, "X\r\n", 3);
	got = run_feed(&default_limits, verb, 43, 0, 0);
	assert_string_equal(got, "ERR BAD_VERB @40\n");
	free(got);
}

static void test_auth(void **state)
{
	struct pop3_parser_limits l = default_limits;
	(void)state;

	/* RFC 5034 initial response */
	EXPECT("AUTH PLAIN AHVzZXIAcGFzcw==\r\n",
	       "CMD 4/AUTH rest=PLAIN AHVzZXIAcGFzcw== [PLAIN] "
	       "[AHVzZXIAcGFzcw==] @0\n");
	/* continuation lines: base64 or "*" to cancel */
	EXPECT("AUTH PLAIN\r\nAHVzZXIAcGFzcw==\r\nSTAT\r\n",
	       "CMD 4/AUTH rest=PLAIN [PLAIN] @0\n"
	       "LINE AHVzZXIAcGFzcw==\n"
	       "CMD 8/STAT rest= @30\n");
	EXPECT(
	    "AUTH LOGIN\n*\nQUIT\n",
	    "CMD 4/AUTH rest=LOGIN [LOGIN] @0\nLINE *\nCMD 7/QUIT rest= @13\n");
	EXPECT("AUTH PLAIN\r\n\r\n",
	       "CMD 4/AUTH rest=PLAIN [PLAIN] @0\nLINE \n");
	EXPECT("AUTH PLAIN\r\na\0\r\nQUIT\r\n",
	       "CMD 4/AUTH rest=PLAIN [PLAIN] @0\nERR NUL @13\n"
	       "CMD 7/QUIT rest= @16\n");
	/* AUTH lines have their own limit, here longer than command lines */
	l.max_line_len = 12;
	l.max_auth_line_len = 16;
	EXPECT_L(&l, "AUTH PLAIN\r\n0123456789abcd\r\nQUIT\r\n",
		 "CMD 4/AUTH rest=PLAIN [PLAIN] @0\nLINE 0123456789abcd\n"
		 "CMD 7/QUIT rest= @28\n");
	EXPECT_L(&l, "AUTH PLAIN\r\n0123456789abcde\r\nQUIT\r\n",
		 "CMD 4/AUTH rest=PLAIN [PLAIN] @0\nERR TOO_LONG @28\n"
		 "CMD 7/QUIT rest= @29\n");
}

static void test_split_everywhere(void **state)
{
	(void)state;
	EXPECT("CAPA\r\nUSER alice\nPASS p w\r\nAUTH PLAIN\r\nAGEAYg==\r\n"
	       "\r\nLIST 1\r\nQUIT\r\n",
	       "CMD 5/CAPA rest= @0\n"
	       "CMD 1/USER rest=alice [alice] @6\n"
	       "CMD 2/PASS rest=p w [p] [w] @17\n"
	       "CMD 4/AUTH rest=PLAIN [PLAIN] @27\n"
	       "LINE AGEAYg==\n"
	       "ERR EMPTY @49\n"
	       "CMD 9/LIST rest=1 [1] @51\n"
	       "CMD 7/QUIT rest= @59\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_commands),
	    cmocka_unit_test(test_verb_lookup),
	    cmocka_unit_test(test_line_ends),
	    cmocka_unit_test(test_args_limit),
	    cmocka_unit_test(test_line_limit),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_auth),
	    cmocka_unit_test(test_split_everywhere),
	};
	return cmocka_run_group_tests_name("pop3_parse", tests, NULL, NULL);
}
