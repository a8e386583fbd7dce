#ifndef MR_IMAP_INTERNAL_H
#define MR_IMAP_INTERNAL_H

/*
 * What the files of the IMAP server share (not a public API):
 *   imap_server.c    sessions, I/O, login, dispatch, untagged updates, IDLE
 *   imap_folders.c   LIST LSUB CREATE DELETE RENAME (SUB|UNSUB)SCRIBE STATUS
 *   imap_mailbox.c   SELECT EXAMINE APPEND STORE COPY MOVE EXPUNGE CLOSE
 *                    SEARCH and the session's view of the selected mailbox
 *   imap_fetch.c     FETCH: items, rendering, streamed bodies
 */

#include <stdbool.h>
#include <stdint.h>

#include "auth/auth.h"
#include "backend_settings.h"
#include "buf.h"
#include "conn.h"
#include "imap_parse.h"
#include "log.h"
#include "mailbox.h"
#include "maildir.h"
#include "net.h"
#include "str.h"

#define IMAP_TAG_MAX 200 /* longer tags: untagged BAD */
#define IMAP_IN_BUF_SIZE 8192
/* Output waits in a buffer; FETCH fills it only up to the low mark and
 * continues once the client has read it. */
#define IMAP_OUT_LOW (64 * 1024)
#define IMAP_OUT_MAX (16 * 1024 * 1024)

#define IMAP_CAPABILITY_PREAUTH                                                \
	"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "           \
	"AUTH=PLAIN"
#define IMAP_CAPABILITY_POSTAUTH                                               \
	"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "           \
	"NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE CONDSTORE "      \
	"LIST-EXTENDED LIST-STATUS"

/* One generation of settings (copied from node_settings). */
struct imap_config {
	char *mail_location;
	uint64_t max_line_length;
	uint64_t max_append_size;
	uint64_t idle_timeout_msecs;
	uint64_t idle_notify_msecs;
	uint64_t max_mailboxes;
	uint64_t session_memory_max;
	uint64_t max_bad_commands;
	uint64_t mail_max_userip_connections;
	uint64_t max_messages;
	bool autocreate_special_use;
	struct config_nets trusted; /* login_trusted_networks (owned copy) */
	char master_separator[8];
	unsigned int refs; /* atomic */
};

enum imap_state {
	IMAP_STATE_NOAUTH = 0,
	IMAP_STATE_AUTHING, /* the auth library or a failure delay is pending */
	IMAP_STATE_AUTH,
	IMAP_STATE_SELECTED,
	IMAP_STATE_CLOSING,
};

/* What the next input line is, when it is not a command. */
enum imap_input_mode {
	IMAP_INPUT_COMMAND = 0,
	IMAP_INPUT_SASL, /* AUTHENTICATE continuation */
	IMAP_INPUT_IDLE, /* waiting for DONE */
};

/* One message as this session's client knows it (sequence = index + 1). */
struct imap_view_msg {
	uint32_t uid;
	uint8_t flags;     /* MAILBOX_FLAG_* */
	bool expunged;     /* gone, not yet reported (no EXPUNGE allowed) */
	bool recent;       /* \Recent: this session saw it first */
	uint32_t keywords; /* letters a-z of the mailbox's keywords file */
	uint64_t modseq;
};

/* A change stamp of the selected mailbox: when it is the same as at the
 * last sync, nothing changed and no rescan is needed. */
struct imap_stamp {
	int64_t cur_ns, new_ns, kw_ns, index_ns;
	int64_t log_size;
};

struct imap_fetch_job;
struct mailcache;
struct imap_worker;

struct imap_session {
	struct imap_session *prev, *next;
	struct imap_worker *iw;
	struct imap_config *cfg;
	struct conn *conn;
	struct imap_parser *parser;
	enum imap_state state;
	enum imap_input_mode input_mode;
	struct log_ctx log;
	char session_id[LOG_SESSION_ID_LEN + 1];
	char ip[NET_ADDR_STR_MAX];
	bool trusted; /* from login_trusted_networks: a proxy */
	unsigned int bad_commands;

	uint8_t in[IMAP_IN_BUF_SIZE];
	size_t in_pos, in_len;
	struct buf *out;
	const char *close_reason; /* close once out is written */

	char tag[IMAP_TAG_MAX + 1]; /* of the command running (AUTHENTICATE,
				       IDLE, FETCH) */
	char *user;
	char *userip_key;
	struct owner_ref *owner; /* shared-storage guard (owner.h) */
	struct auth_request *auth_req;
	char *master_user;   /* a master login in progress or done */
	char *master_target; /* the user it logs in as */
	struct net_timer *idle_timer;
	struct net_timer *delay_timer;
	struct net_timer *free_timer;
	struct net_timer *notify_timer; /* IDLE: look for changes */
	char delayed_reply[IMAP_TAG_MAX + 256];

	char root[MAILDIR_PATH_MAX]; /* the user's INBOX Maildir */
	bool condstore;              /* ENABLE CONDSTORE or SELECT (CONDSTORE) */
	bool tls;                    /* the connection is TLS */
	bool starttls_pending;       /* handshake once the OK is written */
	bool literal_pending;        /* a synchronizing literal is coming */
	bool greeted;

	/* selected mailbox */
	struct mailbox *mb;
	struct mailcache *cache; /* parsed data of the selected mailbox */
	char mbox_name[MAILDIR_FOLDER_NAME_MAX + 8];
	char mbox_dir[MAILDIR_PATH_MAX];
	bool readonly;
	struct imap_view_msg *view;
	uint32_t view_count, view_alloc;
	uint32_t uidvalidity;
	uint32_t uidnext;   /* as last reported */
	uint32_t recent_count;
	uint64_t highest_modseq;
	struct maildir_keywords kw;
	struct imap_stamp stamp;
	bool stamp_valid;

