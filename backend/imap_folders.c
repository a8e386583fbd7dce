/*
 * IMAP folder commands over the user's Maildir++ tree: LIST (with the
 * LIST-EXTENDED selection and return options of RFC 5258, SPECIAL-USE of
 * RFC 6154 and LIST-STATUS of RFC 5819), LSUB, CREATE, DELETE, RENAME,
 * SUBSCRIBE, UNSUBSCRIBE and STATUS.
 *
 * The hierarchy separator is '.' (Maildir++), the namespace is personal
 * with an empty prefix, INBOX is the root directory. A folder "a.b" may
 * exist without "a": LIST shows "a" as \Noselect \HasChildren, as Dovecot
 * does for Maildir++.
 *
 * Subscriptions are one name per line in <root>/subscriptions, replaced
 * atomically (tmp file, fsync, rename) on every change.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "lockfile.h"
#include "imap_internal.h"
#include "xmalloc.h"

#define SUBSCRIPTIONS_FILE "subscriptions"

/* tmp names: pid + a counter (session ids may hold '/') */
static atomic_ulong subs_tmp_seq;
#define SUBSCRIPTIONS_MAX_BYTES (4 * 1024 * 1024)

static const struct {
	const char *name, *attr;
} special_use[] = {
	{ "Drafts", "\\Drafts" }, { "Sent", "\\Sent" },
	{ "Trash", "\\Trash" },   { "Junk", "\\Junk" },
	{ "Archive", "\\Archive" },
};
#define SPECIAL_USE_COUNT (sizeof(special_use) / sizeof(special_use[0]))

static const char *special_use_attr(const char *name)
{
	for (size_t i = 0; i < SPECIAL_USE_COUNT; i++) {
		if (strcmp(name, special_use[i].name) == 0)
			return special_use[i].attr;
	}
	return NULL;
}

/* ---- a list of names ------------------------------------------------------ */

struct names {
	char **v;
	size_t count, alloc;
};

static void names_add(struct names *n, const char *name)
{
	if (n->count == n->alloc) {
		n->alloc = n->alloc == 0 ? 16 : n->alloc * 2;
		n->v = xreallocarray(n->v, n->alloc, sizeof(*n->v));
	}
	n->v[n->count++] = xstrdup(name);
}

static bool names_has(const struct names *n, const char *name)
{
	for (size_t i = 0; i < n->count; i++) {
		if (strcmp(n->v[i], name) == 0)
			return true;
	}
	return false;
}

static void names_free(struct names *n)
{
	for (size_t i = 0; i < n->count; i++)
		free(n->v[i]);
	free(n->v);
	memset(n, 0, sizeof(*n));
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int folder_cb(const char *name, void *context)
{
	names_add(context, name);
	return 0;
}

/* Every folder (not INBOX), sorted. -1 on error (logged). */
static int folders_read(struct imap_session *s, struct names *out)
{
	struct maildir_error merr;

	if (maildir_folder_list(s->root, (unsigned int)s->cfg->max_mailboxes,
				folder_cb, out, &merr) < 0 &&
	    merr.kind != MAILDIR_ERR_LIMIT) {
		log_ctx_error(&s->log, "imap: list %s: %s", s->root, merr.msg);
		return -1;
	}
	if (out->count > 1)
		qsort(out->v, out->count, sizeof(*out->v), name_cmp);
	return 0;
}

/* ---- subscriptions -------------------------------------------------------- */

/* Entries the file may hold: every folder and some spare for names that
 * do not exist (RFC 3501 allows subscribing those). */
static size_t subs_max(const struct imap_session *s)
{
	return (size_t)s->cfg->max_mailboxes + 100;
}

static int subs_read(struct imap_session *s, struct names *out)
{
	char path[MAILDIR_PATH_MAX], line[MAILDIR_FOLDER_NAME_MAX + 8];
	size_t used = 0, total = 0;
	bool skip = false;
	char chunk[4096];
	ssize_t n;

	if (str_printf(path, sizeof(path), "%s/%s", s->root,
		       SUBSCRIPTIONS_FILE) < 0)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return errno == ENOENT ? 0 : -1;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		total += (size_t)n;
		if (total > SUBSCRIPTIONS_MAX_BYTES)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (chunk[i] != '\n') {
				if (used + 1 >= sizeof(line))
					skip = true;
				else
					line[used++] = chunk[i];
				continue;
			}
			line[used] = '\0';
			if (!skip && used > 0 && out->count < subs_max(s) &&
			    !names_has(out, line))
				names_add(out, line);
			used = 0;
			skip = false;
		}
	}
	close(fd);
	return 0;
}

