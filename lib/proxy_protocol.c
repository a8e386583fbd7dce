#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "str.h"

static const uint8_t v2_signature[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

enum {
	V2_CMD_LOCAL = 0x0,
	V2_CMD_PROXY = 0x1,
	V2_FAM_UNSPEC = 0x00,
	V2_FAM_TCP4 = 0x11,
	V2_FAM_TCP6 = 0x21,
	V2_ADDR4_LEN = 12,
	V2_ADDR6_LEN = 36,
};

static void set_v4(struct sockaddr_storage *ss, const uint8_t addr[4],
		   uint16_t port_be)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	memcpy(&sin->sin_addr, addr, 4);
	sin->sin_port = port_be;
}

static void set_v6(struct sockaddr_storage *ss, const uint8_t addr[16],
		   uint16_t port_be)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	memcpy(&sin6->sin6_addr, addr, 16);
	sin6->sin6_port = port_be;
}

static enum proxy_proto_result parse_v2(const uint8_t *data, size_t len,
					struct proxy_proto_info *info,
					size_t *consumed_r,
					const char **error_r)
{
	if (len < 16) {
		*consumed_r = 16;
		return PROXY_PROTO_NEED_MORE;
	}
	uint8_t ver_cmd = data[12];
	uint8_t fam = data[13];
	size_t body_len = ((size_t)data[14] << 8) | data[15];

	if ((ver_cmd >> 4) != 2) {
		*error_r = "unsupported PROXY protocol version";
		return PROXY_PROTO_ERROR;
	}
	if (16 + body_len > PROXY_PROTO_MAX_HEADER) {
		*error_r = "PROXY v2 header too long";
		return PROXY_PROTO_ERROR;
	}
	if (len < 16 + body_len) {
		*consumed_r = 16 + body_len;
		return PROXY_PROTO_NEED_MORE;
	}
	const uint8_t *body = data + 16;
	uint16_t sport, dport;

	info->version = 2;
	switch (ver_cmd & 0x0f) {
	case V2_CMD_LOCAL:
		info->has_addresses = false;
		break;
	case V2_CMD_PROXY:
		if (fam == V2_FAM_TCP4) {
			if (body_len < V2_ADDR4_LEN) {
				*error_r = "PROXY v2 TCP4 address block too short";
				return PROXY_PROTO_ERROR;
			}
			memcpy(&sport, body + 8, 2);
			memcpy(&dport, body + 10, 2);
			set_v4(&info->src, body, sport);
			set_v4(&info->dst, body + 4, dport);
			info->addrlen = sizeof(struct sockaddr_in);
			info->has_addresses = true;
		} else if (fam == V2_FAM_TCP6) {
			if (body_len < V2_ADDR6_LEN) {
				*error_r = "PROXY v2 TCP6 address block too short";
				return PROXY_PROTO_ERROR;
			}
			memcpy(&sport, body + 32, 2);
			memcpy(&dport, body + 34, 2);
			set_v6(&info->src, body, sport);
			set_v6(&info->dst, body + 16, dport);
			info->addrlen = sizeof(struct sockaddr_in6);
			info->has_addresses = true;
		} else if (fam == V2_FAM_UNSPEC) {
			info->has_addresses = false;
		} else {
			*error_r = "unsupported PROXY v2 address family";
			return PROXY_PROTO_ERROR;
		}
		break;
	default:
		*error_r = "unknown PROXY v2 command";
		return PROXY_PROTO_ERROR;
	}
	/* TLVs (ALPN, authority, SSL info...) follow; we use none of them. */
	*consumed_r = 16 + body_len;
	return PROXY_PROTO_DONE;
}

static bool parse_port(struct str s, uint16_t *port_r)
{
	uint64_t v;
	/* the spec forbids leading zeros, which also keeps "0x" games out */
	if (s.len > 1 && s.p[0] == '0')
		return false;
	if (!str_to_u64(s, 65535, &v))
		return false;
	*port_r = htons((uint16_t)v);
	return true;
}

static bool parse_ip(struct str s, int family, uint8_t out[16])
{
	char tmp[INET6_ADDRSTRLEN];
	if (!str_copy(s, tmp, sizeof(tmp)))
		return false;
	return inet_pton(family, tmp, out) == 1;
}

/* Splits off the next space-separated field of a v1 line. */
static bool next_field(struct str *rest, struct str *field)
{
	if (rest->len == 0)
		return false;
	str_split(*rest, ' ', field, rest);
	return field->len > 0;
}

