/*
 * IMAP output of the part tree: ENVELOPE, BODY/BODYSTRUCTURE (RFC 3501
 * 7.4.2), section lookup, HEADER.FIELDS filtering.
 *
 * The string rules follow what Dovecot 2.3 sends, so clients see the same
 * answers from us as from the reference server:
 *   - nstring: quoted unless CR, LF, 8-bit, NUL or more than four '"'/'\'
 *     ask for a literal;
 *   - "nolf" (Date, In-Reply-To, Message-ID): line breaks of folding are
 *     removed (a blank is put in when the next line does not start with
 *     one), then nstring;
 *   - "for humans" (Subject, display names): CR/LF removed, TABs become
 *     blanks, runs of blanks become one, leading/trailing blanks go; any such
 *     change, or a '"', '\' or 8-bit byte, makes it a literal, else it is a
 *     plain quoted string; only blanks gives "".
 */
#include "backend/mime_private.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

/* ---- strings ----------------------------------------------------------- */

static int append_literal(struct buf *out, const uint8_t *p, size_t len)
{
	if (buf_printf(out, "{%zu}\r\n", len) < 0)
		return -1;
	/* IMAP text cannot carry NUL: Dovecot writes 0x80 instead */
	for (size_t i = 0; i < len;) {
		const uint8_t *nul = memchr(p + i, 0, len - i);
		size_t n = nul == NULL ? len - i : (size_t)(nul - (p + i));
		if (buf_append(out, p + i, n) < 0)
			return -1;
		i += n;
		if (nul != NULL) {
			if (buf_append_byte(out, 0x80) < 0)
				return -1;
			i++;
		}
	}
	return 0;
}

static int append_quoted(struct buf *out, const uint8_t *p, size_t len)
{
	if (buf_append_byte(out, '"') < 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if ((p[i] == '"' || p[i] == '\\') &&
		    buf_append_byte(out, '\\') < 0)
			return -1;
		if (buf_append_byte(out, p[i]) < 0)
			return -1;
	}
	return buf_append_byte(out, '"');
}

int mime_write_string(struct buf *out, struct str s)
{
	const uint8_t *p = (const uint8_t *)s.p;
	unsigned int escapes = 0;
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = p[i];
		if (c == '\r' || c == '\n' || c == 0 || c >= 0x80 ||
		    ((c == '"' || c == '\\') && ++escapes > 4))
			return append_literal(out, p, s.len);
	}
	return append_quoted(out, p, s.len);
}

int mime_write_nstring(struct buf *out, struct str s)
{
	if (s.p == NULL)
		return buf_append_cstr(out, "NIL");
	return mime_write_string(out, s);
}

static bool is_atom_char(uint8_t c)
{
	if (c <= ' ' || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\]", c) == NULL;
}

int mime_write_astring(struct buf *out, struct str s)
{
	bool atom = s.len > 0 && !str_eq_nocase(s, STR("NIL"));
	for (size_t i = 0; atom && i < s.len; i++)
		atom = is_atom_char((uint8_t)s.p[i]);
	if (atom)
		return buf_append_str(out, s);
	return mime_write_string(out, s);
}

/* Date, In-Reply-To, Message-ID. */
static int write_nstring_nolf(struct buf *out, struct str s)
{
	if (s.p == NULL || (memchr(s.p, '\r', s.len) == NULL &&
			    memchr(s.p, '\n', s.len) == NULL))
		return mime_write_nstring(out, s);
	char *tmp = xmalloc(s.len * 2 + 1);
	size_t n = 0;
	for (size_t i = 0; i < s.len; i++) {
		char c = s.p[i];
		if (c != '\r' && c != '\n') {
			tmp[n++] = c;
			continue;
		}
		char next = i + 1 < s.len ? s.p[i + 1] : '\0';
		if (next != ' ' && next != '\t' && next != '\r' &&
		    next != '\n' && next != '\0')
			tmp[n++] = ' ';
	}
	int ret = mime_write_string(out, str_from(tmp, n));
	free(tmp);
	return ret;
}

