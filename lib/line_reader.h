#ifndef MR_LINE_READER_H
#define MR_LINE_READER_H

/*
 * Assembles CRLF (or bare LF) terminated lines from input that arrives in
 * pieces, with a hard limit, for the line-based protocol parsers (POP3,
 * SMTP/LMTP). A pure helper: the caller owns the struct and feeds bytes.
 *
 * A line over the limit is an error; the reader then discards the rest of
 * it up to the next LF, so the next line starts clean. A NUL byte in a
 * line is an error too. Offsets count bytes consumed since init, so error
 * positions point into the stream.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum line_reader_error {
	LINE_READER_OK = 0,
	LINE_READER_TOO_LONG, /* the line passed the limit */
	LINE_READER_NUL,      /* a NUL byte in the line */
};

struct line_reader {
	uint8_t *line;        /* the line so far (valid up to line_len) */
	size_t line_len;
	size_t line_size;
	size_t line_max;      /* the largest limit ever passed */
	bool skipping;        /* discarding the rest of a too-long line */
	bool reset_pending;   /* the last call returned a line or an error */
	bool secret;          /* wipe the memory when it grows or is freed */
	uint64_t stream_pos;  /* bytes consumed since init */
	uint64_t line_start;  /* stream offset of line[0] */
};

/* line_max bounds every limit later passed to line_reader_read. secret:
 * lines may carry passwords (AUTH responses). */
void line_reader_init(struct line_reader *lr, size_t line_max, bool secret);
void line_reader_deinit(struct line_reader *lr);

/* Reads from in[0..size) towards a complete line of at most limit bytes
 * (line end included). Returns 1 with a line in lr->line[0..*end_r) (line
 * end stripped), 0 when the input ran out (all of it consumed), -1 with
 * *error_r and *error_pos_r (offset within the line) on an error.
 * *consumed_r says how much of in was used in every case. */
int line_reader_read(struct line_reader *lr, const uint8_t *in, size_t size,
		     size_t limit, size_t *consumed_r, size_t *end_r,
		     enum line_reader_error *error_r, size_t *error_pos_r);

/* Part of a line is buffered and the rest still to come. */
bool line_reader_partial(const struct line_reader *lr);

/* The caller consumed n bytes of the stream itself (a DATA body, a BDAT
 * chunk): offsets move on. Only between lines. */
void line_reader_skip(struct line_reader *lr, uint64_t n);

#endif
