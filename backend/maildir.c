/*
 * Maildir++ storage primitives. See maildir.h for the layout, the name
 * format and the contracts. Paths are built in PATH_MAX stack buffers with
 * str_printf (truncation is an error); directories are read one entry at a
 * time; the only file we read (dovecot-keywords) goes through a fixed line
 * buffer.
 */
#include "maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "log.h"
#include "xmalloc.h"

#define SAVE_BUF_SIZE 16384
#define KEYWORDS_LINE_MAX (MAILDIR_KEYWORD_NAME_MAX + 8)
/* Seconds between two "clock moved backwards" warnings. */
#define CLOCK_WARN_INTERVAL 10

static void (*clock_hook)(struct timespec *ts_r);
static uint64_t (*random_hook)(void);
static _Atomic uint64_t uniq_counter;
static _Atomic bool fsync_disabled;
static _Atomic int64_t uniq_last_usecs; /* time of the last new name */
static _Atomic int64_t clock_warned_at; /* CLOCK_MONOTONIC secs, 0: never */

/* ---- errors ---- */

static void err_set(struct maildir_error *err, enum maildir_error_kind kind,
		    int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void err_set(struct maildir_error *err, enum maildir_error_kind kind,
		    int errnum, const char *fmt, ...)
{
	if (err == NULL)
		return;
	err->kind = kind;
	err->errnum = errnum;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		err->msg[0] = '\0';
	/* a cut message stays as vsnprintf left it: cut, NUL-terminated */
}

/* "<what>(<path>) failed: <strerror>" from errno. */
static int err_sys(struct maildir_error *err, const char *what,
		   const char *path)
{
	int e = errno;
	err_set(err, MAILDIR_ERR_IO, e, "%s(%s) failed: %s", what, path,
		strerror(e));
	errno = e;
	return -1;
}

static void err_clear(struct maildir_error *err)
{
	if (err != NULL) {
		err->kind = MAILDIR_ERR_NONE;
		err->errnum = 0;
		err->msg[0] = '\0';
	}
}

/* ---- small helpers ---- */

static void now_get(struct timespec *ts_r)
{
	if (clock_hook != NULL)
		clock_hook(ts_r);
	else if (clock_gettime(CLOCK_REALTIME, ts_r) == -1) {
		ts_r->tv_sec = time(NULL);
		ts_r->tv_nsec = 0;
	}
}

void maildir_set_clock(void (*realtime)(struct timespec *ts_r))
{
	clock_hook = realtime;
}

void maildir_set_random(uint64_t (*random64)(void))
{
	random_hook = random64;
}

void maildir_set_fsync(bool enable)
{
	fsync_disabled = !enable;
}

static int fsync_fd(int fd)
{
	return fsync_disabled ? 0 : fsync(fd);
}

static uint64_t random_get(void)
{
	if (random_hook != NULL)
		return random_hook();
	uint64_t r;
	arc4random_buf(&r, sizeof(r));
	return r;
}

/* dir/a or dir/a/b into path_r (PATH_MAX). b may be NULL. */
static int path_make(char *path_r, const char *dir, const char *a,
		     const char *b, struct maildir_error *err)
{
	int n =
	    b == NULL
		? str_printf(path_r, MAILDIR_PATH_MAX, "%s/%s", dir, a)
		: str_printf(path_r, MAILDIR_PATH_MAX, "%s/%s/%s", dir, a, b);
	if (n < 0) {
		err_set(err, MAILDIR_ERR_INVALID, 0, "path too long: %s/%s",
			dir, a);
		return -1;
	}
	return 0;
}


static int fsync_dir(const char *path, struct maildir_error *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1)
		return err_sys(err, "open", path);
	if (fsync_fd(fd) == -1) {
		err_sys(err, "fsync", path);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* fsyncs the directory holding path (its last component removed). */
static int fsync_parent(const char *path, struct maildir_error *err)
{
	char parent[MAILDIR_PATH_MAX];
	if (!str_copy(str_cstr(path), parent, sizeof(parent))) {
		err_set(err, MAILDIR_ERR_INVALID, 0, "path too long");
		return -1;
	}
	size_t len = strlen(parent);
	while (len > 1 && parent[len - 1] == '/')
		parent[--len] = '\0';
	char *slash = strrchr(parent, '/');
	if (slash == NULL)
		return fsync_dir(".", err);
	if (slash == parent)
		slash[1] = '\0';
	else
		*slash = '\0';
	return fsync_dir(parent, err);
}

/* Unique per-process suffix for our own temporary names. */
static uint64_t counter_next(void)
{
	return atomic_fetch_add(&uniq_counter, 1) + 1;
}

/* ---- flags and names ---- */

static const char sys_letters[] = "DFPRST";

static bool bit_get(const uint64_t set[4], uint8_t c)
{
	return (set[c >> 6] >> (c & 63)) & 1;
}

static void flags_add_byte(struct maildir_flags *f, uint8_t c)
{
	const char *p = c == 0 ? NULL : strchr(sys_letters, c);
	if (p != NULL)
		f->sys |= 1u << (p - sys_letters);
	else if (c >= 'a' && c <= 'z')
		f->keywords |= (uint32_t)1 << (c - 'a');
	else
		f->other[c >> 6] |= (uint64_t)1 << (c & 63);
}

static bool flags_has_byte(const struct maildir_flags *f, uint8_t c)
{
	const char *p = c == 0 ? NULL : strchr(sys_letters, c);
	if (p != NULL)
		return (f->sys >> (p - sys_letters)) & 1;
	if (c >= 'a' && c <= 'z')
		return (f->keywords >> (c - 'a')) & 1;
	return bit_get(f->other, c);
}

int maildir_flags_format(const struct maildir_flags *flags, char *dst,
			 size_t dstsize)
{
	size_t n = 0;
	/* NUL and '/' can never be in a file name */
	for (unsigned int c = 1; c < 256; c++) {
		if (c == '/' || !flags_has_byte(flags, (uint8_t)c))
			continue;
		if (n + 1 >= dstsize) {
			if (dstsize > 0)
				dst[0] = '\0';
			return -1;
		}
		dst[n++] = (char)c;
	}
	if (dstsize == 0)
		return -1;
	dst[n] = '\0';
	return (int)n;
}

/* The rules every file name obeys. */
static bool name_chars_ok(struct str name)
{
	if (name.len == 0 || name.len > MAILDIR_NAME_MAX || name.p[0] == '.')
		return false;
	return memchr(name.p, '/', name.len) == NULL &&
	       memchr(name.p, '\0', name.len) == NULL;
}

/* Looks for ",<key>=<digits>" fields after the first ',' of base. */
static bool base_field_u64(struct str base, char key, uint64_t *value_r)
{
	struct str head, rest = base;
	if (!str_split(rest, ',', &head, &rest))
		return false;
	for (;;) {
		struct str field;
		bool more = str_split(rest, ',', &field, &rest);
		if (field.len > 2 && field.p[0] == key && field.p[1] == '=' &&
		    str_to_u64(str_slice(field, 2, field.len - 2), UINT64_MAX,
			       value_r))
			return true;
		if (!more)
			return false;
	}
}

int maildir_name_parse(struct str name, struct maildir_name *name_r,
		       struct maildir_error *err)
{
	memset(name_r, 0, sizeof(*name_r));
	if (!name_chars_ok(name)) {
		err_set(err, MAILDIR_ERR_INVALID, 0,
			"invalid maildir file name (%zu bytes)", name.len);
		return -1;
	}
	struct str info;
	str_split(name, ':', &name_r->base, &info);
	if (name_r->base.len == 0) {
		err_set(err, MAILDIR_ERR_INVALID, 0,
			"maildir file name with an empty base");
		return -1;
	}
	name_r->has_size = base_field_u64(name_r->base, 'S', &name_r->size);
	name_r->has_vsize = base_field_u64(name_r->base, 'W', &name_r->vsize);
	if (info.len >= 2 && info.p[0] == '2' && info.p[1] == ',') {
		name_r->has_info = true;
		for (size_t i = 2; i < info.len; i++)
			flags_add_byte(&name_r->flags, (uint8_t)info.p[i]);
	}
	return 0;
}

int maildir_name_build(struct str base, const struct maildir_flags *flags,
		       char *dst, size_t dstsize)
{
	if (dstsize > 0)
		dst[0] = '\0';
	if (!name_chars_ok(base) || memchr(base.p, ':', base.len) != NULL)
		return -1;
	char fl[257];
	int fl_len = 0;
	if (flags != NULL &&
	    (fl_len = maildir_flags_format(flags, fl, sizeof(fl))) < 0)
		return -1;
	size_t total = base.len + (flags != NULL ? 3 + (size_t)fl_len : 0);
	if (total > MAILDIR_NAME_MAX || total >= dstsize)
		return -1;
	memcpy(dst, base.p, base.len);
	if (flags != NULL) {
		memcpy(dst + base.len, ":2,", 3);
		memcpy(dst + base.len + 3, fl, (size_t)fl_len);
	}
	dst[total] = '\0';
	return (int)total;
}

int maildir_host_escape(struct str host, char *dst, size_t dstsize)
{
	size_t n = 0;
	if (dstsize == 0)
		return -1;
	for (size_t i = 0; i < host.len; i++) {
		const char *rep = host.p[i] == '/'   ? "\\057"
				  : host.p[i] == ':' ? "\\072"
						     : NULL;
		size_t add = rep != NULL ? 4 : 1;
		if (n + add > MAILDIR_HOST_MAX)
			break;
		if (n + add >= dstsize) {
			dst[0] = '\0';
			return -1;
		}
		if (rep != NULL)
			memcpy(dst + n, rep, 4);
		else
			dst[n] = host.p[i];
		n += add;
	}
	dst[n] = '\0';
	return (int)n;
}

int maildir_uniq_format(const struct maildir_uniq *u, char *dst, size_t dstsize)
{
	char host[MAILDIR_HOST_MAX + 1];
	if (maildir_host_escape(u->host, host, sizeof(host)) < 0)
		return -1;
	/* a host that is empty or has bytes a name cannot hold */
	if (host[0] == '\0' || memchr(u->host.p, '\0', u->host.len) != NULL)
		str_copy(STR("localhost"), host, sizeof(host));
	long long secs = (long long)u->now.tv_sec;
	long usecs = u->now.tv_nsec / 1000;
	if (secs < 0)
		secs = 0;
	if (usecs < 0 || usecs > 999999)
		usecs = 0;
	int n = str_printf(dst, dstsize, "%lld.M%ldP%lluQ%lluR%016llx.%s", secs,
			   usecs, (unsigned long long)u->pid,
			   (unsigned long long)u->counter,
			   (unsigned long long)u->random, host);
	if (n < 0 || n > MAILDIR_NAME_MAX) {
		if (dstsize > 0)
			dst[0] = '\0';
		return -1;
	}
	return n;
}

/* Warns (at most once per CLOCK_WARN_INTERVAL) when the wall clock is a
 * second or more behind the time of the previous new name of this
 * process. Names stay unique, but their times no longer follow the order
 * of delivery. Smaller steps are threads racing, not the clock. */
static void clock_check(const struct timespec *now)
{
	int64_t t = (int64_t)now->tv_sec * 1000000 + now->tv_nsec / 1000;
	int64_t last = atomic_exchange(&uniq_last_usecs, t);

	if (last == 0 || last - t < 1000000)
		return;
	struct timespec mono;
	if (clock_gettime(CLOCK_MONOTONIC, &mono) == -1)
		return;
	int64_t secs = (int64_t)mono.tv_sec + 1; /* never 0 */
	int64_t prev = atomic_load(&clock_warned_at);
	if ((prev != 0 && secs - prev < CLOCK_WARN_INTERVAL) ||
	    !atomic_compare_exchange_strong(&clock_warned_at, &prev, secs))
		return;
	log_warnx("maildir: clock moved backwards by %lld seconds; unique "
		  "names stay unique (pid+counter+random)",
		  (long long)((last - t) / 1000000));
}

int maildir_uniq_new(char *dst, size_t dstsize)
{
	char host[256];
	if (gethostname(host, sizeof(host)) == -1)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	struct maildir_uniq u = {
	    .pid = (uint64_t)getpid(),
	    .counter = counter_next(),
	    .random = random_get(),
	    .host = str_cstr(host),
	};
	now_get(&u.now);
	clock_check(&u.now);
	return maildir_uniq_format(&u, dst, dstsize);
}

/* ---- folders ---- */

static bool is_inbox(struct str name)
{
	return str_eq_nocase(name, STR("INBOX"));
}

int maildir_folder_name_check(struct str name, struct maildir_error *err)
{
	if (name.len == 0 || name.len > MAILDIR_FOLDER_NAME_MAX) {
		err_set(err, MAILDIR_ERR_INVALID, 0,
			"folder name must be 1-%d bytes",
			MAILDIR_FOLDER_NAME_MAX);
		return -1;
	}
	for (size_t i = 0; i < name.len; i++) {
		uint8_t c = (uint8_t)name.p[i];
		if (c < 0x20 || c == 0x7f || c == '/') {
			err_set(err, MAILDIR_ERR_INVALID, 0,
				"folder name has a forbidden byte 0x%02x", c);
			return -1;
		}
		if (c == '.' &&
		    (i == 0 || i + 1 == name.len || name.p[i + 1] == '.')) {
			err_set(err, MAILDIR_ERR_INVALID, 0,
				"folder name has an empty component");
			return -1;
		}
	}
	return 0;
}

int maildir_folder_path(const char *root, struct str name, char *path_r,
			size_t path_size, struct maildir_error *err)
{
	int n;
	if (is_inbox(name))
		n = str_printf(path_r, path_size, "%s", root);
	else if (maildir_folder_name_check(name, err) < 0)
		return -1;
	else
		n = str_printf(path_r, path_size, "%s/.%.*s", root,
			       STR_FMT(name));
	if (n < 0) {
		err_set(err, MAILDIR_ERR_INVALID, 0, "folder path too long");
		return -1;
	}
	return 0;
}

int maildir_folder_from_dirname(const char *dirname, char *name_r,
				size_t name_size)
{
	if (dirname[0] != '.')
		return -1;
	struct str name = str_cstr(dirname + 1);
	if (maildir_folder_name_check(name, NULL) < 0 || is_inbox(name) ||
	    !str_copy(name, name_r, name_size))
		return -1;
	return 0;
}

static int mkdir_one(const char *path, bool *created, struct maildir_error *err)
{
	if (mkdir(path, 0700) == 0) {
		*created = true;
		return 0;
	}
	if (errno != EEXIST)
		return err_sys(err, "mkdir", path);
	struct stat st;
	if (stat(path, &st) == -1)
		return err_sys(err, "stat", path);
	if (!S_ISDIR(st.st_mode)) {
		err_set(err, MAILDIR_ERR_INVALID, 0, "%s is not a directory",
			path);
		return -1;
	}
	return 0;
}

int maildir_create(const char *dir, struct maildir_error *err)
{
	static const char *const subs[] = {"cur", "new", "tmp"};
	char path[MAILDIR_PATH_MAX];
	bool created = false, sub_created = false;

	err_clear(err);
	if (mkdir_one(dir, &created, err) < 0)
		return -1;
	for (size_t i = 0; i < 3; i++) {
		if (path_make(path, dir, subs[i], NULL, err) < 0 ||
		    mkdir_one(path, &sub_created, err) < 0)
			return -1;
	}
	if (!created && !sub_created)
		return 0;
	if (fsync_dir(dir, err) < 0 || (created && fsync_parent(dir, err) < 0))
		return -1;
	return 1;
}

int maildir_folder_create(const char *root, struct str name,
			  struct maildir_error *err)
{
	char path[MAILDIR_PATH_MAX], marker[MAILDIR_PATH_MAX];
	err_clear(err);
	if (is_inbox(name)) {
		err_set(err, MAILDIR_ERR_INVALID, 0,
			"INBOX is the root, not a folder");
		return -1;
	}
	if (maildir_folder_path(root, name, path, sizeof(path), err) < 0 ||
	    path_make(marker, path, "maildirfolder", NULL, err) < 0)
		return -1;
	int ret = maildir_create(path, err);
	if (ret <= 0)
		return ret;
	int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1)
		return err_sys(err, "open", marker);
	close(fd);
	if (fsync_dir(path, err) < 0)
		return -1;
	return 1;
}

static bool is_dir_at(const char *root, const char *entry, const char *sub)
{
	char path[MAILDIR_PATH_MAX];
	struct stat st;
	if (path_make(path, root, entry, sub, NULL) < 0)
		return false;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int maildir_folder_list(const char *root, unsigned int max_folders,
			maildir_folder_cb *cb, void *context,
			struct maildir_error *err)
{
	char name[MAILDIR_NAME_MAX + 1];
	int count = 0;

	err_clear(err);
	DIR *d = opendir(root);
	if (d == NULL)
		return err_sys(err, "opendir", root);
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (de == NULL) {
			if (errno != 0) {
				err_sys(err, "readdir", root);
				count = -1;
			}
			break;
		}
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN &&
		    de->d_type != DT_LNK)
			continue;
		if (maildir_folder_from_dirname(de->d_name, name,
						sizeof(name)) < 0 ||
		    !is_dir_at(root, de->d_name, "cur"))
			continue;
		if (max_folders != 0 && (unsigned int)count >= max_folders) {
			err_set(err, MAILDIR_ERR_LIMIT, 0,
				"%s has more than %u folders", root,
				max_folders);
			count = -1;
			break;
		}
		if (cb(name, context) < 0) {
			err_set(err, MAILDIR_ERR_STOPPED, 0, "stopped");
			count = -1;
			break;
		}
		count++;
	}
	closedir(d);
	return count;
}

