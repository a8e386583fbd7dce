#include "tls.h"

#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "str.h"
#include "xmalloc.h"

#define TLS_GROUPS "X25519:P-256:P-384"
/* TLS 1.2 only; TLS 1.3 suites are set apart. Forward secret AEADs. */
#define TLS_DEFAULT_CIPHERS                                                    \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"           \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"           \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_SESSION_ID_CONTEXT "mailring"
#define TLS_ERR_QUEUE_MAX 4

/* ---- errors -------------------------------------------------------------- */

/* Appends to err at *pos, truncating (an error text cut short beats none). */
static void err_vappend(char *err, size_t errsize, size_t *pos, const char *fmt,
			va_list args) __attribute__((format(printf, 4, 0)));
static void err_vappend(char *err, size_t errsize, size_t *pos, const char *fmt,
			va_list args)
{
	if (err == NULL || errsize == 0 || *pos >= errsize - 1)
		return;
	int n = vsnprintf(err + *pos, errsize - *pos, fmt, args);
	if (n < 0) {
		err[*pos] = '\0';
		return;
	}
	*pos += (size_t)n;
	if (*pos > errsize - 1)
		*pos = errsize - 1;
}

static void err_append(char *err, size_t errsize, size_t *pos, const char *fmt,
		       ...) __attribute__((format(printf, 4, 5)));
static void err_append(char *err, size_t errsize, size_t *pos, const char *fmt,
		       ...)
{
	va_list args;
	va_start(args, fmt);
	err_vappend(err, errsize, pos, fmt, args);
	va_end(args);
}

/* Sets err to the formatted text only (no OpenSSL queue). */
static void set_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errsize, const char *fmt, ...)
{
	size_t pos = 0;
	va_list args;

	if (err == NULL || errsize == 0)
		return;
	err[0] = '\0';
	va_start(args, fmt);
	err_vappend(err, errsize, &pos, fmt, args);
	va_end(args);
}

/* Sets err to the formatted text followed by the OpenSSL error queue. */
static void set_ssl_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_ssl_err(char *err, size_t errsize, const char *fmt, ...)
{
	char prefix[TLS_ERROR_MAX];
	size_t pos = 0;
	va_list args;

	prefix[0] = '\0';
	va_start(args, fmt);
	err_vappend(prefix, sizeof(prefix), &pos, fmt, args);
	va_end(args);
	tls_error_str(err, errsize, prefix);
}

const char *tls_error_str(char *err, size_t errsize, const char *prefix)
{
	size_t pos = 0;
	unsigned int count = 0;
	unsigned long code;
	const char *data;
	int flags;

	if (err == NULL || errsize == 0) {
		ERR_clear_error();
		return err;
	}
	err[0] = '\0';
	err_append(err, errsize, &pos, "%s", prefix);
	while ((code = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) !=
	       0) {
		char one[256];

		if (count++ >= TLS_ERR_QUEUE_MAX)
			continue;
		ERR_error_string_n(code, one, sizeof(one));
		err_append(err, errsize, &pos, "%s%s", count == 1 ? ": " : "; ",
			   one);
		if ((flags & ERR_TXT_STRING) != 0 && data != NULL &&
		    data[0] != '\0')
			err_append(err, errsize, &pos, " (%s)", data);
	}
	if (count == 0)
		err_append(err, errsize, &pos, ": unknown OpenSSL error");
	return err;
}

/* ---- init ---------------------------------------------------------------- */

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_init_result = -1;
static int sni_ex_index = -1;

static void sni_table_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
			      int idx, long argl, void *argp);

static void tls_init_once(void)
{
	if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS |
				 OPENSSL_INIT_LOAD_CRYPTO_STRINGS,
			     NULL) != 1)
		return;
	sni_ex_index =
	    SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_table_ex_free);
	if (sni_ex_index < 0)
		return;
	tls_init_result = 0;
}

int tls_init(char *err, size_t errsize)
{
	if (pthread_once(&tls_once, tls_init_once) != 0 ||
	    tls_init_result != 0) {
		set_ssl_err(err, errsize, "OpenSSL initialisation failed");
		return -1;
	}
	return 0;
}

