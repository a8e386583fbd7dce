#include "directing.h"
#include "directing_redis.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "json_flat.h"
#include "log.h"
#include "net.h"
#include "proxy.h"
#include "str.h"
#include "xmalloc.h"

/* how many names `mailring map` shows: the backend and its fallbacks */
#define RING_RANK_MAX_NAMES 8

/* One director for the process; the lock is taken at login, logout and by
 * admin commands only. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct director *dir;
static char *state_path;
static bool shared;          /* director_store = redis */
static directing_reconfigure_fn *reconfigure_hook;
static void flush_jobs_free_all(void);
static bool dirty;
static bool last_save_failed;
static char last_save_error[512];
/* the config's weight per backend, so a reload changes only what the
 * config changed (admin changes made with `mailring update` persist) */
struct config_weight {
	char name[DIRECTOR_NAME_MAX];
	uint32_t weight;
};
static struct config_weight *config_weights;
static size_t config_weight_count;

static uint64_t now_msecs(void)
{
	return net_monotonic_msecs();
}

static void remember_config_weights(const struct proxy_config *cfg)
{
	free(config_weights);
	config_weight_count = cfg->backend_count;
	config_weights = xcalloc(config_weight_count + 1, sizeof(*config_weights));
	for (size_t i = 0; i < cfg->backend_count; i++) {
		str_copy(str_cstr(cfg->backends[i].set->name), config_weights[i].name,
			 sizeof(config_weights[i].name));
		config_weights[i].weight = (uint32_t)cfg->backends[i].set->weight;
	}
}

static const struct config_weight *old_config_weight(const char *name)
{
	for (size_t i = 0; i < config_weight_count; i++) {
		if (strcmp(config_weights[i].name, name) == 0)
			return &config_weights[i];
	}
	return NULL;
}

int directing_init(const struct proxy_config *cfg, char *err, size_t errsize)
{
	dir = director_new(cfg->set.user_expire_msecs);
	director_set_max_load(dir, (unsigned int)cfg->set.director_max_load);
	for (size_t i = 0; i < cfg->backend_count; i++) {
		const struct backend_settings *bs = cfg->backends[i].set;
		if (director_backend_add(dir, bs->name, (uint32_t)bs->weight, bs->tag) < 0) {
			str_printf(err, errsize, "backend %s: invalid name or tag",
				   bs->name);
			director_free(&dir);
			return -1;
		}
	}
	remember_config_weights(cfg);
	if (cfg->set.director_store == DIRECTOR_STORE_REDIS) {
		shared = true;
		if (dredis_init(cfg, dir, &lock, err, errsize) < 0) {
			director_free(&dir);
			return -1;
		}
		return 0;
	}
	if (cfg->set.director_state_file[0] != '\0') {
		state_path = xstrdup(cfg->set.director_state_file);
		if (access(state_path, F_OK) == 0) {
			char lerr[512];
			if (director_load(dir, state_path, now_msecs(), lerr,
					  sizeof(lerr)) < 0) {
				/* losing mappings is better than not starting */
				log_error("director: state file not loaded, starting "
					  "empty: %s", lerr);
			} else {
				log_notice("director: state loaded from %s: %zu users mapped",
					   state_path, director_mapping_count(dir));
			}
		}
	}
	return 0;
}

static void save_locked(void)
{
	char err[512];
	if (state_path == NULL || !dirty)
		return;
	if (director_save(dir, state_path, now_msecs(), err, sizeof(err)) < 0) {
		/* log a failure once, not every second */
		if (!last_save_failed)
			log_error("director: %s", err);
		last_save_failed = true;
		str_copy(str_cstr(err), last_save_error, sizeof(last_save_error));
		return;
	}
	if (last_save_failed)
		log_notice("director: state file %s written again", state_path);
	last_save_failed = false;
	dirty = false;
}

void directing_start(void)
{
	if (shared)
		dredis_start();
}

void directing_stop(void)
{
	/* paced flushes run on the main loop, which is about to go */
	flush_jobs_free_all();
	if (shared)
		dredis_stop();
}

bool directing_shared(void)
{
	return shared;
}

bool directing_degraded(void)
{
	return shared && dredis_degraded();
}

