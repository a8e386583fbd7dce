#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "http_parse.h"
#include "str.h"

static const struct http_parser_limits small = {
	.max_line_len = 64,
	.max_headers = 4,
	.max_body = 16,
};

struct result {
	enum http_parse_result r;
	struct http_parse_error err;
	size_t consumed;   /* total over all calls */
	char method[32], target[80], reason[80], body[64];
	unsigned int status, version_minor;
	size_t header_count;
	char h0name[64], h0value[64];
	bool has_cl;
};

static void copy(struct str s, char *dst, size_t size)
{
	assert_true(str_copy(s, dst, size));
}

/* Feeds in (len bytes) in chunks of `chunk` (0 = whole) until a result
 * that is not MORE, or the input ends. */
static struct result feed(enum http_parse_mode mode,
			  const struct http_parser_limits *lim, const char *in,
			  size_t len, size_t chunk)
{
	struct http_parser *p = http_parser_new(mode, lim);
	struct result res = { .r = HTTP_PARSE_MORE };
	size_t pos = 0;

	while (pos < len) {
		size_t give = chunk == 0 || chunk > len - pos ? len - pos : chunk;
		size_t consumed;
		struct http_message msg;
		res.r = http_parser_feed(p, in + pos, give, &consumed, &msg, &res.err);
		assert_true(consumed <= give);
		pos += consumed;
		res.consumed = pos;
		if (res.r == HTTP_PARSE_MORE) {
			assert_int_equal(consumed, give);
			continue;
		}
		if (res.r == HTTP_PARSE_DONE) {
			copy(msg.method, res.method, sizeof(res.method));
			copy(msg.target, res.target, sizeof(res.target));
			copy(msg.reason, res.reason, sizeof(res.reason));
			copy(msg.body, res.body, sizeof(res.body));
			res.status = msg.status;
			res.version_minor = msg.version_minor;
			res.header_count = msg.header_count;
			res.has_cl = msg.has_content_length;
			if (msg.header_count > 0) {
				copy(msg.headers[0].name, res.h0name, sizeof(res.h0name));
				copy(msg.headers[0].value, res.h0value, sizeof(res.h0value));
			}
		} else {
			/* an error sticks */
			struct http_parse_error again;
			struct http_message m2;
			size_t c2 = 99;
			assert_int_equal(http_parser_feed(p, "x", 1, &c2, &m2, &again),
					 HTTP_PARSE_ERROR);
			assert_int_equal(c2, 0);
			assert_int_equal(again.kind, res.err.kind);
		}
		break;
	}
	http_parser_free(&p);
	assert_null(p);
	return res;
}

/* Whole and byte by byte must agree. */
static struct result parse_mode(enum http_parse_mode mode,
				const struct http_parser_limits *lim,
				const char *in)
{
	size_t len = strlen(in);
	struct result a = feed(mode, lim, in, len, 0);
	for (size_t chunk = 1; chunk <= 7; chunk += 3) {
		struct result b = feed(mode, lim, in, len, chunk);
		assert_int_equal(a.r, b.r);
		assert_int_equal(a.consumed, b.consumed);
		if (a.r == HTTP_PARSE_ERROR) {
			assert_int_equal(a.err.kind, b.err.kind);
			assert_int_equal(a.err.offset, b.err.offset);
			assert_int_equal(a.err.status, b.err.status);
		} else {
			assert_string_equal(a.body, b.body);
			assert_string_equal(a.target, b.target);
		}
	}
	return a;
}

static struct result req(const struct http_parser_limits *lim, const char *in)
{
	return parse_mode(HTTP_PARSE_MODE_REQUEST, lim, in);
}

static struct result resp(const struct http_parser_limits *lim, const char *in)
{
	return parse_mode(HTTP_PARSE_MODE_RESPONSE, lim, in);
}

static void expect_error(struct result r, enum http_parse_error_kind kind,
			 unsigned int status, uint64_t offset)
{
	assert_int_equal(r.r, HTTP_PARSE_ERROR);
	assert_int_equal(r.err.kind, kind);
	assert_int_equal(r.err.status, status);
	assert_int_equal(r.err.offset, offset);
	assert_non_null(r.err.msg);
}

