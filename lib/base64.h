#ifndef MR_BASE64_H
#define MR_BASE64_H

#include <stddef.h>

#include "buf.h"
#include "str.h"

/* Standard base64 (RFC 4648 alphabet, with '=' padding), as SASL uses it.
 * Decoding is strict: characters outside the alphabet, whitespace, bad
 * padding or a wrong length are errors, so a client cannot smuggle bytes
 * past a parser. */

/* Appends the decoded bytes to out. Returns 0, or -1 on invalid input or
 * when out would pass its maximum (out is then left unchanged). */
int base64_decode(struct str in, struct buf *out);
/* Like base64_decode, but the '=' padding may be left out, as it is in
 * some stored password hashes. Everything else stays strict. */
int base64_decode_unpadded(struct str in, struct buf *out);
/* Appends the encoding of data to out. Returns 0, or -1 when out would
 * pass its maximum. */
int base64_encode(const void *data, size_t len, struct buf *out);

#endif
