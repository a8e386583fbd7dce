/*
 * POP3 before login: what pop3-login does in Dovecot 2.3, so that clients,
 * scripts and admins see the familiar. Every client-visible text below was
 * checked against a running Dovecot 2.3.19 pop3-login; where we differ on
 * purpose, the comment says why.
 *
 * Conventions shared with the backend half (pop3_backend.c):
 *
 *  - login_failed() with resp_code == NULL means "pass the text through":
 *    the backend refused the login and its own "-ERR ..." text (without the
 *    "-ERR " prefix, sanitised) is what the client must see, like Dovecot's
 *    proxy forwards the backend's error line. With a resp_code the failure
 *    is ours: auth failures get "[AUTH]", everything else "[SYS/TEMP]"
 *    (RFC 3206 response codes, advertised as RESP-CODES/AUTH-RESP-CODE).
 *  - login_succeeded() answers with the backend's own "+OK ..." line, which
 *    pop3_backend.c leaves in bl->capability (IMAP keeps its post-login
 *    capabilities there; POP3 has none, so the field carries the one line
 *    Dovecot's proxy would forward).
 */
#include "proxy.h"

#include <stdlib.h>
#include <string.h>

#include "pop3_proxy.h"
#include "base64.h"
#include "pop3_parse.h"
#include "str.h"
#include "xmalloc.h"


/* ---- what the client sees, in one place ---------------------------------- */

#define POP3_GREETING "mailring ready." /* Dovecot: "Dovecot ready." */

#define POP3_CAPA_FIXED                                                        \
	"CAPA\r\n"                                                             \
	"TOP\r\n"                                                              \
	"UIDL\r\n"                                                             \
	"RESP-CODES\r\n"                                                       \
	"PIPELINING\r\n"                                                       \
	"AUTH-RESP-CODE\r\n"
#define POP3_SASL_MECHS "PLAIN LOGIN"

#define MSG_UNKNOWN_COMMAND "Unknown command."
#define MSG_TOO_MANY_BAD "Too many invalid bad commands."
#define MSG_INPUT_TOO_LONG "Input buffer full, aborting"
#define MSG_PLAINTEXT_DISALLOWED                                               \
	"Plaintext authentication disallowed on non-secure (SSL/TLS) "         \
	"connections."
/* AUTH with a plaintext mechanism on a non-secured connection: Dovecot
 * words it differently from USER/PASS. */
#define MSG_PLAINTEXT_DISABLED "Plaintext authentication disabled."
#define MSG_NO_USERNAME "No username given."
#define MSG_APOP_DISABLED "APOP not enabled."
#define MSG_UNSUPPORTED_MECH "Unsupported authentication mechanism."
#define MSG_BAD_BASE64_IR "Invalid base64 data in initial response"
#define MSG_BAD_BASE64 "Invalid base64 in response"
#define MSG_AUTH_ABORTED "Authentication aborted by client."
#define MSG_AUTH_FAILED "Authentication failed."
#define MSG_TLS_ACTIVE "TLS is already active."
#define MSG_TLS_DISABLED "TLS support isn't enabled."
#define MSG_TLS_BEGIN "Begin TLS negotiation now."
#define MSG_LOGOUT "Logging out" /* sic: no period before login */
#define MSG_LOGGED_IN "Logged in."

/* LOGIN mechanism prompts: base64 of "Username:" and "Password:". */
#define SASL_LOGIN_PROMPT_USER "+ VXNlcm5hbWU6\r\n"
#define SASL_LOGIN_PROMPT_PASS "+ UGFzc3dvcmQ6\r\n"

/* ---- state --------------------------------------------------------------- */

enum pop3_sasl_step {
	POP3_SASL_NONE = 0, /* reading command lines */
	POP3_SASL_PLAIN,    /* AUTH PLAIN sent "+ ": waiting for the response */
	POP3_SASL_LOGIN_USER, /* AUTH LOGIN: waiting for the user name */
	POP3_SASL_LOGIN_PASS, /* AUTH LOGIN: waiting for the password */
};

