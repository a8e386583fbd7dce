/* Fuzzes the index transaction log parser (backend/mailindex.c).
 *
 * Input: byte 0 seeds the chunking, the rest is the log file. It is parsed
 * twice, fed whole and in data-driven chunks; both runs must give the same
 * header, entries, result, error offset and valid end. Entries must be
 * well-formed (known type, fields in range) and re-encode to the exact
 * bytes they were read from (the format is canonical); the valid end never
 * passes the input, and a DONE run's torn tail is shorter than one entry. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/mailindex.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	uint64_t hash;
	const uint8_t *in;
	size_t len;
	uint64_t last_end;
	size_t entries;
	int headers;
};

static int on_header(const struct mailindex_log_header *hdr, void *context)
{
	struct run *r = context;

	if (r->headers++ != 0 || hdr->version != MAILINDEX_LOG_VERSION ||
	    hdr->seq == 0 || hdr->uidvalidity == 0)
		abort();
	r->last_end = MAILINDEX_LOG_HEADER_SIZE;
	fuzz_mix_u64(&r->hash, hdr->seq);
	fuzz_mix_u64(&r->hash, hdr->uidvalidity);
	return 0;
}

static int on_entry(const struct mailindex_log_entry *e, uint64_t end,
		    void *context)
{
	struct run *r = context;
	uint8_t buf[MAILINDEX_LOG_ENTRY_ENCODED_MAX];

	if (r->headers != 1 || end <= r->last_end || end > r->len)
		abort();
	size_t n = mailindex_log_entry_encode(e, buf);
	if (n != end - r->last_end || memcmp(buf, r->in + r->last_end, n) != 0)
		abort();
	if (e->rec.uid == 0 || e->rec.uid >= MAILINDEX_UIDNEXT_MAX ||
	    e->rec.modseq == 0 || (e->rec.flags & ~MAILINDEX_FLAGS_MASK) != 0 ||
	    (e->rec.keywords & ~MAILINDEX_KEYWORDS_MASK) != 0)
		abort();
	r->last_end = end;
	r->entries++;
	fuzz_mix_u64(&r->hash, end);
	fuzz_mix(&r->hash, buf, n);
	return 0;
}

static void run_stream(struct run *r, const uint8_t *in, size_t len,
		       unsigned int chunk_seed)
{
	struct mailindex_log_parser *p =
	    mailindex_log_parser_new(on_header, on_entry, r);
	struct fuzz_chunker chunker;
	size_t pos = 0;
	uint64_t offset, torn;

	r->hash = 14695981039346656037ULL;
	r->in = in;
	r->len = len;
	fuzz_chunker_init(&chunker, chunk_seed);
	while (pos < len) {
		size_t give = fuzz_chunk_next(&chunker, len - pos);
		enum mailindex_parse_result res =
		    mailindex_log_parser_feed(p, in + pos, give);
		pos += give;
		if (res != MAILINDEX_PARSE_MORE)
			break;
	}
	enum mailindex_parse_result res = mailindex_log_parser_finish(p);
	const char *err = mailindex_log_parser_error(p, &offset);
	if ((res == MAILINDEX_PARSE_DONE) != (err == NULL) || offset > len)
		abort();
	if (res == MAILINDEX_PARSE_DONE) {
		uint64_t end = mailindex_log_parser_valid_end(p, &torn);
		if (end != r->last_end || end + torn != len ||
		    torn > 8 + MAILINDEX_LOG_ENTRY_MAX)
			abort();
		fuzz_mix_u64(&r->hash, end);
	}
	fuzz_mix_u64(&r->hash, res);
	fuzz_mix_u64(&r->hash, offset);
	if (err != NULL)
		fuzz_mix(&r->hash, err, strlen(err));
	mailindex_log_parser_free(&p);
	if (p != NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct run whole = {0}, chunked = {0};

	run_stream(&whole, data + 1, size - 1, 0);
	run_stream(&chunked, data + 1, size - 1, data[0] | 1);
	if (whole.hash != chunked.hash || whole.entries != chunked.entries)
		abort();
	return 0;
}
