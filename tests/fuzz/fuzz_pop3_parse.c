/* Fuzzes the POP3 command line parser.
 *
 * Input: byte 0 picks the limits, byte 1 seeds the chunking, the rest is
 * the client's byte stream. The stream is parsed twice, fed whole and in
 * data-driven chunks; both runs must give the same events. Each event is
 * checked against the input and the limits; "AUTH mech" without initial
 * response switches to read_line for one line, as the proxy does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3_parse.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	const uint8_t *in;
	size_t len;
	const struct pop3_parser_limits *limits;
	uint64_t hash;
	size_t events;
};

static bool inside(struct str part, struct str whole)
{
	return part.p >= whole.p && part.len <= whole.len &&
	       part.p - whole.p <= (ptrdiff_t)(whole.len - part.len);
}

static void check_command(struct run *r, const struct pop3_command *cmd,
			  size_t pos)
{
	const struct str v = cmd->verb_str;

	if (v.len == 0 || v.len > POP3_VERB_MAX_LEN || cmd->offset >= pos ||
	    cmd->offset + v.len > r->len ||
	    memcmp(v.p, r->in + cmd->offset, v.len) != 0)
		abort();
	if (cmd->verb != pop3_verb_lookup(v))
		abort();
	if (cmd->rest.len > 0 &&
	    memcmp(cmd->rest.p, r->in + cmd->offset + v.len + 1,
		   cmd->rest.len) != 0)
		abort();
	if (cmd->arg_count > r->limits->max_args ||
	    (cmd->args_overflow && cmd->arg_count != r->limits->max_args))
		abort();
	fuzz_mix_u64(&r->hash, cmd->verb);
	fuzz_mix_u64(&r->hash, cmd->offset);
	fuzz_mix_str(&r->hash, v, 1);
	fuzz_mix_str(&r->hash, cmd->rest, 1);
	fuzz_mix_u64(&r->hash, cmd->arg_count << 1 | cmd->args_overflow);
	for (size_t i = 0; i < cmd->arg_count; i++) {
		struct str a = cmd->args[i];
		if (a.len == 0 || memchr(a.p, ' ', a.len) != NULL ||
		    !inside(a, cmd->rest))
			abort();
		fuzz_mix_str(&r->hash, a, 1);
	}
}

static void run_stream(struct run *r, unsigned int chunk_seed)
{
	struct pop3_parser *p = pop3_parser_new(r->limits);
	struct fuzz_chunker chunker;

	fuzz_chunker_init(&chunker, chunk_seed);
	size_t pos = 0;
	bool line_mode = false;

	while (pos < r->len) {
		size_t give = fuzz_chunk_next(&chunker, r->len - pos);
		size_t consumed = SIZE_MAX;
		struct pop3_command cmd;
		struct pop3_parse_error err;
		struct str line;
		enum pop3_parse_result res;

		if (line_mode)
			res = pop3_parser_read_line(p, r->in + pos, give,
						    &consumed, &line, &err);
		else
			res = pop3_parser_parse(p, r->in + pos, give, &consumed,
						&cmd, &err);
		if (consumed > give)
			abort();
		pos += consumed;
		if (res != POP3_PARSE_MORE) {
			r->events++;
			fuzz_mix_u64(&r->hash, (uint64_t)(res + 1));
		}
		switch (res) {
		case POP3_PARSE_MORE:
			if (consumed != give)
				abort();
			break;
		case POP3_PARSE_COMMAND:
			if (line_mode || r->in[pos - 1] != '\n')
				abort();
			check_command(r, &cmd, pos);
			if (cmd.verb == POP3_VERB_AUTH && cmd.arg_count == 1)
				line_mode = true;
			break;
		case POP3_PARSE_LINE:
			if (!line_mode ||
			    line.len >= r->limits->max_auth_line_len)
				abort();
			fuzz_mix_str(&r->hash, line, 1);
			line_mode = false;
			break;
		case POP3_PARSE_ERROR:
			if (err.msg == NULL || err.offset > pos)
				abort();
			if (err.kind == POP3_PARSE_ERR_NUL &&
			    r->in[err.offset] != 0)
				abort();
			fuzz_mix_u64(&r->hash, err.kind);
			fuzz_mix_u64(&r->hash, err.offset);
			line_mode = false;
			break;
		default:
			abort();
		}
	}
	pop3_parser_free(&p);
	if (p != NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t sel = data[0];
	struct pop3_parser_limits limits = {
	    .max_line_len = 4 + (size_t)(sel & 15) * 17,
	    .max_auth_line_len = 4 + (size_t)((sel >> 4) & 7) * 40,
	    .max_args = (sel & 0x80) ? 4 : 1,
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