struct pop3_client_state {
	struct pop3_parser *parser;
	enum pop3_sasl_step sasl_step;
	/* USER's argument until PASS uses it (RFC 1939 USER/PASS pair) */
	struct buf *last_user;
};

/* Dovecot's reply kinds (pop3-login client_send_reply). */
enum pop3_reply {
	POP3_REPLY_OK = 0,   /* "+OK text" */
	POP3_REPLY_ERR,      /* "-ERR text" */
	POP3_REPLY_AUTH_ERR, /* "-ERR [AUTH] text" unless text has a code */
	POP3_REPLY_TEMPFAIL, /* "-ERR [SYS/TEMP] text" */
};

static void pop3_reply(struct client *c, enum pop3_reply kind, const char *text)
{
	const char *prefix = "-ERR ";

	switch (kind) {
	case POP3_REPLY_OK:
		prefix = "+OK ";
		break;
	case POP3_REPLY_ERR:
		break;
	case POP3_REPLY_AUTH_ERR:
		/* a text that carries its own response code keeps it */
		if (text[0] != '[')
			prefix = "-ERR [AUTH] ";
		break;
	case POP3_REPLY_TEMPFAIL:
		prefix = "-ERR [SYS/TEMP] ";
		break;
	}
	if (client_printf(c, "%s%s\r\n", prefix, text) < 0 && !c->destroyed) {
		/* only an over-long pass-through text gets here: never send
		 * half a line, but do answer */
		client_printf(c, "%s%s\r\n", prefix, MSG_AUTH_FAILED);
	}
}

/* Counts a bad command after its answer was sent. The count is per
 * session (not reset by good commands as Dovecot does): a client
 * alternating good and bad lines must still hit the limit. */
static void pop3_count_bad(struct client *c)
{
	c->bad_commands++;
	if (c->bad_commands < c->cfg->set.max_bad_commands || c->destroyed)
		return;
	pop3_reply(c, POP3_REPLY_ERR, MSG_TOO_MANY_BAD);
	client_close_after_output(c, "Disconnected: Too many bad commands");
}

static void pop3_bad(struct client *c, enum pop3_reply kind, const char *text)
{
	pop3_reply(c, kind, text);
	pop3_count_bad(c);
}

/* Starts a pending login (USER/PASS or AUTH): fresh credential buffers,
 * each bounded by the line that carries it. */
static void pop3_login_begin(struct client *c, const char *method)
{
	size_t max = c->cfg->set.max_line_length;

	client_login_clear(c);
	c->login.user = buf_new(64, max);
	c->login.authzid = buf_new(16, max);
	c->login.password = buf_new_secret(64, max);
	c->login.method = method;
}

/* ---- greeting and CAPA --------------------------------------------------- */

static void pop3_greet(struct client *c)
{
	struct pop3_client_state *st = c->proto_state;
	const struct pop3_parser_limits limits = {
	    .max_line_len = c->cfg->set.max_line_length,
	    /* a SASL response is one line too, and PASS/AUTH PLAIN with
	     * an initial response already live within max_line_length */
	    .max_auth_line_len = c->cfg->set.max_line_length,
	    /* AUTH mechanism [initial-response]: more words are an error */
	    .max_args = 2,
	};

	st->parser = pop3_parser_new(&limits);
	pop3_reply(c, POP3_REPLY_OK, POP3_GREETING);
}

