/*
 * FETCH (RFC 3501 6.4.5, CONDSTORE's MODSEQ and CHANGEDSINCE of RFC 7162).
 *
 * A FETCH is a job: the items are parsed once, the matching messages are
 * listed, and the answer is produced one message at a time whenever the
 * output buffer is below IMAP_OUT_LOW. Message bytes (BODY[...], RFC822)
 * are streamed from the file in chunks, converted to CRLF on the way, so a
 * large message never sits in memory. Parsed structure (ENVELOPE,
 * BODYSTRUCTURE, section offsets) comes from backend/mime.h, parsed from
 * the file in chunks as well.
 *
 * Sizes are the CRLF form (every bare LF counts as CRLF): RFC822.SIZE is
 * the index's size (W= in the file name, or counted once), literal sizes
 * come from the parser's CRLF spans.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "imap_internal.h"
#include "imap_seqset.h"
#include "mailcache.h"
#include "mime.h"
#include "xmalloc.h"

#define FETCH_MAX_ITEMS 64
#define FETCH_MAX_FIELDS 64
#define FETCH_MAX_PATH 32
#define FETCH_CHUNK 16384
/* HEADER.FIELDS reads at most this much of a header block. */
#define FETCH_HEADER_MAX (1024 * 1024)

enum fetch_kind {
	FI_FLAGS = 0,
	FI_UID,
	FI_INTERNALDATE,
	FI_RFC822_SIZE,
	FI_ENVELOPE,
	FI_BODY,          /* BODY without section: non-extended structure */
	FI_BODYSTRUCTURE,
	FI_MODSEQ,
	FI_SECTION,       /* BODY[...], BODY.PEEK[...], RFC822, RFC822.* */
};

enum section_what {
	SEC_ALL = 0,   /* BODY[] or BODY[1.2] (a part's body) */
	SEC_HEADER,
	SEC_HEADER_FIELDS,
	SEC_HEADER_FIELDS_NOT,
	SEC_TEXT,
	SEC_MIME,
};

struct fetch_item {
	enum fetch_kind kind;
	/* FI_SECTION */
	enum section_what what;
	uint32_t path[FETCH_MAX_PATH];
	size_t depth;
	struct str *fields; /* into field_copies */
	char **field_copies; /* owned */
	size_t field_count;
	bool peek;
	bool partial;
	uint64_t p_off, p_len;
	char *name; /* response name, e.g. "BODY[1.MIME]" or "RFC822" */
};

struct imap_fetch_job {
	char tag[IMAP_TAG_MAX + 1];
	bool uid;
	struct fetch_item items[FETCH_MAX_ITEMS];
	size_t item_count;
	bool need_mime;      /* sections below the root: parse every message */
	bool need_file;      /* any body section: open every message */
	bool sets_seen, has_flags;
	bool send_modseq;
	uint64_t changedsince;
	uint32_t *uids; /* messages to answer, by UID (the view may change) */
	uint32_t count, pos;
	bool expunged_seen, failed;

	/* the message being answered */
	bool in_msg;
	size_t next_item;
	uint32_t cur_uid;
	int fd;
	struct mime_message *mime;
	struct mailbox_message msg;
	/* a literal being streamed */
	bool streaming;
	uint64_t raw_left;  /* raw bytes still to read */
	uint64_t skip;      /* converted bytes to drop (partial origin) */
	uint64_t out_left;  /* converted bytes still to send */
	bool prev_cr;  /* CRLF conversion state of the stream */
	bool need_sep; /* an item was written: the next needs a space */
};

static void item_free(struct fetch_item *it)
{
	for (size_t i = 0; i < it->field_count; i++)
		free(it->field_copies[i]);
	free(it->field_copies);
	free(it->fields);
	free(it->name);
	memset(it, 0, sizeof(*it));
}

void imap_fetch_free(struct imap_fetch_job **jobp)
{
	struct imap_fetch_job *job = *jobp;

	if (job == NULL)
		return;
	for (size_t i = 0; i < job->item_count; i++)
		item_free(&job->items[i]);
	if (job->fd >= 0)
		close(job->fd);
	mime_message_free(&job->mime);
	free(job->uids);
	free(job);
	*jobp = NULL;
}

/* ---- parsing the items ---------------------------------------------------- */

static struct fetch_item *item_add(struct imap_fetch_job *job,
				   enum fetch_kind kind)
{
	if (job->item_count == FETCH_MAX_ITEMS)
		return NULL;
	struct fetch_item *it = &job->items[job->item_count++];
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	return it;
}

static bool parse_u64(struct str s, uint64_t *v)
{
	return str_to_u64(s, UINT64_MAX / 2, v);
}

