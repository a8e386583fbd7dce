#include "backend_settings.h"

#include <string.h>

#include "auth/auth.h"
#include "net.h"

static const char *const protocol_values[] = { "pop3", "imap", "lmtp",
						NULL };
static const char *const log_level_values[] = { "debug", "info", "notice",
						 "warning", "error", NULL };

#define L struct node_listener_settings
static const struct config_def listener_defs[] = {
	CONFIG_DEF_ENUM(L, "protocol", protocol, "pop3", protocol_values,
			"pop3, imap or lmtp"),
	CONFIG_DEF_BOOL(L, "ssl", ssl, "no",
			"implicit TLS (imaps 993, pop3s 995); needs ssl_cert"),
	CONFIG_DEF_LIST(L, "address", address, NULL,
			"addresses to listen on: 127.0.0.1:110 [::1]:110"),
	CONFIG_DEF_END,
};
#undef L
static const struct config_section listener_section =
	CONFIG_SECTION_NAMED(struct node_listener_settings, name,
			     listener_defs);


#define S struct node_settings
static const struct config_def node_defs[] = {
	CONFIG_DEF_UINT(S, "workers", workers, "0", 0, 256,
			"worker threads; 0 = one per core"),
	CONFIG_DEF_UINT(S, "io_threads", io_threads, "16", 0, 256,
			"threads that do IMAP sessions' disk work off the "
			"event loops (0 = on the worker thread)"),
	CONFIG_DEF_UINT(S, "processes", processes, "1", 1, 64,
			"node processes under a supervisor that restarts a "
			"dead one (1 = a single process, no supervisor)"),
	CONFIG_DEF_ENUM(S, "log_level", log_level, "info", log_level_values,
			"debug, info, notice, warning or error"),
	CONFIG_DEF_BOOL(S, "log_syslog", log_syslog, "no",
			"log to syslog instead of stderr"),
	CONFIG_DEF_STRING(S, "syslog_facility", syslog_facility, "mail",
			  "syslog facility"),
	CONFIG_DEF_STRING(S, "admin_socket", admin_socket, "",
			  "unix socket for `mailring-backend kick USER` "
			  "(\"\" = none)"),
	CONFIG_DEF_STRING(S, "ssl_cert", ssl_cert, "",
			  "PEM certificate chain for TLS (STARTTLS, STLS, "
			  "ssl listeners); Dovecot's \"<file\" form is accepted"),
	CONFIG_DEF_STRING(S, "ssl_key", ssl_key, "", "PEM private key"),
	CONFIG_DEF_STRING(S, "hostname", hostname, "",
			  "this node's name in logs and in the shared-storage "
			  "owner files (\"\" = the system host name)"),
	CONFIG_DEF_STRING(S, "mail_location", mail_location, NULL,
			  "Maildir of a user's INBOX: /srv/mail/%d/%n (%u user, "
			  "%n local part, %d domain)"),
	CONFIG_DEF_SIZE(S, "max_line_length", max_line_length, "8k", 256,
			1048576, "command line limit (line end included)"),
	CONFIG_DEF_UINT(S, "max_bad_commands", max_bad_commands, "20", 1, 1000,
			"invalid commands before disconnecting"),
	CONFIG_DEF_DURATION(S, "idle_timeout", idle_timeout_msecs, "10m", 1000,
			    0, "close a session idle this long (RFC 1939: >= 10m)"),
	CONFIG_DEF_UINT(S, "mail_max_userip_connections",
			mail_max_userip_connections, "10", 0, 1000000,
			"sessions per user and client IP; 0 = no limit"),
	CONFIG_DEF_UINT(S, "max_messages", max_messages, "1000000", 1, 50000000,
			"messages a mailbox may hold for a session"),
	CONFIG_DEF_DURATION(S, "shutdown_grace", shutdown_grace_msecs, "10s", 0,
			    0, "on SIGTERM, time sessions get to finish"),
	CONFIG_DEF_DURATION(S, "auth_failure_delay", auth_failure_delay_msecs,
			    "2s", 0, 0, "delay before answering a failed login"),
	CONFIG_DEF_DURATION(S, "auth_penalty_max", auth_penalty_max_msecs,
			    "15s", 0, 0, "largest delay from repeated failures"),
	CONFIG_DEF_UINT(S, "auth_workers", auth_workers, "2", 1, 64,
			"threads that verify passwords"),
	CONFIG_DEF_STRING(S, "auth_username_chars", auth_username_chars,
			  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@",
			  "characters allowed in user names"),
	CONFIG_DEF_STRING(S, "auth_username_format", auth_username_format, "",
			  "Dovecot's auth_username_format: %u, %Lu, %n or %Ln "
			  "(%n drops @domain, so LMTP to user@domain finds a "
			  "domain-less passdb user); \"\" = from "
			  "auth_username_lowercase"),
	CONFIG_DEF_BOOL(S, "auth_username_lowercase", auth_username_lowercase,
			"yes", "lower-case user names (Dovecot's %Lu)"),
	CONFIG_DEF_SIZE(S, "lmtp_max_message_size", lmtp_max_message_size,
			"50M", 1024, 1073741824,
			"LMTP: largest message (SIZE in LHLO; over it 552 5.3.4)"),
	CONFIG_DEF_STRING(S, "recipient_delimiter", recipient_delimiter, "+",
			  "LMTP: user+detail@domain is user@domain (\"\" = "
			  "off), as Dovecot's"),
	CONFIG_DEF_BOOL(S, "lmtp_save_to_detail_mailbox",
			lmtp_save_to_detail_mailbox, "no",
			"LMTP: user+folder@ delivers into folder when it "
			"exists (else INBOX)"),
	CONFIG_DEF_UINT(S, "lmtp_max_recipients", lmtp_max_recipients, "100",
			1, 1000, "LMTP: recipients per message"),
	CONFIG_DEF_DURATION(S, "lmtp_timeout", lmtp_timeout_msecs, "5m", 1000,
			    0, "LMTP: close a session idle this long"),
	CONFIG_DEF_NETS(S, "lmtp_trusted_networks", lmtp_trusted_networks,
			"127.0.0.0/8 ::1",
			"LMTP clients allowed (others get 554 5.7.1)"),
	CONFIG_DEF_SIZE(S, "imap_max_line_length", imap_max_line_length,
			"64k", 1024, 16777216,
			"IMAP: command line limit outside literals (Dovecot's "
			"imap_max_line_length)"),
	CONFIG_DEF_SIZE(S, "imap_max_append_size", imap_max_append_size,
			"50M", 1024, 1073741824,
			"IMAP: largest APPEND message (over it NO [TOOBIG])"),
	CONFIG_DEF_DURATION(S, "imap_idle_timeout", imap_idle_timeout_msecs,
			    "30m", 1000, 0,
			    "IMAP: close a session idle this long (RFC 3501: "
			    ">= 30m)"),
	CONFIG_DEF_DURATION(S, "imap_idle_notify_interval",
			    imap_idle_notify_interval_msecs, "500ms", 50,
			    60000, "IMAP: how often IDLE looks for changes"),
	CONFIG_DEF_UINT(S, "imap_max_mailboxes", imap_max_mailboxes, "1000", 1,
			100000, "IMAP: folders a user may have"),
	CONFIG_DEF_SIZE(S, "imap_session_memory_max", imap_session_memory_max,
			"64M", 65536, 4294967296,
			"IMAP: memory a session may hold (buffers, view of "
			"the selected mailbox, a literal being read); over it "
			"the command fails with a clear error"),
	CONFIG_DEF_BOOL(S, "imap_autocreate_special_use",
			imap_autocreate_special_use, "yes",
			"IMAP: create Drafts Sent Trash Junk Archive at login"),
	CONFIG_DEF_NETS(S, "login_trusted_networks", login_trusted_networks,
			"", "IMAP/POP3 clients (the proxies) that may pass the "
			"real client address (ID x-originating-ip, XCLIENT) and "
			"log in as master users"),
	CONFIG_DEF_STRING(S, "auth_master_user_separator",
			  auth_master_user_separator, "*",
			  "LOGIN user*master logs master in as user (also "
			  "SASL PLAIN with authzid); needs master_passdb"),
	CONFIG_DEF_BLOCK(S, "master_passdb", master_passdb,
			 &passdb_settings_section,
			 "password database of master users (empty args = no "
			 "master logins)"),
	CONFIG_DEF_BLOCK(S, "passdb", passdb, &passdb_settings_section,
			 "password database"),
	CONFIG_DEF_SECTIONS(S, "listener", listeners, listener_count,
			    &listener_section, "listener NAME { ... }"),
	CONFIG_DEF_END,
};
#undef S

