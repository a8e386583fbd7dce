#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "netmask.h"
#include "str.h"
#include "xmalloc.h"

/* ---- the test schema ---- */

struct t_tls {
	bool enabled;
	char *cert;
};

struct t_backend {
	char *name;
	char *host;
	uint64_t port;
	struct config_strlist protocols;
	struct t_tls tls;
};

struct t_limits {
	uint64_t max_line;
	uint64_t login_timeout_msecs;
};

struct t_set {
	char *greeting;
	bool verbose;
	uint64_t workers;
	uint64_t max_connections;
	uint64_t max_size;
	uint64_t idle_timeout_msecs;
	unsigned int ssl;
	struct config_strlist protocols;
	struct config_nets trusted_networks;
	struct t_limits limits;
	struct t_backend *backends;
	size_t backends_count;
};

enum t_ssl { T_SSL_NO = 0, T_SSL_YES, T_SSL_REQUIRED };
static const char *const t_ssl_values[] = {"no", "yes", "required", NULL};

static const struct config_def t_tls_defs[] = {
    CONFIG_DEF_BOOL(struct t_tls, "enabled", enabled, "no",
		    "use TLS to the backend"),
    CONFIG_DEF_STRING(struct t_tls, "cert", cert, NULL, "CA file"),
    CONFIG_DEF_END};
static const struct config_section t_tls_section =
    CONFIG_SECTION(struct t_tls, t_tls_defs);

static const struct config_def t_backend_defs[] = {
    CONFIG_DEF_STRING(struct t_backend, "host", host, NULL, "address"),
    CONFIG_DEF_UINT(struct t_backend, "port", port, "143", 1, 65535,
		    "TCP port"),
    CONFIG_DEF_LIST(struct t_backend, "protocols", protocols, NULL,
		    "protocols served"),
    CONFIG_DEF_BLOCK(struct t_backend, "tls", tls, &t_tls_section,
		     "TLS to the backend"),
    CONFIG_DEF_END};
static const struct config_section t_backend_section =
    CONFIG_SECTION_NAMED(struct t_backend, name, t_backend_defs);

static const struct config_def t_limits_defs[] = {
    CONFIG_DEF_SIZE(struct t_limits, "max_line", max_line, "8k", 512,
		    1024 * 1024, "longest command line"),
    CONFIG_DEF_DURATION(struct t_limits, "login_timeout", login_timeout_msecs,
			"1m", 1000, 0, "time to log in"),
    CONFIG_DEF_END};
static const struct config_section t_limits_section =
    CONFIG_SECTION(struct t_limits, t_limits_defs);

static const struct config_def t_defs[] = {
    CONFIG_DEF_STRING(struct t_set, "greeting", greeting, "mailring ready",
		      "banner text"),
    CONFIG_DEF_BOOL(struct t_set, "verbose", verbose, "no", "more logs"),
    CONFIG_DEF_UINT(struct t_set, "workers", workers, "4", 1, 1024,
		    "worker threads"),
    CONFIG_DEF_UINT(struct t_set, "max_connections", max_connections, NULL, 0,
		    0, "0 = unlimited"),
    CONFIG_DEF_SIZE(struct t_set, "max_size", max_size, "64k", 0, 0,
		    "largest message"),
    CONFIG_DEF_DURATION(struct t_set, "idle_timeout", idle_timeout_msecs, "30m",
			0, 0, "idle client timeout"),
    CONFIG_DEF_ENUM(struct t_set, "ssl", ssl, "yes", t_ssl_values,
		    "TLS policy"),
    CONFIG_DEF_LIST(struct t_set, "protocols", protocols, "imap pop3",
		    "protocols to serve"),
    CONFIG_DEF_NETS(struct t_set, "trusted_networks", trusted_networks,
		    "127.0.0.0/8 ::1", "may send XCLIENT"),
    CONFIG_DEF_BLOCK(struct t_set, "limits", limits, &t_limits_section,
		     "protocol limits"),
    CONFIG_DEF_SECTIONS(struct t_set, "backend", backends, backends_count,
			&t_backend_section, "mail backends"),
    CONFIG_DEF_END};
static const struct config_section t_schema =
    CONFIG_SECTION(struct t_set, t_defs);

/* ---- helpers ---- */

static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	(void)state;
	str_copy(STR("/tmp/test_config.XXXXXX"), tmpdir, sizeof(tmpdir));
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes content to tmpdir/rel (creating one directory level) and returns
 * the full path in a static buffer of 4 rotating slots. */
static const char *write_file(const char *rel, const char *content)
{
	static char paths[4][256];
	static int slot;
	char *path = paths[slot++ % 4];

	assert_true(str_printf(path, 256, "%s/%s", tmpdir, rel) > 0);
	char *slash = strrchr(path, '/');
	*slash = '\0';
	mkdir(path, 0700);
	*slash = '/';
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(content, 1, strlen(content), fp),
			 strlen(content));
	fclose(fp);
	return path;
}

static const char *tpath(const char *rel)
{
	static char paths[4][256];
	static int slot;
	char *path = paths[slot++ % 4];
	assert_true(str_printf(path, 256, "%s/%s", tmpdir, rel) > 0);
	return path;
}

/* Loads text from a buffer named "t.conf"; expects success. */
static void load_ok(const char *text, struct t_set *set)
{
	struct config_errors errors;
	int ret = config_load_buffer(&t_schema, "t.conf", text, strlen(text),
				     CONFIG_LOAD_NO_INCLUDE, set, &errors);
	for (size_t i = 0; i < errors.count; i++)
		fprintf(stderr, "unexpected: %s\n", errors.lines[i]);
	assert_int_equal(ret, 0);
	assert_int_equal(errors.count, 0);
	config_errors_free(&errors);
}

/* Loads text from a buffer named "t.conf"; expects failure with exactly
 * the given first error. */