static bool cmd_capa(struct client *c, const struct pop3_command *cmd)
{
	struct buf *out = buf_new(256, 1024);
	(void)cmd;

	buf_append_cstr(out, "+OK\r\n" POP3_CAPA_FIXED);
	if (proxy.tls != NULL && !c->tls)
		buf_append_cstr(out, "STLS\r\n");
	/* Dovecot hides USER and the plaintext mechanisms while they would
	 * be refused, yet still sends a bare "SASL" line: clients (and
	 * their quirks) see exactly what Dovecot would show them. */
	if (client_is_secured(c))
		buf_append_cstr(out, "USER\r\nSASL " POP3_SASL_MECHS "\r\n");
	else
		buf_append_cstr(out, "SASL\r\n");
	buf_append_cstr(out, ".\r\n");
	client_send(c, out->data, out->len);
	buf_free(&out);
	return true;
}

/* ---- STLS and QUIT ------------------------------------------------------- */

static bool cmd_stls(struct client *c, const struct pop3_command *cmd)
{
	struct pop3_client_state *st = c->proto_state;
	(void)cmd;

	if (c->tls) {
		pop3_reply(c, POP3_REPLY_ERR, MSG_TLS_ACTIVE);
		return true;
	}
	if (proxy.tls == NULL) {
		pop3_reply(c, POP3_REPLY_ERR, MSG_TLS_DISABLED);
		return true;
	}
	/* nothing said in plaintext may count after the handshake (RFC 2595
	 * section 4): forget a USER given before it */
	buf_free(&st->last_user);
	pop3_reply(c, POP3_REPLY_OK, MSG_TLS_BEGIN);
	client_start_tls(c);
	return true;
}

static bool cmd_quit(struct client *c, const struct pop3_command *cmd)
{
	(void)cmd;
	pop3_reply(c, POP3_REPLY_OK, MSG_LOGOUT);
	/* Dovecot's log wording for a QUIT before login */
	client_close_after_output(c,
				  "Disconnected: Aborted login by logging out");
	return true;
}

/* ---- USER / PASS --------------------------------------------------------- */

static bool cmd_user(struct client *c, const struct pop3_command *cmd)
{
	struct pop3_client_state *st = c->proto_state;

	/* the whole rest of the line, as Dovecot takes it: the auth
	 * service decides which user names are valid */
	buf_free(&st->last_user);
	st->last_user = buf_new(64, c->cfg->set.max_line_length);
	buf_append_str(st->last_user, cmd->rest);
	/* Dovecot answers a bare "+OK" */
	client_send_str(c, "+OK\r\n");
	return true;
}

static bool cmd_pass(struct client *c, const struct pop3_command *cmd)
{
	struct pop3_client_state *st = c->proto_state;

	if (st->last_user == NULL) {
		pop3_reply(c, POP3_REPLY_ERR, MSG_NO_USERNAME);
		return false;
	}
	pop3_login_begin(c, "PLAIN");
	buf_append_str(c->login.user, buf_str(st->last_user));
	/* like Dovecot: after a failed PASS, USER comes first again */
	buf_free(&st->last_user);
	/* RFC 1939: the password is the rest of the line, spaces and all */
	buf_append_str(c->login.password, cmd->rest);
	client_auth_start(c);
	return true;
}

static bool cmd_apop(struct client *c, const struct pop3_command *cmd)
{
	(void)cmd;
	/* APOP needs the plaintext password on our side: never offered */
	pop3_reply(c, POP3_REPLY_ERR, MSG_APOP_DISABLED);
	return false;
}

/* ---- AUTH (RFC 5034) ----------------------------------------------------- */

/* PLAIN: [authzid] NUL authcid NUL password (RFC 4616). */
static bool sasl_plain_parse(struct client *c, struct str all)
{
	struct str authzid, rest, authcid, pass;

	if (!str_split(all, '\0', &authzid, &rest) ||
	    !str_split(rest, '\0', &authcid, &pass))
		return false;
	if (str_index(pass, '\0') >= 0 || authcid.len == 0)
		return false;
	if (buf_append_str(c->login.authzid, authzid) < 0 ||
	    buf_append_str(c->login.user, authcid) < 0 ||
	    buf_append_str(c->login.password, pass) < 0)
		return false;
	return true;
}

