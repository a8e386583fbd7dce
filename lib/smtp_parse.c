/* Incremental SMTP/LMTP command line parser and DATA dot-unstuffing
 * decoder. Lines are assembled in a buffer bounded by max_line_len, then
 * parsed whole. A quoted local part is unescaped into a scratch buffer of
 * the same bound, so the raw path slice stays intact. */
#include "smtp_parse.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "line_reader.h"
#include "xmalloc.h"

struct smtp_parser {
	struct smtp_parser_limits limits;
	struct line_reader lr;
	char *scratch;             /* unquoted local part, max_line_len bytes */
	struct smtp_param *params; /* max_params entries */
};

static const struct {
	const char *name;
	enum smtp_verb verb;
} smtp_verbs[] = {
    {"HELO", SMTP_VERB_HELO},         {"EHLO", SMTP_VERB_EHLO},
    {"LHLO", SMTP_VERB_LHLO},         {"MAIL", SMTP_VERB_MAIL},
    {"RCPT", SMTP_VERB_RCPT},         {"DATA", SMTP_VERB_DATA},
    {"BDAT", SMTP_VERB_BDAT},         {"RSET", SMTP_VERB_RSET},
    {"NOOP", SMTP_VERB_NOOP},         {"QUIT", SMTP_VERB_QUIT},
    {"VRFY", SMTP_VERB_VRFY},         {"HELP", SMTP_VERB_HELP},
    {"STARTTLS", SMTP_VERB_STARTTLS}, {"AUTH", SMTP_VERB_AUTH},
    {"XCLIENT", SMTP_VERB_XCLIENT},
};

enum smtp_verb smtp_verb_lookup(struct str verb)
{
	for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]);
	     i++) {
		if (str_eq_nocase(verb, str_cstr(smtp_verbs[i].name)))
			return smtp_verbs[i].verb;
	}
	return SMTP_VERB_UNKNOWN;
}

struct smtp_parser *smtp_parser_new(const struct smtp_parser_limits *limits)
{
	struct smtp_parser *p = xcalloc(1, sizeof(*p));

	p->limits = *limits;
	line_reader_init(&p->lr, limits->max_line_len, false);
	if (limits->max_params > 0)
		p->params = xcalloc(limits->max_params, sizeof(*p->params));
	return p;
}

void smtp_parser_free(struct smtp_parser **parser)
{
	struct smtp_parser *p = *parser;

	if (p == NULL)
		return;
	line_reader_deinit(&p->lr);
	free(p->scratch);
	free(p->params);
	free(p);
	*parser = NULL;
}

/* ---- line assembly ------------------------------------------------------- */

static void set_error(struct smtp_parser *p, struct smtp_parse_error *err,
		      enum smtp_parse_error_kind kind, const char *msg,
		      size_t line_pos)
{
	err->kind = kind;
	err->msg = msg;
	err->offset = p->lr.line_start + line_pos;
}

/* Returns 1 with a complete line (*end_r = length without line end), 0
 * when the input ran out, -1 for TOO_LONG or NUL. */
static int read_line(struct smtp_parser *p, const uint8_t *in, size_t size,
		     size_t *consumed_r, size_t *end_r,
		     struct smtp_parse_error *err)
{
	enum line_reader_error lerr;
	size_t pos;

	int ret = line_reader_read(&p->lr, in, size, p->limits.max_line_len,
				   consumed_r, end_r, &lerr, &pos);
	if (ret < 0) {
		if (lerr == LINE_READER_TOO_LONG)
			set_error(p, err, SMTP_PARSE_ERR_TOO_LONG,
				  "Line too long.", pos);
		else
			set_error(p, err, SMTP_PARSE_ERR_NUL,
				  "NUL byte in command.", pos);
	}
	return ret;
}

/* ---- paths and parameters -------------------------------------------- */

struct cursor {
	struct smtp_parser *p;
	const uint8_t *s;
	size_t i;
	size_t end;
	struct smtp_parse_error *err;
};

static bool cur_fail(struct cursor *c, enum smtp_parse_error_kind kind,
		     const char *msg)
{
	set_error(c->p, c->err, kind, msg, c->i);
	return false;
}

static bool cur_is(const struct cursor *c, uint8_t ch)
{
	return c->i < c->end && c->s[c->i] == ch;
}

