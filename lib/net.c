#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "str.h"
#include "xmalloc.h"

#define NET_ACCEPT_BATCH 64
#define NET_ACCEPT_PAUSE_MSECS_DEFAULT 100
#define NET_ACCEPT_LOG_INTERVAL_MSECS 1000
#define NET_WORKERS_MAX 1024

/* ---- small helpers ------------------------------------------------------- */

static void set_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Error texts are cut short rather than lost when err is too small. */
static void set_err(char *err, size_t errsize, const char *fmt, ...)
{
	va_list args;

	if (err == NULL || errsize == 0)
		return;
	va_start(args, fmt);
	if (vsnprintf(err, errsize, fmt, args) < 0)
		err[0] = '\0';
	va_end(args);
}

static void fatal_oom(const char *what)
{
	fprintf(stderr, "net: %s failed: out of memory\n", what);
	abort();
}

static struct timeval msecs_to_tv(unsigned int msecs)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(msecs / 1000);
	tv.tv_usec = (suseconds_t)((msecs % 1000) * 1000);
	return tv;
}

uint64_t net_monotonic_msecs(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- init ---------------------------------------------------------------- */

static pthread_once_t net_once = PTHREAD_ONCE_INIT;
static int net_init_result = -1;

static void net_init_once(void)
{
	net_init_result = evthread_use_pthreads() == 0 ? 0 : -1;
}

int net_init(void)
{
	if (pthread_once(&net_once, net_init_once) != 0)
		return -1;
	return net_init_result;
}

/* ---- addresses ----------------------------------------------------------- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool str_all_digits(struct str s)
{
	for (size_t i = 0; i < s.len; i++) {
		if (!is_digit(s.p[i]))
			return false;
	}
	return s.len > 0;
}

/* The most useful complaint about a host that is no IPv4 address. */
static const char *ipv4_error(struct str host)
{
	bool letters = false;

	if (host.len == 0)
		return "missing address";
	for (size_t i = 0; i < host.len; i++) {
		char c = host.p[i];
		if (is_alpha(c))
			letters = true;
		else if (!is_digit(c) && c != '.' && c != '-')
			return "invalid address";
	}
	if (letters)
		return "host names are not resolved here: use a numeric IP "
		       "address";
	return "invalid IPv4 address";
}

static int parse_ipv4(struct str host, struct net_addr *addr,
		      const char **error_r)
{
	char buf[INET_ADDRSTRLEN];

	if (!str_copy(host, buf, sizeof(buf)) ||
	    inet_pton(AF_INET, buf, &addr->u.sin.sin_addr) != 1) {
		*error_r = ipv4_error(host);
		return -1;
	}
	addr->u.sin.sin_family = AF_INET;
	addr->len = sizeof(addr->u.sin);
	return 0;
}

static int parse_ipv6(struct str host, struct net_addr *addr,
		      const char **error_r)
{
	char buf[INET6_ADDRSTRLEN];
	struct str ip, scope;
	bool has_scope = str_split(host, '%', &ip, &scope);

	if (ip.len == 0) {
		*error_r = "missing address";
		return -1;
	}
	if (!str_copy(ip, buf, sizeof(buf)) ||
	    inet_pton(AF_INET6, buf, &addr->u.sin6.sin6_addr) != 1) {
		*error_r = "invalid IPv6 address";
		return -1;
	}
	if (has_scope) {
		char ifname[IF_NAMESIZE];
		uint64_t idx;

		if (str_all_digits(scope)) {
			if (!str_to_u64(scope, UINT32_MAX, &idx) || idx == 0) {
				*error_r = "invalid IPv6 scope id";
				return -1;
			}
		} else {
			if (!str_copy(scope, ifname, sizeof(ifname)) ||
			    scope.len == 0) {
				*error_r = "invalid IPv6 scope id";
				return -1;
			}
			idx = if_nametoindex(ifname);
			if (idx == 0) {
				*error_r = "unknown interface in IPv6 scope";
				return -1;
			}
		}
		addr->u.sin6.sin6_scope_id = (uint32_t)idx;
	}
	addr->u.sin6.sin6_family = AF_INET6;
	addr->len = sizeof(addr->u.sin6);
	return 0;
}

int net_addr_parse(const char *text, unsigned int flags,
		   struct net_addr *addr_r, const char **error_r)
{
	struct str s = str_cstr(text), host, port = STR_NULL;
	bool have_port = false, v6 = false;
	uint64_t portnum = 0;

	memset(addr_r, 0, sizeof(*addr_r));
	if (s.len == 0) {
		*error_r = "empty address";
		return -1;
	}
	if (s.p[0] == '[') {
		ptrdiff_t end = str_index(s, ']');
		struct str rest;

		if (end < 0) {
			*error_r = "missing ']' after IPv6 address";
			return -1;
		}
		host = str_slice(s, 1, (size_t)end - 1);
		rest = str_slice(s, (size_t)end + 1, s.len);
		if (rest.len > 0) {
			if (rest.p[0] != ':') {
				*error_r = "unexpected text after ']'";
				return -1;
			}
			port = str_slice(rest, 1, rest.len);
			have_port = true;
		}
		v6 = true;
	} else {
		size_t colons = 0;

		for (size_t i = 0; i < s.len; i++)
			colons += s.p[i] == ':';
		if (colons == 0) {
			host = s;
		} else if (colons == 1) {
			(void)str_split(s, ':', &host, &port);
			have_port = true;
		} else if ((flags & NET_ADDR_PORT_OPTIONAL) != 0) {
			host = s;
			v6 = true;
		} else {
			*error_r = "an IPv6 address with a port must be in "
				   "brackets: [addr]:port";
			return -1;
		}
	}

	if (!have_port && (flags & NET_ADDR_PORT_OPTIONAL) == 0) {
		if (!v6 && str_all_digits(host))
			*error_r = "missing address before the port (use "
				   "*:port or [::]:port)";
		else
			*error_r = "missing port";
		return -1;
	}
	if (v6) {
		if (parse_ipv6(host, addr_r, error_r) < 0)
			return -1;
	} else if (str_eq(host, STR("*"))) {
		addr_r->u.sin.sin_family = AF_INET;
		addr_r->u.sin.sin_addr.s_addr = htonl(INADDR_ANY);
		addr_r->len = sizeof(addr_r->u.sin);
	} else if (parse_ipv4(host, addr_r, error_r) < 0) {
		return -1;
	}
	if (have_port) {
		if (port.len == 0) {
			*error_r = "missing port";
			goto fail;
		}
		if (!str_to_u64(port, 65535, &portnum)) {
			*error_r = "invalid port (must be 1-65535)";
			goto fail;
		}
		if (portnum == 0 && (flags & NET_ADDR_PORT_ZERO) == 0) {
			*error_r = "port 0 is not allowed here";
			goto fail;
		}
	}
	net_addr_normalize(addr_r);
	net_addr_set_port(addr_r, (uint16_t)portnum);
	return 0;
fail:
	memset(addr_r, 0, sizeof(*addr_r));
	return -1;
}

int net_addr_from_sockaddr(struct net_addr *addr, const struct sockaddr *sa,
			   socklen_t len)
{
	memset(addr, 0, sizeof(*addr));
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		memcpy(&addr->u.sin, sa, sizeof(addr->u.sin));
		addr->len = sizeof(addr->u.sin);
	} else if (sa->sa_family == AF_INET6 &&
		   len >= sizeof(struct sockaddr_in6)) {
		memcpy(&addr->u.sin6, sa, sizeof(addr->u.sin6));
		addr->len = sizeof(addr->u.sin6);
	} else {
		return -1;
	}
	net_addr_normalize(addr);
	return 0;
}

