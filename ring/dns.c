/*
 * dns: an asynchronous stub resolver on libevent; ldns builds and parses
 * the packets. See dns.h for the contract.
 *
 * Objects: a resolver holds the server list and a list of pending queries.
 * A query (one lookup) holds one transfer per record type it asks (A and
 * AAAA, or SRV). A transfer runs tries one after the other:
 *
 *   IDLE --timer(0)--> UDP --answer--> DONE
 *                       |  \--TC--> TCP_WRITE --> TCP_READ --answer--> DONE
 *                       \--timeout / error / SERVFAIL--> next try (UDP)
 *
 * Every try has its own socket, id and deadline (the transfer's timer).
 * When the last transfer of a query is DONE the query's callback runs and
 * the query is freed right after it; a cancelled query is freed at once
 * and its callback never runs. Nothing is ever called back from inside
 * dns_lookup_*(): even an invalid name fails from the timer.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <ldns/ldns.h>

#include "dns.h"
#include "log.h"
#include "str.h"
#include "xmalloc.h"

#define DNS_HEADER_LEN 12
/* Largest DNS message (UDP datagram or TCP frame). */
#define DNS_MSG_MAX 65535
/* Datagrams read per wake-up of one try before yielding to the loop. */
#define DNS_UDP_READS_PER_WAKEUP 16
#define DNS_RESOLV_CONF "/etc/resolv.conf"
#define DNS_RESOLV_CONF_LINE_MAX 512
#define DNS_WATCH_MIN_DEFAULT_MSECS 1000
#define DNS_WATCH_MAX_DEFAULT_MSECS 3600000
#define DNS_WATCH_ERROR_DEFAULT_MSECS 5000
#define DNS_WATCH_MAX_MSECS 86400000
/* Bytes of a name quoted in a message. */
#define DNS_MSG_NAME_MAX 128

/* ---- helpers ------------------------------------------------------------- */

/* vsnprintf into dst that marks a cut message with "..." instead of
 * failing: these are messages for people, and a long name must not lose
 * the whole text. */
