/*
 * Backends from DNS (proxy/discovery.c) without a network: the file is
 * compiled into this test and its result callbacks are fed made-up
 * answers; the reconfigure hook and the config generation are stubs. What
 * the resolver itself does is ring/dns's (test_dns.c, test_dns.py); the
 * whole path against a real DNS server is test_dns_backends.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/discovery.c"

/* ---- stubs ------------------------------------------------------------------
 */

static unsigned int reconfigures;

void directing_request_reconfigure(const char *why)
{
	(void)why;
	reconfigures++;
}

struct proxy_config *proxy_config_ref(void)
{
	fail_msg("discovery_start is not used here");
	return NULL;
}

void proxy_config_unref(struct proxy_config **cfg)
{
	*cfg = NULL;
}

/* ---- helpers
 * ------------------------------------------------------------------ */

static void load(const char *text, struct proxy_settings *set)
{
	struct config_errors errors = {0};
	int ret = config_load_buffer(&proxy_settings_schema, "t.conf", text,
				     strlen(text), CONFIG_LOAD_NO_INCLUDE, set,
				     &errors);
	if (ret < 0)
		fail_msg("%s", errors.lines[0]);
	config_errors_free(&errors);
}

#define BASE_CONF                                                              \
	"passdb {\n args = /etc/passwd\n}\n"                                   \
	"listener imap {\n address = 127.0.0.1:143\n}\n"

static struct dns_record addr_rec(const char *ip, uint32_t ttl)
{
	struct dns_record r;
	const char *error;
	memset(&r, 0, sizeof(r));
	r.type = DNS_TYPE_A;
	r.ttl = ttl;
	assert_int_equal(
	    net_addr_parse(ip, NET_ADDR_PORT_OPTIONAL, &r.addr, &error), 0);
	return r;
}

static struct dns_record srv_rec(const char *target, uint16_t port,
				 uint16_t weight)
{
	struct dns_record r;
	memset(&r, 0, sizeof(r));
	r.type = DNS_TYPE_SRV;
	r.ttl = 30;
	r.srv.priority = 10;
	r.srv.port = port;
	r.srv.weight = weight;
	snprintf(r.srv.target, sizeof(r.srv.target), "%s", target);
	return r;
}

static void feed(dns_result_fn *cb, void *ctx, enum dns_status status,
		 const struct dns_record *recs, size_t count)
{
	struct dns_result res;
	memset(&res, 0, sizeof(res));
	res.status = status;
	res.error = status == DNS_OK ? NULL : "x.example.net: made-up failure";
	res.ttl = 30;
	res.count = count;
	res.records = recs;
	cb(&res, ctx);
}

/* An SRV name followed as discovery_sync would (without a resolver). */
static struct disc_srv *srv_add(const char *name)
{
	char norm[DNS_NAME_MAX + 1];
	struct disc_srv *s = xcalloc(1, sizeof(*s));
	assert_true(name_norm(name, norm));
	str_copy(str_cstr(norm), s->name, sizeof(s->name));
	s->protocol = discovery_srv_protocol(name, &s->tls);
	assert_true(s->protocol >= 0);
	disc.srvs =
	    xreallocarray(disc.srvs, disc.srv_count + 1, sizeof(*disc.srvs));
	disc.srvs[disc.srv_count++] = s;
	return s;
}

static const struct backend_settings *find(const struct proxy_settings *set,
					   const char *name)
{
	for (size_t i = 0; i < set->backend_count; i++) {
		if (strcmp(set->backends[i].name, name) == 0)
			return &set->backends[i];
	}
	fail_msg("no backend %s", name);
	return NULL;
}

static int teardown(void **state)
{
	(void)state;
	discovery_stop();
	reconfigures = 0;
	return 0;
}

/* ---- tests ------------------------------------------------------------------
 */

