/*
 * IMAP before login: what imap-login does in Dovecot. Answers use Dovecot's
 * wording and response codes, so clients and admins see the familiar.
 *
 * The backend half of the login (imap_backend.c) shares this state.
 */
#include "imap_proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "str.h"
#include "xmalloc.h"

/* Bounds of what a client may send in ID: field count and bytes kept. */
#define IMAP_ID_MAX_FIELDS 30
#define IMAP_ID_MAX_BYTES 1024
/* SASL responses are one line of base64 */
#define SASL_LINE_MAX 8192

static void imap_send_capability_list(struct client *c, struct buf *out)
{
	buf_append_cstr(out, "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+");
	if (proxy.tls != NULL && !c->tls)
		buf_append_cstr(out, " STARTTLS");
	if (client_is_secured(c))
		buf_append_cstr(out, " AUTH=PLAIN AUTH=LOGIN");
	else
		buf_append_cstr(out, " LOGINDISABLED");
}

static void imap_greet(struct client *c)
{
	struct imap_client_state *st = c->proto_state;
	struct imap_parser_limits limits = {
		.max_line_len = c->cfg->set.max_line_length,
		.max_literal_size = c->cfg->set.max_literal_size,
		.max_list_depth = 2,
		.max_args = 2 * IMAP_ID_MAX_FIELDS + 8,
		/* UTF-8 passwords come quoted from real clients */
		.allow_8bit_quoted = true,
	};
	struct buf *line = buf_new(256, 1024);

	st->parser = imap_parser_new(&limits);
	buf_append_cstr(line, "* OK [CAPABILITY ");
	imap_send_capability_list(c, line);
	buf_append_cstr(line, "] " IMAP_GREETING "\r\n");
	client_send(c, line->data, line->len);
	buf_free(&line);
}

static void imap_reply(struct client *c, struct str tag, const char *text)
{
	char line[1024];
	int n = str_printf(line, sizeof(line), "%.*s %s\r\n", STR_FMT(tag), text);
	if (n > 0)
		client_send(c, line, (size_t)n);
}

static void imap_bad_command(struct client *c, struct str tag,
			     const char *text)
{
	c->bad_commands++;
	if (c->bad_commands >= c->cfg->set.max_bad_commands) {
		client_send_str(c, "* BYE Too many invalid IMAP commands.\r\n");
		client_close_after_output(c, "Disconnected: Too many invalid commands");
		return;
	}
	imap_reply(c, tag.len > 0 ? tag : STR("*"), text);
}

static void imap_set_tag(struct imap_client_state *st, struct str tag)
{
	/* a valid atom, bounded by max_line_length like the whole line */
	free(st->tag);
	st->tag = xstrndup(tag.p, tag.len);
}

/* ---- commands ------------------------------------------------------------ */

static void cmd_capability(struct client *c, const struct imap_command *cmd)
{
	struct buf *line = buf_new(256, 1024);
	buf_append_cstr(line, "* CAPABILITY ");
	imap_send_capability_list(c, line);
	buf_append_cstr(line, "\r\n");
	buf_printf(line, "%.*s OK Pre-login capabilities listed, post-login capabilities have more.\r\n",
		   STR_FMT(cmd->tag));
	client_send(c, line->data, line->len);
	buf_free(&line);
}

static void cmd_starttls(struct client *c, const struct imap_command *cmd)
{
	if (c->tls) {
		imap_reply(c, cmd->tag, "BAD TLS is already active.");
		return;
	}
	if (proxy.tls == NULL) {
		imap_reply(c, cmd->tag, "BAD TLS support isn't enabled.");
		return;
	}
	imap_reply(c, cmd->tag, "OK Begin TLS negotiation now.");
	client_start_tls(c);
}

/* Appends s as a quoted string, with every byte that could end the string
 * or the command (quotes, backslashes, controls, 8-bit) replaced by '_'. */
