#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <ldns/ldns.h>

#include "log.h"
#include "ring/dns.h"

/* ---- building answers with ldns ------------------------------------------ */

struct pkt_spec {
	const char *question; /* "b1.example.net. IN A"; NULL = none */
	uint16_t id;
	bool qr_clear;
	bool tc;
	ldns_pkt_rcode rcode;
	ldns_pkt_opcode opcode;
	const char *answer[80];
	const char *authority[4];
	const char *extra_question;
};

static void push(ldns_pkt *p, ldns_pkt_section section, const char *text,
		 bool question)
{
	ldns_rr *rr = NULL;
	ldns_status st =
	    question ? ldns_rr_new_question_frm_str(&rr, text, NULL, NULL)
		     : ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL);
	if (st != LDNS_STATUS_OK)
		fail_msg("bad test RR <%s>: %s", text,
			 ldns_get_errorstr_by_id(st));
	assert_true(ldns_pkt_push_rr(p, section, rr));
}

static uint8_t *make_pkt(const struct pkt_spec *s, size_t *len_r)
{
	ldns_pkt *p = ldns_pkt_new();
	assert_non_null(p);
	ldns_pkt_set_id(p, s->id);
	ldns_pkt_set_qr(p, !s->qr_clear);
	ldns_pkt_set_rd(p, true);
	ldns_pkt_set_ra(p, true);
	ldns_pkt_set_tc(p, s->tc);
	ldns_pkt_set_opcode(p, s->opcode);
	ldns_pkt_set_rcode(p, (uint8_t)s->rcode);
	if (s->question != NULL)
		push(p, LDNS_SECTION_QUESTION, s->question, true);
	if (s->extra_question != NULL)
		push(p, LDNS_SECTION_QUESTION, s->extra_question, true);
	for (size_t i = 0; i < 80 && s->answer[i] != NULL; i++)
		push(p, LDNS_SECTION_ANSWER, s->answer[i], false);
	for (size_t i = 0; i < 4 && s->authority[i] != NULL; i++)
		push(p, LDNS_SECTION_AUTHORITY, s->authority[i], false);
	uint8_t *wire = NULL;
	assert_int_equal(ldns_pkt2wire(&wire, p, len_r), LDNS_STATUS_OK);
	ldns_pkt_free(p);
	return wire;
}

static struct dns_answer ans;
static char err[DNS_ERROR_MAX];

static int parse(const struct pkt_spec *s, uint16_t expect_id,
		 const char *qname, uint16_t qtype)
{
	size_t len;
	uint8_t *wire = make_pkt(s, &len);
	err[0] = '\0';
	int ret = dns_parse_answer(wire, len, expect_id, qname, qtype, &ans,
				   err, sizeof(err));
	if (ret < 0)
		assert_true(err[0] != '\0');
	free(wire);
	return ret;
}

static const char *ip(const struct dns_record *r)
{
	static char buf[NET_ADDR_STR_MAX];
	return net_addr_ip_str(&r->addr, buf, sizeof(buf));
}

/* ---- names and queries --------------------------------------------------- */

static void test_name_valid(void **state)
{
	(void)state;
	char label63[64], label64[65], long_name[300];

	memset(label63, 'a', 63);
	label63[63] = '\0';
	memset(label64, 'a', 64);
	label64[64] = '\0';
	assert_true(dns_name_is_valid("b1.example.net"));
	assert_true(dns_name_is_valid("b1.example.net."));
	assert_true(dns_name_is_valid("_imap._tcp.Example.NET"));
	assert_true(dns_name_is_valid("localhost"));
	assert_true(dns_name_is_valid(label63));
	assert_false(dns_name_is_valid(label64));
	assert_false(dns_name_is_valid(""));
	assert_false(dns_name_is_valid("."));
	assert_false(dns_name_is_valid(".example.net"));
	assert_false(dns_name_is_valid("bad..name"));
	assert_false(dns_name_is_valid("example.net.."));
	assert_false(dns_name_is_valid("sp ace.net"));
	assert_false(dns_name_is_valid("esc\\046.net"));
	assert_false(dns_name_is_valid("caf\xc3\xa9.net"));
	/* 253 bytes is the limit, with or without the trailing dot */
	size_t n = 0;
	while (n + 4 <= 253) {
		memcpy(long_name + n, "abc.", 4);
		n += 4;
	}
	memcpy(long_name + n, "a", 2); /* 253: "abc." * 63 + "a" */
	assert_int_equal(strlen(long_name), 253);
	assert_true(dns_name_is_valid(long_name));
	long_name[253] = '.';
	long_name[254] = '\0';
	assert_true(dns_name_is_valid(long_name));
	long_name[253] = 'b';
	assert_false(dns_name_is_valid(long_name));
}

