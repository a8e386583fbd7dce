#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/imap_search.h"
#include "buf.h"
#include "imap_parse.h"
#include "str.h"
#include "textmatch.h"

static const struct imap_parser_limits limits = {
    .max_line_len = 65536,
    .max_literal_size = 4096,
    .max_list_depth = 64,
    .max_args = 4096,
};

static const struct imap_search_parse_settings default_set = {
    .allow_modseq = true,
};

/* A synthetic message: index data plus headers and a body. */
struct fake_msg {
	struct imap_search_message m;
	const char *headers[8]; /* "Name: value" */
	const char *body;
	const char *keywords[4];
	bool has_date;
	int64_t date;
	int date_tz;
	int fail; /* callbacks return -1 */
	/* call counters */
	unsigned int header_calls, body_calls, date_calls, keyword_calls;
};

static bool fake_has_keyword(void *ctx, struct str name)
{
	struct fake_msg *f = ctx;
	f->keyword_calls++;
	for (size_t i = 0; i < 4 && f->keywords[i] != NULL; i++) {
		if (str_eq_nocase(name, str_cstr(f->keywords[i])))
			return true;
	}
	return false;
}

static int fake_header_contains(void *ctx, struct str field,
				const struct textmatch_pattern *pat)
{
	struct fake_msg *f = ctx;
	f->header_calls++;
	if (f->fail)
		return -1;
	assert_true(field.len > 0);
	for (size_t i = 0; i < 8 && f->headers[i] != NULL; i++) {
		struct str h = str_cstr(f->headers[i]), name, value;
		assert_true(str_split(h, ':', &name, &value));
		if (!str_eq_nocase(name, field))
			continue;
		if (textmatch_contains(pat, str_trim(value)))
			return 1;
	}
	return 0;
}

static int fake_body_contains(void *ctx, const struct textmatch_pattern *pat,
			      bool include_headers)
{
	struct fake_msg *f = ctx;
	struct textmatch m;

	f->body_calls++;
	if (f->fail)
		return -1;
	assert_false(textmatch_pattern_is_empty(pat));
	textmatch_init(&m, pat);
	if (include_headers) {
		for (size_t i = 0; i < 8 && f->headers[i] != NULL; i++) {
			textmatch_feed(&m, f->headers[i],
				       strlen(f->headers[i]));
			textmatch_feed(&m, "\r\n", 2);
		}
		textmatch_feed(&m, "\r\n", 2);
	}
	if (f->body != NULL)
		textmatch_feed(&m, f->body, strlen(f->body));
	return textmatch_finish(&m) ? 1 : 0;
}

static int fake_sent_date(void *ctx, int64_t *unix_r, int *tz_r)
{
	struct fake_msg *f = ctx;
	f->date_calls++;
	if (f->fail)
		return -1;
	if (!f->has_date)
		return 0;
	*unix_r = f->date;
	*tz_r = f->date_tz;
	return 1;
}

static const struct imap_search_source fake_src = {
    .has_keyword = fake_has_keyword,
    .header_contains = fake_header_contains,
    .body_contains = fake_body_contains,
    .sent_date = fake_sent_date,
};

/* Unix time of y-m-d h:m:s UTC (for the test data only). */
static int64_t utc(int y, int mo, int d, int h, int mi)
{
	static const int cum[12] = {0,   31,  59,  90,  120, 151,
				    181, 212, 243, 273, 304, 334};
	int64_t days =
	    (int64_t)(y - 1970) * 365 + (y - 1969) / 4 + cum[mo - 1] + d - 1;
	if (mo > 2 && y % 4 == 0)
		days++;
	return days * 86400 + h * 3600 + mi * 60;
}

/* The test mailbox: five messages. */
static struct fake_msg box[5];