void net_addr_normalize(struct net_addr *addr)
{
	struct sockaddr_in sin;

	if (addr->u.sa.sa_family != AF_INET6 ||
	    !IN6_IS_ADDR_V4MAPPED(&addr->u.sin6.sin6_addr))
		return;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = addr->u.sin6.sin6_port;
	memcpy(&sin.sin_addr, &addr->u.sin6.sin6_addr.s6_addr[12], 4);
	memset(&addr->u, 0, sizeof(addr->u));
	addr->u.sin = sin;
	addr->len = sizeof(sin);
}

uint16_t net_addr_port(const struct net_addr *addr)
{
	switch (addr->u.sa.sa_family) {
	case AF_INET:
		return ntohs(addr->u.sin.sin_port);
	case AF_INET6:
		return ntohs(addr->u.sin6.sin6_port);
	default:
		return 0;
	}
}

void net_addr_set_port(struct net_addr *addr, uint16_t port)
{
	if (addr->u.sa.sa_family == AF_INET)
		addr->u.sin.sin_port = htons(port);
	else if (addr->u.sa.sa_family == AF_INET6)
		addr->u.sin6.sin6_port = htons(port);
}

bool net_addr_is_any(const struct net_addr *addr)
{
	if (addr->u.sa.sa_family == AF_INET)
		return addr->u.sin.sin_addr.s_addr == htonl(INADDR_ANY);
	if (addr->u.sa.sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&addr->u.sin6.sin6_addr);
	return false;
}

bool net_addr_ip_eq(const struct net_addr *a, const struct net_addr *b)
{
	struct net_addr na = *a, nb = *b;

	net_addr_normalize(&na);
	net_addr_normalize(&nb);
	if (na.u.sa.sa_family != nb.u.sa.sa_family)
		return false;
	switch (na.u.sa.sa_family) {
	case AF_INET:
		return na.u.sin.sin_addr.s_addr == nb.u.sin.sin_addr.s_addr;
	case AF_INET6:
		return memcmp(&na.u.sin6.sin6_addr, &nb.u.sin6.sin6_addr,
			      sizeof(na.u.sin6.sin6_addr)) == 0 &&
		       na.u.sin6.sin6_scope_id == nb.u.sin6.sin6_scope_id;
	default:
		return na.u.sa.sa_family == AF_UNSPEC;
	}
}

bool net_addr_eq(const struct net_addr *a, const struct net_addr *b)
{
	return net_addr_ip_eq(a, b) && net_addr_port(a) == net_addr_port(b);
}

