#ifndef MR_BACKEND_MAILDIR_H
#define MR_BACKEND_MAILDIR_H

/*
 * Maildir++ storage primitives for the mail node (issue 5). No IMAP here:
 * the UID list, the index and the IMAP/POP3/LMTP layers build on this.
 *
 * Layout. A mailbox directory holds cur/ new/ tmp/. A user's root is the
 * INBOX; every other folder is a subdirectory ".Name" of the root, with '.'
 * as the hierarchy separator (".Archive.2024" is "Archive.2024"). Folders
 * also get an empty "maildirfolder" file (Courier/Dovecot habit).
 *
 * Folder names accepted (stored verbatim, no modified-UTF-7 handling):
 * 1..MAILDIR_FOLDER_NAME_MAX bytes; no '/', no NUL, no control byte
 * (< 0x20 or 0x7f); no leading or trailing '.', no empty component ("a..b",
 * which also rules out ".."). "INBOX" (any case) names the root itself and
 * cannot be created, deleted or renamed here. 8-bit bytes are opaque.
 *
 * File names. A new message is "<secs>.M<usecs>P<pid>Q<counter>R<16 hex>.
 * <host>,S=<size>" (host with '/' and ':' written as \057 and \072, as
 * Dovecot does). pid + a per-process counter keep names unique even when
 * the clock stands still or steps back; 64 random bits cover pid reuse.
 * The info suffix is ":2,<flags>": system letters DFPRST and keyword
 * letters a-z, all in ASCII order. Letters we do not know are kept.
 *
 * Durability: maildir_save_finish() and maildir_deliver() return success
 * only after the file and the directory it was linked into are fsynced.
 *
 * Errors are values: functions fill a struct maildir_error (may be NULL).
 * Return values: -1 error, 0 "not there" (where documented), >= 1 done.
 * Nothing here reads a directory into memory or a file whole.
 */

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "str.h"

#define MAILDIR_NAME_MAX NAME_MAX              /* bytes of a file name */
#define MAILDIR_PATH_MAX PATH_MAX              /* bytes of a path, with NUL */
#define MAILDIR_FOLDER_NAME_MAX (NAME_MAX - 1) /* ".Name" fits NAME_MAX */
#define MAILDIR_HOST_MAX 64 /* bytes of the escaped host in a new name */
#define MAILDIR_ERROR_MAX 512
#define MAILDIR_TMP_DELETE_SECS (36 * 60 * 60) /* default tmp/ age limit */
#define MAILDIR_KEYWORDS_MAX 26                /* letters a-z */
#define MAILDIR_KEYWORD_NAME_MAX 128
#define MAILDIR_KEYWORDS_FILE "dovecot-keywords"

enum maildir_error_kind {
	MAILDIR_ERR_NONE = 0, /* no error */
	MAILDIR_ERR_IO,       /* a system call failed: see errnum */
	MAILDIR_ERR_INVALID,  /* bad name, path too long, bad argument */
	MAILDIR_ERR_TOOBIG,   /* a message passed the size limit */
	MAILDIR_ERR_EXISTS,   /* the target folder already exists */
	MAILDIR_ERR_NOTFOUND, /* the folder does not exist */
	MAILDIR_ERR_LIMIT,    /* more directory entries than allowed */
	MAILDIR_ERR_STOPPED,  /* a callback asked to stop */
};

struct maildir_error {
	enum maildir_error_kind kind;
	int errnum; /* errno for MAILDIR_ERR_IO, else 0 */
	char msg[MAILDIR_ERROR_MAX];
};

/* ---- flags and file names (pure) ---- */

enum maildir_flag {
	MAILDIR_FLAG_DRAFT = 1 << 0,   /* D */
	MAILDIR_FLAG_FLAGGED = 1 << 1, /* F */
	MAILDIR_FLAG_PASSED = 1 << 2,  /* P (forwarded) */
	MAILDIR_FLAG_REPLIED = 1 << 3, /* R (\Answered) */
	MAILDIR_FLAG_SEEN = 1 << 4,    /* S */
	MAILDIR_FLAG_TRASHED = 1 << 5, /* T (\Deleted) */
};

