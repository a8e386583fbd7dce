#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "smtp_parse.h"
#include "str.h"
#include "xmalloc.h"

static const struct smtp_parser_limits default_limits = {
    .max_line_len = SMTP_LINE_MAX_DEFAULT,
    .max_params = 4,
};

static const char *kind_name(enum smtp_parse_error_kind kind)
{
	switch (kind) {
	case SMTP_PARSE_ERR_NONE:
		return "NONE";
	case SMTP_PARSE_ERR_TOO_LONG:
		return "TOO_LONG";
	case SMTP_PARSE_ERR_NUL:
		return "NUL";
	case SMTP_PARSE_ERR_EMPTY:
		return "EMPTY";
	case SMTP_PARSE_ERR_BAD_VERB:
		return "BAD_VERB";
	case SMTP_PARSE_ERR_BAD_SYNTAX:
		return "BAD_SYNTAX";
	case SMTP_PARSE_ERR_BAD_PATH:
		return "BAD_PATH";
	case SMTP_PARSE_ERR_BAD_PARAM:
		return "BAD_PARAM";
	case SMTP_PARSE_ERR_TOO_MANY_PARAMS:
		return "TOO_MANY_PARAMS";
	}
	return "?";
}

static void put_text(struct buf *out, struct str s)
{
	char tmp[2048];
	assert_int_equal(
	    buf_append_cstr(out, str_sanitize(s, tmp, sizeof(tmp))), 0);
}

static void render_command(struct buf *out, const struct smtp_command *cmd)
{
	buf_printf(out, "CMD %d/", (int)cmd->verb);
	put_text(out, cmd->verb_str);
	if (cmd->verb == SMTP_VERB_MAIL || cmd->verb == SMTP_VERB_RCPT) {
		const struct smtp_path *path = &cmd->path;
		if (path->null) {
			buf_append_cstr(out, " <>");
			assert_int_equal(path->raw.len, 0);
		} else {
			buf_append_cstr(out, " path=");
			put_text(out, path->raw);
			buf_append_cstr(out,
					path->quoted ? " qlocal=" : " local=");
			put_text(out, path->local);
			buf_append_cstr(out, " domain=");
			put_text(out, path->domain);
		}
		for (size_t i = 0; i < cmd->param_count; i++) {
			buf_append_cstr(out, " [");
			put_text(out, cmd->params[i].keyword);
			if (cmd->params[i].has_value) {
				buf_append_cstr(out, "=");
				put_text(out, cmd->params[i].value);
			} else {
				assert_int_equal(cmd->params[i].value.len, 0);
			}
			buf_append_cstr(out, "]");
		}
	} else if (cmd->verb == SMTP_VERB_BDAT) {
		buf_printf(out, " size=%llu%s",
			   (unsigned long long)cmd->bdat_size,
			   cmd->bdat_last ? " last" : "");
	} else {
		buf_append_cstr(out, " args=");
		put_text(out, cmd->args);
	}
	buf_printf(out, " @%llu\n", (unsigned long long)cmd->offset);
}

/* Feeds a session's bytes: commands through the parser, and after DATA the
 * body through a decoder (max_size) with an output buffer of out_size
 * bytes. The first call gets `first` bytes, later ones `chunk` (0: all). */
