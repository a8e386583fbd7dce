#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "net.h"
#include "ring/redis_client.h"

/*
 * ring/redis_client against a scripted fake server on loopback, in the
 * same event loop: the connect handshake (ROLE, SUBSCRIBE), a reply, a
 * command that gets no answer within the timeout (callback with NULL,
 * connection dropped, "disconnected" reported once), a master that says
 * it is a replica, and reconnecting.
 */

enum fake_mode {
	FAKE_MASTER = 0,      /* answers ROLE master, SUBSCRIBE, PING */
	FAKE_SILENT_PING,     /* as master, but never answers PING */
	FAKE_REPLICA,         /* ROLE says slave */
	FAKE_MUTE,            /* accepts, never answers anything */
	FAKE_SENTINEL,        /* names master_port as the master */
};

struct fake {
	struct event_base *base;
	int lfd;
	struct event *accept_ev;
	struct event *conns[8];
	int fds[8];
	size_t nconns;
	enum fake_mode mode;
	unsigned int accepted;
	int master_port;      /* FAKE_SENTINEL */
};

struct result {
	unsigned int connected;
	unsigned int disconnected;
	char why[256];
	unsigned int replies;
	unsigned int nulls;
	char reply[64];
	unsigned int messages;
};

static bool contains(const char *buf, size_t len, const char *s)
{
	return memmem(buf, len, s, strlen(s)) != NULL;
}

static void fake_read(evutil_socket_t fd, short what, void *ctx)
{
	struct fake *f = ctx;
	char buf[4096];
	(void)what;

	ssize_t n = read(fd, buf, sizeof(buf));
	if (n <= 0) {
		for (size_t i = 0; i < f->nconns; i++) {
			if (f->fds[i] == fd) {
				event_free(f->conns[i]);
				close(fd);
				f->conns[i] = f->conns[--f->nconns];
				f->fds[i] = f->fds[f->nconns];
				break;
			}
		}
		return;
	}
	if (f->mode == FAKE_MUTE)
		return;
	if (f->mode == FAKE_SENTINEL) {
		if (contains(buf, (size_t)n, "get-master-addr-by-name")) {
			char port[8], reply[64];
			int plen = snprintf(port, sizeof(port), "%d", f->master_port);
			int len = snprintf(reply, sizeof(reply),
					   "*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%s\r\n",
					   plen, port);
			(void)!write(fd, reply, (size_t)len);
		}
		return;
	}
	/* commands arrive as RESP arrays; answer by what they contain */
	if (contains(buf, (size_t)n, "ROLE")) {
		const char *role = f->mode == FAKE_REPLICA ?
			"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:0\r\n" :
			"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";
		(void)!write(fd, role, strlen(role));
	}
	if (contains(buf, (size_t)n, "SUBSCRIBE")) {
		const char *sub = "*3\r\n$9\r\nsubscribe\r\n$2\r\nev\r\n:1\r\n";
		const char *msg = "*3\r\n$7\r\nmessage\r\n$2\r\nev\r\n$5\r\nhello\r\n";
		(void)!write(fd, sub, strlen(sub));
		(void)!write(fd, msg, strlen(msg));
	}
	if (contains(buf, (size_t)n, "PING") && f->mode != FAKE_SILENT_PING)
		(void)!write(fd, "+PONG\r\n", 7);
}

static void fake_accept(evutil_socket_t lfd, short what, void *ctx)
{
	struct fake *f = ctx;
	(void)what;
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return;
	f->accepted++;
	if (f->nconns == 8) {
		close(fd);
		return;
	}
	f->fds[f->nconns] = fd;
	f->conns[f->nconns] = event_new(f->base, fd, EV_READ | EV_PERSIST,
					fake_read, f);
	event_add(f->conns[f->nconns], NULL);
	f->nconns++;
}

static int fake_start(struct fake *f, struct event_base *base, enum fake_mode mode)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	memset(f, 0, sizeof(*f));
	f->base = base;
	f->mode = mode;
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(f->lfd, 8), 0);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sin, &len), 0);
	f->accept_ev = event_new(base, f->lfd, EV_READ | EV_PERSIST, fake_accept, f);
	event_add(f->accept_ev, NULL);
	return ntohs(sin.sin_port);
}

