/*
 * libFuzzer target for the config parser: the input is a config file.
 * Invariants checked beyond "no crash, no leak":
 *   - a successful load prints (-n and -a) to text that loads again and
 *     prints the same (unless a printed line passes CONFIG_LINE_MAX, which
 *     quoting can cause legitimately);
 *   - a failed load reports at least one error and leaves the struct zeroed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz_tls {
	bool enabled;
	struct config_strlist ciphers;
};

struct fz_backend {
	char *name;
	char *host;
	uint64_t port;
	struct fz_tls tls;
};

struct fz_set {
	char *greeting;
	bool verbose;
	uint64_t workers;
	uint64_t max_size;
	uint64_t timeout_msecs;
	unsigned int ssl;
	struct config_strlist protocols;
	struct config_nets networks;
	struct fz_tls tls;
	struct fz_backend *backends;
	size_t backends_count;
};

static const char *const fz_ssl_values[] = {"no", "yes", "required", NULL};

static const struct config_def fz_tls_defs[] = {
    CONFIG_DEF_BOOL(struct fz_tls, "enabled", enabled, "no", "TLS"),
    CONFIG_DEF_LIST(struct fz_tls, "ciphers", ciphers, "HIGH", "ciphers"),
    CONFIG_DEF_END};
static const struct config_section fz_tls_section =
    CONFIG_SECTION(struct fz_tls, fz_tls_defs);

static const struct config_def fz_backend_defs[] = {
    CONFIG_DEF_STRING(struct fz_backend, "host", host, NULL, "host"),
    CONFIG_DEF_UINT(struct fz_backend, "port", port, "143", 1, 65535, "port"),
    CONFIG_DEF_BLOCK(struct fz_backend, "tls", tls, &fz_tls_section, "TLS"),
    CONFIG_DEF_END};
static const struct config_section fz_backend_section =
    CONFIG_SECTION_NAMED(struct fz_backend, name, fz_backend_defs);

static const struct config_def fz_defs[] = {
    CONFIG_DEF_STRING(struct fz_set, "greeting", greeting, "ready", "banner"),
    CONFIG_DEF_BOOL(struct fz_set, "verbose", verbose, "no", "verbose"),
    CONFIG_DEF_UINT(struct fz_set, "workers", workers, "4", 1, 1024, "workers"),
    CONFIG_DEF_SIZE(struct fz_set, "max_size", max_size, "64k", 0, 0, "size"),
    CONFIG_DEF_DURATION(struct fz_set, "timeout", timeout_msecs, "30s", 1000, 0,
			"timeout"),
    CONFIG_DEF_ENUM(struct fz_set, "ssl", ssl, NULL, fz_ssl_values, "ssl"),
    CONFIG_DEF_LIST(struct fz_set, "protocols", protocols, "imap pop3",
		    "protocols"),
    CONFIG_DEF_NETS(struct fz_set, "networks", networks, "127.0.0.0/8 ::1",
		    "networks"),
    CONFIG_DEF_BLOCK(struct fz_set, "tls", tls, &fz_tls_section, "TLS"),
    CONFIG_DEF_SECTIONS(struct fz_set, "backend", backends, backends_count,
			&fz_backend_section, "backends"),
    CONFIG_DEF_END};
static const struct config_section fz_schema =
    CONFIG_SECTION(struct fz_set, fz_defs);

static char *fz_print(const struct fz_set *set, bool all, size_t *len_r)
{
	char *out = NULL;
	FILE *fp = open_memstream(&out, len_r);

	if (fp == NULL)
		abort();
	if (all)
		config_print_all(&fz_schema, set, fp);
	else
		config_print_nondefault(&fz_schema, set, fp);
	fclose(fp);
	return out;
}

static bool fz_lines_fit(const char *text, size_t len)
{
	size_t line = 0;

	for (size_t i = 0; i < len; i++) {
		line = text[i] == '\n' ? 0 : line + 1;
		if (line > CONFIG_LINE_MAX)
			return false;
	}
	return true;
}

static void fz_round_trip(const struct fz_set *set, bool all)
{
	struct config_errors errors;
	struct fz_set again;
	size_t len, len2;
	char *text = fz_print(set, all, &len);

	if (fz_lines_fit(text, len)) {
		if (config_load_buffer(&fz_schema, "printed", text, len,
				       CONFIG_LOAD_NO_INCLUDE, &again,
				       &errors) != 0) {
			fprintf(stderr, "printed config does not load: %s\n",
				errors.lines[0]);
			abort();
		}
		config_errors_free(&errors);
		char *text2 = fz_print(&again, all, &len2);
		if (len != len2 || memcmp(text, text2, len) != 0) {
			fprintf(stderr, "print is not stable:\n%s---\n%s", text,
				text2);
			abort();
		}
		free(text2);
		config_free(&fz_schema, &again);
	}
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_errors errors;
	struct fz_set set;

	if (config_load_buffer(&fz_schema, "fuzz.conf", data, size,
			       CONFIG_LOAD_NO_INCLUDE, &set, &errors) == 0) {
		if (errors.count != 0 || set.greeting == NULL)
			abort();
		fz_round_trip(&set, false);
		fz_round_trip(&set, true);
		config_free(&fz_schema, &set);
	} else {
		static const struct fz_set zero;
		if (errors.count == 0 || memcmp(&set, &zero, sizeof(set)) != 0)
			abort();
	}
	config_errors_free(&errors);
	return 0;
}
