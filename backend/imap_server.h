#ifndef MR_IMAP_SERVER_H
#define MR_IMAP_SERVER_H

/*
 * The IMAP4rev1 server of the mail node (RFC 3501) with the extensions
 * clients expect: LITERAL+, SASL-IR, ID, ENABLE, IDLE, NAMESPACE, UIDPLUS,
 * MOVE, UNSELECT, CHILDREN, SPECIAL-USE, CONDSTORE, LIST-STATUS. Mail is
 * a user's Maildir++ tree (backend/maildir.h) seen through the mailbox
 * layer (backend/mailbox.h: UID list + index).
 *
 * Sessions live on the worker thread that accepted them (lib/net.h); the
 * worker state is kept next to POP3's and LMTP's on the same workers.
 * Settings come in generations: a session keeps the one it started with.
 */

#include "backend_settings.h"
#include "net.h"

struct auth;

/* Sets the auth service (the caller's; it must outlive the workers) and
 * installs the first settings generation (a copy of what IMAP needs). */
void imap_server_init(struct auth *auth, const struct node_settings *set);
/* Installs a new generation (SIGHUP); set is copied, not taken over. */
void imap_server_config_install(const struct node_settings *set);
/* Drops the current generation (at exit, after the workers ended). */
void imap_server_deinit(void);

/* Worker hooks, called from the daemon's own net_workers hooks: init
 * before the loop; stopping when draining starts (sessions get "* BYE
 * Server shutting down." between commands); deinit after the loop. */
void imap_server_worker_init(struct net_worker *worker);
void imap_server_worker_stopping(struct net_worker *worker);
void imap_server_worker_deinit(struct net_worker *worker);

/* Closes every IMAP session of user on this worker ("* BYE" first; the
 * director's kick). Returns how many were closed. */
unsigned int imap_server_worker_kick(struct net_worker *worker,
				     const char *user);

/* The master users' passdb (auth_master_user_separator, SASL authzid);
 * NULL: no master logins. */
void imap_server_set_master_auth(struct auth *auth);

struct io_pool;
/* The pool that runs sessions' disk work (NULL: on the worker thread). */
void imap_server_set_io_pool(struct io_pool *pool);

struct tls_server;
/* The TLS server for STARTTLS and ssl listeners (NULL: none; the caller's,
 * it must outlive the workers). */
void imap_server_set_tls(struct tls_server *tls);

/* net_accept_fn for IMAP listeners; context NULL for plain listeners, or
 * a bool that is true for implicit TLS. */
void imap_server_accept(struct net_worker *worker, int fd,
			const struct net_addr *peer,
			const struct net_addr *local, void *context);

#endif
