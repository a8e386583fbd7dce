/*
 * UID list: parser, list in memory, file I/O. See uidlist.h.
 *
 * File format, version 1 (text, one line per item, '\n' ends every line,
 * no CR, no blank lines, numbers in decimal without sign or leading zero):
 *
 *   mailring-uidlist 1 V<uidvalidity> N<uidnext>
 *   <uid> <basename>
 *   ...
 *   # end <count> <crc32>
 *
 *   - line 1: magic "mailring-uidlist", the version, UIDVALIDITY (>= 1) and
 *     UIDNEXT (1..2^31-1). A version other than 1 is reported apart from
 *     corruption (the caller rebuilds either way).
 *   - one record per message: UID (1..UIDNEXT-1), strictly increasing
 *     from line to line, and the base name (the Maildir file name before
 *     ":2,"; see uidlist_name_valid). A base name appears once.
 *   - the trailer: the number of records and the CRC-32 (IEEE, as zlib's
 *     crc32()) of every byte before the trailer line, as 8 lowercase hex
 *     digits. It is the last line; nothing may follow it.
 *
 * A file without its complete trailer is truncated; any check failing is
 * corruption; lines longer than UIDLIST_LINE_MAX are corruption. There is
 * no append mode: the file is always rewritten whole into a temp file,
 * fsynced and renamed over the old one, then the directory is fsynced. A
 * reader thus sees the old file or the new one, never a torn one, and any
 * strict prefix of a valid file is rejected. (Rewriting costs O(n) per
 * change; the index's transaction log, not this file, is the place for
 * cheap appends.)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32.h"
#include "lockfile.h"
#include "log.h"
#include "uidlist.h"
#include "xmalloc.h"

#define UIDLIST_MAGIC "mailring-uidlist"
#define UIDLIST_TMP_NAME "mailring-uidlist.tmp"
#define UIDLIST_READ_CHUNK 8192
#define UIDLIST_PATH_MAX 4096

/* ---- small helpers ---------------------------------------------------- */


/* Error text with details, valid until the next uidlist call that fails in
 * this thread. */
static _Thread_local char uidlist_errbuf[256];

static const char *errf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static const char *errf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(uidlist_errbuf, sizeof(uidlist_errbuf), fmt, ap);
	va_end(ap);
	if (n < 0)
		uidlist_errbuf[0] = '\0';
	return uidlist_errbuf;
}

const char *uidlist_status_name(enum uidlist_status status)
{
	switch (status) {
	case UIDLIST_OK:
		return "ok";
	case UIDLIST_NOT_FOUND:
		return "not found";
	case UIDLIST_REBUILD:
		return "rebuild";
	case UIDLIST_LIMIT:
		return "limit";
	case UIDLIST_LOCK_TIMEOUT:
		return "lock timeout";
	case UIDLIST_ERROR:
		return "error";
	}
	return "?";
}

bool uidlist_name_valid(struct str name)
{
	if (name.len == 0 || name.len > UIDLIST_NAME_MAX)
		return false;
	if (str_eq(name, STR(".")) || str_eq(name, STR("..")))
		return false;
	for (size_t i = 0; i < name.len; i++) {
		unsigned char c = (unsigned char)name.p[i];
		if (c <= ' ' || c >= 0x7f || c == '/' || c == ':')
			return false;
	}
	return true;
}

uint32_t uidlist_uidvalidity_next(uint32_t prev, time_t now)
{
	if (prev == UINT32_MAX)
		return 0;
	if (now > (time_t)prev && (uint64_t)now <= UINT32_MAX)
		return (uint32_t)now;
	return prev + 1;
}

/* A canonical decimal number: digits, no leading zero (except "0"). */
static bool parse_num(struct str s, uint64_t max, uint64_t *value_r)
{
	if (s.len == 0 || s.len > 20 || (s.len > 1 && s.p[0] == '0'))
		return false;
	return str_to_u64(s, max, value_r);
}

/* ---- parser ------------------------------------------------------------ */

enum uidlist_parser_state {
	UIDLIST_PARSER_HEADER = 0, /* expecting the header line */
	UIDLIST_PARSER_RECORDS,    /* records, or the trailer */
	UIDLIST_PARSER_DONE,       /* trailer read; only EOF may follow */
	UIDLIST_PARSER_FAILED,     /* final error in result */
};