struct maildir_flags {
	unsigned int sys;  /* MAILDIR_FLAG_* */
	uint32_t keywords; /* bit i: keyword letter 'a' + i */
	uint64_t other[4]; /* bit c: any other byte c seen in the info */
};

/* A parsed file name; the views point into the parsed input. */
struct maildir_name {
	struct str base; /* everything before the first ':' */
	bool has_size;   /* ",S=<n>" in the base */
	uint64_t size;
	bool has_vsize; /* ",W=<n>" in the base */
	uint64_t vsize;
	bool has_info; /* ":2," present; any other info is ignored */
	struct maildir_flags flags;
};

/* Parses a file name. Refused (-1): empty, longer than MAILDIR_NAME_MAX,
 * leading '.', '/' or NUL inside, empty base. Fields that do not parse
 * (S= with non-digits or past 2^64-1) just leave has_size false; duplicated
 * flag letters count once; unknown letters go to flags.other. 0 on success. */
int maildir_name_parse(struct str name, struct maildir_name *name_r,
		       struct maildir_error *err);

/* Writes base + ":2," + flags in ASCII order (no info when flags is NULL)
 * into dst. Returns the length, or -1 when the base is not valid (see
 * maildir_name_parse, and no ':'), the name would pass MAILDIR_NAME_MAX or
 * dst is too small. */
int maildir_name_build(struct str base, const struct maildir_flags *flags,
		       char *dst, size_t dstsize);

/* Writes the flag letters (no ":2,") in ASCII order; returns the length
 * or -1 when dst is too small. */
int maildir_flags_format(const struct maildir_flags *flags, char *dst,
			 size_t dstsize);

/* Escapes '/' as \057 and ':' as \072 (Dovecot) and cuts the result at
 * MAILDIR_HOST_MAX bytes, never inside an escape. Returns the length or
 * -1 when dst is too small. */
int maildir_host_escape(struct str host, char *dst, size_t dstsize);

/* The inputs of a new base name. */
struct maildir_uniq {
	struct timespec now;
	uint64_t pid;
	uint64_t counter;
	uint64_t random;
	struct str host; /* raw host name, escaped by the function */
};
/* Writes "<secs>.M<usecs>P<pid>Q<counter>R<random>.<host>" (random as 16
 * hex digits). Returns the length or -1 when it does not fit. */
int maildir_uniq_format(const struct maildir_uniq *u, char *dst,
			size_t dstsize);

/* Generates a new unique base name for this process (the clock, getpid,
 * an atomic counter, arc4random, gethostname). Thread-safe. */
int maildir_uniq_new(char *dst, size_t dstsize);

/* Test hooks: replace the wall clock and the 64-bit random source used for
 * new names and tmp/ ages. NULL restores the real ones. */
void maildir_set_clock(void (*realtime)(struct timespec *ts_r));
void maildir_set_random(uint64_t (*random64)(void));
/* Turns every fsync of this module off (false) or on (true, the default),
 * like Dovecot's mail_fsync=never: for tests and benchmarks only; a node
 * running with it off loses acknowledged mail on a crash. */
void maildir_set_fsync(bool enable);

/* ---- folders ---- */

/* Checks a folder name against the rules at the top. 0 or -1. */
int maildir_folder_name_check(struct str name, struct maildir_error *err);
/* Maps a folder name to its directory: the root for INBOX, root/.Name
 * otherwise. Returns 0 or -1 (bad name, path too long). */
int maildir_folder_path(const char *root, struct str name, char *path_r,
			size_t path_size, struct maildir_error *err);
/* Maps a directory entry of the root (".Name") back to "Name". Returns 0,
 * or -1 when the entry is not a valid folder directory name. */
int maildir_folder_from_dirname(const char *dirname, char *name_r,
				size_t name_size);

/* Makes dir a mailbox: mkdir dir (0700) and its cur/ new/ tmp/, then
 * fsyncs dir and its parent. Returns 1 created, 0 it already was a
 * complete mailbox, -1 error. */
int maildir_create(const char *dir, struct maildir_error *err);
/* Whether dir is a mailbox (has its cur/ directory). */
bool maildir_exists(const char *dir);
/* Creates folder name under root (with "maildirfolder"). 1 created, 0 it
 * exists already (not an error for LMTP autocreate; IMAP CREATE maps it to
 * NO), -1 error. INBOX refused. */
