#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "tls.h"

/* One side of a transfer: sends `total` bytes of a pattern and receives
 * into a checker, both through struct conn. */
struct side {
	struct conn *c;
	struct event_base *base;
	size_t to_send, sent;
	size_t received;
	bool tls_ready, error, eof;
	bool verify_failed;
	bool free_on_read; /* frees itself from inside its callback */
	size_t read_chunk;
};

static uint8_t pattern(size_t i)
{
	return (uint8_t)((i * 31u + 7u) & 0xff);
}

static void side_cb(struct conn *c, enum conn_event ev, void *context)
{
	struct side *s = context;
	uint8_t buf[16384];

	switch (ev) {
	case CONN_EV_TLS_READY:
		s->tls_ready = true;
		conn_want(c, true, s->sent < s->to_send);
		break;
	case CONN_EV_ERROR:
		s->error = true;
		break;
	case CONN_EV_READABLE:
		for (;;) {
			size_t want = s->read_chunk ? s->read_chunk : sizeof(buf);
			ssize_t n = conn_read(c, buf, want);
			if (n == CONN_AGAIN)
				break;
			if (n == CONN_EOF || n == CONN_FAILED) {
				s->eof = true;
				conn_want(c, false, s->sent < s->to_send);
				break;
			}
			for (ssize_t i = 0; i < n; i++) {
				if (buf[i] != pattern(s->received + (size_t)i))
					s->verify_failed = true;
			}
			s->received += (size_t)n;
			if (s->free_on_read) {
				conn_free(&s->c);
				return; /* c is gone for us; conn frees it later */
			}
		}
		break;
	case CONN_EV_WRITABLE:
		while (s->sent < s->to_send) {
			uint8_t out[7000];
			size_t n = s->to_send - s->sent;
			if (n > sizeof(out))
				n = sizeof(out);
			for (size_t i = 0; i < n; i++)
				out[i] = pattern(s->sent + i);
			ssize_t w = conn_write(c, out, n);
			if (w == CONN_AGAIN)
				return;
			if (w == CONN_FAILED) {
				s->error = true;
				return;
			}
			s->sent += (size_t)w;
		}
		conn_shutdown_write(c);
		conn_want(c, !s->eof, false);
		break;
	}
}

