/* Incremental IMAP command tokenizer.
 *
 * A command is a sequence of line segments, each ended by LF, with the
 * literal data announced at the end of a segment in between:
 *
 *     a LOGIN {4}\r\n  user  {4+}\r\n  pass  \r\n
 *     \segment 1/      lit  \seg 2/    lit   seg 3
 *
 * Every byte of the command (segments and literal data) is appended to one
 * store, so a position in the store is also the offset from the command's
 * start. A segment is tokenized only once its LF has arrived; the list
 * nesting survives from one segment to the next. Tokens are kept as store
 * offsets while the store may still grow, and turned into pointers only
 * when the command is complete. Quoted strings are unescaped in place: the
 * value is never longer than its raw form. */
#include "imap_parse.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

#define NO_TOKEN SIZE_MAX
#define TOKENS_INITIAL 8
#define STORE_INITIAL 256

struct imap_token {
	enum imap_arg_type type;
	bool nonsync;
	bool literal8;
	size_t pos; /* store offset of the first byte of the token */
	size_t off; /* store offset of the value */
	size_t len;
	size_t parent; /* enclosing list, NO_TOKEN at top level */
	size_t next;   /* next sibling */
	size_t first_child;
	size_t last_child;
	size_t child_count;
};

enum imap_parser_state {
	IMAP_PARSER_STATE_LINE = 0, /* collecting a line segment */
	IMAP_PARSER_STATE_LITERAL,  /* collecting literal data */
	IMAP_PARSER_STATE_SKIP,     /* discarding up to the next LF */
	IMAP_PARSER_STATE_FAILED,   /* unrecoverable: every call fails */
};

struct imap_parser {
	struct imap_parser_limits limits;
	enum imap_parser_state state;
	bool reset_pending; /* the last call ended a command or an error */
	bool raw;           /* the buffered partial line is read_line's */

	uint8_t *store;
	size_t store_len;
	size_t store_size;
	size_t store_max;
	size_t line_used;    /* non-literal bytes of this command */
	size_t literal_used; /* literal bytes of this command (announced) */
	size_t seg_start;    /* store offset of the current segment */
	uint64_t literal_left;

	uint64_t stream_pos; /* bytes consumed since creation */
	uint64_t cmd_start;  /* stream offset of store[0] */

	bool have_tag;
	bool have_name;
	size_t tag_off, tag_len;
	size_t name_off, name_len;

	struct imap_token *tokens;
	size_t token_count;
	size_t token_size;
	struct imap_arg *args; /* output, token_size entries */
	size_t *order;         /* output index -> token index */
	size_t cur_list;       /* innermost open list or NO_TOKEN */
	unsigned int depth;
	size_t root_first, root_last, root_count;

	struct imap_parse_error failed_error;
};

enum seg_result {
	SEG_ERROR = 0,
	SEG_END,     /* the command ends with this segment */
	SEG_LITERAL, /* literal data follows the segment */
};

struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits)
{
	struct imap_parser *p = xcalloc(1, sizeof(*p));

	assert(limits->max_line_len <= SIZE_MAX / 4 &&
	       limits->max_literal_size <= SIZE_MAX / 4);
	p->limits = *limits;
	p->store_max = limits->max_line_len + limits->max_literal_size;
	imap_parser_reset(p);
	return p;
}

void imap_parser_free(struct imap_parser **parser)
{
	struct imap_parser *p = *parser;

	if (p == NULL)
		return;
	if (p->store != NULL)
		str_wipe(p->store, p->store_size);
	free(p->store);
	free(p->tokens);
	free(p->args);
	free(p->order);
	free(p);
	*parser = NULL;
}

static void cmd_reset(struct imap_parser *p)
{
	p->store_len = 0;
	p->line_used = 0;
	p->literal_used = 0;
	p->seg_start = 0;
	p->literal_left = 0;
	p->cmd_start = p->stream_pos;
	p->have_tag = false;
	p->have_name = false;
	p->tag_off = p->tag_len = 0;
	p->name_off = p->name_len = 0;
	p->token_count = 0;
	p->cur_list = NO_TOKEN;
	p->depth = 0;
	p->root_first = p->root_last = NO_TOKEN;
	p->root_count = 0;
	p->raw = false;
	p->reset_pending = false;
}

