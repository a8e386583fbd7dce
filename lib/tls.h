#ifndef MR_TLS_H
#define MR_TLS_H

/* TLS contexts for daemons, on OpenSSL 3.
 *
 * Server side: struct tls_server owns the current SSL_CTX built from a cert
 * chain + key (and optional SNI cert/key pairs) and can be reloaded from its
 * files at run time. A reload builds a complete new context first and only
 * then swaps it in; on failure the old context stays. Connections keep the
 * SSL_CTX they were created from alive through its reference count.
 *
 * Client side: a plain SSL_CTX with peer verification on by default and
 * per-connection host name checks.
 *
 * Errors come back as text in a caller-provided buffer (err, errsize): the
 * file name involved and the OpenSSL error string. TLS_ERROR_MAX is a size
 * that always holds a useful message. */

#include <stdbool.h>
#include <stddef.h>

#include <openssl/types.h>

#define TLS_ERROR_MAX 512

/* Initialises OpenSSL once per process; safe to call from any thread, any
 * number of times (pthread_once). Every tls_* constructor calls it, so a
 * daemon only needs it to fail early. Returns 0, or -1 with err set. */
int tls_init(char *err, size_t errsize);

/* An extra certificate for SNI: chosen when the client's server name equals
 * name (ASCII case-insensitive), or matches it as a wildcard "*.example.com"
 * (exactly one leftmost label: "a.example.com", not "example.com" nor
 * "a.b.example.com"). Exact names win over wildcards; the first match in
 * array order wins among equals. */
struct tls_sni_cert {
	const char *name;
	const char *cert_file; /* PEM chain, leaf first */
	const char *key_file;  /* PEM private key */
};

struct tls_server_settings {
	/* Default certificate chain (PEM, leaf first) and key: used when the
	 * client sends no SNI or a name no SNI entry matches. Required. */
	const char *cert_file;
	const char *key_file;
	/* Optional PEM CA bundle: when set, client certificates are requested
	 * and verified against it (also advertised as acceptable CAs). */
	const char *ca_file;
	/* With ca_file: fail the handshake when the client sends no cert. */
	bool require_client_cert;
	/* TLS 1.2 cipher list; NULL means ECDHE with AES-GCM/ChaCha20 only. */
	const char *ciphers;
	/* TLS 1.3 suites; NULL means the OpenSSL default. */
	const char *ciphersuites;
	const struct tls_sni_cert *sni_certs;
	size_t sni_count;
};

struct tls_server;

/* Builds a server from set (all strings are copied). The context has TLS 1.2
 * as minimum version, server cipher preference, no compression, no
 * renegotiation, session tickets on, groups X25519:P-256:P-384, and the SNI
 * callback when set->sni_count > 0. Returns NULL with err set (naming the
 * file that failed) on error. */
struct tls_server *tls_server_new(const struct tls_server_settings *set,
				  char *err, size_t errsize);

/* Rebuilds the context from set, or from the current settings (re-reading
 * the same files) when set is NULL, and makes it current. On failure the
 * current context and settings stay as they were and -1 is returned with
 * err set; 0 on success. SSL objects made before keep their old context.
 * Thread-safe against tls_server_get_ctx(); concurrent reloads are
 * serialised. */
int tls_server_reload(struct tls_server *srv,
		      const struct tls_server_settings *set, char *err,
		      size_t errsize);

/* Returns the current context with its reference count raised: the caller
 * must SSL_CTX_free() it (SSL_new() takes its own reference, so free it right
 * after SSL_new()). Thread-safe; one mutex round per call. */
SSL_CTX *tls_server_get_ctx(struct tls_server *srv);

/* SSL_new() on the current context, in accept (server) state. The caller
 * owns the SSL. Returns NULL with err set on failure. Thread-safe. */
SSL *tls_server_ssl_new(struct tls_server *srv, char *err, size_t errsize);

struct conn;
/* A new SSL in accept state on c (tls_server_ssl_new + conn_start_tls):
 * the server side of STARTTLS/STLS or an implicit-TLS listener. 0, or -1
 * with err set (the conn is left to the caller to close). */
int tls_server_start(struct tls_server *srv, struct conn *c, char *err,
		     size_t errsize);

/* Drops the server's reference to its context (live SSL objects keep theirs)
 * and frees *srv; sets *srv to NULL. Safe on NULL. */
void tls_server_free(struct tls_server **srv);

struct tls_client_settings {
	/* PEM CA bundle and/or hashed CA directory to verify servers with;
	 * when both are NULL, OpenSSL's system default paths are used. */
	const char *ca_file;
	const char *ca_dir;
	/* Optional client certificate (PEM chain) and key. */
	const char *cert_file;
	const char *key_file;
	/* As in tls_server_settings; NULL for the defaults. */
	const char *ciphers;
	const char *ciphersuites;
	/* Turns certificate and host name verification off. Only for tests
	 * and explicitly configured trusted links: it must be asked for. */
	bool insecure_no_verify;
};

/* Builds a client context: TLS 1.2 minimum, peer verification on unless
 * set->insecure_no_verify. The caller owns it (SSL_CTX_free). Returns NULL
 * with err set on failure. */
SSL_CTX *tls_client_ctx_new(const struct tls_client_settings *set, char *err,
			    size_t errsize);

/* SSL_new() on a client context, in connect state, for server host (a DNS
 * name or an IP literal). A DNS name is sent as SNI (an IP is not, RFC 6066).
 * When the context verifies peers, the certificate must also match host
 * (DNS name or IP SAN; no partial wildcards), so host is then required.
 * Returns NULL with err set on failure. */
SSL *tls_client_ssl_new(SSL_CTX *ctx, const char *host, char *err,
			size_t errsize);

/* After a failed handshake: the certificate verification error as text
 * ("certificate has expired", "hostname mismatch"...), or NULL when the
 * peer's certificate verified or was not checked. */
const char *tls_peer_verify_error(const SSL *ssl);

/* Formats the OpenSSL error queue of this thread into err after prefix
 * ("prefix: error:...:reason"), and clears the queue. Returns err. */
const char *tls_error_str(char *err, size_t errsize, const char *prefix);

/* Writes a new self-signed ECDSA P-256 certificate (SHA-256, valid from one
 * hour ago for days days, CN=common_name, subjectAltName DNS:common_name,
 * DNS:localhost, IP:127.0.0.1, IP:::1) to cert_file and its private key to
 * key_file (mode 0600). Each file is written to a temporary name and renamed
 * into place, so a concurrent reader sees the old or the new file, whole.
 * common_name may hold letters, digits, '-', '.' and a leading "*.".
 * Returns 0, or -1 with err set. */
int tls_selfsigned_write(const char *cert_file, const char *key_file,
			 const char *common_name, unsigned int days, char *err,
			 size_t errsize);

#endif