static void setup_box(void)
{
	memset(box, 0, sizeof(box));
	for (uint32_t i = 0; i < 5; i++) {
		box[i].m.seq = i + 1;
		box[i].m.uid = 10 * (i + 1);
		box[i].m.max_seq = 5;
		box[i].m.max_uid = 50;
		box[i].m.modseq = 100 + i;
	}
	/* 1: seen, answered, small, Jan 2024 */
	box[0].m.flags = IMAP_SEARCH_FLAG_SEEN | IMAP_SEARCH_FLAG_ANSWERED;
	box[0].m.size = 500;
	box[0].m.internal_date = utc(2024, 1, 15, 12, 0);
	box[0].headers[0] = "From: Alice <alice@example.com>";
	box[0].headers[1] = "To: bob@example.org";
	box[0].headers[2] = "Subject: Quarterly Report";
	box[0].headers[3] = "X-Spam: no";
	box[0].body = "Numbers are up this quarter.";
	box[0].has_date = true;
	box[0].date = utc(2024, 1, 14, 9, 0);
	box[0].keywords[0] = "$Work";
	/* 2: flagged, deleted, recent, big */
	box[1].m.flags = IMAP_SEARCH_FLAG_FLAGGED | IMAP_SEARCH_FLAG_DELETED;
	box[1].m.recent = true;
	box[1].m.size = 50000;
	box[1].m.internal_date = utc(2024, 2, 1, 0, 30);
	box[1].headers[0] = "From: Bob <bob@example.org>";
	box[1].headers[1] = "Cc: carol@example.net";
	box[1].headers[2] = "Subject: lunch?";
	box[1].body = "Shall we have \xc3\x84pfel for lunch?";
	box[1].has_date = true;
	box[1].date = utc(2024, 2, 1, 23, 0);
	box[1].date_tz = 120; /* +0200: 2 Feb local */
	/* 3: draft, seen, recent */
	box[2].m.flags = IMAP_SEARCH_FLAG_DRAFT | IMAP_SEARCH_FLAG_SEEN;
	box[2].m.recent = true;
	box[2].m.size = 1500;
	/* 1 Mar 2024 03:00 UTC is 29 Feb 22:00 at -0500 */
	box[2].m.internal_date = utc(2024, 3, 1, 3, 0);
	box[2].m.internal_tz_min = -300;
	box[2].headers[0] = "From: carol@example.net";
	box[2].headers[1] = "Bcc: secret@example.com";
	box[2].headers[2] = "Subject: Draft: plans";
	box[2].body = "Draft text";
	box[2].keywords[0] = "$Work";
	box[2].keywords[1] = "Later";
	/* no Date: header */
	/* 4: nothing set, recent */
	box[3].m.recent = true;
	box[3].m.size = 999;
	box[3].m.internal_date = utc(2023, 12, 31, 23, 59);
	box[3].headers[0] =
	    "Subject: =?utf-8?q?x?= \xce\xa3\xce\xbf\xcf\x86\xce\xaf\xce\xb1";
	box[3].body = "";
	box[3].has_date = true;
	box[3].date = utc(2023, 12, 31, 23, 0);
	/* 5: answered, flagged */
	box[4].m.flags = IMAP_SEARCH_FLAG_ANSWERED | IMAP_SEARCH_FLAG_FLAGGED;
	box[4].m.size = 1000;
	box[4].m.internal_date = utc(2024, 3, 1, 0, 0);
	box[4].headers[0] = "From: Dave <dave@example.com>";
	box[4].headers[1] = "To: Alice <alice@example.com>";
	box[4].headers[2] = "Subject: Re: Quarterly report";
	box[4].body = "Quarterly? Which quarter?";
	box[4].has_date = true;
	box[4].date = utc(2024, 2, 29, 8, 0);
}

/* Tokenizes "a SEARCH <line>" and parses the search. */
static enum imap_search_parse_result
parse_line(const char *line, const struct imap_search_parse_settings *set,
	   struct imap_search **prog_r, const char **error_r)
{
	struct imap_parser *p = imap_parser_new(&limits);
	struct buf *b = buf_new(256, 1 << 20);
	struct imap_command cmd;
	struct imap_parse_error err;
	size_t consumed;

	buf_printf(b, "a SEARCH %s\r\n", line);
	/* literals: the test acts as a client that got its "+" already */
	const uint8_t *in = b->data;
	size_t left = b->len;
	enum imap_parse_result r;
	while ((r = imap_parser_parse(p, in, left, &consumed, &cmd, &err)) ==
	       IMAP_PARSE_LITERAL_CONT) {
		in += consumed;
		left -= consumed;
	}
	if (r != IMAP_PARSE_COMMAND)
		fail_msg("tokenizer: %d %s for '%s'", r,
			 r == IMAP_PARSE_ERROR ? err.msg : "", line);
	enum imap_search_parse_result ret =
	    imap_search_parse(cmd.args, cmd.arg_count, set, prog_r, error_r);
	/* the program must not point into the parser's storage */
	imap_parser_free(&p);
	buf_free(&b);
	return ret;
}