/* Ends the SASL exchange without a login. */
static void sasl_abort(struct client *c)
{
	struct pop3_client_state *st = c->proto_state;

	st->sasl_step = POP3_SASL_NONE;
	client_login_clear(c);
}

/* Runs one decoded SASL response (initial or continued). */
static void sasl_step(struct client *c, struct str decoded)
{
	struct pop3_client_state *st = c->proto_state;

	switch (st->sasl_step) {
	case POP3_SASL_PLAIN:
		if (!sasl_plain_parse(c, decoded)) {
			sasl_abort(c);
			pop3_reply(c, POP3_REPLY_AUTH_ERR, MSG_AUTH_FAILED);
			return;
		}
		st->sasl_step = POP3_SASL_NONE;
		client_auth_start(c);
		return;
	case POP3_SASL_LOGIN_USER:
		if (buf_append_str(c->login.user, decoded) < 0) {
			sasl_abort(c);
			pop3_reply(c, POP3_REPLY_AUTH_ERR, MSG_AUTH_FAILED);
			return;
		}
		st->sasl_step = POP3_SASL_LOGIN_PASS;
		client_send_str(c, SASL_LOGIN_PROMPT_PASS);
		return;
	case POP3_SASL_LOGIN_PASS:
		if (buf_append_str(c->login.password, decoded) < 0) {
			sasl_abort(c);
			pop3_reply(c, POP3_REPLY_AUTH_ERR, MSG_AUTH_FAILED);
			return;
		}
		st->sasl_step = POP3_SASL_NONE;
		client_auth_start(c);
		return;
	case POP3_SASL_NONE:
		return;
	}
}

/* Decodes a response line into a fresh secret buffer, or NULL when it is
 * not valid base64. */
static struct buf *sasl_decode(struct client *c, struct str b64)
{
	struct buf *decoded = buf_new(64, c->cfg->set.max_line_length);

	if (base64_decode(b64, decoded) < 0) {
		buf_free_secret(&decoded);
		return NULL;
	}
	return decoded;
}

/* A continuation line while inside AUTH: "*" cancels (RFC 5034 4.),
 * anything else is base64. */
static void sasl_continue(struct client *c, struct str line)
{
	struct buf *decoded;

	if (str_eq(line, STR("*"))) {
		sasl_abort(c);
		pop3_reply(c, POP3_REPLY_ERR, MSG_AUTH_ABORTED);
		return;
	}
	decoded = sasl_decode(c, line);
	if (decoded == NULL) {
		sasl_abort(c);
		pop3_bad(c, POP3_REPLY_AUTH_ERR, MSG_BAD_BASE64);
		return;
	}
	sasl_step(c, buf_str(decoded));
	buf_free_secret(&decoded);
}

static bool cmd_auth(struct client *c, const struct pop3_command *cmd)
{
	struct pop3_client_state *st = c->proto_state;
	bool plain;

	if (cmd->arg_count == 0) {
		/* the pre-RFC 5034 mechanism list (MS Outlook uses it);
		 * empty while the mechanisms would be refused */
		client_send_str(c, client_is_secured(c)
				       ? "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n"
				       : "+OK\r\n.\r\n");
		return true;
	}
	plain = str_eq_nocase(cmd->args[0], STR("PLAIN"));
	if (!plain && !str_eq_nocase(cmd->args[0], STR("LOGIN"))) {
		pop3_reply(c, POP3_REPLY_AUTH_ERR, MSG_UNSUPPORTED_MECH);
		return false;
	}
	if (!client_is_secured(c)) {
		pop3_reply(c, POP3_REPLY_AUTH_ERR, MSG_PLAINTEXT_DISABLED);
		return false;
	}

	/* The initial response (RFC 5034): "=" is an empty one. Dovecot
	 * takes everything after the mechanism as the response, so extra
	 * words make it invalid base64. */
	struct buf *decoded = NULL;
	if (cmd->args_overflow) {
		pop3_reply(c, POP3_REPLY_AUTH_ERR, MSG_BAD_BASE64_IR);
		return false;
	}
	if (cmd->arg_count == 2) {
		decoded = str_eq(cmd->args[1], STR("="))
			      ? buf_new(1, 1)
			      : sasl_decode(c, cmd->args[1]);
		if (decoded == NULL) {
			pop3_reply(c, POP3_REPLY_AUTH_ERR, MSG_BAD_BASE64_IR);
			return false;
		}
	}

	pop3_login_begin(c, plain ? "PLAIN" : "LOGIN");
	st->sasl_step = plain ? POP3_SASL_PLAIN : POP3_SASL_LOGIN_USER;
	/* LOGIN ignores an empty initial response and asks for the user
	 * name, as Dovecot's mechanism does */
	if (decoded != NULL && (plain || decoded->len > 0)) {
		sasl_step(c, buf_str(decoded));
		buf_free_secret(&decoded);
		return true;
	}
	buf_free_secret(&decoded);
	client_send_str(c, plain ? "+ \r\n" : SASL_LOGIN_PROMPT_USER);
	return true;
}