static void test_helpers(void **state)
{
	char text[64];
	bool tls = true;
	(void)state;

	assert_int_equal(discovery_srv_protocol("_imap._tcp.example.net", &tls),
			 LISTENER_IMAP);
	assert_false(tls);
	assert_int_equal(
	    discovery_srv_protocol("_IMAPS._tcp.example.net", &tls),
	    LISTENER_IMAP);
	assert_true(tls);
	assert_int_equal(discovery_srv_protocol("_pop3s._tcp.x", &tls),
			 LISTENER_POP3);
	assert_int_equal(discovery_srv_protocol("_lmtp._tcp.x", &tls),
			 LISTENER_LMTP);
	assert_int_equal(discovery_srv_protocol("_smtp._tcp.x", &tls), -1);
	assert_int_equal(discovery_srv_protocol("_imapx._tcp.x", &tls), -1);
	assert_int_equal(discovery_srv_protocol("_ima._tcp.x", &tls), -1);

	assert_true(discovery_is_host_name("mail1.example.net"));
	assert_true(discovery_is_host_name("Mail1.Example.NET."));
	assert_true(discovery_is_host_name("localhost"));
	assert_true(discovery_is_host_name("10.0.0.mail"));
	assert_false(discovery_is_host_name("10.0.0.5"));
	assert_false(discovery_is_host_name("::1"));
	assert_false(discovery_is_host_name("10.0.0.300"));
	assert_false(discovery_is_host_name("300"));
	assert_false(discovery_is_host_name("mail..example.net"));
	assert_false(discovery_is_host_name("mail1.example.net:143"));
	assert_false(discovery_is_host_name(""));

	struct proxy_settings set;
	load(BASE_CONF "dns_servers = 10.0.0.2, 10.0.0.3:5353\n"
		       "backend b1 {\n host = 10.0.0.1\n}\n",
	     &set);
	assert_int_equal(discovery_servers_text(&set, text, sizeof(text)), 0);
	assert_string_equal(text, "10.0.0.2 10.0.0.3:5353");
	assert_int_equal(discovery_servers_text(&set, text, 10), -1);
	assert_string_equal(text, "");
	config_free(&proxy_settings_schema, &set);
}