/* Runs the search over the box; returns the matching sequence numbers as
 * "1 3 5" ("-" for an error). */
static const char *search_with(const char *line,
			       const struct imap_search_parse_settings *set)
{
	static char out[128];
	struct imap_search *prog = NULL;
	const char *error = NULL;
	size_t len = 0;

	if (parse_line(line, set, &prog, &error) != IMAP_SEARCH_PARSE_OK)
		fail_msg("'%s' failed: %s", line, error);
	out[0] = '\0';
	for (size_t i = 0; i < 5; i++) {
		int r = imap_search_match(prog, &box[i].m, &fake_src, &box[i]);
		assert_true(r >= -1 && r <= 1);
		if (r == 0)
			continue;
		int w = snprintf(out + len, sizeof(out) - len, "%s%s",
				 len > 0 ? " " : "", r < 0 ? "-" : "");
		assert_true(w >= 0);
		len += (size_t)w;
		if (r > 0) {
			w = snprintf(out + len, sizeof(out) - len, "%zu",
				     i + 1);
			len += (size_t)w;
		}
	}
	imap_search_free(&prog);
	assert_null(prog);
	return out;
}

static const char *search(const char *line)
{
	return search_with(line, &default_set);
}

#define EXPECT(line, want) assert_string_equal(search(line), want)

/* The error text of a failing parse, checking the result kind. */
static const char *parse_error(const char *line,
			       enum imap_search_parse_result want)
{
	struct imap_search *prog = (struct imap_search *)&prog;
	const char *error = NULL;

	assert_int_equal(parse_line(line, &default_set, &prog, &error), want);
	assert_null(prog);
	assert_non_null(error);
	return error;
}

#define EXPECT_BAD(line, msg)                                                  \
	assert_string_equal(parse_error(line, IMAP_SEARCH_PARSE_BAD), msg)

static int setup(void **state)
{
	(void)state;
	setup_box();
	return 0;
}

static void test_flags(void **state)
{
	(void)state;
	EXPECT("ALL", "1 2 3 4 5");
	EXPECT("all", "1 2 3 4 5");
	EXPECT("ANSWERED", "1 5");
	EXPECT("UNANSWERED", "2 3 4");
	EXPECT("DELETED", "2");
	EXPECT("UNDELETED", "1 3 4 5");
	EXPECT("DRAFT", "3");
	EXPECT("UNDRAFT", "1 2 4 5");
	EXPECT("FLAGGED", "2 5");
	EXPECT("UNFLAGGED", "1 3 4");
	EXPECT("SEEN", "1 3");
	EXPECT("UNSEEN", "2 4 5");
	EXPECT("RECENT", "2 3 4");
	EXPECT("OLD", "1 5");
	EXPECT("NEW", "2 4");
	EXPECT("SEEN ANSWERED", "1");
}

static void test_keywords(void **state)
{
	(void)state;
	EXPECT("KEYWORD $Work", "1 3");
	EXPECT("KEYWORD $work", "1 3");
	EXPECT("UNKEYWORD $Work", "2 4 5");
	EXPECT("KEYWORD later", "3");
	EXPECT("KEYWORD Nope", "");
	EXPECT("KEYWORD \"Later\"", "3");
	/* system flags are answered from the index */
	for (size_t i = 0; i < 5; i++)
		box[i].keyword_calls = 0;
	EXPECT("KEYWORD \\Seen", "1 3");
	EXPECT("UNKEYWORD \\Flagged", "1 3 4");
	EXPECT("KEYWORD \\Recent", "2 3 4");
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(box[i].keyword_calls, 0);
	EXPECT_BAD("KEYWORD \\Foo", "Invalid keyword \\x5cFoo");
	EXPECT_BAD("KEYWORD \"a b\"", "Invalid keyword a b");
	EXPECT_BAD("KEYWORD", "Missing argument");
	EXPECT_BAD("KEYWORD (x)", "Invalid string argument (list)");
}

static void test_sizes(void **state)
{
	(void)state;
	EXPECT("LARGER 999", "2 3 5");
	EXPECT("LARGER 1000", "2 3");
	EXPECT("SMALLER 1000", "1 4");
	EXPECT("SMALLER 0", "");
	EXPECT("LARGER 18446744073709551615", "");
	EXPECT("LARGER 500 SMALLER 1500", "4 5");
	EXPECT_BAD("LARGER -1", "Invalid search number parameter");
	EXPECT_BAD("LARGER 18446744073709551616",
		   "Invalid search number parameter");
	EXPECT_BAD("SMALLER x", "Invalid search number parameter");
	EXPECT_BAD("SMALLER", "Missing argument");
}

