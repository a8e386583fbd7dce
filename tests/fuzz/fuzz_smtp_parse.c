/* Fuzzes the SMTP/LMTP command parser and the DATA decoder.
 *
 * Input: byte 0 picks the limits, byte 1 seeds the chunking and the
 * decoder's output buffer size, the rest is the client's byte stream. It
 * is run twice: fed whole with a 4 KiB output buffer, and in data-driven
 * chunks with a 2..8 byte output buffer; both must give the same events
 * and message bytes. After DATA the body goes through the decoder, after
 * BDAT the chunk is skipped, as a session does. Checks: slices lie in the
 * input, NUL errors point at a NUL, paths and parameters obey their
 * grammar, and a decoded message dot-stuffed again decodes to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_parse.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	const uint8_t *in;
	size_t len;
	const struct smtp_parser_limits *limits;
	uint64_t max_size;
	uint8_t *msg; /* len bytes: a message is never longer than input */
	size_t msg_len;
	uint64_t hash;
	size_t events;
};

static void check_command(struct run *r, const struct smtp_command *cmd,
			  size_t pos)
{
	const struct str v = cmd->verb_str;

	if (v.len == 0 || v.len > SMTP_VERB_MAX_LEN || cmd->offset >= pos ||
	    memcmp(v.p, r->in + cmd->offset, v.len) != 0 ||
	    cmd->verb != smtp_verb_lookup(v))
		abort();
	if (cmd->args.len > 0 &&
	    memcmp(cmd->args.p, r->in + cmd->offset + v.len + 1,
		   cmd->args.len) != 0)
		abort();
	fuzz_mix_u64(&r->hash, cmd->verb);
	fuzz_mix_u64(&r->hash, cmd->offset);
	fuzz_mix_str(&r->hash, v, 1);
	fuzz_mix_str(&r->hash, cmd->args, 1);
	if (cmd->verb == SMTP_VERB_MAIL || cmd->verb == SMTP_VERB_RCPT) {
		const struct smtp_path *path = &cmd->path;
		if (path->null != (path->raw.len == 0) ||
		    (path->null && cmd->verb == SMTP_VERB_RCPT))
			abort();
		if (!path->null && path->domain.len == 0 &&
		    !(cmd->verb == SMTP_VERB_RCPT &&
		      str_eq_nocase(path->local, STR("postmaster"))))
			abort();
		if (path->local.len > path->raw.len ||
		    path->domain.len >= path->raw.len + path->null)
			abort();
		fuzz_mix_u64(&r->hash, (uint64_t)path->null << 1 | path->quoted);
		fuzz_mix_str(&r->hash, path->raw, 1);
		fuzz_mix_str(&r->hash, path->local, 1);
		fuzz_mix_str(&r->hash, path->domain, 1);
		if (cmd->param_count > r->limits->max_params)
			abort();
		for (size_t i = 0; i < cmd->param_count; i++) {
			const struct smtp_param *pa = &cmd->params[i];
			if (pa->keyword.len == 0 ||
			    pa->has_value != (pa->value.len > 0) ||
			    memchr(pa->value.p, ' ', pa->value.len) != NULL ||
			    memchr(pa->value.p, '=', pa->value.len) != NULL)
				abort();
			fuzz_mix_str(&r->hash, pa->keyword, 1);
			fuzz_mix_str(&r->hash, pa->value, 1);
		}
	} else if (cmd->param_count != 0) {
		abort();
	}
	fuzz_mix_u64(&r->hash, cmd->bdat_size);
	fuzz_mix_u64(&r->hash, cmd->bdat_last);
}

/* Dot-stuffs r->msg again and decodes it: must give the message back. */
static void check_roundtrip(const struct run *r)
{
	size_t cap = r->msg_len * 2 + 5, n = 0;
	uint8_t *stuffed = malloc(cap);
	uint8_t *again = malloc(cap);
	bool line_start = true;

	if (stuffed == NULL || again == NULL)
		abort();
	for (size_t i = 0; i < r->msg_len; i++) {
		if (line_start && r->msg[i] == '.')
			stuffed[n++] = '.';
		stuffed[n++] = r->msg[i];
		line_start =
		    r->msg[i] == '\n' && i > 0 && r->msg[i - 1] == '\r';
	}
	bool crlf_end = r->msg_len == 0 || line_start;
	if (!crlf_end) {
		memcpy(stuffed + n, "\r\n", 2);
		n += 2;
	}
	memcpy(stuffed + n, ".\r\n", 3);
	n += 3;

	struct smtp_data_decoder *dec = smtp_data_decoder_new(UINT64_MAX);
	size_t consumed, produced;
	if (smtp_data_decode(dec, stuffed, n, &consumed, again, cap,
			     &produced) != SMTP_DATA_DONE ||
	    consumed != n || produced != r->msg_len + (crlf_end ? 0 : 2) ||
	    memcmp(again, r->msg, r->msg_len) != 0)
		abort();
	smtp_data_decoder_free(&dec);
	free(stuffed);
	free(again);
}

