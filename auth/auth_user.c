#include "auth_user.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

struct auth_user_rules {
	uint8_t allowed[256 / 8]; /* bitmap */
	size_t max_len;
	bool lowercase;
	bool drop_domain;
};

bool auth_user_char_forbidden(unsigned char c)
{
	return c < 0x20 || c >= 0x7f || c == ' ' || c == '"' || c == '\'' ||
	       c == '\\';
}

static void allow(struct auth_user_rules *r, unsigned char c)
{
	if (!auth_user_char_forbidden(c))
		r->allowed[c / 8] |= (uint8_t)(1U << (c % 8));
}

static bool allowed(const struct auth_user_rules *r, unsigned char c)
{
	return (r->allowed[c / 8] & (1U << (c % 8))) != 0;
}

struct format_def {
	const char *name;
	bool lowercase;
	bool drop_domain;
};

static const struct format_def formats[] = {
    {"%u", false, false},         {"%Lu", true, false},
    {"%n", false, true},          {"%Ln", true, true},
    {"%{user}", false, false},    {"%L{user}", true, false},
    {"%{username}", false, true}, {"%L{username}", true, true},
};

struct auth_user_rules *auth_user_rules_new(const char *chars,
					    const char *format, size_t max_len,
					    const char **error_r)
{
	const struct format_def *fmt = NULL;

	if (format == NULL)
		format = AUTH_USER_DEFAULT_FORMAT;
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		if (strcmp(format, formats[i].name) == 0) {
			fmt = &formats[i];
			break;
		}
	}
	if (fmt == NULL) {
		*error_r = "unsupported username format (use %u, %Lu, %n or "
			   "%Ln)";
		return NULL;
	}
	if (max_len == 0)
		max_len = AUTH_USER_DEFAULT_MAX_LEN;
	if (max_len > AUTH_USER_MAX_LEN) {
		*error_r = "username max length is too large";
		return NULL;
	}

	struct auth_user_rules *r = xcalloc(1, sizeof(*r));
	r->max_len = max_len;
	r->lowercase = fmt->lowercase;
	r->drop_domain = fmt->drop_domain;
	if (chars == NULL)
		chars = AUTH_USER_DEFAULT_CHARS;
	if (chars[0] == '\0') {
		for (unsigned c = 0; c < 256; c++)
			allow(r, (unsigned char)c);
	} else {
		for (const char *p = chars; *p != '\0'; p++)
			allow(r, (unsigned char)*p);
	}
	return r;
}

void auth_user_rules_free(struct auth_user_rules **rules)
{
	xfree(rules);
}

int auth_user_normalize(const struct auth_user_rules *rules, struct str user,
			char *out, size_t outsize, const char **error_r)
{
	if (outsize > 0)
		out[0] = '\0';
	if (user.len == 0) {
		*error_r = "empty user name";
		return -1;
	}
	if (user.len > rules->max_len || user.len >= outsize) {
		*error_r = "user name too long";
		return -1;
	}
	for (size_t i = 0; i < user.len; i++) {
		unsigned char c = (unsigned char)user.p[i];
		if (auth_user_char_forbidden(c) || !allowed(rules, c)) {
			*error_r = "user name contains a disallowed character";
			return -1;
		}
	}
	if (rules->drop_domain) {
		struct str domain;
		(void)auth_user_split(user, &user, &domain);
		if (user.len == 0) {
			*error_r = "empty user name";
			return -1;
		}
	}
	for (size_t i = 0; i < user.len; i++) {
		char c = user.p[i];
		if (rules->lowercase && c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[i] = c;
	}
	out[user.len] = '\0';
	return 0;
}

bool auth_user_split(struct str user, struct str *name_r, struct str *domain_r)
{
	return str_split(user, '@', name_r, domain_r);
}