static void test_internal_dates(void **state)
{
	(void)state;
	EXPECT("ON 15-Jan-2024", "1");
	EXPECT("ON \"15-jan-2024\"", "1");
	EXPECT("ON 1-Feb-2024", "2");
	EXPECT("ON 01-Feb-2024", "2");
	/* message 3's date is taken in its own zone: 29 Feb, not 1 Mar */
	EXPECT("ON 29-Feb-2024", "3");
	EXPECT("ON 1-Mar-2024", "5");
	EXPECT("BEFORE 1-Jan-2024", "4");
	EXPECT("BEFORE 1-Feb-2024", "1 4");
	EXPECT("SINCE 1-Feb-2024", "2 3 5");
	EXPECT("SINCE 1-Mar-2024", "5");
	EXPECT("SINCE 1-Jan-2024 BEFORE 29-Feb-2024", "1 2");
	EXPECT_BAD("ON 29-Feb-2023", "Invalid search date parameter");
	EXPECT_BAD("ON 32-Jan-2024", "Invalid search date parameter");
	EXPECT_BAD("ON 0-Jan-2024", "Invalid search date parameter");
	EXPECT_BAD("ON 1-Foo-2024", "Invalid search date parameter");
	EXPECT_BAD("ON 1-Jan-24", "Invalid search date parameter");
	EXPECT_BAD("ON 123-Jan-2024", "Invalid search date parameter");
	EXPECT_BAD("ON 2024-01-01", "Invalid search date parameter");
	EXPECT_BAD("BEFORE", "Missing argument");
}

static void test_sent_dates(void **state)
{
	(void)state;
	/* message 3 has no Date: header: taken as 1 Jan 1970 */
	EXPECT("SENTON 14-Jan-2024", "1");
	/* 23:00 UTC at +0200 is the next day locally */
	EXPECT("SENTON 2-Feb-2024", "2");
	EXPECT("SENTON 1-Feb-2024", "");
	EXPECT("SENTBEFORE 1-Jan-2024", "3 4");
	EXPECT("SENTSINCE 1-Feb-2024", "2 5");
	EXPECT("SENTSINCE 1-Jan-1970", "1 2 3 4 5");
	EXPECT("SENTON 1-Jan-1970", "3");
	/* two SENT keys look the Date: header up once per message */
	for (size_t i = 0; i < 5; i++)
		box[i].date_calls = 0;
	EXPECT("SENTSINCE 1-Jan-2024 SENTBEFORE 1-Mar-2024", "1 2 5");
	assert_int_equal(box[0].date_calls, 1);
}

static void test_headers(void **state)
{
	(void)state;
	EXPECT("FROM alice", "1");
	EXPECT("FROM EXAMPLE.COM", "1 5");
	EXPECT("TO alice", "5");
	EXPECT("CC carol", "2");
	EXPECT("BCC secret", "3");
	EXPECT("SUBJECT quarterly", "1 5");
	EXPECT("SUBJECT \"Re: Quarterly\"", "5");
	EXPECT("SUBJECT {5}\r\nlunch", "2");
	/* UTF-8 strings, case-insensitive beyond ASCII */
	EXPECT("CHARSET UTF-8 SUBJECT {10}\r\n\xcf\x83\xce\xbf\xcf\x86\xce\xaf"
	       "\xce\xb1",
	       "4");
	EXPECT("HEADER X-Spam no", "1");
	EXPECT("HEADER x-spam \"\"", "1");
	/* HEADER field "" matches any message that has the field */
	EXPECT("HEADER Cc \"\"", "2");
	EXPECT("HEADER Subject \"\"", "1 2 3 4 5");
	EXPECT("SUBJECT \"\"", "1 2 3 4 5");
	EXPECT("FROM \"\"", "1 2 3 5");
	EXPECT_BAD("HEADER \"\" x", "Invalid header field name");
	EXPECT_BAD("HEADER \"a:b\" x", "Invalid header field name");
	EXPECT_BAD("HEADER Subject", "Missing argument");
	EXPECT_BAD("FROM", "Missing argument");
	/* a literal with a NUL is no search string */
	struct imap_arg args[2] = {
	    {.type = IMAP_ARG_ATOM, .str = STR("SUBJECT")},
	    {.type = IMAP_ARG_LITERAL, .str = {"a\0b", 3}},
	};
	struct imap_search *prog;
	const char *error;
	assert_int_equal(
	    imap_search_parse(args, 2, &default_set, &prog, &error),
	    IMAP_SEARCH_PARSE_BAD);
	assert_null(prog);
	assert_string_equal(error, "Invalid string argument (contains NUL)");
}

