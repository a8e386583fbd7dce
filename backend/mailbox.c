/*
 * The mailbox view: Maildir + UID list + index. See mailbox.h for the
 * sync rules, the lock order and the crash ordering.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/maildir.h"
#include "backend/mailbox.h"
#include "backend/mailindex.h"
#include "backend/uidlist.h"
#include "crc32.h"
#include "log.h"
#include "xmalloc.h"

#define MAILBOX_MAX_MESSAGES_DEFAULT 1000000u
#define MAILBOX_LOCK_TIMEOUT_DEFAULT 30000u

/* One file of cur/ as the last scan saw it. */
struct mb_file {
	char *name;      /* file name in cur/ (owned) */
	size_t base_len; /* bytes of the base (before ':') */
	struct maildir_flags flags;
	bool has_size; /* W= in the name */
	uint64_t size;
	bool stated; /* mtime (and size when !has_size) read */
	int64_t mtime;
	bool used; /* matched to an index record (UID list recovery) */
};

struct mailbox {
	char *dir;
	struct mailbox_settings set;
	struct mb_file *files; /* sorted by base name */
	size_t nfiles, files_alloc;
	struct uidlist *list;
	struct mailindex *index;
	uint32_t *msg_file; /* per sequence number - 1: index into files */
	uint32_t count;
};

struct mb_locks {
	struct uidlist_lock *list;
	struct mailindex_lock *index;
};

static _Thread_local char mailbox_errbuf[512];

static const char *errf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static const char *errf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(mailbox_errbuf, sizeof(mailbox_errbuf), fmt, ap);
	va_end(ap);
	if (n < 0)
		mailbox_errbuf[0] = '\0';
	return mailbox_errbuf;
}

/* ---- flags ------------------------------------------------------------- */

static uint8_t flags_from_maildir(const struct maildir_flags *f)
{
	uint8_t fl = 0;

	if ((f->sys & MAILDIR_FLAG_SEEN) != 0)
		fl |= MAILBOX_FLAG_SEEN;
	if ((f->sys & MAILDIR_FLAG_REPLIED) != 0)
		fl |= MAILBOX_FLAG_ANSWERED;
	if ((f->sys & MAILDIR_FLAG_FLAGGED) != 0)
		fl |= MAILBOX_FLAG_FLAGGED;
	if ((f->sys & MAILDIR_FLAG_TRASHED) != 0)
		fl |= MAILBOX_FLAG_DELETED;
	if ((f->sys & MAILDIR_FLAG_DRAFT) != 0)
		fl |= MAILBOX_FLAG_DRAFT;
	return fl;
}

/* Sets the five mapped letters and the keywords of f; keeps P and
 * unknown letters. */
static void flags_to_maildir(struct maildir_flags *f, uint8_t fl,
			     uint32_t keywords)
{
	f->sys &= ~(unsigned int)(MAILDIR_FLAG_SEEN | MAILDIR_FLAG_REPLIED |
				  MAILDIR_FLAG_FLAGGED | MAILDIR_FLAG_TRASHED |
				  MAILDIR_FLAG_DRAFT);
	if ((fl & MAILBOX_FLAG_SEEN) != 0)
		f->sys |= MAILDIR_FLAG_SEEN;
	if ((fl & MAILBOX_FLAG_ANSWERED) != 0)
		f->sys |= MAILDIR_FLAG_REPLIED;
	if ((fl & MAILBOX_FLAG_FLAGGED) != 0)
		f->sys |= MAILDIR_FLAG_FLAGGED;
	if ((fl & MAILBOX_FLAG_DELETED) != 0)
		f->sys |= MAILDIR_FLAG_TRASHED;
	if ((fl & MAILBOX_FLAG_DRAFT) != 0)
		f->sys |= MAILDIR_FLAG_DRAFT;
	f->keywords = keywords & MAILBOX_KEYWORDS_MASK;
}

/* ---- files ------------------------------------------------------------- */

static struct str file_base(const struct mb_file *f)
{
	return str_from(f->name, f->base_len);
}