const struct config_section node_settings_schema =
	CONFIG_SECTION(struct node_settings, node_defs);

const char *node_listener_protocol_name(unsigned int protocol)
{
	switch (protocol) {
	case NODE_LISTENER_POP3:
		return "pop3";
	case NODE_LISTENER_IMAP:
		return "imap";
	case NODE_LISTENER_LMTP:
		return "lmtp";
	}
	return "?";
}

int node_settings_check(const struct node_settings *set, char *err,
			size_t errsize)
{
	char path[1024];
	const char *error;

	if (set->listener_count == 0) {
		str_printf(err, errsize, "no listener configured");
		return -1;
	}
	for (size_t i = 0; i < set->listener_count; i++) {
		const struct node_listener_settings *l = &set->listeners[i];
		if (l->address.count == 0) {
			str_printf(err, errsize, "listener %s: no address",
				   l->name);
			return -1;
		}
		if (l->ssl && set->ssl_cert[0] == '\0') {
			str_printf(err, errsize, "listener %s: ssl = yes needs "
				   "ssl_cert and ssl_key", l->name);
			return -1;
		}
		if (l->ssl && l->protocol == NODE_LISTENER_LMTP) {
			str_printf(err, errsize, "listener %s: ssl is for imap "
				   "and pop3 listeners", l->name);
			return -1;
		}
		for (size_t j = 0; j < l->address.count; j++) {
			struct net_addr a;
			if (net_addr_parse(l->address.items[j], 0, &a,
					   &error) < 0) {
				str_printf(err, errsize,
					   "listener %s: address '%s': %s",
					   l->name, l->address.items[j], error);
				return -1;
			}
		}
	}
	if ((set->ssl_cert[0] == '\0') != (set->ssl_key[0] == '\0')) {
		str_printf(err, errsize, "ssl_cert and ssl_key go together");
		return -1;
	}
	if (set->passdb.args[0] == '\0') {
		str_printf(err, errsize,
			   "passdb { args } (the passwd-file) is not set");
		return -1;
	}
	if (set->mail_location[0] == '\0') {
		str_printf(err, errsize, "mail_location is not set");
		return -1;
	}
	/* a sample user shows template errors at start-up */
	if (node_mail_location_expand(set->mail_location,
				      STR("user@example.com"), path,
				      sizeof(path), &error) < 0) {
		str_printf(err, errsize, "mail_location '%s': %s",
			   set->mail_location, error);
		return -1;
	}
	return 0;
}

