/*
 * The POP3 protocol of mailring-proxy (proxy/pop3_client.c and
 * proxy/pop3_backend.c) against a fake session core: the two files are
 * compiled into this test, and the core functions they call (client_send,
 * client_auth_start, backend_send, backend_login_fail...) are replaced by
 * recorders. Every client-visible string is checked byte for byte: they
 * are Dovecot 2.3 pop3-login's, which clients and scripts know.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "proxy/pop3_backend.c"
#include "proxy/pop3_client.c"

/* ---- the fake core ------------------------------------------------------- */

struct proxy proxy;

static struct {
	unsigned int auth_starts;
	unsigned int tls_starts;
	char close_reason[128];
	/* backend side */
	struct buf *to_backend;
	unsigned int tls_to_backend;
	unsigned int done;
	unsigned int retries;
	unsigned int fails;
	char fail_resp_code[64];
	bool fail_resp_code_null;
	char fail_text[600];
	char log_reason[400];
} fake;

bool client_is_secured(const struct client *c)
{
	return c->tls || c->trusted || !c->cfg->set.disable_plaintext_auth;
}

int client_send(struct client *c, const void *data, size_t len)
{
	if (c->destroyed)
		return -1;
	if (buf_append(c->output, data, len) < 0) {
		client_destroy(c,
			       "Disconnected: client does not read its output");
		return -1;
	}
	return 0;
}

int client_send_str(struct client *c, const char *s)
{
	return client_send(c, s, strlen(s));
}

int client_printf(struct client *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	return client_send(c, line, (size_t)n);
}

void client_input_consume(struct client *c, size_t n)
{
	buf_consume(c->input, n);
}

void client_start_tls(struct client *c)
{
	fake.tls_starts++;
	c->state = CLIENT_STATE_TLS_HANDSHAKE;
	buf_reset(c->input);
}

void client_auth_start(struct client *c)
{
	fake.auth_starts++;
	c->auth_attempts++;
	c->state = CLIENT_STATE_AUTH;
}

void client_close_after_output(struct client *c, const char *reason)
{
	str_copy(str_cstr(reason), fake.close_reason,
		 sizeof(fake.close_reason));
	c->closing_after_output = true;
	c->state = CLIENT_STATE_CLOSING;
}

void client_destroy(struct client *c, const char *reason)
{
	str_copy(str_cstr(reason), fake.close_reason,
		 sizeof(fake.close_reason));
	c->destroyed = true;
}

void client_login_clear(struct client *c)
{
	buf_free(&c->login.user);
	buf_free(&c->login.authzid);
	buf_free_secret(&c->login.password);
	c->login.method = NULL;
}

void client_log_ctx(const struct client *c, struct log_ctx *ctx)
{
	log_ctx_init(ctx);
	log_ctx_set_session(ctx, c->session_id);
}

int backend_send(struct backend_login *bl, const void *data, size_t len)
{
	(void)bl;
	return buf_append(fake.to_backend, data, len);
}

int backend_printf(struct backend_login *bl, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	return backend_send(bl, line, (size_t)n);
}

void backend_start_tls(struct backend_login *bl)
{
	(void)bl;
	fake.tls_to_backend++;
}

void backend_login_fail(struct backend_login *bl, const char *resp_code,
			const char *text, const char *log_reason)
{
	(void)bl;
	fake.fails++;
	fake.fail_resp_code_null = resp_code == NULL;
	str_copy(str_cstr(resp_code), fake.fail_resp_code,
		 sizeof(fake.fail_resp_code));
	str_copy(str_cstr(text), fake.fail_text, sizeof(fake.fail_text));
	str_copy(str_cstr(log_reason), fake.log_reason,
		 sizeof(fake.log_reason));
}

void backend_login_retry(struct backend_login *bl, const char *log_reason)
{
	(void)bl;
	fake.retries++;
	str_copy(str_cstr(log_reason), fake.log_reason,
		 sizeof(fake.log_reason));
}

void backend_login_done(struct backend_login *bl)
{
	(void)bl;
	fake.done++;
}

/* The backend connection is never real here: TLS is what the test says. */
static bool fake_backend_tls;
bool conn_is_tls(const struct conn *c)
{
	(void)c;
	return fake_backend_tls;
}

/* ---- fixtures ------------------------------------------------------------ */

/* Warnings about backends are expected in these tests: keep them out of
 * the test output. */
