#ifndef MR_MAILINDEX_H
#define MR_MAILINDEX_H

/*
 * The binary index of one mailbox and its append-only transaction log:
 * per message UID, system flags, keywords, modseq, size and internal date.
 * Files <dir>/mailring-index and <dir>/mailring-index.log; both formats
 * are described at the top of mailindex.c. The UID list (uidlist.h) maps
 * UIDs to Maildir files; this index does not store names.
 *
 * Layers:
 *   - record and log entry encode/decode: fixed size, little-endian.
 *   - mailindex_log_parser: pure, resumable parser of the log over bytes
 *     fed in chunks; entries go to a callback; memory is one entry buffer
 *     (a length field over MAILINDEX_LOG_ENTRY_MAX is corruption, so a
 *     huge garbage log is rejected after a few bytes).
 *   - struct mailindex: records sorted by UID (capped count), lookups by
 *     UID (binary search) and by sequence number (1-based position).
 *   - mailindex_open / _rebuild_from / _append / _set_flags / _expunge /
 *     _compact / mailindex_lock: the files.
 *
 * Readers take no lock: mailindex_open() opens the log first, then the
 * index, so a rotation running meanwhile shows them either the old pair,
 * the new pair, or a new index with the old (stale, ignored) log. A torn
 * last log entry (short, or bad CRC with nothing after it) is ignored.
 *
 * Writers: mailindex_lock(), mailindex_open() (under the lock, so the view
 * is current), then changes; each change is one log entry written with
 * pwrite + fdatasync before memory changes. The first change cuts a torn
 * tail off the log. When the log passes the rotation size, the writer
 * compacts: a new index (tmp + fsync + rename) with every change and log
 * sequence + 1, then a new empty log (tmp + fsync + rename).
 *
 * Any check that fails on open (magic, version, sizes, CRCs, order,
 * sequence or UIDVALIDITY mismatch between index and log, a log entry that
 * does not fit the index) gives MAILINDEX_REBUILD with the reason; the
 * caller then builds records from the Maildir and UID list and calls
 * mailindex_rebuild_from().
 *
 * Error messages (*error_r) are static or thread-local text, valid until
 * the next mailindex call that fails in the same thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAILINDEX_FILE_NAME "mailring-index"
#define MAILINDEX_LOG_NAME "mailring-index.log"
#define MAILINDEX_LOCK_NAME "mailring-index.lock"
#define MAILINDEX_VERSION 1
#define MAILINDEX_LOG_VERSION 1
/* Highest UID + 1 (UIDs stay below 2^31). */
#define MAILINDEX_UIDNEXT_MAX 0x7fffffffu
/* Bytes of one encoded record. */
#define MAILINDEX_RECORD_SIZE 36
/* Bytes of the index file header and of the log file header. */
#define MAILINDEX_HEADER_SIZE 64
#define MAILINDEX_LOG_HEADER_SIZE 24
/* Largest log entry body (type + payload); a larger length is corruption. */
#define MAILINDEX_LOG_ENTRY_MAX 4096
/* Highest record cap an index may be given. */
#define MAILINDEX_RECORDS_LIMIT 50000000u
/* Default log size at which a writer compacts. */
#define MAILINDEX_LOG_ROTATE_DEFAULT (1024 * 1024)

/* System flags (struct mailindex_record.flags). */
#define MAILINDEX_FLAG_SEEN 0x01u
#define MAILINDEX_FLAG_ANSWERED 0x02u
#define MAILINDEX_FLAG_FLAGGED 0x04u
#define MAILINDEX_FLAG_DELETED 0x08u
#define MAILINDEX_FLAG_DRAFT 0x10u
#define MAILINDEX_FLAGS_MASK 0x1fu
/* Keywords: bit i is the Maildir keyword letter 'a' + i. */
#define MAILINDEX_KEYWORDS_MASK 0x03ffffffu

enum mailindex_status {
	MAILINDEX_OK = 0,       /* done */
	MAILINDEX_NOT_FOUND,    /* no index file, or no such UID */
	MAILINDEX_REBUILD,      /* index or log missing a check: rebuild */
	MAILINDEX_LIMIT,        /* more records than the cap */
	MAILINDEX_LOCK_TIMEOUT, /* another writer held the lock too long */
	MAILINDEX_ERROR,        /* system error or bad argument */
};

/* "ok", "not found", "rebuild", "limit", "lock timeout", "error". */
const char *mailindex_status_name(enum mailindex_status status);