/* ---- shared context setup ------------------------------------------------ */

static int ctx_common_setup(SSL_CTX *ctx, const char *ciphers,
			    const char *ciphersuites, char *err, size_t errsize)
{
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		set_ssl_err(err, errsize, "cannot set TLS 1.2 as minimum");
		return -1;
	}
	SSL_CTX_set_options(ctx,
			    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	/* Idle IMAP sessions are the norm: do not keep 2x16 KiB per SSL. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1) {
		set_ssl_err(err, errsize, "cannot set groups %s", TLS_GROUPS);
		return -1;
	}
	if (ciphers == NULL)
		ciphers = TLS_DEFAULT_CIPHERS;
	if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
		set_ssl_err(err, errsize, "invalid cipher list '%s'", ciphers);
		return -1;
	}
	if (ciphersuites != NULL &&
	    SSL_CTX_set_ciphersuites(ctx, ciphersuites) != 1) {
		set_ssl_err(err, errsize, "invalid TLS 1.3 ciphersuites '%s'",
			    ciphersuites);
		return -1;
	}
	return 0;
}

static int ctx_load_cert_key(SSL_CTX *ctx, const char *cert_file,
			     const char *key_file, char *err, size_t errsize)
{
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		set_ssl_err(err, errsize,
			    "cannot load certificate chain from %s", cert_file);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_error();

		/* OpenSSL checks the pair while loading the key. */
		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
			set_ssl_err(err, errsize,
				    "private key %s does not match "
				    "certificate %s",
				    key_file, cert_file);
		else
			set_ssl_err(err, errsize,
				    "cannot load private key from %s",
				    key_file);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		set_ssl_err(err, errsize,
			    "private key %s does not match certificate %s",
			    key_file, cert_file);
		return -1;
	}
	return 0;
}

/* ---- server settings (owned copy) ---------------------------------------- */

struct sni_conf {
	char *name;
	char *cert_file;
	char *key_file;
};

struct server_conf {
	char *cert_file;
	char *key_file;
	char *ca_file;
	char *ciphers;
	char *ciphersuites;
	bool require_client_cert;
	struct sni_conf *sni;
	size_t sni_count;
};

static char *xstrdup_or_null(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

static void server_conf_free(struct server_conf *conf)
{
	xfree(&conf->cert_file);
	xfree(&conf->key_file);
	xfree(&conf->ca_file);
	xfree(&conf->ciphers);
	xfree(&conf->ciphersuites);
	for (size_t i = 0; i < conf->sni_count; i++) {
		xfree(&conf->sni[i].name);
		xfree(&conf->sni[i].cert_file);
		xfree(&conf->sni[i].key_file);
	}
	xfree(&conf->sni);
	conf->sni_count = 0;
}

/* Checks an SNI name: DNS characters, optionally one leading "*." label. */
static bool sni_name_valid(const char *name)
{
	const char *p = name;

	if (p[0] == '*') {
		if (p[1] != '.' || p[2] == '\0')
			return false;
		p += 2;
	}
	if (*p == '\0' || *p == '.')
		return false;
	for (; *p != '\0'; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '.'))
			return false;
	}
	return true;
}