/* Subject and display names. */
static int write_string_for_humans(struct buf *out, struct str s)
{
	const uint8_t *p = (const uint8_t *)s.p;
	bool change = false, lwsp = true, any = false;
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = p[i];
		if (c == ' ') {
			if (lwsp)
				change = true;
			lwsp = true;
		} else if (c == '\t' || c == '\r' || c == '\n') {
			change = true;
			if (c == '\t')
				lwsp = true;
		} else {
			if (c == '"' || c == '\\' || c >= 0x80 || c == 0)
				change = true;
			lwsp = false;
			any = true;
		}
	}
	if (lwsp && s.len > 0)
		change = true; /* trailing blank */
	if (!change)
		return append_quoted(out, p, s.len);
	if (!any)
		return buf_append_cstr(out, "\"\"");
	uint8_t *tmp = xmalloc(s.len + 1);
	size_t n = 0;
	lwsp = true;
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = p[i];
		if (c == ' ' || c == '\t') {
			if (!lwsp)
				tmp[n++] = ' ';
			lwsp = true;
		} else if (c != '\r' && c != '\n') {
			tmp[n++] = c;
			lwsp = false;
		}
	}
	if (lwsp && n > 0)
		n--;
	int ret = append_literal(out, tmp, n);
	free(tmp);
	return ret;
}

/* ---- addresses (RFC 5322 lists, lenient like Dovecot) ------------------ */

struct addr_bufs {
	struct buf *phrase; /* display name: words joined by one blank */
	struct buf *local;  /* the same words joined with nothing */
	struct buf *route;
	struct buf *domain;
	struct buf *comment; /* last comment, a name for "a@b (Name)" */
};

static bool is_atext(uint8_t c)
{
	if (c >= 0x80)
		return true; /* RFC 6532 UTF-8 */
	if (c <= ' ' || c == 0x7f)
		return false;
	return strchr("()<>[]:;@\\,\"", c) == NULL;
}

/* Like mime_skip_cfws, but keeps the text of the last comment. */
static void skip_cfws_keep(struct str v, size_t *pos, struct buf *comment)
{
	size_t i = *pos;
	while (i < v.len) {
		char c = v.p[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			i++;
			continue;
		}
		if (c != '(')
			break;
		unsigned int level = 0;
		buf_reset(comment);
		for (; i < v.len; i++) {
			if (v.p[i] == '\\' && i + 1 < v.len) {
				buf_append_byte(comment, (uint8_t)v.p[++i]);
				continue;
			}
			if (v.p[i] == '(' && level++ == 0)
				continue;
			if (v.p[i] == ')' && --level == 0) {
				i++;
				break;
			}
			if (v.p[i] != '\r' && v.p[i] != '\n')
				buf_append_byte(comment, (uint8_t)v.p[i]);
		}
	}
	*pos = i;
}

/* Reads words (atoms with dots, quoted strings) into phrase and local. */
static void read_words(struct str v, size_t *pos, struct addr_bufs *ab)
{
	size_t i = *pos;
	for (;;) {
		skip_cfws_keep(v, &i, ab->comment);
		if (i >= v.len)
			break;
		uint8_t c = (uint8_t)v.p[i];
		if (c == '"') {
			if (ab->phrase->len > 0)
				buf_append_byte(ab->phrase, ' ');
			for (i++; i < v.len && v.p[i] != '"'; i++) {
				if (v.p[i] == '\\' && i + 1 < v.len)
					i++;
				if (v.p[i] == '\r' || v.p[i] == '\n')
					continue;
				buf_append_byte(ab->phrase, (uint8_t)v.p[i]);
				buf_append_byte(ab->local, (uint8_t)v.p[i]);
			}
			if (i < v.len)
				i++;
		} else if (is_atext(c)) {
			if (ab->phrase->len > 0 && v.p[i] != '.' &&
			    ab->phrase->data[ab->phrase->len - 1] != '.')
				buf_append_byte(ab->phrase, ' ');
			while (i < v.len && is_atext((uint8_t)v.p[i])) {
				buf_append_byte(ab->phrase, (uint8_t)v.p[i]);
				buf_append_byte(ab->local, (uint8_t)v.p[i]);
				i++;
			}
		} else {
			break;
		}
	}
	*pos = i;
}