static void load_err(const char *text, const char *want)
{
	struct config_errors errors;
	struct t_set set;

	memset(&set, 0xa5, sizeof(set));
	int ret = config_load_buffer(&t_schema, "t.conf", text, strlen(text),
				     CONFIG_LOAD_NO_INCLUDE, &set, &errors);
	assert_int_equal(ret, -1);
	assert_true(errors.count >= 1);
	if (strcmp(errors.lines[0], want) != 0)
		fprintf(stderr, "input: %s\n", text);
	assert_string_equal(errors.lines[0], want);
	/* a failed load leaves nothing behind */
	struct t_set zero;
	memset(&zero, 0, sizeof(zero));
	assert_memory_equal(&set, &zero, sizeof(set));
	config_errors_free(&errors);
	assert_int_equal(errors.count, 0);
	assert_null(errors.lines);
}

/* Loads a file; expects failure whose error list contains want. */
static void file_err(const char *path, const char *want)
{
	struct config_errors errors;
	struct t_set set;
	bool found = false;

	assert_int_equal(config_load_file(&t_schema, path, &set, &errors), -1);
	for (size_t i = 0; i < errors.count; i++) {
		if (strcmp(errors.lines[i], want) == 0)
			found = true;
	}
	if (!found) {
		fprintf(stderr, "wanted: %s\n", want);
		for (size_t i = 0; i < errors.count; i++)
			fprintf(stderr, "got:    %s\n", errors.lines[i]);
	}
	assert_true(found);
	config_errors_free(&errors);
}

static char *print_to_string(const struct t_set *set, bool all)
{
	char *data = NULL;
	size_t size = 0;
	FILE *fp = open_memstream(&data, &size);
	assert_non_null(fp);
	if (all)
		config_print_all(&t_schema, set, fp);
	else
		config_print_nondefault(&t_schema, set, fp);
	fclose(fp);
	return data;
}

static struct sockaddr_in sa4(const char *addr)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, addr, &sin.sin_addr), 1);
	return sin;
}

static struct sockaddr_in6 sa6(const char *addr)
{
	struct sockaddr_in6 sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, addr, &sin.sin6_addr), 1);
	return sin;
}

#define SA(x) ((const struct sockaddr *)&(x))

/* ---- tests: values ---- */

static void test_defaults(void **state)
{
	struct config_errors errors;
	struct t_set set;
	(void)state;

	assert_int_equal(config_load_defaults(&t_schema, &set, &errors), 0);
	assert_string_equal(set.greeting, "mailring ready");
	assert_false(set.verbose);
	assert_int_equal(set.workers, 4);
	assert_int_equal(set.max_connections, 0);
	assert_int_equal(set.max_size, 65536);
	assert_int_equal(set.idle_timeout_msecs, 30 * 60 * 1000);
	assert_int_equal(set.ssl, T_SSL_YES);
	assert_int_equal(set.protocols.count, 2);
	assert_string_equal(set.protocols.items[0], "imap");
	assert_string_equal(set.protocols.items[1], "pop3");
	assert_int_equal(set.trusted_networks.count, 2);
	assert_int_equal(set.limits.max_line, 8192);
	assert_int_equal(set.limits.login_timeout_msecs, 60000);
	assert_int_equal(set.backends_count, 0);
	assert_null(set.backends);
	config_free(&t_schema, &set);
	assert_null(set.greeting);
	config_errors_free(&errors);

	/* an empty file gives the defaults too; so do blank/comment lines */
	load_ok("", &set);
	assert_string_equal(set.greeting, "mailring ready");
	config_free(&t_schema, &set);
	load_ok("\n\n   \n# just a comment\n\t# indented comment\n", &set);
	assert_int_equal(set.workers, 4);
	config_free(&t_schema, &set);
}

static void test_all_types(void **state)
{
	struct t_set set;
	(void)state;

	load_ok("greeting = Hello there   \n"
		"verbose = yes\n"
		"workers=16\n"
		"max_connections = 18446744073709551615\n"
		"max_size = 2G\n"
		"idle_timeout = 250ms\n"
		"ssl = Required\n"
		"protocols = imap, lmtp\tpop3 ,\"sub mission\"\n"
		"trusted_networks = 10.0.0.0/8, 192.168.1.7 fd00::/8\n"
		"limits {\n"
		"  max_line = 1M\n"
		"  login_timeout = 2h\n"
		"}\n",
		&set);
	assert_string_equal(set.greeting, "Hello there");
	assert_true(set.verbose);
	assert_int_equal(set.workers, 16);
	assert_true(set.max_connections == UINT64_MAX);
	assert_true(set.max_size == 2ULL << 30);
	assert_int_equal(set.idle_timeout_msecs, 250);
	assert_int_equal(set.ssl, T_SSL_REQUIRED);
	assert_int_equal(set.protocols.count, 4);
	assert_string_equal(set.protocols.items[0], "imap");
	assert_string_equal(set.protocols.items[1], "lmtp");
	assert_string_equal(set.protocols.items[2], "pop3");
	assert_string_equal(set.protocols.items[3], "sub mission");
	assert_int_equal(set.trusted_networks.count, 3);
	assert_int_equal(set.limits.max_line, 1024 * 1024);
	assert_int_equal(set.limits.login_timeout_msecs, 2 * 3600 * 1000);

	struct sockaddr_in a = sa4("10.200.3.4"), b = sa4("192.168.1.7"),
			   c = sa4("192.168.1.8");
	struct sockaddr_in6 d = sa6("fd12::1"), e = sa6("::ffff:10.1.1.1"),
			    f = sa6("::1");
	assert_true(config_nets_match(&set.trusted_networks, SA(a)));
	assert_true(config_nets_match(&set.trusted_networks, SA(b)));
	assert_false(config_nets_match(&set.trusted_networks, SA(c)));
	assert_true(config_nets_match(&set.trusted_networks, SA(d)));
	assert_true(config_nets_match(&set.trusted_networks, SA(e)));
	assert_false(config_nets_match(&set.trusted_networks, SA(f)));
	config_free(&t_schema, &set);

	/* an empty value: empty string, empty list */
	load_ok("greeting =\nprotocols =\ntrusted_networks=\n", &set);
	assert_string_equal(set.greeting, "");
	assert_int_equal(set.protocols.count, 0);
	assert_int_equal(set.trusted_networks.count, 0);
	assert_false(config_nets_match(&set.trusted_networks, SA(a)));
	config_free(&t_schema, &set);
}

