#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy_protocol.h"

static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

static enum proxy_proto_result parse(const void *d, size_t len,
				     struct proxy_proto_info *info,
				     size_t *consumed)
{
	const char *error = NULL;
	enum proxy_proto_result r =
		proxy_proto_parse(d, len, info, consumed, &error);
	if (r == PROXY_PROTO_ERROR)
		assert_non_null(error);
	return r;
}

static void assert_v4(const struct sockaddr_storage *ss, const char *ip,
		      uint16_t port)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	char buf[INET_ADDRSTRLEN];
	assert_int_equal(sin->sin_family, AF_INET);
	assert_string_equal(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)), ip);
	assert_int_equal(ntohs(sin->sin_port), port);
}

static void assert_v6(const struct sockaddr_storage *ss, const char *ip,
		      uint16_t port)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	char buf[INET6_ADDRSTRLEN];
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_string_equal(inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf)), ip);
	assert_int_equal(ntohs(sin6->sin6_port), port);
}

static void test_v1_tcp4(void **state)
{
	(void)state;
	const char h[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 143\r\nA1 CAPABILITY\r\n";
	struct proxy_proto_info info;
	size_t consumed;
	assert_int_equal(parse(h, sizeof(h) - 1, &info, &consumed), PROXY_PROTO_DONE);
	assert_int_equal(consumed, strlen("PROXY TCP4 192.0.2.1 198.51.100.2 56324 143\r\n"));
	assert_int_equal(info.version, 1);
	assert_true(info.has_addresses);
	assert_v4(&info.src, "192.0.2.1", 56324);
	assert_v4(&info.dst, "198.51.100.2", 143);
}

static void test_v1_tcp6_and_unknown(void **state)
{
	(void)state;
	struct proxy_proto_info info;
	size_t consumed;
	const char h6[] = "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 65535\r\n";
	assert_int_equal(parse(h6, sizeof(h6) - 1, &info, &consumed), PROXY_PROTO_DONE);
	assert_v6(&info.src, "2001:db8::1", 1);
	assert_v6(&info.dst, "::ffff:10.0.0.1", 65535);
	const char hu[] = "PROXY UNKNOWN whatever follows\r\n";
	assert_int_equal(parse(hu, sizeof(hu) - 1, &info, &consumed), PROXY_PROTO_DONE);
	assert_false(info.has_addresses);
	assert_int_equal(consumed, sizeof(hu) - 1);
}

static void test_v1_incremental(void **state)
{
	(void)state;
	const char h[] = "PROXY TCP4 10.1.2.3 10.0.0.1 40000 993\r\n";
	struct proxy_proto_info info;
	size_t consumed;
	for (size_t i = 0; i < sizeof(h) - 1; i++) {
		assert_int_equal(parse(h, i, &info, &consumed), PROXY_PROTO_NEED_MORE);
		assert_true(consumed > i);
		assert_true(consumed <= sizeof(h) - 1);
	}
	assert_int_equal(parse(h, sizeof(h) - 1, &info, &consumed), PROXY_PROTO_DONE);
}

static void test_v1_bad(void **state)
{
	(void)state;
	static const char *bad[] = {
		"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",           /* missing port */
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",       /* extra field */
		"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",           /* bad ip */
		"PROXY TCP4 ::1 ::1 1 2\r\n",                 /* v6 in TCP4 */
		"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",         /* v4 in TCP6 */
		"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",     /* port range */
		"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",        /* leading zero */
		"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
		"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",        /* double space */
		"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",          /* CR without LF */
		"PROXY \r\n",
		"A1 LOGIN user pass\r\n",                     /* no header at all */
		"GET / HTTP/1.0\r\n",
	};
	struct proxy_proto_info info;
	size_t consumed;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], strlen(bad[i]), &info, &consumed),
				 PROXY_PROTO_ERROR);
	/* 107 bytes without CRLF is the end of the v1 budget */
	char longh[200];
	memset(longh, '1', sizeof(longh));
	memcpy(longh, "PROXY TCP4 ", 11);
	assert_int_equal(parse(longh, 106, &info, &consumed), PROXY_PROTO_NEED_MORE);
	assert_int_equal(parse(longh, sizeof(longh), &info, &consumed), PROXY_PROTO_ERROR);
}

static size_t make_v2(uint8_t *out, uint8_t cmd, uint8_t fam,
		      const uint8_t *body, uint16_t body_len)
{
	memcpy(out, sig, 12);
	out[12] = (uint8_t)(0x20 | cmd);
	out[13] = fam;
	out[14] = (uint8_t)(body_len >> 8);
	out[15] = (uint8_t)(body_len & 0xff);
	if (body_len > 0)
		memcpy(out + 16, body, body_len);
	return 16u + body_len;
}

