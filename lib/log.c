#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

/* Output settings. Written at set-up, read (as a snapshot) for each line. */
struct log_output {
	char ident[LOG_IDENT_MAX];
	int fd;
	bool use_syslog;
	bool timestamps;
	log_callback_t *cb;
	void *cb_context;
	uint64_t (*monotonic_msecs)(void);
	void (*realtime)(struct timespec *ts_r);
};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
/* Serialises callback invocations (the callback may not be reentrant). */
static pthread_mutex_t log_cb_lock = PTHREAD_MUTEX_INITIALIZER;
static struct log_output log_out = {
    .ident = "mailring",
    .fd = STDERR_FILENO,
    .timestamps = true,
};
static atomic_int log_min_level = LOG_LEVEL_INFO;

static const char *const log_level_names[] = {
    [LOG_LEVEL_DEBUG] = "debug",   [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_NOTICE] = "notice", [LOG_LEVEL_WARNING] = "warning",
    [LOG_LEVEL_ERROR] = "error",   [LOG_LEVEL_FATAL] = "fatal",
};

static const int log_syslog_prio[] = {
    [LOG_LEVEL_DEBUG] = LOG_DEBUG,   [LOG_LEVEL_INFO] = LOG_INFO,
    [LOG_LEVEL_NOTICE] = LOG_NOTICE, [LOG_LEVEL_WARNING] = LOG_WARNING,
    [LOG_LEVEL_ERROR] = LOG_ERR,     [LOG_LEVEL_FATAL] = LOG_CRIT,
};

static enum log_level log_level_clamp(enum log_level level)
{
	if ((int)level < LOG_LEVEL_DEBUG)
		return LOG_LEVEL_DEBUG;
	if (level > LOG_LEVEL_FATAL)
		return LOG_LEVEL_FATAL;
	return level;
}

/* ---- set-up ------------------------------------------------------------ */

static void log_snapshot(struct log_output *out_r)
{
	pthread_mutex_lock(&log_lock);
	*out_r = log_out;
	pthread_mutex_unlock(&log_lock);
}

void log_init(const char *ident, enum log_level level)
{
	pthread_mutex_lock(&log_lock);
	if (ident == NULL || ident[0] == '\0')
		ident = "mailring";
	size_t n = strnlen(ident, sizeof(log_out.ident) - 1);
	memcpy(log_out.ident, ident, n);
	log_out.ident[n] = '\0';
	pthread_mutex_unlock(&log_lock);
	log_set_level(level);
}

void log_set_level(enum log_level level)
{
	atomic_store(&log_min_level, (int)log_level_clamp(level));
}

bool log_level_enabled(enum log_level level)
{
	return level >= LOG_LEVEL_FATAL ||
	       (int)level >= atomic_load(&log_min_level);
}

const char *log_level_name(enum log_level level)
{
	return log_level_names[log_level_clamp(level)];
}

int log_level_parse(const char *name, enum log_level *level_r)
{
	if (name == NULL)
		return -1;
	for (size_t i = 0;
	     i < sizeof(log_level_names) / sizeof(*log_level_names); i++) {
		if (str_eq_nocase(str_cstr(name),
				  str_cstr(log_level_names[i]))) {
			*level_r = (enum log_level)i;
			return 0;
		}
	}
	if (str_eq_nocase(str_cstr(name), STR("warn"))) {
		*level_r = LOG_LEVEL_WARNING;
		return 0;
	}
	return -1;
}

void log_set_syslog(bool enable, int facility)
{
	pthread_mutex_lock(&log_lock);
	if (enable) {
		/* openlog keeps the pointer: log_out.ident is static storage */
		openlog(log_out.ident, LOG_PID | LOG_NDELAY, facility);
	} else if (log_out.use_syslog) {
		closelog();
	}
	log_out.use_syslog = enable;
	pthread_mutex_unlock(&log_lock);
}

