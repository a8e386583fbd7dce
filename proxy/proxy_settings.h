#ifndef MR_PROXY_SETTINGS_H
#define MR_PROXY_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/passdb_settings.h"
#include "config.h"

/* Settings of mailring-proxy, loaded from mailring-proxy.conf. Names follow
 * Dovecot's where an admin would look for them there. docs/proxy.md lists
 * every key with an example. */

enum listener_protocol {
	LISTENER_IMAP = 0,
	LISTENER_POP3,
	LISTENER_LMTP,
};

struct listener_settings {
	char *name;
	unsigned int protocol;          /* enum listener_protocol */
	struct config_strlist address;  /* "127.0.0.1:143", "[::1]:143" */
	bool ssl;                       /* implicit TLS (imaps, pop3s) */
	bool haproxy;                   /* expect a PROXY v1/v2 header */
};

enum backend_ssl {
	BACKEND_SSL_NO = 0,
	BACKEND_SSL_STARTTLS,
	BACKEND_SSL_YES,
};

struct backend_settings {
	char *name;
	char *host;
	uint64_t imap_port;
	uint64_t pop3_port;
	uint64_t lmtp_port;
	uint64_t weight;
	char *tag;
	unsigned int ssl;               /* enum backend_ssl */
	bool ssl_verify;
	char *ssl_ca;
	char *ssl_host;                 /* name to verify; default: host */
	bool trusted;                   /* forward client address (ID/XCLIENT) */
	char *master_user;
	char *master_password;
};

enum director_store {
	DIRECTOR_STORE_EMBEDDED = 0,
	DIRECTOR_STORE_REDIS,
};

enum user_hash_key {
	USER_HASH_KEY_USER = 0,
	USER_HASH_KEY_DOMAIN,
};

struct proxy_settings {
	uint64_t workers;
	unsigned int log_level;
	bool log_syslog;
	char *syslog_facility;

	char *ssl_cert;
	char *ssl_key;

	struct config_nets trusted_networks;
	struct config_nets haproxy_trusted_networks;
	bool disable_plaintext_auth;

	uint64_t max_connections;
	uint64_t max_connections_per_ip;
	uint64_t login_timeout_msecs;
	uint64_t idle_timeout_msecs;
	uint64_t max_line_length;
	uint64_t max_literal_size;
	uint64_t max_bad_commands;

	uint64_t auth_failure_delay_msecs;
	uint64_t auth_penalty_max_msecs;
	uint64_t auth_cache_size;
	uint64_t auth_cache_ttl_msecs;
	uint64_t auth_cache_negative_ttl_msecs;
	char *auth_username_chars;
	bool auth_username_lowercase;
	uint64_t auth_workers;
	struct passdb_settings passdb;

	uint64_t backend_connect_timeout_msecs;
	uint64_t backend_login_timeout_msecs;
	struct config_strlist source_ips;
	uint64_t max_disconnect_delay_msecs;
	unsigned int user_hash_key;     /* enum user_hash_key */
	uint64_t user_expire_msecs;
	char *director_state_file;
	char *admin_socket;
	unsigned int director_store;    /* enum director_store */
	uint64_t director_max_load;     /* percent; 0 = off */
	char *director_backend_template;
	char *health_user;
	char *health_password;
	char *admin_listen;
	char *admin_token;
	uint64_t director_flush_batch;   /* 0 = all at once */
	uint64_t director_flush_interval_msecs;
	char *redis_address;
	struct config_strlist redis_sentinels;
	char *redis_sentinel_master;
	char *redis_password;
	char *redis_prefix;
	uint64_t redis_timeout_msecs;
	char *proxy_name;
	uint64_t proxy_heartbeat_interval_msecs;
	uint64_t proxy_dead_timeout_msecs;
	uint64_t director_move_timeout_msecs;
	uint64_t health_interval_msecs;
	uint64_t health_timeout_msecs;
	uint64_t health_rise;
	uint64_t health_fall;
	/* DNS (proxy/discovery.c): backend host names and SRV discovery */
	struct config_strlist dns_servers; /* "ip[:port]"; empty = resolv.conf */
	uint64_t dns_timeout_msecs;     /* per try */
	uint64_t dns_retries;           /* extra rounds over dns_servers */
	uint64_t dns_min_ttl_msecs;     /* re-resolve no sooner than this */
	uint64_t dns_max_ttl_msecs;     /* ... and no later than this */
	struct config_strlist backend_srv; /* "_imap._tcp.example.net" */

	char *rawlog_dir;
	struct config_strlist rawlog_users;
	uint64_t shutdown_grace_msecs;
	uint64_t lmtp_timeout_msecs;
	uint64_t lmtp_max_message_size;
	uint64_t lmtp_max_recipients;

	struct listener_settings *listeners;
	size_t listener_count;
	struct backend_settings *backends;
	size_t backend_count;
};

extern const struct config_section proxy_settings_schema;

/* Checks what the schema cannot: at least one listener and one backend,
 * addresses that parse, certificates present when a listener needs TLS,
 * unique ports... Returns 0, or -1 with a message in err. */
int proxy_settings_check(const struct proxy_settings *set, char *err,
			 size_t errsize);

struct auth_settings;
/* Fills the auth library's settings from ours (strings point into set). */
void proxy_settings_auth(const struct proxy_settings *set,
			 struct auth_settings *as);

/* Fills b with the defaults of a backend section (what an SRV-discovered
 * backend copies when no backend section is configured). Free it with
 * proxy_settings_backend_free. */
void proxy_settings_backend_defaults(struct backend_settings *b);
void proxy_settings_backend_free(struct backend_settings *b);

/* A setting given as "<path" (Dovecot's form for ssl_cert) means path. */
const char *proxy_settings_path(const char *value);

#endif
