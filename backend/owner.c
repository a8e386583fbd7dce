#include "owner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "str.h"
#include "xmalloc.h"

#define OWNER_LINE_MAX 512
#define OWNER_HOST_MAX 256

struct owner_ref {
	struct owner_ref *next;
	char *user;
	char *root;
	char *path; /* <root>/mailring-owner.<host>.<pid>: this process's */
	unsigned int refs;
	bool conflict_logged; /* one error line per conflict, not per minute */
};

static pthread_mutex_t owner_lock = PTHREAD_MUTEX_INITIALIZER;
static struct owner_ref *owner_list;
static char owner_host[OWNER_HOST_MAX] = "localhost";

void owner_init(const char *hostname)
{
	if (hostname != NULL && hostname[0] != '\0') {
		str_copy(str_cstr(hostname), owner_host, sizeof(owner_host));
		return;
	}
	if (gethostname(owner_host, sizeof(owner_host) - 1) == -1)
		str_copy(STR("localhost"), owner_host, sizeof(owner_host));
	owner_host[sizeof(owner_host) - 1] = '\0';
}

const char *owner_hostname(void)
{
	return owner_host;
}

/* The fields of an owner file; false when it is missing or unreadable. */
struct owner_line {
	char host[OWNER_HOST_MAX];
	char pid[24];
	char since[24];
	int64_t mtime;
};

static bool field_get(struct str line, const char *key, char *dst,
		      size_t size)
{
	size_t klen = strlen(key);
	struct str rest = line, word;

	while (rest.len > 0) {
		struct str all = rest;
		if (!str_split(all, ' ', &word, &rest)) {
			word = all;
			rest = STR_NULL;
		}
		if (word.len > klen && memcmp(word.p, key, klen) == 0 &&
		    word.p[klen] == '=')
			return str_copy(str_slice(word, klen + 1,
						  word.len - klen - 1),
					dst, size);
	}
	return false;
}

static bool owner_read(const char *path, struct owner_line *o)
{
	char buf[OWNER_LINE_MAX];
	struct stat st;

	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		return false;
	ssize_t n = fstat(fd, &st) == 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	close(fd);
	if (n <= 0)
		return false;
	struct str line = str_trim(str_from(buf, (size_t)n));
	memset(o, 0, sizeof(*o));
	o->mtime = (int64_t)st.st_mtime;
	if (!field_get(line, "host", o->host, sizeof(o->host)))
		return false;
	(void)field_get(line, "pid", o->pid, sizeof(o->pid));
	(void)field_get(line, "since", o->since, sizeof(o->since));
	return true;
}

static int owner_write(const char *path)
{
	char tmp[4096 + 64], line[OWNER_LINE_MAX];

	int n = str_printf(line, sizeof(line), "host=%s pid=%ld since=%lld\n",
			   owner_host, (long)getpid(),
			   (long long)time(NULL));
	if (n < 0 || str_printf(tmp, sizeof(tmp), "%s.%ld.tmp", path,
				(long)getpid()) < 0)
		return -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	if (fd_write_all(fd, line, (size_t)n) == -1 || close(fd) == -1 ||
	    rename(tmp, path) == -1) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Logs when another host's owner file in the root is fresh: each node
 * process keeps its own file, so processes of one node never hide each
 * other and a process only ever removes its own. */
static void check_conflict(struct owner_ref *r, const struct log_ctx *log)
{
	struct owner_line o;
	char path[4096];
	struct dirent *de;
	size_t plen = strlen(OWNER_FILE_NAME);

	if (r->conflict_logged)
		return;
	DIR *d = opendir(r->root);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, OWNER_FILE_NAME, plen) != 0 ||
		    (de->d_name[plen] != '\0' && de->d_name[plen] != '.'))
			continue;
		if (str_printf(path, sizeof(path), "%s/%s", r->root,
			       de->d_name) < 0 ||
		    strcmp(path, r->path) == 0 || !owner_read(path, &o) ||
		    strcmp(o.host, owner_host) == 0)
			continue;
		if ((int64_t)time(NULL) - o.mtime > OWNER_STALE_SECS)
			continue; /* a crashed holder's leftover */
		r->conflict_logged = true;
#define GUARD_FMT                                                              \
	"Shared storage guard: user %s is open on host %s (pid %s, since %s) " \
	"and on this host %s at the same time: two backends serve one user "  \
	"(director invariant I1 violated)"
		if (log != NULL)
			log_ctx_error(log, GUARD_FMT, r->user, o.host, o.pid,
				      o.since, owner_host);
		else
			log_error(GUARD_FMT, r->user, o.host, o.pid, o.since,
				  owner_host);
#undef GUARD_FMT
		break;
	}
	closedir(d);
}

/* The host name as a file name part: [A-Za-z0-9.-], others as '_'. */
static void host_part(char *dst, size_t size)
{
	size_t i = 0;
	for (; owner_host[i] != '\0' && i + 1 < size && i < 64; i++) {
		char c = owner_host[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '-';
		dst[i] = ok ? c : '_';
	}
	dst[i] = '\0';
}

struct owner_ref *owner_acquire(const char *user, const char *root,
				const struct log_ctx *log)
{
	struct owner_ref *r;
	char path[4096];

	char host[80];
	host_part(host, sizeof(host));
	if (str_printf(path, sizeof(path), "%s/%s.%s.%ld", root,
		       OWNER_FILE_NAME, host, (long)getpid()) < 0)
		return NULL;
	pthread_mutex_lock(&owner_lock);
	for (r = owner_list; r != NULL; r = r->next) {
		if (strcmp(r->path, path) == 0)
			break;
	}
	if (r == NULL) {
		r = xcalloc(1, sizeof(*r));
		r->user = xstrdup(user);
		r->root = xstrdup(root);
		r->path = xstrdup(path);
		r->next = owner_list;
		owner_list = r;
	}
	r->refs++;
	check_conflict(r, log);
	if (owner_write(r->path) < 0) {
		if (log != NULL)
			log_ctx_warn(log, "owner file %s", r->path);
		else
			log_warn("owner file %s", r->path);
	}
	pthread_mutex_unlock(&owner_lock);
	return r;
}

void owner_release(struct owner_ref **refp)
{
	struct owner_ref *r = *refp;

	if (r == NULL)
		return;
	*refp = NULL;
	pthread_mutex_lock(&owner_lock);
	if (--r->refs > 0) {
		pthread_mutex_unlock(&owner_lock);
		return;
	}
	(void)unlink(r->path); /* this process's own file */
	for (struct owner_ref **pp = &owner_list; *pp != NULL;
	     pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	pthread_mutex_unlock(&owner_lock);
	free(r->user);
	free(r->root);
	free(r->path);
	free(r);
}

void owner_refresh_all(void)
{
	pthread_mutex_lock(&owner_lock);
	for (struct owner_ref *r = owner_list; r != NULL; r = r->next) {
		check_conflict(r, NULL);
		if (owner_write(r->path) < 0)
			log_warn("owner file %s", r->path);
	}
	pthread_mutex_unlock(&owner_lock);
}

void owner_deinit(void)
{
	pthread_mutex_lock(&owner_lock);
	while (owner_list != NULL) {
		struct owner_ref *r = owner_list;
		owner_list = r->next;
		free(r->user);
		free(r->root);
		free(r->path);
		free(r);
	}
	pthread_mutex_unlock(&owner_lock);
}
