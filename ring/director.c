#include "director.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "fdio.h"
#include "placement.h"
#include "xmalloc.h"

/* State file: a version line, then one record a line:
 *   backend NAME WEIGHT up|down TAG|-
 *   map USER BACKEND REMAINING_MSECS
 *   added NAME HOST           (a backend added at run time, after its line)
 * Names never contain white space (the auth library refuses such users,
 * the config such backend names), so a space-separated line is enough. */
#define STATE_MAGIC "mailring-director-state 1"
#define STATE_LINE_MAX 1024

struct dir_backend {
	char name[DIRECTOR_NAME_MAX];
	char tag[DIRECTOR_NAME_MAX];
	char host[DIRECTOR_HOST_MAX];    /* added at run time: its address */
	uint64_t id_hash;
	uint32_t weight;
	enum director_backend_state state;
	unsigned int users;
	unsigned int sessions;
};

struct dir_mapping {
	struct dir_mapping *next;    /* hash chain */
	struct dir_backend *backend;
	uint64_t expires_msecs;      /* valid when sessions == 0 */
	unsigned int sessions;
	uint64_t hash;
	size_t user_len;
	char user[];                 /* NUL-terminated */
};

struct director {
	uint64_t user_expire_msecs;
	unsigned int max_load_percent;   /* 0 = no cap */
	struct dir_backend **backends;
	size_t backend_count;
	struct dir_mapping **buckets;
	size_t bucket_count;         /* power of two */
	size_t mapping_count;
};

struct director *director_new(uint64_t user_expire_msecs)
{
	struct director *d = xcalloc(1, sizeof(*d));
	d->user_expire_msecs = user_expire_msecs;
	d->bucket_count = 1024;
	d->buckets = xcalloc(d->bucket_count, sizeof(*d->buckets));
	return d;
}

void director_free(struct director **dp)
{
	struct director *d = *dp;
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->bucket_count; i++) {
		struct dir_mapping *m = d->buckets[i], *next;
		for (; m != NULL; m = next) {
			next = m->next;
			free(m);
		}
	}
	for (size_t i = 0; i < d->backend_count; i++)
		free(d->backends[i]);
	free(d->backends);
	free(d->buckets);
	free(d);
	*dp = NULL;
}

/* ---- backends ------------------------------------------------------------ */

static struct dir_backend *backend_find(const struct director *d,
					const char *name)
{
	for (size_t i = 0; i < d->backend_count; i++) {
		if (strcmp(d->backends[i]->name, name) == 0)
			return d->backends[i];
	}
	return NULL;
}

static bool name_ok(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len >= DIRECTOR_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= 0x20 || c >= 0x7f)
			return false;
	}
	return true;
}

int director_backend_add(struct director *d, const char *name, uint32_t weight,
			 const char *tag)
{
	if (!name_ok(name) || backend_find(d, name) != NULL)
		return -1;
	if (tag != NULL && tag[0] != '\0' && !name_ok(tag))
		return -1;
	struct dir_backend *b = xcalloc(1, sizeof(*b));
	str_copy(str_cstr(name), b->name, sizeof(b->name));
	str_copy(str_cstr(tag != NULL ? tag : ""), b->tag, sizeof(b->tag));
	b->id_hash = ring_hash(str_cstr(name));
	b->weight = weight;
	b->state = DIRECTOR_BACKEND_UP;
	d->backends = xreallocarray(d->backends, d->backend_count + 1,
				    sizeof(*d->backends));
	d->backends[d->backend_count++] = b;
	return 0;
}

/* Drops every mapping for which drop(m, ctx) says so. */
static unsigned int drop_mappings(struct director *d,
				  bool (*drop)(const struct dir_mapping *, const void *),
				  const void *ctx)
{
	unsigned int n = 0;
	for (size_t i = 0; i < d->bucket_count; i++) {
		struct dir_mapping **pp = &d->buckets[i];
		while (*pp != NULL) {
			struct dir_mapping *m = *pp;
			if (drop(m, ctx)) {
				*pp = m->next;
				m->backend->users--;
				m->backend->sessions -= m->sessions;
				d->mapping_count--;
				free(m);
				n++;
			} else {
				pp = &m->next;
			}
		}
	}
	return n;
}

