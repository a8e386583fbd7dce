/*
 * Streaming MIME parser: bytes in (any split), part tree out.
 *
 * The parser works line by line. It keeps at most one line prefix (long
 * enough for a header field or a boundary), the header field being
 * collected, and a stack of open multipart boundaries, so memory is bounded
 * by the limits whatever the message size.
 *
 * Offsets are counted twice: raw file bytes, and the CRLF form IMAP uses
 * where a bare LF counts as CRLF. A line ending is LF or CRLF; a CR not
 * followed by LF is an ordinary byte.
 *
 * Boundary rules (chosen to match Dovecot on malformed mail):
 *   - a boundary line starts with "--" + boundary; a line with only blanks
 *     after the boundary (or after the closing "--") matches first, on any
 *     open level, innermost first; failing that, a line that merely starts
 *     with "--" + boundary matches, innermost first (Dovecot matches
 *     prefixes, and "boundary=" with an empty value is taken literally);
 *   - the line ending before a boundary line belongs to the boundary, so a
 *     part's body ends before it;
 *   - boundaries are looked for in headers too (an encapsulated message
 *     cut short by its parent's boundary ends there).
 */
#include "backend/mime_private.h"

#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

/* ---- arena ------------------------------------------------------------- */

struct mime_arena_block {
	struct mime_arena_block *next;
	size_t used, size;
	_Alignas(16) uint8_t data[];
};

struct mime_arena {
	struct mime_arena_block *blocks;
	size_t total;
};

#define ARENA_BLOCK_SIZE 8192

struct mime_arena *mime_arena_new(void)
{
	return xcalloc(1, sizeof(struct mime_arena));
}

void mime_arena_free(struct mime_arena **a)
{
	if (*a == NULL)
		return;
	struct mime_arena_block *b = (*a)->blocks;
	while (b != NULL) {
		struct mime_arena_block *next = b->next;
		free(b);
		b = next;
	}
	free(*a);
	*a = NULL;
}

void *mime_arena_alloc(struct mime_arena *a, size_t size)
{
	size = (size + 15) & ~(size_t)15;
	if (size == 0)
		size = 16;
	struct mime_arena_block *b = a->blocks;
	if (b == NULL || b->size - b->used < size) {
		size_t bsize =
		    size > ARENA_BLOCK_SIZE ? size : ARENA_BLOCK_SIZE;
		b = xmalloc(sizeof(*b) + bsize);
		b->used = 0;
		b->size = bsize;
		/* a big one-off block goes behind the current one so the
		 * current block's free space is not lost */
		if (bsize > ARENA_BLOCK_SIZE && a->blocks != NULL) {
			b->next = a->blocks->next;
			a->blocks->next = b;
		} else {
			b->next = a->blocks;
			a->blocks = b;
		}
	}
	void *p = b->data + b->used;
	b->used += size;
	a->total += size;
	memset(p, 0, size);
	return p;
}

size_t mime_arena_used(const struct mime_arena *a)
{
	return a->total;
}

static struct str arena_dup(struct mime_arena *a, const uint8_t *p, size_t len)
{
	char *d = mime_arena_alloc(a, len + 1);
	if (len > 0)
		memcpy(d, p, len);
	return str_from(d, len);
}

/* ---- RFC 2045 lexing --------------------------------------------------- */

bool mime_is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

void mime_skip_cfws(struct str s, size_t *pos)
{
	size_t i = *pos;
	while (i < s.len) {
		uint8_t c = (uint8_t)s.p[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			i++;
		} else if (c == '(') {
			unsigned int level = 0;
			for (; i < s.len; i++) {
				if (s.p[i] == '\\' && i + 1 < s.len)
					i++;
				else if (s.p[i] == '(')
					level++;
				else if (s.p[i] == ')' && --level == 0) {
					i++;
					break;
				}
			}
		} else {
			break;
		}
	}
	*pos = i;
}