static void discard_log(enum log_level level, const char *line, void *context)
{
	(void)level;
	(void)line;
	(void)context;
}

/* what setup's greet() sent */
static char greeting[128];

static char backend_name[] = "b1";
static char master_password[] = "m pw";
static char master_user[] = "master";
static char no_master_user[] = "";

struct t {
	struct proxy_config cfg;
	struct client *c;
	struct backend_settings bset;
	struct proxy_backend backend;
	struct backend_login bl;
};

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));

	memset(&fake, 0, sizeof(fake));
	fake.to_backend = buf_new(256, 64 * 1024);
	fake_backend_tls = false;
	proxy.tls = NULL;
	log_set_callback(discard_log, NULL);

	t->cfg.set.max_line_length = 256;
	t->cfg.set.max_bad_commands = 5;
	t->cfg.set.disable_plaintext_auth = true;
	t->c = calloc(1, sizeof(*t->c) + pop3_protocol.state_size);
	t->c->proto_state = t->c + 1;
	t->c->cfg = &t->cfg;
	t->c->proto = &pop3_protocol;
	t->c->trusted = true;
	t->c->state = CLIENT_STATE_PRELOGIN;
	t->c->input = buf_new(256, 4096);
	t->c->output = buf_new(256, 64 * 1024);
	str_copy(STR("SESSIONID0123456"), t->c->session_id,
		 sizeof(t->c->session_id));
	pop3_protocol.greet(t->c);
	str_copy(buf_str(t->c->output), greeting, sizeof(greeting));
	buf_reset(t->c->output);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	pop3_protocol.free(t->c);
	client_login_clear(t->c);
	buf_free(&t->c->input);
	buf_free(&t->c->output);
	free(t->c->backend_user);
	free(t->c->backend_pass);
	free(t->bl.capability);
	buf_free(&fake.to_backend);
	free(t->c);
	free(t);
	return 0;
}

/* Feeds bytes as if they arrived from the client. */
static void feed(struct t *t, const char *s, size_t len)
{
	assert_int_equal(buf_append(t->c->input, s, len), 0);
	pop3_protocol.input(t->c);
}

static void feeds(struct t *t, const char *s)
{
	feed(t, s, strlen(s));
}

/* What the client got since the last call. */
static void expect_output(struct t *t, const char *want)
{
	assert_string_equal(buf_cstr(t->c->output), want);
	buf_reset(t->c->output);
}

#define PLAINTEXT_USER_ERR                                                     \
	"-ERR [AUTH] Plaintext authentication disallowed on non-secure "       \
	"(SSL/TLS) connections.\r\n"

/* ---- greeting, CAPA, STLS, QUIT ------------------------------------------ */

static void test_greeting(void **state)
{
	(void)state;
	assert_string_equal(greeting, "+OK mailring ready.\r\n");
}

static void test_capa(void **state)
{
	struct t *t = *state;
	struct tls_server *dummy = (struct tls_server *)&t->cfg;

	feeds(t, "CAPA\r\n");
	expect_output(t, "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
			 "PIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\n"
			 "SASL PLAIN LOGIN\r\n.\r\n");
	/* a certificate: STLS offered until TLS is on */
	proxy.tls = dummy;
	feeds(t, "capa\r\n");
	expect_output(t, "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
			 "PIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\n"
			 "SASL PLAIN LOGIN\r\n.\r\n");
	/* not secured: no USER, an empty SASL list (as Dovecot) */
	t->c->trusted = false;
	feeds(t, "CAPA\r\n");
	expect_output(t,
		      "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
		      "PIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nSASL\r\n.\r\n");
	t->c->tls = true;
	feeds(t, "CAPA\r\n");
	expect_output(t, "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
			 "PIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\n"
			 "SASL PLAIN LOGIN\r\n.\r\n");
	proxy.tls = NULL;
	assert_int_equal(t->c->bad_commands, 0);
}

static void test_stls(void **state)
{
	struct t *t = *state;

	feeds(t, "STLS\r\n");
	expect_output(t, "-ERR TLS support isn't enabled.\r\n");
	proxy.tls = (struct tls_server *)&t->cfg;
	/* a USER before STLS is forgotten; pipelined plaintext after STLS
	 * is dropped by the core */
	feeds(t, "USER alice\r\nSTLS\r\nPASS x\r\n");
	expect_output(t, "+OK\r\n+OK Begin TLS negotiation now.\r\n");
	assert_int_equal(fake.tls_starts, 1);
	assert_int_equal(t->c->state, CLIENT_STATE_TLS_HANDSHAKE);
	assert_int_equal(t->c->input->len, 0);
	t->c->state = CLIENT_STATE_PRELOGIN;
	t->c->tls = true;
	feeds(t, "PASS x\r\n");
	expect_output(t, "-ERR No username given.\r\n");
	feeds(t, "STLS\r\n");
	expect_output(t, "-ERR TLS is already active.\r\n");
	proxy.tls = NULL;
}