struct uidlist_parser {
	uidlist_header_cb *header_cb;
	uidlist_record_cb *record_cb;
	void *context;
	enum uidlist_parser_state state;
	enum uidlist_parse_result result; /* when FAILED */
	const char *error;
	uint64_t error_offset;
	uint64_t offset;     /* bytes taken so far */
	uint64_t line_start; /* offset of the line in line[] */
	uint32_t crc;        /* of every complete line before the trailer */
	uint32_t count;      /* records seen */
	uint32_t last_uid;
	struct uidlist_header header;
	size_t line_len;
	char line[UIDLIST_LINE_MAX];
};

struct uidlist_parser *uidlist_parser_new(uidlist_header_cb *header_cb,
					  uidlist_record_cb *record_cb,
					  void *context)
{
	struct uidlist_parser *p = xcalloc(1, sizeof(*p));

	p->header_cb = header_cb;
	p->record_cb = record_cb;
	p->context = context;
	return p;
}

void uidlist_parser_free(struct uidlist_parser **parser)
{
	xfree(parser);
}

static enum uidlist_parse_result parser_fail(struct uidlist_parser *p,
					     enum uidlist_parse_result res,
					     const char *error)
{
	p->state = UIDLIST_PARSER_FAILED;
	p->result = res;
	p->error = error;
	p->error_offset = p->line_start;
	return res;
}

/* "V<n>" / "N<n>" */
static bool parse_tagged(struct str s, char tag, uint64_t max,
			 uint64_t *value_r)
{
	if (s.len < 2 || s.p[0] != tag)
		return false;
	return parse_num(str_slice(s, 1, s.len - 1), max, value_r);
}

static enum uidlist_parse_result parse_header(struct uidlist_parser *p,
					      struct str line)
{
	struct str magic, rest, ver, v, n;
	uint64_t version, uidvalidity, uidnext;

	if (!str_split(line, ' ', &magic, &rest) ||
	    !str_eq(magic, STR(UIDLIST_MAGIC)))
		return parser_fail(p, UIDLIST_PARSE_CORRUPT, "bad magic");
	str_split(rest, ' ', &ver, &rest);
	if (!parse_num(ver, UINT32_MAX, &version))
		return parser_fail(p, UIDLIST_PARSE_CORRUPT, "bad version");
	if (version != UIDLIST_VERSION)
		return parser_fail(p, UIDLIST_PARSE_VERSION, "unknown version");
	if (!str_split(rest, ' ', &v, &n) ||
	    !parse_tagged(v, 'V', UINT32_MAX, &uidvalidity) ||
	    uidvalidity == 0 ||
	    !parse_tagged(n, 'N', UIDLIST_UIDNEXT_MAX, &uidnext) ||
	    uidnext == 0)
		return parser_fail(p, UIDLIST_PARSE_CORRUPT, "bad header");
	p->header.version = (uint32_t)version;
	p->header.uidvalidity = (uint32_t)uidvalidity;
	p->header.uidnext = (uint32_t)uidnext;
	if (p->header_cb != NULL && p->header_cb(&p->header, p->context) < 0)
		return parser_fail(p, UIDLIST_PARSE_ABORTED,
				   "stopped by the caller");
	p->state = UIDLIST_PARSER_RECORDS;
	return UIDLIST_PARSE_MORE;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static enum uidlist_parse_result parse_trailer(struct uidlist_parser *p,
					       struct str line)
{
	struct str head, count_s, crc_s;
	uint64_t count;
	uint32_t crc = 0;

	if (line.len < 6 || memcmp(line.p, "# end ", 6) != 0)
		return parser_fail(p, UIDLIST_PARSE_CORRUPT, "bad trailer");
	head = str_slice(line, 6, line.len - 6);
	if (!str_split(head, ' ', &count_s, &crc_s) ||
	    !parse_num(count_s, UINT32_MAX, &count) || crc_s.len != 8)
		return parser_fail(p, UIDLIST_PARSE_CORRUPT, "bad trailer");
	for (size_t i = 0; i < 8; i++) {
		int d = hexval(crc_s.p[i]);
		if (d < 0)
			return parser_fail(p, UIDLIST_PARSE_CORRUPT,
					   "bad trailer");
		crc = crc << 4 | (uint32_t)d;
	}
	if (count != p->count)
		return parser_fail(p, UIDLIST_PARSE_CORRUPT,
				   "record count mismatch");
	if (crc != p->crc)
		return parser_fail(p, UIDLIST_PARSE_CORRUPT,
				   "checksum mismatch");
	p->state = UIDLIST_PARSER_DONE;
	return UIDLIST_PARSE_DONE;
}

static enum uidlist_parse_result parse_record(struct uidlist_parser *p,
					      struct str line)
{
	struct str uid_s, name;
	uint64_t uid;

