#ifndef MR_PROXY_DISCOVERY_H
#define MR_PROXY_DISCOVERY_H

/*
 * Backends from DNS, on the main thread's loop (ring/dns underneath):
 *
 *  - a backend whose `host` is a DNS name (not an IP address) gets the
 *    name's first address (A before AAAA), re-resolved when its TTL runs
 *    out (within dns_min_ttl..dns_max_ttl);
 *  - each name of `backend_srv` ("_imap._tcp.example.net") is asked for
 *    its SRV records, again by TTL; every record becomes a backend (named
 *    after its target) whose target name is resolved as above.
 *
 * When an answer changes what the proxy knows (a first address, another
 * address, a name that is gone, another SRV set), it asks for a
 * reconfigure (directing_request_reconfigure("DNS: ...")): the proxy
 * re-reads its config, discovery_apply() appends the SRV backends, and
 * proxy_config_build() takes each name's address from discovery_addr().
 * Changes within 200 ms make one reconfigure. docs/proxy.md ("DNS") has
 * the rules an admin sees.
 *
 * Threading: every function here runs on the main thread (start-up,
 * reconfigure, the main loop); nothing is locked.
 */

#include <stdbool.h>
#include <stddef.h>

#include "net.h"
#include "proxy_settings.h"

struct event_base;

/* Starts resolving on base with the current configuration's settings
 * (proxy_config_ref). Call once, after the first generation is installed. */
void discovery_start(struct event_base *base);
/* Stops every lookup and frees everything; before base is freed. */
void discovery_stop(void);

/* Fresh settings are about to be built (start-up or reconfigure): follows
 * their names (new ones are looked up, gone ones forgotten; a change of
 * dns_servers, dns_timeout, dns_retries or the TTL bounds restarts the
 * resolver) and appends one backend section per discovered SRV backend,
 * with the settings of director_backend_template (default: the first
 * backend; without any backend section, the defaults). Call after
 * directing_runtime_apply. */
void discovery_apply(struct proxy_settings *set);

/* The current address of host (a DNS name, any case, trailing dot or
 * not), port 0. False while it has not resolved (never asked, no answer
 * yet, or the name or its addresses are gone). */
bool discovery_addr(const char *host, struct net_addr *addr_r);

/* True when host is a name to resolve: not an IP address, a valid DNS
 * name (ring/dns.h dns_name_is_valid), and not all digits in its last
 * label (so a mistyped address such as 10.0.0.300 is an error, not a
 * name). */
bool discovery_is_host_name(const char *host);

/* The protocol an SRV name is about, from its first label: _imap and
 * _imaps give LISTENER_IMAP, _pop3 and _pop3s LISTENER_POP3, _lmtp
 * LISTENER_LMTP; *tls_r says the port speaks TLS at once (the "s").
 * -1 for any other label. */
int discovery_srv_protocol(const char *srv_name, bool *tls_r);

/* dns_servers as the text ring/dns parses ("a b c"). Returns 0, or -1
 * (dst is then "") when it does not fit. */
int discovery_servers_text(const struct proxy_settings *set, char *dst,
			   size_t dstsize);

#endif