static char *run_feed(const struct smtp_parser_limits *limits,
		      uint64_t max_size, size_t out_size, const void *data,
		      size_t len, size_t chunk, size_t first)
{
	struct smtp_parser *p = smtp_parser_new(limits);
	struct smtp_data_decoder *dec = smtp_data_decoder_new(max_size);
	struct buf *out = buf_new(256, 1 << 20);
	struct buf *msg = buf_new(256, 1 << 20);
	const uint8_t *in = data;
	size_t pos = 0;
	bool in_data = false;
	uint8_t obuf[64];

	assert_true(out_size <= sizeof(obuf));
	while (pos < len) {
		size_t give = len - pos;
		if (pos < first)
			give = first - pos;
		else if (chunk != 0 && chunk < give)
			give = chunk;
		size_t consumed = 99999;

		if (in_data) {
			size_t produced = 99999;
			enum smtp_data_result r =
			    smtp_data_decode(dec, in + pos, give, &consumed,
					     obuf, out_size, &produced);
			assert_true(consumed <= give);
			assert_true(produced <= out_size);
			pos += consumed;
			smtp_parser_advance(p, consumed);
			assert_int_equal(buf_append(msg, obuf, produced), 0);
			if (r == SMTP_DATA_MORE)
				continue;
			buf_append_cstr(out, "MSG ");
			put_text(out, buf_str(msg));
			buf_printf(
			    out, " size=%llu%s%s\n",
			    (unsigned long long)smtp_data_decoder_size(dec),
			    r == SMTP_DATA_TOO_BIG ? " toobig" : "",
			    smtp_data_decoder_bare_eol(dec) ? " bare" : "");
			assert_true(r != SMTP_DATA_TOO_BIG ||
				    smtp_data_decoder_over_limit(dec));
			buf_reset(msg);
			smtp_data_decoder_reset(dec);
			in_data = false;
			continue;
		}
		struct smtp_command cmd;
		struct smtp_parse_error err;
		enum smtp_parse_result r =
		    smtp_parser_parse(p, in + pos, give, &consumed, &cmd, &err);
		assert_true(consumed <= give);
		pos += consumed;
		switch (r) {
		case SMTP_PARSE_MORE:
			assert_int_equal(consumed, give);
			break;
		case SMTP_PARSE_COMMAND:
			render_command(out, &cmd);
			if (cmd.verb == SMTP_VERB_DATA)
				in_data = true;
			break;
		case SMTP_PARSE_ERROR:
			assert_non_null(err.msg);
			buf_printf(out, "ERR %s @%llu v%d %s\n",
				   kind_name(err.kind),
				   (unsigned long long)err.offset,
				   (int)err.verb, err.msg);
			break;
		}
	}
	char *s = xstrndup(buf_cstr(out), out->len);
	buf_free(&out);
	buf_free(&msg);
	smtp_parser_free(&p);
	smtp_data_decoder_free(&dec);
	assert_null(p);
	assert_null(dec);
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
 * split in two at every point, with output buffers of 2 and 64 bytes. */
static void expect_with(const struct smtp_parser_limits *limits,
			uint64_t max_size, const void *data, size_t len,
			const char *expected)
{
	static const size_t chunks[] = {0, 1, 2, 3, 7};
	for (size_t o = 2; o <= 64; o += 62) {
		for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]);
		     i++) {
			char *got = run_feed(limits, max_size, o, data, len,
					     chunks[i], 0);
			check_same("chunk", chunks[i], got, expected);
			free(got);
		}
		for (size_t k = 1; k < len; k++) {
			char *got =
			    run_feed(limits, max_size, o, data, len, 0, k);
			check_same("split", k, got, expected);
			free(got);
		}
	}
}

#define EXPECT(input, expected)                                                \
	expect_with(&default_limits, UINT64_MAX, input, sizeof(input) - 1,     \
		    expected)
#define EXPECT_L(limits, max_size, input, expected)                            \
	expect_with(limits, max_size, input, sizeof(input) - 1, expected)

/* ---- command lines ------------------------------------------------------- */

static void test_simple_verbs(void **state)
{
	(void)state;
	EXPECT("EHLO client.example\r\nlhlo x\nNOOP\r\nNOOP hi\r\nHELP\r\n"
	       "RSET\r\nSTARTTLS\r\nVRFY bob\r\nAUTH PLAIN =\r\nQUIT\r\n",
	       "CMD 2/EHLO args=client.example @0\n"
	       "CMD 3/lhlo args=x @21\n"
	       "CMD 9/NOOP args= @28\n"
	       "CMD 9/NOOP args=hi @34\n"
	       "CMD 12/HELP args= @43\n"
	       "CMD 8/RSET args= @49\n"
	       "CMD 13/STARTTLS args= @55\n"
	       "CMD 11/VRFY args=bob @65\n"
	       "CMD 14/AUTH args=PLAIN = @75\n"
	       "CMD 10/QUIT args= @89\n");
	/* unknown verbs are commands; the session answers 500 */
	EXPECT("XYZZY plugh\r\n", "CMD 0/XYZZY args=plugh @0\n");
	assert_int_equal(smtp_verb_lookup(STR("starttls")), SMTP_VERB_STARTTLS);
	assert_int_equal(smtp_verb_lookup(STR("XCLIENT")), SMTP_VERB_XCLIENT);
	assert_int_equal(smtp_verb_lookup(STR("MAILX")), SMTP_VERB_UNKNOWN);
}