static int server_conf_copy(struct server_conf *conf,
			    const struct tls_server_settings *set, char *err,
			    size_t errsize)
{
	memset(conf, 0, sizeof(*conf));
	if (set->cert_file == NULL || set->key_file == NULL) {
		set_err(err, errsize, "cert_file and key_file are required");
		return -1;
	}
	if (set->sni_count > 0 && set->sni_certs == NULL) {
		set_err(err, errsize, "sni_count set without sni_certs");
		return -1;
	}
	for (size_t i = 0; i < set->sni_count; i++) {
		const struct tls_sni_cert *s = &set->sni_certs[i];
		if (s->name == NULL || s->cert_file == NULL ||
		    s->key_file == NULL) {
			set_err(err, errsize,
				"SNI entry %zu: name, cert_file and key_file "
				"are required",
				i);
			return -1;
		}
		if (!sni_name_valid(s->name)) {
			set_err(err, errsize,
				"SNI entry %zu: invalid name '%s'", i, s->name);
			return -1;
		}
	}
	conf->cert_file = xstrdup(set->cert_file);
	conf->key_file = xstrdup(set->key_file);
	conf->ca_file = xstrdup_or_null(set->ca_file);
	conf->ciphers = xstrdup_or_null(set->ciphers);
	conf->ciphersuites = xstrdup_or_null(set->ciphersuites);
	conf->require_client_cert = set->require_client_cert;
	if (set->sni_count > 0) {
		conf->sni = xcalloc(set->sni_count, sizeof(*conf->sni));
		conf->sni_count = set->sni_count;
		for (size_t i = 0; i < set->sni_count; i++) {
			const struct tls_sni_cert *s = &set->sni_certs[i];
			conf->sni[i].name = xstrdup(s->name);
			conf->sni[i].cert_file = xstrdup(s->cert_file);
			conf->sni[i].key_file = xstrdup(s->key_file);
		}
	}
	return 0;
}

/* ---- SNI table ----------------------------------------------------------- */

/* Hangs off the default SSL_CTX as ex_data and dies with it, so a handshake
 * that started before a reload still finds its table. */
struct sni_entry {
	struct str name; /* for wildcards: the suffix, e.g. ".example.com" */
	bool wildcard;
	SSL_CTX *ctx;
};

struct sni_table {
	size_t count;
	struct sni_entry *entries;
	char **names;
};

static void sni_table_free(struct sni_table *table)
{
	if (table == NULL)
		return;
	for (size_t i = 0; i < table->count; i++) {
		SSL_CTX_free(table->entries[i].ctx);
		xfree(&table->names[i]);
	}
	xfree(&table->entries);
	xfree(&table->names);
	free(table);
}

static void sni_table_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
			      int idx, long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	sni_table_free(ptr);
}

static SSL_CTX *sni_table_lookup(const struct sni_table *table, struct str name)
{
	ptrdiff_t dot;

	if (name.len > 0 && name.p[name.len - 1] == '.')
		name.len--;
	if (name.len == 0)
		return NULL;
	for (size_t i = 0; i < table->count; i++) {
		const struct sni_entry *e = &table->entries[i];
		if (!e->wildcard && str_eq_nocase(e->name, name))
			return e->ctx;
	}
	dot = str_index(name, '.');
	if (dot <= 0)
		return NULL;
	name = str_slice(name, (size_t)dot, name.len);
	for (size_t i = 0; i < table->count; i++) {
		const struct sni_entry *e = &table->entries[i];
		if (e->wildcard && str_eq_nocase(e->name, name))
			return e->ctx;
	}
	return NULL;
}

static int sni_callback(SSL *ssl, int *alert, void *arg)
{
	const struct sni_table *table = arg;
	const char *name;
	SSL_CTX *ctx;

	(void)alert;
	name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (name == NULL || table == NULL)
		return SSL_TLSEXT_ERR_OK;
	ctx = sni_table_lookup(table, str_cstr(name));
	if (ctx != NULL && SSL_set_SSL_CTX(ssl, ctx) == NULL)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	/* No match: keep the default certificate rather than fail. */
	return SSL_TLSEXT_ERR_OK;
}

/* ---- server context ------------------------------------------------------ */