/* Removes the files in path, descending depth more levels, then path. */
static int rm_tree(const char *path, int depth, struct maildir_error *err)
{
	char sub[MAILDIR_PATH_MAX];
	int ret = 0;
	DIR *d = opendir(path);
	if (d == NULL)
		return err_sys(err, "opendir", path);
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (de == NULL) {
			if (errno != 0)
				ret = err_sys(err, "readdir", path);
			break;
		}
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (path_make(sub, path, de->d_name, NULL, err) < 0) {
			ret = -1;
			break;
		}
		if (unlink(sub) == 0 || errno == ENOENT)
			continue;
		if ((errno == EISDIR || errno == EPERM) && depth > 0) {
			if (rm_tree(sub, depth - 1, err) < 0) {
				ret = -1;
				break;
			}
			continue;
		}
		ret = err_sys(err, "unlink", sub);
		break;
	}
	closedir(d);
	if (ret == 0 && rmdir(path) == -1)
		ret = err_sys(err, "rmdir", path);
	return ret;
}

int maildir_folder_delete(const char *root, struct str name,
			  struct maildir_error *err)
{
	char path[MAILDIR_PATH_MAX], trash[MAILDIR_PATH_MAX];
	err_clear(err);
	if (is_inbox(name)) {
		err_set(err, MAILDIR_ERR_INVALID, 0, "INBOX cannot be deleted");
		return -1;
	}
	if (maildir_folder_path(root, name, path, sizeof(path), err) < 0)
		return -1;
	if (str_printf(trash, sizeof(trash), "%s/..mr-delete.%llu.%llu", root,
		       (unsigned long long)getpid(),
		       (unsigned long long)counter_next()) < 0) {
		err_set(err, MAILDIR_ERR_INVALID, 0, "path too long");
		return -1;
	}
	if (rename(path, trash) == -1) {
		if (errno == ENOENT) {
			err_set(err, MAILDIR_ERR_NOTFOUND, 0, "no folder %.*s",
				STR_FMT(name));
			return 0;
		}
		return err_sys(err, "rename", path);
	}
	if (fsync_dir(root, err) < 0 || rm_tree(trash, 1, err) < 0 ||
	    fsync_dir(root, err) < 0)
		return -1;
	return 1;
}

