#ifndef MR_UIDLIST_H
#define MR_UIDLIST_H

/*
 * The UID list of one mailbox: which UID each Maildir file has, plus the
 * mailbox's UIDVALIDITY and UIDNEXT. It lives in the file
 * <dir>/mailring-uidlist; the file format is described at the top of
 * uidlist.c.
 *
 * Layers, each usable alone:
 *   - uidlist_parser: pure, resumable parser over bytes fed in chunks;
 *     records go to a callback; bounded memory (one line buffer).
 *   - uidlist_loader: a parser filling a struct uidlist, with a record cap.
 *   - struct uidlist: the list in memory, with lookups by UID (binary
 *     search) and by base name (hash index), UID assignment, sync with the
 *     set of files present, rebuild and renumbering.
 *   - uidlist_read / uidlist_write / uidlist_lock: the file on disk.
 *
 * Writers: uidlist_lock(), uidlist_read() (re-read under the lock), change,
 * uidlist_write(), uidlist_unlock(). The file is only ever replaced whole
 * (temp file, fsync, rename, fsync of the directory), so readers need no
 * lock and never see a torn file.
 *
 * UIDs are in 1..UIDLIST_UIDNEXT_MAX-1 and UIDNEXT is at most
 * UIDLIST_UIDNEXT_MAX (2^31 - 1), so every UID and UIDNEXT fit a signed
 * 32-bit int. Nothing from message headers (X-UID, X-IMAPbase, Status) is
 * ever used. When no UID is left, the list is renumbered 1..n in its order
 * under a new, greater UIDVALIDITY, with a log line.
 *
 * Error messages (*error_r) are static or thread-local text, valid until
 * the next uidlist call that fails in the same thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "str.h"

#define UIDLIST_FILE_NAME "mailring-uidlist"
#define UIDLIST_LOCK_NAME "mailring-uidlist.lock"
#define UIDLIST_VERSION 1
/* Highest UIDNEXT; the highest UID is one less. */
#define UIDLIST_UIDNEXT_MAX 0x7fffffffu
/* Longest base name (the file name before ":2,"), in bytes. */
#define UIDLIST_NAME_MAX 255
/* Longest line of the file, newline included; a longer one is corruption. */
#define UIDLIST_LINE_MAX 300
/* Highest record cap a list may be given. */
#define UIDLIST_RECORDS_LIMIT 50000000u

enum uidlist_status {
	UIDLIST_OK = 0,       /* done */
	UIDLIST_NOT_FOUND,    /* no such file: create a new list */
	UIDLIST_REBUILD,      /* corrupt, truncated or unknown version:
				 rebuild from the Maildir */
	UIDLIST_LIMIT,        /* more records than the cap */
	UIDLIST_LOCK_TIMEOUT, /* another writer held the lock too long */
	UIDLIST_ERROR,        /* system error (errno in the message) or bad
				 argument */
};

/* "ok", "not found", "rebuild", "limit", "lock timeout", "error". */
const char *uidlist_status_name(enum uidlist_status status);

/* True when name may be a base name: 1..UIDLIST_NAME_MAX bytes of printable
 * ASCII without space, '/' or ':', and not "." or "..". */
bool uidlist_name_valid(struct str name);

/* The UIDVALIDITY to use after prev (0: none before): now when it is
 * greater than prev, prev + 1 otherwise, so a clock set back never reuses
 * one. Returns 0 when prev is UINT32_MAX (none is left). */
uint32_t uidlist_uidvalidity_next(uint32_t prev, time_t now);

/* ---- parser ---------------------------------------------------------- */

struct uidlist_parser;

struct uidlist_header {
	uint32_t version;
	uint32_t uidvalidity;
	uint32_t uidnext;
};

/* name points into the parser and is valid only during the call. Return 0
 * to go on, -1 to stop the parse (it then returns UIDLIST_PARSE_ABORTED). */
