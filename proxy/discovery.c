/*
 * Backends from DNS (see discovery.h): one resolver on the main loop, an
 * ADDR watch per backend host name and per SRV target, an SRV watch per
 * backend_srv name. A change asks for a reconfigure; discovery_apply and
 * discovery_addr feed the rebuild that follows.
 *
 * What a result does:
 *   ADDR ok               first address, or another one: reconfigure
 *                         (the current address is kept while the answer
 *                         still has it, so round-robin DNS moves nothing)
 *   ADDR nxdomain/nodata  the name is gone: the backend is unresolved
 *   ADDR timeout/servfail keep the last address
 *   SRV ok                the record set (target, port, weight) changed:
 *                         reconfigure; new targets are looked up at once
 *   SRV nxdomain/nodata   no backends from that name
 *   SRV timeout/servfail  keep the last set
 * Errors are logged once per change of kind (timeout, NXDOMAIN...),
 * never per login.
 */
#include "discovery.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "directing.h"
#include "log.h"
#include "proxy.h"
#include "ring/director.h"
#include "ring/dns.h"
#include "str.h"
#include "xmalloc.h"

/* Changes this close together make one reconfigure. */
#define DISCOVERY_SETTLE_MSECS 200
/* Bytes of a log label ("backend b1 (mail1.example.net)"). */
#define DISCOVERY_LABEL_MAX 320
/* Bytes of the reason given to the reconfigure. */
#define DISCOVERY_REASON_MAX 512
/* Bytes of the SRV change list in a log line. */
#define DISCOVERY_CHANGES_MAX 1024

struct disc_host {
	char name[DNS_NAME_MAX + 1];     /* lower-case, no trailing dot */
	char label[DISCOVERY_LABEL_MAX]; /* who uses it, for logs */
	struct dns_watch *watch;
	bool resolved;
	struct net_addr addr;  /* port 0; valid when resolved */
	bool failing;          /* the last lookup failed */
	enum dns_status error; /* how (logged once per kind) */
	bool keep;             /* sync: still wanted */
};

struct disc_srv_rec {
	char target[DNS_NAME_MAX + 1]; /* lower-case, no trailing dot */
	uint16_t port;
	uint16_t weight;
};

struct disc_srv {
	char name[DNS_NAME_MAX + 1];
	int protocol; /* enum listener_protocol */
	bool tls;     /* _imaps, _pop3s */
	struct dns_watch *watch;
	bool answered;             /* a final answer came */
	struct disc_srv_rec *recs; /* by target, then port */
	size_t count;
	bool failing; /* as in disc_host */
	enum dns_status error;
	bool keep;
};

/* What the resolver and the watches were made with. */
struct disc_params {
	char servers[1024];
	uint64_t timeout_msecs;
	uint64_t retries;
	uint64_t min_ttl_msecs;
	uint64_t max_ttl_msecs;
};

static struct {
	struct event_base *base; /* NULL: not started */
	struct dns_resolver *resolver;
	struct disc_params params;
	bool params_set;
	struct disc_host **hosts;
	size_t host_count;
	struct disc_srv **srvs;
	size_t srv_count;
	struct net_timer *settle; /* a reconfigure is due */
	char reason[DISCOVERY_REASON_MAX];
	unsigned int more; /* changes not in reason */
} disc;

static void host_result(const struct dns_result *res, void *context);
static void srv_result(const struct dns_result *res, void *context);

/* ---- small helpers --------------------------------------------------- */

/* vsnprintf for messages: a cut message ends in "..." instead of being
 * lost. */
static void msg_printf(char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void msg_printf(char *dst, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(dst, size, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n >= size && size > 4)
		memcpy(dst + size - 4, "...", 4);
}

/* name lower-cased, without its trailing dot; false when it is not a
 * host name we ask about. */
static bool name_norm(const char *name, char out[DNS_NAME_MAX + 1])
{
	if (!dns_name_is_valid(name))
		return false;
	size_t len = strlen(name);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len > DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)tolower((unsigned char)name[i]);
	out[len] = '\0';
	return true;
}