int log_syslog_facility_parse(const char *name, int *facility_r)
{
	static const struct {
		const char *name;
		int facility;
	} facilities[] = {
	    {"mail", LOG_MAIL},         {"daemon", LOG_DAEMON},
	    {"user", LOG_USER},         {"auth", LOG_AUTH},
	    {"authpriv", LOG_AUTHPRIV}, {"local0", LOG_LOCAL0},
	    {"local1", LOG_LOCAL1},     {"local2", LOG_LOCAL2},
	    {"local3", LOG_LOCAL3},     {"local4", LOG_LOCAL4},
	    {"local5", LOG_LOCAL5},     {"local6", LOG_LOCAL6},
	    {"local7", LOG_LOCAL7},
	};

	if (name == NULL)
		return -1;
	for (size_t i = 0; i < sizeof(facilities) / sizeof(*facilities); i++) {
		if (str_eq_nocase(str_cstr(name),
				  str_cstr(facilities[i].name))) {
			*facility_r = facilities[i].facility;
			return 0;
		}
	}
	return -1;
}

void log_set_fd(int fd)
{
	pthread_mutex_lock(&log_lock);
	log_out.fd = fd;
	pthread_mutex_unlock(&log_lock);
}

void log_set_timestamps(bool enable)
{
	pthread_mutex_lock(&log_lock);
	log_out.timestamps = enable;
	pthread_mutex_unlock(&log_lock);
}

void log_set_callback(log_callback_t *cb, void *context)
{
	pthread_mutex_lock(&log_lock);
	log_out.cb = cb;
	log_out.cb_context = context;
	pthread_mutex_unlock(&log_lock);
}

void log_set_clocks(uint64_t (*monotonic_msecs)(void),
		    void (*realtime)(struct timespec *ts_r))
{
	pthread_mutex_lock(&log_lock);
	log_out.monotonic_msecs = monotonic_msecs;
	log_out.realtime = realtime;
	pthread_mutex_unlock(&log_lock);
}

static uint64_t log_now_msecs(void)
{
	uint64_t (*hook)(void);
	struct timespec ts;

	pthread_mutex_lock(&log_lock);
	hook = log_out.monotonic_msecs;
	pthread_mutex_unlock(&log_lock);
	if (hook != NULL)
		return hook();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- sanitising ---------------------------------------------------------- */

static const char log_hex[] = "0123456789abcdef";

/* Like str_sanitize, but '>' is escaped too so a client value can never
 * close its <...> early and forge a field. Returns the length written. */
static size_t log_sanitize(struct str s, char *dst, size_t dstsize)
{
	size_t o = 0;

	if (dstsize == 0)
		return 0;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		bool plain = c >= 0x20 && c < 0x7f && c != '\\' && c != '>';
		size_t need = plain ? 1 : 4;
		/* keep room for "..." and the NUL */
		if (o + need + 4 > dstsize) {
			if (o + 4 <= dstsize) {
				memcpy(dst + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (plain) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = log_hex[c >> 4];
			dst[o++] = log_hex[c & 15];
		}
	}
	if (o >= dstsize)
		o = dstsize - 1;
	dst[o] = '\0';
	return o;
}

static bool log_is_atom(const char *s)
{
	if (s == NULL || s[0] == '\0')
		return false;
	for (; *s != '\0'; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr("._-:/@+", c) != NULL))
			return false;
	}
	return true;
}

/* Renders an atom bare, anything else as <sanitised>, into dst. */
static void log_render_atom(const char *value, char *dst, size_t dstsize)
{
	if (log_is_atom(value) && strlen(value) < dstsize) {
		memcpy(dst, value, strlen(value) + 1);
		return;
	}
	if (dstsize < 3) {
		dst[0] = '\0';
		return;
	}
	dst[0] = '<';
	size_t n = log_sanitize(str_cstr(value), dst + 1, dstsize - 2);
	dst[1 + n] = '>';
	dst[2 + n] = '\0';
}

/* Writes the text form of an address (no port) into dst. */
static void log_format_ip(const struct sockaddr *sa, char *dst, size_t dstsize)
{
	const char *res = NULL;

	if (sa == NULL) {
		res = NULL;
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		res =
		    inet_ntop(AF_INET, &sin->sin_addr, dst, (socklen_t)dstsize);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			res = inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12],
					dst, (socklen_t)dstsize);
		else
			res = inet_ntop(AF_INET6, &sin6->sin6_addr, dst,
					(socklen_t)dstsize);
	} else if (sa->sa_family == AF_UNIX) {
		res = str_copy(STR("local"), dst, dstsize) ? dst : NULL;
	}
	if (res == NULL && !str_copy(STR("?"), dst, dstsize) && dstsize > 0)
		dst[0] = '\0';
}