static void test_build_query(void **state)
{
	(void)state;
	uint8_t out[DNS_QUERY_MAX];
	size_t len;

	assert_int_equal(dns_build_query("b1.example.net", DNS_TYPE_AAAA,
					 0xbeef, out, sizeof(out), &len, err,
					 sizeof(err)),
			 0);
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_wire2pkt(&p, out, len), LDNS_STATUS_OK);
	assert_int_equal(ldns_pkt_id(p), 0xbeef);
	assert_false(ldns_pkt_qr(p));
	assert_true(ldns_pkt_rd(p));
	assert_int_equal(ldns_pkt_qdcount(p), 1);
	assert_int_equal(ldns_pkt_ancount(p), 0);
	assert_int_equal(ldns_pkt_arcount(p), 0);
	ldns_rr *q = ldns_rr_list_rr(ldns_pkt_question(p), 0);
	assert_int_equal(ldns_rr_get_type(q), LDNS_RR_TYPE_AAAA);
	assert_int_equal(ldns_rr_get_class(q), LDNS_RR_CLASS_IN);
	char *owner = ldns_rdf2str(ldns_rr_owner(q));
	assert_string_equal(owner, "b1.example.net.");
	free(owner);
	ldns_pkt_free(p);
	/* 12 header + 16 name + 4 */
	assert_int_equal(len, 32);

	uint8_t out2[DNS_QUERY_MAX];
	size_t len2;
	assert_int_equal(dns_build_query("b1.example.net.", DNS_TYPE_AAAA,
					 0xbeef, out2, sizeof(out2), &len2, err,
					 sizeof(err)),
			 0);
	assert_int_equal(len2, len);
	assert_memory_equal(out, out2, len);

	assert_int_equal(dns_build_query("bad..name", DNS_TYPE_A, 1, out,
					 sizeof(out), &len, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "invalid DNS name <bad..name>");
	assert_int_equal(dns_build_query("b1.example.net", DNS_TYPE_A, 1, out,
					 20, &len, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "needs 32 bytes"));
}

static void test_servers_parse(void **state)
{
	(void)state;
	struct net_addr a[DNS_SERVERS_MAX];
	char buf[NET_ADDR_STR_MAX];
	size_t n;

	assert_int_equal(dns_servers_parse("127.0.0.1:5353 [::1]:53,10.0.0.1 "
					   " ::2\n",
					   a, DNS_SERVERS_MAX, &n, err,
					   sizeof(err)),
			 0);
	assert_int_equal(n, 4);
	assert_string_equal(net_addr_str(&a[0], buf, sizeof(buf)),
			    "127.0.0.1:5353");
	assert_string_equal(net_addr_str(&a[1], buf, sizeof(buf)), "[::1]:53");
	assert_string_equal(net_addr_str(&a[2], buf, sizeof(buf)),
			    "10.0.0.1:53");
	assert_string_equal(net_addr_str(&a[3], buf, sizeof(buf)), "[::2]:53");

	static const char *const bad[] = {
	    "",
	    " , ",
	    "dns.example.net",
	    "0.0.0.0",
	    "127.0.0.1:0",
	    "127.0.0.1:70000",
	    "[::1",
	    "1.1.1.1 2.2.2.2 3.3.3.3",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t max = i == 7 ? 2 : DNS_SERVERS_MAX;
		err[0] = '\0';
		assert_int_equal(
		    dns_servers_parse(bad[i], a, max, &n, err, sizeof(err)),
		    -1);
		assert_int_equal(n, 0);
		assert_true(err[0] != '\0');
	}
}

/* ---- answers ------------------------------------------------------------- */

static void test_parse_a(void **state)
{
	(void)state;
	struct pkt_spec s = {
	    .question = "b1.example.net. IN A",
	    .id = 0x1234,
	    .answer = {"b1.example.net. 30 IN A 127.0.0.5",
		       "b1.example.net. 20 IN A 127.0.0.6",
		       "B1.EXAMPLE.NET. 40 IN A 127.0.0.7"},
	};

	assert_int_equal(parse(&s, 0x1234, "b1.example.net", DNS_TYPE_A), 1);
	assert_int_equal(ans.rcode, DNS_RCODE_NOERROR);
	assert_false(ans.truncated);
	assert_false(ans.capped);
	assert_int_equal(ans.count, 3);
	assert_int_equal(ans.ttl, 20);
	assert_int_equal(ans.records[0].type, DNS_TYPE_A);
	assert_int_equal(ans.records[0].ttl, 30);
	assert_string_equal(ip(&ans.records[0]), "127.0.0.5");
	assert_string_equal(ip(&ans.records[1]), "127.0.0.6");
	assert_string_equal(ip(&ans.records[2]), "127.0.0.7");
	assert_int_equal(net_addr_port(&ans.records[0].addr), 0);
	/* the question name matches case-insensitively, with or without
	 * the trailing dot */
	assert_int_equal(parse(&s, 0x1234, "B1.Example.Net.", DNS_TYPE_A), 1);
	assert_int_equal(ans.count, 3);
}