const char *net_addr_ip_str(const struct net_addr *addr, char *dst,
			    size_t dstsize)
{
	struct net_addr a = *addr;
	char ip[INET6_ADDRSTRLEN];
	int ret;

	net_addr_normalize(&a);
	switch (a.u.sa.sa_family) {
	case AF_INET:
		if (inet_ntop(AF_INET, &a.u.sin.sin_addr, ip, sizeof(ip)) ==
		    NULL)
			ret = -1;
		else
			ret = str_printf(dst, dstsize, "%s", ip);
		break;
	case AF_INET6:
		if (inet_ntop(AF_INET6, &a.u.sin6.sin6_addr, ip, sizeof(ip)) ==
		    NULL) {
			ret = -1;
		} else if (a.u.sin6.sin6_scope_id != 0) {
			char ifname[IF_NAMESIZE];

			if (if_indextoname(a.u.sin6.sin6_scope_id, ifname) !=
			    NULL)
				ret = str_printf(dst, dstsize, "%s%%%s", ip,
						 ifname);
			else
				ret = str_printf(dst, dstsize, "%s%%%u", ip,
						 a.u.sin6.sin6_scope_id);
		} else {
			ret = str_printf(dst, dstsize, "%s", ip);
		}
		break;
	case AF_UNSPEC:
		ret = str_printf(dst, dstsize, "(none)");
		break;
	default:
		ret = str_printf(dst, dstsize, "(family %d)",
				 (int)a.u.sa.sa_family);
		break;
	}
	if (ret < 0 && dstsize > 0)
		dst[0] = '\0';
	return dst;
}

const char *net_addr_str(const struct net_addr *addr, char *dst, size_t dstsize)
{
	char ip[NET_ADDR_STR_MAX];
	struct net_addr a = *addr;
	int ret;

	net_addr_normalize(&a);
	net_addr_ip_str(&a, ip, sizeof(ip));
	if (a.u.sa.sa_family == AF_INET6)
		ret = str_printf(dst, dstsize, "[%s]:%u", ip,
				 (unsigned int)net_addr_port(&a));
	else if (a.u.sa.sa_family == AF_INET)
		ret = str_printf(dst, dstsize, "%s:%u", ip,
				 (unsigned int)net_addr_port(&a));
	else
		ret = str_printf(dst, dstsize, "%s", ip);
	if (ret < 0 && dstsize > 0)
		dst[0] = '\0';
	return dst;
}

int net_get_local_addr(int fd, struct net_addr *addr_r)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(addr_r, 0, sizeof(*addr_r));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return -1;
	if (net_addr_from_sockaddr(addr_r, (const struct sockaddr *)&ss, len) <
	    0) {
		errno = EAFNOSUPPORT;
		return -1;
	}
	return 0;
}

int net_get_peer_addr(int fd, struct net_addr *addr_r)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(addr_r, 0, sizeof(*addr_r));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == -1)
		return -1;
	if (net_addr_from_sockaddr(addr_r, (const struct sockaddr *)&ss, len) <
	    0) {
		errno = EAFNOSUPPORT;
		return -1;
	}
	return 0;
}

/* ---- sockets ------------------------------------------------------------- */

static int setsockopt_int(int fd, int level, int name, int value)
{
	return setsockopt(fd, level, name, &value, sizeof(value));
}

static bool addr_family_ok(const struct net_addr *addr)
{
	return (addr->u.sa.sa_family == AF_INET &&
		addr->len == sizeof(struct sockaddr_in)) ||
	       (addr->u.sa.sa_family == AF_INET6 &&
		addr->len == sizeof(struct sockaddr_in6));
}

