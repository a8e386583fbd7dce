/*
 * The POP3 login at the backend, after the client authenticated with us,
 * one step at a time (each answer decides the next line):
 *
 *   <- +OK [XCLIENT] Dovecot ready.
 *   -> STLS                                  (ssl = starttls)   <- +OK
 *      ... TLS handshake, no new greeting (RFC 2595) ...
 *   -> XCLIENT ADDR=<ip> PORT=<port> SESSION=<id> TTL=5   (trusted = yes)
 *   <- +OK Updated              (a -ERR is only logged: we go on)
 *   -> AUTH PLAIN <base64>                   (RFC 5034 initial response)
 *   <- +OK Logged in.           -> relay; this line goes to the client
 *   <- -ERR [AUTH] ...          -> passed through to the client
 *
 * XCLIENT is Dovecot's way to learn the real client address from a proxy
 * in its login_trusted_networks (it then logs rip=<client> and applies its
 * per-IP limits to the client, not to us); TTL stops proxy loops. A Dovecot
 * that trusts us says so with "[XCLIENT]" in its greeting.
 *
 * Credentials go as SASL PLAIN, base64, never as USER/PASS: no byte of a
 * password (spaces, 8-bit, even CR) can change how the backend splits the
 * line. With a master user the authorisation identity is the user and the
 * master credentials authenticate (Dovecot's master passdb).
 *
 * Failures: a backend that is not speaking POP3 or refuses STLS is
 * "unusable" (backend_login_retry: the next candidate, if any); a refused
 * login is final and its -ERR text goes to the client through
 * login_failed(resp_code = NULL), the convention described in
 * pop3_client.c.
 */
#include "proxy.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "pop3_proxy.h"
#include "base64.h"
#include "str.h"
#include "xmalloc.h"


/* Hop limit against proxy loops (Dovecot's proxy_ttl default). */
#define POP3_PROXY_TTL 5
/* RFC 2449: a response line is at most 512 octets; what the client may
 * see of a backend's text, after sanitising, stays below client_printf's
 * line limit. */
#define POP3_BACKEND_TEXT_MAX 512

enum pop3_backend_step {
	POP3_BSTEP_GREETING = 0, /* waiting for "+OK" (0: backend.c retries
				    a backend that closes before this) */
	POP3_BSTEP_STLS,         /* sent STLS, waiting for "+OK" */
	POP3_BSTEP_TLS,          /* TLS handshake to the backend running */
	POP3_BSTEP_XCLIENT,      /* sent XCLIENT, waiting for its answer */
	POP3_BSTEP_AUTH,         /* sent AUTH PLAIN, waiting for the verdict */
	POP3_BSTEP_DONE,         /* logged in: the relay takes over */
};

/* "+OK" or "-ERR" alone or followed by a space (RFC 1939: the status
 * indicator is followed by optional text). */
static bool is_status(struct str line, struct str status)
{
	if (!str_has_prefix_nocase(line, status))
		return false;
	return line.len == status.len || line.p[status.len] == ' ';
}

/* The text after the status indicator. */
static struct str status_text(struct str line, size_t status_len)
{
	return str_trim(str_slice(line, status_len, line.len));
}

static void backend_log_ctx_for(const struct backend_login *bl,
				struct log_ctx *ctx)
{
	client_log_ctx(bl->client, ctx);
	log_ctx_set_backend(ctx, bl->backend_name);
}

/* The backend does not speak POP3 as we expect: try another one. */
static void retry_with_line(struct backend_login *bl, const char *what,
			    struct str line)
{
	char safe[200], reason[300];

	str_sanitize(line, safe, sizeof(safe));
	str_printf(reason, sizeof(reason), "%s: %s", what, safe);
	backend_login_retry(bl, reason);
}

static void fail_unavailable(struct backend_login *bl, const char *reason)
{
	backend_login_fail(bl, "UNAVAILABLE",
			   "Account is temporarily unavailable.", reason);
}

