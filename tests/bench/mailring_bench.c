/*
 * mailring-bench: a load generator for mailring-proxy / mailring-backend,
 * and a "null backend" that answers IMAP, POP3 or LMTP at near-zero cost.
 *
 * Client mode (one process, one libevent loop, non-blocking):
 *
 *   mailring_bench --scenario imap-login --host 127.0.0.1 --port 143 \
 *       --concurrency 100 --duration 10 --json out.json --pids 1234
 *
 *   Every session is a small state machine (enum cl_state) that sends one
 *   command at a time and waits for its final answer; the scenario decides
 *   the next command (imap_next, pop3_next, lmtp_next). Each answer is
 *   timed per operation kind into a log-linear histogram (about 6 %
 *   resolution), errors are counted by kind (connect, reset, eof, timeout,
 *   tls, NO, BAD, -ERR, 4xx, 5xx, protocol). Every command is bounded by
 *   --op-timeout; a finished or failed session is freed from a deferred
 *   queue, never from inside its own callback, and its slot is refilled.
 *   Outgoing sockets may be bound to a cycling range of 127.0.0.X source
 *   addresses (IP_BIND_ADDRESS_NO_PORT), so one machine can open more than
 *   64k connections to one port.
 *
 *   CPU (utime+stime+cutime+cstime of the pid and its live descendants,
 *   all threads included) and RSS (VmRSS, VmHWM) of the --pids are read
 *   from /proc before and after the run (imap-idle: at full hold).
 *
 * Server mode ("null backend"):
 *
 *   mailring_bench --serve imap --listen 127.0.0.1:10143 [--exists N]
 *       [--message-size BYTES] [--tls starttls|implicit]
 *
 *   A stateless server that accepts every login and answers from a single
 *   synthetic mailbox of --exists copies of one synthetic message. An
 *   idle connection costs a struct conn plus a struct srv_conn (no buffers:
 *   input is parsed from a stack buffer, only a partial line is kept).
 *
 * Wire parsing is one resumable line feeder (struct line_feeder) used by
 * both sides: bytes in, complete lines out, IMAP literals {n} / {n+}
 * skipped and counted, a hard line limit, "pause" keeps the unread rest.
 *
 * Threads (-j N): N benches, each with its own event_base, sessions and
 * counters (nothing mutable shared but two atomics in struct
 * bench_shared); concurrency, --count and --rate are split evenly and the
 * counters are merged after the join. SIGINT/SIGTERM end the run early
 * (the results are still written).
 *
 * Exit status: 0 when the run finished and the JSON (if any) was written,
 * also when sessions failed (read errors.total); 1 on a run-time failure
 * (TLS set-up, writing the JSON); 2 on bad options.
 *
 * JSON (--json FILE, written to FILE.tmp and renamed), version 1:
 *   tool, version, scenario, host, port, tls ("none"|"starttls"|"implicit"),
 *   tls_info: {version, cipher} of the first handshake, or null,
 *   settings: {users, concurrency, duration_s, count, rate, hold_s,
 *              per_session, message_size, op_timeout_s, source_ips},
 *   elapsed_s: start to the end of the run (imap-idle: end of the hold),
 *   sessions: {started, completed, failed, aborted, per_s},
 *   ops: {total, per_s}: every answered command, "session" and
 *        "delivery" excluded,
 *   ops_by_kind: {<op>: {count, errors, per_s,
 *                        latency_ms: {p50, p90, p99, max, mean}}} for
 *        the kinds seen (op_names[]: connect = TCP connect to greeting,
 *        tls, login, user, select, fetch, fetch_body, store, append,
 *        expunge, idle, stat, logout, lhlo, mail, rcpt, data, delivery =
 *        MAIL to the final DATA reply, session = connect to logout),
 *   errors: {total, by_kind: {connect, reset, eof, timeout, tls, no, bad,
 *            err, 4xx, 5xx, protocol}},
 *   bytes: {in, out, literal_in, literal_mb_per_s} (literal_in: IMAP
 *          literal bytes received, i.e. fetched message data),
 *   deliveries: {count, per_s},
 *   idle: {target, held, peak_held, hold_s, held_for_s} or null,
 *   processes: [{pid, found, cpu_s: {before, after, delta},
 *                rss_kb: {before, after}, hwm_kb: {before, after},
 *                tree_rss_kb, threads, descendants}] for --pids,
 *   bench: {cpu_s, max_rss_kb} of this process.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "buf.h"
#include "conn.h"
#include "net.h"
#include "str.h"
#include "tls.h"
#include "xmalloc.h"

#define BENCH_VERSION "1"
#define LINE_MAX_BYTES (64 * 1024)
#define CLIENT_LITERAL_MAX (1024ULL * 1024 * 1024)
#define SERVER_LITERAL_MAX (64ULL * 1024 * 1024)
#define OUT_MAX_BYTES (64 * 1024 * 1024)
#define READ_CHUNK 16384
#define MSG_FILE_MAX (8 * 1024 * 1024)
#define MSG_FILES_MAX 64
#define ERRORS_LOGGED_MAX 10
#define SERVER_BAD_MAX 20
#define TICK_MSECS 10

/* ==== small helpers ===================================================== */

static uint64_t now_usecs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *v_r)
{
	return str_to_u64(str_cstr(s), max, v_r);
}

/* A non-negative number of seconds, decimals allowed. */
static bool parse_secs(const char *s, double *v_r)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= 0) || v > 1e7)
		return false;
	*v_r = v;
	return true;
}

/* Appends s to b as a JSON string. */
static void json_str(struct buf *b, const char *s)
{
	buf_append_byte(b, '"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			buf_printf(b, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			buf_printf(b, "\\u%04x", c);
		else
			buf_append_byte(b, c);
	}
	buf_append_byte(b, '"');
}

/* ==== messages ========================================================== */

struct msg {
	uint8_t *data;
	size_t len;
};

/* A synthetic RFC 5322 message of exactly size bytes (at least its header
 * plus one empty line), CRLF line ends, no line starting with '.'. */
static struct msg msg_synth(size_t size)
{
	static const char hdr[] =
	    "Return-Path: <bench@example.com>\r\n"
	    "From: mailring-bench <bench@example.com>\r\n"
	    "To: <user@example.com>\r\n"
	    "Subject: mailring-bench synthetic message\r\n"
	    "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	    "Message-ID: <synthetic@mailring-bench>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n"
	    "\r\n";
	size_t h = sizeof(hdr) - 1, body = size > h ? size - h : 0;
	if (body == 1)
		body = 2;
	struct msg m = {xmalloc(h + body + 1), h + body};
	memcpy(m.data, hdr, h);
	size_t pos = h, line = 0;
	while (body > 0) {
		size_t l = body < 72 ? body : 72;
		if (body - l == 1)
			l -= 2;
		for (size_t i = 0; i + 2 < l; i++)
			m.data[pos + i] = (uint8_t)('a' + (line + i) % 26);
		m.data[pos + l - 2] = '\r';
		m.data[pos + l - 1] = '\n';
		pos += l;
		body -= l;
		line++;
	}
	m.data[pos] = '\0';
	return m;
}

/* Bare LF -> CRLF, a final CRLF added; for LMTP also dot-stuffed. */
static struct msg msg_normalize(const uint8_t *p, size_t len, bool dot_stuff)
{
	struct buf *b = buf_new(len + len / 16 + 8, len * 3 + 8);
	bool bol = true;
	for (size_t i = 0; i < len; i++) {
		if (bol && dot_stuff && p[i] == '.')
			buf_append_byte(b, '.');
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			buf_append_byte(b, '\r');
		buf_append_byte(b, p[i]);
		bol = p[i] == '\n';
	}
	if (!bol)
		buf_append_cstr(b, "\r\n");
	struct msg m = {b->data, b->len};
	b->data = NULL;
	buf_free(&b);
	return m;
}

/* Loads up to MSG_FILES_MAX *.eml files of dir (no NUL bytes, at most
 * MSG_FILE_MAX each). Returns how many were loaded into msgs. */
static size_t msgs_load_dir(const char *dir, bool dot_stuff, struct msg *msgs)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	if (d == NULL) {
		fprintf(stderr, "mailring-bench: opendir(%s): %s\n", dir,
			strerror(errno));
		return 0;
	}
	for (struct dirent *de;
	     n < MSG_FILES_MAX && (de = readdir(d)) != NULL;) {
		size_t nl = strlen(de->d_name);
		char path[4096];
		if (nl < 5 || strcmp(de->d_name + nl - 4, ".eml") != 0 ||
		    str_printf(path, sizeof(path), "%s/%s", dir, de->d_name) <
			0)
			continue;
		FILE *f = fopen(path, "rb");
		if (f == NULL)
			continue;
		uint8_t *data = xmalloc(MSG_FILE_MAX + 1);
		size_t len = fread(data, 1, MSG_FILE_MAX + 1, f);
		fclose(f);
		if (len > 0 && len <= MSG_FILE_MAX &&
		    memchr(data, '\0', len) == NULL)
			msgs[n++] = msg_normalize(data, len, dot_stuff);
		free(data);
	}
	closedir(d);
	return n;
}

/* ==== line feeder ======================================================= */

#define NO_LITERAL UINT64_MAX

/* Called for each complete line (CRLF or LF stripped). continued: the line
 * goes on after a literal of the previous segment. literal: the size of a
 * literal the line announces at its end, or NO_LITERAL. Returns
 * FEED_CONTINUE, FEED_PAUSE (keep the unread bytes for feeder_resume) or
 * FEED_STOP (drop them). */
enum feed_result {
	FEED_CONTINUE = 0, /* go on with the next line */
	FEED_PAUSE,        /* stop here; the rest is kept */
	FEED_STOP,         /* stop here; the rest is dropped */
	FEED_TOO_LONG,     /* a line passed LINE_MAX_BYTES */
};
typedef enum feed_result line_fn(void *ctx, struct str line, bool continued,
				 uint64_t literal);

struct line_feeder {
	struct buf *partial;    /* an incomplete line (lazy) */
	struct buf *held;       /* bytes left unread by FEED_PAUSE (lazy) */
	uint64_t literal_left;  /* literal bytes still to skip */
	uint64_t literal_bytes; /* literal bytes skipped so far */
	bool continued;         /* the next line continues after a literal */
	bool literals;          /* IMAP: parse {n} at line ends */
};

/* "{123}" or "{123+}" (also "~{123}") at the end of line: the size. */
static uint64_t literal_at_end(struct str line)
{
	if (line.len < 3 || line.p[line.len - 1] != '}')
		return NO_LITERAL;
	size_t end = line.len - 1;
	if (line.p[end - 1] == '+')
		end--;
	size_t start = end;
	while (start > 0 && line.p[start - 1] >= '0' &&
	       line.p[start - 1] <= '9')
		start--;
	if (start == end || start == 0 || line.p[start - 1] != '{')
		return NO_LITERAL;
	uint64_t v;
	if (!str_to_u64(str_slice(line, start, end - start), UINT64_MAX - 1,
			&v))
		return NO_LITERAL;
	return v;
}

static void feeder_free(struct line_feeder *lf)
{
	buf_free(&lf->partial);
	buf_free(&lf->held);
}

static enum feed_result feeder_feed(struct line_feeder *lf, const uint8_t *data,
				    size_t len, line_fn *fn, void *ctx)
{
	size_t pos = 0;

	while (pos < len) {
		if (lf->literal_left > 0) {
			size_t n = len - pos;
			if (n > lf->literal_left)
				n = (size_t)lf->literal_left;
			lf->literal_left -= n;
			lf->literal_bytes += n;
			pos += n;
			continue;
		}
		const uint8_t *nl = memchr(data + pos, '\n', len - pos);
		if (nl == NULL) {
			if (lf->partial == NULL)
				lf->partial = buf_new(256, LINE_MAX_BYTES);
			if (buf_append(lf->partial, data + pos, len - pos) < 0)
				return FEED_TOO_LONG;
			return FEED_CONTINUE;
		}
		size_t seg = (size_t)(nl - (data + pos));
		struct str line;
		if (lf->partial != NULL && lf->partial->len > 0) {
			if (buf_append(lf->partial, data + pos, seg) < 0)
				return FEED_TOO_LONG;
			line = buf_str(lf->partial);
		} else {
			if (seg > LINE_MAX_BYTES)
				return FEED_TOO_LONG;
			line = str_from((const char *)data + pos, seg);
		}
		pos += seg + 1;
		if (line.len > 0 && line.p[line.len - 1] == '\r')
			line.len--;
		uint64_t lit = lf->literals ? literal_at_end(line) : NO_LITERAL;
		bool cont = lf->continued;
		lf->continued = false;
		enum feed_result r = fn(ctx, line, cont, lit);
		/* a partial line is rare: give its memory back (idle cost) */
		buf_free(&lf->partial);
		if (lit != NO_LITERAL && r == FEED_CONTINUE) {
			lf->literal_left = lit;
			lf->continued = true;
		}
		if (r == FEED_PAUSE && pos < len) {
			if (lf->held == NULL)
				lf->held = buf_new(len - pos, OUT_MAX_BYTES);
			if (buf_append(lf->held, data + pos, len - pos) < 0)
				return FEED_TOO_LONG;
		}
		if (r != FEED_CONTINUE)
			return r;
	}
	return FEED_CONTINUE;
}

/* Feeds the bytes a FEED_PAUSE left, if any. */
static enum feed_result feeder_resume(struct line_feeder *lf, line_fn *fn,
				      void *ctx)
{
	struct buf *held = lf->held;
	if (held == NULL)
		return FEED_CONTINUE;
	lf->held = NULL;
	enum feed_result r = feeder_feed(lf, held->data, held->len, fn, ctx);
	buf_free(&held);
	return r;
}

/* ==== statistics ======================================================== */

#define HIST_SUB 16
#define HIST_BUCKETS (61 * HIST_SUB)

struct hist {
	uint64_t bucket[HIST_BUCKETS];
	uint64_t count, sum_us, max_us;
};

static unsigned int hist_index(uint64_t v)
{
	if (v < HIST_SUB)
		return (unsigned int)v;
	unsigned int e = 63u - (unsigned int)__builtin_clzll(v);
	unsigned int sub = (unsigned int)(v >> (e - 4)) & (HIST_SUB - 1);
	return (e - 3) * HIST_SUB + sub;
}

/* The middle of bucket idx, in microseconds. */
static double hist_value(unsigned int idx)
{
	if (idx < HIST_SUB)
		return idx;
	unsigned int e = idx / HIST_SUB + 3, sub = idx % HIST_SUB;
	double lo = (double)((uint64_t)(HIST_SUB + sub) << (e - 4));
	return lo + (double)((uint64_t)1 << (e - 4)) / 2;
}

static void hist_add(struct hist *h, uint64_t us)
{
	h->bucket[hist_index(us)]++;
	h->count++;
	h->sum_us += us;
	if (us > h->max_us)
		h->max_us = us;
}

/* Percentile q (0..1) in milliseconds; 0 when empty. */
static double hist_pct_ms(const struct hist *h, double q)
{
	if (h->count == 0)
		return 0;
	uint64_t want = (uint64_t)((double)h->count * q + 0.999999), seen = 0;
	if (want == 0)
		want = 1;
	for (unsigned int i = 0; i < HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= want) {
			double v = hist_value(i);
			if (v > (double)h->max_us)
				v = (double)h->max_us;
			return v / 1000.0;
		}
	}
	return (double)h->max_us / 1000.0;
}

enum op_kind {
	OP_CONNECT = 0, /* TCP connect until the greeting */
	OP_TLS,   /* STARTTLS command + handshake, or implicit handshake */
	OP_LOGIN, /* IMAP LOGIN, POP3 PASS */
	OP_USER,  /* POP3 USER */
	OP_SELECT,
	OP_FETCH,      /* FETCH of metadata */
	OP_FETCH_BODY, /* FETCH of bodies */
	OP_STORE,
	OP_APPEND,
	OP_EXPUNGE,
	OP_IDLE, /* IDLE until "+ idling" */
	OP_STAT,
	OP_LOGOUT, /* IMAP LOGOUT, POP3 QUIT, LMTP QUIT */
	OP_LHLO,
	OP_MAIL,
	OP_RCPT,
	OP_DATA,     /* DATA until the final reply after the message */
	OP_DELIVERY, /* MAIL FROM until the final DATA reply */
	OP_SESSION,  /* a whole session, connect to logout */
	OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "connect", "tls",        "login",    "user",    "select",
    "fetch",   "fetch_body", "store",    "append",  "expunge",
    "idle",    "stat",       "logout",   "lhlo",    "mail",
    "rcpt",    "data",       "delivery", "session",
};

