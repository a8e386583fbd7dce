#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

struct buf *buf_new(size_t initial, size_t max)
{
	struct buf *b = xcalloc(1, sizeof(*b));

	if (initial > max)
		initial = max;
	if (initial < 16)
		initial = 16;
	b->data = xmalloc(initial + 1);
	b->data[0] = '\0';
	b->size = initial;
	b->max = max;
	return b;
}

struct buf *buf_new_secret(size_t initial, size_t max)
{
	struct buf *b = buf_new(initial, max);
	b->secret = true;
	return b;
}

void buf_free(struct buf **b)
{
	if (*b == NULL)
		return;
	if ((*b)->secret)
		str_wipe((*b)->data, (*b)->size + 1);
	free((*b)->data);
	free(*b);
	*b = NULL;
}

void buf_free_secret(struct buf **b)
{
	if (*b == NULL)
		return;
	str_wipe((*b)->data, (*b)->size + 1);
	buf_free(b);
}

/* Makes room for extra more bytes; -1 when that would pass max. */
static int buf_reserve(struct buf *b, size_t extra)
{
	if (extra > b->max || b->len > b->max - extra)
		return -1;
	size_t need = b->len + extra;
	if (need <= b->size)
		return 0;
	size_t nsize = b->size;
	while (nsize < need)
		nsize = nsize > b->max / 2 ? b->max : nsize * 2;
	if (b->secret) {
		/* realloc could leave a copy of the secret in freed memory */
		uint8_t *n = xmalloc(nsize + 1);
		memcpy(n, b->data, b->len + 1);
		str_wipe(b->data, b->size + 1);
		free(b->data);
		b->data = n;
	} else {
		b->data = xrealloc(b->data, nsize + 1);
	}
	b->size = nsize;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	if (buf_reserve(b, len) < 0)
		return -1;
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int buf_append_str(struct buf *b, struct str s)
{
	return buf_append(b, s.p, s.len);
}

int buf_append_cstr(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_append_byte(struct buf *b, uint8_t c)
{
	return buf_append(b, &c, 1);
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
	} else {
		memmove(b->data, b->data + n, b->len - n);
		b->len -= n;
	}
	b->data[b->len] = '\0';
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	b->data[0] = '\0';
}

size_t buf_room(const struct buf *b)
{
	return b->max - b->len;
}