int maildir_folder_create(const char *root, struct str name,
			  struct maildir_error *err);

/* Called once per folder; return 0 to go on, < 0 to stop. */
typedef int maildir_folder_cb(const char *name, void *context);
/* Lists the folders of root (not INBOX), one readdir entry at a time, in
 * directory order. Skipped: entries that are not ".Name" with a valid name,
 * not directories, or without cur/. More than max_folders (0: no limit)
 * gives MAILDIR_ERR_LIMIT. Returns the number listed, or -1. */
int maildir_folder_list(const char *root, unsigned int max_folders,
			maildir_folder_cb *cb, void *context,
			struct maildir_error *err);

/* Removes folder name and everything in it (two levels: files in the
 * folder and in its subdirectories). It is first renamed to a hidden
 * "..mr-delete.*" name so that it vanishes atomically from listings; a
 * crash leaves that hidden directory behind. Children ".Name.*" are not
 * touched (IMAP keeps inferiors). 1 deleted, 0 no such folder, -1 error. */
int maildir_folder_delete(const char *root, struct str name,
			  struct maildir_error *err);

/* Renames folder old_name to new_name and then each child ".old.*" to
 * ".new.*". The folder's own rename is atomic and refuses an existing
 * target; the children follow one by one (a crash in between leaves some
 * children under the old name; they are listed and can be renamed again).
 * Conflicting children are checked before anything moves. Renaming a
 * folder into its own subtree and renaming INBOX are refused (INBOX rename
 * is a job for the IMAP layer). 1 done, 0 no such folder, -1 error. */
int maildir_folder_rename(const char *root, struct str old_name,
			  struct str new_name, struct maildir_error *err);

/* ---- delivery (APPEND, LMTP) ---- */

struct maildir_save;

/* Opens a new file in dir/tmp/ with O_EXCL. max_size 0: no limit.
 * Returns NULL on error. */
struct maildir_save *maildir_save_begin(const char *dir, uint64_t max_size,
					struct maildir_error *err);
/* Appends bytes (buffered). Passing max_size fails with MAILDIR_ERR_TOOBIG
 * and removes the tmp file at once; after any failure every call fails. */
int maildir_save_write(struct maildir_save *s, const void *data, size_t len,
		       struct maildir_error *err);
/* Flushes, fsyncs the file, links it as base,S=<size> into new/ (flags
 * NULL) or as base,S=<size>:2,<flags> into cur/, fsyncs that directory and
 * removes the tmp name. Only then returns 1, with the final file name in
 * name_r (needs MAILDIR_NAME_MAX + 1 bytes). On error the tmp file (and a
 * final name not yet durable) is removed and -1 returned. Frees *s and sets
 * it to NULL either way. */
int maildir_save_finish(struct maildir_save **s,
			const struct maildir_flags *flags, char *name_r,
			size_t name_size, struct maildir_error *err);
/* Removes the tmp file and frees *s; safe on NULL. */
void maildir_save_abort(struct maildir_save **s);

/* begin + write + finish for a message in one buffer. */
int maildir_deliver(const char *dir, const void *data, size_t len,
		    uint64_t max_size, const struct maildir_flags *flags,
		    char *name_r, size_t name_size, struct maildir_error *err);

/* ---- scanning ---- */

struct maildir_entry {
	const char *name; /* file name in cur/ (in new/ when in_new) */
	const struct maildir_name *parsed; /* views into name */
	bool in_new; /* still in new/ (move_new was off) */
	bool moved;  /* was moved from new/ to cur/ by this scan */
};
/* Called once per message; return 0 to go on, < 0 to stop the scan. The
 * entry is valid only during the call. */
typedef int maildir_scan_cb(const struct maildir_entry *e, void *context);

struct maildir_scan_settings {
	bool move_new;        /* rename new/X to cur/X:2, (as Dovecot) */
	uint64_t max_entries; /* 0: no limit; more gives MAILDIR_ERR_LIMIT */
	int64_t tmp_max_age_secs; /* clean tmp/ files older; < 0: do not */
};
struct maildir_scan_stats {
	uint64_t listed;      /* callbacks made */
	uint64_t moved;       /* new/ -> cur/ renames */
	uint64_t vanished;    /* new/ entries gone before we could move them */
	uint64_t skipped;     /* names that do not parse, directories, new/
			       * entries whose cur/ name is taken */
	uint64_t tmp_removed; /* old tmp/ files removed */
};

