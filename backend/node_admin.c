#include "node_admin.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "fdio.h"
#include "imap_server.h"
#include "log.h"
#include "net.h"
#include "pop3_server.h"
#include "str.h"
#include "xmalloc.h"

#define ADMIN_LINE_MAX 512
#define ADMIN_CLIENT_MSECS 2000

struct node_admin {
	struct event_base *base;
	struct net_workers *workers;
	struct event *accept_ev;
	int fd; /* -1 for a control-socket admin */
	char path[sizeof(((struct sockaddr_un *)NULL)->sun_path)];
	struct admin_client *client; /* one at a time */
};

struct admin_client {
	struct node_admin *admin;
	struct event *ev;
	int fd;
	bool persistent; /* the supervisor's control socket */
	char request_id[24]; /* "#N" of the request being answered */
	char line[ADMIN_LINE_MAX];
	size_t len;
};

struct kick_ctx {
	const char *user;
	atomic_uint count;
};

static void kick_on_worker(struct net_worker *worker, void *context)
{
	struct kick_ctx *k = context;
	unsigned int n = imap_server_worker_kick(worker, k->user) +
			 pop3_server_worker_kick(worker, k->user);
	atomic_fetch_add(&k->count, n);
}

static void client_free(struct admin_client *c)
{
	if (c == NULL)
		return;
	event_free(c->ev);
	close(c->fd);
	c->admin->client = NULL;
	free(c);
}

static void answer(struct admin_client *c, const char *text)
{
	/* the supervisor numbers its requests ("#N ..."): the answer
	 * carries the number so that a late answer is never taken for the
	 * next request's */
	if (c->request_id[0] != '\0') {
		(void)fd_write_all(c->fd, c->request_id,
				   strlen(c->request_id));
		(void)fd_write_all(c->fd, " ", 1);
	}
	(void)fd_write_all(c->fd, text, strlen(text));
}

static void run_line(struct admin_client *c, struct str line)
{
	struct str cmd, arg;
	char out[128];

	c->request_id[0] = '\0';
	if (c->persistent && line.len > 1 && line.p[0] == '#') {
		struct str id, rest;
		if (str_split(line, ' ', &id, &rest) && id.len < 24) {
			str_copy(id, c->request_id, sizeof(c->request_id));
			line = rest;
		}
	}

	if (!str_split(line, ' ', &cmd, &arg)) {
		cmd = line;
		arg = STR("");
	}
	arg = str_trim(arg);
	if (str_eq(cmd, STR("kick")) && arg.len > 0 && arg.len < 256) {
		char user[256];
		str_copy(arg, user, sizeof(user));
		struct kick_ctx k = { .user = user };
		atomic_init(&k.count, 0);
		(void)net_workers_run_all_wait(c->admin->workers,
					       kick_on_worker, &k);
		unsigned int n = atomic_load(&k.count);
		log_info("admin: kick %s: %u sessions closed", user, n);
		str_printf(out, sizeof(out), "OK kicked=%u\n", n);
		answer(c, out);
		return;
	}
	answer(c, "ERR unknown command (kick USER)\n");
}

static void client_cb(evutil_socket_t fd, short what, void *context)
{
	struct admin_client *c = context;

	if ((what & EV_TIMEOUT) != 0 && !c->persistent) {
		answer(c, "ERR timeout\n");
		client_free(c);
		return;
	}
	ssize_t n = read(fd, c->line + c->len, sizeof(c->line) - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (c->persistent)
			log_warnx("admin: the supervisor's control socket "
				  "closed");
		client_free(c);
		return;
	}
	c->len += (size_t)n;
	for (;;) {
		char *nl = memchr(c->line, '\n', c->len);
		if (nl == NULL) {
			if (c->len == sizeof(c->line)) {
				answer(c, "ERR line too long\n");
				client_free(c);
			}
			return;
		}
		size_t llen = (size_t)(nl - c->line);
		size_t used = llen + 1;
		if (llen > 0 && c->line[llen - 1] == '\r')
			llen--;
		run_line(c, str_from(c->line, llen));
		if (!c->persistent) {
			client_free(c);
			return;
		}
		memmove(c->line, c->line + used, c->len - used);
		c->len -= used;
	}
}

