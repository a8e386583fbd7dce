#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "auth/password_scheme.h"

/* Fixed vectors made by the system tools on Debian 12:
 *   doveadm pw -s SCHEME -p PASSWORD  (Dovecot 2.3)
 *   openssl passwd -6|-5|-1 -salt Zx9mQ2pL secret  (OpenSSL 3.0)
 *   python3 crypt.crypt() (libxcrypt) for yescrypt, DES and $2b$ */
struct vector {
	const char *password;
	const char *stored;
};

static const struct vector good[] = {
    /* doveadm pw ... -p pass */
    {"pass", "{SHA512-CRYPT}$6$LrqbHZ7WzuN30RnB$GPb/rj23VpA.J/fe4auC/"
	     "KVXvHo7vXFHNxWtzH2MBw57EZdXQWMAbFe0Ytd2XP2r6GzRTS3YeXuvihm"
	     "wr4DGw/"},
    {"pass", "{SHA256-CRYPT}$5$KmPBy8C6HgMh8Tg0$cUW0apjOaP1ZlGnZMt0W9M/"
	     "9BphV.c5YrzVfhkteF/8"},
    {"pass", "{MD5-CRYPT}$1$NvQ8nCCg$ubkofG8JW.HQX2x9L6x0h."},
    {"pass", "{BLF-CRYPT}$2y$05$CcjCUYB0qG93QzloJfyoqOx9oeI5LNqE/al/"
	     "7is9apL0LwF5bB35G"},
    {"pass", "{CRYPT}$2y$05$m6eYGtFQS2VigMM3vLDOmuWwm./5/"
	     "LdJw0.z7mjPbIUsAghPrd/iS"},
    {"pass", "{SSHA}VJKX2mdOaxrjcvb4ijF739lpxIPFzm5G"},
    {"pass", "{SSHA256}upQLHOXMTAqSCApdf+DMv8k4XKtGRARlpk7EcK1Byw5ZUv5H"},
    {"pass", "{SSHA512}KXwyItmm/maFUEvEIuDkhZ0GTekIRFEoqN8azNF9rA6oEOxVY"
	     "ivKjE2b6YmZ9xGmel2jt+xwVqLbEJ4StTdWfCgTdhQ="},
    {"pass", "{SSHA512.HEX}2e642bf09d0277df32ed98e3080571db149d2fc0412ec"
	     "8a777b43a1e8d71333ab5b318f158a48ccbbf9b8225cb7f60b4dc81931"
	     "22bfa5318a04fd539fcf341825cb2770e"},
    {"pass", "{SHA}nU4eI71bcnBGqeO0t9tXvY1u5oQ="},
    {"pass", "{SHA256}10/w7o2juYBrGMh32/KbveULW9jk2tejpyUAD+uC6PE="},
    {"pass", "{SHA256.HEX}d74ff0ee8da3b9806b18c877dbf29bbde50b5bd8e4dad7"
	     "a3a725000feb82e8f1"},
    /* hex without suffix: guessed from the length, like Dovecot */
    {"pass", "{SHA256}d74ff0ee8da3b9806b18c877dbf29bbde50b5bd8e4dad7a3a7"
	     "25000feb82e8f1"},
    {"pass", "{SHA512}W3IrMH/ObJRJBdEyaR1eSiIUt/6StziSDrP846kEIKGVEcMBCg"
	     "53ErBU2u9bV7rVnsvZOzKA8hBXj1R/Su1NJQ=="},
    {"pass", "{SMD5}VZ9w8MAtFB5WuYwdl/Q6ANafvWs="},
    {"pass", "{PLAIN-MD5}1a1dc91c907325c69271ddf0c944bc72"},
    {"pass", "{MD5}$1$NvQ8nCCg$ubkofG8JW.HQX2x9L6x0h."},
    {"pass", "{PLAIN}pass"},
    {"pass", "{CLEARTEXT}pass"},
    {"pass", "{PLAIN.B64}cGFzcw=="},
    /* bcrypt cost 10: doveadm pw -s BLF-CRYPT -r 10 -p pass */
    {"pass", "{BLF-CRYPT}$2y$10$geOcd8EKkDoeVDH1WhLbC.CupgBu1ADI2.MwX/"
	     "AeWuyyvl3PTJ3l."},
    /* doveadm pw ... -p 'p@ss w0rd:ü' (UTF-8) */
    {"p@ss w0rd:\xc3\xbc",
     "{SHA512-CRYPT}$6$pLbOwwSTjlFGgAM2$kDgQDxR9pr.SNSa0USMlU4SUAGWQp3A8"
     "4Ls6nd9J7vYLhHy9CMIvI/voAzOwvw9OeH6CWzzqCt.XVc5uWmGOM/"},
    {"p@ss w0rd:\xc3\xbc", "{SHA256-CRYPT}$5$7iIGX1I.XNPFG2HM$dwobDGluB8"
			   "Fef.Cnn.JzE7J.yGR31T74E7zJm0mIkb8"},
    {"p@ss w0rd:\xc3\xbc", "{MD5-CRYPT}$1$oWBQ1XWc$9Z.m7JuhzdU4jcAzRFcNd1"},
    {"p@ss w0rd:\xc3\xbc", "{BLF-CRYPT}$2y$04$gxJi2z/5k4TykpZxtVe.kecReQ"
			   "T3cB8a6CWLLWsczKRZQye3LZlhC"},
    {"p@ss w0rd:\xc3\xbc", "{SSHA}ZqlrW5zVe8j/o5tgcEHOzyHnyu10p0TN"},
    {"p@ss w0rd:\xc3\xbc",
     "{SSHA256}wb6Xgj4+fvZF/aT7v04wFOVSlG9iT+2KqPoeu6gFOZDWsE64"},
    {"p@ss w0rd:\xc3\xbc",
     "{SSHA512}mBS9vxwil15rwDm+/oomxEFRb+rKDIQCVl02/NnoULuUwz2pXQoqfZDlu"
     "lDKWX/HoJM4hQHM8FbyBZIvq0JMTk/aAEk="},
    {"p@ss w0rd:\xc3\xbc", "{SSHA256.HEX}3ced5a0dc712d365a57d83e94d6f5c2"
			   "b111c08de282cb975df9729c23eeca97322ee88f1"},
    {"p@ss w0rd:\xc3\xbc", "{SHA}h6DXALstZx3y4iW/glYf9xA9pws="},
    {"p@ss w0rd:\xc3\xbc", "{SHA.HEX}87a0d700bb2d671df2e225bf82561ff7103"
			   "da70b"},
    {"p@ss w0rd:\xc3\xbc",
     "{SHA256}JcWZVj8oNxz4q4n87wtkrULRiKkVF/f3XCtOEO/dc2A="},
    {"p@ss w0rd:\xc3\xbc",
     "{SHA512}iUuTPG2kR4MCWOEXVmCAzNDjDyzKRL5n/2hnligPgPMG2eF151pG+3nDcnG"
     "ujJMtS+JO/XmWVVpGl3rKeDBfQA=="},
    {"p@ss w0rd:\xc3\xbc", "{SMD5}FSQlzTm8tlbQ3uCTVrwemZINFt4="},
    {"p@ss w0rd:\xc3\xbc", "{PLAIN-MD5}46663cfacb1a35ed87a44a9a25421b66"},
    {"p@ss w0rd:\xc3\xbc", "{LDAP-MD5}RmY8+ssaNe2HpEqaJUIbZg=="},
    {"p@ss w0rd:\xc3\xbc", "{PLAIN.B64}cEBzcyB3MHJkOsO8"},
    /* openssl passwd -6|-5|-1 -salt Zx9mQ2pL secret, bare (default
     * scheme CRYPT) and labelled */
    {"secret", "$6$Zx9mQ2pL$ROrSG/EMAGZ/pPs.wmXsXONoCLHYho5BsOtNrMPAlK0da"
	       "3KhDMOnAcUqXJVkzm3.jMUt3ziEiz7wuH1qrCKzO1"},
    {"secret", "{SHA512-CRYPT}$6$Zx9mQ2pL$ROrSG/EMAGZ/pPs.wmXsXONoCLHYho"
	       "5BsOtNrMPAlK0da3KhDMOnAcUqXJVkzm3.jMUt3ziEiz7wuH1qrCKzO1"},
    {"secret", "$5$Zx9mQ2pL$HhrLhMMCWYsFuD7l1JazfLv4KTfkDU/eGjrlpY6uhp3"},
    /* bare $1$ is MD5-CRYPT whatever the default scheme, as in Dovecot */
    {"secret", "$1$Zx9mQ2pL$RgujrZ3BJCDPkFPUOBoA9."},
    /* libxcrypt: yescrypt, DES, $2b$ */
    {"pass", "{CRYPT}$y$j9T$HGGsTC0Ku3ZgX0jDjMaid0$Q.8Itzv.5Lh/gcmidleeqD"
	     "IqKEo3BqXxc1n1T3zalz4"},
    {"pass", "{CRYPT}abccBcrPOxnLU"},
    {"pass", "{DES-CRYPT}abccBcrPOxnLU"},
    {"pass", "{BLF-CRYPT}$2b$05$1dB2qa3RQL9OEKc6UepYA.jpkLyThmooUJLlQduPu"
	     "3r23RhAfUscm"},
    /* scheme names are case-insensitive */
    {"pass", "{sha512-crypt}$6$LrqbHZ7WzuN30RnB$GPb/rj23VpA.J/fe4auC/KVX"
	     "vHo7vXFHNxWtzH2MBw57EZdXQWMAbFe0Ytd2XP2r6GzRTS3YeXuvihmwr4DG"
	     "w/"},
    {"pass", "{ssha512.hex}2e642bf09d0277df32ed98e3080571db149d2fc0412ec8"
	     "a777b43a1e8d71333ab5b318f158a48ccbbf9b8225cb7f60b4dc8193122"
	     "bfa5318a04fd539fcf341825cb2770e"},
};