enum err_kind {
	ERR_CONNECT = 0, /* connect() failed */
	ERR_RESET,       /* read/write failure (reset, broken pipe) */
	ERR_EOF,         /* the server closed mid-session */
	ERR_TIMEOUT,     /* --op-timeout passed */
	ERR_TLS,         /* TLS handshake failure */
	ERR_NO,          /* IMAP NO */
	ERR_BAD,         /* IMAP BAD */
	ERR_ERR,         /* POP3 -ERR */
	ERR_4XX,         /* LMTP 4xx */
	ERR_5XX,         /* LMTP 5xx */
	ERR_PROTOCOL,    /* an answer we cannot parse or did not expect */
	ERR_COUNT
};

static const char *const err_names[ERR_COUNT] = {
    "connect", "reset", "eof", "timeout", "tls",      "no",
    "bad",     "err",   "4xx", "5xx",     "protocol",
};

/* ==== /proc =============================================================== */

struct proc_info {
	int pid, ppid;
	uint64_t ticks; /* utime+stime+cutime+cstime */
	uint64_t rss_kb, hwm_kb;
	unsigned int threads;
};

struct proc_snap {
	bool found;
	double cpu_s;         /* pid + live descendants */
	uint64_t rss_kb;      /* pid itself */
	uint64_t hwm_kb;      /* pid itself */
	uint64_t tree_rss_kb; /* pid + live descendants */
	unsigned int threads, descendants;
};

static bool read_small_file(const char *path, char *dst, size_t size)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	size_t n = fread(dst, 1, size - 1, f);
	fclose(f);
	dst[n] = '\0';
	return n > 0;
}

static bool proc_read(int pid, struct proc_info *pi)
{
	char path[64], text[4096];
	memset(pi, 0, sizeof(*pi));
	pi->pid = pid;
	if (str_printf(path, sizeof(path), "/proc/%d/stat", pid) < 0 ||
	    !read_small_file(path, text, sizeof(text)))
		return false;
	/* the comm field may hold spaces and ')': fields start after the
	 * last ')' with field 3 (state) */
	char *p = strrchr(text, ')');
	if (p == NULL)
		return false;
	p++;
	uint64_t f[20] = {0};
	for (unsigned int field = 3; field <= 20 && *p != '\0'; field++) {
		while (*p == ' ')
			p++;
		char *end;
		f[field - 1] = strtoull(p, &end, 10);
		if (field == 3)
			end = p + 1;
		p = end;
	}
	pi->ppid = (int)f[3];
	pi->ticks = f[13] + f[14] + f[15] + f[16];
	pi->threads = (unsigned int)f[19];
	if (str_printf(path, sizeof(path), "/proc/%d/status", pid) >= 0 &&
	    read_small_file(path, text, sizeof(text))) {
		char *l;
		if ((l = strstr(text, "\nVmRSS:")) != NULL)
			pi->rss_kb = strtoull(l + 7, NULL, 10);
		if ((l = strstr(text, "\nVmHWM:")) != NULL)
			pi->hwm_kb = strtoull(l + 7, NULL, 10);
	}
	return true;
}

/* Snapshots each of pids (with its live descendants, from one scan of
 * /proc) into snaps. */
static void proc_snapshot(const int *pids, size_t npids,
			  struct proc_snap *snaps)
{
	struct proc_info *all = NULL;
	size_t n = 0, cap = 0;
	DIR *d = opendir("/proc");
	double hz = (double)sysconf(_SC_CLK_TCK);

	while (d != NULL) {
		struct dirent *de = readdir(d);
		uint64_t pid;
		if (de == NULL)
			break;
		if (!parse_u64(de->d_name, INT_MAX, &pid))
			continue;
		if (n == cap) {
			cap = cap == 0 ? 512 : cap * 2;
			all = xreallocarray(all, cap, sizeof(*all));
		}
		if (proc_read((int)pid, &all[n]))
			n++;
	}
	if (d != NULL)
		closedir(d);
	for (size_t i = 0; i < npids; i++) {
		struct proc_snap *s = &snaps[i];
		struct proc_info self;
		memset(s, 0, sizeof(*s));
		if (!proc_read(pids[i], &self))
			continue;
		s->found = true;
		s->rss_kb = self.rss_kb;
		s->hwm_kb = self.hwm_kb;
		s->threads = self.threads;
		uint64_t ticks = self.ticks, rss = self.rss_kb;
		/* descendants: repeat until no new one is found (small n) */
		int *tree = xmalloc(sizeof(int) * (n + 1));
		size_t nt = 1;
		tree[0] = pids[i];
		bool *in = xcalloc(n + 1, sizeof(bool));
		for (bool grew = true; grew;) {
			grew = false;
			for (size_t j = 0; j < n; j++) {
				if (in[j] || all[j].pid == pids[i])
					continue;
				for (size_t k = 0; k < nt; k++) {
					if (all[j].ppid == tree[k]) {
						in[j] = true;
						tree[nt++] = all[j].pid;
						ticks += all[j].ticks;
						rss += all[j].rss_kb;
						s->descendants++;
						grew = true;
						break;
					}
				}
			}
		}
		free(in);
		free(tree);
		s->cpu_s = (double)ticks / hz;
		s->tree_rss_kb = rss;
	}
	free(all);
}

/* ==== options =========================================================== */

enum scenario {
	SC_IMAP_LOGIN = 0, /* connect, LOGIN, SELECT, LOGOUT */
	SC_POP3_LOGIN,     /* connect, USER, PASS, STAT, QUIT */
	SC_IMAP_IDLE,      /* LOGIN, SELECT, IDLE, hold */
	SC_IMAP_FETCH,     /* LOGIN, SELECT, FETCH bodies repeatedly */
	SC_LMTP,           /* LHLO, (MAIL, RCPT, DATA)*, QUIT */
	SC_IMAP_MIXED,     /* a mail client's session */
	SC_COUNT
};
static const char *const scenario_names[SC_COUNT] = {
    "imap-login", "pop3-login", "imap-idle", "imap-fetch", "lmtp", "imap-mixed",
};

enum tls_mode {
	TLS_NONE = 0, /* plaintext */
	TLS_STARTTLS, /* STARTTLS / STLS after the greeting */
	TLS_IMPLICIT, /* TLS from the first byte */
};
static const char *const tls_names[] = {"none", "starttls", "implicit"};

enum proto { PROTO_IMAP = 0, PROTO_POP3, PROTO_LMTP };

struct opts {
	/* client */
	enum scenario scenario;
	const char *host;
	unsigned int port;
	enum tls_mode tls;
	const char *users;
	char user_prefix[64], user_suffix[64];
	uint64_t user_lo, user_hi;
	const char *password, *domain;
	uint64_t concurrency, count, rate, per_session;
	double duration_s, hold_s, op_timeout_s;
	bool duration_set;
	const char *source_ips;
	uint32_t src_lo, src_hi; /* host order; 0 = none */
	int *pids;
	size_t npids;
	const char *json, *messages_dir;
	bool quiet, fetch_each, trace;
	unsigned int threads;
	/* both */
	uint64_t message_size;
	/* server */
	bool serve;
	enum proto serve_proto;
	const char *listen;
	uint64_t exists;
};

static void usage(FILE *f)
{
	fputs("usage: mailring_bench --scenario NAME [options]      (load "
	      "generator)\n"
	      "       mailring_bench --serve imap|pop3|lmtp --listen ADDR:PORT "
	      "[options]\n"
	      "\n"
	      "scenarios: imap-login  connect, [STARTTLS], LOGIN, SELECT "
	      "INBOX, LOGOUT\n"
	      "           pop3-login  connect, [STLS], USER, PASS, STAT, QUIT\n"
	      "           imap-idle   LOGIN, SELECT, IDLE; hold all sessions "
	      "--hold s\n"
	      "           imap-fetch  LOGIN, SELECT, --per-session x FETCH 1:* "
	      "BODY.PEEK[]\n"
	      "                       (--fetch-each: FETCH n BODY.PEEK[] one "
	      "by one)\n"
	      "           lmtp        LHLO, --per-session x (MAIL, RCPT, "
	      "DATA), QUIT\n"
	      "           imap-mixed  LOGIN, SELECT, FETCH 1:* (FLAGS "
	      "RFC822.SIZE ENVELOPE),\n"
	      "                       3 x FETCH n BODY.PEEK[], STORE +FLAGS "
	      "(\\Seen), APPEND,\n"
	      "                       sometimes STORE \\Deleted + EXPUNGE, "
	      "LOGOUT\n"
	      "client options:\n"
	      "  --host IP               server address (127.0.0.1)\n"
	      "  --port N                server port (143/110/24; 993/995 with "
	      "implicit)\n"
	      "  --tls none|starttls|implicit   (no certificate verification)\n"
	      "  --users FMT:LO:HI       user names, round-robin "
	      "(user%d:1:1000)\n"
	      "  --password P            (pass)\n"
	      "  --domain D              LMTP recipients userN@D (example.com; "
	      "\"\": userN)\n"
	      "  --concurrency N         parallel sessions (10); imap-idle: "
	      "sessions held\n"
	      "  --duration S            stop starting sessions after S s (10; "
	      "0: none)\n"
	      "  --count N               stop after N sessions (0: no limit)\n"
	      "  --rate R                new sessions per second at most (0: "
	      "no limit)\n"
	      "  --hold S                imap-idle: hold time once all are "
	      "idle (10)\n"
	      "  --per-session N         imap-fetch rounds / lmtp deliveries "
	      "per session (10)\n"
	      "  --message-size BYTES    synthetic message size (4096)\n"
	      "  --messages-dir DIR      APPEND/LMTP messages from DIR/*.eml\n"
	      "  --source-ips A-B        bind sources over 127.0.0.A..B, "
	      "cycling\n"
	      "  --op-timeout S          per-command timeout (10)\n"
	      "  --pids P1,P2            processes to measure (CPU delta, RSS, "
	      "HWM)\n"
	      "  --json FILE             write the results as JSON\n"
	      "  --quiet                 no progress lines, no table\n"
	      "  -j, --threads N         N event loops in N threads, load "
	      "split evenly (1)\n"
	      "  --trace                 log every session state change to "
	      "stderr\n"
	      "server options (null backend):\n"
	      "  --listen ADDR:PORT      listen address\n"
	      "  --exists N              messages in every INBOX (1)\n"
	      "  --message-size BYTES    size of each message (4096)\n"
	      "  --tls starttls|implicit offer TLS with a throw-away "
	      "self-signed cert\n",
	      f);
}

static bool parse_users(struct opts *o)
{
	const char *fmt = o->users, *pct = strstr(fmt, "%d");
	const char *c2 = strrchr(fmt, ':');
	if (pct == NULL || c2 == NULL || c2 < pct)
		return false;
	const char *c1 = c2 - 1;
	while (c1 > pct && *c1 != ':')
		c1--;
	if (*c1 != ':' || c1 < pct + 2)
		return false;
	if (!str_copy(str_from(fmt, (size_t)(pct - fmt)), o->user_prefix,
		      sizeof(o->user_prefix)) ||
	    !str_copy(str_from(pct + 2, (size_t)(c1 - pct - 2)), o->user_suffix,
		      sizeof(o->user_suffix)) ||
	    strchr(o->user_suffix, '%') != NULL)
		return false;
	if (!str_to_u64(str_from(c1 + 1, (size_t)(c2 - c1 - 1)), UINT32_MAX,
			&o->user_lo) ||
	    !parse_u64(c2 + 1, UINT32_MAX, &o->user_hi) ||
	    o->user_hi < o->user_lo)
		return false;
	return true;
}

static bool parse_ipv4(struct str s, uint32_t *v_r)
{
	char tmp[INET_ADDRSTRLEN];
	struct in_addr a;
	if (!str_copy(s, tmp, sizeof(tmp)) || inet_pton(AF_INET, tmp, &a) != 1)
		return false;
	*v_r = ntohl(a.s_addr);
	return true;
}

static bool parse_source_ips(struct opts *o)
{
	struct str head, tail;
	if (str_split(str_cstr(o->source_ips), '-', &head, &tail)) {
		return parse_ipv4(head, &o->src_lo) &&
		       parse_ipv4(tail, &o->src_hi) && o->src_lo <= o->src_hi &&
		       o->src_lo != 0;
	}
	if (!parse_ipv4(head, &o->src_lo) || o->src_lo == 0)
		return false;
	o->src_hi = o->src_lo;
	return true;
}

static bool parse_pids(struct opts *o, const char *text)
{
	struct str rest = str_cstr(text), one;
	while (rest.len > 0) {
		uint64_t pid;
		str_split(rest, ',', &one, &rest);
		if (!str_to_u64(str_trim(one), INT_MAX, &pid) || pid == 0)
			return false;
		o->pids = xreallocarray(o->pids, o->npids + 1, sizeof(int));
		o->pids[o->npids++] = (int)pid;
	}
	return o->npids > 0;
}

enum {
	OPT_SCENARIO = 256,
	OPT_HOST,
	OPT_PORT,
	OPT_TLS,
	OPT_USERS,
	OPT_PASSWORD,
	OPT_DOMAIN,
	OPT_CONCURRENCY,
	OPT_DURATION,
	OPT_COUNT,
	OPT_RATE,
	OPT_HOLD,
	OPT_PER_SESSION,
	OPT_MESSAGE_SIZE,
	OPT_MESSAGES_DIR,
	OPT_SOURCE_IPS,
	OPT_OP_TIMEOUT,
	OPT_PIDS,
	OPT_JSON,
	OPT_QUIET,
	OPT_SERVE,
	OPT_LISTEN,
	OPT_EXISTS,
	OPT_FETCH_EACH,
	OPT_HELP,
	OPT_THREADS,
	OPT_TRACE,
};

static const struct option long_opts[] = {
    {"scenario", required_argument, NULL, OPT_SCENARIO},
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"tls", required_argument, NULL, OPT_TLS},
    {"users", required_argument, NULL, OPT_USERS},
    {"password", required_argument, NULL, OPT_PASSWORD},
    {"domain", required_argument, NULL, OPT_DOMAIN},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"count", required_argument, NULL, OPT_COUNT},
    {"rate", required_argument, NULL, OPT_RATE},
    {"hold", required_argument, NULL, OPT_HOLD},
    {"per-session", required_argument, NULL, OPT_PER_SESSION},
    {"message-size", required_argument, NULL, OPT_MESSAGE_SIZE},
    {"messages-dir", required_argument, NULL, OPT_MESSAGES_DIR},
    {"source-ips", required_argument, NULL, OPT_SOURCE_IPS},
    {"op-timeout", required_argument, NULL, OPT_OP_TIMEOUT},
    {"pids", required_argument, NULL, OPT_PIDS},
    {"json", required_argument, NULL, OPT_JSON},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"serve", required_argument, NULL, OPT_SERVE},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"exists", required_argument, NULL, OPT_EXISTS},
    {"fetch-each", no_argument, NULL, OPT_FETCH_EACH},
    {"help", no_argument, NULL, OPT_HELP},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"trace", no_argument, NULL, OPT_TRACE},
    {NULL, 0, NULL, 0},
};