int net_listen(const struct net_addr *addr, int backlog, unsigned int flags,
	       char *err, size_t errsize)
{
	char astr[NET_ADDR_STR_MAX];
	int fd;

	net_addr_str(addr, astr, sizeof(astr));
	if (!addr_family_ok(addr)) {
		set_err(err, errsize, "listen(%s) failed: not an IP address",
			astr);
		return -1;
	}
	if (backlog <= 0)
		backlog = NET_LISTEN_BACKLOG_DEFAULT;
	fd = socket(addr->u.sa.sa_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd == -1) {
		set_err(err, errsize, "socket(%s) failed: %s", astr,
			strerror(errno));
		return -1;
	}
	if (setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1) == -1) {
		set_err(err, errsize, "setsockopt(%s, SO_REUSEADDR) failed: %s",
			astr, strerror(errno));
		goto fail;
	}
	if ((flags & NET_LISTEN_REUSEPORT) != 0 &&
	    setsockopt_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) == -1) {
		set_err(err, errsize, "setsockopt(%s, SO_REUSEPORT) failed: %s",
			astr, strerror(errno));
		goto fail;
	}
	if (addr->u.sa.sa_family == AF_INET6 &&
	    setsockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1) == -1) {
		set_err(err, errsize, "setsockopt(%s, IPV6_V6ONLY) failed: %s",
			astr, strerror(errno));
		goto fail;
	}
	if (bind(fd, &addr->u.sa, addr->len) == -1) {
		set_err(err, errsize, "bind(%s) failed: %s", astr,
			strerror(errno));
		goto fail;
	}
	if (listen(fd, backlog) == -1) {
		set_err(err, errsize, "listen(%s) failed: %s", astr,
			strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

int net_connect(const struct net_addr *dest, const struct net_addr *source,
		char *err, size_t errsize)
{
	char dstr[NET_ADDR_STR_MAX], sstr[NET_ADDR_STR_MAX];
	int fd;

	net_addr_str(dest, dstr, sizeof(dstr));
	if (!addr_family_ok(dest)) {
		set_err(err, errsize, "connect(%s) failed: not an IP address",
			dstr);
		return -1;
	}
	if (source != NULL) {
		net_addr_str(source, sstr, sizeof(sstr));
		if (source->u.sa.sa_family != dest->u.sa.sa_family ||
		    !addr_family_ok(source)) {
			set_err(err, errsize,
				"connect(%s) failed: source address %s is "
				"of another family",
				dstr, sstr);
			return -1;
		}
	}
	fd = socket(dest->u.sa.sa_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd == -1) {
		set_err(err, errsize, "socket(%s) failed: %s", dstr,
			strerror(errno));
		return -1;
	}
	if (source != NULL) {
		/* Defer the port choice to connect(): the kernel can then reuse
		 * a source port towards different destinations. Old kernels
		 * without it still work, with the classic port choice. */
		if (net_addr_port(source) == 0 &&
		    setsockopt_int(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT,
				   1) == -1 &&
		    errno != ENOPROTOOPT) {
			set_err(err, errsize,
				"setsockopt(%s, IP_BIND_ADDRESS_NO_PORT) "
				"failed: %s",
				sstr, strerror(errno));
			goto fail;
		}
		if (bind(fd, &source->u.sa, source->len) == -1) {
			set_err(err, errsize,
				"bind(%s) for connect(%s) failed: %s", sstr,
				dstr, strerror(errno));
			goto fail;
		}
	}
	/* EINTR: the connect goes on asynchronously, as with EINPROGRESS. */
	if (connect(fd, &dest->u.sa, dest->len) == -1 && errno != EINPROGRESS &&
	    errno != EINTR) {
		set_err(err, errsize, "connect(%s) failed: %s", dstr,
			strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

int net_connect_result(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(int);
	int soerr = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
		return -1;
	if (soerr != 0) {
		errno = soerr;
		return -1;
	}
	len = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
		return 1;
	return errno == ENOTCONN ? 0 : -1;
}

int net_set_nodelay(int fd, bool on)
{
	return setsockopt_int(fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
}

int net_set_keepalive(int fd, unsigned int idle_secs,
		      unsigned int interval_secs, unsigned int count)
{
	if (idle_secs > INT32_MAX || interval_secs > INT32_MAX ||
	    count > INT32_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1) == -1)
		return -1;
	if (idle_secs != 0 &&
	    setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, (int)idle_secs) == -1)
		return -1;
	if (interval_secs != 0 && setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL,
						 (int)interval_secs) == -1)
		return -1;
	if (count != 0 &&
	    setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT, (int)count) == -1)
		return -1;
	return 0;
}

/* ---- timers -------------------------------------------------------------- */

struct net_timer {
	struct event *ev; /* always EV_PERSIST; one-shots delete themselves */
	net_timer_fn *cb;
	void *context;
	bool repeat;
};

static void net_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct net_timer *t = arg;

	(void)fd;
	(void)what;
	if (!t->repeat)
		event_del(t->ev);
	/* t may be freed by the callback: touch nothing after it. */
	t->cb(t->context);
}

struct net_timer *net_timer_new(struct event_base *base, net_timer_fn *cb,
				void *context)
{
	struct net_timer *t = xcalloc(1, sizeof(*t));

	t->cb = cb;
	t->context = context;
	t->ev = event_new(base, -1, EV_PERSIST, net_timer_cb, t);
	if (t->ev == NULL)
		fatal_oom("event_new()");
	return t;
}

void net_timer_start(struct net_timer *t, unsigned int msecs, bool repeat)
{
	struct timeval tv = msecs_to_tv(msecs);

	t->repeat = repeat;
	/* event_add() on a pending timer moves its deadline. */
	if (event_add(t->ev, &tv) == -1)
		fatal_oom("event_add(timer)");
}

void net_timer_stop(struct net_timer *t)
{
	event_del(t->ev);
}

bool net_timer_pending(const struct net_timer *t)
{
	return event_pending(t->ev, EV_TIMEOUT, NULL) != 0;
}

void net_timer_free(struct net_timer **tp)
{
	struct net_timer *t = *tp;

	if (t == NULL)
		return;
	*tp = NULL;
	event_free(t->ev);
	free(t);
}

/* ---- signals ------------------------------------------------------------- */

static const int net_handled_signals[] = {SIGHUP, SIGTERM, SIGINT};
#define NET_HANDLED_SIGNAL_COUNT                                               \
	(sizeof(net_handled_signals) / sizeof(net_handled_signals[0]))

struct net_signals {
	struct event *ev[NET_HANDLED_SIGNAL_COUNT];
	net_signal_fn *reload;
	net_signal_fn *shutdown;
	void *context;
};

int net_ignore_sigpipe(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGPIPE, &sa, NULL);
}

static void net_signal_cb(evutil_socket_t signo, short what, void *arg)
{
	const struct net_signals *sig = arg;

	(void)what;
	if (signo == SIGHUP) {
		if (sig->reload != NULL)
			sig->reload((int)signo, sig->context);
	} else if (sig->shutdown != NULL) {
		sig->shutdown((int)signo, sig->context);
	}
}