/* ---- dispatch ------------------------------------------------------------ */

/* clang-format off */
/* Pre-login commands. A run function returns false for a command that
 * counts as bad (it has answered already). Every other POP3 command is
 * "Unknown command." before login, as in Dovecot. */
static const struct {
	enum pop3_verb verb;
	/* carries a plaintext credential: refused unless client_is_secured()
	 * (AUTH checks for itself: its mechanism comes first, and Dovecot
	 * words the refusal differently) */
	bool plaintext;
	bool (*run)(struct client *c, const struct pop3_command *cmd);
} pop3_commands[] = {
	{ POP3_VERB_CAPA, false, cmd_capa },
	{ POP3_VERB_STLS, false, cmd_stls },
	{ POP3_VERB_USER, true, cmd_user },
	{ POP3_VERB_PASS, true, cmd_pass },
	{ POP3_VERB_AUTH, false, cmd_auth },
	{ POP3_VERB_APOP, false, cmd_apop },
	{ POP3_VERB_QUIT, false, cmd_quit },
};
/* clang-format on */

static void pop3_run_command(struct client *c, const struct pop3_command *cmd)
{
	for (size_t i = 0; i < sizeof(pop3_commands) / sizeof(pop3_commands[0]);
	     i++) {
		if (pop3_commands[i].verb != cmd->verb)
			continue;
		if (pop3_commands[i].plaintext && !client_is_secured(c)) {
			pop3_bad(c, POP3_REPLY_AUTH_ERR,
				 MSG_PLAINTEXT_DISALLOWED);
			return;
		}
		if (!pop3_commands[i].run(c, cmd))
			pop3_count_bad(c);
		return;
	}
	pop3_bad(c, POP3_REPLY_ERR, MSG_UNKNOWN_COMMAND);
}

static void pop3_parse_error(struct client *c,
			     const struct pop3_parse_error *err)
{
	struct pop3_client_state *st = c->proto_state;

	if (err->kind == POP3_PARSE_ERR_TOO_LONG) {
		/* the parser could skip the rest of the line, but a client
		 * sending lines this long is not a mail client */
		sasl_abort(c);
		pop3_reply(c, POP3_REPLY_ERR, MSG_INPUT_TOO_LONG);
		client_close_after_output(c, "Disconnected: Input buffer full");
		return;
	}
	if (st->sasl_step != POP3_SASL_NONE) {
		/* a NUL byte cannot be base64 */
		sasl_abort(c);
		pop3_bad(c, POP3_REPLY_AUTH_ERR, MSG_BAD_BASE64);
		return;
	}
	/* empty line, NUL byte, not a verb: Dovecot has one answer */
	pop3_bad(c, POP3_REPLY_ERR, MSG_UNKNOWN_COMMAND);
}