static SSL_CTX *server_ctx_one(const struct server_conf *conf,
			       const char *cert_file, const char *key_file,
			       char *err, size_t errsize)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		set_ssl_err(err, errsize, "SSL_CTX_new() failed");
		return NULL;
	}
	if (ctx_common_setup(ctx, conf->ciphers, conf->ciphersuites, err,
			     errsize) < 0)
		goto fail;
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* Session tickets stay on (OpenSSL default); the id context lets
	 * resumption work together with client certificates. */
	if (SSL_CTX_set_session_id_context(
		ctx, (const unsigned char *)TLS_SESSION_ID_CONTEXT,
		sizeof(TLS_SESSION_ID_CONTEXT) - 1) != 1) {
		set_ssl_err(err, errsize, "cannot set session id context");
		goto fail;
	}
	if (ctx_load_cert_key(ctx, cert_file, key_file, err, errsize) < 0)
		goto fail;
	if (conf->ca_file != NULL) {
		STACK_OF(X509_NAME) * names;
		int mode = SSL_VERIFY_PEER;

		if (SSL_CTX_load_verify_locations(ctx, conf->ca_file, NULL) !=
		    1) {
			set_ssl_err(err, errsize, "cannot load CA file %s",
				    conf->ca_file);
			goto fail;
		}
		names = SSL_load_client_CA_file(conf->ca_file);
		if (names == NULL) {
			set_ssl_err(err, errsize,
				    "cannot load CA names from %s",
				    conf->ca_file);
			goto fail;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
		if (conf->require_client_cert)
			mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		SSL_CTX_set_verify(ctx, mode, NULL);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static SSL_CTX *server_ctx_build(const struct server_conf *conf, char *err,
				 size_t errsize)
{
	struct sni_table *table;
	SSL_CTX *ctx;

	ERR_clear_error();
	ctx =
	    server_ctx_one(conf, conf->cert_file, conf->key_file, err, errsize);
	if (ctx == NULL || conf->sni_count == 0)
		return ctx;

	table = xcalloc(1, sizeof(*table));
	table->entries = xcalloc(conf->sni_count, sizeof(*table->entries));
	table->names = xcalloc(conf->sni_count, sizeof(*table->names));
	for (size_t i = 0; i < conf->sni_count; i++) {
		const struct sni_conf *s = &conf->sni[i];
		struct sni_entry *e = &table->entries[i];

		e->ctx = server_ctx_one(conf, s->cert_file, s->key_file, err,
					errsize);
		if (e->ctx == NULL) {
			sni_table_free(table);
			SSL_CTX_free(ctx);
			return NULL;
		}
		table->names[i] = xstrdup(s->name);
		table->count = i + 1;
		e->wildcard = s->name[0] == '*';
		/* wildcard: keep ".example.com" */
		e->name = str_cstr(table->names[i] + (e->wildcard ? 1 : 0));
	}
	if (SSL_CTX_set_ex_data(ctx, sni_ex_index, table) != 1) {
		set_ssl_err(err, errsize, "SSL_CTX_set_ex_data() failed");
		sni_table_free(table);
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_tlsext_servername_callback(ctx, sni_callback);
	SSL_CTX_set_tlsext_servername_arg(ctx, table);
	return ctx;
}

struct tls_server {
	pthread_mutex_t ctx_lock;    /* protects ctx */
	pthread_mutex_t reload_lock; /* serialises reloads, protects conf */
	SSL_CTX *ctx;
	struct server_conf conf;
};

struct tls_server *tls_server_new(const struct tls_server_settings *set,
				  char *err, size_t errsize)
{
	struct tls_server *srv;

	if (tls_init(err, errsize) < 0)
		return NULL;
	srv = xcalloc(1, sizeof(*srv));
	if (server_conf_copy(&srv->conf, set, err, errsize) < 0)
		goto fail;
	srv->ctx = server_ctx_build(&srv->conf, err, errsize);
	if (srv->ctx == NULL)
		goto fail;
	pthread_mutex_init(&srv->ctx_lock, NULL);
	pthread_mutex_init(&srv->reload_lock, NULL);
	return srv;
fail:
	server_conf_free(&srv->conf);
	free(srv);
	return NULL;
}

int tls_server_reload(struct tls_server *srv,
		      const struct tls_server_settings *set, char *err,
		      size_t errsize)
{
	struct server_conf new_conf;
	const struct server_conf *conf = &srv->conf;
	SSL_CTX *ctx, *old;

	pthread_mutex_lock(&srv->reload_lock);
	if (set != NULL) {
		if (server_conf_copy(&new_conf, set, err, errsize) < 0) {
			server_conf_free(&new_conf);
			pthread_mutex_unlock(&srv->reload_lock);
			return -1;
		}
		conf = &new_conf;
	}
	ctx = server_ctx_build(conf, err, errsize);
	if (ctx == NULL) {
		if (set != NULL)
			server_conf_free(&new_conf);
		pthread_mutex_unlock(&srv->reload_lock);
		return -1;
	}
	if (set != NULL) {
		server_conf_free(&srv->conf);
		srv->conf = new_conf;
	}
	pthread_mutex_lock(&srv->ctx_lock);
	old = srv->ctx;
	srv->ctx = ctx;
	pthread_mutex_unlock(&srv->ctx_lock);
	pthread_mutex_unlock(&srv->reload_lock);
	/* Live SSL objects hold their own references. */
	SSL_CTX_free(old);
	return 0;
}

SSL_CTX *tls_server_get_ctx(struct tls_server *srv)
{
	SSL_CTX *ctx;

	pthread_mutex_lock(&srv->ctx_lock);
	ctx = srv->ctx;
	SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&srv->ctx_lock);
	return ctx;
}

SSL *tls_server_ssl_new(struct tls_server *srv, char *err, size_t errsize)
{
	SSL_CTX *ctx = tls_server_get_ctx(srv);
	SSL *ssl = SSL_new(ctx);

	SSL_CTX_free(ctx);
	if (ssl == NULL) {
		set_ssl_err(err, errsize, "SSL_new() failed");
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}

void tls_server_free(struct tls_server **srvp)
{
	struct tls_server *srv = *srvp;

	if (srv == NULL)
		return;
	*srvp = NULL;
	SSL_CTX_free(srv->ctx);
	server_conf_free(&srv->conf);
	pthread_mutex_destroy(&srv->ctx_lock);
	pthread_mutex_destroy(&srv->reload_lock);
	free(srv);
}

/* ---- client context ------------------------------------------------------ */

SSL_CTX *tls_client_ctx_new(const struct tls_client_settings *set, char *err,
			    size_t errsize)
{
	SSL_CTX *ctx;

	if (tls_init(err, errsize) < 0)
		return NULL;
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		set_ssl_err(err, errsize, "SSL_CTX_new() failed");
		return NULL;
	}
	if (ctx_common_setup(ctx, set->ciphers, set->ciphersuites, err,
			     errsize) < 0)
		goto fail;
	if (set->cert_file != NULL || set->key_file != NULL) {
		if (set->cert_file == NULL || set->key_file == NULL) {
			set_err(err, errsize,
				"client cert_file and key_file go together");
			goto fail;
		}
		if (ctx_load_cert_key(ctx, set->cert_file, set->key_file, err,
				      errsize) < 0)
			goto fail;
	}
	if (set->insecure_no_verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	if (set->ca_file != NULL || set->ca_dir != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, set->ca_file,
						  set->ca_dir) != 1) {
			set_ssl_err(err, errsize, "cannot load CA from %s",
				    set->ca_file != NULL ? set->ca_file
							 : set->ca_dir);
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		set_ssl_err(err, errsize,
			    "cannot load the system default CA paths");
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static bool host_is_ip(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	return inet_pton(AF_INET, host, &a4) == 1 ||
	       inet_pton(AF_INET6, host, &a6) == 1;
}

SSL *tls_client_ssl_new(SSL_CTX *ctx, const char *host, char *err,
			size_t errsize)
{
	bool verify = (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER) != 0;
	bool is_ip = host != NULL && host_is_ip(host);
	SSL *ssl;

	if (verify && (host == NULL || host[0] == '\0')) {
		set_err(err, errsize,
			"a server host name is required to verify the peer");
		return NULL;
	}
	ERR_clear_error();
	ssl = SSL_new(ctx);
	if (ssl == NULL) {
		set_ssl_err(err, errsize, "SSL_new() failed");
		return NULL;
	}
	SSL_set_connect_state(ssl);
	if (host != NULL && host[0] != '\0' && !is_ip) {
		/* The macro casts away const; hand it a mutable copy. */
		char *name = xstrdup(host);
		long ret = SSL_set_tlsext_host_name(ssl, name);

		free(name);
		if (ret != 1) {
			set_ssl_err(err, errsize, "cannot set SNI name '%s'",
				    host);
			goto fail;
		}
	}
	if (verify) {
		int ret;

		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (is_ip)
			ret = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
							    host);
		else
			ret = SSL_set1_host(ssl, host);
		if (ret != 1) {
			set_ssl_err(err, errsize,
				    "cannot set expected peer name '%s'", host);
			goto fail;
		}
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

const char *tls_peer_verify_error(const SSL *ssl)
{
	long result;

	if ((SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) == 0)
		return NULL;
	result = SSL_get_verify_result(ssl);
	if (result == X509_V_OK)
		return NULL;
	return X509_verify_cert_error_string(result);
}

/* ---- self-signed certificates -------------------------------------------- */

static int add_ext(X509 *x509, int nid, const char *value, char *err,
		   size_t errsize)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ret;

	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x509, x509, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ext == NULL) {
		set_ssl_err(err, errsize, "cannot build extension %s=%s",
			    OBJ_nid2sn(nid), value);
		return -1;
	}
	ret = X509_add_ext(x509, ext, -1);
	X509_EXTENSION_free(ext);
	if (ret != 1) {
		set_ssl_err(err, errsize, "cannot add extension %s",
			    OBJ_nid2sn(nid));
		return -1;
	}
	return 0;
}

static EVP_PKEY *ec_p256_generate(char *err, size_t errsize)
{
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *pkey = NULL;

	if (pctx == NULL || EVP_PKEY_keygen_init(pctx) != 1 ||
	    EVP_PKEY_CTX_set_group_name(pctx, "P-256") != 1 ||
	    EVP_PKEY_keygen(pctx, &pkey) != 1) {
		set_ssl_err(err, errsize, "cannot generate a P-256 key");
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(pctx);
	return pkey;
}

static X509 *selfsigned_build(EVP_PKEY *pkey, const char *cn, unsigned int days,
			      char *err, size_t errsize)
{
	X509 *x509 = X509_new();
	unsigned char serial[16];
	char san[300];
	BIGNUM *bn = NULL;
	X509_NAME *name;

	if (x509 == NULL) {
		set_ssl_err(err, errsize, "X509_new() failed");
		return NULL;
	}
	if (RAND_bytes(serial, sizeof(serial)) != 1) {
		set_ssl_err(err, errsize, "RAND_bytes() failed");
		goto fail;
	}
	serial[0] &= 0x7f; /* positive */
	serial[0] |= 0x01; /* and not shortened */
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (bn == NULL ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x509)) == NULL) {
		set_ssl_err(err, errsize, "cannot set the serial number");
		goto fail;
	}
	if (X509_set_version(x509, X509_VERSION_3) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x509), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x509), (long)days * 86400) ==
		NULL ||
	    X509_set_pubkey(x509, pkey) != 1) {
		set_ssl_err(err, errsize, "cannot fill in the certificate");
		goto fail;
	}
	name = X509_get_subject_name(x509);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
				       (const unsigned char *)cn, -1, -1,
				       0) != 1 ||
	    X509_set_issuer_name(x509, name) != 1) {
		set_ssl_err(err, errsize, "cannot set the subject name");
		goto fail;
	}
	if (strcmp(cn, "localhost") == 0)
		(void)str_printf(san, sizeof(san),
				 "DNS:localhost,IP:127.0.0.1,IP:::1");
	else if (str_printf(san, sizeof(san),
			    "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1",
			    cn) < 0) {
		set_err(err, errsize, "common name too long");
		goto fail;
	}
	/* No keyUsage: OpenSSL then treats the certificate as self-signed,
	 * so it can serve as its own trust anchor in tests and demos. */
	if (add_ext(x509, NID_basic_constraints, "critical,CA:FALSE", err,
		    errsize) < 0 ||
	    add_ext(x509, NID_subject_key_identifier, "hash", err, errsize) <
		0 ||
	    add_ext(x509, NID_ext_key_usage, "serverAuth,clientAuth", err,
		    errsize) < 0 ||
	    add_ext(x509, NID_subject_alt_name, san, err, errsize) < 0)
		goto fail;
	if (X509_sign(x509, pkey, EVP_sha256()) == 0) {
		set_ssl_err(err, errsize, "cannot sign the certificate");
		goto fail;
	}
	BN_free(bn);
	return x509;
