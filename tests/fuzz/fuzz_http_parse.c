/* Fuzzes the HTTP/1.x message parser (lib/http_parse).
 *
 * Input: byte 0 picks the mode and the limits, byte 1 seeds the chunking,
 * the rest is the byte stream. The stream is parsed twice, fed whole and
 * in data-driven chunks; both runs must give the same messages, errors and
 * offsets, or the target aborts. After an error the parser is reset and
 * goes on with the next byte, so one input exercises many messages. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	const uint8_t *in;
	size_t len;
	enum http_parse_mode mode;
	const struct http_parser_limits *limits;
	uint64_t hash;
	size_t events;
};

static bool has_ctl(struct str s)
{
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = (uint8_t)s.p[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return true;
	}
	return false;
}

static void check_message(struct run *r, const struct http_message *m)
{
	const struct http_parser_limits *l = r->limits;

	if (m->header_count > l->max_headers || m->body.len > l->max_body ||
	    m->version_minor > 1)
		abort();
	if (r->mode == HTTP_PARSE_MODE_REQUEST) {
		if (m->method.len == 0 || m->method.len > HTTP_METHOD_MAX_LEN ||
		    m->target.len == 0 || m->target.len >= l->max_line_len ||
		    has_ctl(m->method) || has_ctl(m->target))
			abort();
	} else if (m->status < 100 || m->status > 999 || has_ctl(m->reason)) {
		abort();
	}
	if (!m->has_content_length && m->body.len != 0)
		abort();
	fuzz_mix_str(&r->hash, m->method, 0);
	fuzz_mix_str(&r->hash, m->target, 0);
	fuzz_mix_u64(&r->hash, m->status);
	fuzz_mix_str(&r->hash, m->reason, 0);
	fuzz_mix_u64(&r->hash, m->version_minor);
	fuzz_mix_u64(&r->hash, m->header_count);
	for (size_t i = 0; i < m->header_count; i++) {
		const struct http_header *h = &m->headers[i];
		if (h->name.len == 0 || h->name.len + h->value.len >= l->max_line_len ||
		    has_ctl(h->name) || has_ctl(h->value))
			abort();
		if (h->value.len > 0 &&
		    (h->value.p[0] == ' ' || h->value.p[h->value.len - 1] == ' '))
			abort();
		fuzz_mix_str(&r->hash, h->name, 0);
		fuzz_mix_str(&r->hash, h->value, 0);
	}
	struct str v;
	if (http_message_header(m, STR("content-length"), &v) !=
	    m->has_content_length)
		abort();
	fuzz_mix_str(&r->hash, m->body, 0);
}

static void run_stream(struct run *r, unsigned int chunk_seed)
{
	struct http_parser *p = http_parser_new(r->mode, r->limits);
	struct fuzz_chunker chunker;

	fuzz_chunker_init(&chunker, chunk_seed);
	size_t pos = 0;

	while (pos < r->len) {
		size_t give = fuzz_chunk_next(&chunker, r->len - pos);
		size_t consumed = SIZE_MAX;
		struct http_message msg;
		struct http_parse_error err;
		enum http_parse_result res =
			http_parser_feed(p, r->in + pos, give, &consumed, &msg, &err);
		if (consumed > give)
			abort();
		pos += consumed;
		switch (res) {
		case HTTP_PARSE_MORE:
			if (consumed != give)
				abort();
			break;
		case HTTP_PARSE_DONE:
			r->events++;
			fuzz_mix_u64(&r->hash, 1);
			fuzz_mix_u64(&r->hash, pos);
			check_message(r, &msg);
			break;
		case HTTP_PARSE_ERROR:
			if (err.msg == NULL || err.kind == HTTP_PARSE_ERR_NONE ||
			    err.status < 400 || err.status > 599)
				abort();
			r->events++;
			fuzz_mix_u64(&r->hash, 2);
			fuzz_mix_u64(&r->hash, pos);
			fuzz_mix_u64(&r->hash, err.kind);
			fuzz_mix_u64(&r->hash, err.status);
			fuzz_mix_u64(&r->hash, err.offset);
			http_parser_reset(p);
			/* an error with nothing consumed cannot happen here:
			 * it would loop forever */
			if (consumed == 0)
				abort();
			break;
		default:
			abort();
		}
	}
	http_parser_free(&p);
	if (p != NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t sel = data[0];
	struct http_parser_limits limits = {
		.max_line_len = 1 + (size_t)(sel & 15) * 13,
		.max_headers = (sel >> 4) & 7,
		.max_body = (sel & 0x40) ? 3 : 200,
	};
	struct run whole = {
		.in = data + 2,
		.len = size - 2,
		.mode = (sel & 0x80) ? HTTP_PARSE_MODE_RESPONSE : HTTP_PARSE_MODE_REQUEST,
		.limits = &limits,
		.hash = 14695981039346656037ULL,
	};
	struct run chunked = whole;

	run_stream(&whole, 0);
	run_stream(&chunked, data[1] | 1);
	if (whole.hash != chunked.hash || whole.events != chunked.events)
		abort();
	return 0;
}