void directing_store_metrics(unsigned long long *lookups_r,
			     unsigned long long *failures_r,
			     unsigned long long *calls_r,
			     unsigned long long *latency_usecs_sum_r)
{
	struct dredis_metrics m = { 0 };
	if (shared)
		dredis_metrics(&m);
	*lookups_r = m.lookups;
	*failures_r = m.lookup_failures;
	*calls_r = m.store_calls;
	*latency_usecs_sum_r = m.store_latency_usecs_sum;
}

void directing_deinit(void)
{

	if (shared) {
		dredis_deinit();
		shared = false;
	}
	pthread_mutex_lock(&lock);
	dirty = true;
	save_locked();
	director_free(&dir);
	xfree(&state_path);
	xfree(&config_weights);
	config_weight_count = 0;
	pthread_mutex_unlock(&lock);
}

void directing_reload(const struct proxy_config *cfg)
{
	bool *changed = xcalloc(cfg->backend_count + 1, sizeof(*changed));
	pthread_mutex_lock(&lock);
	director_set_max_load(dir, (unsigned int)cfg->set.director_max_load);
	for (size_t i = 0; i < cfg->backend_count; i++) {
		const struct backend_settings *bs = cfg->backends[i].set;
		struct director_backend_info info;
		const struct config_weight *old = old_config_weight(bs->name);
		if (!director_backend_find(dir, bs->name, &info)) {
			director_backend_add(dir, bs->name, (uint32_t)bs->weight, bs->tag);
		} else if (old == NULL || old->weight != bs->weight) {
			changed[i] = true;
			/* the config changed this weight: it wins (I2 holds:
			 * mapped users stay) */
			director_backend_set_weight(dir, bs->name, (uint32_t)bs->weight);
		}
	}
	for (size_t i = director_backend_count(dir); i-- > 0;) {
		struct director_backend_info info;
		bool kept = false;
		director_backend_get(dir, i, &info);
		for (size_t j = 0; j < cfg->backend_count; j++)
			kept |= strcmp(cfg->backends[j].set->name, info.name) == 0;
		if (!kept)
			director_backend_remove(dir, info.name);
	}
	remember_config_weights(cfg);
	dirty = true;
	pthread_mutex_unlock(&lock);
	if (shared)
		dredis_reload(cfg, changed);
	free(changed);
}

void directing_tick(void)
{
	pthread_mutex_lock(&lock);
	if (director_expire(dir, now_msecs()) > 0)
		dirty = true;
	save_locked();
	pthread_mutex_unlock(&lock);
}

/* ---- login path ------------------------------------------------------------ */

size_t directing_route(const char *user_key, const char *tag,
		       char (*out)[DIRECTOR_NAME_MAX], size_t max,
		       bool *mapped_r)
{
	size_t nfb = 0;
	enum director_route r;

	if (max == 0)
		return 0;
	pthread_mutex_lock(&lock);
	r = director_route(dir, str_cstr(user_key), tag, now_msecs(), out[0],
			   out + 1, max - 1, &nfb);
	pthread_mutex_unlock(&lock);
	*mapped_r = r == DIRECTOR_ROUTE_MAPPED;
	if (r == DIRECTOR_ROUTE_NONE)
		return 0;
	return 1 + nfb;
}

struct directing_lookup *directing_lookup(struct event_base *base,
					  const char *user_key, const char *tag,
					  directing_lookup_fn *cb, void *ctx)
{
	if (!shared)
		return NULL;
	return dredis_lookup(base, user_key, tag, cb, ctx);
}

void directing_lookup_cancel(struct directing_lookup **l)
{
	dredis_lookup_cancel(l);
}

void directing_health_vote(const char *backend, bool failing)
{
	if (shared)
		dredis_health_vote(backend, failing);
}

bool directing_session_begin(const char *user_key, const char *backend,
			     bool ring_routed)
{
	pthread_mutex_lock(&lock);
	if (shared && ring_routed) {
		/* the ring's answer is in the cache; a kick or move since
		 * then removed it: this session must not start (I1) */
		char mapped_to[DIRECTOR_NAME_MAX];
		unsigned int sessions;
		if (!director_user_lookup(dir, str_cstr(user_key), now_msecs(),
					  mapped_to, &sessions) ||
		    strcmp(mapped_to, backend) != 0) {
			pthread_mutex_unlock(&lock);
			return false;
		}
	}
	const char *mapped = director_session_begin(dir, str_cstr(user_key),
						    backend, now_msecs());
	dirty = true;
	bool ok = mapped != NULL && strcmp(mapped, backend) == 0;
	if (mapped != NULL && !ok) {
		/* counted on the other backend: undo, the caller drops this */
		director_session_end(dir, str_cstr(user_key), mapped, now_msecs());
	}
	pthread_mutex_unlock(&lock);
	if (ok && shared)
		dredis_session(user_key, backend, 1);
	return ok;
}