static void test_parse_aaaa(void **state)
{
	(void)state;
	struct pkt_spec s = {
	    .question = "b1.example.net. IN AAAA",
	    .id = 7,
	    .answer = {"b1.example.net. 30 IN AAAA fd00::5",
		       "b1.example.net. 30 IN A 127.0.0.9", /* not asked */
		       "b1.example.net. 60 IN AAAA ::ffff:10.1.2.3"},
	};

	assert_int_equal(parse(&s, 7, "b1.example.net", DNS_TYPE_AAAA), 1);
	assert_int_equal(ans.count, 2);
	assert_int_equal(ans.records[0].type, DNS_TYPE_AAAA);
	assert_string_equal(ip(&ans.records[0]), "fd00::5");
	assert_int_equal(ans.records[0].addr.u.sa.sa_family, AF_INET6);
	/* v4-mapped comes out as IPv4, like every net_addr */
	assert_string_equal(ip(&ans.records[1]), "10.1.2.3");
	assert_int_equal(ans.ttl, 30);
}

static void test_parse_mismatch(void **state)
{
	(void)state;
	struct pkt_spec s = {
	    .question = "b1.example.net. IN A",
	    .id = 0x1234,
	    .answer = {"b1.example.net. 30 IN A 127.0.0.5"},
	};

	/* wrong id */
	assert_int_equal(parse(&s, 0x1235, "b1.example.net", DNS_TYPE_A), -1);
	assert_non_null(strstr(err, "id"));
	/* wrong name */
	assert_int_equal(parse(&s, 0x1234, "b2.example.net", DNS_TYPE_A), -1);
	assert_string_equal(err, "answer is for another name");
	assert_int_equal(parse(&s, 0x1234, "b1.example.net.evil", DNS_TYPE_A),
			 -1);
	/* wrong type */
	assert_int_equal(parse(&s, 0x1234, "b1.example.net", DNS_TYPE_AAAA),
			 -1);
	/* not an answer */
	s.qr_clear = true;
	assert_int_equal(parse(&s, 0x1234, "b1.example.net", DNS_TYPE_A), -1);
	s.qr_clear = false;
	s.opcode = LDNS_PACKET_NOTIFY;
	assert_int_equal(parse(&s, 0x1234, "b1.example.net", DNS_TYPE_A), -1);
	s.opcode = LDNS_PACKET_QUERY;
	/* class CH */
	s.question = "b1.example.net. CH A";
	assert_int_equal(parse(&s, 0x1234, "b1.example.net", DNS_TYPE_A), -1);
	/* no question, two questions */
	s.question = NULL;
	assert_int_equal(parse(&s, 0x1234, "b1.example.net", DNS_TYPE_A), -1);
	s.question = "b1.example.net. IN A";
	s.extra_question = "b1.example.net. IN A";
	assert_int_equal(parse(&s, 0x1234, "b1.example.net", DNS_TYPE_A), -1);
	s.extra_question = NULL;
	/* an unsupported query type or an invalid name from the caller */
	assert_int_equal(parse(&s, 0x1234, "b1.example.net", DNS_TYPE_CNAME),
			 -1);
	assert_int_equal(parse(&s, 0x1234, "b1..example.net", DNS_TYPE_A), -1);
	/* and the same packet is fine when it is ours */
	assert_int_equal(parse(&s, 0x1234, "b1.example.net", DNS_TYPE_A), 1);
}

static void test_parse_truncated_packet(void **state)
{
	(void)state;
	struct pkt_spec s = {
	    .question = "_imap._tcp.example.net. IN SRV",
	    .id = 99,
	    .answer = {"_imap._tcp.example.net. 30 IN SRV 10 60 1143 "
		       "b1.example.net.",
		       "_imap._tcp.example.net. 30 IN SRV 10 40 1143 "
		       "b2.example.net."},
	};
	size_t len;
	uint8_t *wire = make_pkt(&s, &len);

	for (size_t cut = 0; cut < len; cut++) {
		/* a copy of exactly cut bytes, so ASan sees any over-read */
		uint8_t *part = malloc(cut == 0 ? 1 : cut);
		memcpy(part, wire, cut);
		assert_int_equal(
		    dns_parse_answer(part, cut, 99, "_imap._tcp.example.net",
				     DNS_TYPE_SRV, &ans, err, sizeof(err)),
		    -1);
		free(part);
	}
	assert_int_equal(dns_parse_answer(wire, len, 99,
					  "_imap._tcp.example.net",
					  DNS_TYPE_SRV, &ans, err, sizeof(err)),
			 1);
	assert_int_equal(ans.count, 2);
	free(wire);

	static const uint8_t junk[] = {0,    99,   0x81, 0x80, 0, 1,
				       0,    1,    0,    0,    0, 0,
				       0xc0, 0x0c, 0xc0, 0x0c, 0, 1};
	assert_int_equal(dns_parse_answer(junk, sizeof(junk), 99,
					  "b1.example.net", DNS_TYPE_A, &ans,
					  err, sizeof(err)),
			 -1);
}

