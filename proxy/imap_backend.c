/*
 * The IMAP login at the backend, after the client authenticated with us:
 *
 *   <- * OK [CAPABILITY ...] greeting
 *   -> S STARTTLS            (ssl = starttls)        <- S OK
 *   -> I ID ("x-session-id" ... "x-proxy-ttl" "5" <client's ID fields>)
 *   -> L AUTHENTICATE PLAIN <base64>                 (SASL-IR)
 *   <- L OK [CAPABILITY ...] Logged in
 *
 * ID is sent only to backends that trust us (trusted = yes): Dovecot takes
 * x-originating-ip and friends from login_trusted_networks and logs the real
 * client. Credentials travel as base64 (SASL PLAIN), so no quoting of user
 * names or passwords can ever go wrong; without SASL-IR the response goes
 * after the "+" continuation.
 */
#include "imap_proxy.h"

#include <string.h>

#include "base64.h"
#include "str.h"
#include "xmalloc.h"

/* Hop limit against proxy loops (Dovecot's proxy_ttl). */
#define IMAP_PROXY_TTL 5

enum imap_backend_step {
	IMAP_BSTEP_GREETING = 0, /* waiting for "* OK" */
	IMAP_BSTEP_CAPABILITY,   /* greeting had no capabilities: asked */
	IMAP_BSTEP_STARTTLS,     /* sent STARTTLS */
	IMAP_BSTEP_AUTH_CONT,    /* AUTHENTICATE without SASL-IR: waiting "+" */
	IMAP_BSTEP_LOGIN,        /* waiting for the tagged answer of L */
	IMAP_BSTEP_DONE,
};

static bool has_capability(struct str caps, struct str cap)
{
	struct str rest = caps, word;
	while (rest.len > 0) {
		str_split(rest, ' ', &word, &rest);
		if (str_eq_nocase(word, cap))
			return true;
	}
	return false;
}

/* Extracts "CAPABILITY ..." from "[CAPABILITY ...] text" at the start of s. */
static bool resp_code_capability(struct str s, struct str *caps_r)
{
	if (!str_has_prefix_nocase(s, STR("[CAPABILITY ")))
		return false;
	s = str_slice(s, strlen("[CAPABILITY "), s.len);
	ptrdiff_t end = str_index(s, ']');
	if (end < 0)
		return false;
	*caps_r = str_slice(s, 0, (size_t)end);
	return true;
}

static void remember_capability(struct backend_login *bl, struct str caps)
{
	free(bl->capability);
	bl->capability = xstrndup(caps.p, caps.len);
}

static void send_id(struct backend_login *bl)
{
	struct client *c = bl->client;
	char rip[NET_ADDR_STR_MAX], lip[NET_ADDR_STR_MAX];
	struct buf *cmd = buf_new(512, 4096);

	buf_printf(cmd, "I ID (\"x-session-id\" \"%s\" \"x-originating-ip\" \"%s\" "
		   "\"x-originating-port\" \"%u\" \"x-connected-ip\" \"%s\" "
		   "\"x-connected-port\" \"%u\" \"x-proxy-ttl\" \"%u\"",
		   c->session_id, net_addr_ip_str(&c->rip, rip, sizeof(rip)),
		   net_addr_port(&c->rip), net_addr_ip_str(&c->lip, lip, sizeof(lip)),
		   net_addr_port(&c->lip), IMAP_PROXY_TTL);
	if (c->id_fields != NULL) {
		buf_append_byte(cmd, ' ');
		buf_append_cstr(cmd, c->id_fields);
	}
	buf_append_cstr(cmd, ")\r\n");
	backend_send(bl, cmd->data, cmd->len);
	buf_free(&cmd);
}

/* base64 of the SASL PLAIN response: authzid NUL authcid NUL password */
static struct buf *plain_response(struct backend_login *bl)
{
	struct client *c = bl->client;
	const struct backend_settings *bs = bl->backend->set;
	struct buf *raw = buf_new(256, 16384);
	struct buf *b64 = buf_new(512, 32768);
	bool master = bs->master_user != NULL && bs->master_user[0] != '\0';

	if (master) {
		buf_append_cstr(raw, c->backend_user);
		buf_append_byte(raw, '\0');
		buf_append_cstr(raw, bs->master_user);
		buf_append_byte(raw, '\0');
		buf_append_cstr(raw, bs->master_password);
	} else {
		buf_append_byte(raw, '\0');
		buf_append_cstr(raw, c->backend_user);
		buf_append_byte(raw, '\0');
		buf_append_cstr(raw, c->backend_pass != NULL ? c->backend_pass : "");
	}
	base64_encode(raw->data, raw->len, b64);
	buf_free_secret(&raw);
	return b64;
}

static void send_login(struct backend_login *bl)
{
	struct str caps = str_cstr(bl->capability);
	struct buf *resp = plain_response(bl);
	struct buf *cmd = buf_new(resp->len + 64, resp->len + 64);

	if (bl->backend->set->trusted)
		send_id(bl);
	if (has_capability(caps, STR("SASL-IR"))) {
		buf_append_cstr(cmd, "L AUTHENTICATE PLAIN ");
		buf_append(cmd, resp->data, resp->len);
		buf_append_cstr(cmd, "\r\n");
		bl->proto_step = IMAP_BSTEP_LOGIN;
	} else {
		buf_append_cstr(cmd, "L AUTHENTICATE PLAIN\r\n");
		bl->proto_step = IMAP_BSTEP_AUTH_CONT;
	}
	backend_send(bl, cmd->data, cmd->len);
	buf_free_secret(&cmd);
	buf_free_secret(&resp);
}