static void fake_stop(struct fake *f)
{
	for (size_t i = 0; i < f->nconns; i++) {
		event_free(f->conns[i]);
		close(f->fds[i]);
	}
	event_free(f->accept_ev);
	close(f->lfd);
}

static void on_connected(void *ctx, const char *master)
{
	struct result *r = ctx;
	(void)master;
	r->connected++;
}

static void on_disconnected(void *ctx, const char *why)
{
	struct result *r = ctx;
	r->disconnected++;
	snprintf(r->why, sizeof(r->why), "%s", why);
}

static void on_message(void *ctx, const char *data, size_t len)
{
	struct result *r = ctx;
	if (len == 5 && memcmp(data, "hello", 5) == 0)
		r->messages++;
}

static void on_reply(const struct redisReply *reply, void *ctx)
{
	struct result *r = ctx;
	if (reply == NULL) {
		r->nulls++;
		return;
	}
	r->replies++;
	snprintf(r->reply, sizeof(r->reply), "%s", reply->str != NULL ? reply->str : "");
}

/* Runs the loop until cond holds or msecs pass. */
static void run_until(struct event_base *base, bool (*cond)(struct result *),
		      struct result *r, unsigned int msecs)
{
	uint64_t end = net_monotonic_msecs() + msecs;
	while (!cond(r) && net_monotonic_msecs() < end) {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(2000);
	}
}

static bool is_connected(struct result *r) { return r->connected > 0; }
static bool got_reply(struct result *r) { return r->replies + r->nulls > 0; }
static bool got_disconnect(struct result *r) { return r->disconnected > 0; }

static struct redis_client *client_new(struct event_base *base, int port,
				       struct result *r, uint64_t timeout)
{
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	struct redis_client_settings set = {
		.address = addr,
		.channel = "ev",
		.timeout_msecs = timeout,
		.reconnect_msecs = 50,
	};
	struct redis_client_callbacks cbs = {
		.connected = on_connected,
		.disconnected = on_disconnected,
		.message = on_message,
	};
	return redis_client_new(base, &set, &cbs, r);
}

static void test_connect_command_message(void **state)
{
	struct event_base *base = event_base_new();
	struct fake f;
	struct result r = { 0 };
	(void)state;

	int port = fake_start(&f, base, FAKE_MASTER);
	struct redis_client *rc = client_new(base, port, &r, 300);
	redis_client_start(rc);
	run_until(base, is_connected, &r, 2000);
	assert_int_equal(r.connected, 1);
	assert_true(redis_client_ready(rc));
	run_until(base, got_reply, &r, 100); /* let the message arrive */
	assert_int_equal(r.messages, 1);
	const char *argv[] = { "PING" };
	redis_client_commandv(rc, on_reply, &r, 1, argv);
	run_until(base, got_reply, &r, 2000);
	assert_int_equal(r.replies, 1);
	assert_string_equal(r.reply, "PONG");
	assert_int_equal(r.disconnected, 0);
	redis_client_free(&rc);
	fake_stop(&f);
	event_base_free(base);
}

static void test_command_timeout_drops_connection(void **state)
{
	struct event_base *base = event_base_new();
	struct fake f;
	struct result r = { 0 };
	(void)state;

	int port = fake_start(&f, base, FAKE_SILENT_PING);
	struct redis_client *rc = client_new(base, port, &r, 200);
	redis_client_start(rc);
	run_until(base, is_connected, &r, 2000);
	assert_true(redis_client_ready(rc));
	uint64_t start = net_monotonic_msecs();
	const char *argv[] = { "PING" };
	redis_client_commandv(rc, on_reply, &r, 1, argv);
	run_until(base, got_reply, &r, 3000);
	uint64_t took = net_monotonic_msecs() - start;
	/* NULL within the timeout (coarse timers: allow slack), exactly once */
	assert_int_equal(r.nulls, 1);
	assert_int_equal(r.replies, 0);
	assert_true(took >= 150 && took < 1500);
	assert_int_equal(r.disconnected, 1);
	assert_non_null(strstr(r.why, "no answer within 200 ms"));
	assert_false(redis_client_ready(rc));
	/* a command while disconnected fails at once */
	r.nulls = 0;
	redis_client_commandv(rc, on_reply, &r, 1, argv);
	assert_int_equal(r.nulls, 1);
	/* it reconnects by itself */
	r.connected = 0;
	run_until(base, is_connected, &r, 2000);
	assert_int_equal(r.connected, 1);
	assert_true(f.accepted >= 4); /* two connections, twice */
	redis_client_free(&rc);
	fake_stop(&f);
	event_base_free(base);
}