static int lookup(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

/* Returns 0, or -1 after printing why. */
static int parse_opts(int argc, char **argv, struct opts *o)
{
	uint64_t v;
	int c, i;
	bool have_scenario = false;

	*o = (struct opts){
	    .host = "127.0.0.1",
	    .users = "user%d:1:1000",
	    .password = "pass",
	    .domain = "example.com",
	    .concurrency = 10,
	    .duration_s = 10,
	    .hold_s = 10,
	    .op_timeout_s = 10,
	    .per_session = 10,
	    .message_size = 4096,
	    .exists = 1,
	    .threads = 1,
	};
	while ((c = getopt_long(argc, argv, "hj:", long_opts, NULL)) != -1) {
		const char *a = optarg;
		bool ok = true;
		switch (c) {
		case OPT_SCENARIO:
			i = lookup(scenario_names, SC_COUNT, a);
			ok = i >= 0;
			o->scenario = (enum scenario)(ok ? i : 0);
			have_scenario = true;
			break;
		case OPT_HOST:
			o->host = a;
			break;
		case OPT_PORT:
			ok = parse_u64(a, 65535, &v) && v > 0;
			o->port = (unsigned int)v;
			break;
		case OPT_TLS:
			i = lookup(tls_names, 3, a);
			ok = i >= 0;
			o->tls = (enum tls_mode)(ok ? i : 0);
			break;
		case OPT_USERS:
			o->users = a;
			break;
		case OPT_PASSWORD:
			o->password = a;
			break;
		case OPT_DOMAIN:
			o->domain = a;
			break;
		case OPT_CONCURRENCY:
			ok = parse_u64(a, 10000000, &o->concurrency) &&
			     o->concurrency > 0;
			break;
		case OPT_DURATION:
			ok = parse_secs(a, &o->duration_s);
			o->duration_set = true;
			break;
		case OPT_COUNT:
			ok = parse_u64(a, UINT64_MAX / 2, &o->count);
			break;
		case OPT_RATE:
			ok = parse_u64(a, 100000000, &o->rate);
			break;
		case OPT_HOLD:
			ok = parse_secs(a, &o->hold_s);
			break;
		case OPT_PER_SESSION:
			ok = parse_u64(a, 100000000, &o->per_session) &&
			     o->per_session > 0;
			break;
		case OPT_MESSAGE_SIZE:
			ok = parse_u64(a, 512 * 1024 * 1024, &o->message_size);
			break;
		case OPT_MESSAGES_DIR:
			o->messages_dir = a;
			break;
		case OPT_SOURCE_IPS:
			o->source_ips = a;
			ok = parse_source_ips(o);
			break;
		case OPT_OP_TIMEOUT:
			ok = parse_secs(a, &o->op_timeout_s) &&
			     o->op_timeout_s >= 0.01;
			break;
		case OPT_PIDS:
			ok = parse_pids(o, a);
			break;
		case OPT_JSON:
			o->json = a;
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		case OPT_SERVE:
			o->serve = true;
			i = lookup(
			    (const char *const[]){"imap", "pop3", "lmtp"}, 3,
			    a);
			ok = i >= 0;
			o->serve_proto = (enum proto)(ok ? i : 0);
			break;
		case OPT_LISTEN:
			o->listen = a;
			break;
		case OPT_EXISTS:
			ok = parse_u64(a, 10000000, &o->exists);
			break;
		case OPT_FETCH_EACH:
			o->fetch_each = true;
			break;
		case 'j':
		case OPT_THREADS:
			ok = parse_u64(a, 64, &v) && v > 0;
			o->threads = (unsigned int)v;
			break;
		case OPT_TRACE:
			o->trace = true;
			break;
		case 'h':
		case OPT_HELP:
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
		if (!ok) {
			fprintf(stderr,
				"mailring-bench: invalid value for --%s: %s\n",
				c == 'j' ? "threads"
					 : long_opts[c - OPT_SCENARIO].name,
				a);
			return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "mailring-bench: unexpected argument: %s\n",
			argv[optind]);
		return -1;
	}
	if (o->serve) {
		if (o->listen == NULL) {
			fprintf(stderr,
				"mailring-bench: --serve needs --listen\n");
			return -1;
		}
		return 0;
	}
	if (!have_scenario) {
		usage(stderr);
		return -1;
	}
	if (!parse_users(o)) {
		fprintf(stderr,
			"mailring-bench: --users wants FMT:LO:HI with one "
			"%%d, e.g. user%%d:1:1000\n");
		return -1;
	}
	if (o->scenario == SC_IMAP_IDLE && !o->duration_set)
		o->duration_s = 0;
	if (o->scenario != SC_IMAP_IDLE && o->duration_s == 0 &&
	    o->count == 0) {
		fprintf(stderr, "mailring-bench: give --duration or --count\n");
		return -1;
	}
	if (o->port == 0) {
		static const unsigned int ports[3][2] = {
		    {143, 993}, {110, 995}, {24, 24}};
		enum proto p = o->scenario == SC_POP3_LOGIN ? PROTO_POP3
			       : o->scenario == SC_LMTP     ? PROTO_LMTP
							    : PROTO_IMAP;
		o->port = ports[p][o->tls == TLS_IMPLICIT];
	}
	return 0;
}

/* ==== client ============================================================ */

enum cl_state {
	CL_CONNECTING = 0, /* TCP connect under way */
	CL_HANDSHAKE,      /* TLS handshake (implicit, or after STARTTLS) */
	CL_GREETING,       /* waiting for the greeting */
	CL_WAIT,           /* a command is out: waiting for its final answer */
	CL_HOLDING,        /* IDLE accepted: holding the session */
	CL_DONE,           /* finished: queued for freeing */
};

enum cl_phase {
	PH_START = 0, /* greeting received */
	PH_STARTTLS,  /* STARTTLS/STLS sent, then the handshake */
	PH_HELLO,     /* LMTP LHLO sent */
	PH_USER,      /* POP3 USER sent */
	PH_LOGIN,     /* LOGIN / PASS sent */
	PH_SELECT,    /* SELECT INBOX / STAT sent */
	PH_WORK,      /* the scenario's own commands */
	PH_LOGOUT,    /* LOGOUT / QUIT sent */
};

enum cl_end {
	END_OK = 0,  /* the session ran to its end */
	END_FAILED,  /* an error (counted by kind) */
	END_ABORTED, /* closed by the bench: end of the hold or of the run */
};

enum run_phase {
	RUN_RAMP = 0, /* starting sessions */
	RUN_HOLD,     /* imap-idle: every session started; holding */
	RUN_DRAIN,    /* no new sessions; waiting for the running ones */
	RUN_OVER,     /* the loop ends */
};

struct bench;

/* What the threads of one run share: only atomics, and the --pids
 * snapshot at full hold that thread 0 writes before it sets
 * snapshot_done. */
struct bench_shared {
	unsigned int nthreads;
	atomic_uint holding;       /* threads whose sessions are all idle */
	atomic_bool snapshot_done; /* imap-idle: after[] was taken */
	struct proc_snap *after;
};

/* Set by SIGINT/SIGTERM; every thread's tick sees it. */
static volatile sig_atomic_t bench_stop_requested;

struct cl_session {
	struct bench *b;
	struct conn *conn;
	struct net_timer *timer;
	struct line_feeder in;
	struct buf *out;                /* output not written yet (lazy) */
	const struct msg *literal;      /* APPEND data waiting for "+" */
	struct cl_session *prev, *next; /* in b->live */
	struct cl_session *next_dead;   /* in b->dead */
	uint64_t session_start_us, op_start_us, delivery_start_us;
	enum cl_state state;
	enum cl_phase phase;
	enum op_kind op; /* the operation in flight */
	uint32_t user, exists, work, round, fetch_seq, tagn;
	bool expunge;   /* imap-mixed: \Deleted was stored */
	bool data_sent; /* LMTP: the message followed the 354 */
	bool ended_ok;  /* cl_end(END_OK) */
	char tag[12];
};

struct bench {
	const struct opts *o;
	enum proto proto;
	struct event_base *base;
	struct event *reaper;
	struct net_timer *tick;
	struct bench_shared *sh;
	unsigned int idx; /* thread number */
	SSL_CTX *ssl_ctx;
	struct net_addr dest;
	struct cl_session *live, *dead;
	enum run_phase phase;
	uint64_t start_us, deadline_us, hold_start_us, drain_deadline_us;
	uint64_t end_us, next_progress_us;
	uint64_t started, completed, failed, aborted;
	uint64_t active, held, peak_held, held_at_end, target;
	uint64_t held_for_us; /* imap-idle: how long the hold lasted */
	uint64_t user_next, src_next, rnd;
	uint64_t bytes_in, bytes_out, body_bytes, deliveries;
	struct hist hist[OP_COUNT];
	uint64_t op_errors[OP_COUNT];
	uint64_t errors[ERR_COUNT];
	unsigned int errors_logged;
	char tls_version[32], tls_cipher[96];
	struct msg synth;
	struct msg msgs[MSG_FILES_MAX];
	size_t nmsgs, next_msg;
	struct proc_snap *before, *after;
};

static void cl_next(struct cl_session *s);

static const char *const cl_state_names[] = {
    "connecting", "handshake", "greeting", "wait", "holding", "done",
};

/* The one place a session changes state (--trace shows old -> new);
 * nothing leaves CL_DONE. */
static void cl_enter_state(struct cl_session *s, enum cl_state st)
{
	if (s->state == CL_DONE)
		return;
	if (s->b->o->trace && s->state != st)
		fprintf(stderr,
			"mailring-bench: session %p user=%" PRIu32
			" %s -> %s\n",
			(void *)s, s->user, cl_state_names[s->state],
			cl_state_names[st]);
	s->state = st;
}
static void bench_check(struct bench *b);

static uint32_t bench_random(struct bench *b, uint32_t n)
{
	/* xorshift64: good enough to pick messages */
	b->rnd ^= b->rnd << 13;
	b->rnd ^= b->rnd >> 7;
	b->rnd ^= b->rnd << 17;
	return n == 0 ? 0 : (uint32_t)(b->rnd % n);
}

static const struct msg *bench_message(struct bench *b)
{
	if (b->nmsgs == 0)
		return &b->synth;
	return &b->msgs[b->next_msg++ % b->nmsgs];
}

static uint32_t bench_next_user(struct bench *b)
{
	const struct opts *o = b->o;
	uint64_t span = o->user_hi - o->user_lo + 1;
	return (uint32_t)(o->user_lo + b->user_next++ % span);
}

static void user_name(const struct bench *b, uint32_t n, char *dst, size_t size)
{
	if (str_printf(dst, size, "%s%" PRIu32 "%s", b->o->user_prefix, n,
		       b->o->user_suffix) < 0)
		dst[0] = '\0';
}

static void cl_end(struct cl_session *s, enum cl_end how)
{
	struct bench *b = s->b;

	if (s->state == CL_DONE)
		return;
	if (s->state == CL_HOLDING)
		b->held--;
	switch (how) {
	case END_OK:
		s->ended_ok = true;
		hist_add(&b->hist[OP_SESSION],
			 now_usecs() - s->session_start_us);
		b->completed++;
		break;
	case END_FAILED:
		b->failed++;
		break;
	case END_ABORTED:
		b->aborted++;
		break;
	}
	cl_enter_state(s, CL_DONE);
	net_timer_stop(s->timer);
	if (s->conn != NULL)
		conn_want(s->conn, false, false);
	s->next_dead = b->dead;
	b->dead = s;
	event_active(b->reaper, EV_TIMEOUT, 0);
}

static void cl_fail(struct cl_session *s, enum err_kind kind, const char *why,
		    struct str line)
{
	struct bench *b = s->b;

	if (s->state == CL_DONE)
		return;
	b->errors[kind]++;
	b->op_errors[s->op]++;
	if (!b->o->quiet && b->errors_logged < ERRORS_LOGGED_MAX) {
		char user[160], safe[200];
		user_name(b, s->user, user, sizeof(user));
		str_sanitize(line, safe, sizeof(safe));
		fprintf(
		    stderr,
		    "mailring-bench: error: user=%s op=%s kind=%s: %s%s%s\n",
		    user, op_names[s->op], err_names[kind], why,
		    line.len > 0 ? ": " : "", safe);
		if (++b->errors_logged == ERRORS_LOGGED_MAX)
			fprintf(stderr,
				"mailring-bench: further errors are only "
				"counted\n");
	}
	cl_end(s, END_FAILED);
}

static void cl_update_want(struct cl_session *s)
{
	if (s->state != CL_DONE)
		conn_want(s->conn, true, s->out != NULL && s->out->len > 0);
}

static void cl_flush(struct cl_session *s)
{
	while (s->out != NULL && s->out->len > 0) {
		ssize_t n = conn_write(s->conn, s->out->data, s->out->len);
		if (n == CONN_AGAIN)
			break;
		if (n < 0) {
			cl_fail(s, ERR_RESET, conn_error(s->conn), STR_NULL);
			return;
		}
		buf_consume(s->out, (size_t)n);
	}
	if (s->out != NULL && s->out->len == 0)
		buf_free(&s->out);
	cl_update_want(s);
}

/* Queues output; the event callback that runs writes it once at its end
 * (one segment per answer, as a real client corks its output). */
static void cl_send(struct cl_session *s, const void *data, size_t len)
{
	if (s->state == CL_DONE)
		return;
	if (s->out == NULL)
		s->out = buf_new(len > 4096 ? len : 4096, OUT_MAX_BYTES);
	if (buf_append(s->out, data, len) < 0)
		cl_fail(s, ERR_PROTOCOL, "output buffer full", STR_NULL);
}

static void cl_arm(struct cl_session *s)
{
	net_timer_start(s->timer, (unsigned int)(s->b->o->op_timeout_s * 1000),
			false);
}

/* Sends one command (IMAP: with a new tag) and starts timing op. */
static void cl_cmd(struct cl_session *s, enum op_kind op, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cl_cmd(struct cl_session *s, enum op_kind op, const char *fmt, ...)
{
	char line[2048];
	size_t off = 0;
	va_list ap;

	if (s->b->proto == PROTO_IMAP) {
		if (str_printf(s->tag, sizeof(s->tag), "a%" PRIu32, ++s->tagn) <
		    0)
			s->tag[0] = '\0';
		off = strlen(s->tag);
		memcpy(line, s->tag, off);
		line[off++] = ' ';
	}
	va_start(ap, fmt);
	int n = vsnprintf(line + off, sizeof(line) - off - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - off - 2) {
		s->op = op;
		cl_fail(s, ERR_PROTOCOL, "command too long", STR_NULL);
		return;
	}
	off += (size_t)n;
	line[off++] = '\r';
	line[off++] = '\n';
	s->op = op;
	s->op_start_us = now_usecs();
	cl_enter_state(s, CL_WAIT);
	cl_arm(s);
	cl_send(s, line, off);
}

static void cl_op_done(struct cl_session *s)
{
	hist_add(&s->b->hist[s->op], now_usecs() - s->op_start_us);
}

static void cl_start_tls(struct cl_session *s)
{
	char err[TLS_ERROR_MAX];
	SSL *ssl =
	    tls_client_ssl_new(s->b->ssl_ctx, s->b->o->host, err, sizeof(err));

	if (ssl == NULL) {
		cl_fail(s, ERR_TLS, err, STR_NULL);
		return;
	}
	cl_enter_state(s, CL_HANDSHAKE);
	if (conn_start_tls(s->conn, ssl, false) < 0)
		cl_fail(s, ERR_TLS, conn_error(s->conn), STR_NULL);
}

static void cl_greeting_done(struct cl_session *s)
{
	s->op = OP_CONNECT;
	s->op_start_us = s->session_start_us;
	cl_op_done(s);
	cl_enter_state(s, CL_WAIT);
	s->phase = PH_START;
	cl_next(s);
}

/* A quoted IMAP string; false when it does not fit. */
static bool imap_quote(const char *in, char *dst, size_t size)
{
	size_t j = 0;
	if (size < 3)
		return false;
	dst[j++] = '"';
	for (; *in != '\0'; in++) {
		if (j + 4 > size || *in == '\r' || *in == '\n')
			return false;
		if (*in == '"' || *in == '\\')
			dst[j++] = '\\';
		dst[j++] = *in;
	}
	dst[j++] = '"';
	dst[j] = '\0';
	return true;
}

/* ---- IMAP ---- */

static void imap_login(struct cl_session *s)
{
	char user[160], quser[340], qpass[520];

	user_name(s->b, s->user, user, sizeof(user));
	s->phase = PH_LOGIN;
	if (!imap_quote(user, quser, sizeof(quser)) ||
	    !imap_quote(s->b->o->password, qpass, sizeof(qpass))) {
		cl_fail(s, ERR_PROTOCOL, "user or password too long", STR_NULL);
		return;
	}
	cl_cmd(s, OP_LOGIN, "LOGIN %s %s", quser, qpass);
}

static bool imap_mixed_work(struct cl_session *s)
{
	struct bench *b = s->b;
	uint32_t n = s->exists;

	for (;;) {
		switch (s->work++) {
		case 0:
			if (n == 0)
				break;
			cl_cmd(s, OP_FETCH,
			       "FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)");
			return true;
		case 1:
		case 2:
		case 3:
			if (n == 0)
				break;
			cl_cmd(s, OP_FETCH_BODY,
			       "FETCH %" PRIu32 " BODY.PEEK[]",
			       1 + bench_random(b, n));
			return true;
		case 4:
			if (n == 0)
				break;
			cl_cmd(s, OP_STORE, "STORE %" PRIu32 " +FLAGS (\\Seen)",
			       1 + bench_random(b, n));
			return true;
		case 5: {
			const struct msg *m = bench_message(b);
			s->literal = m;
			cl_cmd(s, OP_APPEND, "APPEND INBOX (\\Seen) {%zu}",
			       m->len);
			return true;
		}
		case 6:
			/* keep mailboxes bounded: each session appends one */
			if (n == 0 || (n < 20 && bench_random(b, 10) != 0))
				break;
			s->expunge = true;
			cl_cmd(s, OP_STORE,
			       "STORE 1 +FLAGS.SILENT (\\Deleted)");
			return true;
		case 7:
			if (!s->expunge)
				break;
			cl_cmd(s, OP_EXPUNGE, "EXPUNGE");
			return true;
		default:
			return false;
		}
	}
}

static bool imap_work(struct cl_session *s)
{
	const struct opts *o = s->b->o;

	switch (o->scenario) {
	case SC_IMAP_IDLE:
		if (s->work++ > 0)
			return false;
		cl_cmd(s, OP_IDLE, "IDLE");
		return true;
	case SC_IMAP_FETCH:
		if (s->exists == 0)
			return false;
		if (o->fetch_each) {
			if (s->fetch_seq >= s->exists) {
				s->fetch_seq = 0;
				s->round++;
			}
			if (s->round >= o->per_session)
				return false;
			cl_cmd(s, OP_FETCH_BODY,
			       "FETCH %" PRIu32 " BODY.PEEK[]", ++s->fetch_seq);
			return true;
		}
		if (s->round++ >= o->per_session)
			return false;
		cl_cmd(s, OP_FETCH_BODY, "FETCH 1:* BODY.PEEK[]");
		return true;
	case SC_IMAP_MIXED:
		return imap_mixed_work(s);
	default:
		return false;
	}
}

static void imap_next(struct cl_session *s)
{
	switch (s->phase) {
	case PH_START:
		if (s->b->o->tls == TLS_STARTTLS && !conn_is_tls(s->conn)) {
			s->phase = PH_STARTTLS;
			cl_cmd(s, OP_TLS, "STARTTLS");
			return;
		}
		imap_login(s);
		return;
	case PH_STARTTLS:
		imap_login(s);
		return;
	case PH_LOGIN:
		s->phase = PH_SELECT;
		cl_cmd(s, OP_SELECT, "SELECT INBOX");
		return;
	case PH_SELECT:
	case PH_WORK:
		s->phase = PH_WORK;
		if (imap_work(s))
			return;
		s->phase = PH_LOGOUT;
		cl_cmd(s, OP_LOGOUT, "LOGOUT");
		return;
	case PH_LOGOUT:
		cl_end(s, END_OK);
		return;
	default:
		cl_fail(s, ERR_PROTOCOL, "unexpected phase", STR_NULL);
		return;
	}
}

static enum feed_result imap_line(void *ctx, struct str line, bool continued,
				  uint64_t literal)
{
	struct cl_session *s = ctx;
	struct bench *b = s->b;
	struct str rest, word;

	if (s->state == CL_DONE)
		return FEED_STOP;
	if (literal != NO_LITERAL && literal > CLIENT_LITERAL_MAX) {
		cl_fail(s, ERR_PROTOCOL, "literal too large", line);
		return FEED_STOP;
	}
	if (continued)
		return FEED_CONTINUE;
	if (s->state == CL_GREETING) {
		if (str_has_prefix_nocase(line, STR("* OK")) ||
		    str_has_prefix_nocase(line, STR("* PREAUTH"))) {
			cl_greeting_done(s);
			return FEED_CONTINUE;
		}
		cl_fail(s, ERR_PROTOCOL, "unexpected greeting", line);
		return FEED_STOP;
	}
	if (s->state != CL_WAIT)
		return FEED_CONTINUE; /* untagged updates while idling */
	if (line.len > 0 && line.p[0] == '+') {
		if (s->literal != NULL) {
			const struct msg *m = s->literal;
			s->literal = NULL;
			cl_send(s, m->data, m->len);
			cl_send(s, "\r\n", 2);
			return FEED_CONTINUE;
		}
		if (s->op == OP_IDLE) {
			cl_op_done(s);
			cl_enter_state(s, CL_HOLDING);
			net_timer_stop(s->timer);
			if (++b->held > b->peak_held)
				b->peak_held = b->held;
			return FEED_CONTINUE;
		}
		cl_fail(s, ERR_PROTOCOL, "unexpected continuation", line);
		return FEED_STOP;
	}
	if (str_has_prefix_nocase(line, STR("* "))) {
		uint64_t n;
		str_split(str_slice(line, 2, line.len), ' ', &word, &rest);
		if (str_eq_nocase(str_trim(rest), STR("EXISTS")) &&
		    str_to_u64(word, UINT32_MAX, &n))
			s->exists = (uint32_t)n;
		return FEED_CONTINUE;
	}
	str_split(line, ' ', &word, &rest);
	if (!str_eq(word, str_cstr(s->tag)))
		return FEED_CONTINUE;
	str_split(rest, ' ', &word, &rest);
	if (str_eq_nocase(word, STR("OK"))) {
		s->literal = NULL;
		if (s->op == OP_TLS) {
			cl_start_tls(s);
			return FEED_STOP;
		}
		cl_op_done(s);
		cl_next(s);
		return FEED_CONTINUE;
	}
	cl_fail(s,
		str_eq_nocase(word, STR("NO"))    ? ERR_NO
		: str_eq_nocase(word, STR("BAD")) ? ERR_BAD
						  : ERR_PROTOCOL,
		"tagged answer", line);
	return FEED_STOP;
}

/* ---- POP3 ---- */

static void pop3_next(struct cl_session *s)
{
	char user[160];

	switch (s->phase) {
	case PH_START:
		if (s->b->o->tls == TLS_STARTTLS && !conn_is_tls(s->conn)) {
			s->phase = PH_STARTTLS;
			cl_cmd(s, OP_TLS, "STLS");
			return;
		}
		/* FALLTHROUGH */
		__attribute__((fallthrough));
	case PH_STARTTLS:
		user_name(s->b, s->user, user, sizeof(user));
		s->phase = PH_USER;
		cl_cmd(s, OP_USER, "USER %s", user);
		return;
	case PH_USER:
		s->phase = PH_LOGIN;
		cl_cmd(s, OP_LOGIN, "PASS %s", s->b->o->password);
		return;
	case PH_LOGIN:
		s->phase = PH_SELECT;
		cl_cmd(s, OP_STAT, "STAT");
		return;
	case PH_SELECT:
		s->phase = PH_LOGOUT;
		cl_cmd(s, OP_LOGOUT, "QUIT");
		return;
	case PH_LOGOUT:
		cl_end(s, END_OK);
		return;
	default:
		cl_fail(s, ERR_PROTOCOL, "unexpected phase", STR_NULL);
		return;
	}
}

static enum feed_result pop3_line(void *ctx, struct str line, bool continued,
				  uint64_t literal)
{
	struct cl_session *s = ctx;
	(void)continued;
	(void)literal;

	if (s->state == CL_DONE)
		return FEED_STOP;
	if (s->state != CL_GREETING && s->state != CL_WAIT)
		return FEED_CONTINUE;
	if (str_eq(line, STR("+OK")) ||
	    str_has_prefix_nocase(line, STR("+OK "))) {
		if (s->state == CL_GREETING) {
			cl_greeting_done(s);
			return FEED_CONTINUE;
		}
		if (s->op == OP_TLS) {
			cl_start_tls(s);
			return FEED_STOP;
		}
		cl_op_done(s);
		cl_next(s);
		return FEED_CONTINUE;
	}
	if (str_has_prefix_nocase(line, STR("-ERR")))
		cl_fail(s, ERR_ERR, "answer", line);
	else
		cl_fail(s, ERR_PROTOCOL, "unexpected answer", line);
	return FEED_STOP;
}

/* ---- LMTP ---- */

static void lmtp_mail(struct cl_session *s)
{
	s->phase = PH_WORK;
	s->work = 0;
	s->data_sent = false;
	s->delivery_start_us = now_usecs();
	cl_cmd(s, OP_MAIL, "MAIL FROM:<bench@%s>",
	       s->b->o->domain[0] != '\0' ? s->b->o->domain : "example.com");
}

static void lmtp_next(struct cl_session *s)
{
	struct bench *b = s->b;
	char user[160];

	switch (s->phase) {
	case PH_START:
	case PH_STARTTLS:
		s->phase = PH_HELLO;
		cl_cmd(s, OP_LHLO, "LHLO mailring-bench.example.com");
		return;
	case PH_HELLO:
		if (b->o->tls == TLS_STARTTLS && !conn_is_tls(s->conn)) {
			s->phase = PH_STARTTLS;
			cl_cmd(s, OP_TLS, "STARTTLS");
			return;
		}
		lmtp_mail(s);
		return;
	case PH_WORK:
		switch (s->work++) {
		case 0: {
			/* userN@domain; userN alone with --domain "" or when
			 * the --users format has its own '@' */
			user_name(b, bench_next_user(b), user, sizeof(user));
			bool bare = b->o->domain[0] == '\0' ||
				    strchr(user, '@') != NULL;
			cl_cmd(s, OP_RCPT, "RCPT TO:<%s%s%s>", user,
			       bare ? "" : "@", bare ? "" : b->o->domain);
			return;
		}
		case 1:
			cl_cmd(s, OP_DATA, "DATA");
			return;
		default:
			hist_add(&b->hist[OP_DELIVERY],
				 now_usecs() - s->delivery_start_us);
			b->deliveries++;
			if (++s->round < b->o->per_session) {
				lmtp_mail(s);
				return;
			}
			s->phase = PH_LOGOUT;
			cl_cmd(s, OP_LOGOUT, "QUIT");
			return;
		}
		return;
	case PH_LOGOUT:
		cl_end(s, END_OK);
		return;
	default:
		cl_fail(s, ERR_PROTOCOL, "unexpected phase", STR_NULL);
		return;
	}
}

static enum feed_result lmtp_line(void *ctx, struct str line, bool continued,
				  uint64_t literal)
{
	struct cl_session *s = ctx;
	uint64_t code;
	(void)continued;
	(void)literal;

	if (s->state == CL_DONE)
		return FEED_STOP;
	if (s->state != CL_GREETING && s->state != CL_WAIT)
		return FEED_CONTINUE;
	if (line.len < 3 || !str_to_u64(str_slice(line, 0, 3), 999, &code) ||
	    (line.len > 3 && line.p[3] != ' ' && line.p[3] != '-')) {
		cl_fail(s, ERR_PROTOCOL, "unexpected reply", line);
		return FEED_STOP;
	}
	if (line.len > 3 && line.p[3] == '-')
		return FEED_CONTINUE;
	if (s->state == CL_GREETING) {
		if (code == 220) {
			cl_greeting_done(s);
			return FEED_CONTINUE;
		}
	} else if (code == 354 && s->op == OP_DATA && !s->data_sent) {
		const struct msg *m = bench_message(s->b);
		s->data_sent = true;
		cl_arm(s);
		cl_send(s, m->data, m->len);
		cl_send(s, ".\r\n", 3);
		return FEED_CONTINUE;
	} else if (code >= 200 && code < 300) {
		if (s->op == OP_TLS) {
			cl_start_tls(s);
			return FEED_STOP;
		}
		cl_op_done(s);
		cl_next(s);
		return FEED_CONTINUE;
	}
	cl_fail(s,
		code >= 400 && code < 500   ? ERR_4XX
		: code >= 500 && code < 600 ? ERR_5XX
					    : ERR_PROTOCOL,
		"reply", line);
	return FEED_STOP;
}

static void cl_next(struct cl_session *s)
{
	switch (s->b->proto) {
	case PROTO_IMAP:
		imap_next(s);
		break;
	case PROTO_POP3:
		pop3_next(s);
		break;
	case PROTO_LMTP:
		lmtp_next(s);
		break;
	}
}

static line_fn *const cl_line_fns[] = {imap_line, pop3_line, lmtp_line};

/* ---- I/O ---- */

static void cl_read(struct cl_session *s)
{
	uint8_t data[READ_CHUNK];

	for (int i = 0; i < 16 && s->state != CL_DONE; i++) {
		ssize_t n = conn_read(s->conn, data, sizeof(data));
		if (n == CONN_AGAIN)
			return;
		if (n == CONN_EOF) {
			cl_fail(s, ERR_EOF, "connection closed by the server",
				STR_NULL);
			return;
		}
		if (n < 0) {
			cl_fail(s, ERR_RESET, conn_error(s->conn), STR_NULL);
			return;
		}
		uint64_t before = s->in.literal_bytes;
		enum feed_result r = feeder_feed(&s->in, data, (size_t)n,
						 cl_line_fns[s->b->proto], s);
		s->b->body_bytes += s->in.literal_bytes - before;
		if (r == FEED_TOO_LONG) {
			cl_fail(s, ERR_PROTOCOL, "line too long", STR_NULL);
			return;
		}
		if (r != FEED_CONTINUE)
			return;
	}
}

static void cl_on_event(struct conn *c, enum conn_event ev, void *context)
{
	struct cl_session *s = context;
	struct bench *b = s->b;

	if (s->state == CL_DONE)
		return;
	switch (ev) {
	case CONN_EV_WRITABLE:
		if (s->state == CL_CONNECTING) {
			int r = net_connect_result(conn_fd(c));
			if (r == 0)
				return;
			if (r < 0) {
				cl_fail(s, ERR_CONNECT, strerror(errno),
					STR_NULL);
				return;
			}
			(void)net_set_nodelay(conn_fd(c), true);
			if (b->o->tls == TLS_IMPLICIT) {
				s->op_start_us = now_usecs();
				cl_start_tls(s);
				return;
			}
			cl_enter_state(s, CL_GREETING);
			conn_want(c, true, false);
			return;
		}
		cl_flush(s);
		return;
	case CONN_EV_READABLE:
		cl_read(s);
		if (s->state != CL_DONE)
			cl_flush(s);
		return;
	case CONN_EV_TLS_READY:
		if (b->tls_version[0] == '\0') {
			SSL *ssl = conn_ssl(c);
			str_copy(str_cstr(SSL_get_version(ssl)), b->tls_version,
				 sizeof(b->tls_version));
			str_copy(str_cstr(SSL_get_cipher_name(ssl)),
				 b->tls_cipher, sizeof(b->tls_cipher));
		}
		s->op = OP_TLS;
		cl_op_done(s);
		if (s->phase == PH_STARTTLS) {
			cl_enter_state(s, CL_WAIT);
			cl_next(s);
		} else {
			cl_enter_state(s, CL_GREETING);
		}
		if (s->state != CL_DONE)
			cl_flush(s);
		return;
	case CONN_EV_ERROR:
		cl_fail(s, ERR_TLS, conn_error(c), STR_NULL);
		return;
	}
}

static void cl_on_timeout(void *context)
{
	struct cl_session *s = context;
	cl_fail(s, ERR_TIMEOUT, "no answer within --op-timeout", STR_NULL);
}

static void cl_free(struct cl_session **sp)
{
	struct cl_session *s = *sp;
	struct bench *b = s->b;

	if (s->conn != NULL) {
		b->bytes_in += conn_bytes_in(s->conn);
		b->bytes_out += conn_bytes_out(s->conn);
	}
	conn_free(&s->conn);
	net_timer_free(&s->timer);
	feeder_free(&s->in);
	buf_free(&s->out);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		b->live = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	b->active--;
	free(s);
	*sp = NULL;
}

/* Starts one session; false when its connect failed at once. */
static bool cl_start(struct bench *b)
{
	struct cl_session *s = xcalloc(1, sizeof(*s));
	struct net_addr src, *srcp = NULL;
	char err[NET_ERROR_MAX];

	s->b = b;
	s->user = bench_next_user(b);
	s->in.literals = b->proto == PROTO_IMAP;
	s->session_start_us = now_usecs();
	s->op = OP_CONNECT;
	s->timer = net_timer_new(b->base, cl_on_timeout, s);
	s->next = b->live;
	if (b->live != NULL)
		b->live->prev = s;
	b->live = s;
	b->active++;
	b->started++;
	if (b->o->src_lo != 0) {
		uint32_t span = b->o->src_hi - b->o->src_lo + 1;
		memset(&src, 0, sizeof(src));
		src.u.sin.sin_family = AF_INET;
		src.u.sin.sin_addr.s_addr =
		    htonl(b->o->src_lo + (uint32_t)(b->src_next++ % span));
		src.len = sizeof(struct sockaddr_in);
		srcp = &src;
	}
	int fd = net_connect(&b->dest, srcp, err, sizeof(err));
	if (fd == -1) {
		cl_fail(s, ERR_CONNECT, err, STR_NULL);
		return false;
	}
	s->conn = conn_new(b->base, fd, cl_on_event, s);
	cl_enter_state(s, CL_CONNECTING);
	cl_arm(s);
	conn_want(s->conn, false, true);
	return true;
}

/* ---- the run ---- */

static void bench_abort_all(struct bench *b)
{
	for (struct cl_session *s = b->live; s != NULL; s = s->next)
		cl_end(s, END_ABORTED);
}

static void bench_fill(struct bench *b)
{
	const struct opts *o = b->o;
	uint64_t allowed = UINT64_MAX;
	unsigned int burst = 0;

	if (b->phase != RUN_RAMP)
		return;
	if (o->rate > 0)
		allowed = (now_usecs() - b->start_us) * o->rate / 1000000 + 1;
	uint64_t limit =
	    o->scenario == SC_IMAP_IDLE ? b->target : o->concurrency;
	while (b->active < limit && b->started < b->target &&
	       b->started < allowed && burst++ < 2000)
		(void)cl_start(b);
}

static void bench_reap(struct bench *b)
{
	bool refill = false;

	while (b->dead != NULL) {
		struct cl_session *s = b->dead;
		b->dead = s->next_dead;
		/* a session that ended well frees its slot for the next one
		 * at once; failures wait for the tick (no busy loop against a
		 * refusing server) */
		refill |= b->phase == RUN_RAMP && s->ended_ok;
		cl_free(&s);
	}
	if (refill && b->o->scenario != SC_IMAP_IDLE)
		bench_fill(b);
}

static void bench_on_reap(evutil_socket_t fd, short what, void *context)
{
	struct bench *b = context;
	(void)fd;
	(void)what;
	bench_reap(b);
	bench_check(b);
}

static void bench_progress(struct bench *b, uint64_t now)
{
	uint64_t ops = 0, errs = 0;

	if (b->o->quiet || b->idx != 0 || now < b->next_progress_us)
		return;
	b->next_progress_us = now + 1000000;
	for (int i = 0; i < OP_SESSION; i++)
		ops += i == OP_DELIVERY ? 0 : b->hist[i].count;
	for (int i = 0; i < ERR_COUNT; i++)
		errs += b->errors[i];
	fprintf(stderr,
		"mailring-bench: t=%.1fs active=%" PRIu64 " held=%" PRIu64
		" sessions=%" PRIu64 " ops=%" PRIu64 " errors=%" PRIu64 "%s\n",
		(double)(now - b->start_us) / 1e6, b->active, b->held,
		b->completed, ops, errs,
		b->sh->nthreads > 1 ? " (thread 0 only)" : "");
}

static void bench_check(struct bench *b)
{
	const struct opts *o = b->o;
	uint64_t now = now_usecs();
	bool stop = bench_stop_requested != 0;
	bool time_up = stop || (o->duration_s > 0 && now >= b->deadline_us);

	switch (b->phase) {
	case RUN_RAMP:
		if (o->scenario == SC_IMAP_IDLE) {
			if (!time_up &&
			    (b->started < b->target || b->active > b->held))
				break;
			b->phase = RUN_HOLD;
			b->hold_start_us = 0;
			atomic_fetch_add(&b->sh->holding, 1);
			break;
		}
		if (time_up || b->started >= b->target) {
			b->phase = RUN_DRAIN;
			b->drain_deadline_us =
			    now + (uint64_t)(o->op_timeout_s * 1e6);
		}
		break;
	case RUN_HOLD:
		if (b->hold_start_us == 0) {
			/* the hold starts once every thread is there */
			if (!stop &&
			    atomic_load(&b->sh->holding) < b->sh->nthreads)
				break;
			b->hold_start_us = now;
			if (!o->quiet && b->idx == 0)
				fprintf(
				    stderr,
				    "mailring-bench: sessions idle%s: %" PRIu64
				    " of %" PRIu64 "; holding %.1f s\n",
				    b->sh->nthreads > 1 ? " (thread 0)" : "",
				    b->held, b->target, o->hold_s);
		}
		if (!stop &&
		    now - b->hold_start_us < (uint64_t)(o->hold_s * 1e6))
			break;
		/* the measurement at full hold: thread 0 takes it, the
		 * others keep their sessions until it is done */
		if (b->idx == 0) {
			proc_snapshot(o->pids, o->npids, b->sh->after);
			atomic_store(&b->sh->snapshot_done, true);
		} else if (!atomic_load(&b->sh->snapshot_done) && !stop) {
			break;
		}
		b->held_at_end = b->held;
		b->held_for_us = now - b->hold_start_us;
		b->end_us = now;
		b->phase = RUN_DRAIN;
		b->drain_deadline_us = now;
		bench_abort_all(b);
		break;
	case RUN_DRAIN:
		if (b->active > 0 && now < b->drain_deadline_us)
			break;
		bench_abort_all(b);
		b->phase = RUN_OVER;
		if (b->end_us == 0)
			b->end_us = now;
		event_base_loopbreak(b->base);
		break;
	case RUN_OVER:
		break;
	}
}

static void bench_on_tick(void *context)
{
	struct bench *b = context;
	uint64_t now = now_usecs();

	bench_fill(b);
	bench_check(b);
	bench_progress(b, now);
}

static void bench_on_stop_signal(int signo)
{
	(void)signo;
	bench_stop_requested = 1;
}

/* ==== null backend ====================================================== */

enum srv_state {
	SRV_TLS_WAIT = 0, /* implicit TLS: handshake before the greeting */
	SRV_CMD,          /* waiting for a command line */
	SRV_AUTH_CONT,    /* "+ " sent: the SASL response line comes next */
	SRV_IDLE,         /* IMAP IDLE: waiting for DONE */
	SRV_DATA,         /* LMTP DATA: message lines until "." */
	SRV_FETCH,        /* a FETCH answer is generated as the output drains */
	SRV_STARTTLS,     /* STARTTLS answered: handshake once flushed */
	SRV_HANDSHAKE,    /* STARTTLS handshake running */
	SRV_CLOSING,      /* close once flushed */
	SRV_DEAD,         /* queued for freeing */
};

/* IMAP commands that span literals: what to answer at their end */
enum srv_multi {
	MULTI_NONE = 0,
	MULTI_APPEND,
	MULTI_LOGIN,
	MULTI_OTHER,
};

enum {
	FETCH_BODY = 0x01,
	FETCH_ENVELOPE = 0x02,
};

struct server {
	const struct opts *o;
	enum proto proto;
	struct event_base *base;
	struct event *accept_ev, *reaper, *sigint, *sigterm;
	struct net_timer *accept_pause;
	struct tls_server *tls;
	struct srv_conn *live, *dead;
	struct msg msg;
	size_t header_len;
	uint32_t exists;
	uint64_t conns, total_conns;
	bool accept_warned;
};

/* Small on purpose: an idle connection is this plus its struct conn. */
struct srv_conn {
	struct server *srv;
	struct conn *conn;
	struct line_feeder in;
	struct buf *out;              /* unsent output (lazy) */
	struct srv_conn *prev, *next; /* in srv->live */
	struct srv_conn *next_dead;
	uint32_t fetch_next, fetch_last;
	uint8_t state;      /* enum srv_state */
	uint8_t multi;      /* enum srv_multi */
	uint8_t fetch_what; /* FETCH_* bits */
	uint8_t bad;        /* errors answered so far */
	uint16_t rcpts;     /* LMTP recipients of the transaction */
	char tag[30];
};

struct srv_cmd {
	const char *verb;
	void (*run)(struct srv_conn *sc, struct str args);
};

/* The one place a connection changes state: nothing leaves SRV_DEAD (a
 * write error inside a command handler closes the connection, and the
 * handler's own state change must not revive it). */
static const char *const srv_state_names[] = {
    "tls-wait", "cmd",      "auth-cont", "idle",    "data",
    "fetch",    "starttls", "handshake", "closing", "dead",
};

static void srv_enter_state(struct srv_conn *sc, enum srv_state st)
{
	if (sc->state == SRV_DEAD)
		return;
	if (sc->srv->o->trace && sc->state != st)
		fprintf(stderr, "mailring-bench: conn %p %s -> %s\n",
			(void *)sc, srv_state_names[sc->state],
			srv_state_names[st]);
	sc->state = (uint8_t)st;
}

static void srv_close(struct srv_conn *sc)
{
	if (sc->state == SRV_DEAD)
		return;
	srv_enter_state(sc, SRV_DEAD);
	conn_want(sc->conn, false, false);
	sc->next_dead = sc->srv->dead;
	sc->srv->dead = sc;
	event_active(sc->srv->reaper, EV_TIMEOUT, 0);
}

/* Queues output; srv_pump writes it at the end of the callback, so an
 * answer leaves in one segment (Dovecot corks its output the same way). */
static void srv_send(struct srv_conn *sc, const void *data, size_t len)
{
	if (sc->state == SRV_DEAD)
		return;
	if (sc->out == NULL)
		sc->out = buf_new(len > 4096 ? len : 4096, OUT_MAX_BYTES);
	if (buf_append(sc->out, data, len) < 0)
		srv_close(sc); /* a client that does not read */
}

static void srv_printf(struct srv_conn *sc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void srv_printf(struct srv_conn *sc, const char *fmt, ...)
{
	char line[4096];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		srv_close(sc);
		return;
	}
	srv_send(sc, line, (size_t)n);
}

static const char *srv_imap_caps(const struct srv_conn *sc)
{
	if (sc->srv->o->tls == TLS_STARTTLS && !conn_is_tls(sc->conn))
		return "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE "
		       "LITERAL+ UIDPLUS AUTH=PLAIN STARTTLS";
	return "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
	       "UIDPLUS AUTH=PLAIN";
}

static void srv_greet(struct srv_conn *sc)
{
	switch (sc->srv->proto) {
	case PROTO_IMAP:
		srv_printf(sc,
			   "* OK [CAPABILITY %s] mailring-bench null backend "
			   "ready.\r\n",
			   srv_imap_caps(sc));
		break;
	case PROTO_POP3:
		srv_printf(
		    sc, "+OK [XCLIENT] mailring-bench null backend ready.\r\n");
		break;
	case PROTO_LMTP:
		srv_printf(sc, "220 mailring-bench null LMTP ready\r\n");
		break;
	}
}

/* Case-insensitive search of needle in s. */
static bool str_contains_nocase(struct str s, struct str needle)
{
	for (size_t i = 0; i + needle.len <= s.len; i++)
		if (str_has_prefix_nocase(str_slice(s, i, s.len - i), needle))
			return true;
	return false;
}

/* "1", "2:5", "3:*", "*", "1,4:6": the smallest range covering all of it,
 * clipped to 1..exists. False when it is not a sequence set. */
static bool parse_seqset(struct str s, uint32_t exists, uint32_t *lo_r,
			 uint32_t *hi_r)
{
	struct str rest = s, part, a, b;
	uint64_t lo = UINT64_MAX, hi = 0;

	if (s.len == 0)
		return false;
	while (rest.len > 0) {
		str_split(rest, ',', &part, &rest);
		bool range = str_split(part, ':', &a, &b);
		if (!range)
			b = a;
		uint64_t va, vb;
		if (str_eq(a, STR("*")))
			va = exists;
		else if (!str_to_u64(a, UINT32_MAX, &va) || va == 0)
			return false;
		if (str_eq(b, STR("*")))
			vb = exists;
		else if (!str_to_u64(b, UINT32_MAX, &vb) || vb == 0)
			return false;
		if (va > vb) {
			uint64_t t = va;
			va = vb;
			vb = t;
		}
		if (va < lo)
			lo = va;
		if (vb > hi)
			hi = vb;
	}
	if (hi > exists)
		hi = exists;
	if (lo == 0)
		lo = 1;
	*lo_r = (uint32_t)lo;
	*hi_r = (uint32_t)hi;
	return true;
}

/* ---- IMAP ---- */

static void srv_tagged(struct srv_conn *sc, const char *text)
{
	srv_printf(sc, "%s %s\r\n", sc->tag, text);
}

static void srv_imap_bad(struct srv_conn *sc, const char *text)
{
	srv_printf(sc, "%s BAD %s\r\n", sc->tag[0] != '\0' ? sc->tag : "*",
		   text);
	if (++sc->bad >= SERVER_BAD_MAX) {
		srv_printf(sc, "* BYE Too many invalid commands.\r\n");
		srv_enter_state(sc, SRV_CLOSING);
	}
}

static void imap_c_capability(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc, "* CAPABILITY %s\r\n%s OK Capability completed.\r\n",
		   srv_imap_caps(sc), sc->tag);
}

static void imap_c_ok(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_tagged(sc, "OK Completed.");
}

static void imap_c_id(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(
	    sc, "* ID (\"name\" \"mailring-bench\")\r\n%s OK ID completed.\r\n",
	    sc->tag);
}

static void imap_c_login(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc, "%s OK [CAPABILITY %s] Logged in\r\n", sc->tag,
		   srv_imap_caps(sc));
}

static void imap_c_authenticate(struct srv_conn *sc, struct str args)
{
	struct str mech, ir;
	str_split(args, ' ', &mech, &ir);
	if (!str_eq_nocase(mech, STR("PLAIN"))) {
		srv_tagged(sc, "NO Unsupported authentication mechanism.");
		return;
	}
	if (ir.len > 0) {
		imap_c_login(sc, args);
		return;
	}
	srv_send(sc, "+ \r\n", 4);
	srv_enter_state(sc, SRV_AUTH_CONT);
}

static void imap_c_select(struct srv_conn *sc, struct str args)
{
	uint32_t n = sc->srv->exists;
	(void)args;
	srv_printf(
	    sc,
	    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
	    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen "
	    "\\Draft \\*)] Flags permitted.\r\n"
	    "* %" PRIu32 " EXISTS\r\n* 0 RECENT\r\n"
	    "* OK [UIDVALIDITY 1] UIDs valid\r\n"
	    "* OK [UIDNEXT %" PRIu32 "] Predicted next UID\r\n"
	    "%s OK [READ-WRITE] Select completed.\r\n",
	    n, n + 1, sc->tag);
}

static void imap_c_list(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc,
		   "* LIST (\\HasNoChildren) \"/\" INBOX\r\n%s OK List "
		   "completed.\r\n",
		   sc->tag);
}

