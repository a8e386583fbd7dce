#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "str.h"
#include "tls.h"

/* A temporary directory with a default "localhost" certificate. */
struct fixture {
	char dir[64];
	char cert[128];
	char key[128];
};

static void fx_path(const struct fixture *fx, const char *name, char *dst,
		    size_t size)
{
	assert_true(str_printf(dst, size, "%s/%s", fx->dir, name) > 0);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char err[TLS_ERROR_MAX];

	assert_non_null(fx);
	assert_true(
	    str_copy(STR("/tmp/mr-test-tls-XXXXXX"), fx->dir, sizeof(fx->dir)));
	assert_non_null(mkdtemp(fx->dir));
	fx_path(fx, "cert.pem", fx->cert, sizeof(fx->cert));
	fx_path(fx, "key.pem", fx->key, sizeof(fx->key));
	if (tls_selfsigned_write(fx->cert, fx->key, "localhost", 30, err,
				 sizeof(err)) < 0)
		fail_msg("tls_selfsigned_write: %s", err);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	DIR *d = opendir(fx->dir);
	struct dirent *de;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[256];

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		fx_path(fx, de->d_name, path, sizeof(path));
		unlink(path);
	}
	closedir(d);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

static void write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(content, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void append_file(const char *dst, const char *src)
{
	char buf[4096];
	FILE *in = fopen(src, "r"), *out = fopen(dst, "a");
	size_t n;

	assert_non_null(in);
	assert_non_null(out);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

/* ---- in-process handshake over a socketpair ------------------------------ */

struct hs_result {
	bool client_ok;
	bool server_ok;
	char client_err[TLS_ERROR_MAX];
	char server_err[TLS_ERROR_MAX];
	int server_reason; /* ERR_GET_REASON of the server's first error */
};

static bool hs_step(SSL *ssl, bool *done, bool *failed, char *err,
		    size_t errsize, int *reason_r)
{
	int ret, e;

	if (*done || *failed)
		return false;
	ERR_clear_error();
	ret = SSL_do_handshake(ssl);
	if (ret == 1) {
		*done = true;
		return true;
	}
	e = SSL_get_error(ssl, ret);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return false;
	*failed = true;
	if (reason_r != NULL)
		*reason_r = ERR_GET_REASON(ERR_peek_error());
	tls_error_str(err, errsize, "handshake");
	/* Let the peer see EOF rather than wait forever. */
	shutdown(SSL_get_fd(ssl), SHUT_RDWR);
	return true;
}

/* Runs both ends of a handshake in this thread. Takes ownership of neither
 * SSL; the socketpair is closed before returning. */
static void handshake(SSL *client, SSL *server, struct hs_result *res)
{
	int sv[2];
	bool cdone = false, cfail = false, sdone = false, sfail = false;

	memset(res, 0, sizeof(*res));
	assert_int_equal(socketpair(AF_UNIX,
				    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
				    0, sv),
			 0);
	assert_int_equal(SSL_set_fd(client, sv[0]), 1);
	assert_int_equal(SSL_set_fd(server, sv[1]), 1);
	for (int i = 0; i < 2000; i++) {
		bool progress = false;

		progress |= hs_step(client, &cdone, &cfail, res->client_err,
				    sizeof(res->client_err), NULL);
		progress |=
		    hs_step(server, &sdone, &sfail, res->server_err,
			    sizeof(res->server_err), &res->server_reason);
		if ((cdone || cfail) && (sdone || sfail))
			break;
		if (!progress) {
			struct pollfd pfd[2] = {{sv[0], POLLIN, 0},
						{sv[1], POLLIN, 0}};
			(void)poll(pfd, 2, 5);
		}
	}
	assert_true((cdone || cfail) && (sdone || sfail));
	res->client_ok = cdone;
	res->server_ok = sdone;
	close(sv[0]);
	close(sv[1]);
}

static void peer_cn(SSL *ssl, char *dst, size_t size)
{
	X509 *cert = SSL_get1_peer_certificate(ssl);

	assert_non_null(cert);
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
					      NID_commonName, dst,
					      (int)size) > 0);
	X509_free(cert);
}

