/*
 * Cache of parsed message data. See mailcache.h.
 *
 * All integers are little-endian. CRC is CRC-32 (IEEE, as zlib's crc32()).
 *
 * File mailring-cache, version 1:
 *   header, 32 bytes:
 *     0 magic "MRCACHE1" | 8 version u32 (1) | 12 header size u32 (32) |
 *     16 record head size u32 (20) | 20 uidvalidity u32 (>= 1) |
 *     24 reserved u32, zero | 28 CRC of bytes 0..27 u32
 *   then records, each a head of 20 bytes and len bytes of value:
 *     0 uid u32 (1..2^31-2) | 4 field u8 (enum mailcache_field) |
 *     5 flags u8 (0) | 6 reserved u16, zero | 8 len u32 (at most
 *     MAILCACHE_VALUE_LIMIT; exactly 12 for SENT_DATE) |
 *     12 data CRC u32: CRC of head bytes 0..11 then the value |
 *     16 head CRC u32: CRC of head bytes 0..15
 *   A later record of the same (uid, field) supersedes an earlier one.
 *
 * Reading: the header is checked, then the heads are walked (read through
 * a 16 KiB window, values skipped) up to the first head that fails its CRC
 * or its checks, or runs past the end of the file: that and everything
 * after it is a torn tail, ignored by readers and cut by the next writer.
 * A value's CRC is only checked when it is read (lookup, compaction), so
 * opening never reads the values. A head written by a crash over garbage
 * or zeros fails its head CRC; a value cut short fails its data CRC.
 *
 * Writing, under mailring-cache.lock: the writer catches up with the file
 * (stat: same inode, read the new heads; else read the new file), cuts a
 * torn tail (ftruncate to the valid end), and appends a record with one
 * writev on an O_APPEND fd; a failed or short write is truncated away. No
 * fsync: the cache is derived data and every record is self-checking.
 * Replacing (a reset, a compaction): mailring-cache.tmp, write, fsync,
 * rename, fsync of the directory. Readers holding the old file keep
 * reading it (it stays whole) and notice the new inode on their next
 * miss or write.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "buf.h"
#include "crc32.h"
#include "le.h"
#include "lockfile.h"
#include "log.h"
#include "mailcache.h"
#include "str.h"
#include "xmalloc.h"

#define CACHE_MAGIC "MRCACHE1"
#define CACHE_PATH_MAX 4096
/* Bytes of the read window used to walk heads and copy values. */
#define WINDOW_SIZE 16384
/* Bytes of the output buffer of a compaction. */
#define COMPACT_OUT_SIZE 65536
#define HEAD MAILCACHE_RECORD_HEAD_SIZE

/* ---- small helpers ---------------------------------------------------- */

static _Thread_local char mailcache_errbuf[256];

static const char *errf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static const char *errf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(mailcache_errbuf, sizeof(mailcache_errbuf), fmt, ap);
	va_end(ap);
	if (n < 0)
		mailcache_errbuf[0] = '\0';
	return mailcache_errbuf;
}

static int path_join(char *dst, const char *dir, const char *name)
{
	return str_printf(dst, CACHE_PATH_MAX, "%s/%s", dir, name) < 0 ? -1 : 0;
}

/* Reads up to len bytes at off: the count (short only at end of file),
 * or -1. */
static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + got, len - got,
				  (off_t)(off + got));
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

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

const char *mailcache_field_name(enum mailcache_field field)
{
	switch (field) {
	case MAILCACHE_ENVELOPE:
		return "envelope";
	case MAILCACHE_BODY:
		return "body";
	case MAILCACHE_BODYSTRUCTURE:
		return "bodystructure";
	case MAILCACHE_SENT_DATE:
		return "sent-date";
	case MAILCACHE_HEADERS:
		return "headers";
	case MAILCACHE_FIELD_COUNT:
		break;
	}
	return "?";
}

void mailcache_sent_date_encode(int64_t time, int32_t tz_minutes,
				uint8_t out[MAILCACHE_SENT_DATE_SIZE])
{
	le_put_u32(out, (uint32_t)(uint64_t)time);
	le_put_u32(out + 4, (uint32_t)((uint64_t)time >> 32));
	le_put_u32(out + 8, (uint32_t)tz_minutes);
}

int mailcache_sent_date_decode(const uint8_t *in, size_t len, int64_t *time_r,
			       int32_t *tz_minutes_r)
{
	if (len != MAILCACHE_SENT_DATE_SIZE)
		return -1;
	uint64_t t = (uint64_t)le_get_u32(in) | (uint64_t)le_get_u32(in + 4) << 32;
	int32_t tz = (int32_t)le_get_u32(in + 8);
	if (tz < -24 * 60 || tz > 24 * 60)
		return -1;
	*time_r = (int64_t)t;
	*tz_minutes_r = tz;
	return 0;
}

/* ---- header and record heads ------------------------------------------ */

