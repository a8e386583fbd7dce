#ifndef MR_BACKEND_LOGIN_H
#define MR_BACKEND_LOGIN_H

/*
 * What the IMAP and POP3 logins of the mail node share: the count of
 * sessions per user and client IP (mail_max_userip_connections, one table
 * per protocol, as Dovecot counts per service), the master-user syntax,
 * the real client address a trusted proxy passes, and the user's
 * directories.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "log.h"
#include "net.h"
#include "str.h"

struct userip_entry;

struct userip_table {
	pthread_mutex_t lock;
	struct userip_entry *list;
};
#define USERIP_TABLE_INIT { PTHREAD_MUTEX_INITIALIZER, NULL }

/* Counts one more session for "user ip" unless max (0: no limit) is
 * reached; false when refused. Thread-safe. */
bool userip_take(struct userip_table *t, const char *key, uint64_t max);
/* The session counted under key ended. */
void userip_release(struct userip_table *t, const char *key);

/* A master-user login, from a trusted client with a master passdb:
 * SASL authzid != authcid (authzid is the user), or "user<sep>master" in
 * the login name. true with *target_r (the user) and *master_r. */
bool login_master_split(struct str user, struct str authzid, const char *sep,
			struct str *target_r, struct str *master_r);

/* The client address a trusted proxy passes (ID x-originating-ip,
 * XCLIENT ADDR=): sets the log's rip and ip (NET_ADDR_STR_MAX bytes).
 * false when value is not an IP address. */
bool login_proxy_addr(struct str value, struct log_ctx *log, char *ip);
/* The proxy's session id (ID x-session-id, XCLIENT SESSION=): printable,
 * at most LOG_SESSION_ID_LEN bytes; copied into session_id (of
 * LOG_SESSION_ID_LEN + 1 bytes) and the log. false when not acceptable. */
bool login_proxy_session(struct str value, struct log_ctx *log,
			 char *session_id);

/* mkdir -p of dir's parents (0700, as Dovecot creates homes). 0 or -1
 * with errno. */
int login_mkdir_parents(const char *dir);

#endif
