#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap_parse.h"
#include "str.h"
#include "xmalloc.h"

static const struct imap_parser_limits default_limits = {
    .max_line_len = 1024,
    .max_literal_size = 1024,
    .max_list_depth = 4,
    .max_args = 64,
};

static const char *kind_name(enum imap_parse_error_kind kind)
{
	switch (kind) {
	case IMAP_PARSE_ERR_NONE:
		return "NONE";
	case IMAP_PARSE_ERR_TOO_LONG:
		return "TOO_LONG";
	case IMAP_PARSE_ERR_LITERAL_TOO_BIG:
		return "LITERAL_TOO_BIG";
	case IMAP_PARSE_ERR_BAD_LITERAL:
		return "BAD_LITERAL";
	case IMAP_PARSE_ERR_UNTERMINATED_QUOTE:
		return "UNTERMINATED_QUOTE";
	case IMAP_PARSE_ERR_BAD_CHAR:
		return "BAD_CHAR";
	case IMAP_PARSE_ERR_8BIT:
		return "8BIT";
	case IMAP_PARSE_ERR_NUL:
		return "NUL";
	case IMAP_PARSE_ERR_BAD_LIST:
		return "BAD_LIST";
	case IMAP_PARSE_ERR_TOO_DEEP:
		return "TOO_DEEP";
	case IMAP_PARSE_ERR_TOO_MANY_ARGS:
		return "TOO_MANY_ARGS";
	case IMAP_PARSE_ERR_MISSING_TAG:
		return "MISSING_TAG";
	case IMAP_PARSE_ERR_MISSING_COMMAND:
		return "MISSING_COMMAND";
	}
	return "?";
}

static void put_text(struct buf *out, struct str s)
{
	char tmp[512];
	assert_int_equal(
	    buf_append_cstr(out, str_sanitize(s, tmp, sizeof(tmp))), 0);
}

static void render_arg(struct buf *out, const struct imap_arg *a)
{
	switch (a->type) {
	case IMAP_ARG_ATOM:
		put_text(out, a->str);
		break;
	case IMAP_ARG_NIL:
		assert_true(str_eq_nocase(a->str, STR("NIL")));
		buf_append_cstr(out, "NIL");
		break;
	case IMAP_ARG_QUOTED:
		buf_append_cstr(out, "\"");
		put_text(out, a->str);
		buf_append_cstr(out, "\"");
		break;
	case IMAP_ARG_LITERAL:
		buf_printf(out, "%s{%zu%s}", a->literal8 ? "~" : "", a->str.len,
			   a->literal_nonsync ? "+" : "");
		put_text(out, a->str);
		break;
	case IMAP_ARG_LIST:
		buf_append_cstr(out, "(");
		for (size_t i = 0; i < a->list_count; i++) {
			if (i > 0)
				buf_append_cstr(out, " ");
			render_arg(out, &a->list[i]);
		}
		buf_append_cstr(out, ")");
		if (a->list_count == 0)
			assert_null(a->list);
		break;
	}
}

static void render_error(struct buf *out, const struct imap_parse_error *err)
{
	buf_printf(out, "ERR %s @%llu", kind_name(err->kind),
		   (unsigned long long)err->offset);
	if (err->fatal)
		buf_append_cstr(out, " fatal");
	if (err->tag.len > 0) {
		buf_append_cstr(out, " tag=");
		put_text(out, err->tag);
	}
	assert_non_null(err->msg);
	assert_true(strlen(err->msg) > 0);
	buf_append_cstr(out, "\n");
}

/* Feeds input to one parser and returns a transcript, one event a line.
 * The first call gets the first `first` bytes (0: no special first call),
 * later calls at most `chunk` bytes (0: all that is left). A command named
 * AUTHENTICATE with one argument switches to read_line for the next line,
 * as a proxy would. A parser that failed stops the run. */
static char *run_feed(const struct imap_parser_limits *limits, const void *data,
		      size_t len, size_t chunk, size_t first)
{
	struct imap_parser *p = imap_parser_new(limits);
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
		struct imap_command cmd;
		struct imap_parse_error err;
		enum imap_parse_result r;

		if (line_mode) {
			struct str line;
			r = imap_parser_read_line(p, in + pos, give, &consumed,
						  &line, &err);
			if (r == IMAP_PARSE_LINE) {
				buf_append_cstr(out, "LINE ");
				put_text(out, line);
				buf_append_cstr(out, "\n");
				line_mode = false;
			} else if (r == IMAP_PARSE_ERROR) {
				/* the SASL exchange failed */
				line_mode = false;
			}
		} else {
			r = imap_parser_parse(p, in + pos, give, &consumed,
					      &cmd, &err);
		}
		assert_true(consumed <= give);
		pos += consumed;
		assert_true(imap_parser_memory(p) <=
			    imap_parser_memory_max(limits));
		switch (r) {
		case IMAP_PARSE_MORE:
			assert_int_equal(consumed, give);
			break;
		case IMAP_PARSE_COMMAND:
			buf_append_cstr(out, "CMD ");
			put_text(out, cmd.tag);
			buf_append_cstr(out, " ");
			put_text(out, cmd.name);
			for (size_t i = 0; i < cmd.arg_count; i++) {
				buf_append_cstr(out, " ");
				render_arg(out, &cmd.args[i]);
			}
			buf_append_cstr(out, "\n");
			if (str_eq_nocase(cmd.name, STR("AUTHENTICATE")) &&
			    cmd.arg_count == 1)
				line_mode = true;
			break;
		case IMAP_PARSE_LITERAL_CONT:
			buf_printf(out, "CONT %llu\n",
				   (unsigned long long)cmd.literal_size);
			assert_true(cmd.tag.len > 0);
			assert_true(cmd.name.len > 0);
			assert_int_equal(cmd.arg_count, 0);
			break;
		case IMAP_PARSE_LINE:
			break;
		case IMAP_PARSE_ERROR:
			render_error(out, &err);
			if (err.fatal && err.kind != IMAP_PARSE_ERR_TOO_LONG) {
				/* the parser stays failed and eats input */
				size_t c2;
				struct imap_parse_error err2;
				assert_int_equal(imap_parser_parse(p, "x\r\n",
								   3, &c2, &cmd,
								   &err2),
						 IMAP_PARSE_ERROR);
				assert_int_equal(err2.kind, err.kind);
				assert_true(err2.fatal);
				assert_int_equal(c2, 3);
				pos = len;
			}
			break;
		}
	}
	char *s = xstrndup(buf_cstr(out), out->len);
	buf_free(&out);
	imap_parser_free(&p);
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