static void make_pair(int fds[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	for (int i = 0; i < 2; i++)
		fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
	/* small kernel buffers force partial writes and back-pressure */
	int sz = 4096;
	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

static void run_until(struct event_base *base, struct side *a, struct side *b,
		      size_t expect_b)
{
	for (int i = 0; i < 200000; i++) {
		if (b->received >= expect_b && a->sent >= a->to_send &&
		    b->sent >= b->to_send && a->received >= b->to_send)
			break;
		if (a->error || b->error)
			break;
		event_base_loop(base, EVLOOP_ONCE);
	}
}

static void test_plain_transfer(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	int fds[2];
	make_pair(fds);
	struct side a = { .to_send = 1000000 }, b = { .to_send = 3000 };
	a.c = conn_new(base, fds[0], side_cb, &a);
	b.c = conn_new(base, fds[1], side_cb, &b);
	conn_want(a.c, true, true);
	conn_want(b.c, true, true);
	run_until(base, &a, &b, a.to_send);
	assert_int_equal(b.received, a.to_send);
	assert_int_equal(a.received, b.to_send);
	assert_false(a.verify_failed || b.verify_failed);
	assert_false(conn_is_tls(a.c));
	assert_int_equal(conn_bytes_out(a.c), a.to_send);
	assert_int_equal(conn_bytes_in(b.c), a.to_send);
	/* after the peer's half-close the reader sees EOF */
	for (int i = 0; i < 100 && !b.eof; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_true(b.eof);
	conn_free(&a.c);
	conn_free(&b.c);
	assert_null(a.c);
	conn_free(&a.c); /* NULL is fine */
	event_base_free(base);
}

static char tmpdir[64];
static char certfile[128], keyfile[128];

static int setup_certs(void **state)
{
	(void)state;
	char err[TLS_ERROR_MAX];
	snprintf(tmpdir, sizeof(tmpdir), "%s", "/tmp/mr-test-conn-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(certfile, sizeof(certfile), "%s/cert.pem", tmpdir);
	snprintf(keyfile, sizeof(keyfile), "%s/key.pem", tmpdir);
	if (tls_selfsigned_write(certfile, keyfile, "localhost", 1, err,
				 sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

static int teardown_certs(void **state)
{
	(void)state;
	unlink(certfile);
	unlink(keyfile);
	rmdir(tmpdir);
	return 0;
}

static void tls_pair(struct event_base *base, struct side *srv,
		     struct side *cli, struct tls_server **tsrv,
		     SSL_CTX **cctx, const char *ca)
{
	char err[TLS_ERROR_MAX];
	int fds[2];
	make_pair(fds);
	struct tls_server_settings sset = { .cert_file = certfile,
					    .key_file = keyfile };
	*tsrv = tls_server_new(&sset, err, sizeof(err));
	assert_non_null(*tsrv);
	struct tls_client_settings cset = { .ca_file = ca };
	*cctx = tls_client_ctx_new(&cset, err, sizeof(err));
	assert_non_null(*cctx);
	srv->c = conn_new(base, fds[0], side_cb, srv);
	cli->c = conn_new(base, fds[1], side_cb, cli);
	assert_int_equal(conn_start_tls(srv->c,
		tls_server_ssl_new(*tsrv, err, sizeof(err)), true), 0);
	assert_int_equal(conn_start_tls(cli->c,
		tls_client_ssl_new(*cctx, "localhost", err, sizeof(err)), false), 0);
	assert_true(conn_in_handshake(cli->c));
	/* reads during the handshake just say "again" */
	uint8_t tmp[4];
	assert_int_equal(conn_read(cli->c, tmp, sizeof(tmp)), CONN_AGAIN);
	assert_int_equal(conn_write(cli->c, tmp, sizeof(tmp)), CONN_AGAIN);
}

static void test_tls_transfer(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct side srv = { .to_send = 2000000, .read_chunk = 100 };
	struct side cli = { .to_send = 500000 };
	struct tls_server *tsrv;
	SSL_CTX *cctx;
	tls_pair(base, &srv, &cli, &tsrv, &cctx, certfile);
	run_until(base, &srv, &cli, srv.to_send);
	assert_true(srv.tls_ready && cli.tls_ready);
	assert_false(srv.error || cli.error);
	assert_int_equal(cli.received, srv.to_send);
	assert_int_equal(srv.received, cli.to_send);
	assert_false(srv.verify_failed || cli.verify_failed);
	assert_true(conn_is_tls(srv.c));
	assert_non_null(conn_ssl(srv.c));
	assert_false(conn_in_handshake(srv.c));
	assert_int_equal(conn_bytes_in(cli.c), srv.to_send);
	conn_free(&srv.c);
	conn_free(&cli.c);
	tls_server_free(&tsrv);
	SSL_CTX_free(cctx);
	event_base_free(base);
}

static void test_tls_verify_failure(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct side srv = { 0 }, cli = { 0 };
	struct tls_server *tsrv;
	SSL_CTX *cctx;
	/* the system CA store does not know our self-signed certificate */
	tls_pair(base, &srv, &cli, &tsrv, &cctx, NULL);
	for (int i = 0; i < 1000 && !cli.error; i++)
		event_base_loop(base, EVLOOP_ONCE);
	assert_true(cli.error);
	assert_false(cli.tls_ready);
	assert_non_null(strstr(conn_error(cli.c), "TLS handshake failed"));
	conn_free(&srv.c);
	conn_free(&cli.c);
	tls_server_free(&tsrv);
	SSL_CTX_free(cctx);
	event_base_free(base);
}

static void test_free_inside_callback(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	int fds[2];
	make_pair(fds);
	struct side a = { .to_send = 10 }, b = { .free_on_read = true };
	a.c = conn_new(base, fds[0], side_cb, &a);
	b.c = conn_new(base, fds[1], side_cb, &b);
	conn_want(a.c, false, true);
	conn_want(b.c, true, false);
	for (int i = 0; i < 100 && b.c != NULL; i++)
		event_base_loop(base, EVLOOP_ONCE);
	assert_null(b.c);
	assert_true(b.received > 0);
	/* the peer sees the close */
	uint8_t x;
	for (int i = 0; i < 100; i++) {
		if (recv(conn_fd(a.c), &x, 1, MSG_DONTWAIT) == 0)
			break;
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	}
	assert_int_equal(recv(conn_fd(a.c), &x, 1, MSG_DONTWAIT), 0);
	conn_free(&a.c);
	event_base_free(base);
}

static void test_write_error(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	int fds[2];
	make_pair(fds);
	struct side a = { 0 };
	a.c = conn_new(base, fds[0], side_cb, &a);
	close(fds[1]);
	ssize_t w = conn_write(a.c, "x", 1);
	assert_int_equal(w, CONN_FAILED);
	assert_non_null(strstr(conn_error(a.c), "Broken pipe"));
	conn_free(&a.c);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_transfer),
		cmocka_unit_test(test_tls_transfer),
		cmocka_unit_test(test_tls_verify_failure),
		cmocka_unit_test(test_free_inside_callback),
		cmocka_unit_test(test_write_error),
	};
	return cmocka_run_group_tests_name("conn", tests, setup_certs,
					   teardown_certs);
}