static bool on_backend(const struct dir_mapping *m, const void *ctx)
{
	return m->backend == ctx;
}

int director_backend_remove(struct director *d, const char *name)
{
	for (size_t i = 0; i < d->backend_count; i++) {
		struct dir_backend *b = d->backends[i];
		if (strcmp(b->name, name) != 0)
			continue;
		drop_mappings(d, on_backend, b);
		memmove(&d->backends[i], &d->backends[i + 1],
			(d->backend_count - i - 1) * sizeof(*d->backends));
		d->backend_count--;
		free(b);
		return 0;
	}
	return -1;
}

int director_backend_set_weight(struct director *d, const char *name,
				uint32_t weight)
{
	struct dir_backend *b = backend_find(d, name);
	if (b == NULL)
		return -1;
	/* I2: mappings stay where they are; only placement changes */
	b->weight = weight;
	return 0;
}

int director_backend_set_state(struct director *d, const char *name,
			       enum director_backend_state state)
{
	struct dir_backend *b = backend_find(d, name);
	if (b == NULL)
		return -1;
	if (state == DIRECTOR_BACKEND_DOWN && b->state != DIRECTOR_BACKEND_DOWN)
		drop_mappings(d, on_backend, b);
	b->state = state;
	return 0;
}

int director_backend_set_host(struct director *d, const char *name,
			      const char *host)
{
	struct dir_backend *b = backend_find(d, name);
	if (b == NULL || strlen(host) >= sizeof(b->host))
		return -1;
	str_copy(str_cstr(host), b->host, sizeof(b->host));
	return 0;
}

size_t director_backend_count(const struct director *d)
{
	return d->backend_count;
}

static void fill_info(const struct dir_backend *b,
		      struct director_backend_info *info)
{
	memcpy(info->name, b->name, sizeof(info->name));
	memcpy(info->tag, b->tag, sizeof(info->tag));
	memcpy(info->host, b->host, sizeof(info->host));
	info->weight = b->weight;
	info->state = b->state;
	info->users = b->users;
	info->sessions = b->sessions;
}

void director_backend_get(const struct director *d, size_t i,
			  struct director_backend_info *info_r)
{
	fill_info(d->backends[i], info_r);
}

bool director_backend_find(const struct director *d, const char *name,
			   struct director_backend_info *info_r)
{
	struct dir_backend *b = backend_find(d, name);
	if (b == NULL)
		return false;
	fill_info(b, info_r);
	return true;
}

/* ---- mappings -------------------------------------------------------------- */

static struct dir_mapping *mapping_find(const struct director *d,
					struct str user, uint64_t hash)
{
	struct dir_mapping *m = d->buckets[hash & (d->bucket_count - 1)];
	for (; m != NULL; m = m->next) {
		if (m->hash == hash && m->user_len == user.len &&
		    memcmp(m->user, user.p, user.len) == 0)
			return m;
	}
	return NULL;
}

static bool mapping_live(const struct dir_mapping *m, uint64_t now)
{
	return m->sessions > 0 || m->expires_msecs > now;
}

static void mapping_unlink(struct director *d, struct dir_mapping *m)
{
	struct dir_mapping **pp = &d->buckets[m->hash & (d->bucket_count - 1)];
	while (*pp != m)
		pp = &(*pp)->next;
	*pp = m->next;
	m->backend->users--;
	m->backend->sessions -= m->sessions;
	d->mapping_count--;
	free(m);
}

static void grow(struct director *d)
{
	size_t nsize = d->bucket_count * 2;
	struct dir_mapping **nb = xcalloc(nsize, sizeof(*nb));
	for (size_t i = 0; i < d->bucket_count; i++) {
		struct dir_mapping *m = d->buckets[i], *next;
		for (; m != NULL; m = next) {
			next = m->next;
			m->next = nb[m->hash & (nsize - 1)];
			nb[m->hash & (nsize - 1)] = m;
		}
	}
	free(d->buckets);
	d->buckets = nb;
	d->bucket_count = nsize;
}