static void test_verb_args(void **state)
{
	(void)state;
	EXPECT("HELO\r\nEHLO\r\nVRFY\r\nAUTH\r\n",
	       "ERR BAD_SYNTAX @4 v1 Missing argument.\n"
	       "ERR BAD_SYNTAX @10 v2 Missing argument.\n"
	       "ERR BAD_SYNTAX @16 v11 Missing argument.\n"
	       "ERR BAD_SYNTAX @22 v14 Missing argument.\n");
	EXPECT("DATA x\r\nRSET now\r\nQUIT please\r\nSTARTTLS x\r\nRSET\r\n",
	       "ERR BAD_SYNTAX @5 v6 Unexpected argument.\n"
	       "ERR BAD_SYNTAX @13 v8 Unexpected argument.\n"
	       "ERR BAD_SYNTAX @23 v10 Unexpected argument.\n"
	       "ERR BAD_SYNTAX @40 v13 Unexpected argument.\n"
	       "CMD 8/RSET args= @43\n");
}

static void test_bad_lines(void **state)
{
	char verb[64];
	(void)state;

	EXPECT("\r\nNOOP\r\n",
	       "ERR EMPTY @0 v0 Empty command.\nCMD 9/NOOP args= @2\n");
	EXPECT(" NOOP\r\n", "ERR BAD_VERB @0 v0 Invalid command.\n");
	EXPECT("MA:L FROM:<a@b>\r\n", "ERR BAD_VERB @2 v0 Invalid command.\n");
	EXPECT("NO\xc3\xa9P\r\n", "ERR BAD_VERB @2 v0 Invalid command.\n");
	EXPECT("NOOP a\0b\r\nNOOP\r\n",
	       "ERR NUL @6 v0 NUL byte in command.\nCMD 9/NOOP args= @10\n");
	/* 8-bit in free-form arguments is passed on */
	EXPECT("NOOP \xff\r\n", "CMD 9/NOOP args=\\xff @0\n");

	memset(verb, 'X', sizeof(verb));
	memcpy(verb + 40, "\r\n", 2);
	char *got = run_feed(&default_limits, 100, 64, verb, 42, 0, 0);
	assert_string_equal(
	    got, "CMD 0/XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX args= "
		 "@0\n");
	free(got);
	memcpy(verb + 40, "X\r\n", 3);
	got = run_feed(&default_limits, 100, 64, verb, 43, 0, 0);
	assert_string_equal(got, "ERR BAD_VERB @40 v0 Invalid command.\n");
	free(got);
}

static void test_line_limit(void **state)
{
	struct smtp_parser_limits l = default_limits;
	char line[600];
	(void)state;

	/* RFC 5321: 512 octets including CRLF: accepted; 513: rejected at
	 * byte 513, recoverable */
	memset(line, 'x', sizeof(line));
	memcpy(line, "NOOP ", 5);
	memcpy(line + 510, "\r\nQUIT\r\n", 8);
	char *got = run_feed(&l, 100, 64, line, 518, 0, 0);
	assert_true(strncmp(got, "CMD 9/NOOP args=xxx", 19) == 0);
	assert_non_null(strstr(got, "x @0\nCMD 10/QUIT args= @512\n"));
	free(got);
	memcpy(line + 510, "x\r\nQUIT\r\n", 9);
	got = run_feed(&l, 100, 64, line, 519, 3, 0);
	assert_string_equal(got, "ERR TOO_LONG @512 v0 Line too long.\n"
				 "CMD 10/QUIT args= @513\n");
	free(got);

	l.max_line_len = 6;
	EXPECT_L(&l, 100, "NOOP\r\nNOOP x\r\nQUIT\n",
		 "CMD 9/NOOP args= @0\n"
		 "ERR TOO_LONG @12 v0 Line too long.\n"
		 "CMD 10/QUIT args= @14\n");
}

/* ---- MAIL and RCPT ------------------------------------------------------ */

