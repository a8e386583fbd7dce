#ifndef MR_MIME_H
#define MR_MIME_H

/*
 * Message parser of the IMAP server: a streaming MIME parser that records
 * the part tree with offsets (raw file bytes and the CRLF form IMAP counts
 * in, where every bare LF counts as CRLF), the writers for ENVELOPE and
 * BODY/BODYSTRUCTURE, section lookup and HEADER.FIELDS filtering, and the
 * decoders SEARCH needs (RFC 2047 headers, transfer encodings, charsets,
 * dates).
 *
 * The part tree follows Dovecot's shape, which keeps IMAP section numbers
 * simple:
 *   - the root part is the message: header = message header;
 *   - a multipart part has its body parts as children;
 *   - a message/rfc822 part has exactly one child, the encapsulated
 *     message, whose header starts where the part's body starts.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "str.h"

/* ---- limits ------------------------------------------------------------ */

struct mime_limits {
	/* Parts recorded per message; boundaries past it still end parts but
	 * start no new ones (the message is marked truncated). */
	uint32_t max_parts;
	/* Nesting depth: a multipart or message/rfc822 part at depth
	 * max_depth - 1 is kept as a leaf (written as application/octet-stream,
	 * as Dovecot does). The root is depth 0. */
	uint32_t max_depth;
	/* Bytes of header values kept per message (Content-*, envelope
	 * fields). Past it further fields are dropped and the message is
	 * marked truncated; the structure is still parsed. */
	size_t max_header_bytes;
	/* Longest header field (folded lines included) kept; longer fields are
	 * cut at this length. */
	size_t max_header_line;
};

#define MIME_DEFAULT_MAX_PARTS 1000
#define MIME_DEFAULT_MAX_DEPTH 100 /* Dovecot's max_nested_mime_parts */
#define MIME_DEFAULT_MAX_HEADER_BYTES (256 * 1024)
#define MIME_DEFAULT_MAX_HEADER_LINE (64 * 1024)
/* Boundaries longer than this are ignored (RFC 2046 allows 70). */
#define MIME_MAX_BOUNDARY 200

/* Fills lim with the defaults above. */
void mime_limits_default(struct mime_limits *lim);

/* ---- the part tree ----------------------------------------------------- */

/* A byte range of the message, both in raw file bytes and in the CRLF form
 * (what RFC822.SIZE, BODY[]<partial> and BODYSTRUCTURE sizes count). */
struct mime_span {
	uint64_t offset;
	uint64_t size;
	uint64_t offset_crlf;
	uint64_t size_crlf;
};

struct mime_param {
	struct str
	    name; /* as written (case kept), RFC 2231 continuations joined */
	struct str value; /* unquoted */
};

/* Content-* fields of one part. A str with p == NULL means "absent". */
struct mime_fields {
	struct str type;    /* e.g. "text"; absent when missing or invalid */
	struct str subtype; /* e.g. "plain" */
	const struct mime_param *params;
	size_t param_count;
	struct str encoding;    /* Content-Transfer-Encoding, trimmed */
	struct str id;          /* Content-ID */
	struct str description; /* Content-Description */
	struct str md5;         /* Content-MD5 */
	struct str disposition; /* Content-Disposition token ("" when empty) */
	const struct mime_param *disp_params;
	size_t disp_param_count;
	const struct str *languages; /* Content-Language list */
	size_t language_count;
	struct str location; /* Content-Location */
};

/* Header values of a message (root part, encapsulated messages): raw
 * values after the colon with leading blanks removed, folding kept as
 * CRLF (the writers unfold them the way Dovecot does). */
struct mime_envelope {
	struct str date, subject, from, sender, reply_to, to, cc, bcc,
	    in_reply_to, message_id;
};

enum mime_part_flags {
	MIME_PART_MULTIPART = 1 << 0,   /* children are its body parts */
	MIME_PART_MESSAGE = 1 << 1,     /* message/rfc822: one child message */
	MIME_PART_TOO_DEEP = 1 << 2,    /* container kept as a leaf (depth) */
	MIME_PART_NO_BOUNDARY = 1 << 3, /* multipart without boundary= */
	MIME_PART_DIGEST = 1 << 4, /* multipart/digest: default child type */
	MIME_PART_HEADER_END = 1 << 5, /* header ended with an empty line */
};