/* spec: text between '[' and ']'. */
static bool parse_section_spec(struct str spec, struct fetch_item *it)
{
	size_t i = 0;

	it->what = SEC_ALL;
	while (i < spec.len && spec.p[i] >= '0' && spec.p[i] <= '9') {
		uint64_t n = 0;
		size_t start = i;
		while (i < spec.len && spec.p[i] >= '0' && spec.p[i] <= '9')
			i++;
		if (!str_to_u64(str_slice(spec, start, i - start), UINT32_MAX,
				&n) ||
		    n == 0 || it->depth == FETCH_MAX_PATH)
			return false;
		it->path[it->depth++] = (uint32_t)n;
		if (i == spec.len)
			return true;
		if (spec.p[i] != '.')
			return false;
		i++;
	}
	struct str rest = str_slice(spec, i, spec.len - i);
	if (rest.len == 0)
		return it->depth == 0 && i == 0;
	if (str_eq_nocase(rest, STR("HEADER")))
		it->what = SEC_HEADER;
	else if (str_eq_nocase(rest, STR("TEXT")))
		it->what = SEC_TEXT;
	else if (str_eq_nocase(rest, STR("MIME")) && it->depth > 0)
		it->what = SEC_MIME;
	else if (str_eq_nocase(rest, STR("HEADER.FIELDS")))
		it->what = SEC_HEADER_FIELDS;
	else if (str_eq_nocase(rest, STR("HEADER.FIELDS.NOT")))
		it->what = SEC_HEADER_FIELDS_NOT;
	else
		return false;
	return true;
}

/* "<o.l>" after ']'. */
static bool parse_partial(struct str s, struct fetch_item *it)
{
	struct str o, l;

	if (s.len == 0)
		return true;
	if (s.len < 5 || s.p[0] != '<' || s.p[s.len - 1] != '>')
		return false;
	s = str_slice(s, 1, s.len - 2);
	if (!str_split(s, '.', &o, &l) || !parse_u64(o, &it->p_off) ||
	    !parse_u64(l, &it->p_len) || it->p_len == 0)
		return false;
	it->partial = true;
	return true;
}

/* Parses BODY[...] / BODY.PEEK[...] starting at args[*i]; may consume a
 * field list and the closing "]..." atom. */
static bool parse_body_section(struct imap_fetch_job *job,
			       const struct imap_arg *args, size_t count,
			       size_t *i)
{
	struct str a = args[*i].str;
	bool peek = str_has_prefix_nocase(a, STR("BODY.PEEK["));
	size_t open = peek ? 10 : 5;
	struct fetch_item *it = item_add(job, FI_SECTION);
	char name[512];
	size_t nlen = 0;

	if (it == NULL)
		return false;
	it->peek = peek;
	ptrdiff_t close = -1;
	for (size_t k = open; k < a.len; k++) {
		if (a.p[k] == ']') {
			close = (ptrdiff_t)k;
			break;
		}
	}
	struct str spec, after;
	if (close >= 0) {
		spec = str_slice(a, open, (size_t)close - open);
		after = str_slice(a, (size_t)close + 1,
				  a.len - (size_t)close - 1);
		if (!parse_section_spec(spec, it) ||
		    it->what == SEC_HEADER_FIELDS ||
		    it->what == SEC_HEADER_FIELDS_NOT)
			return false;
		int n = str_printf(name, sizeof(name), "BODY[%.*s]",
				   STR_FMT(spec));
		if (n < 0)
			return false;
		nlen = (size_t)n;
	} else {
		/* BODY[HEADER.FIELDS (A B)]<..> arrives as three args */
		spec = str_slice(a, open, a.len - open);
		if (!parse_section_spec(spec, it) ||
		    (it->what != SEC_HEADER_FIELDS &&
		     it->what != SEC_HEADER_FIELDS_NOT) ||
		    *i + 2 >= count || args[*i + 1].type != IMAP_ARG_LIST ||
		    args[*i + 2].type != IMAP_ARG_ATOM ||
		    args[*i + 2].str.len == 0 || args[*i + 2].str.p[0] != ']')
			return false;
		const struct imap_arg *list = &args[*i + 1];
		if (list->list_count == 0 || list->list_count > FETCH_MAX_FIELDS)
			return false;
		it->fields = xcalloc(list->list_count, sizeof(*it->fields));
		it->field_copies =
		    xcalloc(list->list_count, sizeof(*it->field_copies));
		int n = str_printf(name, sizeof(name), "BODY[%.*s (",
				   STR_FMT(spec));
		if (n < 0)
			return false;
		nlen = (size_t)n;
		for (size_t k = 0; k < list->list_count; k++) {
			struct str f;
			if (!imap_arg_get_astring(&list->list[k], &f) ||
			    f.len == 0 || f.len > 200)
				return false;
			/* a field name is RFC 5322 ftext; anything else
			 * (CRLF, ')', ']' in a literal) would be echoed
			 * into the answer and break it */
			for (size_t c = 0; c < f.len; c++) {
				unsigned char ch = (unsigned char)f.p[c];
				if (ch < 0x21 || ch > 0x7e || ch == ':' ||
				    ch == '(' || ch == ')' || ch == '[' ||
				    ch == ']' || ch == '"' || ch == '\\' ||
				    ch == '{' || ch == '}')
					return false;
			}
			char *copy = xmalloc(f.len + 1);
			memcpy(copy, f.p, f.len);
			copy[f.len] = '\0';
			it->field_copies[it->field_count] = copy;
			it->fields[it->field_count++] = str_from(copy, f.len);
			n = str_printf(name + nlen, sizeof(name) - nlen, "%s%s",
				       k > 0 ? " " : "", copy);
			if (n < 0)
				return false;
			nlen += (size_t)n;
		}
		n = str_printf(name + nlen, sizeof(name) - nlen, ")]");
		if (n < 0)
			return false;
		nlen += (size_t)n;
		after = str_slice(args[*i + 2].str, 1, args[*i + 2].str.len - 1);
		*i += 2;
	}
	if (!parse_partial(after, it))
		return false;
	if (it->partial) {
		int n = str_printf(name + nlen, sizeof(name) - nlen, "<%llu>",
				   (unsigned long long)it->p_off);
		if (n < 0)
			return false;
	}
	it->name = xstrdup(name);
	if (!peek)
		job->sets_seen = true;
	job->need_file = true;
	/* BODY[] of the root needs no structure */
	if (it->depth > 0 || it->what != SEC_ALL)
		job->need_mime = true;
	return true;
}