void imap_parser_reset(struct imap_parser *p)
{
	p->state = IMAP_PARSER_STATE_LINE;
	memset(&p->failed_error, 0, sizeof(p->failed_error));
	cmd_reset(p);
}

size_t imap_parser_memory(const struct imap_parser *p)
{
	return sizeof(*p) + p->store_size +
	       p->token_size * (sizeof(struct imap_token) +
				sizeof(struct imap_arg) + sizeof(size_t));
}

size_t imap_parser_memory_max(const struct imap_parser_limits *limits)
{
	return sizeof(struct imap_parser) + limits->max_line_len +
	       limits->max_literal_size +
	       (size_t)limits->max_args *
		   (sizeof(struct imap_token) + sizeof(struct imap_arg) +
		    sizeof(size_t));
}

/* Makes room for extra more bytes; the limits guarantee the store never
 * needs more than store_max. */
static void store_reserve(struct imap_parser *p, size_t extra)
{
	size_t need = p->store_len + extra;

	assert(need <= p->store_max);
	if (need <= p->store_size)
		return;
	size_t nsize =
	    p->store_size < STORE_INITIAL ? STORE_INITIAL : p->store_size;
	while (nsize < need)
		nsize = nsize > p->store_max / 2 ? p->store_max : nsize * 2;
	if (nsize > p->store_max)
		nsize = p->store_max;
	p->store = xrealloc(p->store, nsize);
	p->store_size = nsize;
}

static void store_append(struct imap_parser *p, const uint8_t *data, size_t len)
{
	if (len == 0)
		return;
	store_reserve(p, len);
	memcpy(p->store + p->store_len, data, len);
	p->store_len += len;
}

static void set_error(struct imap_parser *p, struct imap_parse_error *err,
		      enum imap_parse_error_kind kind, const char *msg,
		      size_t store_pos)
{
	memset(err, 0, sizeof(*err));
	err->kind = kind;
	err->msg = msg;
	err->pos = store_pos;
	err->offset = p->cmd_start + store_pos;
	if (p->have_tag)
		err->tag =
		    str_from((const char *)p->store + p->tag_off, p->tag_len);
}

/* Enters the failed state: the error repeats, without its tag. */
static void parser_fail(struct imap_parser *p, struct imap_parse_error *err)
{
	err->fatal = true;
	p->state = IMAP_PARSER_STATE_FAILED;
	p->failed_error = *err;
	p->failed_error.tag = STR_NULL;
}

/* ---- character classes ------------------------------------------------ */

static bool is_ctl_or_space(uint8_t c)
{
	return c <= 0x20 || c >= 0x7f;
}

/* RFC 3501 atom-specials other than SP, CTL and resp-specials. */
static bool is_atom_special(uint8_t c)
{
	return c == '(' || c == ')' || c == '{' || c == '%' || c == '*' ||
	       c == '"' || c == '\\';
}

/* tag = 1*<any ASTRING-CHAR except "+"> */
static bool is_tag_char(uint8_t c)
{
	return !is_ctl_or_space(c) && !is_atom_special(c) && c != '+';
}

/* A command name is a strict RFC 3501 atom. */
static bool is_name_char(uint8_t c)
{
	return !is_ctl_or_space(c) && !is_atom_special(c) && c != ']';
}

/* Argument atoms are Dovecot-lenient: flags (\Seen), LIST patterns (% *)
 * and FETCH sections ([ ]) are atoms too. */
static bool is_arg_atom_char(uint8_t c)
{
	return !is_ctl_or_space(c) && c != '(' && c != ')' && c != '{' &&
	       c != '"';
}

/* Reports a byte that is not allowed where it stands. */
static void bad_byte(struct imap_parser *p, struct imap_parse_error *err,
		     size_t i, const char *what_msg, const char *eight_msg)
{
	uint8_t c = p->store[i];

	if (c == '\0')
		set_error(p, err, IMAP_PARSE_ERR_NUL, "NUL byte in command.",
			  i);
	else if (c >= 0x80)
		set_error(p, err, IMAP_PARSE_ERR_8BIT, eight_msg, i);
	else
		set_error(p, err, IMAP_PARSE_ERR_BAD_CHAR, what_msg, i);
}

