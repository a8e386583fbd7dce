#include "password_scheme.h"

#include <crypt.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth_hash.h"
#include "base64.h"
#include "buf.h"
#include "str.h"
#include "xmalloc.h"

enum pw_kind {
	PW_PLAIN = 0, /* raw value is the password */
	PW_CRYPT,     /* raw value is a crypt(3) hash */
	PW_MD5,       /* Dovecot's MD5: $1$ crypt, otherwise PLAIN-MD5 */
	PW_DIGEST,    /* raw value is digest(password) */
	PW_SALTED,    /* raw value is digest(password || salt) || salt */
};

enum pw_encoding {
	ENC_NONE = 0,
	ENC_BASE64,
	ENC_HEX,
};

struct pw_scheme {
	const char *name;
	enum pw_kind kind;
	enum pw_encoding encoding; /* default encoding */
	const EVP_MD *(*md)(void); /* digest kinds */
	size_t digest_len;         /* digest kinds */
	const char *crypt_prefix;  /* generation: gensalt prefix, NULL = the
				      preferred method */
	bool can_generate;
};

static const struct pw_scheme pw_schemes[] = {
    {"PLAIN", PW_PLAIN, ENC_NONE, NULL, 0, NULL, true},
    {"CLEARTEXT", PW_PLAIN, ENC_NONE, NULL, 0, NULL, true},
    {"CLEAR", PW_PLAIN, ENC_NONE, NULL, 0, NULL, true},
    {"CRYPT", PW_CRYPT, ENC_NONE, NULL, 0, NULL, true},
    {"DES-CRYPT", PW_CRYPT, ENC_NONE, NULL, 0, NULL, false},
    {"MD5-CRYPT", PW_CRYPT, ENC_NONE, NULL, 0, "$1$", true},
    {"SHA256-CRYPT", PW_CRYPT, ENC_NONE, NULL, 0, "$5$", true},
    {"SHA512-CRYPT", PW_CRYPT, ENC_NONE, NULL, 0, "$6$", true},
    {"BLF-CRYPT", PW_CRYPT, ENC_NONE, NULL, 0, "$2y$", true},
    {"MD5", PW_MD5, ENC_NONE, EVP_md5, 16, "$1$", true},
    {"PLAIN-MD5", PW_DIGEST, ENC_HEX, EVP_md5, 16, NULL, true},
    {"LDAP-MD5", PW_DIGEST, ENC_BASE64, EVP_md5, 16, NULL, true},
    {"SHA", PW_DIGEST, ENC_BASE64, EVP_sha1, 20, NULL, true},
    {"SHA1", PW_DIGEST, ENC_BASE64, EVP_sha1, 20, NULL, true},
    {"SHA256", PW_DIGEST, ENC_BASE64, EVP_sha256, 32, NULL, true},
    {"SHA512", PW_DIGEST, ENC_BASE64, EVP_sha512, 64, NULL, true},
    {"SMD5", PW_SALTED, ENC_BASE64, EVP_md5, 16, NULL, true},
    {"SSHA", PW_SALTED, ENC_BASE64, EVP_sha1, 20, NULL, true},
    {"SSHA256", PW_SALTED, ENC_BASE64, EVP_sha256, 32, NULL, true},
    {"SSHA512", PW_SALTED, ENC_BASE64, EVP_sha512, 64, NULL, true},
};

/* Longest stored value we decode, and the decoded size it can give. */
#define PW_VALUE_MAX 2048
#define PW_RAW_MAX (PW_VALUE_MAX / 4 * 3)
#define PW_SALT_LEN 8
#define PW_DIGEST_MAX EVP_MAX_MD_SIZE

struct pw_spec {
	const struct pw_scheme *scheme;
	enum pw_encoding encoding;
	bool explicit_encoding;
};