static void test_v2_tcp4_with_tlv(void **state)
{
	(void)state;
	uint8_t body[12 + 7] = { 203, 0, 113, 7, 127, 0, 0, 1, 0xc3, 0x50, 0, 143,
				 /* a TLV (PP2_TYPE_AUTHORITY "a.b") we skip */
				 0x02, 0x00, 0x03, 'a', '.', 'b', 0 };
	uint8_t h[64];
	size_t n = make_v2(h, 1, 0x11, body, 18);
	h[n] = 'X'; /* the client's first byte must not be consumed */
	struct proxy_proto_info info;
	size_t consumed;
	assert_int_equal(parse(h, n + 1, &info, &consumed), PROXY_PROTO_DONE);
	assert_int_equal(consumed, n);
	assert_int_equal(info.version, 2);
	assert_v4(&info.src, "203.0.113.7", 50000);
	assert_v4(&info.dst, "127.0.0.1", 143);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(parse(h, i, &info, &consumed), PROXY_PROTO_NEED_MORE);
		assert_true(consumed > i && consumed <= n);
	}
}

/* An IPv6 client behind an IPv4 balancer: the header family is TCP6 even
 * though the socket is IPv4. */
static void test_v2_tcp6(void **state)
{
	(void)state;
	uint8_t body[36] = { 0 };
	struct in6_addr a;
	inet_pton(AF_INET6, "2001:db8:1::42", &a);
	memcpy(body, &a, 16);
	inet_pton(AF_INET6, "2001:db8::1", &a);
	memcpy(body + 16, &a, 16);
	body[32] = 0x12; body[33] = 0x34; body[34] = 0x03; body[35] = 0xe1;
	uint8_t h[64];
	size_t n = make_v2(h, 1, 0x21, body, 36);
	struct proxy_proto_info info;
	size_t consumed;
	assert_int_equal(parse(h, n, &info, &consumed), PROXY_PROTO_DONE);
	assert_v6(&info.src, "2001:db8:1::42", 0x1234);
	assert_v6(&info.dst, "2001:db8::1", 993);
}

static void test_v2_local_and_bad(void **state)
{
	(void)state;
	uint8_t h[2048];
	struct proxy_proto_info info;
	size_t consumed;
	size_t n = make_v2(h, 0, 0x00, NULL, 0);
	assert_int_equal(parse(h, n, &info, &consumed), PROXY_PROTO_DONE);
	assert_false(info.has_addresses);

	uint8_t shortbody[8] = { 0 };
	n = make_v2(h, 1, 0x11, shortbody, 8);
	assert_int_equal(parse(h, n, &info, &consumed), PROXY_PROTO_ERROR);
	n = make_v2(h, 1, 0x21, shortbody, 8);
	assert_int_equal(parse(h, n, &info, &consumed), PROXY_PROTO_ERROR);
	n = make_v2(h, 1, 0x31, shortbody, 8); /* AF_UNIX: unsupported */
	assert_int_equal(parse(h, n, &info, &consumed), PROXY_PROTO_ERROR);
	n = make_v2(h, 2, 0x11, shortbody, 8); /* unknown command */
	assert_int_equal(parse(h, n, &info, &consumed), PROXY_PROTO_ERROR);
	n = make_v2(h, 1, 0x11, shortbody, 8);
	h[12] = 0x11; /* version 1 in the binary format */
	assert_int_equal(parse(h, n, &info, &consumed), PROXY_PROTO_ERROR);
	/* length field past our bound: refused before any buffering */
	memcpy(h, sig, 12);
	h[12] = 0x21; h[13] = 0x11; h[14] = 0xff; h[15] = 0xff;
	assert_int_equal(parse(h, 16, &info, &consumed), PROXY_PROTO_ERROR);
	/* exactly at the bound is fine */
	memset(h + 16, 0, PROXY_PROTO_MAX_HEADER - 16);
	h[14] = (uint8_t)((PROXY_PROTO_MAX_HEADER - 16) >> 8);
	h[15] = (uint8_t)((PROXY_PROTO_MAX_HEADER - 16) & 0xff);
	assert_int_equal(parse(h, PROXY_PROTO_MAX_HEADER, &info, &consumed), PROXY_PROTO_DONE);
	h[15]++;
	assert_int_equal(parse(h, PROXY_PROTO_MAX_HEADER + 1, &info, &consumed), PROXY_PROTO_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_tcp4),
		cmocka_unit_test(test_v1_tcp6_and_unknown),
		cmocka_unit_test(test_v1_incremental),
		cmocka_unit_test(test_v1_bad),
		cmocka_unit_test(test_v2_tcp4_with_tlv),
		cmocka_unit_test(test_v2_tcp6),
		cmocka_unit_test(test_v2_local_and_bad),
	};
	return cmocka_run_group_tests_name("proxy_protocol", tests, NULL, NULL);
}
