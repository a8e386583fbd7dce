#include "base64.h"

#include <stdint.h>
#include <string.h>

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int decode_char(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(struct str in, struct buf *out)
{
	size_t start = out->len;

	if (in.len % 4 != 0)
		return -1;
	for (size_t i = 0; i < in.len; i += 4) {
		int v[4];
		unsigned pad = 0;
		for (int j = 0; j < 4; j++) {
			char ch = in.p[i + (size_t)j];
			if (ch == '=' && i + 4 == in.len && j >= 2) {
				v[j] = 0;
				pad++;
				continue;
			}
			/* data after padding inside the last quantum */
			if (pad > 0)
				goto fail;
			v[j] = decode_char(ch);
			if (v[j] < 0)
				goto fail;
		}
		uint8_t bytes[3] = {
			(uint8_t)((v[0] << 2) | (v[1] >> 4)),
			(uint8_t)(((v[1] & 15) << 4) | (v[2] >> 2)),
			(uint8_t)(((v[2] & 3) << 6) | v[3]),
		};
		/* non-canonical encodings: unused bits must be zero */
		if ((pad == 1 && (v[2] & 3) != 0) ||
		    (pad == 2 && (v[1] & 15) != 0))
			goto fail;
		if (buf_append(out, bytes, 3 - pad) < 0)
			goto fail;
	}
	return 0;
fail:
	/* wipe what was decoded: it may be part of a secret */
	str_wipe(out->data + start, out->len - start);
	out->len = start;
	out->data[start] = '\0';
	return -1;
}

int base64_decode_unpadded(struct str in, struct buf *out)
{
	char tail[4];
	size_t full = in.len - in.len % 4;

	if (in.len % 4 == 0)
		return base64_decode(in, out);
	if (in.len % 4 == 1)
		return -1;
	/* decode the full quanta, then the short last one padded */
	size_t start = out->len;
	if (base64_decode(str_from(in.p, full), out) < 0)
		return -1;
	memset(tail, '=', sizeof(tail));
	memcpy(tail, in.p + full, in.len - full);
	if (base64_decode(str_from(tail, sizeof(tail)), out) < 0) {
		str_wipe(out->data + start, out->len - start);
		out->len = start;
		out->data[start] = '\0';
		return -1;
	}
	return 0;
}

int base64_encode(const void *data, size_t len, struct buf *out)
{
	const uint8_t *p = data;
	size_t start = out->len;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t n = len - i < 3 ? len - i : 3;
		if (n > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (n > 2)
			v |= p[i + 2];
		char q[4] = {
			alphabet[(v >> 18) & 63],
			alphabet[(v >> 12) & 63],
			n > 1 ? alphabet[(v >> 6) & 63] : '=',
			n > 2 ? alphabet[v & 63] : '=',
		};
		if (buf_append(out, q, 4) < 0) {
			out->len = start;
			out->data[start] = '\0';
			return -1;
		}
	}
	return 0;
}