static void dns_vmsg(char *dst, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void dns_vmsg(char *dst, size_t size, const char *fmt, va_list ap)
{
	if (size == 0)
		return;
	int n = vsnprintf(dst, size, fmt, ap);
	if (n < 0)
		dst[0] = '\0';
	else if ((size_t)n >= size && size > 4)
		memcpy(dst + size - 4, "...", 4);
}

static void dns_msg(char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dns_msg(char *dst, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dns_vmsg(dst, size, fmt, ap);
	va_end(ap);
}

/* A name as it may appear in a message: sanitised and cut. */
static const char *dns_msg_name(const char *name, char *dst, size_t size)
{
	return str_sanitize(str_from(name, strnlen(name, DNS_NAME_MAX + 2)),
			    dst, size);
}

static const char *dns_type_name(uint16_t type)
{
	switch (type) {
	case DNS_TYPE_A:
		return "A";
	case DNS_TYPE_AAAA:
		return "AAAA";
	case DNS_TYPE_SRV:
		return "SRV";
	case DNS_TYPE_CNAME:
		return "CNAME";
	case DNS_TYPE_SOA:
		return "SOA";
	default:
		return "?";
	}
}

static const char *dns_rcode_name(uint16_t rcode)
{
	static const char *const names[] = {
	    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
	};
	return rcode < sizeof(names) / sizeof(names[0]) ? names[rcode]
							: "RCODE>5";
}

static uint32_t dns_ttl_clamp(uint32_t ttl)
{
	return ttl > DNS_TTL_MAX ? 0 : ttl;
}

static uint32_t dns_min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

bool dns_name_is_valid(const char *name)
{
	size_t len = strnlen(name, DNS_NAME_MAX + 2);
	size_t label = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

/* name with a trailing dot into dst (DNS_NAME_MAX + 2 bytes), so ldns
 * reads it as absolute. False for an invalid name. */
static bool dns_name_absolute(const char *name, char *dst)
{
	if (!dns_name_is_valid(name))
		return false;
	size_t len = strlen(name);
	memcpy(dst, name, len);
	if (dst[len - 1] != '.')
		dst[len++] = '.';
	dst[len] = '\0';
	return true;
}

/* ---- building and parsing ------------------------------------------------ */

int dns_build_query(const char *qname, uint16_t qtype, uint16_t id,
		    uint8_t *out, size_t outsize, size_t *len_r, char *err,
		    size_t errsize)
{
	char abs[DNS_NAME_MAX + 2];
	char shown[DNS_MSG_NAME_MAX];

	*len_r = 0;
	if (!dns_name_absolute(qname, abs)) {
		dns_msg(err, errsize, "invalid DNS name <%s>",
			dns_msg_name(qname, shown, sizeof(shown)));
		return -1;
	}
	ldns_rdf *rdf = ldns_dname_new_frm_str(abs);
	if (rdf == NULL) {
		dns_msg(err, errsize, "invalid DNS name <%s>",
			dns_msg_name(qname, shown, sizeof(shown)));
		return -1;
	}
	/* takes rdf */
	ldns_pkt *pkt = ldns_pkt_query_new(rdf, (ldns_rr_type)qtype,
					   LDNS_RR_CLASS_IN, LDNS_RD);
	if (pkt == NULL)
		xalloc_fail_abort();
	ldns_pkt_set_id(pkt, id);

	uint8_t *wire = NULL;
	size_t size = 0;
	ldns_status st = ldns_pkt2wire(&wire, pkt, &size);
	ldns_pkt_free(pkt);
	if (st != LDNS_STATUS_OK) {
		free(wire);
		dns_msg(err, errsize, "cannot build a query for <%s>: %s",
			dns_msg_name(qname, shown, sizeof(shown)),
			ldns_get_errorstr_by_id(st));
		return -1;
	}
	if (size > outsize) {
		free(wire);
		dns_msg(
		    err, errsize, "query for <%s> needs %zu bytes, %zu given",
		    dns_msg_name(qname, shown, sizeof(shown)), size, outsize);
		return -1;
	}
	memcpy(out, wire, size);
	free(wire);
	*len_r = size;
	return 0;
}

static bool dns_rr_is(const ldns_rr *rr, uint16_t type, const ldns_rdf *owner)
{
	const ldns_rdf *o = ldns_rr_owner(rr);

	return ldns_rr_get_type(rr) == type &&
	       ldns_rr_get_class(rr) == LDNS_RR_CLASS_IN && o != NULL &&
	       ldns_rdf_get_type(o) == LDNS_RDF_TYPE_DNAME &&
	       ldns_dname_compare(o, owner) == 0;
}

static bool dns_rdf_is(const ldns_rdf *rdf, ldns_rdf_type type, size_t size)
{
	return rdf != NULL && ldns_rdf_get_type(rdf) == type &&
	       (size == 0 || ldns_rdf_size(rdf) == size);
}

/* Fills rec from rr (of the asked type). Returns 1, 0 to skip the record
 * (an SRV target "." or one we would not ask about), or -1 when it is
 * malformed. */
static int dns_record_from_rr(const ldns_rr *rr, uint16_t qtype,
			      struct dns_record *rec)
{
	const ldns_rdf *rdf = ldns_rr_rdf(rr, 0);

	memset(rec, 0, sizeof(*rec));
	rec->type = qtype;
	switch (qtype) {
	case DNS_TYPE_A: {
		struct sockaddr_in sin = {.sin_family = AF_INET};
		if (ldns_rr_rd_count(rr) != 1 ||
		    !dns_rdf_is(rdf, LDNS_RDF_TYPE_A, 4))
			return -1;
		memcpy(&sin.sin_addr, ldns_rdf_data(rdf), 4);
		return net_addr_from_sockaddr(&rec->addr,
					      (const struct sockaddr *)&sin,
					      sizeof(sin)) == 0
			   ? 1
			   : -1;
	}
	case DNS_TYPE_AAAA: {
		struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
		if (ldns_rr_rd_count(rr) != 1 ||
		    !dns_rdf_is(rdf, LDNS_RDF_TYPE_AAAA, 16))
			return -1;
		memcpy(&sin6.sin6_addr, ldns_rdf_data(rdf), 16);
		return net_addr_from_sockaddr(&rec->addr,
					      (const struct sockaddr *)&sin6,
					      sizeof(sin6)) == 0
			   ? 1
			   : -1;
	}
	case DNS_TYPE_SRV: {
		if (ldns_rr_rd_count(rr) != 4)
			return -1;
		for (size_t i = 0; i < 3; i++) {
			if (!dns_rdf_is(ldns_rr_rdf(rr, i), LDNS_RDF_TYPE_INT16,
					2))
				return -1;
		}
		const ldns_rdf *target = ldns_rr_rdf(rr, 3);
		if (!dns_rdf_is(target, LDNS_RDF_TYPE_DNAME, 0))
			return -1;
		rec->srv.priority = ldns_rdf2native_int16(ldns_rr_rdf(rr, 0));
		rec->srv.weight = ldns_rdf2native_int16(ldns_rr_rdf(rr, 1));
		rec->srv.port = ldns_rdf2native_int16(ldns_rr_rdf(rr, 2));
		char *text = ldns_rdf2str(target);
		if (text == NULL)
			return -1;
		size_t len = strlen(text);
		if (len > 0 && text[len - 1] == '.')
			text[--len] = '\0';
		/* "." = no service here; escapes or odd bytes = not a host
		 * name we would connect to */
		int ret = 0;
		if (len > 0 && dns_name_is_valid(text) &&
		    len < sizeof(rec->srv.target)) {
			memcpy(rec->srv.target, text, len + 1);
			ret = 1;
		}
		free(text);
		return ret;
	}
	default:
		return -1;
	}
}

/* The checks and the record walk of dns_parse_answer on a parsed packet. */
static int dns_parse_pkt(const ldns_pkt *p, const ldns_rdf *want,
			 uint16_t qtype, struct dns_answer *out, char *err,
			 size_t errsize)
{
	const ldns_rr_list *ql = ldns_pkt_question(p);

	if (ldns_pkt_qdcount(p) != 1 || ql == NULL ||
	    ldns_rr_list_rr_count(ql) != 1) {
		dns_msg(err, errsize, "answer has %u questions, not 1",
			(unsigned int)ldns_pkt_qdcount(p));
		return -1;
	}
	const ldns_rr *q = ldns_rr_list_rr(ql, 0);
	if (ldns_rr_get_type(q) != qtype ||
	    ldns_rr_get_class(q) != LDNS_RR_CLASS_IN) {
		dns_msg(
		    err, errsize, "answer is for type %u class %u, not %s IN",
		    (unsigned int)ldns_rr_get_type(q),
		    (unsigned int)ldns_rr_get_class(q), dns_type_name(qtype));
		return -1;
	}
	if (!dns_rr_is(q, qtype, want)) {
		dns_msg(err, errsize, "answer is for another name");
		return -1;
	}

	out->rcode = (uint16_t)ldns_pkt_get_rcode(p);
	out->truncated = ldns_pkt_tc(p);

	/* Follow the CNAME chain from the question name. */
	const ldns_rr_list *an = ldns_pkt_answer(p);
	size_t an_count = an == NULL ? 0 : ldns_rr_list_rr_count(an);
	const ldns_rdf *cur = want;
	uint32_t chain_ttl = DNS_TTL_MAX;
	for (unsigned int hops = 0;; hops++) {
		const ldns_rr *cname = NULL;
		for (size_t i = 0; i < an_count && cname == NULL; i++) {
			const ldns_rr *rr = ldns_rr_list_rr(an, i);
			if (dns_rr_is(rr, DNS_TYPE_CNAME, cur))
				cname = rr;
		}
		if (cname == NULL)
			break;
		if (hops == DNS_CNAME_MAX) {
			dns_msg(err, errsize, "CNAME chain longer than %d",
				DNS_CNAME_MAX);
			return -1;
		}
		const ldns_rdf *target = ldns_rr_rdf(cname, 0);
		if (ldns_rr_rd_count(cname) != 1 ||
		    !dns_rdf_is(target, LDNS_RDF_TYPE_DNAME, 0)) {
			dns_msg(err, errsize, "malformed CNAME record");
			return -1;
		}
		cur = target;
		chain_ttl =
		    dns_min_u32(chain_ttl, dns_ttl_clamp(ldns_rr_ttl(cname)));
	}

	if (out->rcode == DNS_RCODE_NOERROR) {
		for (size_t i = 0; i < an_count; i++) {
			const ldns_rr *rr = ldns_rr_list_rr(an, i);
			if (!dns_rr_is(rr, qtype, cur))
				continue;
			if (out->count == DNS_MAX_RECORDS) {
				out->capped = true;
				continue;
			}
			struct dns_record *rec = &out->records[out->count];
			int ret = dns_record_from_rr(rr, qtype, rec);
			if (ret < 0) {
				dns_msg(err, errsize, "malformed %s record",
					dns_type_name(qtype));
				out->count = 0;
				return -1;
			}
			if (ret == 0)
				continue;
			rec->ttl = dns_min_u32(chain_ttl,
					       dns_ttl_clamp(ldns_rr_ttl(rr)));
			out->count++;
		}
	}

	if (out->count > 0) {
		out->ttl = DNS_TTL_MAX;
		for (size_t i = 0; i < out->count; i++)
			out->ttl = dns_min_u32(out->ttl, out->records[i].ttl);
		return 1;
	}
	/* Negative answer: the SOA's TTL, at most its minimum field
	 * (RFC 2308 section 5). */
	const ldns_rr_list *ns = ldns_pkt_authority(p);
	size_t ns_count = ns == NULL ? 0 : ldns_rr_list_rr_count(ns);
	for (size_t i = 0; i < ns_count; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(ns, i);
		if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA ||
		    ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN ||
		    ldns_rr_rd_count(rr) != 7)
			continue;
		const ldns_rdf *minimum = ldns_rr_rdf(rr, 6);
		if (!dns_rdf_is(minimum, LDNS_RDF_TYPE_PERIOD, 4) &&
		    !dns_rdf_is(minimum, LDNS_RDF_TYPE_INT32, 4))
			continue;
		out->ttl =
		    dns_min_u32(dns_ttl_clamp(ldns_rr_ttl(rr)),
				dns_ttl_clamp(ldns_rdf2native_int32(minimum)));
		if (chain_ttl != DNS_TTL_MAX)
			out->ttl = dns_min_u32(out->ttl, chain_ttl);
		break;
	}
	return 1;
}

int dns_parse_answer(const uint8_t *pkt, size_t len, uint16_t expect_id,
		     const char *qname, uint16_t qtype, struct dns_answer *out,
		     char *err, size_t errsize)
{
	char abs[DNS_NAME_MAX + 2];

	out->rcode = DNS_RCODE_NOERROR;
	out->truncated = false;
	out->capped = false;
	out->ttl = 0;
	out->count = 0;

	/* Cheap header checks first: a flood of junk never reaches ldns. */
	if (len < DNS_HEADER_LEN) {
		dns_msg(err, errsize, "short answer (%zu bytes)", len);
		return -1;
	}
	if (len > DNS_MSG_MAX) {
		dns_msg(err, errsize, "answer too long (%zu bytes)", len);
		return -1;
	}
	uint16_t id = (uint16_t)((pkt[0] << 8) | pkt[1]);
	if (id != expect_id) {
		dns_msg(err, errsize, "answer id %u, expected %u",
			(unsigned int)id, (unsigned int)expect_id);
		return -1;
	}
	if ((pkt[2] & 0x80) == 0) {
		dns_msg(err, errsize, "not an answer (QR clear)");
		return -1;
	}
	if (((pkt[2] >> 3) & 0x0f) != LDNS_PACKET_QUERY) {
		dns_msg(err, errsize, "answer has opcode %u, not QUERY",
			(unsigned int)((pkt[2] >> 3) & 0x0f));
		return -1;
	}
	if (qtype != DNS_TYPE_A && qtype != DNS_TYPE_AAAA &&
	    qtype != DNS_TYPE_SRV) {
		dns_msg(err, errsize, "unsupported query type %u",
			(unsigned int)qtype);
		return -1;
	}
	if (!dns_name_absolute(qname, abs)) {
		dns_msg(err, errsize, "invalid DNS name");
		return -1;
	}
	ldns_rdf *want = ldns_dname_new_frm_str(abs);
	if (want == NULL) {
		dns_msg(err, errsize, "invalid DNS name");
		return -1;
	}
	ldns_pkt *p = NULL;
	ldns_status st = ldns_wire2pkt(&p, pkt, len);
	if (st != LDNS_STATUS_OK || p == NULL) {
		dns_msg(err, errsize, "malformed answer: %s",
			ldns_get_errorstr_by_id(st));
		ldns_pkt_free(p);
		ldns_rdf_deep_free(want);
		return -1;
	}
	int ret = dns_parse_pkt(p, want, qtype, out, err, errsize);
	ldns_pkt_free(p);
	ldns_rdf_deep_free(want);
	return ret;
}

/* ---- server lists -------------------------------------------------------- */

static int dns_server_parse_one(struct str tok, struct net_addr *addr,
				char *err, size_t errsize)
{
	char text[NET_ADDR_STR_MAX + 8];
	char shown[DNS_MSG_NAME_MAX];
	const char *error;

	if (!str_copy(tok, text, sizeof(text))) {
		dns_msg(err, errsize, "DNS server address too long: <%s>",
			str_sanitize(tok, shown, sizeof(shown)));
		return -1;
	}
	if (net_addr_parse(text, NET_ADDR_PORT_OPTIONAL, addr, &error) < 0) {
		dns_msg(err, errsize, "invalid DNS server address <%s>: %s",
			str_sanitize(tok, shown, sizeof(shown)), error);
		return -1;
	}
	if (net_addr_is_any(addr)) {
		dns_msg(err, errsize,
			"invalid DNS server address <%s>: "
			"unspecified address",
			str_sanitize(tok, shown, sizeof(shown)));
		return -1;
	}
	if (net_addr_port(addr) == 0)
		net_addr_set_port(addr, 53);
	return 0;
}

static bool dns_is_sep(char c)
{
	return c == ' ' || c == '\t' || c == ',' || c == '\r' || c == '\n';
}

int dns_servers_parse(const char *text, struct net_addr *addrs_r, size_t max,
		      size_t *count_r, char *err, size_t errsize)
{
	size_t n = 0;
	const char *p = text;

	*count_r = 0;
	for (;;) {
		while (*p != '\0' && dns_is_sep(*p))
			p++;
		if (*p == '\0')
			break;
		const char *start = p;
		while (*p != '\0' && !dns_is_sep(*p))
			p++;
		if (n == max) {
			dns_msg(err, errsize, "more than %zu DNS servers", max);
			return -1;
		}
		if (dns_server_parse_one(str_from(start, (size_t)(p - start)),
					 &addrs_r[n], err, errsize) < 0)
			return -1;
		n++;
	}
	if (n == 0) {
		dns_msg(err, errsize, "no DNS servers given");
		return -1;
	}
	*count_r = n;
	return 0;
}

/* The "nameserver ADDRESS" lines of a resolv.conf; bad ones are skipped,
 * like the C library does. Returns how many were written. */
static size_t dns_resolv_conf_servers(const char *path, struct net_addr *addrs,
				      size_t max)
{
	char line[DNS_RESOLV_CONF_LINE_MAX];
	char err[DNS_ERROR_MAX];
	size_t n = 0;
	FILE *f = fopen(path, "re");

	if (f == NULL)
		return 0;
	while (n < max && fgets(line, sizeof(line), f) != NULL) {
		size_t len = strlen(line);
		if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
			/* too long for a nameserver line: skip the rest */
			int c;
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
			continue;
		}
		struct str s = str_trim(str_from(line, len));
		const struct str kw = STR("nameserver");
		if (s.len <= kw.len || memcmp(s.p, kw.p, kw.len) != 0 ||
		    (s.p[kw.len] != ' ' && s.p[kw.len] != '\t'))
			continue;
		s = str_trim(str_slice(s, kw.len, s.len));
		size_t end = 0;
		while (end < s.len && s.p[end] != ' ' && s.p[end] != '\t' &&
		       s.p[end] != '#' && s.p[end] != ';')
			end++;
		if (dns_server_parse_one(str_slice(s, 0, end), &addrs[n], err,
					 sizeof(err)) < 0) {
			log_warnx("dns: %s: %s (line skipped)", path, err);
			continue;
		}
		n++;
	}
	fclose(f);
	return n;
}

/* ---- resolver, queries, transfers ---------------------------------------- */

enum dns_xfer_state {
	DNS_XFER_IDLE = 0,  /* not sent yet: the timer fires at once to send */
	DNS_XFER_UDP,       /* a UDP try is out, waiting for its answer */
	DNS_XFER_TCP_WRITE, /* TC seen: connecting and sending over TCP */
	DNS_XFER_TCP_READ,  /* reading the length-prefixed TCP answer */
	DNS_XFER_DONE,      /* finished: status, error and answer are final */
};

static const char *const dns_xfer_state_names[] = {
    [DNS_XFER_IDLE] = "idle",           [DNS_XFER_UDP] = "udp",
    [DNS_XFER_TCP_WRITE] = "tcp-write", [DNS_XFER_TCP_READ] = "tcp-read",
    [DNS_XFER_DONE] = "done",
};

struct dns_query;

/* The lookup of one record type. */
struct dns_xfer {
	struct dns_query *query;
	enum dns_xfer_state state;
	uint16_t qtype;
	uint16_t id;             /* of the current try */
	unsigned int tries;      /* tries started */
	size_t server;           /* index of the current try's server */
	int fd;                  /* the current try's socket, or -1 */
	struct event *ev;        /* on fd */
	struct net_timer *timer; /* start, then the current try's deadline */
	/* 2-byte length prefix (TCP), then the query */
	uint8_t out[2 + DNS_QUERY_MAX];
	size_t out_len;  /* query bytes, without the prefix */
	size_t tcp_sent; /* bytes of out sent over TCP, prefix included */
	uint8_t *tcp_in; /* TCP: 2-byte length, then the answer */
	size_t tcp_have;
	enum dns_status status;
	/* the last try's failure; when DONE, the final message */
	char error[DNS_ERROR_MAX];
	/* why the last dropped answer was dropped ("" = none dropped) */
	char rejected[DNS_ERROR_MAX];
	struct dns_answer *answer;
};

struct dns_query {
	struct dns_resolver *resolver;
	struct dns_query *prev, *next; /* resolver->queries */
	enum dns_lookup_kind kind;
	dns_result_fn *cb;
	void *context;
	char *name;
	bool name_too_long;
	bool in_callback;
	unsigned int xfer_count;
	unsigned int xfers_left; /* not DONE yet */
	struct dns_xfer xfers[2];
	char error[DNS_ERROR_MAX]; /* a message made from both transfers */
};

struct dns_resolver {
	struct event_base *base;
	struct net_addr servers[DNS_SERVERS_MAX];
	size_t server_count;
	unsigned int timeout_msecs;  /* per try */
	unsigned int tries_max;      /* (1 + retries) * server_count */
	struct dns_query *queries;   /* pending */
	uint8_t rx[DNS_MSG_MAX + 1]; /* UDP receive buffer, shared */
};

const char *dns_status_name(enum dns_status status)
{
	switch (status) {
	case DNS_OK:
		return "ok";
	case DNS_NXDOMAIN:
		return "nxdomain";
	case DNS_NODATA:
		return "nodata";
	case DNS_SERVFAIL:
		return "servfail";
	case DNS_TIMEOUT:
		return "timeout";
	case DNS_ERROR:
		return "error";
	}
	return "?";
}

struct dns_resolver *dns_resolver_new(struct event_base *base,
				      const char *servers,
				      uint64_t timeout_msecs,
				      unsigned int retries, char *err,
				      size_t errsize)
{
	struct net_addr addrs[DNS_SERVERS_MAX];
	size_t n = 0;

	if (timeout_msecs == 0)
		timeout_msecs = DNS_TIMEOUT_DEFAULT_MSECS;
	if (timeout_msecs > DNS_TIMEOUT_MAX_MSECS) {
		dns_msg(
		    err, errsize, "DNS timeout %llu ms is over the limit %u ms",
		    (unsigned long long)timeout_msecs, DNS_TIMEOUT_MAX_MSECS);
		return NULL;
	}
	if (retries > DNS_RETRIES_MAX) {
		dns_msg(err, errsize, "DNS retries %u is over the limit %u",
			retries, DNS_RETRIES_MAX);
		return NULL;
	}
	if (servers != NULL) {
		if (dns_servers_parse(servers, addrs, DNS_SERVERS_MAX, &n, err,
				      errsize) < 0)
			return NULL;
	} else {
		n = dns_resolv_conf_servers(DNS_RESOLV_CONF, addrs,
					    DNS_SERVERS_MAX);
		if (n == 0) {
			const char *error;
			if (net_addr_parse("127.0.0.1:53", 0, &addrs[0],
					   &error) < 0) {
				dns_msg(err, errsize, "%s", error);
				return NULL;
			}
			n = 1;
		}
	}

	struct dns_resolver *r = xcalloc(1, sizeof(*r));
	r->base = base;
	memcpy(r->servers, addrs, n * sizeof(addrs[0]));
	r->server_count = n;
	r->timeout_msecs = (unsigned int)timeout_msecs;
	r->tries_max = (1 + retries) * (unsigned int)n;
	return r;
}

static void dns_query_free(struct dns_query *q);

void dns_resolver_free(struct dns_resolver **rp)
{
	struct dns_resolver *r = *rp;

	if (r == NULL)
		return;
	*rp = NULL;
	if (r->queries != NULL) {
		unsigned int n = 0;
		while (r->queries != NULL) {
			dns_query_free(r->queries);
			n++;
		}
		log_error("dns: resolver freed with %u queries pending "
			  "(cancelled without callbacks)",
			  n);
	}
	free(r);
}

static void dns_xfer_set_state(struct dns_xfer *x, enum dns_xfer_state state)
{
	if (log_level_enabled(LOG_LEVEL_DEBUG)) {
		char shown[DNS_MSG_NAME_MAX];
		log_debug("dns: %s %s: %s -> %s try=%u",
			  dns_msg_name(x->query->name, shown, sizeof(shown)),
			  dns_type_name(x->qtype),
			  dns_xfer_state_names[x->state],
			  dns_xfer_state_names[state], x->tries);
	}
	x->state = state;
}

/* Closes the current try's socket and event (the timer stays). */
static void dns_xfer_close(struct dns_xfer *x)
{
	if (x->ev != NULL) {
		event_free(x->ev);
		x->ev = NULL;
	}
	if (x->fd != -1) {
		close(x->fd);
		x->fd = -1;
	}
	free(x->tcp_in);
	x->tcp_in = NULL;
	x->tcp_have = 0;
	x->tcp_sent = 0;
}

static const char *dns_xfer_server(const struct dns_xfer *x, char *dst,
				   size_t size)
{
	return net_addr_str(&x->query->resolver->servers[x->server], dst, size);
}

static void dns_query_complete(struct dns_query *q);

/* Ends x with status; the final message goes into x->error. When it was
 * the query's last transfer the callback runs and the query is freed:
 * the caller must not touch x (or its query) afterwards. */
static void dns_xfer_finish(struct dns_xfer *x, enum dns_status status)
{
	struct dns_query *q = x->query;
	char shown[DNS_MSG_NAME_MAX];
	char reason[DNS_ERROR_MAX];

	dns_xfer_close(x);
	net_timer_stop(x->timer);
	dns_xfer_set_state(x, DNS_XFER_DONE);
	x->status = status;
	dns_msg_name(q->name, shown, sizeof(shown));
	switch (status) {
	case DNS_OK:
		x->error[0] = '\0';
		break;
	case DNS_NXDOMAIN:
		dns_msg(x->error, sizeof(x->error),
			"%s: no such name (NXDOMAIN)", shown);
		break;
	case DNS_NODATA:
		dns_msg(x->error, sizeof(x->error), "%s: no %s records", shown,
			dns_type_name(x->qtype));
		break;
	case DNS_SERVFAIL:
	case DNS_TIMEOUT:
	case DNS_ERROR:
		memcpy(reason, x->error, sizeof(reason));
		if (x->tries == 0) {
			dns_msg(x->error, sizeof(x->error), "%s", reason);
		} else if (x->rejected[0] != '\0') {
			dns_msg(x->error, sizeof(x->error),
				"%s %s: %s (%u %s; last dropped answer: %s)",
				shown, dns_type_name(x->qtype), reason,
				x->tries, x->tries == 1 ? "try" : "tries",
				x->rejected);
		} else {
			dns_msg(x->error, sizeof(x->error), "%s %s: %s (%u %s)",
				shown, dns_type_name(x->qtype), reason,
				x->tries, x->tries == 1 ? "try" : "tries");
		}
		break;
	}
	if (--q->xfers_left == 0)
		dns_query_complete(q);
}

static int dns_xfer_send_udp(struct dns_xfer *x)
{
	struct dns_resolver *r = x->query->resolver;
	const struct net_addr *sa = &r->servers[x->server];
	char addr[NET_ADDR_STR_MAX];

	int fd = socket(sa->u.sa.sa_family,
			SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		dns_msg(x->error, sizeof(x->error), "socket(): %s",
			strerror(errno));
		return -1;
	}
	/* A connected socket: the kernel picks a random source port and
	 * drops datagrams from any other address. */
	if (connect(fd, &sa->u.sa, sa->len) == -1) {
		dns_msg(x->error, sizeof(x->error), "connect(%s): %s",
			net_addr_str(sa, addr, sizeof(addr)), strerror(errno));
		close(fd);
		return -1;
	}
	ssize_t n = send(fd, x->out + 2, x->out_len, 0);
	if (n == -1 || (size_t)n != x->out_len) {
		dns_msg(x->error, sizeof(x->error), "send(%s): %s",
			net_addr_str(sa, addr, sizeof(addr)),
			n == -1 ? strerror(errno) : "short write");
		close(fd);
		return -1;
	}
	x->fd = fd;
	return 0;
}

static void dns_xfer_udp_cb(evutil_socket_t fd, short what, void *arg);
static void dns_xfer_tcp_cb(evutil_socket_t fd, short what, void *arg);

/* Starts the next try, or finishes x with the last failure when none is
 * left. May free x's query (see dns_xfer_finish). */
static void dns_xfer_next_try(struct dns_xfer *x, enum dns_status failure)
{
	struct dns_resolver *r = x->query->resolver;

	for (;;) {
		dns_xfer_close(x);
		if (x->tries >= r->tries_max) {
			dns_xfer_finish(x, failure);
			return;
		}
		x->server = x->tries % r->server_count;
		x->tries++;
		x->id = (uint16_t)arc4random();
		x->out[2] = (uint8_t)(x->id >> 8);
		x->out[3] = (uint8_t)(x->id & 0xff);
		if (dns_xfer_send_udp(x) == 0) {
			x->ev = event_new(r->base, x->fd, EV_READ | EV_PERSIST,
					  dns_xfer_udp_cb, x);
			if (x->ev == NULL || event_add(x->ev, NULL) == -1)
				xalloc_fail_abort();
			dns_xfer_set_state(x, DNS_XFER_UDP);
			net_timer_start(x->timer, r->timeout_msecs, false);
			return;
		}
		failure = DNS_ERROR;
		log_debug("dns: try failed: %s", x->error);
	}
}

/* The current try failed for reason fmt: go on with the next one. May
 * free x's query. */
static void dns_xfer_try_failed(struct dns_xfer *x, enum dns_status status,
				const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dns_xfer_try_failed(struct dns_xfer *x, enum dns_status status,
				const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dns_vmsg(x->error, sizeof(x->error), fmt, ap);
	va_end(ap);
	if (log_level_enabled(LOG_LEVEL_DEBUG)) {
		char shown[DNS_MSG_NAME_MAX];
		log_debug("dns: %s %s: try %u failed: %s",
			  dns_msg_name(x->query->name, shown, sizeof(shown)),
			  dns_type_name(x->qtype), x->tries, x->error);
	}
	dns_xfer_next_try(x, status);
}

static void dns_xfer_start_tcp(struct dns_xfer *x)
{
	struct dns_resolver *r = x->query->resolver;
	char err[NET_ERROR_MAX];

	dns_xfer_close(x);
	x->out[0] = (uint8_t)(x->out_len >> 8);
	x->out[1] = (uint8_t)(x->out_len & 0xff);
	int fd = net_connect(&r->servers[x->server], NULL, err, sizeof(err));
	if (fd == -1) {
		dns_xfer_try_failed(x, DNS_ERROR, "TCP: %s", err);
		return;
	}
	x->fd = fd;
	x->tcp_in = xmalloc(2 + DNS_MSG_MAX);
	x->ev =
	    event_new(r->base, fd, EV_WRITE | EV_PERSIST, dns_xfer_tcp_cb, x);
	if (x->ev == NULL || event_add(x->ev, NULL) == -1)
		xalloc_fail_abort();
	dns_xfer_set_state(x, DNS_XFER_TCP_WRITE);
	/* a fresh deadline for the TCP part of the try */
	net_timer_start(x->timer, r->timeout_msecs, false);
}

/* Handles one answer of the current try. Returns true when x moved on
 * (finished, next try or TCP): the caller must then not touch x. */
static bool dns_xfer_handle_answer(struct dns_xfer *x, const uint8_t *pkt,
				   size_t len, bool tcp)
{
	struct dns_query *q = x->query;
	char err[DNS_ERROR_MAX];
	char addr[NET_ADDR_STR_MAX];

	if (dns_parse_answer(pkt, len, x->id, q->name, x->qtype, x->answer, err,
			     sizeof(err)) < 0) {
		dns_msg(x->rejected, sizeof(x->rejected), "%s from %s", err,
			dns_xfer_server(x, addr, sizeof(addr)));
		if (tcp) {
			dns_xfer_try_failed(x, DNS_ERROR, "bad TCP answer: %s",
					    x->rejected);
			return true;
		}
		log_debug("dns: dropped an answer: %s", x->rejected);
		return false;
	}
	if (x->answer->truncated && !tcp) {
		dns_xfer_start_tcp(x);
		return true;
	}
	switch (x->answer->rcode) {
	case DNS_RCODE_NOERROR:
		dns_xfer_finish(x, x->answer->count > 0 ? DNS_OK : DNS_NODATA);
		return true;
	case DNS_RCODE_NXDOMAIN:
		dns_xfer_finish(x, DNS_NXDOMAIN);
		return true;
	default:
		dns_xfer_try_failed(x, DNS_SERVFAIL, "%s from %s",
				    dns_rcode_name(x->answer->rcode),
				    dns_xfer_server(x, addr, sizeof(addr)));
		return true;
	}
}

static void dns_xfer_udp_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_xfer *x = arg;
	struct dns_resolver *r = x->query->resolver;
	char addr[NET_ADDR_STR_MAX];

	(void)what;
	for (int i = 0; i < DNS_UDP_READS_PER_WAKEUP; i++) {
		ssize_t n = recv(fd, r->rx, sizeof(r->rx), 0);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR)
				return;
			/* e.g. ECONNREFUSED: nothing listens there */
			dns_xfer_try_failed(
			    x, DNS_ERROR, "recv(%s): %s",
			    dns_xfer_server(x, addr, sizeof(addr)),
			    strerror(errno));
			return;
		}
		if (dns_xfer_handle_answer(x, r->rx, (size_t)n, false))
			return;
	}
}