static void encode_header(uint8_t out[MAILCACHE_HEADER_SIZE],
			  uint32_t uidvalidity)
{
	memset(out, 0, MAILCACHE_HEADER_SIZE);
	memcpy(out, CACHE_MAGIC, 8);
	le_put_u32(out + 8, MAILCACHE_VERSION);
	le_put_u32(out + 12, MAILCACHE_HEADER_SIZE);
	le_put_u32(out + 16, HEAD);
	le_put_u32(out + 20, uidvalidity);
	le_put_u32(out + 28, crc32_update(0, out, 28));
}

/* The file's UIDVALIDITY, or 0 with *error_r when the header is bad. */
static uint32_t decode_header(const uint8_t in[MAILCACHE_HEADER_SIZE],
			      const char **error_r)
{
	if (memcmp(in, CACHE_MAGIC, 8) != 0) {
		*error_r = "bad magic";
		return 0;
	}
	if (crc32_update(0, in, 28) != le_get_u32(in + 28)) {
		*error_r = "bad header CRC";
		return 0;
	}
	if (le_get_u32(in + 8) != MAILCACHE_VERSION ||
	    le_get_u32(in + 12) != MAILCACHE_HEADER_SIZE ||
	    le_get_u32(in + 16) != HEAD) {
		*error_r = "unknown version or sizes";
		return 0;
	}
	if (le_get_u32(in + 20) == 0 || le_get_u32(in + 24) != 0) {
		*error_r = "header field out of range";
		return 0;
	}
	return le_get_u32(in + 20);
}

static bool uid_valid(uint32_t uid)
{
	return uid != 0 && uid < MAILCACHE_UID_LIMIT;
}

static bool len_valid(unsigned int field, uint64_t len)
{
	if (field == MAILCACHE_SENT_DATE)
		return len == MAILCACHE_SENT_DATE_SIZE;
	return len <= MAILCACHE_VALUE_LIMIT;
}

/* Writes a head; the data CRC covers bytes 0..11 and data. */
static void encode_head(uint8_t out[HEAD], uint32_t uid, unsigned int field,
			const void *data, size_t len)
{
	le_put_u32(out, uid);
	out[4] = (uint8_t)field;
	out[5] = 0;
	out[6] = out[7] = 0;
	le_put_u32(out + 8, (uint32_t)len);
	uint32_t crc = crc32_update(0, out, 12);
	le_put_u32(out + 12, crc32_update(crc, data, len));
	le_put_u32(out + 16, crc32_update(0, out, 16));
}

struct head {
	uint32_t uid;
	uint8_t field;
	uint32_t len;
	uint32_t data_crc;
};

static bool decode_head(const uint8_t in[HEAD], struct head *h_r)
{
	if (crc32_update(0, in, 16) != le_get_u32(in + 16))
		return false;
	h_r->uid = le_get_u32(in);
	h_r->field = in[4];
	h_r->len = le_get_u32(in + 8);
	h_r->data_crc = le_get_u32(in + 12);
	return in[5] == 0 && in[6] == 0 && in[7] == 0 && uid_valid(h_r->uid) &&
	       h_r->field < MAILCACHE_FIELD_COUNT &&
	       len_valid(h_r->field, h_r->len);
}

/* ---- the view: (uid, field) -> record, open addressing ---------------- */

struct entry {
	uint64_t offset;    /* of the record head */
	uint32_t uid;       /* 0: empty slot */
	uint32_t len_field; /* len << 8 | field */
};

static uint32_t entry_len(const struct entry *e)
{
	return e->len_field >> 8;
}

static unsigned int entry_field(const struct entry *e)
{
	return e->len_field & 0xffu;
}

enum file_state {
	FILE_NONE = 0, /* no file: the first add creates it */
	FILE_OK,       /* read; records indexed */
	FILE_BAD,      /* unusable: the first add replaces it */
	FILE_NEWER,    /* a newer UIDVALIDITY: left alone, adds refused */
};

struct mailcache {
	char dir[CACHE_PATH_MAX];
	char path[CACHE_PATH_MAX];
	char lock_path[CACHE_PATH_MAX];
	char tmp_path[CACHE_PATH_MAX];
	struct mailcache_settings set;
	uint32_t uidvalidity;

	enum file_state state;
	int fd; /* the file read (kept open in every state but NONE) */
	bool read_only;
	dev_t dev;
	ino_t ino;
	uint64_t scanned_size; /* file size the view was read up to */
	uint64_t valid_end;    /* past the last good record head + value */
	bool tail_unindexed;   /* the walk stopped at the record cap */
	bool needs_compact;    /* a record failed its CRC */

	struct entry *table;
	uint32_t cap;   /* slots, a power of two (0: no table) */
	uint32_t count; /* used slots */
	uint64_t live_bytes;
	int compactions;
};

static uint32_t slot_of(const struct mailcache *c, uint32_t uid,
			unsigned int field)
{
	uint64_t k = ((uint64_t)uid << 3 | field) * 0x9e3779b97f4a7c15ull;
	return (uint32_t)(k >> 32) & (c->cap - 1);
}