void node_settings_auth(const struct node_settings *set,
			struct auth_settings *as)
{
	auth_settings_init(as);
	as->passdb_driver = set->passdb.driver;
	as->passdb_args = set->passdb.args;
	as->username_chars = set->auth_username_chars;
	as->username_format = set->auth_username_format[0] != '\0'
				  ? set->auth_username_format
			      : set->auth_username_lowercase ? "%Lu"
							     : "%u";
	as->workers = (unsigned int)set->auth_workers;
	as->failure_delay_ms = (uint32_t)set->auth_failure_delay_msecs;
	as->penalty_enabled = set->auth_penalty_max_msecs > 0;
	as->penalty.max_ms = (uint32_t)set->auth_penalty_max_msecs;
	if (as->penalty.base_ms > as->penalty.max_ms)
		as->penalty.base_ms = as->penalty.max_ms;
}

bool node_settings_master_auth(const struct node_settings *set,
			       struct auth_settings *as)
{
	if (set->master_passdb.args[0] == '\0')
		return false;
	node_settings_auth(set, as);
	as->passdb_driver = set->master_passdb.driver;
	as->passdb_args = set->master_passdb.args;
	as->workers = 1;
	return true;
}

/* Every component of an absolute path is a real name. */
static bool path_components_ok(const char *p, size_t len)
{
	size_t i = 1, start = 1;

	if (len == 0 || p[0] != '/')
		return false;
	for (; i <= len; i++) {
		if (i < len && p[i] != '/')
			continue;
		size_t n = i - start;
		/* a trailing '/' is allowed, an empty inner component not */
		if (n == 0 && i < len)
			return false;
		if ((n == 1 && p[start] == '.') ||
		    (n == 2 && p[start] == '.' && p[start + 1] == '.'))
			return false;
		start = i + 1;
	}
	return true;
}

int node_mail_location_expand(const char *tmpl, struct str user, char *dst,
			      size_t dstsize, const char **error_r)
{
	struct str local = user, domain = STR("");
	size_t len = 0;

	if (user.len == 0) {
		*error_r = "empty user name";
		return -1;
	}
	for (size_t i = 0; i < user.len; i++) {
		unsigned char c = (unsigned char)user.p[i];
		if (c == '/' || c < 0x20 || c == 0x7f) {
			*error_r = "user name not usable in a path";
			return -1;
		}
	}
	ptrdiff_t at = str_index(user, '@');
	if (at >= 0) {
		local = str_slice(user, 0, (size_t)at);
		domain = str_slice(user, (size_t)at + 1, user.len - (size_t)at - 1);
	}
	for (const char *t = tmpl; *t != '\0'; t++) {
		struct str piece;
		if (*t != '%') {
			piece = str_from(t, 1);
		} else {
			switch (t[1]) {
			case 'u':
				piece = user;
				break;
			case 'n':
				piece = local;
				break;
			case 'd':
				piece = domain;
				break;
			case '%':
				piece = STR("%");
				break;
			default:
				*error_r = "unknown %-code (use %u, %n, %d or %%)";
				return -1;
			}
			t++;
		}
		if (len + piece.len + 1 > dstsize) {
			*error_r = "path too long";
			return -1;
		}
		memcpy(dst + len, piece.p, piece.len);
		len += piece.len;
	}
	if (dstsize == 0) {
		*error_r = "path too long";
		return -1;
	}
	dst[len] = '\0';
	if (!path_components_ok(dst, len)) {
		*error_r = "not an absolute path of plain names (no '.', '..' "
			   "or empty component)";
		return -1;
	}
	return (int)len;
}
