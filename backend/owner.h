#ifndef MR_OWNER_H
#define MR_OWNER_H

/*
 * Shared-storage guard: while a user has sessions open in a node process,
 * the file <mail root of the user>/mailring-owner.<host>.<pid> names it:
 *
 *   host=<hostname> pid=<pid> since=<unix seconds>\n
 *
 * written atomically (tmp file + rename) and rewritten every
 * OWNER_REFRESH_SECS while held; each process removes only its own file.
 * A login that finds another host's file there, fresh (written within
 * OWNER_STALE_SECS), logs one error line naming both hosts: two backends serve the same user at once,
 * which the director's invariant I1 forbids (its violation detector). The
 * periodic refresh finds the same when the other host came second.
 * The guard only reports; it never refuses a login (refusing would turn a
 * director bug into an outage).
 *
 * Thread-safe: sessions on any worker call acquire/release; the main
 * thread calls owner_refresh_all from a timer.
 */

#include "log.h"

#define OWNER_FILE_NAME "mailring-owner"
#define OWNER_REFRESH_SECS 60
#define OWNER_STALE_SECS 180

struct owner_ref;

/* Sets this node's host name (copied; "" = gethostname()). */
void owner_init(const char *hostname);
/* The host name in use. */
const char *owner_hostname(void);
/* A session of user opened; root is the user's mail root (where the file
 * lives). Never fails: trouble writing the file is logged. */
struct owner_ref *owner_acquire(const char *user, const char *root,
				const struct log_ctx *log);
/* The session ended; the last one of the user removes the file (when it
 * still names this node). Safe on NULL; *ref becomes NULL. */
void owner_release(struct owner_ref **ref);
/* Touches the files of every user held and checks that they still name
 * this node (main thread, every OWNER_REFRESH_SECS). */
void owner_refresh_all(void);
/* Drops every registration (at exit). */
void owner_deinit(void);

#endif
