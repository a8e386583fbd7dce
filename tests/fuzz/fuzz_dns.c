/* Fuzzes the DNS answer parser (ring/dns: dns_parse_answer, with ldns
 * underneath) and the query builder.
 *
 * Input: byte 0 picks what we asked (bits 0-1: A, AAAA, SRV, SRV; bits
 * 2-3: one of four names; bit 7: expect the packet's own id, so most
 * inputs get past the id check; bit 6: instead of a packet, the rest is
 * a name for dns_name_is_valid + dns_build_query). The rest is the
 * packet. Checks: the result is 1 or -1 with a message; a parsed answer
 * keeps its bounds (count, types, TTLs, host-name targets); parsing is
 * deterministic; a built query is never taken for an answer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ring/dns.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint16_t qtypes[] = {DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_SRV,
				  DNS_TYPE_SRV};
static const char *const names[] = {
    "b1.example.net",
    "_imap._tcp.example.net",
    "a",
    "B1.Example.NET.",
};

static struct dns_answer ans;

static uint64_t parse_hash(const uint8_t *pkt, size_t len, uint16_t id,
			   const char *name, uint16_t qtype)
{
	char err[DNS_ERROR_MAX];
	uint64_t hash = 14695981039346656037ULL;

	err[0] = '\0';
	int ret =
	    dns_parse_answer(pkt, len, id, name, qtype, &ans, err, sizeof(err));
	fuzz_mix_u64(&hash, (uint64_t)(int64_t)ret);
	if (ret == -1) {
		if (err[0] == '\0' || strlen(err) >= sizeof(err))
			abort();
		fuzz_mix_str(&hash, str_cstr(err), 1);
		return hash;
	}
	if (ret != 1 || ans.count > DNS_MAX_RECORDS)
		abort();
	if (ans.rcode != DNS_RCODE_NOERROR && ans.count != 0)
		abort();
	if (ans.capped && ans.count != DNS_MAX_RECORDS)
		abort();
	if (ans.ttl > DNS_TTL_MAX)
		abort();
	uint32_t min_ttl = DNS_TTL_MAX;
	for (size_t i = 0; i < ans.count; i++) {
		const struct dns_record *r = &ans.records[i];
		if (r->type != qtype || r->ttl > DNS_TTL_MAX)
			abort();
		if (r->ttl < min_ttl)
			min_ttl = r->ttl;
		switch (qtype) {
		case DNS_TYPE_A:
			if (r->addr.u.sa.sa_family != AF_INET ||
			    r->addr.len != sizeof(struct sockaddr_in))
				abort();
			fuzz_mix(&hash, &r->addr.u.sin.sin_addr, 4);
			break;
		case DNS_TYPE_AAAA:
			if (r->addr.u.sa.sa_family == AF_INET6)
				fuzz_mix(&hash, &r->addr.u.sin6.sin6_addr, 16);
			else if (r->addr.u.sa.sa_family == AF_INET)
				fuzz_mix(&hash, &r->addr.u.sin.sin_addr, 4);
			else
				abort();
			break;
		case DNS_TYPE_SRV: {
			size_t tl =
			    strnlen(r->srv.target, sizeof(r->srv.target));
			if (tl == 0 || tl > DNS_NAME_MAX ||
			    !dns_name_is_valid(r->srv.target) ||
			    r->srv.target[tl - 1] == '.')
				abort();
			fuzz_mix_str(&hash, str_from(r->srv.target, tl), 1);
			fuzz_mix_u64(&hash, r->srv.priority);
			fuzz_mix_u64(&hash, r->srv.weight);
			fuzz_mix_u64(&hash, r->srv.port);
			break;
		}
		default:
			abort();
		}
		fuzz_mix_u64(&hash, r->ttl);
	}
	if (ans.count > 0 && ans.ttl != min_ttl)
		abort();
	fuzz_mix_u64(&hash, ans.rcode);
	fuzz_mix_u64(&hash, ans.truncated);
	fuzz_mix_u64(&hash, ans.capped);
	fuzz_mix_u64(&hash, ans.ttl);
	fuzz_mix_u64(&hash, ans.count);
	return hash;
}

static void fuzz_name(const uint8_t *data, size_t size)
{
	char name[300];
	uint8_t out[DNS_QUERY_MAX];
	char err[DNS_ERROR_MAX];
	size_t len;

	if (size >= sizeof(name))
		size = sizeof(name) - 1;
	memcpy(name, data, size);
	name[size] = '\0';
	bool valid = dns_name_is_valid(name);
	int ret = dns_build_query(name, DNS_TYPE_A, 0x4242, out, sizeof(out),
				  &len, err, sizeof(err));
	if (valid != (ret == 0))
		abort();
	if (ret == 0) {
		if (len < 17 || len > DNS_QUERY_MAX)
			abort();
		/* our own query is not an answer */
		if (dns_parse_answer(out, len, 0x4242, name, DNS_TYPE_A, &ans,
				     err, sizeof(err)) != -1)
			abort();
		/* with QR set it is an answer without records */
		out[2] |= 0x80;
		if (dns_parse_answer(out, len, 0x4242, name, DNS_TYPE_A, &ans,
				     err, sizeof(err)) != 1 ||
		    ans.count != 0 || ans.rcode != DNS_RCODE_NOERROR)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	const uint8_t *pkt = data + 1;
	size_t len = size - 1;

	if (sel & 0x40) {
		fuzz_name(pkt, len);
		return 0;
	}
	uint16_t qtype = qtypes[sel & 3];
	const char *name = names[(sel >> 2) & 3];
	uint16_t id = 0x1234;
	if ((sel & 0x80) && len >= 2)
		id = (uint16_t)((pkt[0] << 8) | pkt[1]);

	/* an exact-size copy, so ASan sees any read past len */
	uint8_t *copy = malloc(len == 0 ? 1 : len);
	if (copy == NULL)
		abort();
	memcpy(copy, pkt, len);
	uint64_t h1 = parse_hash(copy, len, id, name, qtype);
	uint64_t h2 = parse_hash(copy, len, id, name, qtype);
	free(copy);
	if (h1 != h2)
		abort();
	return 0;
}
