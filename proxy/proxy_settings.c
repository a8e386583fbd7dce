#include "proxy_settings.h"

#include "auth/auth.h"
#include "discovery.h"
#include "log.h"
#include "net.h"
#include "ring/dns.h"
#include "str.h"

static const char *const protocol_values[] = { "imap", "pop3", "lmtp",
						NULL };
static const char *const backend_ssl_values[] = { "no", "starttls", "yes",
						   NULL };
static const char *const log_level_values[] = { "debug", "info", "notice",
						 "warning", "error", NULL };
static const char *const user_hash_values[] = { "user", "domain", NULL };
static const char *const director_store_values[] = { "embedded", "redis",
						      NULL };

#define L struct listener_settings
static const struct config_def listener_defs[] = {
	CONFIG_DEF_ENUM(L, "protocol", protocol, "imap", protocol_values,
			"imap, pop3 or lmtp"),
	CONFIG_DEF_LIST(L, "address", address, NULL,
			"addresses to listen on: 127.0.0.1:143 [::1]:143"),
	CONFIG_DEF_BOOL(L, "ssl", ssl, "no",
			"implicit TLS on connect (imaps/pop3s)"),
	CONFIG_DEF_BOOL(L, "haproxy", haproxy, "no",
			"expect a PROXY v1/v2 header from haproxy_trusted_networks"),
	CONFIG_DEF_END,
};
#undef L
static const struct config_section listener_section =
	CONFIG_SECTION_NAMED(struct listener_settings, name, listener_defs);

#define B struct backend_settings
static const struct config_def backend_defs[] = {
	CONFIG_DEF_STRING(B, "host", host, NULL,
			  "IP address or DNS name of the backend"),
	CONFIG_DEF_UINT(B, "imap_port", imap_port, "143", 0, 65535,
			"IMAP port (0 = no IMAP)"),
	CONFIG_DEF_UINT(B, "pop3_port", pop3_port, "110", 0, 65535,
			"POP3 port (0 = no POP3)"),
	CONFIG_DEF_UINT(B, "lmtp_port", lmtp_port, "24", 0, 65535,
			"LMTP port (0 = no LMTP)"),
	CONFIG_DEF_UINT(B, "weight", weight, "100", 0, 1000000,
			"share of new users; 0 = drained"),
	CONFIG_DEF_STRING(B, "tag", tag, NULL, "pool of backends"),
	CONFIG_DEF_ENUM(B, "ssl", ssl, "no", backend_ssl_values,
			"TLS to the backend: no, starttls or yes"),
	CONFIG_DEF_BOOL(B, "ssl_verify", ssl_verify, "yes",
			"verify the backend's certificate"),
	CONFIG_DEF_STRING(B, "ssl_ca", ssl_ca, NULL,
			  "CA file for verifying the backend"),
	CONFIG_DEF_STRING(B, "ssl_host", ssl_host, NULL,
			  "name expected in the backend's certificate"),
	CONFIG_DEF_BOOL(B, "trusted", trusted, "yes",
			"forward the client's address (IMAP ID, POP3 XCLIENT)"),
	CONFIG_DEF_STRING(B, "master_user", master_user, NULL,
			  "log in as this master user (SASL PLAIN authzid)"),
	CONFIG_DEF_STRING(B, "master_password", master_password, NULL,
			  "password of master_user"),
	CONFIG_DEF_END,
};
#undef B
static const struct config_section backend_section =
	CONFIG_SECTION_NAMED(struct backend_settings, name, backend_defs);