static void test_body_text(void **state)
{
	(void)state;
	EXPECT("BODY quarter", "1 5");
	EXPECT("BODY lunch", "2");
	EXPECT("BODY {6}\r\n\xc3\xa4pfel", "2");
	EXPECT("BODY plans", "");
	EXPECT("TEXT plans", "3");
	EXPECT("TEXT quarter", "1 5");
	EXPECT("TEXT \"subject: lunch\"", "2");
	/* empty strings match everything without reading messages */
	for (size_t i = 0; i < 5; i++)
		box[i].body_calls = 0;
	EXPECT("BODY \"\"", "1 2 3 4 5");
	EXPECT("TEXT \"\"", "1 2 3 4 5");
	assert_int_equal(box[0].body_calls, 0);
}

static void test_seqsets(void **state)
{
	(void)state;
	EXPECT("1", "1");
	EXPECT("2:4", "2 3 4");
	EXPECT("4:2", "2 3 4");
	EXPECT("*", "5");
	EXPECT("4:*", "4 5");
	EXPECT("1,3,*", "1 3 5");
	EXPECT("9:*", "5");
	EXPECT("UID 10", "1");
	EXPECT("UID 20:40", "2 3 4");
	EXPECT("UID *", "5");
	EXPECT("UID 45:*", "5");
	EXPECT("UID 60:*", "5");
	EXPECT("UID 1:15,41:1000", "1 5");
	EXPECT("uid 30 2:3", "3");
	EXPECT_BAD("UID", "Missing argument");
	EXPECT_BAD("UID 0", "Invalid UID messageset");
	EXPECT_BAD("UID x", "Invalid UID messageset");
	EXPECT_BAD("UID \"1\"", "Invalid UID messageset");
	EXPECT_BAD("1:0", "Invalid messageset");
	EXPECT_BAD("1,,2", "Invalid messageset");
	EXPECT_BAD("4294967296", "Invalid messageset");
	EXPECT_BAD("$", "Unknown argument $");
}

static void test_not_or(void **state)
{
	(void)state;
	EXPECT("NOT SEEN", "2 4 5");
	EXPECT("NOT NOT SEEN", "1 3");
	EXPECT("OR SEEN FLAGGED", "1 2 3 5");
	EXPECT("OR DRAFT OR DELETED 4", "2 3 4");
	EXPECT("NOT OR SEEN FLAGGED", "4");
	EXPECT("OR (SEEN ANSWERED) (FLAGGED ANSWERED)", "1 5");
	EXPECT("(SEEN)", "1 3");
	EXPECT("((SEEN) (NOT DRAFT))", "1");
	EXPECT("OR FROM alice BODY lunch", "1 2");
	EXPECT("NOT (FROM example.com)", "2 3 4");
	EXPECT("OR NOT SEEN NOT RECENT", "1 2 4 5");
	EXPECT("UNSEEN OR SUBJECT lunch UID 40", "2 4");
	EXPECT_BAD("NOT", "Missing argument");
	EXPECT_BAD("OR SEEN", "Missing argument");
	EXPECT_BAD("OR", "Missing argument");
	EXPECT_BAD("()", "Empty list in search query");
	EXPECT_BAD("SEEN ()", "Empty list in search query");
}