/* ---- tokens -------------------------------------------------------------- */

/* Appends a token under the innermost open list; NO_TOKEN when over the
 * argument limit. */
static size_t token_add(struct imap_parser *p, enum imap_arg_type type,
			size_t pos)
{
	if (p->token_count >= p->limits.max_args)
		return NO_TOKEN;
	if (p->token_count == p->token_size) {
		size_t nsize =
		    p->token_size == 0 ? TOKENS_INITIAL : p->token_size * 2;
		if (nsize > p->limits.max_args)
			nsize = p->limits.max_args;
		p->tokens = xreallocarray(p->tokens, nsize, sizeof(*p->tokens));
		p->args = xreallocarray(p->args, nsize, sizeof(*p->args));
		p->order = xreallocarray(p->order, nsize, sizeof(*p->order));
		p->token_size = nsize;
	}
	size_t idx = p->token_count++;
	struct imap_token *t = &p->tokens[idx];
	memset(t, 0, sizeof(*t));
	t->type = type;
	t->pos = pos;
	t->off = pos;
	t->parent = p->cur_list;
	t->next = NO_TOKEN;
	t->first_child = t->last_child = NO_TOKEN;
	if (p->cur_list == NO_TOKEN) {
		if (p->root_last == NO_TOKEN)
			p->root_first = idx;
		else
			p->tokens[p->root_last].next = idx;
		p->root_last = idx;
		p->root_count++;
	} else {
		struct imap_token *parent = &p->tokens[p->cur_list];
		if (parent->last_child == NO_TOKEN)
			parent->first_child = idx;
		else
			p->tokens[parent->last_child].next = idx;
		parent->last_child = idx;
		parent->child_count++;
	}
	return idx;
}

static bool token_add_or_fail(struct imap_parser *p,
			      struct imap_parse_error *err,
			      enum imap_arg_type type, size_t pos,
			      size_t *idx_r)
{
	*idx_r = token_add(p, type, pos);
	if (*idx_r != NO_TOKEN)
		return true;
	set_error(p, err, IMAP_PARSE_ERR_TOO_MANY_ARGS, "Too many arguments.",
		  pos);
	return false;
}

/* ---- segment tokenizer ----------------------------------------------- */

/* Parses the tag at *i. */
static bool parse_tag(struct imap_parser *p, size_t *i, size_t end,
		      struct imap_parse_error *err)
{
	size_t start = *i, j = *i;

	while (j < end && p->store[j] != ' ') {
		if (!is_tag_char(p->store[j])) {
			bad_byte(p, err, j, "Invalid tag.",
				 "8bit data in tag.");
			return false;
		}
		j++;
	}
	if (j == start) {
		set_error(p, err, IMAP_PARSE_ERR_MISSING_TAG, "Missing tag.",
			  start);
		return false;
	}
	p->tag_off = start;
	p->tag_len = j - start;
	p->have_tag = true;
	*i = j;
	return true;
}

static bool parse_name(struct imap_parser *p, size_t *i, size_t end,
		       struct imap_parse_error *err)
{
	size_t j = *i;

	while (j < end && p->store[j] == ' ')
		j++;
	size_t start = j;
	while (j < end && p->store[j] != ' ') {
		if (!is_name_char(p->store[j])) {
			bad_byte(p, err, j, "Invalid command name.",
				 "8bit data in command name.");
			return false;
		}
		j++;
	}
	if (j == start) {
		set_error(p, err, IMAP_PARSE_ERR_MISSING_COMMAND,
			  "Missing command name.", start);
		return false;
	}
	p->name_off = start;
	p->name_len = j - start;
	p->have_name = true;
	*i = j;
	return true;
}

/* Parses and unescapes the quoted string whose '"' is at *i. */
static bool parse_quoted(struct imap_parser *p, size_t *i, size_t end,
			 struct imap_parse_error *err)
{
	size_t start = *i, r = *i + 1, w = *i + 1;
	uint8_t *s = p->store;