static struct dir_mapping *mapping_add(struct director *d, struct str user,
				       uint64_t hash, struct dir_backend *b)
{
	if (d->mapping_count + 1 > d->bucket_count)
		grow(d);
	struct dir_mapping *m = xcalloc(1, sizeof(*m) + user.len + 1);
	memcpy(m->user, user.p, user.len);
	m->user_len = user.len;
	m->hash = hash;
	m->backend = b;
	m->next = d->buckets[hash & (d->bucket_count - 1)];
	d->buckets[hash & (d->bucket_count - 1)] = m;
	d->mapping_count++;
	b->users++;
	return m;
}

static bool eligible(const struct dir_backend *b, const char *tag)
{
	return b->state == DIRECTOR_BACKEND_UP && b->weight > 0 &&
	       strcmp(b->tag, tag != NULL ? tag : "") == 0;
}

/* Bounded load: the first backend in the user's ranking whose sessions
 * stay within max_load_percent of its weight share of all sessions (plus
 * one, so an idle cluster is never "full"); the ranking's head when the
 * cap is off or every backend is over it. Only new users are placed
 * here: mapped users never move (I2). */
static size_t bounded_load_pick(const struct director *d,
				struct dir_backend *const *map, size_t n,
				const uint32_t *order, size_t k)
{
	uint64_t total_sessions = 0, total_weight = 0;

	if (d->max_load_percent == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		total_sessions += map[i]->sessions;
		total_weight += map[i]->weight;
	}
	if (total_weight == 0)
		return 0;
	for (size_t i = 0; i < k; i++) {
		const struct dir_backend *b = map[order[i]];
		/* sessions <= percent/100 * total * weight/total_weight + 1 */
		uint64_t cap = total_sessions * b->weight * d->max_load_percent /
			       (total_weight * 100) + 1;
		if (b->sessions < cap)
			return i;
	}
	return 0;
}

void director_set_max_load(struct director *d, unsigned int percent)
{
	d->max_load_percent = percent;
}

enum director_route director_place(const struct director *d, struct str user,
				   const char *tag,
				   char backend_r[DIRECTOR_NAME_MAX],
				   char (*fallbacks_r)[DIRECTOR_NAME_MAX],
				   size_t max_fallbacks, size_t *fallback_count_r)
{
	uint64_t hash = ring_hash(user);
	struct ring_candidate cands[256];
	struct dir_backend *map[256];
	size_t n = 0;

	*fallback_count_r = 0;
	for (size_t i = 0; i < d->backend_count && n < 256; i++) {
		struct dir_backend *b = d->backends[i];
		if (!eligible(b, tag))
			continue;
		cands[n].id_hash = b->id_hash;
		cands[n].weight = b->weight;
		map[n++] = b;
	}
	uint32_t order[RING_RANK_MAX];
	size_t k = ring_rank(cands, n, hash, order, RING_RANK_MAX);
	if (k == 0)
		return DIRECTOR_ROUTE_NONE;
	size_t first = bounded_load_pick(d, map, n, order, k);
	memcpy(backend_r, map[order[first]]->name, DIRECTOR_NAME_MAX);
	for (size_t i = 0; i < k && *fallback_count_r < max_fallbacks; i++) {
		if (i != first)
			memcpy(fallbacks_r[(*fallback_count_r)++], map[order[i]]->name,
			       DIRECTOR_NAME_MAX);
	}
	return DIRECTOR_ROUTE_HASHED;
}

enum director_route director_route(struct director *d, struct str user,
				   const char *tag, uint64_t now_msecs,
				   char backend_r[DIRECTOR_NAME_MAX],
				   char (*fallbacks_r)[DIRECTOR_NAME_MAX],
				   size_t max_fallbacks, size_t *fallback_count_r)
{
	struct dir_mapping *m = mapping_find(d, user, ring_hash(user));

	*fallback_count_r = 0;
	if (m != NULL) {
		if (mapping_live(m, now_msecs)) {
			memcpy(backend_r, m->backend->name, DIRECTOR_NAME_MAX);
			return DIRECTOR_ROUTE_MAPPED;
		}
		mapping_unlink(d, m);
	}
	return director_place(d, user, tag, backend_r, fallbacks_r, max_fallbacks,
			      fallback_count_r);
}