static void imap_c_status(struct srv_conn *sc, struct str args)
{
	uint32_t n = sc->srv->exists;
	(void)args;
	srv_printf(sc,
		   "* STATUS INBOX (MESSAGES %" PRIu32
		   " RECENT 0 UIDNEXT %" PRIu32
		   " UIDVALIDITY 1 UNSEEN 0)\r\n%s OK Status completed.\r\n",
		   n, n + 1, sc->tag);
}

static void imap_c_namespace(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc,
		   "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n%s OK Namespace "
		   "completed.\r\n",
		   sc->tag);
}

static void imap_c_search(struct srv_conn *sc, struct str args)
{
	uint32_t n = sc->srv->exists;
	(void)args;
	srv_send(sc, "* SEARCH", 8);
	for (uint32_t i = 1; i <= n && i <= 10000; i++)
		srv_printf(sc, " %" PRIu32, i);
	srv_printf(sc, "\r\n%s OK Search completed.\r\n", sc->tag);
}

static void imap_c_idle(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_send(sc, "+ idling\r\n", 10);
	srv_enter_state(sc, SRV_IDLE);
}

static void imap_c_logout(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc, "* BYE Logging out\r\n%s OK Logout completed.\r\n",
		   sc->tag);
	srv_enter_state(sc, SRV_CLOSING);
}

