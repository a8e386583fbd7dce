#include "passwd_file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth_hash.h"
#include "auth_user.h"
#include "str.h"
#include "xmalloc.h"

#define NO_INDEX UINT32_MAX
#define PASSWD_FILE_MAX_ENTRIES (UINT32_MAX - 1)

struct entry_priv {
	struct passwd_entry pub;
	const char *key;     /* lookup key: user, or its folded copy */
	size_t field_start;  /* into table->fields during parsing */
	size_t ufield_start; /* into table->ufields during parsing */
	uint32_t next;       /* hash chain */
};

struct passwd_table {
	atomic_uint refcount;
	char *arena; /* the file's bytes, cut into NUL-terminated fields */
	size_t arena_size;
	struct entry_priv *entries;
	size_t count, alloc;
	struct passwd_field *fields, *ufields;
	size_t field_count, field_alloc, ufield_count, ufield_alloc;
	uint32_t *buckets;
	size_t nbuckets; /* power of two */
	uint8_t hash_key[AUTH_HASH_KEY_SIZE];
	bool case_insensitive;
	char **allocs; /* strings made while parsing (rewritten passwords) */
	size_t nallocs;
};

void passwd_file_settings_init(struct passwd_file_settings *set)
{
	memset(set, 0, sizeof(*set));
	set->max_line_len = PASSWD_FILE_DEFAULT_MAX_LINE;
	set->max_file_size = PASSWD_FILE_DEFAULT_MAX_SIZE;
	set->case_insensitive = false;
	set->refresh_interval_ms = PASSWD_FILE_DEFAULT_REFRESH_MS;
}

static void settings_fill(struct passwd_file_settings *dst,
			  const struct passwd_file_settings *src)
{
	if (src == NULL)
		passwd_file_settings_init(dst);
	else
		*dst = *src;
	if (dst->max_line_len == 0)
		dst->max_line_len = PASSWD_FILE_DEFAULT_MAX_LINE;
	if (dst->max_file_size == 0)
		dst->max_file_size = PASSWD_FILE_DEFAULT_MAX_SIZE;
}

static char *xvprintf(const char *fmt, va_list ap)
    __attribute__((format(printf, 1, 0)));
static char *xvprintf(const char *fmt, va_list ap)
{
	va_list ap2;

	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return xstrdup("(error formatting message)");
	char *s = xmalloc((size_t)n + 1);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

static char *xprintf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	char *s = xvprintf(fmt, ap);
	va_end(ap);
	return s;
}

/* ---- parsing ---------------------------------------------------------- */

static char *table_strdup(struct passwd_table *t, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = xmalloc(la + lb + 1);

	memcpy(s, a, la);
	memcpy(s + la, b, lb);
	s[la + lb] = '\0';
	t->allocs = xreallocarray(t->allocs, t->nallocs + 1, sizeof(char *));
	t->allocs[t->nallocs++] = s;
	return s;
}

static void add_field(struct passwd_field **arr, size_t *count, size_t *alloc,
		      const char *key, const char *value)
{
	if (*count == *alloc) {
		*alloc = *alloc == 0 ? 64 : *alloc * 2;
		*arr = xreallocarray(*arr, *alloc, sizeof(**arr));
	}
	(*arr)[*count].key = key;
	(*arr)[*count].value = value;
	(*count)++;
}

/* libpam-pwdfile's "password[NN]" notation, as Dovecot reads it. */
static const char *pam_compat_password(struct passwd_table *t, char *pass)
{
	size_t len = strlen(pass);

	if (len <= 4 || pass[0] == '{' || pass[0] == '$' ||
	    pass[len - 1] != ']' || pass[len - 4] != '[' ||
	    pass[len - 3] < '0' || pass[len - 3] > '9' || pass[len - 2] < '0' ||
	    pass[len - 2] > '9')
		return pass;
	int num = (pass[len - 3] - '0') * 10 + (pass[len - 2] - '0');
	pass[len - 4] = '\0';
	if (num == 34)
		return table_strdup(t, "{PLAIN-MD5}", pass);
	if (num == 56)
		return table_strdup(t, "{DIGEST-MD5}", pass);
	return table_strdup(t, "{CRYPT}", pass);
}