/* Reads cur/ and then new/, one readdir entry at a time (cur/ first, so a
 * message moved by this scan is reported once). tmp/ is never reported.
 * A new/ entry that another process moved meanwhile is counted as vanished
 * and not reported: the caller's next scan sees it in cur/ (concurrent
 * Maildir readers always need a rescan; the index layer does it). Returns
 * 1, or -1 (stats filled as far as it got). stats may be NULL. */
int maildir_scan(const char *dir, const struct maildir_scan_settings *set,
		 maildir_scan_cb *cb, void *context,
		 struct maildir_scan_stats *stats, struct maildir_error *err);

/* Removes regular files in dir/tmp/ whose mtime and atime are both older
 * than max_age_secs. Returns the number removed, or -1. */
int maildir_tmp_clean(const char *dir, int64_t max_age_secs,
		      struct maildir_error *err);

/* ---- flag changes and expunge (files in cur/) ---- */

/* Renames cur/name to carry flags (rename within cur/, atomic). When
 * cur/name is gone, cur/ is searched for the same base under another info
 * (another process changed its flags) and the rename retried once; our
 * flags replace theirs. The resulting name goes to new_name_r. Returns 1
 * done, 0 expunged (no file with that base), -1 error. */
int maildir_set_flags(const char *dir, const char *name,
		      const struct maildir_flags *flags, char *new_name_r,
		      size_t new_name_size, struct maildir_error *err);

/* Unlinks cur/name (or the file with the same base found in cur/), then
 * fsyncs cur/. Returns 1 removed, 0 already gone, -1 error. */
int maildir_expunge(const char *dir, const char *name,
		    struct maildir_error *err);

/* Looks up the file with this base in dir/sub ("cur" or "new") by reading
 * it one entry at a time. 1 found (name in name_r), 0 not found, -1 error. */
int maildir_find_base(const char *dir, const char *sub, struct str base,
		      char *name_r, size_t name_size,
		      struct maildir_error *err);

/* Size of the file at path as IMAP and POP3 count it (every bare LF as
 * CRLF), read in bounded chunks. 0, or -1 with errno (ENOENT: gone). */
int maildir_file_vsize(const char *path, uint64_t *vsize_r);

/* ---- keywords file ("<index> <name>" lines, Dovecot compatible) ---- */

/* Slot i is keyword letter 'a' + i; "" marks an unused slot. */
struct maildir_keywords {
	char names[MAILDIR_KEYWORDS_MAX][MAILDIR_KEYWORD_NAME_MAX + 1];
};

void maildir_keywords_init(struct maildir_keywords *kw);
/* An IMAP flag-keyword atom: 1..MAILDIR_KEYWORD_NAME_MAX bytes of 0x21-0x7e
 * other than ( ) { ] % * " \ (so no system flag "\Seen"). */
bool maildir_keyword_valid(struct str name);
/* Index of name (exact, case-sensitive match), or -1. */
int maildir_keywords_find(const struct maildir_keywords *kw, struct str name);
/* Index of name, added in the first free slot when missing; -1 when the
 * name is invalid or all 26 slots are taken (MAILDIR_ERR_LIMIT). */
int maildir_keywords_add(struct maildir_keywords *kw, struct str name,
			 struct maildir_error *err);
/* Reads dir/dovecot-keywords line by line (bounded line buffer). Bad
 * lines (index not 0-25, invalid or too long name, an index or name seen
 * before) are skipped. 1 read, 0 no file (kw empty), -1 error. */
int maildir_keywords_read(const char *dir, struct maildir_keywords *kw,
			  struct maildir_error *err);
/* Writes dir/dovecot-keywords atomically: unique tmp name (O_EXCL), fsync,
 * rename, fsync dir. 0 or -1. */
int maildir_keywords_write(const char *dir, const struct maildir_keywords *kw,
			   struct maildir_error *err);

#endif