static void test_paths(void **state)
{
	(void)state;
	EXPECT("MAIL FROM:<user@example.com>\r\n",
	       "CMD 4/MAIL path=user@example.com local=user "
	       "domain=example.com @0\n");
	EXPECT("mail from:<>\r\n", "CMD 4/mail <> @0\n");
	EXPECT("MAIL FROM:<> SIZE=1000 BODY=8BITMIME  SMTPUTF8\r\n",
	       "CMD 4/MAIL <> [SIZE=1000] [BODY=8BITMIME] [SMTPUTF8] @0\n");
	/* a space after the colon is tolerated */
	EXPECT("MAIL FROM: <a@b>\r\nRCPT To:  <c@d>\r\n",
	       "CMD 4/MAIL path=a@b local=a domain=b @0\n"
	       "CMD 5/RCPT path=c@d local=c domain=d @18\n");
	/* quoted local parts are unquoted, the raw path stays as sent */
	EXPECT("RCPT TO:<\"john doe\"@example.com>\r\n",
	       "CMD 5/RCPT path=\"john doe\"@example.com qlocal=john doe "
	       "domain=example.com @0\n");
	EXPECT("RCPT TO:<\"a\\\"b\\\\c\"@x> NOTIFY=NEVER\r\n",
	       "CMD 5/RCPT path=\"a\\x5c\"b\\x5c\\x5cc\"@x qlocal=a\"b\\x5cc "
	       "domain=x [NOTIFY=NEVER] @0\n");
	EXPECT("RCPT TO:<\"\"@x>\r\n",
	       "CMD 5/RCPT path=\"\"@x qlocal= domain=x @0\n");
	/* source routes are dropped */
	EXPECT("RCPT TO:<@relay.example,@r2.example:user@example.com>\r\n",
	       "CMD 5/RCPT path=user@example.com local=user "
	       "domain=example.com @0\n");
	/* address literals, dotted atoms, every atext */
	EXPECT("RCPT TO:<first.last@[192.0.2.1]>\r\n"
	       "RCPT TO:<a!#$%&'*+-/=?^_`{|}~@[IPv6:2001:db8::1]>\r\n",
	       "CMD 5/RCPT path=first.last@[192.0.2.1] local=first.last "
	       "domain=[192.0.2.1] @0\n"
	       "CMD 5/RCPT path=a!#$%&'*+-/=?^_`{|}~@[IPv6:2001:db8::1] "
	       "local=a!#$%&'*+-/=?^_`{|}~ domain=[IPv6:2001:db8::1] @34\n");
	/* SMTPUTF8 */
	EXPECT("RCPT TO:<\xc3\xa9l\xc3\xa8ve@\xc3\xa9"
	       "cole.example>\r\n",
	       "CMD 5/RCPT path=\\xc3\\xa9l\\xc3\\xa8ve@\\xc3\\xa9cole.example "
	       "local=\\xc3\\xa9l\\xc3\\xa8ve domain=\\xc3\\xa9cole.example "
	       "@0\n");
	/* RCPT TO:<Postmaster> needs no domain; MAIL FROM does */
	EXPECT("RCPT TO:<Postmaster>\r\nMAIL FROM:<postmaster>\r\n",
	       "CMD 5/RCPT path=Postmaster local=Postmaster domain= @0\n"
	       "ERR BAD_PATH @43 v4 Missing '@'.\n");
}