void directing_session_end(const char *user_key, const char *backend)
{
	char mapped[DIRECTOR_NAME_MAX];
	unsigned int sessions = 0;
	pthread_mutex_lock(&lock);
	bool counted = director_user_lookup(dir, str_cstr(user_key), now_msecs(),
					    mapped, &sessions) &&
		       sessions > 0 && strcmp(mapped, backend) == 0;
	director_session_end(dir, str_cstr(user_key), backend, now_msecs());
	dirty = true;
	pthread_mutex_unlock(&lock);
	if (shared && counted)
		dredis_session(user_key, backend, -1);
}

bool directing_unmap_idle(const char *user_key, const char *backend)
{
	if (shared)
		return false; /* other proxies may hold sessions: health decides */
	pthread_mutex_lock(&lock);
	bool dropped = director_unmap_idle(dir, str_cstr(user_key), backend);
	if (dropped)
		dirty = true;
	pthread_mutex_unlock(&lock);
	return dropped;
}

/* ---- admin ------------------------------------------------------------------ */

/* A NUL-terminated string as JSON, through the one JSON writer. */
static void json_cstr(struct buf *out, const char *s)
{
	json_append_str(out, str_from(s, strlen(s)));
}

static int json_error(struct buf *out, const char *msg)
{
	buf_append_cstr(out, "{\"error\":");
	json_cstr(out, msg);
	buf_append_cstr(out, "}");
	return -1;
}

int directing_status(struct buf *out)
{
	if (shared)
		return dredis_status(out);
	pthread_mutex_lock(&lock);
	size_t n = director_backend_count(dir);
	buf_printf(out, "{\"store\":\"embedded\",\"users\":%zu,\"backends\":[",
		   director_mapping_count(dir));
	for (size_t i = 0; i < n; i++) {
		struct director_backend_info info;
		director_backend_get(dir, i, &info);
		if (i > 0)
			buf_append_byte(out, ',');
		buf_append_cstr(out, "{\"name\":");
		json_cstr(out, info.name);
		buf_printf(out, ",\"state\":\"%s\",\"weight\":%u,\"tag\":",
			   info.state == DIRECTOR_BACKEND_UP ? "up" : "down",
			   info.weight);
		json_cstr(out, info.tag);
		buf_printf(out, ",\"users\":%u,\"sessions\":%u}", info.users,
			   info.sessions);
	}
	buf_append_cstr(out, "]}");
	pthread_mutex_unlock(&lock);
	return 0;
}

bool directing_backend_info(const char *backend,
			    struct director_backend_info *info_r)
{
	pthread_mutex_lock(&lock);
	bool found = director_backend_find(dir, backend, info_r);
	pthread_mutex_unlock(&lock);
	return found;
}

size_t directing_backends(struct director_backend_info *out, size_t max,
			  size_t *users_r)
{
	pthread_mutex_lock(&lock);
	size_t n = director_backend_count(dir);
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		director_backend_get(dir, i, &out[i]);
	*users_r = director_mapping_count(dir);
	pthread_mutex_unlock(&lock);
	return n;
}

int directing_ring_status(struct buf *out)
{
	if (shared)
		return dredis_ring_status(out);
	pthread_mutex_lock(&lock);
	buf_append_cstr(out, "{\"store\":\"embedded\",\"proxies_alive\":1,"
			"\"degraded\":false,\"state_file\":");
	if (state_path != NULL)
		json_cstr(out, state_path);
	else
		buf_append_cstr(out, "null");
	buf_printf(out, ",\"state_saved\":%s", last_save_failed ? "false" : "true");
	if (last_save_failed) {
		buf_append_cstr(out, ",\"state_error\":");
		json_cstr(out, last_save_error);
	}
	buf_printf(out, ",\"users\":%zu}", director_mapping_count(dir));
	pthread_mutex_unlock(&lock);
	return 0;
}