/* The slot of (uid, field), or of the empty slot where it would go. */
static uint32_t table_pos(const struct mailcache *c, uint32_t uid,
			  unsigned int field)
{
	uint32_t pos = slot_of(c, uid, field);

	while (c->table[pos].uid != 0 && (c->table[pos].uid != uid ||
					  entry_field(&c->table[pos]) != field))
		pos = (pos + 1) & (c->cap - 1);
	return pos;
}

static const struct entry *table_find(const struct mailcache *c, uint32_t uid,
				      unsigned int field)
{
	if (c->count == 0)
		return NULL;
	uint32_t pos = table_pos(c, uid, field);
	return c->table[pos].uid != 0 ? &c->table[pos] : NULL;
}

static void table_clear(struct mailcache *c)
{
	free(c->table);
	c->table = NULL;
	c->cap = 0;
	c->count = 0;
	c->live_bytes = 0;
}

static void table_resize(struct mailcache *c, uint32_t cap)
{
	struct entry *old = c->table;
	uint32_t old_cap = c->cap;

	c->table = xcalloc(cap, sizeof(*c->table));
	c->cap = cap;
	for (uint32_t i = 0; i < old_cap; i++) {
		if (old[i].uid == 0)
			continue;
		uint32_t pos = table_pos(c, old[i].uid, entry_field(&old[i]));
		c->table[pos] = old[i];
	}
	free(old);
}

/* Points (uid, field) at the record at offset; a previous record of it
 * becomes dead. -1 when a new key would pass the record cap. */
static int table_put(struct mailcache *c, uint32_t uid, unsigned int field,
		     uint32_t len, uint64_t offset)
{
	if (c->cap == 0)
		table_resize(c, 64);
	uint32_t pos = table_pos(c, uid, field);
	struct entry *e = &c->table[pos];
	if (e->uid != 0) {
		c->live_bytes -= HEAD + (uint64_t)entry_len(e);
	} else {
		if (c->count >= c->set.max_records)
			return -1;
		/* load at most 1/2 */
		if ((uint64_t)(c->count + 1) * 2 > c->cap) {
			table_resize(c, c->cap * 2);
			pos = table_pos(c, uid, field);
			e = &c->table[pos];
		}
		c->count++;
	}
	e->uid = uid;
	e->len_field = len << 8 | field;
	e->offset = offset;
	c->live_bytes += HEAD + (uint64_t)len;
	return 0;
}

/* Removes the entry at pos (backward-shift deletion). */
static void table_del(struct mailcache *c, uint32_t pos)
{
	uint32_t mask = c->cap - 1;

	c->live_bytes -= HEAD + (uint64_t)entry_len(&c->table[pos]);
	c->count--;
	for (;;) {
		c->table[pos].uid = 0;
		uint32_t next = pos;
		for (;;) {
			next = (next + 1) & mask;
			if (c->table[next].uid == 0)
				return;
			uint32_t home = slot_of(c, c->table[next].uid,
						entry_field(&c->table[next]));
			/* can the entry at next move to pos? */
			if (((next - home) & mask) >= ((next - pos) & mask))
				break;
		}
		c->table[pos] = c->table[next];
		pos = next;
	}
}

/* ---- reading the file --------------------------------------------------- */

struct window {
	uint8_t *buf; /* WINDOW_SIZE bytes */
	uint64_t off;
	size_t len;
};

/* Points *p_r at len (<= WINDOW_SIZE) bytes at off, read through w. 1,
 * 0 when the file ends first, -1 on error. */
static int window_get(int fd, struct window *w, uint64_t off, size_t len,
		      const uint8_t **p_r)
{
	if (off < w->off || off + len > w->off + w->len) {
		ssize_t n = pread_full(fd, w->buf, WINDOW_SIZE, off);
		if (n == -1)
			return -1;
		w->off = off;
		w->len = (size_t)n;
		if (len > w->len)
			return 0;
	}
	*p_r = w->buf + (off - w->off);
	return 1;
}

/* Walks the heads from c->valid_end to size, adding them to the view. */
static int scan_records(struct mailcache *c, uint64_t size,
			const char **error_r)
{
	uint8_t wbuf[WINDOW_SIZE];
	struct window w = {.buf = wbuf};
	uint64_t pos = c->valid_end;
	const uint8_t *p;
	struct head h;

	while (!c->tail_unindexed && pos + HEAD <= size) {
		int ret = window_get(c->fd, &w, pos, HEAD, &p);
		if (ret == -1) {
			*error_r = errf("reading %s failed: %s", c->path,
					strerror(errno));
			return -1;
		}
		if (ret == 0 || !decode_head(p, &h))
			break;
		uint64_t end = pos + HEAD + h.len;
		if (end > size)
			break; /* cut short: torn, or still being written */
		if (table_put(c, h.uid, h.field, h.len, pos) < 0) {
			c->tail_unindexed = true;
			break;
		}
		pos = end;
	}
	c->valid_end = pos;
	c->scanned_size = size;
	return 0;
}

static void drop_file(struct mailcache *c)
{
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	c->state = FILE_NONE;
	c->read_only = false;
	c->scanned_size = 0;
	c->valid_end = 0;
	c->tail_unindexed = false;
	c->needs_compact = false;
	table_clear(c);
}