	if (!str_split(line, ' ', &uid_s, &name) ||
	    !parse_num(uid_s, UIDLIST_UIDNEXT_MAX, &uid) || uid == 0)
		return parser_fail(p, UIDLIST_PARSE_CORRUPT, "bad record");
	if (!uidlist_name_valid(name))
		return parser_fail(p, UIDLIST_PARSE_CORRUPT, "bad base name");
	if (uid <= p->last_uid)
		return parser_fail(p, UIDLIST_PARSE_CORRUPT,
				   "UIDs not increasing");
	if (uid >= p->header.uidnext)
		return parser_fail(p, UIDLIST_PARSE_CORRUPT,
				   "UID not below UIDNEXT");
	if (p->count == UINT32_MAX)
		return parser_fail(p, UIDLIST_PARSE_CORRUPT,
				   "too many records");
	p->last_uid = (uint32_t)uid;
	p->count++;
	if (p->record_cb != NULL &&
	    p->record_cb((uint32_t)uid, name, p->context) < 0)
		return parser_fail(p, UIDLIST_PARSE_ABORTED,
				   "stopped by the caller");
	return UIDLIST_PARSE_MORE;
}

/* line[] holds one complete line, its '\n' last. */
static enum uidlist_parse_result parse_line(struct uidlist_parser *p)
{
	struct str line = str_from(p->line, p->line_len - 1);
	enum uidlist_parse_result res;

	if (p->state == UIDLIST_PARSER_HEADER) {
		res = parse_header(p, line);
	} else if (line.len > 0 && line.p[0] == '#') {
		return parse_trailer(p, line);
	} else {
		res = parse_record(p, line);
	}
	if (res == UIDLIST_PARSE_MORE)
		p->crc = crc32_update(p->crc, p->line, p->line_len);
	return res;
}

enum uidlist_parse_result uidlist_parser_feed(struct uidlist_parser *p,
					      const uint8_t *data, size_t len)
{
	size_t pos = 0;

	if (p->state == UIDLIST_PARSER_FAILED)
		return p->result;
	while (pos < len) {
		if (p->state == UIDLIST_PARSER_DONE) {
			p->line_start = p->offset;
			return parser_fail(p, UIDLIST_PARSE_CORRUPT,
					   "data after the trailer");
		}
		const uint8_t *nl = memchr(data + pos, '\n', len - pos);
		size_t take =
		    nl != NULL ? (size_t)(nl - (data + pos)) + 1 : len - pos;
		if (take > sizeof(p->line) - p->line_len)
			return parser_fail(p, UIDLIST_PARSE_CORRUPT,
					   "line too long");
		memcpy(p->line + p->line_len, data + pos, take);
		p->line_len += take;
		p->offset += take;
		pos += take;
		if (nl == NULL)
			break;
		enum uidlist_parse_result res = parse_line(p);
		if (p->state == UIDLIST_PARSER_FAILED)
			return res;
		p->line_len = 0;
		p->line_start = p->offset;
	}
	return p->state == UIDLIST_PARSER_DONE ? UIDLIST_PARSE_DONE
					       : UIDLIST_PARSE_MORE;
}

enum uidlist_parse_result uidlist_parser_finish(struct uidlist_parser *p)
{
	switch (p->state) {
	case UIDLIST_PARSER_FAILED:
		return p->result;
	case UIDLIST_PARSER_DONE:
		return UIDLIST_PARSE_DONE;
	case UIDLIST_PARSER_HEADER:
	case UIDLIST_PARSER_RECORDS:
		break;
	}
	return parser_fail(p, UIDLIST_PARSE_CORRUPT,
			   p->line_len > 0 ? "incomplete last line"
					   : "no trailer (truncated)");
}

const char *uidlist_parser_error(const struct uidlist_parser *p,
				 uint64_t *offset_r)
{
	if (offset_r != NULL)
		*offset_r = p->error_offset;
	return p->error;
}

/* ---- the list in memory ---------------------------------------------- */

struct uidlist_rec {
	uint32_t uid;
	uint32_t name_len;
	size_t name_off; /* into names */
};

struct uidlist {
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t max_records;
	uint32_t count;
	uint32_t recs_size;       /* allocated records */
	struct uidlist_rec *recs; /* in UID order */
	char *names;              /* every base name, back to back */
	size_t names_len;
	size_t names_size;
	uint32_t *hash;     /* record index + 1; 0 = empty slot */
	uint32_t hash_size; /* power of two, >= 2 * count, or 0 */
};

static uint32_t name_hash(struct str name)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < name.len; i++) {
		h ^= (uint8_t)name.p[i];
		h *= 16777619u;
	}
	return h;
}