static void test_vectors_match(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const char *error = "unset";
		enum password_result r = password_verify(
		    good[i].password, good[i].stored, NULL, &error);
		if (r != PASSWORD_MATCH)
			print_error("vector %zu (%s): %s: %s\n", i,
				    good[i].stored, password_result_str(r),
				    error);
		assert_int_equal(r, PASSWORD_MATCH);
		assert_null(error);
	}
}

static void test_vectors_wrong_password(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const char *error = NULL;
		const char *wrong[] = {"Pass", "pass ",       "",
				       "pas",  "p@ss w0rd:u", "secret1"};
		for (size_t j = 0; j < sizeof(wrong) / sizeof(wrong[0]); j++) {
			if (strcmp(wrong[j], good[i].password) == 0)
				continue;
			enum password_result r = password_verify(
			    wrong[j], good[i].stored, NULL, &error);
			if (r != PASSWORD_MISMATCH)
				print_error("vector %zu with '%s': %s\n", i,
					    wrong[j], password_result_str(r));
			assert_int_equal(r, PASSWORD_MISMATCH);
			assert_non_null(error);
		}
	}
}

static void test_default_scheme(void **state)
{
	const char *error;
	(void)state;

	/* no prefix: the configured default */
	assert_int_equal(password_verify("pass", "pass", "PLAIN", &error),
			 PASSWORD_MATCH);
	assert_int_equal(password_verify("pass", "nU4eI71bcnBGqeO0t9tXvY1u5oQ=",
					 "SHA", &error),
			 PASSWORD_MATCH);
	assert_int_equal(password_verify("pass", "abccBcrPOxnLU", NULL, &error),
			 PASSWORD_MATCH);
	/* NULL default is CRYPT: "pass" reads as a DES salt "pa" (so just a
	 * mismatch), "!!" is no crypt setting at all */
	assert_int_equal(password_verify("pass", "pass", NULL, &error),
			 PASSWORD_MISMATCH);
	assert_int_equal(password_verify("pass", "!!", NULL, &error),
			 PASSWORD_MALFORMED);
	/* an unknown default scheme is reported as such */
	assert_int_equal(password_verify("pass", "pass", "NOPE", &error),
			 PASSWORD_UNKNOWN_SCHEME);
	/* a '{' without '}' is a value in the default scheme */
	assert_int_equal(password_verify("{pass", "{pass", "PLAIN", &error),
			 PASSWORD_MATCH);
}

