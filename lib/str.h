#ifndef MR_STR_H
#define MR_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A borrowed view of bytes: never owns memory, never NUL-terminated by
 * contract. Parsers hand out views into their input buffer. */
struct str {
	const char *p;
	size_t len;
};

#define STR(lit) ((struct str){ (lit), sizeof(lit) - 1 })
#define STR_NULL ((struct str){ NULL, 0 })
/* printf("%.*s", STR_FMT(s)) */
#define STR_FMT(s) (int)((s).len > INT32_MAX ? INT32_MAX : (s).len), (s).p

static inline struct str str_from(const char *p, size_t len)
{
	return (struct str){ p, len };
}

static inline struct str str_cstr(const char *s)
{
	return (struct str){ s, s == NULL ? 0 : strlen(s) };
}

bool str_eq(struct str a, struct str b);
/* ASCII case-insensitive comparison. */
bool str_eq_nocase(struct str a, struct str b);
bool str_has_prefix_nocase(struct str s, struct str prefix);
/* Returns the index of byte c, or -1. */
ptrdiff_t str_index(struct str s, char c);
struct str str_trim(struct str s);
struct str str_slice(struct str s, size_t from, size_t len);
/* Splits at the first c: *head gets the part before, *tail the part after.
 * Returns false (head = s, tail empty) when c does not occur. */
bool str_split(struct str s, char c, struct str *head, struct str *tail);

/* Parses an unsigned decimal number with no sign, no blanks and no
 * leading '+'. Fails on empty input, non-digits and overflow past max. */
bool str_to_u64(struct str s, uint64_t max, uint64_t *value_r);

/* Copies s into dst (size dstsize) with a terminating NUL. Returns false
 * when it does not fit, leaving dst empty. */
bool str_copy(struct str s, char *dst, size_t dstsize);

/* snprintf that reports truncation as an error: returns the length written,
 * or -1 when the output did not fit (dst is then empty). */
int str_printf(char *dst, size_t dstsize, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes a log-safe rendering of s into dst: printable ASCII is kept,
 * everything else (CR, LF, NUL, 8-bit, control) becomes \xNN, and output is
 * cut with "..." at dstsize. Always NUL-terminates; returns dst. */
const char *str_sanitize(struct str s, char *dst, size_t dstsize);

/* Overwrites memory that held a secret so the compiler cannot drop it. */
void str_wipe(void *p, size_t len);

#endif