static void read_domain(struct str v, size_t *pos, struct addr_bufs *ab)
{
	size_t i = *pos;
	for (;;) {
		skip_cfws_keep(v, &i, ab->comment);
		if (i >= v.len)
			break;
		if (v.p[i] == '[') {
			for (; i < v.len && v.p[i] != ']'; i++)
				if (v.p[i] != '\r' && v.p[i] != '\n')
					buf_append_byte(ab->domain,
							(uint8_t)v.p[i]);
			if (i < v.len) {
				buf_append_byte(ab->domain, ']');
				i++;
			}
		} else if (is_atext((uint8_t)v.p[i])) {
			while (i < v.len && is_atext((uint8_t)v.p[i]))
				buf_append_byte(ab->domain, (uint8_t)v.p[i++]);
		} else {
			break;
		}
	}
	*pos = i;
}

static int write_addr(struct buf *out, struct str name, struct str route,
		      struct str mailbox, struct str domain)
{
	if (buf_append_byte(out, '(') < 0)
		return -1;
	if (name.len == 0 ? buf_append_cstr(out, "NIL") < 0
			  : write_string_for_humans(out, name) < 0)
		return -1;
	if (buf_append_byte(out, ' ') < 0 ||
	    mime_write_nstring(out, route.len > 0 ? route : STR_NULL) < 0 ||
	    buf_append_byte(out, ' ') < 0 ||
	    mime_write_nstring(out, mailbox) < 0 ||
	    buf_append_byte(out, ' ') < 0 ||
	    mime_write_nstring(out, domain) < 0)
		return -1;
	return buf_append_byte(out, ')');
}

static void reset_bufs(struct addr_bufs *ab)
{
	buf_reset(ab->phrase);
	buf_reset(ab->local);
	buf_reset(ab->route);
	buf_reset(ab->domain);
	buf_reset(ab->comment);
}

/* Parses one mailbox at *pos and writes it; returns 1 written, 0 nothing
 * there, -1 output full. in_group: ':' does not start another group. */
static int parse_mailbox(struct buf *out, struct str v, size_t *pos,
			 struct addr_bufs *ab, bool in_group, bool *group_r)
{
	size_t i = *pos;
	reset_bufs(ab);
	*group_r = false;
	read_words(v, &i, ab);
	char c = i < v.len ? v.p[i] : '\0';
	int ret = 0;