static void dns_xfer_tcp_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_xfer *x = arg;
	struct dns_resolver *r = x->query->resolver;
	char addr[NET_ADDR_STR_MAX];

	(void)what;
	if (x->state == DNS_XFER_TCP_WRITE) {
		if (x->tcp_sent == 0) {
			int ret = net_connect_result(fd);
			if (ret == 0)
				return;
			if (ret < 0) {
				dns_xfer_try_failed(
				    x, DNS_ERROR, "TCP connect(%s): %s",
				    dns_xfer_server(x, addr, sizeof(addr)),
				    strerror(errno));
				return;
			}
		}
		size_t total = 2 + x->out_len;
		ssize_t n = send(fd, x->out + x->tcp_sent, total - x->tcp_sent,
				 MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR)
				return;
			dns_xfer_try_failed(
			    x, DNS_ERROR, "TCP send(%s): %s",
			    dns_xfer_server(x, addr, sizeof(addr)),
			    strerror(errno));
			return;
		}
		x->tcp_sent += (size_t)n;
		if (x->tcp_sent < total)
			return;
		event_free(x->ev);
		x->ev = event_new(r->base, fd, EV_READ | EV_PERSIST,
				  dns_xfer_tcp_cb, x);
		if (x->ev == NULL || event_add(x->ev, NULL) == -1)
			xalloc_fail_abort();
		dns_xfer_set_state(x, DNS_XFER_TCP_READ);
		return;
	}

	size_t need = 2;
	if (x->tcp_have >= 2)
		need += (size_t)((x->tcp_in[0] << 8) | x->tcp_in[1]);
	ssize_t n = recv(fd, x->tcp_in + x->tcp_have, need - x->tcp_have, 0);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		dns_xfer_try_failed(x, DNS_ERROR, "TCP recv(%s): %s",
				    dns_xfer_server(x, addr, sizeof(addr)),
				    strerror(errno));
		return;
	}
	if (n == 0) {
		dns_xfer_try_failed(x, DNS_ERROR,
				    "TCP connection to %s closed before the "
				    "answer",
				    dns_xfer_server(x, addr, sizeof(addr)));
		return;
	}
	x->tcp_have += (size_t)n;
	if (x->tcp_have == 2) {
		size_t len = (size_t)((x->tcp_in[0] << 8) | x->tcp_in[1]);
		if (len < DNS_HEADER_LEN) {
			dns_xfer_try_failed(
			    x, DNS_ERROR, "TCP answer from %s of %zu bytes",
			    dns_xfer_server(x, addr, sizeof(addr)), len);
		}
		return;
	}
	if (x->tcp_have == need)
		(void)dns_xfer_handle_answer(x, x->tcp_in + 2, need - 2, true);
}