static void test_unknown_scheme(void **state)
{
	const char *error = NULL;
	const char *unknown[] = {
	    "{FOO}bar",
	    "{}pass",
	    "{SSHA.XYZ}abc",
	    "{SHA512-CRYPTX}$6$a$b",
	    "{ARGON2ID}$argon2id$v=19$m=65536",
	    "{SCRAM-SHA-256}x",
	    "{CRAM-MD5}x",
	    "{DIGEST-MD5}x",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		assert_int_equal(
		    password_verify("pass", unknown[i], NULL, &error),
		    PASSWORD_UNKNOWN_SCHEME);
		assert_non_null(error);
		/* a distinct value from "wrong password" */
		assert_int_not_equal(PASSWORD_UNKNOWN_SCHEME,
				     PASSWORD_MISMATCH);
	}
	assert_true(password_scheme_is_known("SHA512-CRYPT"));
	assert_true(password_scheme_is_known("ssha512.hex"));
	assert_true(password_scheme_is_known("PLAIN.b64"));
	assert_false(password_scheme_is_known("SSHA512.rot13"));
	assert_false(password_scheme_is_known("FOO"));
	assert_false(password_scheme_is_known(NULL));
	assert_string_equal(password_result_str(PASSWORD_UNKNOWN_SCHEME),
			    "unknown scheme");
}