/* rename that refuses to replace an existing target. */
static int rename_noreplace(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	/* file system without RENAME_NOREPLACE: check, then rename */
	struct stat st;
	if (lstat(to, &st) == 0) {
		errno = EEXIST;
		return -1;
	}
	return rename(from, to);
}

/* Renames (or, with dry_run, checks) each child ".old.X" to ".new.X". */
static int rename_children(const char *root, struct str old_name,
			   struct str new_name, bool dry_run,
			   struct maildir_error *err)
{
	char from[MAILDIR_PATH_MAX], to[MAILDIR_PATH_MAX];
	int ret = 0;
	DIR *d = opendir(root);
	if (d == NULL)
		return err_sys(err, "opendir", root);
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (de == NULL) {
			if (errno != 0)
				ret = err_sys(err, "readdir", root);
			break;
		}
		struct str ent = str_cstr(de->d_name);
		/* ".<old>." prefix */
		if (ent.len < old_name.len + 3 || ent.p[0] != '.' ||
		    memcmp(ent.p + 1, old_name.p, old_name.len) != 0 ||
		    ent.p[old_name.len + 1] != '.')
			continue;
		struct str tail = str_slice(ent, old_name.len + 2,
					    ent.len - old_name.len - 2);
		if (str_printf(to, sizeof(to), "%s/.%.*s.%.*s", root,
			       STR_FMT(new_name), STR_FMT(tail)) < 0 ||
		    new_name.len + 2 + tail.len > MAILDIR_NAME_MAX) {
			err_set(err, MAILDIR_ERR_INVALID, 0,
				"renamed child name too long");
			ret = -1;
			break;
		}
		if (path_make(from, root, de->d_name, NULL, err) < 0) {
			ret = -1;
			break;
		}
		struct stat st;
		if (dry_run) {
			if (lstat(to, &st) == 0) {
				err_set(err, MAILDIR_ERR_EXISTS, 0,
					"%s already exists", to);
				ret = -1;
				break;
			}
			continue;
		}
		if (rename_noreplace(from, to) == -1) {
			if (errno == EEXIST)
				err_set(err, MAILDIR_ERR_EXISTS, EEXIST,
					"%s already exists", to);
			else
				err_sys(err, "rename", from);
			ret = -1;
			break;
		}
	}
	closedir(d);
	return ret;
}