	for (;;) {
		if (r == end || s[r] == '\r') {
			set_error(p, err, IMAP_PARSE_ERR_UNTERMINATED_QUOTE,
				  "Missing '\"'.", r);
			return false;
		}
		uint8_t c = s[r];
		if (c == '"')
			break;
		if (c == '\\') {
			if (r + 1 == end) {
				set_error(p, err,
					  IMAP_PARSE_ERR_UNTERMINATED_QUOTE,
					  "Missing '\"'.", r + 1);
				return false;
			}
			c = s[r + 1];
			if (c != '\\' && c != '"') {
				if (c == '\0' || c >= 0x80)
					bad_byte(p, err, r + 1, "",
						 "8bit data in quoted string.");
				else
					set_error(p, err,
						  IMAP_PARSE_ERR_BAD_CHAR,
						  "Invalid escape in quoted "
						  "string.",
						  r);
				return false;
			}
			r++;
		} else if (c == '\0' ||
			   (c >= 0x80 && !p->limits.allow_8bit_quoted)) {
			bad_byte(p, err, r, "", "8bit data in quoted string.");
			return false;
		}
		s[w++] = c;
		r++;
	}
	size_t idx;
	if (!token_add_or_fail(p, err, IMAP_ARG_QUOTED, start, &idx))
		return false;
	p->tokens[idx].off = start + 1;
	p->tokens[idx].len = w - (start + 1);
	*i = r + 1;
	return true;
}

/* Parses the literal announcement at *i ("{" or "~{"); it must end the
 * segment. */
static enum seg_result parse_literal(struct imap_parser *p, size_t i,
				     size_t end, struct imap_parse_error *err)
{
	size_t start = i, j = i;
	bool literal8 = false, nonsync = false, overflow = false;
	uint64_t n = 0;
	size_t digits = 0;

	if (p->store[j] == '~') {
		literal8 = true;
		j++;
	}
	j++; /* '{' */
	while (j < end && p->store[j] >= '0' && p->store[j] <= '9') {
		unsigned int d = (unsigned int)(p->store[j] - '0');
		if (n > (UINT64_MAX - d) / 10)
			overflow = true;
		else
			n = n * 10 + d;
		digits++;
		j++;
	}
	if (digits == 0) {
		set_error(p, err, IMAP_PARSE_ERR_BAD_LITERAL,
			  "Invalid literal size.", j);
		return SEG_ERROR;
	}
	if (j < end && p->store[j] == '+') {
		nonsync = true;
		j++;
	}
	if (j == end || p->store[j] != '}') {
		set_error(p, err, IMAP_PARSE_ERR_BAD_LITERAL,
			  "Invalid literal size.", j);
		return SEG_ERROR;
	}
	if (j + 1 != end) {
		set_error(p, err, IMAP_PARSE_ERR_BAD_LITERAL,
			  "Literal size not at end of line.", j + 1);
		return SEG_ERROR;
	}
	if (overflow || n > p->limits.max_literal_size - p->literal_used) {
		set_error(p, err, IMAP_PARSE_ERR_LITERAL_TOO_BIG,
			  "Literal too large.", start);
		err->literal_nonsync = nonsync;
		err->fatal = nonsync;
		return SEG_ERROR;
	}
	size_t idx;
	if (!token_add_or_fail(p, err, IMAP_ARG_LITERAL, start, &idx))
		return SEG_ERROR;
	p->tokens[idx].nonsync = nonsync;
	p->tokens[idx].literal8 = literal8;
	p->literal_left = n;
	return SEG_LITERAL;
}

static bool parse_atom(struct imap_parser *p, size_t *i, size_t end,
		       struct imap_parse_error *err)
{
	size_t start = *i, j = *i;

	while (j < end && p->store[j] != ' ' && p->store[j] != ')') {
		if (!is_arg_atom_char(p->store[j])) {
			bad_byte(p, err, j, "Invalid characters in atom.",
				 "8bit data in atom.");
			return false;
		}
		j++;
	}
	size_t len = j - start;
	bool nil = len == 3 &&
		   str_eq_nocase(str_from((const char *)p->store + start, 3),
				 STR("NIL"));
	size_t idx;
	if (!token_add_or_fail(p, err, nil ? IMAP_ARG_NIL : IMAP_ARG_ATOM,
			       start, &idx))
		return false;
	p->tokens[idx].len = len;
	*i = j;
	return true;
}

/* Tokenizes store[seg_start..end), the current segment without its line
 * end. */