static void test_quit(void **state)
{
	struct t *t = *state;

	feeds(t, "QUIT\r\nCAPA\r\n");
	expect_output(t, "+OK Logging out\r\n");
	assert_int_equal(t->c->state, CLIENT_STATE_CLOSING);
	assert_string_equal(fake.close_reason,
			    "Disconnected: Aborted login by logging out");
}

/* ---- USER / PASS --------------------------------------------------------- */

static void test_user_pass(void **state)
{
	struct t *t = *state;

	/* the password is the rest of the line, spaces included */
	feeds(t, "USER alice\r\nPASS  my secret \r\nSTAT\r\n");
	expect_output(t, "+OK\r\n");
	assert_int_equal(fake.auth_starts, 1);
	assert_int_equal(t->c->state, CLIENT_STATE_AUTH);
	assert_string_equal(buf_cstr(t->c->login.user), "alice");
	assert_string_equal(buf_cstr(t->c->login.password), " my secret ");
	assert_string_equal(t->c->login.method, "PLAIN");
	/* pipelined commands wait for the backend */
	assert_int_equal(t->c->input->len, 6);
	assert_memory_equal(t->c->input->data, "STAT\r\n", 6);
}

static void test_pass_without_user(void **state)
{
	struct t *t = *state;

	feeds(t, "PASS x\r\n");
	expect_output(t, "-ERR No username given.\r\n");
	assert_int_equal(t->c->bad_commands, 1);
	/* USER is needed again after an attempt */
	feeds(t, "USER a\r\nPASS b\r\n");
	expect_output(t, "+OK\r\n");
	t->c->state = CLIENT_STATE_PRELOGIN;
	feeds(t, "PASS b\r\n");
	expect_output(t, "-ERR No username given.\r\n");
}

static void test_plaintext_refused(void **state)
{
	struct t *t = *state;

	t->c->trusted = false;
	feeds(t, "USER a\r\n");
	expect_output(t, PLAINTEXT_USER_ERR);
	feeds(t, "PASS a\r\n");
	expect_output(t, PLAINTEXT_USER_ERR);
	feeds(t, "AUTH PLAIN\r\n");
	expect_output(t, "-ERR [AUTH] Plaintext authentication disabled.\r\n");
	feeds(t, "AUTH\r\n");
	expect_output(t, "+OK\r\n.\r\n");
	assert_int_equal(fake.auth_starts, 0);
	assert_int_equal(t->c->bad_commands, 3);
	/* allowed by configuration */
	t->cfg.set.disable_plaintext_auth = false;
	feeds(t, "USER a\r\n");
	expect_output(t, "+OK\r\n");
}

/* ---- AUTH ---------------------------------------------------------------- */