/* ---- line assembly ---------------------------------------------------- */

/* Renders the context as " user=<..> rip=.. backend=.. session=<..>". */
static size_t log_ctx_render(const struct log_ctx *ctx, char *dst,
			     size_t dstsize)
{
	const char *user = "", *rip = "", *backend = "", *session = "";

	if (ctx != NULL) {
		user = ctx->user;
		rip = ctx->rip;
		backend = ctx->backend;
		session = ctx->session;
	}
	int n = str_printf(dst, dstsize, "%s%s%s%s%s%s%s%s%s%s",
			   user[0] != '\0' ? " user=<" : "", user,
			   user[0] != '\0' ? ">" : "",
			   rip[0] != '\0' ? " rip=" : "", rip,
			   backend[0] != '\0' ? " backend=" : "", backend,
			   session[0] != '\0' ? " session=<" : "", session,
			   session[0] != '\0' ? ">" : "");
	return n < 0 ? 0 : (size_t)n;
}

/* Size of the rendered context: fits by construction of struct log_ctx. */
#define LOG_CTX_RENDER_MAX (3 * LOG_FIELD_VALUE_MAX + 128)

static size_t log_format_timestamp(const struct log_output *out, char *dst,
				   size_t dstsize)
{
	struct timespec ts;
	struct tm tm;
	char date[32];

	if (out->realtime != NULL)
		out->realtime(&ts);
	else
		clock_gettime(CLOCK_REALTIME, &ts);
	if (gmtime_r(&ts.tv_sec, &tm) == NULL ||
	    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		return 0;
	int n = str_printf(dst, dstsize, "%s.%03ldZ ", date,
			   (long)(ts.tv_nsec / 1000000));
	return n < 0 ? 0 : (size_t)n;
}

/* Copies msg into dst (at most room bytes, no NUL), escaping control bytes
 * as \xNN. When it does not all fit, or cut is set, the copy ends with
 * "...". Returns the length written. */
static size_t log_copy_message(const char *msg, size_t len, bool cut, char *dst,
			       size_t room)
{
	size_t need = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)msg[i];
		need += (c < 0x20 || c == 0x7f) ? 4 : 1;
	}
	if (need <= room && !cut)
		room = need;
	else if (room < 3)
		return 0;
	else
		cut = true;

	size_t limit = cut ? room - 3 : room, o = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)msg[i];
		if (c < 0x20 || c == 0x7f) {
			if (o + 4 > limit)
				break;
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = log_hex[c >> 4];
			dst[o++] = log_hex[c & 15];
		} else {
			if (o + 1 > limit)
				break;
			dst[o++] = (char)c;
		}
	}
	if (cut) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	return o;
}

static void log_write_fd(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t ret = write(fd, data, len);
		if (ret == -1) {
			if (errno == EINTR)
				continue;
			return;
		}
		data += ret;
		len -= (size_t)ret;
	}
}

/* Assembles and outputs one line: prefix, msg (cut to fit), the
 * suppressed count, the context. */
static void log_output_line(enum log_level level, const struct log_ctx *ctx,
			    uint64_t suppressed, const char *msg, size_t len,
			    bool cut)
{
	struct log_output out;
	char line[LOG_LINE_MAX + 1]; /* + 1: the NUL after line + newline */
	char suffix[LOG_CTX_RENDER_MAX + 64];
	size_t o = 0, slen = 0;

	log_snapshot(&out);
	level = log_level_clamp(level);
	bool to_syslog = out.use_syslog && out.cb == NULL;

	if (!to_syslog) {
		if (out.timestamps)
			o += log_format_timestamp(&out, line, sizeof(line));
		int n =
		    str_printf(line + o, sizeof(line) - o,
			       "%s: %s: ", out.ident, log_level_names[level]);
		if (n > 0)
			o += (size_t)n;
	}
	if (suppressed > 0) {
		int n = str_printf(suffix, sizeof(suffix),
				   " suppressed=%" PRIu64, suppressed);
		if (n > 0)
			slen = (size_t)n;
	}
	slen += log_ctx_render(ctx, suffix + slen, sizeof(suffix) - slen);

	/* room for the message: keep the suffix, newline and NUL */
	size_t room = sizeof(line) - o - 2;
	room = room > slen ? room - slen : 0;
	o += log_copy_message(msg, len, cut, line + o, room);
	memcpy(line + o, suffix, slen);
	o += slen;
	line[o] = '\0';

	if (out.cb != NULL) {
		pthread_mutex_lock(&log_cb_lock);
		out.cb(level, line, out.cb_context);
		pthread_mutex_unlock(&log_cb_lock);
	} else if (to_syslog) {
		syslog(log_syslog_prio[level], "%s", line);
	} else {
		line[o++] = '\n';
		log_write_fd(out.fd, line, o);
	}
}

