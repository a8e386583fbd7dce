#ifndef MR_LOG_H
#define MR_LOG_H

/*
 * Logging for the daemons (OpenSMTPD log.h style, Dovecot field style).
 *
 * A line on stderr looks like
 *   2026-11-24T02:21:04.123Z mailring-proxy: info: Login: user=<alice> ...
 * and on syslog carries only the part after "info: ". Every line is built in
 * one bounded buffer (LOG_LINE_MAX bytes with the newline, cut with "...")
 * and written with a single write(), so concurrent threads never interleave.
 * Control bytes in a finished message are escaped as \xNN: one event is one
 * line. Logging never changes errno.
 *
 * Structured lines: fill a struct log_fields on the stack and pass it to
 * log_event(). Values that come from clients go through log_field_str() or
 * log_field_slice(): they are written as key=<value>, with control bytes,
 * 8-bit bytes, '\' and '>' escaped as \xNN and cut at LOG_FIELD_VALUE_MAX.
 *
 * Session context (struct log_ctx: user, rip, backend, session id) is
 * appended to every line logged through a log_ctx_* function. It goes at
 * the end so the event name leads, and room for it is reserved before the
 * message is truncated, so the context is never cut off.
 */

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "str.h"

struct sockaddr;

#define LOG_LINE_MAX 4096       /* bytes per line, newline included */
#define LOG_FIELDS_SIZE 2048    /* bytes of key=value text per event */
#define LOG_FIELD_VALUE_MAX 256 /* bytes of one rendered value, with NUL */
#define LOG_SESSION_ID_LEN 16   /* characters of a session id */
#define LOG_IDENT_MAX 64        /* bytes of the process name, with NUL */
#define LOG_CTX_SESSION_MAX 64  /* bytes of a context session id, with NUL */

enum log_level {
	LOG_LEVEL_DEBUG = 0, /* tracing for developers */
	LOG_LEVEL_INFO,      /* normal events: logins, disconnects */
	LOG_LEVEL_NOTICE,    /* normal but worth a look: config reloaded */
	LOG_LEVEL_WARNING,   /* something failed, service continues */
	LOG_LEVEL_ERROR,     /* a failure that needs an admin */
	LOG_LEVEL_FATAL,     /* the process exits; never filtered */
};

/* ---- set-up (call from the main thread, before or between workers) ---- */

/* Sets the process name put in front of each line (cut at LOG_IDENT_MAX-1
 * bytes; NULL means "mailring") and the lowest level that is logged.
 * Output goes to stderr until log_set_syslog/fd/callback say otherwise. */
void log_init(const char *ident, enum log_level level);
/* Changes the lowest level that is logged. Safe from any thread. */
void log_set_level(enum log_level level);
/* True when a line at this level would be logged: lets callers skip
 * building expensive debug output. */
bool log_level_enabled(enum log_level level);
/* "debug", "info", "notice", "warning", "error", "fatal". */
const char *log_level_name(enum log_level level);
/* Parses one of the names above (case-insensitive; "warn" is accepted).
 * Returns 0, or -1 for an unknown name. */
int log_level_parse(const char *name, enum log_level *level_r);

/* enable: log through syslog(3) with this facility (LOG_MAIL, ...) and the
 * ident from log_init; lines then carry no timestamp or prefix of our own.
 * !enable: back to the fd output. */
void log_set_syslog(bool enable, int facility);
/* Parses a facility name ("mail", "daemon", "local0".."local7", "user").
 * Returns 0, or -1 for an unknown name. */
int log_syslog_facility_parse(const char *name, int *facility_r);
/* Lines (when not on syslog) go to fd, 2 by default. The fd stays the
 * caller's. */
void log_set_fd(int fd);
/* Turns the ISO-8601 timestamp on fd output on (default) or off (for
 * journald, which stamps lines itself, and for tests). */
void log_set_timestamps(bool enable);

/* Receives every line instead of the fd/syslog output: line is the full
 * NUL-terminated line without its newline. Calls are serialised by a
 * mutex; the callback must not log. For tests and embedding. */
typedef void log_callback_t(enum log_level level, const char *line,
			    void *context);
/* Installs cb (NULL restores the normal output). */
void log_set_callback(log_callback_t *cb, void *context);
/* Test hook: replaces the monotonic clock used by rate limits and the
 * wall clock used for timestamps. NULL restores the real clock. */
void log_set_clocks(uint64_t (*monotonic_msecs)(void),
		    void (*realtime)(struct timespec *ts_r));

/* ---- plain lines, printf-checked ---- */

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs at warning level with ": strerror(errno)" appended. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs at warning level, without errno. */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Log at fatal level (fatal appends strerror(errno)) and exit(1). Only for
 * start-up failures and broken invariants. */
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* ---- rate limiting of lines a client can trigger ---- */

/* At most `burst` lines per `interval_msecs` window (monotonic clock).
 * Lines over the limit are counted, and the next line that is let through
 * carries " suppressed=N". May be shared between threads. */