static bool add_simple(struct imap_fetch_job *job, struct str a)
{
	static const struct {
		const char *name;
		enum fetch_kind kind;
	} simple[] = {
		{ "FLAGS", FI_FLAGS },
		{ "UID", FI_UID },
		{ "INTERNALDATE", FI_INTERNALDATE },
		{ "RFC822.SIZE", FI_RFC822_SIZE },
		{ "ENVELOPE", FI_ENVELOPE },
		{ "BODY", FI_BODY },
		{ "BODYSTRUCTURE", FI_BODYSTRUCTURE },
		{ "MODSEQ", FI_MODSEQ },
	};
	for (size_t k = 0; k < sizeof(simple) / sizeof(simple[0]); k++) {
		if (!str_eq_nocase(a, str_cstr(simple[k].name)))
			continue;
		struct fetch_item *it = item_add(job, simple[k].kind);
		if (it == NULL)
			return false;
		/* ENVELOPE, BODY, BODYSTRUCTURE: from the cache, or
		 * parsed when it misses (ensure_parsed) */
		if (it->kind == FI_FLAGS)
			job->has_flags = true;
		if (it->kind == FI_MODSEQ)
			job->send_modseq = true;
		return true;
	}
	/* RFC822 = BODY[], RFC822.HEADER = BODY.PEEK[HEADER],
	 * RFC822.TEXT = BODY[TEXT], answered under their own names */
	struct fetch_item *it = NULL;
	if (str_eq_nocase(a, STR("RFC822"))) {
		it = item_add(job, FI_SECTION);
		if (it == NULL)
			return false;
		it->what = SEC_ALL;
		it->name = xstrdup("RFC822");
		job->sets_seen = true;
		job->need_file = true;
	} else if (str_eq_nocase(a, STR("RFC822.HEADER"))) {
		it = item_add(job, FI_SECTION);
		if (it == NULL)
			return false;
		it->what = SEC_HEADER;
		it->peek = true;
		it->name = xstrdup("RFC822.HEADER");
		job->need_mime = true;
		job->need_file = true;
	} else if (str_eq_nocase(a, STR("RFC822.TEXT"))) {
		it = item_add(job, FI_SECTION);
		if (it == NULL)
			return false;
		it->what = SEC_TEXT;
		it->name = xstrdup("RFC822.TEXT");
		job->sets_seen = true;
		job->need_mime = true;
		job->need_file = true;
	}
	return it != NULL;
}