/* Resolves "NAME[.ENC]" (case-insensitive). */
static bool pw_lookup(struct str name, struct pw_spec *spec_r)
{
	struct str base, suffix;
	bool has_suffix = str_split(name, '.', &base, &suffix);

	spec_r->scheme = NULL;
	for (size_t i = 0; i < sizeof(pw_schemes) / sizeof(pw_schemes[0]);
	     i++) {
		if (str_eq_nocase(base, str_cstr(pw_schemes[i].name))) {
			spec_r->scheme = &pw_schemes[i];
			break;
		}
	}
	if (spec_r->scheme == NULL)
		return false;
	spec_r->explicit_encoding = has_suffix;
	if (!has_suffix)
		spec_r->encoding = spec_r->scheme->encoding;
	else if (str_eq_nocase(suffix, STR("B64")) ||
		 str_eq_nocase(suffix, STR("BASE64")))
		spec_r->encoding = ENC_BASE64;
	else if (str_eq_nocase(suffix, STR("HEX")))
		spec_r->encoding = ENC_HEX;
	else
		return false;
	return true;
}

bool password_scheme_is_known(const char *name)
{
	struct pw_spec spec;

	return name != NULL && pw_lookup(str_cstr(name), &spec);
}

/* ---- encodings --------------------------------------------------------- */

/* Decodes base64 (padding optional, as Dovecot writes some hashes) into
 * out; -1 on invalid input or more than outsize bytes. */