static void test_parse_tc(void **state)
{
	(void)state;
	struct pkt_spec s = {
	    .question = "b1.example.net. IN A",
	    .id = 5,
	    .tc = true,
	};

	assert_int_equal(parse(&s, 5, "b1.example.net", DNS_TYPE_A), 1);
	assert_true(ans.truncated);
	assert_int_equal(ans.count, 0);
}

static void test_parse_nxdomain_nodata(void **state)
{
	(void)state;
	struct pkt_spec s = {
	    .question = "gone.example.net. IN A",
	    .id = 1,
	    .rcode = LDNS_RCODE_NXDOMAIN,
	    .authority = {"example.net. 600 IN SOA ns.example.net. "
			  "hostmaster.example.net. 1 3600 600 86400 120"},
	};

	assert_int_equal(parse(&s, 1, "gone.example.net", DNS_TYPE_A), 1);
	assert_int_equal(ans.rcode, DNS_RCODE_NXDOMAIN);
	assert_int_equal(ans.count, 0);
	assert_int_equal(ans.ttl, 120); /* min(SOA TTL, minimum) */

	s.authority[0] = "example.net. 60 IN SOA ns.example.net. "
			 "hostmaster.example.net. 1 3600 600 86400 120";
	assert_int_equal(parse(&s, 1, "gone.example.net", DNS_TYPE_A), 1);
	assert_int_equal(ans.ttl, 60);

	/* NODATA: NOERROR, no records of the type */
	s.rcode = LDNS_RCODE_NOERROR;
	s.answer[0] = "gone.example.net. 60 IN TXT \"hello\"";
	assert_int_equal(parse(&s, 1, "gone.example.net", DNS_TYPE_A), 1);
	assert_int_equal(ans.rcode, DNS_RCODE_NOERROR);
	assert_int_equal(ans.count, 0);
	assert_int_equal(ans.ttl, 60);

	/* without an SOA the negative TTL is 0 */
	s.authority[0] = NULL;
	assert_int_equal(parse(&s, 1, "gone.example.net", DNS_TYPE_A), 1);
	assert_int_equal(ans.ttl, 0);
}

static void test_parse_servfail(void **state)
{
	(void)state;
	struct pkt_spec s = {
	    .question = "b1.example.net. IN A",
	    .id = 3,
	    .rcode = LDNS_RCODE_SERVFAIL,
	    /* records in a failed answer are not used */
	    .answer = {"b1.example.net. 30 IN A 127.0.0.5"},
	};

	assert_int_equal(parse(&s, 3, "b1.example.net", DNS_TYPE_A), 1);
	assert_int_equal(ans.rcode, DNS_RCODE_SERVFAIL);
	assert_int_equal(ans.count, 0);
	s.rcode = LDNS_RCODE_REFUSED;
	assert_int_equal(parse(&s, 3, "b1.example.net", DNS_TYPE_A), 1);
	assert_int_equal(ans.rcode, DNS_RCODE_REFUSED);
	assert_int_equal(ans.count, 0);
}

static void test_parse_cname_chain(void **state)
{
	(void)state;
	struct pkt_spec s = {
	    .question = "mail.example.net. IN A",
	    .id = 11,
	    .answer =
		{
		    /* out of order on purpose */
		    "b1.example.net. 300 IN A 127.0.0.5",
		    "www.example.net. 60 IN CNAME b1.example.net.",
		    "mail.example.net. 100 IN CNAME www.example.net.",
		    "b1.example.net. 30 IN A 127.0.0.6",
		    /* poison: not on the chain */
		    "evil.example.net. 300 IN A 6.6.6.6",
		    "mail.example.net. 300 IN A 6.6.6.7",
		},
	};

	assert_int_equal(parse(&s, 11, "mail.example.net", DNS_TYPE_A), 1);
	assert_int_equal(ans.count, 2);
	assert_string_equal(ip(&ans.records[0]), "127.0.0.5");
	assert_string_equal(ip(&ans.records[1]), "127.0.0.6");
	assert_int_equal(ans.records[0].ttl, 60); /* the chain's minimum */
	assert_int_equal(ans.records[1].ttl, 30);
	assert_int_equal(ans.ttl, 30);

	/* a chain that ends nowhere: NODATA */
	struct pkt_spec dangling = {
	    .question = "mail.example.net. IN A",
	    .id = 11,
	    .answer = {"mail.example.net. 100 IN CNAME www.example.net."},
	};
	assert_int_equal(parse(&dangling, 11, "mail.example.net", DNS_TYPE_A),
			 1);
	assert_int_equal(ans.count, 0);

	/* a loop */
	struct pkt_spec loop = {
	    .question = "a.example.net. IN A",
	    .id = 12,
	    .answer = {"a.example.net. 100 IN CNAME b.example.net.",
		       "b.example.net. 100 IN CNAME a.example.net.",
		       "a.example.net. 100 IN A 127.0.0.1"},
	};
	assert_int_equal(parse(&loop, 12, "a.example.net", DNS_TYPE_A), -1);
	assert_non_null(strstr(err, "CNAME chain"));

	/* DNS_CNAME_MAX links are fine, one more is not */
	struct pkt_spec longc = {.question = "c0.example.net. IN A", .id = 13};
	char rrs[DNS_CNAME_MAX + 2][96];
	for (int i = 0; i <= DNS_CNAME_MAX; i++) {
		snprintf(rrs[i], sizeof(rrs[i]),
			 "c%d.example.net. 10 IN CNAME c%d.example.net.", i,
			 i + 1);
		longc.answer[i] = rrs[i];
	}
	snprintf(rrs[DNS_CNAME_MAX + 1], sizeof(rrs[0]),
		 "c%d.example.net. 10 IN A 127.0.0.1", DNS_CNAME_MAX + 1);
	longc.answer[DNS_CNAME_MAX + 1] = rrs[DNS_CNAME_MAX + 1];
	assert_int_equal(parse(&longc, 13, "c0.example.net", DNS_TYPE_A), -1);
	assert_int_equal(parse(&longc, 13, "c1.example.net", DNS_TYPE_A), -1);
	longc.question = "c1.example.net. IN A";
	assert_int_equal(parse(&longc, 13, "c1.example.net", DNS_TYPE_A), 1);
	assert_int_equal(ans.count, 1);
}