static bool is_alnum(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

/* RFC 5322 atext, plus UTF-8 bytes (RFC 6531). */
static bool is_atext(uint8_t c)
{
	return is_alnum(c) || c >= 0x80 ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Let-dig, with UTF-8 bytes taken as letters (RFC 6531 U-labels). */
static bool is_let_dig(uint8_t c)
{
	return is_alnum(c) || c >= 0x80;
}

/* Domain = sub-domain *("." sub-domain) / address-literal */
static bool parse_domain(struct cursor *c)
{
	if (cur_is(c, '[')) {
		c->i++;
		size_t start = c->i;
		/* dcontent = %d33-90 / %d94-126 */
		while (c->i < c->end && c->s[c->i] >= 33 && c->s[c->i] <= 126 &&
		       c->s[c->i] != '[' && c->s[c->i] != '\\' &&
		       c->s[c->i] != ']')
			c->i++;
		if (c->i == start || !cur_is(c, ']'))
			return cur_fail(c, SMTP_PARSE_ERR_BAD_PATH,
					"Invalid address literal.");
		c->i++;
		return true;
	}
	for (;;) {
		if (c->i == c->end || !is_let_dig(c->s[c->i]))
			return cur_fail(c, SMTP_PARSE_ERR_BAD_PATH,
					"Invalid domain.");
		while (c->i < c->end &&
		       (is_let_dig(c->s[c->i]) || c->s[c->i] == '-'))
			c->i++;
		if (c->s[c->i - 1] == '-') {
			c->i--;
			return cur_fail(c, SMTP_PARSE_ERR_BAD_PATH,
					"Invalid domain.");
		}
		if (!cur_is(c, '.'))
			return true;
		c->i++;
	}
}

/* Local-part = Dot-string / Quoted-string; the value goes to *local_r
 * (quoted ones unescaped into the scratch buffer). */
static bool parse_local_part(struct cursor *c, struct smtp_path *path)
{
	if (cur_is(c, '"')) {
		struct smtp_parser *p = c->p;
		size_t w = 0;
		if (p->scratch == NULL)
			p->scratch = xmalloc(p->limits.max_line_len);
		c->i++;
		for (;;) {
			if (c->i == c->end)
				return cur_fail(c, SMTP_PARSE_ERR_BAD_PATH,
						"Unterminated quoted string.");
			uint8_t ch = c->s[c->i];
			if (ch == '"')
				break;
			if (ch == '\\') {
				/* quoted-pairSMTP = %d92 %d32-126 */
				c->i++;
				if (c->i == c->end || c->s[c->i] < 32 ||
				    c->s[c->i] > 126)
					return cur_fail(c,
							SMTP_PARSE_ERR_BAD_PATH,
							"Invalid quoted pair.");
				ch = c->s[c->i];
			} else if (ch < 32 || ch == 127) {
				return cur_fail(c, SMTP_PARSE_ERR_BAD_PATH,
						"Invalid character in quoted "
						"string.");
			}
			p->scratch[w++] = (char)ch;
			c->i++;
		}
		c->i++;
		path->local = str_from(p->scratch, w);
		path->quoted = true;
		return true;
	}
	size_t start = c->i;
	for (;;) {
		if (c->i == c->end || !is_atext(c->s[c->i]))
			return cur_fail(c, SMTP_PARSE_ERR_BAD_PATH,
					"Invalid local part.");
		while (c->i < c->end && is_atext(c->s[c->i]))
			c->i++;
		if (!cur_is(c, '.'))
			break;
		c->i++;
	}
	path->local = str_from((const char *)c->s + start, c->i - start);
	return true;
}

/* Path = "<" [ A-d-l ":" ] Mailbox ">", or "<>" when allow_null. */
static bool parse_path(struct cursor *c, struct smtp_path *path,
		       bool allow_null, bool allow_postmaster)
{
	while (cur_is(c, ' '))
		c->i++;
	if (!cur_is(c, '<'))
		return cur_fail(c, SMTP_PARSE_ERR_BAD_PATH, "Missing '<'.");
	c->i++;
	if (cur_is(c, '>')) {
		if (!allow_null)
			return cur_fail(c, SMTP_PARSE_ERR_BAD_PATH,
					"Null path not allowed.");
		c->i++;
		path->null = true;
		path->raw = str_from((const char *)c->s + c->i - 1, 0);
		path->local = path->domain = path->raw;
		return true;
	}
	if (cur_is(c, '@')) {
		/* source route, dropped (RFC 5321 section 4.1.2) */
		for (;;) {
			c->i++; /* '@' */
			if (!parse_domain(c))
				return false;
			if (!cur_is(c, ','))
				break;
			c->i++;
			if (!cur_is(c, '@'))
				return cur_fail(c, SMTP_PARSE_ERR_BAD_PATH,
						"Invalid source route.");
		}
		if (!cur_is(c, ':'))
			return cur_fail(c, SMTP_PARSE_ERR_BAD_PATH,
					"Invalid source route.");
		c->i++;
	}
	size_t start = c->i;
	if (!parse_local_part(c, path))
		return false;
	if (cur_is(c, '@')) {
		c->i++;
		size_t dstart = c->i;
		if (!parse_domain(c))
			return false;
		path->domain =
		    str_from((const char *)c->s + dstart, c->i - dstart);
	} else if (!(allow_postmaster && !path->quoted && cur_is(c, '>') &&
		     str_eq_nocase(path->local, STR("postmaster")))) {
		return cur_fail(c, SMTP_PARSE_ERR_BAD_PATH, "Missing '@'.");
	} else {
		path->domain = str_from((const char *)c->s + c->i, 0);
	}
	if (!cur_is(c, '>'))
		return cur_fail(c, SMTP_PARSE_ERR_BAD_PATH, "Missing '>'.");
	path->raw = str_from((const char *)c->s + start, c->i - start);
	c->i++;
	return true;
}

/* *( SP esmtp-param ), esmtp-param = esmtp-keyword ["=" esmtp-value] */
static bool parse_params(struct cursor *c, struct smtp_command *cmd)
{
	struct smtp_parser *p = c->p;

	if (c->i < c->end && c->s[c->i] != ' ')
		return cur_fail(c, SMTP_PARSE_ERR_BAD_SYNTAX,
				"Invalid data after address.");
	cmd->params = p->params;
	for (;;) {
		while (cur_is(c, ' '))
			c->i++;
		if (c->i == c->end)
			return true;
		if (cmd->param_count == p->limits.max_params)
			return cur_fail(c, SMTP_PARSE_ERR_TOO_MANY_PARAMS,
					"Too many parameters.");
		size_t kstart = c->i;
		if (!is_alnum(c->s[c->i]))
			return cur_fail(c, SMTP_PARSE_ERR_BAD_PARAM,
					"Invalid parameter keyword.");
		while (c->i < c->end &&
		       (is_alnum(c->s[c->i]) || c->s[c->i] == '-'))
			c->i++;
		struct smtp_param *param = &p->params[cmd->param_count];
		memset(param, 0, sizeof(*param));
		param->keyword =
		    str_from((const char *)c->s + kstart, c->i - kstart);
		param->value = str_from((const char *)c->s + c->i, 0);
		if (cur_is(c, '=')) {
			c->i++;
			size_t vstart = c->i;
			/* esmtp-value = 1*(%d33-60 / %d62-126 / UTF-8) */
			while (c->i < c->end && c->s[c->i] > 32 &&
			       c->s[c->i] != '=' && c->s[c->i] != 127)
				c->i++;
			if (c->i == vstart)
				return cur_fail(c, SMTP_PARSE_ERR_BAD_PARAM,
						"Invalid parameter value.");
			param->value = str_from((const char *)c->s + vstart,
						c->i - vstart);
			param->has_value = true;
		}
		if (c->i < c->end && c->s[c->i] != ' ')
			return cur_fail(c, SMTP_PARSE_ERR_BAD_PARAM,
					"Invalid parameter.");
		cmd->param_count++;
	}
}

static bool parse_bdat(struct cursor *c, struct smtp_command *cmd)
{
	uint64_t n = 0;
	size_t start = c->i;

	while (c->i < c->end && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
		unsigned int d = (unsigned int)(c->s[c->i] - '0');
		if (n > (UINT64_MAX - d) / 10)
			return cur_fail(c, SMTP_PARSE_ERR_BAD_SYNTAX,
					"Invalid chunk size.");
		n = n * 10 + d;
		c->i++;
	}
	if (c->i == start)
		return cur_fail(c, SMTP_PARSE_ERR_BAD_SYNTAX,
				"Invalid chunk size.");
	cmd->bdat_size = n;
	if (c->i == c->end)
		return true;
	if (c->s[c->i] == ' ' && c->end - c->i == 5 &&
	    str_eq_nocase(str_from((const char *)c->s + c->i + 1, 4),
			  STR("LAST"))) {
		cmd->bdat_last = true;
		c->i = c->end;
		return true;
	}
	return cur_fail(c, SMTP_PARSE_ERR_BAD_SYNTAX, "Invalid BDAT argument.");
}

static bool is_verb_char(uint8_t c)
{
	return is_alnum(c) || c == '-' || c == '_';
}

static bool parse_command(struct smtp_parser *p, size_t end,
			  struct smtp_command *cmd,
			  struct smtp_parse_error *err)
{
	struct cursor c = {p, p->lr.line, 0, end, err};

	if (end == 0)
		return cur_fail(&c, SMTP_PARSE_ERR_EMPTY, "Empty command.");
	while (c.i < end && c.s[c.i] != ' ') {
		if (!is_verb_char(c.s[c.i]) || c.i == SMTP_VERB_MAX_LEN)
			return cur_fail(&c, SMTP_PARSE_ERR_BAD_VERB,
					"Invalid command.");
		c.i++;
	}
	if (c.i == 0)
		return cur_fail(&c, SMTP_PARSE_ERR_BAD_VERB,
				"Invalid command.");
	cmd->verb_str = str_from((const char *)c.s, c.i);
	cmd->verb = smtp_verb_lookup(cmd->verb_str);
	err->verb = cmd->verb;
	cmd->offset = p->lr.line_start;
	if (c.i < end)
		c.i++;
	cmd->args = str_from((const char *)c.s + c.i, end - c.i);

	switch (cmd->verb) {
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT: {
		bool mail = cmd->verb == SMTP_VERB_MAIL;
		struct str prefix = mail ? STR("FROM:") : STR("TO:");
		if (!str_has_prefix_nocase(cmd->args, prefix))
			return cur_fail(&c, SMTP_PARSE_ERR_BAD_SYNTAX,
					mail ? "Missing FROM:."
					     : "Missing TO:.");
		c.i += prefix.len;
		if (!parse_path(&c, &cmd->path, mail, !mail))
			return false;
		return parse_params(&c, cmd);
	}
	case SMTP_VERB_BDAT:
		return parse_bdat(&c, cmd);
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
	case SMTP_VERB_LHLO:
	case SMTP_VERB_VRFY:
	case SMTP_VERB_AUTH:
		if (cmd->args.len == 0)
			return cur_fail(&c, SMTP_PARSE_ERR_BAD_SYNTAX,
					"Missing argument.");
		return true;
	case SMTP_VERB_DATA:
	case SMTP_VERB_RSET:
	case SMTP_VERB_QUIT:
	case SMTP_VERB_STARTTLS:
		if (cmd->args.len != 0)
			return cur_fail(&c, SMTP_PARSE_ERR_BAD_SYNTAX,
					"Unexpected argument.");
		return true;
	case SMTP_VERB_NOOP:
	case SMTP_VERB_HELP:
	case SMTP_VERB_XCLIENT:
	case SMTP_VERB_UNKNOWN:
		return true;
	}
	return true;
}

enum smtp_parse_result smtp_parser_parse(struct smtp_parser *p,
					 const void *data, size_t size,
					 size_t *consumed_r,
					 struct smtp_command *cmd_r,
					 struct smtp_parse_error *error_r)
{
	size_t end = 0;

	memset(cmd_r, 0, sizeof(*cmd_r));
	memset(error_r, 0, sizeof(*error_r));
	int ret = read_line(p, data, size, consumed_r, &end, error_r);
	if (ret < 0)
		return SMTP_PARSE_ERROR;
	if (ret == 0)
		return SMTP_PARSE_MORE;
	if (!parse_command(p, end, cmd_r, error_r)) {
		memset(cmd_r, 0, sizeof(*cmd_r));
		return SMTP_PARSE_ERROR;
	}
	return SMTP_PARSE_COMMAND;
}

void smtp_parser_advance(struct smtp_parser *p, uint64_t n)
{
	line_reader_skip(&p->lr, n);
}

/* ---- DATA decoder -------------------------------------------------------- */

enum smtp_data_state {
	SMTP_DATA_STATE_LINE_START = 0, /* at the start or after CRLF */
	SMTP_DATA_STATE_MID,            /* inside a line */
	SMTP_DATA_STATE_CR,             /* after a CR inside a line */
	SMTP_DATA_STATE_DOT,            /* after a line-initial '.' */
	SMTP_DATA_STATE_DOT_CR,         /* after ".\r" at line start (held) */
	SMTP_DATA_STATE_END,            /* terminator consumed */
};

struct smtp_data_decoder {
	enum smtp_data_state state;
	uint64_t max_size;
	uint64_t size;
	bool over_limit;
	bool bare_eol;
};

struct smtp_data_decoder *smtp_data_decoder_new(uint64_t max_size)
{
	struct smtp_data_decoder *dec = xcalloc(1, sizeof(*dec));

	dec->max_size = max_size;
	return dec;
}

void smtp_data_decoder_free(struct smtp_data_decoder **dec)
{
	free(*dec);
	*dec = NULL;
}

void smtp_data_decoder_reset(struct smtp_data_decoder *dec)
{
	uint64_t max_size = dec->max_size;

	memset(dec, 0, sizeof(*dec));
	dec->max_size = max_size;
}

uint64_t smtp_data_decoder_size(const struct smtp_data_decoder *dec)
{
	return dec->size;
}

bool smtp_data_decoder_over_limit(const struct smtp_data_decoder *dec)
{
	return dec->over_limit;
}

bool smtp_data_decoder_bare_eol(const struct smtp_data_decoder *dec)
{
	return dec->bare_eol;
}

struct data_out {
	uint8_t *p;
	size_t len;
	size_t size;
};

/* Counts one message byte and writes it while under the limit. */
static void emit(struct smtp_data_decoder *dec, struct data_out *o, uint8_t c)
{
	dec->size++;
	if (dec->size > dec->max_size)
		dec->over_limit = true;
	if (dec->over_limit)
		return;
	assert(o->len < o->size);
	o->p[o->len++] = c;
}

/* A byte inside a line (not after a CR). */
static void in_line(struct smtp_data_decoder *dec, struct data_out *o,
		    uint8_t c)
{
	if (c == '\n')
		dec->bare_eol = true;
	emit(dec, o, c);
	dec->state = c == '\r' ? SMTP_DATA_STATE_CR : SMTP_DATA_STATE_MID;
}

enum smtp_data_result smtp_data_decode(struct smtp_data_decoder *dec,
				       const void *in, size_t in_size,
				       size_t *consumed_r, void *out,
				       size_t out_size, size_t *produced_r)
{
	const uint8_t *s = in;
	struct data_out o = {out, 0, out_size};
	size_t i = 0;

	while (i < in_size && dec->state != SMTP_DATA_STATE_END) {
		uint8_t c = s[i];
		/* at most two bytes come out of one byte in */
		size_t need =
		    dec->state == SMTP_DATA_STATE_DOT_CR && c != '\n' ? 2 : 1;
		if (o.size - o.len < need && !dec->over_limit)
			break;
		i++;
		switch (dec->state) {
		case SMTP_DATA_STATE_LINE_START:
			if (c == '.')
				dec->state = SMTP_DATA_STATE_DOT;
			else
				in_line(dec, &o, c);
			break;
		case SMTP_DATA_STATE_MID:
			in_line(dec, &o, c);
			break;
		case SMTP_DATA_STATE_CR:
			emit(dec, &o, c);
			if (c == '\n') {
				dec->state = SMTP_DATA_STATE_LINE_START;
			} else {
				dec->bare_eol = true;
				dec->state = c == '\r' ? SMTP_DATA_STATE_CR
						       : SMTP_DATA_STATE_MID;
			}
			break;
		case SMTP_DATA_STATE_DOT:
			/* the line-initial dot is dropped */
			if (c == '\r') {
				dec->state = SMTP_DATA_STATE_DOT_CR;
				break;
			}
			if (c == '\n')
				dec->bare_eol = true;
			emit(dec, &o, c);
			dec->state = SMTP_DATA_STATE_MID;
			break;
		case SMTP_DATA_STATE_DOT_CR:
			if (c == '\n') {
				dec->state = SMTP_DATA_STATE_END;
				break;
			}
			/* ".\r" then something else: the CR was a bare CR */
			dec->bare_eol = true;
			emit(dec, &o, '\r');
			emit(dec, &o, c);
			dec->state = c == '\r' ? SMTP_DATA_STATE_CR
					       : SMTP_DATA_STATE_MID;
			break;
		case SMTP_DATA_STATE_END:
			break;
		}
	}
	*consumed_r = i;
	*produced_r = o.len;
	if (dec->state != SMTP_DATA_STATE_END)
		return SMTP_DATA_MORE;
	return dec->over_limit ? SMTP_DATA_TOO_BIG : SMTP_DATA_DONE;
}
