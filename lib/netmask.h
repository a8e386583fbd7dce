#ifndef MR_NETMASK_H
#define MR_NETMASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* An IPv4 or IPv6 network, e.g. 127.0.0.0/8 or ::1/128. The address is kept
 * with its host bits cleared. */
struct netmask {
	int family;        /* AF_INET or AF_INET6 */
	uint8_t addr[16];  /* network address, 4 or 16 bytes used */
	unsigned int bits; /* prefix length: 0..32 or 0..128 */
};

/* Enough for any netmask_format() output, with the NUL. */
#define NETMASK_STRLEN 64

/* Parses "ADDR" (a host: full-length prefix) or "ADDR/BITS". Host bits set
 * in ADDR are cleared. Returns 0, or -1 with *error_r set to a static
 * message. */
int netmask_parse(const char *text, struct netmask *net_r,
		  const char **error_r);

/* True when the address in sa (AF_INET or AF_INET6; the port is ignored)
 * lies inside net. IPv4 and v4-mapped IPv6 (::ffff:a.b.c.d) addresses are
 * treated as the same address. Other families never match. */
bool netmask_match(const struct netmask *net, const struct sockaddr *sa);

/* Writes "ADDR/BITS", or just "ADDR" for a full-length prefix, into dst
 * (NETMASK_STRLEN bytes are always enough). Returns dst. */
const char *netmask_format(const struct netmask *net, char *dst,
			   size_t dstsize);

#endif