static void test_parse_srv(void **state)
{
	(void)state;
	struct pkt_spec s = {
	    .question = "_imap._tcp.example.net. IN SRV",
	    .id = 21,
	    .answer =
		{
		    "_imap._tcp.example.net. 30 IN SRV 10 60 1143 "
		    "b1.example.net.",
		    "_imap._tcp.example.net. 60 IN SRV 20 0 2143 "
		    "B3.example.net.",
		    "_imap._tcp.example.net. 45 IN SRV 10 40 1143 "
		    "b2.example.net.",
		    /* "." = not offered; odd bytes = not a host name */
		    "_imap._tcp.example.net. 30 IN SRV 0 0 0 .",
		    "_imap._tcp.example.net. 30 IN SRV 1 1 1 b\\032x.net.",
		},
	};

	assert_int_equal(parse(&s, 21, "_imap._tcp.example.net", DNS_TYPE_SRV),
			 1);
	assert_int_equal(ans.count, 3);
	assert_int_equal(ans.ttl, 30);
	const struct dns_srv *srv = &ans.records[0].srv;
	assert_int_equal(ans.records[0].type, DNS_TYPE_SRV);
	assert_int_equal(srv->priority, 10);
	assert_int_equal(srv->weight, 60);
	assert_int_equal(srv->port, 1143);
	assert_string_equal(srv->target, "b1.example.net");
	srv = &ans.records[1].srv;
	assert_int_equal(srv->priority, 20);
	assert_int_equal(srv->port, 2143);
	assert_string_equal(srv->target, "B3.example.net");
	assert_int_equal(ans.records[1].ttl, 60);
	srv = &ans.records[2].srv;
	assert_string_equal(srv->target, "b2.example.net");
	assert_int_equal(srv->weight, 40);
}

static void test_parse_cap_and_ttl(void **state)
{
	(void)state;
	struct pkt_spec s = {.question = "many.example.net. IN A", .id = 31};
	char rrs[70][64];

	for (int i = 0; i < 70; i++) {
		snprintf(rrs[i], sizeof(rrs[i]),
			 "many.example.net. %d IN A 10.0.0.%d", 100 + i, i + 1);
		s.answer[i] = rrs[i];
	}
	assert_int_equal(parse(&s, 31, "many.example.net", DNS_TYPE_A), 1);
	assert_int_equal(ans.count, DNS_MAX_RECORDS);
	assert_true(ans.capped);
	assert_string_equal(ip(&ans.records[63]), "10.0.0.64");
	assert_int_equal(ans.ttl, 100);

	/* TTLs over 2^31-1 count as 0 */
	struct pkt_spec big = {
	    .question = "b1.example.net. IN A",
	    .id = 32,
	    .answer = {"b1.example.net. 4294967295 IN A 127.0.0.5",
		       "b1.example.net. 2147483647 IN A 127.0.0.6"},
	};
	assert_int_equal(parse(&big, 32, "b1.example.net", DNS_TYPE_A), 1);
	assert_int_equal(ans.records[0].ttl, 0);
	assert_int_equal(ans.records[1].ttl, 2147483647u);
	assert_int_equal(ans.ttl, 0);
}

/* ---- the resolver on a real loop against an in-test server -------------- */

enum fake_mode {
	FAKE_ANSWER = 0,  /* A 127.0.0.5 ttl 30, AAAA NODATA */
	FAKE_SPOOF_FIRST, /* a wrong-id answer first, then the right one */
	FAKE_SILENT,      /* never answers */
	FAKE_TTL0,        /* A 127.0.0.5 ttl 0 */
	FAKE_SERVFAIL,
};

