#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "net.h"
#include "str.h"

/* ---- helpers ------------------------------------------------------------- */

/* Threads of this process named "mr-worker-*" (net_workers_start names
 * them), so sanitizer helper threads do not count. */
static unsigned int thread_count(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	unsigned int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[300], comm[32] = "";
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		assert_true(str_printf(path, sizeof(path),
				       "/proc/self/task/%s/comm",
				       de->d_name) > 0);
		f = fopen(path, "r");
		if (f == NULL)
			continue; /* exited meanwhile */
		if (fgets(comm, sizeof(comm), f) != NULL &&
		    strncmp(comm, "mr-worker-", 10) == 0)
			n++;
		fclose(f);
	}
	closedir(d);
	return n;
}

static struct net_addr parse_ok(const char *text, unsigned int flags)
{
	struct net_addr addr;
	const char *error = NULL;

	if (net_addr_parse(text, flags, &addr, &error) < 0)
		fail_msg("net_addr_parse(%s): %s", text, error);
	return addr;
}

static const char *addr_text(const struct net_addr *addr)
{
	static char buf[NET_ADDR_STR_MAX];
	return net_addr_str(addr, buf, sizeof(buf));
}

/* A counter other threads bump, with a bounded wait for it. */
struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int count;
};

static void waiter_init(struct waiter *w)
{
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->count = 0;
}

static void waiter_destroy(struct waiter *w)
{
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
}