const char *director_session_begin(struct director *d, struct str user,
				   const char *backend, uint64_t now_msecs)
{
	uint64_t hash = ring_hash(user);
	struct dir_mapping *m = mapping_find(d, user, hash);

	if (m != NULL && !mapping_live(m, now_msecs)) {
		mapping_unlink(d, m);
		m = NULL;
	}
	if (m == NULL) {
		struct dir_backend *b = backend_find(d, backend);
		if (b == NULL)
			return NULL;
		m = mapping_add(d, user, hash, b);
	}
	m->sessions++;
	m->backend->sessions++;
	return m->backend->name;
}

void director_session_end(struct director *d, struct str user,
			  const char *backend, uint64_t now_msecs)
{
	struct dir_mapping *m = mapping_find(d, user, ring_hash(user));

	/* a flush or move may have dropped the mapping meanwhile, or mapped
	 * the user anew elsewhere: that mapping's sessions are others */
	if (m == NULL || m->sessions == 0 ||
	    strcmp(m->backend->name, backend) != 0)
		return;
	m->sessions--;
	m->backend->sessions--;
	if (m->sessions == 0)
		m->expires_msecs = now_msecs + d->user_expire_msecs;
}

bool director_user_lookup(const struct director *d, struct str user,
			  uint64_t now_msecs, char backend_r[DIRECTOR_NAME_MAX],
			  unsigned int *sessions_r)
{
	struct dir_mapping *m = mapping_find(d, user, ring_hash(user));
	if (m == NULL || !mapping_live(m, now_msecs))
		return false;
	memcpy(backend_r, m->backend->name, DIRECTOR_NAME_MAX);
	*sessions_r = m->sessions;
	return true;
}

int director_move(struct director *d, struct str user, const char *backend,
		  uint64_t now_msecs)
{
	struct dir_backend *b = backend_find(d, backend);
	uint64_t hash = ring_hash(user);

	if (b == NULL)
		return -1;
	struct dir_mapping *m = mapping_find(d, user, hash);
	if (m != NULL)
		mapping_unlink(d, m);
	m = mapping_add(d, user, hash, b);
	m->expires_msecs = now_msecs + d->user_expire_msecs;
	return 0;
}

bool director_unmap_idle(struct director *d, struct str user,
			 const char *backend)
{
	struct dir_mapping *m = mapping_find(d, user, ring_hash(user));
	if (m == NULL || m->sessions > 0 || strcmp(m->backend->name, backend) != 0)
		return false;
	mapping_unlink(d, m);
	return true;
}

unsigned int director_forget(struct director *d, struct str user)
{
	struct dir_mapping *m = mapping_find(d, user, ring_hash(user));
	unsigned int sessions;
	if (m == NULL)
		return 0;
	sessions = m->sessions;
	mapping_unlink(d, m);
	return sessions;
}

int director_cache_set(struct director *d, struct str user, const char *backend,
		       uint64_t now_msecs, unsigned int *displaced_r)
{
	struct dir_backend *b = backend_find(d, backend);
	uint64_t hash = ring_hash(user);
	struct dir_mapping *m;

	*displaced_r = 0;
	if (b == NULL)
		return -1;
	m = mapping_find(d, user, hash);
	if (m != NULL && m->backend != b) {
		*displaced_r = m->sessions;
		mapping_unlink(d, m);
		m = NULL;
	}
	if (m == NULL)
		m = mapping_add(d, user, hash, b);
	if (m->expires_msecs < now_msecs + d->user_expire_msecs)
		m->expires_msecs = now_msecs + d->user_expire_msecs;
	return 0;
}