static bool is_tspecial_or_ctl(uint8_t c)
{
	if (c <= ' ' || c == 0x7f)
		return true;
	return strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

struct str mime_read_token(struct str s, size_t *pos)
{
	size_t start = *pos, i = *pos;
	while (i < s.len && !is_tspecial_or_ctl((uint8_t)s.p[i]))
		i++;
	*pos = i;
	return str_from(s.p + start, i - start);
}

/* Reads a token or quoted-string value into arena memory (unescaped). */
static struct str read_value(struct mime_arena *a, struct str s, size_t *pos)
{
	size_t i = *pos;
	if (i < s.len && s.p[i] == '"') {
		char *d = mime_arena_alloc(a, s.len - i + 1);
		size_t n = 0;
		for (i++; i < s.len && s.p[i] != '"'; i++) {
			if (s.p[i] == '\\' && i + 1 < s.len)
				i++;
			/* folding inside a quoted value is not content */
			if (s.p[i] == '\r' || s.p[i] == '\n')
				continue;
			d[n++] = s.p[i];
		}
		if (i < s.len)
			i++;
		*pos = i;
		return str_from(d, n);
	}
	struct str t = mime_read_token(s, pos);
	return arena_dup(a, (const uint8_t *)t.p, t.len);
}

/* RFC 2231: "name*0", "name*1" ... are joined into "name", "name*0*",
 * "name*1*" ... into "name*" (values stay encoded, as Dovecot keeps them).
 * Pieces are joined in section order at the place of the first piece. */
static size_t join_rfc2231(struct mime_arena *a, struct mime_param *params,
			   size_t count)
{
	size_t out = 0;
	for (size_t i = 0; i < count; i++) {
		struct str name = params[i].name;
		ptrdiff_t star = str_index(name, '*');
		if (star <= 0 || (size_t)star + 1 >= name.len ||
		    name.p[star + 1] < '0' || name.p[star + 1] > '9') {
			params[out++] = params[i];
			continue;
		}
		struct str base = str_from(name.p, (size_t)star);
		bool ext = name.p[name.len - 1] == '*';
		/* already joined into an earlier entry? */
		bool done = false;
		for (size_t j = 0; j < out; j++) {
			struct str n = params[j].name;
			if (n.len == base.len + (ext ? 1 : 0) &&
			    str_has_prefix_nocase(n, base) &&
			    (!ext || n.p[n.len - 1] == '*')) {
				done = true;
				break;
			}
		}
		if (done)
			continue;
		/* collect pieces 0..N in order */
		size_t total = 0;
		for (size_t j = i; j < count; j++)
			total += params[j].value.len;
		char *d = mime_arena_alloc(a, total + 1);
		size_t n = 0;
		for (unsigned int sec = 0; sec < 1000; sec++) {
			char want[24];
			int wl = str_printf(want, sizeof(want), "*%u%s", sec,
					    ext ? "*" : "");
			bool found = false;
			for (size_t j = i; j < count && wl > 0; j++) {
				struct str pn = params[j].name;
				if (pn.len == base.len + (size_t)wl &&
				    str_has_prefix_nocase(pn, base) &&
				    memcmp(pn.p + base.len, want, (size_t)wl) ==
					0) {
					memcpy(d + n, params[j].value.p,
					       params[j].value.len);
					n += params[j].value.len;
					found = true;
					break;
				}
			}
			if (!found)
				break;
		}
		char *nm = mime_arena_alloc(a, base.len + 2);
		memcpy(nm, base.p, base.len);
		if (ext)
			nm[base.len] = '*';
		params[out].name = str_from(nm, base.len + (ext ? 1 : 0));
		params[out].value = str_from(d, n);
		out++;
	}
	return out;
}

void mime_parse_content_type(struct mime_arena *a, struct str value,
			     bool with_subtype, struct str *type_r,
			     struct str *subtype_r,
			     const struct mime_param **params_r,
			     size_t *count_r)
{
	size_t pos = 0;
	*type_r = STR_NULL;
	*subtype_r = STR_NULL;
	*params_r = NULL;
	*count_r = 0;

	mime_skip_cfws(value, &pos);
	struct str type = mime_read_token(value, &pos);
	mime_skip_cfws(value, &pos);
	struct str subtype = STR_NULL;
	if (with_subtype) {
		if (type.len == 0 || pos >= value.len || value.p[pos] != '/')
			return; /* invalid: the caller uses the default */
		pos++;
		mime_skip_cfws(value, &pos);
		subtype = mime_read_token(value, &pos);
		if (subtype.len == 0)
			return;
	}
	*type_r = arena_dup(a, (const uint8_t *)type.p, type.len);
	if (with_subtype)
		*subtype_r =
		    arena_dup(a, (const uint8_t *)subtype.p, subtype.len);

	/* at most one parameter per ';' in the value */
	size_t max = 0;
	for (size_t i = pos; i < value.len; i++)
		if (value.p[i] == ';')
			max++;
	if (max == 0)
		return;
	struct mime_param *params =
	    mime_arena_alloc(a, max * sizeof(struct mime_param));
	size_t n = 0;
	while (pos < value.len && n < max) {
		mime_skip_cfws(value, &pos);
		if (pos >= value.len)
			break;
		if (value.p[pos] != ';') {
			/* junk: resynchronise at the next ';' */
			while (pos < value.len && value.p[pos] != ';')
				pos++;
			continue;
		}
		pos++;
		mime_skip_cfws(value, &pos);
		struct str name = mime_read_token(value, &pos);
		mime_skip_cfws(value, &pos);
		if (name.len == 0 || pos >= value.len || value.p[pos] != '=')
			continue;
		pos++;
		mime_skip_cfws(value, &pos);
		params[n].name =
		    arena_dup(a, (const uint8_t *)name.p, name.len);
		params[n].value = read_value(a, value, &pos);
		n++;
	}
	*count_r = join_rfc2231(a, params, n);
	*params_r = *count_r > 0 ? params : NULL;
}

struct str mime_param_get(const struct mime_param *params, size_t count,
			  struct str name)
{
	for (size_t i = 0; i < count; i++)
		if (str_eq_nocase(params[i].name, name))
			return params[i].value;
	return STR_NULL;
}

/* ---- parser state ------------------------------------------------------ */

/* Bits of mime_part.flags used only while parsing. */
#define PART_BODY_STARTED (1u << 16)
#define PART_OPEN_FLAGS PART_BODY_STARTED

/* Which header fields a part has seen already (the first one wins, as in
 * Dovecot). */
enum field_id {
	F_CTYPE = 0,
	F_CTE,
	F_CID,
	F_CDESC,
	F_CDISP,
	F_CLANG,
	F_CLOC,
	F_CMD5,
	F_DATE,
	F_SUBJECT,
	F_FROM,
	F_SENDER,
	F_REPLY_TO,
	F_TO,
	F_CC,
	F_BCC,
	F_IN_REPLY_TO,
	F_MESSAGE_ID,
	F_COUNT
};

static const char *const field_names[F_COUNT] = {
    "content-type",
    "content-transfer-encoding",
    "content-id",
    "content-description",
    "content-disposition",
    "content-language",
    "content-location",
    "content-md5",
    "date",
    "subject",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "in-reply-to",
    "message-id",
};

/* An open multipart and its boundary. */
struct boundary_ctx {
	struct mime_part *part;
	uint8_t boundary[MIME_MAX_BOUNDARY];
	size_t len;
	bool closed; /* saw --boundary--: now in the epilogue */
};

enum parser_state {
	PARSER_HEADER = 0, /* reading the header of cur */
	PARSER_BODY,       /* in the body of cur */
};

/* Structure decided by the current part's Content-Type, kept apart from
 * the stored fields so that it works even when the header budget is spent. */
struct pending_type {
	bool seen;
	bool multipart, message, digest;
	bool has_boundary;
	uint8_t boundary[MIME_MAX_BOUNDARY];
	size_t boundary_len;
};

struct mime_parser {
	struct mime_limits lim;
	struct mime_message *msg;
	struct mime_part *cur;
	enum parser_state state;
	struct pending_type ptype;
	uint32_t seen_fields; /* bit per enum field_id for cur */

	struct boundary_ctx *stack;
	size_t stack_count, stack_size;

	/* position of the next byte */
	uint64_t raw, crlf, lfs;

	/* the line being read: a prefix of at most line_cap bytes */
	uint8_t *line;
	size_t line_cap, line_len;
	uint64_t line_total; /* bytes of the line so far, LF excluded */
	uint64_t line_raw, line_crlf, line_lfs; /* where it started */
	bool last_cr;           /* the previous byte of the line was CR */
	unsigned int prev_term; /* raw length of the last line ending, 0 none */

	/* the header field being collected (folded lines joined by CRLF) */
	uint8_t *field;
	size_t field_len, field_cap;
	bool field_active;

	size_t header_bytes; /* charged against lim.max_header_bytes */
};

void mime_limits_default(struct mime_limits *lim)
{
	lim->max_parts = MIME_DEFAULT_MAX_PARTS;
	lim->max_depth = MIME_DEFAULT_MAX_DEPTH;
	lim->max_header_bytes = MIME_DEFAULT_MAX_HEADER_BYTES;
	lim->max_header_line = MIME_DEFAULT_MAX_HEADER_LINE;
}

static struct mime_part *part_new(struct mime_parser *p,
				  struct mime_part *parent)
{
	struct mime_part *part = mime_arena_alloc(p->msg->arena, sizeof(*part));
	part->parent = parent;
	part->depth = parent == NULL ? 0 : parent->depth + 1;
	part->header.offset = p->raw;
	part->header.offset_crlf = p->crlf;
	if (parent != NULL) {
		struct mime_part **tail = &parent->children;
		/* children are few per level compared to the part limit,
		 * and parts are appended only at boundaries */
		while (*tail != NULL)
			tail = &(*tail)->next;
		*tail = part;
		parent->child_count++;
		if ((parent->flags & MIME_PART_DIGEST) != 0)
			part->default_rfc822 = true;
	}
	/* the root and encapsulated messages carry an envelope */
	if (parent == NULL || (parent->flags & MIME_PART_MESSAGE) != 0)
		part->envelope = mime_arena_alloc(p->msg->arena,
						  sizeof(struct mime_envelope));
	p->msg->part_count++;
	return part;
}

static void start_header(struct mime_parser *p, struct mime_part *part)
{
	p->cur = part;
	p->state = PARSER_HEADER;
	memset(&p->ptype, 0, sizeof(p->ptype));
	p->seen_fields = 0;
	p->field_active = false;
	p->field_len = 0;
}

/* Ends part at the given position: a part still in its header gets all of
 * it as header and an empty body. */
static void end_part(struct mime_part *part, uint64_t raw, uint64_t crlf,
		     uint64_t lfs)
{
	if ((part->flags & PART_BODY_STARTED) == 0) {
		if (raw < part->header.offset) {
			raw = part->header.offset;
			crlf = part->header.offset_crlf;
		}
		part->header.size = raw - part->header.offset;
		part->header.size_crlf = crlf - part->header.offset_crlf;
		part->body.offset = raw;
		part->body.offset_crlf = crlf;
		part->body.size = part->body.size_crlf = 0;
		part->body_lines = 0;
		part->flags |= PART_BODY_STARTED;
	} else {
		uint64_t start_lfs = part->body_lines;
		if (raw < part->body.offset) {
			raw = part->body.offset;
			crlf = part->body.offset_crlf;
			lfs = start_lfs;
		}
		part->body.size = raw - part->body.offset;
		part->body.size_crlf = crlf - part->body.offset_crlf;
		part->body_lines = lfs >= start_lfs ? lfs - start_lfs : 0;
	}
	part->flags &= ~PART_OPEN_FLAGS;
}

/* Charges need bytes of kept header values; false (and the message marked
 * truncated) once max_header_bytes would be passed. */
static bool budget_ok(struct mime_parser *p, size_t need)
{
	if (need <= p->lim.max_header_bytes &&
	    p->header_bytes <= p->lim.max_header_bytes - need) {
		p->header_bytes += need;
		return true;
	}
	p->msg->flags |= MIME_MSG_TRUNCATED_HEADERS;
	return false;
}

/* Content-Type: decides the structure (always) and stores the fields
 * (within budget). */
static void handle_content_type(struct mime_parser *p, struct str value)
{
	struct mime_arena *tmp = NULL;
	struct mime_arena *a = p->msg->arena;
	struct str type, subtype;
	const struct mime_param *params;
	size_t count;

	if (!budget_ok(p, value.len * 2 + 64))
		a = tmp = mime_arena_new();
	mime_parse_content_type(a, value, true, &type, &subtype, &params,
				&count);
	p->ptype.seen = true;
	if (type.p != NULL) {
		p->ptype.multipart = str_eq_nocase(type, STR("multipart"));
		p->ptype.message = str_eq_nocase(type, STR("message")) &&
				   str_eq_nocase(subtype, STR("rfc822"));
		p->ptype.digest =
		    p->ptype.multipart && str_eq_nocase(subtype, STR("digest"));
		struct str b = mime_param_get(params, count, STR("boundary"));
		if (b.p != NULL && b.len <= MIME_MAX_BOUNDARY) {
			p->ptype.has_boundary = true;
			memcpy(p->ptype.boundary, b.p, b.len);
			p->ptype.boundary_len = b.len;
		}
	}
	if (tmp == NULL) {
		struct mime_fields *f = &p->cur->fields;
		f->type = type;
		f->subtype = subtype;
		f->params = params;
		f->param_count = count;
	}
	mime_arena_free(&tmp);
}

/* Copies a value unfolded (CR/LF dropped) for the MIME fields. */
static struct str dup_unfolded(struct mime_arena *a, struct str v)
{
	char *d = mime_arena_alloc(a, v.len + 1);
	size_t n = 0;
	for (size_t i = 0; i < v.len; i++)
		if (v.p[i] != '\r' && v.p[i] != '\n')
			d[n++] = v.p[i];
	/* trailing blanks are not part of the value */
	while (n > 0 && mime_is_wsp((uint8_t)d[n - 1]))
		n--;
	return str_from(d, n);
}

static void handle_language(struct mime_parser *p, struct str v)
{
	struct mime_fields *f = &p->cur->fields;
	size_t max = 1;
	for (size_t i = 0; i < v.len; i++)
		if (v.p[i] == ',')
			max++;
	struct str *langs =
	    mime_arena_alloc(p->msg->arena, max * sizeof(struct str));
	size_t n = 0, pos = 0;
	while (pos < v.len && n < max) {
		mime_skip_cfws(v, &pos);
		size_t start = pos;
		while (pos < v.len && v.p[pos] != ',' && v.p[pos] != ' ' &&
		       v.p[pos] != '\t' && v.p[pos] != '(' &&
		       v.p[pos] != '\r' && v.p[pos] != '\n')
			pos++;
		if (pos > start)
			langs[n++] = arena_dup(p->msg->arena,
					       (const uint8_t *)v.p + start,
					       pos - start);
		mime_skip_cfws(v, &pos);
		if (pos < v.len && v.p[pos] == ',')
			pos++;
		else if (pos < v.len && pos == start)
			pos++; /* junk byte */
	}
	f->languages = n > 0 ? langs : NULL;
	f->language_count = n;
}

/* A complete header field of cur is in p->field. */
static void finish_field(struct mime_parser *p)
{
	if (!p->field_active)
		return;
	p->field_active = false;
	struct str line = str_from((const char *)p->field, p->field_len);
	ptrdiff_t colon = str_index(line, ':');
	if (colon <= 0)
		return; /* no name: not a field (kept in the header bytes) */
	struct str name = str_from(line.p, (size_t)colon);
	while (name.len > 0 && mime_is_wsp((uint8_t)name.p[name.len - 1]))
		name.len--;
	struct str value = str_from(line.p + colon + 1, line.len - colon - 1);
	while (value.len > 0 && mime_is_wsp((uint8_t)value.p[0])) {
		value.p++;
		value.len--;
	}

	int id = -1;
	for (int i = 0; i < F_COUNT; i++) {
		if (str_eq_nocase(name, str_cstr(field_names[i]))) {
			id = i;
			break;
		}
	}
	if (id < 0 || (p->seen_fields & (1u << id)) != 0)
		return;
	if (id >= F_DATE && p->cur->envelope == NULL)
		return;
	p->seen_fields |= 1u << id;
	if (id == F_CTYPE) {
		handle_content_type(p, value);
		return;
	}
	if (!budget_ok(p, value.len * 2 + 64))
		return;

	struct mime_arena *a = p->msg->arena;
	struct mime_fields *f = &p->cur->fields;
	/* the envelope is written from the raw value (Dovecot unfolds
	 * differently per field); a const view is fine: the arena owns it */
	struct mime_envelope *env =
	    (struct mime_envelope *)(uintptr_t)p->cur->envelope;
	struct str raw = id >= F_DATE
			     ? arena_dup(a, (const uint8_t *)value.p, value.len)
			     : STR_NULL;
	switch ((enum field_id)id) {
	case F_CTE: {
		size_t pos = 0;
		mime_skip_cfws(value, &pos);
		struct str tok = mime_read_token(value, &pos);
		f->encoding = arena_dup(a, (const uint8_t *)tok.p, tok.len);
		break;
	}
	case F_CID:
		f->id = dup_unfolded(a, value);
		break;
	case F_CDESC:
		f->description = dup_unfolded(a, value);
		break;
	case F_CMD5:
		f->md5 = dup_unfolded(a, value);
		break;
	case F_CLOC:
		f->location = dup_unfolded(a, value);
		break;
	case F_CDISP: {
		struct str subtype;
		mime_parse_content_type(a, value, false, &f->disposition,
					&subtype, &f->disp_params,
					&f->disp_param_count);
		break;
	}
	case F_CLANG:
		handle_language(p, value);
		break;
	case F_DATE:
		env->date = raw;
		break;
	case F_SUBJECT:
		env->subject = raw;
		break;
	case F_FROM:
		env->from = raw;
		break;
	case F_SENDER:
		env->sender = raw;
		break;
	case F_REPLY_TO:
		env->reply_to = raw;
		break;
	case F_TO:
		env->to = raw;
		break;
	case F_CC:
		env->cc = raw;
		break;
	case F_BCC:
		env->bcc = raw;
		break;
	case F_IN_REPLY_TO:
		env->in_reply_to = raw;
		break;
	case F_MESSAGE_ID:
		env->message_id = raw;
		break;
	case F_CTYPE:
	case F_COUNT:
		break;
	}
}

static void field_append(struct mime_parser *p, const uint8_t *data, size_t len)
{
	size_t room = p->field_cap - p->field_len;
	if (len > room)
		len = room; /* cut at max_header_line */
	memcpy(p->field + p->field_len, data, len);
	p->field_len += len;
}

static void push_boundary(struct mime_parser *p, struct mime_part *part)
{
	if (p->stack_count == p->stack_size) {
		p->stack_size = p->stack_size == 0 ? 8 : p->stack_size * 2;
		p->stack =
		    xreallocarray(p->stack, p->stack_size, sizeof(*p->stack));
	}
	struct boundary_ctx *b = &p->stack[p->stack_count++];
	b->part = part;
	memcpy(b->boundary, p->ptype.boundary, p->ptype.boundary_len);
	b->len = p->ptype.boundary_len;
	b->closed = false;
}

/* The header of cur ended at the current position (after its empty line
 * or at a boundary/EOF handled elsewhere). Starts its body. */
static void header_done(struct mime_parser *p)
{
	struct mime_part *part = p->cur;
	finish_field(p);
	part->header.size = p->raw - part->header.offset;
	part->header.size_crlf = p->crlf - part->header.offset_crlf;
	part->body.offset = p->raw;
	part->body.offset_crlf = p->crlf;
	part->body_lines = p->lfs; /* start count until end_part */
	part->flags |= PART_BODY_STARTED;
	p->state = PARSER_BODY;

	bool multipart = p->ptype.seen ? p->ptype.multipart : false;
	bool message = p->ptype.seen ? p->ptype.message : part->default_rfc822;
	if (!multipart && !message)
		return;
	if (part->depth + 1 >= p->lim.max_depth) {
		part->flags |= MIME_PART_TOO_DEEP;
		p->msg->flags |= MIME_MSG_TRUNCATED_DEPTH;
		return;
	}
	if (p->msg->part_count >= p->lim.max_parts) {
		/* no room for its children: keep it a leaf */
		part->flags |= MIME_PART_TOO_DEEP;
		p->msg->flags |= MIME_MSG_TRUNCATED_PARTS;
		return;
	}
	if (message) {
		part->flags |= MIME_PART_MESSAGE;
		start_header(p, part_new(p, part));
		return;
	}
	part->flags |= MIME_PART_MULTIPART;
	if (p->ptype.digest)
		part->flags |= MIME_PART_DIGEST;
	if (!p->ptype.has_boundary) {
		/* Dovecot gives a multipart without boundary one empty
		 * text/plain child; do the same so BODYSTRUCTURE matches */
		part->flags |= MIME_PART_NO_BOUNDARY;
		struct mime_part *child = part_new(p, part);
		child->default_rfc822 = false;
		child->flags |= PART_BODY_STARTED;
		child->body.offset = p->raw;
		child->body.offset_crlf = p->crlf;
		child->body_lines = p->lfs;
		end_part(child, p->raw, p->crlf, p->lfs);
		return;
	}
	push_boundary(p, part);
}

/* Looks for a boundary in the current line; returns the stack index or
 * -1, and whether it closes. */
static ptrdiff_t match_boundary(const struct mime_parser *p, bool *close_r)
{
	size_t len = p->line_len;
	const uint8_t *l = p->line;
	bool whole = p->line_total == len; /* not cut at line_cap */

	if (p->stack_count == 0 || len < 2 || l[0] != '-' || l[1] != '-')
		return -1;
	/* exact: only blanks after the boundary (or after "--") */
	for (size_t i = p->stack_count; i-- > 0;) {
		const struct boundary_ctx *b = &p->stack[i];
		if (b->closed || len < 2 + b->len ||
		    memcmp(l + 2, b->boundary, b->len) != 0 || !whole)
			continue;
		size_t pos = 2 + b->len;
		bool close = false;
		if (len - pos >= 2 && l[pos] == '-' && l[pos + 1] == '-') {
			close = true;
			pos += 2;
		}
		while (pos < len && (mime_is_wsp(l[pos]) || l[pos] == '\r'))
			pos++;
		if (pos == len) {
			*close_r = close;
			return (ptrdiff_t)i;
		}
	}
	/* prefix, as Dovecot does */
	for (size_t i = p->stack_count; i-- > 0;) {
		const struct boundary_ctx *b = &p->stack[i];
		if (b->closed || len < 2 + b->len ||
		    memcmp(l + 2, b->boundary, b->len) != 0)
			continue;
		size_t pos = 2 + b->len;
		*close_r = len - pos >= 2 && l[pos] == '-' && l[pos + 1] == '-';
		return (ptrdiff_t)i;
	}
	return -1;
}

/* A boundary of stack[idx] was found on the current line. */
static void handle_boundary(struct mime_parser *p, size_t idx, bool close)
{
	struct mime_part *mp = p->stack[idx].part;
	/* the line ending before the boundary line belongs to it */
	uint64_t term_raw = p->line_raw - p->prev_term;
	uint64_t term_crlf = p->line_crlf - (p->prev_term != 0 ? 2 : 0);
	uint64_t term_lfs = p->line_lfs - (p->prev_term != 0 ? 1 : 0);

	if (p->state == PARSER_HEADER)
		finish_field(p);
	for (struct mime_part *part = p->cur; part != NULL && part != mp;
	     part = part->parent) {
		end_part(part, term_raw, term_crlf, term_lfs);
		/* a child that started right at this line (clamped to its
		 * start) must stay inside its parent's body */
		uint64_t end = part->body.offset + part->body.size;
		if (end > term_raw) {
			term_raw = end;
			term_crlf =
			    part->body.offset_crlf + part->body.size_crlf;
			/* such a child ends where this line starts */
			term_lfs = p->line_lfs;
		}
	}
	/* inner multiparts end with their parts */
	p->stack_count = idx + 1;
	p->cur = mp;
	p->state = PARSER_BODY;
	if (close) {
		p->stack[idx].closed = true;
		return;
	}
	/* the new part's header starts after this line: the caller moves
	 * the position, so remember to start it there */
	if (p->msg->part_count >= p->lim.max_parts) {
		p->msg->flags |= MIME_MSG_TRUNCATED_PARTS;
		return;
	}
	p->cur = NULL; /* part created in line_done once past the line */
}

static void header_line(struct mime_parser *p)
{
	if (p->line_total == 0) {
		/* the empty line ends the header */
		p->cur->flags |= MIME_PART_HEADER_END;
		p->state = PARSER_BODY; /* header_done runs after the line */
		return;
	}
	if (mime_is_wsp(p->line[0])) {
		if (p->field_active) {
			field_append(p, (const uint8_t *)"\r\n", 2);
			field_append(p, p->line, p->line_len);
		}
		return;
	}
	finish_field(p);
	p->field_active = true;
	p->field_len = 0;
	field_append(p, p->line, p->line_len);
}

/* A whole line (terminator excluded) is in p->line; the position is still
 * at its start until the terminator is counted by the caller. Returns what
 * to do after the terminator: 1 start a header, 2 start a child part. */
static int process_line(struct mime_parser *p)
{
	bool close = false;
	ptrdiff_t idx = match_boundary(p, &close);
	if (idx >= 0) {
		struct mime_part *mp = p->stack[idx].part;
		handle_boundary(p, (size_t)idx, close);
		if (p->cur == NULL) {
			p->cur = mp;
			return 2;
		}
		return 0;
	}
	if (p->state == PARSER_HEADER) {
		header_line(p);
		if (p->state == PARSER_BODY)
			return 1;
	}
	return 0;
}

static void after_line(struct mime_parser *p, int todo)
{
	if (todo == 1) {
		p->state = PARSER_HEADER;
		header_done(p);
	} else if (todo == 2) {
		start_header(p, part_new(p, p->cur));
	}
}

/* Removes the CR of a CRLF ending from the stored line. */
static void strip_cr(struct mime_parser *p)
{
	if (p->last_cr && p->line_total > 0) {
		if (p->line_len == p->line_total)
			p->line_len--;
		p->line_total--;
	}
}

int mime_parser_feed(struct mime_parser *p, const void *data, size_t len)
{
	const uint8_t *d = data;
	size_t i = 0;

	while (i < len) {
		const uint8_t *lf = memchr(d + i, '\n', len - i);
		size_t n = lf == NULL ? len - i : (size_t)(lf - (d + i));
		if (n > 0) {
			size_t room = p->line_cap - p->line_len;
			size_t take = n < room ? n : room;
			memcpy(p->line + p->line_len, d + i, take);
			p->line_len += take;
			p->line_total += n;
			p->last_cr = d[i + n - 1] == '\r';
			p->raw += n;
			p->crlf += n;
			i += n;
		}
		if (lf == NULL)
			break;
		/* a complete line */
		bool cr = p->last_cr;
		strip_cr(p);
		int todo = process_line(p);
		i++;
		p->raw += 1;
		p->crlf += cr ? 1 : 2;
		p->lfs++;
		p->prev_term = cr ? 2 : 1;
		after_line(p, todo);
		p->line_len = 0;
		p->line_total = 0;
		p->last_cr = false;
		p->line_raw = p->raw;
		p->line_crlf = p->crlf;
		p->line_lfs = p->lfs;
	}
	return 0;
}

struct mime_parser *mime_parser_new(const struct mime_limits *lim)
{
	struct mime_parser *p = xcalloc(1, sizeof(*p));
	if (lim != NULL)
		p->lim = *lim;
	else
		mime_limits_default(&p->lim);
	if (p->lim.max_parts < 1)
		p->lim.max_parts = 1;
	if (p->lim.max_depth < 1)
		p->lim.max_depth = 1;
	if (p->lim.max_header_line < 80)
		p->lim.max_header_line = 80;
	p->msg = xcalloc(1, sizeof(*p->msg));
	p->msg->arena = mime_arena_new();
	/* the line prefix must hold a header line or a boundary line */
	p->line_cap = p->lim.max_header_line;
	if (p->line_cap < MIME_MAX_BOUNDARY + 16)
		p->line_cap = MIME_MAX_BOUNDARY + 16;
	p->line = xmalloc(p->line_cap);
	p->field_cap = p->lim.max_header_line;
	p->field = xmalloc(p->field_cap);
	p->msg->root = part_new(p, NULL);
	start_header(p, p->msg->root);
	return p;
}

void mime_parser_free(struct mime_parser **pp)
{
	struct mime_parser *p = *pp;
	if (p == NULL)
		return;
	mime_message_free(&p->msg);
	free(p->stack);
	free(p->line);
	free(p->field);
	free(p);
	*pp = NULL;
}

int mime_parser_finish(struct mime_parser **pp, struct mime_message **msg_r,
		       const char **error_r)
{
	struct mime_parser *p = *pp;

	/* malformed MIME still gives a tree: there is no failure today, the
	 * -1 path is kept for the API (e.g. a future hard limit) */
	(void)error_r;
	*msg_r = NULL;
	if (p->line_total > 0) {
		/* a last line without LF: no terminator to count */
		p->last_cr = false;
		int todo = process_line(p);
		/* a header that ends here has no body; nothing follows */
		if (todo == 1) {
			p->state = PARSER_HEADER;
			header_done(p);
		} else if (todo == 2) {
			start_header(p, part_new(p, p->cur));
		}
	} else if (p->state == PARSER_HEADER) {
		finish_field(p);
	}
	if (p->state == PARSER_HEADER)
		finish_field(p);
	for (struct mime_part *part = p->cur; part != NULL; part = part->parent)
		end_part(part, p->raw, p->crlf, p->lfs);
	p->msg->size = p->raw;
	p->msg->size_crlf = p->crlf;
	*msg_r = p->msg;
	p->msg = NULL;
	mime_parser_free(pp);
	return 1;
}

void mime_message_free(struct mime_message **msg)
{
	if (*msg == NULL)
		return;
	mime_arena_free(&(*msg)->arena);
	free(*msg);
	*msg = NULL;
}

struct mime_message *mime_parse_buffer(const void *data, size_t len,
				       const struct mime_limits *lim)
{
	struct mime_parser *p = mime_parser_new(lim);
	struct mime_message *msg = NULL;
	const char *error;
	mime_parser_feed(p, data, len);
	if (mime_parser_finish(&p, &msg, &error) < 0)
		return NULL;
	return msg;
}
