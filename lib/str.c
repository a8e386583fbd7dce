#include "str.h"

#include <stdarg.h>
#include <stdio.h>

static inline char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

bool str_eq(struct str a, struct str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

bool str_eq_nocase(struct str a, struct str b)
{
	if (a.len != b.len)
		return false;
	for (size_t i = 0; i < a.len; i++) {
		if (ascii_lower(a.p[i]) != ascii_lower(b.p[i]))
			return false;
	}
	return true;
}

bool str_has_prefix_nocase(struct str s, struct str prefix)
{
	if (s.len < prefix.len)
		return false;
	return str_eq_nocase(str_from(s.p, prefix.len), prefix);
}

ptrdiff_t str_index(struct str s, char c)
{
	if (s.len == 0)
		return -1;
	const char *hit = memchr(s.p, c, s.len);
	return hit == NULL ? -1 : hit - s.p;
}

struct str str_trim(struct str s)
{
	while (s.len > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
		s.p++;
		s.len--;
	}
	while (s.len > 0 && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t' ||
			     s.p[s.len - 1] == '\r' || s.p[s.len - 1] == '\n'))
		s.len--;
	return s;
}

struct str str_slice(struct str s, size_t from, size_t len)
{
	if (from > s.len)
		from = s.len;
	if (len > s.len - from)
		len = s.len - from;
	return str_from(s.p + from, len);
}

bool str_split(struct str s, char c, struct str *head, struct str *tail)
{
	ptrdiff_t i = str_index(s, c);
	if (i < 0) {
		*head = s;
		*tail = str_from(s.p + s.len, 0);
		return false;
	}
	*head = str_from(s.p, (size_t)i);
	*tail = str_from(s.p + i + 1, s.len - (size_t)i - 1);
	return true;
}

bool str_to_u64(struct str s, uint64_t max, uint64_t *value_r)
{
	uint64_t v = 0;

	if (s.len == 0)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		char c = s.p[i];
		if (c < '0' || c > '9')
			return false;
		unsigned d = (unsigned)(c - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*value_r = v;
	return true;
}

bool str_copy(struct str s, char *dst, size_t dstsize)
{
	if (dstsize == 0)
		return false;
	if (s.len >= dstsize) {
		dst[0] = '\0';
		return false;
	}
	if (s.len > 0)
		memcpy(dst, s.p, s.len);
	dst[s.len] = '\0';
	return true;
}

int str_printf(char *dst, size_t dstsize, const char *fmt, ...)
{
	va_list ap;

	if (dstsize == 0)
		return -1;
	va_start(ap, fmt);
	int n = vsnprintf(dst, dstsize, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= dstsize) {
		dst[0] = '\0';
		return -1;
	}
	return n;
}

const char *str_sanitize(struct str s, char *dst, size_t dstsize)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (dstsize == 0)
		return dst;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		size_t need = (c >= 0x20 && c < 0x7f && c != '\\') ? 1 : 4;
		/* keep room for "..." and the NUL */
		if (o + need + 4 > dstsize) {
			if (o + 4 <= dstsize) {
				memcpy(dst + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (need == 1) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	dst[o < dstsize ? o : dstsize - 1] = '\0';
	return dst;
}

void str_wipe(void *p, size_t len)
{
	if (p != NULL && len > 0)
		explicit_bzero(p, len);
}