/* ---- records and log entries -------------------------------------------- */

struct mailindex_record {
	uint32_t uid;      /* 1..MAILINDEX_UIDNEXT_MAX-1 */
	uint8_t flags;     /* MAILINDEX_FLAG_* */
	uint32_t keywords; /* MAILINDEX_KEYWORDS_MASK bits */
	uint64_t modseq;   /* of the last change, >= 1 */
	uint64_t size;     /* bytes of the message */
	int64_t date;      /* internal date, Unix seconds */
};

/* Writes rec in MAILINDEX_RECORD_SIZE bytes. */
void mailindex_record_encode(const struct mailindex_record *rec,
			     uint8_t out[MAILINDEX_RECORD_SIZE]);
/* Decodes; returns -1 (with *error_r) when a field is out of range or a
 * reserved byte is not zero. */
int mailindex_record_decode(const uint8_t in[MAILINDEX_RECORD_SIZE],
			    struct mailindex_record *rec_r,
			    const char **error_r);

enum mailindex_log_type {
	MAILINDEX_LOG_APPEND =
	    1,                   /* a new record (its modseq is the change's) */
	MAILINDEX_LOG_FLAGS = 2, /* uid's flags and keywords become these */
	MAILINDEX_LOG_EXPUNGE = 3, /* uid is gone */
};

struct mailindex_log_entry {
	enum mailindex_log_type type;
	struct mailindex_record rec; /* APPEND: all; FLAGS: uid, flags,
					keywords, modseq; EXPUNGE: uid,
					modseq */
};

/* Bytes of the longest encoded entry (length, CRC, body). */
#define MAILINDEX_LOG_ENTRY_ENCODED_MAX (9 + MAILINDEX_RECORD_SIZE)
/* Encodes entry with its length and CRC into out; returns its size. */
size_t mailindex_log_entry_encode(const struct mailindex_log_entry *entry,
				  uint8_t out[MAILINDEX_LOG_ENTRY_ENCODED_MAX]);

/* ---- log parser ------------------------------------------------------- */

struct mailindex_log_parser;

struct mailindex_log_header {
	uint32_t version;
	uint32_t seq;         /* log file sequence, >= 1 */
	uint32_t uidvalidity; /* must match the index */
};

/* Return 0 to go on, -1 to stop (the parse is then ABORTED). end is the
 * file offset just past the entry. */
typedef int mailindex_log_header_cb(const struct mailindex_log_header *hdr,
				    void *context);
typedef int mailindex_log_entry_cb(const struct mailindex_log_entry *entry,
				   uint64_t end, void *context);

enum mailindex_parse_result {
	MAILINDEX_PARSE_MORE = 0, /* all taken; more may follow */
	MAILINDEX_PARSE_DONE,     /* (finish) the log ends well, maybe with a
				     torn last entry that was skipped */
	MAILINDEX_PARSE_CORRUPT,  /* bad magic, header CRC, length (0, over
				     the cap, wrong for the type), type, CRC
				     of an entry that is not the last, or
				     (finish) a header cut short */
	MAILINDEX_PARSE_VERSION,  /* a version this code does not know */
	MAILINDEX_PARSE_ABORTED,  /* a callback returned -1 */
};

/* Either callback may be NULL. */
struct mailindex_log_parser *
mailindex_log_parser_new(mailindex_log_header_cb *header_cb,
			 mailindex_log_entry_cb *entry_cb, void *context);
void mailindex_log_parser_free(struct mailindex_log_parser **parser);
/* Bytes the parser allocated (fixed: the struct and its entry buffer). */
size_t mailindex_log_parser_memory(const struct mailindex_log_parser *parser);
/* Feeds len more bytes. Results other than MORE are final. */
enum mailindex_parse_result
mailindex_log_parser_feed(struct mailindex_log_parser *parser,
			  const uint8_t *data, size_t len);
/* At end of input: DONE or the error. */
enum mailindex_parse_result
mailindex_log_parser_finish(struct mailindex_log_parser *parser);
/* The reason of the error (static, NULL if none) and its byte offset. */
const char *mailindex_log_parser_error(const struct mailindex_log_parser *p,
				       uint64_t *offset_r);
/* After DONE: the offset just past the last good entry (the header's end
 * when none), and how many bytes of torn tail follow it. */
