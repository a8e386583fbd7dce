#ifndef MR_BACKEND_MAILBOX_H
#define MR_BACKEND_MAILBOX_H

/*
 * One mailbox as IMAP and POP3 see it: the Maildir (maildir.h), its UID
 * list (uidlist.h) and its index + log (mailindex.h) tied together into a
 * view of messages by sequence number (1-based, UID order) and by UID.
 *
 * Locking. A writer takes the UID list lock (dir/mailring-uidlist.lock)
 * first and then the index lock (dir/mailring-index.lock), always in this
 * order, and drops both together. Every function below that changes or
 * syncs the mailbox takes both, does its work and releases them; no lock is
 * held between calls, so many sessions can have the mailbox open.
 *
 * Sync (mailbox_open, mailbox_refresh and, before their change, every
 * change function): scan the Maildir (new/ -> cur/, old tmp/ files
 * removed), read the UID list and the index, then:
 *   - UID list missing or corrupt: rebuilt from the names found, keeping
 *     the UIDVALIDITY, UIDNEXT and the UIDs the index still knows (files
 *     are matched to index records by size and internal date (mtime); ties
 *     are paired in name order: a heuristic, the index has no names).
 *   - UID list present: synced to the files (gone -> dropped, new -> next
 *     UIDs in name order); UIDNEXT is raised to the index's, never lower.
 *   - index missing, corrupt, of another UIDVALIDITY, or unable to take a
 *     UID below its UIDNEXT: rebuilt from the Maildir + UID list (flags and
 *     keywords from the file name, size from S= or stat, internal date =
 *     the file's mtime, as Dovecot does for Maildir).
 *   - otherwise reconciled: UIDs whose file is gone -> EXPUNGE entries, new
 *     UIDs -> APPEND entries, flags differing between file name and index
 *     -> FLAGS entries (the file name wins: another process renamed it).
 * Each rebuild is logged with its reason. Any step of any operation can be
 * interrupted (crash, kill -9): the order of writes is file first, then
 * UID list, then index, and the next sync repairs whatever is left.
 *
 * Flags: the five IMAP system flags map to the Maildir letters S R F T D;
 * other letters (P, unknown ones) are kept in the file name untouched.
 * Keywords are the 26 Maildir letters a-z (bit i = 'a' + i), as in the
 * index; mapping them to names (dovecot-keywords) is the caller's.
 *
 * Memory: the view holds one entry per message (UID, file name) plus the
 * UID list and the index in memory, capped by max_messages.
 *
 * Returns: int functions give -1 error (message in *error_r: static or
 * thread-local text valid until the next failing mailbox call of the
 * thread), 0 "not there" where documented, 1 done.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

struct mailbox;

struct mailbox_settings {
	uint32_t max_messages;           /* 0: 1000000 */
	unsigned int lock_timeout_msecs; /* 0: 30000 */
	uint64_t log_rotate_size;        /* 0: MAILINDEX_LOG_ROTATE_DEFAULT */
	bool create;        /* create dir (cur/new/tmp) if missing */
	bool force_rebuild; /* rebuild UID list and index (resync) */
};

/* System flags, the same bits as MAILINDEX_FLAG_*. */
#define MAILBOX_FLAG_SEEN 0x01u
#define MAILBOX_FLAG_ANSWERED 0x02u
#define MAILBOX_FLAG_FLAGGED 0x04u
#define MAILBOX_FLAG_DELETED 0x08u
#define MAILBOX_FLAG_DRAFT 0x10u
#define MAILBOX_FLAGS_MASK 0x1fu
#define MAILBOX_KEYWORDS_MASK 0x03ffffffu

enum mailbox_modify {
	MAILBOX_FLAGS_ADD = 0, /* +FLAGS */
	MAILBOX_FLAGS_REMOVE,  /* -FLAGS */
	MAILBOX_FLAGS_REPLACE, /* FLAGS */
};