int directing_map(const char *user, struct buf *out)
{
	if (shared)
		return dredis_map(user, out);
	char names[RING_RANK_MAX_NAMES][DIRECTOR_NAME_MAX];
	unsigned int sessions = 0;
	char mapped[DIRECTOR_NAME_MAX];
	bool is_mapped;

	pthread_mutex_lock(&lock);
	is_mapped = director_user_lookup(dir, str_cstr(user), now_msecs(), mapped,
					 &sessions);
	pthread_mutex_unlock(&lock);
	buf_append_cstr(out, "{\"user\":");
	json_cstr(out, user);
	if (is_mapped) {
		buf_append_cstr(out, ",\"backend\":");
		json_cstr(out, mapped);
		buf_printf(out, ",\"why\":\"mapped\",\"sessions\":%u}", sessions);
		return 0;
	}
	bool m;
	size_t n = directing_route(user, NULL, names, RING_RANK_MAX_NAMES, &m);
	if (n == 0) {
		buf_append_cstr(out, ",\"backend\":null,\"why\":\"no backend available\"}");
		return 0;
	}
	buf_append_cstr(out, ",\"backend\":");
	json_cstr(out, names[0]);
	buf_append_cstr(out, ",\"why\":\"hashed\",\"fallbacks\":[");
	for (size_t i = 1; i < n; i++) {
		if (i > 1)
			buf_append_byte(out, ',');
		json_cstr(out, names[i]);
	}
	buf_append_cstr(out, "]}");
	return 0;
}

struct users_ctx {
	struct buf *out;
	bool first;
};

static void add_user(const char *user, unsigned int sessions, void *context)
{
	struct users_ctx *uc = context;
	if (!uc->first)
		buf_append_byte(uc->out, ',');
	uc->first = false;
	buf_append_cstr(uc->out, "{\"user\":");
	json_cstr(uc->out, user);
	buf_printf(uc->out, ",\"sessions\":%u}", sessions);
}

int directing_users(const char *backend, struct buf *out)
{
	if (shared)
		return dredis_users(backend, out);
	struct director_backend_info info;
	struct users_ctx uc = { .out = out, .first = true };

	pthread_mutex_lock(&lock);
	if (!director_backend_find(dir, backend, &info)) {
		pthread_mutex_unlock(&lock);
		return json_error(out, "unknown backend");
	}
	buf_append_cstr(out, "{\"backend\":");
	json_cstr(out, backend);
	buf_append_cstr(out, ",\"users\":[");
	director_users(dir, backend, now_msecs(), add_user, &uc);
	buf_append_cstr(out, "]}");
	pthread_mutex_unlock(&lock);
	return 0;
}

int directing_set_weight(const char *backend, unsigned int weight,
			 struct buf *out)
{
	if (shared)
		return dredis_set_weight(backend, weight, out);
	pthread_mutex_lock(&lock);
	int ret = director_backend_set_weight(dir, backend, weight);
	dirty = true;
	pthread_mutex_unlock(&lock);
	if (ret < 0)
		return json_error(out, "unknown backend");
	log_notice("director: backend %s weight set to %u", backend, weight);
	buf_append_cstr(out, "{\"backend\":");
	json_cstr(out, backend);
	buf_printf(out, ",\"weight\":%u}", weight);
	return 0;
}

int directing_set_up(const char *backend, bool up, struct buf *out)
{
	if (shared)
		return dredis_set_up(backend, up, out);
	pthread_mutex_lock(&lock);
	int ret = director_backend_set_state(dir, backend, up ? DIRECTOR_BACKEND_UP :
							       DIRECTOR_BACKEND_DOWN);
	dirty = true;
	pthread_mutex_unlock(&lock);
	if (ret < 0)
		return json_error(out, "unknown backend");
	unsigned int kicked = 0;
	if (!up) {
		/* I4: the users' sessions go, they reconnect elsewhere */
		kicked = proxy_kick(NULL, backend, "Backend is down.", true);
	}
	log_notice("director: backend %s set %s (%u sessions closed)", backend,
		   up ? "up" : "down", kicked);
	buf_append_cstr(out, "{\"backend\":");
	json_cstr(out, backend);
	buf_printf(out, ",\"state\":\"%s\",\"kicked\":%u}", up ? "up" : "down",
		   kicked);
	return 0;
}

/* A paced flush (embedded store): the backend's users are unmapped
 * director_flush_batch at a time, each batch's sessions closed first
 * (I4), director_flush_interval apart, so the users come back in waves
 * and not all at once. Users not yet reached keep their mapping and
 * sessions (I1 holds throughout). */