static SSL_CTX *client_ctx(const char *ca_file, bool no_verify)
{
	struct tls_client_settings set = {0};
	char err[TLS_ERROR_MAX];
	SSL_CTX *ctx;

	set.ca_file = ca_file;
	set.insecure_no_verify = no_verify;
	ctx = tls_client_ctx_new(&set, err, sizeof(err));
	if (ctx == NULL)
		fail_msg("tls_client_ctx_new: %s", err);
	return ctx;
}

static struct tls_server *server_default(const struct fixture *fx)
{
	struct tls_server_settings set = {0};
	char err[TLS_ERROR_MAX];
	struct tls_server *srv;

	set.cert_file = fx->cert;
	set.key_file = fx->key;
	srv = tls_server_new(&set, err, sizeof(err));
	if (srv == NULL)
		fail_msg("tls_server_new: %s", err);
	return srv;
}

/* Handshake of a fresh client SSL (ctx, host) against srv. */
static void connect_once(struct tls_server *srv, SSL_CTX *cctx,
			 const char *host, struct hs_result *res, char *cn,
			 size_t cnsize)
{
	char err[TLS_ERROR_MAX];
	SSL *client = tls_client_ssl_new(cctx, host, err, sizeof(err));
	SSL *server = tls_server_ssl_new(srv, err, sizeof(err));

	assert_non_null(client);
	assert_non_null(server);
	handshake(client, server, res);
	if (cn != NULL && res->client_ok)
		peer_cn(client, cn, cnsize);
	SSL_free(client);
	SSL_free(server);
}

/* ---- tests --------------------------------------------------------------- */

static void test_handshake_verified(void **state)
{
	const struct fixture *fx = *state;
	struct tls_server *srv = server_default(fx);
	SSL_CTX *cctx = client_ctx(fx->cert, false);
	char err[TLS_ERROR_MAX], cn[128];
	struct hs_result res;
	SSL *client, *server;

	client = tls_client_ssl_new(cctx, "localhost", err, sizeof(err));
	server = tls_server_ssl_new(srv, err, sizeof(err));
	assert_non_null(client);
	assert_non_null(server);
	handshake(client, server, &res);
	if (!res.client_ok || !res.server_ok)
		fail_msg("client: %s / server: %s", res.client_err,
			 res.server_err);
	assert_int_equal(SSL_version(client), TLS1_3_VERSION);
	assert_string_equal(SSL_get_version(server), "TLSv1.3");
	assert_int_equal(SSL_get_verify_result(client), X509_V_OK);
	assert_null(tls_peer_verify_error(client));
	peer_cn(client, cn, sizeof(cn));
	assert_string_equal(cn, "localhost");
	/* SNI was sent for a DNS name */
	assert_string_equal(
	    SSL_get_servername(server, TLSEXT_NAMETYPE_host_name), "localhost");
	/* group: X25519 is our first choice */
	assert_int_equal(SSL_get_negotiated_group(server), NID_X25519);
	SSL_free(client);
	SSL_free(server);

	/* An IP literal is checked against the IP SAN and not sent as SNI. */
	client = tls_client_ssl_new(cctx, "127.0.0.1", err, sizeof(err));
	server = tls_server_ssl_new(srv, err, sizeof(err));
	assert_non_null(client);
	assert_non_null(server);
	handshake(client, server, &res);
	assert_true(res.client_ok && res.server_ok);
	assert_null(SSL_get_servername(server, TLSEXT_NAMETYPE_host_name));
	SSL_free(client);
	SSL_free(server);

	/* Verification needs a host name. */
	assert_null(tls_client_ssl_new(cctx, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "host name is required"));

	SSL_CTX_free(cctx);
	tls_server_free(&srv);
	assert_null(srv);
	tls_server_free(&srv);
}