static void imap_c_starttls(struct srv_conn *sc, struct str args)
{
	(void)args;
	if (sc->srv->tls == NULL || conn_is_tls(sc->conn)) {
		srv_tagged(sc, "BAD TLS not available.");
		return;
	}
	srv_tagged(sc, "OK Begin TLS negotiation now.");
	srv_enter_state(sc, SRV_STARTTLS);
}

static void imap_c_fetch(struct srv_conn *sc, struct str args)
{
	struct str set, items;
	str_split(args, ' ', &set, &items);
	if (items.len == 0 || !parse_seqset(set, sc->srv->exists,
					    &sc->fetch_next, &sc->fetch_last)) {
		srv_imap_bad(sc, "Invalid FETCH arguments.");
		return;
	}
	sc->fetch_what = 0;
	if (str_contains_nocase(items, STR("BODY[")) ||
	    str_contains_nocase(items, STR("BODY.PEEK[]")) ||
	    str_contains_nocase(items, STR("BINARY[")) ||
	    str_contains_nocase(items, STR("RFC822 ")) ||
	    str_contains_nocase(items, STR("RFC822)")) ||
	    str_eq_nocase(items, STR("RFC822")))
		sc->fetch_what |= FETCH_BODY;
	if (str_contains_nocase(items, STR("ENVELOPE")))
		sc->fetch_what |= FETCH_ENVELOPE;
	srv_enter_state(sc, SRV_FETCH);
}