/* Checks the transcript fed all at once, byte by byte, in a few chunk
 * sizes and split in two at every point. */
static void expect_with(const struct imap_parser_limits *limits,
			const void *data, size_t len, const char *expected)
{
	static const size_t chunks[] = {0, 1, 2, 3, 5, 7, 13};
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

/* Parses exactly one command from the whole input. */
static struct imap_parser *
parse_one_len(const struct imap_parser_limits *limits, const char *input,
	      size_t len, struct imap_command *cmd)
{
	struct imap_parser *p = imap_parser_new(limits);
	struct imap_parse_error err;
	size_t consumed;

	assert_int_equal(imap_parser_parse(p, input, len, &consumed, cmd, &err),
			 IMAP_PARSE_COMMAND);
	assert_int_equal(consumed, len);
	return p;
}

static struct imap_parser *parse_one(const struct imap_parser_limits *limits,
				     const char *input,
				     struct imap_command *cmd)
{
	return parse_one_len(limits, input, strlen(input), cmd);
}

/* ---- well-formed commands --------------------------------------------- */

static void test_simple(void **state)
{
	(void)state;
	EXPECT("a NOOP\r\n", "CMD a NOOP\n");
	EXPECT("a1 noop\r\nb2 CAPABILITY\r\nc3 LOGOUT\r\n",
	       "CMD a1 noop\nCMD b2 CAPABILITY\nCMD c3 LOGOUT\n");
	/* Dovecot-lenient spacing */
	EXPECT("a  SELECT   INBOX  \r\n", "CMD a SELECT INBOX\n");
	/* resp-special ']' is allowed in a tag */
	EXPECT("a] NOOP\r\n", "CMD a] NOOP\n");
	/* a partial command is just "more" */
	EXPECT("a NOOP", "");
}

static void test_bare_lf(void **state)
{
	(void)state;
	/* Like Dovecot, a bare LF ends a line too, also after {n}. */
	EXPECT("a NOOP\nb LOGIN {1}\nx \"y\"\n",
	       "CMD a NOOP\nCONT 1\nCMD b LOGIN {1}x \"y\"\n");
	/* CRLF split between reads: every split point is checked */
	EXPECT("a NOOP\r\nb NOOP\r\n", "CMD a NOOP\nCMD b NOOP\n");
}

static void test_crlf_split(void **state)
{
	struct imap_parser *p = imap_parser_new(&default_limits);
	struct imap_command cmd;
	struct imap_parse_error err;
	size_t consumed;
	(void)state;

	assert_int_equal(
	    imap_parser_parse(p, "a NOOP\r", 7, &consumed, &cmd, &err),
	    IMAP_PARSE_MORE);
	assert_int_equal(consumed, 7);
	assert_int_equal(imap_parser_parse(p, "\nb", 2, &consumed, &cmd, &err),
			 IMAP_PARSE_COMMAND);
	assert_int_equal(consumed, 1);
	assert_true(str_eq(cmd.name, STR("NOOP")));
	assert_int_equal(cmd.arg_count, 0);
	assert_int_equal(cmd.offset, 0);
	imap_parser_free(&p);
}

static void test_quoted(void **state)
{
	(void)state;
	EXPECT("a LOGIN \"us\\\"er\" \"pa\\\\ss\"\r\n",
	       "CMD a LOGIN \"us\"er\" \"pa\\x5css\"\n");
	/* empty quoted string, and quoted/atom directly adjacent */
	EXPECT("a X \"\" \"a\"\"b\"(c)\r\n", "CMD a X \"\" \"a\" \"b\" (c)\n");
	/* control bytes other than CR/LF/NUL are TEXT-CHARs */
	EXPECT("a X \"\t\x01\"\r\n", "CMD a X \"\\x09\\x01\"\n");
}

static void test_nil(void **state)
{
	struct imap_command cmd;
	(void)state;

	EXPECT("a X NIL nil \"NIL\" NILS\r\n",
	       "CMD a X NIL NIL \"NIL\" NILS\n");
	struct imap_parser *p =
	    parse_one(&default_limits, "a X nil \"NIL\" \"\"\r\n", &cmd);
	assert_int_equal(cmd.arg_count, 3);
	assert_int_equal(cmd.args[0].type, IMAP_ARG_NIL);
	assert_true(str_eq(cmd.args[0].str, STR("nil")));
	assert_int_equal(cmd.args[1].type, IMAP_ARG_QUOTED);
	assert_true(str_eq(cmd.args[1].str, STR("NIL")));
	assert_int_equal(cmd.args[2].type, IMAP_ARG_QUOTED);
	assert_int_equal(cmd.args[2].str.len, 0);
	assert_non_null(cmd.args[2].str.p);
	imap_parser_free(&p);
}

static void test_literals(void **state)
{
	(void)state;
	/* LOGIN with synchronizing literal user and password */
	EXPECT("a LOGIN {4}\r\nuser {4}\r\npass\r\n",
	       "CONT 4\nCONT 4\nCMD a LOGIN {4}user {4}pass\n");
	/* LITERAL+: no continuation */
	EXPECT("a LOGIN {4+}\r\nuser {4+}\r\npass\r\nb NOOP\r\n",
	       "CMD a LOGIN {4+}user {4+}pass\nCMD b NOOP\n");
	/* {0} still needs a continuation; {0+} does not */
	EXPECT("a X {0}\r\n {0+}\r\n\r\n", "CONT 0\nCMD a X {0} {0+}\n");
	/* literal bytes are opaque: CRLF, 8-bit, NUL, quotes, braces */
	EXPECT("a X {10+}\r\n\r\n\xff\0\"{1}\r\n\r\n",
	       "CMD a X {10+}\\x0d\\x0a\\xff\\x00\"{1}\\x0d\\x0a\n");
	/* literal8 */
	EXPECT("a APPEND INBOX ~{3}\r\n\0\x01\xfe\r\n",
	       "CONT 3\nCMD a APPEND INBOX ~{3}\\x00\\x01\\xfe\n");
	EXPECT("a X ~{2+}\r\nab ~x\r\n", "CMD a X ~{2+}ab ~x\n");
	/* a literal inside a list, followed by more list elements */
	EXPECT("a X (b {2}\r\nxy c) d\r\n", "CONT 2\nCMD a X (b {2}xy c) d\n");
	/* leading zeros are digits */
	EXPECT("a X {002+}\r\nxy\r\n", "CMD a X {2+}xy\n");
}

static void test_literal_cont_report(void **state)
{
	struct imap_parser *p = imap_parser_new(&default_limits);
	struct imap_command cmd;
	struct imap_parse_error err;
	size_t consumed;
	const char *in = "tag1 LOGIN {5}\r\nalice";
	(void)state;

	/* nothing is reported before the LF of "{5}\r\n" */
	assert_int_equal(imap_parser_parse(p, in, 15, &consumed, &cmd, &err),
			 IMAP_PARSE_MORE);
	assert_int_equal(consumed, 15);
	assert_int_equal(imap_parser_parse(p, in + 15, strlen(in) - 15,
					   &consumed, &cmd, &err),
			 IMAP_PARSE_LITERAL_CONT);
	/* stops right after the LF: the literal is not read yet */
	assert_int_equal(consumed, 1);
	assert_int_equal(cmd.literal_size, 5);
	assert_true(str_eq(cmd.tag, STR("tag1")));
	assert_true(str_eq(cmd.name, STR("LOGIN")));
	assert_int_equal(
	    imap_parser_parse(p, "alice", 5, &consumed, &cmd, &err),
	    IMAP_PARSE_MORE);
	assert_int_equal(
	    imap_parser_parse(p, " {3+}\r\nbob\r\n", 12, &consumed, &cmd, &err),
	    IMAP_PARSE_COMMAND);
	assert_int_equal(consumed, 12);
	assert_int_equal(cmd.arg_count, 2);
	assert_int_equal(cmd.args[0].type, IMAP_ARG_LITERAL);
	assert_false(cmd.args[0].literal_nonsync);
	assert_true(str_eq(cmd.args[0].str, STR("alice")));
	assert_int_equal(cmd.args[0].offset, 11);
	assert_true(cmd.args[1].literal_nonsync);
	assert_true(str_eq(cmd.args[1].str, STR("bob")));
	assert_int_equal(cmd.args[1].offset, 22);
	struct str v;
	assert_true(imap_arg_get_astring(&cmd.args[0], &v));
	assert_true(str_eq(v, STR("alice")));
	imap_parser_free(&p);
}

/* A server may refuse a synchronizing literal (tagged NO/BAD instead of
 * "+"): the client then sends no literal, so the parser is reset. */
static void test_refuse_literal(void **state)
{
	struct imap_parser *p = imap_parser_new(&default_limits);
	struct imap_command cmd;
	struct imap_parse_error err;
	size_t consumed;
	(void)state;

	assert_int_equal(imap_parser_parse(p, "a APPEND INBOX {100}\r\n", 22,
					   &consumed, &cmd, &err),
			 IMAP_PARSE_LITERAL_CONT);
	assert_int_equal(cmd.literal_size, 100);
	assert_true(str_eq(cmd.name, STR("APPEND")));
	imap_parser_reset(p);
	assert_int_equal(
	    imap_parser_parse(p, "b NOOP\r\n", 8, &consumed, &cmd, &err),
	    IMAP_PARSE_COMMAND);
	assert_true(str_eq(cmd.tag, STR("b")));
	/* offsets keep counting across a reset */
	assert_int_equal(cmd.offset, 22);
	imap_parser_free(&p);
}

static void test_split_everywhere(void **state)
{
	(void)state;
	/* one sample with every token kind; EXPECT also feeds it byte by
	 * byte and split in two at each point */
	EXPECT("A001 LOGIN {5}\r\nalice \"se\\\"cret\"\r\n"
	       "A002 ID (\"name\" \"x\" \"version\" NIL)\r\n"
	       "A003 APPEND INBOX (\\Seen) {3+}\r\n\r\n.\r\n"
	       "A004 FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM)] {0}\r\n)\n"
	       "A005 AUTHENTICATE PLAIN\r\nAGEAYg==\r\n"
	       "A006 LOGOUT\r\n",
	       "CONT 5\n"
	       "CMD A001 LOGIN {5}alice \"se\"cret\"\n"
	       "CMD A002 ID (\"name\" \"x\" \"version\" NIL)\n"
	       "CMD A003 APPEND INBOX (\\x5cSeen) {3+}\\x0d\\x0a.\n"
	       "CONT 0\n"
	       "CMD A004 FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM) ] {0})\n"
	       "CMD A005 AUTHENTICATE PLAIN\n"
	       "LINE AGEAYg==\n"
	       "CMD A006 LOGOUT\n");
}

static void test_id_and_fetch(void **state)
{
	struct imap_command cmd;
	(void)state;

	struct imap_parser *p = parse_one(
	    &default_limits,
	    "a ID (\"name\" \"Thunderbird\" \"version\" NIL)\r\n", &cmd);
	assert_true(str_eq(cmd.name, STR("ID")));
	assert_int_equal(cmd.arg_count, 1);
	const struct imap_arg *l = &cmd.args[0];
	assert_int_equal(l->type, IMAP_ARG_LIST);
	assert_int_equal(l->list_count, 4);
	assert_int_equal(l->list[0].type, IMAP_ARG_QUOTED);
	assert_true(str_eq(l->list[1].str, STR("Thunderbird")));
	assert_int_equal(l->list[3].type, IMAP_ARG_NIL);
	assert_int_equal(l->offset, 5);
	imap_parser_free(&p);

	/* FETCH section with a nested list, Dovecot-style tokens */
	p = parse_one(
	    &default_limits,
	    "a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]"
	    "<0.100>)\r\n",
	    &cmd);
	assert_int_equal(cmd.arg_count, 3);
	assert_true(str_eq(cmd.args[0].str, STR("FETCH")));
	assert_true(str_eq(cmd.args[1].str, STR("1:*")));
	l = &cmd.args[2];
	assert_int_equal(l->list_count, 4);
	assert_true(str_eq(l->list[0].str, STR("FLAGS")));
	assert_true(str_eq(l->list[1].str, STR("BODY.PEEK[HEADER.FIELDS")));
	assert_int_equal(l->list[2].type, IMAP_ARG_LIST);
	assert_int_equal(l->list[2].list_count, 2);
	assert_true(str_eq(l->list[2].list[1].str, STR("TO")));
	assert_true(str_eq(l->list[3].str, STR("]<0.100>")));
	imap_parser_free(&p);
}

static void test_nested_lists(void **state)
{
	struct imap_command cmd;
	(void)state;

	struct imap_parser *p = parse_one(
	    &default_limits, "a X (a (b (c) d) () e) f (g)\r\n", &cmd);
	assert_int_equal(cmd.arg_count, 3);
	const struct imap_arg *l = &cmd.args[0];
	assert_int_equal(l->list_count, 4);
	assert_true(str_eq(l->list[0].str, STR("a")));
	const struct imap_arg *inner = &l->list[1];
	assert_int_equal(inner->type, IMAP_ARG_LIST);
	assert_int_equal(inner->list_count, 3);
	assert_true(str_eq(inner->list[0].str, STR("b")));
	assert_int_equal(inner->list[1].list_count, 1);
	assert_true(str_eq(inner->list[1].list[0].str, STR("c")));
	assert_true(str_eq(inner->list[2].str, STR("d")));
	assert_int_equal(l->list[2].type, IMAP_ARG_LIST);
	assert_int_equal(l->list[2].list_count, 0);
	assert_null(l->list[2].list);
	assert_true(str_eq(l->list[3].str, STR("e")));
	assert_true(str_eq(cmd.args[1].str, STR("f")));
	assert_true(str_eq(cmd.args[2].list[0].str, STR("g")));
	imap_parser_free(&p);
	EXPECT("a X (a (b (c) d) () e) f (g)\r\n",
	       "CMD a X (a (b (c) d) () e) f (g)\n");
}

static void test_authenticate(void **state)
{
	(void)state;
	/* SASL-IR (RFC 4959): the response is an atom argument */
	EXPECT("a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\n",
	       "CMD a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\n");
	EXPECT("a AUTHENTICATE PLAIN =\r\n", "CMD a AUTHENTICATE PLAIN =\n");
	/* without SASL-IR the response comes as a raw line; "*" cancels */
	EXPECT("a AUTHENTICATE PLAIN\r\nAHVzZXIAcGFzcw==\r\nb NOOP\r\n",
	       "CMD a AUTHENTICATE PLAIN\nLINE AHVzZXIAcGFzcw==\nCMD b NOOP\n");
	EXPECT("a AUTHENTICATE PLAIN\n*\nb NOOP\n",
	       "CMD a AUTHENTICATE PLAIN\nLINE *\nCMD b NOOP\n");
	EXPECT("a AUTHENTICATE PLAIN\r\n\r\n",
	       "CMD a AUTHENTICATE PLAIN\nLINE \n");
	/* raw line: a NUL is rejected (recoverable); other bytes are kept */
	EXPECT("a AUTHENTICATE PLAIN\r\nab\0c\r\nb NOOP\r\n",
	       "CMD a AUTHENTICATE PLAIN\nERR NUL @24\nCMD b NOOP\n");
}

static void test_read_line_limit(void **state)
{
	struct imap_parser_limits l = default_limits;
	struct imap_parser *p;
	struct imap_parse_error err;
	struct str line;
	size_t consumed;
	(void)state;

	l.max_line_len = 10;
	p = imap_parser_new(&l);
	/* exactly 10 bytes with CRLF */
	assert_int_equal(imap_parser_read_line(p, "12345678\r\n", 10, &consumed,
					       &line, &err),
			 IMAP_PARSE_LINE);
	assert_true(str_eq(line, STR("12345678")));
	/* 11 bytes: fatal TOO_LONG at the 11th byte */
	assert_int_equal(imap_parser_read_line(p, "123456789\r\nb NOOP\r\n", 19,
					       &consumed, &line, &err),
			 IMAP_PARSE_ERROR);
	assert_int_equal(err.kind, IMAP_PARSE_ERR_TOO_LONG);
	assert_true(err.fatal);
	assert_int_equal(consumed, 10);
	assert_int_equal(err.offset, 20);
	assert_string_equal(err.msg, "Too long argument.");
	/* the parser still resynchronises on the next line */
	struct imap_command cmd;
	assert_int_equal(
	    imap_parser_parse(p, "\nb NOOP\r\n", 9, &consumed, &cmd, &err),
	    IMAP_PARSE_COMMAND);
	assert_true(str_eq(cmd.tag, STR("b")));
	assert_int_equal(cmd.offset, 21);
	imap_parser_free(&p);
}

/* ---- limits ----------------------------------------------------------- */

static void test_line_limit(void **state)
{
	struct imap_parser_limits l = default_limits;
	(void)state;

	l.max_line_len = 10;
	/* 10 bytes including CRLF: accepted; 11: rejected at the 11th byte,
	 * fatal, but the parser skips to the next line and goes on */
	EXPECT_L(&l, "a X 1234\r\n", "CMD a X 1234\n");
	EXPECT_L(&l, "a X 12345\n", "CMD a X 12345\n");
	EXPECT_L(&l, "a X 12345\r\nb NOOP\r\n",
		 "ERR TOO_LONG @10 fatal tag=a\nCMD b NOOP\n");
	EXPECT_L(&l, "a X 123456789012345678\r\nb NOOP\r\n",
		 "ERR TOO_LONG @10 fatal tag=a\nCMD b NOOP\n");
	/* no tag known: the reply is "* BAD" */
	EXPECT_L(&l, "abcdefghijklmnop\r\nb NOOP\r\n",
		 "ERR TOO_LONG @10 fatal\nCMD b NOOP\n");

	/* the limit counts every line of a command but no literal data:
	 * "a X {3}\r\n" (9) + " 12\r\n" (5) = 14 */
	l.max_line_len = 14;
	EXPECT_L(&l, "a X {3}\r\nabc 12\r\n", "CONT 3\nCMD a X {3}abc 12\n");
	l.max_line_len = 13;
	EXPECT_L(&l, "a X {3}\r\nabc 12\r\nb NOOP\r\n",
		 "CONT 3\nERR TOO_LONG @16 fatal tag=a\nCMD b NOOP\n");
	/* a literal longer than the line limit is fine */
	l.max_line_len = 12;
	EXPECT_L(&l, "a X {20+}\r\n01234567890123456789\n",
		 "CMD a X {20+}01234567890123456789\n");
}

static void test_literal_limit(void **state)
{
	struct imap_parser_limits l = default_limits;
	struct imap_parser *p;
	struct imap_command cmd;
	struct imap_parse_error err;
	size_t consumed;
	(void)state;

	l.max_literal_size = 10;
	EXPECT_L(&l, "a LOGIN {10}\r\n0123456789\r\n",
		 "CONT 10\nCMD a LOGIN {10}0123456789\n");
	/* {n} too big: not fatal, the client sends no literal, the next
	 * line is the next command */
	EXPECT_L(&l, "a LOGIN {11}\r\nb NOOP\r\n",
		 "ERR LITERAL_TOO_BIG @8 tag=a\nCMD b NOOP\n");
	EXPECT_L(&l, "a X {99999999999999999999999}\r\nb NOOP\r\n",
		 "ERR LITERAL_TOO_BIG @4 tag=a\nCMD b NOOP\n");
	/* and a later literal works again */
	EXPECT_L(&l, "a X {11}\r\nb X {2}\r\nxy\r\n",
		 "ERR LITERAL_TOO_BIG @4 tag=a\nCONT 2\nCMD b X {2}xy\n");
	/* {n+} too big: fatal, the bytes come anyway */
	EXPECT_L(&l, "a LOGIN {11+}\r\n01234567890\r\nb NOOP\r\n",
		 "ERR LITERAL_TOO_BIG @8 fatal tag=a\n");
	EXPECT_L(&l, "a X ~{11+}\r\n01234567890\r\n",
		 "ERR LITERAL_TOO_BIG @4 fatal tag=a\n");
	/* the limit is also the budget for all literals of a command */
	EXPECT_L(&l, "a X {6+}\r\nabcdef {4+}\r\nghij\r\n",
		 "CMD a X {6+}abcdef {4+}ghij\n");
	EXPECT_L(&l, "a X {6+}\r\nabcdef {5}\r\nb NOOP\r\n",
		 "ERR LITERAL_TOO_BIG @17 tag=a\nCMD b NOOP\n");

	p = imap_parser_new(&l);
	assert_int_equal(
	    imap_parser_parse(p, "a X {11+}\r\n", 11, &consumed, &cmd, &err),
	    IMAP_PARSE_ERROR);
	assert_int_equal(err.kind, IMAP_PARSE_ERR_LITERAL_TOO_BIG);
	assert_true(err.literal_nonsync);
	assert_true(err.fatal);
	assert_string_equal(err.msg, "Literal too large.");
	/* failed for good, until reset */
	assert_int_equal(
	    imap_parser_parse(p, "b NOOP\r\n", 8, &consumed, &cmd, &err),
	    IMAP_PARSE_ERROR);
	assert_int_equal(err.tag.len, 0);
	imap_parser_reset(p);
	assert_int_equal(
	    imap_parser_parse(p, "b NOOP\r\n", 8, &consumed, &cmd, &err),
	    IMAP_PARSE_COMMAND);
	assert_int_equal(
	    imap_parser_parse(p, "c X {11}\r\n", 10, &consumed, &cmd, &err),
	    IMAP_PARSE_ERROR);
	assert_false(err.literal_nonsync);
	assert_false(err.fatal);
	imap_parser_free(&p);
}

static void test_depth_limit(void **state)
{
	struct imap_parser_limits l = default_limits;
	(void)state;

	l.max_list_depth = 2;
	EXPECT_L(&l, "a X ((a) (b)) ()\r\n", "CMD a X ((a) (b)) ()\n");
	EXPECT_L(&l, "a X (((a)))\r\nb NOOP\r\n",
		 "ERR TOO_DEEP @6 tag=a\nCMD b NOOP\n");
	l.max_list_depth = 0;
	EXPECT_L(&l, "a X a\r\n", "CMD a X a\n");
	EXPECT_L(&l, "a X (a)\r\n", "ERR TOO_DEEP @4 tag=a\n");
}

static void test_args_limit(void **state)
{
	struct imap_parser_limits l = default_limits;
	(void)state;

	l.max_args = 3;
	EXPECT_L(&l, "a X 1 2 3\r\n", "CMD a X 1 2 3\n");
	EXPECT_L(&l, "a X 1 2 3 4\r\nb NOOP\r\n",
		 "ERR TOO_MANY_ARGS @10 tag=a\nCMD b NOOP\n");
	/* a list counts as one plus its elements */
	EXPECT_L(&l, "a X (1 2)\r\n", "CMD a X (1 2)\n");
	EXPECT_L(&l, "a X (1 2 3)\r\n", "ERR TOO_MANY_ARGS @9 tag=a\n");
	EXPECT_L(&l, "a X 1 2 {1}\r\nx\r\n", "CONT 1\nCMD a X 1 2 {1}x\n");
	EXPECT_L(&l, "a X 1 2 3 {1}\r\n", "ERR TOO_MANY_ARGS @10 tag=a\n");
	l.max_args = 0;
	EXPECT_L(&l, "a NOOP\r\n", "CMD a NOOP\n");
	EXPECT_L(&l, "a X y\r\n", "ERR TOO_MANY_ARGS @4 tag=a\n");
}

/* Storage never grows past line + literal limits plus per-token overhead,
 * however many commands pass through. */
static void test_memory_bound(void **state)
{
	struct imap_parser_limits l = {
	    .max_line_len = 64,
	    .max_literal_size = 100,
	    .max_list_depth = 3,
	    .max_args = 8,
	};
	struct imap_parser *p = imap_parser_new(&l);
	struct imap_command cmd;
	struct imap_parse_error err;
	size_t consumed;
	char lit[100];
	(void)state;

	memset(lit, 'x', sizeof(lit));
	assert_true(imap_parser_memory_max(&l) -
			imap_parser_memory_max(
			    &(struct imap_parser_limits){0, 0, 3, 8, false}) ==
		    64 + 100);
	size_t high = 0;
	for (int round = 0; round < 200; round++) {
		/* 8 args, the whole literal budget, a line of 64 bytes */
		const char *head = "tag LOGIN ((a) b c {50+}\r\n";
		assert_int_equal(imap_parser_parse(p, head, strlen(head),
						   &consumed, &cmd, &err),
				 IMAP_PARSE_MORE);
		assert_int_equal(
		    imap_parser_parse(p, lit, 50, &consumed, &cmd, &err),
		    IMAP_PARSE_MORE);
		const char *mid = " {50}\r\n";
		assert_int_equal(imap_parser_parse(p, mid, strlen(mid),
						   &consumed, &cmd, &err),
				 IMAP_PARSE_LITERAL_CONT);
		assert_int_equal(
		    imap_parser_parse(p, lit, 50, &consumed, &cmd, &err),
		    IMAP_PARSE_MORE);
		/* 26 + 7 + 31 = 64 line bytes */
		const char *tail = ")  d                         \r\n";
		assert_int_equal(strlen(head) + strlen(mid) + strlen(tail), 64);
		assert_int_equal(imap_parser_parse(p, tail, strlen(tail),
						   &consumed, &cmd, &err),
				 IMAP_PARSE_COMMAND);
		assert_int_equal(cmd.arg_count, 2);
		/* over every limit in turn */
		assert_int_equal(imap_parser_parse(p, "a X {101+}\r\n", 12,
						   &consumed, &cmd, &err),
				 IMAP_PARSE_ERROR);
		imap_parser_reset(p);
		char longline[300];
		memset(longline, 'a', sizeof(longline));
		assert_int_equal(imap_parser_parse(p, longline,
						   sizeof(longline), &consumed,
						   &cmd, &err),
				 IMAP_PARSE_ERROR);
		assert_int_equal(imap_parser_parse(p, longline,
						   sizeof(longline), &consumed,
						   &cmd, &err),
				 IMAP_PARSE_MORE);
		assert_int_equal(
		    imap_parser_parse(p, "\n", 1, &consumed, &cmd, &err),
		    IMAP_PARSE_MORE);
		assert_int_equal(imap_parser_parse(p, "a X 1 2 3 4 5 6 7 8 9\n",
						   22, &consumed, &cmd, &err),
				 IMAP_PARSE_ERROR);
		assert_int_equal(err.kind, IMAP_PARSE_ERR_TOO_MANY_ARGS);
		size_t mem = imap_parser_memory(p);
		assert_true(mem <= imap_parser_memory_max(&l));
		if (round == 0)
			high = mem;
		assert_int_equal(mem, high);
	}
	imap_parser_free(&p);
}

/* ---- errors ------------------------------------------------------------ */

static void test_unterminated_quote(void **state)
{
	(void)state;
	EXPECT("a LOGIN \"abc\r\nb NOOP\r\n",
	       "ERR UNTERMINATED_QUOTE @12 tag=a\nCMD b NOOP\n");
	EXPECT("a X \"ab\\\r\nb NOOP\r\n",
	       "ERR UNTERMINATED_QUOTE @8 tag=a\nCMD b NOOP\n");
	/* a CR inside a quoted string cannot be part of it */
	EXPECT("a X \"a\rb\"\r\n", "ERR UNTERMINATED_QUOTE @6 tag=a\n");
	EXPECT("a X \"abc\n", "ERR UNTERMINATED_QUOTE @8 tag=a\n");
}

static void test_8bit(void **state)
{
	(void)state;
	/* rejected in quoted strings, atoms and tags ... */
	EXPECT("a X \"caf\xc3\xa9\"\r\nb NOOP\r\n",
	       "ERR 8BIT @8 tag=a\nCMD b NOOP\n");
	EXPECT("a X caf\xc3\xa9\r\n", "ERR 8BIT @7 tag=a\n");
	EXPECT("a X \"\\\xc3\"\r\n", "ERR 8BIT @6 tag=a\n");
	EXPECT("\xff NOOP\r\n", "ERR 8BIT @0\n");
	EXPECT("a NO\xffOP\r\n", "ERR 8BIT @4 tag=a\n");
	/* ... fine in literals */
	EXPECT("a X {5}\r\ncaf\xc3\xa9\r\n",
	       "CONT 5\nCMD a X {5}caf\\xc3\\xa9\n");
	/* with allow_8bit_quoted (what the proxy uses for UTF-8 passwords)
	 * quoted strings take UTF-8; atoms, tags and NUL stay errors */
	struct imap_parser_limits utf8 = default_limits;
	utf8.allow_8bit_quoted = true;
	EXPECT_L(&utf8, "a LOGIN u \"p\xc3\xa4ss \\\"x\"\r\n",
		 "CMD a LOGIN u \"p\\xc3\\xa4ss \"x\"\n");
	EXPECT_L(&utf8, "a X caf\xc3\xa9\r\n", "ERR 8BIT @7 tag=a\n");
	EXPECT_L(&utf8, "a X \"a\0b\"\r\n", "ERR NUL @6 tag=a\n");
}

static void test_nul(void **state)
{
	(void)state;
	EXPECT("a X ab\0c\r\nb NOOP\r\n", "ERR NUL @6 tag=a\nCMD b NOOP\n");
	EXPECT("\0 NOOP\r\n", "ERR NUL @0\n");
	EXPECT("a\0 NOOP\r\n", "ERR NUL @1\n");
	EXPECT("a NO\0OP\r\n", "ERR NUL @4 tag=a\n");
	EXPECT("a X \"a\0\"\r\n", "ERR NUL @6 tag=a\n");
	EXPECT("a X \"a\\\0\"\r\n", "ERR NUL @7 tag=a\n");
	/* in a literal it is data */
	EXPECT("a X {1+}\r\n\0\r\n", "CMD a X {1+}\\x00\n");

	struct imap_command cmd;
	struct str v;
	struct imap_parser *p = parse_one_len(
	    &default_limits, "a LOGIN {3+}\r\na\0b x\r\n", 21, &cmd);
	assert_int_equal(cmd.args[0].str.len, 3);
	assert_false(imap_arg_get_astring(&cmd.args[0], &v));
	assert_true(imap_arg_get_astring(&cmd.args[1], &v));
	imap_parser_free(&p);
}

static void test_bad_list(void **state)
{
	(void)state;
	EXPECT("a X )\r\nb NOOP\r\n", "ERR BAD_LIST @4 tag=a\nCMD b NOOP\n");
	EXPECT("a X (a))\r\n", "ERR BAD_LIST @7 tag=a\n");
	EXPECT("a X (a\r\nb NOOP\r\n", "ERR BAD_LIST @6 tag=a\nCMD b NOOP\n");
	/* the list stays open across a literal; the error is at the end */
	EXPECT("a X (a {1}\r\nb\r\n", "CONT 1\nERR BAD_LIST @13 tag=a\n");
	/* offsets count from the start of the stream */
	EXPECT("a NOOP\r\nb X )\r\n", "CMD a NOOP\nERR BAD_LIST @12 tag=b\n");
}

static void test_missing_tag_command(void **state)
{
	(void)state;
	EXPECT("\r\nb NOOP\r\n", "ERR MISSING_TAG @0\nCMD b NOOP\n");
	EXPECT("\n", "ERR MISSING_TAG @0\n");
	EXPECT(" NOOP\r\n", "ERR MISSING_TAG @0\n");
	EXPECT("a\r\nb NOOP\r\n", "ERR MISSING_COMMAND @1 tag=a\nCMD b NOOP\n");
	EXPECT("a \r\n", "ERR MISSING_COMMAND @2 tag=a\n");
}

static void test_bad_char(void **state)
{
	(void)state;
	/* tags: no '+', no atom-specials, no quoted tag */
	EXPECT("a+ NOOP\r\nb NOOP\r\n", "ERR BAD_CHAR @1\nCMD b NOOP\n");
	EXPECT("\"a\" NOOP\r\n", "ERR BAD_CHAR @0\n");
	EXPECT("* NOOP\r\n", "ERR BAD_CHAR @0\n");
	EXPECT("{3}\r\nb NOOP\r\n", "ERR BAD_CHAR @0\nCMD b NOOP\n");
	/* command names are atoms */
	EXPECT("a NO(OP\r\n", "ERR BAD_CHAR @4 tag=a\n");
	EXPECT("a {3}\r\n", "ERR BAD_CHAR @2 tag=a\n");
	/* atoms */
	EXPECT("a X ab\"c\"\r\n", "ERR BAD_CHAR @6 tag=a\n");
	EXPECT("a X a\tb\r\n", "ERR BAD_CHAR @5 tag=a\n");
	EXPECT("a X a\rb\r\n", "ERR BAD_CHAR @5 tag=a\n");
	EXPECT("a X ab{3}\r\n", "ERR BAD_CHAR @6 tag=a\n");
	EXPECT("a X a(b)\r\n", "ERR BAD_CHAR @5 tag=a\n");
	/* only \\ and \" are escapes */
	EXPECT("a X \"a\\b\"\r\nb NOOP\r\n",
	       "ERR BAD_CHAR @6 tag=a\nCMD b NOOP\n");
}

static void test_bad_literal(void **state)
{
	(void)state;
	EXPECT("a X {}\r\nb NOOP\r\n",
	       "ERR BAD_LITERAL @5 tag=a\nCMD b NOOP\n");
	EXPECT("a X {x}\r\n", "ERR BAD_LITERAL @5 tag=a\n");
	EXPECT("a X {5\r\n", "ERR BAD_LITERAL @6 tag=a\n");
	EXPECT("a X {5+\r\n", "ERR BAD_LITERAL @7 tag=a\n");
	EXPECT("a X {5} x\r\n", "ERR BAD_LITERAL @7 tag=a\n");
	EXPECT("a X {-5}\r\n", "ERR BAD_LITERAL @5 tag=a\n");
}

/* Any error on a line that announces {n+} is fatal: the literal follows
 * regardless and cannot be told apart from commands. With {n} the client
 * waits, so the next line is a new command. */
static void test_error_before_nonsync(void **state)
{
	(void)state;
	EXPECT("a X ) {5+}\r\nhello\r\n", "ERR BAD_LIST @4 fatal tag=a\n");
	EXPECT("a X \"\xff\" ~{5+}\r\nhello\r\n", "ERR 8BIT @5 fatal tag=a\n");
	EXPECT("a X ) {5}\r\nb NOOP\r\n",
	       "ERR BAD_LIST @4 tag=a\nCMD b NOOP\n");
	/* an error after earlier literals only concerns its own line */
	EXPECT("a X {2+}\r\nxy )\r\nb NOOP\r\n",
	       "ERR BAD_LIST @13 tag=a\nCMD b NOOP\n");
}

static void test_error_messages(void **state)
{
	struct imap_parser *p = imap_parser_new(&default_limits);
	struct imap_command cmd;
	struct imap_parse_error err;
	size_t consumed;
	(void)state;

	assert_int_equal(imap_parser_parse(p, "a NOOP\r\nb LOGIN \"x\r\n", 20,
					   &consumed, &cmd, &err),
			 IMAP_PARSE_COMMAND);
	assert_int_equal(consumed, 8);
	assert_int_equal(
	    imap_parser_parse(p, "b LOGIN \"x\r\n", 12, &consumed, &cmd, &err),
	    IMAP_PARSE_ERROR);
	assert_int_equal(err.kind, IMAP_PARSE_ERR_UNTERMINATED_QUOTE);
	assert_string_equal(err.msg, "Missing '\"'.");
	assert_false(err.fatal);
	assert_int_equal(err.offset, 18);
	assert_int_equal(err.pos, 10);
	assert_true(str_eq(err.tag, STR("b")));
	/* the bad line is consumed entirely */
	assert_int_equal(consumed, 12);
	imap_parser_free(&p);
	imap_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simple),
	    cmocka_unit_test(test_bare_lf),
	    cmocka_unit_test(test_crlf_split),
	    cmocka_unit_test(test_quoted),
	    cmocka_unit_test(test_nil),
	    cmocka_unit_test(test_literals),
	    cmocka_unit_test(test_literal_cont_report),
	    cmocka_unit_test(test_refuse_literal),
	    cmocka_unit_test(test_split_everywhere),
	    cmocka_unit_test(test_id_and_fetch),
	    cmocka_unit_test(test_nested_lists),
	    cmocka_unit_test(test_authenticate),
	    cmocka_unit_test(test_read_line_limit),
	    cmocka_unit_test(test_line_limit),
	    cmocka_unit_test(test_literal_limit),
	    cmocka_unit_test(test_depth_limit),
	    cmocka_unit_test(test_args_limit),
	    cmocka_unit_test(test_memory_bound),
	    cmocka_unit_test(test_unterminated_quote),
	    cmocka_unit_test(test_8bit),
	    cmocka_unit_test(test_nul),
	    cmocka_unit_test(test_bad_list),
	    cmocka_unit_test(test_missing_tag_command),
	    cmocka_unit_test(test_bad_char),
	    cmocka_unit_test(test_bad_literal),
	    cmocka_unit_test(test_error_before_nonsync),
	    cmocka_unit_test(test_error_messages),
	};
	return cmocka_run_group_tests_name("imap_parse", tests, NULL, NULL);
}