/* (Re)reads the file from scratch. 1: read or absent, 0: unusable
 * (*error_r says why), -1: error. */
static int load_file(struct mailcache *c, const char **error_r)
{
	uint8_t hdr[MAILCACHE_HEADER_SIZE];
	struct stat st;
	const char *why = NULL;

	drop_file(c);
	c->fd = open(c->path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (c->fd == -1 && (errno == EACCES || errno == EROFS)) {
		c->fd = open(c->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		c->read_only = true;
	}
	if (c->fd == -1) {
		if (errno == ENOENT)
			return 1;
		*error_r =
		    errf("open(%s) failed: %s", c->path, strerror(errno));
		return -1;
	}
	if (fstat(c->fd, &st) == -1) {
		*error_r =
		    errf("fstat(%s) failed: %s", c->path, strerror(errno));
		drop_file(c);
		return -1;
	}
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	c->scanned_size = (uint64_t)st.st_size;
	ssize_t n = pread_full(c->fd, hdr, sizeof(hdr), 0);
	if (n == -1) {
		*error_r =
		    errf("reading %s failed: %s", c->path, strerror(errno));
		drop_file(c);
		return -1;
	}
	uint32_t file_uv = 0;
	if (n < (ssize_t)sizeof(hdr))
		why = n == 0 ? "empty file" : "header cut short";
	else
		file_uv = decode_header(hdr, &why);
	if (why == NULL && file_uv != c->uidvalidity)
		why = errf("UIDVALIDITY %u in the file, %u in the mailbox",
			   file_uv, c->uidvalidity);
	if (why == NULL && (uint64_t)st.st_size > 2 * c->set.max_size)
		why = errf("file of %llu bytes, over twice the size limit",
			   (unsigned long long)st.st_size);
	if (why != NULL) {
		c->state = file_uv > c->uidvalidity ? FILE_NEWER : FILE_BAD;
		log_info("mailcache: %s cache file: dir=%s reason=<%s>",
			 c->state == FILE_NEWER ? "ignoring a newer"
						: "discarding the",
			 c->dir, why);
		*error_r = why;
		return 0;
	}
	c->state = FILE_OK;
	c->valid_end = MAILCACHE_HEADER_SIZE;
	if (scan_records(c, (uint64_t)st.st_size, error_r) < 0) {
		drop_file(c);
		return -1;
	}
	return 1;
}

/* Catches the view up with the file: a replaced file is read again, new
 * records of the same file are added. 0 or -1. */
static int refresh(struct mailcache *c, const char **error_r)
{
	struct stat st;

	if (stat(c->path, &st) == -1) {
		if (errno != ENOENT) {
			*error_r = errf("stat(%s) failed: %s", c->path,
					strerror(errno));
			return -1;
		}
		drop_file(c);
		return 0;
	}
	if (c->state == FILE_NONE || st.st_dev != c->dev || st.st_ino != c->ino)
		return load_file(c, error_r) < 0 ? -1 : 0;
	if (c->state != FILE_OK || c->tail_unindexed ||
	    (uint64_t)st.st_size == c->scanned_size)
		return 0;
	if ((uint64_t)st.st_size < c->valid_end) /* not by our writers */
		return load_file(c, error_r) < 0 ? -1 : 0;
	return scan_records(c, (uint64_t)st.st_size, error_r);
}

/* Reads the value of e into out (which has room), checking both CRCs.
 * 1 good, 0 bad (out restored), -1 read error (out restored). */
static int read_value(const struct mailcache *c, const struct entry *e,
		      struct buf *out)
{
	uint8_t chunk[WINDOW_SIZE];
	size_t start = out->len;
	uint32_t len = entry_len(e);
	uint64_t off = e->offset;
	size_t want = HEAD + (size_t)len < sizeof(chunk) ? HEAD + (size_t)len
							 : sizeof(chunk);
	struct head h;
	int ret = 1;

	ssize_t n = pread_full(c->fd, chunk, want, off);
	if (n == -1)
		return -1;
	if ((size_t)n < want || !decode_head(chunk, &h) || h.uid != e->uid ||
	    h.field != entry_field(e) || h.len != len)
		return 0;
	uint32_t crc = crc32_update(0, chunk, 12);
	size_t got = (size_t)n - HEAD;
	crc = crc32_update(crc, chunk + HEAD, got);
	if (buf_append(out, chunk + HEAD, got) < 0)
		return -1;
	off += (uint64_t)n;
	while (got < len) {
		want = len - got < sizeof(chunk) ? len - got : sizeof(chunk);
		n = pread_full(c->fd, chunk, want, off);
		if (n == -1) {
			ret = -1;
			break;
		}
		if ((size_t)n < want) {
			ret = 0;
			break;
		}
		crc = crc32_update(crc, chunk, want);
		if (buf_append(out, chunk, want) < 0) {
			ret = -1;
			break;
		}
		got += want;
		off += want;
	}
	if (ret == 1 && crc != h.data_crc)
		ret = 0;
	if (ret != 1) {
		out->len = start;
		out->data[start] = '\0';
	}
	return ret;
}

/* ---- open and close ---------------------------------------------------- */

int mailcache_open(const char *dir, uint32_t uidvalidity,
		   const struct mailcache_settings *set,
		   struct mailcache **cache_r, const char **error_r)
{
	struct mailcache_settings s = {0};

	*cache_r = NULL;
	if (set != NULL)
		s = *set;
	if (s.max_size == 0)
		s.max_size = MAILCACHE_MAX_SIZE_DEFAULT;
	if (s.max_value == 0)
		s.max_value = MAILCACHE_MAX_VALUE_DEFAULT;
	if (s.max_records == 0)
		s.max_records = MAILCACHE_MAX_RECORDS_DEFAULT;
	if (s.lock_timeout_msecs == 0)
		s.lock_timeout_msecs = MAILCACHE_LOCK_TIMEOUT_DEFAULT_MSECS;
	if (uidvalidity == 0 || s.max_size < MAILCACHE_MAX_SIZE_MIN ||
	    s.max_size > MAILCACHE_MAX_SIZE_LIMIT ||
	    s.max_value > MAILCACHE_VALUE_LIMIT ||
	    s.max_records > MAILCACHE_RECORDS_LIMIT) {
		*error_r = "bad argument or setting";
		return -1;
	}
	struct mailcache *c = xcalloc(1, sizeof(*c));
	c->fd = -1;
	c->set = s;
	c->uidvalidity = uidvalidity;
	if (!str_copy(str_cstr(dir), c->dir, sizeof(c->dir)) ||
	    path_join(c->path, dir, MAILCACHE_FILE_NAME) < 0 ||
	    path_join(c->lock_path, dir, MAILCACHE_LOCK_NAME) < 0 ||
	    path_join(c->tmp_path, dir, MAILCACHE_TMP_NAME) < 0) {
		free(c);
		*error_r = "path too long";
		return -1;
	}
	int ret = load_file(c, error_r);
	if (ret < 0) {
		mailcache_close(&c);
		return -1;
	}
	*cache_r = c;
	return ret;
}

void mailcache_close(struct mailcache **cache)
{
	if (*cache == NULL)
		return;
	drop_file(*cache);
	xfree(cache);
}

void mailcache_get_stats(const struct mailcache *c,
			 struct mailcache_stats *stats_r)
{
	stats_r->records = c->count;
	stats_r->live_bytes = c->live_bytes;
	stats_r->file_bytes = c->state == FILE_OK ? c->valid_end : 0;
	stats_r->memory = sizeof(*c) + (size_t)c->cap * sizeof(struct entry);
	stats_r->compactions = c->compactions;
}

/* ---- lookup ---------------------------------------------------------------
 */

int mailcache_lookup(struct mailcache *c, uint32_t uid,
		     enum mailcache_field field, struct buf *out,
		     const char **error_r)
{
	if (!uid_valid(uid) || (unsigned int)field >= MAILCACHE_FIELD_COUNT) {
		*error_r = "bad UID or field";
		return -1;
	}
	const struct entry *e = table_find(c, uid, field);
	if (e == NULL) {
		if (refresh(c, error_r) < 0)
			return -1;
		e = table_find(c, uid, field);
		if (e == NULL)
			return 0;
	}
	if (buf_room(out) < entry_len(e)) {
		*error_r = "no room for the value in the buffer";
		return -1;
	}
	int ret = read_value(c, e, out);
	if (ret == -1) {
		*error_r = errf("reading %s failed: %s", c->path,
				errno != 0 ? strerror(errno) : "?");
		return -1;
	}
	if (ret == 0) {
		log_info("mailcache: bad record, dropped: dir=%s uid=%u "
			 "field=%s offset=%llu",
			 c->dir, uid, mailcache_field_name(field),
			 (unsigned long long)e->offset);
		table_del(c, (uint32_t)(e - c->table));
		c->needs_compact = true;
		return 0;
	}
	return 1;
}

/* ---- writers --------------------------------------------------------------
 */

static int fsync_dir(const char *dir, const char **error_r)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd == -1 || fsync(dfd) == -1) {
		*error_r = errf("fsync(%s) failed: %s", dir, strerror(errno));
		if (dfd != -1)
			close(dfd);
		return -1;
	}
	close(dfd);
	return 0;
}