static void test_bool(void **state)
{
	static const struct {
		const char *text;
		bool value;
	} good[] = {
	    {"yes", true}, {"no", false},    {"true", true}, {"false", false},
	    {"on", true},  {"off", false},   {"1", true},    {"0", false},
	    {"YES", true}, {"\"on\"", true},
	};
	struct t_set set;
	char text[64];
	(void)state;

	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
		str_printf(text, sizeof(text), "verbose = %s\n", good[i].text);
		load_ok(text, &set);
		assert_int_equal(set.verbose, good[i].value);
		config_free(&t_schema, &set);
	}
	load_err("verbose = maybe\n",
		 "t.conf:1: invalid boolean 'maybe' for 'verbose': expected "
		 "yes/no, true/false, on/off or 1/0");
	load_err("verbose =\n", "t.conf:1: invalid boolean '' for 'verbose': "
				"expected yes/no, true/false, on/off or 1/0");
	load_err("verbose = 2\n", "t.conf:1: invalid boolean '2' for "
				  "'verbose': expected yes/no, true/false, "
				  "on/off or 1/0");
}

static void test_uint(void **state)
{
	struct t_set set;
	(void)state;

	load_ok("workers = 1\nmax_connections = 0\n", &set);
	assert_int_equal(set.workers, 1);
	config_free(&t_schema, &set);
	load_ok("workers = 1024\n", &set);
	assert_int_equal(set.workers, 1024);
	config_free(&t_schema, &set);

	load_err("max_connections = 18446744073709551616\n",
		 "t.conf:1: invalid number '18446744073709551616' for "
		 "'max_connections': number too large");
	load_err("max_connections = -1\n",
		 "t.conf:1: invalid number '-1' for 'max_connections': "
		 "negative values are not allowed");
	load_err("max_connections = 12abc\n",
		 "t.conf:1: invalid number '12abc' for 'max_connections': not "
		 "a number");
	load_err("max_connections = 1.5\n",
		 "t.conf:1: invalid number '1.5' for 'max_connections': "
		 "fractions are not allowed");
	load_err("max_connections = +1\n",
		 "t.conf:1: invalid number '+1' for 'max_connections': not a "
		 "number");
	load_err("max_connections =\n",
		 "t.conf:1: invalid number '' for 'max_connections': not a "
		 "number");
	load_err("workers = 0\n", "t.conf:1: invalid number '0' for "
				  "'workers': must be at least 1");
	load_err("workers = 1025\n", "t.conf:1: invalid number '1025' for "
				     "'workers': must be at most 1024");
}

static void test_size(void **state)
{
	static const struct {
		const char *text;
		uint64_t value;
	} good[] = {
	    {"0", 0},
	    {"512", 512},
	    {"512b", 512},
	    {"512B", 512},
	    {"64k", 65536},
	    {"64K", 65536},
	    {"1kb", 1024},
	    {"1 KB", 1024},
	    {"1M", 1048576},
	    {"1mb", 1048576},
	    {"2G", 2147483648ULL},
	    {"3gb", 3221225472ULL},
	    {"1T", 1099511627776ULL},
	    {"16777215T", 16777215ULL << 40},
	    {"18446744073709551615", UINT64_MAX},
	    {"\"10k\"", 10240},
	};
	struct t_set set;
	char text[96];
	(void)state;

	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
		str_printf(text, sizeof(text), "max_size = %s\n", good[i].text);
		load_ok(text, &set);
		assert_true(set.max_size == good[i].value);
		config_free(&t_schema, &set);
	}
	load_err("max_size = 12x\n", "t.conf:1: invalid size '12x' for "
				     "'max_size': unknown unit 'x'");
	load_err("max_size = 99999999999G\n",
		 "t.conf:1: invalid size '99999999999G' for 'max_size': value "
		 "too large");
	load_err("max_size = 16777216T\n",
		 "t.conf:1: invalid size '16777216T' for 'max_size': value "
		 "too large");
	load_err("max_size = 18446744073709551616\n",
		 "t.conf:1: invalid size '18446744073709551616' for "
		 "'max_size': number too large");
	load_err("max_size = 1.5k\n", "t.conf:1: invalid size '1.5k' for "
				      "'max_size': fractions are not allowed");
	load_err("max_size = -1\n", "t.conf:1: invalid size '-1' for "
				    "'max_size': negative values are not "
				    "allowed");
	load_err("max_size = k\n", "t.conf:1: invalid size 'k' for "
				   "'max_size': not a number");
	load_err("max_size = 1kk\n", "t.conf:1: invalid size '1kk' for "
				     "'max_size': unknown unit 'kk'");
	load_err("max_size = 1KiB\n", "t.conf:1: invalid size '1KiB' for "
				      "'max_size': unknown unit 'KiB'");
	/* range of a nested setting, shown in the setting's unit */
	load_err("limits {\nmax_line = 2M\n}\n",
		 "t.conf:2: invalid size '2M' for 'max_line': must be at most "
		 "1M");
	load_err("limits {\nmax_line = 100\n}\n",
		 "t.conf:2: invalid size '100' for 'max_line': must be at "
		 "least 512");
}

static void test_duration(void **state)
{
	static const struct {
		const char *text;
		uint64_t msecs;
	} good[] = {
	    {"0", 0},
	    {"10", 10000},
	    {"250ms", 250},
	    {"30s", 30000},
	    {"30 secs", 30000},
	    {"15m", 900000},
	    {"15 mins", 900000},
	    {"2h", 7200000},
	    {"2 hours", 7200000},
	    {"1d", 86400000},
	    {"1D", 86400000},
	    {"1w", 604800000},
	    {"18446744073709551615ms", UINT64_MAX},
	};
	struct t_set set;
	char text[96];
	(void)state;

	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
		str_printf(text, sizeof(text), "idle_timeout = %s\n",
			   good[i].text);
		load_ok(text, &set);
		assert_true(set.idle_timeout_msecs == good[i].msecs);
		config_free(&t_schema, &set);
	}
	load_err("idle_timeout = 5x\n", "t.conf:1: invalid duration '5x' for "
					"'idle_timeout': unknown unit 'x'");
	load_err("idle_timeout = 1.5s\n",
		 "t.conf:1: invalid duration '1.5s' for 'idle_timeout': "
		 "fractions are not allowed");
	load_err("idle_timeout = -1\n",
		 "t.conf:1: invalid duration '-1' for 'idle_timeout': "
		 "negative values are not allowed");
	load_err("idle_timeout = 18446744073709551615\n",
		 "t.conf:1: invalid duration '18446744073709551615' for "
		 "'idle_timeout': value too large");
	load_err("idle_timeout = 213503982335d\n",
		 "t.conf:1: invalid duration '213503982335d' for "
		 "'idle_timeout': value too large");
	load_err("limits {\nlogin_timeout = 500ms\n}\n",
		 "t.conf:2: invalid duration '500ms' for 'login_timeout': "
		 "must be at least 1s");
}

