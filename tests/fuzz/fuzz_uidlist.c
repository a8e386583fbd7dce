/* Fuzzes the UID list file parser (backend/uidlist.c).
 *
 * Input: byte 0 seeds the chunking, the rest is the file. The file is
 * parsed twice, fed whole and in data-driven chunks; both runs must give
 * the same header, records, result and error offset. Records must obey
 * the format's rules (increasing UIDs below UIDNEXT, valid names). When
 * the loader accepts the file, serialising the list it built must give
 * back the input byte for byte (the format is canonical). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/uidlist.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	uint64_t hash;
	size_t records;
	uint32_t uidnext;
	uint32_t last_uid;
	int headers;
};

static int on_header(const struct uidlist_header *hdr, void *context)
{
	struct run *r = context;

	if (r->headers++ != 0 || hdr->version != UIDLIST_VERSION ||
	    hdr->uidvalidity == 0 || hdr->uidnext == 0 ||
	    hdr->uidnext > UIDLIST_UIDNEXT_MAX)
		abort();
	r->uidnext = hdr->uidnext;
	fuzz_mix_u64(&r->hash, hdr->uidvalidity);
	fuzz_mix_u64(&r->hash, hdr->uidnext);
	return 0;
}

static int on_record(uint32_t uid, struct str name, void *context)
{
	struct run *r = context;

	if (r->headers != 1 || uid <= r->last_uid || uid >= r->uidnext ||
	    !uidlist_name_valid(name))
		abort();
	r->last_uid = uid;
	r->records++;
	fuzz_mix_u64(&r->hash, uid);
	fuzz_mix_str(&r->hash, name, 1);
	return 0;
}

static void run_stream(struct run *r, const uint8_t *in, size_t len,
		       unsigned int chunk_seed)
{
	struct uidlist_parser *p = uidlist_parser_new(on_header, on_record, r);
	struct fuzz_chunker chunker;
	size_t pos = 0;
	uint64_t offset;

	r->hash = 14695981039346656037ULL;
	fuzz_chunker_init(&chunker, chunk_seed);
	while (pos < len) {
		size_t give = fuzz_chunk_next(&chunker, len - pos);
		enum uidlist_parse_result res =
		    uidlist_parser_feed(p, in + pos, give);
		pos += give;
		if (res != UIDLIST_PARSE_MORE && res != UIDLIST_PARSE_DONE)
			break;
	}
	enum uidlist_parse_result res = uidlist_parser_finish(p);
	const char *err = uidlist_parser_error(p, &offset);
	if ((res == UIDLIST_PARSE_DONE) != (err == NULL) || offset > len)
		abort();
	fuzz_mix_u64(&r->hash, res);
	fuzz_mix_u64(&r->hash, offset);
	if (err != NULL)
		fuzz_mix(&r->hash, err, strlen(err));
	uidlist_parser_free(&p);
	if (p != NULL)
		abort();
}

static int compare_out(const void *data, size_t len, void *context)
{
	struct str *rest = context;

	if (len > rest->len || memcmp(data, rest->p, len) != 0)
		abort();
	rest->p += len;
	rest->len -= len;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *in = data + 1;
	size_t len = size - 1;
	struct run whole = {0}, chunked = {0};

	run_stream(&whole, in, len, 0);
	run_stream(&chunked, in, len, data[0] | 1);
	if (whole.hash != chunked.hash || whole.records != chunked.records)
		abort();

	struct uidlist_loader *l = uidlist_loader_new(1000);
	struct uidlist *list = NULL;
	const char *error = NULL;
	uidlist_loader_feed(l, in, len);
	if (uidlist_loader_finish(l, &list, &error, NULL) == UIDLIST_OK) {
		struct str rest = str_from((const char *)in, len);
		if (uidlist_count(list) != whole.records)
			abort();
		if (uidlist_serialize(list, compare_out, &rest) != 0 ||
		    rest.len != 0)
			abort();
		/* every record can be found both ways */
		uint32_t uid;
		struct str name, back;
		for (uint32_t i = 0; uidlist_record_at(list, i, &uid, &name);
		     i++) {
			if (uidlist_lookup_name(list, name) != uid ||
			    !uidlist_lookup_uid(list, uid, &back) ||
			    !str_eq(name, back))
				abort();
		}
		uidlist_free(&list);
	} else if (list != NULL || error == NULL) {
		abort();
	}
	uidlist_loader_free(&l);
	return 0;
}
