#ifndef MR_POP3_SERVER_H
#define MR_POP3_SERVER_H

/*
 * The POP3 server of the mail node (RFC 1939, RFC 2449 CAPA, RFC 5034
 * AUTH PLAIN) over one user's Maildir INBOX (backend/maildir.h) with
 * stable UIDs from the UID list (backend/uidlist.h).
 *
 * Sessions live on the worker thread that accepted them (lib/net.h).
 * Settings come in generations: pop3_server_config_install() swaps in a
 * new one (SIGHUP); a session keeps the one it started with.
 */

#include <stdbool.h>

#include "backend_settings.h"
#include "net.h"

struct auth;
struct net_workers_settings;

/* Sets the auth service every session uses (the caller's; it must outlive
 * the workers) and installs the first settings generation, taking set
 * over (its contents; set is zeroed). */
void pop3_server_init(struct auth *auth, struct node_settings *set);
/* Installs a new settings generation (takes over *set like init). */
void pop3_server_config_install(struct node_settings *set);
/* Drops the current generation (at exit, after the workers ended). */
void pop3_server_deinit(void);
/* A copy-free look at the current settings: valid on the main thread
 * until the next install. */
const struct node_settings *pop3_server_settings(void);

/* net_workers_settings hooks (init, deinit, stopping) for count workers. */
const struct net_workers_settings *pop3_server_worker_hooks(unsigned int count);

/* Closes every POP3 session of user on this worker (nothing is expunged:
 * QUIT was not given). Returns how many. Runs on the worker's thread. */
unsigned int pop3_server_worker_kick(struct net_worker *worker,
				     const char *user);

/* The master users' passdb (NULL: no master logins). */
void pop3_server_set_master_auth(struct auth *auth);

struct io_pool;
/* The pool for sessions' disk work (NULL: on the worker thread). */
void pop3_server_set_io_pool(struct io_pool *pool);

struct tls_server;
/* The TLS server for STLS and ssl listeners (NULL: none). */
void pop3_server_set_tls(struct tls_server *tls);

/* net_accept_fn for POP3 listeners (context as imap_server_accept's). */
void pop3_server_accept(struct net_worker *worker, int fd,
			const struct net_addr *peer,
			const struct net_addr *local, void *context);

#endif