static void imap_c_store(struct srv_conn *sc, struct str args)
{
	struct str set, rest;
	uint32_t lo, hi;
	str_split(args, ' ', &set, &rest);
	if (!parse_seqset(set, sc->srv->exists, &lo, &hi) || rest.len == 0) {
		srv_imap_bad(sc, "Invalid STORE arguments.");
		return;
	}
	srv_tagged(sc, "OK Store completed.");
}

static void imap_c_append(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc, "%s OK [APPENDUID 1 %" PRIu32 "] Append completed.\r\n",
		   sc->tag, sc->srv->exists + 1);
}

/* The dispatch table: verbs are matched case-insensitively; "UID x" runs
 * x. State checks are left out on purpose (the null backend answers
 * whatever it is asked). */
static const struct srv_cmd imap_cmds[] = {
    {"CAPABILITY", imap_c_capability},
    {"NOOP", imap_c_ok},
    {"CHECK", imap_c_ok},
    {"ID", imap_c_id},
    {"LOGIN", imap_c_login},
    {"AUTHENTICATE", imap_c_authenticate},
    {"SELECT", imap_c_select},
    {"EXAMINE", imap_c_select},
    {"LIST", imap_c_list},
    {"LSUB", imap_c_list},
    {"STATUS", imap_c_status},
    {"NAMESPACE", imap_c_namespace},
    {"SEARCH", imap_c_search},
    {"IDLE", imap_c_idle},
    {"LOGOUT", imap_c_logout},
    {"STARTTLS", imap_c_starttls},
    {"FETCH", imap_c_fetch},
    {"STORE", imap_c_store},
    {"APPEND", imap_c_append},
    {"EXPUNGE", imap_c_ok},
    {"CLOSE", imap_c_ok},
    {"UNSELECT", imap_c_ok},
    {"ENABLE", imap_c_ok},
    {"CREATE", imap_c_ok},
    {"DELETE", imap_c_ok},
    {"RENAME", imap_c_ok},
    {"SUBSCRIBE", imap_c_ok},
    {"UNSUBSCRIBE", imap_c_ok},
    {"COPY", imap_c_ok},
    {"MOVE", imap_c_ok},
};

static const struct srv_cmd *srv_find(const struct srv_cmd *cmds, size_t n,
				      struct str verb)
{
	for (size_t i = 0; i < n; i++)
		if (str_eq_nocase(verb, str_cstr(cmds[i].verb)))
			return &cmds[i];
	return NULL;
}

/* Generates FETCH answers while the output is drained. */
static void srv_fetch_more(struct srv_conn *sc)
{
	const struct server *srv = sc->srv;

	for (int i = 0; i < 256 && sc->state == SRV_FETCH &&
			(sc->out == NULL || sc->out->len < 65536);
	     i++) {
		if (sc->fetch_next == 0 || sc->fetch_next > sc->fetch_last) {
			srv_tagged(sc, "OK Fetch completed.");
			srv_enter_state(sc, SRV_CMD);
			return;
		}
		uint32_t n = sc->fetch_next++;
		if (sc->fetch_what & FETCH_BODY) {
			srv_printf(sc,
				   "* %" PRIu32 " FETCH (UID %" PRIu32
				   " BODY[] {%zu}\r\n",
				   n, n, srv->msg.len);
			srv_send(sc, srv->msg.data, srv->msg.len);
			srv_send(sc, ")\r\n", 3);
			continue;
		}
		srv_printf(
		    sc,
		    "* %" PRIu32 " FETCH (UID %" PRIu32
		    " FLAGS (\\Seen) RFC822.SIZE %zu%s)\r\n",
		    n, n, srv->msg.len,
		    (sc->fetch_what & FETCH_ENVELOPE) == 0
			? ""
			: " ENVELOPE (\"Mon, 1 Jan 2024 00:00:00 +0000\" "
			  "\"mailring-bench synthetic message\" "
			  "((\"mailring-bench\" NIL \"bench\" "
			  "\"example.com\")) "
			  "((\"mailring-bench\" NIL \"bench\" "
			  "\"example.com\")) "
			  "((\"mailring-bench\" NIL \"bench\" "
			  "\"example.com\")) "
			  "((NIL NIL \"user\" \"example.com\")) NIL NIL NIL "
			  "\"<synthetic@mailring-bench>\")");
	}
}

static enum feed_result srv_after_line(struct srv_conn *sc)
{
	switch ((enum srv_state)sc->state) {
	case SRV_CMD:
	case SRV_AUTH_CONT:
	case SRV_IDLE:
	case SRV_DATA:
		return FEED_CONTINUE;
	case SRV_FETCH:
		return FEED_PAUSE;
	default:
		return FEED_STOP;
	}
}

static void srv_imap_command(struct srv_conn *sc, struct str line)
{
	struct str tag, verb, args;

	str_split(line, ' ', &tag, &args);
	if (tag.len == 0 || !str_copy(tag, sc->tag, sizeof(sc->tag))) {
		sc->tag[0] = '\0';
		srv_imap_bad(sc, "Invalid tag.");
		return;
	}
	str_split(args, ' ', &verb, &args);
	if (str_eq_nocase(verb, STR("UID")))
		str_split(args, ' ', &verb, &args);
	const struct srv_cmd *cmd =
	    srv_find(imap_cmds, sizeof(imap_cmds) / sizeof(imap_cmds[0]), verb);
	if (cmd == NULL) {
		srv_imap_bad(sc, "Unknown command.");
		return;
	}
	cmd->run(sc, args);
}

static enum feed_result srv_imap_line(void *ctx, struct str line,
				      bool continued, uint64_t literal)
{
	struct srv_conn *sc = ctx;

	if (sc->state == SRV_DEAD || sc->state == SRV_CLOSING)
		return FEED_STOP;
	if (literal != NO_LITERAL && literal > SERVER_LITERAL_MAX) {
		srv_printf(sc, "* BYE Literal too large.\r\n");
		srv_enter_state(sc, SRV_CLOSING);
		return FEED_STOP;
	}
	bool sync = literal != NO_LITERAL && line.p[line.len - 2] != '+';
	if (continued) {
		if (literal != NO_LITERAL) {
			if (sync)
				srv_send(sc, "+ OK\r\n", 6);
			return FEED_CONTINUE;
		}
		enum srv_multi m = (enum srv_multi)sc->multi;
		sc->multi = MULTI_NONE;
		if (m == MULTI_APPEND)
			imap_c_append(sc, STR_NULL);
		else if (m == MULTI_LOGIN)
			imap_c_login(sc, STR_NULL);
		else
			srv_tagged(sc, "OK Completed.");
		return srv_after_line(sc);
	}
	switch ((enum srv_state)sc->state) {
	case SRV_AUTH_CONT:
		srv_enter_state(sc, SRV_CMD);
		if (str_eq(line, STR("*")))
			srv_tagged(sc, "BAD Authentication canceled.");
		else
			imap_c_login(sc, STR_NULL);
		return srv_after_line(sc);
	case SRV_IDLE:
		srv_enter_state(sc, SRV_CMD);
		if (str_eq_nocase(line, STR("DONE")))
			srv_tagged(sc, "OK Idle completed.");
		else
			srv_imap_bad(sc, "Expected DONE.");
		return srv_after_line(sc);
	case SRV_CMD:
		break;
	default:
		return FEED_STOP;
	}
	if (literal != NO_LITERAL) {
		struct str tag, verb, args;
		str_split(line, ' ', &tag, &args);
		str_split(args, ' ', &verb, &args);
		if (!str_copy(tag, sc->tag, sizeof(sc->tag))) {
			srv_printf(sc, "* BYE Invalid tag.\r\n");
			srv_enter_state(sc, SRV_CLOSING);
			return FEED_STOP;
		}
		sc->multi = str_eq_nocase(verb, STR("APPEND"))  ? MULTI_APPEND
			    : str_eq_nocase(verb, STR("LOGIN")) ? MULTI_LOGIN
								: MULTI_OTHER;
		if (sync)
			srv_send(sc, "+ OK\r\n", 6);
		return FEED_CONTINUE;
	}
	srv_imap_command(sc, line);
	return srv_after_line(sc);
}

/* ---- POP3 ---- */

static void pop3_c_ok(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc, "+OK\r\n");
}

static void pop3_c_login(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc, "+OK Logged in.\r\n");
}

static void pop3_c_capa(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc,
		   "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nUSER\r\nRESP-CODES\r\n"
		   "PIPELINING\r\nSASL PLAIN\r\nXCLIENT\r\n%s.\r\n",
		   sc->srv->tls != NULL && !conn_is_tls(sc->conn) ? "STLS\r\n"
								  : "");
}

static void pop3_c_auth(struct srv_conn *sc, struct str args)
{
	struct str mech, ir;
	str_split(args, ' ', &mech, &ir);
	if (mech.len == 0) {
		srv_printf(sc, "+OK\r\nPLAIN\r\n.\r\n");
	} else if (!str_eq_nocase(mech, STR("PLAIN"))) {
		srv_printf(sc, "-ERR Unsupported mechanism.\r\n");
	} else if (ir.len > 0) {
		pop3_c_login(sc, args);
	} else {
		srv_send(sc, "+ \r\n", 4);
		srv_enter_state(sc, SRV_AUTH_CONT);
	}
}

static void pop3_c_stat(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc, "+OK %" PRIu32 " %" PRIu64 "\r\n", sc->srv->exists,
		   (uint64_t)sc->srv->exists * sc->srv->msg.len);
}

static bool pop3_msgno(struct srv_conn *sc, struct str arg, uint32_t *n_r)
{
	uint64_t n;
	if (!str_to_u64(arg, UINT32_MAX, &n) || n == 0 || n > sc->srv->exists) {
		srv_printf(
		    sc, "-ERR There's no message %.*s.\r\n",
		    STR_FMT(str_slice(arg, 0, arg.len > 20 ? 20 : arg.len)));
		return false;
	}
	*n_r = (uint32_t)n;
	return true;
}

static void pop3_c_list(struct srv_conn *sc, struct str args)
{
	uint32_t n;
	if (args.len > 0) {
		if (pop3_msgno(sc, args, &n))
			srv_printf(sc, "+OK %" PRIu32 " %zu\r\n", n,
				   sc->srv->msg.len);
		return;
	}
	srv_printf(sc, "+OK %" PRIu32 " messages\r\n", sc->srv->exists);
	for (uint32_t i = 1; i <= sc->srv->exists && i <= 100000; i++)
		srv_printf(sc, "%" PRIu32 " %zu\r\n", i, sc->srv->msg.len);
	srv_send(sc, ".\r\n", 3);
}

static void pop3_c_uidl(struct srv_conn *sc, struct str args)
{
	uint32_t n;
	if (args.len > 0) {
		if (pop3_msgno(sc, args, &n))
			srv_printf(sc, "+OK %" PRIu32 " bench%" PRIu32 "\r\n",
				   n, n);
		return;
	}
	srv_printf(sc, "+OK\r\n");
	for (uint32_t i = 1; i <= sc->srv->exists && i <= 100000; i++)
		srv_printf(sc, "%" PRIu32 " bench%" PRIu32 "\r\n", i, i);
	srv_send(sc, ".\r\n", 3);
}

static void pop3_c_retr(struct srv_conn *sc, struct str args)
{
	uint32_t n;
	if (!pop3_msgno(sc, args, &n))
		return;
	srv_printf(sc, "+OK %zu octets\r\n", sc->srv->msg.len);
	srv_send(sc, sc->srv->msg.data, sc->srv->msg.len);
	srv_send(sc, ".\r\n", 3);
}

static void pop3_c_top(struct srv_conn *sc, struct str args)
{
	struct str num, lines;
	uint32_t n;
	str_split(args, ' ', &num, &lines);
	if (!pop3_msgno(sc, num, &n))
		return;
	srv_printf(sc, "+OK\r\n");
	srv_send(sc, sc->srv->msg.data, sc->srv->header_len);
	srv_send(sc, ".\r\n", 3);
}

static void pop3_c_quit(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc, "+OK Logging out.\r\n");
	srv_enter_state(sc, SRV_CLOSING);
}

static void pop3_c_stls(struct srv_conn *sc, struct str args)
{
	(void)args;
	if (sc->srv->tls == NULL || conn_is_tls(sc->conn)) {
		srv_printf(sc, "-ERR TLS not available.\r\n");
		return;
	}
	srv_printf(sc, "+OK Begin TLS negotiation now.\r\n");
	srv_enter_state(sc, SRV_STARTTLS);
}

static const struct srv_cmd pop3_cmds[] = {
    {"CAPA", pop3_c_capa}, {"USER", pop3_c_ok},    {"PASS", pop3_c_login},
    {"AUTH", pop3_c_auth}, {"XCLIENT", pop3_c_ok}, {"STLS", pop3_c_stls},
    {"STAT", pop3_c_stat}, {"LIST", pop3_c_list},  {"UIDL", pop3_c_uidl},
    {"RETR", pop3_c_retr}, {"TOP", pop3_c_top},    {"DELE", pop3_c_ok},
    {"NOOP", pop3_c_ok},   {"RSET", pop3_c_ok},    {"QUIT", pop3_c_quit},
};

static enum feed_result srv_pop3_line(void *ctx, struct str line,
				      bool continued, uint64_t literal)
{
	struct srv_conn *sc = ctx;
	struct str verb, args;
	(void)continued;
	(void)literal;

	if (sc->state == SRV_AUTH_CONT) {
		srv_enter_state(sc, SRV_CMD);
		if (str_eq(line, STR("*")))
			srv_printf(sc, "-ERR Authentication canceled.\r\n");
		else
			pop3_c_login(sc, STR_NULL);
		return srv_after_line(sc);
	}
	if (sc->state != SRV_CMD)
		return FEED_STOP;
	str_split(line, ' ', &verb, &args);
	const struct srv_cmd *cmd =
	    srv_find(pop3_cmds, sizeof(pop3_cmds) / sizeof(pop3_cmds[0]), verb);
	if (cmd == NULL) {
		srv_printf(sc, "-ERR Unknown command.\r\n");
		if (++sc->bad >= SERVER_BAD_MAX)
			srv_enter_state(sc, SRV_CLOSING);
	} else {
		cmd->run(sc, args);
	}
	return srv_after_line(sc);
}

/* ---- LMTP ---- */

static void lmtp_c_lhlo(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc,
		   "250-mailring-bench\r\n250-PIPELINING\r\n"
		   "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n%s"
		   "250 SIZE\r\n",
		   sc->srv->tls != NULL && !conn_is_tls(sc->conn)
		       ? "250-STARTTLS\r\n"
		       : "");
	sc->rcpts = 0;
}

static void lmtp_c_mail(struct srv_conn *sc, struct str args)
{
	(void)args;
	sc->rcpts = 0;
	srv_printf(sc, "250 2.1.0 OK\r\n");
}

static void lmtp_c_rcpt(struct srv_conn *sc, struct str args)
{
	(void)args;
	if (sc->rcpts < UINT16_MAX)
		sc->rcpts++;
	srv_printf(sc, "250 2.1.5 OK\r\n");
}

static void lmtp_c_data(struct srv_conn *sc, struct str args)
{
	(void)args;
	if (sc->rcpts == 0) {
		srv_printf(sc, "503 5.5.1 No valid recipients\r\n");
		return;
	}
	srv_printf(sc, "354 OK\r\n");
	srv_enter_state(sc, SRV_DATA);
}