static const char *empty_to_null(const char *s)
{
	return s == NULL || s[0] == '\0' ? NULL : s;
}

/* Parses the extra fields of one line (modified in place). Returns NULL or
 * a static error. */
static const char *parse_extra(struct passwd_table *t, char *extra)
{
	char *p = extra;

	while (*p != '\0') {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		char *tok = p;
		while (*p != '\0' && *p != ' ')
			p++;
		if (*p == ' ')
			*p++ = '\0';

		char *eq = strchr(tok, '=');
		const char *value = NULL;
		if (eq != NULL) {
			*eq = '\0';
			value = eq + 1;
		}
		if (tok[0] == '\0')
			return "extra field without a name";
		if (strncmp(tok, "userdb_", 7) == 0) {
			if (tok[7] == '\0')
				return "extra field without a name";
			add_field(&t->ufields, &t->ufield_count,
				  &t->ufield_alloc, tok + 7, value);
		} else {
			add_field(&t->fields, &t->field_count, &t->field_alloc,
				  tok, value);
		}
	}
	return NULL;
}

/* Parses one non-comment line (NUL-terminated, in the arena). */
static const char *parse_line(struct passwd_table *t, char *line,
			      unsigned int line_no)
{
	char *f[8] = {NULL};
	unsigned nf = 0;
	char *p = line;

	f[nf++] = p;
	while (nf < 8) {
		char *c = strchr(p, ':');
		if (c == NULL)
			break;
		*c = '\0';
		p = c + 1;
		f[nf++] = p;
	}

	if (f[0][0] == '\0')
		return "missing user name";
	for (const char *u = f[0]; *u != '\0'; u++) {
		if (auth_user_char_forbidden((unsigned char)*u))
			return "user name contains a character that can never "
			       "log in (space, quote, backslash, control or "
			       "8-bit)";
	}
	if (t->count >= PASSWD_FILE_MAX_ENTRIES)
		return "too many users";
	if (t->count == t->alloc) {
		t->alloc = t->alloc == 0 ? 64 : t->alloc * 2;
		t->entries =
		    xreallocarray(t->entries, t->alloc, sizeof(*t->entries));
	}
	struct entry_priv *e = &t->entries[t->count];
	memset(e, 0, sizeof(*e));
	e->pub.user = f[0];
	e->pub.line = line_no;
	e->field_start = t->field_count;
	e->ufield_start = t->ufield_count;
	if (f[1] != NULL && f[1][0] != '\0')
		e->pub.password = pam_compat_password(t, f[1]);
	e->pub.uid = empty_to_null(f[2]);
	e->pub.gid = empty_to_null(f[3]);
	e->pub.gecos = empty_to_null(f[4]);
	e->pub.home = empty_to_null(f[5]);
	e->pub.shell = empty_to_null(f[6]);
	if (f[7] != NULL) {
		if (f[7][0] == ':') {
			/* old format: empty 8th field, then the mail
			 * location (which may contain ':') */
			if (f[7][1] != '\0')
				add_field(&t->ufields, &t->ufield_count,
					  &t->ufield_alloc, "mail", f[7] + 1);
		} else {
			const char *error = parse_extra(t, f[7]);
			if (error != NULL)
				return error;
		}
	}
	e->pub.field_count = t->field_count - e->field_start;
	e->pub.userdb_field_count = t->ufield_count - e->ufield_start;
	t->count++;
	return NULL;
}

static void ascii_fold(const char *src, char *dst, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = src[i];
		dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	dst[len] = '\0';
}

static uint32_t *bucket_for(const struct passwd_table *t, const char *key)
{
	uint64_t h = auth_hash(t->hash_key, key, strlen(key));

	return &t->buckets[h & (t->nbuckets - 1)];
}

