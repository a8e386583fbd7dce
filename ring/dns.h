#ifndef MR_RING_DNS_H
#define MR_RING_DNS_H

/*
 * Asynchronous DNS stub resolver for the director: backend host names
 * (A + AAAA) and backend discovery through SRV records, re-resolved when
 * the TTL runs out (dns_watch).
 *
 * It asks recursive servers (the configured list, or the nameservers of
 * /etc/resolv.conf) and never recurses itself. Packets are built and parsed
 * with ldns by two pure functions over bytes (dns_build_query,
 * dns_parse_answer), which the unit tests and the fuzz target drive.
 *
 * Anti-spoofing: every try uses a fresh connected UDP socket (so the kernel
 * picks a random source port and drops datagrams from other addresses) and
 * a random 16-bit id; an answer counts only if its id, question name
 * (case-insensitively), type and class match and QR is set. Anything else
 * is dropped and the try keeps waiting until its own deadline, which a
 * stream of bad answers cannot move. Only the answer section's records of
 * the asked name (or of the CNAME chain starting there) are used; the
 * additional section is ignored.
 *
 * Tries: a lookup asks server 0 first; on a timeout, a network error or a
 * SERVFAIL/REFUSED/FORMERR/NOTIMP answer it moves to the next server,
 * round-robin, for (1 + retries) * number_of_servers tries in all, each
 * with the per-try timeout. NXDOMAIN and NOERROR answers are final. An
 * answer with TC set is asked again over TCP to the same server (one
 * connection per try, within a fresh per-try timeout).
 *
 * Threading: a resolver, its queries and watches belong to the thread that
 * runs their event_base. Callbacks always run from that loop, never from
 * inside dns_lookup_*() or dns_watch_new().
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net.h"

struct event_base;

/* Record types the module understands. */
#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_SOA 6
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_SRV 33

/* Header RCODEs. */
#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_FORMERR 1
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3
#define DNS_RCODE_NOTIMP 4
#define DNS_RCODE_REFUSED 5

/* Longest name in text form, without the trailing dot (255 bytes on the
 * wire). */
#define DNS_NAME_MAX 253
/* Records kept per answer and per lookup result; more are dropped and the
 * answer is marked capped. */
#define DNS_MAX_RECORDS 64
/* CNAMEs followed from the question name before giving up. */
#define DNS_CNAME_MAX 8
/* Servers a resolver may have. */
#define DNS_SERVERS_MAX 8
/* Bytes of a query built by dns_build_query (a name of 255 wire bytes,
 * header and question). */
#define DNS_QUERY_MAX 512
/* Enough for every message this module writes. */
#define DNS_ERROR_MAX 512
/* Defaults for dns_resolver_new's timeout_msecs == 0, and its limits. */
#define DNS_TIMEOUT_DEFAULT_MSECS 2000
#define DNS_TIMEOUT_MAX_MSECS 60000
#define DNS_RETRIES_MAX 10
/* TTLs above 2^31-1 count as 0 (RFC 2181 section 8). */
#define DNS_TTL_MAX 0x7fffffffu

struct dns_srv {
	uint16_t priority;
	uint16_t weight;
	uint16_t port;
	char target[DNS_NAME_MAX + 1]; /* host name, no trailing dot */
};

struct dns_record {
	uint16_t type; /* DNS_TYPE_A, DNS_TYPE_AAAA or DNS_TYPE_SRV */
	/* The smallest TTL on the way to it: the CNAMEs followed and the
	 * record itself, in seconds. */
	uint32_t ttl;
	union {
		struct net_addr addr; /* A, AAAA: the address, port 0 */
		struct dns_srv srv;   /* SRV */
	};
};

/* ---- pure packet functions ----------------------------------------------- */

/* True when name is a host name we ask about: labels of 1..63 letters,
 * digits, '-' or '_', separated by dots, at most DNS_NAME_MAX bytes, with
 * an optional trailing dot. No escapes, no empty labels, not "." alone. */