int maildir_folder_rename(const char *root, struct str old_name,
			  struct str new_name, struct maildir_error *err)
{
	char from[MAILDIR_PATH_MAX], to[MAILDIR_PATH_MAX];
	err_clear(err);
	if (is_inbox(old_name) || is_inbox(new_name)) {
		err_set(err, MAILDIR_ERR_INVALID, 0,
			"renaming to or from INBOX is not done here");
		return -1;
	}
	if (maildir_folder_path(root, old_name, from, sizeof(from), err) < 0 ||
	    maildir_folder_path(root, new_name, to, sizeof(to), err) < 0)
		return -1;
	if (str_eq(old_name, new_name) ||
	    (new_name.len > old_name.len &&
	     memcmp(new_name.p, old_name.p, old_name.len) == 0 &&
	     new_name.p[old_name.len] == '.')) {
		err_set(err, MAILDIR_ERR_INVALID, 0,
			"cannot rename a folder into itself");
		return -1;
	}
	struct stat st;
	if (stat(from, &st) == -1) {
		if (errno == ENOENT) {
			err_set(err, MAILDIR_ERR_NOTFOUND, 0, "no folder %.*s",
				STR_FMT(old_name));
			return 0;
		}
		return err_sys(err, "stat", from);
	}
	if (lstat(to, &st) == 0) {
		err_set(err, MAILDIR_ERR_EXISTS, 0, "folder %.*s exists",
			STR_FMT(new_name));
		return -1;
	}
	if (rename_children(root, old_name, new_name, true, err) < 0)
		return -1;
	if (rename_noreplace(from, to) == -1) {
		if (errno == ENOENT) {
			err_set(err, MAILDIR_ERR_NOTFOUND, 0, "no folder %.*s",
				STR_FMT(old_name));
			return 0;
		}
		if (errno == EEXIST) {
			err_set(err, MAILDIR_ERR_EXISTS, EEXIST,
				"folder %.*s exists", STR_FMT(new_name));
			return -1;
		}
		return err_sys(err, "rename", from);
	}
	if (rename_children(root, old_name, new_name, false, err) < 0 ||
	    fsync_dir(root, err) < 0)
		return -1;
	return 1;
}