static enum seg_result tokenize_segment(struct imap_parser *p, size_t end,
					struct imap_parse_error *err)
{
	size_t i = p->seg_start;

	if (!p->have_tag) {
		if (!parse_tag(p, &i, end, err))
			return SEG_ERROR;
	}
	if (!p->have_name) {
		if (!parse_name(p, &i, end, err))
			return SEG_ERROR;
	}
	for (;;) {
		while (i < end && p->store[i] == ' ')
			i++;
		if (i == end)
			break;
		uint8_t c = p->store[i];
		size_t idx;
		switch (c) {
		case '(':
			if (p->depth >= p->limits.max_list_depth) {
				set_error(p, err, IMAP_PARSE_ERR_TOO_DEEP,
					  "Too deep list nesting.", i);
				return SEG_ERROR;
			}
			if (!token_add_or_fail(p, err, IMAP_ARG_LIST, i, &idx))
				return SEG_ERROR;
			p->cur_list = idx;
			p->depth++;
			i++;
			break;
		case ')':
			if (p->depth == 0) {
				set_error(p, err, IMAP_PARSE_ERR_BAD_LIST,
					  "Unexpected ')'.", i);
				return SEG_ERROR;
			}
			p->cur_list = p->tokens[p->cur_list].parent;
			p->depth--;
			i++;
			break;
		case '"':
			if (!parse_quoted(p, &i, end, err))
				return SEG_ERROR;
			break;
		case '{':
			return parse_literal(p, i, end, err);
		case '~':
			if (i + 1 < end && p->store[i + 1] == '{')
				return parse_literal(p, i, end, err);
			if (!parse_atom(p, &i, end, err))
				return SEG_ERROR;
			break;
		default:
			if (!parse_atom(p, &i, end, err))
				return SEG_ERROR;
			break;
		}
	}
	if (p->depth > 0) {
		set_error(p, err, IMAP_PARSE_ERR_BAD_LIST, "Missing ')'.", end);
		return SEG_ERROR;
	}
	return SEG_END;
}

/* Whether s[0..len) ends with a "{digits+}" announcement. */
static bool ends_with_nonsync_literal(const uint8_t *s, size_t len)
{
	if (len < 4 || s[len - 1] != '}' || s[len - 2] != '+')
		return false;
	size_t i = len - 2, digits = 0;
	while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9') {
		i--;
		digits++;
	}
	return digits > 0 && i > 0 && s[i - 1] == '{';
}

/* ---- output -------------------------------------------------------------- */

static void arg_fill(struct imap_parser *p, size_t out, size_t tok)
{
	const struct imap_token *t = &p->tokens[tok];
	struct imap_arg *a = &p->args[out];

	memset(a, 0, sizeof(*a));
	a->type = t->type;
	a->literal_nonsync = t->nonsync;
	a->literal8 = t->literal8;
	a->str = t->type == IMAP_ARG_LIST
		     ? STR_NULL
		     : str_from((const char *)p->store + t->off, t->len);
	if (a->str.p == NULL)
		a->str = str_from("", 0);
	a->offset = p->cmd_start + t->pos;
	p->order[out] = tok;
}

/* Lays the token tree out so that each list's elements are contiguous:
 * top-level arguments first, then the elements of each list in the order
 * the lists appear in the output. */
static void build_command(struct imap_parser *p, struct imap_command *cmd)
{
	size_t w = 0;

	for (size_t t = p->root_first; t != NO_TOKEN; t = p->tokens[t].next)
		arg_fill(p, w++, t);
	for (size_t r = 0; r < w; r++) {
		const struct imap_token *t = &p->tokens[p->order[r]];
		if (t->type != IMAP_ARG_LIST || t->child_count == 0)
			continue;
		p->args[r].list = &p->args[w];
		p->args[r].list_count = t->child_count;
		for (size_t c = t->first_child; c != NO_TOKEN;
		     c = p->tokens[c].next)
			arg_fill(p, w++, c);
	}
	assert(w == p->token_count);
	cmd->args = p->root_count == 0 ? NULL : p->args;
	cmd->arg_count = p->root_count;
}