static void test_enum_list_nets(void **state)
{
	struct t_set set;
	(void)state;

	load_ok("ssl = no\n", &set);
	assert_int_equal(set.ssl, T_SSL_NO);
	config_free(&t_schema, &set);
	load_err("ssl = maybe\n", "t.conf:1: invalid value 'maybe' for 'ssl': "
				  "expected one of: no, yes, required");
	load_err("ssl = yes no\n", "t.conf:1: invalid value 'yes no' for "
				   "'ssl': expected one of: no, yes, "
				   "required");

	load_err("protocols = imap p\"op3\"\n",
		 "t.conf:1: invalid list 'imap p\"op3\"' for 'protocols': "
		 "unexpected '\"' inside an item");
	load_err("protocols = \"imap\"pop3\n",
		 "t.conf:1: invalid list '\"imap\"pop3' for 'protocols': "
		 "unexpected text after the closing quote");

	load_err("trusted_networks = 10.0.0.0/33\n",
		 "t.conf:1: invalid network '10.0.0.0/33' for "
		 "'trusted_networks': '10.0.0.0/33': invalid prefix length "
		 "(0-32)");
	load_err("trusted_networks = ::1 fe80::/129\n",
		 "t.conf:1: invalid network '::1 fe80::/129' for "
		 "'trusted_networks': 'fe80::/129': invalid prefix length "
		 "(0-128)");
	load_err("trusted_networks = 300.1.1.1\n",
		 "t.conf:1: invalid network '300.1.1.1' for "
		 "'trusted_networks': '300.1.1.1': invalid address");
	load_err("trusted_networks = 10.0.0.0/\n",
		 "t.conf:1: invalid network '10.0.0.0/' for "
		 "'trusted_networks': '10.0.0.0/': invalid prefix length "
		 "(0-32)");
	load_err("trusted_networks = localhost\n",
		 "t.conf:1: invalid network 'localhost' for "
		 "'trusted_networks': 'localhost': invalid address");
}

static void test_netmask(void **state)
{
	struct netmask net;
	const char *error;
	char text[NETMASK_STRLEN];
	(void)state;

	assert_int_equal(netmask_parse("10.1.2.3/8", &net, &error), 0);
	assert_string_equal(netmask_format(&net, text, sizeof(text)),
			    "10.0.0.0/8");
	struct sockaddr_in in = sa4("10.255.0.1"), out = sa4("11.0.0.1");
	assert_true(netmask_match(&net, SA(in)));
	assert_false(netmask_match(&net, SA(out)));
	struct sockaddr_in6 mapped = sa6("::ffff:10.9.9.9");
	assert_true(netmask_match(&net, SA(mapped)));
	struct sockaddr_in6 v6 = sa6("2001:db8::1");
	assert_false(netmask_match(&net, SA(v6)));
	assert_false(netmask_match(&net, NULL));

	assert_int_equal(netmask_parse("0.0.0.0/0", &net, &error), 0);
	assert_true(netmask_match(&net, SA(out)));
	assert_int_equal(netmask_parse("10.0.0.1", &net, &error), 0);
	assert_string_equal(netmask_format(&net, text, sizeof(text)),
			    "10.0.0.1");
	assert_int_equal(netmask_parse("2001:db8::/33", &net, &error), 0);
	assert_true(netmask_match(&net, SA(v6)));
	assert_string_equal(netmask_format(&net, text, sizeof(text)),
			    "2001:db8::/33");
	/* an IPv6 mapped network matches plain IPv4 peers */
	assert_int_equal(netmask_parse("::ffff:10.0.0.0/104", &net, &error), 0);
	assert_true(netmask_match(&net, SA(in)));
	assert_false(netmask_match(&net, SA(out)));

	assert_int_equal(netmask_parse("", &net, &error), -1);
	assert_int_equal(netmask_parse("1.2.3", &net, &error), -1);
	assert_int_equal(netmask_parse("1.2.3.4/-1", &net, &error), -1);
	assert_int_equal(netmask_parse("1.2.3.4/8/8", &net, &error), -1);
	assert_int_equal(netmask_parse("fe80::1%eth0", &net, &error), -1);
	assert_string_equal(error, "invalid address");
}

static void test_quotes_comments(void **state)
{
	struct t_set set;
	(void)state;

	load_ok("greeting = \"Hello \\\"world\\\" \\\\ # not a comment\"\n",
		&set);
	assert_string_equal(set.greeting, "Hello \"world\" \\ # not a comment");
	config_free(&t_schema, &set);
	load_ok("greeting = \"  padded  \"   # trailing comment\n", &set);
	assert_string_equal(set.greeting, "  padded  ");
	config_free(&t_schema, &set);
	load_ok("greeting = hello # comment \"with quote\n", &set);
	assert_string_equal(set.greeting, "hello");
	config_free(&t_schema, &set);
	load_ok("greeting = a#b\n", &set);
	assert_string_equal(set.greeting, "a");
	config_free(&t_schema, &set);
	load_ok("greeting = back\\slash\n", &set);
	assert_string_equal(set.greeting, "back\\slash");
	config_free(&t_schema, &set);
	load_ok("greeting = \"\"\n", &set);
	assert_string_equal(set.greeting, "");
	config_free(&t_schema, &set);
	load_ok("# greeting = x\n  greeting = y # x = z\r\n", &set);
	assert_string_equal(set.greeting, "y");
	config_free(&t_schema, &set);

	load_err("greeting = \"abc\n", "t.conf:1: unterminated quoted string");
	load_err("workers = 2\ngreeting = \"abc\\\"\n",
		 "t.conf:2: unterminated quoted string");
	load_err("greeting = \"a\\nb\"\n",
		 "t.conf:1: invalid string '\"a\\x5cnb\"' for 'greeting': "
		 "invalid escape '\\n' (only \\\" and \\\\ are allowed)");
	load_err("greeting = \"a\" b\n",
		 "t.conf:1: invalid string '\"a\" b' for 'greeting': "
		 "unexpected text after the closing quote");
	load_err("greeting = a \"b\"\n",
		 "t.conf:1: invalid string 'a \"b\"' for 'greeting': "
		 "unexpected '\"' (quote the whole value)");
}

