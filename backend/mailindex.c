/*
 * Mailbox index and transaction log. See mailindex.h.
 *
 * All integers are little-endian. CRC is CRC-32 (IEEE, as zlib's crc32()).
 *
 * Record, MAILINDEX_RECORD_SIZE (36) bytes:
 *   0 uid u32 | 4 keywords u32 | 8 flags u8 | 9 reserved 3 bytes, zero |
 *   12 modseq u64 | 20 size u64 | 28 date i64
 *   uid 1..2^31-2, flags within MAILINDEX_FLAGS_MASK, keywords within
 *   MAILINDEX_KEYWORDS_MASK, modseq >= 1.
 *
 * Index file mailring-index, version 1:
 *   header, 64 bytes:
 *     0 magic "MRIDXBIN" | 8 version u32 (1) | 12 header size u32 (64) |
 *     16 record size u32 (36) | 20 uidvalidity u32 (>= 1) |
 *     24 uidnext u32 (1..2^31-1) | 28 record count u32 (< uidnext) |
 *     32 highest modseq u64 (>= 1) | 40 log sequence u32 (>= 1) |
 *     44 reserved u32, zero | 48 log offset u64 (>= 24) |
 *     56 reserved u32, zero | 60 CRC of bytes 0..59 u32
 *   count records, UIDs strictly increasing, below uidnext, modseq at
 *   most the highest modseq;
 *   trailer: CRC u32 of the record bytes.
 *   The file is exactly 64 + 36 * count + 4 bytes. It holds every change
 *   of the log with that sequence number up to that offset. It is only
 *   written whole: mailring-index.tmp, fsync, rename, fsync of the dir.
 *
 * Log file mailring-index.log, version 1:
 *   header, 24 bytes:
 *     0 magic "MRIDXLOG" | 8 version u32 (1) | 12 sequence u32 (>= 1) |
 *     16 uidvalidity u32 (>= 1) | 20 CRC of bytes 0..19 u32
 *   then entries: [length u32][crc u32][type u8][payload], where length
 *   counts type + payload (1..MAILINDEX_LOG_ENTRY_MAX, and exactly right
 *   for the type) and crc covers the 4 length bytes, type and payload:
 *     1 APPEND  payload: a record (36 bytes)
 *     2 FLAGS   payload: uid u32, flags u8, 3 zero bytes, keywords u32,
 *               modseq u64 (20 bytes)
 *     3 EXPUNGE payload: uid u32, modseq u64 (12 bytes)
 *   Modseqs strictly increase from entry to entry and past the index's.
 *   An entry is written with one pwrite at the end, then fdatasync. A
 *   last entry cut short, or whose CRC fails with nothing after it, is a
 *   torn write: readers ignore it and the next writer truncates it. A bad
 *   CRC followed by more bytes, a bad length or type is corruption.
 *   (A crash that leaves zero bytes at the tail reads as length 0, i.e.
 *   corruption, and costs a rebuild, which keeps UIDs and flags.)
 *
 * Index and log pair up by sequence number: log seq == index's: entries
 * past the index's log offset are applied; log seq < index's: a stale log
 * left by a compaction that crashed before replacing it, ignored; log seq
 * > index's, or UIDVALIDITY differing: rebuild. Compaction renames the new
 * index before the new log and readers open the log before the index, so
 * no reader can meet a log newer than its index.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crc32.h"
#include "le.h"
#include "lockfile.h"
#include "log.h"
#include "mailindex.h"
#include "str.h"
#include "xmalloc.h"

#define INDEX_MAGIC "MRIDXBIN"
#define LOG_MAGIC "MRIDXLOG"
#define INDEX_TMP_NAME "mailring-index.tmp"
#define LOG_TMP_NAME "mailring-index.log.tmp"
#define INDEX_PATH_MAX 4096
/* Records per read/write chunk: 455 * 36 = 16380 bytes. */
#define CHUNK_RECORDS 455
#define FLAGS_PAYLOAD 20
#define EXPUNGE_PAYLOAD 12
#define ENTRY_HEAD 8

/* ---- small helpers ---------------------------------------------------- */


static _Thread_local char mailindex_errbuf[256];

static const char *errf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static const char *errf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(mailindex_errbuf, sizeof(mailindex_errbuf), fmt, ap);
	va_end(ap);
	if (n < 0)
		mailindex_errbuf[0] = '\0';
	return mailindex_errbuf;
}

const char *mailindex_status_name(enum mailindex_status status)
{
	switch (status) {
	case MAILINDEX_OK:
		return "ok";
	case MAILINDEX_NOT_FOUND:
		return "not found";
	case MAILINDEX_REBUILD:
		return "rebuild";
	case MAILINDEX_LIMIT:
		return "limit";
	case MAILINDEX_LOCK_TIMEOUT:
		return "lock timeout";
	case MAILINDEX_ERROR:
		return "error";
	}
	return "?";
}

/* ---- records and entries ---------------------------------------------- */

void mailindex_record_encode(const struct mailindex_record *rec,
			     uint8_t out[MAILINDEX_RECORD_SIZE])
{
	le_put_u32(out, rec->uid);
	le_put_u32(out + 4, rec->keywords);
	out[8] = rec->flags;
	out[9] = out[10] = out[11] = 0;
	le_put_u64(out + 12, rec->modseq);
	le_put_u64(out + 20, rec->size);
	le_put_u64(out + 28, (uint64_t)rec->date);
}

static const char *check_fields(uint32_t uid, uint8_t flags, uint32_t keywords,
				uint64_t modseq)
{
	if (uid == 0 || uid >= MAILINDEX_UIDNEXT_MAX)
		return "UID out of range";
	if ((flags & ~MAILINDEX_FLAGS_MASK) != 0)
		return "unknown flag bits";
	if ((keywords & ~MAILINDEX_KEYWORDS_MASK) != 0)
		return "unknown keyword bits";
	if (modseq == 0)
		return "modseq 0";
	return NULL;
}