/* fsyncs and closes the tmp file fd, renames it over the cache file. */
static int install_tmp(struct mailcache *c, int fd, const char **error_r)
{
	const char *what = "fsync";

	if (fsync(fd) == -1)
		goto fail;
	what = "close";
	int ret = close(fd);
	fd = -1;
	if (ret == -1)
		goto fail;
	what = "rename";
	if (rename(c->tmp_path, c->path) == -1)
		goto fail;
	return fsync_dir(c->dir, error_r);
fail:
	*error_r =
	    errf("%s(%s) failed: %s", what, c->tmp_path, strerror(errno));
	if (fd != -1)
		close(fd);
	unlink(c->tmp_path);
	return -1;
}

static int open_tmp(struct mailcache *c, const char **error_r)
{
	/* Only the lock holder writes it; O_TRUNC clears a crashed
	 * writer's leftover. */
	int fd =
	    open(c->tmp_path,
		 O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1)
		*error_r =
		    errf("open(%s) failed: %s", c->tmp_path, strerror(errno));
	return fd;
}

/* Replaces a missing or unusable file with an empty one. */
static int reset_file(struct mailcache *c, const char **error_r)
{
	uint8_t hdr[MAILCACHE_HEADER_SIZE];
	int fd = open_tmp(c, error_r);

	if (fd == -1)
		return -1;
	encode_header(hdr, c->uidvalidity);
	if (pwrite_full(fd, hdr, sizeof(hdr), 0) < 0) {
		*error_r =
		    errf("write(%s) failed: %s", c->tmp_path, strerror(errno));
		close(fd);
		unlink(c->tmp_path);
		return -1;
	}
	if (install_tmp(c, fd, error_r) < 0)
		return -1;
	int ret = load_file(c, error_r);
	if (ret == 0 || (ret > 0 && c->state != FILE_OK)) {
		*error_r = "the new cache file did not read back";
		return -1;
	}
	return ret < 0 ? -1 : 0;
}