/* ---- tests: structure ---- */

static void test_sections(void **state)
{
	struct t_set set;
	(void)state;

	load_ok("backend b1 {\n"
		"  host = 10.0.0.1\n"
		"  tls {\n"
		"    enabled = yes\n"
		"    cert = /etc/ssl/ca.pem\n"
		"  }\n"
		"}\n"
		"backend \"b 2\" {\n"
		"  port = 993\n"
		"  protocols = imap\n"
		"}\n"
		"backend b3{\n"
		"}\n"
		"workers = 2\n",
		&set);
	assert_int_equal(set.backends_count, 3);
	assert_string_equal(set.backends[0].name, "b1");
	assert_string_equal(set.backends[0].host, "10.0.0.1");
	assert_int_equal(set.backends[0].port, 143);
	assert_true(set.backends[0].tls.enabled);
	assert_string_equal(set.backends[0].tls.cert, "/etc/ssl/ca.pem");
	assert_int_equal(set.backends[0].protocols.count, 0);
	assert_string_equal(set.backends[1].name, "b 2");
	assert_string_equal(set.backends[1].host, "");
	assert_int_equal(set.backends[1].port, 993);
	assert_false(set.backends[1].tls.enabled);
	assert_string_equal(set.backends[1].tls.cert, "");
	assert_int_equal(set.backends[1].protocols.count, 1);
	assert_string_equal(set.backends[2].name, "b3");
	assert_int_equal(set.backends[2].port, 143);
	assert_int_equal(set.workers, 2);
	config_free(&t_schema, &set);
	assert_null(set.backends);
	assert_int_equal(set.backends_count, 0);

	/* the same key in different blocks is no duplicate */
	load_ok("protocols = imap\nbackend a {\nprotocols = pop3\n}\n", &set);
	assert_string_equal(set.protocols.items[0], "imap");
	assert_string_equal(set.backends[0].protocols.items[0], "pop3");
	config_free(&t_schema, &set);
}

static void test_structure_errors(void **state)
{
	(void)state;

	load_err("workers = 2\n\nfoo = 1\n", "t.conf:3: unknown setting 'foo'");
	load_err("workerz = 2\n",
		 "t.conf:1: unknown setting 'workerz' (did you mean "
		 "'workers'?)");
	load_err("backend b1 {\nhots = x\n}\n",
		 "t.conf:2: unknown setting 'hots' (did you mean 'host'?)");
	load_err("workers = 2\nworkers = 3\n",
		 "t.conf:2: duplicate setting 'workers' (first set at "
		 "t.conf:1)");
	load_err("bakend b1 {\n  foo = 1\n  bar {\n  }\n}\nworkers = 0\n",
		 "t.conf:1: unknown section 'bakend' (did you mean "
		 "'backend'?)");
	load_err("nothing {\n}\n", "t.conf:1: unknown section 'nothing'");
	load_err("backend b1 {\n}\nbackend b1 {\n}\n",
		 "t.conf:3: duplicate section 'backend b1'");
	load_err("backend {\n}\n", "t.conf:1: section 'backend' needs a name");
	load_err("backend \"\" {\n}\n",
		 "t.conf:1: section 'backend' needs a name");
	load_err("limits x {\n}\n",
		 "t.conf:1: section 'limits' does not take a name");
	load_err("limits {\n}\nlimits {\n}\n",
		 "t.conf:3: duplicate section 'limits' (first at t.conf:1)");
	load_err("backend = x\n",
		 "t.conf:1: 'backend' is a section, not a setting");
	load_err("workers {\n}\n",
		 "t.conf:1: 'workers' is a setting, not a section");
	load_err("workers = 1\nbackend b1 {\n  host = x\n",
		 "t.conf:2: missing '}' for section 'backend b1'");
	load_err("backend b1 {\n  tls {\n}\n",
		 "t.conf:1: missing '}' for section 'backend b1'");
	load_err("}\n", "t.conf:1: unexpected '}' (no section is open)");
	load_err("limits {\n} x\n", "t.conf:2: unexpected text after '}'");
	load_err("limits { max_line = 1k }\n",
		 "t.conf:1: unexpected text after '{' (put settings on their "
		 "own lines)");
	load_err("workers 5\n", "t.conf:1: expected '=' or '{' after "
				"'workers'");
	load_err("workers\n", "t.conf:1: expected '=' or '{' after 'workers'");
	load_err("= 5\n", "t.conf:1: syntax error at '= 5': expected 'key = "
			  "value', 'section [name] {' or '}'");
	load_err("!foo bar\n", "t.conf:1: unknown directive '!foo'");
	load_err("!include x.conf\n", "t.conf:1: !include is not allowed here");
	load_err("greeting = a\x01"
		 "b\n",
		 "t.conf:1: control character in line");
	load_err("workers = 1\nx\n", "t.conf:2: expected '=' or '{' after 'x'");

	/* errors continue after the first one, with lines counted right */
	struct config_errors errors;
	struct t_set set;
	const char *text = "foo = 1\r\nworkers = x\r\n\r\nbar = 2\r\n";
	assert_int_equal(config_load_buffer(&t_schema, "t.conf", text,
					    strlen(text), 0, &set, &errors),
			 -1);
	assert_int_equal(errors.count, 3);
	assert_string_equal(errors.lines[1], "t.conf:2: invalid number 'x' "
					     "for 'workers': not a number");
	assert_string_equal(errors.lines[2], "t.conf:4: unknown setting 'bar'");
	config_errors_free(&errors);

	/* a NUL byte is a control character too */
	const char nul[] = "workers = 1\ngreeting = a\0b\n";
	assert_int_equal(config_load_buffer(&t_schema, "t.conf", nul,
					    sizeof(nul) - 1, 0, &set, &errors),
			 -1);
	assert_string_equal(errors.lines[0],
			    "t.conf:2: control character in line");
	config_errors_free(&errors);

	/* the list of errors is bounded */
	char many[100 * 8 + 1];
	for (int i = 0; i < 100; i++)
		memcpy(many + i * 8, "foo = 1\n", 8);
	assert_int_equal(config_load_buffer(&t_schema, "t.conf", many, 100 * 8,
					    0, &set, &errors),
			 -1);
	assert_int_equal(errors.count, CONFIG_ERRORS_MAX + 1);
	assert_string_equal(errors.lines[CONFIG_ERRORS_MAX],
			    "too many errors, giving up");
	config_errors_free(&errors);
}