	if (c == ':' && !in_group) {
		i++;
		*group_r = true;
		*pos = i;
		return write_addr(out, STR_NULL, STR_NULL, buf_str(ab->phrase),
				  STR_NULL) < 0
			   ? -1
			   : 1;
	}
	if (c == '<') {
		struct buf *name = ab->phrase;
		struct str name_s = buf_str(name);
		/* keep the name: phrase is reused for the addr-spec */
		char *saved = xmalloc(name_s.len + 1); /* may hold NULs */
		memcpy(saved, name_s.p, name_s.len);
		size_t saved_len = name_s.len;
		buf_reset(ab->phrase);
		buf_reset(ab->local);
		i++;
		mime_skip_cfws(v, &i);
		if (i < v.len && v.p[i] == '@') {
			/* obsolete route: @a,@b: */
			for (; i < v.len && v.p[i] != ':' && v.p[i] != '>'; i++)
				if (!mime_is_wsp((uint8_t)v.p[i]) &&
				    v.p[i] != '\r' && v.p[i] != '\n')
					buf_append_byte(ab->route,
							(uint8_t)v.p[i]);
			if (i < v.len && v.p[i] == ':')
				i++;
		}
		read_words(v, &i, ab);
		if (i < v.len && v.p[i] == '@') {
			i++;
			read_domain(v, &i, ab);
		}
		while (i < v.len && v.p[i] != '>' && v.p[i] != ',')
			i++;
		if (i < v.len && v.p[i] == '>')
			i++;
		struct str local = buf_str(ab->local);
		struct str dom = buf_str(ab->domain);
		ret = write_addr(out, str_from(saved, saved_len),
				 buf_str(ab->route),
				 local.len > 0 ? local : STR("MISSING_MAILBOX"),
				 dom.len > 0 ? dom : STR("MISSING_DOMAIN"));
		free(saved);
		*pos = i;
		return ret < 0 ? -1 : 1;
	}
	if (c == '@') {
		i++;
		read_domain(v, &i, ab);
		skip_cfws_keep(v, &i, ab->comment);
		struct str local = buf_str(ab->local);
		struct str dom = buf_str(ab->domain);
		*pos = i;
		return write_addr(out, buf_str(ab->comment), STR_NULL,
				  local.len > 0 ? local
						: STR("MISSING_MAILBOX"),
				  dom.len > 0 ? dom : STR("MISSING_DOMAIN")) < 0
			   ? -1
			   : 1;
	}
	*pos = i;
	if (ab->local->len == 0)
		return 0;
	return write_addr(out, STR_NULL, STR_NULL, buf_str(ab->local),
			  STR("MISSING_DOMAIN")) < 0
		   ? -1
		   : 1;
}

/* Writes an address list as "(addr...)" or NIL; *count_r = addresses. */
static int write_address_list(struct buf *out, struct str v, size_t *count_r)
{
	size_t start = out->len;
	size_t count = 0, pos = 0;
	bool in_group = false;
	struct addr_bufs ab;
	size_t cap = v.len + 64;
	int ret = 0;

	*count_r = 0;
	if (v.p == NULL)
		return buf_append_cstr(out, "NIL");
	ab.phrase = buf_new(64, cap);
	ab.local = buf_new(64, cap);
	ab.route = buf_new(16, cap);
	ab.domain = buf_new(64, cap);
	ab.comment = buf_new(16, cap);
	if (buf_append_byte(out, '(') < 0)
		ret = -1;
	while (ret == 0 && pos < v.len) {
		size_t before = pos;
		mime_skip_cfws(v, &pos);
		if (pos >= v.len)
			break;
		if (v.p[pos] == ',') {
			pos++;
			continue;
		}
		if (v.p[pos] == ';') {
			pos++;
			if (in_group) {
				in_group = false;
				if (buf_append_cstr(out, "(NIL NIL NIL NIL)") <
				    0)
					ret = -1;
				count++;
			}
			continue;
		}
		bool group = false;
		int r = parse_mailbox(out, v, &pos, &ab, in_group, &group);
		if (r < 0)
			ret = -1;
		else if (r > 0)
			count++;
		if (group)
			in_group = true;
		if (pos == before)
			pos++; /* junk byte: always make progress */
	}
	if (ret == 0 && in_group) {
		/* unterminated group still gets its end marker */
		if (buf_append_cstr(out, "(NIL NIL NIL NIL)") < 0)
			ret = -1;
		count++;
	}
	buf_free(&ab.phrase);
	buf_free(&ab.local);
	buf_free(&ab.route);
	buf_free(&ab.domain);
	buf_free(&ab.comment);
	if (ret < 0)
		return -1;
	if (count == 0) {
		/* nothing parsed: NIL */
		out->len = start;
		out->data[out->len] = '\0';
		return buf_append_cstr(out, "NIL");
	}
	*count_r = count;
	return buf_append_byte(out, ')');
}

/* ---- ENVELOPE ---------------------------------------------------------- */