#define S struct proxy_settings
static const struct config_def proxy_defs[] = {
	CONFIG_DEF_UINT(S, "workers", workers, "0", 0, 256,
			"worker threads; 0 = one per core"),
	CONFIG_DEF_ENUM(S, "log_level", log_level, "info", log_level_values,
			"debug, info, notice, warning or error"),
	CONFIG_DEF_BOOL(S, "log_syslog", log_syslog, "no",
			"log to syslog instead of stderr"),
	CONFIG_DEF_STRING(S, "syslog_facility", syslog_facility, "mail",
			  "syslog facility"),
	CONFIG_DEF_STRING(S, "ssl_cert", ssl_cert, NULL,
			  "PEM certificate chain for clients (\"<path\" or path)"),
	CONFIG_DEF_STRING(S, "ssl_key", ssl_key, NULL, "PEM private key"),
	CONFIG_DEF_NETS(S, "login_trusted_networks", trusted_networks, NULL,
			"clients allowed plaintext logins"),
	CONFIG_DEF_NETS(S, "haproxy_trusted_networks",
			haproxy_trusted_networks, NULL,
			"peers allowed to send a PROXY header"),
	CONFIG_DEF_BOOL(S, "disable_plaintext_auth", disable_plaintext_auth,
			"yes", "refuse plaintext credentials without TLS"),
	CONFIG_DEF_UINT(S, "max_connections", max_connections, "10000", 1,
			10000000, "client connections in total"),
	CONFIG_DEF_UINT(S, "max_connections_per_ip", max_connections_per_ip,
			"100", 0, 10000000, "client connections per IP; 0 = no limit"),
	CONFIG_DEF_DURATION(S, "login_timeout", login_timeout_msecs, "60s",
			    1000, 0, "time a client has to log in"),
	CONFIG_DEF_DURATION(S, "idle_timeout", idle_timeout_msecs, "35m", 0, 0,
			    "close a logged-in session idle this long; 0 = never"),
	CONFIG_DEF_SIZE(S, "max_line_length", max_line_length, "8k", 256,
			1048576, "pre-login command line limit"),
	CONFIG_DEF_SIZE(S, "max_literal_size", max_literal_size, "8k", 0,
			1048576, "pre-login literal limit"),
	CONFIG_DEF_UINT(S, "max_bad_commands", max_bad_commands, "10", 1, 1000,
			"invalid pre-login commands before disconnecting"),
	CONFIG_DEF_DURATION(S, "auth_failure_delay", auth_failure_delay_msecs,
			    "2s", 0, 0, "delay before answering a failed login"),
	CONFIG_DEF_DURATION(S, "auth_penalty_max", auth_penalty_max_msecs,
			    "15s", 0, 0, "largest delay from repeated failures"),
	CONFIG_DEF_SIZE(S, "auth_cache_size", auth_cache_size, "1M", 0, 0,
			"auth cache memory; 0 = no cache"),
	CONFIG_DEF_DURATION(S, "auth_cache_ttl", auth_cache_ttl_msecs, "1h", 0,
			    0, "lifetime of a cached success"),
	CONFIG_DEF_DURATION(S, "auth_cache_negative_ttl",
			    auth_cache_negative_ttl_msecs, "1h", 0, 0,
			    "lifetime of a cached unknown user"),
	CONFIG_DEF_STRING(S, "auth_username_chars", auth_username_chars,
			  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@",
			  "characters allowed in user names"),
	CONFIG_DEF_BOOL(S, "auth_username_lowercase", auth_username_lowercase,
			"yes", "lower-case user names (Dovecot's %Lu)"),
	CONFIG_DEF_UINT(S, "auth_workers", auth_workers, "2", 1, 64,
			"threads that verify passwords"),
	CONFIG_DEF_BLOCK(S, "passdb", passdb, &passdb_settings_section,
			 "password database"),
	CONFIG_DEF_DURATION(S, "backend_connect_timeout",
			    backend_connect_timeout_msecs, "10s", 100, 0,
			    "time to connect to a backend"),
	CONFIG_DEF_DURATION(S, "backend_login_timeout",
			    backend_login_timeout_msecs, "30s", 100, 0,
			    "time for the backend to greet and log the user in"),
	CONFIG_DEF_LIST(S, "source_ips", source_ips, NULL,
			"local addresses for backend connections, used in turn"),
	CONFIG_DEF_DURATION(S, "max_disconnect_delay",
			    max_disconnect_delay_msecs, "0", 0, 0,
			    "spread disconnects of a dead backend's clients over this"),
	CONFIG_DEF_ENUM(S, "user_hash_key", user_hash_key, "user",
			user_hash_values,
			"place users by full name (user) or by domain"),
	CONFIG_DEF_DURATION(S, "user_expire", user_expire_msecs, "15m", 0, 0,
			    "a user's mapping outlives their last session this long"),
	CONFIG_DEF_STRING(S, "director_state_file", director_state_file, NULL,
			  "where the embedded store keeps mappings and backend states"),
	CONFIG_DEF_UINT(S, "director_max_load", director_max_load, "0", 0, 1000,
			"bounded load: a new user skips a backend above this % of its "
			"weight share of sessions; 0 = off"),
	CONFIG_DEF_STRING(S, "director_backend_template", director_backend_template,
			  NULL, "backend whose settings `mailring add` copies "
			  "(default: the first)"),
	CONFIG_DEF_UINT(S, "director_flush_batch", director_flush_batch, "100", 0,
			1000000, "flush: users moved at a time; 0 = all at once"),
	CONFIG_DEF_DURATION(S, "director_flush_interval",
			    director_flush_interval_msecs, "100ms", 0, 60000,
			    "flush: pause between two batches"),
	CONFIG_DEF_STRING(S, "admin_listen", admin_listen, NULL,
			  "host:port for the admin API over TCP; empty = off"),
	CONFIG_DEF_STRING(S, "admin_token", admin_token, NULL,
			  "bearer token the TCP admin API requires (16+ chars)"),
	CONFIG_DEF_STRING(S, "health_user", health_user, NULL,
			  "health checks log in as this user; empty = greeting only"),
	CONFIG_DEF_STRING(S, "health_password", health_password, NULL,
			  "the check user's password"),
	CONFIG_DEF_ENUM(S, "director_store", director_store, "embedded",
			director_store_values,
			"embedded (one proxy) or redis (shared by several)"),
	CONFIG_DEF_STRING(S, "redis_address", redis_address, "127.0.0.1:6379",
			  "host:port of the Redis master (without sentinels)"),
	CONFIG_DEF_LIST(S, "redis_sentinels", redis_sentinels, NULL,
			"host:port of Sentinels that name the master"),
	CONFIG_DEF_STRING(S, "redis_sentinel_master", redis_sentinel_master,
			  "mymaster", "the master's name at the Sentinels"),
	CONFIG_DEF_STRING(S, "redis_password", redis_password, NULL,
			  "AUTH password; empty = none"),
	CONFIG_DEF_STRING(S, "redis_prefix", redis_prefix, "mailring:",
			  "prefix of every key and of the event channel"),
	CONFIG_DEF_DURATION(S, "redis_timeout", redis_timeout_msecs, "500ms",
			    10, 60000, "a Redis call slower than this failed"),
	CONFIG_DEF_STRING(S, "proxy_name", proxy_name, NULL,
			  "this proxy's name in the ring (default: host name)"),
	CONFIG_DEF_DURATION(S, "proxy_heartbeat_interval",
			    proxy_heartbeat_interval_msecs, "1s", 100, 60000,
			    "how often a proxy tells the ring it lives"),
	CONFIG_DEF_DURATION(S, "proxy_dead_timeout", proxy_dead_timeout_msecs,
			    "5s", 300, 600000,
			    "a proxy silent this long is not counted (quorum, acks)"),
	CONFIG_DEF_DURATION(S, "director_move_timeout",
			    director_move_timeout_msecs, "5s", 100, 600000,
			    "move/flush: how long to wait for every proxy's kick"),
	CONFIG_DEF_STRING(S, "admin_socket", admin_socket, NULL,
			  "unix socket of the admin API (mailring CLI); empty = off"),
	CONFIG_DEF_DURATION(S, "health_interval", health_interval_msecs, "5s", 0,
			    0, "time between checks of a backend; 0 = no checks"),
	CONFIG_DEF_DURATION(S, "health_timeout", health_timeout_msecs, "3s", 100,
			    0, "a check that takes longer failed"),
	CONFIG_DEF_UINT(S, "health_rise", health_rise, "2", 1, 100,
			"good checks in a row that bring a backend back up"),
	CONFIG_DEF_UINT(S, "health_fall", health_fall, "3", 1, 100,
			"failed checks in a row that take a backend down"),
	CONFIG_DEF_LIST(S, "dns_servers", dns_servers, NULL,
			"DNS servers ip[:port] for backend names; empty = /etc/resolv.conf"),
	CONFIG_DEF_DURATION(S, "dns_timeout", dns_timeout_msecs, "2s", 10,
			    60000, "time one DNS server gets to answer"),
	CONFIG_DEF_UINT(S, "dns_retries", dns_retries, "2", 0, 10,
			"extra rounds over dns_servers before a lookup fails"),
	CONFIG_DEF_DURATION(S, "dns_min_ttl", dns_min_ttl_msecs, "5s", 1000,
			    86400000, "re-resolve a name no sooner than this"),
	CONFIG_DEF_DURATION(S, "dns_max_ttl", dns_max_ttl_msecs, "1h", 1000,
			    86400000, "re-resolve a name at least this often"),
	CONFIG_DEF_LIST(S, "backend_srv", backend_srv, NULL,
			"SRV names whose records are backends: _imap._tcp.example.net"),
	CONFIG_DEF_STRING(S, "rawlog_dir", rawlog_dir, NULL,
			  "directory for per-user traffic logs"),
	CONFIG_DEF_LIST(S, "rawlog_users", rawlog_users, NULL,
			"users whose traffic is logged (never passwords)"),
	CONFIG_DEF_DURATION(S, "shutdown_grace", shutdown_grace_msecs, "30s",
			    0, 0, "on SIGTERM, time sessions get to finish"),
	CONFIG_DEF_DURATION(S, "lmtp_timeout", lmtp_timeout_msecs, "5m", 1000,
			    0, "LMTP: idle MTA, or a backend silent this long"),
	CONFIG_DEF_SIZE(S, "lmtp_max_message_size", lmtp_max_message_size,
			"50M", 1024, 1073741824,
			"LMTP: largest message (spooled in memory)"),
	CONFIG_DEF_UINT(S, "lmtp_max_recipients", lmtp_max_recipients, "100",
			1, 100, "LMTP: recipients per message"),
	CONFIG_DEF_SECTIONS(S, "listener", listeners, listener_count,
			    &listener_section, "listener NAME { ... }"),
	CONFIG_DEF_SECTIONS(S, "backend", backends, backend_count,
			    &backend_section, "backend NAME { ... }"),
	CONFIG_DEF_END,
};
#undef S