static bool parse_items(struct imap_fetch_job *job, const struct imap_arg *arg)
{
	if (arg->type == IMAP_ARG_ATOM) {
		struct str a = arg->str;
		if (str_eq_nocase(a, STR("ALL")) || str_eq_nocase(a, STR("FAST")) ||
		    str_eq_nocase(a, STR("FULL"))) {
			bool ok = add_simple(job, STR("FLAGS")) &&
				  add_simple(job, STR("INTERNALDATE")) &&
				  add_simple(job, STR("RFC822.SIZE"));
			if (!str_eq_nocase(a, STR("FAST")))
				ok = ok && add_simple(job, STR("ENVELOPE"));
			if (str_eq_nocase(a, STR("FULL")))
				ok = ok && add_simple(job, STR("BODY"));
			return ok;
		}
		if (str_has_prefix_nocase(a, STR("BODY[")) ||
		    str_has_prefix_nocase(a, STR("BODY.PEEK["))) {
			size_t i = 0;
			return parse_body_section(job, arg, 1, &i);
		}
		return add_simple(job, a);
	}
	if (arg->type != IMAP_ARG_LIST || arg->list_count == 0)
		return false;
	for (size_t i = 0; i < arg->list_count; i++) {
		const struct imap_arg *a = &arg->list[i];
		if (a->type != IMAP_ARG_ATOM)
			return false;
		if (str_has_prefix_nocase(a->str, STR("BODY[")) ||
		    str_has_prefix_nocase(a->str, STR("BODY.PEEK["))) {
			if (!parse_body_section(job, arg->list,
						arg->list_count, &i))
				return false;
			continue;
		}
		if (!add_simple(job, a->str))
			return false;
	}
	return true;
}

static bool parse_modifiers(struct imap_session *s, struct imap_fetch_job *job,
			    const struct imap_arg *arg)
{
	if (arg->type != IMAP_ARG_LIST)
		return false;
	for (size_t i = 0; i < arg->list_count; i++) {
		const struct imap_arg *a = &arg->list[i];
		uint64_t v;
		if (a->type == IMAP_ARG_ATOM &&
		    str_eq_nocase(a->str, STR("CHANGEDSINCE")) &&
		    i + 1 < arg->list_count &&
		    arg->list[i + 1].type == IMAP_ARG_ATOM &&
		    str_to_u64(arg->list[i + 1].str, UINT64_MAX - 1, &v)) {
			job->changedsince = v;
			job->send_modseq = true;
			s->condstore = true;
			i++;
			continue;
		}
		return false;
	}
	return true;
}

/* ---- starting ------------------------------------------------------------- */

void imap_cmd_fetch(struct imap_session *s, const char *tag,
		    const struct imap_command *cmd, bool uid)
{
	const char *cmdname = uid ? "UID FETCH" : "FETCH";
	struct imap_seqset *set = NULL;
	const char *error = NULL;

	if (cmd->arg_count < 2 || cmd->arg_count > 3 ||
	    cmd->args[0].type != IMAP_ARG_ATOM) {
		imap_out(s, "%s BAD Error in IMAP command %s: Invalid "
			 "arguments.\r\n", tag, cmdname);
		imap_bad_command(s);
		return;
	}
	if (imap_seqset_parse(cmd->args[0].str, &set, &error) < 0) {
		imap_out(s, "%s BAD Error in IMAP command %s: Invalid %s set: "
			 "%s\r\n", tag, cmdname, uid ? "uid" : "messageset",
			 error);
		imap_bad_command(s);
		return;
	}
	struct imap_fetch_job *job = xcalloc(1, sizeof(*job));
	job->fd = -1;
	job->uid = uid;
	str_copy(str_cstr(tag), job->tag, sizeof(job->tag));
	if (!parse_items(job, &cmd->args[1]) ||
	    (cmd->arg_count == 3 && !parse_modifiers(s, job, &cmd->args[2]))) {
		imap_seqset_free(&set);
		imap_fetch_free(&job);
		imap_out(s, "%s BAD Error in IMAP command %s: Invalid fetch "
			 "items.\r\n", tag, cmdname);
		imap_bad_command(s);
		return;
	}
	if (s->readonly)
		job->sets_seen = false;
	uint32_t star = uid ? (s->view_count > 0
				   ? s->view[s->view_count - 1].uid
				   : 0)
			    : s->view_count;
	if (!uid && imap_seqset_max(set, star) > s->view_count) {
		imap_seqset_free(&set);
		imap_fetch_free(&job);
		imap_out(s, "%s BAD Error in IMAP command %s: Invalid "
			 "messageset\r\n", tag, cmdname);
		return;
	}
	job->uids = xcalloc(s->view_count + 1, sizeof(*job->uids));
	for (uint32_t i = 0; i < s->view_count; i++) {
		const struct imap_view_msg *v = &s->view[i];
		uint32_t value = uid ? v->uid : i + 1;
		if (star == 0 || !imap_seqset_contains(set, value, star))
			continue;
		if (v->expunged) {
			job->expunged_seen = true;
			continue;
		}
		if (job->changedsince > 0 && v->modseq <= job->changedsince)
			continue;
		job->uids[job->count++] = v->uid;
	}
	imap_seqset_free(&set);
	s->fetch = job;
}