struct flush_job {
	struct flush_job *next;
	char backend[DIRECTOR_NAME_MAX];
	char **users;
	size_t count;
	size_t done;
	size_t batch;
	unsigned int interval_msecs;
	unsigned int kicked;
	unsigned int unmapped;
	struct net_timer *timer;
};
static struct flush_job *flush_jobs;

struct collect_users {
	char **users;
	size_t count;
	size_t alloc;
};

static void collect_user(const char *user, unsigned int sessions, void *ctx)
{
	struct collect_users *cu = ctx;
	(void)sessions;
	if (cu->count == cu->alloc) {
		cu->alloc = cu->alloc == 0 ? 64 : cu->alloc * 2;
		cu->users = xreallocarray(cu->users, cu->alloc, sizeof(*cu->users));
	}
	cu->users[cu->count++] = xstrdup(user);
}

static void flush_job_free(struct flush_job *job)
{
	struct flush_job **pp = &flush_jobs;
	while (*pp != NULL && *pp != job)
		pp = &(*pp)->next;
	if (*pp == job)
		*pp = job->next;
	for (size_t i = 0; i < job->count; i++)
		free(job->users[i]);
	free(job->users);
	net_timer_free(&job->timer);
	free(job);
}

static void flush_jobs_free_all(void)
{
	while (flush_jobs != NULL)
		flush_job_free(flush_jobs);
}

/* One batch: close its sessions, then drop those of its mappings that
 * still point at the backend. Returns true when the flush is over. */
static bool flush_batch(struct flush_job *job)
{
	size_t n = job->count - job->done;
	if (n > job->batch)
		n = job->batch;
	const char *const *keys = (const char *const *)(job->users + job->done);
	job->kicked += proxy_kick_keys(keys, n, job->backend, "Backend was flushed.");
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < n; i++) {
		char mapped[DIRECTOR_NAME_MAX];
		unsigned int sessions;
		if (director_user_lookup(dir, str_cstr(keys[i]), now_msecs(), mapped,
					 &sessions) &&
		    strcmp(mapped, job->backend) == 0) {
			director_forget(dir, str_cstr(keys[i]));
			job->unmapped++;
		}
	}
	dirty = true;
	pthread_mutex_unlock(&lock);
	job->done += n;
	return job->done >= job->count;
}

static void flush_tick(void *context)
{
	struct flush_job *job = context;
	if (!flush_batch(job)) {
		net_timer_start(job->timer, job->interval_msecs, false);
		return;
	}
	log_notice("director: backend %s flushed: %u users unmapped, %u sessions "
		   "closed (%zu batches)", job->backend, job->unmapped, job->kicked,
		   (job->count + job->batch - 1) / job->batch);
	flush_job_free(job);
}

int directing_flush(const char *backend, struct event_base *base,
		    struct buf *out)
{
	if (shared)
		return dredis_flush(backend, out);
	struct director_backend_info info;
	struct collect_users cu = { 0 };
	struct proxy_config *cfg = proxy_config_ref();
	size_t batch = (size_t)cfg->set.director_flush_batch;
	unsigned int interval = (unsigned int)cfg->set.director_flush_interval_msecs;
	proxy_config_unref(&cfg);

	for (struct flush_job *j = flush_jobs; j != NULL; j = j->next) {
		if (strcmp(j->backend, backend) == 0)
			return json_error(out, "a flush of this backend is already under way");
	}
	pthread_mutex_lock(&lock);
	bool known = director_backend_find(dir, backend, &info);
	if (known)
		director_users(dir, backend, now_msecs(), collect_user, &cu);
	pthread_mutex_unlock(&lock);
	if (!known)
		return json_error(out, "unknown backend");

