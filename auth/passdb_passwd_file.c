/* passdb driver "passwd-file": Dovecot's passwd-file, reloaded on change.
 *
 * args: [scheme=SCHEME] [username_format=%u|%n|%Lu|%Ln] [refresh_ms=N]
 *       [case_insensitive=yes|no] [max_line_length=N] [max_file_size=N] PATH
 *
 * scheme is the default for passwords without a "{SCHEME}" prefix (CRYPT, as
 * in Dovecot); username_format says which part of the login name is looked
 * up (%n: the part before '@'). */

#include "passdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_user.h"
#include "passwd_file.h"
#include "password_scheme.h"
#include "str.h"
#include "xmalloc.h"

#define PWF_DEFAULT_SCHEME "CRYPT"

struct pwf_ctx {
	struct passwd_file *pf;
	char *default_scheme;
	bool drop_domain;
	bool lowercase;
};

static char *arg_error(const char *what, struct str arg)
{
	char san[128];
	char buf[256];

	str_sanitize(arg, san, sizeof(san));
	if (str_printf(buf, sizeof(buf), "passwd-file: %s: %s", what, san) < 0)
		return xstrdup("passwd-file: invalid arguments");
	return xstrdup(buf);
}

static bool parse_bool(struct str v, bool *b)
{
	if (v.len == 0 || str_eq_nocase(v, STR("yes")) ||
	    str_eq_nocase(v, STR("y")) || str_eq(v, STR("1"))) {
		*b = true;
		return true;
	}
	if (str_eq_nocase(v, STR("no")) || str_eq_nocase(v, STR("n")) ||
	    str_eq(v, STR("0"))) {
		*b = false;
		return true;
	}
	return false;
}

static int pwf_init(const char *args, void **ctx_r, char **error_r)
{
	struct passwd_file_settings set;
	struct pwf_ctx *ctx = xcalloc(1, sizeof(*ctx));
	struct str rest = str_cstr(args);
	char *path = NULL;
	uint64_t n;

	*error_r = NULL;
	passwd_file_settings_init(&set);
	while (rest.len > 0) {
		size_t i = 0;
		while (i < rest.len && rest.p[i] != ' ')
			i++;
		struct str tok = str_from(rest.p, i), key, value;
		rest = str_slice(rest, i < rest.len ? i + 1 : i, rest.len);
		if (tok.len == 0)
			continue;
		bool has_value = str_split(tok, '=', &key, &value);
		if (str_eq(key, STR("scheme")) && has_value) {
			free(ctx->default_scheme);
			ctx->default_scheme = xstrndup(value.p, value.len);
			if (!password_scheme_is_known(ctx->default_scheme)) {
				*error_r = arg_error("unknown scheme", value);
				goto fail;
			}
		} else if (str_eq(key, STR("username_format")) && has_value) {
			if (str_eq(value, STR("%u")) ||
			    str_eq(value, STR("%{user}"))) {
				ctx->drop_domain = false;
				ctx->lowercase = false;
			} else if (str_eq(value, STR("%Lu"))) {
				ctx->drop_domain = false;
				ctx->lowercase = true;
			} else if (str_eq(value, STR("%n")) ||
				   str_eq(value, STR("%{username}"))) {
				ctx->drop_domain = true;
				ctx->lowercase = false;
			} else if (str_eq(value, STR("%Ln"))) {
				ctx->drop_domain = true;
				ctx->lowercase = true;
			} else {
				*error_r = arg_error(
				    "unsupported username_format", value);
				goto fail;
			}
		} else if (str_eq(key, STR("refresh_ms")) && has_value) {
			if (!str_to_u64(value, UINT32_MAX, &n)) {
				*error_r =
				    arg_error("invalid refresh_ms", value);
				goto fail;
			}
			set.refresh_interval_ms = (uint32_t)n;
		} else if (str_eq(key, STR("case_insensitive"))) {
			if (!parse_bool(value, &set.case_insensitive)) {
				*error_r = arg_error("invalid case_insensitive",
						     value);
				goto fail;
			}
		} else if (str_eq(key, STR("max_line_length")) && has_value) {
			if (!str_to_u64(value, SIZE_MAX, &n) || n == 0) {
				*error_r =
				    arg_error("invalid max_line_length", value);
				goto fail;
			}
			set.max_line_len = (size_t)n;
		} else if (str_eq(key, STR("max_file_size")) && has_value) {
			if (!str_to_u64(value, SIZE_MAX - 1, &n) || n == 0) {
				*error_r =
				    arg_error("invalid max_file_size", value);
				goto fail;
			}
			set.max_file_size = (size_t)n;
		} else if (path == NULL) {
			path = xstrndup(tok.p, tok.len);
		} else {
			*error_r = arg_error("unexpected argument", tok);
			goto fail;
		}
	}
	if (path == NULL) {
		*error_r = xstrdup("passwd-file: no file path given");
		goto fail;
	}
	if (ctx->default_scheme == NULL)
		ctx->default_scheme = xstrdup(PWF_DEFAULT_SCHEME);
	ctx->pf = passwd_file_open(path, &set, error_r);
	if (ctx->pf == NULL)
		goto fail;
	free(path);
	*ctx_r = ctx;
	return 0;
fail:
	free(path);
	free(ctx->default_scheme);
	free(ctx);
	return -1;
}