/* Common filter: level first, then the rate limit. Returns false when the
 * line is dropped. */
static bool log_filter(enum log_level level, struct log_ratelimit *rl,
		       uint64_t *suppressed_r)
{
	*suppressed_r = 0;
	if (!log_level_enabled(level))
		return false;
	return rl == NULL || log_ratelimit_check(rl, suppressed_r);
}

static void log_vemit(enum log_level level, const struct log_ctx *ctx,
		      struct log_ratelimit *rl, bool with_errno, int errnum,
		      const char *fmt, va_list ap)
    __attribute__((format(printf, 6, 0)));

static void log_vemit(enum log_level level, const struct log_ctx *ctx,
		      struct log_ratelimit *rl, bool with_errno, int errnum,
		      const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX];
	uint64_t suppressed;
	bool cut = false;
	size_t len;

	if (!log_filter(level, rl, &suppressed))
		return;
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0) {
		len = strlen(memcpy(msg, "(bad log format)", 17));
	} else if ((size_t)n >= sizeof(msg)) {
		len = sizeof(msg) - 1;
		cut = true;
	} else {
		len = (size_t)n;
	}
	if (with_errno && !cut) {
		char ebuf[128];
		const char *etext = strerror_r(errnum, ebuf, sizeof(ebuf));
		n = str_printf(msg + len, sizeof(msg) - len, ": %s", etext);
		if (n < 0)
			cut = true;
		else
			len += (size_t)n;
	}
	log_output_line(level, ctx, suppressed, msg, len, cut);
}

/* ---- public printf-style functions ---- */

#define LOG_VEMIT(level, ctx, with_errno)                                      \
	do {                                                                   \
		int saved_errno_ = errno;                                      \
		va_list ap_;                                                   \
		va_start(ap_, fmt);                                            \
		log_vemit(level, ctx, NULL, with_errno, saved_errno_, fmt,     \
			  ap_);                                                \
		va_end(ap_);                                                   \
		errno = saved_errno_;                                          \
	} while (0)

void log_debug(const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_DEBUG, NULL, false);
}

void log_info(const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_INFO, NULL, false);
}

void log_notice(const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_NOTICE, NULL, false);
}

void log_warn(const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_WARNING, NULL, true);
}

void log_warnx(const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_WARNING, NULL, false);
}

void log_error(const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_ERROR, NULL, false);
}

void fatal(const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_FATAL, NULL, true);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_FATAL, NULL, false);
	exit(1);
}

void log_ctx_debug(const struct log_ctx *ctx, const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_DEBUG, ctx, false);
}

void log_ctx_info(const struct log_ctx *ctx, const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_INFO, ctx, false);
}

void log_ctx_warn(const struct log_ctx *ctx, const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_WARNING, ctx, true);
}

void log_ctx_warnx(const struct log_ctx *ctx, const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_WARNING, ctx, false);
}

void log_ctx_error(const struct log_ctx *ctx, const char *fmt, ...)
{
	LOG_VEMIT(LOG_LEVEL_ERROR, ctx, false);
}

void log_emit(enum log_level level, const struct log_ctx *ctx,
	      struct log_ratelimit *rl, const char *fmt, ...)
{
	int saved_errno = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vemit(level, ctx, rl, false, 0, fmt, ap);
	va_end(ap);
	errno = saved_errno;
}

/* ---- rate limiting ------------------------------------------------------ */

void log_ratelimit_init(struct log_ratelimit *rl, uint64_t interval_msecs,
			unsigned int burst)
{
	memset(rl, 0, sizeof(*rl));
	pthread_mutex_init(&rl->lock, NULL);
	rl->interval_msecs = interval_msecs;
	rl->burst = burst;
}