static void command_head(const struct imap_parser *p, struct imap_command *cmd)
{
	memset(cmd, 0, sizeof(*cmd));
	cmd->tag = str_from((const char *)p->store + p->tag_off, p->tag_len);
	cmd->name = str_from((const char *)p->store + p->name_off, p->name_len);
	cmd->offset = p->cmd_start;
}

/* ---- driver -------------------------------------------------------------- */

/* Tries to name the tag of an over-long line from its first bytes. */
static void too_long_tag(struct imap_parser *p, struct imap_parse_error *err)
{
	if (p->have_tag)
		return;
	size_t j = 0;
	while (j < p->store_len && is_tag_char(p->store[j]))
		j++;
	if (j > 0 && j < p->store_len && p->store[j] == ' ')
		err->tag = str_from((const char *)p->store, j);
}

/* Collects line bytes from in[*used..size) until LF. Returns 1 with the
 * line complete (*end_r = store offset where its line end starts), 0 when
 * the input ran out, -1 for TOO_LONG. */
static int collect_line(struct imap_parser *p, const uint8_t *in, size_t size,
			size_t *used, size_t *end_r,
			struct imap_parse_error *err)
{
	size_t avail = size - *used;
	const uint8_t *lf = memchr(in + *used, '\n', avail);
	size_t take = lf == NULL ? avail : (size_t)(lf - (in + *used)) + 1;
	size_t room = p->limits.max_line_len - p->line_used;

	if (take > room) {
		store_append(p, in + *used, room);
		p->line_used += room;
		*used += room;
		p->stream_pos += room;
		set_error(p, err, IMAP_PARSE_ERR_TOO_LONG, "Too long argument.",
			  p->store_len);
		err->fatal = true;
		too_long_tag(p, err);
		p->state = IMAP_PARSER_STATE_SKIP;
		return -1;
	}
	store_append(p, in + *used, take);
	p->line_used += take;
	*used += take;
	p->stream_pos += take;
	if (lf == NULL)
		return 0;
	size_t end = p->store_len - 1;
	if (end > p->seg_start && p->store[end - 1] == '\r')
		end--;
	*end_r = end;
	return 1;
}

/* Discards up to and including the next LF. Returns false when the input
 * ran out first. */
static bool skip_line(struct imap_parser *p, const uint8_t *in, size_t size,
		      size_t *used)
{
	const uint8_t *lf = memchr(in + *used, '\n', size - *used);
	size_t n = lf == NULL ? size - *used : (size_t)(lf - (in + *used)) + 1;

	*used += n;
	p->stream_pos += n;
	if (lf == NULL)
		return false;
	p->state = IMAP_PARSER_STATE_LINE;
	cmd_reset(p);
	return true;
}

static enum imap_parse_result fail_again(struct imap_parser *p, size_t size,
					 size_t *consumed_r,
					 struct imap_parse_error *err)
{
	*err = p->failed_error;
	*consumed_r = size;
	p->stream_pos += size;
	return IMAP_PARSE_ERROR;
}

enum imap_parse_result imap_parser_parse(struct imap_parser *p,
					 const void *data, size_t size,
					 size_t *consumed_r,
					 struct imap_command *cmd_r,
					 struct imap_parse_error *err)
{
	const uint8_t *in = data;
	size_t used = 0, end = 0;

	memset(cmd_r, 0, sizeof(*cmd_r));
	memset(err, 0, sizeof(*err));
	*consumed_r = 0;
	if (p->state == IMAP_PARSER_STATE_FAILED)
		return fail_again(p, size, consumed_r, err);
	if (p->reset_pending)
		cmd_reset(p);
	/* a partial read_line line must be finished first */
	assert(!p->raw || p->store_len == 0 ||
	       p->state == IMAP_PARSER_STATE_SKIP);