static int lock_take(struct mailcache *c, const char **error_r)
{
	char err[512];
	int fd = lockfile_take(c->lock_path, c->set.lock_timeout_msecs, err,
			       sizeof(err));

	if (fd < 0)
		*error_r = errf("%s", err);
	return fd;
}

/* Under the lock: brings the view up to date and makes the file ready
 * for an append (created, reset, torn tail cut). 1 ready, 0 adds are
 * refused (read-only, newer UIDVALIDITY), -1 error. */
static int writer_prepare(struct mailcache *c, const char **error_r)
{
	struct stat st;

	if (refresh(c, error_r) < 0)
		return -1;
	if (c->state == FILE_NEWER) {
		*error_r = "the cache file has a newer UIDVALIDITY";
		return 0;
	}
	if (c->state != FILE_OK && reset_file(c, error_r) < 0)
		return -1;
	if (c->read_only) {
		*error_r = "the cache file is read-only";
		return 0;
	}
	if (c->tail_unindexed)
		return 1; /* compaction drops the rest */
	if (fstat(c->fd, &st) == -1) {
		*error_r =
		    errf("fstat(%s) failed: %s", c->path, strerror(errno));
		return -1;
	}
	if ((uint64_t)st.st_size > c->valid_end) {
		log_info(
		    "mailcache: cutting a torn tail: dir=%s offset=%llu "
		    "bytes=%llu",
		    c->dir, (unsigned long long)c->valid_end,
		    (unsigned long long)((uint64_t)st.st_size - c->valid_end));
		if (ftruncate(c->fd, (off_t)c->valid_end) == -1) {
			*error_r = errf("ftruncate(%s) failed: %s", c->path,
					strerror(errno));
			return -1;
		}
	}
	c->scanned_size = c->valid_end;
	return 1;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	if (entry_field(x) != entry_field(y))
		return entry_field(x) < entry_field(y) ? -1 : 1;
	return 0;
}

static bool uid_in(const uint32_t *uids, size_t count, uint32_t uid)
{
	size_t lo = 0, hi = count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < count && uids[lo] == uid;
}

/* A record is kept when uidnext is 0 (no filter), its UID is at least
 * uidnext (newer than the caller's view), or it is in the list. */
static bool uid_live(const uint32_t *uids, size_t count, uint32_t uidnext,
		     uint32_t uid)
{
	return uidnext == 0 || uid >= uidnext || uid_in(uids, count, uid);
}

struct compact_out {
	int fd;
	uint8_t *buf;
	size_t len;
	uint64_t flushed; /* file offset of buf[0] */
};

static int out_flush(struct compact_out *o)
{
	if (o->len == 0)
		return 0;
	if (pwrite_full(o->fd, o->buf, o->len, o->flushed) < 0)
		return -1;
	o->flushed += o->len;
	o->len = 0;
	return 0;
}

/* Copies the record of e to o after checking it. 1 copied, 0 bad (not
 * copied), -1 error. */
static int copy_record(const struct mailcache *c, const struct entry *e,
		       struct window *w, struct compact_out *o)
{
	uint32_t len = entry_len(e);
	size_t total = HEAD + (size_t)len;
	const uint8_t *p;
	struct head h;