struct mime_part {
	struct mime_part *parent;
	struct mime_part *children; /* first child */
	struct mime_part *next;     /* next sibling */
	uint32_t child_count;
	uint32_t depth;          /* root = 0 */
	unsigned int flags;      /* enum mime_part_flags */
	struct mime_span header; /* header block, its empty line included */
	struct mime_span body;
	uint64_t body_lines; /* LFs in the body (BODYSTRUCTURE "lines") */
	struct mime_fields fields;
	/* Only for the root part and the child of a message/rfc822 part. */
	const struct mime_envelope *envelope;
	/* true when this part's Content-Type defaults to message/rfc822 */
	bool default_rfc822;
};

enum mime_message_flags {
	MIME_MSG_TRUNCATED_PARTS = 1 << 0,   /* max_parts reached */
	MIME_MSG_TRUNCATED_HEADERS = 1 << 1, /* max_header_bytes reached */
	MIME_MSG_TRUNCATED_DEPTH = 1 << 2,   /* max_depth reached */
};

struct mime_message {
	struct mime_part *root;
	uint64_t size;      /* raw bytes */
	uint64_t size_crlf; /* RFC822.SIZE */
	uint32_t part_count;
	unsigned int flags;       /* enum mime_message_flags */
	struct mime_arena *arena; /* owns every string and part */
};

/* ---- parsing ----------------------------------------------------------- */

struct mime_parser;

/* Creates a parser; lim NULL means the defaults. */
struct mime_parser *mime_parser_new(const struct mime_limits *lim);
/* Feeds the next bytes of the message (any split). Returns 0; the parser
 * accepts any bytes (malformed MIME still gives a tree). */
int mime_parser_feed(struct mime_parser *p, const void *data, size_t len);
/* Ends the input and hands out the tree. Returns 1 with *msg_r set, or -1
 * with *error_r (static text). Always frees the parser and sets *p to
 * NULL. */
int mime_parser_finish(struct mime_parser **p, struct mime_message **msg_r,
		       const char **error_r);
/* Frees a parser without a result; safe on NULL. */
void mime_parser_free(struct mime_parser **p);
/* Frees *msg and sets it to NULL; safe on NULL. */
void mime_message_free(struct mime_message **msg);

/* Convenience: parses a whole in-memory message. */
struct mime_message *mime_parse_buffer(const void *data, size_t len,
				       const struct mime_limits *lim);

/* ---- IMAP writers (lib/buf.h output; -1 when out's cap is reached) ----- */

/* IMAP string: quoted when it can be, else a literal {n}\r\n... . Rules as
 * Dovecot's nstring: CR, LF, NUL, 8-bit bytes or more than four '"'/'\'
 * force a literal. NUL bytes are written as 0x80 (IMAP forbids them). */
int mime_write_string(struct buf *out, struct str s);
/* NIL when s.p == NULL, else mime_write_string. */
int mime_write_nstring(struct buf *out, struct str s);
/* An atom when s is a non-empty run of ATOM-CHARs (and not "NIL"), else a
 * string. */
int mime_write_astring(struct buf *out, struct str s);

/* ENVELOPE of a message part (the root, or the child of a message/rfc822
 * part; a message/rfc822 part itself is accepted too and uses its child). */
int mime_write_envelope(const struct mime_part *msgpart, struct buf *out);
/* BODYSTRUCTURE (extended) or BODY (not extended) of part. */
int mime_write_bodystructure(const struct mime_part *part, bool extended,
			     struct buf *out);

/* ---- sections ---------------------------------------------------------- */