typedef int uidlist_record_cb(uint32_t uid, struct str name, void *context);
/* Called once, after the header line and before any record. */
typedef int uidlist_header_cb(const struct uidlist_header *hdr, void *context);

enum uidlist_parse_result {
	UIDLIST_PARSE_MORE = 0, /* all bytes taken, the end not seen yet */
	UIDLIST_PARSE_DONE,     /* the trailer was read and checks out */
	UIDLIST_PARSE_CORRUPT,  /* bad magic, syntax, order, count, CRC,
				   overlong line, bytes after the trailer,
				   or (from finish) truncated */
	UIDLIST_PARSE_VERSION,  /* a version this code does not know */
	UIDLIST_PARSE_ABORTED,  /* a callback returned -1 */
};

/* Either callback may be NULL. */
struct uidlist_parser *uidlist_parser_new(uidlist_header_cb *header_cb,
					  uidlist_record_cb *record_cb,
					  void *context);
void uidlist_parser_free(struct uidlist_parser **parser);
/* Feeds len more bytes. Results other than MORE and DONE are final: later
 * calls return the same. */
enum uidlist_parse_result uidlist_parser_feed(struct uidlist_parser *parser,
					      const uint8_t *data, size_t len);
/* At end of input: DONE when the trailer was read, CORRUPT when the input
 * stopped before it (a truncated file), or the earlier error. */
enum uidlist_parse_result uidlist_parser_finish(struct uidlist_parser *parser);
/* The reason of the last error (a static string, NULL if none) and the
 * byte offset of the line it was found in. */
const char *uidlist_parser_error(const struct uidlist_parser *parser,
				 uint64_t *offset_r);

/* ---- the list in memory ------------------------------------------------ */

struct uidlist;

/* A new empty list: UIDNEXT 1, UIDVALIDITY uidlist_uidvalidity_next(
 * prev_uidvalidity, time(NULL)). max_records (1..UIDLIST_RECORDS_LIMIT)
 * caps the records it may ever hold, and so its memory. */
struct uidlist *uidlist_new(uint32_t prev_uidvalidity, uint32_t max_records);
void uidlist_free(struct uidlist **list);

uint32_t uidlist_uidvalidity(const struct uidlist *list);
uint32_t uidlist_uidnext(const struct uidlist *list);
uint32_t uidlist_count(const struct uidlist *list);
/* Bytes allocated for the list (structure, records, names, hash index):
 * at most about twice what its records need. */
size_t uidlist_memory_used(const struct uidlist *list);

/* Record idx (0-based, in UID order). Returns false past the end. The
 * name stays valid until the list changes. */
bool uidlist_record_at(const struct uidlist *list, uint32_t idx,
		       uint32_t *uid_r, struct str *name_r);
/* Returns true and the base name of uid, or false. */
bool uidlist_lookup_uid(const struct uidlist *list, uint32_t uid,
			struct str *name_r);
/* Returns the UID of a base name, or 0. */
uint32_t uidlist_lookup_name(const struct uidlist *list, struct str name);

/* Gives name the UID UIDNEXT and increments UIDNEXT; renumbers first when
 * UIDNEXT is at UIDLIST_UIDNEXT_MAX. A name already in the list keeps its
 * UID (returned, nothing changes). UIDLIST_LIMIT at the record cap,
 * UIDLIST_ERROR for an invalid name or when no UIDVALIDITY is left. */
enum uidlist_status uidlist_append(struct uidlist *list, struct str name,
				   uint32_t *uid_r, const char **error_r);
/* Raises UIDNEXT to uidnext (never lowers it; at most
 * UIDLIST_UIDNEXT_MAX), for a rebuild that knows an earlier UIDNEXT.
 * Returns -1 when uidnext is out of range. */
int uidlist_raise_uidnext(struct uidlist *list, uint32_t uidnext);
/* Gives the records UIDs 1..n in their order, a new UIDVALIDITY greater
 * than the old one (uidlist_uidvalidity_next), and UIDNEXT n + 1, and logs
 * it. UIDLIST_ERROR when no greater UIDVALIDITY exists. */