	if (total <= WINDOW_SIZE) {
		int ret = window_get(c->fd, w, e->offset, total, &p);
		if (ret <= 0)
			return ret;
		if (!decode_head(p, &h) || h.uid != e->uid ||
		    h.field != entry_field(e) || h.len != len ||
		    crc32_update(crc32_update(0, p, 12), p + HEAD, len) !=
			h.data_crc)
			return 0;
		if (COMPACT_OUT_SIZE - o->len < total && out_flush(o) < 0)
			return -1;
		memcpy(o->buf + o->len, p, total);
		o->len += total;
		return 1;
	}
	/* A big value: check it in pieces first, then copy it in pieces. */
	uint64_t off = e->offset;
	int ret = window_get(c->fd, w, off, HEAD, &p);
	if (ret <= 0)
		return ret;
	if (!decode_head(p, &h) || h.uid != e->uid ||
	    h.field != entry_field(e) || h.len != len)
		return 0;
	uint32_t crc = crc32_update(0, p, 12);
	for (uint64_t done = HEAD; done < total;) {
		size_t k = total - done < WINDOW_SIZE ? (size_t)(total - done)
						      : WINDOW_SIZE;
		ret = window_get(c->fd, w, off + done, k, &p);
		if (ret <= 0)
			return ret;
		crc = crc32_update(crc, p, k);
		done += k;
	}
	if (crc != h.data_crc)
		return 0;
	if (out_flush(o) < 0)
		return -1;
	for (uint64_t done = 0; done < total;) {
		size_t k = total - done < WINDOW_SIZE ? (size_t)(total - done)
						      : WINDOW_SIZE;
		ret = window_get(c->fd, w, off + done, k, &p);
		if (ret <= 0)
			return ret; /* changed under the lock: give up */
		memcpy(o->buf, p, k);
		o->len = k;
		if (out_flush(o) < 0)
			return -1;
		done += k;
	}
	return 1;
}

/* Under the lock, after writer_prepare: writes the live records of the
 * view (and of uid_live) to a new file and switches to it. */