static void dns_xfer_timer_cb(void *context)
{
	struct dns_xfer *x = context;
	struct dns_query *q = x->query;
	char addr[NET_ADDR_STR_MAX];

	switch (x->state) {
	case DNS_XFER_IDLE:
		if (q->name_too_long) {
			dns_msg(x->error, sizeof(x->error),
				"invalid DNS name: longer than %d bytes",
				DNS_NAME_MAX);
			dns_xfer_finish(x, DNS_ERROR);
			return;
		}
		if (dns_build_query(q->name, x->qtype, 0, x->out + 2,
				    sizeof(x->out) - 2, &x->out_len, x->error,
				    sizeof(x->error)) < 0) {
			dns_xfer_finish(x, DNS_ERROR);
			return;
		}
		dns_xfer_next_try(x, DNS_ERROR);
		return;
	case DNS_XFER_UDP:
	case DNS_XFER_TCP_WRITE:
	case DNS_XFER_TCP_READ:
		dns_xfer_try_failed(x, DNS_TIMEOUT,
				    "no answer from %s in %u ms%s",
				    dns_xfer_server(x, addr, sizeof(addr)),
				    q->resolver->timeout_msecs,
				    x->state == DNS_XFER_UDP ? "" : " (TCP)");
		return;
	case DNS_XFER_DONE:
		break;
	}
	fatalx("dns: timer fired on a finished lookup");
}