bool discovery_is_host_name(const char *host)
{
	struct net_addr a;
	const char *error;

	if (net_addr_parse(host, NET_ADDR_PORT_OPTIONAL, &a, &error) == 0 ||
	    !dns_name_is_valid(host))
		return false;
	size_t len = strlen(host);
	if (len > 0 && host[len - 1] == '.')
		len--;
	size_t start = len;
	while (start > 0 && host[start - 1] != '.')
		start--;
	for (size_t i = start; i < len; i++) {
		if (!isdigit((unsigned char)host[i]))
			return true;
	}
	return false;
}

/* Remembers a failed lookup; true when it is a new kind of failure (the
 * texts vary with the server asked, the kinds do not), so each is logged
 * once per change. */
static bool error_changed(bool *failing, enum dns_status *last,
			  enum dns_status status)
{
	if (*failing && *last == status)
		return false;
	*failing = true;
	*last = status;
	return true;
}

int discovery_srv_protocol(const char *srv_name, bool *tls_r)
{
	static const struct {
		const char *label;
		int protocol;
		bool tls;
	} services[] = {
	    {"_imap", LISTENER_IMAP, false}, {"_imaps", LISTENER_IMAP, true},
	    {"_pop3", LISTENER_POP3, false}, {"_pop3s", LISTENER_POP3, true},
	    {"_lmtp", LISTENER_LMTP, false},
	};
	size_t len = strcspn(srv_name, ".");

	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		if (strlen(services[i].label) == len &&
		    strncasecmp(srv_name, services[i].label, len) == 0) {
			*tls_r = services[i].tls;
			return services[i].protocol;
		}
	}
	return -1;
}

int discovery_servers_text(const struct proxy_settings *set, char *dst,
			   size_t dstsize)
{
	size_t len = 0;

	if (dstsize == 0)
		return -1;
	dst[0] = '\0';
	for (size_t i = 0; i < set->dns_servers.count; i++) {
		const char *item = set->dns_servers.items[i];
		size_t n = strlen(item);
		if (len + n + 2 > dstsize) {
			dst[0] = '\0';
			return -1;
		}
		if (len > 0)
			dst[len++] = ' ';
		memcpy(dst + len, item, n);
		len += n;
		dst[len] = '\0';
	}
	return 0;
}

/* ---- the reconfigure, once things settle ------------------------------- */

static void settle_fire(void *context)
{
	char why[DISCOVERY_REASON_MAX + 48];
	(void)context;

	if (disc.more > 0)
		msg_printf(why, sizeof(why), "%s (and %u more changes)",
			   disc.reason, disc.more);
	else
		msg_printf(why, sizeof(why), "%s", disc.reason);
	disc.reason[0] = '\0';
	disc.more = 0;
	directing_request_reconfigure(why);
}