static void test_malformed(void **state)
{
	const char *error = NULL;
	const char *malformed[] = {
	    "{SSHA}!!!!",                         /* bad base64 character */
	    "{SSHA}VJKX2mdOaxrjcvb4ijF739lp",     /* 18 bytes: too short */
	    "{SSHA}nU4eI71bcnBGqeO0t9tXvY1u5oQ=", /* digest, no salt */
	    "{SSHA512}AAAA",                      /* too short */
	    "{SSHA256}abc=d",                     /* '=' in the middle */
	    "{SSHA256}a",                         /* impossible length */
	    "{SHA256}AAAA",                       /* wrong digest length */
	    "{SHA256.HEX}zz4ff0ee8da3b9806b18c877dbf29bbde50b5bd8e4dad7a3a"
	    "725000feb82e8f1", /* bad hex */
	    "{SHA256.HEX}d74", /* odd hex length */
	    "{SSHA.HEX}0123",  /* too short */
	    "{CRYPT}garbage!", /* not a crypt setting */
	    "{CRYPT}$6",       /* truncated */
	    "{BLF-CRYPT}$2y$99$CcjCUYB0qG93QzloJfyoqOx9oeI5LNqE/al/7is9apL0"
	    "LwF5bB35G",           /* cost out of range */
	    "{SHA512-CRYPT}*0",    /* locked-account marker */
	    "{PLAIN.B64}cGFzcw=!", /* bad base64 */
	};
	(void)state;

	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		enum password_result r =
		    password_verify("pass", malformed[i], NULL, &error);
		if (r != PASSWORD_MALFORMED)
			print_error("'%s': %s\n", malformed[i],
				    password_result_str(r));
		assert_int_equal(r, PASSWORD_MALFORMED);
		assert_non_null(error);
		assert_null(strstr(error, "pass"));
	}
}

static void test_edge_cases(void **state)
{
	const char *error = NULL;
	char *longpw;
	(void)state;

	/* an empty stored value never matches, not even an empty password */
	assert_int_equal(password_verify("", "{PLAIN}", NULL, &error),
			 PASSWORD_MISMATCH);
	assert_int_equal(password_verify("", "{CRYPT}", NULL, &error),
			 PASSWORD_MISMATCH);
	assert_int_equal(password_verify("x", "", "PLAIN", &error),
			 PASSWORD_MISMATCH);
	assert_int_equal(password_verify("x", NULL, "PLAIN", &error),
			 PASSWORD_MISMATCH);
	/* error_r may be NULL */
	assert_int_equal(password_verify("pass", "{PLAIN}pass", NULL, NULL),
			 PASSWORD_MATCH);
	/* a plaintext over the limit never matches, even a PLAIN copy */
	longpw = malloc(PASSWORD_MAX_LEN + 2);
	memset(longpw, 'a', PASSWORD_MAX_LEN + 1);
	longpw[PASSWORD_MAX_LEN + 1] = '\0';
	char *stored = malloc(PASSWORD_MAX_LEN + 10);
	memcpy(stored, "{PLAIN}", 7);
	memcpy(stored + 7, longpw, PASSWORD_MAX_LEN + 2);
	assert_int_equal(password_verify(longpw, stored, NULL, &error),
			 PASSWORD_MISMATCH);
	longpw[PASSWORD_MAX_LEN] = '\0';
	stored[7 + PASSWORD_MAX_LEN] = '\0';
	assert_int_equal(password_verify(longpw, stored, NULL, &error),
			 PASSWORD_MATCH);
	free(longpw);
	free(stored);
	/* PLAIN compares whole strings */
	assert_int_equal(password_verify("pas", "{PLAIN}pass", NULL, &error),
			 PASSWORD_MISMATCH);
	assert_int_equal(password_verify("passs", "{PLAIN}pass", NULL, &error),
			 PASSWORD_MISMATCH);
	/* DES uses 8 characters, as crypt(3) does: documented behaviour */
	assert_int_equal(
	    password_verify("pass", "{CRYPT}abccBcrPOxnLU", NULL, &error),
	    PASSWORD_MATCH);
}