static void test_simple_get(void **state)
{
	(void)state;
	struct result r = req(&small, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_int_equal(r.r, HTTP_PARSE_DONE);
	assert_string_equal(r.method, "GET");
	assert_string_equal(r.target, "/status");
	assert_int_equal(r.version_minor, 1);
	assert_int_equal(r.header_count, 1);
	assert_string_equal(r.h0name, "Host");
	assert_string_equal(r.h0value, "x");
	assert_string_equal(r.body, "");
	assert_false(r.has_cl);
}

static void test_bare_lf_and_blanks(void **state)
{
	(void)state;
	struct result r = req(&small, "GET / HTTP/1.0\nX-A:  \t v a \t\n\n");
	assert_int_equal(r.r, HTTP_PARSE_DONE);
	assert_int_equal(r.version_minor, 0);
	assert_string_equal(r.h0value, "v a");
	r = req(&small, "GET / HTTP/1.1\r\nX-Empty:\r\n\r\n");
	assert_int_equal(r.r, HTTP_PARSE_DONE);
	assert_string_equal(r.h0value, "");
}

static void test_post_body(void **state)
{
	(void)state;
	struct result r = req(&small, "POST /kick HTTP/1.1\r\ncontent-length: 12\r\n"
				      "\r\n{\"user\":\"a\"}");
	assert_int_equal(r.r, HTTP_PARSE_DONE);
	assert_string_equal(r.body, "{\"user\":\"a\"}");
	assert_true(r.has_cl);
	/* Content-Length: 0 */
	r = req(&small, "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(r.r, HTTP_PARSE_DONE);
	assert_string_equal(r.body, "");
}

static void test_pipelined(void **state)
{
	(void)state;
	const char *in = "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\n"
			 "Content-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\n\r\n";
	struct http_parser *p = http_parser_new(HTTP_PARSE_MODE_REQUEST, &small);
	struct http_message m;
	struct http_parse_error e;
	size_t len = strlen(in), pos = 0, c;
	const char *targets[] = { "/a", "/b", "/c" };

	for (int i = 0; i < 3; i++) {
		assert_int_equal(http_parser_feed(p, in + pos, len - pos, &c, &m, &e),
				 HTTP_PARSE_DONE);
		pos += c;
		assert_true(str_eq(m.target, str_cstr(targets[i])));
	}
	assert_int_equal(pos, len);
	assert_true(str_eq(m.method, STR("GET")));
	/* a later error carries the stream offset */
	assert_int_equal(http_parser_feed(p, "\r\n", 2, &c, &m, &e), HTTP_PARSE_ERROR);
	assert_int_equal(e.offset, len);
	http_parser_reset(p);
	assert_int_equal(http_parser_feed(p, "\r\n", 2, &c, &m, &e), HTTP_PARSE_ERROR);
	assert_int_equal(e.offset, 0);
	http_parser_reset(p);
	assert_int_equal(http_parser_feed(p, "GET / HTTP/1.1\n\n", 16, &c, &m, &e),
			 HTTP_PARSE_DONE);
	http_parser_free(&p);
}

/* A line of exactly n bytes with its CRLF: "X-H: aaaa\r\n". */
static void header_line(char *dst, size_t n)
{
	memcpy(dst, "X-H: ", 5);
	memset(dst + 5, 'a', n - 7);
	memcpy(dst + n - 2, "\r\n", 3);
}

static void test_line_limit(void **state)
{
	(void)state;
	char line[128], in[512];

	/* a header line of exactly max_line_len (64) bytes */
	header_line(line, 64);
	snprintf(in, sizeof(in), "GET / HTTP/1.1\r\n%s\r\n", line);
	assert_int_equal(req(&small, in).r, HTTP_PARSE_DONE);
	/* one more: 431, at the 65th byte of that line */
	header_line(line, 65);
	snprintf(in, sizeof(in), "GET / HTTP/1.1\r\n%s\r\n", line);
	expect_error(req(&small, in), HTTP_PARSE_ERR_LINE_TOO_LONG, 431, 16 + 64);
	/* the request line: exactly 64, then 65 -> 414 */
	char target[80];
	memset(target, 'a', sizeof(target));
	target[0] = '/';
	target[64 - 15] = '\0'; /* "GET " + target + " HTTP/1.1\r\n" = 64 */
	snprintf(in, sizeof(in), "GET %s HTTP/1.1\r\n\r\n", target);
	assert_int_equal(req(&small, in).r, HTTP_PARSE_DONE);
	target[64 - 15] = 'a';
	target[65 - 15] = '\0';
	snprintf(in, sizeof(in), "GET %s HTTP/1.1\r\n\r\n", target);
	expect_error(req(&small, in), HTTP_PARSE_ERR_LINE_TOO_LONG, 414, 64);
	/* a line that never ends fails as soon as it passes the limit */
	memset(in, 'G', 65);
	in[65] = '\0';
	expect_error(req(&small, in), HTTP_PARSE_ERR_LINE_TOO_LONG, 414, 64);
	memset(in, 'G', 64);
	in[64] = '\0';
	assert_int_equal(req(&small, in).r, HTTP_PARSE_MORE);
}

static void test_header_count_limit(void **state)
{
	(void)state;
	const char *four = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
	const char *five = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
	struct result r = req(&small, four);
	assert_int_equal(r.r, HTTP_PARSE_DONE);
	assert_int_equal(r.header_count, 4);
	expect_error(req(&small, five), HTTP_PARSE_ERR_TOO_MANY_HEADERS, 431,
		     strlen("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"));
	struct http_parser_limits none = small;
	none.max_headers = 0;
	assert_int_equal(req(&none, "GET / HTTP/1.1\r\n\r\n").r, HTTP_PARSE_DONE);
	expect_error(req(&none, "GET / HTTP/1.1\r\nA: 1\r\n\r\n"),
		     HTTP_PARSE_ERR_TOO_MANY_HEADERS, 431, 16);
}

static void test_body_limit(void **state)
{
	(void)state;
	struct result r = req(&small, "POST / HTTP/1.1\r\nContent-Length: 16\r\n\r\n"
				      "0123456789abcdef");
	assert_int_equal(r.r, HTTP_PARSE_DONE);
	assert_string_equal(r.body, "0123456789abcdef");
	expect_error(req(&small, "POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n"
				 "0123456789abcdefg"),
		     HTTP_PARSE_ERR_BODY_TOO_LARGE, 413, 17 + 16);
	expect_error(req(&small, "POST / HTTP/1.1\r\nContent-Length: "
				 "99999999999999999999999\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_CONTENT_LENGTH, 400, 17 + 16);
	/* a short body is MORE, not an error */
	assert_int_equal(req(&small, "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab").r,
			 HTTP_PARSE_MORE);
}

static void test_length_required(void **state)
{
	(void)state;
	expect_error(req(&small, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
		     HTTP_PARSE_ERR_LENGTH_REQUIRED, 411, 17);
	expect_error(resp(&small, "HTTP/1.1 200 OK\r\n\r\n"),
		     HTTP_PARSE_ERR_LENGTH_REQUIRED, 411, 17);
}

static void test_bad_content_length(void **state)
{
	(void)state;
	expect_error(req(&small, "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_CONTENT_LENGTH, 400, 33);
	expect_error(req(&small, "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_CONTENT_LENGTH, 400, 33);
	expect_error(req(&small, "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_CONTENT_LENGTH, 400, 32);
	expect_error(req(&small, "POST / HTTP/1.1\r\nContent-Length: 1\r\n"
				 "Content-Length: 1\r\n\r\nx"),
		     HTTP_PARSE_ERR_BAD_CONTENT_LENGTH, 400, 36);
}

static void test_bad_first_line(void **state)
{
	(void)state;
	expect_error(req(&small, "\r\n"), HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 0);
	expect_error(req(&small, "GET\r\n\r\n"), HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 3);
	expect_error(req(&small, " GET / HTTP/1.1\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 0);
	expect_error(req(&small, "GET  / HTTP/1.1\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 4);
	expect_error(req(&small, "GET / HTTP/1.1 \r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 6);
	expect_error(req(&small, "GET / FTP/1.1\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 6);
	expect_error(req(&small, "G(T / HTTP/1.1\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 1);
	/* method at exactly HTTP_METHOD_MAX_LEN (16) and one past */
	assert_int_equal(req(&small, "ABCDEFGHIJKLMNOP / HTTP/1.1\r\n\r\n").r,
			 HTTP_PARSE_DONE);
	expect_error(req(&small, "ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 17);
	/* responses */
	expect_error(resp(&small, "HTTP/1.1 20 OK\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 11);
	expect_error(resp(&small, "HTTP/1.1 2x0 OK\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 10);
	expect_error(resp(&small, "HTTP/1.1 099 OK\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 9);
	expect_error(resp(&small, "HTTP/1.1 200XOK\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 12);
	expect_error(resp(&small, "HTTX/1.1 200 OK\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_FIRST_LINE, 400, 0);
}

static void test_bad_version(void **state)
{
	(void)state;
	expect_error(req(&small, "GET / HTTP/2.0\r\n\r\n"), HTTP_PARSE_ERR_BAD_VERSION,
		     505, 6);
	expect_error(req(&small, "GET / HTTP/1.2\r\n\r\n"), HTTP_PARSE_ERR_BAD_VERSION,
		     505, 6);
	expect_error(resp(&small, "HTTP/3.0 200 OK\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_VERSION, 505, 0);
}

static void test_bad_header(void **state)
{
	(void)state;
	expect_error(req(&small, "GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_HEADER, 400, 22);
	expect_error(req(&small, "GET / HTTP/1.1\r\nA : 1\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_HEADER, 400, 17);
	expect_error(req(&small, "GET / HTTP/1.1\r\n: 1\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_HEADER, 400, 16);
	expect_error(req(&small, "GET / HTTP/1.1\r\nnocolon\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_HEADER, 400, 23);
}

static void test_bad_byte(void **state)
{
	(void)state;
	static const char nul[] = "GET / HTTP/1.1\r\nA: x\0y\r\n\r\n";
	struct result r = feed(HTTP_PARSE_MODE_REQUEST, &small, nul, sizeof(nul) - 1, 0);
	expect_error(r, HTTP_PARSE_ERR_BAD_BYTE, 400, 20);
	expect_error(req(&small, "GET / HTTP/1.1\r\nA: x\ry\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_BYTE, 400, 20);
	expect_error(req(&small, "GET / HTTP/1.1\r\r\n\r\n"), HTTP_PARSE_ERR_BAD_BYTE,
		     400, 14);
	expect_error(req(&small, "GET / HTTP/1.1\r\nA: \x7f\r\n\r\n"),
		     HTTP_PARSE_ERR_BAD_BYTE, 400, 19);
	/* 8-bit bytes are fine in values */
	assert_int_equal(req(&small, "GET / HTTP/1.1\r\nA: \xc3\xa9\r\n\r\n").r,
			 HTTP_PARSE_DONE);
}

static void test_responses(void **state)
{
	(void)state;
	struct result r = resp(&small, "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n"
				       "\r\n{}");
	assert_int_equal(r.r, HTTP_PARSE_DONE);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.reason, "Not Found");
	assert_string_equal(r.body, "{}");
	r = resp(&small, "HTTP/1.0 204\r\n\r\n");
	assert_int_equal(r.r, HTTP_PARSE_DONE);
	assert_int_equal(r.status, 204);
	assert_string_equal(r.reason, "");
	r = resp(&small, "HTTP/1.1 100 Continue\r\n\r\n");
	assert_int_equal(r.r, HTTP_PARSE_DONE);
	r = resp(&small, "HTTP/1.1 304 \r\n\r\n");
	assert_int_equal(r.r, HTTP_PARSE_DONE);
	assert_int_equal(r.status, 304);
}

static void test_header_lookup_and_status_text(void **state)
{
	(void)state;
	struct http_parser *p = http_parser_new(HTTP_PARSE_MODE_REQUEST, &small);
	const char *in = "GET / HTTP/1.1\r\nHost: h\r\nX-Y: z\r\n\r\n";
	struct http_message m;
	struct http_parse_error e;
	struct str v;
	size_t c;
	assert_int_equal(http_parser_feed(p, in, strlen(in), &c, &m, &e), HTTP_PARSE_DONE);
	assert_true(http_message_header(&m, STR("x-y"), &v));
	assert_true(str_eq(v, STR("z")));
	assert_false(http_message_header(&m, STR("nope"), &v));
	assert_null(v.p);
	http_parser_free(&p);
	http_parser_free(&p); /* safe on NULL */
	assert_string_equal(http_status_text(404), "Not Found");
	assert_string_equal(http_status_text(999), "Unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_get),
		cmocka_unit_test(test_bare_lf_and_blanks),
		cmocka_unit_test(test_post_body),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_header_count_limit),
		cmocka_unit_test(test_body_limit),
		cmocka_unit_test(test_length_required),
		cmocka_unit_test(test_bad_content_length),
		cmocka_unit_test(test_bad_first_line),
		cmocka_unit_test(test_bad_version),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_bad_byte),
		cmocka_unit_test(test_responses),
		cmocka_unit_test(test_header_lookup_and_status_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