/* ---- delivery ---- */

struct maildir_save {
	int fd; /* -1 once closed */
	bool failed;
	uint64_t max_size;
	uint64_t size;
	uint64_t vsize; /* size with every bare LF counted as CRLF (W=) */
	bool prev_cr;
	size_t buf_len;
	char dir[MAILDIR_PATH_MAX];
	char base[MAILDIR_NAME_MAX + 1];
	char tmp_path[MAILDIR_PATH_MAX];
	uint8_t buf[SAVE_BUF_SIZE];
};

struct maildir_save *maildir_save_begin(const char *dir, uint64_t max_size,
					struct maildir_error *err)
{
	err_clear(err);
	struct maildir_save *s = xcalloc(1, sizeof(*s));
	s->fd = -1;
	s->max_size = max_size;
	if (!str_copy(str_cstr(dir), s->dir, sizeof(s->dir))) {
		err_set(err, MAILDIR_ERR_INVALID, 0, "path too long");
		goto fail;
	}
	/* room for ",S=<20 digits>,W=<20 digits>:2,<flags>" later */
	if (maildir_uniq_new(s->base, MAILDIR_NAME_MAX - 100) < 0) {
		err_set(err, MAILDIR_ERR_INVALID, 0,
			"cannot build a file name");
		goto fail;
	}
	if (path_make(s->tmp_path, dir, "tmp", s->base, err) < 0)
		goto fail;
	s->fd =
	    open(s->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (s->fd == -1) {
		err_sys(err, "open", s->tmp_path);
		goto fail;
	}
	return s;
fail:
	free(s);
	return NULL;
}

/* Closes and removes the tmp file; marks s failed. */
static void save_discard(struct maildir_save *s)
{
	if (s->fd != -1) {
		close(s->fd);
		s->fd = -1;
		/* a failed unlink is left to the tmp/ cleanup by age */
		(void)unlink(s->tmp_path);
	}
	s->failed = true;
}

static int save_flush(struct maildir_save *s, struct maildir_error *err)
{
	if (s->buf_len == 0)
		return 0;
	if (fd_write_all(s->fd, s->buf, s->buf_len) == -1) {
		err_sys(err, "write", s->tmp_path);
		save_discard(s);
		return -1;
	}
	s->buf_len = 0;
	return 0;
}

int maildir_save_write(struct maildir_save *s, const void *data, size_t len,
		       struct maildir_error *err)
{
	if (s->failed) {
		err_set(err, MAILDIR_ERR_INVALID, 0, "save already failed");
		return -1;
	}
	if (s->max_size != 0 &&
	    (len > s->max_size || s->size > s->max_size - len)) {
		err_set(err, MAILDIR_ERR_TOOBIG, 0,
			"message larger than %llu bytes",
			(unsigned long long)s->max_size);
		save_discard(s);
		return -1;
	}
	s->size += len;
	s->vsize += len;
	const uint8_t *p = data;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n' && !s->prev_cr)
			s->vsize++;
		s->prev_cr = p[i] == '\r';
	}
	while (len > 0) {
		if (s->buf_len == 0 && len >= SAVE_BUF_SIZE) {
			/* large chunk: straight to the file */
			if (fd_write_all(s->fd, p, len) == -1) {
				err_sys(err, "write", s->tmp_path);
				save_discard(s);
				return -1;
			}
			return 0;
		}
		size_t n = SAVE_BUF_SIZE - s->buf_len;
		if (n > len)
			n = len;
		memcpy(s->buf + s->buf_len, p, n);
		s->buf_len += n;
		p += n;
		len -= n;
		if (s->buf_len == SAVE_BUF_SIZE && save_flush(s, err) < 0)
			return -1;
	}
	return 0;
}

void maildir_save_abort(struct maildir_save **sp)
{
	if (*sp == NULL)
		return;
	save_discard(*sp);
	xfree(sp);
}

static int link_final(const char *tmp, const char *final)
{
	if (link(tmp, final) == 0)
		return 1;
	/* file systems without hard links */
	if (errno == EPERM || errno == ENOTSUP || errno == ENOSYS ||
	    errno == EMLINK) {
		if (rename_noreplace(tmp, final) == 0)
			return 0; /* tmp name is gone already */
	}
	return -1;
}

