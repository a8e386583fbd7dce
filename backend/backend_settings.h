#ifndef MR_BACKEND_SETTINGS_H
#define MR_BACKEND_SETTINGS_H

/*
 * Settings of mailring-backend, the mail node (issue 5): the schema for
 * lib/config, the checks that need more than one key, the auth library's
 * settings made from ours, and the mail_location template.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/passdb_settings.h"
#include "config.h"
#include "str.h"

enum node_listener_protocol {
	NODE_LISTENER_POP3 = 0, /* built */
	NODE_LISTENER_IMAP,     /* backend/imap_server.h */
	NODE_LISTENER_LMTP,     /* built (backend/lmtp_server.h) */
};

struct node_listener_settings {
	char *name;
	unsigned int protocol; /* enum node_listener_protocol */
	bool ssl;              /* implicit TLS */
	struct config_strlist address;
};


struct node_settings {
	uint64_t workers;
	uint64_t processes;
	uint64_t io_threads;
	unsigned int log_level; /* enum log_level */
	bool log_syslog;
	char *syslog_facility;
	char *hostname;
	char *ssl_cert;
	char *ssl_key;
	char *admin_socket;
	char *mail_location;
	uint64_t max_line_length;
	uint64_t max_bad_commands;
	uint64_t idle_timeout_msecs;
	uint64_t mail_max_userip_connections;
	uint64_t max_messages;
	uint64_t shutdown_grace_msecs;
	uint64_t auth_failure_delay_msecs;
	uint64_t auth_penalty_max_msecs;
	uint64_t auth_workers;
	char *auth_username_chars;
	char *auth_username_format;
	bool auth_username_lowercase;
	struct passdb_settings passdb;
	struct passdb_settings master_passdb;
	struct config_nets login_trusted_networks;
	char *auth_master_user_separator;
	/* LMTP (backend/lmtp_server.h) */
	uint64_t lmtp_max_message_size;
	uint64_t lmtp_max_recipients;
	char *recipient_delimiter;
	bool lmtp_save_to_detail_mailbox;
	uint64_t lmtp_timeout_msecs;
	struct config_nets lmtp_trusted_networks;
	/* IMAP (backend/imap_server.h) */
	uint64_t imap_max_line_length;
	uint64_t imap_max_append_size;
	uint64_t imap_idle_timeout_msecs;
	uint64_t imap_idle_notify_interval_msecs;
	uint64_t imap_max_mailboxes;
	uint64_t imap_session_memory_max;
	bool imap_autocreate_special_use;
	struct node_listener_settings *listeners;
	size_t listener_count;
};

extern const struct config_section node_settings_schema;

/* Checks what the schema cannot: listeners with addresses, protocols that
 * are built, the passwd-file, the mail_location template. 0 or -1 with a
 * message in err. */
int node_settings_check(const struct node_settings *set, char *err,
			size_t errsize);

struct auth_settings;
/* Fills the auth library's settings from ours (strings point into set). */
void node_settings_auth(const struct node_settings *set,
			struct auth_settings *as);

/* The auth settings of the master passdb; false when none is set. */
bool node_settings_master_auth(const struct node_settings *set,
			       struct auth_settings *as);

/* Expands a Dovecot-style template: %u the user, %n its local part (before
 * '@'), %d its domain ("" without '@'), %% a '%'. Refused (-1 with a static
 * message in *error_r): an unknown %-code, a result that is not absolute,
 * has a ".." or "." path component or an empty one from an empty %n/%d,
 * or does not fit dst; a user that is empty, has '/' or a control byte.
 * Returns the length. */
int node_mail_location_expand(const char *tmpl, struct str user, char *dst,
			      size_t dstsize, const char **error_r);

/* "pop3", "imap", "lmtp" */
const char *node_listener_protocol_name(unsigned int protocol);

#endif