static void test_settings_check(void **state)
{
	struct proxy_settings set;
	char err[256];
	(void)state;

	load(BASE_CONF "backend b1 {\n host = mail1.example.net\n}\n", &set);
	assert_int_equal(proxy_settings_check(&set, err, sizeof(err)), 0);
	config_free(&proxy_settings_schema, &set);

	load(BASE_CONF "backend b1 {\n host = 10.0.0.300\n}\n", &set);
	assert_int_equal(proxy_settings_check(&set, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "backend b1: host '10.0.0.300'"));
	config_free(&proxy_settings_schema, &set);

	/* backend_srv alone is a backend list */
	load(BASE_CONF "backend_srv = _imap._tcp.example.net\n", &set);
	assert_int_equal(proxy_settings_check(&set, err, sizeof(err)), 0);
	config_free(&proxy_settings_schema, &set);

	load(BASE_CONF, &set);
	assert_int_equal(proxy_settings_check(&set, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no backend configured"));
	config_free(&proxy_settings_schema, &set);

	load(BASE_CONF "backend_srv = _smtp._tcp.example.net\n", &set);
	assert_int_equal(proxy_settings_check(&set, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "first label"));
	config_free(&proxy_settings_schema, &set);

	load(BASE_CONF "backend_srv = _imap..example.net\n", &set);
	assert_int_equal(proxy_settings_check(&set, err, sizeof(err)), -1);
	config_free(&proxy_settings_schema, &set);

	load(BASE_CONF "dns_servers = 10.0.0.2 nameserver.example.net\n"
		       "backend_srv = _imap._tcp.example.net\n",
	     &set);
	assert_int_equal(proxy_settings_check(&set, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "dns_servers"));
	config_free(&proxy_settings_schema, &set);

	load(BASE_CONF "dns_min_ttl = 1m\ndns_max_ttl = 30s\n"
		       "backend_srv = _imap._tcp.example.net\n",
	     &set);
	assert_int_equal(proxy_settings_check(&set, err, sizeof(err)), -1);
	config_free(&proxy_settings_schema, &set);
}

static void test_host_addresses(void **state)
{
	struct net_addr a;
	char ip[NET_ADDR_STR_MAX];
	(void)state;

	struct disc_host *h = host_get("mail1.example.net");
	msg_printf(h->label, sizeof(h->label), "backend b1 (%s)", h->name);
	assert_false(discovery_addr("mail1.example.net", &a));

	/* a timeout before any answer: still unresolved, no rebuild */
	feed(host_result, h, DNS_TIMEOUT, NULL, 0);
	assert_false(discovery_addr("mail1.example.net", &a));
	assert_int_equal(disc.reason[0], '\0');

	struct dns_record r1[] = {addr_rec("10.0.0.5", 30)};
	feed(host_result, h, DNS_OK, r1, 1);
	assert_true(discovery_addr("MAIL1.example.net.", &a));
	assert_string_equal(net_addr_ip_str(&a, ip, sizeof(ip)), "10.0.0.5");
	assert_string_equal(disc.reason,
			    "DNS: backend b1 (mail1.example.net) is 10.0.0.5");

	/* round robin: the current address is still there, so it stays */
	disc.reason[0] = '\0';
	struct dns_record r2[] = {addr_rec("10.0.0.6", 30),
				  addr_rec("10.0.0.5", 30)};
	feed(host_result, h, DNS_OK, r2, 2);
	assert_true(discovery_addr("mail1.example.net", &a));
	assert_string_equal(net_addr_ip_str(&a, ip, sizeof(ip)), "10.0.0.5");
	assert_int_equal(disc.reason[0], '\0');

	/* a timeout keeps it */
	feed(host_result, h, DNS_SERVFAIL, NULL, 0);
	assert_true(discovery_addr("mail1.example.net", &a));
	assert_int_equal(disc.reason[0], '\0');

	/* another address */
	struct dns_record r3[] = {addr_rec("10.0.0.7", 30)};
	feed(host_result, h, DNS_OK, r3, 1);
	assert_true(discovery_addr("mail1.example.net", &a));
	assert_string_equal(net_addr_ip_str(&a, ip, sizeof(ip)), "10.0.0.7");
	assert_non_null(strstr(disc.reason, "is 10.0.0.7"));

	/* gone: unresolved, and a rebuild */
	disc.reason[0] = '\0';
	feed(host_result, h, DNS_NXDOMAIN, NULL, 0);
	assert_false(discovery_addr("mail1.example.net", &a));
	assert_string_equal(disc.reason,
			    "DNS: backend b1 (mail1.example.net) no longer "
			    "resolves");
}

static void test_srv_backends(void **state)
{
	struct proxy_settings set;
	struct net_addr a;
	(void)state;

	struct disc_srv *imap = srv_add("_imap._tcp.backends.example.net");
	struct disc_srv *lmtp = srv_add("_LMTP._tcp.backends.example.net.");
	struct dns_record ri[] = {
	    srv_rec("mail1.example.net", 1143, 60),
	    srv_rec("Mail2.Example.net.", 1143, 0),
	    /* one target, two IMAP ports: two backends */
	    srv_rec("mail3.example.net", 143, 10),
	    srv_rec("mail3.example.net", 144, 10),
	    /* a duplicate: the highest weight stays */
	    srv_rec("mail1.example.net", 1143, 20),
	    /* the name of a configured backend */
	    srv_rec("b1", 143, 10),
	};
	feed(srv_result, imap, DNS_OK, ri, sizeof(ri) / sizeof(ri[0]));
	assert_int_equal(imap->count, 5);
	assert_non_null(
	    strstr(disc.reason, "backends.example.net: 5 backends"));
	/* the targets are being resolved */
	assert_non_null(host_find("mail2.example.net"));
	assert_false(discovery_addr("mail2.example.net", &a));
	struct dns_record rl[] = {srv_rec("mail1.example.net", 24, 5)};
	feed(srv_result, lmtp, DNS_OK, rl, 1);

	load(BASE_CONF
	     "backend_srv = _imap._tcp.backends.example.net "
	     "_lmtp._tcp.backends.example.net\n"
	     "director_backend_template = tpl\n"
	     "backend b1 {\n host = 10.0.0.1\n}\n"
	     "backend tpl {\n host = 10.0.0.2\n pop3_port = 0\n tag = pool\n"
	     " ssl = starttls\n ssl_ca = /etc/ca.pem\n master_user = m\n"
	     " master_password = secret\n}\n",
	     &set);
	discovery_apply(&set);
	assert_int_equal(set.backend_count, 2 + 4);

	const struct backend_settings *b = find(&set, "mail1.example.net");
	assert_string_equal(b->host, "mail1.example.net");
	assert_int_equal(b->imap_port, 1143);
	assert_int_equal(b->lmtp_port, 24); /* merged from _lmtp */
	assert_int_equal(b->pop3_port, 0);  /* the template's */
	assert_int_equal(b->weight, 60);
	assert_string_equal(b->tag, "pool");
	assert_int_equal(b->ssl, BACKEND_SSL_STARTTLS);
	assert_string_equal(b->ssl_ca, "/etc/ca.pem");
	assert_string_equal(b->master_user, "m");
	assert_string_equal(b->master_password, "secret");
	assert_ptr_not_equal(b->tag, find(&set, "tpl")->tag);

	b = find(&set, "mail2.example.net");
	assert_int_equal(b->weight, 1);     /* SRV weight 0 */
	assert_int_equal(b->lmtp_port, 24); /* the template's */
	b = find(&set, "mail3.example.net:143");
	assert_int_equal(b->imap_port, 143);
	b = find(&set, "mail3.example.net:144");
	assert_int_equal(b->imap_port, 144);
	assert_string_equal(b->host, "mail3.example.net");
	/* "b1" is taken by the configured backend: left out */
	assert_string_equal(find(&set, "b1")->host, "10.0.0.1");
	config_free(&proxy_settings_schema, &set);

	/* the same answer again: nothing to rebuild */
	disc.reason[0] = '\0';
	feed(srv_result, imap, DNS_OK, ri, sizeof(ri) / sizeof(ri[0]));
	assert_int_equal(disc.reason[0], '\0');
	/* a timeout keeps the set */
	feed(srv_result, imap, DNS_TIMEOUT, NULL, 0);
	assert_int_equal(imap->count, 5);
	assert_int_equal(disc.reason[0], '\0');
	/* NXDOMAIN empties it */
	feed(srv_result, imap, DNS_NXDOMAIN, NULL, 0);
	assert_int_equal(imap->count, 0);
	assert_non_null(strstr(disc.reason, "0 backends"));
}

static void test_srv_without_backend_sections(void **state)
{
	struct proxy_settings set;
	(void)state;

	struct disc_srv *s = srv_add("_imaps._tcp.example.net");
	struct dns_record r[] = {srv_rec("mail1.example.net", 993, 7)};
	feed(srv_result, s, DNS_OK, r, 1);

	load(BASE_CONF "backend_srv = _imaps._tcp.example.net\n", &set);
	discovery_apply(&set);
	assert_int_equal(set.backend_count, 1);
	const struct backend_settings *b = &set.backends[0];
	assert_string_equal(b->name, "mail1.example.net");
	assert_int_equal(b->imap_port, 993);
	assert_int_equal(b->pop3_port, 110); /* the defaults */
	assert_int_equal(b->ssl, BACKEND_SSL_YES);
	assert_true(b->ssl_verify);
	assert_int_equal(b->weight, 7);
	config_free(&proxy_settings_schema, &set);

	/* an SRV name no longer configured adds nothing */
	load(BASE_CONF "backend b1 {\n host = 10.0.0.1\n}\n", &set);
	discovery_apply(&set);
	assert_int_equal(set.backend_count, 1);
	config_free(&proxy_settings_schema, &set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_helpers, teardown),
	    cmocka_unit_test_teardown(test_settings_check, teardown),
	    cmocka_unit_test_teardown(test_host_addresses, teardown),
	    cmocka_unit_test_teardown(test_srv_backends, teardown),
	    cmocka_unit_test_teardown(test_srv_without_backend_sections,
				      teardown),
	};
	log_init("test_discovery", LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