int mailindex_record_decode(const uint8_t in[MAILINDEX_RECORD_SIZE],
			    struct mailindex_record *rec_r,
			    const char **error_r)
{
	const char *err;

	rec_r->uid = le_get_u32(in);
	rec_r->keywords = le_get_u32(in + 4);
	rec_r->flags = in[8];
	rec_r->modseq = le_get_u64(in + 12);
	rec_r->size = le_get_u64(in + 20);
	rec_r->date = (int64_t)le_get_u64(in + 28);
	if ((in[9] | in[10] | in[11]) != 0) {
		*error_r = "reserved record bytes not zero";
		return -1;
	}
	err = check_fields(rec_r->uid, rec_r->flags, rec_r->keywords,
			   rec_r->modseq);
	if (err != NULL) {
		*error_r = err;
		return -1;
	}
	return 0;
}

size_t mailindex_log_entry_encode(const struct mailindex_log_entry *entry,
				  uint8_t out[MAILINDEX_LOG_ENTRY_ENCODED_MAX])
{
	const struct mailindex_record *r = &entry->rec;
	uint8_t *body = out + ENTRY_HEAD;
	size_t payload = 0;

	body[0] = (uint8_t)entry->type;
	switch (entry->type) {
	case MAILINDEX_LOG_APPEND:
		mailindex_record_encode(r, body + 1);
		payload = MAILINDEX_RECORD_SIZE;
		break;
	case MAILINDEX_LOG_FLAGS:
		le_put_u32(body + 1, r->uid);
		body[5] = r->flags;
		body[6] = body[7] = body[8] = 0;
		le_put_u32(body + 9, r->keywords);
		le_put_u64(body + 13, r->modseq);
		payload = FLAGS_PAYLOAD;
		break;
	case MAILINDEX_LOG_EXPUNGE:
		le_put_u32(body + 1, r->uid);
		le_put_u64(body + 5, r->modseq);
		payload = EXPUNGE_PAYLOAD;
		break;
	}
	le_put_u32(out, (uint32_t)(1 + payload));
	uint32_t crc = crc32_update(0, out, 4);
	le_put_u32(out + 4, crc32_update(crc, body, 1 + payload));
	return ENTRY_HEAD + 1 + payload;
}

/* Decodes an entry body (type + payload) whose CRC checked out. */
static const char *decode_entry(const uint8_t *body, uint32_t len,
				struct mailindex_log_entry *entry_r)
{
	struct mailindex_record *r = &entry_r->rec;
	const char *err = NULL;

	memset(entry_r, 0, sizeof(*entry_r));
	switch (body[0]) {
	case MAILINDEX_LOG_APPEND:
		if (len != 1 + MAILINDEX_RECORD_SIZE)
			return "wrong length for an APPEND entry";
		entry_r->type = MAILINDEX_LOG_APPEND;
		if (mailindex_record_decode(body + 1, r, &err) < 0)
			return err;
		return NULL;
	case MAILINDEX_LOG_FLAGS:
		if (len != 1 + FLAGS_PAYLOAD)
			return "wrong length for a FLAGS entry";
		entry_r->type = MAILINDEX_LOG_FLAGS;
		r->uid = le_get_u32(body + 1);
		r->flags = body[5];
		if ((body[6] | body[7] | body[8]) != 0)
			return "reserved entry bytes not zero";
		r->keywords = le_get_u32(body + 9);
		r->modseq = le_get_u64(body + 13);
		return check_fields(r->uid, r->flags, r->keywords, r->modseq);
	case MAILINDEX_LOG_EXPUNGE:
		if (len != 1 + EXPUNGE_PAYLOAD)
			return "wrong length for an EXPUNGE entry";
		entry_r->type = MAILINDEX_LOG_EXPUNGE;
		r->uid = le_get_u32(body + 1);
		r->modseq = le_get_u64(body + 5);
		return check_fields(r->uid, 0, 0, r->modseq);
	default:
		return "unknown entry type";
	}
}

static void encode_log_header(uint8_t out[MAILINDEX_LOG_HEADER_SIZE],
			      uint32_t seq, uint32_t uidvalidity)
{
	memcpy(out, LOG_MAGIC, 8);
	le_put_u32(out + 8, MAILINDEX_LOG_VERSION);
	le_put_u32(out + 12, seq);
	le_put_u32(out + 16, uidvalidity);
	le_put_u32(out + 20, crc32_update(0, out, 20));
}

/* 0; -1 with *error_r when corrupt; 1 with *error_r when only the
 * version is unknown. */
static int decode_log_header(const uint8_t in[MAILINDEX_LOG_HEADER_SIZE],
			     struct mailindex_log_header *hdr_r,
			     const char **error_r)
{
	if (memcmp(in, LOG_MAGIC, 8) != 0) {
		*error_r = "bad log magic";
		return -1;
	}
	if (crc32_update(0, in, 20) != le_get_u32(in + 20)) {
		*error_r = "bad log header CRC";
		return -1;
	}
	hdr_r->version = le_get_u32(in + 8);
	hdr_r->seq = le_get_u32(in + 12);
	hdr_r->uidvalidity = le_get_u32(in + 16);
	if (hdr_r->version != MAILINDEX_LOG_VERSION) {
		*error_r = "unknown log version";
		return 1;
	}
	if (hdr_r->seq == 0 || hdr_r->uidvalidity == 0) {
		*error_r = "log sequence or UIDVALIDITY 0";
		return -1;
	}
	return 0;
}

/* ---- log parser -------------------------------------------------------- */

enum log_parser_state {
	LOG_PARSER_HEADER = 0, /* reading the file header */
	LOG_PARSER_ENTRY_HEAD, /* reading an entry's length and CRC */
	LOG_PARSER_ENTRY_BODY, /* reading an entry's type and payload */
	LOG_PARSER_BAD_CRC,    /* an entry failed its CRC: torn if last */
	LOG_PARSER_FINAL,      /* result is final */
};

struct mailindex_log_parser {
	enum log_parser_state state;
	enum mailindex_parse_result result;
	mailindex_log_header_cb *header_cb;
	mailindex_log_entry_cb *entry_cb;
	void *context;
	uint64_t offset;      /* bytes consumed */
	uint64_t entry_start; /* offset of the entry being read */
	uint64_t valid_end;   /* past the last good entry */
	const char *error;
	uint64_t error_offset;
	uint32_t need; /* bytes wanted in buf for this state */
	uint32_t have; /* bytes in buf */
	uint8_t buf[ENTRY_HEAD + MAILINDEX_LOG_ENTRY_MAX];
};