static void dns_query_free(struct dns_query *q)
{
	struct dns_resolver *r = q->resolver;

	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		r->queries = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	for (unsigned int i = 0; i < q->xfer_count; i++) {
		struct dns_xfer *x = &q->xfers[i];
		dns_xfer_close(x);
		net_timer_free(&x->timer);
		free(x->answer);
	}
	free(q->name);
	free(q);
}

static int dns_srv_cmp(const void *a, const void *b)
{
	const struct dns_srv *x = &((const struct dns_record *)a)->srv;
	const struct dns_srv *y = &((const struct dns_record *)b)->srv;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	if (x->weight != y->weight)
		return x->weight > y->weight ? -1 : 1;
	int c = strcmp(x->target, y->target);
	if (c != 0)
		return c;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	return 0;
}

static bool dns_status_is_failure(enum dns_status s)
{
	return s == DNS_SERVFAIL || s == DNS_TIMEOUT || s == DNS_ERROR;
}

/* Builds the result from the transfers, runs the callback, frees q. */
static void dns_query_complete(struct dns_query *q)
{
	struct dns_result res = {.status = DNS_OK};
	struct dns_record *merged = NULL;

	if (q->kind == DNS_LOOKUP_SRV) {
		struct dns_xfer *x = &q->xfers[0];
		res.status = x->status;
		if (x->status == DNS_OK) {
			qsort(x->answer->records, x->answer->count,
			      sizeof(x->answer->records[0]), dns_srv_cmp);
			res.records = x->answer->records;
			res.count = x->answer->count;
			res.capped = x->answer->capped;
		} else {
			res.error = x->error;
		}
		if (!dns_status_is_failure(x->status))
			res.ttl = x->answer->ttl;
	} else {
		const struct dns_xfer *a = &q->xfers[0], *aaaa = &q->xfers[1];
		if (a->status == DNS_OK || aaaa->status == DNS_OK) {
			merged = xcalloc(DNS_MAX_RECORDS, sizeof(*merged));
			res.ttl = DNS_TTL_MAX;
			for (unsigned int i = 0; i < 2; i++) {
				const struct dns_xfer *x = &q->xfers[i];
				if (x->status != DNS_OK) {
					if (dns_status_is_failure(x->status))
						res.partial = true;
					continue;
				}
				res.ttl = dns_min_u32(res.ttl, x->answer->ttl);
				res.capped |= x->answer->capped;
				for (size_t j = 0; j < x->answer->count; j++) {
					if (res.count == DNS_MAX_RECORDS) {
						res.capped = true;
						break;
					}
					merged[res.count++] =
					    x->answer->records[j];
				}
			}
			res.records = merged;
		} else if (a->status == DNS_NXDOMAIN ||
			   aaaa->status == DNS_NXDOMAIN) {
			const struct dns_xfer *x =
			    a->status == DNS_NXDOMAIN ? a : aaaa;
			res.status = DNS_NXDOMAIN;
			res.error = x->error;
			res.ttl = x->answer->ttl;
		} else if (a->status == DNS_NODATA &&
			   aaaa->status == DNS_NODATA) {
			char shown[DNS_MSG_NAME_MAX];
			res.status = DNS_NODATA;
			dns_msg(q->error, sizeof(q->error),
				"%s: no A or AAAA records",
				dns_msg_name(q->name, shown, sizeof(shown)));
			res.error = q->error;
			res.ttl =
			    dns_min_u32(a->answer->ttl, aaaa->answer->ttl);
		} else {
			const struct dns_xfer *x =
			    dns_status_is_failure(a->status) ? a : aaaa;
			res.status = x->status;
			res.error = x->error;
		}
	}

	q->in_callback = true;
	q->cb(&res, q->context);
	free(merged);
	dns_query_free(q);
}