int mime_write_envelope(const struct mime_part *msgpart, struct buf *out)
{
	/* a message/rfc822 part (not the root: the root has its own
	 * envelope even when its body is a message) */
	if (msgpart->envelope == NULL &&
	    (msgpart->flags & MIME_PART_MESSAGE) != 0 &&
	    msgpart->children != NULL)
		msgpart = msgpart->children;
	const struct mime_envelope *e = msgpart->envelope;
	static const struct mime_envelope empty;
	size_t n;

	if (e == NULL)
		e = &empty;
	if (buf_append_byte(out, '(') < 0 ||
	    write_nstring_nolf(out, e->date) < 0 ||
	    buf_append_byte(out, ' ') < 0 ||
	    (e->subject.p == NULL
		 ? buf_append_cstr(out, "NIL")
		 : write_string_for_humans(out, e->subject)) < 0 ||
	    buf_append_byte(out, ' ') < 0)
		return -1;
	if (write_address_list(out, e->from, &n) < 0)
		return -1;
	/* Sender and Reply-To default to From (RFC 3501 7.4.2) */
	const struct str *defaults[2] = {&e->sender, &e->reply_to};
	for (int i = 0; i < 2; i++) {
		if (buf_append_byte(out, ' ') < 0)
			return -1;
		size_t mark = out->len;
		if (write_address_list(out, *defaults[i], &n) < 0)
			return -1;
		if (n == 0) {
			out->len = mark;
			out->data[mark] = '\0';
			if (write_address_list(out, e->from, &n) < 0)
				return -1;
		}
	}
	const struct str *lists[3] = {&e->to, &e->cc, &e->bcc};
	for (int i = 0; i < 3; i++)
		if (buf_append_byte(out, ' ') < 0 ||
		    write_address_list(out, *lists[i], &n) < 0)
			return -1;
	if (buf_append_byte(out, ' ') < 0 ||
	    write_nstring_nolf(out, e->in_reply_to) < 0 ||
	    buf_append_byte(out, ' ') < 0 ||
	    write_nstring_nolf(out, e->message_id) < 0)
		return -1;
	return buf_append_byte(out, ')');
}

/* ---- BODYSTRUCTURE ----------------------------------------------------- */

static int write_params(struct buf *out, const struct mime_param *params,
			size_t count, bool add_charset)
{
	if (count == 0 && !add_charset)
		return buf_append_cstr(out, "NIL");
	if (buf_append_byte(out, '(') < 0)
		return -1;
	for (size_t i = 0; i < count; i++) {
		if ((i > 0 && buf_append_byte(out, ' ') < 0) ||
		    mime_write_string(out, params[i].name) < 0 ||
		    buf_append_byte(out, ' ') < 0 ||
		    mime_write_string(out, params[i].value) < 0)
			return -1;
	}
	if (add_charset &&
	    buf_append_cstr(out, count > 0 ? " \"charset\" \"us-ascii\""
					   : "\"charset\" \"us-ascii\"") < 0)
		return -1;
	return buf_append_byte(out, ')');
}

static int write_extension(struct buf *out, const struct mime_fields *f)
{
	if (buf_append_byte(out, ' ') < 0)
		return -1;
	if (f->disposition.p == NULL) {
		if (buf_append_cstr(out, "NIL") < 0)
			return -1;
	} else if (buf_append_byte(out, '(') < 0 ||
		   mime_write_string(out, f->disposition) < 0 ||
		   buf_append_byte(out, ' ') < 0 ||
		   write_params(out, f->disp_params, f->disp_param_count,
				false) < 0 ||
		   buf_append_byte(out, ')') < 0) {
		return -1;
	}
	if (buf_append_byte(out, ' ') < 0)
		return -1;
	if (f->language_count == 0) {
		if (buf_append_cstr(out, "NIL") < 0)
			return -1;
	} else {
		if (buf_append_byte(out, '(') < 0)
			return -1;
		for (size_t i = 0; i < f->language_count; i++)
			if ((i > 0 && buf_append_byte(out, ' ') < 0) ||
			    mime_write_string(out, f->languages[i]) < 0)
				return -1;
		if (buf_append_byte(out, ')') < 0)
			return -1;
	}
	if (buf_append_byte(out, ' ') < 0 ||
	    mime_write_nstring(out, f->location) < 0)
		return -1;
	return 0;
}