/* ---- answering ------------------------------------------------------------ */

static uint32_t view_seq(const struct imap_session *s, uint32_t uid)
{
	uint32_t lo = 0, hi = s->view_count;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->view[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->view_count && s->view[lo].uid == uid ? lo + 1 : 0;
}

static int open_file(struct imap_session *s, struct imap_fetch_job *job)
{
	job->fd = imap_open_message(s, job->cur_uid, &job->msg);
	if (job->fd < 0 && errno != ENOENT)
		log_ctx_error(&s->log, "imap: %s: open uid %u: %s",
			      s->mbox_name, job->cur_uid, strerror(errno));
	return job->fd < 0 ? -1 : 0;
}

static int parse_mime(struct imap_session *s, struct imap_fetch_job *job)
{
	uint8_t chunk[FETCH_CHUNK];
	const char *error;
	ssize_t n;

	struct mime_parser *p = mime_parser_new(NULL);
	if (lseek(job->fd, 0, SEEK_SET) == -1) {
		mime_parser_free(&p);
		return -1;
	}
	while ((n = read(job->fd, chunk, sizeof(chunk))) > 0)
		(void)mime_parser_feed(p, chunk, (size_t)n);
	if (n < 0) {
		mime_parser_free(&p);
		return -1;
	}
	if (mime_parser_finish(&p, &job->mime, &error) < 0) {
		log_ctx_error(&s->log, "imap: %s: uid %u: parse: %s",
			      s->mbox_name, job->cur_uid, error);
		return -1;
	}
	return 0;
}

/* The parsed message, opening and parsing the file the first time. */
static int ensure_parsed(struct imap_session *s, struct imap_fetch_job *job)
{
	if (job->mime != NULL)
		return 0;
	if (job->fd < 0 && open_file(s, job) < 0)
		return -1;
	return parse_mime(s, job);
}

/* ENVELOPE, BODY or BODYSTRUCTURE: from the cache, else parsed (and then
 * cached). -1 when the message cannot be read. */
static int out_structure(struct imap_session *s, struct imap_fetch_job *job,
			 enum fetch_kind kind)
{
	enum mailcache_field field = kind == FI_ENVELOPE ? MAILCACHE_ENVELOPE
				     : kind == FI_BODY	  ? MAILCACHE_BODY
							  : MAILCACHE_BODYSTRUCTURE;
	const char *error;

	imap_out_str(s, kind == FI_ENVELOPE ? STR("ENVELOPE ")
			: kind == FI_BODY   ? STR("BODY ")
					    : STR("BODYSTRUCTURE "));
	size_t start = s->out->len;
	if (s->cache != NULL &&
	    mailcache_lookup(s->cache, job->cur_uid, field, s->out, &error) == 1)
		return 0;
	s->out->len = start; /* a failed lookup may have left bytes */
	if (ensure_parsed(s, job) < 0) {
		/* gone or unreadable: keep the answer well-formed */
		imap_out_str(s, STR("NIL"));
		job->failed = true;
		return 0;
	}
	int r = kind == FI_ENVELOPE
		    ? mime_write_envelope(job->mime->root, s->out)
		    : mime_write_bodystructure(job->mime->root,
					       kind == FI_BODYSTRUCTURE, s->out);
	if (r < 0)
		return -1;
	if (s->cache != NULL &&
	    mailcache_add(s->cache, job->cur_uid, field, s->out->data + start,
			  s->out->len - start, &error) < 0)
		log_ctx_warnx(&s->log, "imap: %s: cache: %s", s->mbox_name,
			      error);
	return 0;
}

static void out_internaldate(struct imap_session *s, int64_t date)
{
	static const char *const months[] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
	};
	struct tm tm;
	time_t t = (time_t)date;

	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	imap_out(s, "INTERNALDATE \"%02d-%s-%04d %02d:%02d:%02d +0000\"",
		 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
		 tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Starts streaming span (raw offset/size, CRLF size) with the item's
 * partial window; writes the literal announcement. */
static int stream_start(struct imap_session *s, struct imap_fetch_job *job,
			const struct fetch_item *it, uint64_t raw_off,
			uint64_t raw_size, uint64_t crlf_size)
{
	uint64_t skip = 0, len = crlf_size;

	if (it->partial) {
		skip = it->p_off < crlf_size ? it->p_off : crlf_size;
		len = crlf_size - skip;
		if (len > it->p_len)
			len = it->p_len;
	}
	imap_out(s, "%s {%llu}\r\n", it->name, (unsigned long long)len);
	if (len == 0)
		return 0;
	if (lseek(job->fd, (off_t)raw_off, SEEK_SET) == -1)
		return -1;
	job->streaming = true;
	job->raw_left = raw_size;
	job->skip = skip;
	job->out_left = len;
	job->prev_cr = false;
	return 0;
}

/* Streams the next chunk of the literal. -1 on a read error. */
static int stream_fill(struct imap_session *s, struct imap_fetch_job *job)
{
	uint8_t raw[FETCH_CHUNK];
	uint8_t conv[2 * FETCH_CHUNK];
	size_t want = sizeof(raw);

	if (job->raw_left < want)
		want = (size_t)job->raw_left;
	ssize_t n = want > 0 ? read(job->fd, raw, want) : 0;
	if (n < 0)
		return -1;
	size_t clen = 0;
	for (ssize_t i = 0; i < n; i++) {
		if (raw[i] == '\n' && !job->prev_cr)
			conv[clen++] = '\r';
		/* IMAP literals cannot carry NUL: sent as 0x80, as Dovecot
		 * does (sizes are unchanged) */
		conv[clen++] = raw[i] == '\0' ? 0x80 : raw[i];
		job->prev_cr = raw[i] == '\r';
	}
	job->raw_left -= (uint64_t)n;
	size_t from = 0;
	if (job->skip > 0) {
		from = job->skip < clen ? (size_t)job->skip : clen;
		job->skip -= from;
	}
	size_t take = clen - from;
	if (take > job->out_left)
		take = (size_t)job->out_left;
	imap_out_str(s, str_from((const char *)conv + from, take));
	job->out_left -= take;
	s->fetched_bytes += take;
	if (n == 0 && job->out_left > 0) {
		/* the file shrank under us: pad so the literal stays valid */
		while (job->out_left > 0) {
			size_t pad = job->out_left > sizeof(conv)
					 ? sizeof(conv)
					 : (size_t)job->out_left;
			memset(conv, ' ', pad);
			imap_out_str(s, str_from((const char *)conv, pad));
			job->out_left -= pad;
		}
	}
	if (job->out_left == 0)
		job->streaming = false;
	return 0;
}

/* A header block, filtered (HEADER.FIELDS[.NOT]) into a literal. */
static int out_header_fields(struct imap_session *s,
			     struct imap_fetch_job *job,
			     const struct fetch_item *it,
			     const struct mime_part *msgpart)
{
	const struct mime_span *hdr = &msgpart->header;
	size_t len = hdr->size > FETCH_HEADER_MAX ? FETCH_HEADER_MAX
						  : (size_t)hdr->size;
	char *raw = xmalloc(len + 1);
	ssize_t n = pread(job->fd, raw, len, (off_t)hdr->offset);
	if (n < 0) {
		free(raw);
		return -1;
	}
	struct buf *out = buf_new(256, FETCH_HEADER_MAX * 2 + 16);
	(void)mime_header_filter(raw, (size_t)n, it->fields, it->field_count,
				 it->what == SEC_HEADER_FIELDS_NOT, out);
	free(raw);
	struct str all = buf_str(out);
	/* HEADER.FIELDS.NOT of a header that ended without its empty line
	 * (a message of only headers) passes that through: no empty line,
	 * as Dovecot does (HEADER.FIELDS always ends with one) */
	if (it->what == SEC_HEADER_FIELDS_NOT &&
	    (msgpart->flags & MIME_PART_HEADER_END) == 0 && all.len >= 2 &&
	    memcmp(all.p + all.len - 2, "\r\n", 2) == 0 &&
	    (all.len == 2 || memcmp(all.p + all.len - 4, "\r\n\r\n", 4) == 0))
		all.len -= 2;
	uint64_t skip = 0, take = all.len;
	if (it->partial) {
		skip = it->p_off < all.len ? it->p_off : all.len;
		take = all.len - skip;
		if (take > it->p_len)
			take = it->p_len;
	}
	imap_out(s, "%s {%llu}\r\n", it->name, (unsigned long long)take);
	imap_out_str(s, str_slice(all, (size_t)skip, (size_t)take));
	buf_free(&out);
	return 0;
}

/* Writes one section item (or starts streaming it). 0, or -1 on error. */
static int out_section(struct imap_session *s, struct imap_fetch_job *job,
		       const struct fetch_item *it)
{
	if (it->depth == 0 && it->what == SEC_ALL && job->mime == NULL) {
		/* BODY[] / RFC822: the whole file */
		return stream_start(s, job, it, 0, UINT64_MAX, job->msg.size);
	}
	if (ensure_parsed(s, job) < 0) {
		imap_out(s, "%s NIL", it->name);
		job->failed = true;
		return 0;
	}
	const struct mime_part *part =
	    mime_part_find(job->mime, it->path, it->depth);
	const struct mime_span *span = NULL;
	const struct mime_part *msgpart = NULL;
	if (part != NULL) {
		switch (it->what) {
		case SEC_ALL:
			span = it->depth == 0 ? NULL : &part->body;
			if (it->depth == 0)
				return stream_start(s, job, it, 0,
						    job->mime->size,
						    job->mime->size_crlf);
			break;
		case SEC_MIME:
			span = &part->header;
			break;
		case SEC_HEADER:
		case SEC_TEXT:
		case SEC_HEADER_FIELDS:
		case SEC_HEADER_FIELDS_NOT: {
			const struct mime_part *m =
			    it->depth == 0 ? part : mime_part_message(part);
			if (m == NULL)
				break;
			msgpart = m;
			span = it->what == SEC_TEXT ? &m->body : &m->header;
			break;
		}
		}
	}
	if (span == NULL) {
		/* a section that does not exist is empty (as Dovecot) */
		imap_out(s, "%s NIL", it->name);
		return 0;
	}
	if (it->what == SEC_HEADER_FIELDS || it->what == SEC_HEADER_FIELDS_NOT)
		return out_header_fields(s, job, it, msgpart);
	if (it->what == SEC_ALL && (part->flags & MIME_PART_MULTIPART) != 0) {
		/* a nested multipart's body ends with the line end after its
		 * close delimiter (RFC 2046 gives that line end to the
		 * parent's next delimiter; Dovecot and clients count it
		 * here) */
		char after[2];
		ssize_t n = pread(job->fd, after, 2,
				  (off_t)(span->offset + span->size));
		uint64_t raw_extra = 0;
		if (n >= 1 && after[0] == '\n')
			raw_extra = 1;
		else if (n == 2 && after[0] == '\r' && after[1] == '\n')
			raw_extra = 2;
		if (raw_extra > 0)
			return stream_start(s, job, it, span->offset,
					    span->size + raw_extra,
					    span->size_crlf + 2);
	}
	return stream_start(s, job, it, span->offset, span->size,
			    span->size_crlf);
}

static void msg_end(struct imap_fetch_job *job)
{
	if (job->fd >= 0)
		close(job->fd);
	job->fd = -1;
	mime_message_free(&job->mime);
	job->in_msg = false;
	job->streaming = false;
	job->pos++;
}

/* Opens the next message and writes "* n FETCH (". false when the
 * message is skipped (expunged meanwhile). */
static bool msg_begin(struct imap_session *s, struct imap_fetch_job *job)
{
	uint32_t uid = job->uids[job->pos];
	uint32_t seq = view_seq(s, uid);
	const char *error;

	if (seq == 0 || s->view[seq - 1].expunged) {
		job->expunged_seen = true;
		job->pos++;
		return false;
	}
	struct imap_view_msg *v = &s->view[seq - 1];
	job->cur_uid = uid;
	if (!job->need_file) {
		/* the index answers; the file is opened only if a cached
		 * structure item misses */
		if (mailbox_lookup_uid(s->mb, uid, &job->msg) == 0) {
			job->expunged_seen = true;
			job->pos++;
			return false;
		}
	} else if (open_file(s, job) < 0) {
		job->expunged_seen = true;
		job->pos++;
		return false;
	}
	if (job->need_mime && parse_mime(s, job) < 0) {
		job->failed = true;
		msg_end(job);
		return false;
	}
	bool add_flags = false;
	if (job->sets_seen && (v->flags & MAILBOX_FLAG_SEEN) == 0) {
		uint64_t modseq;
		struct mailbox_message m;
		if (mailbox_set_flags(s->mb, uid, MAILBOX_FLAG_SEEN, 0,
				      MAILBOX_FLAGS_ADD, &modseq, &error) < 0)
			log_ctx_error(&s->log, "imap: %s: set \\Seen on uid "
				      "%u: %s", s->mbox_name, uid, error);
		else if (mailbox_lookup_uid(s->mb, uid, &m) != 0) {
			v->flags = m.flags;
			v->keywords = m.keywords;
			v->modseq = m.modseq;
			job->msg.flags = m.flags;
			add_flags = !job->has_flags;
		}
	}
	imap_out(s, "* %u FETCH (", seq);
	bool first = true;
	if (job->uid) {
		bool asked = false;
		for (size_t i = 0; i < job->item_count; i++)
			asked = asked || job->items[i].kind == FI_UID;
		if (!asked) {
			imap_out(s, "UID %u", uid);
			first = false;
		}
	}
	if (add_flags) {
		imap_out(s, "%sFLAGS ", first ? "" : " ");
		imap_out_flags_recent(s, v->flags, v->keywords, v->recent);
		first = false;
	}
	/* with CONDSTORE a flag change carries its MODSEQ (RFC 7162) */
	if (add_flags && s->condstore)
		job->send_modseq = true;
	if (job->send_modseq) {
		bool asked = false;
		for (size_t i = 0; i < job->item_count; i++)
			asked = asked || job->items[i].kind == FI_MODSEQ;
		if (!asked) {
			imap_out(s, "%sMODSEQ (%llu)", first ? "" : " ",
				 (unsigned long long)v->modseq);
			first = false;
		}
	}
	job->in_msg = true;
	job->next_item = 0;
	/* a separator is written before every item but the first */
	job->need_sep = !first;
	return true;
}

/* Writes items until one starts streaming or the message is done. */
static int msg_items(struct imap_session *s, struct imap_fetch_job *job)
{
	uint32_t seq = view_seq(s, job->cur_uid);
	const struct imap_view_msg *v = seq > 0 ? &s->view[seq - 1] : NULL;
	bool need_sep = job->need_sep;

	while (job->next_item < job->item_count && !job->streaming) {
		const struct fetch_item *it = &job->items[job->next_item++];
		if (need_sep)
			imap_out_str(s, STR(" "));
		need_sep = true;
		switch (it->kind) {
		case FI_FLAGS:
			imap_out_str(s, STR("FLAGS "));
			imap_out_flags_recent(
			    s, v != NULL ? v->flags : job->msg.flags,
			    v != NULL ? v->keywords : job->msg.keywords,
			    v != NULL && v->recent);
			break;
		case FI_UID:
			imap_out(s, "UID %u", job->cur_uid);
			break;
		case FI_INTERNALDATE:
			out_internaldate(s, job->msg.date);
			break;
		case FI_RFC822_SIZE:
			imap_out(s, "RFC822.SIZE %llu",
				 (unsigned long long)job->msg.size);
			break;
		case FI_MODSEQ:
			imap_out(s, "MODSEQ (%llu)",
				 (unsigned long long)(v != NULL
							  ? v->modseq
							  : job->msg.modseq));
			break;
		case FI_ENVELOPE:
		case FI_BODY:
		case FI_BODYSTRUCTURE:
			if (out_structure(s, job, it->kind) < 0)
				return -1;
			break;
		case FI_SECTION:
			if (out_section(s, job, it) < 0)
				return -1;
			break;
		}
	}
	job->need_sep = need_sep;
	return 0;
}

void imap_fetch_fill(struct imap_session *s)
{
	struct imap_fetch_job *job = s->fetch;

	while (s->out->len < IMAP_OUT_LOW && s->close_reason == NULL) {
		if (job->streaming) {
			if (stream_fill(s, job) < 0) {
				log_ctx_error(&s->log, "imap: %s: read uid %u: "
					      "%s", s->mbox_name, job->cur_uid,
					      strerror(errno));
				s->close_reason = "Read error";
				return;
			}
			continue;
		}
		if (job->in_msg) {
			if (msg_items(s, job) < 0) {
				s->close_reason = "Output buffer full";
				return;
			}
			if (job->streaming)
				continue;
			imap_out_str(s, STR(")\r\n"));
			msg_end(job);
			continue;
		}
		if (job->pos < job->count) {
			(void)msg_begin(s, job);
			continue;
		}
		/* done */
		char tag[IMAP_TAG_MAX + 1];
		bool uid = job->uid, expunged = job->expunged_seen;
		bool failed = job->failed;
		str_copy(str_cstr(job->tag), tag, sizeof(tag));
		imap_fetch_free(&s->fetch);
		if (failed)
			imap_done(s, tag, uid, "NO [SERVERBUG] Internal error "
					       "occurred. Refer to server log "
					       "for more information.");
		else if (expunged)
			imap_done(s, tag, uid, "NO [EXPUNGEISSUED] Some of the "
					       "requested messages no longer "
					       "exist.");
		else
			imap_done(s, tag, uid, "OK Fetch completed.");
		return;
	}
}