int maildir_save_finish(struct maildir_save **sp,
			const struct maildir_flags *flags, char *name_r,
			size_t name_size, struct maildir_error *err)
{
	struct maildir_save *s = *sp;
	char base[MAILDIR_NAME_MAX + 1], final[MAILDIR_PATH_MAX];
	char subdir[MAILDIR_PATH_MAX];
	const char *sub = flags == NULL ? "new" : "cur";
	int ret = -1;

	if (name_size > 0)
		name_r[0] = '\0';
	if (s->failed) {
		err_set(err, MAILDIR_ERR_INVALID, 0, "save already failed");
		goto out;
	}
	if (save_flush(s, err) < 0)
		goto out;
	if (fsync_fd(s->fd) == -1) {
		err_sys(err, "fsync", s->tmp_path);
		goto out;
	}
	int fd = s->fd;
	s->fd = -1;
	if (close(fd) == -1) {
		err_sys(err, "close", s->tmp_path);
		unlink(s->tmp_path);
		goto out;
	}
	/* from here the tmp file is closed: remove by name on failure */
	/* W= is the size IMAP and POP3 report (Dovecot writes it too) */
	int blen = str_printf(base, sizeof(base), "%s,S=%llu,W=%llu", s->base,
			      (unsigned long long)s->size,
			      (unsigned long long)s->vsize);
	if (blen < 0 || maildir_name_build(str_from(base, (size_t)blen), flags,
					   name_r, name_size) < 0) {
		err_set(err, MAILDIR_ERR_INVALID, 0,
			"final file name does not fit");
		unlink(s->tmp_path);
		goto out;
	}
	if (path_make(subdir, s->dir, sub, NULL, err) < 0 ||
	    path_make(final, s->dir, sub, name_r, err) < 0) {
		unlink(s->tmp_path);
		goto out;
	}
	int linked = link_final(s->tmp_path, final);
	if (linked < 0) {
		err_sys(err, "link", final);
		unlink(s->tmp_path);
		goto out;
	}
	if (fsync_dir(subdir, err) < 0) {
		/* not durable: do not leave a message we report as failed */
		unlink(final);
		if (linked == 1)
			unlink(s->tmp_path);
		goto out;
	}
	if (linked == 1)
		(void)unlink(s->tmp_path); /* a leftover is cleaned by age */
	ret = 1;
out:
	if (ret < 0 && name_size > 0)
		name_r[0] = '\0';
	s->failed = true;
	xfree(sp);
	return ret;
}

int maildir_deliver(const char *dir, const void *data, size_t len,
		    uint64_t max_size, const struct maildir_flags *flags,
		    char *name_r, size_t name_size, struct maildir_error *err)
{
	if (name_size > 0)
		name_r[0] = '\0';
	struct maildir_save *s = maildir_save_begin(dir, max_size, err);
	if (s == NULL)
		return -1;
	if (maildir_save_write(s, data, len, err) < 0) {
		maildir_save_abort(&s);
		return -1;
	}
	return maildir_save_finish(&s, flags, name_r, name_size, err);
}

/* ---- scanning ---- */

static int scan_report(const char *name, bool in_new, bool moved,
		       maildir_scan_cb *cb, void *context,
		       const struct maildir_scan_settings *set,
		       struct maildir_scan_stats *st, struct maildir_error *err)
{
	struct maildir_name parsed;
	if (maildir_name_parse(str_cstr(name), &parsed, NULL) < 0) {
		st->skipped++;
		return 0;
	}
	if (set->max_entries != 0 && st->listed >= set->max_entries) {
		err_set(err, MAILDIR_ERR_LIMIT, 0, "more than %llu messages",
			(unsigned long long)set->max_entries);
		return -1;
	}
	struct maildir_entry e = {
	    .name = name,
	    .parsed = &parsed,
	    .in_new = in_new,
	    .moved = moved,
	};
	st->listed++;
	if (cb(&e, context) < 0) {
		err_set(err, MAILDIR_ERR_STOPPED, 0, "scan stopped");
		return -1;
	}
	return 0;
}

/* Moves new/name to cur/ and reports it. */
static int scan_move(const char *dir, const char *name, maildir_scan_cb *cb,
		     void *context, const struct maildir_scan_settings *set,
		     struct maildir_scan_stats *st, struct maildir_error *err)
{
	char from[MAILDIR_PATH_MAX], to[MAILDIR_PATH_MAX];
	char newname[MAILDIR_NAME_MAX + 1];
	struct maildir_name parsed;
	if (maildir_name_parse(str_cstr(name), &parsed, NULL) < 0) {
		st->skipped++;
		return 0;
	}
	if (parsed.has_info) {
		if (!str_copy(str_cstr(name), newname, sizeof(newname))) {
			st->skipped++;
			return 0;
		}
	} else {
		/* keep the base, add an empty info */
		struct maildir_flags none = {0};
		if (maildir_name_build(parsed.base, &none, newname,
				       sizeof(newname)) < 0) {
			st->skipped++;
			return 0;
		}
	}
	if (path_make(from, dir, "new", name, err) < 0 ||
	    path_make(to, dir, "cur", newname, err) < 0)
		return -1;
	if (rename_noreplace(from, to) == -1) {
		if (errno == ENOENT) {
			st->vanished++;
			return 0;
		}
		if (errno == EEXIST) {
			/* the same name in cur/ already: leave the duplicate
			 * in new/ rather than fail every open of the box */
			st->skipped++;
			return 0;
		}
		return err_sys(err, "rename", from);
	}
	st->moved++;
	return scan_report(newname, false, true, cb, context, set, st, err);
}

static int scan_dir(const char *dir, bool is_new, maildir_scan_cb *cb,
		    void *context, const struct maildir_scan_settings *set,
		    struct maildir_scan_stats *st, struct maildir_error *err)
{
	char path[MAILDIR_PATH_MAX];
	int ret = 0;
	if (path_make(path, dir, is_new ? "new" : "cur", NULL, err) < 0)
		return -1;
	DIR *d = opendir(path);
	if (d == NULL)
		return err_sys(err, "opendir", path);
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (de == NULL) {
			if (errno != 0)
				ret = err_sys(err, "readdir", path);
			break;
		}
		if (de->d_name[0] == '.')
			continue; /* ".", "..", hidden files */
		if (de->d_type == DT_DIR) {
			st->skipped++;
			continue;
		}
		if (is_new && set->move_new)
			ret = scan_move(dir, de->d_name, cb, context, set, st,
					err);
		else
			ret = scan_report(de->d_name, is_new, false, cb,
					  context, set, st, err);
		if (ret < 0)
			break;
	}
	closedir(d);
	return ret;
}

int maildir_scan(const char *dir, const struct maildir_scan_settings *set,
		 maildir_scan_cb *cb, void *context,
		 struct maildir_scan_stats *stats, struct maildir_error *err)
{
	struct maildir_scan_stats local;
	struct maildir_scan_stats *st = stats != NULL ? stats : &local;
	memset(st, 0, sizeof(*st));
	err_clear(err);