static void run_stream(struct run *r, unsigned int chunk_seed)
{
	struct smtp_parser *p = smtp_parser_new(r->limits);
	struct smtp_data_decoder *dec = smtp_data_decoder_new(r->max_size);
	struct fuzz_chunker chunker;

	fuzz_chunker_init(&chunker, chunk_seed);
	size_t pos = 0;
	size_t out_size = chunk_seed == 0 ? 4096 : 2 + chunk_seed % 7;
	uint8_t out[4096];
	bool in_data = false;
	uint64_t bdat_left = 0;

	r->msg = malloc(r->len + 1);
	if (r->msg == NULL)
		abort();
	while (pos < r->len) {
		size_t give = fuzz_chunk_next(&chunker, r->len - pos);
		size_t consumed = SIZE_MAX;
		if (bdat_left > 0) {
			consumed = give < bdat_left ? give : (size_t)bdat_left;
			bdat_left -= consumed;
			pos += consumed;
			smtp_parser_advance(p, consumed);
			continue;
		}
		if (in_data) {
			size_t produced = SIZE_MAX;
			enum smtp_data_result res =
			    smtp_data_decode(dec, r->in + pos, give, &consumed,
					     out, out_size, &produced);
			if (consumed > give || produced > out_size ||
			    produced > r->len - r->msg_len)
				abort();
			if (res == SMTP_DATA_MORE && consumed < give &&
			    out_size - produced >= 2)
				abort();
			memcpy(r->msg + r->msg_len, out, produced);
			r->msg_len += produced;
			pos += consumed;
			smtp_parser_advance(p, consumed);
			if (res == SMTP_DATA_MORE)
				continue;
			bool big = res == SMTP_DATA_TOO_BIG;
			uint64_t sz = smtp_data_decoder_size(dec);
			if (big != smtp_data_decoder_over_limit(dec) ||
			    big != (sz > r->max_size) ||
			    r->msg_len != (big ? r->max_size : sz) ||
			    memcmp(r->in + pos - 3, ".\r\n", 3) != 0)
				abort();
			if (!big)
				check_roundtrip(r);
			r->events++;
			fuzz_mix_u64(&r->hash, 100 + (uint64_t)big);
			fuzz_mix_u64(&r->hash, sz);
			fuzz_mix_u64(&r->hash, smtp_data_decoder_bare_eol(dec));
			fuzz_mix(&r->hash, r->msg, r->msg_len);
			r->msg_len = 0;
			smtp_data_decoder_reset(dec);
			in_data = false;
			continue;
		}

		struct smtp_command cmd;
		struct smtp_parse_error err;
		enum smtp_parse_result res = smtp_parser_parse(
		    p, r->in + pos, give, &consumed, &cmd, &err);
		if (consumed > give)
			abort();
		pos += consumed;
		if (res != SMTP_PARSE_MORE) {
			r->events++;
			fuzz_mix_u64(&r->hash, (uint64_t)(res + 1));
		}
		switch (res) {
		case SMTP_PARSE_MORE:
			if (consumed != give)
				abort();
			break;
		case SMTP_PARSE_COMMAND:
			if (r->in[pos - 1] != '\n')
				abort();
			check_command(r, &cmd, pos);
			if (cmd.verb == SMTP_VERB_DATA)
				in_data = true;
			if (cmd.verb == SMTP_VERB_BDAT)
				bdat_left = cmd.bdat_size;
			break;
		case SMTP_PARSE_ERROR:
			if (err.msg == NULL || err.offset > pos)
				abort();
			if (err.kind == SMTP_PARSE_ERR_NUL &&
			    r->in[err.offset] != 0)
				abort();
			if (err.kind == SMTP_PARSE_ERR_TOO_LONG &&
			    err.offset != pos)
				abort();
			fuzz_mix_u64(&r->hash, err.kind);
			fuzz_mix_u64(&r->hash, err.offset);
			fuzz_mix_u64(&r->hash, err.verb);
			fuzz_mix(&r->hash, err.msg, strlen(err.msg));
			break;
		default:
			abort();
		}
	}
	/* a message cut off by the end of input */
	fuzz_mix(&r->hash, r->msg, r->msg_len);
	free(r->msg);
	r->msg = NULL;
	smtp_parser_free(&p);
	smtp_data_decoder_free(&dec);
	if (p != NULL || dec != NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t sel = data[0];
	unsigned int size_sel = (sel >> 6) & 3;
	struct smtp_parser_limits limits = {
	    .max_line_len = 4 + (size_t)(sel & 15) * 34,
	    .max_params = (sel >> 4) & 3,
	};
	struct run whole = {
	    .in = data + 2,
	    .len = size - 2,
	    .limits = &limits,
	    .max_size = size_sel == 0 ? UINT64_MAX : size_sel * 20 - 20,
	    .hash = 14695981039346656037ULL,
	};
	struct run chunked = whole;

	run_stream(&whole, 0);
	run_stream(&chunked, data[1] | 1);
	if (whole.hash != chunked.hash || whole.events != chunked.events)
		abort();
	return 0;
}