struct mailbox_message {
	uint32_t uid;
	uint8_t flags;     /* MAILBOX_FLAG_* */
	uint32_t keywords; /* bit i: keyword letter 'a' + i */
	uint64_t modseq;
	uint64_t size;
	int64_t date;     /* internal date, Unix seconds */
	const char *name; /* file name in cur/; valid until the view
			     changes (any mailbox_* call on mb) */
};

/* Opens (and syncs, see above) the Maildir dir. set may be NULL. 1 and
 * *mb_r, or -1. */
int mailbox_open(const char *dir, const struct mailbox_settings *set,
		 struct mailbox **mb_r, const char **error_r);
/* Frees the view; safe on NULL; *mb becomes NULL. */
void mailbox_close(struct mailbox **mb);
/* Syncs again (changes by other processes become visible; sequence
 * numbers may change). 1 or -1. */
int mailbox_refresh(struct mailbox *mb, const char **error_r);

uint32_t mailbox_count(const struct mailbox *mb);
uint32_t mailbox_uidvalidity(const struct mailbox *mb);
uint32_t mailbox_uidnext(const struct mailbox *mb);
uint64_t mailbox_highest_modseq(const struct mailbox *mb);
/* Message seq (1..count); false out of range. */
bool mailbox_lookup_seq(const struct mailbox *mb, uint32_t seq,
			struct mailbox_message *msg_r);
/* Sequence number of uid, or 0 when absent; msg_r filled when found and
 * not NULL. */
uint32_t mailbox_lookup_uid(const struct mailbox *mb, uint32_t uid,
			    struct mailbox_message *msg_r);

/* Changes uid's flags and keywords (add, remove or replace): renames the
 * file, then writes the index FLAGS entry. The view is synced first, so
 * sequence numbers may change. 1 done (*modseq_r if not NULL; no entry
 * when nothing changed), 0 uid is gone (expunged), -1 error. */
int mailbox_set_flags(struct mailbox *mb, uint32_t uid, uint8_t flags,
		      uint32_t keywords, enum mailbox_modify how,
		      uint64_t *modseq_r, const char **error_r);
/* Removes uid: unlink, index EXPUNGE, UID list. Later sequence numbers
 * move down. 1 done, 0 already gone, -1 error. */
int mailbox_expunge(struct mailbox *mb, uint32_t uid, const char **error_r);
/* Delivers data into cur/ with flags/keywords (durable), sets its mtime to
 * date (the internal date; < 0: now), gives it the next UID (UID list),
 * then appends it to the index. 1 and *uid_r, or -1. max_size 0: none. */
int mailbox_append(struct mailbox *mb, const void *data, size_t len,
		   uint64_t max_size, uint8_t flags, uint32_t keywords,
		   int64_t date, uint32_t *uid_r, const char **error_r);

/* mailbox_append with the message read from fd (its offset to EOF) in
 * bounded chunks: COPY between mailboxes. */
int mailbox_append_fd(struct mailbox *mb, int fd, uint64_t max_size,
		      uint8_t flags, uint32_t keywords, int64_t date,
		      uint32_t *uid_r, const char **error_r);

/* ---- admin entry points (for `mailring-backend resync` / `index dump`) */

/* Rebuilds UID list and index of dir from the Maildir, keeping UIDs (from
 * the UID list, or matched from the index when the list is bad) and flags
 * (from the file names). set may be NULL. 1 or -1. */
int mailbox_resync(const char *dir, const struct mailbox_settings *set,
		   const char **error_r);
/* Prints what the index of dir holds, without locking or repairing:
 *   uidvalidity=V uidnext=N highest_modseq=M messages=C
 *   <seq> <uid> (<flags>) <keyword letters or -> <modseq> <size>
 *     <date as YYYY-MM-DDTHH:MM:SSZ> <base name from the UID list or ->
 * (one line per record). 1, 0 no index, -1 error (index needs a rebuild,
 * write error). */
int mailbox_index_dump(const char *dir, FILE *out, const char **error_r);

#endif