const struct config_section proxy_settings_schema =
	CONFIG_SECTION(struct proxy_settings, proxy_defs);

const char *proxy_settings_path(const char *value)
{
	if (value != NULL && value[0] == '<')
		return value + 1;
	return value;
}

void proxy_settings_backend_defaults(struct backend_settings *b)
{
	struct config_errors errors = { 0 };
	if (config_load_defaults(&backend_section, b, &errors) < 0)
		fatalx("backend defaults: %s", errors.count > 0 ?
		       errors.lines[0] : "failed");
	config_errors_free(&errors);
}

void proxy_settings_backend_free(struct backend_settings *b)
{
	config_free(&backend_section, b);
}

int proxy_settings_check(const struct proxy_settings *set, char *err,
			 size_t errsize)
{
	bool need_cert = false;

	if (set->listener_count == 0) {
		str_printf(err, errsize, "no listener configured");
		return -1;
	}
	if (set->backend_count == 0 && set->backend_srv.count == 0) {
		str_printf(err, errsize, "no backend configured (backend sections "
			   "or backend_srv)");
		return -1;
	}
	for (size_t i = 0; i < set->listener_count; i++) {
		const struct listener_settings *l = &set->listeners[i];
		if (l->address.count == 0) {
			str_printf(err, errsize, "listener %s: no address",
				   l->name);
			return -1;
		}
		for (size_t j = 0; j < l->address.count; j++) {
			struct net_addr a;
			const char *error;
			if (net_addr_parse(l->address.items[j], 0, &a,
					   &error) < 0) {
				str_printf(err, errsize,
					   "listener %s: address '%s': %s",
					   l->name, l->address.items[j], error);
				return -1;
			}
		}
		if (l->ssl)
			need_cert = true;
	}
	if (need_cert && (set->ssl_cert[0] == '\0' || set->ssl_key[0] == '\0')) {
		str_printf(err, errsize,
			   "a listener has ssl = yes but ssl_cert/ssl_key are not set");
		return -1;
	}
	for (size_t i = 0; i < set->backend_count; i++) {
		const struct backend_settings *b = &set->backends[i];
		struct net_addr a;
		const char *error;
		/* an IP address, or a name resolved at run time
		 * (proxy/discovery.c) */
		if (net_addr_parse(b->host, NET_ADDR_PORT_OPTIONAL, &a,
				   &error) < 0 && !discovery_is_host_name(b->host)) {
			str_printf(err, errsize, "backend %s: host '%s': %s (and "
				   "not a DNS name)", b->name, b->host, error);
			return -1;
		}
		if ((b->master_user[0] == '\0') != (b->master_password[0] == '\0')) {
			str_printf(err, errsize,
				   "backend %s: master_user and master_password go together",
				   b->name);
			return -1;
		}
	}
	for (size_t i = 0; i < set->source_ips.count; i++) {
		struct net_addr a;
		const char *error;
		if (net_addr_parse(set->source_ips.items[i],
				   NET_ADDR_PORT_OPTIONAL, &a, &error) < 0) {
			str_printf(err, errsize, "source_ips: '%s': %s",
				   set->source_ips.items[i], error);
			return -1;
		}
	}
	if (set->dns_servers.count > 0) {
		struct net_addr addrs[DNS_SERVERS_MAX];
		char text[1024], derr[DNS_ERROR_MAX];
		size_t n;
		if (discovery_servers_text(set, text, sizeof(text)) < 0 ||
		    dns_servers_parse(text, addrs, DNS_SERVERS_MAX, &n, derr,
				      sizeof(derr)) < 0) {
			str_printf(err, errsize, "dns_servers: %s",
				   text[0] == '\0' ? "too long" : derr);
			return -1;
		}
	}
	if (set->dns_max_ttl_msecs < set->dns_min_ttl_msecs) {
		str_printf(err, errsize, "dns_max_ttl is below dns_min_ttl");
		return -1;
	}
	for (size_t i = 0; i < set->backend_srv.count; i++) {
		const char *name = set->backend_srv.items[i];
		bool tls;
		if (!dns_name_is_valid(name)) {
			str_printf(err, errsize, "backend_srv: '%s' is not a valid "
				   "DNS name", name);
			return -1;
		}
		if (discovery_srv_protocol(name, &tls) < 0) {
			str_printf(err, errsize, "backend_srv: '%s': the first label "
				   "must be _imap, _imaps, _pop3, _pop3s or _lmtp",
				   name);
			return -1;
		}
	}
	if (set->passdb.args[0] == '\0') {
		str_printf(err, errsize, "passdb { args } (the passwd-file) is not set");
		return -1;
	}
	return 0;
}

void proxy_settings_auth(const struct proxy_settings *set,
			 struct auth_settings *as)
{
	auth_settings_init(as);
	as->passdb_driver = set->passdb.driver;
	as->passdb_args = set->passdb.args;
	as->username_chars = set->auth_username_chars;
	as->username_format = set->auth_username_lowercase ? "%Lu" : "%u";
	as->workers = (unsigned int)set->auth_workers;
	as->failure_delay_ms = (uint32_t)set->auth_failure_delay_msecs;
	as->cache_enabled = set->auth_cache_size > 0;
	as->cache.max_bytes = set->auth_cache_size;
	as->cache.ttl_ms = set->auth_cache_ttl_msecs;
	as->cache.negative_ttl_ms = set->auth_cache_negative_ttl_msecs;
	as->penalty_enabled = set->auth_penalty_max_msecs > 0;
	as->penalty.max_ms = (uint32_t)set->auth_penalty_max_msecs;
	if (as->penalty.base_ms > as->penalty.max_ms)
		as->penalty.base_ms = as->penalty.max_ms;
}