bool dns_name_is_valid(const char *name);

/* Writes a standard query (RD set, class IN, no EDNS) for qname/qtype with
 * the given id into out (outsize bytes; DNS_QUERY_MAX always suffices) and
 * its length into *len_r. Returns 0, or -1 with err set (invalid name,
 * buffer too small). */
int dns_build_query(const char *qname, uint16_t qtype, uint16_t id,
		    uint8_t *out, size_t outsize, size_t *len_r, char *err,
		    size_t errsize);

/* What dns_parse_answer found. records[] holds count entries. */
struct dns_answer {
	uint16_t rcode; /* DNS_RCODE_* from the header */
	bool truncated; /* TC was set: records may be missing */
	bool capped; /* more than DNS_MAX_RECORDS matched; the rest dropped */
	/* count > 0: the smallest record TTL. count == 0: the negative-cache
	 * TTL, min(SOA TTL, SOA minimum) of an SOA in the authority section,
	 * or 0 without one. Seconds. */
	uint32_t ttl;
	size_t count;
	struct dns_record records[DNS_MAX_RECORDS];
};

/* Parses the answer to our question qname/qtype (A, AAAA or SRV) sent with
 * expect_id. Returns 1 when pkt is that answer: out->rcode says what the
 * server said, and for NOERROR out->records holds the records of type
 * qtype owned by qname or by the end of the CNAME chain that starts at
 * qname (at most DNS_CNAME_MAX links). SRV records with the target "."
 * (service not offered) or a target that is not a valid host name are
 * skipped. Returns -1 with err set when pkt is not an answer we may use:
 * malformed or short, QR clear, another opcode, id, name, type or class
 * not ours, a bad record of the asked type, a CNAME chain too long. The
 * caller then drops it and keeps waiting. Never touches more than len
 * bytes of pkt. */
int dns_parse_answer(const uint8_t *pkt, size_t len, uint16_t expect_id,
		     const char *qname, uint16_t qtype, struct dns_answer *out,
		     char *err, size_t errsize);

/* Parses a list of servers separated by blanks or commas: "127.0.0.1",
 * "127.0.0.1:5353", "::1", "[::1]:53"; without a port, 53. Writes at most
 * max addresses. Returns 0, or -1 with err set (bad address, too many, an
 * empty list). */
int dns_servers_parse(const char *text, struct net_addr *addrs_r, size_t max,
		      size_t *count_r, char *err, size_t errsize);

/* ---- resolver ------------------------------------------------------------ */

enum dns_status {
	DNS_OK = 0,   /* records found (count > 0) */
	DNS_NXDOMAIN, /* the name does not exist */
	DNS_NODATA,   /* the name exists without records of the type */
	DNS_SERVFAIL, /* servers answered SERVFAIL, REFUSED, ... */
	DNS_TIMEOUT,  /* no usable answer within the tries */
	DNS_ERROR,    /* invalid name, socket or network error */
};

/* "ok", "nxdomain", "nodata", "servfail", "timeout", "error". */
const char *dns_status_name(enum dns_status status);

/* The outcome of a lookup, valid during the callback only. */
struct dns_result {
	enum dns_status status;
	/* NULL for DNS_OK; else a message naming the name and, for
	 * network trouble, the server: "b9.example.net: no such name
	 * (NXDOMAIN)", "b1.example.net A: timeout after 3 tries (last
	 * server 127.0.0.1:53)". */
	const char *error;
	/* DNS_OK: the smallest TTL of the records. DNS_NXDOMAIN and
	 * DNS_NODATA: the negative-cache TTL (0 when unknown). Else 0. */
	uint32_t ttl;
	/* Address lookups: one of A and AAAA failed (timeout, servfail,
	 * error) and the records came from the other one. */
	bool partial;
	bool capped; /* more than DNS_MAX_RECORDS records; the rest dropped */
	size_t count;
	/* Address lookups: A records first, then AAAA, in answer order.
	 * SRV lookups: sorted by priority, then weight (highest first), then
	 * target and port, so equal answers compare equal. */
	const struct dns_record *records;
};

