#ifndef MR_MAILCACHE_H
#define MR_MAILCACHE_H

/*
 * The per-mailbox cache of parsed message data: ENVELOPE, BODY,
 * BODYSTRUCTURE, the sent date and chosen header fields, per UID, in
 * <dir>/mailring-cache (format at the top of mailcache.c). The cache is
 * derived data: any part of it may be lost, and the file may be thrown
 * away at any time; a value read back is exactly what was added or not
 * found at all (every record carries a CRC).
 *
 * Readers take no lock. mailcache_open() reads the header and walks the
 * record heads in bounded chunks, building an index of (uid, field) ->
 * offset (memory O(records), capped by max_records); values are read with
 * pread on lookup and their CRC is checked then. On a miss the reader
 * checks (one stat) whether the file grew or was replaced, and reads the
 * new records or the new file.
 *
 * Writers (mailcache_add, compaction) take <dir>/mailring-cache.lock,
 * catch up with the file (new records, a replaced file), cut a torn tail,
 * then append one record with one writev on an O_APPEND fd (no fsync: a
 * record cut by a crash fails its CRCs and is not found). A file that is
 * unusable (bad magic, version, sizes or header CRC, an older UIDVALIDITY,
 * over twice max_size) reads as an empty cache and is replaced (tmp, fsync,
 * rename) by the first add. Compaction rewrites the live records into a
 * new file (tmp, fsync, rename, dir fsync); a process still holding the
 * old file keeps reading it safely and moves to the new one on its next
 * miss or write.
 *
 * Return values: -1 error (with *error_r), 0 not found / not done, 1 done.
 * Error messages (*error_r) are static or thread-local text, valid until
 * the next mailcache call in the same thread.
 *
 * A struct mailcache belongs to one thread; several sessions (threads or
 * processes) open their own on the same directory.
 */

#include <stddef.h>
#include <stdint.h>

struct buf;

#define MAILCACHE_FILE_NAME "mailring-cache"
#define MAILCACHE_LOCK_NAME "mailring-cache.lock"
#define MAILCACHE_TMP_NAME "mailring-cache.tmp"
#define MAILCACHE_VERSION 1
/* Bytes of the file header and of one record head. */
#define MAILCACHE_HEADER_SIZE 32
#define MAILCACHE_RECORD_HEAD_SIZE 20
/* UIDs stay below this (as in uidlist.h / mailindex.h). */
#define MAILCACHE_UID_LIMIT 0x7fffffffu

/* Defaults and hard limits of struct mailcache_settings. */
#define MAILCACHE_MAX_SIZE_DEFAULT (64ull * 1024 * 1024)
#define MAILCACHE_MAX_SIZE_MIN (64ull * 1024)
#define MAILCACHE_MAX_SIZE_LIMIT (1ull << 32)
#define MAILCACHE_MAX_VALUE_DEFAULT (256u * 1024)
#define MAILCACHE_VALUE_LIMIT (16u * 1024 * 1024)
#define MAILCACHE_MAX_RECORDS_DEFAULT 1000000u
#define MAILCACHE_RECORDS_LIMIT 50000000u
#define MAILCACHE_LOCK_TIMEOUT_DEFAULT_MSECS 200u
/* Dead records are compacted away only in files at least this big. */
#define MAILCACHE_COMPACT_MIN_SIZE (16u * 1024)

/* What a record holds. The numbers are stored in the file: never reuse. */
enum mailcache_field {
	MAILCACHE_ENVELOPE = 0,      /* mime_write_envelope() output */
	MAILCACHE_BODY = 1,          /* mime_write_bodystructure(, false) */
	MAILCACHE_BODYSTRUCTURE = 2, /* mime_write_bodystructure(, true) */
	MAILCACHE_SENT_DATE = 3,     /* MAILCACHE_SENT_DATE_SIZE bytes, see
					mailcache_sent_date_encode() */
	MAILCACHE_HEADERS = 4,       /* chosen header fields, free form */
	MAILCACHE_FIELD_COUNT        /* not a field */
};

/* "envelope", "body", "bodystructure", "sent-date", "headers", "?". */
const char *mailcache_field_name(enum mailcache_field field);