static enum proxy_proto_result parse_v1(const uint8_t *data, size_t len,
					struct proxy_proto_info *info,
					size_t *consumed_r,
					const char **error_r)
{
	size_t scan = len < PROXY_PROTO_V1_MAX ? len : PROXY_PROTO_V1_MAX;
	const uint8_t *cr = memchr(data, '\r', scan);

	if (cr == NULL) {
		if (len >= PROXY_PROTO_V1_MAX) {
			*error_r = "PROXY v1 header too long";
			return PROXY_PROTO_ERROR;
		}
		*consumed_r = len + 1;
		return PROXY_PROTO_NEED_MORE;
	}
	size_t line_len = (size_t)(cr - data);
	if (line_len + 2 > len) {
		*consumed_r = line_len + 2;
		return PROXY_PROTO_NEED_MORE;
	}
	if (cr[1] != '\n') {
		*error_r = "PROXY v1 header not terminated by CRLF";
		return PROXY_PROTO_ERROR;
	}
	struct str rest = str_from((const char *)data + 6, line_len - 6);
	struct str proto, sip, dip, sport_s, dport_s;
	uint8_t sa[16], da[16];
	uint16_t sport, dport;

	info->version = 1;
	*consumed_r = line_len + 2;
	if (!next_field(&rest, &proto)) {
		*error_r = "PROXY v1 header without protocol";
		return PROXY_PROTO_ERROR;
	}
	if (str_eq(proto, STR("UNKNOWN"))) {
		info->has_addresses = false;
		return PROXY_PROTO_DONE;
	}
	int family;
	if (str_eq(proto, STR("TCP4")))
		family = AF_INET;
	else if (str_eq(proto, STR("TCP6")))
		family = AF_INET6;
	else {
		*error_r = "PROXY v1 header with unknown protocol";
		return PROXY_PROTO_ERROR;
	}
	if (!next_field(&rest, &sip) || !next_field(&rest, &dip) ||
	    !next_field(&rest, &sport_s) || !next_field(&rest, &dport_s) ||
	    rest.len != 0) {
		*error_r = "PROXY v1 header with wrong number of fields";
		return PROXY_PROTO_ERROR;
	}
	if (!parse_ip(sip, family, sa) || !parse_ip(dip, family, da)) {
		*error_r = "PROXY v1 header with invalid address";
		return PROXY_PROTO_ERROR;
	}
	if (!parse_port(sport_s, &sport) || !parse_port(dport_s, &dport)) {
		*error_r = "PROXY v1 header with invalid port";
		return PROXY_PROTO_ERROR;
	}
	if (family == AF_INET) {
		set_v4(&info->src, sa, sport);
		set_v4(&info->dst, da, dport);
		info->addrlen = sizeof(struct sockaddr_in);
	} else {
		set_v6(&info->src, sa, sport);
		set_v6(&info->dst, da, dport);
		info->addrlen = sizeof(struct sockaddr_in6);
	}
	info->has_addresses = true;
	return PROXY_PROTO_DONE;
}

enum proxy_proto_result proxy_proto_parse(const uint8_t *data, size_t len,
					  struct proxy_proto_info *info_r,
					  size_t *consumed_r,
					  const char **error_r)
{
	static const char v1_prefix[] = "PROXY ";
	size_t cmp;

	memset(info_r, 0, sizeof(*info_r));
	*consumed_r = 0;
	*error_r = NULL;

	/* Decide the version from as many bytes as we have. */
	cmp = len < sizeof(v2_signature) ? len : sizeof(v2_signature);
	if (cmp > 0 && memcmp(data, v2_signature, cmp) == 0) {
		if (len < sizeof(v2_signature)) {
			*consumed_r = 16;
			return PROXY_PROTO_NEED_MORE;
		}
		return parse_v2(data, len, info_r, consumed_r, error_r);
	}
	cmp = len < sizeof(v1_prefix) - 1 ? len : sizeof(v1_prefix) - 1;
	if (cmp > 0 && memcmp(data, v1_prefix, cmp) == 0) {
		if (len < sizeof(v1_prefix) - 1) {
			*consumed_r = sizeof(v1_prefix) - 1;
			return PROXY_PROTO_NEED_MORE;
		}
		return parse_v1(data, len, info_r, consumed_r, error_r);
	}
	if (len == 0) {
		*consumed_r = 1;
		return PROXY_PROTO_NEED_MORE;
	}
	*error_r = "missing PROXY protocol header";
	return PROXY_PROTO_ERROR;
}
