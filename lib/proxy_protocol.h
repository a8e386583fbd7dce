#ifndef MR_PROXY_PROTOCOL_H
#define MR_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/*
 * HAProxy PROXY protocol, versions 1 (text) and 2 (binary), as sent by a TCP
 * load balancer before any byte of the client's own stream (before the TLS
 * handshake on implicit-TLS ports). A pure parser: the caller reads bytes
 * (ideally with MSG_PEEK, so it never consumes past the header) and calls
 * proxy_proto_parse() until it stops asking for more.
 *
 * The address family of the header is independent of the socket's: an IPv6
 * client behind an IPv4 balancer arrives as a TCP6 header on an IPv4 socket.
 */

/* v1 is at most 107 bytes; v2 headers with TLVs are bounded by us, not by the
 * 16-bit length field, so a peer cannot make us buffer 64 KiB. */
#define PROXY_PROTO_V1_MAX 107
#define PROXY_PROTO_MAX_HEADER 1024

struct proxy_proto_info {
	int version;  /* 1 or 2 */
	/* false for v2 LOCAL and v1 UNKNOWN (health checks from the balancer
	 * itself): keep the socket's own addresses. */
	bool has_addresses;
	struct sockaddr_storage src; /* the real client */
	struct sockaddr_storage dst; /* the address the client connected to */
	socklen_t addrlen;
};

enum proxy_proto_result {
	PROXY_PROTO_ERROR = -1,
	PROXY_PROTO_NEED_MORE = 0,
	PROXY_PROTO_DONE = 1,
};

/* Parses a header at the start of data[0..len).
 * DONE: *info_r is filled and *consumed_r is the header length.
 * NEED_MORE: *consumed_r is the minimum total length needed before calling
 *   again (never more than PROXY_PROTO_MAX_HEADER).
 * ERROR: *error_r says why (not a PROXY header, bad address, too long...). */
enum proxy_proto_result proxy_proto_parse(const uint8_t *data, size_t len,
					  struct proxy_proto_info *info_r,
					  size_t *consumed_r,
					  const char **error_r);

#endif