static void lmtp_c_rset(struct srv_conn *sc, struct str args)
{
	(void)args;
	sc->rcpts = 0;
	srv_printf(sc, "250 2.0.0 OK\r\n");
}

static void lmtp_c_quit(struct srv_conn *sc, struct str args)
{
	(void)args;
	srv_printf(sc, "221 2.0.0 Bye\r\n");
	srv_enter_state(sc, SRV_CLOSING);
}

static void lmtp_c_starttls(struct srv_conn *sc, struct str args)
{
	(void)args;
	if (sc->srv->tls == NULL || conn_is_tls(sc->conn)) {
		srv_printf(sc, "502 5.5.1 TLS not available\r\n");
		return;
	}
	srv_printf(sc, "220 2.0.0 Ready to start TLS\r\n");
	srv_enter_state(sc, SRV_STARTTLS);
}

static const struct srv_cmd lmtp_cmds[] = {
    {"LHLO", lmtp_c_lhlo}, {"MAIL", lmtp_c_mail},         {"RCPT", lmtp_c_rcpt},
    {"DATA", lmtp_c_data}, {"RSET", lmtp_c_rset},         {"NOOP", lmtp_c_rset},
    {"QUIT", lmtp_c_quit}, {"STARTTLS", lmtp_c_starttls},
};

static enum feed_result srv_lmtp_line(void *ctx, struct str line,
				      bool continued, uint64_t literal)
{
	struct srv_conn *sc = ctx;
	struct str verb, args;
	(void)continued;
	(void)literal;

	if (sc->state == SRV_DATA) {
		if (!str_eq(line, STR(".")))
			return FEED_CONTINUE;
		for (uint16_t i = 0; i < sc->rcpts; i++)
			srv_printf(sc, "250 2.0.0 Saved\r\n");
		sc->rcpts = 0;
		srv_enter_state(sc, SRV_CMD);
		return srv_after_line(sc);
	}
	if (sc->state != SRV_CMD)
		return FEED_STOP;
	str_split(line, ' ', &verb, &args);
	const struct srv_cmd *cmd =
	    srv_find(lmtp_cmds, sizeof(lmtp_cmds) / sizeof(lmtp_cmds[0]), verb);
	if (cmd == NULL) {
		srv_printf(sc, "500 5.5.2 Unknown command\r\n");
		if (++sc->bad >= SERVER_BAD_MAX)
			srv_enter_state(sc, SRV_CLOSING);
	} else {
		cmd->run(sc, args);
	}
	return srv_after_line(sc);
}

static line_fn *const srv_line_fns[] = {srv_imap_line, srv_pop3_line,
					srv_lmtp_line};

/* ---- I/O ---- */

static void srv_update_want(struct srv_conn *sc)
{
	bool pending = sc->out != NULL && sc->out->len > 0;
	bool rd = sc->state == SRV_CMD || sc->state == SRV_AUTH_CONT ||
		  sc->state == SRV_IDLE || sc->state == SRV_DATA;
	conn_want(sc->conn, rd, pending || sc->state == SRV_FETCH);
}

static void srv_start_tls(struct srv_conn *sc)
{
	char err[TLS_ERROR_MAX];
	SSL *ssl = tls_server_ssl_new(sc->srv->tls, err, sizeof(err));
	if (ssl == NULL || conn_start_tls(sc->conn, ssl, true) < 0)
		srv_close(sc);
}

/* Writes the queued output, and while it is all out acts on the state:
 * generates more FETCH answers, closes, starts TLS, or runs the commands
 * a pause left. Then sets the interest. Called at the end of every
 * callback. */
static void srv_pump(struct srv_conn *sc)
{
	for (int i = 0; i < 64 && sc->state != SRV_DEAD; i++) {
		while (sc->out != NULL && sc->out->len > 0) {
			ssize_t n =
			    conn_write(sc->conn, sc->out->data, sc->out->len);
			if (n == CONN_AGAIN)
				break;
			if (n < 0) {
				srv_close(sc);
				return;
			}
			buf_consume(sc->out, (size_t)n);
		}
		if (sc->out != NULL && sc->out->len > 0)
			break;      /* wait until writable */
		buf_free(&sc->out); /* idle connections keep no buffer */
		if (sc->state == SRV_FETCH) {
			srv_fetch_more(sc);
			continue;
		}
		if (sc->state == SRV_CLOSING) {
			srv_close(sc);
			return;
		}
		if (sc->state == SRV_STARTTLS) {
			srv_enter_state(sc, SRV_HANDSHAKE);
			buf_free(
			    &sc->in.held); /* no plaintext after STARTTLS */
			srv_start_tls(sc);
			return;
		}
		if (sc->state == SRV_CMD && sc->in.held != NULL) {
			if (feeder_resume(&sc->in, srv_line_fns[sc->srv->proto],
					  sc) == FEED_TOO_LONG)
				srv_close(sc);
			continue;
		}
		break;
	}
	if (sc->state != SRV_DEAD && sc->state != SRV_HANDSHAKE &&
	    sc->state != SRV_TLS_WAIT)
		srv_update_want(sc);
}

static void srv_read(struct srv_conn *sc)
{
	uint8_t data[READ_CHUNK];

	for (int i = 0; i < 8; i++) {
		if (sc->state != SRV_CMD && sc->state != SRV_AUTH_CONT &&
		    sc->state != SRV_IDLE && sc->state != SRV_DATA)
			break;
		ssize_t n = conn_read(sc->conn, data, sizeof(data));
		if (n == CONN_AGAIN)
			break;
		if (n <= 0) {
			srv_close(sc);
			return;
		}
		enum feed_result r = feeder_feed(
		    &sc->in, data, (size_t)n, srv_line_fns[sc->srv->proto], sc);
		if (r == FEED_TOO_LONG) {
			srv_printf(sc, sc->srv->proto == PROTO_IMAP
					   ? "* BYE Line too long.\r\n"
				       : sc->srv->proto == PROTO_POP3
					   ? "-ERR Line too long.\r\n"
					   : "500 5.5.2 Line too long\r\n");
			srv_enter_state(sc, SRV_CLOSING);
			break;
		}
		if (r != FEED_CONTINUE)
			break;
	}
	srv_pump(sc);
}

static void srv_on_event(struct conn *c, enum conn_event ev, void *context)
{
	struct srv_conn *sc = context;
	(void)c;

	if (sc->state == SRV_DEAD)
		return;
	switch (ev) {
	case CONN_EV_READABLE:
		srv_read(sc);
		return;
	case CONN_EV_WRITABLE:
		srv_pump(sc);
		return;
	case CONN_EV_TLS_READY:
		if (sc->state == SRV_TLS_WAIT) {
			srv_enter_state(sc, SRV_CMD);
			srv_greet(sc);
		}
		srv_enter_state(sc, SRV_CMD);
		srv_pump(sc);
		return;
	case CONN_EV_ERROR:
		srv_close(sc);
		return;
	}
}

static void srv_conn_new(struct server *srv, int fd)
{
	struct srv_conn *sc = xcalloc(1, sizeof(*sc));

	sc->srv = srv;
	sc->in.literals = srv->proto == PROTO_IMAP;
	sc->conn = conn_new(srv->base, fd, srv_on_event, sc);
	sc->next = srv->live;
	if (srv->live != NULL)
		srv->live->prev = sc;
	srv->live = sc;
	srv->conns++;
	srv->total_conns++;
	(void)net_set_nodelay(fd, true);
	if (srv->o->tls == TLS_IMPLICIT) {
		srv_enter_state(sc, SRV_TLS_WAIT);
		srv_start_tls(sc);
		return;
	}
	srv_enter_state(sc, SRV_CMD);
	srv_greet(sc);
	srv_pump(sc);
}

static void srv_on_reap(evutil_socket_t fd, short what, void *context)
{
	struct server *srv = context;
	(void)fd;
	(void)what;
	while (srv->dead != NULL) {
		struct srv_conn *sc = srv->dead;
		srv->dead = sc->next_dead;
		if (sc->prev != NULL)
			sc->prev->next = sc->next;
		else
			srv->live = sc->next;
		if (sc->next != NULL)
			sc->next->prev = sc->prev;
		conn_free(&sc->conn);
		feeder_free(&sc->in);
		buf_free(&sc->out);
		free(sc);
		srv->conns--;
	}
}

static void srv_on_accept(evutil_socket_t lfd, short what, void *context)
{
	struct server *srv = context;
	(void)what;

	for (int i = 0; i < 128; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				if (!srv->accept_warned)
					fprintf(stderr,
						"mailring-bench: accept: %s "
						"(pausing accepts 100 ms)\n",
						strerror(errno));
				srv->accept_warned = true;
				event_del(srv->accept_ev);
				net_timer_start(srv->accept_pause, 100, false);
			}
			return;
		}
		srv_conn_new(srv, fd);
	}
}

static void srv_on_accept_resume(void *context)
{
	struct server *srv = context;
	event_add(srv->accept_ev, NULL);
}

static void on_stop_signal(evutil_socket_t fd, short what, void *context)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(context);
}

/* A throw-away self-signed certificate for the null backend. */
static struct tls_server *srv_tls_new(void)
{
	char dir[] = "/tmp/mailring-bench-XXXXXX", cert[64], key[64];
	char err[TLS_ERROR_MAX];
	struct tls_server *t = NULL;

	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "mailring-bench: mkdtemp: %s\n",
			strerror(errno));
		return NULL;
	}
	if (str_printf(cert, sizeof(cert), "%s/cert.pem", dir) < 0 ||
	    str_printf(key, sizeof(key), "%s/key.pem", dir) < 0)
		return NULL;
	if (tls_selfsigned_write(cert, key, "localhost", 30, err,
				 sizeof(err)) == 0) {
		struct tls_server_settings set = {.cert_file = cert,
						  .key_file = key};
		t = tls_server_new(&set, err, sizeof(err));
	}
	if (t == NULL)
		fprintf(stderr, "mailring-bench: TLS: %s\n", err);
	unlink(cert);
	unlink(key);
	rmdir(dir);
	return t;
}

static int serve(const struct opts *o)
{
	struct server srv = {
	    .o = o, .proto = o->serve_proto, .exists = (uint32_t)o->exists};
	struct net_addr addr;
	const char *error;
	char err[NET_ERROR_MAX], astr[NET_ADDR_STR_MAX];

	if (net_addr_parse(o->listen, NET_ADDR_PORT_ZERO, &addr, &error) < 0) {
		fprintf(stderr, "mailring-bench: --listen %s: %s\n", o->listen,
			error);
		return 2;
	}
	if (o->tls != TLS_NONE && (srv.tls = srv_tls_new()) == NULL)
		return 1;
	int lfd = net_listen(&addr, 4096, 0, err, sizeof(err));
	if (lfd == -1) {
		fprintf(stderr, "mailring-bench: %s\n", err);
		return 1;
	}
	if (net_get_local_addr(lfd, &addr) == -1)
		return 1;
	srv.msg = msg_synth(o->message_size);
	const uint8_t *hdr_end =
	    (const uint8_t *)strstr((const char *)srv.msg.data, "\r\n\r\n");
	srv.header_len = hdr_end != NULL ? (size_t)(hdr_end - srv.msg.data) + 4
					 : srv.msg.len;
	srv.base = event_base_new();
	if (srv.base == NULL)
		xalloc_fail_abort();
	srv.accept_ev =
	    event_new(srv.base, lfd, EV_READ | EV_PERSIST, srv_on_accept, &srv);
	srv.reaper = event_new(srv.base, -1, 0, srv_on_reap, &srv);
	srv.sigint = evsignal_new(srv.base, SIGINT, on_stop_signal, srv.base);
	srv.sigterm = evsignal_new(srv.base, SIGTERM, on_stop_signal, srv.base);
	srv.accept_pause = net_timer_new(srv.base, srv_on_accept_resume, &srv);
	event_add(srv.accept_ev, NULL);
	event_add(srv.sigint, NULL);
	event_add(srv.sigterm, NULL);
	printf(
	    "mailring-bench: null %s backend listening on %s (exists=%" PRIu32
	    " message-size=%zu tls=%s)\n",
	    (const char *[]){"imap", "pop3", "lmtp"}[srv.proto],
	    net_addr_str(&addr, astr, sizeof(astr)), srv.exists, srv.msg.len,
	    tls_names[o->tls]);
	fflush(stdout);
	event_base_dispatch(srv.base);
	printf("mailring-bench: null backend stopping: %" PRIu64 " connections "
	       "served, %" PRIu64 " open\n",
	       srv.total_conns, srv.conns);
	fflush(stdout);
	for (struct srv_conn *sc = srv.live; sc != NULL; sc = sc->next)
		srv_close(sc);
	srv_on_reap(-1, 0, &srv);
	net_timer_free(&srv.accept_pause);
	event_free(srv.accept_ev);
	event_free(srv.reaper);
	event_free(srv.sigint);
	event_free(srv.sigterm);
	close(lfd);
	tls_server_free(&srv.tls);
	free(srv.msg.data);
	return 0;
}

/* ==== report ============================================================ */

static double per_s(uint64_t n, double secs)
{
	return secs > 0 ? (double)n / secs : 0;
}

static uint64_t bench_total_ops(const struct bench *b)
{
	uint64_t ops = 0;
	for (int i = 0; i < OP_DELIVERY; i++)
		ops += b->hist[i].count;
	return ops;
}

static uint64_t bench_total_errors(const struct bench *b)
{
	uint64_t n = 0;
	for (int i = 0; i < ERR_COUNT; i++)
		n += b->errors[i];
	return n;
}

static void json_proc(struct buf *j, const struct proc_snap *bf,
		      const struct proc_snap *af, int pid)
{
	buf_printf(j, "{\"pid\": %d, \"found\": %s", pid,
		   bf->found && af->found ? "true" : "false");
	if (bf->found && af->found)
		buf_printf(j,
			   ", \"cpu_s\": {\"before\": %.3f, \"after\": %.3f, "
			   "\"delta\": %.3f}",
			   bf->cpu_s, af->cpu_s, af->cpu_s - bf->cpu_s);
	buf_printf(j,
		   ", \"rss_kb\": {\"before\": %" PRIu64 ", \"after\": %" PRIu64
		   "}, \"hwm_kb\": {\"before\": %" PRIu64
		   ", \"after\": %" PRIu64 "}, \"tree_rss_kb\": %" PRIu64
		   ", \"threads\": %u, "
		   "\"descendants\": %u}",
		   bf->rss_kb, af->rss_kb, bf->hwm_kb, af->hwm_kb,
		   af->tree_rss_kb, af->threads, af->descendants);
}

static struct buf *bench_json(const struct bench *b, double secs)
{
	const struct opts *o = b->o;
	struct buf *j = buf_new(8192, 1024 * 1024);
	struct rusage ru;
	bool first;