static struct dns_query *dns_lookup(struct dns_resolver *r,
				    enum dns_lookup_kind kind, const char *name,
				    dns_result_fn *cb, void *context)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));
	size_t len = strnlen(name, DNS_NAME_MAX + 2);

	q->resolver = r;
	q->kind = kind;
	q->cb = cb;
	q->context = context;
	q->name = xstrndup(name, len);
	q->name_too_long = len > DNS_NAME_MAX + 1;
	if (kind == DNS_LOOKUP_ADDR) {
		q->xfers[0].qtype = DNS_TYPE_A;
		q->xfers[1].qtype = DNS_TYPE_AAAA;
		q->xfer_count = 2;
	} else {
		q->xfers[0].qtype = DNS_TYPE_SRV;
		q->xfer_count = 1;
	}
	q->xfers_left = q->xfer_count;
	for (unsigned int i = 0; i < q->xfer_count; i++) {
		struct dns_xfer *x = &q->xfers[i];
		x->query = q;
		x->state = DNS_XFER_IDLE;
		x->fd = -1;
		x->status = DNS_ERROR;
		x->answer = xmalloc(sizeof(*x->answer));
		x->answer->count = 0;
		x->answer->ttl = 0;
		x->timer = net_timer_new(r->base, dns_xfer_timer_cb, x);
		/* sent from the loop, so cb never runs inside this call */
		net_timer_start(x->timer, 0, false);
	}
	q->next = r->queries;
	if (q->next != NULL)
		q->next->prev = q;
	r->queries = q;
	return q;
}