static int subs_write(struct imap_session *s, const struct names *subs)
{
	char path[MAILDIR_PATH_MAX], tmp[MAILDIR_PATH_MAX];

	if (str_printf(path, sizeof(path), "%s/%s", s->root,
		       SUBSCRIPTIONS_FILE) < 0 ||
	    str_printf(tmp, sizeof(tmp), "%s/%s.tmp.%ld.%lu", s->root,
		       SUBSCRIPTIONS_FILE, (long)getpid(),
		       (unsigned long)atomic_fetch_add(&subs_tmp_seq, 1)) < 0)
		return -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	for (size_t i = 0; i < subs->count; i++) {
		if (fd_write_all(fd, subs->v[i], strlen(subs->v[i])) == -1 ||
		    fd_write_all(fd, "\n", 1) == -1) {
			close(fd);
			unlink(tmp);
			return -1;
		}
	}
	if (fsync(fd) == -1 || close(fd) == -1 || rename(tmp, path) == -1) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Adds or removes name (and, with children, "name.*" renamed to
 * new_prefix). */
/* Read-modify-write of the file under <root>/subscriptions.lock, so that
 * sessions on other threads or nodes do not lose each other's changes.
 * The fd to close, or -1 (logged). */
static int subs_lock(struct imap_session *s)
{
	char path[MAILDIR_PATH_MAX], err[256];

	if (str_printf(path, sizeof(path), "%s/%s.lock", s->root,
		       SUBSCRIPTIONS_FILE) < 0)
		return -1;
	int fd = lockfile_take(path, 5000, err, sizeof(err));
	if (fd < 0)
		log_ctx_error(&s->log, "imap: %s", err);
	return fd;
}

static int subs_change(struct imap_session *s, const char *name, bool add)
{
	struct names subs = { 0 };
	int ret = 0;
	int lock = subs_lock(s);

	if (lock < 0)
		return -1;
	if (subs_read(s, &subs) < 0) {
		names_free(&subs);
		close(lock);
		return -1;
	}
	bool has = names_has(&subs, name);
	if (add && !has && subs.count >= subs_max(s)) {
		names_free(&subs);
		close(lock);
		return -2;
	}
	if (add && !has) {
		names_add(&subs, name);
		ret = subs_write(s, &subs);
	} else if (!add && has) {
		size_t k = 0;
		for (size_t i = 0; i < subs.count; i++) {
			if (strcmp(subs.v[i], name) == 0)
				free(subs.v[i]);
			else
				subs.v[k++] = subs.v[i];
		}
		subs.count = k;
		ret = subs_write(s, &subs);
	}
	names_free(&subs);
	close(lock);
	return ret;
}

static void subs_rename(struct imap_session *s, const char *old_name,
			const char *new_name)
{
	struct names subs = { 0 };
	size_t olen = strlen(old_name);
	bool changed = false;
	int lock = subs_lock(s);

	if (lock < 0)
		return;
	if (subs_read(s, &subs) < 0) {
		names_free(&subs);
		close(lock);
		return;
	}
	for (size_t i = 0; i < subs.count; i++) {
		const char *n = subs.v[i];
		if (strncmp(n, old_name, olen) != 0 ||
		    (n[olen] != '\0' && n[olen] != '.'))
			continue;
		char renamed[MAILDIR_FOLDER_NAME_MAX + 8];
		if (str_printf(renamed, sizeof(renamed), "%s%s", new_name,
			       n + olen) < 0)
			continue;
		free(subs.v[i]);
		subs.v[i] = xstrdup(renamed);
		changed = true;
	}
	if (changed && subs_write(s, &subs) < 0)
		log_ctx_warn(&s->log, "imap: %s/%s", s->root,
			     SUBSCRIPTIONS_FILE);
	names_free(&subs);
	close(lock);
}

void imap_folders_autocreate(struct imap_session *s)
{
	struct maildir_error merr;

	for (size_t i = 0; i < SPECIAL_USE_COUNT; i++) {
		int r = maildir_folder_create(
		    s->root, str_cstr(special_use[i].name), &merr);
		if (r < 0) {
			log_ctx_warnx(&s->log, "imap: autocreate %s: %s",
				      special_use[i].name, merr.msg);
			continue;
		}
		if (r == 1 && subs_change(s, special_use[i].name, true) < 0)
			log_ctx_warn(&s->log, "imap: subscribe %s",
				     special_use[i].name);
	}
}

/* ---- pattern matching ----------------------------------------------------- */

/* Patterns and names longer than this do not match (names are shorter). */
#define LIST_PATTERN_MAX 1024
#define LIST_NAME_MAX (MAILDIR_FOLDER_NAME_MAX + 8)

/* RFC 3501 6.3.8: '*' matches anything, '%' anything but the separator.
 * Dynamic programming over one row: O(pattern x name) whatever the
 * wildcards (a backtracking matcher is exponential in them, which a
 * client could use to pin a thread). */
static bool pattern_match(const char *pat, const char *name)
{
	bool row[LIST_NAME_MAX + 1];
	size_t nlen = strlen(name);

	if (nlen > LIST_NAME_MAX || strlen(pat) > LIST_PATTERN_MAX)
		return false;
	/* row[j]: the pattern so far matches name[0..j) */
	row[0] = true;
	for (size_t j = 1; j <= nlen; j++)
		row[j] = false;
	for (const char *p = pat; *p != '\0'; p++) {
		if (*p == '*' || *p == '%') {
			bool star = *p == '*';
			/* row[0] stays: a wildcard matches the empty string */
			for (size_t j = 1; j <= nlen; j++)
				row[j] = row[j] ||
					 (row[j - 1] &&
					  (star || name[j - 1] != '.'));
			continue;
		}
		for (size_t j = nlen; j >= 1; j--)
			row[j] = row[j - 1] && name[j - 1] == *p;
		row[0] = false;
	}
	return row[nlen];
}

/* INBOX is matched case-insensitively (also as the first component). */
static bool list_match(const char *pat, const char *name)
{
	char fixed[2 * MAILDIR_FOLDER_NAME_MAX + 16];

	if (strncmp(name, "INBOX", 5) == 0 && strncasecmp(pat, "INBOX", 5) == 0 &&
	    str_printf(fixed, sizeof(fixed), "INBOX%s", pat + 5) >= 0)
		return pattern_match(fixed, name);
	return pattern_match(pat, name);
}

static void out_name(struct imap_session *s, const char *name)
{
	bool atom = name[0] != '\0';
	for (const char *p = name; *p != '\0' && atom; p++) {
		unsigned char c = (unsigned char)*p;
		atom = c > 0x20 && c < 0x7f && strchr("(){ %*\"\\]", c) == NULL;
	}
	if (atom)
		imap_out_str(s, str_cstr(name));
	else
		imap_out_astring(s, str_cstr(name));
}

/* ---- STATUS --------------------------------------------------------------- */

enum status_items {
	ST_MESSAGES = 0x01,
	ST_RECENT = 0x02,
	ST_UIDNEXT = 0x04,
	ST_UIDVALIDITY = 0x08,
	ST_UNSEEN = 0x10,
	ST_HIGHESTMODSEQ = 0x20,
};

static bool parse_status_items(const struct imap_arg *arg, unsigned int *r)
{
	static const struct {
		const char *name;
		unsigned int bit;
	} items[] = {
		{ "MESSAGES", ST_MESSAGES },	 { "RECENT", ST_RECENT },
		{ "UIDNEXT", ST_UIDNEXT },	 { "UIDVALIDITY", ST_UIDVALIDITY },
		{ "UNSEEN", ST_UNSEEN },	 { "HIGHESTMODSEQ", ST_HIGHESTMODSEQ },
	};
	*r = 0;
	if (arg->type != IMAP_ARG_LIST || arg->list_count == 0)
		return false;
	for (size_t i = 0; i < arg->list_count; i++) {
		bool found = false;
		if (arg->list[i].type != IMAP_ARG_ATOM)
			return false;
		for (size_t k = 0; k < sizeof(items) / sizeof(items[0]); k++) {
			if (str_eq_nocase(arg->list[i].str,
					  str_cstr(items[k].name))) {
				*r |= items[k].bit;
				found = true;
			}
		}
		if (!found)
			return false;
	}
	return true;
}

/* "* STATUS name (...)" for the folder at dir. -1 when it cannot be
 * opened (logged). */
static int out_status(struct imap_session *s, const char *name,
		      const char *dir, unsigned int items)
{
	struct mailbox *mb = NULL;
	const char *error;
	struct mailbox_message m;
	struct mailbox_settings ms = {
		.max_messages = (uint32_t)s->cfg->max_messages,
	};

	if (mailbox_open(dir, &ms, &mb, &error) < 0) {
		log_ctx_error(&s->log, "imap: status %s: %s", dir, error);
		return -1;
	}
	uint32_t n = mailbox_count(mb), unseen = 0;
	if ((items & ST_UNSEEN) != 0) {
		for (uint32_t seq = 1; seq <= n; seq++) {
			if (mailbox_lookup_seq(mb, seq, &m) &&
			    (m.flags & MAILBOX_FLAG_SEEN) == 0)
				unseen++;
		}
	}
	imap_out_str(s, STR("* STATUS "));
	out_name(s, name);
	imap_out_str(s, STR(" ("));
	const char *sep = "";
	if (items & ST_MESSAGES) {
		imap_out(s, "%sMESSAGES %u", sep, n);
		sep = " ";
	}
	if (items & ST_RECENT) {
		uint32_t first = imap_recent_first(dir), recent = 0;
		for (uint32_t seq = 1; seq <= n; seq++) {
			if (mailbox_lookup_seq(mb, seq, &m) && m.uid >= first)
				recent++;
		}
		imap_out(s, "%sRECENT %u", sep, recent);
		sep = " ";
	}
	if (items & ST_UIDNEXT) {
		imap_out(s, "%sUIDNEXT %u", sep, mailbox_uidnext(mb));
		sep = " ";
	}
	if (items & ST_UIDVALIDITY) {
		imap_out(s, "%sUIDVALIDITY %u", sep, mailbox_uidvalidity(mb));
		sep = " ";
	}
	if (items & ST_UNSEEN) {
		imap_out(s, "%sUNSEEN %u", sep, unseen);
		sep = " ";
	}
	if (items & ST_HIGHESTMODSEQ)
		imap_out(s, "%sHIGHESTMODSEQ %llu", sep,
			 (unsigned long long)mailbox_highest_modseq(mb));
	imap_out_str(s, STR(")\r\n"));
	mailbox_close(&mb);
	return 0;
}

void imap_cmd_status(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd)
{
	char name[MAILDIR_FOLDER_NAME_MAX + 8], dir[MAILDIR_PATH_MAX];
	unsigned int items;

	if (cmd->arg_count != 2 || !parse_status_items(&cmd->args[1], &items)) {
		imap_out(s, "%s BAD Error in IMAP command STATUS: Invalid "
			 "arguments.\r\n", tag);
		return;
	}
	if (!imap_arg_mailbox(s, tag, "STATUS", &cmd->args[0], name, sizeof(name), dir,
		      sizeof(dir)))
		return;
	if (!maildir_exists(dir)) {
		imap_done(s, tag, true, "NO Mailbox doesn't exist: %s", name);
		return;
	}
	if (out_status(s, name, dir, items) < 0) {
		imap_done(s, tag, true, "NO [SERVERBUG] Internal error "
					"occurred.");
		return;
	}
	imap_done(s, tag, true, "OK Status completed.");
}

/* ---- LIST / LSUB ---------------------------------------------------------- */

struct list_opts {
	bool subscribed_only;   /* selection SUBSCRIBED */
	bool special_use_only;  /* selection SPECIAL-USE */
	bool ret_subscribed;
	bool ret_special_use;
	unsigned int ret_status; /* RETURN (STATUS (...)) items */
};

static bool parse_list_opts(const struct imap_arg *arg, bool selection,
			    struct list_opts *o)
{
	if (arg->type != IMAP_ARG_LIST)
		return false;
	for (size_t i = 0; i < arg->list_count; i++) {
		const struct imap_arg *a = &arg->list[i];
		if (a->type != IMAP_ARG_ATOM)
			return false;
		struct str w = a->str;
		if (str_eq_nocase(w, STR("SUBSCRIBED"))) {
			if (selection)
				o->subscribed_only = true;
			o->ret_subscribed = true;
		} else if (str_eq_nocase(w, STR("SPECIAL-USE"))) {
			if (selection)
				o->special_use_only = true;
			else
				o->ret_special_use = true;
		} else if (str_eq_nocase(w, STR("REMOTE")) ||
			   str_eq_nocase(w, STR("RECURSIVEMATCH")) ||
			   str_eq_nocase(w, STR("CHILDREN"))) {
			/* no remote mailboxes; children are always sent */
		} else if (!selection && str_eq_nocase(w, STR("STATUS")) &&
			   i + 1 < arg->list_count) {
			if (!parse_status_items(&arg->list[++i],
						&o->ret_status))
				return false;
		} else {
			return false;
		}
	}
	return true;
}

static bool has_children(const struct names *folders, const char *name)
{
	size_t len = strlen(name);
	bool inbox = strcmp(name, "INBOX") == 0;

	for (size_t i = 0; i < folders->count; i++) {
		const char *f = folders->v[i];
		if (inbox ? strncmp(f, "INBOX.", 6) == 0
			  : strncmp(f, name, len) == 0 && f[len] == '.')
			return true;
	}
	return false;
}

static void list_one(struct imap_session *s, const char *cmdname,
		     const char *name, bool exists, bool children,
		     bool subscribed, const struct list_opts *o)
{
	const char *su = exists ? special_use_attr(name) : NULL;

	imap_out(s, "* %s (", cmdname);
	const char *sep = "";
	if (!exists) {
		imap_out(s, "\\Noselect");
		sep = " ";
	}
	if (strcmp(cmdname, "LIST") == 0) {
		imap_out(s, "%s%s", sep,
			 children ? "\\HasChildren" : "\\HasNoChildren");
		sep = " ";
	}
	if (subscribed && o->ret_subscribed) {
		imap_out(s, "%s\\Subscribed", sep);
		sep = " ";
	}
	if (su != NULL)
		imap_out(s, "%s%s", sep, su);
	imap_out_str(s, STR(") \".\" "));
	out_name(s, name);
	imap_out_str(s, STR("\r\n"));
}

void imap_cmd_list(struct imap_session *s, const char *tag,
		   const struct imap_command *cmd, bool lsub)
{
	const char *cmdname = lsub ? "LSUB" : "LIST";
	const struct imap_arg *args = cmd->args;
	size_t argc = cmd->arg_count, i = 0;
	struct list_opts o = { .ret_subscribed = lsub };
	struct str ref, pat1;
	char patbuf[2 * MAILDIR_FOLDER_NAME_MAX + 16];
	char pats[8][sizeof(patbuf)];
	size_t npats = 0;

	if (!lsub && argc > 0 && args[0].type == IMAP_ARG_LIST) {
		if (!parse_list_opts(&args[0], true, &o))
			goto bad;
		i++;
	}
	if (i + 2 > argc || !imap_arg_get_astring(&args[i], &ref))
		goto bad;
	i++;
	const struct imap_arg *patarg = &args[i++];
	if (!lsub && i < argc) {
		if (i + 2 != argc || args[i].type != IMAP_ARG_ATOM ||
		    !str_eq_nocase(args[i].str, STR("RETURN")) ||
		    !parse_list_opts(&args[i + 1], false, &o))
			goto bad;
	}
	size_t count = patarg->type == IMAP_ARG_LIST ? patarg->list_count : 1;
	if (count == 0 || count > 8)
		goto bad;
	for (size_t k = 0; k < count; k++) {
		const struct imap_arg *pa =
		    patarg->type == IMAP_ARG_LIST ? &patarg->list[k] : patarg;
		if (!imap_arg_get_astring(pa, &pat1))
			goto bad;
		if (str_printf(pats[npats], sizeof(pats[npats]), "%.*s%.*s",
			       STR_FMT(ref), STR_FMT(pat1)) < 0)
			goto bad;
		npats++;
	}
	if (npats == 1 && pats[0][0] == '\0' && !lsub) {
		/* LIST "" "": the hierarchy separator */
		imap_out(s, "* LIST (\\Noselect) \".\" \"\"\r\n");
		imap_done(s, tag, true, "OK List completed.");
		return;
	}

	struct names folders = { 0 }, subs = { 0 };
	if (folders_read(s, &folders) < 0) {
		names_free(&folders);
		imap_done(s, tag, true, "NO [SERVERBUG] Internal error "
					"occurred.");
		return;
	}
	if ((lsub || o.ret_subscribed || o.subscribed_only) &&
	    subs_read(s, &subs) < 0)
		log_ctx_warn(&s->log, "imap: %s/%s", s->root,
			     SUBSCRIPTIONS_FILE);
	/* candidates: INBOX, every folder, and missing parents */
	struct names cand = { 0 };
	if (lsub) {
		for (size_t k = 0; k < subs.count; k++)
			names_add(&cand, subs.v[k]);
	} else {
		names_add(&cand, "INBOX");
		for (size_t k = 0; k < folders.count; k++) {
			char parent[MAILDIR_FOLDER_NAME_MAX + 8];
			str_copy(str_cstr(folders.v[k]), parent, sizeof(parent));
			for (char *dot = strrchr(parent, '.'); dot != NULL;
			     dot = strrchr(parent, '.')) {
				*dot = '\0';
				if (strcmp(parent, "INBOX") != 0 &&
				    !names_has(&folders, parent) &&
				    !names_has(&cand, parent))
					names_add(&cand, parent);
			}
			names_add(&cand, folders.v[k]);
		}
		if (o.subscribed_only) {
			for (size_t k = 0; k < subs.count; k++) {
				if (!names_has(&cand, subs.v[k]))
					names_add(&cand, subs.v[k]);
			}
		}
		if (cand.count > 2)
			qsort(cand.v + 1, cand.count - 1, sizeof(*cand.v),
			      name_cmp);
	}
	for (size_t k = 0; k < cand.count; k++) {
		const char *name = cand.v[k];
		bool match = false;
		for (size_t p = 0; p < npats && !match; p++)
			match = list_match(pats[p], name);
		if (!match)
			continue;
		bool exists = strcmp(name, "INBOX") == 0 ||
			      names_has(&folders, name);
		bool subscribed = names_has(&subs, name);
		if (o.subscribed_only && !subscribed)
			continue;
		if (o.special_use_only &&
		    (!exists || special_use_attr(name) == NULL))
			continue;
		list_one(s, cmdname, name, exists, has_children(&folders, name),
			 subscribed, &o);
		if (o.ret_status != 0 && exists) {
			char dir[MAILDIR_PATH_MAX];
			if (imap_mailbox_dir(s, name, dir, sizeof(dir)))
				(void)out_status(s, name, dir, o.ret_status);
		}
	}
	names_free(&cand);
	names_free(&folders);
	names_free(&subs);
	imap_done(s, tag, true, "OK %s completed.", lsub ? "Lsub" : "List");
	return;
bad:
	imap_out(s, "%s BAD Error in IMAP command %s: Invalid arguments.\r\n",
		 tag, cmdname);
	imap_bad_command(s);
}

/* ---- CREATE / DELETE / RENAME / SUBSCRIBE --------------------------------- */

void imap_cmd_create(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd)
{
	char name[MAILDIR_FOLDER_NAME_MAX + 8], dir[MAILDIR_PATH_MAX];
	struct maildir_error merr;
	struct names folders = { 0 };

	if (cmd->arg_count != 1) {
		imap_out(s, "%s BAD Error in IMAP command CREATE: Invalid "
			 "arguments.\r\n", tag);
		return;
	}
	if (!imap_arg_mailbox(s, tag, "CREATE", &cmd->args[0], name, sizeof(name), dir,
		      sizeof(dir)))
		return;
	if (strcmp(name, "INBOX") == 0 || maildir_exists(dir)) {
		imap_done(s, tag, true, "NO [ALREADYEXISTS] Mailbox already "
					"exists");
		return;
	}
	if (folders_read(s, &folders) == 0 &&
	    folders.count >= s->cfg->max_mailboxes) {
		names_free(&folders);
		imap_done(s, tag, true, "NO [LIMIT] Too many mailboxes "
					"(imap_max_mailboxes=%llu)",
			  (unsigned long long)s->cfg->max_mailboxes);
		return;
	}
	names_free(&folders);
	int r = maildir_folder_create(s->root, str_cstr(name), &merr);
	if (r < 0) {
		if (merr.kind == MAILDIR_ERR_INVALID) {
			imap_done(s, tag, true, "NO Invalid mailbox name: %s",
				  merr.msg);
			return;
		}
		log_ctx_error(&s->log, "imap: create %s: %s", name, merr.msg);
		imap_done(s, tag, true, "NO [SERVERBUG] Internal error "
					"occurred.");
		return;
	}
	if (r == 0) {
		imap_done(s, tag, true, "NO [ALREADYEXISTS] Mailbox already "
					"exists");
		return;
	}
	log_ctx_info(&s->log, "imap: Mailbox created: %s", name);
	imap_done(s, tag, true, "OK Create completed.");
}

/* Whether the selected mailbox is name or lies below it (INBOX: only
 * INBOX itself, its children are separate folders). */
static bool selected_under(const struct imap_session *s, const char *name,
			   bool exact)
{
	size_t len = strlen(name);

	if (s->mb == NULL)
		return false;
	if (strcmp(s->mbox_name, name) == 0)
		return true;
	return !exact && strncmp(s->mbox_name, name, len) == 0 &&
	       s->mbox_name[len] == '.';
}

static void rename_done(struct imap_session *s, const char *tag,
			bool selected)
{
	if (!selected) {
		imap_done(s, tag, true, "OK Rename completed.");
		return;
	}
	imap_out(s, "* BYE Selected mailbox was renamed, have to "
		    "disconnect.\r\n");
	imap_out(s, "%s OK Rename completed.\r\n", tag);
	s->close_reason = "Selected mailbox was renamed";
}

void imap_cmd_delete(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd)
{
	char name[MAILDIR_FOLDER_NAME_MAX + 8], dir[MAILDIR_PATH_MAX];
	struct maildir_error merr;

	if (cmd->arg_count != 1) {
		imap_out(s, "%s BAD Error in IMAP command DELETE: Invalid "
			 "arguments.\r\n", tag);
		return;
	}
	if (!imap_arg_mailbox(s, tag, "DELETE", &cmd->args[0], name, sizeof(name), dir,
		      sizeof(dir)))
		return;
	if (strcmp(name, "INBOX") == 0) {
		imap_done(s, tag, true, "NO INBOX can't be deleted.");
		return;
	}
	/* children stay (Maildir++): only the mailbox itself counts */
	bool selected = selected_under(s, name, true);
	int r = maildir_folder_delete(s->root, str_cstr(name), &merr);
	if (r == 0) {
		imap_done(s, tag, true, "NO [NONEXISTENT] Mailbox doesn't "
					"exist: %s", name);
		return;
	}
	if (r < 0) {
		log_ctx_error(&s->log, "imap: delete %s: %s", name, merr.msg);
		imap_done(s, tag, true, "NO [SERVERBUG] Internal error "
					"occurred.");
		return;
	}
	log_ctx_info(&s->log, "imap: Mailbox deleted: %s", name);
	if (selected) {
		/* as Dovecot: the client's view is gone with the mailbox */
		imap_unselect(s);
		imap_out(s, "* BYE Selected mailbox was deleted, have to "
			    "disconnect.\r\n");
		imap_out(s, "%s OK Delete completed.\r\n", tag);
		s->close_reason = "Selected mailbox was deleted";
		return;
	}
	imap_done(s, tag, true, "OK Delete completed.");
}

/* RENAME INBOX x (RFC 3501 6.3.5): the messages move to a new folder x,
 * INBOX stays, empty. Files move by rename(2) keeping their names; x gives
 * them new UIDs. */
static int rename_inbox(struct imap_session *s, const char *new_name,
			const char *new_dir)
{
	struct maildir_error merr;
	struct mailbox *mb = NULL, *dest = NULL;
	struct mailbox_message m;
	const char *error;
	char from[MAILDIR_PATH_MAX], to[MAILDIR_PATH_MAX];
	struct mailbox_settings ms = {
		.max_messages = (uint32_t)s->cfg->max_messages,
	};
	int ret = -1;

	if (maildir_folder_create(s->root, str_cstr(new_name), &merr) != 1) {
		log_ctx_error(&s->log, "imap: rename INBOX: create %s: %s",
			      new_name, merr.msg);
		return -1;
	}
	if (mailbox_open(s->root, &ms, &mb, &error) < 0) {
		log_ctx_error(&s->log, "imap: rename INBOX: %s", error);
		return -1;
	}
	uint32_t n = mailbox_count(mb);
	for (uint32_t seq = 1; seq <= n; seq++) {
		if (!mailbox_lookup_seq(mb, seq, &m))
			continue;
		if (str_printf(from, sizeof(from), "%s/cur/%s", s->root,
			       m.name) < 0 ||
		    str_printf(to, sizeof(to), "%s/cur/%s", new_dir,
			       m.name) < 0)
			goto out;
		if (rename(from, to) == -1 && errno != ENOENT) {
			log_ctx_error(&s->log, "imap: rename INBOX: %s: %s",
				      from, strerror(errno));
			goto out;
		}
	}
	/* keywords letters keep their meaning with the file */
	struct maildir_keywords kw;
	maildir_keywords_init(&kw);
	if (maildir_keywords_read(s->root, &kw, &merr) == 1)
		(void)maildir_keywords_write(new_dir, &kw, &merr);
	ret = 0;
out:
	mailbox_close(&mb);
	/* both sides sync now: INBOX drops the names, x gives UIDs */
	if (mailbox_open(s->root, &ms, &mb, &error) < 0)
		log_ctx_error(&s->log, "imap: rename INBOX: %s", error);
	if (mailbox_open(new_dir, &ms, &dest, &error) < 0)
		log_ctx_error(&s->log, "imap: rename INBOX: %s", error);
	mailbox_close(&mb);
	mailbox_close(&dest);
	return ret;
}

void imap_cmd_rename(struct imap_session *s, const char *tag,
		     const struct imap_command *cmd)
{
	char oname[MAILDIR_FOLDER_NAME_MAX + 8], odir[MAILDIR_PATH_MAX];
	char nname[MAILDIR_FOLDER_NAME_MAX + 8], ndir[MAILDIR_PATH_MAX];
	struct maildir_error merr;

	if (cmd->arg_count != 2) {
		imap_out(s, "%s BAD Error in IMAP command RENAME: Invalid "
			 "arguments.\r\n", tag);
		return;
	}
	if (!imap_arg_mailbox(s, tag, "RENAME", &cmd->args[0], oname, sizeof(oname),
		      odir, sizeof(odir)) ||
	    !imap_arg_mailbox(s, tag, "RENAME", &cmd->args[1], nname, sizeof(nname),
		      ndir, sizeof(ndir)))
		return;
	if (strcmp(nname, "INBOX") == 0 || maildir_exists(ndir)) {
		imap_done(s, tag, true, "NO [ALREADYEXISTS] Target mailbox "
					"already exists");
		return;
	}
	/* the selected mailbox (or one below the renamed one) moves: the
	 * session ends after the answer, as with DELETE */
	bool selected = selected_under(s, oname, strcmp(oname, "INBOX") == 0);
	if (selected)
		imap_unselect(s);
	if (strcmp(oname, "INBOX") == 0) {
		if (rename_inbox(s, nname, ndir) < 0) {
			imap_done(s, tag, true, "NO [SERVERBUG] Internal error "
						"occurred.");
			return;
		}
		log_ctx_info(&s->log, "imap: Mailbox renamed: INBOX -> %s",
			     nname);
		rename_done(s, tag, selected);
		return;
	}
	int r = maildir_folder_rename(s->root, str_cstr(oname), str_cstr(nname),
				      &merr);
	if (r == 0) {
		imap_done(s, tag, true, "NO [NONEXISTENT] Mailbox doesn't "
					"exist: %s", oname);
		return;
	}
	if (r < 0) {
		if (merr.kind == MAILDIR_ERR_EXISTS) {
			imap_done(s, tag, true, "NO [ALREADYEXISTS] Target "
						"mailbox already exists");
			return;
		}
		if (merr.kind == MAILDIR_ERR_INVALID) {
			imap_done(s, tag, true, "NO %s", merr.msg);
			return;
		}
		log_ctx_error(&s->log, "imap: rename %s: %s", oname, merr.msg);
		imap_done(s, tag, true, "NO [SERVERBUG] Internal error "
					"occurred.");
		return;
	}
	subs_rename(s, oname, nname);
	log_ctx_info(&s->log, "imap: Mailbox renamed: %s -> %s", oname, nname);
	rename_done(s, tag, selected);
}

void imap_cmd_subscribe(struct imap_session *s, const char *tag,
			const struct imap_command *cmd, bool subscribe)
{
	char name[MAILDIR_FOLDER_NAME_MAX + 8], dir[MAILDIR_PATH_MAX];
	const char *cmdname = subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE";

	if (cmd->arg_count != 1) {
		imap_out(s, "%s BAD Error in IMAP command %s: Invalid "
			 "arguments.\r\n", tag, cmdname);
		return;
	}
	if (!imap_arg_mailbox(s, tag, cmdname, &cmd->args[0], name, sizeof(name), dir,
		      sizeof(dir)))
		return;
	if (subscribe && strcmp(name, "INBOX") != 0 && !maildir_exists(dir)) {
		imap_done(s, tag, true, "NO [NONEXISTENT] Mailbox doesn't "
					"exist: %s", name);
		return;
	}
	int r = subs_change(s, name, subscribe);
	if (r == -2) {
		imap_done(s, tag, true, "NO [LIMIT] Too many subscriptions");
		return;
	}
	if (r < 0) {
		log_ctx_warn(&s->log, "imap: %s/%s", s->root,
			     SUBSCRIPTIONS_FILE);
		imap_done(s, tag, true, "NO [SERVERBUG] Internal error "
					"occurred.");
		return;
	}
	imap_done(s, tag, true, "OK %s completed.",
		  subscribe ? "Subscribe" : "Unsubscribe");
}