struct net_signals *net_signals_new(struct event_base *base,
				    net_signal_fn *reload,
				    net_signal_fn *shutdown, void *context,
				    char *err, size_t errsize)
{
	struct net_signals *sig;

	if (net_ignore_sigpipe() == -1) {
		set_err(err, errsize, "cannot ignore SIGPIPE: %s",
			strerror(errno));
		return NULL;
	}
	sig = xcalloc(1, sizeof(*sig));
	sig->reload = reload;
	sig->shutdown = shutdown;
	sig->context = context;
	for (size_t i = 0; i < NET_HANDLED_SIGNAL_COUNT; i++) {
		int signo = net_handled_signals[i];

		sig->ev[i] = evsignal_new(base, signo, net_signal_cb, sig);
		if (sig->ev[i] == NULL ||
		    evsignal_add(sig->ev[i], NULL) == -1) {
			set_err(err, errsize, "cannot handle signal %s",
				strsignal(signo));
			net_signals_free(&sig);
			return NULL;
		}
	}
	return sig;
}

void net_signals_free(struct net_signals **sigp)
{
	struct net_signals *sig = *sigp;

	if (sig == NULL)
		return;
	*sigp = NULL;
	for (size_t i = 0; i < NET_HANDLED_SIGNAL_COUNT; i++) {
		if (sig->ev[i] != NULL)
			event_free(sig->ev[i]);
	}
	free(sig);
}

/* ---- worker threads ------------------------------------------------------ */

/* Waited on by net_workers_run_all_wait(); lives on the waiter's stack. */
struct run_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int pending;
	unsigned int ran;
};

/* A queued call for a worker's thread. */
struct net_post {
	struct net_post *next;
	net_worker_fn *fn;
	void *context;
	struct run_wait *wait; /* NULL for fire-and-forget */
};

struct listener_def {
	struct net_addr addr; /* as bound (port 0 resolved) */
	net_accept_fn *cb;
	void *context;
};

/* One worker's socket of one listener. */
struct worker_listener {
	struct net_worker *worker;
	const struct listener_def *def;
	int fd;
	struct event *ev;       /* EV_READ | EV_PERSIST on fd */
	struct event *pause_ev; /* re-enables ev after a resource error */
	uint64_t last_log_msecs;
	unsigned int suppressed_logs;
};

struct net_worker {
	struct net_workers *workers;
	unsigned int id;
	pthread_t thread;
	bool thread_started;
	struct event_base *base;

	/* cross-thread calls: post_lock protects the list and closed flag;
	 * event_active(post_ev) is only called with post_lock held, so it
	 * never races with the worker closing down. */
	pthread_mutex_t post_lock;
	struct event *post_ev;
	struct net_post *post_head;
	struct net_post **post_tail;
	bool post_closed;

	struct worker_listener *listeners;
	size_t listener_count;

	struct event *grace_ev;
	bool draining; /* stopping hook has run (or is running) */
	bool exiting;  /* loopbreak requested */
	void *data;
};

struct net_workers {
	struct net_workers_settings set;
	unsigned int count;
	struct net_worker *workers;
	struct listener_def **defs;
	size_t def_count;
	unsigned int grace_msecs;
	bool started;
	bool stopped;
};

static _Thread_local struct net_worker *net_current_worker;

static void workers_log(const struct net_workers *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void workers_log(const struct net_workers *w, const char *fmt, ...)
{
	char msg[512];
	va_list args;

	va_start(args, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, args) < 0)
		msg[0] = '\0';
	va_end(args);
	if (w->set.log != NULL)
		w->set.log(msg, w->set.context);
	else
		fprintf(stderr, "net: %s\n", msg);
}

static void post_done(struct net_post *post, bool ran)
{
	struct run_wait *wait = post->wait;

	free(post);
	if (wait == NULL)
		return;
	pthread_mutex_lock(&wait->lock);
	if (ran)
		wait->ran++;
	if (--wait->pending == 0)
		pthread_cond_signal(&wait->cond);
	pthread_mutex_unlock(&wait->lock);
}

static void worker_post_cb(evutil_socket_t fd, short what, void *arg)
{
	struct net_worker *worker = arg;
	struct net_post *post, *next;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&worker->post_lock);
	post = worker->post_head;
	worker->post_head = NULL;
	worker->post_tail = &worker->post_head;
	pthread_mutex_unlock(&worker->post_lock);
	for (; post != NULL; post = next) {
		next = post->next;
		post->fn(worker, post->context);
		post_done(post, true);
	}
}

static int worker_post(struct net_worker *worker, net_worker_fn *fn,
		       void *context, struct run_wait *wait)
{
	struct net_post *post = xcalloc(1, sizeof(*post));

	post->fn = fn;
	post->context = context;
	post->wait = wait;
	pthread_mutex_lock(&worker->post_lock);
	if (worker->post_closed) {
		pthread_mutex_unlock(&worker->post_lock);
		free(post);
		return -1;
	}
	*worker->post_tail = post;
	worker->post_tail = &post->next;
	event_active(worker->post_ev, EV_READ, 0);
	pthread_mutex_unlock(&worker->post_lock);
	return 0;
}