struct dns_query *dns_lookup_addr(struct dns_resolver *r, const char *name,
				  dns_result_fn *cb, void *context)
{
	return dns_lookup(r, DNS_LOOKUP_ADDR, name, cb, context);
}

struct dns_query *dns_lookup_srv(struct dns_resolver *r, const char *name,
				 dns_result_fn *cb, void *context)
{
	return dns_lookup(r, DNS_LOOKUP_SRV, name, cb, context);
}

void dns_query_cancel(struct dns_query **qp)
{
	struct dns_query *q = *qp;

	if (q == NULL)
		return;
	*qp = NULL;
	/* from its own callback: dns_query_complete frees it afterwards */
	if (q->in_callback)
		return;
	dns_query_free(q);
}

/* ---- watches ------------------------------------------------------------- */

struct dns_watch {
	struct dns_resolver *resolver;
	enum dns_lookup_kind kind;
	char *name;
	struct dns_watch_settings set;
	dns_result_fn *cb;
	void *context;
	struct dns_query *query; /* the lookup in flight, or NULL */
	struct net_timer *timer; /* the next lookup */
};

static void dns_watch_result(const struct dns_result *res, void *context)
{
	struct dns_watch *w = context;
	uint64_t next;

	w->query = NULL;
	switch (res->status) {
	case DNS_OK:
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		next = (uint64_t)res->ttl * 1000;
		break;
	default:
		next = w->set.error_retry_msecs;
		break;
	}
	if (next < w->set.min_refresh_msecs)
		next = w->set.min_refresh_msecs;
	if (next > w->set.max_refresh_msecs)
		next = w->set.max_refresh_msecs;
	net_timer_start(w->timer, (unsigned int)next, false);
	/* last: cb may free w */
	w->cb(res, w->context);
}