static int b64_decode_into(struct str in, uint8_t *out, size_t outsize,
			   size_t *outlen_r)
{
	struct buf *b = buf_new_secret(outsize, outsize);
	int ret = base64_decode_unpadded(in, b);
	if (ret == 0) {
		memcpy(out, b->data, b->len);
		*outlen_r = b->len;
	}
	buf_free(&b);
	return ret;
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int hex_decode(struct str in, uint8_t *out, size_t outsize,
		      size_t *outlen_r)
{
	if (in.len % 2 != 0 || in.len / 2 > outsize)
		return -1;
	for (size_t i = 0; i < in.len; i += 2) {
		int hi = hex_value((unsigned char)in.p[i]);
		int lo = hex_value((unsigned char)in.p[i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	*outlen_r = in.len / 2;
	return 0;
}

/* Appends the encoding of data to b (which has room: callers size it). */
static void encode_into(char *dst, size_t *o, const uint8_t *data, size_t len,
			enum pw_encoding enc)
{
	static const char hex[] = "0123456789abcdef";

	if (enc == ENC_HEX) {
		for (size_t i = 0; i < len; i++) {
			dst[(*o)++] = hex[data[i] >> 4];
			dst[(*o)++] = hex[data[i] & 15];
		}
		return;
	}
	if (enc == ENC_NONE) {
		memcpy(dst + *o, data, len);
		*o += len;
		return;
	}
	struct buf *b = buf_new(len * 4 / 3 + 4, len * 4 / 3 + 4);
	base64_encode(data, len, b);
	memcpy(dst + *o, b->data, b->len);
	*o += b->len;
	buf_free(&b);
}

/* ---- primitives ---------------------------------------------------------- */

static bool md_digest(const EVP_MD *md, const void *a, size_t alen,
		      const void *b, size_t blen, uint8_t *out,
		      size_t *outlen_r)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	bool ok;

	if (ctx == NULL || md == NULL)
		return false;
	ok = EVP_DigestInit_ex(ctx, md, NULL) == 1 &&
	     EVP_DigestUpdate(ctx, a, alen) == 1 &&
	     (blen == 0 || EVP_DigestUpdate(ctx, b, blen) == 1) &&
	     EVP_DigestFinal_ex(ctx, out, &n) == 1;
	EVP_MD_CTX_free(ctx);
	*outlen_r = n;
	return ok;
}

static enum password_result verify_plain(const char *plaintext,
					 const uint8_t *raw, size_t raw_len,
					 const char **error_r)
{
	uint8_t d1[PW_DIGEST_MAX], d2[PW_DIGEST_MAX];
	size_t n1, n2;

	/* Comparing digests keeps the time independent of where the
	 * strings differ and of their lengths. */
	if (!md_digest(EVP_sha256(), plaintext, strlen(plaintext), NULL, 0, d1,
		       &n1) ||
	    !md_digest(EVP_sha256(), raw, raw_len, NULL, 0, d2, &n2)) {
		*error_r = "SHA-256 failed";
		return PASSWORD_INTERNAL;
	}
	bool eq = n1 == n2 && CRYPTO_memcmp(d1, d2, n1) == 0;
	str_wipe(d1, sizeof(d1));
	str_wipe(d2, sizeof(d2));
	if (!eq) {
		*error_r = "password mismatch";
		return PASSWORD_MISMATCH;
	}
	return PASSWORD_MATCH;
}

/* Runs crypt_rn with a private work area; returns a malloc'd copy of the
 * result or NULL with errno set. */
static char *crypt_alloc(const char *plaintext, const char *setting)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	char *ret = NULL;

	errno = 0;
	const char *out = crypt_rn(plaintext, setting, cd, (int)sizeof(*cd));
	int saved_errno = errno;
	if (out != NULL && out[0] != '*')
		ret = xstrdup(out);
	else if (saved_errno == 0)
		saved_errno = EINVAL;
	str_wipe(cd, sizeof(*cd));
	free(cd);
	errno = saved_errno;
	return ret;
}

static enum password_result verify_crypt(const char *plaintext,
					 const char *hash, const char **error_r)
{
	if (hash[0] == '\0') {
		/* crypt would happily "match" an empty setting */
		*error_r = "empty crypt() hash";
		return PASSWORD_MISMATCH;
	}
	char *out = crypt_alloc(plaintext, hash);
	if (out == NULL) {
		if (errno == ENOMEM) {
			*error_r = "crypt() ran out of memory";
			return PASSWORD_INTERNAL;
		}
		*error_r = "invalid crypt() hash or unsupported crypt() method";
		return PASSWORD_MALFORMED;
	}
	size_t ol = strlen(out), hl = strlen(hash);
	bool eq = ol == hl && CRYPTO_memcmp(out, hash, hl) == 0;
	free(out);
	if (!eq) {
		*error_r = "password mismatch";
		return PASSWORD_MISMATCH;
	}
	return PASSWORD_MATCH;
}

static enum password_result verify_digest(const struct pw_scheme *s,
					  const char *plaintext,
					  const uint8_t *raw, size_t raw_len,
					  const char **error_r)
{
	uint8_t d[PW_DIGEST_MAX];
	size_t n;
	const uint8_t *salt = NULL;
	size_t salt_len = 0;

	if (s->kind == PW_SALTED) {
		if (raw_len <= s->digest_len) {
			*error_r = "salted hash is too short";
			return PASSWORD_MALFORMED;
		}
		salt = raw + s->digest_len;
		salt_len = raw_len - s->digest_len;
	} else if (raw_len != s->digest_len) {
		*error_r = "hash has the wrong length for its scheme";
		return PASSWORD_MALFORMED;
	}
	if (!md_digest(s->md(), plaintext, strlen(plaintext), salt, salt_len, d,
		       &n) ||
	    n != s->digest_len) {
		*error_r = "digest computation failed";
		return PASSWORD_INTERNAL;
	}
	bool eq = CRYPTO_memcmp(d, raw, n) == 0;
	str_wipe(d, sizeof(d));
	if (!eq) {
		*error_r = "password mismatch";
		return PASSWORD_MISMATCH;
	}
	return PASSWORD_MATCH;
}

/* Decodes value per spec, guessing hex vs base64 like Dovecot when the
 * scheme has a fixed digest length and no explicit encoding was given. */
static int decode_value(const struct pw_spec *spec, struct str value,
			uint8_t *raw, size_t *raw_len_r, const char **error_r)
{
	enum pw_encoding enc = spec->encoding;
	const struct pw_scheme *s = spec->scheme;

	if (value.len > PW_VALUE_MAX) {
		*error_r = "stored hash is too long";
		return -1;
	}
	if (s->digest_len != 0 && !spec->explicit_encoding &&
	    (s->kind == PW_DIGEST || s->kind == PW_MD5)) {
		if (value.len == s->digest_len * 2 &&
		    hex_decode(value, raw, PW_RAW_MAX, raw_len_r) == 0)
			return 0;
		enc = ENC_BASE64;
	}
	switch (enc) {
	case ENC_NONE:
		if (value.len > PW_RAW_MAX) {
			*error_r = "stored hash is too long";
			return -1;
		}
		memcpy(raw, value.p, value.len);
		*raw_len_r = value.len;
		return 0;
	case ENC_HEX:
		if (hex_decode(value, raw, PW_RAW_MAX, raw_len_r) < 0) {
			*error_r = "stored hash is not valid hex";
			return -1;
		}
		return 0;
	case ENC_BASE64:
		if (b64_decode_into(value, raw, PW_RAW_MAX, raw_len_r) < 0) {
			*error_r = "stored hash is not valid base64";
			return -1;
		}
		return 0;
	}
	*error_r = "unknown encoding";
	return -1;
}

/* Splits stored into scheme name and value. Returns false when there is no
 * scheme prefix. */
static bool split_stored(const char *stored, struct str *scheme_r,
			 const char **value_r)
{
	if (stored[0] == '{') {
		const char *end = strchr(stored, '}');
		if (end != NULL) {
			*scheme_r =
			    str_from(stored + 1, (size_t)(end - stored - 1));
			*value_r = end + 1;
			return true;
		}
	} else if (strncmp(stored, "$1$", 3) == 0 &&
		   strchr(stored + 3, '$') != NULL) {
		*scheme_r = STR("MD5-CRYPT");
		*value_r = stored;
		return true;
	}
	*value_r = stored;
	return false;
}

static enum password_result verify_raw(const struct pw_spec *spec,
				       const char *plaintext,
				       const uint8_t *raw, size_t raw_len,
				       const char **error_r)
{
	const struct pw_scheme *s = spec->scheme;

	switch (s->kind) {
	case PW_PLAIN:
		return verify_plain(plaintext, raw, raw_len, error_r);
	case PW_CRYPT:
		if (memchr(raw, '\0', raw_len) != NULL) {
			*error_r = "crypt() hash contains NUL";
			return PASSWORD_MALFORMED;
		}
		/* raw is NUL-terminated by the caller */
		return verify_crypt(plaintext, (const char *)raw, error_r);
	case PW_MD5:
	case PW_DIGEST:
	case PW_SALTED:
		return verify_digest(s, plaintext, raw, raw_len, error_r);
	}
	*error_r = "unknown scheme kind";
	return PASSWORD_INTERNAL;
}

enum password_result password_verify(const char *plaintext, const char *stored,
				     const char *default_scheme,
				     const char **error_r)
{
	const char *dummy_error, *value;
	struct str scheme;
	struct pw_spec spec;
	uint8_t raw[PW_RAW_MAX + 1];
	size_t raw_len = 0;
	enum password_result ret;

	if (error_r == NULL)
		error_r = &dummy_error;
	*error_r = NULL;
	if (stored == NULL || plaintext == NULL) {
		*error_r = "no password";
		return PASSWORD_MISMATCH;
	}
	if (!split_stored(stored, &scheme, &value))
		scheme =
		    str_cstr(default_scheme == NULL ? "CRYPT" : default_scheme);
	if (!pw_lookup(scheme, &spec)) {
		*error_r = "unknown password scheme";
		return PASSWORD_UNKNOWN_SCHEME;
	}
	if (value[0] == '\0') {
		*error_r = "empty stored password";
		return PASSWORD_MISMATCH;
	}
	if (strlen(plaintext) > PASSWORD_MAX_LEN) {
		*error_r = "password too long";
		return PASSWORD_MISMATCH;
	}

	if (spec.scheme->kind == PW_MD5 && strncmp(value, "$1$", 3) == 0)
		return verify_crypt(plaintext, value, error_r);
	if (spec.encoding == ENC_NONE && spec.scheme->kind == PW_CRYPT)
		return verify_crypt(plaintext, value, error_r);
	if (spec.encoding == ENC_NONE && spec.scheme->kind == PW_PLAIN)
		return verify_plain(plaintext, (const uint8_t *)value,
				    strlen(value), error_r);

	if (decode_value(&spec, str_cstr(value), raw, &raw_len, error_r) < 0)
		return PASSWORD_MALFORMED;
	raw[raw_len] = '\0';
	ret = verify_raw(&spec, plaintext, raw, raw_len, error_r);
	str_wipe(raw, sizeof(raw));
	return ret;
}

/* ---- generation ---------------------------------------------------------- */

char *password_generate(const char *plaintext, const char *scheme,
			unsigned int rounds, const char **error_r)
{
	const char *dummy_error;
	struct pw_spec spec;
	uint8_t raw[PW_DIGEST_MAX + PW_SALT_LEN];
	const uint8_t *data = raw;
	size_t data_len = 0;
	char *hash = NULL;

	if (error_r == NULL)
		error_r = &dummy_error;
	*error_r = NULL;
	if (scheme == NULL || !pw_lookup(str_cstr(scheme), &spec)) {
		*error_r = "unknown password scheme";
		return NULL;
	}
	const struct pw_scheme *s = spec.scheme;
	if (!s->can_generate) {
		*error_r = "refusing to generate this (weak) scheme";
		return NULL;
	}
	if (plaintext == NULL || strlen(plaintext) > PASSWORD_MAX_LEN) {
		*error_r = "password too long";
		return NULL;
	}
	if (rounds != 0 && s->kind != PW_CRYPT && s->kind != PW_MD5) {
		*error_r = "rounds are only supported by crypt schemes";
		return NULL;
	}

	switch (s->kind) {
	case PW_PLAIN:
		data = (const uint8_t *)plaintext;
		data_len = strlen(plaintext);
		break;
	case PW_CRYPT:
	case PW_MD5: {
		char setting[CRYPT_GENSALT_OUTPUT_SIZE];
		if (crypt_gensalt_rn(s->crypt_prefix, rounds, NULL, 0, setting,
				     (int)sizeof(setting)) == NULL) {
			*error_r = "crypt_gensalt() failed (bad rounds?)";
			return NULL;
		}
		hash = crypt_alloc(plaintext, setting);
		if (hash == NULL) {
			*error_r = "crypt() failed";
			return NULL;
		}
		data = (const uint8_t *)hash;
		data_len = strlen(hash);
		if (!spec.explicit_encoding)
			spec.encoding = ENC_NONE;
		break;
	}
	case PW_DIGEST:
	case PW_SALTED: {
		const uint8_t *salt = NULL;
		size_t salt_len = 0, n;
		if (s->kind == PW_SALTED) {
			salt = raw + s->digest_len;
			salt_len = PW_SALT_LEN;
			auth_random_bytes(raw + s->digest_len, PW_SALT_LEN);
		}
		if (!md_digest(s->md(), plaintext, strlen(plaintext), salt,
			       salt_len, raw, &n) ||
		    n != s->digest_len) {
			*error_r = "digest computation failed";
			return NULL;
		}
		data_len = n + salt_len;
		break;
	}
	}

	const char *suffix = !spec.explicit_encoding    ? ""
			     : spec.encoding == ENC_HEX ? ".HEX"
							: ".B64";
	size_t cap = strlen(s->name) + strlen(suffix) + 3 + data_len * 2 + 4;
	char *out = xmalloc(cap);
	size_t o = 0;
	out[o++] = '{';
	memcpy(out + o, s->name, strlen(s->name));
	o += strlen(s->name);
	memcpy(out + o, suffix, strlen(suffix));
	o += strlen(suffix);
	out[o++] = '}';
	encode_into(out, &o, data, data_len, spec.encoding);
	out[o] = '\0';

	str_wipe(raw, sizeof(raw));
	free(hash);
	return out;
}

const char *password_result_str(enum password_result r)
{
	switch (r) {
	case PASSWORD_MISMATCH:
		return "mismatch";
	case PASSWORD_MATCH:
		return "match";
	case PASSWORD_UNKNOWN_SCHEME:
		return "unknown scheme";
	case PASSWORD_MALFORMED:
		return "malformed hash";
	case PASSWORD_INTERNAL:
		return "internal error";
	}
	return "?";
}