/* AUTH PLAIN with the SASL response as initial response. Every buffer
 * that held the password or its base64 is wiped (backend.c wipes its
 * output buffer as it is sent). */
static void send_auth(struct backend_login *bl)
{
	const struct client *c = bl->client;
	const struct backend_settings *bs = bl->backend->set;
	bool master = bs->master_user != NULL && bs->master_user[0] != '\0';
	struct buf *raw = buf_new(256, 16 * 1024);
	struct buf *cmd = buf_new(512, 24 * 1024);
	int ret = 0;

	if (master) {
		ret |= buf_append_cstr(raw, c->backend_user);
		ret |= buf_append_byte(raw, '\0');
		ret |= buf_append_cstr(raw, bs->master_user);
		ret |= buf_append_byte(raw, '\0');
		ret |= buf_append_cstr(raw, bs->master_password != NULL
						? bs->master_password
						: "");
	} else {
		ret |= buf_append_byte(raw, '\0');
		ret |= buf_append_cstr(raw, c->backend_user);
		ret |= buf_append_byte(raw, '\0');
		ret |= buf_append_cstr(
		    raw, c->backend_pass != NULL ? c->backend_pass : "");
	}
	ret |= buf_append_cstr(cmd, "AUTH PLAIN ");
	ret |= base64_encode(raw->data, raw->len, cmd);
	ret |= buf_append_cstr(cmd, "\r\n");
	buf_free_secret(&raw);
	if (ret != 0) {
		buf_free_secret(&cmd);
		fail_unavailable(bl, "credentials too long for the AUTH line");
		return;
	}
	bl->proto_step = POP3_BSTEP_AUTH;
	ret = backend_send(bl, cmd->data, cmd->len);
	buf_free_secret(&cmd);
	if (ret < 0)
		fail_unavailable(bl, "backend output buffer full");
}

static void send_xclient(struct backend_login *bl)
{
	const struct client *c = bl->client;
	char ip[NET_ADDR_STR_MAX];
	int ret;

	bl->proto_step = POP3_BSTEP_XCLIENT;
	if (c->rip.u.sa.sa_family == AF_INET ||
	    c->rip.u.sa.sa_family == AF_INET6) {
		ret = backend_printf(
		    bl, "XCLIENT ADDR=%s PORT=%u SESSION=%s TTL=%u\r\n",
		    net_addr_ip_str(&c->rip, ip, sizeof(ip)),
		    (unsigned int)net_addr_port(&c->rip), c->session_id,
		    POP3_PROXY_TTL);
	} else {
		/* PROXY "LOCAL" or a unix socket: no address to forward,
		 * and Dovecot refuses an ADDR it cannot parse */
		ret = backend_printf(bl, "XCLIENT SESSION=%s TTL=%u\r\n",
				     c->session_id, POP3_PROXY_TTL);
	}
	if (ret < 0)
		fail_unavailable(bl, "backend output buffer full");
}

/* After the greeting, or after STLS and the handshake. */
static void send_login(struct backend_login *bl)
{
	if (bl->backend->set->trusted)
		send_xclient(bl);
	else
		send_auth(bl);
}

static void on_greeting(struct backend_login *bl, struct str line)
{
	if (!is_status(line, STR("+OK"))) {
		retry_with_line(bl, "unexpected greeting", line);
		return;
	}
	if (bl->backend->set->trusted &&
	    !str_has_prefix_nocase(status_text(line, 3), STR("[XCLIENT]"))) {
		/* The backend will ignore XCLIENT and log us as the client:
		 * per-IP limits then hit the proxy. Say it, rate-limited,
		 * and go on (other servers may accept XCLIENT silently). */
		static struct log_ratelimit rl = LOG_RATELIMIT_INIT(60000, 1);
		struct log_ctx ctx;
		backend_log_ctx_for(bl, &ctx);
		log_emit(
		    LOG_LEVEL_WARNING, &ctx, &rl,
		    "proxy: backend is trusted = yes but does not offer "
		    "XCLIENT: is the proxy in its login_trusted_networks?");
	}
	if (bl->backend->set->ssl == BACKEND_SSL_STARTTLS &&
	    !conn_is_tls(bl->conn)) {
		bl->proto_step = POP3_BSTEP_STLS;
		if (backend_send(bl, "STLS\r\n", 6) < 0)
			fail_unavailable(bl, "backend output buffer full");
		return;
	}
	send_login(bl);
}