void director_each_mapping(const struct director *d, uint64_t now_msecs,
			   void (*fn)(const char *user, const char *backend,
				      unsigned int sessions, void *ctx),
			   void *ctx)
{
	for (size_t i = 0; i < d->bucket_count; i++) {
		for (struct dir_mapping *m = d->buckets[i]; m != NULL; m = m->next) {
			if (mapping_live(m, now_msecs))
				fn(m->user, m->backend->name, m->sessions, ctx);
		}
	}
}

unsigned int director_flush(struct director *d, const char *backend)
{
	struct dir_backend *b = backend_find(d, backend);
	return b == NULL ? 0 : drop_mappings(d, on_backend, b);
}

void director_users(const struct director *d, const char *backend,
		    uint64_t now_msecs,
		    void (*fn)(const char *user, unsigned int sessions, void *ctx),
		    void *ctx)
{
	for (size_t i = 0; i < d->bucket_count; i++) {
		for (struct dir_mapping *m = d->buckets[i]; m != NULL; m = m->next) {
			if ((backend == NULL || strcmp(m->backend->name, backend) == 0) &&
			    mapping_live(m, now_msecs))
				fn(m->user, m->sessions, ctx);
		}
	}
}

static bool expired(const struct dir_mapping *m, const void *ctx)
{
	return !mapping_live(m, *(const uint64_t *)ctx);
}

unsigned int director_expire(struct director *d, uint64_t now_msecs)
{
	return drop_mappings(d, expired, &now_msecs);
}

size_t director_mapping_count(const struct director *d)
{
	return d->mapping_count;
}

/* ---- the state file ---------------------------------------------------------- */