struct mailindex_log_parser *
mailindex_log_parser_new(mailindex_log_header_cb *header_cb,
			 mailindex_log_entry_cb *entry_cb, void *context)
{
	struct mailindex_log_parser *p = xcalloc(1, sizeof(*p));

	p->header_cb = header_cb;
	p->entry_cb = entry_cb;
	p->context = context;
	p->state = LOG_PARSER_HEADER;
	p->need = MAILINDEX_LOG_HEADER_SIZE;
	return p;
}

void mailindex_log_parser_free(struct mailindex_log_parser **parser)
{
	xfree(parser);
}

size_t mailindex_log_parser_memory(const struct mailindex_log_parser *parser)
{
	return sizeof(*parser);
}

static enum mailindex_parse_result parser_fail(struct mailindex_log_parser *p,
					       enum mailindex_parse_result res,
					       const char *error,
					       uint64_t offset)
{
	p->state = LOG_PARSER_FINAL;
	p->result = res;
	p->error = error;
	p->error_offset = offset;
	return res;
}

/* buf holds what the state needed; act on it. */
static enum mailindex_parse_result parser_step(struct mailindex_log_parser *p)
{
	const char *err = NULL;

	switch (p->state) {
	case LOG_PARSER_HEADER: {
		struct mailindex_log_header hdr;
		int ret = decode_log_header(p->buf, &hdr, &err);
		if (ret != 0)
			return parser_fail(p,
					   ret > 0 ? MAILINDEX_PARSE_VERSION
						   : MAILINDEX_PARSE_CORRUPT,
					   err, 0);
		if (p->header_cb != NULL && p->header_cb(&hdr, p->context) < 0)
			return parser_fail(p, MAILINDEX_PARSE_ABORTED,
					   "aborted", 0);
		p->valid_end = p->offset;
		p->entry_start = p->offset;
		p->state = LOG_PARSER_ENTRY_HEAD;
		p->need = ENTRY_HEAD;
		break;
	}
	case LOG_PARSER_ENTRY_HEAD: {
		uint32_t len = le_get_u32(p->buf);
		if (len == 0 || len > MAILINDEX_LOG_ENTRY_MAX)
			return parser_fail(p, MAILINDEX_PARSE_CORRUPT,
					   len == 0
					       ? "entry length 0"
					       : "entry length over the cap",
					   p->entry_start);
		p->state = LOG_PARSER_ENTRY_BODY;
		p->need = ENTRY_HEAD + len;
		return MAILINDEX_PARSE_MORE; /* the body goes after the head */
	}
	case LOG_PARSER_ENTRY_BODY: {
		uint32_t len = p->need - ENTRY_HEAD;
		uint32_t crc = crc32_update(0, p->buf, 4);
		crc = crc32_update(crc, p->buf + ENTRY_HEAD, len);
		if (crc != le_get_u32(p->buf + 4)) {
			/* Torn if nothing follows; decided by the next
			 * byte or by finish. */
			p->state = LOG_PARSER_BAD_CRC;
			p->need = 0;
			break;
		}
		struct mailindex_log_entry entry;
		err = decode_entry(p->buf + ENTRY_HEAD, len, &entry);
		if (err != NULL)
			return parser_fail(p, MAILINDEX_PARSE_CORRUPT, err,
					   p->entry_start);
		if (p->entry_cb != NULL &&
		    p->entry_cb(&entry, p->offset, p->context) < 0)
			return parser_fail(p, MAILINDEX_PARSE_ABORTED,
					   "aborted", p->entry_start);
		p->valid_end = p->offset;
		p->entry_start = p->offset;
		p->state = LOG_PARSER_ENTRY_HEAD;
		p->need = ENTRY_HEAD;
		break;
	}
	case LOG_PARSER_BAD_CRC:
	case LOG_PARSER_FINAL:
		break;
	}
	p->have = 0;
	return MAILINDEX_PARSE_MORE;
}

enum mailindex_parse_result
mailindex_log_parser_feed(struct mailindex_log_parser *p, const uint8_t *data,
			  size_t len)
{
	while (len > 0) {
		if (p->state == LOG_PARSER_FINAL)
			return p->result;
		if (p->state == LOG_PARSER_BAD_CRC)
			return parser_fail(p, MAILINDEX_PARSE_CORRUPT,
					   "bad entry CRC", p->entry_start);
		size_t take = p->need - p->have;
		if (take > len)
			take = len;
		memcpy(p->buf + p->have, data, take);
		p->have += (uint32_t)take;
		p->offset += take;
		data += take;
		len -= take;
		if (p->have == p->need) {
			enum mailindex_parse_result res = parser_step(p);
			if (res != MAILINDEX_PARSE_MORE)
				return res;
		}
	}
	return p->state == LOG_PARSER_FINAL ? p->result : MAILINDEX_PARSE_MORE;
}

enum mailindex_parse_result
mailindex_log_parser_finish(struct mailindex_log_parser *p)
{
	switch (p->state) {
	case LOG_PARSER_FINAL:
		return p->result;
	case LOG_PARSER_HEADER:
		return parser_fail(p, MAILINDEX_PARSE_CORRUPT,
				   "log header cut short", 0);
	case LOG_PARSER_ENTRY_HEAD:
	case LOG_PARSER_ENTRY_BODY:
	case LOG_PARSER_BAD_CRC:
		/* A torn last entry (or none): valid_end stays before it. */
		p->state = LOG_PARSER_FINAL;
		p->result = MAILINDEX_PARSE_DONE;
		return p->result;
	}
	return p->result;
}

const char *mailindex_log_parser_error(const struct mailindex_log_parser *p,
				       uint64_t *offset_r)
{
	if (offset_r != NULL)
		*offset_r = p->error != NULL ? p->error_offset : 0;
	return p->error;
}

uint64_t mailindex_log_parser_valid_end(const struct mailindex_log_parser *p,
					uint64_t *torn_r)
{
	if (torn_r != NULL)
		*torn_r = p->offset - p->valid_end;
	return p->valid_end;
}