struct log_ratelimit {
	pthread_mutex_t lock;
	uint64_t interval_msecs;
	unsigned int burst;
	/* private */
	bool started;
	uint64_t window_start_msecs;
	unsigned int count;
	uint64_t suppressed;
};
#define LOG_RATELIMIT_INIT(interval, burst_)                                   \
	{                                                                      \
		.lock = PTHREAD_MUTEX_INITIALIZER,                             \
		.interval_msecs = (interval), .burst = (burst_)                \
	}
/* Same as LOG_RATELIMIT_INIT, for limits not set up statically. A burst of
 * 0 counts as 1; an interval of 0 disables the limit. */
void log_ratelimit_init(struct log_ratelimit *rl, uint64_t interval_msecs,
			unsigned int burst);
/* Returns true when one more line may be logged now, with *suppressed_r
 * set to the number of lines refused since the previous allowed one (and
 * that count reset); false when the line must be dropped. */
bool log_ratelimit_check(struct log_ratelimit *rl, uint64_t *suppressed_r);

/* ---- structured key=value events ---- */

struct log_fields {
	size_t len;
	bool truncated; /* a field did not fit: " ..." was appended */
	char buf[LOG_FIELDS_SIZE];
};
/* Empties f; call before adding fields. */
void log_fields_init(struct log_fields *f);
/* Appends key=<value>: for free text and anything a client sent. The
 * value is sanitised and cut at LOG_FIELD_VALUE_MAX. NULL logs "<>". */
void log_field_str(struct log_fields *f, const char *key, const char *value);
/* Same for a (pointer, length) slice, which may hold NUL bytes. */
void log_field_slice(struct log_fields *f, const char *key, struct str value);
/* Appends key=value bare for our own tokens (method=PLAIN, backend=b1).
 * Falls back to key=<sanitised> when the value is empty or has bytes other
 * than letters, digits and "._-:/@+". */
void log_field_atom(struct log_fields *f, const char *key, const char *value);
void log_field_uint(struct log_fields *f, const char *key, uint64_t value);
void log_field_int(struct log_fields *f, const char *key, int64_t value);
/* Appends key=ADDRESS (no port; v4-mapped IPv6 shown as IPv4, AF_UNIX as
 * "local", NULL or other families as "?"). */
void log_field_ip(struct log_fields *f, const char *key,
		  const struct sockaddr *sa);

/* Logs "event: fields" (just "event" when f is NULL or empty). */
void log_event(enum log_level level, const char *event,
	       const struct log_fields *f);

/* ---- session context ---- */

struct log_ctx {
	char user[LOG_FIELD_VALUE_MAX];    /* sanitised, "" = unset */
	char rip[48];                      /* text address, "" = unset */
	char backend[LOG_FIELD_VALUE_MAX]; /* atom or <sanitised>, "" = unset */
	char session[LOG_CTX_SESSION_MAX]; /* sanitised, "" = unset */
};
/* Clears every context field. */
void log_ctx_init(struct log_ctx *ctx);
/* Each setter replaces one field; an empty value (or NULL) unsets it. The
 * context renders as " user=<u> rip=a.b.c.d backend=b1 session=<id>"; user
 * and session are sanitised like log_field_str (a session id longer than
 * LOG_CTX_SESSION_MAX-1 bytes is cut), backend like log_field_atom. */
void log_ctx_set_user(struct log_ctx *ctx, struct str user);
void log_ctx_set_rip(struct log_ctx *ctx, const struct sockaddr *sa);
void log_ctx_set_backend(struct log_ctx *ctx, const char *backend);
void log_ctx_set_session(struct log_ctx *ctx, const char *session_id);

void log_ctx_debug(const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_ctx_info(const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends ": strerror(errno)" like log_warn. */
void log_ctx_warn(const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_ctx_warnx(const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_ctx_error(const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* log_event with the context appended; ctx may be NULL. */
void log_ctx_event(const struct log_ctx *ctx, enum log_level level,
		   const char *event, const struct log_fields *f);

/* The general forms behind all of the above: ctx and rl may be NULL. When
 * rl refuses the line nothing is logged. */
void log_emit(enum log_level level, const struct log_ctx *ctx,
	      struct log_ratelimit *rl, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void log_event_emit(enum log_level level, const struct log_ctx *ctx,
		    struct log_ratelimit *rl, const char *event,
		    const struct log_fields *f);

/* ---- session ids ---- */

/* Writes a new session id: LOG_SESSION_ID_LEN base64 characters
 * ([A-Za-z0-9+/]) and a NUL. Unique within the process (a bijective mix of
 * a random 64-bit base plus a counter) and, thanks to a random per-process
 * salt, across processes with overwhelming probability; re-seeded after
 * fork(). Thread-safe. */
void log_session_id_new(char id_r[LOG_SESSION_ID_LEN + 1]);

#endif
