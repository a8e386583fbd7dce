#include "netmask.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "str.h"

static const uint8_t netmask_v4mapped_prefix[12] = {0, 0, 0, 0, 0,    0,
						    0, 0, 0, 0, 0xff, 0xff};

/* Clears every bit after the first bits of addr (len bytes). */
static void netmask_clear_host(uint8_t *addr, size_t len, unsigned int bits)
{
	for (size_t i = 0; i < len; i++) {
		if (bits >= 8) {
			bits -= 8;
		} else {
			addr[i] &= (uint8_t)(0xff << (8 - bits));
			bits = 0;
		}
	}
}

static bool netmask_prefix_eq(const uint8_t *a, const uint8_t *b,
			      unsigned int bits)
{
	size_t bytes = bits / 8;

	if (bytes > 0 && memcmp(a, b, bytes) != 0)
		return false;
	bits %= 8;
	if (bits == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - bits));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

int netmask_parse(const char *text, struct netmask *net_r, const char **error_r)
{
	char addr[INET6_ADDRSTRLEN];
	struct str head, tail;
	uint64_t bits;

	memset(net_r, 0, sizeof(*net_r));
	if (text == NULL || text[0] == '\0') {
		*error_r = "empty address";
		return -1;
	}
	bool has_bits = str_split(str_cstr(text), '/', &head, &tail);
	if (!str_copy(head, addr, sizeof(addr))) {
		*error_r = "invalid address";
		return -1;
	}
	if (inet_pton(AF_INET, addr, net_r->addr) == 1) {
		net_r->family = AF_INET;
		net_r->bits = 32;
	} else if (inet_pton(AF_INET6, addr, net_r->addr) == 1) {
		net_r->family = AF_INET6;
		net_r->bits = 128;
	} else {
		*error_r = "invalid address";
		return -1;
	}
	if (has_bits) {
		if (!str_to_u64(tail, net_r->bits, &bits)) {
			*error_r = net_r->family == AF_INET
				       ? "invalid prefix length (0-32)"
				       : "invalid prefix length (0-128)";
			return -1;
		}
		net_r->bits = (unsigned int)bits;
	}
	netmask_clear_host(net_r->addr, sizeof(net_r->addr), net_r->bits);
	return 0;
}

bool netmask_match(const struct netmask *net, const struct sockaddr *sa)
{
	uint8_t addr[16];
	int family;

	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		family = AF_INET;
		memcpy(addr, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)sa;
		family = AF_INET6;
		memcpy(addr, &sin6->sin6_addr, 16);
	} else {
		return false;
	}

	if (net->family == AF_INET && family == AF_INET6) {
		if (memcmp(addr, netmask_v4mapped_prefix, 12) != 0)
			return false;
		memmove(addr, addr + 12, 4);
		family = AF_INET;
	} else if (net->family == AF_INET6 && family == AF_INET) {
		memmove(addr + 12, addr, 4);
		memcpy(addr, netmask_v4mapped_prefix, 12);
		family = AF_INET6;
	}
	if (family != net->family)
		return false;
	return netmask_prefix_eq(addr, net->addr, net->bits);
}

const char *netmask_format(const struct netmask *net, char *dst, size_t dstsize)
{
	char addr[INET6_ADDRSTRLEN];
	unsigned int full = net->family == AF_INET ? 32 : 128;

	if (inet_ntop(net->family, net->addr, addr, sizeof(addr)) == NULL) {
		str_copy(STR("?"), dst, dstsize);
		return dst;
	}
	if (net->bits == full)
		str_copy(str_cstr(addr), dst, dstsize);
	else if (str_printf(dst, dstsize, "%s/%u", addr, net->bits) < 0)
		str_copy(STR("?"), dst, dstsize);
	return dst;
}