enum uidlist_status uidlist_renumber(struct uidlist *list,
				     const char **error_r);
/* Makes the list hold exactly the valid names given (the files present):
 * records whose name is absent are dropped (expunged), present ones keep
 * their UIDs, and names not yet in the list get new UIDs in the order
 * given. Invalid names are skipped with a warning; a name given twice
 * counts once. On UIDLIST_LIMIT or UIDLIST_ERROR the list is unchanged. */
enum uidlist_status uidlist_sync(struct uidlist *list, const struct str *names,
				 size_t count, const char **error_r);
/* A new list for the names given (the Maildir as listed now), keeping the
 * UIDs, UIDVALIDITY and UIDNEXT of known (a list read earlier; may be NULL:
 * then a new UIDVALIDITY after prev_uidvalidity is chosen and UIDs start
 * at 1). New names get UIDs in the order given. NULL with *error_r set
 * on failure (cap passed, no UIDVALIDITY left). */
struct uidlist *uidlist_rebuild(const struct uidlist *known,
				uint32_t prev_uidvalidity, uint32_t max_records,
				const struct str *names, size_t count,
				enum uidlist_status *status_r,
				const char **error_r);

/* ---- streaming load and store ------------------------------------------ */

struct uidlist_loader;

/* A parser that builds a list of at most max_records records. */
struct uidlist_loader *uidlist_loader_new(uint32_t max_records);
void uidlist_loader_free(struct uidlist_loader **loader);
/* Returns UIDLIST_OK while all is well so far, or the final error
 * (UIDLIST_REBUILD, UIDLIST_LIMIT). */
enum uidlist_status uidlist_loader_feed(struct uidlist_loader *loader,
					const uint8_t *data, size_t len);
/* At end of input. On UIDLIST_OK *list_r gets the list (the caller's);
 * otherwise *error_r says why, with *offset_r the byte offset. */
enum uidlist_status uidlist_loader_finish(struct uidlist_loader *loader,
					  struct uidlist **list_r,
					  const char **error_r,
					  uint64_t *offset_r);

/* Receives the file bytes in pieces; returns 0, or -1 to stop. */
typedef int uidlist_output_fn(const void *data, size_t len, void *context);
/* Writes the list in the file format through out, in pieces of at most
 * a few KiB. Returns 0, or -1 when out failed. */
int uidlist_serialize(const struct uidlist *list, uidlist_output_fn *out,
		      void *context);

/* ---- files -------------------------------------------------------------- */

struct uidlist_lock;

/* Takes the writer lock of the mailbox directory dir: an exclusive fcntl
 * lock (open file description lock where available) on
 * dir/mailring-uidlist.lock, retried with back-off for up to timeout_msecs
 * (CLOCK_MONOTONIC), then UIDLIST_LOCK_TIMEOUT. The lock file gets
 * "pid host" of the holder. */
enum uidlist_status uidlist_lock(const char *dir, unsigned int timeout_msecs,
				 struct uidlist_lock **lock_r,
				 const char **error_r);
/* Releases the lock and frees it; sets *lock to NULL; safe on NULL. */
void uidlist_unlock(struct uidlist_lock **lock);

/* Reads dir/mailring-uidlist in bounded chunks; needs no lock. On
 * UIDLIST_OK *list_r is the caller's. UIDLIST_REBUILD (logged with the
 * reason and offset) means the file cannot be trusted. */
enum uidlist_status uidlist_read(const char *dir, uint32_t max_records,
				 struct uidlist **list_r, const char **error_r);
/* Replaces the file of the locked directory with list: writes
 * mailring-uidlist.tmp, fsyncs it, renames it over the old file and fsyncs
 * the directory. When it fails the old file is untouched. */
enum uidlist_status uidlist_write(const struct uidlist_lock *lock,
				  const struct uidlist *list,
				  const char **error_r);

#endif