static void accept_cb(evutil_socket_t fd, short what, void *context)
{
	struct node_admin *a = context;
	(void)what;

	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd == -1)
		return;
	if (a->client != NULL) {
		(void)fd_write_all(cfd, "ERR busy\n", 9);
		close(cfd);
		return;
	}
	struct admin_client *c = xcalloc(1, sizeof(*c));
	c->admin = a;
	c->fd = cfd;
	c->ev = event_new(a->base, cfd, EV_READ | EV_PERSIST, client_cb, c);
	struct timeval tv = { ADMIN_CLIENT_MSECS / 1000,
			      (ADMIN_CLIENT_MSECS % 1000) * 1000 };
	event_add(c->ev, &tv);
	a->client = c;
}

struct node_admin *node_admin_new(struct event_base *base, const char *path,
				  struct net_workers *workers, char *err,
				  size_t errsize)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	if (!str_copy(str_cstr(path), sun.sun_path, sizeof(sun.sun_path))) {
		str_printf(err, errsize, "admin_socket: path too long: %s",
			   path);
		return NULL;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		str_printf(err, errsize, "admin_socket: socket: %s",
			   strerror(errno));
		return NULL;
	}
	(void)unlink(path);
	mode_t old = umask(0077);
	int r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (r == -1 || listen(fd, 8) == -1) {
		str_printf(err, errsize, "admin_socket: bind(%s) failed: %s",
			   path, strerror(errno));
		close(fd);
		return NULL;
	}
	struct node_admin *a = xcalloc(1, sizeof(*a));
	a->base = base;
	a->workers = workers;
	a->fd = fd;
	str_copy(str_cstr(path), a->path, sizeof(a->path));
	a->accept_ev = event_new(base, fd, EV_READ | EV_PERSIST, accept_cb, a);
	event_add(a->accept_ev, NULL);
	return a;
}

struct node_admin *node_admin_new_control(struct event_base *base, int fd,
					  struct net_workers *workers)
{
	struct node_admin *a = xcalloc(1, sizeof(*a));
	a->base = base;
	a->workers = workers;
	a->fd = -1;
	struct admin_client *c = xcalloc(1, sizeof(*c));
	c->admin = a;
	c->fd = fd;
	c->persistent = true;
	c->ev = event_new(base, fd, EV_READ | EV_PERSIST, client_cb, c);
	event_add(c->ev, NULL);
	a->client = c;
	return a;
}

void node_admin_free(struct node_admin **ap)
{
	struct node_admin *a = *ap;

	if (a == NULL)
		return;
	client_free(a->client);
	if (a->fd >= 0) {
		event_free(a->accept_ev);
		close(a->fd);
		(void)unlink(a->path);
	}
	free(a);
	*ap = NULL;
}

int node_admin_request(const char *path, const char *line, FILE *out,
		       FILE *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char buf[ADMIN_LINE_MAX];
	size_t len = 0;

	if (!str_copy(str_cstr(path), sun.sun_path, sizeof(sun.sun_path))) {
		fprintf(err, "admin_socket path too long: %s\n", path);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		fprintf(err, "connect(%s): %s\n", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	struct timeval tv = { 10, 0 };
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (fd_write_all(fd, line, strlen(line)) == -1 ||
	    fd_write_all(fd, "\n", 1) == -1) {
		fprintf(err, "write(%s): %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(buf, '\n', len) != NULL || len == sizeof(buf) - 1)
			break;
	}
	close(fd);
	buf[len] = '\0';
	fputs(buf, out);
	return len >= 2 && memcmp(buf, "OK", 2) == 0 ? 0 : 1;
}