static void test_bad_paths(void **state)
{
	(void)state;
	EXPECT("MAIL TO:<a@b>\r\nRCPT FROM:<a@b>\r\nMAIL\r\n",
	       "ERR BAD_SYNTAX @5 v4 Missing FROM:.\n"
	       "ERR BAD_SYNTAX @20 v5 Missing TO:.\n"
	       "ERR BAD_SYNTAX @36 v4 Missing FROM:.\n");
	EXPECT("MAIL FROM:a@b\r\n", "ERR BAD_PATH @10 v4 Missing '<'.\n");
	EXPECT("MAIL FROM:\r\n", "ERR BAD_PATH @10 v4 Missing '<'.\n");
	EXPECT("MAIL FROM:<a@b\r\n", "ERR BAD_PATH @14 v4 Missing '>'.\n");
	EXPECT("MAIL FROM:<a@b c>\r\n", "ERR BAD_PATH @14 v4 Missing '>'.\n");
	EXPECT("MAIL FROM:<a@b>x\r\n",
	       "ERR BAD_SYNTAX @15 v4 Invalid data after address.\n");
	EXPECT("RCPT TO:<>\r\n", "ERR BAD_PATH @9 v5 Null path not allowed.\n");
	EXPECT("RCPT TO:<a>\r\n", "ERR BAD_PATH @10 v5 Missing '@'.\n");
	EXPECT("RCPT TO:<a..b@x>\r\n",
	       "ERR BAD_PATH @11 v5 Invalid local part.\n");
	EXPECT("RCPT TO:<.a@x>\r\n",
	       "ERR BAD_PATH @9 v5 Invalid local part.\n");
	EXPECT("RCPT TO:<a.@x>\r\n",
	       "ERR BAD_PATH @11 v5 Invalid local part.\n");
	EXPECT("RCPT TO:<a b@x>\r\n", "ERR BAD_PATH @10 v5 Missing '@'.\n");
	EXPECT("RCPT TO:<a@-x>\r\n", "ERR BAD_PATH @11 v5 Invalid domain.\n");
	EXPECT("RCPT TO:<a@x->\r\n", "ERR BAD_PATH @12 v5 Invalid domain.\n");
	EXPECT("RCPT TO:<a@x.>\r\n", "ERR BAD_PATH @13 v5 Invalid domain.\n");
	EXPECT("RCPT TO:<a@x..y>\r\n", "ERR BAD_PATH @13 v5 Invalid domain.\n");
	EXPECT("RCPT TO:<a@x_y>\r\n", "ERR BAD_PATH @12 v5 Missing '>'.\n");
	EXPECT("RCPT TO:<a@>\r\n", "ERR BAD_PATH @11 v5 Invalid domain.\n");
	EXPECT("RCPT TO:<a@[]>\r\n",
	       "ERR BAD_PATH @12 v5 Invalid address literal.\n");
	EXPECT("RCPT TO:<a@[1.2.3.4>\r\n",
	       "ERR BAD_PATH @20 v5 Invalid address literal.\n");
	EXPECT("RCPT TO:<\"abc@x>\r\n",
	       "ERR BAD_PATH @16 v5 Unterminated quoted string.\n");
	EXPECT("RCPT TO:<\"a\tb\"@x>\r\n",
	       "ERR BAD_PATH @11 v5 Invalid character in quoted string.\n");
	EXPECT("RCPT TO:<\"a\\\xc3\"@x>\r\n",
	       "ERR BAD_PATH @12 v5 Invalid quoted pair.\n");
	EXPECT("RCPT TO:<@a,b:c@d>\r\n",
	       "ERR BAD_PATH @12 v5 Invalid source route.\n");
	EXPECT("RCPT TO:<@a;c@d>\r\n",
	       "ERR BAD_PATH @11 v5 Invalid source route.\n");
	/* a bad line does not disturb the next one */
	EXPECT("RCPT TO:<a@x.>\r\nRCPT TO:<a@x>\r\n",
	       "ERR BAD_PATH @13 v5 Invalid domain.\n"
	       "CMD 5/RCPT path=a@x local=a domain=x @16\n");
}

static void test_params(void **state)
{
	struct smtp_parser_limits l = default_limits;
	(void)state;

	EXPECT("MAIL FROM:<a@b> SIZE=\r\n",
	       "ERR BAD_PARAM @21 v4 Invalid parameter value.\n");
	EXPECT("MAIL FROM:<a@b> =x\r\n",
	       "ERR BAD_PARAM @16 v4 Invalid parameter keyword.\n");
	EXPECT("MAIL FROM:<a@b> SI_ZE=1\r\n",
	       "ERR BAD_PARAM @18 v4 Invalid parameter.\n");
	EXPECT("MAIL FROM:<a@b> SIZE=1=2\r\n",
	       "ERR BAD_PARAM @22 v4 Invalid parameter.\n");
	/* values may be UTF-8 (RFC 6531) */
	EXPECT("RCPT TO:<a@b> ORCPT=utf-8;\xc3\xa9@b\r\n",
	       "CMD 5/RCPT path=a@b local=a domain=b "
	       "[ORCPT=utf-8;\\xc3\\xa9@b] @0\n");

	l.max_params = 2;
	EXPECT_L(&l, 100, "MAIL FROM:<a@b> A=1 B\r\n",
		 "CMD 4/MAIL path=a@b local=a domain=b [A=1] [B] @0\n");
	EXPECT_L(&l, 100, "MAIL FROM:<a@b> A=1 B C\r\n",
		 "ERR TOO_MANY_PARAMS @22 v4 Too many parameters.\n");
	l.max_params = 0;
	EXPECT_L(&l, 100, "MAIL FROM:<a@b>  \r\n",
		 "CMD 4/MAIL path=a@b local=a domain=b @0\n");
	EXPECT_L(&l, 100, "MAIL FROM:<a@b> X\r\n",
		 "ERR TOO_MANY_PARAMS @16 v4 Too many parameters.\n");
}

