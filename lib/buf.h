#ifndef MR_BUF_H
#define MR_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "str.h"

/* An owned, growable byte buffer with a hard maximum fixed at creation.
 * Appends that would pass the maximum fail and leave the buffer unchanged,
 * so a peer can never make us grow without bound. The data is always kept
 * NUL-terminated (the NUL is not counted in len and not in max). */
struct buf {
	uint8_t *data;
	size_t len;   /* bytes used */
	size_t size;  /* bytes allocated, excluding the spare NUL byte */
	size_t max;   /* hard limit on len */
	bool secret;  /* growing wipes the old memory; freeing wipes */
};

/* Creates a buffer that may hold up to max bytes; initial is a size hint. */
struct buf *buf_new(size_t initial, size_t max);
/* A buffer for secrets (passwords, SASL exchanges): when it grows the old
 * memory is wiped before it is freed, and buf_free wipes it too. */
struct buf *buf_new_secret(size_t initial, size_t max);
/* Frees *b and sets it to NULL; safe on NULL. */
void buf_free(struct buf **b);
/* Like buf_free, but wipes the contents first (for secrets). */
void buf_free_secret(struct buf **b);

/* Each returns 0 on success, -1 when the result would pass b->max. */
int buf_append(struct buf *b, const void *data, size_t len);
int buf_append_str(struct buf *b, struct str s);
int buf_append_cstr(struct buf *b, const char *s);
int buf_append_byte(struct buf *b, uint8_t c);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Drops the first n bytes (all of them when n >= len). */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
/* Space left before the maximum. */
size_t buf_room(const struct buf *b);
static inline struct str buf_str(const struct buf *b)
{
	return str_from((const char *)b->data, b->len);
}
static inline const char *buf_cstr(const struct buf *b)
{
	return (const char *)b->data;
}

#endif