static void pop3_input(struct client *c)
{
	struct pop3_client_state *st = c->proto_state;

	/* A command that starts TLS, authentication or the close changes
	 * c->state: what follows it stays in c->input (for the backend
	 * after a login, or dropped by client_start_tls). */
	while (c->state == CLIENT_STATE_PRELOGIN && !c->destroyed &&
	       !c->closing_after_output && c->input->len > 0) {
		size_t consumed = 0;
		struct pop3_parse_error err;
		enum pop3_parse_result r;

		if (st->sasl_step != POP3_SASL_NONE) {
			struct str line;
			r = pop3_parser_read_line(st->parser, c->input->data,
						  c->input->len, &consumed,
						  &line, &err);
			client_input_consume(c, consumed);
			if (r == POP3_PARSE_LINE) {
				/* line lives in the parser until its next
				 * call: no copy of the secret needed */
				sasl_continue(c, line);
				continue;
			}
		} else {
			struct pop3_command cmd;
			r = pop3_parser_parse(st->parser, c->input->data,
					      c->input->len, &consumed, &cmd,
					      &err);
			/* consume before running: STLS resets c->input */
			client_input_consume(c, consumed);
			if (r == POP3_PARSE_COMMAND) {
				pop3_run_command(c, &cmd);
				continue;
			}
		}
		if (r == POP3_PARSE_ERROR) {
			pop3_parse_error(c, &err);
			continue;
		}
		break; /* the parser holds a partial line: wait for more */
	}
}

/* ---- results from the core ----------------------------------------------- */

static void pop3_login_failed(struct client *c, enum auth_result_code code,
			      const char *resp_code, const char *text)
{
	if (resp_code == NULL) {
		/* the backend's own refusal, passed through */
		pop3_reply(c, POP3_REPLY_ERR, text);
		return;
	}
	switch (code) {
	case AUTH_RESULT_FAILED:
	case AUTH_RESULT_UNKNOWN_USER:
	case AUTH_RESULT_NOLOGIN:
		pop3_reply(c, POP3_REPLY_AUTH_ERR, text);
		return;
	case AUTH_RESULT_OK:
	case AUTH_RESULT_TEMPFAIL:
		break;
	}
	/* auth tempfail and backend trouble ("UNAVAILABLE"): the client
	 * should try again later, not ask the user for a new password */
	pop3_reply(c, POP3_REPLY_TEMPFAIL, text);
}

static void pop3_login_succeeded(struct client *c, struct backend_login *bl)
{
	/* the relay takes c->output as it is: append, never flush here */
	const char *line =
	    bl->capability != NULL ? bl->capability : "+OK " MSG_LOGGED_IN;

	if (buf_append_cstr(c->output, line) < 0 ||
	    buf_append_cstr(c->output, "\r\n") < 0)
		client_destroy(c,
			       "Disconnected: client does not read its output");
}

/* POP3 has no untagged BYE: a last -ERR is what Dovecot sends on a kick or
 * shutdown. c may be a bare struct with only cfg set (connection refused
 * before a session existed): do not touch the protocol state. */
static void pop3_bye_line(struct client *c, const char *reason, struct buf *out)
{
	(void)c;
	buf_printf(out, "-ERR [SYS/TEMP] %s\r\n", reason);
}

static void pop3_free(struct client *c)
{
	struct pop3_client_state *st = c->proto_state;

	pop3_parser_free(&st->parser);
	buf_free(&st->last_user);
}

const struct client_protocol pop3_protocol = {
    .name = "pop3",
    .state_size = sizeof(struct pop3_client_state),
    .greet = pop3_greet,
    .input = pop3_input,
    .login_failed = pop3_login_failed,
    .login_succeeded = pop3_login_succeeded,
    .bye_line = pop3_bye_line,
    .backend_start = pop3_backend_start,
    .backend_line = pop3_backend_line,
    .backend_tls_ready = pop3_backend_tls_ready,
    .free = pop3_free,
};