static void test_replica_and_mute_server_refused(void **state)
{
	struct event_base *base = event_base_new();
	struct fake f;
	struct result r = { 0 };
	(void)state;

	int port = fake_start(&f, base, FAKE_REPLICA);
	struct redis_client *rc = client_new(base, port, &r, 200);
	redis_client_start(rc);
	run_until(base, got_disconnect, &r, 2000);
	assert_int_equal(r.connected, 0);
	assert_non_null(strstr(r.why, "not the master"));
	redis_client_free(&rc);
	fake_stop(&f);

	memset(&r, 0, sizeof(r));
	port = fake_start(&f, base, FAKE_MUTE);
	rc = client_new(base, port, &r, 200);
	redis_client_start(rc);
	run_until(base, got_disconnect, &r, 3000);
	assert_int_equal(r.connected, 0);
	assert_non_null(strstr(r.why, "connect timed out"));
	/* reported once per outage, however many attempts fail */
	run_until(base, is_connected, &r, 600);
	assert_int_equal(r.disconnected, 1);
	redis_client_free(&rc);
	fake_stop(&f);
	event_base_free(base);
}

static void test_refused_port(void **state)
{
	struct event_base *base = event_base_new();
	struct result r = { 0 };
	struct fake f;
	(void)state;

	/* a port nobody listens on: take one and close it */
	int port = fake_start(&f, base, FAKE_MASTER);
	fake_stop(&f);
	struct redis_client *rc = client_new(base, port, &r, 200);
	redis_client_start(rc);
	run_until(base, got_disconnect, &r, 2000);
	assert_int_equal(r.disconnected, 1);
	assert_non_null(strstr(r.why, "127.0.0.1"));
	redis_client_free(&rc);
	event_base_free(base);
}

/* A dead first sentinel (refused) does not hide a working second one. */
static void test_dead_first_sentinel(void **state)
{
	struct event_base *base = event_base_new();
	struct fake master, sentinel, dead;
	struct result r = { 0 };
	char dead_addr[64], live_addr[64];
	(void)state;

	int master_port = fake_start(&master, base, FAKE_MASTER);
	int sentinel_port = fake_start(&sentinel, base, FAKE_SENTINEL);
	sentinel.master_port = master_port;
	int dead_port = fake_start(&dead, base, FAKE_MASTER);
	fake_stop(&dead);
	snprintf(dead_addr, sizeof(dead_addr), "127.0.0.1:%d", dead_port);
	snprintf(live_addr, sizeof(live_addr), "127.0.0.1:%d", sentinel_port);
	struct redis_client_settings set = {
		.address = "",
		.sentinels = { dead_addr, live_addr },
		.sentinel_count = 2,
		.sentinel_master = "mymaster",
		.channel = "ev",
		.timeout_msecs = 300,
		.reconnect_msecs = 50,
	};
	struct redis_client_callbacks cbs = {
		.connected = on_connected,
		.disconnected = on_disconnected,
		.message = on_message,
	};
	struct redis_client *rc = redis_client_new(base, &set, &cbs, &r);
	redis_client_start(rc);
	run_until(base, is_connected, &r, 3000);
	assert_int_equal(r.connected, 1);
	char want[64];
	snprintf(want, sizeof(want), "127.0.0.1:%d", master_port);
	assert_string_equal(redis_client_master(rc), want);
	redis_client_free(&rc);
	fake_stop(&master);
	fake_stop(&sentinel);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_command_message),
		cmocka_unit_test(test_command_timeout_drops_connection),
		cmocka_unit_test(test_replica_and_mute_server_refused),
		cmocka_unit_test(test_refused_port),
		cmocka_unit_test(test_dead_first_sentinel),
	};
	net_ignore_sigpipe();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
