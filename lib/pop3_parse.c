/* Incremental POP3 command line parser: assembles one line at a time in a
 * buffer bounded by the larger line limit, then splits it. */
#include "pop3_parse.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "line_reader.h"
#include "xmalloc.h"

struct pop3_parser {
	struct pop3_parser_limits limits;
	struct line_reader lr;
	struct str *args;    /* max_args entries */
	bool raw;            /* the partial line is read_line's */
};

static const struct {
	const char *name;
	enum pop3_verb verb;
} pop3_verbs[] = {
    {"USER", POP3_VERB_USER},       {"PASS", POP3_VERB_PASS},
    {"APOP", POP3_VERB_APOP},       {"AUTH", POP3_VERB_AUTH},
    {"CAPA", POP3_VERB_CAPA},       {"STLS", POP3_VERB_STLS},
    {"QUIT", POP3_VERB_QUIT},       {"STAT", POP3_VERB_STAT},
    {"LIST", POP3_VERB_LIST},       {"RETR", POP3_VERB_RETR},
    {"DELE", POP3_VERB_DELE},       {"NOOP", POP3_VERB_NOOP},
    {"RSET", POP3_VERB_RSET},       {"TOP", POP3_VERB_TOP},
    {"UIDL", POP3_VERB_UIDL},       {"UTF8", POP3_VERB_UTF8},
    {"XCLIENT", POP3_VERB_XCLIENT},
};

enum pop3_verb pop3_verb_lookup(struct str verb)
{
	for (size_t i = 0; i < sizeof(pop3_verbs) / sizeof(pop3_verbs[0]);
	     i++) {
		if (str_eq_nocase(verb, str_cstr(pop3_verbs[i].name)))
			return pop3_verbs[i].verb;
	}
	return POP3_VERB_UNKNOWN;
}

struct pop3_parser *pop3_parser_new(const struct pop3_parser_limits *limits)
{
	struct pop3_parser *p = xcalloc(1, sizeof(*p));

	p->limits = *limits;
	/* AUTH continuation lines carry credentials */
	line_reader_init(&p->lr, limits->max_line_len > limits->max_auth_line_len
				 ? limits->max_line_len
				 : limits->max_auth_line_len, true);
	if (limits->max_args > 0)
		p->args = xcalloc(limits->max_args, sizeof(*p->args));
	return p;
}

void pop3_parser_free(struct pop3_parser **parser)
{
	struct pop3_parser *p = *parser;

	if (p == NULL)
		return;
	line_reader_deinit(&p->lr);
	free(p->args);
	free(p);
	*parser = NULL;
}

static void set_error(struct pop3_parser *p, struct pop3_parse_error *err,
		      enum pop3_parse_error_kind kind, const char *msg,
		      size_t line_pos)
{
	err->kind = kind;
	err->msg = msg;
	err->offset = p->lr.line_start + line_pos;
}

/* Reads up to a complete line with the given limit. Returns 1 with
 * *end_r = length without line end, 0 when the input ran out, -1 for an
 * error (TOO_LONG or NUL). */
static int read_line(struct pop3_parser *p, const uint8_t *in, size_t size,
		     size_t *consumed_r, size_t limit, size_t *end_r,
		     struct pop3_parse_error *err)
{
	enum line_reader_error lerr;
	size_t pos;

	memset(err, 0, sizeof(*err));
	int ret = line_reader_read(&p->lr, in, size, limit, consumed_r, end_r,
				   &lerr, &pos);
	if (ret < 0) {
		if (lerr == LINE_READER_TOO_LONG)
			set_error(p, err, POP3_PARSE_ERR_TOO_LONG,
				  "Input line too long.", pos);
		else
			set_error(p, err, POP3_PARSE_ERR_NUL,
				  "NUL byte in command.", pos);
	}
	return ret;
}

static bool is_verb_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static enum pop3_parse_result split_command(struct pop3_parser *p, size_t end,
					    struct pop3_command *cmd,
					    struct pop3_parse_error *err)
{
	const char *s = (const char *)p->lr.line;
	size_t i = 0;

	if (end == 0) {
		set_error(p, err, POP3_PARSE_ERR_EMPTY, "Empty command.", 0);
		return POP3_PARSE_ERROR;
	}
	while (i < end && s[i] != ' ') {
		if (!is_verb_char((uint8_t)s[i]) || i == POP3_VERB_MAX_LEN) {
			set_error(p, err, POP3_PARSE_ERR_BAD_VERB,
				  "Invalid command.", i);
			return POP3_PARSE_ERROR;
		}
		i++;
	}
	if (i == 0) {
		set_error(p, err, POP3_PARSE_ERR_BAD_VERB, "Invalid command.",
			  0);
		return POP3_PARSE_ERROR;
	}
	cmd->verb_str = str_from(s, i);
	cmd->verb = pop3_verb_lookup(cmd->verb_str);
	cmd->offset = p->lr.line_start;
	if (i < end)
		i++; /* the one space after the verb */
	cmd->rest = str_from(s + i, end - i);
	cmd->args = p->args;
	while (i < end) {
		while (i < end && s[i] == ' ')
			i++;
		if (i == end)
			break;
		size_t start = i;
		while (i < end && s[i] != ' ')
			i++;
		if (cmd->arg_count == p->limits.max_args) {
			cmd->args_overflow = true;
			break;
		}
		p->args[cmd->arg_count++] = str_from(s + start, i - start);
	}
	return POP3_PARSE_COMMAND;
}

enum pop3_parse_result pop3_parser_parse(struct pop3_parser *p,
					 const void *data, size_t size,
					 size_t *consumed_r,
					 struct pop3_command *cmd_r,
					 struct pop3_parse_error *error_r)
{
	size_t end = 0;

	memset(cmd_r, 0, sizeof(*cmd_r));
	/* a partial read_line line must be finished first */
	assert(!p->raw || !line_reader_partial(&p->lr));
	p->raw = false;
	int ret = read_line(p, data, size, consumed_r, p->limits.max_line_len,
			    &end, error_r);
	if (ret < 0)
		return POP3_PARSE_ERROR;
	if (ret == 0)
		return POP3_PARSE_MORE;
	return split_command(p, end, cmd_r, error_r);
}

enum pop3_parse_result pop3_parser_read_line(struct pop3_parser *p,
					     const void *data, size_t size,
					     size_t *consumed_r,
					     struct str *line_r,
					     struct pop3_parse_error *error_r)
{
	size_t end = 0;

	*line_r = STR_NULL;
	/* a partial command line must be finished first */
	assert(p->raw || !line_reader_partial(&p->lr));
	p->raw = true;
	int ret = read_line(p, data, size, consumed_r,
			    p->limits.max_auth_line_len, &end, error_r);
	if (ret < 0)
		return POP3_PARSE_ERROR;
	if (ret == 0)
		return POP3_PARSE_MORE;
	*line_r = str_from(end == 0 ? "" : (const char *)p->lr.line, end);
	return POP3_PARSE_LINE;
}