/* ---- the index in memory ---------------------------------------------- */

struct mailindex {
	char dir[INDEX_PATH_MAX];
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highest_modseq;
	uint32_t max_records;
	uint32_t count;
	uint32_t alloc;
	struct mailindex_record *recs;
	uint32_t log_seq;    /* the index's log sequence */
	uint64_t log_offset; /* the index holds the log up to here */
	bool log_usable;     /* a log with log_seq was read */
	uint64_t log_end;    /* its valid end */
	uint64_t rotate_size;
	int log_fd; /* writer's, -1 until the first change */
};

uint32_t mailindex_uidvalidity(const struct mailindex *index)
{
	return index->uidvalidity;
}

uint32_t mailindex_uidnext(const struct mailindex *index)
{
	return index->uidnext;
}

uint64_t mailindex_highest_modseq(const struct mailindex *index)
{
	return index->highest_modseq;
}

uint32_t mailindex_count(const struct mailindex *index)
{
	return index->count;
}

uint32_t mailindex_log_seq(const struct mailindex *index)
{
	return index->log_seq;
}

uint64_t mailindex_log_end(const struct mailindex *index)
{
	return index->log_usable ? index->log_end : 0;
}

static struct mailindex *index_new(const char *dir, uint32_t max_records,
				   uint64_t rotate_size)
{
	struct mailindex *index = xcalloc(1, sizeof(*index));

	str_copy(str_cstr(dir), index->dir, sizeof(index->dir));
	index->max_records = max_records;
	index->rotate_size =
	    rotate_size != 0 ? rotate_size : MAILINDEX_LOG_ROTATE_DEFAULT;
	index->log_fd = -1;
	return index;
}

void mailindex_free(struct mailindex **index)
{
	if (*index == NULL)
		return;
	if ((*index)->log_fd != -1)
		close((*index)->log_fd);
	free((*index)->recs);
	xfree(index);
}

