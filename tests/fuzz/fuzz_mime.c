/* Fuzzes the MIME parser and everything that reads its tree
 * (backend/mime.c, mime_imap.c, mime_decode.c).
 *
 * Input: byte 0 seeds the chunking and small limits, the rest is the
 * message. It is parsed twice, whole and in data-driven chunks; both trees
 * must give the same BODYSTRUCTURE and ENVELOPE. Every part's spans must
 * lie inside the message and nest in their parent, every section path that
 * exists must be found again, and the header filter, RFC 2047 decoder, body
 * decoders and date parser run over every part. Output buffers have caps,
 * so a writer hitting one must fail cleanly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/mime.h"
#include "buf.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mime_message *parse(const uint8_t *in, size_t len,
				  unsigned int seed,
				  const struct mime_limits *lim)
{
	struct mime_parser *p = mime_parser_new(lim);
	struct fuzz_chunker chunker;
	struct mime_message *msg = NULL;
	const char *error = NULL;
	size_t pos = 0;

	fuzz_chunker_init(&chunker, seed);
	while (pos < len) {
		size_t n = fuzz_chunk_next(&chunker, len - pos);
		if (mime_parser_feed(p, in + pos, n) != 0)
			abort();
		pos += n;
	}
	if (mime_parser_finish(&p, &msg, &error) != 1 || p != NULL ||
	    msg == NULL)
		abort();
	if (msg->size != len || msg->size_crlf < len)
		abort();
	return msg;
}

static uint64_t hash_writers(const struct mime_message *msg)
{
	uint64_t hash = 14695981039346656037ULL;
	struct buf *out = buf_new(256, 1 << 22);
	if (mime_write_bodystructure(msg->root, true, out) < 0 ||
	    mime_write_envelope(msg->root, out) < 0 ||
	    mime_write_bodystructure(msg->root, false, out) < 0)
		abort(); /* 4 MiB is far above what limits allow */
	fuzz_mix_str(&hash, buf_str(out), 0);
	buf_free(&out);
	/* a small cap must fail cleanly, not overrun */
	out = buf_new(16, 64);
	(void)mime_write_bodystructure(msg->root, true, out);
	(void)mime_write_envelope(msg->root, out);
	if (out->len > 64)
		abort();
	buf_free(&out);
	return hash;
}

static int sink(const void *data, size_t len, void *context)
{
	uint64_t *hash = context;
	fuzz_mix(hash, data, len);
	return 0;
}

static void check_span(const struct mime_span *s, const struct mime_span *outer,
		       uint64_t len, uint64_t len_crlf)
{
	if (s->offset > len || s->size > len - s->offset ||
	    s->offset_crlf > len_crlf ||
	    s->size_crlf > len_crlf - s->offset_crlf ||
	    s->size > s->size_crlf || s->offset > s->offset_crlf)
		abort();
	if (outer != NULL &&
	    (s->offset < outer->offset ||
	     s->offset + s->size > outer->offset + outer->size))
		abort();
}

/* Checks one part: spans, header filter, decoders. */
static void check_part(const struct mime_message *msg,
		       const struct mime_part *part, const uint8_t *in,
		       uint64_t *hash)
{
	check_span(&part->header, NULL, msg->size, msg->size_crlf);
	check_span(&part->body, NULL, msg->size, msg->size_crlf);
	if (part->header.offset + part->header.size > part->body.offset)
		abort();
	if (part->parent != NULL)
		check_span(&part->header, &part->parent->body, msg->size,
			   msg->size_crlf);

	struct buf *out = buf_new(64, 1 << 16);
	static const struct str names[] = {STR("subject"), STR("content-type"),
					   STR("from")};
	(void)mime_header_filter(in + part->header.offset,
				 (size_t)part->header.size, names, 3,
				 (part->depth & 1) != 0, out);
	fuzz_mix_str(hash, buf_str(out), 0);
	buf_reset(out);
	if (part->envelope != NULL) {
		(void)mime_header_decode(part->envelope->subject, out);
		(void)mime_header_decode(part->envelope->from, out);
		int64_t t;
		int tz;
		if (mime_date_parse(part->envelope->date, &t, &tz) == 1 &&
		    (tz < -24 * 60 || tz > 24 * 60))
			abort();
	}
	buf_free(&out);

	struct mime_decoder *d = mime_decoder_new_part(part, sink, hash);
	size_t body = (size_t)part->body.size;
	for (size_t pos = 0; pos < body; pos += 977) {
		size_t n = body - pos < 977 ? body - pos : 977;
		if (mime_decoder_feed(d, in + part->body.offset + pos, n) != 0)
			abort();
	}
	if (mime_decoder_finish(d) != 0)
		abort();
	mime_decoder_free(&d);
}

/* Walks the parts below part, which section path[0..depth-1] names, and
 * checks that mime_part_find gives each one back. */
static void walk(const struct mime_message *msg, const struct mime_part *part,
		 const uint8_t *in, uint32_t *path, size_t depth,
		 uint64_t *hash, unsigned int *budget)
{
	if (*budget == 0 || depth >= 32)
		return;
	(*budget)--;
	check_part(msg, part, in, hash);
	if ((part->flags & MIME_PART_MESSAGE) != 0 && part->children != NULL) {
		const struct mime_part *e = part->children;
		if (depth > 0 && mime_part_message(part) != e)
			abort();
		if (depth == 0) {
			/* a non-multipart message's part 1 is itself */
			path[0] = 1;
			depth = 1;
			if (mime_part_find(msg, path, 1) != part)
				abort();
		}
		if ((e->flags & MIME_PART_MULTIPART) == 0) {
			path[depth] = 1;
			if (mime_part_find(msg, path, depth + 1) != e)
				abort();
			walk(msg, e, in, path, depth + 1, hash, budget);
			return;
		}
		check_part(msg, e, in, hash);
		part = e;
	}
	if ((part->flags & MIME_PART_MULTIPART) == 0)
		return;
	uint32_t n = 1;
	for (const struct mime_part *c = part->children; c != NULL;
	     c = c->next, n++) {
		path[depth] = n;
		if (mime_part_find(msg, path, depth + 1) != c)
			abort();
		walk(msg, c, in, path, depth + 1, hash, budget);
	}
	path[depth] = n;
	if (mime_part_find(msg, path, depth + 1) != NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *in = data + 1;
	size_t len = size - 1;
	struct mime_limits lim;

	mime_limits_default(&lim);
	if ((data[0] & 0x80) != 0) {
		/* small limits, so the fuzzer reaches them */
		lim.max_parts = 1 + (data[0] & 7);
		lim.max_depth = 1 + ((data[0] >> 3) & 7);
		lim.max_header_bytes = 64u << (data[0] & 3);
		lim.max_header_line = 80;
	}
	struct mime_message *whole = parse(in, len, 0, &lim);
	struct mime_message *chunked = parse(in, len, data[0] | 1, &lim);
	if (hash_writers(whole) != hash_writers(chunked) ||
	    whole->part_count != chunked->part_count ||
	    whole->size_crlf != chunked->size_crlf ||
	    whole->part_count > lim.max_parts)
		abort();
	mime_message_free(&chunked);

	uint32_t path[40];
	uint64_t hash = 0;
	unsigned int budget = 64;
	if (mime_part_find(whole, NULL, 0) != whole->root)
		abort();
	walk(whole, whole->root, in, path, 0, &hash, &budget);
	mime_message_free(&whole);
	return 0;
}