	struct flush_job *job = xcalloc(1, sizeof(*job));
	str_copy(str_cstr(backend), job->backend, sizeof(job->backend));
	job->users = cu.users;
	job->count = cu.count;
	job->batch = batch == 0 || base == NULL ? SIZE_MAX : batch;
	job->interval_msecs = interval;
	if (job->count == 0 || flush_batch(job)) {
		/* at most one batch: done now */
		unsigned int dropped = job->unmapped;
		unsigned int kicked = job->kicked;
		/* sessions of users whose mappings were made meanwhile */
		kicked += proxy_kick(NULL, backend, "Backend was flushed.", true);
		pthread_mutex_lock(&lock);
		dropped += director_flush(dir, backend);
		pthread_mutex_unlock(&lock);
		log_notice("director: backend %s flushed: %u users unmapped, %u "
			   "sessions closed", backend, dropped, kicked);
		buf_append_cstr(out, "{\"backend\":");
		json_cstr(out, backend);
		buf_printf(out, ",\"unmapped\":%u,\"kicked\":%u}", dropped, kicked);
		flush_job_free(job);
		return 0;
	}
	job->next = flush_jobs;
	flush_jobs = job;
	job->timer = net_timer_new(base, flush_tick, job);
	net_timer_start(job->timer, job->interval_msecs, false);
	log_notice("director: backend %s: flushing %zu users, %zu at a time",
		   backend, job->count, job->batch);
	buf_append_cstr(out, "{\"backend\":");
	json_cstr(out, backend);
	buf_printf(out, ",\"users\":%zu,\"batch\":%zu,\"paced\":true,"
		   "\"unmapped\":%u,\"kicked\":%u}", job->count, job->batch,
		   job->unmapped, job->kicked);
	return 0;
}

int directing_move(const char *user, const char *backend, struct buf *out)
{
	if (shared)
		return dredis_move(user, backend, out);
	struct director_backend_info info;

	pthread_mutex_lock(&lock);
	bool known = director_backend_find(dir, backend, &info);
	pthread_mutex_unlock(&lock);
	if (!known)
		return json_error(out, "unknown backend");
	/* kick-then-remap (I4): no session of the user is left anywhere
	 * when the mapping changes */
	unsigned int kicked = proxy_kick(user, NULL, "Moved to another server.", false);
	pthread_mutex_lock(&lock);
	director_move(dir, str_cstr(user), backend, now_msecs());
	dirty = true;
	pthread_mutex_unlock(&lock);
	log_notice("director: user %s moved to %s (%u sessions closed)", user,
		   backend, kicked);
	buf_append_cstr(out, "{\"user\":");
	json_cstr(out, user);
	buf_append_cstr(out, ",\"backend\":");
	json_cstr(out, backend);
	buf_printf(out, ",\"kicked\":%u}", kicked);
	return 0;
}

int directing_kick(const char *user, struct buf *out)
{
	if (shared)
		return dredis_kick(user, out);
	unsigned int kicked = proxy_kick(user, NULL, "Disconnected by administrator.",
					 false);
	log_notice("director: user %s kicked (%u sessions)", user, kicked);
	buf_append_cstr(out, "{\"user\":");
	json_cstr(out, user);
	buf_printf(out, ",\"kicked\":%u}", kicked);
	return 0;
}

/* ---- backends added at run time (`mailring add`) -------------------------- */

void directing_set_answer_hook(directing_answer_fn *fn)
{
	if (shared)
		dredis_set_answer_hook(fn);
}

void directing_set_admin_token(uint64_t token)
{
	if (shared)
		dredis_set_admin_token(token);
}

void directing_set_reconfigure(directing_reconfigure_fn *fn)
{
	reconfigure_hook = fn;
}

void directing_request_reconfigure(const char *why)
{
	if (reconfigure_hook != NULL)
		reconfigure_hook(why);
}