static void waiter_bump(struct waiter *w)
{
	pthread_mutex_lock(&w->lock);
	w->count++;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Waits until count >= n or timeout_msecs pass; returns the count. */
static unsigned int waiter_wait(struct waiter *w, unsigned int n,
				unsigned int timeout_msecs)
{
	struct timespec deadline;
	unsigned int count;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_msecs / 1000;
	deadline.tv_nsec += (long)(timeout_msecs % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->lock);
	while (w->count < n) {
		if (pthread_cond_timedwait(&w->cond, &w->lock, &deadline) ==
		    ETIMEDOUT)
			break;
	}
	count = w->count;
	pthread_mutex_unlock(&w->lock);
	return count;
}

/* Blocking connect from this thread; returns the fd. */
static int connect_blocking(const struct net_addr *dest)
{
	int fd = socket(dest->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	if (connect(fd, &dest->u.sa, dest->len) == -1)
		fail_msg("connect(%s): %s", addr_text(dest), strerror(errno));
	return fd;
}

static void wait_writable(int fd)
{
	struct pollfd pfd = {fd, POLLOUT, 0};
	assert_int_equal(poll(&pfd, 1, 2000), 1);
}

static int accept_blocking(int lfd)
{
	struct pollfd pfd = {lfd, POLLIN, 0};
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

/* ---- address parsing and formatting -------------------------------------- */

static void test_addr_parse_good(void **state)
{
	static const struct {
		const char *in;
		unsigned int flags;
		int family;
		const char *out;
	} cases[] = {
	    {"127.0.0.1:143", 0, AF_INET, "127.0.0.1:143"},
	    {"10.20.30.40:65535", 0, AF_INET, "10.20.30.40:65535"},
	    {"1.2.3.4:1", 0, AF_INET, "1.2.3.4:1"},
	    {"[::1]:143", 0, AF_INET6, "[::1]:143"},
	    {"[2001:DB8::a]:993", 0, AF_INET6, "[2001:db8::a]:993"},
	    {"*:143", 0, AF_INET, "0.0.0.0:143"},
	    {"[::]:143", 0, AF_INET6, "[::]:143"},
	    {"[::ffff:10.1.2.3]:110", 0, AF_INET, "10.1.2.3:110"},
	    {"[fe80::1%lo]:143", 0, AF_INET6, "[fe80::1%lo]:143"},
	    {"[fe80::1%1]:143", 0, AF_INET6, "[fe80::1%lo]:143"},
	    {"127.0.0.1:0", NET_ADDR_PORT_ZERO, AF_INET, "127.0.0.1:0"},
	    {"[::]:0", NET_ADDR_PORT_ZERO, AF_INET6, "[::]:0"},
	    {"127.0.0.2", NET_ADDR_PORT_OPTIONAL, AF_INET, "127.0.0.2:0"},
	    {"127.0.0.2:25", NET_ADDR_PORT_OPTIONAL, AF_INET, "127.0.0.2:25"},
	    {"::1", NET_ADDR_PORT_OPTIONAL, AF_INET6, "[::1]:0"},
	    {"[::1]", NET_ADDR_PORT_OPTIONAL, AF_INET6, "[::1]:0"},
	    {"::ffff:1.2.3.4", NET_ADDR_PORT_OPTIONAL, AF_INET, "1.2.3.4:0"},
	    {"*", NET_ADDR_PORT_OPTIONAL, AF_INET, "0.0.0.0:0"},
	};
	char buf[NET_ADDR_STR_MAX];
	struct net_addr addr;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		addr = parse_ok(cases[i].in, cases[i].flags);
		assert_int_equal(addr.u.sa.sa_family, cases[i].family);
		assert_string_equal(net_addr_str(&addr, buf, sizeof(buf)),
				    cases[i].out);
	}
	addr = parse_ok("*:143", 0);
	assert_true(net_addr_is_any(&addr));
	assert_int_equal(net_addr_port(&addr), 143);
	addr = parse_ok("[::]:143", 0);
	assert_true(net_addr_is_any(&addr));
	addr = parse_ok("[::1]:143", 0);
	assert_false(net_addr_is_any(&addr));
	assert_string_equal(net_addr_ip_str(&addr, buf, sizeof(buf)), "::1");
	assert_int_equal(addr.len, sizeof(struct sockaddr_in6));
}

static void test_addr_parse_bad(void **state)
{
	static const struct {
		const char *in;
		unsigned int flags;
		const char *error; /* expected substring */
	} cases[] = {
	    {"", 0, "empty address"},
	    {"127.0.0.1", 0, "missing port"},
	    {"127.0.0.1:", 0, "missing port"},
	    {"[::1]", 0, "missing port"},
	    {"[::1]:", 0, "missing port"},
	    {"*", 0, "missing port"},
	    {"143", 0, "missing address before the port"},
	    {":143", 0, "missing address"},
	    {"127.0.0.1:0", 0, "port 0"},
	    {"127.0.0.1:65536", 0, "invalid port"},
	    {"127.0.0.1:99999999999999999999999", 0, "invalid port"},
	    {"127.0.0.1:-1", 0, "invalid port"},
	    {"127.0.0.1:+1", 0, "invalid port"},
	    {"127.0.0.1: 143", 0, "invalid port"},
	    {"127.0.0.1:143 ", 0, "invalid port"},
	    {"127.0.0.1:imap", 0, "invalid port"},
	    {"[::1", 0, "missing ']'"},
	    {"[::1]143", 0, "unexpected text after ']'"},
	    {"[::1]x:143", 0, "unexpected text after ']'"},
	    {"::1:143", 0, "must be in brackets"},
	    {"[]:143", 0, "missing address"},
	    {"[1.2.3.4]:143", 0, "invalid IPv6 address"},
	    {"[::g]:143", 0, "invalid IPv6 address"},
	    {"[fe80::1%]:143", 0, "invalid IPv6 scope"},
	    {"[fe80::1%nosuchif0]:143", 0, "unknown interface"},
	    {"1.2.3:143", 0, "invalid IPv4 address"},
	    {"1.2.3.4.5:143", 0, "invalid IPv4 address"},
	    {"256.1.1.1:143", 0, "invalid IPv4 address"},
	    {"01.2.3.4:143", 0, "invalid IPv4 address"},
	    {"0x7f.0.0.1:143", 0, "host names are not resolved"},
	    {"localhost:143", 0, "host names are not resolved"},
	    {"mail.example.com:143", 0, "host names are not resolved"},
	    {"garbage", 0, "missing port"},
	    {"garbage", NET_ADDR_PORT_OPTIONAL, "host names"},
	    {"!!:143", 0, "invalid address"},
	    {"127.0.0.1 :143", 0, "invalid address"},
	    {"143", NET_ADDR_PORT_OPTIONAL, "invalid IPv4 address"},
	};
	struct net_addr addr;
	const char *error;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		error = NULL;
		if (net_addr_parse(cases[i].in, cases[i].flags, &addr,
				   &error) == 0)
			fail_msg("'%s' parsed as %s", cases[i].in,
				 addr_text(&addr));
		assert_non_null(error);
		if (strstr(error, cases[i].error) == NULL)
			fail_msg("'%s': error '%s', expected '%s'", cases[i].in,
				 error, cases[i].error);
		assert_int_equal(addr.u.sa.sa_family, AF_UNSPEC);
	}
}

static void test_addr_format_compare(void **state)
{
	struct sockaddr_in6 sin6;
	struct sockaddr_un sun;
	struct net_addr mapped, v4, other, none;
	char buf[NET_ADDR_STR_MAX], tiny[8];

	(void)state;
	/* a v4-mapped address as a dual-stack socket reports it */
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(143);
	assert_int_equal(
	    inet_pton(AF_INET6, "::ffff:192.0.2.7", &sin6.sin6_addr), 1);
	assert_int_equal(net_addr_from_sockaddr(&mapped,
						(const struct sockaddr *)&sin6,
						sizeof(sin6)),
			 0);
	assert_int_equal(mapped.u.sa.sa_family, AF_INET);
	assert_string_equal(net_addr_ip_str(&mapped, buf, sizeof(buf)),
			    "192.0.2.7");
	assert_string_equal(net_addr_str(&mapped, buf, sizeof(buf)),
			    "192.0.2.7:143");
	v4 = parse_ok("192.0.2.7:143", 0);
	assert_true(net_addr_eq(&mapped, &v4));

	/* an un-normalised copy formats and compares the same way */
	memset(&mapped, 0, sizeof(mapped));
	memcpy(&mapped.u.sin6, &sin6, sizeof(sin6));
	mapped.len = sizeof(sin6);
	assert_int_equal(mapped.u.sa.sa_family, AF_INET6);
	assert_string_equal(net_addr_str(&mapped, buf, sizeof(buf)),
			    "192.0.2.7:143");
	assert_true(net_addr_eq(&mapped, &v4));
	assert_true(net_addr_ip_eq(&v4, &mapped));
	net_addr_normalize(&mapped);
	assert_int_equal(mapped.u.sa.sa_family, AF_INET);
	assert_int_equal(net_addr_port(&mapped), 143);

	other = parse_ok("192.0.2.7:993", 0);
	assert_false(net_addr_eq(&v4, &other));
	assert_true(net_addr_ip_eq(&v4, &other));
	other = parse_ok("192.0.2.8:143", 0);
	assert_false(net_addr_ip_eq(&v4, &other));
	other = parse_ok("[::1]:143", 0);
	assert_false(net_addr_ip_eq(&v4, &other));
	assert_true(net_addr_eq(&other, &other));
	net_addr_set_port(&other, 4190);
	assert_string_equal(net_addr_str(&other, buf, sizeof(buf)),
			    "[::1]:4190");

	/* the longest form fits NET_ADDR_STR_MAX */
	other = parse_ok("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535", 0);
	assert_string_equal(net_addr_str(&other, buf, sizeof(buf)),
			    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535");
	/* too small: empty, never cut */
	assert_string_equal(net_addr_str(&other, tiny, sizeof(tiny)), "");
	assert_string_equal(net_addr_ip_str(&other, tiny, sizeof(tiny)), "");

	memset(&none, 0, sizeof(none));
	assert_string_equal(net_addr_str(&none, buf, sizeof(buf)), "(none)");
	assert_int_equal(net_addr_port(&none), 0);

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_int_equal(net_addr_from_sockaddr(
			     &none, (const struct sockaddr *)&sun, sizeof(sun)),
			 -1);
	/* short lengths are refused */
	assert_int_equal(net_addr_from_sockaddr(&none,
						(const struct sockaddr *)&sin6,
						sizeof(struct sockaddr_in)),
			 -1);
}

/* ---- sockets ------------------------------------------------------------- */

static void test_listen_reuseport(void **state)
{
	struct net_addr addr = parse_ok("127.0.0.1:0", NET_ADDR_PORT_ZERO);
	struct net_addr bound, local, peer;
	char err[NET_ERROR_MAX];
	int fd1, fd2, v6, value, cfd, afd;
	socklen_t len = sizeof(value);

	(void)state;
	fd1 = net_listen(&addr, 0, NET_LISTEN_REUSEPORT, err, sizeof(err));
	if (fd1 < 0)
		fail_msg("%s", err);
	assert_int_equal(net_get_local_addr(fd1, &bound), 0);
	assert_true(net_addr_port(&bound) != 0);
	/* a second socket on the very same address */
	fd2 = net_listen(&bound, 16, NET_LISTEN_REUSEPORT, err, sizeof(err));
	if (fd2 < 0)
		fail_msg("%s", err);
	assert_int_equal(net_get_local_addr(fd2, &local), 0);
	assert_true(net_addr_eq(&bound, &local));
	assert_true((fcntl(fd2, F_GETFL) & O_NONBLOCK) != 0);
	assert_true((fcntl(fd2, F_GETFD) & FD_CLOEXEC) != 0);
	assert_int_equal(
	    getsockopt(fd2, SOL_SOCKET, SO_REUSEPORT, &value, &len), 0);
	assert_int_equal(value, 1);
	/* both accept: connections to the address land on one of them */
	cfd = connect_blocking(&bound);
	{
		struct pollfd pfd[2] = {{fd1, POLLIN, 0}, {fd2, POLLIN, 0}};
		assert_int_equal(poll(pfd, 2, 2000), 1);
		afd =
		    accept_blocking((pfd[0].revents & POLLIN) != 0 ? fd1 : fd2);
	}
	assert_int_equal(net_get_peer_addr(afd, &peer), 0);
	assert_int_equal(net_get_local_addr(cfd, &local), 0);
	assert_true(net_addr_eq(&peer, &local));
	close(afd);
	close(cfd);
	close(fd1);
	close(fd2);

	/* IPv6: V6ONLY is set */
	addr = parse_ok("[::1]:0", NET_ADDR_PORT_ZERO);
	v6 = net_listen(&addr, 0, 0, err, sizeof(err));
	if (v6 < 0)
		fail_msg("%s", err);
	len = sizeof(value);
	assert_int_equal(
	    getsockopt(v6, IPPROTO_IPV6, IPV6_V6ONLY, &value, &len), 0);
	assert_int_equal(value, 1);
	assert_int_equal(net_get_local_addr(v6, &local), 0);
	assert_int_equal(local.u.sa.sa_family, AF_INET6);
	close(v6);
}

static void test_listen_errors(void **state)
{
	struct net_addr addr = parse_ok("127.0.0.1:0", NET_ADDR_PORT_ZERO);
	struct net_addr bound, none;
	char err[NET_ERROR_MAX], expected[NET_ERROR_MAX];
	int fd1;

	(void)state;
	/* a socket without SO_REUSEPORT holds the port exclusively */
	fd1 = net_listen(&addr, 0, 0, err, sizeof(err));
	assert_true(fd1 >= 0);
	assert_int_equal(net_get_local_addr(fd1, &bound), 0);
	assert_int_equal(
	    net_listen(&bound, 0, NET_LISTEN_REUSEPORT, err, sizeof(err)), -1);
	assert_true(str_printf(expected, sizeof(expected),
			       "bind(127.0.0.1:%u) failed: Address already "
			       "in use",
			       (unsigned int)net_addr_port(&bound)) > 0);
	assert_string_equal(err, expected);
	close(fd1);

	/* an address that is not ours */
	addr = parse_ok("192.0.2.1:143", 0);
	assert_int_equal(net_listen(&addr, 0, 0, err, sizeof(err)), -1);
	assert_string_equal(err, "bind(192.0.2.1:143) failed: Cannot "
				 "assign requested address");

	memset(&none, 0, sizeof(none));
	assert_int_equal(net_listen(&none, 0, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not an IP address"));
}

static void test_connect_source(void **state)
{
	struct net_addr any = parse_ok("127.0.0.1:0", NET_ADDR_PORT_ZERO);
	struct net_addr dest, src, peer, v6src, closed;
	char err[NET_ERROR_MAX];
	int lfd, fd, afd, ret;

	(void)state;
	lfd = net_listen(&any, 0, 0, err, sizeof(err));
	assert_true(lfd >= 0);
	assert_int_equal(net_get_local_addr(lfd, &dest), 0);
	src = parse_ok("127.0.0.2", NET_ADDR_PORT_OPTIONAL);

	fd = net_connect(&dest, &src, err, sizeof(err));
	if (fd < 0)
		fail_msg("%s", err);
	assert_true((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
	wait_writable(fd);
	assert_int_equal(net_connect_result(fd), 1);
	afd = accept_blocking(lfd);
	assert_int_equal(net_get_peer_addr(afd, &peer), 0);
	assert_string_equal(net_addr_ip_str(&peer, err, sizeof(err)),
			    "127.0.0.2");
	assert_true(net_addr_port(&peer) != 0);
	close(afd);
	close(fd);

	/* without a source the kernel picks 127.0.0.1 */
	fd = net_connect(&dest, NULL, err, sizeof(err));
	assert_true(fd >= 0);
	wait_writable(fd);
	assert_int_equal(net_connect_result(fd), 1);
	afd = accept_blocking(lfd);
	assert_int_equal(net_get_peer_addr(afd, &peer), 0);
	assert_string_equal(net_addr_ip_str(&peer, err, sizeof(err)),
			    "127.0.0.1");
	assert_int_equal(net_set_nodelay(afd, true), 0);
	assert_int_equal(net_set_keepalive(afd, 60, 10, 5), 0);
	{
		int value;
		socklen_t len = sizeof(value);
		assert_int_equal(
		    getsockopt(afd, IPPROTO_TCP, TCP_NODELAY, &value, &len), 0);
		assert_true(value != 0);
		assert_int_equal(
		    getsockopt(afd, IPPROTO_TCP, TCP_KEEPIDLE, &value, &len),
		    0);
		assert_int_equal(value, 60);
		assert_int_equal(
		    getsockopt(afd, SOL_SOCKET, SO_KEEPALIVE, &value, &len), 0);
		assert_true(value != 0);
	}
	close(afd);
	close(fd);

	/* a refused connect: now or once writable */
	closed = dest;
	close(lfd);
	fd = net_connect(&closed, &src, err, sizeof(err));
	if (fd >= 0) {
		wait_writable(fd);
		errno = 0;
		ret = net_connect_result(fd);
		assert_int_equal(ret, -1);
		assert_int_equal(errno, ECONNREFUSED);
		close(fd);
	} else {
		assert_non_null(strstr(err, "Connection refused"));
	}

	/* families must agree; sources must be ours */
	v6src = parse_ok("::1", NET_ADDR_PORT_OPTIONAL);
	assert_int_equal(net_connect(&dest, &v6src, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "another family"));
	src = parse_ok("192.0.2.1", NET_ADDR_PORT_OPTIONAL);
	assert_int_equal(net_connect(&dest, &src, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "bind(192.0.2.1:0) for connect("));
}

/* The documented libevent way: bufferevent_socket_connect(bev, NULL, 0). */
static void bev_event_cb(struct bufferevent *bev, short what, void *arg)
{
	short *seen = arg;

	*seen = what;
	event_base_loopbreak(bufferevent_get_base(bev));
}

static void test_connect_bufferevent(void **state)
{
	struct net_addr any = parse_ok("127.0.0.1:0", NET_ADDR_PORT_ZERO);
	struct net_addr dest,
	    src = parse_ok("127.0.0.3", NET_ADDR_PORT_OPTIONAL);
	struct event_base *base;
	struct bufferevent *bev;
	char err[NET_ERROR_MAX];
	struct net_addr peer;
	short seen = 0;
	int lfd, fd, afd;

	(void)state;
	assert_int_equal(net_init(), 0);
	base = event_base_new();
	assert_non_null(base);
	lfd = net_listen(&any, 0, 0, err, sizeof(err));
	assert_true(lfd >= 0);
	assert_int_equal(net_get_local_addr(lfd, &dest), 0);
	fd = net_connect(&dest, &src, err, sizeof(err));
	assert_true(fd >= 0);
	bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	bufferevent_setcb(bev, NULL, NULL, bev_event_cb, &seen);
	assert_int_equal(bufferevent_socket_connect(bev, NULL, 0), 0);
	assert_int_equal(event_base_dispatch(base), 0);
	assert_true((seen & BEV_EVENT_CONNECTED) != 0);
	afd = accept_blocking(lfd);
	assert_int_equal(net_get_peer_addr(afd, &peer), 0);
	assert_string_equal(net_addr_ip_str(&peer, err, sizeof(err)),
			    "127.0.0.3");
	close(afd);
	bufferevent_free(bev);
	close(lfd);
	event_base_free(base);
}

/* ---- timers -------------------------------------------------------------- */

struct timer_state {
	struct event_base *base;
	struct net_timer *timer;
	unsigned int fired;
	unsigned int stop_after;
	bool free_self;
};

static void timer_cb(void *context)
{
	struct timer_state *ts = context;

	ts->fired++;
	if (ts->free_self)
		net_timer_free(&ts->timer);
	else if (ts->stop_after != 0 && ts->fired >= ts->stop_after)
		net_timer_stop(ts->timer);
}

static void run_base_for(struct event_base *base, unsigned int msecs)
{
	struct timeval tv = {0, (suseconds_t)msecs * 1000};
	assert_int_equal(event_base_loopexit(base, &tv), 0);
	assert_true(event_base_dispatch(base) >= 0);
}

static void test_timers(void **state)
{
	struct timer_state ts = {0};
	uint64_t start, t1;

	(void)state;
	ts.base = event_base_new();
	assert_non_null(ts.base);

	/* one-shot */
	ts.timer = net_timer_new(ts.base, timer_cb, &ts);
	assert_false(net_timer_pending(ts.timer));
	start = net_monotonic_msecs();
	net_timer_start(ts.timer, 30, false);
	assert_true(net_timer_pending(ts.timer));
	run_base_for(ts.base, 150);
	assert_int_equal(ts.fired, 1);
	assert_false(net_timer_pending(ts.timer));
	t1 = net_monotonic_msecs();
	assert_true(t1 - start >= 140);

	/* repeating, stopped from its callback after 3 */
	ts.fired = 0;
	ts.stop_after = 3;
	net_timer_start(ts.timer, 10, true);
	run_base_for(ts.base, 200);
	assert_int_equal(ts.fired, 3);
	assert_false(net_timer_pending(ts.timer));

	/* restarting moves the deadline: it never fires while restarted */
	ts.fired = 0;
	ts.stop_after = 0;
	net_timer_start(ts.timer, 80, false);
	for (int i = 0; i < 5; i++) {
		run_base_for(ts.base, 30);
		net_timer_start(ts.timer, 80, false);
	}
	assert_int_equal(ts.fired, 0);
	net_timer_stop(ts.timer);
	run_base_for(ts.base, 120);
	assert_int_equal(ts.fired, 0);
	net_timer_free(&ts.timer);
	assert_null(ts.timer);
	net_timer_free(&ts.timer);

	/* freed from its own callback, repeating or not */
	for (int repeat = 0; repeat < 2; repeat++) {
		ts.fired = 0;
		ts.free_self = true;
		ts.timer = net_timer_new(ts.base, timer_cb, &ts);
		net_timer_start(ts.timer, 5, repeat != 0);
		run_base_for(ts.base, 60);
		assert_int_equal(ts.fired, 1);
		assert_null(ts.timer);
	}
	event_base_free(ts.base);
}

/* ---- signals ------------------------------------------------------------- */

struct sig_state {
	int reloads;
	int shutdowns;
	int last_signo;
};

static void on_reload(int signo, void *context)
{
	struct sig_state *ss = context;
	ss->reloads++;
	ss->last_signo = signo;
}

static void on_shutdown(int signo, void *context)
{
	struct sig_state *ss = context;
	ss->shutdowns++;
	ss->last_signo = signo;
}

static void loop_until(struct event_base *base, const int *counter, int want)
{
	for (int i = 0; i < 200 && *counter < want; i++) {
		assert_true(event_base_loop(base, EVLOOP_NONBLOCK) >= 0);
		if (*counter < want)
			usleep(1000);
	}
}

static void test_signals(void **state)
{
	struct sig_state ss = {0};
	struct event_base *base;
	struct net_signals *sig;
	struct sigaction sa;
	char err[NET_ERROR_MAX];

	(void)state;
	assert_int_equal(net_init(), 0);
	base = event_base_new();
	assert_non_null(base);
	sig = net_signals_new(base, on_reload, on_shutdown, &ss, err,
			      sizeof(err));
	if (sig == NULL)
		fail_msg("%s", err);

	assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
	assert_true(sa.sa_handler == SIG_IGN);

	assert_int_equal(raise(SIGHUP), 0);
	loop_until(base, &ss.reloads, 1);
	assert_int_equal(ss.reloads, 1);
	assert_int_equal(ss.shutdowns, 0);
	assert_int_equal(ss.last_signo, SIGHUP);

	assert_int_equal(raise(SIGTERM), 0);
	loop_until(base, &ss.shutdowns, 1);
	assert_int_equal(ss.shutdowns, 1);
	assert_int_equal(ss.last_signo, SIGTERM);

	assert_int_equal(raise(SIGINT), 0);
	loop_until(base, &ss.shutdowns, 2);
	assert_int_equal(ss.shutdowns, 2);
	assert_int_equal(ss.last_signo, SIGINT);
	assert_int_equal(ss.reloads, 1);

	/* a second reload works too */
	assert_int_equal(raise(SIGHUP), 0);
	loop_until(base, &ss.reloads, 2);
	assert_int_equal(ss.reloads, 2);

	net_signals_free(&sig);
	assert_null(sig);
	net_signals_free(&sig);
	event_base_free(base);
}

/* ---- workers ------------------------------------------------------------- */

struct worker_data {
	unsigned int id;
	unsigned int accepted;
};

struct accept_record {
	struct net_addr peer;
	struct net_addr local;
	unsigned int worker_id;
	bool on_main_thread;
	bool on_worker_base;
	bool data_ok;
};

#define MAX_RECORDS 64

struct test_ctx {
	pthread_t main_thread;
	pthread_mutex_t lock;
	struct accept_record records[MAX_RECORDS];
	unsigned int record_count;
	struct waiter accepted;
	struct waiter ran;
	unsigned int inits, deinits;
	bool deinit_wrong_thread;
	/* run-on-every-worker */
	unsigned int ran_mask;
	bool ran_wrong_thread;
	unsigned int order[128];
	unsigned int order_count;
	bool hup_blocked_in_worker;
	/* stop */
	struct net_addr listen_addr;
	int stop_mode; /* 0 never drained, 1 drained at once, 2 by timer */
	bool refused_in_stopping;
	unsigned int stopping_calls;
	/* EMFILE */
	struct waiter logged;
	char last_log[512];
};

static void worker_init(struct net_worker *worker, void *context)
{
	struct test_ctx *ctx = context;
	struct worker_data *data = calloc(1, sizeof(*data));

	assert_non_null(data);
	data->id = net_worker_id(worker);
	net_worker_set_data(worker, data);
	pthread_mutex_lock(&ctx->lock);
	ctx->inits++;
	pthread_mutex_unlock(&ctx->lock);
}

static void worker_deinit(struct net_worker *worker, void *context)
{
	struct test_ctx *ctx = context;
	struct worker_data *data = net_worker_get_data(worker);

	pthread_mutex_lock(&ctx->lock);
	ctx->deinits++;
	if (net_worker_current() != worker ||
	    pthread_equal(pthread_self(), ctx->main_thread))
		ctx->deinit_wrong_thread = true;
	pthread_mutex_unlock(&ctx->lock);
	free(data);
	net_worker_set_data(worker, NULL);
}

static void on_accept(struct net_worker *worker, int fd,
		      const struct net_addr *peer, const struct net_addr *local,
		      void *context)
{
	struct test_ctx *ctx = context;
	struct worker_data *data = net_worker_get_data(worker);
	struct accept_record rec;

	rec.peer = *peer;
	rec.local = *local;
	rec.worker_id = net_worker_id(worker);
	rec.on_main_thread = pthread_equal(pthread_self(), ctx->main_thread);
	/* non-NULL only on the thread running this base's loop */
	rec.on_worker_base =
	    net_worker_current() == worker &&
	    event_base_get_running_event(net_worker_base(worker)) != NULL;
	rec.data_ok = data != NULL && data->id == net_worker_id(worker);
	if (data != NULL)
		data->accepted++;
	close(fd);
	pthread_mutex_lock(&ctx->lock);
	if (ctx->record_count < MAX_RECORDS)
		ctx->records[ctx->record_count++] = rec;
	pthread_mutex_unlock(&ctx->lock);
	waiter_bump(&ctx->accepted);
}

static void test_log(const char *message, void *context)
{
	struct test_ctx *ctx = context;

	pthread_mutex_lock(&ctx->lock);
	(void)str_copy(str_cstr(message), ctx->last_log, sizeof(ctx->last_log));
	pthread_mutex_unlock(&ctx->lock);
	waiter_bump(&ctx->logged);
}

static struct test_ctx *test_ctx_new(void)
{
	struct test_ctx *ctx = calloc(1, sizeof(*ctx));

	assert_non_null(ctx);
	ctx->main_thread = pthread_self();
	pthread_mutex_init(&ctx->lock, NULL);
	waiter_init(&ctx->accepted);
	waiter_init(&ctx->ran);
	waiter_init(&ctx->logged);
	return ctx;
}

static void test_ctx_free(struct test_ctx *ctx)
{
	waiter_destroy(&ctx->accepted);
	waiter_destroy(&ctx->ran);
	waiter_destroy(&ctx->logged);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
}

static struct net_workers *workers_new(struct test_ctx *ctx, unsigned int count,
				       net_worker_fn *stopping)
{
	struct net_workers_settings set = {0};
	char err[NET_ERROR_MAX];
	struct net_workers *w;

	set.count = count;
	set.init = worker_init;
	set.deinit = worker_deinit;
	set.stopping = stopping;
	set.log = test_log;
	set.accept_pause_msecs = 50;
	set.context = ctx;
	w = net_workers_new(&set, err, sizeof(err));
	if (w == NULL)
		fail_msg("%s", err);
	return w;
}

static void test_workers_accept(void **state)
{
	struct test_ctx *ctx = test_ctx_new();
	unsigned int threads_before = thread_count();
	struct net_addr addr = parse_ok("127.0.0.1:0", NET_ADDR_PORT_ZERO);
	struct net_addr bound, bound6, src;
	char err[NET_ERROR_MAX];
	struct net_workers *w;
	const unsigned int n = 3, conns = 24;
	int fd;

	(void)state;
	w = workers_new(ctx, n, NULL);
	assert_int_equal(net_workers_count(w), n);
	assert_null(net_workers_get(w, n));
	if (net_workers_add_listener(w, &addr, on_accept, ctx, &bound, err,
				     sizeof(err)) < 0)
		fail_msg("%s", err);
	assert_true(net_addr_port(&bound) != 0);
	addr = parse_ok("[::1]:0", NET_ADDR_PORT_ZERO);
	if (net_workers_add_listener(w, &addr, on_accept, ctx, &bound6, err,
				     sizeof(err)) < 0)
		fail_msg("%s", err);
	/* every worker has its own socket on the port: all are taken */
	{
		int probe = net_listen(&bound, 0, 0, err, sizeof(err));
		assert_int_equal(probe, -1);
		assert_non_null(strstr(err, "Address already in use"));
	}
	if (net_workers_start(w, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	assert_int_equal(net_workers_start(w, err, sizeof(err)), -1);
	assert_int_equal(threads_before, 0);
	assert_int_equal(thread_count(), n);
	assert_null(net_worker_current());

	for (unsigned int i = 0; i < conns; i++) {
		fd = connect_blocking(&bound);
		close(fd);
	}
	fd = connect_blocking(&bound6);
	close(fd);
	/* and one from 127.0.0.2 through net_connect() */
	src = parse_ok("127.0.0.2", NET_ADDR_PORT_OPTIONAL);
	fd = net_connect(&bound, &src, err, sizeof(err));
	assert_true(fd >= 0);
	wait_writable(fd);
	assert_int_equal(net_connect_result(fd), 1);
	assert_int_equal(waiter_wait(&ctx->accepted, conns + 2, 5000),
			 conns + 2);
	close(fd);

	pthread_mutex_lock(&ctx->lock);
	unsigned int from2 = 0, v6 = 0;
	for (unsigned int i = 0; i < ctx->record_count; i++) {
		const struct accept_record *r = &ctx->records[i];
		char ip[NET_ADDR_STR_MAX];

		assert_false(r->on_main_thread);
		assert_true(r->on_worker_base);
		assert_true(r->data_ok);
		assert_true(r->worker_id < n);
		net_addr_ip_str(&r->peer, ip, sizeof(ip));
		if (r->local.u.sa.sa_family == AF_INET6) {
			v6++;
			assert_true(net_addr_eq(&r->local, &bound6));
			assert_string_equal(ip, "::1");
			continue;
		}
		assert_true(net_addr_eq(&r->local, &bound));
		if (strcmp(ip, "127.0.0.2") == 0)
			from2++;
		else
			assert_string_equal(ip, "127.0.0.1");
	}
	assert_int_equal(from2, 1);
	assert_int_equal(v6, 1);
	assert_int_equal(ctx->inits, n);
	pthread_mutex_unlock(&ctx->lock);

	net_workers_stop(w, 1000);
	assert_int_equal(thread_count(), threads_before);
	assert_int_equal(ctx->deinits, n);
	assert_false(ctx->deinit_wrong_thread);
	/* listeners are closed: the port is free again */
	fd = net_listen(&bound, 0, 0, err, sizeof(err));
	if (fd < 0)
		fail_msg("%s", err);
	close(fd);
	net_workers_stop(w, 0); /* twice is fine */
	net_workers_free(&w);
	assert_null(w);
	net_workers_free(&w);
	test_ctx_free(ctx);
}

struct order_item {
	struct test_ctx *ctx;
	unsigned int seq;
};

static void record_run(struct net_worker *worker, void *context)
{
	struct test_ctx *ctx = context;
	sigset_t mask;

	pthread_sigmask(SIG_BLOCK, NULL, &mask);
	pthread_mutex_lock(&ctx->lock);
	ctx->ran_mask |= 1u << net_worker_id(worker);
	if (net_worker_current() != worker ||
	    pthread_equal(pthread_self(), ctx->main_thread))
		ctx->ran_wrong_thread = true;
	if (sigismember(&mask, SIGHUP) == 1 && sigismember(&mask, SIGTERM) == 1)
		ctx->hup_blocked_in_worker = true;
	pthread_mutex_unlock(&ctx->lock);
	waiter_bump(&ctx->ran);
}

static void record_order(struct net_worker *worker, void *context)
{
	struct order_item *item = context;
	struct test_ctx *ctx = item->ctx;

	(void)worker;
	pthread_mutex_lock(&ctx->lock);
	if (ctx->order_count < 128)
		ctx->order[ctx->order_count++] = item->seq;
	pthread_mutex_unlock(&ctx->lock);
	waiter_bump(&ctx->ran);
}

static void test_workers_run(void **state)
{
	struct test_ctx *ctx = test_ctx_new();
	struct order_item items[100];
	char err[NET_ERROR_MAX];
	struct net_workers *w;
	const unsigned int n = 4;

	(void)state;
	w = workers_new(ctx, n, NULL);
	/* queued before start: runs once the loop runs */
	assert_int_equal(net_worker_run(net_workers_get(w, 0), record_run, ctx),
			 0);
	if (net_workers_start(w, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	assert_int_equal(waiter_wait(&ctx->ran, 1, 2000), 1);

	ctx->ran_mask = 0;
	assert_int_equal(net_workers_run_all_wait(w, record_run, ctx), n);
	assert_int_equal(ctx->ran_mask, (1u << n) - 1);
	assert_false(ctx->ran_wrong_thread);
	assert_true(ctx->hup_blocked_in_worker);

	ctx->ran_mask = 0;
	assert_int_equal(net_workers_run_all(w, record_run, ctx), n);
	assert_int_equal(waiter_wait(&ctx->ran, 1 + 2 * n, 2000), 1 + 2 * n);
	pthread_mutex_lock(&ctx->lock);
	assert_int_equal(ctx->ran_mask, (1u << n) - 1);
	pthread_mutex_unlock(&ctx->lock);

	/* FIFO on one worker */
	for (unsigned int i = 0; i < 100; i++) {
		items[i].ctx = ctx;
		items[i].seq = i;
		assert_int_equal(net_worker_run(net_workers_get(w, 2),
						record_order, &items[i]),
				 0);
	}
	assert_int_equal(waiter_wait(&ctx->ran, 1 + 2 * n + 100, 2000),
			 1 + 2 * n + 100);
	assert_int_equal(ctx->order_count, 100);
	for (unsigned int i = 0; i < 100; i++)
		assert_int_equal(ctx->order[i], i);

	net_workers_stop(w, 0);
	/* after the stop nothing runs */
	assert_int_equal(net_worker_run(net_workers_get(w, 0), record_run, ctx),
			 -1);
	assert_int_equal(net_workers_run_all(w, record_run, ctx), 0);
	assert_int_equal(net_workers_run_all_wait(w, record_run, ctx), 0);
	net_workers_free(&w);
	test_ctx_free(ctx);
}

static void drained_by_timer(void *context)
{
	struct net_worker *worker = context;
	struct net_timer *t = net_worker_get_data(worker);

	/* worker data holds the timer here; the worker_data is parked */
	net_timer_free(&t);
	net_worker_set_data(worker, NULL);
	net_worker_drained(worker);
}

static void on_stopping(struct net_worker *worker, void *context)
{
	struct test_ctx *ctx = context;
	struct worker_data *data = net_worker_get_data(worker);
	int fd, ret;

	pthread_mutex_lock(&ctx->lock);
	ctx->stopping_calls++;
	pthread_mutex_unlock(&ctx->lock);
	/* every worker has closed its listener by now */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	ret = connect(fd, &ctx->listen_addr.u.sa, ctx->listen_addr.len);
	if (ret == -1 && errno == ECONNREFUSED) {
		pthread_mutex_lock(&ctx->lock);
		ctx->refused_in_stopping = true;
		pthread_mutex_unlock(&ctx->lock);
	}
	close(fd);

	switch (ctx->stop_mode) {
	case 0: /* never drained: the grace timer ends the loop */
		break;
	case 1:
		net_worker_drained(worker);
		break;
	case 2: {
		struct net_timer *t = net_timer_new(net_worker_base(worker),
						    drained_by_timer, worker);
		free(data);
		net_worker_set_data(worker, t);
		net_timer_start(t, 50, false);
		break;
	}
	default:
		fail();
	}
}

static void stop_deinit(struct net_worker *worker, void *context)
{
	(void)context;
	/* mode 0 may leave the worker_data; mode 2 leaves nothing */
	free(net_worker_get_data(worker));
	net_worker_set_data(worker, NULL);
}

static uint64_t run_stop(int mode, unsigned int grace_msecs, bool *refused_r)
{
	struct test_ctx *ctx = test_ctx_new();
	struct net_addr addr = parse_ok("127.0.0.1:0", NET_ADDR_PORT_ZERO);
	struct net_workers_settings set = {0};
	unsigned int threads_before = thread_count();
	char err[NET_ERROR_MAX];
	struct net_workers *w;
	uint64_t start, elapsed;

	set.count = 2;
	set.init = worker_init;
	set.deinit = stop_deinit;
	set.stopping = on_stopping;
	set.context = ctx;
	w = net_workers_new(&set, err, sizeof(err));
	assert_non_null(w);
	ctx->stop_mode = mode;
	assert_int_equal(net_workers_add_listener(w, &addr, on_accept, ctx,
						  &ctx->listen_addr, err,
						  sizeof(err)),
			 0);
	assert_int_equal(net_workers_start(w, err, sizeof(err)), 0);
	start = net_monotonic_msecs();
	net_workers_stop(w, grace_msecs);
	elapsed = net_monotonic_msecs() - start;
	assert_int_equal(thread_count(), threads_before);
	assert_int_equal(ctx->stopping_calls, 2);
	*refused_r = ctx->refused_in_stopping;
	net_workers_free(&w);
	test_ctx_free(ctx);
	return elapsed;
}

static void test_workers_stop(void **state)
{
	uint64_t elapsed;
	bool refused;

	(void)state;
	/* nobody says drained: the grace period ends it */
	elapsed = run_stop(0, 300, &refused);
	assert_true(elapsed >= 290);
	assert_true(elapsed < 3000);
	assert_true(refused);
	/* drained in the stopping hook: no waiting */
	elapsed = run_stop(1, 5000, &refused);
	assert_true(elapsed < 1000);
	assert_true(refused);
	/* drained later by a timer on the worker */
	elapsed = run_stop(2, 5000, &refused);
	assert_true(elapsed >= 45);
	assert_true(elapsed < 2000);

	/* never started: stop and free just clean up */
	{
		struct test_ctx *ctx = test_ctx_new();
		struct net_addr addr =
		    parse_ok("127.0.0.1:0", NET_ADDR_PORT_ZERO);
		struct net_workers *w = workers_new(ctx, 2, NULL);
		char err[NET_ERROR_MAX];

		assert_int_equal(net_workers_add_listener(w, &addr, on_accept,
							  ctx, NULL, err,
							  sizeof(err)),
				 0);
		net_workers_stop(w, 100);
		net_workers_free(&w);
		assert_int_equal(ctx->inits, 0);
		test_ctx_free(ctx);
	}
}

static void test_workers_add_listener_error(void **state)
{
	struct test_ctx *ctx = test_ctx_new();
	struct net_addr addr = parse_ok("192.0.2.1:143", 0);
	char err[NET_ERROR_MAX];
	struct net_workers *w = workers_new(ctx, 2, NULL);

	(void)state;
	assert_int_equal(net_workers_add_listener(w, &addr, on_accept, ctx,
						  NULL, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "bind(192.0.2.1:143) failed: Cannot assign "
				 "requested address");
	assert_int_equal(net_workers_start(w, err, sizeof(err)), 0);
	addr = parse_ok("127.0.0.1:0", NET_ADDR_PORT_ZERO);
	assert_int_equal(net_workers_add_listener(w, &addr, on_accept, ctx,
						  NULL, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "before the workers start"));
	net_workers_free(&w);
	assert_int_equal(ctx->deinits, 2);
	test_ctx_free(ctx);
}

/* accept() failing with EMFILE: the worker logs, pauses, and takes the
 * connection once descriptors are available again. */
static void test_workers_emfile(void **state)
{
	struct test_ctx *ctx = test_ctx_new();
	struct net_addr addr = parse_ok("127.0.0.1:0", NET_ADDR_PORT_ZERO);
	struct net_addr bound;
	char err[NET_ERROR_MAX];
	struct net_workers *w;
	struct rlimit old, low;
	int cfd, probe;

	(void)state;
	w = workers_new(ctx, 1, NULL);
	assert_int_equal(net_workers_add_listener(w, &addr, on_accept, ctx,
						  &bound, err, sizeof(err)),
			 0);
	assert_int_equal(net_workers_start(w, err, sizeof(err)), 0);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(cfd >= 0);

	/* the lowest free descriptor becomes the limit: no new fds */
	probe = dup(0);
	assert_true(probe >= 0);
	close(probe);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)probe;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_int_equal(connect(cfd, &bound.u.sa, bound.len), 0);
	/* give it time to retry a few times: it must log, not spin */
	unsigned int logs = waiter_wait(&ctx->logged, 1, 3000);
	usleep(300 * 1000);
	pthread_mutex_lock(&ctx->lock);
	unsigned int accepted_while_low = ctx->record_count;
	pthread_mutex_unlock(&ctx->lock);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_int_equal(logs, 1);
	assert_int_equal(accepted_while_low, 0);
	/* at most one message per second despite several pauses */
	assert_int_equal(waiter_wait(&ctx->logged, 2, 0), 1);
	pthread_mutex_lock(&ctx->lock);
	assert_non_null(strstr(ctx->last_log, "accept(127.0.0.1:"));
	assert_non_null(strstr(ctx->last_log, "Too many open files"));
	assert_non_null(strstr(ctx->last_log, "not accepting for 50 ms"));
	pthread_mutex_unlock(&ctx->lock);

	/* after the pause the queued connection is accepted */
	assert_int_equal(waiter_wait(&ctx->accepted, 1, 3000), 1);
	close(cfd);
	net_workers_stop(w, 0);
	net_workers_free(&w);
	test_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addr_parse_good),
	    cmocka_unit_test(test_addr_parse_bad),
	    cmocka_unit_test(test_addr_format_compare),
	    cmocka_unit_test(test_listen_reuseport),
	    cmocka_unit_test(test_listen_errors),
	    cmocka_unit_test(test_connect_source),
	    cmocka_unit_test(test_connect_bufferevent),
	    cmocka_unit_test(test_timers),
	    cmocka_unit_test(test_signals),
	    cmocka_unit_test(test_workers_accept),
	    cmocka_unit_test(test_workers_run),
	    cmocka_unit_test(test_workers_stop),
	    cmocka_unit_test(test_workers_add_listener_error),
	    cmocka_unit_test(test_workers_emfile),
	};

	if (net_init() < 0) {
		fprintf(stderr, "net_init() failed\n");
		return 1;
	}
	return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