static void test_bdat(void **state)
{
	(void)state;
	EXPECT("BDAT 100\r\nbdat 0 last\r\nBDAT 18446744073709551615 LAST\r\n",
	       "CMD 7/BDAT size=100 @0\n"
	       "CMD 7/bdat size=0 last @10\n"
	       "CMD 7/BDAT size=18446744073709551615 last @23\n");
	EXPECT("BDAT\r\nBDAT x\r\nBDAT 1 FIRST\r\nBDAT 18446744073709551616\r\n"
	       "BDAT 1  LAST\r\n",
	       "ERR BAD_SYNTAX @4 v7 Invalid chunk size.\n"
	       "ERR BAD_SYNTAX @11 v7 Invalid chunk size.\n"
	       "ERR BAD_SYNTAX @20 v7 Invalid BDAT argument.\n"
	       "ERR BAD_SYNTAX @52 v7 Invalid chunk size.\n"
	       "ERR BAD_SYNTAX @61 v7 Invalid BDAT argument.\n");
}

/* ---- DATA ------------------------------------------------------------------
 */

static void test_data_session(void **state)
{
	(void)state;
	EXPECT("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
	       "Subject: hi\r\n\r\n..dot\r\n.x\r\n...\r\n.\r\nQUIT\r\n",
	       "CMD 4/MAIL path=a@b local=a domain=b @0\n"
	       "CMD 5/RCPT path=c@d local=c domain=d @17\n"
	       "CMD 6/DATA args= @32\n"
	       "MSG Subject: "
	       "hi\\x0d\\x0a\\x0d\\x0a.dot\\x0d\\x0ax\\x0d\\x0a..\\x0d"
	       "\\x0a size=28\n"
	       "CMD 10/QUIT args= @72\n");
	/* empty message, and two messages back to back */
	EXPECT("DATA\r\n.\r\nDATA\r\nx\r\n.\r\n",
	       "CMD 6/DATA args= @0\nMSG  size=0\n"
	       "CMD 6/DATA args= @9\nMSG x\\x0d\\x0a size=3\n");
}

static void test_data_smuggling(void **state)
{
	(void)state;
	/* only CRLF.CRLF ends the body; bare LF/CR lines are data */
	EXPECT(
	    "DATA\r\na\n.\nb\r\n.\r\n",
	    "CMD 6/DATA args= @0\nMSG a\\x0a.\\x0ab\\x0d\\x0a size=7 bare\n");
	EXPECT("DATA\r\na\r\n.\nb\r\n.\r\n",
	       "CMD 6/DATA args= @0\nMSG a\\x0d\\x0a\\x0ab\\x0d\\x0a size=7 "
	       "bare\n");
	EXPECT("DATA\r\na\r.\r\nb\r\n.\r\n",
	       "CMD 6/DATA args= @0\nMSG a\\x0d.\\x0d\\x0ab\\x0d\\x0a size=8 "
	       "bare\n");
	EXPECT("DATA\r\n.\rx\r\n.\r\r\n.\r\n",
	       "CMD 6/DATA args= @0\nMSG \\x0dx\\x0d\\x0a\\x0d\\x0d\\x0a "
	       "size=7 bare\n");
	EXPECT("DATA\r\n\n.\r\n.\r\n",
	       "CMD 6/DATA args= @0\nMSG \\x0a.\\x0d\\x0a "
	       "size=4 bare\n");
}