static struct str rec_name(const struct uidlist *list,
			   const struct uidlist_rec *rec)
{
	return str_from(list->names + rec->name_off, rec->name_len);
}

static struct uidlist *list_alloc(uint32_t uidvalidity, uint32_t max_records)
{
	struct uidlist *list = xcalloc(1, sizeof(*list));

	list->uidvalidity = uidvalidity;
	list->uidnext = 1;
	list->max_records = max_records;
	return list;
}

struct uidlist *uidlist_new(uint32_t prev_uidvalidity, uint32_t max_records)
{
	uint32_t uidvalidity =
	    uidlist_uidvalidity_next(prev_uidvalidity, time(NULL));

	if (uidvalidity == 0 || max_records == 0 ||
	    max_records > UIDLIST_RECORDS_LIMIT)
		return NULL;
	return list_alloc(uidvalidity, max_records);
}

void uidlist_free(struct uidlist **list)
{
	if (*list == NULL)
		return;
	free((*list)->recs);
	free((*list)->names);
	free((*list)->hash);
	xfree(list);
}

uint32_t uidlist_uidvalidity(const struct uidlist *list)
{
	return list->uidvalidity;
}

uint32_t uidlist_uidnext(const struct uidlist *list)
{
	return list->uidnext;
}

uint32_t uidlist_count(const struct uidlist *list)
{
	return list->count;
}

size_t uidlist_memory_used(const struct uidlist *list)
{
	return sizeof(*list) + (size_t)list->recs_size * sizeof(*list->recs) +
	       list->names_size + (size_t)list->hash_size * sizeof(uint32_t);
}

bool uidlist_record_at(const struct uidlist *list, uint32_t idx,
		       uint32_t *uid_r, struct str *name_r)
{
	if (idx >= list->count)
		return false;
	if (uid_r != NULL)
		*uid_r = list->recs[idx].uid;
	if (name_r != NULL)
		*name_r = rec_name(list, &list->recs[idx]);
	return true;
}