fail:
	BN_free(bn);
	X509_free(x509);
	return NULL;
}

enum pem_kind {
	PEM_KIND_CERT = 0, /* an X509 */
	PEM_KIND_KEY,      /* an EVP_PKEY */
};

/* Writes one PEM object to path through a temporary file + rename. */
static int pem_write_atomic(const char *path, mode_t mode, enum pem_kind kind,
			    const void *obj, char *err, size_t errsize)
{
	char tmp[PATH_MAX];
	BIO *bio;
	int fd, ok;

	if (str_printf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) < 0) {
		set_err(err, errsize, "path too long: %s", path);
		return -1;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd == -1) {
		set_err(err, errsize, "cannot create %s: %s", tmp,
			strerror(errno));
		return -1;
	}
	if (fchmod(fd, mode) == -1) {
		set_err(err, errsize, "fchmod(%s) failed: %s", tmp,
			strerror(errno));
		goto fail;
	}
	bio = BIO_new_fd(fd, BIO_NOCLOSE);
	if (bio == NULL) {
		set_ssl_err(err, errsize, "BIO_new_fd() failed");
		goto fail;
	}
	if (kind == PEM_KIND_CERT) {
		union {
			const void *c;
			X509 *m;
		} u = {.c = obj};
		ok = PEM_write_bio_X509(bio, u.m);
	} else {
		union {
			const void *c;
			EVP_PKEY *m;
		} u = {.c = obj};
		ok = PEM_write_bio_PrivateKey(bio, u.m, NULL, NULL, 0, NULL,
					      NULL);
	}
	if (ok != 1 || BIO_flush(bio) != 1) {
		BIO_free(bio);
		set_ssl_err(err, errsize, "cannot write %s", tmp);
		goto fail;
	}
	BIO_free(bio);
	if (fsync(fd) == -1) {
		set_err(err, errsize, "fsync(%s) failed: %s", tmp,
			strerror(errno));
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		set_err(err, errsize, "close(%s) failed: %s", tmp,
			strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		set_err(err, errsize, "rename(%s, %s) failed: %s", tmp, path,
			strerror(errno));
		goto fail;
	}
	return 0;
fail:
	if (fd != -1)
		close(fd);
	unlink(tmp);
	return -1;
}

