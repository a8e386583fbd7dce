/*
 * The selected mailbox of an IMAP session: the session's view (what its
 * client knows: sequence numbers, flags), untagged updates, and the
 * commands that change messages.
 *
 * The view is separate from the mailbox layer's own (mailbox.h), which
 * follows the disk at every sync. imap_sync compares the two and tells
 * the client: EXPUNGE only where RFC 3501 7.4.1 allows it (not during
 * FETCH, STORE, SEARCH), otherwise the message stays in the view marked
 * expunged until a later command may report it.
 *
 * Change detection is cheap: a stamp (mtimes of cur/, new/, the keywords
 * file and the index log, and the log's size) is compared before anything
 * is rescanned. A stamp whose times are within the last 2 s is not trusted
 * (two changes in one timestamp tick would look like one), so a busy
 * mailbox is rescanned and a quiet one costs four stat calls.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "imap_internal.h"
#include "imap_search.h"
#include "mime.h"
#include "textmatch.h"
#include "imap_seqset.h"
#include "mailcache.h"
#include "mailindex.h"
#include "fdio.h"
#include "lockfile.h"
#include "xmalloc.h"

#define STAMP_DIRTY_NSECS (2LL * 1000000000LL)
/* What the mailbox layer keeps per message (file entry and name, UID list
 * and index records), for the memory estimate at SELECT. */
#define MAILBOX_BYTES_PER_MESSAGE 256

/* ---- names ---------------------------------------------------------------- */

bool imap_mailbox_name(struct str name, char *dst, size_t size)
{
	if (name.len > 0 && name.p[name.len - 1] == '.')
		name.len--;
	if (name.len == 0)
		return false;
	if (str_eq_nocase(name, STR("INBOX")))
		return str_copy(STR("INBOX"), dst, size);
	/* "inbox.x" is a child of INBOX only in the namespace's case */
	return str_copy(name, dst, size);
}

bool imap_mailbox_dir(const struct imap_session *s, const char *name,
		      char *dir, size_t size)
{
	struct maildir_error merr;

	return maildir_folder_path(s->root, str_cstr(name), dir, size,
				   &merr) == 0;
}

/* ---- flags ---------------------------------------------------------------- */

static const char *const system_flag_names[] = {
	"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft",
};

void imap_out_flags(struct imap_session *s, uint8_t flags, uint32_t keywords)
{
	imap_out_flags_recent(s, flags, keywords, false);
}

void imap_out_flags_recent(struct imap_session *s, uint8_t flags,
			   uint32_t keywords, bool recent)
{
	bool first = !recent;

	imap_out_str(s, recent ? STR("(\\Recent") : STR("("));
	for (unsigned int i = 0; i < 5; i++) {
		if ((flags & (1u << i)) == 0)
			continue;
		imap_out(s, "%s%s", first ? "" : " ", system_flag_names[i]);
		first = false;
	}
	for (unsigned int i = 0; i < MAILDIR_KEYWORDS_MAX; i++) {
		if ((keywords & (1u << i)) == 0 || s->kw.names[i][0] == '\0')
			continue;
		imap_out(s, "%s%s", first ? "" : " ", s->kw.names[i]);
		first = false;
	}
	imap_out_str(s, STR(")"));
}

static bool parse_one_flag(struct str atom, struct maildir_keywords *kw,
			   bool add_keywords, uint8_t *flags, uint32_t *keywords,
			   bool *kw_changed, const char **error_r)
{
	struct maildir_error merr;

	if (atom.len > 0 && atom.p[0] == '\\') {
		for (unsigned int i = 0; i < 5; i++) {
			if (str_eq_nocase(atom, str_cstr(system_flag_names[i]))) {
				*flags |= (uint8_t)(1u << i);
				return true;
			}
		}
		if (str_eq_nocase(atom, STR("\\Recent")))
			return true; /* cannot be set; ignored as Dovecot does */
		*error_r = "Invalid system flag";
		return false;
	}
	if (!maildir_keyword_valid(atom)) {
		*error_r = "Invalid keyword";
		return false;
	}
	int idx = maildir_keywords_find(kw, atom);
	if (idx < 0 && add_keywords) {
		idx = maildir_keywords_add(kw, atom, &merr);
		if (idx < 0) {
			*error_r = "Too many keywords in this mailbox (26)";
			return false;
		}
		*kw_changed = true;
	}
	if (idx >= 0)
		*keywords |= 1u << idx;
	return true;
}

bool imap_parse_flags(const struct imap_arg *arg, struct maildir_keywords *kw,
		      bool add_keywords, uint8_t *flags_r, uint32_t *keywords_r,
		      bool *kw_changed_r, const char **error_r)
{
	*flags_r = 0;
	*keywords_r = 0;
	*kw_changed_r = false;
	if (arg->type == IMAP_ARG_ATOM)
		return parse_one_flag(arg->str, kw, add_keywords, flags_r,
				      keywords_r, kw_changed_r, error_r);
	if (arg->type != IMAP_ARG_LIST) {
		*error_r = "Flags must be a list";
		return false;
	}
	for (size_t i = 0; i < arg->list_count; i++) {
		if (arg->list[i].type != IMAP_ARG_ATOM) {
			*error_r = "Flags list contains non-atoms";
			return false;
		}
		if (!parse_one_flag(arg->list[i].str, kw, add_keywords, flags_r,
				    keywords_r, kw_changed_r, error_r))
			return false;
	}
	return true;
}

/* ---- \Recent ---------------------------------------------------------------- */

/* RFC 3501 2.3.2: a message is \Recent in the one session that first sees
 * it with the mailbox selected read-write. <dir>/mailring-recent holds the
 * first UID not yet claimed by any session ("N\n"); a session claims the
 * UIDs from there up to UIDNEXT under mailring-recent.lock. A missing or
 * unreadable file counts as 1: everything is new (as Maildir's new/ is to
 * Dovecot). Losing the file costs only \Recent flags. */
#define RECENT_FILE "mailring-recent"

uint32_t imap_recent_first(const char *dir)
{
	char path[MAILDIR_PATH_MAX], buf[32];
	uint64_t v;

	if (str_printf(path, sizeof(path), "%s/%s", dir, RECENT_FILE) < 0)
		return 1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return 1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 ||
	    !str_to_u64(str_trim(str_from(buf, (size_t)n)), UINT32_MAX, &v) ||
	    v == 0)
		return 1;
	return (uint32_t)v;
}

/* Claims the unclaimed UIDs below uidnext for this session: returns the
 * first UID that is recent for it (uidnext when none). */
static uint32_t recent_claim(struct imap_session *s, uint32_t uidnext)
{
	char path[MAILDIR_PATH_MAX], tmp[MAILDIR_PATH_MAX], err[256], line[32];

	if (str_printf(path, sizeof(path), "%s/%s.lock", s->mbox_dir,
		       RECENT_FILE) < 0)
		return uidnext;
	int lock = lockfile_take(path, 2000, err, sizeof(err));
	if (lock < 0) {
		log_ctx_warnx(&s->log, "imap: %s", err);
		return uidnext;
	}
	uint32_t first = imap_recent_first(s->mbox_dir);
	if (first < uidnext) {
		int n = str_printf(line, sizeof(line), "%u\n", uidnext);
		if (n > 0 &&
		    str_printf(path, sizeof(path), "%s/%s", s->mbox_dir,
			       RECENT_FILE) >= 0 &&
		    str_printf(tmp, sizeof(tmp), "%s.tmp", path) >= 0) {
			int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC |
					       O_CLOEXEC, 0600);
			if (fd >= 0 && fd_write_all(fd, line, (size_t)n) == 0 &&
			    close(fd) == 0)
				(void)rename(tmp, path);
			else if (fd >= 0)
				close(fd);
		}
	}
	close(lock);
	return first;
}