bool uidlist_lookup_uid(const struct uidlist *list, uint32_t uid,
			struct str *name_r)
{
	uint32_t lo = 0, hi = list->count;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (list->recs[mid].uid == uid) {
			if (name_r != NULL)
				*name_r = rec_name(list, &list->recs[mid]);
			return true;
		}
		if (list->recs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* The slot holding name, or the empty slot where it would go. */
static uint32_t hash_slot(const struct uidlist *list, struct str name)
{
	uint32_t mask = list->hash_size - 1;
	uint32_t i = name_hash(name) & mask;

	while (list->hash[i] != 0 &&
	       !str_eq(rec_name(list, &list->recs[list->hash[i] - 1]), name))
		i = (i + 1) & mask;
	return i;
}

uint32_t uidlist_lookup_name(const struct uidlist *list, struct str name)
{
	if (list->hash_size == 0)
		return 0;
	uint32_t idx = list->hash[hash_slot(list, name)];
	return idx == 0 ? 0 : list->recs[idx - 1].uid;
}

/* Makes the hash index hold at least 2 * want slots, rehashing. */
static void hash_reserve(struct uidlist *list, uint32_t want)
{
	uint32_t size = list->hash_size == 0 ? 16 : list->hash_size;

	while (size / 2 < want)
		size *= 2;
	if (size == list->hash_size)
		return;
	free(list->hash);
	list->hash = xcalloc(size, sizeof(uint32_t));
	list->hash_size = size;
	for (uint32_t r = 0; r < list->count; r++)
		list->hash[hash_slot(list, rec_name(list, &list->recs[r]))] =
		    r + 1;
}

/* Adds a record at the end; the caller has checked the name, the order of
 * UIDs, that the name is new and the cap. */
static void list_push(struct uidlist *list, uint32_t uid, struct str name)
{
	if (list->count == list->recs_size) {
		uint32_t size = list->recs_size == 0 ? 16 : list->recs_size * 2;
		if (size > list->max_records)
			size = list->max_records;
		list->recs =
		    xreallocarray(list->recs, size, sizeof(*list->recs));
		list->recs_size = size;
	}
	if (list->names_size - list->names_len < name.len) {
		size_t size = list->names_size == 0 ? 256 : list->names_size;
		while (size - list->names_len < name.len)
			size *= 2;
		list->names = xrealloc(list->names, size);
		list->names_size = size;
	}
	hash_reserve(list, list->count + 1);
	memcpy(list->names + list->names_len, name.p, name.len);
	list->recs[list->count] = (struct uidlist_rec){
	    .uid = uid,
	    .name_len = (uint32_t)name.len,
	    .name_off = list->names_len,
	};
	list->names_len += name.len;
	list->hash[hash_slot(list, name)] = list->count + 1;
	list->count++;
}

int uidlist_raise_uidnext(struct uidlist *list, uint32_t uidnext)
{
	if (uidnext == 0 || uidnext > UIDLIST_UIDNEXT_MAX)
		return -1;
	if (uidnext > list->uidnext)
		list->uidnext = uidnext;
	return 0;
}

enum uidlist_status uidlist_renumber(struct uidlist *list, const char **error_r)
{
	uint32_t old_validity = list->uidvalidity;
	uint32_t old_next = list->uidnext;
	uint32_t validity = uidlist_uidvalidity_next(old_validity, time(NULL));

	if (validity == 0) {
		*error_r = "no UIDVALIDITY left to renumber with";
		return UIDLIST_ERROR;
	}
	for (uint32_t r = 0; r < list->count; r++)
		list->recs[r].uid = r + 1;
	list->uidvalidity = validity;
	list->uidnext = list->count + 1;
	log_warnx("uidlist: renumbered: messages=%u old_uidvalidity=%u "
		  "old_uidnext=%u uidvalidity=%u uidnext=%u",
		  list->count, old_validity, old_next, validity, list->uidnext);
	return UIDLIST_OK;
}

enum uidlist_status uidlist_append(struct uidlist *list, struct str name,
				   uint32_t *uid_r, const char **error_r)
{
	enum uidlist_status status;
	uint32_t uid;

	if (!uidlist_name_valid(name)) {
		*error_r = "invalid base name";
		return UIDLIST_ERROR;
	}
	uid = uidlist_lookup_name(list, name);
	if (uid != 0) {
		*uid_r = uid;
		return UIDLIST_OK;
	}
	if (list->count >= list->max_records) {
		*error_r = errf("more than %u messages", list->max_records);
		return UIDLIST_LIMIT;
	}
	if (list->uidnext >= UIDLIST_UIDNEXT_MAX) {
		status = uidlist_renumber(list, error_r);
		if (status != UIDLIST_OK)
			return status;
	}
	*uid_r = list->uidnext;
	list_push(list, list->uidnext++, name);
	return UIDLIST_OK;
}

/* Moves src's contents into dst and frees src. */
static void list_replace(struct uidlist *dst, struct uidlist **src)
{
	free(dst->recs);
	free(dst->names);
	free(dst->hash);
	*dst = **src;
	xfree(src);
}

/* A set of names for membership tests: indexes into names[] + 1. */
struct name_set {
	const struct str *names;
	uint32_t *slots;
	uint32_t size;
};

/* Returns true when name was already in the set, adds it otherwise. */
static bool name_set_add(struct name_set *set, uint32_t idx)
{
	uint32_t mask = set->size - 1;
	struct str name = set->names[idx];
	uint32_t i = name_hash(name) & mask;

	while (set->slots[i] != 0) {
		if (str_eq(set->names[set->slots[i] - 1], name))
			return true;
		i = (i + 1) & mask;
	}
	set->slots[i] = idx + 1;
	return false;
}

static bool name_set_has(const struct name_set *set, struct str name)
{
	uint32_t mask = set->size - 1;
	uint32_t i = name_hash(name) & mask;

	while (set->slots[i] != 0) {
		if (str_eq(set->names[set->slots[i] - 1], name))
			return true;
		i = (i + 1) & mask;
	}
	return false;
}

enum uidlist_status uidlist_sync(struct uidlist *list, const struct str *names,
				 size_t count, const char **error_r)
{
	struct name_set set = {.names = names};
	struct uidlist *next;
	enum uidlist_status status = UIDLIST_OK;
	uint32_t uid;

	set.size = 16;
	while (set.size / 2 < count)
		set.size *= 2;
	set.slots = xcalloc(set.size, sizeof(uint32_t));
	for (size_t i = 0; i < count; i++) {
		if (!uidlist_name_valid(names[i])) {
			char safe[64];
			log_warnx("uidlist: sync: ignoring invalid name=<%s>",
				  str_sanitize(names[i], safe, sizeof(safe)));
			continue;
		}
		name_set_add(&set, (uint32_t)i);
	}

	next = list_alloc(list->uidvalidity, list->max_records);
	next->uidnext = list->uidnext;
	for (uint32_t r = 0; r < list->count; r++) {
		struct str name = rec_name(list, &list->recs[r]);
		if (name_set_has(&set, name))
			list_push(next, list->recs[r].uid, name);
	}
	for (size_t i = 0; i < count && status == UIDLIST_OK; i++) {
		if (uidlist_name_valid(names[i]))
			status = uidlist_append(next, names[i], &uid, error_r);
	}
	free(set.slots);
	if (status != UIDLIST_OK) {
		uidlist_free(&next);
		return status;
	}
	list_replace(list, &next);
	return UIDLIST_OK;
}

struct uidlist *uidlist_rebuild(const struct uidlist *known,
				uint32_t prev_uidvalidity, uint32_t max_records,
				const struct str *names, size_t count,
				enum uidlist_status *status_r,
				const char **error_r)
{
	struct uidlist *list;

	if (max_records == 0 || max_records > UIDLIST_RECORDS_LIMIT) {
		*status_r = UIDLIST_ERROR;
		*error_r = "bad record cap";
		return NULL;
	}
	if (known == NULL) {
		list = uidlist_new(prev_uidvalidity, max_records);
		if (list == NULL) {
			*status_r = UIDLIST_ERROR;
			*error_r = "no UIDVALIDITY left";
			return NULL;
		}
	} else {
		/* Copy only what sync keeps, so the cap is on the result. */
		struct name_set set = {.names = names};
		set.size = 16;
		while (set.size / 2 < count)
			set.size *= 2;
		set.slots = xcalloc(set.size, sizeof(uint32_t));
		for (size_t i = 0; i < count; i++)
			name_set_add(&set, (uint32_t)i);
		list = list_alloc(known->uidvalidity, max_records);
		list->uidnext = known->uidnext;
		for (uint32_t r = 0; r < known->count; r++) {
			struct str name = rec_name(known, &known->recs[r]);
			if (!name_set_has(&set, name))
				continue;
			if (list->count >= max_records) {
				free(set.slots);
				uidlist_free(&list);
				*status_r = UIDLIST_LIMIT;
				*error_r =
				    errf("more than %u messages", max_records);
				return NULL;
			}
			list_push(list, known->recs[r].uid, name);
		}
		free(set.slots);
	}
	*status_r = uidlist_sync(list, names, count, error_r);
	if (*status_r != UIDLIST_OK)
		uidlist_free(&list);
	return list;
}

/* ---- streaming load and store ------------------------------------------ */

struct uidlist_loader {
	struct uidlist_parser *parser;
	struct uidlist *list; /* made when the header is read */
	uint32_t max_records;
	enum uidlist_status status; /* of a callback that stopped the parse */
	const char *error;
};

static int loader_header(const struct uidlist_header *hdr, void *context)
{
	struct uidlist_loader *l = context;

	l->list = list_alloc(hdr->uidvalidity, l->max_records);
	l->list->uidnext = hdr->uidnext;
	return 0;
}

static int loader_record(uint32_t uid, struct str name, void *context)
{
	struct uidlist_loader *l = context;

	if (uidlist_lookup_name(l->list, name) != 0) {
		l->status = UIDLIST_REBUILD;
		l->error = "duplicate base name";
		return -1;
	}
	if (l->list->count >= l->max_records) {
		l->status = UIDLIST_LIMIT;
		l->error = errf("more than %u messages", l->max_records);
		return -1;
	}
	list_push(l->list, uid, name);
	return 0;
}

struct uidlist_loader *uidlist_loader_new(uint32_t max_records)
{
	struct uidlist_loader *l;

	if (max_records == 0 || max_records > UIDLIST_RECORDS_LIMIT)
		return NULL;
	l = xcalloc(1, sizeof(*l));
	l->max_records = max_records;
	l->parser = uidlist_parser_new(loader_header, loader_record, l);
	return l;
}

void uidlist_loader_free(struct uidlist_loader **loader)
{
	if (*loader == NULL)
		return;
	uidlist_parser_free(&(*loader)->parser);
	uidlist_free(&(*loader)->list);
	xfree(loader);
}

static enum uidlist_status loader_status(struct uidlist_loader *l,
					 enum uidlist_parse_result res)
{
	switch (res) {
	case UIDLIST_PARSE_MORE:
	case UIDLIST_PARSE_DONE:
		return UIDLIST_OK;
	case UIDLIST_PARSE_CORRUPT:
	case UIDLIST_PARSE_VERSION:
		return UIDLIST_REBUILD;
	case UIDLIST_PARSE_ABORTED:
		return l->status;
	}
	return UIDLIST_ERROR;
}

enum uidlist_status uidlist_loader_feed(struct uidlist_loader *l,
					const uint8_t *data, size_t len)
{
	return loader_status(l, uidlist_parser_feed(l->parser, data, len));
}

enum uidlist_status uidlist_loader_finish(struct uidlist_loader *l,
					  struct uidlist **list_r,
					  const char **error_r,
					  uint64_t *offset_r)
{
	enum uidlist_parse_result res = uidlist_parser_finish(l->parser);
	enum uidlist_status status = loader_status(l, res);
	uint64_t offset;
	const char *error = uidlist_parser_error(l->parser, &offset);

	if (offset_r != NULL)
		*offset_r = offset;
	if (status != UIDLIST_OK) {
		*error_r = res == UIDLIST_PARSE_ABORTED ? l->error : error;
		return status;
	}
	*list_r = l->list;
	l->list = NULL;
	return UIDLIST_OK;
}

int uidlist_serialize(const struct uidlist *list, uidlist_output_fn *out,
		      void *context)
{
	char chunk[4096];
	size_t len;
	uint32_t crc = 0;
	int n;

	n = snprintf(chunk, sizeof(chunk), "%s %u V%u N%u\n", UIDLIST_MAGIC,
		     UIDLIST_VERSION, list->uidvalidity, list->uidnext);
	if (n < 0 || (size_t)n >= sizeof(chunk))
		return -1;
	len = (size_t)n;
	for (uint32_t r = 0; r < list->count; r++) {
		const struct uidlist_rec *rec = &list->recs[r];
		if (sizeof(chunk) - len < 12 + (size_t)rec->name_len) {
			crc = crc32_update(crc, chunk, len);
			if (out(chunk, len, context) < 0)
				return -1;
			len = 0;
		}
		n = snprintf(chunk + len, sizeof(chunk) - len, "%u ", rec->uid);
		if (n < 0 || (size_t)n >= sizeof(chunk) - len)
			return -1;
		len += (size_t)n;
		memcpy(chunk + len, list->names + rec->name_off, rec->name_len);
		len += rec->name_len;
		chunk[len++] = '\n';
	}
	crc = crc32_update(crc, chunk, len);
	if (sizeof(chunk) - len < 32) {
		if (out(chunk, len, context) < 0)
			return -1;
		len = 0;
	}
	n = snprintf(chunk + len, sizeof(chunk) - len, "# end %u %08x\n",
		     list->count, crc);
	if (n < 0 || (size_t)n >= sizeof(chunk) - len)
		return -1;
	len += (size_t)n;
	return out(chunk, len, context);
}

/* ---- files ------------------------------------------------------------- */

struct uidlist_lock {
	int fd;
	char dir[UIDLIST_PATH_MAX];
};

static int path_join(char *dst, const char *dir, const char *name)
{
	return str_printf(dst, UIDLIST_PATH_MAX, "%s/%s", dir, name) < 0 ? -1
									 : 0;
}

enum uidlist_status uidlist_lock(const char *dir, unsigned int timeout_msecs,
		struct uidlist_lock **lock_r, const char **error_r)
{
	char path[UIDLIST_PATH_MAX];
	char err[512];
	int fd;

	*lock_r = NULL;
	if (path_join(path, dir, UIDLIST_LOCK_NAME) < 0) {
		*error_r = "path too long";
		return UIDLIST_ERROR;
	}
	fd = lockfile_take(path, timeout_msecs, err, sizeof(err));
	if (fd < 0) {
		*error_r = errf("%s", err);
		return fd == LOCKFILE_TIMEOUT ? UIDLIST_LOCK_TIMEOUT : UIDLIST_ERROR;
	}
	struct uidlist_lock *lock = xcalloc(1, sizeof(*lock));
	lock->fd = fd;
	str_copy(str_cstr(dir), lock->dir, sizeof(lock->dir));
	*lock_r = lock;
	return UIDLIST_OK;
}

void uidlist_unlock(struct uidlist_lock **lock)
{
	if (*lock == NULL)
		return;
	/* Closing the last fd of the description releases the lock. */
	close((*lock)->fd);
	xfree(lock);
}

enum uidlist_status uidlist_read(const char *dir, uint32_t max_records,
				 struct uidlist **list_r, const char **error_r)
{
	char path[UIDLIST_PATH_MAX];
	uint8_t chunk[UIDLIST_READ_CHUNK];
	struct uidlist_loader *loader;
	enum uidlist_status status = UIDLIST_OK;
	uint64_t offset = 0;
	int fd;

	if (path_join(path, dir, UIDLIST_FILE_NAME) < 0) {
		*error_r = "path too long";
		return UIDLIST_ERROR;
	}
	loader = uidlist_loader_new(max_records);
	if (loader == NULL) {
		*error_r = "bad record cap";
		return UIDLIST_ERROR;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1) {
		int err = errno;
		uidlist_loader_free(&loader);
		if (err == ENOENT) {
			*error_r = "no UID list";
			return UIDLIST_NOT_FOUND;
		}
		*error_r = errf("open(%s) failed: %s", path, strerror(err));
		return UIDLIST_ERROR;
	}
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			*error_r =
			    errf("read(%s) failed: %s", path, strerror(errno));
			status = UIDLIST_ERROR;
			break;
		}
		if (n == 0) {
			status = uidlist_loader_finish(loader, list_r, error_r,
						       &offset);
			break;
		}
		status = uidlist_loader_feed(loader, chunk, (size_t)n);
		if (status != UIDLIST_OK) {
			status = uidlist_loader_finish(loader, list_r, error_r,
						       &offset);
			break;
		}
	}
	close(fd);
	uidlist_loader_free(&loader);
	if (status == UIDLIST_REBUILD || status == UIDLIST_LIMIT) {
		log_warnx("uidlist: unusable file, rebuilding: path=%s "
			  "offset=%llu reason=<%s>",
			  path, (unsigned long long)offset, *error_r);
	}
	return status;
}