static void dns_watch_start(struct dns_watch *w)
{
	net_timer_stop(w->timer);
	w->query =
	    dns_lookup(w->resolver, w->kind, w->name, dns_watch_result, w);
}

static void dns_watch_timer_cb(void *context)
{
	dns_watch_start(context);
}

static uint64_t dns_watch_setting(uint64_t value, uint64_t def)
{
	if (value == 0)
		value = def;
	return value > DNS_WATCH_MAX_MSECS ? DNS_WATCH_MAX_MSECS : value;
}

struct dns_watch *dns_watch_new(struct dns_resolver *r,
				enum dns_lookup_kind kind, const char *name,
				const struct dns_watch_settings *set,
				dns_result_fn *cb, void *context)
{
	struct dns_watch *w = xcalloc(1, sizeof(*w));
	const struct dns_watch_settings none = {0};

	if (set == NULL)
		set = &none;
	w->resolver = r;
	w->kind = kind;
	w->name = xstrndup(name, DNS_NAME_MAX + 2);
	w->set.min_refresh_msecs = dns_watch_setting(
	    set->min_refresh_msecs, DNS_WATCH_MIN_DEFAULT_MSECS);
	w->set.max_refresh_msecs = dns_watch_setting(
	    set->max_refresh_msecs, DNS_WATCH_MAX_DEFAULT_MSECS);
	w->set.error_retry_msecs = dns_watch_setting(
	    set->error_retry_msecs, DNS_WATCH_ERROR_DEFAULT_MSECS);
	if (w->set.max_refresh_msecs < w->set.min_refresh_msecs)
		w->set.max_refresh_msecs = w->set.min_refresh_msecs;
	w->cb = cb;
	w->context = context;
	w->timer = net_timer_new(r->base, dns_watch_timer_cb, w);
	dns_watch_start(w);
	return w;
}

void dns_watch_refresh(struct dns_watch *w)
{
	if (w->query == NULL)
		dns_watch_start(w);
}

void dns_watch_free(struct dns_watch **wp)
{
	struct dns_watch *w = *wp;

	if (w == NULL)
		return;
	*wp = NULL;
	dns_query_cancel(&w->query);
	net_timer_free(&w->timer);
	free(w->name);
	free(w);
}