static void test_modseq(void **state)
{
	struct imap_search *prog;
	const char *error;
	uint64_t max;
	(void)state;

	EXPECT("MODSEQ 102", "3 4 5");
	EXPECT("MODSEQ 0", "1 2 3 4 5");
	EXPECT("MODSEQ \"/flags/\\\\Seen\" all 104", "5");
	EXPECT("MODSEQ \"/flags/$Work\" priv 103", "4 5");
	EXPECT("MODSEQ 9223372036854775807", "");
	EXPECT_BAD("MODSEQ 9223372036854775808", "Invalid MODSEQ entry");
	EXPECT_BAD("MODSEQ", "Missing argument");
	EXPECT_BAD("MODSEQ \"/flags/\\\\Seen\" all", "Missing argument");
	EXPECT_BAD("MODSEQ \"/flags/\\\\Seen\" nope 1",
		   "Invalid MODSEQ entry type");
	EXPECT_BAD("MODSEQ \"/other\" all 1", "Invalid MODSEQ entry");
	EXPECT_BAD("MODSEQ \"/flags/\\\\Seen\" all x", "Invalid MODSEQ value");

	assert_int_equal(
	    parse_line("OR MODSEQ 7 NOT MODSEQ 9", &default_set, &prog, &error),
	    IMAP_SEARCH_PARSE_OK);
	assert_true(imap_search_uses_modseq(prog, &max));
	assert_int_equal(max, 9);
	imap_search_free(&prog);
	assert_int_equal(parse_line("SEEN", &default_set, &prog, &error),
			 IMAP_SEARCH_PARSE_OK);
	assert_false(imap_search_uses_modseq(prog, &max));
	assert_int_equal(max, 0);
	imap_search_free(&prog);

	/* without CONDSTORE, MODSEQ is an unknown key */
	struct imap_search_parse_settings no_condstore = {0};
	assert_int_equal(parse_line("MODSEQ 1", &no_condstore, &prog, &error),
			 IMAP_SEARCH_PARSE_BAD);
	assert_string_equal(error, "Unknown argument MODSEQ");
}

static void test_charset(void **state)
{
	(void)state;
	EXPECT("CHARSET UTF-8 SEEN", "1 3");
	EXPECT("CHARSET us-ascii SEEN", "1 3");
	EXPECT("charset \"utf-8\" SEEN", "1 3");
	assert_string_equal(parse_error("CHARSET ISO-8859-1 SEEN",
					IMAP_SEARCH_PARSE_BADCHARSET),
			    "Unsupported charset");
	assert_string_equal(
	    parse_error("CHARSET KOI8-R", IMAP_SEARCH_PARSE_BADCHARSET),
	    "Unsupported charset");
	EXPECT_BAD("CHARSET", "Missing CHARSET argument");
	EXPECT_BAD("CHARSET UTF-8", "Missing SEARCH arguments");
	EXPECT_BAD("CHARSET (UTF-8) ALL", "Missing CHARSET argument");
	/* CHARSET only leads: later it is an unknown key */
	EXPECT_BAD("ALL CHARSET UTF-8", "Unknown argument CHARSET");
}

static void test_syntax_errors(void **state)
{
	struct imap_search *prog;
	const char *error;
	(void)state;

	assert_int_equal(
	    imap_search_parse(NULL, 0, &default_set, &prog, &error),
	    IMAP_SEARCH_PARSE_BAD);
	assert_null(prog);
	assert_string_equal(error, "Missing SEARCH arguments");
	EXPECT_BAD("FOO", "Unknown argument FOO");
	EXPECT_BAD("SEEN BOGUS", "Unknown argument BOGUS");
	EXPECT_BAD("\"SEEN\"", "Unknown argument SEEN");
	EXPECT_BAD("NIL", "Unknown argument NIL");
	EXPECT_BAD("{4}\r\nSEEN", "Unknown argument SEEN");
	/* client bytes in error texts are sanitised */
	EXPECT_BAD("{3}\r\na\rb", "Unknown argument a\\x0db");
	/* a search string over the textmatch limit */
	struct buf *b = buf_new(2048, 4096);
	buf_printf(b, "BODY {%d}\r\n", TEXTMATCH_MAX_NEEDLE + 1);
	for (int i = 0; i <= TEXTMATCH_MAX_NEEDLE; i++)
		buf_append_byte(b, 'x');
	EXPECT_BAD(buf_cstr(b), "Search string too long");
	buf_free(&b);
}