static void discovery_changed(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static void discovery_changed(const char *fmt, ...)
{
	char what[DISCOVERY_REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n >= sizeof(what))
		memcpy(what + sizeof(what) - 4, "...", 4);
	if (disc.reason[0] == '\0')
		msg_printf(disc.reason, sizeof(disc.reason), "DNS: %s", what);
	else
		disc.more++;
	if (disc.settle != NULL && !net_timer_pending(disc.settle))
		net_timer_start(disc.settle, DISCOVERY_SETTLE_MSECS, false);
}

/* ---- names we follow ------------------------------------------------- */

static struct disc_host *host_find(const char *norm)
{
	for (size_t i = 0; i < disc.host_count; i++) {
		if (strcmp(disc.hosts[i]->name, norm) == 0)
			return disc.hosts[i];
	}
	return NULL;
}

static struct disc_srv *srv_find(const char *norm)
{
	for (size_t i = 0; i < disc.srv_count; i++) {
		if (strcmp(disc.srvs[i]->name, norm) == 0)
			return disc.srvs[i];
	}
	return NULL;
}

static void watch_settings(struct dns_watch_settings *ws)
{
	memset(ws, 0, sizeof(*ws));
	ws->min_refresh_msecs = disc.params.min_ttl_msecs;
	ws->max_refresh_msecs = disc.params.max_ttl_msecs;
	/* a failed lookup is tried again soon, but not in a loop */
	ws->error_retry_msecs = disc.params.min_ttl_msecs;
}

static void host_watch(struct disc_host *h)
{
	struct dns_watch_settings ws;
	if (h->watch != NULL || disc.resolver == NULL)
		return;
	watch_settings(&ws);
	h->watch = dns_watch_new(disc.resolver, DNS_LOOKUP_ADDR, h->name, &ws,
				 host_result, h);
}

static void srv_watch(struct disc_srv *s)
{
	struct dns_watch_settings ws;
	if (s->watch != NULL || disc.resolver == NULL)
		return;
	watch_settings(&ws);
	s->watch = dns_watch_new(disc.resolver, DNS_LOOKUP_SRV, s->name, &ws,
				 srv_result, s);
}

/* The entry of a (normalised) host name, made and watched if new. */
static struct disc_host *host_get(const char *norm)
{
	struct disc_host *h = host_find(norm);
	if (h == NULL) {
		h = xcalloc(1, sizeof(*h));
		str_copy(str_cstr(norm), h->name, sizeof(h->name));
		disc.hosts = xreallocarray(disc.hosts, disc.host_count + 1,
					   sizeof(*disc.hosts));
		disc.hosts[disc.host_count++] = h;
	}
	host_watch(h);
	return h;
}

static void host_free(struct disc_host **hp)
{
	struct disc_host *h = *hp;
	if (h == NULL)
		return;
	*hp = NULL;
	dns_watch_free(&h->watch);
	free(h);
}

static void srv_free(struct disc_srv **sp)
{
	struct disc_srv *s = *sp;
	if (s == NULL)
		return;
	*sp = NULL;
	dns_watch_free(&s->watch);
	free(s->recs);
	free(s);
}

/* The label of a host only SRV records name. */
static void host_label_srv(struct disc_host *h)
{
	if (h->label[0] == '\0')
		msg_printf(h->label, sizeof(h->label), "SRV target %s",
			   h->name);
}

/* ---- address results ----------------------------------------------------- */

static void host_result(const struct dns_result *res, void *context)
{
	struct disc_host *h = context;
	char addr[NET_ADDR_STR_MAX];
	const char *error =
	    res->error != NULL ? res->error : dns_status_name(res->status);

	if (res->status == DNS_OK && res->count > 0) {
		const struct dns_record *pick = &res->records[0];
		for (size_t i = 0; i < res->count && h->resolved; i++) {
			if (net_addr_ip_eq(&res->records[i].addr, &h->addr)) {
				pick = &res->records[i];
				break;
			}
		}
		bool had_error = h->failing;
		h->failing = false;
		if (h->resolved && net_addr_ip_eq(&pick->addr, &h->addr)) {
			if (had_error)
				log_notice("dns: %s resolves again (%s)",
					   h->label,
					   net_addr_ip_str(&h->addr, addr,
							   sizeof(addr)));
			return;
		}
		h->addr = pick->addr;
		net_addr_set_port(&h->addr, 0);
		h->resolved = true;
		net_addr_ip_str(&h->addr, addr, sizeof(addr));
		log_notice("dns: %s is %s (ttl %us)", h->label, addr,
			   (unsigned int)pick->ttl);
		discovery_changed("%s is %s", h->label, addr);
		return;
	}
	bool gone = res->status == DNS_OK || res->status == DNS_NXDOMAIN ||
		    res->status == DNS_NODATA;
	if (error_changed(&h->failing, &h->error, res->status)) {
		if (!h->resolved)
			log_warnx("dns: %s: %s: the backend stays unresolved",
				  h->label, error);
		else if (gone)
			log_warnx("dns: %s: %s: the backend is unresolved now",
				  h->label, error);
		else
			log_warnx(
			    "dns: %s: %s: keeping %s", h->label, error,
			    net_addr_ip_str(&h->addr, addr, sizeof(addr)));
	}
	if (gone && h->resolved) {
		h->resolved = false;
		memset(&h->addr, 0, sizeof(h->addr));
		discovery_changed("%s no longer resolves", h->label);
	}
}

/* ---- SRV results -----------------------------------------------------------
 */

static int srv_rec_cmp(const void *a, const void *b)
{
	const struct disc_srv_rec *x = a, *y = b;
	int r = strcmp(x->target, y->target);
	if (r != 0)
		return r;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	/* the highest weight first: duplicates keep it */
	if (x->weight != y->weight)
		return x->weight > y->weight ? -1 : 1;
	return 0;
}

static const struct disc_srv_rec *srv_rec_find(const struct disc_srv_rec *recs,
					       size_t count,
					       const struct disc_srv_rec *r)
{
	for (size_t i = 0; i < count; i++) {
		if (strcmp(recs[i].target, r->target) == 0 &&
		    recs[i].port == r->port)
			return &recs[i];
	}
	return NULL;
}

/* "target", or "target:port" when the target has several ports here. */
static void srv_rec_show(const struct disc_srv_rec *recs, size_t count,
			 const struct disc_srv_rec *r, char *dst, size_t size)
{
	size_t same = 0;
	for (size_t i = 0; i < count; i++)
		same += strcmp(recs[i].target, r->target) == 0;
	if (same > 1)
		msg_printf(dst, size, "%s:%u", r->target,
			   (unsigned int)r->port);
	else
		msg_printf(dst, size, "%s", r->target);
}

/* What changed between the old and the new set, for the log. */
static void srv_changes(const struct disc_srv *s,
			const struct disc_srv_rec *recs, size_t count,
			struct buf *out)
{
	char show[DNS_NAME_MAX + 8];
	bool first = true;

	for (size_t i = 0; i < count; i++) {
		const struct disc_srv_rec *old =
		    srv_rec_find(s->recs, s->count, &recs[i]);
		srv_rec_show(recs, count, &recs[i], show, sizeof(show));
		if (old == NULL)
			buf_printf(out, "%sadded %s", first ? "" : ", ", show);
		else if (old->weight != recs[i].weight)
			buf_printf(out, "%s%s weight %u -> %u",
				   first ? "" : ", ", show,
				   (unsigned int)old->weight,
				   (unsigned int)recs[i].weight);
		else
			continue;
		first = false;
	}
	for (size_t i = 0; i < s->count; i++) {
		if (srv_rec_find(recs, count, &s->recs[i]) != NULL)
			continue;
		srv_rec_show(s->recs, s->count, &s->recs[i], show,
			     sizeof(show));
		buf_printf(out, "%sremoved %s", first ? "" : ", ", show);
		first = false;
	}
}

static void srv_result(const struct dns_result *res, void *context)
{
	struct disc_srv *s = context;
	const char *error =
	    res->error != NULL ? res->error : dns_status_name(res->status);
	struct disc_srv_rec *recs = NULL;
	size_t count = 0;

	switch (res->status) {
	case DNS_OK:
		recs = xcalloc(res->count + 1, sizeof(*recs));
		for (size_t i = 0; i < res->count; i++) {
			const struct dns_srv *srv = &res->records[i].srv;
			if (res->records[i].type != DNS_TYPE_SRV ||
			    !name_norm(srv->target, recs[count].target))
				continue;
			recs[count].port = srv->port;
			recs[count].weight = srv->weight;
			count++;
		}
		qsort(recs, count, sizeof(*recs), srv_rec_cmp);
		/* one record per target and port (the highest weight) */
		if (count > 1) {
			size_t n = 1;
			for (size_t i = 1; i < count; i++) {
				if (strcmp(recs[i].target,
					   recs[n - 1].target) != 0 ||
				    recs[i].port != recs[n - 1].port)
					recs[n++] = recs[i];
			}
			count = n;
		}
		if (s->failing)
			log_notice("dns: %s answers again", s->name);
		s->failing = false;
		break;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		if (error_changed(&s->failing, &s->error, res->status))
			log_warnx("dns: %s: %s: no backends from it", s->name,
				  error);
		break;
	default:
		if (error_changed(&s->failing, &s->error, res->status)) {
			if (s->answered)
				log_warnx(
				    "dns: %s: %s: keeping its %zu backends",
				    s->name, error, s->count);
			else
				log_warnx(
				    "dns: %s: %s: no backends from it yet",
				    s->name, error);
		}
		return;
	}

	if (!s->answered && count == 0) {
		/* no backends before, none now: nothing to rebuild */
		s->answered = true;
		free(recs);
		return;
	}
	bool same = s->answered && count == s->count;
	for (size_t i = 0; same && i < count; i++) {
		same = strcmp(recs[i].target, s->recs[i].target) == 0 &&
		       recs[i].port == s->recs[i].port &&
		       recs[i].weight == s->recs[i].weight;
	}
	if (same) {
		free(recs);
		return;
	}
	struct buf *changes = buf_new(256, DISCOVERY_CHANGES_MAX);
	srv_changes(s, recs, count, changes);
	log_notice("dns: %s: %zu backend%s%s%s%s", s->name, count,
		   count == 1 ? "" : "s", changes->len > 0 ? " (" : "",
		   buf_cstr(changes), changes->len > 0 ? ")" : "");
	buf_free(&changes);
	free(s->recs);
	s->recs = recs;
	s->count = count;
	s->answered = true;
	/* the new targets' addresses are asked for now, not at the rebuild */
	for (size_t i = 0; i < count; i++)
		host_label_srv(host_get(recs[i].target));
	discovery_changed("%s: %zu backend%s", s->name, count,
			  count == 1 ? "" : "s");
}

/* ---- following the configuration -------------------------------------- */

static void params_from(const struct proxy_settings *set, struct disc_params *p)
{
	memset(p, 0, sizeof(*p));
	(void)discovery_servers_text(set, p->servers, sizeof(p->servers));
	p->timeout_msecs = set->dns_timeout_msecs;
	p->retries = set->dns_retries;
	p->min_ttl_msecs = set->dns_min_ttl_msecs;
	p->max_ttl_msecs = set->dns_max_ttl_msecs;
}

static void watches_stop(void)
{
	for (size_t i = 0; i < disc.host_count; i++)
		dns_watch_free(&disc.hosts[i]->watch);
	for (size_t i = 0; i < disc.srv_count; i++)
		dns_watch_free(&disc.srvs[i]->watch);
}

static void resolver_restart(const struct disc_params *p)
{
	char err[DNS_ERROR_MAX];

	watches_stop();
	dns_resolver_free(&disc.resolver);
	disc.params = *p;
	disc.params_set = true;
	disc.resolver = dns_resolver_new(
	    disc.base, p->servers[0] != '\0' ? p->servers : NULL,
	    p->timeout_msecs, (unsigned int)p->retries, err, sizeof(err));
	if (disc.resolver == NULL)
		log_error("dns: %s: backend host names will not resolve", err);
}

/* The label of a host the config's backends use: "backend b1 (name)",
 * "backends b1, b2 (name)". */
static void host_label_config(struct disc_host *h,
			      const struct proxy_settings *set, size_t count)
{
	char names[DISCOVERY_LABEL_MAX];
	size_t n = 0, len = 0;

	names[0] = '\0';
	for (size_t i = 0; i < count; i++) {
		char norm[DNS_NAME_MAX + 1];
		if (!name_norm(set->backends[i].host, norm) ||
		    strcmp(norm, h->name) != 0)
			continue;
		msg_printf(names + len, sizeof(names) - len, "%s%s",
			   n > 0 ? ", " : "", set->backends[i].name);
		len = strlen(names);
		n++;
	}
	if (n > 0)
		msg_printf(h->label, sizeof(h->label), "backend%s %s (%s)",
			   n > 1 ? "s" : "", names, h->name);
}

/* Follows set's names: new ones are watched, gone ones freed. */
static void discovery_sync(const struct proxy_settings *set)
{
	struct disc_params p;
	char norm[DNS_NAME_MAX + 1];

	params_from(set, &p);
	if (!disc.params_set || memcmp(&p, &disc.params, sizeof(p)) != 0) {
		if (disc.params_set)
			log_notice(
			    "dns: resolver settings changed: asking again");
		resolver_restart(&p);
	}
	for (size_t i = 0; i < disc.host_count; i++) {
		disc.hosts[i]->keep = false;
		disc.hosts[i]->label[0] = '\0';
	}
	for (size_t i = 0; i < disc.srv_count; i++)
		disc.srvs[i]->keep = false;

	for (size_t i = 0; i < set->backend_srv.count; i++) {
		bool tls;
		int protocol =
		    discovery_srv_protocol(set->backend_srv.items[i], &tls);
		if (protocol < 0 || !name_norm(set->backend_srv.items[i], norm))
			continue; /* proxy_settings_check refuses these */
		struct disc_srv *s = srv_find(norm);
		if (s == NULL) {
			s = xcalloc(1, sizeof(*s));
			str_copy(str_cstr(norm), s->name, sizeof(s->name));
			s->protocol = protocol;
			s->tls = tls;
			disc.srvs = xreallocarray(disc.srvs, disc.srv_count + 1,
						  sizeof(*disc.srvs));
			disc.srvs[disc.srv_count++] = s;
		}
		s->keep = true;
	}
	for (size_t i = 0; i < set->backend_count; i++) {
		const char *host = set->backends[i].host;
		if (!discovery_is_host_name(host) || !name_norm(host, norm))
			continue;
		struct disc_host *h = host_get(norm);
		h->keep = true;
		if (h->label[0] == '\0')
			host_label_config(h, set, set->backend_count);
	}
	for (size_t i = 0; i < disc.srv_count; i++) {
		struct disc_srv *s = disc.srvs[i];
		if (!s->keep)
			continue;
		for (size_t j = 0; j < s->count; j++) {
			struct disc_host *h = host_get(s->recs[j].target);
			h->keep = true;
			host_label_srv(h);
		}
	}

	size_t n = 0;
	for (size_t i = 0; i < disc.host_count; i++) {
		if (disc.hosts[i]->keep)
			disc.hosts[n++] = disc.hosts[i];
		else
			host_free(&disc.hosts[i]);
	}
	disc.host_count = n;
	n = 0;
	for (size_t i = 0; i < disc.srv_count; i++) {
		if (disc.srvs[i]->keep)
			disc.srvs[n++] = disc.srvs[i];
		else
			srv_free(&disc.srvs[i]);
	}
	disc.srv_count = n;
	for (size_t i = 0; i < disc.host_count; i++)
		host_watch(disc.hosts[i]);
	for (size_t i = 0; i < disc.srv_count; i++)
		srv_watch(disc.srvs[i]);
}

/* ---- SRV records -> backend sections ------------------------------------ */

/* One backend to append: records of one target merged while they name
 * different protocols. */
struct disc_cand {
	const char *target;
	bool tls;
	uint16_t port[3]; /* by enum listener_protocol */
	uint16_t weight;
	char name[DIRECTOR_NAME_MAX + 16];
};

static void cand_add(struct disc_cand **cands, size_t *count,
		     const struct disc_srv *s, const struct disc_srv_rec *r)
{
	/* SRV weight 0 is "hardly ever" (RFC 2782), not "never": 1 */
	uint16_t weight = r->weight > 0 ? r->weight : 1;

	for (size_t i = 0; i < *count; i++) {
		struct disc_cand *c = &(*cands)[i];
		if (strcmp(c->target, r->target) != 0 || c->tls != s->tls)
			continue;
		if (c->port[s->protocol] != 0 &&
		    c->port[s->protocol] != r->port)
			continue;
		c->port[s->protocol] = r->port;
		if (weight > c->weight)
			c->weight = weight;
		return;
	}
	*cands = xreallocarray(*cands, *count + 1, sizeof(**cands));
	struct disc_cand *c = &(*cands)[(*count)++];
	memset(c, 0, sizeof(*c));
	c->target = r->target;
	c->tls = s->tls;
	c->port[s->protocol] = r->port;
	c->weight = weight;
}

static char *dup_setting(const char *s)
{
	return xstrdup(s != NULL ? s : "");
}

/* Appends c as a backend section with tpl's settings (strings copied:
 * each section owns its own, config_free frees them). */
static void append_backend(struct proxy_settings *set,
			   const struct backend_settings *tpl,
			   const struct disc_cand *c)
{
	set->backends = xreallocarray(set->backends, set->backend_count + 1,
				      sizeof(*set->backends));
	struct backend_settings *dst = &set->backends[set->backend_count++];
	*dst = *tpl;
	dst->name = xstrdup(c->name);
	dst->host = xstrdup(c->target);
	dst->tag = dup_setting(tpl->tag);
	dst->ssl_ca = dup_setting(tpl->ssl_ca);
	dst->ssl_host = dup_setting(tpl->ssl_host);
	dst->master_user = dup_setting(tpl->master_user);
	dst->master_password = dup_setting(tpl->master_password);
	if (c->port[LISTENER_IMAP] != 0)
		dst->imap_port = c->port[LISTENER_IMAP];
	if (c->port[LISTENER_POP3] != 0)
		dst->pop3_port = c->port[LISTENER_POP3];
	if (c->port[LISTENER_LMTP] != 0)
		dst->lmtp_port = c->port[LISTENER_LMTP];
	dst->weight = c->weight;
	if (c->tls)
		dst->ssl = BACKEND_SSL_YES;
}

static bool backend_name_taken(const struct proxy_settings *set,
			       const char *name)
{
	for (size_t i = 0; i < set->backend_count; i++) {
		if (strcmp(set->backends[i].name, name) == 0)
			return true;
	}
	return false;
}

static void append_srv_backends(struct proxy_settings *set)
{
	struct disc_cand *cands = NULL;
	size_t count = 0;
	char norm[DNS_NAME_MAX + 1];

	for (size_t i = 0; i < set->backend_srv.count; i++) {
		if (!name_norm(set->backend_srv.items[i], norm))
			continue;
		const struct disc_srv *s = srv_find(norm);
		if (s == NULL || !s->answered)
			continue;
		for (size_t j = 0; j < s->count; j++)
			cand_add(&cands, &count, s, &s->recs[j]);
	}
	if (count == 0)
		return;

	/* the template: director_backend_template, else the first backend,
	 * else the defaults (copied: appending moves set->backends) */
	struct backend_settings tpl, defaults;
	bool own_defaults = false;
	const struct backend_settings *found = NULL;
	for (size_t i = 0; i < set->backend_count; i++) {
		if (set->director_backend_template != NULL &&
		    strcmp(set->backends[i].name,
			   set->director_backend_template) == 0)
			found = &set->backends[i];
	}
	if (found == NULL && set->backend_count > 0)
		found = &set->backends[0];
	if (found == NULL) {
		proxy_settings_backend_defaults(&defaults);
		own_defaults = true;
		found = &defaults;
	}
	tpl = *found;

	for (size_t i = 0; i < count; i++) {
		struct disc_cand *c = &cands[i];
		size_t same = 0;
		for (size_t j = 0; j < count; j++)
			same += strcmp(cands[j].target, c->target) == 0;
		if (same == 1) {
			msg_printf(c->name, sizeof(c->name), "%s", c->target);
		} else {
			unsigned int port = c->port[LISTENER_IMAP] != 0
						? c->port[LISTENER_IMAP]
					    : c->port[LISTENER_POP3] != 0
						? c->port[LISTENER_POP3]
						: c->port[LISTENER_LMTP];
			msg_printf(c->name, sizeof(c->name), "%s:%u", c->target,
				   port);
		}
		if (strlen(c->name) >= DIRECTOR_NAME_MAX) {
			log_warnx(
			    "dns: SRV target %s: the backend name %s is longer "
			    "than %d bytes: left out",
			    c->target, c->name, DIRECTOR_NAME_MAX - 1);
			continue;
		}
		if (backend_name_taken(set, c->name)) {
			log_warnx(
			    "dns: SRV target %s: a backend named %s exists "
			    "already: left out",
			    c->target, c->name);
			continue;
		}
		append_backend(set, &tpl, c);
	}
	if (own_defaults)
		proxy_settings_backend_free(&defaults);
	free(cands);
}

/* ---- public ----------------------------------------------------------------
 */

void discovery_apply(struct proxy_settings *set)
{
	if (disc.base != NULL)
		discovery_sync(set);
	append_srv_backends(set);
}

bool discovery_addr(const char *host, struct net_addr *addr_r)
{
	char norm[DNS_NAME_MAX + 1];
	const struct disc_host *h;

	if (!name_norm(host, norm) || (h = host_find(norm)) == NULL ||
	    !h->resolved)
		return false;
	*addr_r = h->addr;
	return true;
}

void discovery_start(struct event_base *base)
{
	struct proxy_config *cfg;

	if (disc.base != NULL)
		return;
	disc.base = base;
	disc.settle = net_timer_new(base, settle_fire, NULL);
	cfg = proxy_config_ref();
	discovery_sync(&cfg->set);
	proxy_config_unref(&cfg);
}

void discovery_stop(void)
{
	watches_stop();
	for (size_t i = 0; i < disc.host_count; i++)
		host_free(&disc.hosts[i]);
	for (size_t i = 0; i < disc.srv_count; i++)
		srv_free(&disc.srvs[i]);
	free(disc.hosts);
	free(disc.srvs);
	dns_resolver_free(&disc.resolver);
	net_timer_free(&disc.settle);
	memset(&disc, 0, sizeof(disc));
}