/* Refuses further calls and drops the queued ones (waiters are told). */
static void worker_posts_close(struct net_worker *worker)
{
	struct net_post *post, *next;

	pthread_mutex_lock(&worker->post_lock);
	worker->post_closed = true;
	post = worker->post_head;
	worker->post_head = NULL;
	worker->post_tail = &worker->post_head;
	pthread_mutex_unlock(&worker->post_lock);
	for (; post != NULL; post = next) {
		next = post->next;
		post_done(post, false);
	}
}

static void listener_close(struct worker_listener *l)
{
	if (l->ev != NULL)
		event_free(l->ev);
	if (l->pause_ev != NULL)
		event_free(l->pause_ev);
	l->ev = NULL;
	l->pause_ev = NULL;
	if (l->fd != -1)
		close(l->fd);
	l->fd = -1;
}

static void worker_close_listeners(struct net_worker *worker)
{
	for (size_t i = 0; i < worker->listener_count; i++)
		listener_close(&worker->listeners[i]);
}

static void listener_pause_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_listener *l = arg;

	(void)fd;
	(void)what;
	if (l->ev != NULL && event_add(l->ev, NULL) == -1)
		fatal_oom("event_add(listener)");
}

static bool accept_error_is_per_connection(int error)
{
	switch (error) {
	case ECONNABORTED:
	case EPROTO:
	case EPERM: /* refused by a firewall rule */
	case ENETDOWN:
	case ENOPROTOOPT:
	case EHOSTDOWN:
	case ENONET:
	case EHOSTUNREACH:
	case EOPNOTSUPP:
	case ENETUNREACH:
		return true;
	default:
		return false;
	}
}

/* Resource shortage (EMFILE, ENFILE, ENOBUFS, ENOMEM) or worse: stop
 * watching the socket for a while instead of spinning on a connection we
 * cannot take; it stays in the queue and is taken afterwards. */
static void listener_pause(struct worker_listener *l, int error)
{
	const struct net_workers *w = l->worker->workers;
	unsigned int msecs = w->set.accept_pause_msecs;
	uint64_t now = net_monotonic_msecs();
	struct timeval tv;

	if (msecs == 0)
		msecs = NET_ACCEPT_PAUSE_MSECS_DEFAULT;
	if (l->last_log_msecs == 0 ||
	    now - l->last_log_msecs >= NET_ACCEPT_LOG_INTERVAL_MSECS) {
		char astr[NET_ADDR_STR_MAX];

		net_addr_str(&l->def->addr, astr, sizeof(astr));
		workers_log(w,
			    "worker %u: accept(%s) failed: %s; not accepting "
			    "for %u ms (%u similar errors not logged)",
			    l->worker->id, astr, strerror(error), msecs,
			    l->suppressed_logs);
		l->last_log_msecs = now;
		l->suppressed_logs = 0;
	} else {
		l->suppressed_logs++;
	}
	event_del(l->ev);
	tv = msecs_to_tv(msecs);
	if (event_add(l->pause_ev, &tv) == -1)
		fatal_oom("event_add(pause)");
}

static void listener_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct worker_listener *l = arg;

	(void)what;
	for (unsigned int i = 0; i < NET_ACCEPT_BATCH; i++) {
		struct net_addr peer, local;
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd;

		fd = accept4(lfd, (struct sockaddr *)&ss, &len,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			int error = errno;

			if (error == EAGAIN || error == EWOULDBLOCK)
				return;
			if (error == EINTR ||
			    accept_error_is_per_connection(error))
				continue;
			listener_pause(l, error);
			return;
		}
		if (net_addr_from_sockaddr(&peer, (const struct sockaddr *)&ss,
					   len) < 0 ||
		    net_get_local_addr(fd, &local) == -1) {
			/* not TCP/IP or already gone: nothing to serve */
			close(fd);
			continue;
		}
		l->def->cb(l->worker, fd, &peer, &local, l->def->context);
	}
}

static void *worker_main(void *arg)
{
	struct net_worker *worker = arg;
	const struct net_workers_settings *set = &worker->workers->set;

	net_current_worker = worker;
	if (set->init != NULL)
		set->init(worker, set->context);
	if (event_base_loop(worker->base, EVLOOP_NO_EXIT_ON_EMPTY) == -1)
		workers_log(worker->workers, "worker %u: event loop failed",
			    worker->id);
	worker_close_listeners(worker);
	worker_posts_close(worker);
	if (worker->grace_ev != NULL) {
		event_free(worker->grace_ev);
		worker->grace_ev = NULL;
	}
	if (set->deinit != NULL)
		set->deinit(worker, set->context);
	net_current_worker = NULL;
	return NULL;
}

static void worker_exit(struct net_worker *worker)
{
	if (worker->exiting)
		return;
	worker->exiting = true;
	event_base_loopbreak(worker->base);
}

static void worker_grace_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	worker_exit(arg);
}

static void worker_stop_accepting_fn(struct net_worker *worker, void *context)
{
	(void)context;
	worker_close_listeners(worker);
}