static void test_generate_roundtrip(void **state)
{
	const char *schemes[] = {
	    "SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT",   "BLF-CRYPT",
	    "CRYPT",        "MD5",          "SSHA",        "SSHA256",
	    "SSHA512",      "SMD5",         "SHA",         "SHA1",
	    "SHA256",       "SHA512",       "PLAIN-MD5",   "LDAP-MD5",
	    "PLAIN",        "CLEARTEXT",    "SSHA512.HEX", "SHA256.HEX",
	    "PLAIN.B64",    "ssha512",
	};
	const char *pw = "c0rrect horse:battery\xc3\xa9";
	(void)state;

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		const char *error = NULL;
		char *h = password_generate(pw, schemes[i], 0, &error);
		if (h == NULL)
			print_error("%s: %s\n", schemes[i], error);
		assert_non_null(h);
		assert_int_equal(h[0], '{');
		assert_int_equal(password_verify(pw, h, NULL, &error),
				 PASSWORD_MATCH);
		assert_int_equal(password_verify("wrong", h, NULL, &error),
				 PASSWORD_MISMATCH);
		free(h);
	}
}

static void test_generate_details(void **state)
{
	const char *error = NULL;
	char *a, *b;
	(void)state;

	/* random salts: two hashes of one password differ */
	a = password_generate("pw", "SHA512-CRYPT", 0, &error);
	b = password_generate("pw", "SHA512-CRYPT", 0, &error);
	assert_non_null(a);
	assert_non_null(b);
	assert_true(strncmp(a, "{SHA512-CRYPT}$6$", 17) == 0);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	a = password_generate("pw", "SSHA512", 0, &error);
	b = password_generate("pw", "SSHA512", 0, &error);
	assert_true(strncmp(a, "{SSHA512}", 9) == 0);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	/* the scheme name comes out canonical, with the encoding suffix */
	a = password_generate("pw", "ssha512.hex", 0, &error);
	assert_true(strncmp(a, "{SSHA512.HEX}", 13) == 0);
	free(a);
	a = password_generate("pw", "BLF-CRYPT", 0, &error);
	assert_true(strncmp(a, "{BLF-CRYPT}$2y$", 15) == 0);
	free(a);
	/* rounds */
	a = password_generate("pw", "SHA512-CRYPT", 10000, &error);
	assert_non_null(a);
	assert_non_null(strstr(a, "$6$rounds=10000$"));
	assert_int_equal(password_verify("pw", a, NULL, &error),
			 PASSWORD_MATCH);
	free(a);
	a = password_generate("pw", "BLF-CRYPT", 4, &error);
	assert_non_null(a);
	assert_true(strncmp(a, "{BLF-CRYPT}$2y$04$", 18) == 0);
	free(a);
	assert_null(password_generate("pw", "BLF-CRYPT", 99, &error));
	assert_non_null(error);
	assert_null(password_generate("pw", "SSHA512", 5, &error));
	/* unknown, weak or impossible requests */
	assert_null(password_generate("pw", "FOO", 0, &error));
	assert_string_equal(error, "unknown password scheme");
	assert_null(password_generate("pw", "SSHA.ROT13", 0, &error));
	assert_null(password_generate("pw", "DES-CRYPT", 0, &error));
	assert_null(password_generate("pw", NULL, 0, &error));
	char *longpw = malloc(PASSWORD_MAX_LEN + 2);
	memset(longpw, 'x', PASSWORD_MAX_LEN + 1);
	longpw[PASSWORD_MAX_LEN + 1] = '\0';
	assert_null(password_generate(longpw, "SSHA512", 0, &error));
	free(longpw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors_match),
	    cmocka_unit_test(test_vectors_wrong_password),
	    cmocka_unit_test(test_default_scheme),
	    cmocka_unit_test(test_unknown_scheme),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_edge_cases),
	    cmocka_unit_test(test_generate_roundtrip),
	    cmocka_unit_test(test_generate_details),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