static int append_id_quoted(struct buf *out, struct str s)
{
	if (buf_append_byte(out, '"') < 0)
		return -1;
	for (size_t i = 0; i < s.len; i++) {
		char ch = s.p[i];
		if (ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\')
			ch = '_';
		if (buf_append_byte(out, (uint8_t)ch) < 0)
			return -1;
	}
	return buf_append_byte(out, '"');
}

/* Keeps the client's ID fields as `"key" "value"` pairs for the backend
 * (bounded in count and bytes), so Roundcube-style clients are seen by the
 * backend as they are; nothing the client sends can break out of the
 * backend's ID command, and the proxy's own x-* fields cannot be forged. */
static void cmd_id(struct client *c, const struct imap_command *cmd)
{
	struct buf *kept = buf_new(64, IMAP_ID_MAX_BYTES);

	if (cmd->arg_count == 1 && cmd->args[0].type == IMAP_ARG_LIST) {
		const struct imap_arg *list = cmd->args[0].list;
		size_t n = cmd->args[0].list_count;
		for (size_t i = 0; i + 1 < n && i / 2 < IMAP_ID_MAX_FIELDS; i += 2) {
			struct str k, v;
			if (!imap_arg_get_astring(&list[i], &k) ||
			    list[i + 1].type == IMAP_ARG_NIL ||
			    !imap_arg_get_astring(&list[i + 1], &v) ||
			    str_has_prefix_nocase(k, STR("x-")))
				continue;
			size_t mark = kept->len;
			if ((kept->len > 0 && buf_append_byte(kept, ' ') < 0) ||
			    append_id_quoted(kept, k) < 0 ||
			    buf_append_byte(kept, ' ') < 0 ||
			    append_id_quoted(kept, v) < 0) {
				/* out of room: keep the fields that fitted */
				kept->len = mark;
				kept->data[mark] = '\0';
				break;
			}
		}
	} else if (!(cmd->arg_count == 1 && cmd->args[0].type == IMAP_ARG_NIL)) {
		buf_free(&kept);
		imap_bad_command(c, cmd->tag, "BAD Invalid ID parameters.");
		return;
	}
	free(c->id_fields);
	c->id_fields = kept->len > 0 ? xstrdup(buf_cstr(kept)) : NULL;
	buf_free(&kept);
	client_send_str(c, "* ID NIL\r\n");
	imap_reply(c, cmd->tag, "OK ID completed.");
}

static bool imap_check_plaintext(struct client *c, struct str tag)
{
	if (client_is_secured(c))
		return true;
	imap_reply(c, tag, "NO [PRIVACYREQUIRED] Plaintext authentication "
		   "disallowed on non-secure (SSL/TLS) connections.");
	return false;
}

static void imap_login_begin(struct client *c, const char *method)
{
	size_t max = c->cfg->set.max_line_length + c->cfg->set.max_literal_size;
	client_login_clear(c);
	c->login.user = buf_new(64, max);
	c->login.authzid = buf_new(16, max);
	c->login.password = buf_new_secret(64, max);
	c->login.method = method;
}

static void cmd_login(struct client *c, const struct imap_command *cmd)
{
	struct imap_client_state *st = c->proto_state;
	struct str user, pass;

	if (cmd->arg_count != 2 || !imap_arg_get_astring(&cmd->args[0], &user) ||
	    !imap_arg_get_astring(&cmd->args[1], &pass)) {
		imap_bad_command(c, cmd->tag, "BAD Invalid arguments.");
		return;
	}
	if (!imap_check_plaintext(c, cmd->tag))
		return;
	imap_set_tag(st, cmd->tag);
	imap_login_begin(c, "PLAIN");
	buf_append_str(c->login.user, user);
	buf_append_str(c->login.password, pass);
	client_auth_start(c);
}

/* PLAIN: [authzid] NUL authcid NUL password (RFC 4616). */
static bool sasl_plain_parse(struct client *c, const struct buf *decoded)
{
	struct str all = buf_str(decoded), authzid, rest, authcid, pass;

	if (!str_split(all, '\0', &authzid, &rest) ||
	    !str_split(rest, '\0', &authcid, &pass))
		return false;
	if (str_index(pass, '\0') >= 0 || authcid.len == 0)
		return false;
	buf_append_str(c->login.authzid, authzid);
	buf_append_str(c->login.user, authcid);
	buf_append_str(c->login.password, pass);
	return true;
}

/* Handles one SASL response (initial or continued). Returns false when the
 * exchange failed and the client was answered. */
static void sasl_step(struct client *c, struct str response)
{
	struct imap_client_state *st = c->proto_state;
	struct str tag = str_cstr(st->tag != NULL ? st->tag : "*");
	struct buf *decoded;

	if (str_eq(response, STR("*"))) {
		st->sasl_step = SASL_NONE;
		client_login_clear(c);
		imap_reply(c, tag, "BAD Authentication aborted by client.");
		return;
	}
	decoded = buf_new(64, SASL_LINE_MAX);
	if (!str_eq(response, STR("=")) && base64_decode(response, decoded) < 0) {
		buf_free_secret(&decoded);
		st->sasl_step = SASL_NONE;
		client_login_clear(c);
		imap_bad_command(c, tag, "BAD Invalid base64 data in continued response");
		return;
	}
	switch (st->sasl_step) {
	case SASL_PLAIN:
		st->sasl_step = SASL_NONE;
		if (!sasl_plain_parse(c, decoded)) {
			buf_free_secret(&decoded);
			client_login_clear(c);
			imap_reply(c, tag, "NO [AUTHENTICATIONFAILED] Authentication failed.");
			return;
		}
		buf_free_secret(&decoded);
		client_auth_start(c);
		return;
	case SASL_LOGIN_USER:
		buf_append_str(c->login.user, buf_str(decoded));
		buf_free_secret(&decoded);
		st->sasl_step = SASL_LOGIN_PASS;
		client_send_str(c, "+ UGFzc3dvcmQ6\r\n"); /* "Password:" */
		return;
	case SASL_LOGIN_PASS:
		buf_append_str(c->login.password, buf_str(decoded));
		buf_free_secret(&decoded);
		st->sasl_step = SASL_NONE;
		client_auth_start(c);
		return;
	case SASL_NONE:
		break;
	}
	buf_free_secret(&decoded);
}

static void cmd_authenticate(struct client *c, const struct imap_command *cmd)
{
	struct imap_client_state *st = c->proto_state;
	struct str mech, ir = STR_NULL;
	bool has_ir = false;

	if (cmd->arg_count < 1 || cmd->arg_count > 2 ||
	    cmd->args[0].type != IMAP_ARG_ATOM) {
		imap_bad_command(c, cmd->tag, "BAD Invalid arguments.");
		return;
	}
	mech = cmd->args[0].str;
	if (cmd->arg_count == 2) {
		if (cmd->args[1].type != IMAP_ARG_ATOM) {
			imap_bad_command(c, cmd->tag, "BAD Invalid arguments.");
			return;
		}
		ir = cmd->args[1].str;
		has_ir = true;
	}
	if (!str_eq_nocase(mech, STR("PLAIN")) && !str_eq_nocase(mech, STR("LOGIN"))) {
		imap_reply(c, cmd->tag, "NO Unsupported authentication mechanism.");
		return;
	}
	if (!imap_check_plaintext(c, cmd->tag))
		return;
	imap_set_tag(st, cmd->tag);
	if (str_eq_nocase(mech, STR("PLAIN"))) {
		imap_login_begin(c, "PLAIN");
		st->sasl_step = SASL_PLAIN;
		if (has_ir) {
			sasl_step(c, ir);
			return;
		}
		client_send_str(c, "+ \r\n");
		return;
	}
	imap_login_begin(c, "LOGIN");
	st->sasl_step = SASL_LOGIN_USER;
	if (has_ir) {
		sasl_step(c, ir);
		return;
	}
	client_send_str(c, "+ VXNlcm5hbWU6\r\n"); /* "Username:" */
}

static void cmd_logout(struct client *c, const struct imap_command *cmd)
{
	client_send_str(c, "* BYE Logging out\r\n");
	imap_reply(c, cmd->tag, "OK Logout completed.");
	client_close_after_output(c, "Disconnected: Aborted login by logging out");
}

static const struct {
	const char *name;
	void (*run)(struct client *c, const struct imap_command *cmd);
} imap_commands[] = {
	{ "CAPABILITY", cmd_capability },
	{ "STARTTLS", cmd_starttls },
	{ "ID", cmd_id },
	{ "LOGIN", cmd_login },
	{ "AUTHENTICATE", cmd_authenticate },
	{ "LOGOUT", cmd_logout },
};

static void imap_run_command(struct client *c, const struct imap_command *cmd)
{
	for (size_t i = 0; i < sizeof(imap_commands) / sizeof(imap_commands[0]); i++) {
		if (str_eq_nocase(cmd->name, str_cstr(imap_commands[i].name))) {
			imap_commands[i].run(c, cmd);
			return;
		}
	}
	if (str_eq_nocase(cmd->name, STR("NOOP"))) {
		imap_reply(c, cmd->tag, "OK NOOP completed.");
		return;
	}
	if (str_eq_nocase(cmd->name, STR("ENABLE"))) {
		/* RFC 5161: ENABLE is only valid in the authenticated state */
		imap_bad_command(c, cmd->tag, "BAD ENABLE isn't allowed before login.");
		return;
	}
	imap_bad_command(c, cmd->tag, "BAD Error in IMAP command received by server.");
}

/* ---- input ---------------------------------------------------------------- */

static void imap_parse_error(struct client *c, const struct imap_parse_error *err)
{
	char line[256];

	if (err->fatal) {
		str_printf(line, sizeof(line), "* BYE %s\r\n", err->msg);
		client_send_str(c, line);
		client_close_after_output(c, err->kind == IMAP_PARSE_ERR_TOO_LONG ?
					  "Disconnected: Input line too long" :
					  "Disconnected: Invalid IMAP input");
		return;
	}
	if (err->kind == IMAP_PARSE_ERR_LITERAL_TOO_BIG) {
		str_printf(line, sizeof(line), "BAD [TOOBIG] %s", err->msg);
		imap_bad_command(c, err->tag, line);
		return;
	}
	str_printf(line, sizeof(line), "BAD %s", err->msg);
	imap_bad_command(c, err->tag, line);
}

static void imap_input(struct client *c)
{
	struct imap_client_state *st = c->proto_state;

	while (c->state == CLIENT_STATE_PRELOGIN && !c->destroyed &&
	       !c->closing_after_output && c->input->len > 0) {
		size_t consumed = 0;
		struct imap_parse_error err;
		enum imap_parse_result r;

		if (st->sasl_step != SASL_NONE) {
			struct str line;
			r = imap_parser_read_line(st->parser, c->input->data,
						  c->input->len, &consumed,
						  &line, &err);
			if (r == IMAP_PARSE_LINE) {
				/* copy: the response is a secret and the
				 * parser's storage is reused */
				struct buf *resp = buf_new(line.len + 1, SASL_LINE_MAX);
				buf_append_str(resp, line);
				client_input_consume(c, consumed);
				sasl_step(c, buf_str(resp));
				buf_free_secret(&resp);
				continue;
			}
		} else {
			struct imap_command cmd;
			r = imap_parser_parse(st->parser, c->input->data,
					      c->input->len, &consumed, &cmd, &err);
			if (r == IMAP_PARSE_COMMAND) {
				client_input_consume(c, consumed);
				imap_run_command(c, &cmd);
				continue;
			}
			if (r == IMAP_PARSE_LITERAL_CONT) {
				client_input_consume(c, consumed);
				client_send_str(c, "+ OK\r\n");
				continue;
			}
		}
		client_input_consume(c, consumed);
		if (r == IMAP_PARSE_ERROR) {
			st->sasl_step = SASL_NONE;
			imap_parse_error(c, &err);
			continue;
		}
		break; /* need more input */
	}
}

/* ---- results --------------------------------------------------------------- */

static void imap_login_failed(struct client *c, enum auth_result_code code,
			      const char *resp_code, const char *text)
{
	struct imap_client_state *st = c->proto_state;
	struct buf *line = buf_new(256, c->cfg->set.max_line_length + 512);
	(void)code;
	if (resp_code != NULL)
		buf_printf(line, "%s NO [%s] %s\r\n", st->tag, resp_code, text);
	else
		buf_printf(line, "%s NO %s\r\n", st->tag, text);
	client_send(c, line->data, line->len);
	buf_free(&line);
}

static void imap_login_succeeded(struct client *c, struct backend_login *bl)
{
	struct imap_client_state *st = c->proto_state;
	struct buf *line = buf_new(512, 8192 + c->cfg->set.max_line_length);

	if (bl->capability != NULL)
		buf_printf(line, "%s OK [CAPABILITY %s] Logged in\r\n", st->tag,
			   bl->capability);
	else
		buf_printf(line, "%s OK Logged in\r\n", st->tag);
	/* the relay takes c->output as is: append, never flush here */
	if (buf_append(c->output, line->data, line->len) < 0)
		client_destroy(c, "Disconnected: client does not read its output");
	buf_free(&line);
}

static void imap_bye_line(struct client *c, const char *reason, struct buf *out)
{
	(void)c;
	buf_printf(out, "* BYE %s\r\n", reason);
}

static void imap_free(struct client *c)
{
	struct imap_client_state *st = c->proto_state;
	imap_parser_free(&st->parser);
	xfree(&st->tag);
}

const struct client_protocol imap_protocol = {
	.name = "imap",
	.state_size = sizeof(struct imap_client_state),
	.greet = imap_greet,
	.input = imap_input,
	.login_failed = imap_login_failed,
	.login_succeeded = imap_login_succeeded,
	.bye_line = imap_bye_line,
	.backend_start = imap_backend_start,
	.backend_line = imap_backend_line,
	.backend_tls_ready = imap_backend_tls_ready,
	.free = imap_free,
};