static const char empty_leaf[] =
    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0";

static int write_part(const struct mime_part *part, bool ext, struct buf *out);

static int write_multipart(const struct mime_part *part, bool ext,
			   struct buf *out)
{
	const struct mime_fields *f = &part->fields;
	if (buf_append_byte(out, '(') < 0)
		return -1;
	if (part->children == NULL) {
		/* IMAP needs at least one body part */
		if (buf_append_cstr(out, empty_leaf) < 0 ||
		    (ext && buf_append_cstr(out, " NIL NIL NIL NIL") < 0) ||
		    buf_append_byte(out, ')') < 0)
			return -1;
	}
	for (const struct mime_part *c = part->children; c != NULL; c = c->next)
		if (write_part(c, ext, out) < 0)
			return -1;
	if (buf_append_byte(out, ' ') < 0 ||
	    mime_write_string(out, f->subtype.p != NULL ? f->subtype
							: STR("mixed")) < 0)
		return -1;
	if (ext && (buf_append_byte(out, ' ') < 0 ||
		    write_params(out, f->params, f->param_count, false) < 0 ||
		    write_extension(out, f) < 0))
		return -1;
	return buf_append_byte(out, ')');
}

static int write_part(const struct mime_part *part, bool ext, struct buf *out)
{
	const struct mime_fields *f = &part->fields;
	if ((part->flags & MIME_PART_MULTIPART) != 0)
		return write_multipart(part, ext, out);

	struct str type = f->type, subtype = f->subtype;
	bool message =
	    (part->flags & MIME_PART_MESSAGE) != 0 && part->children != NULL;
	if (message) {
		type = STR("message");
		subtype = STR("rfc822");
	} else if (type.p == NULL) {
		if (part->default_rfc822 ||
		    (part->flags & MIME_PART_TOO_DEEP) != 0) {
			/* an unparsed message/rfc822: no envelope to give */
			type = STR("application");
			subtype = STR("octet-stream");
		} else {
			type = STR("text");
			subtype = STR("plain");
		}
	} else if (str_eq_nocase(type, STR("multipart")) ||
		   (str_eq_nocase(type, STR("message")) &&
		    str_eq_nocase(subtype, STR("rfc822")))) {
		/* a container we did not descend into (depth, limits) */
		type = STR("application");
		subtype = STR("octet-stream");
	}
	bool text = str_eq_nocase(type, STR("text"));
	bool add_charset =
	    text &&
	    mime_param_get(f->params, f->param_count, STR("charset")).p == NULL;

	if (buf_append_byte(out, '(') < 0 || mime_write_string(out, type) < 0 ||
	    buf_append_byte(out, ' ') < 0 ||
	    mime_write_string(out, subtype) < 0 ||
	    buf_append_byte(out, ' ') < 0 ||
	    write_params(out, f->params, f->param_count, add_charset) < 0 ||
	    buf_append_byte(out, ' ') < 0 ||
	    mime_write_nstring(out, f->id) < 0 ||
	    buf_append_byte(out, ' ') < 0 ||
	    mime_write_nstring(out, f->description) < 0 ||
	    buf_append_byte(out, ' ') < 0 ||
	    mime_write_string(out, f->encoding.p != NULL ? f->encoding
							 : STR("7bit")) < 0 ||
	    buf_printf(out, " %" PRIu64, part->body.size_crlf) < 0)
		return -1;
	if (text && buf_printf(out, " %" PRIu64, part->body_lines) < 0)
		return -1;
	if (message) {
		if (buf_append_byte(out, ' ') < 0 ||
		    mime_write_envelope(part->children, out) < 0 ||
		    buf_append_byte(out, ' ') < 0 ||
		    write_part(part->children, ext, out) < 0 ||
		    buf_printf(out, " %" PRIu64, part->body_lines) < 0)
			return -1;
	}
	if (ext && (buf_append_byte(out, ' ') < 0 ||
		    mime_write_nstring(out, f->md5) < 0 ||
		    write_extension(out, f) < 0))
		return -1;
	return buf_append_byte(out, ')');
}