/* ---- the view ------------------------------------------------------------- */

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

static int64_t path_mtime_ns(const char *dir, const char *name,
			     int64_t *size_r)
{
	char path[MAILDIR_PATH_MAX];
	struct stat st;

	if (str_printf(path, sizeof(path), "%s/%s", dir, name) < 0 ||
	    stat(path, &st) == -1) {
		if (size_r != NULL)
			*size_r = -1;
		return -1;
	}
	if (size_r != NULL)
		*size_r = (int64_t)st.st_size;
	return ts_ns(&st.st_mtim);
}

static void stamp_read(const struct imap_session *s, struct imap_stamp *st)
{
	st->cur_ns = path_mtime_ns(s->mbox_dir, "cur", NULL);
	st->new_ns = path_mtime_ns(s->mbox_dir, "new", NULL);
	st->kw_ns = path_mtime_ns(s->mbox_dir, MAILDIR_KEYWORDS_FILE, NULL);
	st->index_ns = path_mtime_ns(s->mbox_dir, MAILINDEX_LOG_NAME,
				     &st->log_size);
}

static bool stamp_trusted(const struct imap_stamp *st)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t limit = ts_ns(&now) - STAMP_DIRTY_NSECS;
	return st->cur_ns < limit && st->new_ns < limit && st->kw_ns < limit &&
	       st->index_ns < limit;
}

static void view_push(struct imap_session *s, const struct mailbox_message *m,
		      bool recent)
{
	if (s->view_count == s->view_alloc) {
		s->view_alloc = s->view_alloc == 0 ? 64 : s->view_alloc * 2;
		s->view = xreallocarray(s->view, s->view_alloc,
					sizeof(*s->view));
	}
	struct imap_view_msg *v = &s->view[s->view_count++];
	v->uid = m->uid;
	v->flags = m->flags;
	v->keywords = m->keywords;
	v->modseq = m->modseq;
	v->expunged = false;
	v->recent = recent;
	if (recent)
		s->recent_count++;
}

static void keywords_reload(struct imap_session *s)
{
	struct maildir_error merr;

	maildir_keywords_init(&s->kw);
	if (maildir_keywords_read(s->mbox_dir, &s->kw, &merr) < 0)
		log_ctx_warnx(&s->log, "imap: %s: keywords: %s", s->mbox_dir,
			      merr.msg);
}

static void out_fetch_flags(struct imap_session *s, uint32_t seq,
			    const struct imap_view_msg *v)
{
	imap_out(s, "* %u FETCH (UID %u FLAGS ", seq, v->uid);
	imap_out_flags_recent(s, v->flags, v->keywords, v->recent);
	if (s->condstore)
		imap_out(s, " MODSEQ (%llu)", (unsigned long long)v->modseq);
	imap_out_str(s, STR(")\r\n"));
}

static void fatal_mailbox(struct imap_session *s, const char *why)
{
	log_ctx_error(&s->log, "imap: %s: %s", s->mbox_dir, why);
	imap_out(s, "* BYE Internal error occurred. Refer to server log for "
		    "more information.\r\n");
	s->close_reason = "Mailbox error";
}

int imap_sync(struct imap_session *s, bool allow_expunge, bool force)
{
	const char *error;
	struct imap_stamp st;
	struct mailbox_message m;

	if (s->mb == NULL || s->close_reason != NULL)
		return 0;
	stamp_read(s, &st);
	bool same = s->stamp_valid &&
		    memcmp(&st, &s->stamp, sizeof(st)) == 0 &&
		    stamp_trusted(&st);
	if (same && !force && !allow_expunge)
		return 0;
	bool pending = false;
	for (uint32_t i = 0; i < s->view_count && !pending; i++)
		pending = s->view[i].expunged;
	if (same && !force && !pending)
		return 0;
	if (!same || force) {
		if (mailbox_refresh(s->mb, &error) < 0) {
			fatal_mailbox(s, error);
			return -1;
		}
		if (st.kw_ns != s->stamp.kw_ns || !s->stamp_valid)
			keywords_reload(s);
		s->stamp = st;
		s->stamp_valid = true;
	}
	if (mailbox_uidvalidity(s->mb) != s->uidvalidity) {
		log_ctx_info(&s->log, "imap: %s: UIDVALIDITY changed "
			     "(%u -> %u)", s->mbox_name, s->uidvalidity,
			     mailbox_uidvalidity(s->mb));
		imap_out(s, "* BYE Mailbox UIDVALIDITY changed\r\n");
		s->close_reason = "UIDVALIDITY changed";
		return -1;
	}
	uint32_t n = mailbox_count(s->mb), j = 1;
	uint32_t i = 0;
	while (i < s->view_count) {
		struct imap_view_msg *v = &s->view[i];
		bool found = false;
		while (j <= n && mailbox_lookup_seq(s->mb, j, &m) &&
		       m.uid < v->uid)
			j++;
		if (j <= n && mailbox_lookup_seq(s->mb, j, &m) &&
		    m.uid == v->uid) {
			found = true;
			if (!v->expunged &&
			    (m.flags != v->flags || m.keywords != v->keywords)) {
				v->flags = m.flags;
				v->keywords = m.keywords;
				v->modseq = m.modseq;
				out_fetch_flags(s, i + 1, v);
			}
			v->modseq = m.modseq;
			j++;
		}
		if (!found || v->expunged) {
			if (allow_expunge) {
				imap_out(s, "* %u EXPUNGE\r\n", i + 1);
				if (v->recent)
					s->recent_count--;
				memmove(&s->view[i], &s->view[i + 1],
					(s->view_count - i - 1) *
					    sizeof(*s->view));
				s->view_count--;
				continue;
			}
			v->expunged = true;
		}
		i++;
	}
	uint32_t last = s->view_count > 0 ? s->view[s->view_count - 1].uid : 0;
	uint32_t added = 0, recent_from = UINT32_MAX;
	if (n > 0 && mailbox_lookup_seq(s->mb, n, &m) && m.uid > last &&
	    !s->readonly)
		recent_from = recent_claim(s, mailbox_uidnext(s->mb));
	for (uint32_t seq = 1; seq <= n; seq++) {
		if (!mailbox_lookup_seq(s->mb, seq, &m) || m.uid <= last)
			continue;
		view_push(s, &m, m.uid >= recent_from);
		added++;
	}
	/* after the EXPUNGEs: the client counts from what they left */
	if (added > 0)
		imap_out(s, "* %u EXISTS\r\n* %u RECENT\r\n", s->view_count,
			 s->recent_count);
	s->uidnext = mailbox_uidnext(s->mb);
	s->highest_modseq = mailbox_highest_modseq(s->mb);
	return 0;
}

void imap_unselect(struct imap_session *s)
{
	mailcache_close(&s->cache);
	mailbox_close(&s->mb);
	free(s->view);
	s->view = NULL;
	s->view_count = s->view_alloc = 0;
	s->recent_count = 0;
	s->stamp_valid = false;
	s->mbox_name[0] = '\0';
	s->mbox_dir[0] = '\0';
	if (s->state == IMAP_STATE_SELECTED)
		s->state = IMAP_STATE_AUTH;
}

