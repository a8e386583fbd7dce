#ifndef MR_MIME_PRIVATE_H
#define MR_MIME_PRIVATE_H

/* Internals shared by mime.c (parser), mime_imap.c (IMAP writers) and
 * mime_decode.c (SEARCH decoders). */

#include "backend/mime.h"

/* Every string and part of a message lives in one arena, freed at once by
 * mime_message_free (one owner, one release point). */
struct mime_arena;

struct mime_arena *mime_arena_new(void);
void mime_arena_free(struct mime_arena **a);
/* Aborts on allocation failure (xmalloc); returns zeroed memory aligned for
 * any object. */
void *mime_arena_alloc(struct mime_arena *a, size_t size);
/* Bytes handed out so far. */
size_t mime_arena_used(const struct mime_arena *a);

/* RFC 2045 helpers over a header value. */
bool mime_is_wsp(uint8_t c);
/* Skips blanks, CR, LF and (nested) comments from *pos. */
void mime_skip_cfws(struct str s, size_t *pos);
/* Reads an RFC 2045 token at *pos (may be empty). */
struct str mime_read_token(struct str s, size_t *pos);

/* Parses "type/subtype; params" (or "token; params" when with_subtype is
 * false, for Content-Disposition) into arena memory. type is STR_NULL when
 * invalid (the caller then uses the default type). */
void mime_parse_content_type(struct mime_arena *a, struct str value,
			     bool with_subtype, struct str *type_r,
			     struct str *subtype_r,
			     const struct mime_param **params_r,
			     size_t *count_r);

/* Appends bytes converted from charset to UTF-8 (invalid input becomes
 * U+FFFD). Used for RFC 2047 words; charset NULL/unknown = UTF-8. */
int mime_charset_to_utf8(struct str charset, const uint8_t *in, size_t len,
			 struct buf *out);
/* Appends data as valid UTF-8 (invalid sequences become U+FFFD). */
int mime_utf8_sanitize(const uint8_t *in, size_t len, struct buf *out);

#endif