int mime_write_bodystructure(const struct mime_part *part, bool extended,
			     struct buf *out)
{
	return write_part(part, extended, out);
}

/* ---- sections ---------------------------------------------------------- */

const struct mime_part *mime_part_find(const struct mime_message *msg,
				       const uint32_t *path, size_t depth)
{
	const struct mime_part *part = msg->root;
	bool at_body = false; /* "1" of a non-multipart was taken */

	for (size_t i = 0; i < depth; i++) {
		if (i > 0 && (part->flags & MIME_PART_MESSAGE) != 0 &&
		    part->children != NULL) {
			part = part->children;
			at_body = false;
		}
		if ((part->flags & MIME_PART_MULTIPART) != 0) {
			const struct mime_part *c = part->children;
			for (uint32_t n = 1; c != NULL && n < path[i]; n++)
				c = c->next;
			if (path[i] == 0 || c == NULL)
				return NULL;
			part = c;
			/* a leaf inside a multipart has no sub-parts */
			at_body = (c->flags & (MIME_PART_MULTIPART |
					       MIME_PART_MESSAGE)) == 0;
		} else {
			if (path[i] != 1 || at_body)
				return NULL;
			at_body = true;
		}
	}
	return part;
}

const struct mime_part *mime_part_message(const struct mime_part *part)
{
	if ((part->flags & MIME_PART_MESSAGE) != 0 && part->children != NULL)
		return part->children;
	return NULL;
}

/* ---- header filtering and CRLF ---------------------------------------- */

static bool name_listed(struct str name, const struct str *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (str_eq_nocase(name, names[i]))
			return true;
	return false;
}

int mime_header_filter(const void *hdr, size_t len, const struct str *names,
		       size_t name_count, bool not, struct buf *out)
{
	const char *p = hdr;
	size_t pos = 0;
	bool keep = false;

	while (pos < len) {
		const char *lf = memchr(p + pos, '\n', len - pos);
		size_t end = lf == NULL ? len : (size_t)(lf - p);
		size_t next = lf == NULL ? len : end + 1;
		struct str line = str_from(p + pos, end - pos);
		if (line.len > 0 && line.p[line.len - 1] == '\r')
			line.len--;
		pos = next;
		if (line.len == 0)
			break; /* the empty line ends the header */
		if (!mime_is_wsp((uint8_t)line.p[0])) {
			struct str name = line;
			ptrdiff_t colon = str_index(line, ':');
			if (colon >= 0)
				name.len = (size_t)colon;
			while (name.len > 0 &&
			       mime_is_wsp((uint8_t)name.p[name.len - 1]))
				name.len--;
			keep = name_listed(name, names, name_count) != not ;
			/* a line that is no field never matches a name */
			if (colon < 0)
				keep = not ;
		}
		if (keep && (buf_append_str(out, line) < 0 ||
			     buf_append(out, "\r\n", 2) < 0))
			return -1;
	}
	return buf_append(out, "\r\n", 2);
}

int mime_write_crlf(struct buf *out, const void *src, size_t len, bool *prev_cr)
{
	const uint8_t *p = src;
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n' && !(i == 0 ? *prev_cr : p[i - 1] == '\r')) {
			if (buf_append(out, p + start, i - start) < 0 ||
			    buf_append(out, "\r\n", 2) < 0)
				return -1;
			start = i + 1;
		}
	}
	if (buf_append(out, p + start, len - start) < 0)
		return -1;
	if (len > 0)
		*prev_cr = p[len - 1] == '\r';
	return 0;
}