static void test_data_limit(void **state)
{
	(void)state;
	/* max 10: exactly 10 bytes pass, 11 are TOO_BIG but consumed to
	 * the end, and the next command is parsed */
	EXPECT_L(&default_limits, 10, "DATA\r\n01234567\r\n.\r\nQUIT\r\n",
		 "CMD 6/DATA args= @0\nMSG 01234567\\x0d\\x0a size=10\n"
		 "CMD 10/QUIT args= @19\n");
	EXPECT_L(&default_limits, 10,
		 "DATA\r\n012345678\r\n..more\r\n.\r\nQUIT\r\n",
		 "CMD 6/DATA args= @0\nMSG 012345678\\x0d size=18 toobig\n"
		 "CMD 10/QUIT args= @28\n");
	EXPECT_L(&default_limits, 0, "DATA\r\n.\r\nDATA\r\nx\r\n.\r\n",
		 "CMD 6/DATA args= @0\nMSG  size=0\n"
		 "CMD 6/DATA args= @9\nMSG  size=3 toobig\n");
}

static void test_data_decoder_api(void **state)
{
	struct smtp_data_decoder *dec = smtp_data_decoder_new(UINT64_MAX);
	uint8_t out[64];
	size_t consumed, produced;
	(void)state;

	/* the bytes after the terminator are not consumed */
	const char *in = "a\r\n.\r\nQUIT\r\n";
	assert_int_equal(smtp_data_decode(dec, in, strlen(in), &consumed, out,
					  sizeof(out), &produced),
			 SMTP_DATA_DONE);
	assert_int_equal(consumed, 6);
	assert_int_equal(produced, 3);
	assert_memory_equal(out, "a\r\n", 3);
	assert_false(smtp_data_decoder_bare_eol(dec));
	/* done stays done until reset */
	assert_int_equal(smtp_data_decode(dec, "x", 1, &consumed, out,
					  sizeof(out), &produced),
			 SMTP_DATA_DONE);
	assert_int_equal(consumed, 0);
	assert_int_equal(produced, 0);
	smtp_data_decoder_reset(dec);
	assert_int_equal(smtp_data_decoder_size(dec), 0);

	/* a full output buffer stops consumption, never loses bytes */
	in = ".\rx\r\n.\r\n";
	assert_int_equal(
	    smtp_data_decode(dec, in, 2, &consumed, out, 1, &produced),
	    SMTP_DATA_MORE);
	assert_int_equal(consumed, 2);
	assert_int_equal(produced, 0);
	/* ".\r" then 'x' needs two bytes of output */
	assert_int_equal(
	    smtp_data_decode(dec, in + 2, 1, &consumed, out, 1, &produced),
	    SMTP_DATA_MORE);
	assert_int_equal(consumed, 0);
	assert_int_equal(smtp_data_decode(dec, in + 2, strlen(in) - 2,
					  &consumed, out, 2, &produced),
			 SMTP_DATA_MORE);
	assert_int_equal(consumed, 1);
	assert_memory_equal(out, "\rx", 2);
	assert_int_equal(smtp_data_decode(dec, in + 3, strlen(in) - 3,
					  &consumed, out, sizeof(out),
					  &produced),
			 SMTP_DATA_DONE);
	assert_int_equal(produced, 2);
	assert_int_equal(smtp_data_decoder_size(dec), 4);
	assert_true(smtp_data_decoder_bare_eol(dec));
	assert_false(smtp_data_decoder_over_limit(dec));
	smtp_data_decoder_free(&dec);
	smtp_data_decoder_free(&dec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simple_verbs),
	    cmocka_unit_test(test_verb_args),
	    cmocka_unit_test(test_bad_lines),
	    cmocka_unit_test(test_line_limit),
	    cmocka_unit_test(test_paths),
	    cmocka_unit_test(test_bad_paths),
	    cmocka_unit_test(test_params),
	    cmocka_unit_test(test_bdat),
	    cmocka_unit_test(test_data_session),
	    cmocka_unit_test(test_data_smuggling),
	    cmocka_unit_test(test_data_limit),
	    cmocka_unit_test(test_data_decoder_api),
	};
	return cmocka_run_group_tests_name("smtp_parse", tests, NULL, NULL);
}