static void test_handshake_hostname_mismatch(void **state)
{
	const struct fixture *fx = *state;
	struct tls_server *srv = server_default(fx);
	SSL_CTX *cctx = client_ctx(fx->cert, false);
	char err[TLS_ERROR_MAX];
	struct hs_result res;
	SSL *client, *server;
	const char *verr;

	client =
	    tls_client_ssl_new(cctx, "mail.wrong.example", err, sizeof(err));
	server = tls_server_ssl_new(srv, err, sizeof(err));
	assert_non_null(client);
	assert_non_null(server);
	handshake(client, server, &res);
	assert_false(res.client_ok);
	assert_false(res.server_ok);
	assert_int_equal(SSL_get_verify_result(client),
			 X509_V_ERR_HOSTNAME_MISMATCH);
	verr = tls_peer_verify_error(client);
	assert_non_null(verr);
	assert_non_null(strstr(verr, "hostname mismatch"));
	assert_non_null(strstr(res.client_err, "certificate verify failed"));
	/* the wrong IP fails as well */
	SSL_free(client);
	SSL_free(server);
	client = tls_client_ssl_new(cctx, "127.0.0.2", err, sizeof(err));
	server = tls_server_ssl_new(srv, err, sizeof(err));
	assert_non_null(client);
	assert_non_null(server);
	handshake(client, server, &res);
	assert_false(res.client_ok);
	assert_int_equal(SSL_get_verify_result(client),
			 X509_V_ERR_IP_ADDRESS_MISMATCH);
	SSL_free(client);
	SSL_free(server);
	SSL_CTX_free(cctx);
	tls_server_free(&srv);
}

static void test_handshake_untrusted_and_no_verify(void **state)
{
	const struct fixture *fx = *state;
	struct tls_server *srv = server_default(fx);
	struct hs_result res;
	SSL_CTX *cctx;
	char cn[128];

	/* system CAs do not know our self-signed cert */
	cctx = client_ctx(NULL, false);
	connect_once(srv, cctx, "localhost", &res, NULL, 0);
	assert_false(res.client_ok);
	SSL_CTX_free(cctx);

	/* explicitly disabled verification accepts anything */
	cctx = client_ctx(NULL, true);
	connect_once(srv, cctx, "mail.wrong.example", &res, cn, sizeof(cn));
	if (!res.client_ok)
		fail_msg("client: %s", res.client_err);
	assert_true(res.server_ok);
	assert_string_equal(cn, "localhost");
	/* and needs no host at all */
	connect_once(srv, cctx, NULL, &res, NULL, 0);
	assert_true(res.client_ok && res.server_ok);
	SSL_CTX_free(cctx);
	tls_server_free(&srv);
}

static void test_protocol_versions(void **state)
{
	const struct fixture *fx = *state;
	struct tls_server *srv = server_default(fx);
	SSL_CTX *cctx = client_ctx(fx->cert, false);
	char err[TLS_ERROR_MAX];
	struct hs_result res;
	SSL *client, *server;

	/* a TLS 1.2-only client still gets in */
	assert_int_equal(SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION),
			 1);
	client = tls_client_ssl_new(cctx, "localhost", err, sizeof(err));
	server = tls_server_ssl_new(srv, err, sizeof(err));
	assert_non_null(client);
	assert_non_null(server);
	handshake(client, server, &res);
	if (!res.client_ok || !res.server_ok)
		fail_msg("client: %s / server: %s", res.client_err,
			 res.server_err);
	assert_int_equal(SSL_version(server), TLS1_2_VERSION);
	assert_true(SSL_version(server) >= TLS1_2_VERSION);
	SSL_free(client);
	SSL_free(server);
	SSL_CTX_free(cctx);

	/* a TLS 1.1 client (forced to seclevel 0 so it can even try) is
	 * refused by the server */
	cctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(cctx);
	assert_int_equal(SSL_CTX_set_cipher_list(cctx, "DEFAULT:@SECLEVEL=0"),
			 1);
	assert_int_equal(SSL_CTX_set_min_proto_version(cctx, TLS1_1_VERSION),
			 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(cctx, TLS1_1_VERSION),
			 1);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	client = SSL_new(cctx);
	assert_non_null(client);
	SSL_set_connect_state(client);
	server = tls_server_ssl_new(srv, err, sizeof(err));
	assert_non_null(server);
	handshake(client, server, &res);
	assert_false(res.client_ok);
	assert_false(res.server_ok);
	/* the server saw the ClientHello and said no */
	assert_int_equal(res.server_reason, SSL_R_UNSUPPORTED_PROTOCOL);
	assert_non_null(strstr(res.server_err, "unsupported protocol"));
	SSL_free(client);
	SSL_free(server);
	SSL_CTX_free(cctx);
	tls_server_free(&srv);
}