static void on_xclient_reply(struct backend_login *bl, struct str line)
{
	if (!is_status(line, STR("+OK"))) {
		/* the login still works, only the backend's logs and
		 * limits see the proxy instead of the client */
		char safe[200];
		struct log_ctx ctx;
		str_sanitize(line, safe, sizeof(safe));
		backend_log_ctx_for(bl, &ctx);
		log_ctx_warnx(&ctx, "proxy: backend refused XCLIENT: %s", safe);
	}
	send_auth(bl);
}

static void on_auth_reply(struct backend_login *bl, struct str line)
{
	char safe[200], reason[300];

	if (is_status(line, STR("+OK"))) {
		char text[POP3_BACKEND_TEXT_MAX];
		/* the client gets the backend's own "+OK ..." line, like
		 * from Dovecot's proxy (pop3_client.c's login_succeeded) */
		str_sanitize(line, text, sizeof(text));
		free(bl->capability);
		bl->capability = xstrdup(text);
		bl->proto_step = POP3_BSTEP_DONE;
		backend_login_done(bl);
		return;
	}
	str_sanitize(line, safe, sizeof(safe));
	if (is_status(line, STR("-ERR"))) {
		char text[POP3_BACKEND_TEXT_MAX];
		struct str t = status_text(line, 4);
		/* pass the refusal through: its [AUTH] or [SYS/TEMP] tells
		 * the client whether to ask for a new password */
		str_sanitize(t.len > 0 ? t : STR("Authentication failed."),
			     text, sizeof(text));
		str_printf(reason, sizeof(reason), "backend refused login: %s",
			   safe);
		backend_login_fail(bl, NULL, text, reason);
		return;
	}
	/* Neither +OK nor -ERR (a "+ " challenge would mean the backend
	 * ignored our initial response): out of step, and nothing the
	 * client could fix with another password. */
	str_printf(reason, sizeof(reason), "unexpected answer to AUTH: %s",
		   safe);
	fail_unavailable(bl, reason);
}

void pop3_backend_start(struct backend_login *bl)
{
	bl->proto_step = POP3_BSTEP_GREETING;
}

void pop3_backend_tls_ready(struct backend_login *bl)
{
	/* RFC 2595: no new greeting after STLS; capabilities do not
	 * matter to us, so go straight on */
	send_login(bl);
}

void pop3_backend_line(struct backend_login *bl, struct str line)
{
	switch ((enum pop3_backend_step)bl->proto_step) {
	case POP3_BSTEP_GREETING:
		on_greeting(bl, line);
		return;
	case POP3_BSTEP_STLS:
		if (!is_status(line, STR("+OK"))) {
			retry_with_line(bl, "STLS refused", line);
			return;
		}
		bl->proto_step = POP3_BSTEP_TLS;
		backend_start_tls(bl);
		return;
	case POP3_BSTEP_TLS:
		/* bytes sent in plaintext after "+OK" to STLS must never be
		 * taken as if they came through TLS */
		retry_with_line(bl, "data after the STLS answer", line);
		return;
	case POP3_BSTEP_XCLIENT:
		on_xclient_reply(bl, line);
		return;
	case POP3_BSTEP_AUTH:
		on_auth_reply(bl, line);
		return;
	case POP3_BSTEP_DONE:
		return;
	}
}
