/* Fuzzes the SEARCH parser and evaluator (with sequence sets and the text
 * matcher underneath).
 *
 * Input: byte 0 picks the parse settings, byte 1 seeds the chunking of
 * message text, the rest are the SEARCH arguments as a client sends them
 * ("a SEARCH " is put in front and CRLF after; literals are taken as if
 * the continuation had been sent). The tokenizer's command goes to
 * imap_search_parse; a program is run on a few synthetic messages. Checks:
 * parse results and errors are well-formed; the program survives the
 * parser being freed; match answers are -1/0/1 and the same on a second
 * run; no callback runs that imap_search_needs() did not announce; and
 * text matching gives the same answer whole and fed in chunks split
 * anywhere (also inside UTF-8 sequences). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/imap_search.h"
#include "imap_parse.h"
#include "textmatch.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fmsg {
	struct imap_search_message m;
	const char *headers; /* "Name: value\n" lines */
	const char *body;
	const char *keywords; /* space separated */
	int sent_ret;
	int64_t sent;
	int sent_tz;
	unsigned int needs; /* what the program announced */
	unsigned int chunk_seed;
	bool fail; /* callbacks report errors */
};

static bool f_has_keyword(void *ctx, struct str name)
{
	struct fmsg *f = ctx;
	if ((f->needs & IMAP_SEARCH_NEEDS_KEYWORDS) == 0 || name.len == 0)
		abort();
	struct str rest = str_cstr(f->keywords), kw;
	while (rest.len > 0) {
		if (!str_split(rest, ' ', &kw, &rest))
			rest.len = 0;
		if (str_eq_nocase(kw, name))
			return true;
	}
	return false;
}

/* Whole-text answer, checked against a chunked run. */
static bool contains_chunked(const struct fmsg *f,
			     const struct textmatch_pattern *pat,
			     struct str text)
{
	struct fuzz_chunker c;
	struct textmatch m;
	bool whole = textmatch_contains(pat, text);

	fuzz_chunker_init(&c, f->chunk_seed | 1);
	textmatch_init(&m, pat);
	for (size_t pos = 0; pos < text.len;) {
		size_t n = fuzz_chunk_next(&c, text.len - pos);
		textmatch_feed(&m, text.p + pos, n);
		pos += n;
	}
	if (textmatch_finish(&m) != whole)
		abort();
	return whole;
}

static int f_header_contains(void *ctx, struct str field,
			     const struct textmatch_pattern *pat)
{
	struct fmsg *f = ctx;
	if ((f->needs & IMAP_SEARCH_NEEDS_HEADERS) == 0 || field.len == 0)
		abort();
	if (f->fail)
		return -1;
	struct str rest = str_cstr(f->headers), line, name, value;
	while (rest.len > 0) {
		if (!str_split(rest, '\n', &line, &rest))
			rest.len = 0;
		if (str_split(line, ':', &name, &value) &&
		    str_eq_nocase(name, field) &&
		    contains_chunked(f, pat, str_trim(value)))
			return 1;
	}
	return 0;
}

static int f_body_contains(void *ctx, const struct textmatch_pattern *pat,
			   bool include_headers)
{
	struct fmsg *f = ctx;
	if ((f->needs & IMAP_SEARCH_NEEDS_BODY) == 0 ||
	    textmatch_pattern_is_empty(pat))
		abort();
	if (f->fail)
		return -1;
	if (include_headers && contains_chunked(f, pat, str_cstr(f->headers)))
		return 1;
	return contains_chunked(f, pat, str_cstr(f->body));
}

static int f_sent_date(void *ctx, int64_t *unix_r, int *tz_r)
{
	struct fmsg *f = ctx;
	if ((f->needs & IMAP_SEARCH_NEEDS_HEADERS) == 0)
		abort();
	if (f->fail)
		return -1;
	*unix_r = f->sent;
	*tz_r = f->sent_tz;
	return f->sent_ret;
}

static const struct imap_search_source fsrc = {
    .has_keyword = f_has_keyword,
    .header_contains = f_header_contains,
    .body_contains = f_body_contains,
    .sent_date = f_sent_date,
};