static void test_sni(void **state)
{
	const struct fixture *fx = *state;
	char mail_cert[128], mail_key[128], wild_cert[128], wild_key[128];
	char bundle[128], err[TLS_ERROR_MAX], cn[128];
	struct tls_server_settings set = {0};
	struct tls_sni_cert sni[2];
	struct tls_server *srv;
	struct hs_result res;
	SSL_CTX *cctx, *insecure;

	fx_path(fx, "mail.pem", mail_cert, sizeof(mail_cert));
	fx_path(fx, "mail.key", mail_key, sizeof(mail_key));
	fx_path(fx, "wild.pem", wild_cert, sizeof(wild_cert));
	fx_path(fx, "wild.key", wild_key, sizeof(wild_key));
	fx_path(fx, "bundle.pem", bundle, sizeof(bundle));
	assert_int_equal(tls_selfsigned_write(mail_cert, mail_key,
					      "mail.example.com", 1, err,
					      sizeof(err)),
			 0);
	assert_int_equal(tls_selfsigned_write(wild_cert, wild_key,
					      "*.example.org", 1, err,
					      sizeof(err)),
			 0);
	write_file(bundle, "");
	append_file(bundle, fx->cert);
	append_file(bundle, mail_cert);
	append_file(bundle, wild_cert);

	sni[0] = (struct tls_sni_cert){"mail.example.com", mail_cert, mail_key};
	sni[1] = (struct tls_sni_cert){"*.example.org", wild_cert, wild_key};
	set.cert_file = fx->cert;
	set.key_file = fx->key;
	set.sni_certs = sni;
	set.sni_count = 2;
	srv = tls_server_new(&set, err, sizeof(err));
	if (srv == NULL)
		fail_msg("tls_server_new: %s", err);

	cctx = client_ctx(bundle, false);
	insecure = client_ctx(NULL, true);

	/* exact name, verified */
	connect_once(srv, cctx, "mail.example.com", &res, cn, sizeof(cn));
	if (!res.client_ok)
		fail_msg("client: %s", res.client_err);
	assert_string_equal(cn, "mail.example.com");
	/* case does not matter */
	connect_once(srv, insecure, "MAIL.Example.COM", &res, cn, sizeof(cn));
	assert_true(res.client_ok);
	assert_string_equal(cn, "mail.example.com");
	/* wildcard, verified */
	connect_once(srv, cctx, "imap.example.org", &res, cn, sizeof(cn));
	if (!res.client_ok)
		fail_msg("client: %s", res.client_err);
	assert_string_equal(cn, "*.example.org");
	/* a wildcard covers one label only: default certificate */
	connect_once(srv, insecure, "a.b.example.org", &res, cn, sizeof(cn));
	assert_true(res.client_ok);
	assert_string_equal(cn, "localhost");
	connect_once(srv, insecure, "example.org", &res, cn, sizeof(cn));
	assert_true(res.client_ok);
	assert_string_equal(cn, "localhost");
	/* unknown name and no SNI at all: default */
	connect_once(srv, cctx, "localhost", &res, cn, sizeof(cn));
	assert_true(res.client_ok);
	assert_string_equal(cn, "localhost");
	connect_once(srv, insecure, "127.0.0.1", &res, cn, sizeof(cn));
	assert_true(res.client_ok);
	assert_string_equal(cn, "localhost");
	/* the unknown name fails verification against the default cert */
	connect_once(srv, cctx, "other.example.net", &res, NULL, 0);
	assert_false(res.client_ok);

	/* SNI entries survive a reload */
	assert_int_equal(tls_server_reload(srv, NULL, err, sizeof(err)), 0);
	connect_once(srv, cctx, "pop.example.org", &res, cn, sizeof(cn));
	assert_true(res.client_ok);
	assert_string_equal(cn, "*.example.org");

	SSL_CTX_free(cctx);
	SSL_CTX_free(insecure);
	tls_server_free(&srv);

	/* invalid SNI names are refused up front */
	sni[1].name = "imap.*.example.org";
	assert_null(tls_server_new(&set, err, sizeof(err)));
	assert_non_null(strstr(err, "invalid name 'imap.*.example.org'"));
	/* a broken SNI key fails the whole build, naming the file */
	sni[1].name = "*.example.org";
	sni[1].key_file = mail_key;
	assert_null(tls_server_new(&set, err, sizeof(err)));
	assert_non_null(strstr(err, "does not match"));
	assert_non_null(strstr(err, mail_key));
}