/* Position of uid, or of the first greater record. */
static uint32_t find_pos(const struct mailindex *index, uint32_t uid)
{
	uint32_t lo = 0, hi = index->count;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (index->recs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint32_t mailindex_lookup_uid(const struct mailindex *index, uint32_t uid,
			      struct mailindex_record *rec_r)
{
	uint32_t pos = find_pos(index, uid);

	if (pos >= index->count || index->recs[pos].uid != uid)
		return 0;
	if (rec_r != NULL)
		*rec_r = index->recs[pos];
	return pos + 1;
}

bool mailindex_lookup_seq(const struct mailindex *index, uint32_t seq,
			  struct mailindex_record *rec_r)
{
	if (seq == 0 || seq > index->count)
		return false;
	*rec_r = index->recs[seq - 1];
	return true;
}

/* Appends a record known to be valid and in order; -1 at the cap. */
static int push_record(struct mailindex *index,
		       const struct mailindex_record *rec)
{
	if (index->count >= index->max_records)
		return -1;
	if (index->count == index->alloc) {
		uint32_t n = index->alloc < 64 ? 64 : index->alloc * 2;
		if (n > index->max_records)
			n = index->max_records;
		index->recs = xreallocarray(index->recs, n, sizeof(*rec));
		index->alloc = n;
	}
	index->recs[index->count++] = *rec;
	return 0;
}

/* Whether entry applies to index: MAILINDEX_OK, NOT_FOUND (no such uid),
 * LIMIT, or REBUILD for any other misfit. */
static enum mailindex_status check_entry(const struct mailindex *index,
					 const struct mailindex_log_entry *e,
					 const char **error_r)
{
	if (e->rec.modseq <= index->highest_modseq) {
		*error_r = "modseq not above the highest";
		return MAILINDEX_REBUILD;
	}
	switch (e->type) {
	case MAILINDEX_LOG_APPEND:
		if (e->rec.uid < index->uidnext) {
			*error_r = "appended UID below UIDNEXT";
			return MAILINDEX_REBUILD;
		}
		if (index->count >= index->max_records) {
			*error_r = "record cap reached";
			return MAILINDEX_LIMIT;
		}
		return MAILINDEX_OK;
	case MAILINDEX_LOG_FLAGS:
	case MAILINDEX_LOG_EXPUNGE:
		if (mailindex_lookup_uid(index, e->rec.uid, NULL) == 0) {
			*error_r = "no such UID";
			return MAILINDEX_NOT_FOUND;
		}
		return MAILINDEX_OK;
	}
	*error_r = "unknown entry type";
	return MAILINDEX_REBUILD;
}

/* Applies an entry check_entry() accepted. */
static void apply_entry(struct mailindex *index,
			const struct mailindex_log_entry *e)
{
	uint32_t pos;

	switch (e->type) {
	case MAILINDEX_LOG_APPEND:
		if (push_record(index, &e->rec) < 0)
			fatalx("mailindex: cap passed after check");
		index->uidnext = e->rec.uid + 1;
		break;
	case MAILINDEX_LOG_FLAGS:
		pos = find_pos(index, e->rec.uid);
		index->recs[pos].flags = e->rec.flags;
		index->recs[pos].keywords = e->rec.keywords;
		index->recs[pos].modseq = e->rec.modseq;
		break;
	case MAILINDEX_LOG_EXPUNGE:
		pos = find_pos(index, e->rec.uid);
		memmove(&index->recs[pos], &index->recs[pos + 1],
			(index->count - pos - 1) * sizeof(index->recs[0]));
		index->count--;
		break;
	}
	index->highest_modseq = e->rec.modseq;
}

/* ---- index file -------------------------------------------------------- */

static int path_join(char *dst, const char *dir, const char *name)
{
	return str_printf(dst, INDEX_PATH_MAX, "%s/%s", dir, name) < 0 ? -1 : 0;
}

/* Reads exactly len bytes: len, 0 < n < len at end of file, or -1. */
static ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (uint8_t *)buf + got, len - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads the index file open on fd into index. */
static enum mailindex_status read_index(struct mailindex *index, int fd,
					const char **error_r)
{
	uint8_t buf[CHUNK_RECORDS * MAILINDEX_RECORD_SIZE];
	struct stat st;
	ssize_t n;

	n = read_full(fd, buf, MAILINDEX_HEADER_SIZE);
	if (n == -1)
		goto read_error;
	if (n < MAILINDEX_HEADER_SIZE) {
		*error_r = "index header cut short";
		return MAILINDEX_REBUILD;
	}
	if (memcmp(buf, INDEX_MAGIC, 8) != 0) {
		*error_r = "bad index magic";
		return MAILINDEX_REBUILD;
	}
	if (crc32_update(0, buf, 60) != le_get_u32(buf + 60)) {
		*error_r = "bad index header CRC";
		return MAILINDEX_REBUILD;
	}
	if (le_get_u32(buf + 8) != MAILINDEX_VERSION ||
	    le_get_u32(buf + 12) != MAILINDEX_HEADER_SIZE ||
	    le_get_u32(buf + 16) != MAILINDEX_RECORD_SIZE) {
		*error_r = "unknown index version or sizes";
		return MAILINDEX_REBUILD;
	}
	index->uidvalidity = le_get_u32(buf + 20);
	index->uidnext = le_get_u32(buf + 24);
	uint32_t count = le_get_u32(buf + 28);
	index->highest_modseq = le_get_u64(buf + 32);
	index->log_seq = le_get_u32(buf + 40);
	index->log_offset = le_get_u64(buf + 48);
	if (index->uidvalidity == 0 || index->uidnext == 0 ||
	    index->uidnext > MAILINDEX_UIDNEXT_MAX || count >= index->uidnext ||
	    index->highest_modseq == 0 || index->log_seq == 0 ||
	    index->log_offset < MAILINDEX_LOG_HEADER_SIZE ||
	    le_get_u32(buf + 44) != 0 || le_get_u32(buf + 56) != 0) {
		*error_r = "index header field out of range";
		return MAILINDEX_REBUILD;
	}
	if (fstat(fd, &st) == -1)
		goto read_error;
	if ((uint64_t)st.st_size !=
	    MAILINDEX_HEADER_SIZE + (uint64_t)count * MAILINDEX_RECORD_SIZE +
		4) {
		*error_r = "index size does not match its record count";
		return MAILINDEX_REBUILD;
	}
	if (count > index->max_records) {
		*error_r = errf("index has %u records, over the cap of %u",
				count, index->max_records);
		return MAILINDEX_LIMIT;
	}

	uint32_t crc = 0, left = count, last_uid = 0;
	while (left > 0) {
		uint32_t k = left < CHUNK_RECORDS ? left : CHUNK_RECORDS;
		size_t bytes = (size_t)k * MAILINDEX_RECORD_SIZE;
		n = read_full(fd, buf, bytes);
		if (n == -1)
			goto read_error;
		if ((size_t)n < bytes) {
			*error_r = "index records cut short";
			return MAILINDEX_REBUILD;
		}
		crc = crc32_update(crc, buf, bytes);
		for (uint32_t i = 0; i < k; i++) {
			struct mailindex_record rec;
			if (mailindex_record_decode(
				buf + (size_t)i * MAILINDEX_RECORD_SIZE, &rec,
				error_r) < 0)
				return MAILINDEX_REBUILD;
			if (rec.uid <= last_uid || rec.uid >= index->uidnext ||
			    rec.modseq > index->highest_modseq) {
				*error_r = "index record out of order or range";
				return MAILINDEX_REBUILD;
			}
			last_uid = rec.uid;
			push_record(index, &rec);
		}
		left -= k;
	}
	n = read_full(fd, buf, 5);
	if (n == -1)
		goto read_error;
	if (n != 4 || le_get_u32(buf) != crc) {
		*error_r = n != 4 ? "index trailer cut short or extra bytes"
				  : "bad index records CRC";
		return MAILINDEX_REBUILD;
	}
	return MAILINDEX_OK;

read_error:
	*error_r = errf("reading the index failed: %s", strerror(errno));
	return MAILINDEX_ERROR;
}

/* Writes index (with the given log position) to fd. */
static int write_index(const struct mailindex *index, int fd, uint32_t log_seq,
		       uint64_t log_offset)
{
	uint8_t buf[CHUNK_RECORDS * MAILINDEX_RECORD_SIZE];

	memset(buf, 0, MAILINDEX_HEADER_SIZE);
	memcpy(buf, INDEX_MAGIC, 8);
	le_put_u32(buf + 8, MAILINDEX_VERSION);
	le_put_u32(buf + 12, MAILINDEX_HEADER_SIZE);
	le_put_u32(buf + 16, MAILINDEX_RECORD_SIZE);
	le_put_u32(buf + 20, index->uidvalidity);
	le_put_u32(buf + 24, index->uidnext);
	le_put_u32(buf + 28, index->count);
	le_put_u64(buf + 32, index->highest_modseq);
	le_put_u32(buf + 40, log_seq);
	le_put_u64(buf + 48, log_offset);
	le_put_u32(buf + 60, crc32_update(0, buf, 60));
	if (write_full(fd, buf, MAILINDEX_HEADER_SIZE) < 0)
		return -1;

	uint32_t crc = 0;
	for (uint32_t done = 0; done < index->count;) {
		uint32_t k = index->count - done;
		if (k > CHUNK_RECORDS)
			k = CHUNK_RECORDS;
		for (uint32_t i = 0; i < k; i++)
			mailindex_record_encode(
			    &index->recs[done + i],
			    buf + (size_t)i * MAILINDEX_RECORD_SIZE);
		size_t bytes = (size_t)k * MAILINDEX_RECORD_SIZE;
		crc = crc32_update(crc, buf, bytes);
		if (write_full(fd, buf, bytes) < 0)
			return -1;
		done += k;
	}
	le_put_u32(buf, crc);
	return write_full(fd, buf, 4);
}

/* ---- open -------------------------------------------------------------- */

struct log_apply {
	struct mailindex *index;
	enum mailindex_status status;
	const char *error;
	bool stale;
};

static int log_apply_header(const struct mailindex_log_header *hdr,
			    void *context)
{
	struct log_apply *a = context;

	if (hdr->uidvalidity != a->index->uidvalidity) {
		a->error = "log UIDVALIDITY differs from the index";
		a->status = MAILINDEX_REBUILD;
		return -1;
	}
	if (hdr->seq < a->index->log_seq) {
		a->stale = true; /* a compaction's leftover: ignore */
		return -1;
	}
	if (hdr->seq > a->index->log_seq) {
		a->error = "log newer than the index";
		a->status = MAILINDEX_REBUILD;
		return -1;
	}
	return 0;
}

static int log_apply_entry(const struct mailindex_log_entry *entry,
			   uint64_t end, void *context)
{
	struct log_apply *a = context;
	enum mailindex_status st;

	if (end <= a->index->log_offset)
		return 0; /* already in the index */
	st = check_entry(a->index, entry, &a->error);
	if (st != MAILINDEX_OK) {
		a->status = st == MAILINDEX_LIMIT ? st : MAILINDEX_REBUILD;
		return -1;
	}
	apply_entry(a->index, entry);
	return 0;
}

/* Reads the log open on fd and applies it to index. */
static enum mailindex_status read_log(struct mailindex *index, int fd,
				      const char **error_r)
{
	uint8_t buf[16384];
	struct log_apply a = {.index = index, .status = MAILINDEX_OK};
	struct mailindex_log_parser *p =
	    mailindex_log_parser_new(log_apply_header, log_apply_entry, &a);
	enum mailindex_parse_result res = MAILINDEX_PARSE_MORE;
	uint64_t offset = 0;

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			*error_r =
			    errf("reading the log failed: %s", strerror(errno));
			mailindex_log_parser_free(&p);
			return MAILINDEX_ERROR;
		}
		if (n == 0) {
			res = mailindex_log_parser_finish(p);
			break;
		}
		res = mailindex_log_parser_feed(p, buf, (size_t)n);
		if (res != MAILINDEX_PARSE_MORE)
			break;
	}
	enum mailindex_status status = MAILINDEX_OK;
	if (res == MAILINDEX_PARSE_DONE) {
		index->log_end = mailindex_log_parser_valid_end(p, NULL);
		index->log_usable = true;
		if (index->log_end < index->log_offset) {
			*error_r = "log shorter than the index says";
			status = MAILINDEX_REBUILD;
		}
	} else if (res == MAILINDEX_PARSE_ABORTED) {
		if (!a.stale) {
			*error_r = a.error;
			status = a.status;
		}
	} else {
		const char *err = mailindex_log_parser_error(p, &offset);
		*error_r = errf("log: %s at offset %llu", err,
				(unsigned long long)offset);
		status = MAILINDEX_REBUILD;
	}
	mailindex_log_parser_free(&p);
	return status;
}