	if (set->tmp_max_age_secs >= 0) {
		int n = maildir_tmp_clean(dir, set->tmp_max_age_secs, err);
		if (n < 0)
			return -1;
		st->tmp_removed = (uint64_t)n;
	}
	if (scan_dir(dir, false, cb, context, set, st, err) < 0)
		return -1;
	uint64_t moved_before = st->moved;
	if (scan_dir(dir, true, cb, context, set, st, err) < 0)
		return -1;
	if (st->moved != moved_before) {
		char path[MAILDIR_PATH_MAX];
		/* make the moves durable: new/ entries are gone, cur/ has them
		 */
		if (path_make(path, dir, "cur", NULL, err) < 0 ||
		    fsync_dir(path, err) < 0)
			return -1;
		if (path_make(path, dir, "new", NULL, err) < 0 ||
		    fsync_dir(path, err) < 0)
			return -1;
	}
	return 1;
}

int maildir_tmp_clean(const char *dir, int64_t max_age_secs,
		      struct maildir_error *err)
{
	char path[MAILDIR_PATH_MAX], file[MAILDIR_PATH_MAX];
	struct timespec now;
	int removed = 0;

	err_clear(err);
	now_get(&now);
	int64_t limit = (int64_t)now.tv_sec - max_age_secs;
	if (path_make(path, dir, "tmp", NULL, err) < 0)
		return -1;
	DIR *d = opendir(path);
	if (d == NULL)
		return err_sys(err, "opendir", path);
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (de == NULL) {
			if (errno != 0)
				removed = err_sys(err, "readdir", path);
			break;
		}
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (path_make(file, path, de->d_name, NULL, err) < 0) {
			removed = -1;
			break;
		}
		struct stat st;
		if (lstat(file, &st) == -1 || !S_ISREG(st.st_mode))
			continue;
		if ((int64_t)st.st_mtime >= limit ||
		    (int64_t)st.st_atime >= limit)
			continue;
		if (unlink(file) == 0)
			removed++;
		else if (errno != ENOENT) {
			removed = err_sys(err, "unlink", file);
			break;
		}
	}
	closedir(d);
	return removed;
}

/* ---- flag changes and expunge ---- */

int maildir_find_base(const char *dir, const char *sub, struct str base,
		      char *name_r, size_t name_size, struct maildir_error *err)
{
	char path[MAILDIR_PATH_MAX];
	int ret = 0;
	if (name_size > 0)
		name_r[0] = '\0';
	if (path_make(path, dir, sub, NULL, err) < 0)
		return -1;
	DIR *d = opendir(path);
	if (d == NULL)
		return err_sys(err, "opendir", path);
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (de == NULL) {
			if (errno != 0)
				ret = err_sys(err, "readdir", path);
			break;
		}
		struct str ent = str_cstr(de->d_name);
		if (ent.len < base.len ||
		    memcmp(ent.p, base.p, base.len) != 0 ||
		    (ent.len > base.len && ent.p[base.len] != ':'))
			continue;
		if (!str_copy(ent, name_r, name_size)) {
			err_set(err, MAILDIR_ERR_INVALID, 0,
				"name buffer too small");
			ret = -1;
		} else {
			ret = 1;
		}
		break;
	}
	closedir(d);
	return ret;
}

int maildir_set_flags(const char *dir, const char *name,
		      const struct maildir_flags *flags, char *new_name_r,
		      size_t new_name_size, struct maildir_error *err)
{
	char cur_name[MAILDIR_NAME_MAX + 1];
	char from[MAILDIR_PATH_MAX], to[MAILDIR_PATH_MAX];
	struct maildir_name parsed;

	err_clear(err);
	/* copy first: name may be new_name_r */
	bool copied = str_copy(str_cstr(name), cur_name, sizeof(cur_name));
	if (new_name_size > 0)
		new_name_r[0] = '\0';
	if (!copied ||
	    maildir_name_parse(str_cstr(cur_name), &parsed, err) < 0) {
		err_set(err, MAILDIR_ERR_INVALID, 0, "invalid file name");
		return -1;
	}
	/* the base as its own string: cur_name changes on retry */
	char base[MAILDIR_NAME_MAX + 1];
	str_copy(parsed.base, base, sizeof(base));
	if (maildir_name_build(str_cstr(base), flags, new_name_r,
			       new_name_size) < 0) {
		err_set(err, MAILDIR_ERR_INVALID, 0,
			"new file name does not fit");
		return -1;
	}
	if (path_make(to, dir, "cur", new_name_r, err) < 0)
		return -1;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (path_make(from, dir, "cur", cur_name, err) < 0)
			return -1;
		if (strcmp(cur_name, new_name_r) == 0) {
			struct stat st;
			if (stat(from, &st) == 0)
				return 1;
			if (errno != ENOENT)
				return err_sys(err, "stat", from);
		} else if (rename(from, to) == 0) {
			return 1;
		} else if (errno != ENOENT) {
			return err_sys(err, "rename", from);
		}
		if (attempt == 1)
			break;
		/* vanished: another process renamed or expunged it */
		int found = maildir_find_base(dir, "cur", str_cstr(base),
					      cur_name, sizeof(cur_name), err);
		if (found < 0)
			return -1;
		if (found == 0)
			break;
	}
	if (new_name_size > 0)
		new_name_r[0] = '\0';
	err_set(err, MAILDIR_ERR_NOTFOUND, 0, "%s: expunged", base);
	return 0;
}

int maildir_expunge(const char *dir, const char *name,
		    struct maildir_error *err)
{
	char path[MAILDIR_PATH_MAX], found[MAILDIR_NAME_MAX + 1];
	struct maildir_name parsed;

	err_clear(err);
	if (maildir_name_parse(str_cstr(name), &parsed, err) < 0)
		return -1;
	if (path_make(path, dir, "cur", name, err) < 0)
		return -1;
	if (unlink(path) == -1) {
		if (errno != ENOENT)
			return err_sys(err, "unlink", path);
		int ret = maildir_find_base(dir, "cur", parsed.base, found,
					    sizeof(found), err);
		if (ret <= 0)
			return ret;
		if (path_make(path, dir, "cur", found, err) < 0)
			return -1;
		if (unlink(path) == -1)
			return errno == ENOENT ? 0
					       : err_sys(err, "unlink", path);
	}
	if (path_make(path, dir, "cur", NULL, err) < 0 ||
	    fsync_dir(path, err) < 0)
		return -1;
	return 1;
}