	getrusage(RUSAGE_SELF, &ru);
	buf_printf(j,
		   "{\n  \"tool\": \"mailring-bench\", \"version\": %s,\n"
		   "  \"scenario\": \"%s\", \"host\": ",
		   BENCH_VERSION, scenario_names[o->scenario]);
	json_str(j, o->host);
	buf_printf(j, ", \"port\": %u, \"tls\": \"%s\",\n  \"tls_info\": ",
		   o->port, tls_names[o->tls]);
	if (b->tls_version[0] != '\0') {
		buf_append_cstr(j, "{\"version\": ");
		json_str(j, b->tls_version);
		buf_append_cstr(j, ", \"cipher\": ");
		json_str(j, b->tls_cipher);
		buf_append_cstr(j, "}");
	} else {
		buf_append_cstr(j, "null");
	}
	buf_append_cstr(j, ",\n  \"settings\": {\"users\": ");
	json_str(j, o->users);
	buf_printf(j,
		   ", \"concurrency\": %" PRIu64 ", \"duration_s\": %.3f, "
		   "\"count\": %" PRIu64 ", \"rate\": %" PRIu64
		   ", \"hold_s\": %.3f, "
		   "\"per_session\": %" PRIu64 ", \"message_size\": %" PRIu64
		   ", \"op_timeout_s\": %.3f, \"source_ips\": ",
		   o->concurrency, o->duration_s, o->count, o->rate, o->hold_s,
		   o->per_session, o->message_size, o->op_timeout_s);
	if (o->source_ips != NULL)
		json_str(j, o->source_ips);
	else
		buf_append_cstr(j, "null");
	buf_printf(j, "},\n  \"elapsed_s\": %.3f,\n", secs);
	buf_printf(j,
		   "  \"sessions\": {\"started\": %" PRIu64
		   ", \"completed\": %" PRIu64 ", \"failed\": %" PRIu64
		   ", \"aborted\": %" PRIu64 ", \"per_s\": %.2f},\n",
		   b->started, b->completed, b->failed, b->aborted,
		   per_s(b->completed, secs));
	uint64_t ops = bench_total_ops(b);
	buf_printf(j, "  \"ops\": {\"total\": %" PRIu64 ", \"per_s\": %.2f},\n",
		   ops, per_s(ops, secs));
	buf_append_cstr(j, "  \"ops_by_kind\": {");
	first = true;
	for (int i = 0; i < OP_COUNT; i++) {
		const struct hist *h = &b->hist[i];
		if (h->count == 0 && b->op_errors[i] == 0)
			continue;
		buf_printf(j,
			   "%s\n    \"%s\": {\"count\": %" PRIu64
			   ", \"errors\": %" PRIu64
			   ", \"per_s\": %.2f, \"latency_ms\": {\"p50\": %.3f, "
			   "\"p90\": %.3f, \"p99\": %.3f, \"max\": %.3f, "
			   "\"mean\": %.3f}}",
			   first ? "" : ",", op_names[i], h->count,
			   b->op_errors[i], per_s(h->count, secs),
			   hist_pct_ms(h, 0.50), hist_pct_ms(h, 0.90),
			   hist_pct_ms(h, 0.99), (double)h->max_us / 1000.0,
			   h->count > 0
			       ? (double)h->sum_us / (double)h->count / 1000.0
			       : 0);
		first = false;
	}
	buf_printf(
	    j, "\n  },\n  \"errors\": {\"total\": %" PRIu64 ", \"by_kind\": {",
	    bench_total_errors(b));
	for (int i = 0; i < ERR_COUNT; i++)
		buf_printf(j, "%s\"%s\": %" PRIu64, i == 0 ? "" : ", ",
			   err_names[i], b->errors[i]);
	buf_printf(j,
		   "}},\n  \"bytes\": {\"in\": %" PRIu64 ", \"out\": %" PRIu64
		   ", \"literal_in\": %" PRIu64
		   ", \"literal_mb_per_s\": %.3f},\n",
		   b->bytes_in, b->bytes_out, b->body_bytes,
		   secs > 0 ? (double)b->body_bytes / 1e6 / secs : 0);
	buf_printf(
	    j, "  \"deliveries\": {\"count\": %" PRIu64 ", \"per_s\": %.2f},\n",
	    b->deliveries, per_s(b->deliveries, secs));
	if (o->scenario == SC_IMAP_IDLE)
		buf_printf(j,
			   "  \"idle\": {\"target\": %" PRIu64
			   ", \"held\": %" PRIu64 ", \"peak_held\": %" PRIu64
			   ", \"hold_s\": %.3f, "
			   "\"held_for_s\": %.3f},\n",
			   b->target, b->held_at_end, b->peak_held, o->hold_s,
			   (double)b->held_for_us / 1e6);
	else
		buf_append_cstr(j, "  \"idle\": null,\n");
	buf_append_cstr(j, "  \"processes\": [");
	for (size_t i = 0; i < o->npids; i++) {
		buf_append_cstr(j, i == 0 ? "\n    " : ",\n    ");
		json_proc(j, &b->before[i], &b->after[i], o->pids[i]);
	}
	buf_printf(
	    j, "%s],\n  \"bench\": {\"cpu_s\": %.3f, \"max_rss_kb\": %ld}\n}\n",
	    o->npids > 0 ? "\n  " : "",
	    (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
	    ru.ru_maxrss);
	return j;
}

static void bench_table(const struct bench *b, double secs)
{
	const struct opts *o = b->o;

	printf("mailring-bench %s -> %s:%u tls=%s concurrency=%" PRIu64
	       " elapsed=%.2f s\n",
	       scenario_names[o->scenario], o->host, o->port, tls_names[o->tls],
	       o->concurrency, secs);
	if (b->tls_version[0] != '\0')
		printf("tls: %s %s\n", b->tls_version, b->tls_cipher);
	printf("sessions: started %" PRIu64 ", completed %" PRIu64 " (%.1f/s), "
	       "failed %" PRIu64 ", aborted %" PRIu64 "\n",
	       b->started, b->completed, per_s(b->completed, secs), b->failed,
	       b->aborted);
	printf("%-11s %10s %11s %7s %9s %9s %9s %9s\n", "op", "count", "ops/s",
	       "errors", "p50 ms", "p90 ms", "p99 ms", "max ms");
	for (int i = 0; i < OP_COUNT; i++) {
		const struct hist *h = &b->hist[i];
		if (h->count == 0 && b->op_errors[i] == 0)
			continue;
		printf("%-11s %10" PRIu64 " %11.1f %7" PRIu64
		       " %9.3f %9.3f %9.3f %9.3f\n",
		       op_names[i], h->count, per_s(h->count, secs),
		       b->op_errors[i], hist_pct_ms(h, 0.5),
		       hist_pct_ms(h, 0.9), hist_pct_ms(h, 0.99),
		       (double)h->max_us / 1000.0);
	}
	uint64_t ops = bench_total_ops(b);
	printf("all ops     %10" PRIu64 " %11.1f\n", ops, per_s(ops, secs));
	printf("errors:");
	if (bench_total_errors(b) == 0)
		printf(" none");
	for (int i = 0; i < ERR_COUNT; i++)
		if (b->errors[i] > 0)
			printf(" %s=%" PRIu64, err_names[i], b->errors[i]);
	printf("\nbytes: in %" PRIu64 ", out %" PRIu64 ", literals in %" PRIu64
	       " (%.2f MB/s)\n",
	       b->bytes_in, b->bytes_out, b->body_bytes,
	       secs > 0 ? (double)b->body_bytes / 1e6 / secs : 0);
	if (b->deliveries > 0)
		printf("deliveries: %" PRIu64 " (%.1f/s)\n", b->deliveries,
		       per_s(b->deliveries, secs));
	if (o->scenario == SC_IMAP_IDLE)
		printf("idle: %" PRIu64 " of %" PRIu64
		       " sessions held at the end of a "
		       "%.1f s hold (peak %" PRIu64 ")\n",
		       b->held_at_end, b->target, (double)b->held_for_us / 1e6,
		       b->peak_held);
	for (size_t i = 0; i < o->npids; i++) {
		const struct proc_snap *bf = &b->before[i], *af = &b->after[i];
		if (!bf->found || !af->found) {
			printf("pid %d: not found\n", o->pids[i]);
			continue;
		}
		printf("pid %d: cpu %.2f s (%.0f %% of one core), rss %" PRIu64
		       " kB (before %" PRIu64 "), hwm %" PRIu64
		       " kB, threads %u, "
		       "descendants %u (tree rss %" PRIu64 " kB)\n",
		       o->pids[i], af->cpu_s - bf->cpu_s,
		       secs > 0 ? (af->cpu_s - bf->cpu_s) * 100 / secs : 0,
		       af->rss_kb, bf->rss_kb, af->hwm_kb, af->threads,
		       af->descendants, af->tree_rss_kb);
	}
	fflush(stdout);
}

/* ==== main ============================================================== */

/* As many descriptors as allowed: with CAP_SYS_RESOURCE (root) up to
 * fs.nr_open, else the hard limit. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	char text[32];
	uint64_t nr_open;

	if (read_small_file("/proc/sys/fs/nr_open", text, sizeof(text)) &&
	    str_to_u64(str_trim(str_cstr(text)), 1 << 24, &nr_open)) {
		rl.rlim_cur = rl.rlim_max = (rlim_t)nr_open;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			return;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Creates the bench of thread idx over its share of o (copied into
 * *my_o). NULL after printing why. */
static struct bench *bench_new(const struct opts *o, struct opts *my_o,
			       unsigned int idx, struct bench_shared *sh)
{
	struct bench *b = xcalloc(1, sizeof(*b));
	char addr[NET_ADDR_STR_MAX + 8], err[TLS_ERROR_MAX];
	const char *error;
	unsigned int n = sh->nthreads;

	/* an even split; the first threads take the remainders */
	*my_o = *o;
	my_o->concurrency = o->concurrency / n + (idx < o->concurrency % n);
	my_o->count = o->count / n + (idx < o->count % n);
	my_o->rate = o->rate / n + (idx < o->rate % n);
	b->o = my_o;
	b->sh = sh;
	b->idx = idx;
	b->proto = o->scenario == SC_POP3_LOGIN ? PROTO_POP3
		   : o->scenario == SC_LMTP     ? PROTO_LMTP
						: PROTO_IMAP;
	b->rnd = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)getpid() << 8) ^ idx;
	/* spread users and sources over the threads */
	b->user_next = (o->user_hi - o->user_lo + 1) / n * idx;
	b->src_next =
	    o->src_lo != 0 ? (o->src_hi - o->src_lo + 1) / n * idx : 0;
	bool v6 = strchr(o->host, ':') != NULL;
	if (str_printf(addr, sizeof(addr), v6 ? "[%s]:%u" : "%s:%u", o->host,
		       o->port) < 0 ||
	    net_addr_parse(addr, 0, &b->dest, &error) < 0) {
		fprintf(stderr,
			"mailring-bench: --host %s: not a numeric address\n",
			o->host);
		free(b);
		return NULL;
	}
	if (o->tls != TLS_NONE) {
		struct tls_client_settings set = {.insecure_no_verify = true};
		b->ssl_ctx = tls_client_ctx_new(&set, err, sizeof(err));
		if (b->ssl_ctx == NULL) {
			fprintf(stderr, "mailring-bench: TLS: %s\n", err);
			free(b);
			return NULL;
		}
	}
	b->synth = msg_synth(o->message_size);
	if (o->messages_dir != NULL) {
		b->nmsgs = msgs_load_dir(o->messages_dir,
					 b->proto == PROTO_LMTP, b->msgs);
		if (b->nmsgs == 0 && idx == 0)
			fprintf(stderr,
				"mailring-bench: no usable *.eml in %s: "
				"using the synthetic message\n",
				o->messages_dir);
	}
	b->target = o->scenario == SC_IMAP_IDLE
			? (my_o->count > 0 ? my_o->count : my_o->concurrency)
			: (o->count > 0 ? my_o->count : UINT64_MAX);
	b->base = event_base_new();
	if (b->base == NULL)
		xalloc_fail_abort();
	b->reaper = event_new(b->base, -1, 0, bench_on_reap, b);
	b->tick = net_timer_new(b->base, bench_on_tick, b);
	return b;
}

static void bench_free(struct bench **bp)
{
	struct bench *b = *bp;
	if (b == NULL)
		return;
	net_timer_free(&b->tick);
	if (b->reaper != NULL)
		event_free(b->reaper);
	if (b->base != NULL)
		event_base_free(b->base);
	if (b->ssl_ctx != NULL)
		SSL_CTX_free(b->ssl_ctx);
	free(b->synth.data);
	for (size_t i = 0; i < b->nmsgs; i++)
		free(b->msgs[i].data);
	free(b);
	*bp = NULL;
}

/* One thread's run: its own loop until its sessions are over. */
static void *bench_thread(void *context)
{
	struct bench *b = context;

	b->start_us = now_usecs();
	b->deadline_us = b->start_us + (uint64_t)(b->o->duration_s * 1e6);
	b->next_progress_us = b->start_us + 1000000;
	net_timer_start(b->tick, TICK_MSECS, true);
	bench_fill(b);
	event_base_dispatch(b->base);
	bench_abort_all(b);
	bench_reap(b);
	if (b->end_us == 0)
		b->end_us = now_usecs();
	return NULL;
}

/* Adds the counters of src to dst. */
static void bench_merge(struct bench *dst, const struct bench *src)
{
	for (int i = 0; i < OP_COUNT; i++) {
		struct hist *d = &dst->hist[i];
		const struct hist *h = &src->hist[i];
		for (int k = 0; k < HIST_BUCKETS; k++)
			d->bucket[k] += h->bucket[k];
		d->count += h->count;
		d->sum_us += h->sum_us;
		if (h->max_us > d->max_us)
			d->max_us = h->max_us;
		dst->op_errors[i] += src->op_errors[i];
	}
	for (int i = 0; i < ERR_COUNT; i++)
		dst->errors[i] += src->errors[i];
	dst->started += src->started;
	dst->completed += src->completed;
	dst->failed += src->failed;
	dst->aborted += src->aborted;
	dst->held_at_end += src->held_at_end;
	if (src->held_for_us > dst->held_for_us)
		dst->held_for_us = src->held_for_us;
	dst->peak_held += src->peak_held;
	dst->target += src->target;
	dst->bytes_in += src->bytes_in;
	dst->bytes_out += src->bytes_out;
	dst->body_bytes += src->body_bytes;
	dst->deliveries += src->deliveries;
	if (dst->start_us == 0 || src->start_us < dst->start_us)
		dst->start_us = src->start_us;
	if (src->end_us > dst->end_us)
		dst->end_us = src->end_us;
	if (dst->tls_version[0] == '\0') {
		memcpy(dst->tls_version, src->tls_version,
		       sizeof(dst->tls_version));
		memcpy(dst->tls_cipher, src->tls_cipher,
		       sizeof(dst->tls_cipher));
	}
}

static int write_json(const struct bench *total, double secs, const char *path)
{
	struct buf *j = bench_json(total, secs);
	char tmp[4096];
	FILE *f = NULL;
	int rc = 0;

	if (str_printf(tmp, sizeof(tmp), "%s.tmp", path) >= 0)
		f = fopen(tmp, "w");
	if (f == NULL || fwrite(j->data, 1, j->len, f) != j->len ||
	    fclose(f) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "mailring-bench: writing %s: %s\n", path,
			strerror(errno));
		rc = 1;
	}
	buf_free(&j);
	return rc;
}

static int run_bench(const struct opts *o)
{
	/* no thread without a session of its own */
	unsigned int n = o->threads <= o->concurrency
			     ? o->threads
			     : (unsigned int)o->concurrency;
	struct bench_shared sh = {.nthreads = n};
	struct bench **benches = xcalloc(n, sizeof(*benches));
	struct opts *my_opts = xcalloc(n, sizeof(*my_opts));
	pthread_t *threads = xcalloc(n, sizeof(*threads));
	struct bench *total = xcalloc(1, sizeof(*total));
	struct sigaction sa;
	int rc = 0;

	atomic_init(&sh.holding, 0);
	atomic_init(&sh.snapshot_done, false);
	sh.after = xcalloc(o->npids + 1, sizeof(struct proc_snap));
	total->o = o;
	total->sh = &sh;
	total->before = xcalloc(o->npids + 1, sizeof(struct proc_snap));
	total->after = sh.after;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = bench_on_stop_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	for (unsigned int i = 0; i < n; i++) {
		benches[i] = bench_new(o, &my_opts[i], i, &sh);
		if (benches[i] == NULL) {
			rc = 2;
			goto out;
		}
	}
	proc_snapshot(o->pids, o->npids, total->before);
	if (n == 1) {
		bench_thread(benches[0]);
	} else {
		for (unsigned int i = 0; i < n; i++)
			if (pthread_create(&threads[i], NULL, bench_thread,
					   benches[i]) != 0) {
				fprintf(stderr,
					"mailring-bench: pthread_create "
					"failed\n");
				abort();
			}
		for (unsigned int i = 0; i < n; i++)
			pthread_join(threads[i], NULL);
	}
	if (!atomic_load(&sh.snapshot_done))
		proc_snapshot(o->pids, o->npids, sh.after);
	for (unsigned int i = 0; i < n; i++)
		bench_merge(total, benches[i]);

	double secs = (double)(total->end_us - total->start_us) / 1e6;
	if (!o->quiet)
		bench_table(total, secs);
	if (o->json != NULL)
		rc = write_json(total, secs, o->json);
out:
	for (unsigned int i = 0; i < n; i++)
		bench_free(&benches[i]);
	free(benches);
	free(my_opts);
	free(threads);
	free(total->before);
	free(total);
	free(sh.after);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;
	int rc;

	if (parse_opts(argc, argv, &o) < 0)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	raise_fd_limit();
	(void)net_ignore_sigpipe(); /* SSL_write may write() to a closed peer */
	rc = o.serve ? serve(&o) : run_bench(&o);
	free(o.pids);
	return rc;
}