static bool common_name_valid(const char *cn)
{
	return cn != NULL && strlen(cn) <= 253 && sni_name_valid(cn);
}

int tls_selfsigned_write(const char *cert_file, const char *key_file,
			 const char *common_name, unsigned int days, char *err,
			 size_t errsize)
{
	EVP_PKEY *pkey;
	X509 *x509;
	int ret = -1;

	if (tls_init(err, errsize) < 0)
		return -1;
	if (!common_name_valid(common_name)) {
		set_err(err, errsize, "invalid common name '%s'",
			common_name == NULL ? "(null)" : common_name);
		return -1;
	}
	if (days == 0 || days > 36500) {
		set_err(err, errsize, "invalid validity: %u days", days);
		return -1;
	}
	ERR_clear_error();
	pkey = ec_p256_generate(err, errsize);
	if (pkey == NULL)
		return -1;
	x509 = selfsigned_build(pkey, common_name, days, err, errsize);
	if (x509 != NULL &&
	    pem_write_atomic(key_file, 0600, PEM_KIND_KEY, pkey, err,
			     errsize) == 0 &&
	    pem_write_atomic(cert_file, 0644, PEM_KIND_CERT, x509, err,
			     errsize) == 0)
		ret = 0;
	X509_free(x509);
	EVP_PKEY_free(pkey);
	return ret;
}

int tls_server_start(struct tls_server *srv, struct conn *c, char *err,
		     size_t errsize)
{
	SSL *ssl = tls_server_ssl_new(srv, err, errsize);

	if (ssl == NULL)
		return -1;
	if (conn_start_tls(c, ssl, true) < 0) {
		str_printf(err, errsize, "%s", conn_error(c));
		return -1;
	}
	return 0;
}