enum mailindex_status mailindex_open(const char *dir, uint32_t max_records,
				     uint64_t log_rotate_size,
				     struct mailindex **index_r,
				     const char **error_r)
{
	char path[INDEX_PATH_MAX], log_path[INDEX_PATH_MAX];
	enum mailindex_status status;
	int fd, log_fd;

	*index_r = NULL;
	if (max_records == 0 || max_records > MAILINDEX_RECORDS_LIMIT) {
		*error_r = "bad record cap";
		return MAILINDEX_ERROR;
	}
	if (path_join(path, dir, MAILINDEX_FILE_NAME) < 0 ||
	    path_join(log_path, dir, MAILINDEX_LOG_NAME) < 0) {
		*error_r = "path too long";
		return MAILINDEX_ERROR;
	}
	/* The log first: see the pairing rule at the top. */
	log_fd = open(log_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (log_fd == -1 && errno != ENOENT) {
		*error_r =
		    errf("open(%s) failed: %s", log_path, strerror(errno));
		return MAILINDEX_ERROR;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1) {
		int err = errno;
		if (log_fd != -1)
			close(log_fd);
		if (err == ENOENT) {
			*error_r = "no index";
			return MAILINDEX_NOT_FOUND;
		}
		*error_r = errf("open(%s) failed: %s", path, strerror(err));
		return MAILINDEX_ERROR;
	}
	struct mailindex *index = index_new(dir, max_records, log_rotate_size);
	status = read_index(index, fd, error_r);
	close(fd);
	if (status == MAILINDEX_OK && log_fd != -1)
		status = read_log(index, log_fd, error_r);
	if (log_fd != -1)
		close(log_fd);
	if (status != MAILINDEX_OK) {
		if (status == MAILINDEX_REBUILD || status == MAILINDEX_LIMIT)
			log_warnx("mailindex: unusable index, rebuilding: "
				  "dir=%s reason=<%s>",
				  dir, *error_r);
		mailindex_free(&index);
		return status;
	}
	*index_r = index;
	return MAILINDEX_OK;
}

/* ---- lock --------------------------------------------------------------- */

struct mailindex_lock {
	int fd;
	char dir[INDEX_PATH_MAX];
};

enum mailindex_status mailindex_lock(const char *dir, unsigned int timeout_msecs,
		struct mailindex_lock **lock_r, const char **error_r)
{
	char path[INDEX_PATH_MAX];
	char err[512];
	int fd;

	*lock_r = NULL;
	if (path_join(path, dir, MAILINDEX_LOCK_NAME) < 0) {
		*error_r = "path too long";
		return MAILINDEX_ERROR;
	}
	fd = lockfile_take(path, timeout_msecs, err, sizeof(err));
	if (fd < 0) {
		*error_r = errf("%s", err);
		return fd == LOCKFILE_TIMEOUT ? MAILINDEX_LOCK_TIMEOUT : MAILINDEX_ERROR;
	}
	struct mailindex_lock *lock = xcalloc(1, sizeof(*lock));
	lock->fd = fd;
	str_copy(str_cstr(dir), lock->dir, sizeof(lock->dir));
	*lock_r = lock;
	return MAILINDEX_OK;
}

void mailindex_unlock(struct mailindex_lock **lock)
{
	if (*lock == NULL)
		return;
	close((*lock)->fd);
	xfree(lock);
}

/* ---- writers ------------------------------------------------------------ */

static enum mailindex_status fsync_dir(const char *dir, const char **error_r)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd == -1 || fsync(dfd) == -1) {
		*error_r = errf("fsync(%s) failed: %s", dir, strerror(errno));
		if (dfd != -1)
			close(dfd);
		return MAILINDEX_ERROR;
	}
	close(dfd);
	return MAILINDEX_OK;
}