	for (;;) {
		switch (p->state) {
		case IMAP_PARSER_STATE_SKIP:
			if (!skip_line(p, in, size, &used)) {
				*consumed_r = used;
				return IMAP_PARSE_MORE;
			}
			continue;
		case IMAP_PARSER_STATE_LITERAL: {
			size_t n = size - used;
			if (n > p->literal_left)
				n = (size_t)p->literal_left;
			store_append(p, in + used, n);
			used += n;
			p->stream_pos += n;
			p->literal_left -= n;
			if (p->literal_left > 0) {
				*consumed_r = used;
				return IMAP_PARSE_MORE;
			}
			struct imap_token *t = &p->tokens[p->token_count - 1];
			t->off = p->store_len - t->len;
			p->state = IMAP_PARSER_STATE_LINE;
			p->seg_start = p->store_len;
			continue;
		}
		case IMAP_PARSER_STATE_LINE:
			break;
		case IMAP_PARSER_STATE_FAILED:
			assert(0);
			break;
		}
		if (used == size) {
			*consumed_r = used;
			return IMAP_PARSE_MORE;
		}
		int ret = collect_line(p, in, size, &used, &end, err);
		*consumed_r = used;
		if (ret < 0)
			return IMAP_PARSE_ERROR;
		if (ret == 0)
			return IMAP_PARSE_MORE;

		switch (tokenize_segment(p, end, err)) {
		case SEG_ERROR:
			if (err->fatal ||
			    ends_with_nonsync_literal(p->store + p->seg_start,
						      end - p->seg_start))
				parser_fail(p, err);
			else
				p->reset_pending = true;
			return IMAP_PARSE_ERROR;
		case SEG_END:
			command_head(p, cmd_r);
			build_command(p, cmd_r);
			p->reset_pending = true;
			return IMAP_PARSE_COMMAND;
		case SEG_LITERAL: {
			struct imap_token *t = &p->tokens[p->token_count - 1];
			uint64_t n = p->literal_left;
			t->len = (size_t)n;
			p->literal_used += (size_t)n;
			store_reserve(p, (size_t)n);
			p->state = IMAP_PARSER_STATE_LITERAL;
			if (!t->nonsync) {
				command_head(p, cmd_r);
				cmd_r->literal_size = n;
				return IMAP_PARSE_LITERAL_CONT;
			}
			continue;
		}
		}
	}
}

enum imap_parse_result imap_parser_read_line(struct imap_parser *p,
					     const void *data, size_t size,
					     size_t *consumed_r,
					     struct str *line_r,
					     struct imap_parse_error *err)
{
	const uint8_t *in = data;
	size_t used = 0, end = 0;

	*line_r = STR_NULL;
	memset(err, 0, sizeof(*err));
	*consumed_r = 0;
	if (p->state == IMAP_PARSER_STATE_FAILED)
		return fail_again(p, size, consumed_r, err);
	if (p->reset_pending)
		cmd_reset(p);
	/* only between commands */
	assert(p->state != IMAP_PARSER_STATE_LITERAL);
	assert(p->raw || p->store_len == 0 ||
	       p->state == IMAP_PARSER_STATE_SKIP);

	for (;;) {
		if (p->state == IMAP_PARSER_STATE_SKIP) {
			if (!skip_line(p, in, size, &used)) {
				*consumed_r = used;
				return IMAP_PARSE_MORE;
			}
		}
		if (used == size) {
			*consumed_r = used;
			return IMAP_PARSE_MORE;
		}
		p->raw = true;
		int ret = collect_line(p, in, size, &used, &end, err);
		*consumed_r = used;
		if (ret < 0)
			return IMAP_PARSE_ERROR;
		if (ret == 0)
			return IMAP_PARSE_MORE;
		p->reset_pending = true;
		const uint8_t *nul = memchr(p->store, '\0', end);
		if (nul != NULL) {
			set_error(p, err, IMAP_PARSE_ERR_NUL,
				  "NUL byte in command.",
				  (size_t)(nul - p->store));
			return IMAP_PARSE_ERROR;
		}
		*line_r = str_from(end == 0 ? "" : (const char *)p->store, end);
		return IMAP_PARSE_LINE;
	}
}

bool imap_arg_get_astring(const struct imap_arg *arg, struct str *value_r)
{
	switch (arg->type) {
	case IMAP_ARG_ATOM:
	case IMAP_ARG_NIL:
	case IMAP_ARG_QUOTED:
		break;
	case IMAP_ARG_LITERAL:
		if (arg->str.len > 0 &&
		    memchr(arg->str.p, '\0', arg->str.len) != NULL)
			return false;
		break;
	case IMAP_ARG_LIST:
		return false;
	}
	*value_r = arg->str;
	return true;
}