/* ---- keywords ---- */

void maildir_keywords_init(struct maildir_keywords *kw)
{
	memset(kw, 0, sizeof(*kw));
}

bool maildir_keyword_valid(struct str name)
{
	if (name.len == 0 || name.len > MAILDIR_KEYWORD_NAME_MAX)
		return false;
	for (size_t i = 0; i < name.len; i++) {
		uint8_t c = (uint8_t)name.p[i];
		if (c <= 0x20 || c >= 0x7f || strchr("(){]%*\"\\", c) != NULL)
			return false;
	}
	return true;
}

int maildir_keywords_find(const struct maildir_keywords *kw, struct str name)
{
	for (int i = 0; i < MAILDIR_KEYWORDS_MAX; i++) {
		if (kw->names[i][0] != '\0' &&
		    str_eq(str_cstr(kw->names[i]), name))
			return i;
	}
	return -1;
}

int maildir_keywords_add(struct maildir_keywords *kw, struct str name,
			 struct maildir_error *err)
{
	if (!maildir_keyword_valid(name)) {
		err_set(err, MAILDIR_ERR_INVALID, 0, "invalid keyword");
		return -1;
	}
	int i = maildir_keywords_find(kw, name);
	if (i >= 0)
		return i;
	for (i = 0; i < MAILDIR_KEYWORDS_MAX; i++) {
		if (kw->names[i][0] == '\0') {
			str_copy(name, kw->names[i], sizeof(kw->names[i]));
			return i;
		}
	}
	err_set(err, MAILDIR_ERR_LIMIT, 0, "all %d keyword letters are used",
		MAILDIR_KEYWORDS_MAX);
	return -1;
}

static void keywords_line(struct maildir_keywords *kw, struct str line)
{
	struct str idx, name;
	uint64_t n;
	if (line.len > 0 && line.p[line.len - 1] == '\r')
		line.len--;
	if (!str_split(line, ' ', &idx, &name) ||
	    !str_to_u64(idx, MAILDIR_KEYWORDS_MAX - 1, &n) ||
	    !maildir_keyword_valid(name) || kw->names[n][0] != '\0' ||
	    maildir_keywords_find(kw, name) >= 0)
		return;
	str_copy(name, kw->names[n], sizeof(kw->names[n]));
}

int maildir_keywords_read(const char *dir, struct maildir_keywords *kw,
			  struct maildir_error *err)
{
	char path[MAILDIR_PATH_MAX], block[512], line[KEYWORDS_LINE_MAX];
	size_t line_len = 0;
	bool overlong = false;
	int ret = 1;

	err_clear(err);
	maildir_keywords_init(kw);
	if (path_make(path, dir, MAILDIR_KEYWORDS_FILE, NULL, err) < 0)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return errno == ENOENT ? 0 : err_sys(err, "open", path);
	for (;;) {
		ssize_t n = read(fd, block, sizeof(block));
		if (n == -1) {
			if (errno == EINTR)
				continue;
			ret = err_sys(err, "read", path);
			break;
		}
		if (n == 0) {
			if (line_len > 0 && !overlong)
				keywords_line(kw, str_from(line, line_len));
			break;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (block[i] == '\n') {
				if (!overlong)
					keywords_line(kw,
						      str_from(line, line_len));
				line_len = 0;
				overlong = false;
			} else if (line_len < sizeof(line)) {
				line[line_len++] = block[i];
			} else {
				overlong = true;
			}
		}
	}
	close(fd);
	if (ret < 0)
		maildir_keywords_init(kw);
	return ret;
}

int maildir_keywords_write(const char *dir, const struct maildir_keywords *kw,
			   struct maildir_error *err)
{
	char path[MAILDIR_PATH_MAX], tmp[MAILDIR_PATH_MAX];
	char line[KEYWORDS_LINE_MAX + 8];

	err_clear(err);
	if (path_make(path, dir, MAILDIR_KEYWORDS_FILE, NULL, err) < 0)
		return -1;
	if (str_printf(tmp, sizeof(tmp), "%s.tmp.%llu.%llu", path,
		       (unsigned long long)getpid(),
		       (unsigned long long)counter_next()) < 0) {
		err_set(err, MAILDIR_ERR_INVALID, 0, "path too long");
		return -1;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1)
		return err_sys(err, "open", tmp);
	for (int i = 0; i < MAILDIR_KEYWORDS_MAX; i++) {
		if (kw->names[i][0] == '\0')
			continue;
		int n =
		    str_printf(line, sizeof(line), "%d %s\n", i, kw->names[i]);
		if (n < 0 || fd_write_all(fd, line, (size_t)n) == -1) {
			err_sys(err, "write", tmp);
			goto fail;
		}
	}
	if (fsync_fd(fd) == -1) {
		err_sys(err, "fsync", tmp);
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		err_sys(err, "close", tmp);
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		err_sys(err, "rename", tmp);
		goto fail;
	}
	return fsync_dir(dir, err);
fail:
	if (fd != -1)
		close(fd);
	unlink(tmp);
	return -1;
}

int maildir_file_vsize(const char *path, uint64_t *vsize_r)
{
	uint8_t chunk[16384];
	uint64_t size = 0;
	bool prev_cr = false;
	ssize_t n;

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return -1;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (chunk[i] == '\n' && !prev_cr)
				size++;
			prev_cr = chunk[i] == '\r';
		}
		size += (uint64_t)n;
	}
	int saved = errno;
	close(fd);
	if (n < 0) {
		errno = saved;
		return -1;
	}
	*vsize_r = size;
	return 0;
}

bool maildir_exists(const char *dir)
{
	char path[MAILDIR_PATH_MAX];
	struct stat st;

	return path_make(path, dir, "cur", NULL, NULL) == 0 &&
	       stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