/* Writes dir/name through tmp_name: the index when log_header is NULL,
 * else the 24 header bytes of a new log. Then fsync, rename, fsync dir. */
static enum mailindex_status replace_file(const struct mailindex *index,
					  const char *tmp_name,
					  const char *name, uint32_t log_seq,
					  const uint8_t *log_header,
					  const char **error_r)
{
	char tmp[INDEX_PATH_MAX], path[INDEX_PATH_MAX];
	const char *what;
	int fd;

	if (path_join(tmp, index->dir, tmp_name) < 0 ||
	    path_join(path, index->dir, name) < 0) {
		*error_r = "path too long";
		return MAILINDEX_ERROR;
	}
	/* Only the lock holder writes temp files; O_TRUNC clears a crashed
	 * writer's leftover. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		  0600);
	if (fd == -1) {
		what = "open";
		goto fail;
	}
	int ret =
	    log_header != NULL
		? write_full(fd, log_header, MAILINDEX_LOG_HEADER_SIZE)
		: write_index(index, fd, log_seq, MAILINDEX_LOG_HEADER_SIZE);
	if (ret < 0) {
		what = "write";
		goto fail;
	}
	if (fsync(fd) == -1) {
		what = "fsync";
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		what = "close";
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		what = "rename";
		goto fail;
	}
	return fsync_dir(index->dir, error_r);

fail:
	*error_r = errf("%s(%s) failed: %s", what, tmp, strerror(errno));
	if (fd != -1)
		close(fd);
	unlink(tmp);
	return MAILINDEX_ERROR;
}

static enum mailindex_status check_lock(const struct mailindex *index,
					const struct mailindex_lock *lock,
					const char **error_r)
{
	if (lock == NULL || strcmp(lock->dir, index->dir) != 0) {
		*error_r = "the index's directory is not locked";
		return MAILINDEX_ERROR;
	}
	return MAILINDEX_OK;
}

enum mailindex_status mailindex_compact(struct mailindex *index,
					const struct mailindex_lock *lock,
					const char **error_r)
{
	char log_path[INDEX_PATH_MAX];
	uint8_t hdr[MAILINDEX_LOG_HEADER_SIZE];
	enum mailindex_status status;

	if (check_lock(index, lock, error_r) != MAILINDEX_OK)
		return MAILINDEX_ERROR;
	if (index->log_seq == UINT32_MAX) {
		*error_r = "no log sequence number left";
		return MAILINDEX_REBUILD;
	}
	uint32_t seq = index->log_seq + 1;
	/* The index first, then the log: a crash in between leaves a stale
	 * log, which readers ignore and the next writer replaces. */
	status = replace_file(index, INDEX_TMP_NAME, MAILINDEX_FILE_NAME, seq,
			      NULL, error_r);
	if (status != MAILINDEX_OK)
		return status;
	index->log_seq = seq;
	index->log_offset = MAILINDEX_LOG_HEADER_SIZE;
	index->log_usable = false;
	if (index->log_fd != -1) {
		close(index->log_fd);
		index->log_fd = -1;
	}
	encode_log_header(hdr, seq, index->uidvalidity);
	status = replace_file(index, LOG_TMP_NAME, MAILINDEX_LOG_NAME, seq, hdr,
			      error_r);
	if (status != MAILINDEX_OK)
		return status;
	if (path_join(log_path, index->dir, MAILINDEX_LOG_NAME) < 0) {
		*error_r = "path too long";
		return MAILINDEX_ERROR;
	}
	index->log_fd = open(log_path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (index->log_fd == -1) {
		*error_r =
		    errf("open(%s) failed: %s", log_path, strerror(errno));
		return MAILINDEX_ERROR;
	}
	index->log_end = MAILINDEX_LOG_HEADER_SIZE;
	index->log_usable = true;
	return MAILINDEX_OK;
}

/* The sequence of the log in dir when its header is readable, else 0. */
static uint32_t current_log_seq(const char *dir)
{
	char path[INDEX_PATH_MAX];
	uint8_t buf[MAILINDEX_LOG_HEADER_SIZE];
	struct mailindex_log_header hdr;
	const char *err;
	uint32_t seq = 0;

	if (path_join(path, dir, MAILINDEX_LOG_NAME) < 0)
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		return 0;
	if (read_full(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf) &&
	    decode_log_header(buf, &hdr, &err) == 0)
		seq = hdr.seq;
	close(fd);
	return seq;
}

enum mailindex_status mailindex_rebuild_from(
    const struct mailindex_lock *lock, uint32_t uidvalidity, uint32_t uidnext,
    const struct mailindex_record *records, size_t count, uint32_t max_records,
    uint64_t log_rotate_size, struct mailindex **index_r, const char **error_r)
{
	*index_r = NULL;
	if (max_records == 0 || max_records > MAILINDEX_RECORDS_LIMIT ||
	    uidvalidity == 0 || uidnext == 0 ||
	    uidnext > MAILINDEX_UIDNEXT_MAX) {
		*error_r = "bad argument";
		return MAILINDEX_ERROR;
	}
	if (count > max_records) {
		*error_r = "more records than the cap";
		return MAILINDEX_LIMIT;
	}
	struct mailindex *index =
	    index_new(lock->dir, max_records, log_rotate_size);
	index->uidvalidity = uidvalidity;
	index->uidnext = uidnext;
	index->highest_modseq = 1;
	for (size_t i = 0; i < count; i++) {
		const struct mailindex_record *r = &records[i];
		const char *err =
		    check_fields(r->uid, r->flags, r->keywords, r->modseq);
		if (err == NULL && (r->uid >= uidnext ||
				    (i > 0 && r->uid <= records[i - 1].uid)))
			err = "UIDs not increasing below UIDNEXT";
		if (err != NULL) {
			*error_r = errf("record %zu: %s", i, err);
			mailindex_free(&index);
			return MAILINDEX_ERROR;
		}
		push_record(index, r);
		if (r->modseq > index->highest_modseq)
			index->highest_modseq = r->modseq;
	}
	/* Past the old log's sequence, so a reader holding the old log
	 * finds it stale against the new index. */
	uint32_t old_seq = current_log_seq(lock->dir);
	index->log_seq = old_seq == UINT32_MAX ? 0 : old_seq;
	enum mailindex_status status = mailindex_compact(index, lock, error_r);
	if (status != MAILINDEX_OK) {
		mailindex_free(&index);
		return status;
	}
	*index_r = index;
	return MAILINDEX_OK;
}

/* Opens the log for appending, cutting a torn tail; compacts when there
 * is no usable log. */
static enum mailindex_status prepare_write(struct mailindex *index,
					   const struct mailindex_lock *lock,
					   const char **error_r)
{
	char path[INDEX_PATH_MAX];
	uint8_t buf[MAILINDEX_LOG_HEADER_SIZE];
	struct mailindex_log_header hdr;
	struct stat st;
	const char *err;

	if (check_lock(index, lock, error_r) != MAILINDEX_OK)
		return MAILINDEX_ERROR;
	if (index->log_fd != -1)
		return MAILINDEX_OK;
	if (!index->log_usable)
		return mailindex_compact(index, lock, error_r);
	if (path_join(path, index->dir, MAILINDEX_LOG_NAME) < 0) {
		*error_r = "path too long";
		return MAILINDEX_ERROR;
	}
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1 && errno == ENOENT)
		return mailindex_compact(index, lock, error_r);
	if (fd == -1 || fstat(fd, &st) == -1) {
		*error_r = errf("open(%s) failed: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return MAILINDEX_ERROR;
	}
	/* The log must still be the one read: same sequence, not shorter. */
	if (pread(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) ||
	    decode_log_header(buf, &hdr, &err) != 0 ||
	    hdr.seq != index->log_seq ||
	    (uint64_t)st.st_size < index->log_end) {
		close(fd);
		*error_r = "the log changed since the index was opened "
			   "(open it under the lock)";
		return MAILINDEX_REBUILD;
	}
	if ((uint64_t)st.st_size > index->log_end) {
		log_info("mailindex: cutting a torn log tail: dir=%s "
			 "offset=%llu bytes=%llu",
			 index->dir, (unsigned long long)index->log_end,
			 (unsigned long long)((uint64_t)st.st_size -
					      index->log_end));
		if (ftruncate(fd, (off_t)index->log_end) == -1 ||
		    fdatasync(fd) == -1) {
			*error_r = errf("truncating %s failed: %s", path,
					strerror(errno));
			close(fd);
			return MAILINDEX_ERROR;
		}
	}
	index->log_fd = fd;
	return MAILINDEX_OK;
}

/* Checks entry, writes it durably, applies it, rotates the log if due. */
static enum mailindex_status write_entry(struct mailindex *index,
					 const struct mailindex_lock *lock,
					 struct mailindex_log_entry *entry,
					 uint64_t *modseq_r,
					 const char **error_r)
{
	uint8_t buf[MAILINDEX_LOG_ENTRY_ENCODED_MAX];
	enum mailindex_status status;
	const char *err;

	entry->rec.modseq = index->highest_modseq + 1;
	err = check_fields(entry->rec.uid, entry->rec.flags,
			   entry->rec.keywords, entry->rec.modseq);
	if (err != NULL) {
		*error_r = err;
		return MAILINDEX_ERROR;
	}
	status = check_entry(index, entry, error_r);
	if (status == MAILINDEX_REBUILD)
		status = MAILINDEX_ERROR; /* a bad argument here */
	if (status != MAILINDEX_OK)
		return status;
	status = prepare_write(index, lock, error_r);
	if (status != MAILINDEX_OK)
		return status;

	size_t len = mailindex_log_entry_encode(entry, buf);
	ssize_t n = pwrite(index->log_fd, buf, len, (off_t)index->log_end);
	if (n != (ssize_t)len || fdatasync(index->log_fd) == -1) {
		*error_r = errf("writing the log failed: %s",
				n == -1 || n == (ssize_t)len ? strerror(errno)
							     : "short write");
		/* Leave no partial entry for the next writer to find. */
		if (ftruncate(index->log_fd, (off_t)index->log_end) == -1)
			log_warn("mailindex: truncating the log of %s",
				 index->dir);
		return MAILINDEX_ERROR;
	}
	index->log_end += len;
	apply_entry(index, entry);
	if (modseq_r != NULL)
		*modseq_r = entry->rec.modseq;
	if (index->log_end >= index->rotate_size &&
	    mailindex_compact(index, lock, &err) != MAILINDEX_OK) {
		/* The change is durable in the log; rotation can wait. */
		log_warnx("mailindex: log rotation failed: dir=%s reason=<%s>",
			  index->dir, err);
	}
	return MAILINDEX_OK;
}

enum mailindex_status mailindex_append(struct mailindex *index,
				       const struct mailindex_lock *lock,
				       const struct mailindex_record *rec,
				       uint64_t *modseq_r, const char **error_r)
{
	struct mailindex_log_entry entry = {.type = MAILINDEX_LOG_APPEND,
					    .rec = *rec};

	return write_entry(index, lock, &entry, modseq_r, error_r);
}

enum mailindex_status mailindex_set_flags(struct mailindex *index,
					  const struct mailindex_lock *lock,
					  uint32_t uid, uint8_t flags,
					  uint32_t keywords, uint64_t *modseq_r,
					  const char **error_r)
{
	struct mailindex_log_entry entry = {
	    .type = MAILINDEX_LOG_FLAGS,
	    .rec = {.uid = uid, .flags = flags, .keywords = keywords}};

	return write_entry(index, lock, &entry, modseq_r, error_r);
}

enum mailindex_status mailindex_expunge(struct mailindex *index,
					const struct mailindex_lock *lock,
					uint32_t uid, uint64_t *modseq_r,
					const char **error_r)
{
	struct mailindex_log_entry entry = {.type = MAILINDEX_LOG_EXPUNGE,
					    .rec = {.uid = uid}};

	return write_entry(index, lock, &entry, modseq_r, error_r);
}