	struct imap_fetch_job *fetch; /* streaming a FETCH answer */
	/* Disk work runs on the I/O pool (io_pool.h): while busy, the loop
	 * leaves the session alone (no reads, writes, timers or frees). */
	unsigned int busy;          /* enum imap_busy in imap_server.c */
	struct imap_command busy_cmd;
	_Atomic bool job_running;   /* cleared by the pool thread */
	const char *pending_close;  /* close once the job is done */
	uint64_t commands, fetched_bytes;
};

/* ---- imap_server.c ---- */

/* Appends raw text to the output (the caller adds CRLFs). */
void imap_out(struct imap_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void imap_out_str(struct imap_session *s, struct str text);
/* Appends text as an IMAP string: quoted when it can be, else a literal. */
void imap_out_astring(struct imap_session *s, struct str text);
/* The tagged completion: first the untagged updates (allow_expunge: may
 * EXPUNGE be sent now, RFC 3501 7.4.1), then "<tag> <text>\r\n". */
void imap_done(struct imap_session *s, const char *tag, bool allow_expunge,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Counts a bad command; closes after max_bad_commands. */
void imap_bad_command(struct imap_session *s);
/* Bytes the session holds (for imap_session_memory_max). */
size_t imap_session_memory(const struct imap_session *s);

/* ---- imap_mailbox.c ---- */

/* Syncs the selected mailbox when its stamp changed (force: always) and
 * sends what the client must learn: EXPUNGE (only when allow_expunge),
 * EXISTS, FETCH FLAGS. 0, or -1 when the mailbox is unusable (the session
 * is then closed with a BYE). */
int imap_sync(struct imap_session *s, bool allow_expunge, bool force);
/* Drops the selected mailbox (no expunge). */
void imap_unselect(struct imap_session *s);
/* Flags as "(\Seen kw ...)" into the output (\Recent when recent). */
void imap_out_flags(struct imap_session *s, uint8_t flags, uint32_t keywords);
void imap_out_flags_recent(struct imap_session *s, uint8_t flags,
			   uint32_t keywords, bool recent);
/* Messages with UID >= the mailbox's first unclaimed recent UID (what
 * STATUS RECENT counts), from <dir>/mailring-recent. */
uint32_t imap_recent_first(const char *dir);
/* Parses a flag list (or single flag atom) into system flags and keyword
 * bits of kw (adding names when add_keywords; *kw_changed_r then tells
 * whether the keywords file must be written). false with *error_r. */
bool imap_parse_flags(const struct imap_arg *arg, struct maildir_keywords *kw,
		      bool add_keywords, uint8_t *flags_r, uint32_t *keywords_r,
		      bool *kw_changed_r, const char **error_r);
/* Expands a mailbox name from the client: "INBOX" in any case is INBOX;
 * a trailing separator is dropped. false when invalid. */
bool imap_mailbox_name(struct str name, char *dst, size_t size);
/* Name and directory from an astring argument of cmdname; false after
 * answering BAD (not a string) or NO (invalid name) itself. */
bool imap_arg_mailbox(struct imap_session *s, const char *tag,
		      const char *cmdname, const struct imap_arg *arg,
		      char *name, size_t name_size, char *dir,
		      size_t dir_size);
/* The directory of a mailbox name; false when invalid. */
bool imap_mailbox_dir(const struct imap_session *s, const char *name,
		      char *dir, size_t size);

void imap_cmd_select(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd, bool readonly);
void imap_cmd_append(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd);
void imap_cmd_store(struct imap_session *s, const char *tag,
		    const struct imap_command *cmd, bool uid);
void imap_cmd_copy(struct imap_session *s, const char *tag,
		   const struct imap_command *cmd, bool uid, bool move);
void imap_cmd_expunge(struct imap_session *s, const char *tag,
		      const struct imap_command *cmd, bool uid);
void imap_cmd_close(struct imap_session *s, const char *tag, bool expunge);
void imap_cmd_search(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd, bool uid);
/* Opens the file of uid (following a rename by another session). The fd,
 * or -1 with errno (ENOENT: expunged). */
int imap_open_message(struct imap_session *s, uint32_t uid,
		      struct mailbox_message *msg_r);
/* RFC 3501 date-time ("dd-Mon-yyyy hh:mm:ss +zzzz") to Unix time. */
bool imap_parse_datetime(struct str s, int64_t *unix_r);

/* ---- imap_folders.c ---- */

/* At login: creates the special-use folders that are missing (and
 * subscribes them). */
void imap_folders_autocreate(struct imap_session *s);
void imap_cmd_list(struct imap_session *s, const char *tag,
		   const struct imap_command *cmd, bool lsub);
void imap_cmd_create(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd);
void imap_cmd_delete(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd);
void imap_cmd_rename(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd);
void imap_cmd_subscribe(struct imap_session *s, const char *tag,
			const struct imap_command *cmd, bool subscribe);
void imap_cmd_status(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd);

/* ---- imap_fetch.c ---- */

/* Parses the FETCH and starts the job (s->fetch) or answers an error. */
void imap_cmd_fetch(struct imap_session *s, const char *tag,
		    const struct imap_command *cmd, bool uid);
/* Continues the job: adds output up to IMAP_OUT_LOW; when the job ends it
 * is freed and the tagged answer added. */
void imap_fetch_fill(struct imap_session *s);
void imap_fetch_free(struct imap_fetch_job **job);

#endif