static void test_load_errors(void **state)
{
	const struct fixture *fx = *state;
	struct tls_server_settings set = {0};
	struct tls_client_settings cset = {0};
	char err[TLS_ERROR_MAX], missing[128], other_cert[128], other_key[128];

	fx_path(fx, "missing.pem", missing, sizeof(missing));
	fx_path(fx, "other.pem", other_cert, sizeof(other_cert));
	fx_path(fx, "other.key", other_key, sizeof(other_key));

	assert_null(tls_server_new(&set, err, sizeof(err)));
	assert_non_null(strstr(err, "required"));

	set.cert_file = missing;
	set.key_file = fx->key;
	assert_null(tls_server_new(&set, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot load certificate chain from"));
	assert_non_null(strstr(err, missing));
	assert_non_null(strstr(err, "No such file or directory"));

	assert_int_equal(tls_selfsigned_write(other_cert, other_key, "other", 1,
					      err, sizeof(err)),
			 0);
	set.cert_file = fx->cert;
	set.key_file = other_key;
	assert_null(tls_server_new(&set, err, sizeof(err)));
	assert_non_null(strstr(err, "does not match"));

	set.key_file = fx->key;
	set.ciphers = "NO-SUCH-CIPHER";
	assert_null(tls_server_new(&set, err, sizeof(err)));
	assert_non_null(strstr(err, "invalid cipher list 'NO-SUCH-CIPHER'"));

	cset.ca_file = missing;
	assert_null(tls_client_ctx_new(&cset, err, sizeof(err)));
	assert_non_null(strstr(err, missing));

	/* tiny buffers are cut, never overrun */
	char tiny[8];
	assert_null(tls_client_ctx_new(&cset, tiny, sizeof(tiny)));
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);

	assert_int_equal(tls_selfsigned_write(other_cert, other_key, "bad,name",
					      1, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "invalid common name"));
	assert_int_equal(tls_selfsigned_write(other_cert, other_key, "x", 0,
					      err, sizeof(err)),
			 -1);
}

static void test_reload(void **state)
{
	const struct fixture *fx = *state;
	struct tls_server *srv = server_default(fx);
	SSL_CTX *insecure = client_ctx(NULL, true);
	SSL_CTX *before, *after, *cur;
	char err[TLS_ERROR_MAX], cn[128], saved_key[128];
	struct hs_result res;
	SSL *old_server, *client;

	fx_path(fx, "key.saved", saved_key, sizeof(saved_key));
	before = tls_server_get_ctx(srv);
	/* an SSL made before the reloads keeps its context */
	old_server = tls_server_ssl_new(srv, err, sizeof(err));
	assert_non_null(old_server);

	/* a reload from unchanged files works and swaps the context */
	assert_int_equal(tls_server_reload(srv, NULL, err, sizeof(err)), 0);
	cur = tls_server_get_ctx(srv);
	assert_ptr_not_equal(cur, before);
	SSL_CTX_free(before);
	before = cur;

	/* a broken key: error names the file, the old context stays */
	assert_int_equal(rename(fx->key, saved_key), 0);
	write_file(fx->key, "-----BEGIN PRIVATE KEY-----\ngarbage\n"
			    "-----END PRIVATE KEY-----\n");
	assert_int_equal(tls_server_reload(srv, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot load private key from"));
	assert_non_null(strstr(err, fx->key));
	cur = tls_server_get_ctx(srv);
	assert_ptr_equal(cur, before);
	SSL_CTX_free(cur);
	connect_once(srv, insecure, "localhost", &res, cn, sizeof(cn));
	assert_true(res.client_ok && res.server_ok);
	assert_string_equal(cn, "localhost");

	/* an empty key file too */
	write_file(fx->key, "");
	assert_int_equal(tls_server_reload(srv, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, fx->key));

	/* new valid files at the same paths: switched */
	assert_int_equal(tls_selfsigned_write(fx->cert, fx->key, "reloaded", 1,
					      err, sizeof(err)),
			 0);
	assert_int_equal(tls_server_reload(srv, NULL, err, sizeof(err)), 0);
	after = tls_server_get_ctx(srv);
	assert_ptr_not_equal(after, before);
	SSL_CTX_free(after);
	SSL_CTX_free(before);
	connect_once(srv, insecure, "localhost", &res, cn, sizeof(cn));
	assert_true(res.client_ok && res.server_ok);
	assert_string_equal(cn, "reloaded");

	/* the SSL made at the start still handshakes with the first cert */
	client = tls_client_ssl_new(insecure, "localhost", err, sizeof(err));
	assert_non_null(client);
	handshake(client, old_server, &res);
	assert_true(res.client_ok && res.server_ok);
	peer_cn(client, cn, sizeof(cn));
	assert_string_equal(cn, "localhost");
	SSL_free(client);
	SSL_free(old_server);

	/* reload with other settings: a failure keeps the old settings */
	struct tls_server_settings set = {0};
	set.cert_file = fx->cert;
	set.key_file = saved_key; /* the first key: does not match */
	assert_int_equal(tls_server_reload(srv, &set, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "does not match"));
	assert_int_equal(tls_server_reload(srv, NULL, err, sizeof(err)), 0);
	connect_once(srv, insecure, "localhost", &res, cn, sizeof(cn));
	assert_string_equal(cn, "reloaded");

	SSL_CTX_free(insecure);
	tls_server_free(&srv);
}

struct ctx_thread {
	struct tls_server *srv;
	unsigned int rounds;
};

static void *get_ctx_thread(void *arg)
{
	struct ctx_thread *t = arg;
	char err[TLS_ERROR_MAX];

	for (unsigned int i = 0; i < t->rounds; i++) {
		SSL *ssl = tls_server_ssl_new(t->srv, err, sizeof(err));
		if (ssl == NULL)
			return arg;
		SSL_free(ssl);
	}
	return NULL;
}

static void test_reload_concurrent(void **state)
{
	const struct fixture *fx = *state;
	struct ctx_thread t = {server_default(fx), 2000};
	char err[TLS_ERROR_MAX];
	pthread_t threads[3];

	for (size_t i = 0; i < 3; i++)
		assert_int_equal(
		    pthread_create(&threads[i], NULL, get_ctx_thread, &t), 0);
	for (int i = 0; i < 20; i++)
		assert_int_equal(
		    tls_server_reload(t.srv, NULL, err, sizeof(err)), 0);
	for (size_t i = 0; i < 3; i++) {
		void *ret;
		assert_int_equal(pthread_join(threads[i], &ret), 0);
		assert_null(ret);
	}
	tls_server_free(&t.srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_handshake_verified, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_handshake_hostname_mismatch,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_handshake_untrusted_and_no_verify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_protocol_versions, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_sni, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reload_concurrent, setup,
					    teardown),
	};
	char err[TLS_ERROR_MAX];

	if (tls_init(err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	return cmocka_run_group_tests_name("tls", tests, NULL, NULL);
}