struct fake {
	int fd;
	struct event *ev;
	enum fake_mode mode;
	unsigned int queries;
	struct net_addr addr;
};

static void fake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fake *f = arg;
	uint8_t buf[512];
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof(from);

	(void)what;
	ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from,
			     &fromlen);
	if (n <= 0)
		return;
	f->queries++;
	if (f->mode == FAKE_SILENT)
		return;
	ldns_pkt *q = NULL;
	assert_int_equal(ldns_wire2pkt(&q, buf, (size_t)n), LDNS_STATUS_OK);
	ldns_rr *qrr = ldns_rr_list_rr(ldns_pkt_question(q), 0);
	char *qtext = ldns_rr2str(qrr);
	/* "name.\tIN\tA\n" -> question string for the builder */
	for (char *p = qtext; *p != '\0'; p++) {
		if (*p == '\t' || *p == '\n')
			*p = ' ';
	}
	char answer[128];
	char *owner = ldns_rdf2str(ldns_rr_owner(qrr));
	struct pkt_spec s = {.question = qtext, .id = ldns_pkt_id(q)};
	if (ldns_rr_get_type(qrr) == LDNS_RR_TYPE_A &&
	    f->mode != FAKE_SERVFAIL) {
		snprintf(answer, sizeof(answer), "%s %d IN A 127.0.0.5", owner,
			 f->mode == FAKE_TTL0 ? 0 : 30);
		s.answer[0] = answer;
	}
	if (f->mode == FAKE_SERVFAIL)
		s.rcode = LDNS_RCODE_SERVFAIL;
	size_t len;
	uint8_t *wire;
	if (f->mode == FAKE_SPOOF_FIRST) {
		s.id ^= 0x5555;
		wire = make_pkt(&s, &len);
		sendto(fd, wire, len, 0, (struct sockaddr *)&from, fromlen);
		free(wire);
		s.id ^= 0x5555;
	}
	wire = make_pkt(&s, &len);
	sendto(fd, wire, len, 0, (struct sockaddr *)&from, fromlen);
	free(wire);
	free(owner);
	free(qtext);
	ldns_pkt_free(q);
}

static void fake_start(struct event_base *base, struct fake *f,
		       enum fake_mode mode)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);

	memset(f, 0, sizeof(*f));
	f->mode = mode;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(f->fd >= 0);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sin, &len), 0);
	assert_int_equal(
	    net_addr_from_sockaddr(&f->addr, (struct sockaddr *)&sin, len), 0);
	f->ev = event_new(base, f->fd, EV_READ | EV_PERSIST, fake_cb, f);
	event_add(f->ev, NULL);
}

static void fake_stop(struct fake *f)
{
	event_free(f->ev);
	close(f->fd);
}

struct lookup_ctx {
	struct event_base *base;
	unsigned int calls;
	enum dns_status status;
	size_t count;
	uint32_t ttl;
	bool partial;
	char first[NET_ADDR_STR_MAX];
	char error[DNS_ERROR_MAX];
	struct dns_query *query; /* cancelled from the callback if set */
	struct dns_watch *watch; /* freed from the callback after max_calls */
	unsigned int max_calls;
};

static void lookup_cb(const struct dns_result *res, void *context)
{
	struct lookup_ctx *c = context;

	c->calls++;
	c->status = res->status;
	c->count = res->count;
	c->ttl = res->ttl;
	c->partial = res->partial;
	c->first[0] = '\0';
	if (res->count > 0)
		net_addr_ip_str(&res->records[0].addr, c->first,
				sizeof(c->first));
	snprintf(c->error, sizeof(c->error), "%s",
		 res->error != NULL ? res->error : "");
	if (res->status == DNS_OK)
		assert_null(res->error);
	else
		assert_non_null(res->error);
	/* cancelling from the callback only clears the handle */
	dns_query_cancel(&c->query);
	if (c->watch != NULL && c->calls >= c->max_calls) {
		dns_watch_free(&c->watch);
		event_base_loopbreak(c->base);
	} else if (c->watch == NULL) {
		event_base_loopbreak(c->base);
	}
}