/* Finds the part named by section numbers path[0..depth-1] (RFC 3501
 * 6.4.5): a non-multipart message's part 1 is the message itself (its
 * body), and numbers below a message/rfc822 part number the parts of the
 * encapsulated message. depth 0 gives the root. NULL when it does not
 * exist. For the returned part P:
 *   BODY[path]      = P->body
 *   BODY[path.MIME] = P->header (not for depth 0)
 *   BODY[path.HEADER] / [path.TEXT] = mime_part_message(P)'s header/body
 *   (for depth 0, BODY[HEADER]/[TEXT] are msg->root's header/body). */
const struct mime_part *mime_part_find(const struct mime_message *msg,
				       const uint32_t *path, size_t depth);
/* The message a "path.HEADER"/"path.TEXT" section refers to: the
 * encapsulated message of a message/rfc822 part, else NULL (invalid). */
const struct mime_part *mime_part_message(const struct mime_part *part);

/* Writes the header block hdr (raw bytes of a header, e.g. read from
 * part->header; LF or CRLF; its empty line may be included) filtered to the
 * fields named in names[] (HEADER.FIELDS) or to all others (not = true,
 * HEADER.FIELDS.NOT). Names compare without case; folded continuation lines
 * go with their field; output lines end in CRLF and an empty line ends the
 * output, as RFC 3501 requires. Callers bound hdr (e.g. 1 MiB): a header
 * cut there loses its last field. Returns 0 or -1 (out full). */
int mime_header_filter(const void *hdr, size_t len, const struct str *names,
		       size_t name_count, bool not, struct buf *out);

/* Writes src converted to CRLF (every bare LF becomes CRLF) into out.
 * *prev_cr carries "the previous chunk ended in CR" between calls (start it
 * false), so chunks can be converted as they are read from a file. */
int mime_write_crlf(struct buf *out, const void *src, size_t len,
		    bool *prev_cr);

/* ---- text for SEARCH --------------------------------------------------- */

/* Decodes a header value for SEARCH: unfolds, decodes RFC 2047
 * encoded-words (B and Q; blanks between adjacent encoded-words dropped),
 * converts charsets to UTF-8 (iconv; invalid bytes become U+FFFD; unknown
 * charsets are taken as UTF-8). Appends to out; -1 when out is full. */
int mime_header_decode(struct str raw_value, struct buf *out);

/* true when SEARCH BODY/TEXT looks into this part's body: leaf text/ and
 * message/ parts (like Dovecot); other types are skipped. */
bool mime_part_searchable(const struct mime_part *part);

/* Called with decoded UTF-8 text; return -1 to stop the decoder. */
typedef int mime_decoder_cb(const void *data, size_t len, void *context);

struct mime_decoder;

/* A body decoder for transfer encoding enc (7bit/8bit/binary/
 * quoted-printable/base64; unknown = as is) and charset (absent or unknown
 * = UTF-8 best effort). Output goes to cb in chunks. */
struct mime_decoder *mime_decoder_new(struct str encoding, struct str charset,
				      mime_decoder_cb *cb, void *context);
/* Same, with encoding and charset taken from part's fields; for parts
 * that are not searchable text (mime_part_searchable) the output is the
 * transfer-decoded bytes as they are, without charset conversion. */
struct mime_decoder *mime_decoder_new_part(const struct mime_part *part,
					   mime_decoder_cb *cb, void *context);
/* Feeds raw body bytes (any split). Returns 0, or -1 when cb stopped. */
int mime_decoder_feed(struct mime_decoder *d, const void *data, size_t len);
/* Flushes what is left. Returns 0 or -1 (cb stopped). */
int mime_decoder_finish(struct mime_decoder *d);
void mime_decoder_free(struct mime_decoder **d);

/* ---- dates -------------------------------------------------------------- */

/* Parses an RFC 5322 date (also obsolete forms: no weekday, 2- and 3-digit
 * years, named zones like GMT/EST/PDT, military zones as +0000, comments,
 * missing seconds). Returns 1 with the UTC time and the zone offset, or -1
 * when value is no date. */
int mime_date_parse(struct str value, int64_t *unix_r,
		    int *tz_offset_minutes_r);

/* Value of a parameter (case-insensitive name) or STR_NULL. */
struct str mime_param_get(const struct mime_param *params, size_t count,
			  struct str name);

#endif