static void worker_begin_drain_fn(struct net_worker *worker, void *context)
{
	const struct net_workers *w = worker->workers;
	struct timeval tv;

	(void)context;
	worker->draining = true;
	if (w->set.stopping == NULL) {
		worker_exit(worker);
		return;
	}
	w->set.stopping(worker, w->set.context);
	if (worker->exiting)
		return;
	worker->grace_ev = evtimer_new(worker->base, worker_grace_cb, worker);
	tv = msecs_to_tv(w->grace_msecs);
	if (worker->grace_ev == NULL ||
	    evtimer_add(worker->grace_ev, &tv) == -1)
		fatal_oom("grace timer");
}

struct net_workers *net_workers_new(const struct net_workers_settings *set,
				    char *err, size_t errsize)
{
	struct net_workers *w;
	unsigned int count = set->count;

	if (net_init() < 0) {
		set_err(err, errsize, "cannot enable libevent thread support");
		return NULL;
	}
	if (count == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		count = n < 1 ? 1 : (unsigned int)n;
	}
	if (count > NET_WORKERS_MAX) {
		set_err(err, errsize, "too many workers: %u (max %u)", count,
			NET_WORKERS_MAX);
		return NULL;
	}
	w = xcalloc(1, sizeof(*w));
	w->set = *set;
	w->count = count;
	w->workers = xcalloc(count, sizeof(*w->workers));
	for (unsigned int i = 0; i < count; i++) {
		struct net_worker *worker = &w->workers[i];

		worker->workers = w;
		worker->id = i;
		pthread_mutex_init(&worker->post_lock, NULL);
		worker->post_tail = &worker->post_head;
		worker->base = event_base_new();
		if (worker->base == NULL) {
			set_err(err, errsize, "event_base_new() failed");
			w->count = i + 1; /* free only what was set up */
			net_workers_free(&w);
			return NULL;
		}
		worker->post_ev =
		    event_new(worker->base, -1, 0, worker_post_cb, worker);
		if (worker->post_ev == NULL)
			fatal_oom("event_new()");
	}
	return w;
}

int net_workers_add_listener(struct net_workers *w, const struct net_addr *addr,
			     net_accept_fn *cb, void *context,
			     struct net_addr *bound_r, char *err,
			     size_t errsize)
{
	struct listener_def *def;
	int *fds;
	unsigned int i;

	if (w->started) {
		set_err(err, errsize,
			"listeners must be added before the workers start");
		return -1;
	}
	def = xcalloc(1, sizeof(*def));
	def->addr = *addr;
	def->cb = cb;
	def->context = context;
	fds = xcalloc(w->count, sizeof(*fds));
	for (i = 0; i < w->count; i++) {
		fds[i] = net_listen(&def->addr, w->set.backlog,
				    NET_LISTEN_REUSEPORT, err, errsize);
		if (fds[i] == -1)
			goto fail;
		if (i == 0 && net_addr_port(&def->addr) == 0) {
			struct net_addr bound;

			if (net_get_local_addr(fds[0], &bound) == -1) {
				set_err(err, errsize,
					"getsockname() failed: %s",
					strerror(errno));
				i++;
				goto fail;
			}
			net_addr_set_port(&def->addr, net_addr_port(&bound));
		}
	}
	w->defs = xreallocarray(w->defs, w->def_count + 1, sizeof(*w->defs));
	w->defs[w->def_count++] = def;
	for (i = 0; i < w->count; i++) {
		struct net_worker *worker = &w->workers[i];
		struct worker_listener *l;

		worker->listeners =
		    xreallocarray(worker->listeners, worker->listener_count + 1,
				  sizeof(*worker->listeners));
		l = &worker->listeners[worker->listener_count++];
		memset(l, 0, sizeof(*l));
		l->worker = worker;
		l->def = def;
		l->fd = fds[i];
	}
	free(fds);
	if (bound_r != NULL)
		*bound_r = def->addr;
	return 0;
fail:
	while (i-- > 0)
		close(fds[i]);
	free(fds);
	free(def);
	return -1;
}

int net_workers_start(struct net_workers *w, char *err, size_t errsize)
{
	static const int blocked[] = {SIGHUP,  SIGTERM, SIGINT,
				      SIGQUIT, SIGUSR1, SIGUSR2};
	sigset_t mask, old_mask;
	int ret = 0;

	if (w->started) {
		set_err(err, errsize, "workers already started");
		return -1;
	}
	if (net_ignore_sigpipe() == -1) {
		set_err(err, errsize, "cannot ignore SIGPIPE: %s",
			strerror(errno));
		return -1;
	}
	for (unsigned int i = 0; i < w->count; i++) {
		struct net_worker *worker = &w->workers[i];

		for (size_t j = 0; j < worker->listener_count; j++) {
			struct worker_listener *l = &worker->listeners[j];

			l->ev =
			    event_new(worker->base, l->fd, EV_READ | EV_PERSIST,
				      listener_accept_cb, l);
			l->pause_ev =
			    evtimer_new(worker->base, listener_pause_cb, l);
			if (l->ev == NULL || l->pause_ev == NULL ||
			    event_add(l->ev, NULL) == -1)
				fatal_oom("listener event");
		}
	}
	w->started = true;

	/* Threads inherit the mask: process signals go to the main thread. */
	sigemptyset(&mask);
	for (size_t i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++)
		sigaddset(&mask, blocked[i]);
	pthread_sigmask(SIG_BLOCK, &mask, &old_mask);
	for (unsigned int i = 0; i < w->count; i++) {
		struct net_worker *worker = &w->workers[i];
		char name[16];
		int error;

		error =
		    pthread_create(&worker->thread, NULL, worker_main, worker);
		if (error != 0) {
			set_err(err, errsize, "pthread_create() failed: %s",
				strerror(error));
			ret = -1;
			break;
		}
		worker->thread_started = true;
		if (str_printf(name, sizeof(name), "mr-worker-%u", i) > 0)
			(void)pthread_setname_np(worker->thread, name);
	}
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	if (ret < 0) {
		/* Workers without a thread would never answer the stop. */
		for (unsigned int i = 0; i < w->count; i++) {
			if (!w->workers[i].thread_started)
				worker_posts_close(&w->workers[i]);
		}
		net_workers_stop(w, 0);
	}
	return ret;
}