static void test_limits(void **state)
{
	struct config_errors errors;
	struct t_set set;
	(void)state;

	/* a line of exactly CONFIG_LINE_MAX bytes is fine, one more is not */
	char *text = xmalloc(3 * CONFIG_LINE_MAX);
	size_t len = (size_t)str_printf(text, 32, "greeting = ");
	memset(text + len, 'g', CONFIG_LINE_MAX - len);
	len = CONFIG_LINE_MAX;
	text[len++] = '\n';
	assert_int_equal(config_load_buffer(&t_schema, "t.conf", text, len, 0,
					    &set, &errors),
			 0);
	assert_int_equal(strlen(set.greeting), CONFIG_LINE_MAX - 11);
	config_free(&t_schema, &set);
	config_errors_free(&errors);
	memcpy(text + len, "workers = 2\n", 12);
	len += 12;
	text[len - 1] = 'g';
	memset(text + len, 'g', CONFIG_LINE_MAX);
	len += CONFIG_LINE_MAX;
	text[len++] = '\n';
	assert_int_equal(config_load_buffer(&t_schema, "t.conf", text, len, 0,
					    &set, &errors),
			 -1);
	assert_int_equal(errors.count, 1);
	assert_string_equal(errors.lines[0],
			    "t.conf:2: line too long (max 4096 bytes)");
	config_errors_free(&errors);
	free(text);

	/* file size limit */
	size_t big = CONFIG_FILE_MAX + 1;
	char *data = xmalloc(big);
	memset(data, '\n', big);
	assert_int_equal(config_load_buffer(&t_schema, "t.conf", data, big, 0,
					    &set, &errors),
			 -1);
	assert_string_equal(errors.lines[0],
			    "t.conf: file too large (max 1048576 bytes)");
	config_errors_free(&errors);
	FILE *fp = fopen(tpath("big.conf"), "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, big, fp), big);
	fclose(fp);
	free(data);
	char want[300];
	str_printf(want, sizeof(want),
		   "%s: file too large (max 1048576 "
		   "bytes)",
		   tpath("big.conf"));
	file_err(tpath("big.conf"), want);

	/* section nesting limit (unknown sections are tracked too) */
	char nest[512] = "";
	size_t n = 0;
	for (int i = 0; i < CONFIG_NEST_MAX + 1; i++)
		n += (size_t)str_printf(nest + n, sizeof(nest) - n, "a {\n");
	load_err(nest, "t.conf:1: unknown section 'a'");
	assert_int_equal(config_load_buffer(&t_schema, "t.conf", nest,
					    strlen(nest), 0, &set, &errors),
			 -1);
	assert_string_equal(errors.lines[1],
			    "t.conf:9: sections nested too deeply (max 8 "
			    "levels)");
	config_errors_free(&errors);
}

static void test_include(void **state)
{
	struct config_errors errors;
	struct t_set set;
	char want[512];
	(void)state;

	write_file("sub/extra.conf", "workers = 7\n");
	write_file("sub/b1.conf", "host = 10.0.0.1\n!include more/port.conf\n");
	write_file("sub/more/port.conf", "port = 110\n");
	write_file("conf.d/20-b.conf", "backend b2 {\n}\n");
	write_file("conf.d/10-a.conf", "backend b1 {\n"
				       "  !include ../sub/b1.conf\n"
				       "}\n");
	write_file("conf.d/README", "not a config file\n");
	const char *main_conf =
	    write_file("main.conf", "# main\n"
				    "!include sub/extra.conf\n"
				    "!include conf.d/*.conf\n"
				    "!include_try missing.conf\n"
				    "!include_try nomatch.d/*.conf\n"
				    "!include_try \"sub/extra 2.conf\"\n");
	write_file("sub/extra 2.conf", "verbose = yes\n");
	assert_int_equal(config_load_file(&t_schema, main_conf, &set, &errors),
			 0);
	assert_int_equal(set.workers, 7);
	assert_true(set.verbose);
	assert_int_equal(set.backends_count, 2);
	assert_string_equal(set.backends[0].name, "b1");
	assert_string_equal(set.backends[0].host, "10.0.0.1");
	assert_int_equal(set.backends[0].port, 110);
	assert_string_equal(set.backends[1].name, "b2");
	config_free(&t_schema, &set);
	config_errors_free(&errors);

	/* an absolute include path */
	char text[300];
	str_printf(text, sizeof(text), "!include %s\n",
		   tpath("sub/extra.conf"));
	load_ok("", &set);
	config_free(&t_schema, &set);
	const char *abs_conf = write_file("abs.conf", text);
	assert_int_equal(config_load_file(&t_schema, abs_conf, &set, &errors),
			 0);
	assert_int_equal(set.workers, 7);
	config_free(&t_schema, &set);
	config_errors_free(&errors);

	/* missing include file: error at the include line */
	const char *bad = write_file("bad.conf", "workers = 2\n"
						 "!include nothere.conf\n");
	str_printf(want, sizeof(want),
		   "%s:2: cannot include '%s': No such "
		   "file or directory",
		   bad, tpath("nothere.conf"));
	file_err(bad, want);
	bad = write_file("bad2.conf", "!include none.d/*.conf\n");
	str_printf(want, sizeof(want),
		   "%s:1: !include '%s': no matching "
		   "files",
		   bad, tpath("none.d/*.conf"));
	file_err(bad, want);
	bad = write_file("bad3.conf", "!include\n");
	str_printf(want, sizeof(want), "%s:1: !include needs a path", bad);
	file_err(bad, want);
	bad = write_file("bad4.conf", "!include sub\n");
	str_printf(want, sizeof(want),
		   "%s:1: cannot include '%s': not a "
		   "regular file",
		   bad, tpath("sub"));
	file_err(bad, want);

	/* errors inside an included file name that file */
	write_file("inc/broken.conf", "\nfoo = 1\n");
	bad = write_file("bad5.conf", "!include inc/broken.conf\n");
	str_printf(want, sizeof(want), "%s:2: unknown setting 'foo'",
		   tpath("inc/broken.conf"));
	file_err(bad, want);

	/* an included file must close what it opens, and not more */
	write_file("inc/open.conf", "backend x {\n");
	bad = write_file("bad6.conf", "!include inc/open.conf\n");
	str_printf(want, sizeof(want),
		   "%s:1: missing '}' for section "
		   "'backend x'",
		   tpath("inc/open.conf"));
	file_err(bad, want);
	write_file("inc/close.conf", "}\n");
	bad = write_file("bad7.conf", "backend y {\n!include inc/close.conf\n"
				      "}\n");
	str_printf(want, sizeof(want),
		   "%s:1: unexpected '}' (no section is "
		   "open)",
		   tpath("inc/close.conf"));
	file_err(bad, want);

	/* a duplicate across files names the first place */
	bad = write_file("bad8.conf", "workers = 1\n!include sub/extra.conf\n");
	str_printf(want, sizeof(want),
		   "%s:1: duplicate setting 'workers' "
		   "(first set at %s:1)",
		   tpath("sub/extra.conf"), bad);
	file_err(bad, want);

	/* the top file itself missing */
	str_printf(want, sizeof(want), "%s: No such file or directory",
		   tpath("none.conf"));
	file_err(tpath("none.conf"), want);
}

static void test_include_loops(void **state)
{
	char want[512];
	(void)state;

	/* a includes b includes a */
	const char *a = write_file("loop/a.conf", "!include b.conf\n");
	const char *b = write_file("loop/b.conf", "workers = 1\n"
						  "!include a.conf\n");
	str_printf(want, sizeof(want),
		   "%s:2: cannot include '%s': include "
		   "loop (the file is already being read)",
		   b, a);
	file_err(a, want);

	/* a file including itself through a glob */
	const char *self = write_file("self/self.conf", "!include *.conf\n");
	str_printf(want, sizeof(want),
		   "%s:1: cannot include '%s': include "
		   "loop (the file is already being read)",
		   self, self);
	file_err(self, want);

	/* depth limit: d0 -> d1 -> ... -> d10 */
	char name[32], text[64];
	for (int i = 0; i <= 10; i++) {
		str_printf(name, sizeof(name), "deep/d%d.conf", i);
		str_printf(text, sizeof(text), "!include d%d.conf\n", i + 1);
		write_file(name, i == 10 ? "\n" : text);
	}
	str_printf(want, sizeof(want),
		   "%s:1: cannot include '%s': includes "
		   "nested too deeply (max 8 levels)",
		   tpath("deep/d8.conf"), tpath("deep/d9.conf"));
	file_err(tpath("deep/d0.conf"), want);
}

static void test_print(void **state)
{
	struct t_set set, again;
	(void)state;

	load_err("greeting = Hello \"x\" again\n",
		 "t.conf:1: invalid string 'Hello \"x\" again' for "
		 "'greeting': unexpected '\"' (quote the whole value)");

	load_ok("greeting = \"say \\\"hi\\\" # now\"\n"
		"workers = 8\n"
		"verbose = no\n" /* same as the default */
		"max_size = 1048576\n"
		"idle_timeout = 90s\n"
		"ssl = REQUIRED\n"
		"protocols = imap \"sub mission\"\n"
		"trusted_networks = 10.9.8.7/8 ::1/128\n"
		"limits {\n"
		"  login_timeout = 30s\n"
		"  max_line = 8k\n" /* default */
		"}\n"
		"backend b1 {\n"
		"  host = 10.0.0.1\n"
		"  tls {\n"
		"    enabled = yes\n"
		"  }\n"
		"}\n"
		"backend \"b 2\" {\n"
		"  port = 993\n"
		"  tls {\n"
		"  }\n"
		"}\n",
		&set);
	char *out = print_to_string(&set, false);
	assert_string_equal(out, "greeting = \"say \\\"hi\\\" # now\"\n"
				 "workers = 8\n"
				 "max_size = 1M\n"
				 "idle_timeout = 90s\n"
				 "ssl = required\n"
				 "protocols = imap \"sub mission\"\n"
				 "trusted_networks = 10.0.0.0/8 ::1\n"
				 "limits {\n"
				 "  login_timeout = 30s\n"
				 "}\n"
				 "backend b1 {\n"
				 "  host = 10.0.0.1\n"
				 "  tls {\n"
				 "    enabled = yes\n"
				 "  }\n"
				 "}\n"
				 "backend \"b 2\" {\n"
				 "  port = 993\n"
				 "}\n");
	/* the output reads back to the same settings */
	load_ok(out, &again);
	char *out2 = print_to_string(&again, false);
	assert_string_equal(out, out2);
	free(out2);
	free(out);
	config_free(&t_schema, &again);
	config_free(&t_schema, &set);

	/* -n of the defaults is empty; -a lists everything */
	load_ok("", &set);
	out = print_to_string(&set, false);
	assert_string_equal(out, "");
	free(out);
	out = print_to_string(&set, true);
	assert_string_equal(out, "greeting = mailring ready\n"
				 "verbose = no\n"
				 "workers = 4\n"
				 "max_connections = 0\n"
				 "max_size = 64k\n"
				 "idle_timeout = 30m\n"
				 "ssl = yes\n"
				 "protocols = imap pop3\n"
				 "trusted_networks = 127.0.0.0/8 ::1\n"
				 "limits {\n"
				 "  max_line = 8k\n"
				 "  login_timeout = 1m\n"
				 "}\n");
	free(out);
	config_free(&t_schema, &set);

	/* empty values and odd units */
	load_ok(
	    "greeting =\nprotocols =\nmax_size = 1025\n"
	    "idle_timeout = 1500ms\nbackend b {\ntls {\ncert = \" x\"\n}\n}\n",
	    &set);
	out = print_to_string(&set, false);
	assert_string_equal(out, "greeting =\n"
				 "max_size = 1025\n"
				 "idle_timeout = 1500ms\n"
				 "protocols =\n"
				 "backend b {\n"
				 "  tls {\n"
				 "    cert = \" x\"\n"
				 "  }\n"
				 "}\n");
	free(out);
	config_free(&t_schema, &set);
}

static void test_reload_independent(void **state)
{
	struct config_errors errors;
	struct t_set a, b;
	(void)state;

	const char *path = write_file("r.conf", "greeting = one\n"
						"backend b1 {\n"
						"  host = h1\n"
						"}\n");
	assert_int_equal(config_load_file(&t_schema, path, &a, &errors), 0);
	config_errors_free(&errors);
	write_file("r.conf", "greeting = two\n"
			     "backend b1 {\n"
			     "  host = h2\n"
			     "}\n"
			     "backend b2 {\n"
			     "}\n");
	assert_int_equal(config_load_file(&t_schema, path, &b, &errors), 0);
	config_errors_free(&errors);
	assert_ptr_not_equal(a.greeting, b.greeting);
	assert_ptr_not_equal(a.backends, b.backends);
	assert_ptr_not_equal(a.protocols.items, b.protocols.items);
	/* the old one stays valid until the swap, then goes */
	assert_string_equal(a.greeting, "one");
	assert_int_equal(a.backends_count, 1);
	assert_string_equal(a.backends[0].host, "h1");
	config_free(&t_schema, &a);
	assert_string_equal(b.greeting, "two");
	assert_int_equal(b.backends_count, 2);
	assert_string_equal(b.backends[0].host, "h2");
	assert_string_equal(b.protocols.items[1], "pop3");

	/* a failed reload leaves the running settings untouched */
	write_file("r.conf", "greeting = three\nbogus = 1\n");
	assert_int_equal(config_load_file(&t_schema, path, &a, &errors), -1);
	config_errors_free(&errors);
	assert_string_equal(b.greeting, "two");
	config_free(&t_schema, &b);
}

static void test_bad_default(void **state)
{
	struct bad {
		uint64_t n;
		char *s;
	};
	static const struct config_def defs[] = {
	    CONFIG_DEF_UINT(struct bad, "n", n, "lots", 0, 0, "bad"),
	    CONFIG_DEF_STRING(struct bad, "s", s, "ok", "fine"),
	    CONFIG_DEF_END};
	static const struct config_section schema =
	    CONFIG_SECTION(struct bad, defs);
	struct config_errors errors;
	struct bad set;
	(void)state;

	assert_int_equal(
	    config_load_buffer(&schema, "x", "", 0, 0, &set, &errors), -1);
	assert_int_equal(errors.count, 1);
	assert_string_equal(errors.lines[0], "<defaults>: invalid default "
					     "'lots' for 'n': not a number");
	assert_null(set.s);
	config_errors_free(&errors);
}

static void test_cli(void **state)
{
	struct config_cli cli;
	struct t_set set;
	char *out_data = NULL, *err_data = NULL;
	size_t out_size = 0, err_size = 0;
	(void)state;

	memset(&cli, 0, sizeof(cli));
	assert_true(config_cli_option(&cli, 'c', "/x"));
	assert_true(config_cli_option(&cli, 't', NULL));
	assert_true(config_cli_option(&cli, 'n', NULL));
	assert_true(config_cli_option(&cli, 'a', NULL));
	assert_false(config_cli_option(&cli, 'd', NULL));
	assert_string_equal(cli.path, "/x");
	assert_true(cli.test && cli.print_nondefault && cli.print_all);

	const char *good = write_file("good.conf", "workers = 3\n");
	const char *bad = write_file("bad.conf", "workers = 3\nfoo = 1\n"
						 "max_size = 1x\n");

	/* -t on a good file: silent, exit 0 */
	FILE *out = open_memstream(&out_data, &out_size);
	FILE *err = open_memstream(&err_data, &err_size);
	memset(&cli, 0, sizeof(cli));
	cli.path = good;
	cli.test = true;
	assert_int_equal(config_cli_run(&cli, &t_schema, &set, out, err), 0);
	assert_null(set.greeting); /* freed again */
	fflush(out);
	fflush(err);
	assert_int_equal(out_size, 0);
	assert_int_equal(err_size, 0);

	/* -t on a bad file: every error on its own line, exit 1 */
	cli.path = bad;
	assert_int_equal(config_cli_run(&cli, &t_schema, &set, out, err), -1);
	fflush(err);
	char want[512];
	str_printf(want, sizeof(want),
		   "%s:2: unknown setting 'foo'\n"
		   "%s:3: invalid size '1x' for 'max_size': unknown unit "
		   "'x'\n",
		   bad, bad);
	assert_string_equal(err_data, want);

	/* -n prints the non-defaults and exits 0 */
	cli.path = good;
	cli.test = false;
	cli.print_nondefault = true;
	assert_int_equal(config_cli_run(&cli, &t_schema, &set, out, err), 0);
	fflush(out);
	assert_string_equal(out_data, "workers = 3\n");

	/* no flag: loaded, the daemon runs */
	cli.print_nondefault = false;
	assert_int_equal(config_cli_run(&cli, &t_schema, &set, out, err), 1);
	assert_int_equal(set.workers, 3);
	config_free(&t_schema, &set);

	/* no path at all */
	cli.path = NULL;
	assert_int_equal(config_cli_run(&cli, &t_schema, &set, out, err), -1);
	fclose(out);
	fclose(err);
	free(out_data);
	free(err_data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_all_types),
	    cmocka_unit_test(test_bool),
	    cmocka_unit_test(test_uint),
	    cmocka_unit_test(test_size),
	    cmocka_unit_test(test_duration),
	    cmocka_unit_test(test_enum_list_nets),
	    cmocka_unit_test(test_netmask),
	    cmocka_unit_test(test_quotes_comments),
	    cmocka_unit_test(test_sections),
	    cmocka_unit_test(test_structure_errors),
	    cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_include, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_include_loops, setup,
					    teardown),
	    cmocka_unit_test(test_print),
	    cmocka_unit_test_setup_teardown(test_reload_independent, setup,
					    teardown),
	    cmocka_unit_test(test_bad_default),
	    cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