static void run_loop(struct event_base *base, unsigned int msecs)
{
	struct timeval tv = {.tv_sec = msecs / 1000,
			     .tv_usec = (msecs % 1000) * 1000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static struct dns_resolver *resolver_for(struct event_base *base,
					 const struct fake *f1,
					 const struct fake *f2,
					 uint64_t timeout, unsigned int retries)
{
	char servers[2 * NET_ADDR_STR_MAX + 2], a1[NET_ADDR_STR_MAX],
	    a2[NET_ADDR_STR_MAX];

	snprintf(servers, sizeof(servers), "%s %s",
		 net_addr_str(&f1->addr, a1, sizeof(a1)),
		 f2 == NULL ? "" : net_addr_str(&f2->addr, a2, sizeof(a2)));
	struct dns_resolver *r =
	    dns_resolver_new(base, servers, timeout, retries, err, sizeof(err));
	assert_non_null(r);
	return r;
}

static void test_resolver_answer(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct fake f;
	fake_start(base, &f, FAKE_ANSWER);
	struct dns_resolver *r = resolver_for(base, &f, NULL, 1000, 0);
	struct lookup_ctx c = {.base = base};

	c.query = dns_lookup_addr(r, "b1.example.net", lookup_cb, &c);
	assert_int_equal(c.calls, 0); /* never from inside the call */
	run_loop(base, 3000);
	assert_int_equal(c.calls, 1);
	assert_null(c.query);
	assert_int_equal(c.status, DNS_OK);
	assert_int_equal(c.count, 1);
	assert_int_equal(c.ttl, 30);
	assert_false(c.partial); /* AAAA NODATA is not a failure */
	assert_string_equal(c.first, "127.0.0.5");
	assert_int_equal(f.queries, 2);

	/* SRV NODATA */
	c.calls = 0;
	c.query = dns_lookup_srv(r, "_imap._tcp.example.net", lookup_cb, &c);
	run_loop(base, 3000);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.status, DNS_NODATA);
	assert_string_equal(c.error, "_imap._tcp.example.net: no SRV records");

	/* invalid name: fails from the loop */
	c.calls = 0;
	c.query = dns_lookup_addr(r, "bad..name", lookup_cb, &c);
	assert_int_equal(c.calls, 0);
	run_loop(base, 3000);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.status, DNS_ERROR);
	assert_string_equal(c.error, "invalid DNS name <bad..name>");

	dns_resolver_free(&r);
	assert_null(r);
	fake_stop(&f);
	event_base_free(base);
}

static void test_resolver_spoof_dropped(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct fake f;
	fake_start(base, &f, FAKE_SPOOF_FIRST);
	struct dns_resolver *r = resolver_for(base, &f, NULL, 1000, 0);
	struct lookup_ctx c = {.base = base};

	c.query = dns_lookup_addr(r, "b1.example.net", lookup_cb, &c);
	run_loop(base, 3000);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.status, DNS_OK);
	assert_string_equal(c.first, "127.0.0.5");
	assert_int_equal(f.queries, 2); /* no retry was needed */
	dns_resolver_free(&r);
	fake_stop(&f);
	event_base_free(base);
}

static void test_resolver_timeout_next_server(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct fake silent, good;
	fake_start(base, &silent, FAKE_SILENT);
	fake_start(base, &good, FAKE_ANSWER);
	struct lookup_ctx c = {.base = base};

	/* silent only: timeout after (1 + 1) tries of 100 ms */
	struct dns_resolver *r = resolver_for(base, &silent, NULL, 100, 1);
	uint64_t t0 = net_monotonic_msecs();
	c.query = dns_lookup_addr(r, "b1.example.net", lookup_cb, &c);
	run_loop(base, 3000);
	uint64_t took = net_monotonic_msecs() - t0;
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.status, DNS_TIMEOUT);
	assert_true(took >= 190 && took < 1500);
	assert_non_null(strstr(c.error, "b1.example.net A: no answer from "));
	assert_non_null(strstr(c.error, "(2 tries)"));
	assert_int_equal(silent.queries, 4);
	dns_resolver_free(&r);

	/* silent first, then the good one */
	r = resolver_for(base, &silent, &good, 100, 0);
	c.calls = 0;
	c.query = dns_lookup_addr(r, "b1.example.net", lookup_cb, &c);
	run_loop(base, 3000);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.status, DNS_OK);
	assert_int_equal(good.queries, 2);
	dns_resolver_free(&r);

	fake_stop(&silent);
	fake_stop(&good);
	event_base_free(base);
}

static void test_resolver_servfail(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct fake f;
	fake_start(base, &f, FAKE_SERVFAIL);
	struct dns_resolver *r = resolver_for(base, &f, NULL, 1000, 2);
	struct lookup_ctx c = {.base = base};

	c.query = dns_lookup_srv(r, "_imap._tcp.example.net", lookup_cb, &c);
	run_loop(base, 3000);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.status, DNS_SERVFAIL);
	assert_non_null(strstr(c.error, "SERVFAIL from 127.0.0.1:"));
	assert_int_equal(f.queries, 3);
	dns_resolver_free(&r);
	fake_stop(&f);
	event_base_free(base);
}

static void count_errors(enum log_level level, const char *line, void *context)
{
	unsigned int *n = context;

	if (level == LOG_LEVEL_ERROR &&
	    strstr(line, "resolver freed with 1 queries pending") != NULL)
		(*n)++;
}