struct fd_sink {
	int fd;
	int error; /* errno of a failed write */
};

static int fd_sink_write(const void *data, size_t len, void *context)
{
	struct fd_sink *sink = context;
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t n = write(sink->fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			sink->error = errno;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

enum uidlist_status uidlist_write(const struct uidlist_lock *lock,
				  const struct uidlist *list,
				  const char **error_r)
{
	char tmp[UIDLIST_PATH_MAX], path[UIDLIST_PATH_MAX];
	struct fd_sink sink = {.fd = -1};
	const char *what;
	int dfd;

	if (path_join(tmp, lock->dir, UIDLIST_TMP_NAME) < 0 ||
	    path_join(path, lock->dir, UIDLIST_FILE_NAME) < 0) {
		*error_r = "path too long";
		return UIDLIST_ERROR;
	}
	/* Only the lock holder writes the temp file, so its name is fixed;
	 * O_TRUNC clears a leftover of a crashed writer. */
	sink.fd = open(
	    tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (sink.fd == -1) {
		what = "open";
		goto fail;
	}
	if (uidlist_serialize(list, fd_sink_write, &sink) < 0) {
		errno = sink.error != 0 ? sink.error : EINVAL;
		what = "write";
		goto fail;
	}
	if (fsync(sink.fd) == -1) {
		what = "fsync";
		goto fail;
	}
	if (close(sink.fd) == -1) {
		sink.fd = -1;
		what = "close";
		goto fail;
	}
	sink.fd = -1;
	if (rename(tmp, path) == -1) {
		what = "rename";
		goto fail;
	}
	dfd = open(lock->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1 || fsync(dfd) == -1) {
		/* The new file is in place; only its durability is unsure. */
		*error_r =
		    errf("fsync(%s) failed: %s", lock->dir, strerror(errno));
		if (dfd != -1)
			close(dfd);
		return UIDLIST_ERROR;
	}
	close(dfd);
	return UIDLIST_OK;

fail:
	*error_r = errf("%s(%s) failed: %s", what, tmp, strerror(errno));
	if (sink.fd != -1)
		close(sink.fd);
	unlink(tmp);
	return UIDLIST_ERROR;
}