static void after_greeting(struct backend_login *bl)
{
	if (bl->backend->set->ssl == BACKEND_SSL_STARTTLS && !conn_is_tls(bl->conn)) {
		backend_send(bl, "S STARTTLS\r\n", 12);
		bl->proto_step = IMAP_BSTEP_STARTTLS;
		return;
	}
	send_login(bl);
}

void imap_backend_start(struct backend_login *bl)
{
	bl->proto_step = IMAP_BSTEP_GREETING;
}

void imap_backend_tls_ready(struct backend_login *bl)
{
	/* capabilities may differ over TLS: ask again */
	xfree(&bl->capability);
	backend_send(bl, "C CAPABILITY\r\n", 14);
	bl->proto_step = IMAP_BSTEP_CAPABILITY;
}

static void fail_with_line(struct backend_login *bl, const char *what,
			   struct str line)
{
	char safe[200], reason[300];
	str_sanitize(line, safe, sizeof(safe));
	str_printf(reason, sizeof(reason), "%s: %s", what, safe);
	backend_login_retry(bl, reason);
}

/* "L NO [CODE] text": pass the backend's answer through to the client. */
static void login_refused(struct backend_login *bl, struct str rest)
{
	char code[64] = "", text[256], safe[200], reason[300];
	struct str t = rest;

	if (t.len > 0 && t.p[0] == '[') {
		ptrdiff_t end = str_index(t, ']');
		if (end > 1 && (size_t)end < sizeof(code)) {
			str_copy(str_slice(t, 1, (size_t)end - 1), code, sizeof(code));
			t = str_trim(str_slice(t, (size_t)end + 1, t.len));
		}
	}
	/* only printable ASCII reaches the client */
	str_sanitize(t, text, sizeof(text));
	str_sanitize(rest, safe, sizeof(safe));
	str_printf(reason, sizeof(reason), "backend refused login: %s", safe);
	backend_login_fail(bl, code[0] != '\0' ? code : NULL,
			   text[0] != '\0' ? text : "Authentication failed.",
			   reason);
}

void imap_backend_line(struct backend_login *bl, struct str line)
{
	struct str caps;

	switch ((enum imap_backend_step)bl->proto_step) {
	case IMAP_BSTEP_GREETING:
		if (!str_has_prefix_nocase(line, STR("* OK"))) {
			fail_with_line(bl, "unexpected greeting", line);
			return;
		}
		if (resp_code_capability(str_trim(str_slice(line, 4, line.len)), &caps)) {
			remember_capability(bl, caps);
			after_greeting(bl);
		} else {
			backend_send(bl, "C CAPABILITY\r\n", 14);
			bl->proto_step = IMAP_BSTEP_CAPABILITY;
		}
		return;
	case IMAP_BSTEP_CAPABILITY:
		if (str_has_prefix_nocase(line, STR("* CAPABILITY "))) {
			remember_capability(bl, str_slice(line, 13, line.len));
			return;
		}
		if (str_has_prefix_nocase(line, STR("C OK"))) {
			if (bl->capability == NULL)
				remember_capability(bl, STR("IMAP4rev1"));
			if (conn_is_tls(bl->conn))
				send_login(bl);
			else
				after_greeting(bl);
			return;
		}
		if (str_has_prefix_nocase(line, STR("C "))) {
			fail_with_line(bl, "CAPABILITY failed", line);
			return;
		}
		return;
	case IMAP_BSTEP_STARTTLS:
		if (str_has_prefix_nocase(line, STR("S OK"))) {
			backend_start_tls(bl);
			return;
		}
		if (str_has_prefix_nocase(line, STR("S "))) {
			fail_with_line(bl, "STARTTLS refused", line);
			return;
		}
		return;
	case IMAP_BSTEP_AUTH_CONT:
		if (line.len >= 1 && line.p[0] == '+') {
			struct buf *resp = plain_response(bl);
			buf_append_cstr(resp, "\r\n");
			backend_send(bl, resp->data, resp->len);
			buf_free_secret(&resp);
			bl->proto_step = IMAP_BSTEP_LOGIN;
			return;
		}
		/* an untagged line, or an ID answer: keep waiting */
		if (str_has_prefix_nocase(line, STR("L "))) {
			login_refused(bl, str_trim(str_slice(line, 4, line.len)));
			return;
		}
		return;
	case IMAP_BSTEP_LOGIN:
		if (str_has_prefix_nocase(line, STR("* CAPABILITY "))) {
			remember_capability(bl, str_slice(line, 13, line.len));
			return;
		}
		if (str_has_prefix_nocase(line, STR("L OK"))) {
			if (resp_code_capability(str_trim(str_slice(line, 4, line.len)), &caps))
				remember_capability(bl, caps);
			bl->proto_step = IMAP_BSTEP_DONE;
			backend_login_done(bl);
			return;
		}
		if (str_has_prefix_nocase(line, STR("L NO")) ||
		    str_has_prefix_nocase(line, STR("L BAD"))) {
			size_t skip = str_has_prefix_nocase(line, STR("L NO")) ? 4 : 5;
			login_refused(bl, str_trim(str_slice(line, skip, line.len)));
			return;
		}
		/* "* ID ...", "I OK ...", other untagged lines: ignore */
		return;
	case IMAP_BSTEP_DONE:
		return;
	}
}