static void pwf_deinit(void **ctxp)
{
	struct pwf_ctx *ctx = *ctxp;

	if (ctx == NULL)
		return;
	passwd_file_close(&ctx->pf);
	free(ctx->default_scheme);
	free(ctx);
	*ctxp = NULL;
}

static void copy_fields(struct auth_fields *dst, const struct passwd_field *f,
			size_t count)
{
	for (size_t i = 0; i < count; i++)
		auth_fields_set_cstr(dst, f[i].key, f[i].value);
}

static enum passdb_result pwf_lookup(void *ctxp,
				     const struct passdb_request *request,
				     struct passdb_entry *entry_r,
				     char **error_r)
{
	struct pwf_ctx *ctx = ctxp;
	char *reload_error = NULL;
	char key[AUTH_USER_MAX_LEN + 1];
	struct str name = str_cstr(request->user), domain;

	*error_r = NULL;
	memset(entry_r, 0, sizeof(*entry_r));
	if (ctx->drop_domain)
		(void)auth_user_split(name, &name, &domain);
	if (!str_copy(name, key, sizeof(key))) {
		*error_r = xstrdup("passwd-file: user name too long");
		return PASSDB_TEMPFAIL;
	}
	if (ctx->lowercase) {
		for (char *p = key; *p != '\0'; p++) {
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		}
	}

	if (passwd_file_refresh(ctx->pf, request->now_ms, &reload_error) < 0) {
		size_t len = strlen(reload_error) + 64;
		char *w = xmalloc(len);
		if (str_printf(w, len,
			       "passwd-file reload failed, still "
			       "using the previous users: %s",
			       reload_error) < 0) {
			free(w);
			w = xstrdup("passwd-file reload failed");
		}
		entry_r->warning = w;
	}
	free(reload_error);

	struct passwd_table *t = passwd_file_get_table(ctx->pf);
	const struct passwd_entry *e = passwd_table_lookup(t, key);
	if (e == NULL) {
		passwd_table_unref(&t);
		return PASSDB_USER_UNKNOWN;
	}
	entry_r->password = e->password == NULL ? NULL : xstrdup(e->password);
	entry_r->default_scheme = ctx->default_scheme;
	entry_r->fields = auth_fields_new();
	entry_r->userdb_fields = auth_fields_new();
	copy_fields(entry_r->fields, e->fields, e->field_count);
	copy_fields(entry_r->userdb_fields, e->userdb_fields,
		    e->userdb_field_count);
	if (e->home != NULL && !auth_fields_has(entry_r->userdb_fields, "home"))
		auth_fields_set_cstr(entry_r->userdb_fields, "home", e->home);
	if (e->uid != NULL && !auth_fields_has(entry_r->userdb_fields, "uid"))
		auth_fields_set_cstr(entry_r->userdb_fields, "uid", e->uid);
	if (e->gid != NULL && !auth_fields_has(entry_r->userdb_fields, "gid"))
		auth_fields_set_cstr(entry_r->userdb_fields, "gid", e->gid);
	passwd_table_unref(&t);
	return PASSDB_USER_FOUND;
}

static uint64_t pwf_generation(void *ctxp)
{
	struct pwf_ctx *ctx = ctxp;

	return passwd_file_generation(ctx->pf);
}

const struct passdb_driver passdb_driver_passwd_file = {
    .name = "passwd-file",
    .init = pwf_init,
    .lookup = pwf_lookup,
    .deinit = pwf_deinit,
    .generation = pwf_generation,
};
