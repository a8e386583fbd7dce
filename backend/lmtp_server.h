#ifndef MR_LMTP_SERVER_H
#define MR_LMTP_SERVER_H

/*
 * The LMTP server of the mail node (RFC 2033 with PIPELINING, 8BITMIME,
 * ENHANCEDSTATUSCODES, SIZE): delivery into each recipient's Maildir
 * INBOX, one reply per accepted recipient, 250 only once the file and its
 * directory are fsynced (maildir_save_finish).
 *
 * Sessions live on the worker thread that accepted them (lib/net.h); the
 * worker state is thread-local, so these hooks run next to POP3's on the
 * same workers. Settings come in generations like POP3's: a session keeps
 * the one it started with.
 */

#include "backend_settings.h"
#include "net.h"

struct auth;

/* Sets the auth service (the caller's; it must outlive the workers) and
 * installs the first settings generation (a copy of what LMTP needs from
 * set; set is not changed). */
void lmtp_server_init(struct auth *auth, const struct node_settings *set);
/* Installs a new generation (SIGHUP); set is copied, not taken over. */
void lmtp_server_config_install(const struct node_settings *set);
/* Drops the current generation (at exit, after the workers ended). */
void lmtp_server_deinit(void);

/* Worker hooks, to be called from the daemon's own net_workers hooks on
 * each worker thread: init before the loop, stopping when draining starts
 * (every LMTP session is closed with 421 at once: nothing acknowledged is
 * lost, the MTA retries the rest), deinit after the loop. */
void lmtp_server_worker_init(struct net_worker *worker);
void lmtp_server_worker_stopping(struct net_worker *worker);
void lmtp_server_worker_deinit(struct net_worker *worker);

struct io_pool;
/* The pool for deliveries (NULL: on the worker thread). */
void lmtp_server_set_io_pool(struct io_pool *pool);

/* net_accept_fn for LMTP listeners. */
void lmtp_server_accept(struct net_worker *worker, int fd,
			const struct net_addr *peer,
			const struct net_addr *local, void *context);

#endif