static void test_depth_limit(void **state)
{
	struct imap_search_parse_settings set = {.max_depth = 4};
	struct imap_search *prog;
	const char *error;
	(void)state;

	assert_string_equal(search_with("NOT NOT NOT NOT SEEN", &set), "1 3");
	assert_string_equal(search_with("((((SEEN))))", &set), "1 3");
	assert_string_equal(search_with("NOT (OR (SEEN) DRAFT)", &set),
			    "2 4 5");
	assert_int_equal(
	    parse_line("NOT NOT NOT NOT NOT SEEN", &set, &prog, &error),
	    IMAP_SEARCH_PARSE_BAD);
	assert_string_equal(error, "Search query nested too deeply");
	assert_int_equal(parse_line("(((((SEEN)))))", &set, &prog, &error),
			 IMAP_SEARCH_PARSE_BAD);
	assert_string_equal(error, "Search query nested too deeply");
	assert_int_equal(
	    parse_line("NOT (OR ((SEEN)) DRAFT)", &set, &prog, &error),
	    IMAP_SEARCH_PARSE_BAD);

	/* the default: 32 */
	struct buf *b = buf_new(256, 4096);
	for (int i = 0; i < IMAP_SEARCH_DEFAULT_MAX_DEPTH; i++)
		buf_append_cstr(b, "NOT ");
	buf_append_cstr(b, "SEEN");
	assert_string_equal(search(buf_cstr(b)), "1 3");
	buf_reset(b);
	for (int i = 0; i <= IMAP_SEARCH_DEFAULT_MAX_DEPTH; i++)
		buf_append_cstr(b, "NOT ");
	buf_append_cstr(b, "SEEN");
	EXPECT_BAD(buf_cstr(b), "Search query nested too deeply");

	/* a huge setting is clamped to the hard cap */
	set.max_depth = 1000000;
	buf_reset(b);
	for (int i = 0; i < IMAP_SEARCH_MAX_DEPTH; i++)
		buf_append_cstr(b, "NOT ");
	buf_append_cstr(b, "SEEN");
	assert_string_equal(search_with(buf_cstr(b), &set), "1 3");
	buf_reset(b);
	for (int i = 0; i <= IMAP_SEARCH_MAX_DEPTH; i++)
		buf_append_cstr(b, "NOT ");
	buf_append_cstr(b, "SEEN");
	assert_int_equal(parse_line(buf_cstr(b), &set, &prog, &error),
			 IMAP_SEARCH_PARSE_BAD);
	assert_string_equal(error, "Search query nested too deeply");
	buf_free(&b);
}

static void test_key_limit(void **state)
{
	struct imap_search_parse_settings set = {.max_keys = 5};
	struct imap_search *prog;
	const char *error;
	(void)state;

	/* the top-level AND counts as one */
	assert_string_equal(search_with("SEEN SEEN SEEN SEEN", &set), "1 3");
	assert_int_equal(
	    parse_line("SEEN SEEN SEEN SEEN SEEN", &set, &prog, &error),
	    IMAP_SEARCH_PARSE_BAD);
	assert_string_equal(error, "Too many search keys");
	assert_int_equal(parse_line("NOT NOT (SEEN SEEN)", &set, &prog, &error),
			 IMAP_SEARCH_PARSE_BAD);

	struct buf *b = buf_new(1024, 1 << 16);
	for (int i = 0; i < IMAP_SEARCH_DEFAULT_MAX_KEYS - 1; i++)
		buf_append_cstr(b, i > 0 ? " 1:*" : "1:*");
	assert_string_equal(search(buf_cstr(b)), "1 2 3 4 5");
	buf_append_cstr(b, " 1");
	EXPECT_BAD(buf_cstr(b), "Too many search keys");
	buf_free(&b);
}

static void test_short_circuit(void **state)
{
	(void)state;
	for (size_t i = 0; i < 5; i++) {
		box[i].body_calls = 0;
		box[i].header_calls = 0;
	}
	/* cheap keys first, whatever the order in the command */
	EXPECT("BODY quarter UNSEEN", "5");
	assert_int_equal(box[0].body_calls, 0); /* seen */
	assert_int_equal(box[2].body_calls, 0); /* seen */
	assert_int_equal(box[4].body_calls, 1);
	/* headers before bodies */
	EXPECT("TEXT quarter FROM dave", "5");
	assert_int_equal(box[0].body_calls, 0);
	assert_int_equal(box[0].header_calls, 1);
	/* OR stops at the first true child */
	for (size_t i = 0; i < 5; i++)
		box[i].body_calls = 0;
	EXPECT("OR BODY nothing-here SEEN", "1 3");
	assert_int_equal(box[0].body_calls, 0);
	assert_int_equal(box[1].body_calls, 1);
}