static int compact_locked(struct mailcache *c, const uint32_t *live_uids,
			  size_t live_count, uint32_t uidnext,
			  const char **error_r)
{
	uint8_t wbuf[WINDOW_SIZE];
	struct window w = {.buf = wbuf};
	uint8_t hdr[MAILCACHE_HEADER_SIZE];
	struct compact_out o = {.fd = -1};
	size_t n = 0, kept = 0, bad = 0;
	int ret = -1;

	struct entry *list = xreallocarray(NULL, c->count + 1, sizeof(*list));
	for (uint32_t i = 0; i < c->cap; i++) {
		if (c->table[i].uid != 0 &&
		    uid_live(live_uids, live_count, uidnext, c->table[i].uid))
			list[n++] = c->table[i];
	}
	qsort(list, n, sizeof(*list), entry_cmp);

	o.fd = open_tmp(c, error_r);
	if (o.fd == -1)
		goto out;
	o.buf = xmalloc(COMPACT_OUT_SIZE);
	encode_header(hdr, c->uidvalidity);
	memcpy(o.buf, hdr, sizeof(hdr));
	o.len = sizeof(hdr);
	for (size_t i = 0; i < n; i++) {
		uint64_t at = o.flushed + o.len;
		int r = copy_record(c, &list[i], &w, &o);
		if (r < 0) {
			*error_r = errf("compacting %s failed: %s", c->path,
					strerror(errno));
			goto fail_tmp;
		}
		if (r == 0) {
			bad++;
			continue;
		}
		list[kept] = list[i];
		list[kept].offset = at;
		kept++;
	}
	if (out_flush(&o) < 0) {
		*error_r =
		    errf("write(%s) failed: %s", c->tmp_path, strerror(errno));
		goto fail_tmp;
	}
	uint64_t end = o.flushed;
	int fd = o.fd;
	o.fd = -1;
	if (install_tmp(c, fd, error_r) < 0)
		goto out;

	uint64_t old_end = c->valid_end;
	/* The new file: exactly the kept records. */
	drop_file(c);
	c->fd = open(c->path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (c->fd == -1 || fstat(c->fd, &st) == -1) {
		*error_r =
		    errf("reopening %s failed: %s", c->path, strerror(errno));
		drop_file(c);
		goto out;
	}
	c->state = FILE_OK;
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	c->valid_end = end;
	c->scanned_size = end;
	for (size_t i = 0; i < kept; i++)
		(void)table_put(c, list[i].uid, entry_field(&list[i]),
				entry_len(&list[i]), list[i].offset);
	c->compactions++;
	log_info("mailcache: compacted: dir=%s records=%zu bad=%zu "
		 "bytes=%llu->%llu",
		 c->dir, kept, bad, (unsigned long long)old_end,
		 (unsigned long long)end);
	ret = 1;
	goto out;

fail_tmp:
	close(o.fd);
	unlink(c->tmp_path);
out:
	free(o.buf);
	free(list);
	return ret;
}

static bool compaction_due(const struct mailcache *c)
{
	if (c->state != FILE_OK || c->read_only)
		return false;
	uint64_t dead = c->valid_end - MAILCACHE_HEADER_SIZE - c->live_bytes;
	return c->needs_compact || c->tail_unindexed ||
	       c->valid_end > c->set.max_size ||
	       (c->valid_end >= MAILCACHE_COMPACT_MIN_SIZE &&
		dead > c->valid_end / 2);
}

/* Whether the record at e holds exactly data. */
static bool same_value(const struct mailcache *c, const struct entry *e,
		       const void *data, size_t len)
{
	if (entry_len(e) != len)
		return false;
	struct buf *b = buf_new(len + 1, len);
	bool same = read_value(c, e, b) == 1 &&
		    (len == 0 || memcmp(b->data, data, len) == 0);
	buf_free(&b);
	return same;
}

static int append_record(struct mailcache *c, uint32_t uid, unsigned int field,
			 const void *data, size_t len, const char **error_r)
{
	uint8_t head[HEAD];
	struct iovec iov[2] = {{head, HEAD}, {(void *)(uintptr_t)data, len}};
	ssize_t n;

	encode_head(head, uid, field, data, len);
	do {
		n = writev(c->fd, iov, len > 0 ? 2 : 1);
	} while (n == -1 && errno == EINTR);
	if (n != (ssize_t)(HEAD + len)) {
		*error_r = errf("write(%s) failed: %s", c->path,
				n == -1 ? strerror(errno) : "short write");
		/* Leave no partial record behind. */
		if (ftruncate(c->fd, (off_t)c->valid_end) == -1)
			log_warn("mailcache: truncating %s", c->path);
		return -1;
	}
	if (table_put(c, uid, field, (uint32_t)len, c->valid_end) < 0)
		fatalx("mailcache: record cap passed after check");
	c->valid_end += HEAD + len;
	c->scanned_size = c->valid_end;
	return 0;
}

int mailcache_add(struct mailcache *c, uint32_t uid, enum mailcache_field field,
		  const void *data, size_t len, const char **error_r)
{
	if (!uid_valid(uid) || (unsigned int)field >= MAILCACHE_FIELD_COUNT ||
	    (data == NULL && len > 0) || !len_valid(field, len)) {
		*error_r = "bad UID, field or length";
		return -1;
	}
	if (len > c->set.max_value) {
		*error_r = "value over the size limit";
		return 0;
	}
	int lock_fd = lock_take(c, error_r);
	if (lock_fd == LOCKFILE_TIMEOUT)
		return 0;
	if (lock_fd < 0)
		return -1;
	int ret = writer_prepare(c, error_r);
	if (ret <= 0)
		goto out;
	const struct entry *e = table_find(c, uid, field);
	if (e != NULL && same_value(c, e, data, len)) {
		ret = 1; /* another session cached it meanwhile */
		goto out;
	}
	e = NULL; /* a compaction rebuilds the view */
	uint64_t need = HEAD + (uint64_t)len;
	if (c->tail_unindexed ||
	    (c->valid_end + need > c->set.max_size &&
	     c->valid_end - MAILCACHE_HEADER_SIZE > c->live_bytes)) {
		if (compact_locked(c, NULL, 0, 0, error_r) < 0) {
			ret = -1;
			goto out;
		}
	}
	if (c->valid_end + need > c->set.max_size) {
		*error_r = "cache file full";
		ret = 0;
		goto out;
	}
	if (c->count >= c->set.max_records &&
	    table_find(c, uid, field) == NULL) {
		*error_r = "record cap reached";
		ret = 0;
		goto out;
	}
	if (append_record(c, uid, field, data, len, error_r) < 0) {
		ret = -1;
		goto out;
	}
	ret = 1;
	if (compaction_due(c)) {
		const char *err;
		if (compact_locked(c, NULL, 0, 0, &err) < 0)
			log_warnx("mailcache: compaction failed: dir=%s "
				  "reason=<%s>",
				  c->dir, err);
	}
out:
	close(lock_fd);
	return ret;
}

static int compact_common(struct mailcache *c, const uint32_t *live_uids,
			  size_t count, uint32_t uidnext, const char **error_r)
{
	int lock_fd = lock_take(c, error_r);
	if (lock_fd == LOCKFILE_TIMEOUT)
		return 0;
	if (lock_fd < 0)
		return -1;
	int ret = writer_prepare(c, error_r);
	if (ret > 0)
		ret = compact_locked(c, live_uids, count, uidnext, error_r);
	close(lock_fd);
	return ret;
}

int mailcache_compact(struct mailcache *c, const char **error_r)
{
	return compact_common(c, NULL, 0, 0, error_r);
}

int mailcache_expunge_sync(struct mailcache *c, const uint32_t *live_uids,
			   size_t count, uint32_t uidnext, const char **error_r)
{
	if ((count > 0 && live_uids == NULL) || uidnext == 0 ||
	    (count > 0 && live_uids[count - 1] >= uidnext)) {
		*error_r = "bad argument";
		return -1;
	}
	for (size_t i = 1; i < count; i++) {
		if (live_uids[i] <= live_uids[i - 1]) {
			*error_r = "live UIDs not strictly increasing";
			return -1;
		}
	}
	/* Drop the dead from the view: rebuild it without them. */
	if (c->count > 0) {
		struct entry *old = c->table;
		uint32_t old_cap = c->cap;
		c->table = xcalloc(old_cap, sizeof(*c->table));
		c->count = 0;
		c->live_bytes = 0;
		for (uint32_t i = 0; i < old_cap; i++) {
			if (old[i].uid != 0 &&
			    uid_live(live_uids, count, uidnext, old[i].uid))
				(void)table_put(
				    c, old[i].uid, entry_field(&old[i]),
				    entry_len(&old[i]), old[i].offset);
		}
		free(old);
	}
	if (!compaction_due(c))
		return 0;
	return compact_common(c, live_uids, count, uidnext, error_r);
}
