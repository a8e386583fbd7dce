/*
 * dnsq: looks a name up with ring/dns, for the integration tests.
 *
 *   dnsq [-s SERVERS] [-t MSECS] [-r RETRIES] [-w COUNT [-m MSECS]] [-v]
 *        addr|srv NAME
 *
 * Prints one line per record and exits 0:
 *   addr 127.0.0.5 ttl=30
 *   srv 10 60 1143 b1.example.net ttl=30
 * ("note partial" / "note capped" follow when the result says so), or one
 * line "error STATUS: MESSAGE" (STATUS from dns_status_name) and exits 1.
 * Usage errors exit 64.
 *
 * -s  servers as dns_servers_parse takes them (repeatable; default
 *     /etc/resolv.conf)
 * -t  per-try timeout in ms (default 2000); -r  extra rounds (default 1)
 * -w  watch: print COUNT results of a dns_watch, each ended by a line
 *     "end STATUS ttl=T msecs=M" (M: since start), then exit with the last
 *     result's code; -m its min_refresh_msecs (and error_retry_msecs)
 * -v  debug logging on stderr
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "net.h"
#include "ring/dns.h"
#include "str.h"

#define EX_USAGE 64
#define SERVERS_TEXT_MAX 1024

struct dnsq {
	struct event_base *base;
	struct dns_resolver *resolver;
	struct dns_query *query;
	struct dns_watch *watch;
	uint64_t started_msecs;
	uint64_t watch_count; /* results still to print; 0 = single lookup */
	int exit_code;
};

static void usage(void)
{
	fprintf(stderr, "usage: dnsq [-s servers] [-t msecs] [-r retries] "
			"[-w count [-m msecs]] [-v] addr|srv NAME\n");
}

static void print_result(const struct dns_result *res)
{
	char ip[NET_ADDR_STR_MAX];

	if (res->status != DNS_OK) {
		printf("error %s: %s\n", dns_status_name(res->status),
		       res->error != NULL ? res->error : "?");
		return;
	}
	for (size_t i = 0; i < res->count; i++) {
		const struct dns_record *rec = &res->records[i];
		if (rec->type == DNS_TYPE_SRV) {
			printf("srv %u %u %u %s ttl=%u\n",
			       (unsigned int)rec->srv.priority,
			       (unsigned int)rec->srv.weight,
			       (unsigned int)rec->srv.port, rec->srv.target,
			       (unsigned int)rec->ttl);
		} else {
			printf("addr %s ttl=%u\n",
			       net_addr_ip_str(&rec->addr, ip, sizeof(ip)),
			       (unsigned int)rec->ttl);
		}
	}
	if (res->partial)
		printf("note partial\n");
	if (res->capped)
		printf("note capped\n");
}

static void on_result(const struct dns_result *res, void *context)
{
	struct dnsq *d = context;

	d->query = NULL;
	print_result(res);
	d->exit_code = res->status == DNS_OK ? 0 : 1;
	if (d->watch_count > 0) {
		printf("end %s ttl=%u msecs=%llu\n",
		       dns_status_name(res->status), (unsigned int)res->ttl,
		       (unsigned long long)(net_monotonic_msecs() -
					    d->started_msecs));
		if (--d->watch_count == 0) {
			dns_watch_free(&d->watch);
			event_base_loopbreak(d->base);
		}
	}
	fflush(stdout);
}

static bool parse_u64(const char *text, uint64_t max, uint64_t *value_r)
{
	return str_to_u64(str_cstr(text), max, value_r);
}

int main(int argc, char **argv)
{
	struct dnsq d = {.exit_code = 1};
	char servers[SERVERS_TEXT_MAX] = "";
	size_t servers_len = 0;
	uint64_t timeout = 2000, retries = 1, watch = 0, min_refresh = 0;
	bool verbose = false;
	int c;

	while ((c = getopt(argc, argv, "s:t:r:w:m:v")) != -1) {
		switch (c) {
		case 's': {
			size_t len = strlen(optarg);
			if (servers_len + len + 2 > sizeof(servers)) {
				fprintf(stderr, "dnsq: -s: too many servers\n");
				return EX_USAGE;
			}
			if (servers_len > 0)
				servers[servers_len++] = ' ';
			memcpy(servers + servers_len, optarg, len + 1);
			servers_len += len;
			break;
		}
		case 't':
			if (!parse_u64(optarg, DNS_TIMEOUT_MAX_MSECS,
				       &timeout) ||
			    timeout == 0) {
				fprintf(stderr, "dnsq: -t: invalid timeout\n");
				return EX_USAGE;
			}
			break;
		case 'r':
			if (!parse_u64(optarg, DNS_RETRIES_MAX, &retries)) {
				fprintf(stderr, "dnsq: -r: invalid retries\n");
				return EX_USAGE;
			}
			break;
		case 'w':
			if (!parse_u64(optarg, 1000000, &watch) || watch == 0) {
				fprintf(stderr, "dnsq: -w: invalid count\n");
				return EX_USAGE;
			}
			break;
		case 'm':
			if (!parse_u64(optarg, 86400000, &min_refresh) ||
			    min_refresh == 0) {
				fprintf(stderr, "dnsq: -m: invalid msecs\n");
				return EX_USAGE;
			}
			break;
		case 'v':
			verbose = true;
			break;
		default:
			usage();
			return EX_USAGE;
		}
	}
	if (argc - optind != 2) {
		usage();
		return EX_USAGE;
	}
	const char *kind_text = argv[optind], *name = argv[optind + 1];
	enum dns_lookup_kind kind;
	if (strcmp(kind_text, "addr") == 0) {
		kind = DNS_LOOKUP_ADDR;
	} else if (strcmp(kind_text, "srv") == 0) {
		kind = DNS_LOOKUP_SRV;
	} else {
		usage();
		return EX_USAGE;
	}

	log_init("dnsq", verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARNING);
	log_set_timestamps(false);
	d.base = event_base_new();
	if (d.base == NULL) {
		fprintf(stderr, "dnsq: event_base_new() failed\n");
		return 1;
	}
	char err[DNS_ERROR_MAX];
	d.resolver =
	    dns_resolver_new(d.base, servers_len > 0 ? servers : NULL, timeout,
			     (unsigned int)retries, err, sizeof(err));
	if (d.resolver == NULL) {
		fprintf(stderr, "dnsq: %s\n", err);
		event_base_free(d.base);
		return EX_USAGE;
	}
	d.started_msecs = net_monotonic_msecs();
	if (watch > 0) {
		struct dns_watch_settings set = {
		    .min_refresh_msecs = min_refresh,
		    .error_retry_msecs = min_refresh,
		};
		d.watch_count = watch;
		d.watch =
		    dns_watch_new(d.resolver, kind, name, &set, on_result, &d);
	} else if (kind == DNS_LOOKUP_ADDR) {
		d.query = dns_lookup_addr(d.resolver, name, on_result, &d);
	} else {
		d.query = dns_lookup_srv(d.resolver, name, on_result, &d);
	}
	event_base_dispatch(d.base);
	dns_watch_free(&d.watch);
	dns_query_cancel(&d.query);
	dns_resolver_free(&d.resolver);
	event_base_free(d.base);
	return d.exit_code;
}
