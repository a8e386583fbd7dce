/* Fuzzes the IMAP command tokenizer.
 *
 * Input: byte 0 picks the limits, byte 1 seeds the chunking, the rest is
 * the client's byte stream. The stream is parsed twice, once fed whole and
 * once in data-driven chunks (1..64 bytes); both runs must give the same
 * sequence of events. Every event is checked against the input: slices
 * are read in full (ASan catches one pointing outside its storage), NUL
 * and 8BIT errors point at such a byte, atoms are the input bytes at their
 * offset, quoted strings hold no forbidden byte, limits hold. A command
 * named AUTHENTICATE with one argument switches to read_line for one line,
 * as the proxy does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap_parse.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	const uint8_t *in; /* the stream */
	size_t len;
	const struct imap_parser_limits *limits;
	uint64_t hash;
	size_t events;
	size_t tokens;  /* of the current command */
	size_t lit_sum; /* literal bytes of the current command */
};

static void check_arg(struct run *r, const struct imap_arg *a, uint64_t lo,
		      uint64_t hi, unsigned int depth)
{
	r->tokens++;
	if (a->offset < lo || a->offset >= hi)
		abort();
	fuzz_mix_u64(&r->hash, a->type);
	fuzz_mix_u64(&r->hash, a->offset);
	fuzz_mix_u64(&r->hash, (uint64_t)a->literal_nonsync << 1 | a->literal8);
	fuzz_mix_str(&r->hash, a->str, 0);
	switch (a->type) {
	case IMAP_ARG_ATOM:
	case IMAP_ARG_NIL:
		if (a->str.len == 0 || a->offset + a->str.len > r->len ||
		    memcmp(a->str.p, r->in + a->offset, a->str.len) != 0)
			abort();
		for (size_t i = 0; i < a->str.len; i++) {
			uint8_t c = (uint8_t)a->str.p[i];
			if (c <= 0x20 || c >= 0x7f || c == '(' || c == ')' ||
			    c == '{' || c == '"')
				abort();
		}
		if ((a->type == IMAP_ARG_NIL) !=
		    str_eq_nocase(a->str, STR("NIL")))
			abort();
		break;
	case IMAP_ARG_QUOTED:
		if (r->in[a->offset] != '"')
			abort();
		for (size_t i = 0; i < a->str.len; i++) {
			uint8_t c = (uint8_t)a->str.p[i];
			if (c == 0 || c == '\r' || c == '\n' || c >= 0x80)
				abort();
		}
		break;
	case IMAP_ARG_LITERAL:
		if (r->in[a->offset] != (a->literal8 ? '~' : '{'))
			abort();
		if (a->str.len > r->limits->max_literal_size)
			abort();
		r->lit_sum += a->str.len;
		break;
	case IMAP_ARG_LIST:
		if (r->in[a->offset] != '(' ||
		    depth >= r->limits->max_list_depth)
			abort();
		if (a->list_count == 0 && a->list != NULL)
			abort();
		fuzz_mix_u64(&r->hash, a->list_count);
		for (size_t i = 0; i < a->list_count; i++)
			check_arg(r, &a->list[i], lo, hi, depth + 1);
		break;
	default:
		abort();
	}
}

static void check_error(struct run *r, const struct imap_parse_error *err,
			uint64_t pos)
{
	if (err->msg == NULL || err->msg[0] == '\0')
		abort();
	if (err->offset > pos || err->pos > err->offset)
		abort();
	fuzz_mix_u64(&r->hash, err->kind);
	fuzz_mix_u64(&r->hash, err->offset);
	fuzz_mix_u64(&r->hash, err->pos);
	fuzz_mix_u64(&r->hash, (uint64_t)err->fatal << 1 | err->literal_nonsync);
	fuzz_mix_str(&r->hash, err->tag, 0);
	fuzz_mix(&r->hash, err->msg, strlen(err->msg));
	switch (err->kind) {
	case IMAP_PARSE_ERR_NUL:
		if (err->offset >= r->len || r->in[err->offset] != 0)
			abort();
		break;
	case IMAP_PARSE_ERR_8BIT:
		if (err->offset >= r->len || r->in[err->offset] < 0x80)
			abort();
		break;
	case IMAP_PARSE_ERR_LITERAL_TOO_BIG:
		if (r->in[err->offset] != '{' && r->in[err->offset] != '~')
			abort();
		if (err->fatal != err->literal_nonsync)
			abort();
		break;
	case IMAP_PARSE_ERR_TOO_LONG:
		/* at least max_line_len line bytes came before it */
		if (!err->fatal || err->pos < r->limits->max_line_len)
			abort();
		break;
	case IMAP_PARSE_ERR_NONE:
		abort();
	default:
		break;
	}
}