static int base_cmp(struct str a, struct str b)
{
	size_t n = a.len < b.len ? a.len : b.len;
	int c = memcmp(a.p, b.p, n);

	if (c != 0)
		return c;
	return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

static int file_cmp(const void *a, const void *b)
{
	return base_cmp(file_base(a), file_base(b));
}

static struct mb_file *find_file(const struct mailbox *mb, struct str base)
{
	size_t lo = 0, hi = mb->nfiles;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = base_cmp(file_base(&mb->files[mid]), base);
		if (c == 0)
			return &mb->files[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int cur_path(const struct mailbox *mb, const char *name, char *dst,
		    size_t size)
{
	int n = snprintf(dst, size, "%s/cur/%s", mb->dir, name);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Reads mtime (and the size as IMAP counts it when the name has no W=:
 * the file is read once; the index keeps the result). -1 when gone. */
static int file_stat(const struct mailbox *mb, struct mb_file *f)
{
	char path[MAILDIR_PATH_MAX];
	struct stat st;

	if (f->stated)
		return 0;
	if (cur_path(mb, f->name, path, sizeof(path)) == -1 ||
	    stat(path, &st) == -1)
		return -1;
	f->mtime = (int64_t)st.st_mtime;
	if (!f->has_size && maildir_file_vsize(path, &f->size) == -1)
		return -1;
	f->stated = true;
	return 0;
}

static void files_free(struct mailbox *mb)
{
	for (size_t i = 0; i < mb->nfiles; i++)
		free(mb->files[i].name);
	free(mb->files);
	mb->files = NULL;
	mb->nfiles = mb->files_alloc = 0;
}

static int scan_cb(const struct maildir_entry *e, void *context)
{
	struct mailbox *mb = context;

	if (e->in_new)
		return 0; /* could not move it: the next scan will */
	if (mb->nfiles == mb->files_alloc) {
		mb->files_alloc =
		    mb->files_alloc == 0 ? 64 : mb->files_alloc * 2;
		mb->files = xreallocarray(mb->files, mb->files_alloc,
					  sizeof(*mb->files));
	}
	struct mb_file *f = &mb->files[mb->nfiles++];
	memset(f, 0, sizeof(*f));
	f->name = xstrdup(e->name);
	f->base_len = e->parsed->base.len;
	f->flags = e->parsed->flags;
	/* the index holds the size as IMAP counts it: CRLF line ends */
	f->has_size = e->parsed->has_vsize;
	f->size = e->parsed->vsize;
	return 0;
}

static int scan(struct mailbox *mb, const char **error_r)
{
	struct maildir_scan_settings sset = {
	    .move_new = true,
	    .max_entries = mb->set.max_messages,
	    .tmp_max_age_secs = MAILDIR_TMP_DELETE_SECS,
	};
	struct maildir_error merr;

	files_free(mb);
	if (maildir_scan(mb->dir, &sset, scan_cb, mb, NULL, &merr) == -1) {
		*error_r = errf("scan %s: %s", mb->dir, merr.msg);
		return -1;
	}
	if (mb->nfiles > 1)
		qsort(mb->files, mb->nfiles, sizeof(*mb->files), file_cmp);
	/* The same base twice (only by hand): keep the first. */
	size_t out = 0;
	for (size_t i = 0; i < mb->nfiles; i++) {
		if (out > 0 &&
		    file_cmp(&mb->files[out - 1], &mb->files[i]) == 0) {
			log_warnx("mailbox %s: duplicate base name %s ignored",
				  mb->dir, mb->files[i].name);
			free(mb->files[i].name);
			continue;
		}
		mb->files[out++] = mb->files[i];
	}
	mb->nfiles = out;
	return 0;
}

/* ---- UID list recovery from the index ------------------------------------ */

static int date_size_cmp(const struct mb_file *a, const struct mb_file *b)
{
	if (a->size != b->size)
		return a->size < b->size ? -1 : 1;
	if (a->mtime != b->mtime)
		return a->mtime < b->mtime ? -1 : 1;
	return 0;
}

/* Sort key of a file for matching index records (no globals: threads). */
struct match_key {
	const struct mb_file *f;
	uint32_t idx;
};

static int order_cmp(const void *a, const void *b)
{
	const struct mb_file *fa = ((const struct match_key *)a)->f;
	const struct mb_file *fb = ((const struct match_key *)b)->f;
	int c = date_size_cmp(fa, fb);
	return c != 0 ? c : file_cmp(fa, fb);
}

struct known_builder {
	struct uidlist_loader *loader;
	uint32_t crc;
	enum uidlist_status status;
};

static void known_feed(struct known_builder *kb, const char *line, int len)
{
	if (len < 0 || kb->status != UIDLIST_OK)
		return;
	kb->crc = crc32_update(kb->crc, line, (size_t)len);
	kb->status =
	    uidlist_loader_feed(kb->loader, (const uint8_t *)line, (size_t)len);
}

/* A UID list holding the files that match index records by size and
 * internal date (ties in name order), with the index's UIDVALIDITY and
 * UIDNEXT. NULL when that cannot be built. */
static struct uidlist *known_from_index(struct mailbox *mb,
					const struct mailindex *idx,
					uint32_t *kept_r)
{
	struct match_key *order =
	    xreallocarray(NULL, mb->nfiles + 1, sizeof(*order));
	size_t n = 0;
	char line[UIDLIST_LINE_MAX + 64];
	struct known_builder kb = {
	    .loader = uidlist_loader_new(mb->set.max_messages),
	    .status = UIDLIST_OK,
	};
	uint32_t kept = 0;

	for (size_t i = 0; i < mb->nfiles; i++) {
		if (file_stat(mb, &mb->files[i]) == 0) {
			order[n].f = &mb->files[i];
			order[n++].idx = (uint32_t)i;
		}
	}
	if (n > 1)
		qsort(order, n, sizeof(*order), order_cmp);

	known_feed(&kb, line,
		   snprintf(line, sizeof(line),
			    "mailring-uidlist %d V%" PRIu32 " N%" PRIu32 "\n",
			    UIDLIST_VERSION, mailindex_uidvalidity(idx),
			    mailindex_uidnext(idx)));
	for (uint32_t seq = 1; seq <= mailindex_count(idx); seq++) {
		struct mailindex_record rec;
		struct mb_file key = {0};

		if (!mailindex_lookup_seq(idx, seq, &rec))
			break;
		key.size = rec.size;
		key.mtime = rec.date;
		size_t lo = 0, hi = n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (date_size_cmp(order[mid].f, &key) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < n; lo++) {
			struct mb_file *f = &mb->files[order[lo].idx];
			if (date_size_cmp(f, &key) != 0)
				break;
			if (f->used)
				continue;
			f->used = true;
			kept++;
			known_feed(&kb, line,
				   snprintf(line, sizeof(line),
					    "%" PRIu32 " %.*s\n", rec.uid,
					    STR_FMT(file_base(f))));
			break;
		}
	}
	int len = snprintf(line, sizeof(line),
			   "# end %" PRIu32 " %08" PRIx32 "\n", kept, kb.crc);
	if (len > 0 && kb.status == UIDLIST_OK)
		kb.status = uidlist_loader_feed(
		    kb.loader, (const uint8_t *)line, (size_t)len);
	struct uidlist *known = NULL;
	const char *error = NULL;
	uint64_t offset = 0;
	if (kb.status == UIDLIST_OK &&
	    uidlist_loader_finish(kb.loader, &known, &error, &offset) !=
		UIDLIST_OK) {
		log_warnx("mailbox %s: UIDs from the index unusable: %s",
			  mb->dir, error != NULL ? error : "?");
		known = NULL;
	}
	uidlist_loader_free(&kb.loader);
	for (size_t i = 0; i < mb->nfiles; i++)
		mb->files[i].used = false;
	free(order);
	*kept_r = kept;
	return known;
}

/* ---- sync ---------------------------------------------------------------- */

static void view_free(struct mailbox *mb)
{
	uidlist_free(&mb->list);
	mailindex_free(&mb->index);
	free(mb->msg_file);
	mb->msg_file = NULL;
	mb->count = 0;
}

/* Leading decimal number of s at *pos (advanced); false when none. */
static bool name_number(struct str s, size_t *pos, uint64_t *v)
{
	size_t i = *pos;
	uint64_t n = 0;

	while (i < s.len && s.p[i] >= '0' && s.p[i] <= '9' && n < UINT64_MAX / 10)
		n = n * 10 + (uint64_t)(s.p[i++] - '0');
	if (i == *pos)
		return false;
	*pos = i;
	*v = n;
	return true;
}

/* Dovecot's order for new names: "<secs>.M<usecs>..." by time, then by
 * name (so M9 comes before M10); other names after, by name. New
 * messages get their UIDs in this order, which is delivery order. */
static int name_order_cmp(const void *a, const void *b)
{
	const struct str *x = a, *y = b;
	size_t px = 0, py = 0;
	uint64_t sx = 0, sy = 0, ux = 0, uy = 0;
	bool tx = name_number(*x, &px, &sx) && px < x->len && x->p[px] == '.';
	bool ty = name_number(*y, &py, &sy) && py < y->len && y->p[py] == '.';

	if (tx != ty)
		return tx ? -1 : 1;
	if (tx) {
		if (sx != sy)
			return sx < sy ? -1 : 1;
		px++;
		py++;
		bool mx = px < x->len && x->p[px] == 'M';
		bool my = py < y->len && y->p[py] == 'M';
		px++;
		py++;
		if (mx && my && name_number(*x, &px, &ux) &&
		    name_number(*y, &py, &uy) && ux != uy)
			return ux < uy ? -1 : 1;
	}
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->p, y->p, n);
	if (c != 0)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

static struct str *names_of(const struct mailbox *mb)
{
	struct str *names = xreallocarray(NULL, mb->nfiles + 1, sizeof(*names));
	for (size_t i = 0; i < mb->nfiles; i++)
		names[i] = file_base(&mb->files[i]);
	if (mb->nfiles > 1)
		qsort(names, mb->nfiles, sizeof(*names), name_order_cmp);
	return names;
}

/* Brings mb->list in line with the files and writes it when it changed. */
static int sync_list(struct mailbox *mb, const struct mb_locks *locks,
		     const struct mailindex *idx, enum mailindex_status is,
		     bool force, const char **error_r)
{
	struct uidlist *list = NULL;
	enum uidlist_status ls, st = UIDLIST_OK;
	const char *error = NULL;
	struct str *names = names_of(mb);
	bool write = force;
	int ret = -1;

	ls = uidlist_read(mb->dir, mb->set.max_messages, &list, &error);
	if (ls == UIDLIST_LIMIT || ls == UIDLIST_ERROR) {
		*error_r = errf("%s: uid list: %s", mb->dir, error);
		goto out;
	}
	if (ls == UIDLIST_OK) {
		uint32_t uv = uidlist_uidvalidity(list);
		uint32_t un = uidlist_uidnext(list);
		uint32_t cnt = uidlist_count(list);

		if (is == MAILINDEX_OK && mailindex_uidvalidity(idx) == uv &&
		    mailindex_uidnext(idx) > un)
			(void)uidlist_raise_uidnext(list,
						    mailindex_uidnext(idx));
		if (force) {
			mb->list =
			    uidlist_rebuild(list, 0, mb->set.max_messages,
					    names, mb->nfiles, &st, &error);
			log_info("mailbox %s: uid list rebuilt (resync)",
				 mb->dir);
		} else {
			st = uidlist_sync(list, names, mb->nfiles, &error);
			mb->list = list;
			list = NULL;
		}
		if (mb->list != NULL && (uidlist_uidvalidity(mb->list) != uv ||
					 uidlist_uidnext(mb->list) != un ||
					 uidlist_count(mb->list) != cnt))
			write = true;
	} else {
		struct uidlist *known = NULL;
		uint32_t kept = 0;
		uint32_t prev_uv = 0;
		struct stat dst;

		if (is == MAILINDEX_OK)
			known = known_from_index(mb, idx, &kept);
		/* Nothing knows the old UIDVALIDITY (if there was one: not
		 * for a new, empty mailbox): the directory's mtime is at
		 * least the time the old list was renamed into it, so a new
		 * one above it is greater than the old (RFC 3501), even in
		 * the same second or after the clock stepped back. */
		if (known == NULL &&
		    (ls == UIDLIST_REBUILD || is != MAILINDEX_NOT_FOUND ||
		     mb->nfiles > 0) &&
		    stat(mb->dir, &dst) == 0 &&
		    dst.st_mtime > 0 && (uint64_t)dst.st_mtime < UINT32_MAX)
			prev_uv = (uint32_t)dst.st_mtime;
		mb->list = uidlist_rebuild(known, prev_uv, mb->set.max_messages,
					   names, mb->nfiles, &st, &error);
		uidlist_free(&known);
		if (ls == UIDLIST_REBUILD || is == MAILINDEX_OK)
			log_info("mailbox %s: uid list rebuilt (%s), %" PRIu32
				 " UIDs kept from the index, %zu files",
				 mb->dir,
				 ls == UIDLIST_REBUILD ? "corrupt" : "missing",
				 kept, mb->nfiles);
		write = true;
	}
	if (mb->list == NULL || st != UIDLIST_OK) {
		*error_r =
		    errf("%s: uid list: %s", mb->dir,
			 error != NULL ? error : uidlist_status_name(st));
		goto out;
	}
	if (write) {
		st = uidlist_write(locks->list, mb->list, &error);
		if (st != UIDLIST_OK) {
			*error_r =
			    errf("%s: uid list write: %s", mb->dir, error);
			goto out;
		}
	}
	ret = 0;
out:
	uidlist_free(&list);
	free(names);
	return ret;
}

static int rebuild_index(struct mailbox *mb, const struct mb_locks *locks,
			 const struct mailindex *old, const char *reason,
			 const char **error_r)
{
	uint32_t n = uidlist_count(mb->list);
	struct mailindex_record *recs =
	    xreallocarray(NULL, (size_t)n + 1, sizeof(*recs));
	size_t count = 0;
	const char *error = NULL;

	for (uint32_t i = 0; i < n; i++) {
		struct str base;
		uint32_t uid;
		struct mailindex_record orec;

		if (!uidlist_record_at(mb->list, i, &uid, &base))
			break;
		struct mb_file *f = find_file(mb, base);
		if (f == NULL || file_stat(mb, f) == -1)
			continue; /* vanished meanwhile: the next sync drops it
				   */
		struct mailindex_record *r = &recs[count++];
		memset(r, 0, sizeof(*r));
		r->uid = uid;
		r->flags = flags_from_maildir(&f->flags);
		r->keywords = f->flags.keywords & MAILINDEX_KEYWORDS_MASK;
		r->size = f->size;
		r->date = f->mtime;
		r->modseq = 1;
		if (old != NULL && mailindex_lookup_uid(old, uid, &orec) != 0)
			r->modseq = orec.modseq;
	}
	enum mailindex_status st = mailindex_rebuild_from(
	    locks->index, uidlist_uidvalidity(mb->list),
	    uidlist_uidnext(mb->list), recs, count, mb->set.max_messages,
	    mb->set.log_rotate_size, &mb->index, &error);
	free(recs);
	if (st != MAILINDEX_OK) {
		*error_r = errf("%s: index rebuild: %s", mb->dir, error);
		return -1;
	}
	log_info("mailbox %s: index rebuilt (%s), %zu messages", mb->dir,
		 reason, count);
	return 0;
}

/* Makes the open index match the UID list and the file names. */
static int reconcile_index(struct mailbox *mb, const struct mb_locks *locks,
			   const char **error_r)
{
	struct mailindex *idx = mb->index;
	const char *error = NULL;
	enum mailindex_status st;

	for (uint32_t seq = mailindex_count(idx); seq >= 1; seq--) {
		struct mailindex_record rec;
		if (!mailindex_lookup_seq(idx, seq, &rec))
			continue;
		if (uidlist_lookup_uid(mb->list, rec.uid, NULL))
			continue;
		st =
		    mailindex_expunge(idx, locks->index, rec.uid, NULL, &error);
		if (st != MAILINDEX_OK)
			goto fail;
	}
	for (uint32_t i = 0; i < uidlist_count(mb->list); i++) {
		struct mailindex_record rec;
		struct str base;
		uint32_t uid;

		if (!uidlist_record_at(mb->list, i, &uid, &base))
			break;
		struct mb_file *f = find_file(mb, base);
		if (f == NULL)
			continue;
		uint8_t fl = flags_from_maildir(&f->flags);
		uint32_t kw = f->flags.keywords & MAILINDEX_KEYWORDS_MASK;
		if (mailindex_lookup_uid(idx, uid, &rec) != 0) {
			if (rec.flags == fl && rec.keywords == kw)
				continue;
			st = mailindex_set_flags(idx, locks->index, uid, fl, kw,
						 NULL, &error);
		} else {
			if (file_stat(mb, f) == -1)
				continue;
			memset(&rec, 0, sizeof(rec));
			rec.uid = uid;
			rec.flags = fl;
			rec.keywords = kw;
			rec.size = f->size;
			rec.date = f->mtime;
			st = mailindex_append(idx, locks->index, &rec, NULL,
					      &error);
		}
		if (st != MAILINDEX_OK)
			goto fail;
	}
	return 0;
fail:
	*error_r = errf("%s: index update: %s", mb->dir, error);
	return -1;
}

/* Full sync under both locks: see mailbox.h. */
static int sync_locked(struct mailbox *mb, const struct mb_locks *locks,
		       bool force, const char **error_r)
{
	struct mailindex *idx = NULL;
	const char *error = NULL;
	const char *reason = NULL;
	char reasonbuf[256];
	int ret = -1;

	view_free(mb);
	if (scan(mb, error_r) == -1)
		return -1;
	enum mailindex_status is =
	    mailindex_open(mb->dir, mb->set.max_messages,
			   mb->set.log_rotate_size, &idx, &error);
	if (is == MAILINDEX_LIMIT || is == MAILINDEX_ERROR ||
	    is == MAILINDEX_LOCK_TIMEOUT) {
		*error_r = errf("%s: index: %s", mb->dir, error);
		return -1;
	}
	if (sync_list(mb, locks, idx, is, force, error_r) == -1)
		goto out;

	if (force)
		reason = "resync";
	else if (is == MAILINDEX_NOT_FOUND)
		reason = "no index";
	else if (is == MAILINDEX_REBUILD) {
		snprintf(reasonbuf, sizeof(reasonbuf), "%s", error);
		reason = reasonbuf;
	} else if (mailindex_uidvalidity(idx) != uidlist_uidvalidity(mb->list))
		reason = "UIDVALIDITY differs from the uid list";
	else {
		/* UIDs the index lacks must be appendable. */
		for (uint32_t i = 0; i < uidlist_count(mb->list); i++) {
			uint32_t uid;
			struct str base;
			if (uidlist_record_at(mb->list, i, &uid, &base) &&
			    uid < mailindex_uidnext(idx) &&
			    mailindex_lookup_uid(idx, uid, NULL) == 0 &&
			    find_file(mb, base) != NULL) {
				snprintf(reasonbuf, sizeof(reasonbuf),
					 "uid %" PRIu32
					 " missing below uidnext",
					 uid);
				reason = reasonbuf;
				break;
			}
		}
	}
	if (reason != NULL) {
		if (rebuild_index(mb, locks, is == MAILINDEX_OK ? idx : NULL,
				  reason, error_r) == -1)
			goto out;
	} else {
		mb->index = idx;
		idx = NULL;
		if (reconcile_index(mb, locks, error_r) == -1)
			goto out;
	}

	/* The view: index order is UID order is UID list order. */
	mb->count = mailindex_count(mb->index);
	mb->msg_file =
	    xreallocarray(NULL, (size_t)mb->count + 1, sizeof(*mb->msg_file));
	for (uint32_t seq = 1; seq <= mb->count; seq++) {
		struct mailindex_record rec;
		struct str base;
		struct mb_file *f = NULL;

		if (mailindex_lookup_seq(mb->index, seq, &rec) &&
		    uidlist_lookup_uid(mb->list, rec.uid, &base))
			f = find_file(mb, base);
		if (f == NULL) {
			*error_r = errf("%s: index uid %" PRIu32
					" has no file (concurrent change?)",
					mb->dir, rec.uid);
			goto out;
		}
		mb->msg_file[seq - 1] = (uint32_t)(f - mb->files);
	}
	ret = 0;
out:
	mailindex_free(&idx);
	if (ret == -1)
		view_free(mb);
	return ret;
}

static int lock_both(const struct mailbox *mb, struct mb_locks *locks,
		     const char **error_r)
{
	const char *error = NULL;

	memset(locks, 0, sizeof(*locks));
	if (uidlist_lock(mb->dir, mb->set.lock_timeout_msecs, &locks->list,
			 &error) != UIDLIST_OK) {
		*error_r = errf("%s: uid list lock: %s", mb->dir, error);
		return -1;
	}
	if (mailindex_lock(mb->dir, mb->set.lock_timeout_msecs, &locks->index,
			   &error) != MAILINDEX_OK) {
		uidlist_unlock(&locks->list);
		*error_r = errf("%s: index lock: %s", mb->dir, error);
		return -1;
	}
	return 0;
}

static void unlock_both(struct mb_locks *locks)
{
	mailindex_unlock(&locks->index);
	uidlist_unlock(&locks->list);
}

static int sync_full(struct mailbox *mb, bool force, const char **error_r)
{
	struct mb_locks locks;

	if (lock_both(mb, &locks, error_r) == -1)
		return -1;
	int ret = sync_locked(mb, &locks, force, error_r);
	unlock_both(&locks);
	return ret == -1 ? -1 : 1;
}

/* ---- public ------------------------------------------------------------- */

int mailbox_open(const char *dir, const struct mailbox_settings *set,
		 struct mailbox **mb_r, const char **error_r)
{
	struct mailbox *mb = xcalloc(1, sizeof(*mb));
	struct maildir_error merr;

	*mb_r = NULL;
	if (set != NULL)
		mb->set = *set;
	if (mb->set.max_messages == 0)
		mb->set.max_messages = MAILBOX_MAX_MESSAGES_DEFAULT;
	if (mb->set.max_messages > MAILINDEX_RECORDS_LIMIT)
		mb->set.max_messages = MAILINDEX_RECORDS_LIMIT;
	if (mb->set.lock_timeout_msecs == 0)
		mb->set.lock_timeout_msecs = MAILBOX_LOCK_TIMEOUT_DEFAULT;
	mb->dir = xstrdup(dir);
	if (mb->set.create && maildir_create(dir, &merr) == -1) {
		*error_r = errf("%s: %s", dir, merr.msg);
		mailbox_close(&mb);
		return -1;
	}
	if (sync_full(mb, mb->set.force_rebuild, error_r) == -1) {
		mailbox_close(&mb);
		return -1;
	}
	mb->set.force_rebuild = false;
	*mb_r = mb;
	return 1;
}

void mailbox_close(struct mailbox **mbp)
{
	struct mailbox *mb = *mbp;

	if (mb == NULL)
		return;
	view_free(mb);
	files_free(mb);
	free(mb->dir);
	free(mb);
	*mbp = NULL;
}

int mailbox_refresh(struct mailbox *mb, const char **error_r)
{
	return sync_full(mb, false, error_r);
}

uint32_t mailbox_count(const struct mailbox *mb)
{
	return mb->count;
}

uint32_t mailbox_uidvalidity(const struct mailbox *mb)
{
	return mb->index != NULL ? mailindex_uidvalidity(mb->index) : 0;
}

uint32_t mailbox_uidnext(const struct mailbox *mb)
{
	return mb->index != NULL ? mailindex_uidnext(mb->index) : 0;
}

uint64_t mailbox_highest_modseq(const struct mailbox *mb)
{
	return mb->index != NULL ? mailindex_highest_modseq(mb->index) : 0;
}

bool mailbox_lookup_seq(const struct mailbox *mb, uint32_t seq,
			struct mailbox_message *msg_r)
{
	struct mailindex_record rec;

	if (mb->index == NULL || seq == 0 || seq > mb->count ||
	    !mailindex_lookup_seq(mb->index, seq, &rec))
		return false;
	msg_r->uid = rec.uid;
	msg_r->flags = rec.flags;
	msg_r->keywords = rec.keywords;
	msg_r->modseq = rec.modseq;
	msg_r->size = rec.size;
	msg_r->date = rec.date;
	msg_r->name = mb->files[mb->msg_file[seq - 1]].name;
	return true;
}

uint32_t mailbox_lookup_uid(const struct mailbox *mb, uint32_t uid,
			    struct mailbox_message *msg_r)
{
	if (mb->index == NULL)
		return 0;
	uint32_t seq = mailindex_lookup_uid(mb->index, uid, NULL);
	if (seq != 0 && msg_r != NULL && !mailbox_lookup_seq(mb, seq, msg_r))
		return 0;
	return seq;
}

int mailbox_set_flags(struct mailbox *mb, uint32_t uid, uint8_t flags,
		      uint32_t keywords, enum mailbox_modify how,
		      uint64_t *modseq_r, const char **error_r)
{
	struct mb_locks locks;
	struct mailbox_message msg;
	struct maildir_error merr;
	const char *error = NULL;
	int ret = -1;

	if (lock_both(mb, &locks, error_r) == -1)
		return -1;
	if (sync_locked(mb, &locks, false, error_r) == -1)
		goto out;
	uint32_t seq = mailbox_lookup_uid(mb, uid, &msg);
	if (seq == 0) {
		ret = 0;
		goto out;
	}
	uint8_t nfl = msg.flags;
	uint32_t nkw = msg.keywords;
	flags &= MAILBOX_FLAGS_MASK;
	keywords &= MAILBOX_KEYWORDS_MASK;
	switch (how) {
	case MAILBOX_FLAGS_ADD:
		nfl |= flags;
		nkw |= keywords;
		break;
	case MAILBOX_FLAGS_REMOVE:
		nfl &= (uint8_t)~flags;
		nkw &= ~keywords;
		break;
	case MAILBOX_FLAGS_REPLACE:
		nfl = flags;
		nkw = keywords;
		break;
	}
	if (nfl == msg.flags && nkw == msg.keywords) {
		if (modseq_r != NULL)
			*modseq_r = msg.modseq;
		ret = 1;
		goto out;
	}
	struct mb_file *f = &mb->files[mb->msg_file[seq - 1]];
	struct maildir_flags mf = f->flags;
	char newname[MAILDIR_NAME_MAX + 1];
	flags_to_maildir(&mf, nfl, nkw);
	int r = maildir_set_flags(mb->dir, f->name, &mf, newname,
				  sizeof(newname), &merr);
	if (r == -1) {
		*error_r = errf("%s: %s", mb->dir, merr.msg);
		goto out;
	}
	if (r == 0) {
		/* Expunged by another process: record it. */
		ret = sync_locked(mb, &locks, false, error_r) == -1 ? -1 : 0;
		goto out;
	}
	free(f->name);
	f->name = xstrdup(newname);
	f->flags = mf;
	if (mailindex_set_flags(mb->index, locks.index, uid, nfl, nkw, modseq_r,
				&error) != MAILINDEX_OK) {
		*error_r = errf("%s: index: %s", mb->dir, error);
		goto out;
	}
	ret = 1;
out:
	unlock_both(&locks);
	return ret;
}

int mailbox_expunge(struct mailbox *mb, uint32_t uid, const char **error_r)
{
	struct mb_locks locks;
	struct mailbox_message msg;
	struct maildir_error merr;
	int ret = -1;

	if (lock_both(mb, &locks, error_r) == -1)
		return -1;
	if (mailbox_lookup_uid(mb, uid, &msg) == 0) {
		/* Not in our (maybe stale) view: look again. */
		if (sync_locked(mb, &locks, false, error_r) == -1)
			goto out;
		if (mailbox_lookup_uid(mb, uid, &msg) == 0) {
			ret = 0;
			goto out;
		}
	}
	/* The file first; the sync then updates UID list and index. */
	int r = maildir_expunge(mb->dir, msg.name, &merr);
	if (r == -1) {
		*error_r = errf("%s: %s", mb->dir, merr.msg);
		goto out;
	}
	if (sync_locked(mb, &locks, false, error_r) == -1)
		goto out;
	ret = r;
out:
	unlock_both(&locks);
	return ret;
}

/* Writes fd (from its current offset to EOF) through a maildir save;
 * the name in name_r. 1 or -1. */
static int deliver_fd(const char *dir, int fd, uint64_t max_size,
		      const struct maildir_flags *mf, char *name_r,
		      size_t name_size, struct maildir_error *merr)
{
	uint8_t chunk[16384];
	ssize_t n;
	struct maildir_save *save = maildir_save_begin(dir, max_size, merr);

	if (save == NULL)
		return -1;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		if (maildir_save_write(save, chunk, (size_t)n, merr) == -1) {
			maildir_save_abort(&save);
			return -1;
		}
	}
	if (n < 0) {
		merr->kind = MAILDIR_ERR_IO;
		merr->errnum = errno;
		str_printf(merr->msg, sizeof(merr->msg), "read: %s",
			   strerror(errno));
		maildir_save_abort(&save);
		return -1;
	}
	return maildir_save_finish(&save, mf, name_r, name_size, merr);
}

static int append_common(struct mailbox *mb, const void *data, size_t len,
			 int src_fd, uint64_t max_size, uint8_t flags,
			 uint32_t keywords, int64_t date, uint32_t *uid_r,
			 const char **error_r);

int mailbox_append(struct mailbox *mb, const void *data, size_t len,
		   uint64_t max_size, uint8_t flags, uint32_t keywords,
		   int64_t date, uint32_t *uid_r, const char **error_r)
{
	return append_common(mb, data, len, -1, max_size, flags, keywords,
			     date, uid_r, error_r);
}

int mailbox_append_fd(struct mailbox *mb, int fd, uint64_t max_size,
		      uint8_t flags, uint32_t keywords, int64_t date,
		      uint32_t *uid_r, const char **error_r)
{
	return append_common(mb, NULL, 0, fd, max_size, flags, keywords, date,
			     uid_r, error_r);
}

static int append_common(struct mailbox *mb, const void *data, size_t len,
			 int src_fd, uint64_t max_size, uint8_t flags,
			 uint32_t keywords, int64_t date, uint32_t *uid_r,
			 const char **error_r)
{
	struct mb_locks locks;
	struct maildir_flags mf;
	struct maildir_error merr;
	struct maildir_name parsed;
	char name[MAILDIR_NAME_MAX + 1];
	char path[MAILDIR_PATH_MAX];
	int ret = -1;

	memset(&mf, 0, sizeof(mf));
	flags_to_maildir(&mf, flags & MAILBOX_FLAGS_MASK, keywords);
	if (lock_both(mb, &locks, error_r) == -1)
		return -1;
	int delivered = src_fd >= 0
			    ? deliver_fd(mb->dir, src_fd, max_size, &mf, name,
					 sizeof(name), &merr)
			    : maildir_deliver(mb->dir, data, len, max_size,
					      &mf, name, sizeof(name), &merr);
	if (delivered == -1) {
		*error_r = errf("%s: %s", mb->dir, merr.msg);
		goto out;
	}
	if (date >= 0) {
		struct timespec ts[2] = {{.tv_sec = (time_t)date},
					 {.tv_sec = (time_t)date}};
		if (cur_path(mb, name, path, sizeof(path)) == -1 ||
		    utimensat(AT_FDCWD, path, ts, 0) == -1)
			log_warn("mailbox %s: set internal date of %s", mb->dir,
				 name);
	}
	/* The sync gives the file its UID (UID list) and appends it to the
	 * index; a crash before that leaves a file the next sync picks up. */
	if (sync_locked(mb, &locks, false, error_r) == -1)
		goto out;
	if (maildir_name_parse(str_cstr(name), &parsed, &merr) == -1) {
		*error_r = errf("%s: %s", mb->dir, merr.msg);
		goto out;
	}
	*uid_r = uidlist_lookup_name(mb->list, parsed.base);
	if (*uid_r == 0) {
		*error_r = errf("%s: delivered %s vanished", mb->dir, name);
		goto out;
	}
	ret = 1;
out:
	unlock_both(&locks);
	return ret;
}

int mailbox_resync(const char *dir, const struct mailbox_settings *set,
		   const char **error_r)
{
	struct mailbox_settings s = {0};
	struct mailbox *mb = NULL;

	if (set != NULL)
		s = *set;
	s.force_rebuild = true;
	if (mailbox_open(dir, &s, &mb, error_r) == -1)
		return -1;
	mailbox_close(&mb);
	return 1;
}

static void format_flags(uint8_t fl, char *dst, size_t size)
{
	static const char *const names[] = {"\\Seen", "\\Answered", "\\Flagged",
					    "\\Deleted", "\\Draft"};
	size_t used = 0;

	dst[0] = '\0';
	for (unsigned int i = 0; i < 5; i++) {
		if ((fl & (1u << i)) == 0)
			continue;
		int n = snprintf(dst + used, size - used, "%s%s",
				 used > 0 ? " " : "", names[i]);
		if (n < 0 || (size_t)n >= size - used)
			return;
		used += (size_t)n;
	}
}

int mailbox_index_dump(const char *dir, FILE *out, const char **error_r)
{
	struct mailindex *idx = NULL;
	struct uidlist *list = NULL;
	const char *error = NULL;
	int ret = -1;

	enum mailindex_status st =
	    mailindex_open(dir, MAILBOX_MAX_MESSAGES_DEFAULT, 0, &idx, &error);
	if (st == MAILINDEX_NOT_FOUND) {
		*error_r = errf("%s: no index", dir);
		return 0;
	}
	if (st != MAILINDEX_OK) {
		*error_r = errf("%s: index %s: %s", dir,
				mailindex_status_name(st), error);
		return -1;
	}
	if (uidlist_read(dir, MAILBOX_MAX_MESSAGES_DEFAULT, &list, &error) !=
		UIDLIST_OK ||
	    uidlist_uidvalidity(list) != mailindex_uidvalidity(idx))
		uidlist_free(&list); /* names unknown: printed as "-" */

	fprintf(out,
		"uidvalidity=%" PRIu32 " uidnext=%" PRIu32
		" highest_modseq=%" PRIu64 " messages=%" PRIu32 "\n",
		mailindex_uidvalidity(idx), mailindex_uidnext(idx),
		mailindex_highest_modseq(idx), mailindex_count(idx));
	for (uint32_t seq = 1; seq <= mailindex_count(idx); seq++) {
		struct mailindex_record rec;
		char fl[64], kw[MAILDIR_KEYWORDS_MAX + 2], date[32];
		struct str base = STR("-");
		size_t k = 0;
		struct tm tm;
		time_t t;

		if (!mailindex_lookup_seq(idx, seq, &rec))
			break;
		format_flags(rec.flags, fl, sizeof(fl));
		for (unsigned int i = 0; i < MAILDIR_KEYWORDS_MAX; i++) {
			if ((rec.keywords & (1u << i)) != 0)
				kw[k++] = (char)('a' + i);
		}
		if (k == 0)
			kw[k++] = '-';
		kw[k] = '\0';
		t = (time_t)rec.date;
		if (gmtime_r(&t, &tm) == NULL ||
		    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm) ==
			0)
			snprintf(date, sizeof(date), "@%" PRId64, rec.date);
		if (list != NULL)
			(void)uidlist_lookup_uid(list, rec.uid, &base);
		fprintf(out,
			"%" PRIu32 " %" PRIu32 " (%s) %s %" PRIu64 " %" PRIu64
			" %s %.*s\n",
			seq, rec.uid, fl, kw, rec.modseq, rec.size, date,
			STR_FMT(base));
	}
	if (fflush(out) == EOF || ferror(out)) {
		*error_r = errf("index dump: write: %s", strerror(errno));
		goto out;
	}
	ret = 1;
out:
	uidlist_free(&list);
	mailindex_free(&idx);
	return ret;
}