static char *dup_setting(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

/* The settings a backend added at run time gets: those of the config's
 * director_backend_template backend (default: the first one), with its
 * own name, host and weight. */
static void clone_backend(struct backend_settings *dst,
			  const struct backend_settings *tpl,
			  const struct director_backend_info *info)
{
	*dst = *tpl;
	dst->name = xstrdup(info->name);
	dst->host = xstrdup(info->host);
	dst->weight = info->weight;
	dst->tag = xstrdup(info->tag);
	dst->ssl_ca = dup_setting(tpl->ssl_ca);
	dst->ssl_host = dup_setting(tpl->ssl_host);
	dst->master_user = dup_setting(tpl->master_user);
	dst->master_password = dup_setting(tpl->master_password);
	/* HOST:PORT names the port of the proxy's main protocol (IMAP) */
	struct net_addr a;
	const char *error;
	if (net_addr_parse(info->host, NET_ADDR_PORT_OPTIONAL, &a, &error) == 0 &&
	    net_addr_port(&a) != 0)
		dst->imap_port = net_addr_port(&a);
}

void directing_runtime_apply(struct proxy_settings *set)
{
	const struct backend_settings *tpl = NULL;

	if (dir == NULL || set->backend_count == 0)
		return;
	for (size_t i = 0; i < set->backend_count; i++) {
		if (set->director_backend_template != NULL &&
		    strcmp(set->backends[i].name, set->director_backend_template) == 0)
			tpl = &set->backends[i];
	}
	if (tpl == NULL)
		tpl = &set->backends[0];
	struct backend_settings template = *tpl;

	pthread_mutex_lock(&lock);
	size_t n = director_backend_count(dir);
	for (size_t i = 0; i < n; i++) {
		struct director_backend_info info;
		bool in_config = false;
		director_backend_get(dir, i, &info);
		if (info.host[0] == '\0')
			continue;
		for (size_t j = 0; j < set->backend_count; j++)
			in_config |= strcmp(set->backends[j].name, info.name) == 0;
		if (in_config)
			continue; /* the config file took it over */
		set->backends = xreallocarray(set->backends, set->backend_count + 1,
					      sizeof(*set->backends));
		clone_backend(&set->backends[set->backend_count++], &template, &info);
	}
	pthread_mutex_unlock(&lock);
}

/* A backend address as `mailring add` takes it: IP[:IMAP_PORT]. */
static bool valid_runtime_host(const char *host)
{
	struct net_addr a;
	const char *error;
	return strlen(host) < DIRECTOR_NAME_MAX &&
	       net_addr_parse(host, NET_ADDR_PORT_OPTIONAL, &a, &error) == 0;
}

int directing_add_local(const char *host, unsigned int weight)
{
	pthread_mutex_lock(&lock);
	int ret = director_backend_add(dir, host, weight, "");
	if (ret == 0)
		director_backend_set_host(dir, host, host);
	dirty = true;
	pthread_mutex_unlock(&lock);
	return ret;
}

bool directing_remove_local(const char *name)
{
	struct director_backend_info info;
	pthread_mutex_lock(&lock);
	bool runtime = director_backend_find(dir, name, &info) && info.host[0] != '\0';
	if (runtime)
		director_backend_remove(dir, name);
	dirty = true;
	pthread_mutex_unlock(&lock);
	return runtime;
}

int directing_add(const char *host, unsigned int weight, struct buf *out)
{
	struct director_backend_info info;

	if (!valid_runtime_host(host))
		return json_error(out, "not an IP address (IP or IP:PORT)");
	if (directing_backend_info(host, &info))
		return json_error(out, "backend exists");
	if (directing_add_local(host, weight) < 0)
		return json_error(out, "backend exists");
	log_notice("director: backend %s added (weight %u)", host, weight);
	directing_request_reconfigure("backend added");
	if (shared) {
		/* into the ring for the other proxies (and for us after a
		 * restart); without the ring now, the next connect seeds it */
		return dredis_add(host, weight, out);
	}
	buf_append_cstr(out, "{\"backend\":");
	json_cstr(out, host);
	buf_printf(out, ",\"weight\":%u,\"added\":true}", weight);
	return 0;
}

int directing_remove(const char *name, struct buf *out)
{
	struct director_backend_info info;

	if (!directing_backend_info(name, &info))
		return json_error(out, "unknown backend");
	if (info.host[0] == '\0')
		return json_error(out, "the backend is in the config file: remove it "
				  "there and reload");
	if (shared) {
		/* a kick round on every proxy, then the ring drops it and
		 * every proxy (this one too) follows the `backends` event */
		return dredis_remove(name, out);
	}
	/* I4: its sessions go before the backend does */
	unsigned int kicked = proxy_kick(NULL, name, "Backend was removed.", true);
	directing_remove_local(name);
	log_notice("director: backend %s removed (%u sessions closed)", name, kicked);
	directing_request_reconfigure("backend removed");
	buf_append_cstr(out, "{\"backend\":");
	json_cstr(out, name);
	buf_printf(out, ",\"removed\":true,\"kicked\":%u}", kicked);
	return 0;
}

bool directing_has_runtime_backends(void)
{
	bool any = false;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < director_backend_count(dir) && !any; i++) {
		struct director_backend_info info;
		director_backend_get(dir, i, &info);
		any = info.host[0] != '\0';
	}
	pthread_mutex_unlock(&lock);
	return any;
}