static void test_auth_list_and_mechs(void **state)
{
	struct t *t = *state;

	feeds(t, "AUTH\r\n");
	expect_output(t, "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
	feeds(t, "AUTH CRAM-MD5\r\n");
	expect_output(t,
		      "-ERR [AUTH] Unsupported authentication mechanism.\r\n");
	assert_int_equal(t->c->bad_commands, 1);
}

static void test_auth_plain_ir(void **state)
{
	struct t *t = *state;

	/* base64("authz\0alice\0p w") */
	feeds(t, "auth plain YXV0aHoAYWxpY2UAcCB3\r\n");
	expect_output(t, "");
	assert_int_equal(fake.auth_starts, 1);
	assert_string_equal(buf_cstr(t->c->login.authzid), "authz");
	assert_string_equal(buf_cstr(t->c->login.user), "alice");
	assert_string_equal(buf_cstr(t->c->login.password), "p w");
	assert_string_equal(t->c->login.method, "PLAIN");
}

static void test_auth_plain_continued(void **state)
{
	struct t *t = *state;

	feeds(t, "AUTH PLAIN\r\n");
	expect_output(t, "+ \r\n");
	/* split across reads */
	feeds(t, "AGFsaWNl");
	feeds(t, "AHBhc3M=\r\n");
	assert_int_equal(fake.auth_starts, 1);
	assert_string_equal(buf_cstr(t->c->login.user), "alice");
	assert_string_equal(buf_cstr(t->c->login.password), "pass");
	assert_int_equal(t->c->login.authzid->len, 0);
}

static void test_auth_plain_errors(void **state)
{
	struct t *t = *state;

	feeds(t, "AUTH PLAIN\r\n*\r\n");
	expect_output(t, "+ \r\n-ERR Authentication aborted by client.\r\n");
	feeds(t, "AUTH PLAIN\r\n!!!!\r\n");
	expect_output(t, "+ \r\n-ERR [AUTH] Invalid base64 in response\r\n");
	feeds(t, "AUTH PLAIN !!!!\r\n");
	expect_output(
	    t, "-ERR [AUTH] Invalid base64 data in initial response\r\n");
	feeds(t, "AUTH PLAIN AGFsaWNl AHBhc3M=\r\n");
	expect_output(
	    t, "-ERR [AUTH] Invalid base64 data in initial response\r\n");
	/* "=" is an empty response: not a valid PLAIN message */
	feeds(t, "AUTH PLAIN =\r\n");
	expect_output(t, "-ERR [AUTH] Authentication failed.\r\n");
	/* no authcid: base64("\0\0pass") */
	feeds(t, "AUTH PLAIN AABwYXNz\r\n");
	expect_output(t, "-ERR [AUTH] Authentication failed.\r\n");
	assert_int_equal(fake.auth_starts, 0);
	assert_null(t->c->login.user);
	/* and back to commands */
	feeds(t, "CAPA\r\n");
	assert_true(strncmp(buf_cstr(t->c->output), "+OK\r\nCAPA\r\n", 11) ==
		    0);
}

static void test_auth_login(void **state)
{
	struct t *t = *state;

	feeds(t, "AUTH LOGIN\r\n");
	expect_output(t, "+ VXNlcm5hbWU6\r\n");
	feeds(t, "YWxpY2U=\r\n");
	expect_output(t, "+ UGFzc3dvcmQ6\r\n");
	feeds(t, "cCBhIHM=\r\nSTAT\r\n");
	expect_output(t, "");
	assert_int_equal(fake.auth_starts, 1);
	assert_string_equal(buf_cstr(t->c->login.user), "alice");
	assert_string_equal(buf_cstr(t->c->login.password), "p a s");
	assert_string_equal(t->c->login.method, "LOGIN");
	assert_int_equal(t->c->input->len, 6);
}

static void test_auth_login_ir(void **state)
{
	struct t *t = *state;

	feeds(t, "AUTH LOGIN YWxpY2U=\r\n");
	expect_output(t, "+ UGFzc3dvcmQ6\r\n");
	feeds(t, "*\r\n");
	expect_output(t, "-ERR Authentication aborted by client.\r\n");
	/* an empty initial response asks for the user name (Dovecot) */
	feeds(t, "AUTH LOGIN =\r\n");
	expect_output(t, "+ VXNlcm5hbWU6\r\n");
}

/* ---- errors and limits --------------------------------------------------- */

static void test_unknown_and_bad_limit(void **state)
{
	struct t *t = *state;

	feeds(t, "NOOP\r\n");
	expect_output(t, "-ERR Unknown command.\r\n");
	feeds(t, "STAT\r\n");
	expect_output(t, "-ERR Unknown command.\r\n");
	feeds(t, "APOP a b\r\n");
	expect_output(t, "-ERR APOP not enabled.\r\n");
	feed(t, "A\0B\r\n", 5);
	expect_output(t, "-ERR Unknown command.\r\n");
	assert_int_equal(t->c->bad_commands, 4);
	assert_int_equal(t->c->state, CLIENT_STATE_PRELOGIN);
	/* the fifth (max_bad_commands) closes; the rest is not read */
	feeds(t, "\r\nCAPA\r\n");
	expect_output(t, "-ERR Unknown command.\r\n"
			 "-ERR Too many invalid bad commands.\r\n");
	assert_int_equal(t->c->state, CLIENT_STATE_CLOSING);
	assert_string_equal(fake.close_reason,
			    "Disconnected: Too many bad commands");
}

static void test_line_too_long(void **state)
{
	struct t *t = *state;
	char line[400];

	memset(line, 'x', sizeof(line));
	feed(t, line, sizeof(line));
	expect_output(t, "-ERR Input buffer full, aborting\r\n");
	assert_int_equal(t->c->state, CLIENT_STATE_CLOSING);
	assert_string_equal(fake.close_reason,
			    "Disconnected: Input buffer full");
}

static void test_sasl_line_too_long(void **state)
{
	struct t *t = *state;
	char line[400];

	feeds(t, "AUTH PLAIN\r\n");
	expect_output(t, "+ \r\n");
	memset(line, 'A', sizeof(line));
	feed(t, line, sizeof(line));
	expect_output(t, "-ERR Input buffer full, aborting\r\n");
	assert_int_equal(t->c->state, CLIENT_STATE_CLOSING);
	assert_null(t->c->login.password);
}

/* ---- results ------------------------------------------------------------- */

static void test_login_failed(void **state)
{
	struct t *t = *state;

	pop3_protocol.login_failed(t->c, AUTH_RESULT_FAILED,
				   "AUTHENTICATIONFAILED",
				   "Authentication failed.");
	expect_output(t, "-ERR [AUTH] Authentication failed.\r\n");
	pop3_protocol.login_failed(t->c, AUTH_RESULT_UNKNOWN_USER,
				   "AUTHENTICATIONFAILED",
				   "Authentication failed.");
	expect_output(t, "-ERR [AUTH] Authentication failed.\r\n");
	pop3_protocol.login_failed(t->c, AUTH_RESULT_TEMPFAIL, "UNAVAILABLE",
				   "Account is temporarily unavailable.");
	expect_output(
	    t, "-ERR [SYS/TEMP] Account is temporarily unavailable.\r\n");
	/* the backend's refusal, passed through verbatim */
	pop3_protocol.login_failed(t->c, AUTH_RESULT_TEMPFAIL, NULL,
				   "[AUTH] Password expired.");
	expect_output(t, "-ERR [AUTH] Password expired.\r\n");
}

static void test_login_succeeded_and_bye(void **state)
{
	struct t *t = *state;
	struct buf *out = buf_new(64, 512);

	pop3_protocol.login_succeeded(t->c, &t->bl);
	expect_output(t, "+OK Logged in.\r\n");
	t->bl.capability = xstrdup("+OK Welcome, alice.");
	pop3_protocol.login_succeeded(t->c, &t->bl);
	expect_output(t, "+OK Welcome, alice.\r\n");

	pop3_protocol.bye_line(t->c, "Server shutting down.", out);
	assert_string_equal(buf_cstr(out),
			    "-ERR [SYS/TEMP] Server shutting down.\r\n");
	buf_free(&out);
}

/* ---- the backend dialogue ------------------------------------------------ */

static void backend_setup(struct t *t, unsigned int ssl, bool trusted,
			  bool master)
{
	t->bset.name = backend_name;
	t->bset.ssl = ssl;
	t->bset.trusted = trusted;
	t->bset.master_user = master ? master_user : no_master_user;
	t->bset.master_password = master_password;
	t->backend.set = &t->bset;
	t->bl.client = t->c;
	t->bl.backend = &t->backend;
	str_copy(STR("b1"), t->bl.backend_name, sizeof(t->bl.backend_name));
	t->c->backend_user = xstrdup("alice");
	t->c->backend_pass = xstrdup("p\r\nQUIT");
	t->c->rip.u.sin.sin_family = AF_INET;
	t->c->rip.u.sin.sin_port = htons(40000);
	t->c->rip.u.sin.sin_addr.s_addr = htonl(0xc0000207); /* 192.0.2.7 */
	t->c->rip.len = sizeof(struct sockaddr_in);
	pop3_protocol.backend_start(&t->bl);
}

static void backend_says(struct t *t, const char *line)
{
	pop3_protocol.backend_line(&t->bl, str_cstr(line));
}

static void expect_backend(const char *want)
{
	assert_string_equal(buf_cstr(fake.to_backend), want);
	buf_reset(fake.to_backend);
}

static void test_backend_plain_login(void **state)
{
	struct t *t = *state;

	backend_setup(t, BACKEND_SSL_NO, false, false);
	backend_says(t, "+OK Dovecot ready.");
	/* base64("\0alice\0p\r\nQUIT"): a CR LF in a password is harmless */
	expect_backend("AUTH PLAIN AGFsaWNlAHANClFVSVQ=\r\n");
	backend_says(t, "+OK Logged in.");
	assert_int_equal(fake.done, 1);
	assert_string_equal(t->bl.capability, "+OK Logged in.");
	/* later lines belong to the relay */
	backend_says(t, "+OK 0 0");
	assert_int_equal(fake.done, 1);
}

static void test_backend_master_user(void **state)
{
	struct t *t = *state;

	backend_setup(t, BACKEND_SSL_NO, false, true);
	backend_says(t, "+OK Dovecot ready.");
	/* base64("alice\0master\0m pw") */
	expect_backend("AUTH PLAIN YWxpY2UAbWFzdGVyAG0gcHc=\r\n");
}

static void test_backend_stls_xclient(void **state)
{
	struct t *t = *state;

	backend_setup(t, BACKEND_SSL_STARTTLS, true, false);
	backend_says(t, "+OK [XCLIENT] Dovecot ready.");
	expect_backend("STLS\r\n");
	backend_says(t, "+OK Begin TLS negotiation now.");
	assert_int_equal(fake.tls_to_backend, 1);
	expect_backend("");
	fake_backend_tls = true;
	pop3_protocol.backend_tls_ready(&t->bl);
	expect_backend("XCLIENT ADDR=192.0.2.7 PORT=40000 "
		       "SESSION=SESSIONID0123456 TTL=5\r\n");
	/* a refused XCLIENT is logged; the login goes on */
	backend_says(t, "-ERR You're not allowed to use XCLIENT");
	expect_backend("AUTH PLAIN AGFsaWNlAHANClFVSVQ=\r\n");
	backend_says(t, "+OK Logged in.");
	assert_int_equal(fake.done, 1);
}

static void test_backend_stls_injection(void **state)
{
	struct t *t = *state;

	backend_setup(t, BACKEND_SSL_STARTTLS, false, false);
	backend_says(t, "+OK ready");
	backend_says(t, "+OK go");
	/* a line before the handshake finished was sent in plaintext */
	backend_says(t, "+OK Logged in.");
	assert_int_equal(fake.retries, 1);
	assert_int_equal(fake.done, 0);
}

static void test_backend_failures(void **state)
{
	struct t *t = *state;

	backend_setup(t, BACKEND_SSL_NO, false, false);
	backend_says(t, "* OK IMAP ready");
	assert_int_equal(fake.retries, 1);
	assert_string_equal(fake.log_reason,
			    "unexpected greeting: * OK IMAP ready");

	t->bl.proto_step = 0;
	backend_says(t, "+OK ready");
	buf_reset(fake.to_backend);
	backend_says(t, "-ERR [AUTH] Authentication failed.");
	assert_int_equal(fake.fails, 1);
	assert_true(fake.fail_resp_code_null);
	assert_string_equal(fake.fail_text, "[AUTH] Authentication failed.");
	assert_string_equal(
	    fake.log_reason,
	    "backend refused login: -ERR [AUTH] Authentication failed.");

	/* control bytes from a backend never reach the client raw */
	t->bl.proto_step = POP3_BSTEP_AUTH;
	backend_says(t, "-ERR bad\x1b[0m");
	assert_string_equal(fake.fail_text, "bad\\x1b[0m");

	t->bl.proto_step = POP3_BSTEP_AUTH;
	backend_says(t, "-ERR");
	assert_string_equal(fake.fail_text, "Authentication failed.");

	t->bl.proto_step = POP3_BSTEP_AUTH;
	backend_says(t, "+ ");
	assert_false(fake.fail_resp_code_null);
	assert_string_equal(fake.fail_resp_code, "UNAVAILABLE");
	assert_string_equal(fake.fail_text,
			    "Account is temporarily unavailable.");

	/* "+OKAY" is not "+OK" */
	t->bl.proto_step = 0;
	fake.retries = 0;
	backend_says(t, "+OKAY");
	assert_int_equal(fake.retries, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_greeting, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_capa, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stls, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_quit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_user_pass, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pass_without_user, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_plaintext_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_auth_list_and_mechs, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_auth_plain_ir, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_auth_plain_continued, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_auth_plain_errors, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_auth_login, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_auth_login_ir, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_and_bad_limit, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_line_too_long, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_sasl_line_too_long, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_login_failed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_login_succeeded_and_bye, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_backend_plain_login, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_backend_master_user, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_backend_stls_xclient, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_backend_stls_injection, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_backend_failures, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