int director_save(const struct director *d, const char *path,
		  uint64_t now_msecs, char *err, size_t errsize)
{
	char tmp[4096];
	struct buf *out = buf_new(64 * 1024, SIZE_MAX / 2);

	if (str_printf(tmp, sizeof(tmp), "%s.tmp", path) < 0) {
		str_printf(err, errsize, "state file path too long");
		buf_free(&out);
		return -1;
	}
	buf_printf(out, "%s\n", STATE_MAGIC);
	for (size_t i = 0; i < d->backend_count; i++) {
		const struct dir_backend *b = d->backends[i];
		buf_printf(out, "backend %s %u %s %s\n", b->name, b->weight,
			   b->state == DIRECTOR_BACKEND_UP ? "up" : "down",
			   b->tag[0] != '\0' ? b->tag : "-");
		if (b->host[0] != '\0')
			buf_printf(out, "added %s %s\n", b->name, b->host);
	}
	for (size_t i = 0; i < d->bucket_count; i++) {
		for (struct dir_mapping *m = d->buckets[i]; m != NULL; m = m->next) {
			if (!mapping_live(m, now_msecs))
				continue;
			/* a user with sessions keeps a full user_expire */
			uint64_t left = m->sessions > 0 ? d->user_expire_msecs :
							  m->expires_msecs - now_msecs;
			buf_printf(out, "map %s %s %llu\n", m->user, m->backend->name,
				   (unsigned long long)left);
		}
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || fd_write_all(fd, out->data, out->len) < 0 || fsync(fd) < 0) {
		str_printf(err, errsize, "write(%s) failed: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		buf_free(&out);
		return -1;
	}
	close(fd);
	buf_free(&out);
	if (rename(tmp, path) < 0) {
		str_printf(err, errsize, "rename(%s, %s) failed: %s", tmp, path,
			   strerror(errno));
		unlink(tmp);
		return -1;
	}
	/* make the rename itself durable */
	char dir[4096];
	if (str_copy(str_cstr(path), dir, sizeof(dir))) {
		char *slash = strrchr(dir, '/');
		if (slash != NULL) {
			*(slash == dir ? slash + 1 : slash) = '\0';
			int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (dfd >= 0) {
				(void)fsync(dfd);
				close(dfd);
			}
		}
	}
	return 0;
}

/* Splits the next space-separated field off *rest. */
static bool next_field(struct str *rest, struct str *field)
{
	str_split(*rest, ' ', field, rest);
	return field->len > 0;
}

static int load_line(struct director *d, struct str line, uint64_t now,
		     const char **error_r)
{
	struct str kind, a, b, c, e;
	char name[DIRECTOR_NAME_MAX], tag[DIRECTOR_NAME_MAX];
	uint64_t n;

	if (!next_field(&line, &kind)) {
		*error_r = "empty line";
		return -1;
	}
	if (str_eq(kind, STR("backend"))) {
		if (!next_field(&line, &a) || !next_field(&line, &b) ||
		    !next_field(&line, &c) || !next_field(&line, &e) || line.len != 0 ||
		    !str_copy(a, name, sizeof(name)) || !str_copy(e, tag, sizeof(tag)) ||
		    !str_to_u64(b, UINT32_MAX, &n) ||
		    !(str_eq(c, STR("up")) || str_eq(c, STR("down")))) {
			*error_r = "invalid backend line";
			return -1;
		}
		if (strcmp(tag, "-") == 0)
			tag[0] = '\0';
		struct dir_backend *be = backend_find(d, name);
		if (be == NULL) {
			if (director_backend_add(d, name, (uint32_t)n, tag) < 0) {
				*error_r = "invalid backend name or tag";
				return -1;
			}
			be = d->backends[d->backend_count - 1];
		}
		be->weight = (uint32_t)n;
		str_copy(str_cstr(tag), be->tag, sizeof(be->tag));
		be->state = str_eq(c, STR("up")) ? DIRECTOR_BACKEND_UP :
						   DIRECTOR_BACKEND_DOWN;
		return 0;
	}
	if (str_eq(kind, STR("added"))) {
		char host[DIRECTOR_HOST_MAX];
		if (!next_field(&line, &a) || !next_field(&line, &b) || line.len != 0 ||
		    !str_copy(a, name, sizeof(name)) || !str_copy(b, host, sizeof(host))) {
			*error_r = "invalid added line";
			return -1;
		}
		if (director_backend_set_host(d, name, host) < 0) {
			*error_r = "added line for an unknown backend";
			return -1;
		}
		return 0;
	}
	if (str_eq(kind, STR("map"))) {
		if (!next_field(&line, &a) || !next_field(&line, &b) ||
		    !next_field(&line, &c) || line.len != 0 ||
		    !str_copy(b, name, sizeof(name)) ||
		    !str_to_u64(c, UINT64_MAX / 2, &n)) {
			*error_r = "invalid map line";
			return -1;
		}
		struct dir_backend *be = backend_find(d, name);
		if (be == NULL || be->state != DIRECTOR_BACKEND_UP)
			return 0; /* the backend is gone: the user is placed anew */
		uint64_t hash = ring_hash(a);
		struct dir_mapping *m = mapping_find(d, a, hash);
		if (m != NULL)
			mapping_unlink(d, m);
		m = mapping_add(d, a, hash, be);
		m->expires_msecs = now + n;
		return 0;
	}
	*error_r = "unknown record";
	return -1;
}

int director_load(struct director *d, const char *path, uint64_t now_msecs,
		  char *err, size_t errsize)
{
	FILE *f = fopen(path, "re");
	char line[STATE_LINE_MAX];
	unsigned int lineno = 0;

	if (f == NULL) {
		str_printf(err, errsize, "open(%s) failed: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t len = strlen(line);
		const char *error = NULL;
		lineno++;
		if (len == 0 || line[len - 1] != '\n') {
			str_printf(err, errsize, "%s:%u: line too long or truncated",
				   path, lineno);
			fclose(f);
			return -1;
		}
		line[--len] = '\0';
		if (lineno == 1) {
			if (strcmp(line, STATE_MAGIC) != 0) {
				str_printf(err, errsize, "%s:1: not a director state file "
					   "(or another version)", path);
				fclose(f);
				return -1;
			}
			continue;
		}
		if (load_line(d, str_from(line, len), now_msecs, &error) < 0) {
			str_printf(err, errsize, "%s:%u: %s", path, lineno, error);
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	if (lineno == 0) {
		str_printf(err, errsize, "%s: empty state file", path);
		return -1;
	}
	return 0;
}