static void test_errors_from_source(void **state)
{
	struct imap_search *prog;
	const char *error;
	(void)state;

	for (size_t i = 0; i < 5; i++)
		box[i].fail = 1;
	/* an error decides only when nothing else does */
	EXPECT("BODY x", "- - - - -");
	EXPECT("BODY x SEEN", "- -");
	EXPECT("OR BODY x SEEN", "1 - 3 - -");
	EXPECT("NOT FROM x", "- - - - -");
	EXPECT("SENTON 1-Jan-2024 DELETED", "-");
	for (size_t i = 0; i < 5; i++)
		box[i].fail = 0;

	/* callbacks left NULL are errors, not crashes */
	assert_int_equal(
	    parse_line("OR KEYWORD x OR FROM y OR BODY z SENTON 1-Jan-2024",
		       &default_set, &prog, &error),
	    IMAP_SEARCH_PARSE_OK);
	assert_int_equal(imap_search_match(prog, &box[0].m, NULL, NULL), -1);
	struct imap_search_source none = {0};
	assert_int_equal(imap_search_match(prog, &box[0].m, &none, NULL), -1);
	imap_search_free(&prog);
}

static void test_needs(void **state)
{
	static const struct {
		const char *line;
		unsigned int needs;
	} cases[] = {
	    {"ALL", 0},
	    {"SEEN UID 1:* 1 LARGER 5 ON 1-Jan-2024 MODSEQ 5", 0},
	    {"KEYWORD x", IMAP_SEARCH_NEEDS_KEYWORDS},
	    {"KEYWORD \\Seen", 0},
	    {"NOT FROM x", IMAP_SEARCH_NEEDS_HEADERS},
	    {"SENTON 1-Jan-2024", IMAP_SEARCH_NEEDS_HEADERS},
	    {"OR SEEN BODY x", IMAP_SEARCH_NEEDS_BODY},
	    {"TEXT x HEADER a b KEYWORD k", IMAP_SEARCH_NEEDS_BODY |
						IMAP_SEARCH_NEEDS_HEADERS |
						IMAP_SEARCH_NEEDS_KEYWORDS},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_search *prog;
		const char *error;
		assert_int_equal(
		    parse_line(cases[i].line, &default_set, &prog, &error),
		    IMAP_SEARCH_PARSE_OK);
		assert_int_equal(imap_search_needs(prog), cases[i].needs);
		assert_int_equal(imap_search_needs_text(prog),
				 (cases[i].needs & (IMAP_SEARCH_NEEDS_HEADERS |
						    IMAP_SEARCH_NEEDS_BODY)) !=
				     0);
		imap_search_free(&prog);
	}
}

static void test_empty_mailbox_star(void **state)
{
	struct imap_search *prog;
	const char *error;
	struct imap_search_message m = {.seq = 1, .uid = 7};
	(void)state;

	/* a message the index has not counted yet: star 0 names nothing */
	assert_int_equal(parse_line("UID 1:*", &default_set, &prog, &error),
			 IMAP_SEARCH_PARSE_OK);
	assert_int_equal(imap_search_match(prog, &m, &fake_src, NULL), 0);
	m.max_uid = 7;
	assert_int_equal(imap_search_match(prog, &m, &fake_src, NULL), 1);
	imap_search_free(&prog);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_flags, setup),
	    cmocka_unit_test_setup(test_keywords, setup),
	    cmocka_unit_test_setup(test_sizes, setup),
	    cmocka_unit_test_setup(test_internal_dates, setup),
	    cmocka_unit_test_setup(test_sent_dates, setup),
	    cmocka_unit_test_setup(test_headers, setup),
	    cmocka_unit_test_setup(test_body_text, setup),
	    cmocka_unit_test_setup(test_seqsets, setup),
	    cmocka_unit_test_setup(test_not_or, setup),
	    cmocka_unit_test_setup(test_modseq, setup),
	    cmocka_unit_test_setup(test_charset, setup),
	    cmocka_unit_test_setup(test_syntax_errors, setup),
	    cmocka_unit_test_setup(test_depth_limit, setup),
	    cmocka_unit_test_setup(test_key_limit, setup),
	    cmocka_unit_test_setup(test_short_circuit, setup),
	    cmocka_unit_test_setup(test_errors_from_source, setup),
	    cmocka_unit_test_setup(test_needs, setup),
	    cmocka_unit_test_setup(test_empty_mailbox_star, setup),
	};
	return cmocka_run_group_tests_name("imap_search", tests, NULL, NULL);
}