bool log_ratelimit_check(struct log_ratelimit *rl, uint64_t *suppressed_r)
{
	bool allowed;

	*suppressed_r = 0;
	if (rl->interval_msecs == 0)
		return true;
	uint64_t now = log_now_msecs();
	unsigned int burst = rl->burst == 0 ? 1 : rl->burst;

	pthread_mutex_lock(&rl->lock);
	if (!rl->started || now < rl->window_start_msecs ||
	    now - rl->window_start_msecs >= rl->interval_msecs) {
		rl->started = true;
		rl->window_start_msecs = now;
		rl->count = 0;
	}
	allowed = rl->count < burst;
	if (allowed) {
		rl->count++;
		*suppressed_r = rl->suppressed;
		rl->suppressed = 0;
	} else {
		rl->suppressed++;
	}
	pthread_mutex_unlock(&rl->lock);
	return allowed;
}

/* ---- structured fields ------------------------------------------------ */

void log_fields_init(struct log_fields *f)
{
	f->len = 0;
	f->truncated = false;
	f->buf[0] = '\0';
}

/* Appends " key=value" (no separator for the first field). A field that
 * does not fit is dropped and " ..." ends the list: nothing after it. */
static void log_fields_add(struct log_fields *f, const char *key,
			   const char *value, size_t vlen)
{
	char kbuf[64];
	size_t klen = 0;

	if (f->truncated)
		return;
	for (; key != NULL && key[klen] != '\0' && klen < sizeof(kbuf) - 1;
	     klen++) {
		char c = key[klen];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-' ||
			  c == '.';
		kbuf[klen] = ok ? c : '_';
	}
	if (klen == 0)
		kbuf[klen++] = '_';

	size_t sep = f->len > 0 ? 1 : 0;
	size_t need = sep + klen + 1 + vlen;
	/* always keep room for " ..." and the NUL */
	if (need + 5 > sizeof(f->buf) - f->len) {
		const char *mark = sep ? " ..." : "...";
		memcpy(f->buf + f->len, mark, strlen(mark) + 1);
		f->len += strlen(mark);
		f->truncated = true;
		return;
	}
	if (sep)
		f->buf[f->len++] = ' ';
	memcpy(f->buf + f->len, kbuf, klen);
	f->len += klen;
	f->buf[f->len++] = '=';
	memcpy(f->buf + f->len, value, vlen);
	f->len += vlen;
	f->buf[f->len] = '\0';
}

void log_field_slice(struct log_fields *f, const char *key, struct str value)
{
	char v[LOG_FIELD_VALUE_MAX + 2];

	v[0] = '<';
	size_t n = log_sanitize(value, v + 1, LOG_FIELD_VALUE_MAX);
	v[1 + n] = '>';
	log_fields_add(f, key, v, n + 2);
}

void log_field_str(struct log_fields *f, const char *key, const char *value)
{
	log_field_slice(f, key, str_cstr(value));
}

void log_field_atom(struct log_fields *f, const char *key, const char *value)
{
	char v[LOG_FIELD_VALUE_MAX + 2];

	log_render_atom(value, v, sizeof(v));
	log_fields_add(f, key, v, strlen(v));
}

void log_field_uint(struct log_fields *f, const char *key, uint64_t value)
{
	char v[32];
	int n = str_printf(v, sizeof(v), "%" PRIu64, value);

	log_fields_add(f, key, v, n < 0 ? 0 : (size_t)n);
}

void log_field_int(struct log_fields *f, const char *key, int64_t value)
{
	char v[32];
	int n = str_printf(v, sizeof(v), "%" PRId64, value);

	log_fields_add(f, key, v, n < 0 ? 0 : (size_t)n);
}

void log_field_ip(struct log_fields *f, const char *key,
		  const struct sockaddr *sa)
{
	char v[INET6_ADDRSTRLEN];

	log_format_ip(sa, v, sizeof(v));
	log_fields_add(f, key, v, strlen(v));
}