static const struct entry_priv *find_key(const struct passwd_table *t,
					 const char *key)
{
	uint32_t i = *bucket_for(t, key);

	while (i != NO_INDEX) {
		if (strcmp(t->entries[i].key, key) == 0)
			return &t->entries[i];
		i = t->entries[i].next;
	}
	return NULL;
}

/* Fixes field pointers and builds the index; reports duplicates. */
static int build_index(struct passwd_table *t, const char *name, char **error_r)
{
	t->nbuckets = 16;
	while (t->nbuckets < t->count)
		t->nbuckets *= 2;
	t->buckets = xreallocarray(NULL, t->nbuckets, sizeof(*t->buckets));
	for (size_t i = 0; i < t->nbuckets; i++)
		t->buckets[i] = NO_INDEX;

	for (size_t i = 0; i < t->count; i++) {
		struct entry_priv *e = &t->entries[i];
		e->pub.fields =
		    e->pub.field_count == 0 ? NULL : &t->fields[e->field_start];
		e->pub.userdb_fields = e->pub.userdb_field_count == 0
					   ? NULL
					   : &t->ufields[e->ufield_start];
		e->key = e->pub.user;
		if (t->case_insensitive) {
			size_t len = strlen(e->pub.user);
			char *k = table_strdup(t, e->pub.user, "");
			ascii_fold(e->pub.user, k, len);
			e->key = k;
		}
		const struct entry_priv *dup = find_key(t, e->key);
		if (dup != NULL) {
			*error_r = xprintf("%s:%u: user %s exists more than "
					   "once (first on line %u)",
					   name, e->pub.line, e->pub.user,
					   dup->pub.line);
			return -1;
		}
		uint32_t *b = bucket_for(t, e->key);
		e->next = *b;
		*b = (uint32_t)i;
	}
	return 0;
}

static void table_free(struct passwd_table *t)
{
	if (t->arena != NULL)
		str_wipe(t->arena, t->arena_size);
	free(t->arena);
	for (size_t i = 0; i < t->nallocs; i++) {
		str_wipe(t->allocs[i], strlen(t->allocs[i]));
		free(t->allocs[i]);
	}
	free(t->allocs);
	free(t->entries);
	free(t->fields);
	free(t->ufields);
	free(t->buckets);
	free(t);
}

static bool line_is_blank(const char *line, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (line[i] != ' ' && line[i] != '\t')
			return false;
	}
	return true;
}

struct passwd_table *passwd_table_parse(const void *data, size_t size,
					const char *name,
					const struct passwd_file_settings *set,
					char **error_r)
{
	struct passwd_file_settings s;
	struct passwd_table *t;
	size_t pos = 0;
	unsigned int line_no = 0;

	*error_r = NULL;
	settings_fill(&s, set);
	if (name == NULL)
		name = "<memory>";
	if (size > s.max_file_size) {
		*error_r = xprintf("%s: file too large (%zu bytes, max %zu)",
				   name, size, s.max_file_size);
		return NULL;
	}
	t = xcalloc(1, sizeof(*t));
	atomic_init(&t->refcount, 1);
	t->case_insensitive = s.case_insensitive;
	auth_hash_random_key(t->hash_key);
	t->arena_size = size + 1;
	t->arena = xmalloc(t->arena_size);
	if (size > 0)
		memcpy(t->arena, data, size);
	t->arena[size] = '\0';

	while (pos < size) {
		char *line = t->arena + pos;
		char *nl = memchr(line, '\n', size - pos);
		size_t len = nl != NULL ? (size_t)(nl - line) : size - pos;
		const char *error = NULL;

		pos += len + (nl != NULL ? 1 : 0);
		if (line_no == UINT32_MAX - 1) {
			error = "too many lines";
			goto fail_line;
		}
		line_no++;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len > s.max_line_len) {
			*error_r = xprintf("%s:%u: line too long (%zu bytes, "
					   "max %zu)",
					   name, line_no, len, s.max_line_len);
			goto fail;
		}
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)line[i];
			if (c == '\0') {
				error = "NUL byte in line";
				goto fail_line;
			}
			if ((c < 0x20 && c != '\t') || c == 0x7f) {
				error = "control character in line";
				goto fail_line;
			}
		}
		line[len] = '\0';
		if (len == 0 || line[0] == '#' || line_is_blank(line, len))
			continue;
		error = parse_line(t, line, line_no);
		if (error == NULL)
			continue;
	fail_line:
		*error_r = xprintf("%s:%u: %s", name, line_no, error);
		goto fail;
	}
	if (build_index(t, name, error_r) < 0)
		goto fail;
	return t;