typedef void dns_result_fn(const struct dns_result *result, void *context);

struct dns_resolver;
struct dns_query;

/* Creates a resolver on base. servers: see dns_servers_parse; NULL reads
 * the "nameserver" lines of /etc/resolv.conf (a blocking file read: call
 * this at start-up or reload), and without any uses 127.0.0.1:53 like the
 * C library. timeout_msecs is per try (0 = DNS_TIMEOUT_DEFAULT_MSECS, at
 * most DNS_TIMEOUT_MAX_MSECS); retries is the number of extra rounds over
 * the server list (at most DNS_RETRIES_MAX). Returns NULL with err set. */
struct dns_resolver *dns_resolver_new(struct event_base *base,
				      const char *servers,
				      uint64_t timeout_msecs,
				      unsigned int retries, char *err,
				      size_t errsize);

/* Frees *r and sets it to NULL; safe on NULL. Cancel queries and free
 * watches first: any still pending are cancelled without their callbacks
 * (and an error is logged, as that is a caller bug); their handles are
 * then invalid. Not from a callback of this resolver. */
void dns_resolver_free(struct dns_resolver **r);

/* Looks up the A and AAAA records of name (in parallel). cb runs once,
 * later, from the event loop, unless the query is cancelled first. The
 * handle is valid until cb returns or dns_query_cancel; the query is
 * freed right after cb returns. Never NULL; an invalid name fails through
 * cb with DNS_ERROR. */
struct dns_query *dns_lookup_addr(struct dns_resolver *r, const char *name,
				  dns_result_fn *cb, void *context);

/* Looks up the SRV records of name ("_imap._tcp.example.net"). The
 * targets' addresses are not resolved: call dns_lookup_addr (or a watch)
 * for each target, as their TTLs differ from the SRV record's. Otherwise
 * as dns_lookup_addr. */
struct dns_query *dns_lookup_srv(struct dns_resolver *r, const char *name,
				 dns_result_fn *cb, void *context);

/* Cancels *q: its callback will not be called, and everything it holds is
 * freed. Sets *q to NULL. Safe on NULL, and from the query's own callback
 * (then only *q is cleared: the query is freed when cb returns). */
void dns_query_cancel(struct dns_query **q);

/* ---- watches: re-resolving when the TTL runs out ------------------------- */

enum dns_lookup_kind {
	DNS_LOOKUP_ADDR = 0, /* A + AAAA */
	DNS_LOOKUP_SRV,      /* SRV */
};

struct dns_watch_settings {
	/* The next lookup starts after the result's TTL, at least
	 * min_refresh_msecs (0 = 1000) and at most max_refresh_msecs
	 * (0 = 3600000) later. After DNS_TIMEOUT, DNS_SERVFAIL or DNS_ERROR
	 * it starts after error_retry_msecs (0 = 5000), capped the same way. */
	uint64_t min_refresh_msecs;
	uint64_t max_refresh_msecs;
	uint64_t error_retry_msecs;
};

struct dns_watch;

/* Looks name up now and again whenever the result's TTL has run out,
 * calling cb with every result (errors too: a caller keeps what it had on
 * a timeout, and drops it on NXDOMAIN). set may be NULL (defaults). cb may
 * free the watch. Never NULL. */
struct dns_watch *dns_watch_new(struct dns_resolver *r,
				enum dns_lookup_kind kind, const char *name,
				const struct dns_watch_settings *set,
				dns_result_fn *cb, void *context);

/* Starts the next lookup now (e.g. after a backend failed), unless one is
 * running. */
void dns_watch_refresh(struct dns_watch *w);

/* Stops the watch (cancelling a lookup in flight) and frees *w; sets it to
 * NULL. Safe on NULL and from the watch's callback. */
void dns_watch_free(struct dns_watch **w);

#endif