void log_event_emit(enum log_level level, const struct log_ctx *ctx,
		    struct log_ratelimit *rl, const char *event,
		    const struct log_fields *f)
{
	char msg[LOG_LINE_MAX];
	uint64_t suppressed;
	int saved_errno = errno;

	if (!log_filter(level, rl, &suppressed))
		return;
	if (event == NULL)
		event = "event";
	bool has_fields = f != NULL && f->len > 0;
	int n = str_printf(msg, sizeof(msg), "%s%s%s", event,
			   has_fields ? ": " : "", has_fields ? f->buf : "");
	if (n < 0) {
		/* only an absurdly long event name gets here */
		size_t len = strnlen(event, sizeof(msg) - 1);
		log_output_line(level, ctx, suppressed, event, len, true);
	} else {
		log_output_line(level, ctx, suppressed, msg, (size_t)n, false);
	}
	errno = saved_errno;
}

void log_event(enum log_level level, const char *event,
	       const struct log_fields *f)
{
	log_event_emit(level, NULL, NULL, event, f);
}

void log_ctx_event(const struct log_ctx *ctx, enum log_level level,
		   const char *event, const struct log_fields *f)
{
	log_event_emit(level, ctx, NULL, event, f);
}

/* ---- session context ------------------------------------------------- */

void log_ctx_init(struct log_ctx *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
}

void log_ctx_set_user(struct log_ctx *ctx, struct str user)
{
	if (user.p == NULL || user.len == 0)
		ctx->user[0] = '\0';
	else
		log_sanitize(user, ctx->user, sizeof(ctx->user));
}

void log_ctx_set_rip(struct log_ctx *ctx, const struct sockaddr *sa)
{
	if (sa == NULL)
		ctx->rip[0] = '\0';
	else
		log_format_ip(sa, ctx->rip, sizeof(ctx->rip));
}

void log_ctx_set_backend(struct log_ctx *ctx, const char *backend)
{
	if (backend == NULL || backend[0] == '\0')
		ctx->backend[0] = '\0';
	else
		log_render_atom(backend, ctx->backend, sizeof(ctx->backend));
}

void log_ctx_set_session(struct log_ctx *ctx, const char *session_id)
{
	if (session_id == NULL)
		ctx->session[0] = '\0';
	else
		log_sanitize(str_cstr(session_id), ctx->session,
			     sizeof(ctx->session));
}

/* ---- session ids --------------------------------------------------------- */

static pthread_mutex_t sid_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t sid_pid;
static uint64_t sid_base;
static uint64_t sid_counter;
static uint32_t sid_salt;

/* splitmix64 finaliser: a bijection on 64-bit values, so distinct counters
 * give distinct outputs. */
static uint64_t sid_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static void sid_seed(pid_t pid)
{
	uint8_t rnd[12];
	ssize_t got = getrandom(rnd, sizeof(rnd), GRND_NONBLOCK);

	if (got != (ssize_t)sizeof(rnd)) {
		/* no entropy yet (early boot): still unique per process */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t a = sid_mix((uint64_t)ts.tv_sec * 1000000000u +
				     (uint64_t)ts.tv_nsec);
		uint64_t b = sid_mix(a ^ (uint64_t)pid);
		memcpy(rnd, &a, 8);
		memcpy(rnd + 8, &b, 4);
	}
	memcpy(&sid_base, rnd, 8);
	memcpy(&sid_salt, rnd + 8, 4);
	sid_counter = 0;
	sid_pid = pid;
}

void log_session_id_new(char id_r[LOG_SESSION_ID_LEN + 1])
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	uint8_t raw[12];
	uint64_t v;
	uint32_t salt;
	pid_t pid = getpid();

	pthread_mutex_lock(&sid_lock);
	if (sid_pid != pid)
		sid_seed(pid);
	v = sid_mix(sid_base + sid_counter++);
	salt = sid_salt;
	pthread_mutex_unlock(&sid_lock);

	for (int i = 0; i < 8; i++)
		raw[i] = (uint8_t)(v >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		raw[8 + i] = (uint8_t)(salt >> (24 - 8 * i));
	for (int i = 0, o = 0; i < 12; i += 3) {
		uint32_t w = (uint32_t)raw[i] << 16 |
			     (uint32_t)raw[i + 1] << 8 | raw[i + 2];
		id_r[o++] = b64[(w >> 18) & 63];
		id_r[o++] = b64[(w >> 12) & 63];
		id_r[o++] = b64[(w >> 6) & 63];
		id_r[o++] = b64[w & 63];
	}
	id_r[LOG_SESSION_ID_LEN] = '\0';
}