static void test_resolver_cancel(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct fake f;
	fake_start(base, &f, FAKE_ANSWER);
	struct dns_resolver *r = resolver_for(base, &f, NULL, 100, 0);
	struct lookup_ctx c = {.base = base};

	/* before anything was sent */
	struct dns_query *q =
	    dns_lookup_addr(r, "b1.example.net", lookup_cb, &c);
	dns_query_cancel(&q);
	assert_null(q);
	dns_query_cancel(&q); /* NULL is fine */
	run_loop(base, 200);
	assert_int_equal(c.calls, 0);
	assert_int_equal(f.queries, 0);

	/* while the answer is on its way */
	f.mode = FAKE_SILENT;
	q = dns_lookup_srv(r, "_imap._tcp.example.net", lookup_cb, &c);
	struct timeval tv = {.tv_usec = 30000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(f.queries, 1);
	dns_query_cancel(&q);
	run_loop(base, 300);
	assert_int_equal(c.calls, 0);

	/* freeing the resolver with a query pending cancels it, and says
	 * so */
	q = dns_lookup_addr(r, "b1.example.net", lookup_cb, &c);
	(void)q;
	unsigned int errors = 0;
	log_set_callback(count_errors, &errors);
	dns_resolver_free(&r);
	log_set_callback(NULL, NULL);
	assert_int_equal(errors, 1);
	run_loop(base, 200);
	assert_int_equal(c.calls, 0);

	fake_stop(&f);
	event_base_free(base);
}

static void test_watch(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct fake f;
	fake_start(base, &f, FAKE_TTL0);
	struct dns_resolver *r = resolver_for(base, &f, NULL, 500, 0);
	struct lookup_ctx c = {.base = base, .max_calls = 3};
	struct dns_watch_settings set = {.min_refresh_msecs = 50};

	uint64_t t0 = net_monotonic_msecs();
	c.watch = dns_watch_new(r, DNS_LOOKUP_ADDR, "b1.example.net", &set,
				lookup_cb, &c);
	run_loop(base, 3000);
	uint64_t took = net_monotonic_msecs() - t0;
	assert_int_equal(c.calls, 3);
	assert_null(c.watch); /* freed from its callback */
	assert_int_equal(c.status, DNS_OK);
	assert_int_equal(c.ttl, 0);
	/* ttl 0, so the refresh is min_refresh_msecs apart */
	assert_true(took >= 90 && took < 2000);
	assert_int_equal(f.queries, 6);

	/* refresh now, then free with a lookup in flight */
	c.calls = 0;
	c.max_calls = 100;
	f.mode = FAKE_SILENT;
	c.watch = dns_watch_new(r, DNS_LOOKUP_SRV, "_imap._tcp.example.net",
				NULL, lookup_cb, &c);
	dns_watch_refresh(c.watch); /* one is already running: no-op */
	run_loop(base, 50);
	assert_int_equal(f.queries, 7);
	dns_watch_free(&c.watch);
	assert_null(c.watch);
	run_loop(base, 600);
	assert_int_equal(c.calls, 0);

	dns_resolver_free(&r);
	fake_stop(&f);
	event_base_free(base);
}

static void test_resolver_new_errors(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();

	assert_null(dns_resolver_new(base, "", 100, 0, err, sizeof(err)));
	assert_string_equal(err, "no DNS servers given");
	assert_null(dns_resolver_new(
	    base, "127.0.0.1", DNS_TIMEOUT_MAX_MSECS + 1, 0, err, sizeof(err)));
	assert_null(dns_resolver_new(base, "127.0.0.1", 100,
				     DNS_RETRIES_MAX + 1, err, sizeof(err)));
	/* NULL: /etc/resolv.conf, or 127.0.0.1 without it */
	struct dns_resolver *r =
	    dns_resolver_new(base, NULL, 0, 0, err, sizeof(err));
	assert_non_null(r);
	dns_resolver_free(&r);
	dns_resolver_free(&r); /* NULL is fine */
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_name_valid),
	    cmocka_unit_test(test_build_query),
	    cmocka_unit_test(test_servers_parse),
	    cmocka_unit_test(test_parse_a),
	    cmocka_unit_test(test_parse_aaaa),
	    cmocka_unit_test(test_parse_mismatch),
	    cmocka_unit_test(test_parse_truncated_packet),
	    cmocka_unit_test(test_parse_tc),
	    cmocka_unit_test(test_parse_nxdomain_nodata),
	    cmocka_unit_test(test_parse_servfail),
	    cmocka_unit_test(test_parse_cname_chain),
	    cmocka_unit_test(test_parse_srv),
	    cmocka_unit_test(test_parse_cap_and_ttl),
	    cmocka_unit_test(test_resolver_answer),
	    cmocka_unit_test(test_resolver_spoof_dropped),
	    cmocka_unit_test(test_resolver_timeout_next_server),
	    cmocka_unit_test(test_resolver_servfail),
	    cmocka_unit_test(test_resolver_cancel),
	    cmocka_unit_test(test_watch),
	    cmocka_unit_test(test_resolver_new_errors),
	};
	log_init("test_dns", LOG_LEVEL_WARNING);
	log_set_timestamps(false);
	return cmocka_run_group_tests_name("dns", tests, NULL, NULL);
}