static struct fmsg msgs[] = {
    {.m = {.seq = 1,
	   .uid = 3,
	   .flags = 0x01,
	   .size = 120,
	   .internal_date = 1700000000,
	   .internal_tz_min = 60,
	   .modseq = 5},
     .headers = "From: Alice <alice@example.com>\nSubject: Hello "
		"\xc3\x84pfel\nX-A: 1\n",
     .body = "Body text with \xce\xa3\xcf\x8c\xcf\x86\xce\xb9\xce\xb1 and "
	     "\xff bytes \xe2\x82",
     .keywords = "$Work Later",
     .sent_ret = 1,
     .sent = 1699990000,
     .sent_tz = -300},
    {.m = {.seq = 2,
	   .uid = 7,
	   .flags = 0x1e,
	   .recent = true,
	   .size = 0,
	   .internal_date = -86401,
	   .modseq = 9},
     .headers = "To: bob@example.org\nCc: x\n",
     .body = "",
     .keywords = "",
     .sent_ret = 0},
    {.m = {.seq = 3,
	   .uid = 4000000000u,
	   .size = UINT64_MAX,
	   .internal_date = INT64_MAX,
	   .internal_tz_min = -2000,
	   .modseq = UINT64_MAX},
     .headers = "Subject: \xed\xa0\x80 broken\nBcc: s\n",
     .body = "QUARTERLY\r\nreport\r\n",
     .keywords = "a b c",
     .sent_ret = 1,
     .sent = INT64_MIN,
     .sent_tz = 100000},
};

static void check_error(const char *error)
{
	if (error == NULL || error[0] == '\0')
		abort();
	for (const char *p = error; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct imap_parser_limits limits = {
	    .max_line_len = 16384,
	    .max_literal_size = 4096,
	    .max_list_depth = 40,
	    .max_args = 4096,
	    .allow_8bit_quoted = true,
	};
	if (size < 2)
		return 0;
	const struct imap_search_parse_settings set = {
	    .max_depth = data[0] & 15, /* 0: the default */
	    .max_keys = (data[0] & 16) != 0 ? 20 : 0,
	    .allow_modseq = (data[0] & 32) != 0,
	};
	const size_t prefix = 9, n = size - 2;
	uint8_t *line = malloc(prefix + n + 2);
	if (line == NULL)
		return 0;
	memcpy(line, "a SEARCH ", prefix);
	memcpy(line + prefix, data + 2, n);
	memcpy(line + prefix + n, "\r\n", 2);

	struct imap_parser *p = imap_parser_new(&limits);
	struct imap_command cmd;
	struct imap_parse_error err;
	size_t pos = 0, len = prefix + n + 2, consumed;
	enum imap_parse_result r;
	while ((r = imap_parser_parse(p, line + pos, len - pos, &consumed, &cmd,
				      &err)) == IMAP_PARSE_LITERAL_CONT)
		pos += consumed;

	struct imap_search *prog = NULL;
	if (r == IMAP_PARSE_COMMAND) {
		const char *error = NULL;
		enum imap_search_parse_result res = imap_search_parse(
		    cmd.args, cmd.arg_count, &set, &prog, &error);
		if (res == IMAP_SEARCH_PARSE_OK) {
			if (prog == NULL)
				abort();
		} else {
			if (prog != NULL ||
			    (res != IMAP_SEARCH_PARSE_BAD &&
			     res != IMAP_SEARCH_PARSE_BADCHARSET))
				abort();
			check_error(error);
		}
	}
	/* the program owns its strings: poison what the parser held */
	imap_parser_free(&p);
	memset(line, 'Z', len);
	free(line);

	if (prog != NULL) {
		unsigned int needs = imap_search_needs(prog);
		uint64_t max_key;
		bool modseq = imap_search_uses_modseq(prog, &max_key);
		if (!modseq && max_key != 0)
			abort();
		if (modseq && !set.allow_modseq)
			abort();
		if (imap_search_needs_text(prog) !=
		    ((needs & (IMAP_SEARCH_NEEDS_HEADERS |
			       IMAP_SEARCH_NEEDS_BODY)) != 0))
			abort();
		for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
			struct fmsg *f = &msgs[i];
			f->needs = needs;
			f->chunk_seed = data[1];
			for (int fail = 0; fail < 2; fail++) {
				f->fail = fail != 0;
				for (uint32_t star = 0; star < 8; star += 7) {
					f->m.max_seq = star;
					f->m.max_uid = star * 600000000u;
					int a = imap_search_match(prog, &f->m,
								  &fsrc, f);
					int b = imap_search_match(prog, &f->m,
								  &fsrc, f);
					if (a != b || a < -1 || a > 1)
						abort();
					/* without failing callbacks, no
					 * error can come out */
					if (!f->fail && a < 0)
						abort();
				}
			}
		}
		imap_search_free(&prog);
		if (prog != NULL)
			abort();
	}
	return 0;
}