fail:
	table_free(t);
	return NULL;
}

void passwd_table_ref(struct passwd_table *table)
{
	atomic_fetch_add(&table->refcount, 1);
}

void passwd_table_unref(struct passwd_table **table)
{
	struct passwd_table *t = *table;

	if (t == NULL)
		return;
	*table = NULL;
	if (atomic_fetch_sub(&t->refcount, 1) == 1)
		table_free(t);
}

const struct passwd_entry *passwd_table_lookup(const struct passwd_table *table,
					       const char *user)
{
	const struct entry_priv *e;

	if (user == NULL || table->count == 0)
		return NULL;
	if (!table->case_insensitive) {
		e = find_key(table, user);
	} else {
		char stackbuf[256];
		size_t len = strlen(user);
		char *key =
		    len < sizeof(stackbuf) ? stackbuf : xmalloc(len + 1);
		ascii_fold(user, key, len);
		e = find_key(table, key);
		if (key != stackbuf)
			free(key);
	}
	return e == NULL ? NULL : &e->pub;
}

size_t passwd_table_count(const struct passwd_table *table)
{
	return table->count;
}

/* ---- the file on disk ------------------------------------------------ */

struct file_stamp {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct passwd_file {
	char *path;
	struct passwd_file_settings set;
	pthread_mutex_t lock;
	/* protected by lock: */
	struct passwd_table *table;
	struct file_stamp stamp;  /* of the loaded table */
	struct file_stamp failed; /* of the last file that failed to load */
	bool have_failed;
	bool stat_failed;
	bool checked;
	bool reloading;
	uint64_t last_check_ms;
	uint64_t generation;
};

static void stamp_from(struct file_stamp *s, const struct stat *st)
{
	memset(s, 0, sizeof(*s));
	s->dev = st->st_dev;
	s->ino = st->st_ino;
	s->size = st->st_size;
	s->mtime = st->st_mtim;
}

static bool stamp_eq(const struct file_stamp *a, const struct file_stamp *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static char *errno_msg(const char *path, const char *what, int err)
{
	char buf[128];

	return xprintf("%s: %s: %s", path, what,
		       strerror_r(err, buf, sizeof(buf)));
}

/* Reads and parses path; on success also returns the stamp of what was
 * read. */
static struct passwd_table *load_file(const char *path,
				      const struct passwd_file_settings *set,
				      struct file_stamp *stamp_r,
				      char **error_r)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd == -1) {
		*error_r = errno_msg(path, "open() failed", errno);
		return NULL;
	}
	if (fstat(fd, &st) == -1) {
		*error_r = errno_msg(path, "fstat() failed", errno);
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		*error_r = xprintf("%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_size < 0 || (uint64_t)st.st_size > set->max_file_size) {
		*error_r =
		    xprintf("%s: file too large (%lld bytes, max %zu)", path,
			    (long long)st.st_size, set->max_file_size);
		close(fd);
		return NULL;
	}
	/* one spare byte to notice a file that grew past the limit */
	size_t cap = (size_t)st.st_size + 1, len = 0;
	char *data = xmalloc(cap);
	for (;;) {
		if (len == cap) {
			if (cap > set->max_file_size) {
				*error_r = xprintf("%s: file too large (max "
						   "%zu)",
						   path, set->max_file_size);
				goto fail;
			}
			cap = cap * 2 > set->max_file_size + 1
				  ? set->max_file_size + 1
				  : cap * 2;
			data = xrealloc(data, cap);
		}
		ssize_t n = read(fd, data + len, cap - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			*error_r = errno_msg(path, "read() failed", errno);
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	fd = -1;
	struct passwd_table *t =
	    passwd_table_parse(data, len, path, set, error_r);
	str_wipe(data, len);
	free(data);
	if (t != NULL)
		stamp_from(stamp_r, &st);
	return t;
fail:
	str_wipe(data, len);
	free(data);
	if (fd != -1)
		close(fd);
	return NULL;
}

struct passwd_file *passwd_file_open(const char *path,
				     const struct passwd_file_settings *set,
				     char **error_r)
{
	struct passwd_file *pf = xcalloc(1, sizeof(*pf));

	*error_r = NULL;
	settings_fill(&pf->set, set);
	pf->path = xstrdup(path);
	pf->table = load_file(pf->path, &pf->set, &pf->stamp, error_r);
	if (pf->table == NULL) {
		free(pf->path);
		free(pf);
		return NULL;
	}
	pf->generation = 1;
	pthread_mutex_init(&pf->lock, NULL);
	return pf;
}

void passwd_file_close(struct passwd_file **pfp)
{
	struct passwd_file *pf = *pfp;

	if (pf == NULL)
		return;
	*pfp = NULL;
	passwd_table_unref(&pf->table);
	pthread_mutex_destroy(&pf->lock);
	free(pf->path);
	free(pf);
}

int passwd_file_refresh(struct passwd_file *pf, uint64_t now_ms, char **error_r)
{
	struct stat st;
	struct file_stamp now_stamp, loaded_stamp;
	struct passwd_table *t, *old;
	int ret = 0;

	*error_r = NULL;
	pthread_mutex_lock(&pf->lock);
	if (pf->reloading ||
	    (pf->checked && now_ms >= pf->last_check_ms &&
	     now_ms - pf->last_check_ms < pf->set.refresh_interval_ms)) {
		pthread_mutex_unlock(&pf->lock);
		return 0;
	}
	pf->checked = true;
	pf->last_check_ms = now_ms;
	pf->reloading = true;
	struct file_stamp cur = pf->stamp, failed = pf->failed;
	bool have_failed = pf->have_failed, stat_failed = pf->stat_failed;
	pthread_mutex_unlock(&pf->lock);

	/* only this thread gets here until reloading is cleared */
	if (stat(pf->path, &st) == -1) {
		if (!stat_failed) {
			*error_r = errno_msg(pf->path,
					     "stat() failed (keeping the "
					     "previous users)",
					     errno);
			ret = -1;
		}
		stat_failed = true;
		goto out;
	}
	stat_failed = false;
	stamp_from(&now_stamp, &st);
	if (stamp_eq(&now_stamp, &cur) ||
	    (have_failed && stamp_eq(&now_stamp, &failed)))
		goto out;

	t = load_file(pf->path, &pf->set, &loaded_stamp, error_r);
	if (t == NULL) {
		failed = now_stamp;
		have_failed = true;
		ret = -1;
		goto out;
	}
	pthread_mutex_lock(&pf->lock);
	old = pf->table;
	pf->table = t;
	pf->stamp = loaded_stamp;
	pf->generation++;
	pthread_mutex_unlock(&pf->lock);
	passwd_table_unref(&old);
	have_failed = false;
	ret = 1;
out:
	pthread_mutex_lock(&pf->lock);
	pf->failed = failed;
	pf->have_failed = have_failed;
	pf->stat_failed = stat_failed;
	pf->reloading = false;
	pthread_mutex_unlock(&pf->lock);
	return ret;
}

struct passwd_table *passwd_file_get_table(struct passwd_file *pf)
{
	pthread_mutex_lock(&pf->lock);
	struct passwd_table *t = pf->table;
	passwd_table_ref(t);
	pthread_mutex_unlock(&pf->lock);
	return t;
}

uint64_t passwd_file_generation(struct passwd_file *pf)
{
	pthread_mutex_lock(&pf->lock);
	uint64_t g = pf->generation;
	pthread_mutex_unlock(&pf->lock);
	return g;
}