/* Runs the whole stream; chunk_seed 0 feeds everything at once. */
static void run_stream(struct run *r, unsigned int chunk_seed)
{
	struct imap_parser *p = imap_parser_new(r->limits);
	struct fuzz_chunker chunker;

	fuzz_chunker_init(&chunker, chunk_seed);
	size_t pos = 0;
	bool line_mode = false;

	while (pos < r->len) {
		size_t give = fuzz_chunk_next(&chunker, r->len - pos);
		size_t consumed = SIZE_MAX;
		struct imap_command cmd;
		struct imap_parse_error err;
		struct str line;
		enum imap_parse_result res;

		if (line_mode)
			res = imap_parser_read_line(p, r->in + pos, give,
						    &consumed, &line, &err);
		else
			res = imap_parser_parse(p, r->in + pos, give, &consumed,
						&cmd, &err);
		if (consumed > give)
			abort();
		pos += consumed;
		if (imap_parser_memory(p) > imap_parser_memory_max(r->limits))
			abort();
		if (res != IMAP_PARSE_MORE) {
			r->events++;
			fuzz_mix_u64(&r->hash, (uint64_t)(res + 1));
		}
		switch (res) {
		case IMAP_PARSE_MORE:
			if (consumed != give)
				abort();
			break;
		case IMAP_PARSE_COMMAND:
			if (line_mode || cmd.tag.len == 0 ||
			    cmd.name.len == 0 || cmd.offset >= pos)
				abort();
			fuzz_mix_str(&r->hash, cmd.tag, 0);
			fuzz_mix_str(&r->hash, cmd.name, 0);
			fuzz_mix_u64(&r->hash, cmd.offset);
			fuzz_mix_u64(&r->hash, cmd.arg_count);
			r->tokens = 0;
			r->lit_sum = 0;
			for (size_t i = 0; i < cmd.arg_count; i++)
				check_arg(r, &cmd.args[i], cmd.offset, pos, 0);
			if (r->tokens > r->limits->max_args ||
			    r->lit_sum > r->limits->max_literal_size)
				abort();
			if (str_eq_nocase(cmd.name, STR("AUTHENTICATE")) &&
			    cmd.arg_count == 1)
				line_mode = true;
			break;
		case IMAP_PARSE_LITERAL_CONT:
			if (line_mode || cmd.tag.len == 0 ||
			    cmd.name.len == 0 ||
			    cmd.literal_size > r->limits->max_literal_size ||
			    r->in[pos - 1] != '\n')
				abort();
			fuzz_mix_u64(&r->hash, cmd.literal_size);
			fuzz_mix_str(&r->hash, cmd.tag, 0);
			break;
		case IMAP_PARSE_LINE:
			if (!line_mode || memchr(line.p, 0, line.len) != NULL ||
			    line.len >= r->limits->max_line_len)
				abort();
			fuzz_mix_str(&r->hash, line, 0);
			line_mode = false;
			break;
		case IMAP_PARSE_ERROR:
			check_error(r, &err, pos);
			line_mode = false;
			if (err.fatal && err.kind != IMAP_PARSE_ERR_TOO_LONG)
				pos = r->len; /* the session closes */
			break;
		default:
			abort();
		}
	}
	imap_parser_free(&p);
	if (p != NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t sel = data[0];
	struct imap_parser_limits limits = {
	    .max_line_len = (sel & 3) == 0 ? 1024 : (size_t)16 << (sel & 3),
	    .max_literal_size = (size_t)((sel >> 2) & 3) * 24,
	    .max_list_depth = (sel >> 4) & 3,
	    .max_args = 2 + ((sel >> 6) & 3) * 8,
	};
	struct run whole = {.in = data + 2,
			    .len = size - 2,
			    .limits = &limits,
			    .hash = 14695981039346656037ULL};
	struct run chunked = whole;

	run_stream(&whole, 0);
	run_stream(&chunked, data[1] | 1);
	if (whole.hash != chunked.hash || whole.events != chunked.events)
		abort();
	return 0;
}