unsigned int net_workers_count(const struct net_workers *w)
{
	return w->count;
}

struct net_worker *net_workers_get(struct net_workers *w, unsigned int idx)
{
	if (idx >= w->count)
		return NULL;
	return &w->workers[idx];
}

int net_worker_run(struct net_worker *worker, net_worker_fn *fn, void *context)
{
	return worker_post(worker, fn, context, NULL);
}

unsigned int net_workers_run_all(struct net_workers *w, net_worker_fn *fn,
				 void *context)
{
	unsigned int accepted = 0;

	for (unsigned int i = 0; i < w->count; i++) {
		if (worker_post(&w->workers[i], fn, context, NULL) == 0)
			accepted++;
	}
	return accepted;
}

unsigned int net_workers_run_all_wait(struct net_workers *w, net_worker_fn *fn,
				      void *context)
{
	struct run_wait wait;
	unsigned int ran;

	if (net_current_worker != NULL) {
		fprintf(stderr, "net: net_workers_run_all_wait() called on "
				"a worker thread (deadlock)\n");
		abort();
	}
	pthread_mutex_init(&wait.lock, NULL);
	pthread_cond_init(&wait.cond, NULL);
	wait.pending = w->count;
	wait.ran = 0;
	for (unsigned int i = 0; i < w->count; i++) {
		if (worker_post(&w->workers[i], fn, context, &wait) < 0) {
			pthread_mutex_lock(&wait.lock);
			wait.pending--;
			pthread_mutex_unlock(&wait.lock);
		}
	}
	pthread_mutex_lock(&wait.lock);
	while (wait.pending > 0)
		pthread_cond_wait(&wait.cond, &wait.lock);
	ran = wait.ran;
	pthread_mutex_unlock(&wait.lock);
	pthread_cond_destroy(&wait.cond);
	pthread_mutex_destroy(&wait.lock);
	return ran;
}

void net_workers_stop(struct net_workers *w, unsigned int grace_msecs)
{
	if (!w->started || w->stopped)
		return;
	if (net_current_worker != NULL) {
		fprintf(stderr, "net: net_workers_stop() called on a worker "
				"thread (deadlock)\n");
		abort();
	}
	/* Stop accepting everywhere before anyone starts draining, so no
	 * new session lands on a worker that already drains. */
	(void)net_workers_run_all_wait(w, worker_stop_accepting_fn, NULL);
	/* Published to the workers by the post queue's mutex. */
	w->grace_msecs = grace_msecs;
	(void)net_workers_run_all(w, worker_begin_drain_fn, NULL);
	for (unsigned int i = 0; i < w->count; i++) {
		struct net_worker *worker = &w->workers[i];

		if (!worker->thread_started)
			continue;
		pthread_join(worker->thread, NULL);
		worker->thread_started = false;
	}
	w->stopped = true;
}

void net_workers_free(struct net_workers **wp)
{
	struct net_workers *w = *wp;

	if (w == NULL)
		return;
	*wp = NULL;
	net_workers_stop(w, 0);
	for (unsigned int i = 0; i < w->count; i++) {
		struct net_worker *worker = &w->workers[i];

		worker_close_listeners(worker);
		free(worker->listeners);
		worker_posts_close(worker);
		if (worker->post_ev != NULL)
			event_free(worker->post_ev);
		if (worker->base != NULL)
			event_base_free(worker->base);
		pthread_mutex_destroy(&worker->post_lock);
	}
	for (size_t i = 0; i < w->def_count; i++)
		free(w->defs[i]);
	free(w->defs);
	free(w->workers);
	free(w);
}

struct net_worker *net_worker_current(void)
{
	return net_current_worker;
}

struct event_base *net_worker_base(const struct net_worker *worker)
{
	return worker->base;
}

unsigned int net_worker_id(const struct net_worker *worker)
{
	return worker->id;
}

struct net_workers *net_worker_workers(const struct net_worker *worker)
{
	return worker->workers;
}

void *net_worker_get_data(const struct net_worker *worker)
{
	return worker->data;
}

void net_worker_set_data(struct net_worker *worker, void *data)
{
	worker->data = data;
}

void net_worker_drained(struct net_worker *worker)
{
	if (net_current_worker != worker) {
		fprintf(stderr, "net: net_worker_drained() called off the "
				"worker's thread\n");
		abort();
	}
	if (worker->draining)
		worker_exit(worker);
}