uint64_t mailindex_log_parser_valid_end(const struct mailindex_log_parser *p,
					uint64_t *torn_r);

/* ---- the index in memory ---------------------------------------------- */

struct mailindex;

uint32_t mailindex_uidvalidity(const struct mailindex *index);
uint32_t mailindex_uidnext(const struct mailindex *index);
uint64_t mailindex_highest_modseq(const struct mailindex *index);
uint32_t mailindex_count(const struct mailindex *index);
/* Log sequence and the valid end of the log this view was read up to. */
uint32_t mailindex_log_seq(const struct mailindex *index);
uint64_t mailindex_log_end(const struct mailindex *index);

/* Record of sequence number seq (1..count). False when out of range. */
bool mailindex_lookup_seq(const struct mailindex *index, uint32_t seq,
			  struct mailindex_record *rec_r);
/* The sequence number of uid (1..count), or 0 when absent; *rec_r is
 * filled when rec_r is not NULL and uid is present. */
uint32_t mailindex_lookup_uid(const struct mailindex *index, uint32_t uid,
			      struct mailindex_record *rec_r);
void mailindex_free(struct mailindex **index);

/* ---- files -------------------------------------------------------------- */

struct mailindex_lock;

/* The writer lock of dir: an exclusive OFD lock on dir/mailring-index.lock
 * retried for up to timeout_msecs (CLOCK_MONOTONIC); the file names the
 * holder "pid=... host=...". */
enum mailindex_status mailindex_lock(const char *dir,
				     unsigned int timeout_msecs,
				     struct mailindex_lock **lock_r,
				     const char **error_r);
/* Releases and frees the lock; *lock becomes NULL; safe on NULL. */
void mailindex_unlock(struct mailindex_lock **lock);

/* Reads the log (if any) then the index of dir in bounded chunks and
 * applies the log entries the index does not have. max_records
 * (1..MAILINDEX_RECORDS_LIMIT) caps the records; log_rotate_size is the
 * log size at which writers compact (0: the default). On MAILINDEX_OK
 * *index_r is the caller's. NOT_FOUND: no index file. REBUILD (logged):
 * *error_r says why. LIMIT: more records than the cap. */
enum mailindex_status mailindex_open(const char *dir, uint32_t max_records,
				     uint64_t log_rotate_size,
				     struct mailindex **index_r,
				     const char **error_r);

/* Replaces index and log of the locked dir with count records (sorted by
 * strictly increasing UID below uidnext), uidvalidity and uidnext, and
 * returns the new view in *index_r. The highest modseq is the largest
 * record modseq (at least 1). The new log's sequence follows the old
 * log's, when its header is readable. */
enum mailindex_status mailindex_rebuild_from(
    const struct mailindex_lock *lock, uint32_t uidvalidity, uint32_t uidnext,
    const struct mailindex_record *records, size_t count, uint32_t max_records,
    uint64_t log_rotate_size, struct mailindex **index_r, const char **error_r);

/* Writer changes. index must have been opened while lock was held. Each
 * writes one log entry durably, then changes the view; the change gets
 * modseq highest + 1 (*modseq_r when not NULL). The log is compacted when
 * it has grown past the rotation size. */

/* Appends rec (its modseq is ignored). rec->uid must be >= UIDNEXT and
 * below MAILINDEX_UIDNEXT_MAX; UIDNEXT becomes uid + 1. LIMIT at the cap. */
enum mailindex_status mailindex_append(struct mailindex *index,
				       const struct mailindex_lock *lock,
				       const struct mailindex_record *rec,
				       uint64_t *modseq_r,
				       const char **error_r);
/* Sets uid's flags and keywords. NOT_FOUND when uid is absent. */
enum mailindex_status mailindex_set_flags(struct mailindex *index,
					  const struct mailindex_lock *lock,
					  uint32_t uid, uint8_t flags,
					  uint32_t keywords, uint64_t *modseq_r,
					  const char **error_r);
/* Removes uid; later sequence numbers move down by one. NOT_FOUND when
 * uid is absent. */
enum mailindex_status mailindex_expunge(struct mailindex *index,
					const struct mailindex_lock *lock,
					uint32_t uid, uint64_t *modseq_r,
					const char **error_r);
/* Writes a new index holding every change and starts an empty log with
 * the next sequence number. */
enum mailindex_status mailindex_compact(struct mailindex *index,
					const struct mailindex_lock *lock,
					const char **error_r);

#endif