static struct mailbox_settings mailbox_set(const struct imap_session *s)
{
	struct mailbox_settings ms = {
		.max_messages = (uint32_t)s->cfg->max_messages,
	};
	return ms;
}

bool imap_arg_mailbox(struct imap_session *s, const char *tag,
			const char *cmdname, const struct imap_arg *arg,
			char *name, size_t name_size, char *dir,
			size_t dir_size)
{
	struct str raw;
	char san[128];

	if (!imap_arg_get_astring(arg, &raw)) {
		imap_out(s, "%s BAD Error in IMAP command %s: Invalid "
			 "arguments.\r\n", tag, cmdname);
		return false;
	}
	if (!imap_mailbox_name(raw, name, name_size) ||
	    !imap_mailbox_dir(s, name, dir, dir_size)) {
		imap_out(s, "%s NO Invalid mailbox name: %s\r\n", tag,
			 str_sanitize(raw, san, sizeof(san)));
		return false;
	}
	return true;
}

/* FLAGS and PERMANENTFLAGS with the mailbox's keywords: at SELECT and
 * whenever a new keyword appears (RFC 3501 7.2.6). */
static void out_flag_lists(struct imap_session *s)
{
	imap_out(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
	for (unsigned int i = 0; i < MAILDIR_KEYWORDS_MAX; i++) {
		if (s->kw.names[i][0] != '\0')
			imap_out(s, " %s", s->kw.names[i]);
	}
	imap_out(s, ")\r\n");
	if (s->readonly) {
		imap_out(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n");
		return;
	}
	imap_out(s, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted "
		    "\\Seen \\Draft");
	for (unsigned int i = 0; i < MAILDIR_KEYWORDS_MAX; i++) {
		if (s->kw.names[i][0] != '\0')
			imap_out(s, " %s", s->kw.names[i]);
	}
	imap_out(s, " \\*)] Flags permitted.\r\n");
}

void imap_cmd_select(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd, bool readonly)
{
	const char *cmdname = readonly ? "EXAMINE" : "SELECT";
	char name[sizeof(s->mbox_name)], dir[MAILDIR_PATH_MAX];
	const char *error;
	struct mailbox_message m;

	if (cmd->arg_count < 1 || cmd->arg_count > 2) {
		imap_out(s, "%s BAD Error in IMAP command %s: Invalid "
			 "arguments.\r\n", tag, cmdname);
		return;
	}
	if (s->state == IMAP_STATE_SELECTED) {
		imap_unselect(s);
		imap_out(s, "* OK [CLOSED] Previous mailbox closed.\r\n");
	}
	if (!imap_arg_mailbox(s, tag, cmdname, &cmd->args[0], name, sizeof(name),
			 dir, sizeof(dir)))
		return;
	if (cmd->arg_count == 2) {
		const struct imap_arg *opts = &cmd->args[1];
		if (opts->type != IMAP_ARG_LIST) {
			imap_out(s, "%s BAD Error in IMAP command %s: Invalid "
				 "parameters.\r\n", tag, cmdname);
			return;
		}
		for (size_t i = 0; i < opts->list_count; i++) {
			if (opts->list[i].type == IMAP_ARG_ATOM &&
			    str_eq_nocase(opts->list[i].str, STR("CONDSTORE"))) {
				s->condstore = true;
				continue;
			}
			imap_out(s, "%s BAD Error in IMAP command %s: Unknown "
				 "parameter.\r\n", tag, cmdname);
			return;
		}
	}
	if (!maildir_exists(dir)) {
		imap_out(s, "%s NO Mailbox doesn't exist: %s\r\n", tag, name);
		return;
	}
	struct mailbox_settings ms = mailbox_set(s);
	if (mailbox_open(dir, &ms, &s->mb, &error) < 0) {
		log_ctx_error(&s->log, "imap: open %s: %s", dir, error);
		imap_out(s, "%s NO [SERVERBUG] Internal error occurred. Refer "
			 "to server log for more information.\r\n", tag);
		return;
	}
	/* the view and the mailbox layer's tables are the bulk of a
	 * session's memory: refuse what would pass imap_session_memory_max */
	uint64_t need = (uint64_t)mailbox_count(s->mb) *
			(sizeof(*s->view) + MAILBOX_BYTES_PER_MESSAGE);
	if (imap_session_memory(s) + need > s->cfg->session_memory_max) {
		log_ctx_warnx(&s->log, "imap: SELECT %s refused: %u messages "
			      "need about %llu bytes (imap_session_memory_max="
			      "%llu)", name, mailbox_count(s->mb),
			      (unsigned long long)need,
			      (unsigned long long)s->cfg->session_memory_max);
		mailbox_close(&s->mb);
		imap_out(s, "%s NO [LIMIT] Mailbox too large for this "
			 "session's memory (imap_session_memory_max).\r\n",
			 tag);
		return;
	}
	str_copy(str_cstr(name), s->mbox_name, sizeof(s->mbox_name));
	str_copy(str_cstr(dir), s->mbox_dir, sizeof(s->mbox_dir));
	s->readonly = readonly;
	s->state = IMAP_STATE_SELECTED;
	s->uidvalidity = mailbox_uidvalidity(s->mb);
	s->uidnext = mailbox_uidnext(s->mb);
	s->highest_modseq = mailbox_highest_modseq(s->mb);
	/* the cache is derived data: without it FETCH parses every time */
	if (mailcache_open(dir, s->uidvalidity, NULL, &s->cache, &error) < 0)
		log_ctx_warnx(&s->log, "imap: %s: cache: %s", name, error);
	stamp_read(s, &s->stamp);
	s->stamp_valid = true;
	keywords_reload(s);
	uint32_t n = mailbox_count(s->mb), first_unseen = 0;
	s->recent_count = 0;
	/* EXAMINE only looks: the messages stay recent for the next SELECT */
	uint32_t recent_from = readonly ? UINT32_MAX
					: recent_claim(s, s->uidnext);
	for (uint32_t seq = 1; seq <= n; seq++) {
		if (!mailbox_lookup_seq(s->mb, seq, &m))
			continue;
		view_push(s, &m, m.uid >= recent_from);
		if (first_unseen == 0 && (m.flags & MAILBOX_FLAG_SEEN) == 0)
			first_unseen = s->view_count;
	}
	out_flag_lists(s);
	if (readonly) {
		/* what the next SELECT will get as recent */
		uint32_t first = imap_recent_first(dir);
		for (uint32_t i = 0; i < s->view_count; i++)
			s->recent_count += s->view[i].uid >= first;
	}
	imap_out(s, "* %u EXISTS\r\n* %u RECENT\r\n", s->view_count,
		 s->recent_count);
	if (first_unseen != 0)
		imap_out(s, "* OK [UNSEEN %u] First unseen.\r\n", first_unseen);
	imap_out(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n", s->uidvalidity);
	imap_out(s, "* OK [UIDNEXT %u] Predicted next UID\r\n", s->uidnext);
	imap_out(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
		 (unsigned long long)s->highest_modseq);
	log_ctx_debug(&s->log, "imap: %s %s: %u messages", cmdname, name,
		      s->view_count);
	imap_out(s, "%s OK [%s] %s completed.\r\n", tag,
		 readonly ? "READ-ONLY" : "READ-WRITE",
		 readonly ? "Examine" : "Select");
}

/* ---- message sets ----------------------------------------------------- */

/* Marks in sel[] (view indexes) what set names; uid: set is of UIDs.
 * false with a BAD answered when the set is invalid. */
static bool select_set(struct imap_session *s, const char *tag,
		       const char *cmdname, const struct imap_arg *arg,
		       bool uid, bool **sel_r, uint32_t *count_r)
{
	struct imap_seqset *set = NULL;
	const char *error = NULL;

	*sel_r = NULL;
	*count_r = 0;
	if (arg->type != IMAP_ARG_ATOM ||
	    imap_seqset_parse(arg->str, &set, &error) < 0) {
		imap_out(s, "%s BAD Error in IMAP command %s: Invalid %s set"
			 "%s%s\r\n", tag, cmdname, uid ? "uid" : "messageset",
			 error != NULL ? ": " : "", error != NULL ? error : "");
		imap_bad_command(s);
		return false;
	}
	uint32_t star = uid ? (s->view_count > 0
				   ? s->view[s->view_count - 1].uid
				   : 0)
			    : s->view_count;
	if (!uid) {
		/* a sequence number past the end is an error (RFC 3501
		 * 6.4.8 says BAD; Dovecot: "Invalid messageset") */
		if (imap_seqset_max(set, star) > s->view_count) {
			imap_seqset_free(&set);
			imap_out(s, "%s BAD Error in IMAP command %s: Invalid "
				 "messageset\r\n", tag, cmdname);
			return false;
		}
	}
	bool *sel = xcalloc(s->view_count + 1, sizeof(*sel));
	uint32_t count = 0;
	for (uint32_t i = 0; i < s->view_count; i++) {
		uint32_t value = uid ? s->view[i].uid : i + 1;
		if (star > 0 && imap_seqset_contains(set, value, star)) {
			sel[i] = true;
			count++;
		}
	}
	imap_seqset_free(&set);
	*sel_r = sel;
	*count_r = count;
	return true;
}

/* ---- STORE ---------------------------------------------------------------- */

void imap_cmd_store(struct imap_session *s, const char *tag,
		    const struct imap_command *cmd, bool uid)
{
	const char *cmdname = uid ? "UID STORE" : "STORE";
	const struct imap_arg *args = cmd->args;
	size_t argc = cmd->arg_count;
	uint64_t unchangedsince = UINT64_MAX;
	bool *sel = NULL, silent = false, kw_changed = false;
	uint32_t count;
	uint8_t flags;
	uint32_t keywords;
	const char *error;
	struct maildir_error merr;
	enum mailbox_modify how;

	if (argc < 3) {
		imap_out(s, "%s BAD Error in IMAP command %s: Missing "
			 "arguments.\r\n", tag, cmdname);
		return;
	}
	if (s->readonly) {
		imap_done(s, tag, false, "NO Mailbox is read-only.");
		return;
	}
	size_t next = 1;
	if (args[1].type == IMAP_ARG_LIST) {
		const struct imap_arg *l = args[1].list;
		uint64_t v;
		if (args[1].list_count != 2 || l[0].type != IMAP_ARG_ATOM ||
		    !str_eq_nocase(l[0].str, STR("UNCHANGEDSINCE")) ||
		    l[1].type != IMAP_ARG_ATOM ||
		    !str_to_u64(l[1].str, UINT64_MAX - 1, &v)) {
			imap_out(s, "%s BAD Error in IMAP command %s: Invalid "
				 "STORE modifiers.\r\n", tag, cmdname);
			return;
		}
		unchangedsince = v;
		s->condstore = true;
		next = 2;
	}
	if (argc != next + 2 || args[next].type != IMAP_ARG_ATOM) {
		imap_out(s, "%s BAD Error in IMAP command %s: Invalid "
			 "arguments.\r\n", tag, cmdname);
		return;
	}
	struct str item = args[next].str;
	if (item.len > 7 &&
	    str_eq_nocase(str_slice(item, item.len - 7, 7), STR(".SILENT"))) {
		silent = true;
		item.len -= 7;
	}
	if (str_eq_nocase(item, STR("FLAGS")))
		how = MAILBOX_FLAGS_REPLACE;
	else if (str_eq_nocase(item, STR("+FLAGS")))
		how = MAILBOX_FLAGS_ADD;
	else if (str_eq_nocase(item, STR("-FLAGS")))
		how = MAILBOX_FLAGS_REMOVE;
	else {
		imap_out(s, "%s BAD Error in IMAP command %s: Invalid STORE "
			 "item\r\n", tag, cmdname);
		return;
	}
	/* new keywords go into a copy: nothing is written unless the whole
	 * command is valid */
	struct maildir_keywords kw = s->kw;
	if (!imap_parse_flags(&args[next + 1], &kw,
			      how != MAILBOX_FLAGS_REMOVE, &flags, &keywords,
			      &kw_changed, &error)) {
		imap_out(s, "%s BAD Error in IMAP command %s: %s\r\n", tag,
			 cmdname, error);
		return;
	}
	if (!select_set(s, tag, cmdname, &args[0], uid, &sel, &count))
		return;
	if (kw_changed) {
		if (maildir_keywords_write(s->mbox_dir, &kw, &merr) < 0) {
			free(sel);
			log_ctx_error(&s->log, "imap: %s: keywords: %s",
				      s->mbox_dir, merr.msg);
			imap_done(s, tag, false, "NO [SERVERBUG] Internal "
						 "error occurred.");
			return;
		}
		s->kw = kw;
		out_flag_lists(s);
	}
	/* modified: UIDs (or seqs) refused by UNCHANGEDSINCE */
	struct buf *modified = buf_new(64, IMAP_OUT_MAX / 4);
	bool expunged_seen = false, failed = false;
	for (uint32_t i = 0; i < s->view_count && !failed; i++) {
		struct imap_view_msg *v = &s->view[i];
		struct mailbox_message m;
		uint64_t modseq;
		if (!sel[i])
			continue;
		if (v->expunged) {
			expunged_seen = true;
			continue;
		}
		if (v->modseq > unchangedsince) {
			buf_printf(modified, "%s%u", modified->len > 0 ? "," : "",
				   uid ? v->uid : i + 1);
			continue;
		}
		int r = mailbox_set_flags(s->mb, v->uid, flags, keywords, how,
					  &modseq, &error);
		if (r < 0) {
			log_ctx_error(&s->log, "imap: %s: store uid %u: %s",
				      s->mbox_name, v->uid, error);
			failed = true;
			break;
		}
		if (r == 0 || mailbox_lookup_uid(s->mb, v->uid, &m) == 0) {
			expunged_seen = true;
			continue;
		}
		bool changed = m.flags != v->flags || m.keywords != v->keywords;
		v->flags = m.flags;
		v->keywords = m.keywords;
		v->modseq = m.modseq;
		if (!silent || (s->condstore && changed)) {
			imap_out(s, "* %u FETCH (", i + 1);
			if (uid)
				imap_out(s, "UID %u ", v->uid);
			if (!silent) {
				imap_out_str(s, STR("FLAGS "));
				imap_out_flags_recent(s, v->flags, v->keywords,
						      v->recent);
			}
			if (s->condstore)
				imap_out(s, "%sMODSEQ (%llu)",
					 silent ? "" : " ",
					 (unsigned long long)v->modseq);
			imap_out_str(s, STR(")\r\n"));
		}
	}
	free(sel);
	/* the stamp changed by our own renames: sync now so that only other
	 * sessions' changes are reported */
	if (failed)
		imap_done(s, tag, !uid ? false : true,
			  "NO [SERVERBUG] Internal error occurred. Refer to "
			  "server log for more information.");
	else if (modified->len > 0)
		imap_done(s, tag, uid, "OK [MODIFIED %s] Conditional store "
				       "failed.", buf_cstr(modified));
	else if (expunged_seen)
		imap_done(s, tag, uid, "NO [EXPUNGEISSUED] Some of the "
				       "requested messages no longer exist.");
	else
		imap_done(s, tag, uid, "OK Store completed.");
	buf_free(&modified);
}

/* ---- opening message files ------------------------------------------------ */

int imap_open_message(struct imap_session *s, uint32_t uid,
		      struct mailbox_message *msg_r)
{
	char path[MAILDIR_PATH_MAX], found[MAILDIR_NAME_MAX + 1];
	struct maildir_error merr;

	if (mailbox_lookup_uid(s->mb, uid, msg_r) == 0) {
		errno = ENOENT;
		return -1;
	}
	if (str_printf(path, sizeof(path), "%s/cur/%s", s->mbox_dir,
		       msg_r->name) < 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		return fd;
	/* another session renamed it (flags): find it by its base name */
	struct str base = str_from(msg_r->name, strcspn(msg_r->name, ":"));
	if (maildir_find_base(s->mbox_dir, "cur", base, found, sizeof(found),
			      &merr) != 1 ||
	    str_printf(path, sizeof(path), "%s/cur/%s", s->mbox_dir, found) < 0) {
		errno = ENOENT;
		return -1;
	}
	return open(path, O_RDONLY | O_CLOEXEC);
}

/* ---- COPY / MOVE ---------------------------------------------------------- */

static void uidset_add(struct buf *b, uint32_t *run_start, uint32_t *run_end,
		       uint32_t uid, bool flush)
{
	if (!flush && *run_end != 0 && uid == *run_end + 1) {
		*run_end = uid;
		return;
	}
	if (*run_end != 0) {
		if (*run_start == *run_end)
			buf_printf(b, "%s%u", b->len > 0 ? "," : "", *run_start);
		else
			buf_printf(b, "%s%u:%u", b->len > 0 ? "," : "",
				   *run_start, *run_end);
	}
	*run_start = *run_end = flush ? 0 : uid;
}

void imap_cmd_copy(struct imap_session *s, const char *tag,
		   const struct imap_command *cmd, bool uid, bool move)
{
	const char *cmdname = move ? (uid ? "UID MOVE" : "MOVE")
				   : (uid ? "UID COPY" : "COPY");
	char name[sizeof(s->mbox_name)], dir[MAILDIR_PATH_MAX];
	struct maildir_keywords dkw;
	struct maildir_error merr;
	struct mailbox *dest = NULL;
	const char *error;
	bool *sel = NULL;
	uint32_t count;

	if (cmd->arg_count != 2) {
		imap_out(s, "%s BAD Error in IMAP command %s: Invalid "
			 "arguments.\r\n", tag, cmdname);
		return;
	}
	if (move && s->readonly) {
		imap_done(s, tag, false, "NO Mailbox is read-only.");
		return;
	}
	if (!imap_arg_mailbox(s, tag, cmdname, &cmd->args[1], name, sizeof(name),
			 dir, sizeof(dir)))
		return;
	if (!maildir_exists(dir)) {
		imap_done(s, tag, false, "NO [TRYCREATE] Mailbox doesn't "
					 "exist: %s", name);
		return;
	}
	if (!select_set(s, tag, cmdname, &cmd->args[0], uid, &sel, &count))
		return;
	bool same = strcmp(dir, s->mbox_dir) == 0;
	if (same && move) {
		free(sel);
		imap_done(s, tag, uid, "NO Can't move to the same mailbox.");
		return;
	}
	struct mailbox_settings ms = mailbox_set(s);
	if (!same && mailbox_open(dir, &ms, &dest, &error) < 0) {
		free(sel);
		log_ctx_error(&s->log, "imap: open %s: %s", dir, error);
		imap_done(s, tag, false, "NO [SERVERBUG] Internal error "
					 "occurred.");
		return;
	}
	struct mailbox *to = same ? s->mb : dest;
	maildir_keywords_init(&dkw);
	if (!same)
		(void)maildir_keywords_read(dir, &dkw, &merr);
	else
		dkw = s->kw;
	bool dkw_changed = false, failed = false, expunged_seen = false;
	struct buf *src_set = buf_new(64, IMAP_OUT_MAX / 4);
	struct buf *dst_set = buf_new(64, IMAP_OUT_MAX / 4);
	uint32_t ss = 0, se = 0, ds = 0, de = 0, copied = 0;
	uint32_t *moved = xcalloc(count + 1, sizeof(*moved));
	uint32_t *created = xcalloc(count + 1, sizeof(*created));
	for (uint32_t i = 0; i < s->view_count && !failed; i++) {
		struct imap_view_msg *v = &s->view[i];
		struct mailbox_message m;
		uint32_t new_uid;
		if (!sel[i])
			continue;
		if (v->expunged) {
			expunged_seen = true;
			continue;
		}
		int fd = imap_open_message(s, v->uid, &m);
		if (fd < 0) {
			if (errno == ENOENT) {
				expunged_seen = true;
				continue;
			}
			log_ctx_error(&s->log, "imap: %s: open uid %u: %s",
				      s->mbox_name, v->uid, strerror(errno));
			failed = true;
			break;
		}
		/* keywords by name into the destination's letters */
		uint32_t kws = 0;
		for (unsigned int k = 0; k < MAILDIR_KEYWORDS_MAX; k++) {
			if ((m.keywords & (1u << k)) == 0 ||
			    s->kw.names[k][0] == '\0')
				continue;
			struct str kn = str_cstr(s->kw.names[k]);
			int idx = maildir_keywords_find(&dkw, kn);
			if (idx < 0) {
				idx = maildir_keywords_add(&dkw, kn, &merr);
				dkw_changed = dkw_changed || idx >= 0;
			}
			if (idx >= 0)
				kws |= 1u << idx;
		}
		int r = mailbox_append_fd(to, fd, 0, m.flags, kws, m.date,
					  &new_uid, &error);
		close(fd);
		if (r < 0) {
			log_ctx_error(&s->log, "imap: %s: copy uid %u to %s: %s",
				      s->mbox_name, v->uid, name, error);
			failed = true;
			break;
		}
		uidset_add(src_set, &ss, &se, v->uid, false);
		uidset_add(dst_set, &ds, &de, new_uid, false);
		created[copied] = new_uid;
		moved[copied++] = v->uid;
	}
	uidset_add(src_set, &ss, &se, 0, true);
	uidset_add(dst_set, &ds, &de, 0, true);
	free(sel);
	if (dkw_changed && maildir_keywords_write(dir, &dkw, &merr) < 0)
		log_ctx_error(&s->log, "imap: %s: keywords: %s", dir, merr.msg);
	if (same)
		s->kw = dkw;
	if (failed) {
		/* RFC 3501 6.4.7: a failed COPY leaves no copies */
		for (uint32_t k = 0; k < copied; k++) {
			if (mailbox_expunge(to, created[k], &error) < 0)
				log_ctx_error(&s->log, "imap: %s: undo copy of "
					      "uid %u: %s", name, created[k],
					      error);
		}
	}
	free(created);
	uint32_t dest_validity = mailbox_uidvalidity(to);
	mailbox_close(&dest);
	if (failed) {
		imap_done(s, tag, false, "NO [SERVERBUG] Internal error "
					 "occurred. Refer to server log for "
					 "more information.");
	} else if (copied == 0) {
		imap_done(s, tag, uid,
			  expunged_seen ? "NO [EXPUNGEISSUED] Some of the "
					  "requested messages no longer exist."
					: "OK No messages found.");
	} else if (move) {
		imap_out(s, "* OK [COPYUID %u %s %s] Moved UIDs.\r\n",
			 dest_validity, buf_cstr(src_set), buf_cstr(dst_set));
		for (uint32_t k = 0; k < copied; k++) {
			if (mailbox_expunge(s->mb, moved[k], &error) < 0)
				log_ctx_error(&s->log, "imap: %s: expunge uid "
					      "%u after move: %s",
					      s->mbox_name, moved[k], error);
		}
		(void)imap_sync(s, true, true);
		imap_done(s, tag, true, "OK Move completed.");
	} else {
		imap_done(s, tag, uid, "OK [COPYUID %u %s %s] Copy completed.",
			  dest_validity, buf_cstr(src_set), buf_cstr(dst_set));
	}
	free(moved);
	buf_free(&src_set);
	buf_free(&dst_set);
}

/* ---- EXPUNGE / CLOSE ------------------------------------------------------ */

/* Removes the messages with \Deleted (only those in sel[0..sel_len) when
 * sel is given; the caller synced before making sel, so the view cannot
 * grow under it). The flags are read from the mailbox as they are now. */
static int expunge_deleted(struct imap_session *s, const bool *sel,
			   uint32_t sel_len)
{
	const char *error;
	int ret = 0;

	for (uint32_t i = 0; i < s->view_count; i++) {
		struct imap_view_msg *v = &s->view[i];
		struct mailbox_message m;
		if ((sel != NULL && (i >= sel_len || !sel[i])) || v->expunged)
			continue;
		if (mailbox_lookup_uid(s->mb, v->uid, &m) == 0 ||
		    (m.flags & MAILBOX_FLAG_DELETED) == 0)
			continue;
		if (mailbox_expunge(s->mb, v->uid, &error) < 0) {
			log_ctx_error(&s->log, "imap: %s: expunge uid %u: %s",
				      s->mbox_name, v->uid, error);
			ret = -1;
		}
	}
	return ret;
}

/* Lets the cache drop the records of expunged messages (it compacts only
 * when they are half of the file). */
static void cache_expunge_sync(struct imap_session *s)
{
	const char *error;

	if (s->cache == NULL || s->mb == NULL)
		return;
	uint32_t *uids = xcalloc((size_t)s->view_count + 1, sizeof(*uids));
	for (uint32_t i = 0; i < s->view_count; i++)
		uids[i] = s->view[i].uid;
	if (mailcache_expunge_sync(s->cache, uids, s->view_count,
				   mailbox_uidnext(s->mb), &error) < 0)
		log_ctx_warnx(&s->log, "imap: %s: cache: %s", s->mbox_name,
			      error);
	free(uids);
}

void imap_cmd_expunge(struct imap_session *s, const char *tag,
		      const struct imap_command *cmd, bool uid)
{
	bool *sel = NULL;
	uint32_t count;

	if (uid ? cmd->arg_count != 1 : cmd->arg_count != 0) {
		imap_out(s, "%s BAD Error in IMAP command %sEXPUNGE: Invalid "
			 "arguments.\r\n", tag, uid ? "UID " : "");
		return;
	}
	if (s->readonly) {
		imap_done(s, tag, false, "NO Mailbox is read-only.");
		return;
	}
	/* flags as they are now on disk, not as last reported; the set is
	 * made after this sync so the view cannot grow under it */
	if (imap_sync(s, false, true) < 0)
		return;
	uint32_t sel_len = s->view_count;
	if (uid && !select_set(s, tag, "UID EXPUNGE", &cmd->args[0], true, &sel,
			       &count))
		return;
	int r = expunge_deleted(s, sel, sel_len);
	free(sel);
	if (r < 0 && s->close_reason != NULL)
		return;
	(void)imap_sync(s, true, true);
	cache_expunge_sync(s);
	if (r < 0)
		imap_done(s, tag, true, "NO [SERVERBUG] Internal error "
					"occurred.");
	else
		imap_done(s, tag, true, "OK Expunge completed.");
}

void imap_cmd_close(struct imap_session *s, const char *tag, bool expunge)
{
	if (expunge && !s->readonly && imap_sync(s, false, true) == 0)
		(void)expunge_deleted(s, NULL, 0);
	imap_unselect(s);
	imap_out(s, "%s OK %s completed.\r\n", tag,
		 expunge ? "Close" : "Unselect");
}

/* ---- APPEND --------------------------------------------------------------- */

static const char *const month_names[] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

static bool digits(struct str s, size_t from, size_t n, int *value_r)
{
	int v = 0;
	if (from + n > s.len)
		return false;
	for (size_t i = from; i < from + n; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return false;
		v = v * 10 + (s.p[i] - '0');
	}
	*value_r = v;
	return true;
}

/* RFC 3501 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be " d"). */
bool imap_parse_datetime(struct str s, int64_t *unix_r)
{
	int day, year, hh, mm, ss, zh, zm;
	size_t p = 0;
	struct tm tm;

	size_t dlen;
	if (s.len == 26 && s.p[0] == ' ') {
		p = 1;
		dlen = 1;
	} else if (s.len == 26) {
		dlen = 2;
	} else if (s.len == 25) {
		dlen = 1; /* "1-Jan-2020 ..." without the space: lenient */
	} else {
		return false;
	}
	if (!digits(s, p, dlen, &day))
		return false;
	p += dlen;
	if (p + 21 > s.len || s.p[p] != '-' || s.p[p + 4] != '-')
		return false;
	int mon = -1;
	for (int i = 0; i < 12; i++) {
		if (str_eq_nocase(str_from(s.p + p + 1, 3),
				  str_cstr(month_names[i])))
			mon = i;
	}
	if (mon < 0 || !digits(s, p + 5, 4, &year) || s.p[p + 9] != ' ' ||
	    !digits(s, p + 10, 2, &hh) || s.p[p + 12] != ':' ||
	    !digits(s, p + 13, 2, &mm) || s.p[p + 15] != ':' ||
	    !digits(s, p + 16, 2, &ss) || s.p[p + 18] != ' ' ||
	    (s.p[p + 19] != '+' && s.p[p + 19] != '-') ||
	    !digits(s, p + 20, 2, &zh) || !digits(s, p + 22, 2, &zm) ||
	    p + 24 != s.len)
		return false;
	if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || zm > 59 ||
	    year < 1970)
		return false;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon;
	tm.tm_mday = day;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	int64_t t = (int64_t)timegm(&tm);
	int64_t off = (int64_t)(zh * 60 + zm) * 60;
	*unix_r = s.p[p + 19] == '+' ? t - off : t + off;
	return *unix_r >= 0;
}

void imap_cmd_append(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd)
{
	char name[sizeof(s->mbox_name)], dir[MAILDIR_PATH_MAX];
	const struct imap_arg *args = cmd->args;
	size_t argc = cmd->arg_count, i = 1;
	uint8_t flags = 0;
	uint32_t keywords = 0;
	int64_t date = -1;
	struct maildir_keywords kw;
	struct maildir_error merr;
	bool kw_changed = false;
	const char *error;

	if (argc < 2) {
		imap_out(s, "%s BAD Error in IMAP command APPEND: Invalid "
			 "arguments.\r\n", tag);
		return;
	}
	if (!imap_arg_mailbox(s, tag, "APPEND", &args[0], name, sizeof(name), dir,
			 sizeof(dir)))
		return;
	const struct imap_arg *flag_arg = NULL;
	if (i < argc && args[i].type == IMAP_ARG_LIST)
		flag_arg = &args[i++];
	if (i < argc && args[i].type == IMAP_ARG_QUOTED) {
		if (!imap_parse_datetime(args[i].str, &date)) {
			imap_out(s, "%s BAD Error in IMAP command APPEND: "
				 "Invalid date-time\r\n", tag);
			return;
		}
		i++;
	}
	if (i + 1 != argc || args[i].type != IMAP_ARG_LITERAL) {
		imap_out(s, "%s BAD Error in IMAP command APPEND: Invalid "
			 "arguments.\r\n", tag);
		return;
	}
	struct str data = args[i].str;
	if (!maildir_exists(dir)) {
		imap_done(s, tag, false, "NO [TRYCREATE] Mailbox doesn't "
					 "exist: %s", name);
		return;
	}
	if (data.len == 0) {
		imap_done(s, tag, false, "NO Can't save a zero byte message.");
		return;
	}
	bool same = s->mb != NULL && strcmp(dir, s->mbox_dir) == 0;
	maildir_keywords_init(&kw);
	if (same)
		kw = s->kw;
	else
		(void)maildir_keywords_read(dir, &kw, &merr);
	if (flag_arg != NULL &&
	    !imap_parse_flags(flag_arg, &kw, true, &flags, &keywords,
			      &kw_changed, &error)) {
		imap_out(s, "%s BAD Error in IMAP command APPEND: %s\r\n", tag,
			 error);
		return;
	}
	if (kw_changed && maildir_keywords_write(dir, &kw, &merr) < 0) {
		log_ctx_error(&s->log, "imap: %s: keywords: %s", dir, merr.msg);
		imap_done(s, tag, false, "NO [SERVERBUG] Internal error "
					 "occurred.");
		return;
	}
	if (same) {
		s->kw = kw;
		if (kw_changed)
			out_flag_lists(s);
	}
	struct mailbox *mb = NULL;
	struct mailbox_settings ms = mailbox_set(s);
	if (!same && mailbox_open(dir, &ms, &mb, &error) < 0) {
		log_ctx_error(&s->log, "imap: open %s: %s", dir, error);
		imap_done(s, tag, false, "NO [SERVERBUG] Internal error "
					 "occurred.");
		return;
	}
	uint32_t new_uid;
	struct mailbox *to = same ? s->mb : mb;
	int r = mailbox_append(to, data.p, data.len, s->cfg->max_append_size,
			       flags, keywords, date, &new_uid, &error);
	uint32_t validity = mailbox_uidvalidity(to);
	mailbox_close(&mb);
	if (r < 0) {
		log_ctx_error(&s->log, "imap: %s: append: %s", name, error);
		imap_done(s, tag, false, "NO [SERVERBUG] Internal error "
					 "occurred. Refer to server log for "
					 "more information.");
		return;
	}
	log_ctx_debug(&s->log, "imap: %s: appended uid %u (%zu bytes)", name,
		      new_uid, data.len);
	imap_done(s, tag, true, "OK [APPENDUID %u %u] Append completed.",
		  validity, new_uid);
}

/* ---- SEARCH --------------------------------------------------------------- */

/* Header blocks read for SEARCH are cut here (a header of more than 1 MiB
 * is searched in its first 1 MiB). */
#define SEARCH_HEADER_MAX (1024 * 1024)
#define SEARCH_CHUNK 16384

struct search_ctx {
	struct imap_session *s;
	const struct imap_view_msg *v;
	bool loaded, failed;
	int fd;
	struct mailbox_message msg;
	struct mime_message *mime;
	char *header; /* the root header block, raw */
	size_t header_len;
};

static int search_load(struct search_ctx *c)
{
	uint8_t chunk[SEARCH_CHUNK];
	ssize_t n;
	const char *error;

	if (c->loaded)
		return c->failed ? -1 : 0;
	c->loaded = true;
	c->fd = imap_open_message(c->s, c->v->uid, &c->msg);
	if (c->fd < 0) {
		c->failed = true;
		return -1;
	}
	struct mime_parser *p = mime_parser_new(NULL);
	while ((n = read(c->fd, chunk, sizeof(chunk))) > 0)
		(void)mime_parser_feed(p, chunk, (size_t)n);
	if (n < 0 || mime_parser_finish(&p, &c->mime, &error) < 0) {
		mime_parser_free(&p);
		c->failed = true;
		return -1;
	}
	const struct mime_span *h = &c->mime->root->header;
	c->header_len = h->size > SEARCH_HEADER_MAX ? SEARCH_HEADER_MAX
						    : (size_t)h->size;
	c->header = xmalloc(c->header_len + 1);
	n = pread(c->fd, c->header, c->header_len, (off_t)h->offset);
	if (n < 0) {
		c->failed = true;
		return -1;
	}
	c->header_len = (size_t)n;
	return 0;
}

static void search_unload(struct search_ctx *c)
{
	if (c->fd >= 0)
		close(c->fd);
	mime_message_free(&c->mime);
	free(c->header);
	c->header = NULL;
	c->fd = -1;
	c->loaded = c->failed = false;
}

/* Calls cb for each field of a raw header block: its name and its raw
 * value (continuation lines included). Stops when cb returns != 0. */
static int header_each(const char *h, size_t len,
		       int (*cb)(struct str name, struct str value, void *ctx),
		       void *ctx)
{
	size_t i = 0;

	while (i < len) {
		size_t start = i, end;
		/* a field: this line and every following one that starts
		 * with a blank */
		for (;;) {
			while (i < len && h[i] != '\n')
				i++;
			if (i < len)
				i++;
			if (i >= len || (h[i] != ' ' && h[i] != '\t'))
				break;
		}
		end = i;
		struct str field = str_from(h + start, end - start);
		ptrdiff_t colon = str_index(field, ':');
		if (colon <= 0)
			continue; /* the empty line, or garbage */
		struct str name = str_trim(str_from(field.p, (size_t)colon));
		struct str value = str_slice(field, (size_t)colon + 1,
					     field.len - (size_t)colon - 1);
		int r = cb(name, value, ctx);
		if (r != 0)
			return r;
	}
	return 0;
}

struct header_match {
	struct str field; /* empty: any field */
	const struct textmatch_pattern *pat;
	struct buf *decoded;
};

static int header_match_cb(struct str name, struct str value, void *context)
{
	struct header_match *hm = context;

	if (hm->field.len > 0 && !str_eq_nocase(name, hm->field))
		return 0;
	buf_reset(hm->decoded);
	(void)mime_header_decode(value, hm->decoded);
	/* runs of blanks (a fold leaves SP+TAB) count as one space, as in
	 * Dovecot, so a phrase matches across a folded line */
	uint8_t *d = hm->decoded->data;
	size_t w = 0;
	for (size_t r = 0; r < hm->decoded->len; r++) {
		bool blank = d[r] == ' ' || d[r] == '\t' || d[r] == '\r' ||
			     d[r] == '\n';
		if (blank && w > 0 && d[w - 1] == ' ')
			continue;
		d[w++] = blank ? ' ' : d[r];
	}
	hm->decoded->len = w;
	struct str text = str_trim(buf_str(hm->decoded));
	if (hm->field.len == 0) {
		/* TEXT: the field's name counts as text too */
		if (textmatch_contains(hm->pat, name))
			return 1;
	}
	return textmatch_contains(hm->pat, text) ? 1 : 0;
}

static bool src_has_keyword(void *context, struct str name)
{
	struct search_ctx *c = context;
	const struct maildir_keywords *kw = &c->s->kw;

	for (unsigned int i = 0; i < MAILDIR_KEYWORDS_MAX; i++) {
		if (kw->names[i][0] != '\0' &&
		    str_eq_nocase(name, str_cstr(kw->names[i])))
			return (c->v->keywords & (1u << i)) != 0;
	}
	return false;
}

static int src_header_contains(void *context, struct str field,
			       const struct textmatch_pattern *pat)
{
	struct search_ctx *c = context;

	if (search_load(c) < 0)
		return -1;
	struct header_match hm = {
		.field = field,
		.pat = pat,
		.decoded = buf_new(256, SEARCH_HEADER_MAX * 2),
	};
	int r = header_each(c->header, c->header_len, header_match_cb, &hm);
	buf_free(&hm.decoded);
	return r > 0 ? 1 : 0;
}

struct body_match {
	struct textmatch m;
	bool found;
};

static int body_match_cb(const void *data, size_t len, void *context)
{
	struct body_match *bm = context;

	if (textmatch_feed(&bm->m, data, len)) {
		bm->found = true;
		return -1; /* stop */
	}
	return 0;
}

/* Streams the decoded body of part (and of its children) through the
 * matcher. 1 found, 0 not, -1 read error. */
static int search_part(struct search_ctx *c, const struct mime_part *part,
		       const struct textmatch_pattern *pat)
{
	uint8_t chunk[SEARCH_CHUNK];

	if (part->children != NULL) {
		for (const struct mime_part *ch = part->children; ch != NULL;
		     ch = ch->next) {
			int r = search_part(c, ch, pat);
			if (r != 0)
				return r;
		}
		return 0;
	}
	if (!mime_part_searchable(part))
		return 0;
	struct body_match bm = { .found = false };
	textmatch_init(&bm.m, pat);
	struct mime_decoder *d = mime_decoder_new_part(part, body_match_cb, &bm);
	uint64_t off = part->body.offset, left = part->body.size;
	while (left > 0 && !bm.found) {
		size_t want = left < sizeof(chunk) ? (size_t)left : sizeof(chunk);
		ssize_t n = pread(c->fd, chunk, want, (off_t)off);
		if (n < 0) {
			mime_decoder_free(&d);
			return -1;
		}
		if (n == 0)
			break;
		off += (uint64_t)n;
		left -= (uint64_t)n;
		if (mime_decoder_feed(d, chunk, (size_t)n) < 0)
			break;
	}
	if (!bm.found)
		(void)mime_decoder_finish(d);
	mime_decoder_free(&d);
	if (!bm.found)
		bm.found = textmatch_finish(&bm.m);
	return bm.found ? 1 : 0;
}

static int src_body_contains(void *context,
			     const struct textmatch_pattern *pat,
			     bool include_headers)
{
	struct search_ctx *c = context;

	if (search_load(c) < 0)
		return -1;
	if (include_headers &&
	    src_header_contains(context, STR(""), pat) == 1)
		return 1;
	return search_part(c, c->mime->root, pat);
}

static int src_sent_date(void *context, int64_t *unix_r, int *tz_min_r)
{
	struct search_ctx *c = context;
	struct mailcache *cache = c->s->cache;
	const char *error;
	uint8_t enc[MAILCACHE_SENT_DATE_SIZE];
	int64_t t;
	int32_t tz;

	if (cache != NULL) {
		struct buf *b = buf_new(MAILCACHE_SENT_DATE_SIZE,
					MAILCACHE_SENT_DATE_SIZE);
		int r = mailcache_lookup(cache, c->v->uid, MAILCACHE_SENT_DATE,
					 b, &error);
		int ok = r == 1 ? mailcache_sent_date_decode(b->data, b->len,
							     &t, &tz)
				: -1;
		buf_free(&b);
		if (r == 1 && ok >= 0) {
			*unix_r = t;
			*tz_min_r = tz;
			return 1;
		}
	}
	if (search_load(c) < 0)
		return -1;
	const struct mime_envelope *env = c->mime->root->envelope;
	if (env == NULL || env->date.p == NULL)
		return 0;
	int tzi;
	if (mime_date_parse(env->date, &t, &tzi) != 1)
		return 0;
	*unix_r = t;
	*tz_min_r = tzi;
	if (cache != NULL) {
		mailcache_sent_date_encode(t, tzi, enc);
		(void)mailcache_add(cache, c->v->uid, MAILCACHE_SENT_DATE, enc,
				    sizeof(enc), &error);
	}
	return 1;
}

static const struct imap_search_source search_source = {
	.has_keyword = src_has_keyword,
	.header_contains = src_header_contains,
	.body_contains = src_body_contains,
	.sent_date = src_sent_date,
};

void imap_cmd_search(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd, bool uid)
{
	const char *cmdname = uid ? "UID SEARCH" : "SEARCH";
	const struct imap_search_parse_settings set = { .allow_modseq = true };
	struct imap_search *prog = NULL;
	const char *error = NULL;

	enum imap_search_parse_result pr =
	    imap_search_parse(cmd->args, cmd->arg_count, &set, &prog, &error);
	if (pr == IMAP_SEARCH_PARSE_BADCHARSET) {
		imap_done(s, tag, uid, "NO [BADCHARSET (UTF-8 US-ASCII)] %s",
			  error);
		return;
	}
	if (pr != IMAP_SEARCH_PARSE_OK) {
		imap_out(s, "%s BAD Error in IMAP command %s: %s\r\n", tag,
			 cmdname, error != NULL ? error : "Invalid arguments");
		imap_bad_command(s);
		return;
	}
	uint64_t max_key;
	bool modseq = imap_search_uses_modseq(prog, &max_key);
	if (modseq)
		s->condstore = true;
	uint32_t max_uid = s->view_count > 0 ? s->view[s->view_count - 1].uid
					     : 0;
	uint64_t highest = 0;
	bool failed = false;
	imap_out_str(s, STR("* SEARCH"));
	for (uint32_t i = 0; i < s->view_count && !failed; i++) {
		const struct imap_view_msg *v = &s->view[i];
		if (v->expunged)
			continue;
		struct mailbox_message m;
		if (mailbox_lookup_uid(s->mb, v->uid, &m) == 0)
			continue;
		struct imap_search_message sm = {
			.seq = i + 1,
			.uid = v->uid,
			.flags = v->flags,
			.recent = v->recent,
			.size = m.size,
			.internal_date = m.date,
			.internal_tz_min = 0,
			.modseq = v->modseq,
			.max_seq = s->view_count,
			.max_uid = max_uid,
		};
		struct search_ctx c = { .s = s, .v = v, .fd = -1 };
		int r = imap_search_match(prog, &sm, &search_source, &c);
		search_unload(&c);
		if (r < 0) {
			if (errno == ENOENT)
				continue; /* expunged meanwhile */
			failed = true;
			break;
		}
		if (r == 1) {
			imap_out(s, " %u", uid ? v->uid : i + 1);
			if (v->modseq > highest)
				highest = v->modseq;
		}
	}
	if (modseq && highest > 0)
		imap_out(s, " (MODSEQ %llu)", (unsigned long long)highest);
	imap_out_str(s, STR("\r\n"));
	imap_search_free(&prog);
	if (failed) {
		log_ctx_error(&s->log, "imap: %s: SEARCH could not read a "
			      "message: %s", s->mbox_name, strerror(errno));
		imap_done(s, tag, uid, "NO [SERVERBUG] Internal error "
				       "occurred. Refer to server log for "
				       "more information.");
		return;
	}
	imap_done(s, tag, uid, "OK Search completed.");
}