/* Each 0 means the default. */
struct mailcache_settings {
	/* File size a writer keeps under: an add that would pass it compacts
	 * first and is refused if the live records still fill it. A file over
	 * twice this size is discarded on open. MIN..LIMIT. */
	uint64_t max_size;
	/* Largest value cached (bigger ones are refused: add returns 0).
	 * 1..MAILCACHE_VALUE_LIMIT. */
	uint32_t max_value;
	/* Records indexed in memory (~32 bytes each at worst).
	 * 1..MAILCACHE_RECORDS_LIMIT. */
	uint32_t max_records;
	/* How long a writer waits for the lock; on timeout the add or the
	 * compaction is skipped (returns 0). */
	unsigned int lock_timeout_msecs;
};

struct mailcache;

/* Opens the cache of the Maildir dir for a mailbox of uidvalidity (>= 1);
 * set may be NULL (defaults). Never writes. Returns 1 when the file was
 * read or does not exist yet (an empty cache; created by the first add),
 * 0 when the file is unusable and is treated as empty: *error_r says why
 * (the module logs it at info level too), the first add replaces it
 * unless its UIDVALIDITY is newer than ours (then adds are refused), and
 * -1 on error (bad settings, I/O error): *cache_r is then NULL and the
 * caller goes on without a cache. A torn tail is not an error. */
int mailcache_open(const char *dir, uint32_t uidvalidity,
		   const struct mailcache_settings *set,
		   struct mailcache **cache_r, const char **error_r);
/* Closes the file and frees *cache; *cache becomes NULL; safe on NULL. */
void mailcache_close(struct mailcache **cache);

/* Appends the value of (uid, field) to out. 1: found (CRC checked), 0:
 * not cached (a record failing its CRC counts as not found, is dropped
 * from the view and marks the file for compaction), -1: read error, or
 * out has no room for the value (out is then unchanged). On a miss the
 * view catches up with records other processes added. */
int mailcache_lookup(struct mailcache *cache, uint32_t uid,
		     enum mailcache_field field, struct buf *out,
		     const char **error_r);

/* Caches data (len bytes) for (uid, field) under the lock, superseding an
 * older value. 1: cached (or an equal-keyed value another process added
 * meanwhile is kept), 0: not cached (over max_value, file full even after
 * compaction, record cap, lock timeout, read-only file, newer UIDVALIDITY
 * on disk), -1: error (bad argument, I/O error; the file is left as it
 * was). May compact the file afterwards (dead bytes over half of it). */
int mailcache_add(struct mailcache *cache, uint32_t uid,
		  enum mailcache_field field, const void *data, size_t len,
		  const char **error_r);

/* Tells the cache which UIDs still exist: live_uids, strictly increasing,
 * count of them, all below uidnext (the mailbox view after an expunge and
 * its UIDNEXT). Records of UIDs below uidnext not in the list are dropped
 * from the view (UIDs from uidnext on are newer than the view and kept,
 * so a session with an older view never drops a newer one's); when
 * dead records then pass half of the file (or a CRC failure was seen) the
 * file is compacted under the lock. 1: compacted, 0: nothing to do or
 * lock timeout, -1: error. */
int mailcache_expunge_sync(struct mailcache *cache, const uint32_t *live_uids,
			   size_t count, uint32_t uidnext,
			   const char **error_r);

/* Rewrites the file with only the live records of the view, under the
 * lock (tmp, fsync, rename, dir fsync). 1 done, 0 lock timeout or
 * read-only, -1 error. */
int mailcache_compact(struct mailcache *cache, const char **error_r);

struct mailcache_stats {
	uint32_t records;    /* (uid, field) pairs in the view */
	uint64_t live_bytes; /* their bytes in the file, heads included */
	uint64_t file_bytes; /* the file's valid length (0 if none) */
	size_t memory;       /* bytes the view allocated */
	int compactions;     /* done through this handle */
};

void mailcache_get_stats(const struct mailcache *cache,
			 struct mailcache_stats *stats_r);

/* ---- the SENT_DATE value ----------------------------------------------- */

#define MAILCACHE_SENT_DATE_SIZE 12

/* time: Unix seconds of the Date: header; tz_minutes: its zone, east of
 * UTC (+0130 -> 90). */
void mailcache_sent_date_encode(int64_t time, int32_t tz_minutes,
				uint8_t out[MAILCACHE_SENT_DATE_SIZE]);
/* -1 when len is not MAILCACHE_SENT_DATE_SIZE or the zone is beyond
 * +-24h. */
int mailcache_sent_date_decode(const uint8_t *in, size_t len, int64_t *time_r,
			       int32_t *tz_minutes_r);

#endif
