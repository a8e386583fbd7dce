/* Unit tests of backend/mime.[ch]: the parser's tree and offsets, the IMAP
 * writers (checked against Dovecot 2.3.19 answers for the corpus in
 * tests/data/mail and for extra malformed messages), section lookup,
 * HEADER.FIELDS filtering, RFC 2047 and body decoding, dates, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/mime.h"
#include "buf.h"

/* ---- helpers ------------------------------------------------------------ */

struct corpus_expect {
	const char *file;
	uint64_t size; /* RFC822.SIZE */
	const char *envelope;
	const char *bodystructure;
	const char *body;
};

struct oracle_case {
	const char *msg;
	size_t msg_len;
	uint64_t size;
	const char *envelope;
	const char *bodystructure;
};

/* Generated from Dovecot 2.3.19 (Debian) answers to
 * FETCH 1:* (ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE) over these files. */
static const struct corpus_expect corpus_expect[] = {
    {"01-plain-ascii.eml", 481,
     "(\"Thu, 01 Jan 2026 15:00:00 +0000\" \"Plain text message\" (("
     "\"Alice Example\" NIL \"alice\" \"example.org\")) ((\"Alice Ex"
     "ample\" NIL \"alice\" \"example.org\")) ((\"Alice Example\" NI"
     "L \"alice\" \"example.org\")) ((\"Bob Example\" NIL \"bob\" \""
     "example.net\")) NIL NIL NIL \"<plain-1@example.org>\")",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 300 6 NIL NIL NIL NIL)",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 300 6)"},
    {"02-multipart-alternative.eml", 787,
     "(\"Thu, 01 Jan 2026 22:00:00 +0000\" \"=?UTF-8?B?w4RwZmVsIHVuZ"
     "CBCaXJuZW4=?= weekly\" ((\"News, Letter\" NIL \"news\" \"examp"
     "le.com\")) ((\"News, Letter\" NIL \"news\" \"example.com\")) ("
     "(\"News, Letter\" NIL \"news\" \"example.com\")) ((NIL NIL \"b"
     "ob\" \"example.net\")(\"Carol C.\" NIL \"carol\" \"example.net"
     "\")) ((NIL NIL \"dave\" \"example.net\")) NIL NIL \"<alt-2@exa"
     "mple.com>\")",
     "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-"
     "printable\" 126 0 NIL NIL NIL NIL)(\"text\" \"html\" (\"charse"
     "t\" \"utf-8\") NIL NIL \"8bit\" 59 0 NIL NIL NIL NIL) \"altern"
     "ative\" (\"boundary\" \"alt-boundary-42\") NIL NIL NIL)",
     "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-"
     "printable\" 126 0)(\"text\" \"html\" (\"charset\" \"utf-8\") N"
     "IL NIL \"8bit\" 59 0) \"alternative\")"},
    {"03-mixed-attachment.eml", 9081,
     "(\"Fri, 02 Jan 2026 05:00:00 +0000\" \"Report with attachment\""
     " ((NIL NIL \"carol\" \"example.net\")) ((NIL NIL \"carol\" \"e"
     "xample.net\")) ((NIL NIL \"carol\" \"example.net\")) ((NIL NIL"
     " \"bob\" \"example.net\")) NIL NIL NIL \"<mixed-3@example.net>"
     "\")",
     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit"
     "\" 22 0 NIL NIL NIL NIL)(\"application\" \"octet-stream\" (\"n"
     "ame\" \"report.bin\") NIL NIL \"base64\" 8210 NIL (\"attachmen"
     "t\" (\"filename\" \"report.bin\")) NIL NIL)(\"image\" \"png\" "
     "(\"name\" \"=?ISO-8859-1?Q?gr=FC=DFe.png?=\") \"<img1@example."
     "net>\" NIL \"base64\" 96 NIL (\"inline\" (\"filename*\" \"UTF-"
     "8''gr%C3%BC%C3%9Fe.png\")) (\"de\") \"http://example.net/img.p"
     "ng\") \"mixed\" (\"boundary\" \"==mixed==\") NIL NIL NIL)",
     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit"
     "\" 22 0)(\"application\" \"octet-stream\" (\"name\" \"report.b"
     "in\") NIL NIL \"base64\" 8210)(\"image\" \"png\" (\"name\" \"="
     "?ISO-8859-1?Q?gr=FC=DFe.png?=\") \"<img1@example.net>\" NIL \""
     "base64\" 96) \"mixed\")"},
    {"04-nested-rfc822.eml", 830,
     "(\"Fri, 02 Jan 2026 19:00:00 +0000\" \"Fwd: Inner forwarded me"
     "ssage\" ((NIL NIL \"alice\" \"example.org\")) ((NIL NIL \"alic"
     "e\" \"example.org\")) ((NIL NIL \"alice\" \"example.org\")) (("
     "NIL NIL \"bob\" \"example.net\")) NIL NIL \"<inner-4@example.o"
     "rg>\" \"<fwd-5@example.org>\")",
     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit"
     "\" 16 0 NIL NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \""
     "7bit\" 374 (\"Fri, 02 Jan 2026 12:00:00 +0000\" \"Inner forwar"
     "ded message\" ((\"Eve\" NIL \"eve\" \"example.org\")) ((\"Eve\""
     " NIL \"eve\" \"example.org\")) ((\"Eve\" NIL \"eve\" \"example"
     ".org\")) ((NIL NIL \"alice\" \"example.org\")) NIL NIL NIL \"<"
     "inner-4@example.org>\") ((\"text\" \"plain\" (\"charset\" \"us"
     "-ascii\") NIL NIL \"7bit\" 11 0 NIL NIL NIL NIL)(\"text\" \"en"
     "riched\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 27 0 NIL "
     "NIL NIL NIL) \"alternative\" (\"boundary\" \"inner-b\") NIL NI"
     "L NIL) 17 NIL (\"inline\" NIL) NIL NIL) \"mixed\" (\"boundary\""
     " \"outer\") NIL NIL NIL)",
     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit"
     "\" 16 0)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 374 (\"Fr"
     "i, 02 Jan 2026 12:00:00 +0000\" \"Inner forwarded message\" (("
     "\"Eve\" NIL \"eve\" \"example.org\")) ((\"Eve\" NIL \"eve\" \""
     "example.org\")) ((\"Eve\" NIL \"eve\" \"example.org\")) ((NIL "
     "NIL \"alice\" \"example.org\")) NIL NIL NIL \"<inner-4@example"
     ".org>\") ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL N"
     "IL \"7bit\" 11 0)(\"text\" \"enriched\" (\"charset\" \"us-asci"
     "i\") NIL NIL \"7bit\" 27 0) \"alternative\") 17) \"mixed\")"},
    {"05-folded-headers-no-date.eml", 7659,
     "(NIL {444}\r\nFolded subject message message storage login use"
     "r cache ring director ring drain folder cache weight folder lo"
     "gin session director director director director cache ring wei"
     "ght storage mailbox folder mailbox hea lth drain message mailb"
     "ox director storage storage director health rin g folder healt"
     "h folder proxy health replica ring backend quota replica stora"
     "ge user proxy quota weight backend mailbox weight weight folde"
     "r message weight storage ((\"=?utf-8?q?J=C3=BCrgen_M=C3=BCller"
     "?=\" NIL \"juergen\" \"example.de\")) ((\"=?utf-8?q?J=C3=BCrge"
     "n_M=C3=BCller?=\" NIL \"juergen\" \"example.de\")) ((\"=?utf-8"
     "?q?J=C3=BCrgen_M=C3=BCller?=\" NIL \"juergen\" \"example.de\")"
     ") ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
     "NIL NIL NIL \"<folded-6@example.de>\")",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 5035 1 NIL NIL NIL NIL)",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 5035 1)"},
    {"06-malformed-mime.eml", 450,
     "(\"not a date at all\" \"Broken MIME: missing closing boundary"
     " and bad headers\" ((NIL NIL \"broken\" \"example.com\")) ((NI"
     "L NIL \"broken\" \"example.com\")) ((NIL NIL \"broken\" \"exam"
     "ple.com\")) ((NIL NIL \"bob\" \"example.net\")) NIL NIL NIL \""
     "<broken-7@example.com>\")",
     "((\"text\" \"plain\" (\"charset\" \"unknown-8bit\") NIL NIL \""
     "7bit\" 45 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \""
     "us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" (\""
     "boundary\" \"\") NIL NIL NIL)",
     "((\"text\" \"plain\" (\"charset\" \"unknown-8bit\") NIL NIL \""
     "7bit\" 45 0)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL"
     " NIL \"7bit\" 0 0) \"mixed\")"},
    {"07-nul-and-8bit.eml", 164,
     "(\"Sat, 03 Jan 2026 09:00:00 +0000\" {11}\r\nNUL bytes \351 (("
     "NIL NIL \"nul\" \"example.com\")) ((NIL NIL \"nul\" \"example."
     "com\")) ((NIL NIL \"nul\" \"example.com\")) ((NIL NIL \"bob\" "
     "\"example.net\")) NIL NIL NIL \"<nul-8@example.com>\")",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 24 2 NIL NIL NIL NIL)",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 24 2)"},
    {"08-bare-lf.eml", 167,
     "(\"Sat, 03 Jan 2026 16:00:00 +0000\" \"bare LF line endings\" "
     "((NIL NIL \"lf\" \"example.com\")) ((NIL NIL \"lf\" \"example."
     "com\")) ((NIL NIL \"lf\" \"example.com\")) ((NIL NIL \"bob\" \""
     "example.net\")) NIL NIL NIL \"<lf-9@example.com>\")",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 20 2 NIL NIL NIL NIL)",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 20 2)"},
    {"09-x-uid-spam.eml", 328,
     "(\"Sat, 03 Jan 2026 23:00:00 +0000\" \"Headers that storage mu"
     "st ignore\" ((NIL NIL \"spammer\" \"example.biz\")) ((NIL NIL "
     "\"spammer\" \"example.biz\")) ((NIL NIL \"spammer\" \"example."
     "biz\")) ((NIL NIL \"bob\" \"example.net\")) NIL NIL NIL \"<xui"
     "d-10@example.biz>\")",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 48 1 NIL NIL NIL NIL)",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 48 1)"},
    {"10-headers-only.eml", 146,
     "(\"Sun, 04 Jan 2026 06:00:00 +0000\" \"no body at all\" ((NIL "
     "NIL \"empty\" \"example.com\")) ((NIL NIL \"empty\" \"example."
     "com\")) ((NIL NIL \"empty\" \"example.com\")) ((NIL NIL \"bob\""
     " \"example.net\")) NIL NIL NIL \"<empty-11@example.com>\")",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 0 0 NIL NIL NIL NIL)",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 0 0)"},
    {"11-utf8-headers.eml", 305,
     "(\"Sun, 04 Jan 2026 13:00:00 +0000\" {40}\r\nGr\303\274\303\237"
     "e aus K\303\266ln \342\200\224 \346\227\245\346\234\254\350\252"
     "\236\343\201\256\344\273\266\345\220\215 (({4}\r\nZo\303\253 N"
     "IL \"zoe\" {12}\r\nex\303\244mple.org)) (({4}\r\nZo\303\253 NI"
     "L \"zoe\" {12}\r\nex\303\244mple.org)) (({4}\r\nZo\303\253 NIL"
     " \"zoe\" {12}\r\nex\303\244mple.org)) (({6}\r\n\345\261\261\347"
     "\224\260 NIL \"yamada\" \"example.jp\")) NIL NIL NIL \"<utf8-1"
     "2@example.org>\")",
     "(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"8bit\" 2"
     "2 1 NIL NIL NIL NIL)",
     "(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"8bit\" 2"
     "2 1)"},
    {"12-deep-nesting.eml", 618,
     "(\"Sun, 04 Jan 2026 20:00:00 +0000\" \"five levels of multipar"
     "t\" ((NIL NIL \"deep\" \"example.com\")) ((NIL NIL \"deep\" \""
     "example.com\")) ((NIL NIL \"deep\" \"example.com\")) ((NIL NIL"
     " \"bob\" \"example.net\")) NIL NIL NIL \"<deep-13@example.com>"
     "\")",
     "(((((((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \""
     "7bit\" 7 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"lvl5\") "
     "NIL NIL NIL) \"mixed\" (\"boundary\" \"lvl4\") NIL NIL NIL) \""
     "mixed\" (\"boundary\" \"lvl3\") NIL NIL NIL) \"mixed\" (\"boun"
     "dary\" \"lvl2\") NIL NIL NIL) \"mixed\" (\"boundary\" \"lvl1\""
     ") NIL NIL NIL) \"mixed\" (\"boundary\" \"lvl0\") NIL NIL NIL)",
     "(((((((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \""
     "7bit\" 7 0) \"mixed\") \"mixed\") \"mixed\") \"mixed\") \"mixe"
     "d\") \"mixed\")"},
    {"13-large-1mb.eml", 975188,
     "(\"Mon, 05 Jan 2026 03:00:00 +0000\" \"about one megabyte of t"
     "ext\" ((NIL NIL \"big\" \"example.com\")) ((NIL NIL \"big\" \""
     "example.com\")) ((NIL NIL \"big\" \"example.com\")) ((NIL NIL "
     "\"bob\" \"example.net\")) NIL NIL NIL \"<big-14@example.com>\""
     ")",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 975032 10000 NIL NIL NIL NIL)",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 975032 10000)"},
    {"14-reply-thread.eml", 496,
     "(\"Mon, 05 Jan 2026 10:00:00 +0000\" \"Re: [list] Plain text m"
     "essage\" ((\"Bob Example\" NIL \"bob\" \"example.net\")) ((NIL"
     " NIL \"list-bounces\" \"lists.example.net\")) ((NIL NIL \"list"
     "\" \"lists.example.net\")) ((NIL NIL \"list\" \"lists.example."
     "net\")) NIL NIL \"<plain-1@example.org>\" \"<reply-15@example."
     "net>\")",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 134 2 NIL NIL NIL NIL)",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 134 2)"},
};

/* Generated from Dovecot 2.3.19 answers (FETCH ENVELOPE BODYSTRUCTURE
 * RFC822.SIZE) to the messages below. */
static const struct oracle_case oracle_cases[] = {
    /* multipart without boundary: one empty text/plain child */
    {"From: a@b.c\nSubject: nob\nContent-Type: multipart/mixed\n\n--"
     "x\nContent-Type: text/html\n\nhi\n--x--\n",
     94, 103,
     "(NIL \"nob\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\""
     ")) ((NIL NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL)",
     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit"
     "\" 0 0 NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL)"},
    /* 60 nested multiparts (below the depth limit) */
    {"From: a@b.c\r\nSubject: deep\r\nContent-Type: multipart/mixed;"
     " boundary=\"b0\"\r\n\r\n--b0\r\nContent-Type: multipart/mixed;"
     " boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: multipart/mixed;"
     " boundary=\"b2\"\r\n\r\n--b2\r\nContent-Type: multipart/mixed;"
     " boundary=\"b3\"\r\n\r\n--b3\r\nContent-Type: multipart/mixed;"
     " boundary=\"b4\"\r\n\r\n--b4\r\nContent-Type: multipart/mixed;"
     " boundary=\"b5\"\r\n\r\n--b5\r\nContent-Type: multipart/mixed;"
     " boundary=\"b6\"\r\n\r\n--b6\r\nContent-Type: multipart/mixed;"
     " boundary=\"b7\"\r\n\r\n--b7\r\nContent-Type: multipart/mixed;"
     " boundary=\"b8\"\r\n\r\n--b8\r\nContent-Type: multipart/mixed;"
     " boundary=\"b9\"\r\n\r\n--b9\r\nContent-Type: multipart/mixed;"
     " boundary=\"b10\"\r\n\r\n--b10\r\nContent-Type: multipart/mixe"
     "d; boundary=\"b11\"\r\n\r\n--b11\r\nContent-Type: multipart/mi"
     "xed; boundary=\"b12\"\r\n\r\n--b12\r\nContent-Type: multipart/"
     "mixed; boundary=\"b13\"\r\n\r\n--b13\r\nContent-Type: multipar"
     "t/mixed; boundary=\"b14\"\r\n\r\n--b14\r\nContent-Type: multip"
     "art/mixed; boundary=\"b15\"\r\n\r\n--b15\r\nContent-Type: mult"
     "ipart/mixed; boundary=\"b16\"\r\n\r\n--b16\r\nContent-Type: mu"
     "ltipart/mixed; boundary=\"b17\"\r\n\r\n--b17\r\nContent-Type: "
     "multipart/mixed; boundary=\"b18\"\r\n\r\n--b18\r\nContent-Type"
     ": multipart/mixed; boundary=\"b19\"\r\n\r\n--b19\r\nContent-Ty"
     "pe: multipart/mixed; boundary=\"b20\"\r\n\r\n--b20\r\nContent-"
     "Type: multipart/mixed; boundary=\"b21\"\r\n\r\n--b21\r\nConten"
     "t-Type: multipart/mixed; boundary=\"b22\"\r\n\r\n--b22\r\nCont"
     "ent-Type: multipart/mixed; boundary=\"b23\"\r\n\r\n--b23\r\nCo"
     "ntent-Type: multipart/mixed; boundary=\"b24\"\r\n\r\n--b24\r\n"
     "Content-Type: multipart/mixed; boundary=\"b25\"\r\n\r\n--b25\r"
     "\nContent-Type: multipart/mixed; boundary=\"b26\"\r\n\r\n--b26"
     "\r\nContent-Type: multipart/mixed; boundary=\"b27\"\r\n\r\n--b"
     "27\r\nContent-Type: multipart/mixed; boundary=\"b28\"\r\n\r\n-"
     "-b28\r\nContent-Type: multipart/mixed; boundary=\"b29\"\r\n\r\n"
     "--b29\r\nContent-Type: multipart/mixed; boundary=\"b30\"\r\n\r"
     "\n--b30\r\nContent-Type: multipart/mixed; boundary=\"b31\"\r\n"
     "\r\n--b31\r\nContent-Type: multipart/mixed; boundary=\"b32\"\r"
     "\n\r\n--b32\r\nContent-Type: multipart/mixed; boundary=\"b33\""
     "\r\n\r\n--b33\r\nContent-Type: multipart/mixed; boundary=\"b34"
     "\"\r\n\r\n--b34\r\nContent-Type: multipart/mixed; boundary=\"b"
     "35\"\r\n\r\n--b35\r\nContent-Type: multipart/mixed; boundary=\""
     "b36\"\r\n\r\n--b36\r\nContent-Type: multipart/mixed; boundary="
     "\"b37\"\r\n\r\n--b37\r\nContent-Type: multipart/mixed; boundar"
     "y=\"b38\"\r\n\r\n--b38\r\nContent-Type: multipart/mixed; bound"
     "ary=\"b39\"\r\n\r\n--b39\r\nContent-Type: multipart/mixed; bou"
     "ndary=\"b40\"\r\n\r\n--b40\r\nContent-Type: multipart/mixed; b"
     "oundary=\"b41\"\r\n\r\n--b41\r\nContent-Type: multipart/mixed;"
     " boundary=\"b42\"\r\n\r\n--b42\r\nContent-Type: multipart/mixe"
     "d; boundary=\"b43\"\r\n\r\n--b43\r\nContent-Type: multipart/mi"
     "xed; boundary=\"b44\"\r\n\r\n--b44\r\nContent-Type: multipart/"
     "mixed; boundary=\"b45\"\r\n\r\n--b45\r\nContent-Type: multipar"
     "t/mixed; boundary=\"b46\"\r\n\r\n--b46\r\nContent-Type: multip"
     "art/mixed; boundary=\"b47\"\r\n\r\n--b47\r\nContent-Type: mult"
     "ipart/mixed; boundary=\"b48\"\r\n\r\n--b48\r\nContent-Type: mu"
     "ltipart/mixed; boundary=\"b49\"\r\n\r\n--b49\r\nContent-Type: "
     "multipart/mixed; boundary=\"b50\"\r\n\r\n--b50\r\nContent-Type"
     ": multipart/mixed; boundary=\"b51\"\r\n\r\n--b51\r\nContent-Ty"
     "pe: multipart/mixed; boundary=\"b52\"\r\n\r\n--b52\r\nContent-"
     "Type: multipart/mixed; boundary=\"b53\"\r\n\r\n--b53\r\nConten"
     "t-Type: multipart/mixed; boundary=\"b54\"\r\n\r\n--b54\r\nCont"
     "ent-Type: multipart/mixed; boundary=\"b55\"\r\n\r\n--b55\r\nCo"
     "ntent-Type: multipart/mixed; boundary=\"b56\"\r\n\r\n--b56\r\n"
     "Content-Type: multipart/mixed; boundary=\"b57\"\r\n\r\n--b57\r"
     "\nContent-Type: multipart/mixed; boundary=\"b58\"\r\n\r\n--b58"
     "\r\nContent-Type: multipart/mixed; boundary=\"b59\"\r\n\r\n--b"
     "59\r\nContent-Type: multipart/mixed; boundary=\"b60\"\r\n\r\n-"
     "-b60\r\nContent-Type: text/plain\r\n\r\nleaf\r\n--b60--\r\n--b"
     "59--\r\n--b58--\r\n--b57--\r\n--b56--\r\n--b55--\r\n--b54--\r\n"
     "--b53--\r\n--b52--\r\n--b51--\r\n--b50--\r\n--b49--\r\n--b48--"
     "\r\n--b47--\r\n--b46--\r\n--b45--\r\n--b44--\r\n--b43--\r\n--b"
     "42--\r\n--b41--\r\n--b40--\r\n--b39--\r\n--b38--\r\n--b37--\r\n"
     "--b36--\r\n--b35--\r\n--b34--\r\n--b33--\r\n--b32--\r\n--b31--"
     "\r\n--b30--\r\n--b29--\r\n--b28--\r\n--b27--\r\n--b26--\r\n--b"
     "25--\r\n--b24--\r\n--b23--\r\n--b22--\r\n--b21--\r\n--b20--\r\n"
     "--b19--\r\n--b18--\r\n--b17--\r\n--b16--\r\n--b15--\r\n--b14--"
     "\r\n--b13--\r\n--b12--\r\n--b11--\r\n--b10--\r\n--b9--\r\n--b8"
     "--\r\n--b7--\r\n--b6--\r\n--b5--\r\n--b4--\r\n--b3--\r\n--b2--"
     "\r\n--b1--\r\n--b0--\r\n",
     3997, 3997,
     "(NIL \"deep\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\""
     ")) ((NIL NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL)",
     "(((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((("
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 4 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b60\") NIL NIL"
     " NIL) \"mixed\" (\"boundary\" \"b59\") NIL NIL NIL) \"mixed\" "
     "(\"boundary\" \"b58\") NIL NIL NIL) \"mixed\" (\"boundary\" \""
     "b57\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b56\") NIL NIL N"
     "IL) \"mixed\" (\"boundary\" \"b55\") NIL NIL NIL) \"mixed\" (\""
     "boundary\" \"b54\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b53"
     "\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b52\") NIL NIL NIL)"
     " \"mixed\" (\"boundary\" \"b51\") NIL NIL NIL) \"mixed\" (\"bo"
     "undary\" \"b50\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b49\""
     ") NIL NIL NIL) \"mixed\" (\"boundary\" \"b48\") NIL NIL NIL) \""
     "mixed\" (\"boundary\" \"b47\") NIL NIL NIL) \"mixed\" (\"bound"
     "ary\" \"b46\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b45\") N"
     "IL NIL NIL) \"mixed\" (\"boundary\" \"b44\") NIL NIL NIL) \"mi"
     "xed\" (\"boundary\" \"b43\") NIL NIL NIL) \"mixed\" (\"boundar"
     "y\" \"b42\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b41\") NIL"
     " NIL NIL) \"mixed\" (\"boundary\" \"b40\") NIL NIL NIL) \"mixe"
     "d\" (\"boundary\" \"b39\") NIL NIL NIL) \"mixed\" (\"boundary\""
     " \"b38\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b37\") NIL NI"
     "L NIL) \"mixed\" (\"boundary\" \"b36\") NIL NIL NIL) \"mixed\""
     " (\"boundary\" \"b35\") NIL NIL NIL) \"mixed\" (\"boundary\" \""
     "b34\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b33\") NIL NIL N"
     "IL) \"mixed\" (\"boundary\" \"b32\") NIL NIL NIL) \"mixed\" (\""
     "boundary\" \"b31\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b30"
     "\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b29\") NIL NIL NIL)"
     " \"mixed\" (\"boundary\" \"b28\") NIL NIL NIL) \"mixed\" (\"bo"
     "undary\" \"b27\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b26\""
     ") NIL NIL NIL) \"mixed\" (\"boundary\" \"b25\") NIL NIL NIL) \""
     "mixed\" (\"boundary\" \"b24\") NIL NIL NIL) \"mixed\" (\"bound"
     "ary\" \"b23\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b22\") N"
     "IL NIL NIL) \"mixed\" (\"boundary\" \"b21\") NIL NIL NIL) \"mi"
     "xed\" (\"boundary\" \"b20\") NIL NIL NIL) \"mixed\" (\"boundar"
     "y\" \"b19\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b18\") NIL"
     " NIL NIL) \"mixed\" (\"boundary\" \"b17\") NIL NIL NIL) \"mixe"
     "d\" (\"boundary\" \"b16\") NIL NIL NIL) \"mixed\" (\"boundary\""
     " \"b15\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b14\") NIL NI"
     "L NIL) \"mixed\" (\"boundary\" \"b13\") NIL NIL NIL) \"mixed\""
     " (\"boundary\" \"b12\") NIL NIL NIL) \"mixed\" (\"boundary\" \""
     "b11\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b10\") NIL NIL N"
     "IL) \"mixed\" (\"boundary\" \"b9\") NIL NIL NIL) \"mixed\" (\""
     "boundary\" \"b8\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b7\""
     ") NIL NIL NIL) \"mixed\" (\"boundary\" \"b6\") NIL NIL NIL) \""
     "mixed\" (\"boundary\" \"b5\") NIL NIL NIL) \"mixed\" (\"bounda"
     "ry\" \"b4\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b3\") NIL "
     "NIL NIL) \"mixed\" (\"boundary\" \"b2\") NIL NIL NIL) \"mixed\""
     " (\"boundary\" \"b1\") NIL NIL NIL) \"mixed\" (\"boundary\" \""
     "b0\") NIL NIL NIL)"},
    /* digest, groups, routes, quoting, RFC 2231 names, extension fields */
    {"From: \"Joe \\\"Q\\\" Public\" (comment) <joe@x.org>, Group On"
     "e: a@b.c, \"C D\" <c@d>;, <@route.a,@route.b:jane@y.org>, nodo"
     "main, =?utf-8?q?x?= <e@f>\r\nTo: \r\nCc: undisclosed:;\r\nSubj"
     "ect: a \"quoted\" \\ back\r\nIn-Reply-To: <x@y>  (c)\r\nConten"
     "t-Type: multipart/digest; boundary=d\r\n\r\npre\r\n--d\r\n\r\n"
     "From: in@x\r\nSubject: inner\r\n\r\nbody\r\n--d\r\nContent-Typ"
     "e: text/plain; CHARSET=ISO-8859-1; Format=flowed\r\nContent-Di"
     "sposition: attachment\r\nContent-Language: en, de\r\nContent-M"
     "D5: abc\r\nContent-Description: desc \"q\"\r\n\r\nx\r\n--d--\r"
     "\nepi\r\n",
     506, 506,
     "(NIL {17}\r\na \"quoted\" \\ back (({14}\r\nJoe \"Q\" Public N"
     "IL \"joe\" \"x.org\")(NIL NIL \"Group One\" NIL)(NIL NIL \"a\""
     " \"b.c\")(\"C D\" NIL \"c\" \"d\")(NIL NIL NIL NIL)(NIL \"@rou"
     "te.a,@route.b\" \"jane\" \"y.org\")(NIL NIL \"nodomain\" \"MIS"
     "SING_DOMAIN\")(\"=?utf-8?q?x?=\" NIL \"e\" \"f\")) (({14}\r\nJ"
     "oe \"Q\" Public NIL \"joe\" \"x.org\")(NIL NIL \"Group One\" N"
     "IL)(NIL NIL \"a\" \"b.c\")(\"C D\" NIL \"c\" \"d\")(NIL NIL NI"
     "L NIL)(NIL \"@route.a,@route.b\" \"jane\" \"y.org\")(NIL NIL \""
     "nodomain\" \"MISSING_DOMAIN\")(\"=?utf-8?q?x?=\" NIL \"e\" \"f"
     "\")) (({14}\r\nJoe \"Q\" Public NIL \"joe\" \"x.org\")(NIL NIL"
     " \"Group One\" NIL)(NIL NIL \"a\" \"b.c\")(\"C D\" NIL \"c\" \""
     "d\")(NIL NIL NIL NIL)(NIL \"@route.a,@route.b\" \"jane\" \"y.o"
     "rg\")(NIL NIL \"nodomain\" \"MISSING_DOMAIN\")(\"=?utf-8?q?x?="
     "\" NIL \"e\" \"f\")) NIL ((NIL NIL \"undisclosed\" NIL)(NIL NI"
     "L NIL NIL)) NIL \"<x@y>  (c)\" NIL)",
     "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 34 (NIL \"inner\""
     " ((NIL NIL \"in\" \"x\")) ((NIL NIL \"in\" \"x\")) ((NIL NIL \""
     "in\" \"x\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"chars"
     "et\" \"us-ascii\") NIL NIL \"7bit\" 4 0 NIL NIL NIL NIL) 3 NIL"
     " NIL NIL NIL)(\"text\" \"plain\" (\"CHARSET\" \"ISO-8859-1\" \""
     "Format\" \"flowed\") NIL \"desc \\\"q\\\"\" \"7bit\" 1 0 \"abc"
     "\" (\"attachment\" NIL) (\"en\" \"de\") NIL) \"digest\" (\"bou"
     "ndary\" \"d\") NIL NIL NIL)"},
    /* top-level message/rfc822, type case kept */
    {"From: a@b.c\r\nContent-Type: Message/RFC822\r\n\r\nSubject: x\r"
     "\nContent-Type: TEXT/Plain\r\n\r\nhello\r\n",
     92, 92,
     "(NIL NIL ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ("
     "(NIL NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL)",
     "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 47 (NIL \"x\" NIL"
     " NIL NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"Plain\" (\"charset\""
     " \"us-ascii\") NIL NIL \"7bit\" 7 1 NIL NIL NIL NIL) 4 NIL NIL"
     " NIL NIL)"},
    /* boundary that is a prefix of the inner one */
    {"From: a@b.c\nContent-Type: multipart/mixed; boundary=\"ab\"\n\n"
     "--ab\nContent-Type: multipart/mixed; boundary=\"abc\"\n\n--abc"
     "\n\none\n--ab\n\ntwo\n--abc--\n--ab--\n",
     146, 160,
     "(NIL NIL ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ("
     "(NIL NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL)",
     "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bi"
     "t\" 3 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"abc\") NIL "
     "NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL"
     " \"7bit\" 3 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\""
     " \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\""
     " (\"boundary\" \"ab\") NIL NIL NIL)"},
    /* mixed CRLF/LF, blanks after the boundary */
    {"From: a@b.c\r\nSubject: mixed ends\r\nContent-Type: multipart/"
     "mixed; boundary=q\r\n\r\n--q  \nContent-Type: text/plain\n\nl1"
     "\r\nl2\n--q--\n",
     124, 129,
     "(NIL \"mixed ends\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" "
     "\"b.c\")) ((NIL NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL)",
     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit"
     "\" 6 1 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"q\") NIL NIL"
     " NIL)"},
    /* first Content-Type wins, RFC 2231 continuations joined */
    {"Subject: x\r\nContent-Type: text/plain; charset=\"utf-8\"; nam"
     "e*0=\"a\"; name*1=\"b\"\r\nContent-Disposition: inline; filena"
     "me=\"f.txt\"; size=12\r\nContent-Type: image/gif\r\n\r\nabc",
     165, 165, "(NIL \"x\" NIL NIL NIL NIL NIL NIL NIL NIL)",
     "(\"text\" \"plain\" (\"charset\" \"utf-8\" \"name\" \"ab\") NI"
     "L NIL \"7bit\" 3 0 NIL (\"inline\" (\"filename\" \"f.txt\" \"s"
     "ize\" \"12\")) NIL NIL)"},
    /* folded subject becomes a literal */
    {"Subject: a\r\n b\r\nFrom: x@y\r\n\r\nz\r\n", 32, 32,
     "(NIL {3}\r\na b ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\")"
     ") ((NIL NIL \"x\" \"y\")) NIL NIL NIL NIL NIL)",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 3 1 NIL NIL NIL NIL)"},
    /* long subject stays quoted, one quote in In-Reply-To */
    {"Subject: word word word word word word word word word word wor"
     "d word word word word word word word word word word word word "
     "word word word word word word word word word word word word wo"
     "rd word word word word word word word word word word word word"
     " word word word word word word word word word word word word w"
     "ord word word word word word word word word word word word wor"
     "d word word word word word word word word word word word word "
     "word word word word word word word word word word word word wo"
     "rd word word end\r\nIn-Reply-To: a\"b\r\n\r\nz\r\n",
     537, 537,
     "(NIL \"word word word word word word word word word word word "
     "word word word word word word word word word word word word wo"
     "rd word word word word word word word word word word word word"
     " word word word word word word word word word word word word w"
     "ord word word word word word word word word word word word wor"
     "d word word word word word word word word word word word word "
     "word word word word word word word word word word word word wo"
     "rd word word word word word word word word word word word word"
     " word word end\" NIL NIL NIL NIL NIL NIL \"a\\\"b\" NIL)",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 3 1 NIL NIL NIL NIL)"},
    /* 105 nested multiparts: depth limit (100) makes a leaf */
    {"Subject: deep\r\nContent-Type: multipart/mixed; boundary=\"b0\""
     "\r\n\r\n--b0\r\nContent-Type: multipart/mixed; boundary=\"b1\""
     "\r\n\r\n--b1\r\nContent-Type: multipart/mixed; boundary=\"b2\""
     "\r\n\r\n--b2\r\nContent-Type: multipart/mixed; boundary=\"b3\""
     "\r\n\r\n--b3\r\nContent-Type: multipart/mixed; boundary=\"b4\""
     "\r\n\r\n--b4\r\nContent-Type: multipart/mixed; boundary=\"b5\""
     "\r\n\r\n--b5\r\nContent-Type: multipart/mixed; boundary=\"b6\""
     "\r\n\r\n--b6\r\nContent-Type: multipart/mixed; boundary=\"b7\""
     "\r\n\r\n--b7\r\nContent-Type: multipart/mixed; boundary=\"b8\""
     "\r\n\r\n--b8\r\nContent-Type: multipart/mixed; boundary=\"b9\""
     "\r\n\r\n--b9\r\nContent-Type: multipart/mixed; boundary=\"b10\""
     "\r\n\r\n--b10\r\nContent-Type: multipart/mixed; boundary=\"b11"
     "\"\r\n\r\n--b11\r\nContent-Type: multipart/mixed; boundary=\"b"
     "12\"\r\n\r\n--b12\r\nContent-Type: multipart/mixed; boundary=\""
     "b13\"\r\n\r\n--b13\r\nContent-Type: multipart/mixed; boundary="
     "\"b14\"\r\n\r\n--b14\r\nContent-Type: multipart/mixed; boundar"
     "y=\"b15\"\r\n\r\n--b15\r\nContent-Type: multipart/mixed; bound"
     "ary=\"b16\"\r\n\r\n--b16\r\nContent-Type: multipart/mixed; bou"
     "ndary=\"b17\"\r\n\r\n--b17\r\nContent-Type: multipart/mixed; b"
     "oundary=\"b18\"\r\n\r\n--b18\r\nContent-Type: multipart/mixed;"
     " boundary=\"b19\"\r\n\r\n--b19\r\nContent-Type: multipart/mixe"
     "d; boundary=\"b20\"\r\n\r\n--b20\r\nContent-Type: multipart/mi"
     "xed; boundary=\"b21\"\r\n\r\n--b21\r\nContent-Type: multipart/"
     "mixed; boundary=\"b22\"\r\n\r\n--b22\r\nContent-Type: multipar"
     "t/mixed; boundary=\"b23\"\r\n\r\n--b23\r\nContent-Type: multip"
     "art/mixed; boundary=\"b24\"\r\n\r\n--b24\r\nContent-Type: mult"
     "ipart/mixed; boundary=\"b25\"\r\n\r\n--b25\r\nContent-Type: mu"
     "ltipart/mixed; boundary=\"b26\"\r\n\r\n--b26\r\nContent-Type: "
     "multipart/mixed; boundary=\"b27\"\r\n\r\n--b27\r\nContent-Type"
     ": multipart/mixed; boundary=\"b28\"\r\n\r\n--b28\r\nContent-Ty"
     "pe: multipart/mixed; boundary=\"b29\"\r\n\r\n--b29\r\nContent-"
     "Type: multipart/mixed; boundary=\"b30\"\r\n\r\n--b30\r\nConten"
     "t-Type: multipart/mixed; boundary=\"b31\"\r\n\r\n--b31\r\nCont"
     "ent-Type: multipart/mixed; boundary=\"b32\"\r\n\r\n--b32\r\nCo"
     "ntent-Type: multipart/mixed; boundary=\"b33\"\r\n\r\n--b33\r\n"
     "Content-Type: multipart/mixed; boundary=\"b34\"\r\n\r\n--b34\r"
     "\nContent-Type: multipart/mixed; boundary=\"b35\"\r\n\r\n--b35"
     "\r\nContent-Type: multipart/mixed; boundary=\"b36\"\r\n\r\n--b"
     "36\r\nContent-Type: multipart/mixed; boundary=\"b37\"\r\n\r\n-"
     "-b37\r\nContent-Type: multipart/mixed; boundary=\"b38\"\r\n\r\n"
     "--b38\r\nContent-Type: multipart/mixed; boundary=\"b39\"\r\n\r"
     "\n--b39\r\nContent-Type: multipart/mixed; boundary=\"b40\"\r\n"
     "\r\n--b40\r\nContent-Type: multipart/mixed; boundary=\"b41\"\r"
     "\n\r\n--b41\r\nContent-Type: multipart/mixed; boundary=\"b42\""
     "\r\n\r\n--b42\r\nContent-Type: multipart/mixed; boundary=\"b43"
     "\"\r\n\r\n--b43\r\nContent-Type: multipart/mixed; boundary=\"b"
     "44\"\r\n\r\n--b44\r\nContent-Type: multipart/mixed; boundary=\""
     "b45\"\r\n\r\n--b45\r\nContent-Type: multipart/mixed; boundary="
     "\"b46\"\r\n\r\n--b46\r\nContent-Type: multipart/mixed; boundar"
     "y=\"b47\"\r\n\r\n--b47\r\nContent-Type: multipart/mixed; bound"
     "ary=\"b48\"\r\n\r\n--b48\r\nContent-Type: multipart/mixed; bou"
     "ndary=\"b49\"\r\n\r\n--b49\r\nContent-Type: multipart/mixed; b"
     "oundary=\"b50\"\r\n\r\n--b50\r\nContent-Type: multipart/mixed;"
     " boundary=\"b51\"\r\n\r\n--b51\r\nContent-Type: multipart/mixe"
     "d; boundary=\"b52\"\r\n\r\n--b52\r\nContent-Type: multipart/mi"
     "xed; boundary=\"b53\"\r\n\r\n--b53\r\nContent-Type: multipart/"
     "mixed; boundary=\"b54\"\r\n\r\n--b54\r\nContent-Type: multipar"
     "t/mixed; boundary=\"b55\"\r\n\r\n--b55\r\nContent-Type: multip"
     "art/mixed; boundary=\"b56\"\r\n\r\n--b56\r\nContent-Type: mult"
     "ipart/mixed; boundary=\"b57\"\r\n\r\n--b57\r\nContent-Type: mu"
     "ltipart/mixed; boundary=\"b58\"\r\n\r\n--b58\r\nContent-Type: "
     "multipart/mixed; boundary=\"b59\"\r\n\r\n--b59\r\nContent-Type"
     ": multipart/mixed; boundary=\"b60\"\r\n\r\n--b60\r\nContent-Ty"
     "pe: multipart/mixed; boundary=\"b61\"\r\n\r\n--b61\r\nContent-"
     "Type: multipart/mixed; boundary=\"b62\"\r\n\r\n--b62\r\nConten"
     "t-Type: multipart/mixed; boundary=\"b63\"\r\n\r\n--b63\r\nCont"
     "ent-Type: multipart/mixed; boundary=\"b64\"\r\n\r\n--b64\r\nCo"
     "ntent-Type: multipart/mixed; boundary=\"b65\"\r\n\r\n--b65\r\n"
     "Content-Type: multipart/mixed; boundary=\"b66\"\r\n\r\n--b66\r"
     "\nContent-Type: multipart/mixed; boundary=\"b67\"\r\n\r\n--b67"
     "\r\nContent-Type: multipart/mixed; boundary=\"b68\"\r\n\r\n--b"
     "68\r\nContent-Type: multipart/mixed; boundary=\"b69\"\r\n\r\n-"
     "-b69\r\nContent-Type: multipart/mixed; boundary=\"b70\"\r\n\r\n"
     "--b70\r\nContent-Type: multipart/mixed; boundary=\"b71\"\r\n\r"
     "\n--b71\r\nContent-Type: multipart/mixed; boundary=\"b72\"\r\n"
     "\r\n--b72\r\nContent-Type: multipart/mixed; boundary=\"b73\"\r"
     "\n\r\n--b73\r\nContent-Type: multipart/mixed; boundary=\"b74\""
     "\r\n\r\n--b74\r\nContent-Type: multipart/mixed; boundary=\"b75"
     "\"\r\n\r\n--b75\r\nContent-Type: multipart/mixed; boundary=\"b"
     "76\"\r\n\r\n--b76\r\nContent-Type: multipart/mixed; boundary=\""
     "b77\"\r\n\r\n--b77\r\nContent-Type: multipart/mixed; boundary="
     "\"b78\"\r\n\r\n--b78\r\nContent-Type: multipart/mixed; boundar"
     "y=\"b79\"\r\n\r\n--b79\r\nContent-Type: multipart/mixed; bound"
     "ary=\"b80\"\r\n\r\n--b80\r\nContent-Type: multipart/mixed; bou"
     "ndary=\"b81\"\r\n\r\n--b81\r\nContent-Type: multipart/mixed; b"
     "oundary=\"b82\"\r\n\r\n--b82\r\nContent-Type: multipart/mixed;"
     " boundary=\"b83\"\r\n\r\n--b83\r\nContent-Type: multipart/mixe"
     "d; boundary=\"b84\"\r\n\r\n--b84\r\nContent-Type: multipart/mi"
     "xed; boundary=\"b85\"\r\n\r\n--b85\r\nContent-Type: multipart/"
     "mixed; boundary=\"b86\"\r\n\r\n--b86\r\nContent-Type: multipar"
     "t/mixed; boundary=\"b87\"\r\n\r\n--b87\r\nContent-Type: multip"
     "art/mixed; boundary=\"b88\"\r\n\r\n--b88\r\nContent-Type: mult"
     "ipart/mixed; boundary=\"b89\"\r\n\r\n--b89\r\nContent-Type: mu"
     "ltipart/mixed; boundary=\"b90\"\r\n\r\n--b90\r\nContent-Type: "
     "multipart/mixed; boundary=\"b91\"\r\n\r\n--b91\r\nContent-Type"
     ": multipart/mixed; boundary=\"b92\"\r\n\r\n--b92\r\nContent-Ty"
     "pe: multipart/mixed; boundary=\"b93\"\r\n\r\n--b93\r\nContent-"
     "Type: multipart/mixed; boundary=\"b94\"\r\n\r\n--b94\r\nConten"
     "t-Type: multipart/mixed; boundary=\"b95\"\r\n\r\n--b95\r\nCont"
     "ent-Type: multipart/mixed; boundary=\"b96\"\r\n\r\n--b96\r\nCo"
     "ntent-Type: multipart/mixed; boundary=\"b97\"\r\n\r\n--b97\r\n"
     "Content-Type: multipart/mixed; boundary=\"b98\"\r\n\r\n--b98\r"
     "\nContent-Type: multipart/mixed; boundary=\"b99\"\r\n\r\n--b99"
     "\r\nContent-Type: multipart/mixed; boundary=\"b100\"\r\n\r\n--"
     "b100\r\nContent-Type: multipart/mixed; boundary=\"b101\"\r\n\r"
     "\n--b101\r\nContent-Type: multipart/mixed; boundary=\"b102\"\r"
     "\n\r\n--b102\r\nContent-Type: multipart/mixed; boundary=\"b103"
     "\"\r\n\r\n--b103\r\nContent-Type: multipart/mixed; boundary=\""
     "b104\"\r\n\r\n--b104\r\nContent-Type: multipart/mixed; boundar"
     "y=\"b105\"\r\n\r\n--b105\r\nContent-Type: text/plain\r\n\r\nle"
     "af\r\n--b105--\r\n--b104--\r\n--b103--\r\n--b102--\r\n--b101--"
     "\r\n--b100--\r\n--b99--\r\n--b98--\r\n--b97--\r\n--b96--\r\n--"
     "b95--\r\n--b94--\r\n--b93--\r\n--b92--\r\n--b91--\r\n--b90--\r"
     "\n--b89--\r\n--b88--\r\n--b87--\r\n--b86--\r\n--b85--\r\n--b84"
     "--\r\n--b83--\r\n--b82--\r\n--b81--\r\n--b80--\r\n--b79--\r\n-"
     "-b78--\r\n--b77--\r\n--b76--\r\n--b75--\r\n--b74--\r\n--b73--\r"
     "\n--b72--\r\n--b71--\r\n--b70--\r\n--b69--\r\n--b68--\r\n--b67"
     "--\r\n--b66--\r\n--b65--\r\n--b64--\r\n--b63--\r\n--b62--\r\n-"
     "-b61--\r\n--b60--\r\n--b59--\r\n--b58--\r\n--b57--\r\n--b56--\r"
     "\n--b55--\r\n--b54--\r\n--b53--\r\n--b52--\r\n--b51--\r\n--b50"
     "--\r\n--b49--\r\n--b48--\r\n--b47--\r\n--b46--\r\n--b45--\r\n-"
     "-b44--\r\n--b43--\r\n--b42--\r\n--b41--\r\n--b40--\r\n--b39--\r"
     "\n--b38--\r\n--b37--\r\n--b36--\r\n--b35--\r\n--b34--\r\n--b33"
     "--\r\n--b32--\r\n--b31--\r\n--b30--\r\n--b29--\r\n--b28--\r\n-"
     "-b27--\r\n--b26--\r\n--b25--\r\n--b24--\r\n--b23--\r\n--b22--\r"
     "\n--b21--\r\n--b20--\r\n--b19--\r\n--b18--\r\n--b17--\r\n--b16"
     "--\r\n--b15--\r\n--b14--\r\n--b13--\r\n--b12--\r\n--b11--\r\n-"
     "-b10--\r\n--b9--\r\n--b8--\r\n--b7--\r\n--b6--\r\n--b5--\r\n--"
     "b4--\r\n--b3--\r\n--b2--\r\n--b1--\r\n--b0--\r\n",
     6927, 6927, "(NIL \"deep\" NIL NIL NIL NIL NIL NIL NIL NIL)",
     "(((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((("
     "((((((((((((((((((((((((((((((((((((((\"application\" \"octet-"
     "stream\" (\"boundary\" \"b99\") NIL NIL \"7bit\" 0 NIL NIL NIL"
     " NIL) \"mixed\" (\"boundary\" \"b98\") NIL NIL NIL) \"mixed\" "
     "(\"boundary\" \"b97\") NIL NIL NIL) \"mixed\" (\"boundary\" \""
     "b96\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b95\") NIL NIL N"
     "IL) \"mixed\" (\"boundary\" \"b94\") NIL NIL NIL) \"mixed\" (\""
     "boundary\" \"b93\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b92"
     "\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b91\") NIL NIL NIL)"
     " \"mixed\" (\"boundary\" \"b90\") NIL NIL NIL) \"mixed\" (\"bo"
     "undary\" \"b89\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b88\""
     ") NIL NIL NIL) \"mixed\" (\"boundary\" \"b87\") NIL NIL NIL) \""
     "mixed\" (\"boundary\" \"b86\") NIL NIL NIL) \"mixed\" (\"bound"
     "ary\" \"b85\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b84\") N"
     "IL NIL NIL) \"mixed\" (\"boundary\" \"b83\") NIL NIL NIL) \"mi"
     "xed\" (\"boundary\" \"b82\") NIL NIL NIL) \"mixed\" (\"boundar"
     "y\" \"b81\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b80\") NIL"
     " NIL NIL) \"mixed\" (\"boundary\" \"b79\") NIL NIL NIL) \"mixe"
     "d\" (\"boundary\" \"b78\") NIL NIL NIL) \"mixed\" (\"boundary\""
     " \"b77\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b76\") NIL NI"
     "L NIL) \"mixed\" (\"boundary\" \"b75\") NIL NIL NIL) \"mixed\""
     " (\"boundary\" \"b74\") NIL NIL NIL) \"mixed\" (\"boundary\" \""
     "b73\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b72\") NIL NIL N"
     "IL) \"mixed\" (\"boundary\" \"b71\") NIL NIL NIL) \"mixed\" (\""
     "boundary\" \"b70\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b69"
     "\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b68\") NIL NIL NIL)"
     " \"mixed\" (\"boundary\" \"b67\") NIL NIL NIL) \"mixed\" (\"bo"
     "undary\" \"b66\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b65\""
     ") NIL NIL NIL) \"mixed\" (\"boundary\" \"b64\") NIL NIL NIL) \""
     "mixed\" (\"boundary\" \"b63\") NIL NIL NIL) \"mixed\" (\"bound"
     "ary\" \"b62\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b61\") N"
     "IL NIL NIL) \"mixed\" (\"boundary\" \"b60\") NIL NIL NIL) \"mi"
     "xed\" (\"boundary\" \"b59\") NIL NIL NIL) \"mixed\" (\"boundar"
     "y\" \"b58\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b57\") NIL"
     " NIL NIL) \"mixed\" (\"boundary\" \"b56\") NIL NIL NIL) \"mixe"
     "d\" (\"boundary\" \"b55\") NIL NIL NIL) \"mixed\" (\"boundary\""
     " \"b54\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b53\") NIL NI"
     "L NIL) \"mixed\" (\"boundary\" \"b52\") NIL NIL NIL) \"mixed\""
     " (\"boundary\" \"b51\") NIL NIL NIL) \"mixed\" (\"boundary\" \""
     "b50\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b49\") NIL NIL N"
     "IL) \"mixed\" (\"boundary\" \"b48\") NIL NIL NIL) \"mixed\" (\""
     "boundary\" \"b47\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b46"
     "\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b45\") NIL NIL NIL)"
     " \"mixed\" (\"boundary\" \"b44\") NIL NIL NIL) \"mixed\" (\"bo"
     "undary\" \"b43\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b42\""
     ") NIL NIL NIL) \"mixed\" (\"boundary\" \"b41\") NIL NIL NIL) \""
     "mixed\" (\"boundary\" \"b40\") NIL NIL NIL) \"mixed\" (\"bound"
     "ary\" \"b39\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b38\") N"
     "IL NIL NIL) \"mixed\" (\"boundary\" \"b37\") NIL NIL NIL) \"mi"
     "xed\" (\"boundary\" \"b36\") NIL NIL NIL) \"mixed\" (\"boundar"
     "y\" \"b35\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b34\") NIL"
     " NIL NIL) \"mixed\" (\"boundary\" \"b33\") NIL NIL NIL) \"mixe"
     "d\" (\"boundary\" \"b32\") NIL NIL NIL) \"mixed\" (\"boundary\""
     " \"b31\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b30\") NIL NI"
     "L NIL) \"mixed\" (\"boundary\" \"b29\") NIL NIL NIL) \"mixed\""
     " (\"boundary\" \"b28\") NIL NIL NIL) \"mixed\" (\"boundary\" \""
     "b27\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b26\") NIL NIL N"
     "IL) \"mixed\" (\"boundary\" \"b25\") NIL NIL NIL) \"mixed\" (\""
     "boundary\" \"b24\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b23"
     "\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b22\") NIL NIL NIL)"
     " \"mixed\" (\"boundary\" \"b21\") NIL NIL NIL) \"mixed\" (\"bo"
     "undary\" \"b20\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b19\""
     ") NIL NIL NIL) \"mixed\" (\"boundary\" \"b18\") NIL NIL NIL) \""
     "mixed\" (\"boundary\" \"b17\") NIL NIL NIL) \"mixed\" (\"bound"
     "ary\" \"b16\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b15\") N"
     "IL NIL NIL) \"mixed\" (\"boundary\" \"b14\") NIL NIL NIL) \"mi"
     "xed\" (\"boundary\" \"b13\") NIL NIL NIL) \"mixed\" (\"boundar"
     "y\" \"b12\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b11\") NIL"
     " NIL NIL) \"mixed\" (\"boundary\" \"b10\") NIL NIL NIL)((((((("
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 4 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b105\") NIL NI"
     "L NIL) \"mixed\" (\"boundary\" \"b104\") NIL NIL NIL) \"mixed\""
     " (\"boundary\" \"b103\") NIL NIL NIL) \"mixed\" (\"boundary\" "
     "\"b102\") NIL NIL NIL) \"mixed\" (\"boundary\" \"b101\") NIL N"
     "IL NIL) \"mixed\" (\"boundary\" \"b100\") NIL NIL NIL)(\"text\""
     " \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL"
     " NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NI"
     "L NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"char"
     "set\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"te"
     "xt\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0"
     " NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\""
     ") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\""
     "charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)("
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-asc"
     "ii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\""
     " (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL N"
     "IL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7b"
     "it\" 0 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b9\") NIL "
     "NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL"
     " \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\""
     " \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" "
     "\"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL "
     "NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL"
     " NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"chars"
     "et\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"tex"
     "t\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 "
     "NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\")"
     " NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"c"
     "harset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\""
     "text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0"
     " 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii"
     "\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" (\"boundar"
     "y\" \"b8\") NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-"
     "ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plai"
     "n\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NI"
     "L NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \""
     "7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \""
     "us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"p"
     "lain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL"
     " NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NI"
     "L \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\""
     " \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" "
     "\"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL "
     "NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL"
     " NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"chars"
     "et\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mix"
     "ed\" (\"boundary\" \"b7\") NIL NIL NIL)(\"text\" \"plain\" (\""
     "charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)("
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-asc"
     "ii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\""
     " (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL N"
     "IL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7b"
     "it\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us"
     "-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"pla"
     "in\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL N"
     "IL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
     "\"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" "
     "\"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \""
     "plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NI"
     "L NIL NIL) \"mixed\" (\"boundary\" \"b6\") NIL NIL NIL)(\"text"
     "\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 N"
     "IL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") "
     "NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"ch"
     "arset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\""
     "text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0"
     " 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii"
     "\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" ("
     "\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL"
     ")(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit"
     "\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-a"
     "scii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain"
     "\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL"
     " NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \""
     "7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b5\") NI"
     "L NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL N"
     "IL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset"
     "\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\""
     " \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL"
     " NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NI"
     "L NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"char"
     "set\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"te"
     "xt\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0"
     " NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\""
     ") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\""
     "charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)("
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-asc"
     "ii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" (\"bound"
     "ary\" \"b4\") NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"u"
     "s-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"pl"
     "ain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL "
     "NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL"
     " \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\""
     " \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" "
     "\"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL "
     "NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL"
     " NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"chars"
     "et\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"tex"
     "t\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 "
     "NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\")"
     " NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"c"
     "harset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \""
     "mixed\" (\"boundary\" \"b3\") NIL NIL NIL)(\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NI"
     "L)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bi"
     "t\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-"
     "ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plai"
     "n\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NI"
     "L NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \""
     "7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \""
     "us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"p"
     "lain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL"
     " NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NI"
     "L \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\""
     " \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" "
     "\"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL "
     "NIL NIL NIL) \"mixed\" (\"boundary\" \"b2\") NIL NIL NIL)(\"te"
     "xt\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0"
     " NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\""
     ") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\""
     "charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)("
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
     " 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-asc"
     "ii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\""
     " (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL N"
     "IL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7b"
     "it\" 0 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us"
     "-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"text\" \"pla"
     "in\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL N"
     "IL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
     "\"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b1\") "
     "NIL NIL NIL) \"mixed\" (\"boundary\" \"b0\") NIL NIL NIL)"},
    /* folded encoded-words, escapes in parameters, empty disposition */
    {"Subject: =?utf-8?q?a?=\r\n =?utf-8?q?b?=\r\nContent-Type: text"
     "/plain; name=\"a\\\\b\\\"c\"; x=\r\nContent-Transfer-Encoding:"
     " BASE64\r\nContent-Disposition: \r\nContent-Language: \r\n\r\n"
     "z\r\n",
     169, 169,
     "(NIL {27}\r\n=?utf-8?q?a?= =?utf-8?q?b?= NIL NIL NIL NIL NIL N"
     "IL NIL NIL)",
     "(\"text\" \"plain\" (\"name\" \"a\\\\b\\\"c\" \"x\" \"\" \"cha"
     "rset\" \"us-ascii\") NIL NIL \"BASE64\" 3 1 NIL (\"\" NIL) NIL"
     " NIL)"},
    /* empty message/rfc822 body */
    {"Subject: t\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
     "--b\r\nContent-Type: message/rfc822\r\n\r\n--b--\r\n",
     101, 101, "(NIL \"t\" NIL NIL NIL NIL NIL NIL NIL NIL)",
     "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 0 (NIL NIL NIL N"
     "IL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \""
     "us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) 0 NIL NIL NI"
     "L NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)"},
    /* LF-only multipart, empty part */
    {"Subject: t\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
     "\nx\n--b\n\n--b--\n",
     72, 81, "(NIL \"t\" NIL NIL NIL NIL NIL NIL NIL NIL)",
     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit"
     "\" 1 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-a"
     "scii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" (\"bou"
     "ndary\" \"b\") NIL NIL NIL)"},
    /* an inner multipart cut by the outer close boundary */
    {"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nConten"
     "t-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n--o--\r\n",
     107, 107, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
     "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bi"
     "t\" 0 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"m\") NIL NI"
     "L NIL) \"mixed\" (\"boundary\" \"o\") NIL NIL NIL)"},
    /* an empty message/rfc822 cut by the next boundary */
    {"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nConten"
     "t-Type: message/rfc822\r\n\r\n--o\r\n\r\nx\r\n--o--\r\n",
     99, 99, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
     "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 0 (NIL NIL NIL N"
     "IL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \""
     "us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) 0 NIL NIL NI"
     "L NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \""
     "7bit\" 1 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"o\") NIL"
     " NIL NIL)"},
};

/* Reads a corpus file; tests run from the top of the tree (make unit) or
 * from the build directory. */
static uint8_t *read_mail(const char *name, size_t *len_r)
{
	static const char *const dirs[] = {
	    "tests/data/mail", "../tests/data/mail", "../../tests/data/mail",
	    "../../../tests/data/mail"};
	char path[512];
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dirs[i], name);
		FILE *f = fopen(path, "rb");
		if (f == NULL)
			continue;
		fseek(f, 0, SEEK_END);
		long size = ftell(f);
		fseek(f, 0, SEEK_SET);
		uint8_t *data = malloc((size_t)size + 1);
		assert_non_null(data);
		assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
		fclose(f);
		*len_r = (size_t)size;
		return data;
	}
	fail_msg("corpus file %s not found", name);
	return NULL;
}

/* Parses data fed in chunks of chunk bytes (0 = whole). */
static struct mime_message *parse_chunked(const void *data, size_t len,
					  size_t chunk,
					  const struct mime_limits *lim)
{
	struct mime_parser *p = mime_parser_new(lim);
	const uint8_t *d = data;
	struct mime_message *msg = NULL;
	const char *error = NULL;
	size_t pos = 0;
	while (pos < len) {
		size_t n = chunk == 0 || chunk > len - pos ? len - pos : chunk;
		assert_int_equal(mime_parser_feed(p, d + pos, n), 0);
		pos += n;
	}
	assert_int_equal(mime_parser_finish(&p, &msg, &error), 1);
	assert_null(p);
	assert_non_null(msg);
	return msg;
}

static struct mime_message *parse_str(const char *s)
{
	return parse_chunked(s, strlen(s), 0, NULL);
}

static char *envelope_of(const struct mime_part *part)
{
	struct buf *b = buf_new(256, 1 << 20);
	assert_int_equal(mime_write_envelope(part, b), 0);
	char *s = strndup(buf_cstr(b), b->len);
	buf_free(&b);
	return s;
}

static char *bodystructure_of(const struct mime_part *part, bool ext)
{
	struct buf *b = buf_new(256, 1 << 20);
	assert_int_equal(mime_write_bodystructure(part, ext, b), 0);
	char *s = strndup(buf_cstr(b), b->len);
	buf_free(&b);
	return s;
}

static void assert_writers(const struct mime_message *msg, const char *env,
			   const char *bs, const char *body)
{
	char *s = envelope_of(msg->root);
	assert_string_equal(s, env);
	free(s);
	s = bodystructure_of(msg->root, true);
	assert_string_equal(s, bs);
	free(s);
	if (body != NULL) {
		s = bodystructure_of(msg->root, false);
		assert_string_equal(s, body);
		free(s);
	}
}

static const struct mime_part *find(const struct mime_message *msg,
				    const char *spec)
{
	uint32_t path[16];
	size_t depth = 0;
	const char *p = spec;
	while (*p != '\0' && depth < 16) {
		char *end;
		path[depth++] = (uint32_t)strtoul(p, &end, 10);
		p = *end == '.' ? end + 1 : end;
	}
	return mime_part_find(msg, path, depth);
}

/* ---- corpus against Dovecot -------------------------------------------- */

static void test_corpus_dovecot(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(corpus_expect) / sizeof(corpus_expect[0]);
	     i++) {
		const struct corpus_expect *e = &corpus_expect[i];
		size_t len;
		uint8_t *data = read_mail(e->file, &len);
		/* whole, and split at odd places: same answers */
		static const size_t chunks[] = {0, 1, 7, 4096};
		for (size_t c = 0; c < 4; c++) {
			if (chunks[c] == 1 && len > 100000)
				continue; /* 1 MB byte by byte is slow only */
			struct mime_message *msg =
			    parse_chunked(data, len, chunks[c], NULL);
			assert_int_equal(msg->size_crlf, e->size);
			assert_int_equal(msg->size, len);
			assert_writers(msg, e->envelope, e->bodystructure,
				       e->body);
			mime_message_free(&msg);
			assert_null(msg);
		}
		free(data);
	}
}

static void test_oracle_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(oracle_cases) / sizeof(oracle_cases[0]);
	     i++) {
		const struct oracle_case *c = &oracle_cases[i];
		for (size_t chunk = 0; chunk < 3; chunk++) {
			struct mime_message *msg =
			    parse_chunked(c->msg, c->msg_len, chunk, NULL);
			assert_int_equal(msg->size_crlf, c->size);
			assert_writers(msg, c->envelope, c->bodystructure,
				       NULL);
			mime_message_free(&msg);
		}
	}
}

/* Dovecot parses "a.b . c@d" into a name "a.b. c" with MISSING_MAILBOX and
 * MISSING_DOMAIN; we keep the address (a.b.c@d). The rest is Dovecot's
 * answer. */
static void test_envelope_differences(void **state)
{
	(void)state;
	struct mime_message *msg = parse_str(
	    "From: Group: ;\r\nTo: \"\" <x@y>, a@, @b, \"x y\"@z.org, "
	    "a.b . c@d , (only comment)\r\nSender: \r\nDate:   Mon, 5 Jan "
	    "26 10:00 EST  \r\nSubject:\r\n\r\n");
	char *s = envelope_of(msg->root);
	assert_string_equal(
	    s, "(\"Mon, 5 Jan 26 10:00 EST  \" \"\" ((NIL NIL \"Group\" NIL)"
	       "(NIL NIL NIL NIL)) ((NIL NIL \"Group\" NIL)(NIL NIL NIL NIL)) "
	       "((NIL NIL \"Group\" NIL)(NIL NIL NIL NIL)) ((NIL NIL \"x\" "
	       "\"y\")(NIL NIL \"a\" \"MISSING_DOMAIN\")(NIL NIL "
	       "\"MISSING_MAILBOX\" \"b\")(NIL NIL \"x y\" \"z.org\")(NIL NIL "
	       "\"a.b.c\" \"d\")) NIL NIL NIL NIL)");
	free(s);
	mime_message_free(&msg);

	/* a comment names an address without a phrase */
	msg = parse_str("From: joe@x.org (Joe Q)\r\n\r\n");
	s = envelope_of(msg->root);
	assert_non_null(strstr(s, "((\"Joe Q\" NIL \"joe\" \"x.org\"))"));
	free(s);
	mime_message_free(&msg);

	/* no header at all */
	msg = parse_str("");
	s = envelope_of(msg->root);
	assert_string_equal(s, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	free(s);
	s = bodystructure_of(msg->root, false);
	assert_string_equal(s, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") "
			       "NIL NIL \"7bit\" 0 0)");
	free(s);
	mime_message_free(&msg);
}

/* ---- tree and offsets -------------------------------------------------- */

static void test_offsets(void **state)
{
	(void)state;
	size_t len;
	uint8_t *data = read_mail("02-multipart-alternative.eml", &len);
	struct mime_message *msg = parse_chunked(data, len, 3, NULL);
	const struct mime_part *root = msg->root;
	assert_int_equal(msg->part_count, 3);
	assert_true((root->flags & MIME_PART_MULTIPART) != 0);
	assert_int_equal(root->child_count, 2);
	assert_int_equal(root->header.offset, 0);
	assert_int_equal(root->header.size, 330);
	assert_int_equal(root->body.offset, 330);
	assert_int_equal(root->body.size, 457);
	assert_int_equal(root->body.size_crlf, 457);
	const struct mime_part *p1 = root->children, *p2 = p1->next;
	assert_int_equal(p1->header.offset, 395);
	assert_int_equal(p1->header.size, 88);
	assert_int_equal(p1->body.offset, 483);
	assert_int_equal(p1->body.size, 126);
	assert_int_equal(p1->body_lines, 0);
	assert_int_equal(p2->header.offset, 630);
	assert_int_equal(p2->body.offset, 705);
	assert_int_equal(p2->body.size, 59);
	assert_null(p2->next);
	assert_true(p1->parent == root && p1->depth == 1);
	/* body of part 1 is the QP text, without the CRLF before the
	 * boundary */
	assert_memory_equal(data + p1->body.offset, "Caf=C3=A9", 9);
	assert_memory_equal(data + p1->body.offset + p1->body.size,
			    "\r\n--alt-boundary-42", 19);
	assert_true(mime_param_get(p1->fields.params, p1->fields.param_count,
				   STR("CHARSET"))
			.len == 5);
	mime_message_free(&msg);
	free(data);

	/* bare LF: raw and CRLF sizes differ by one per line */
	data = read_mail("08-bare-lf.eml", &len);
	msg = parse_chunked(data, len, 1, NULL);
	root = msg->root;
	assert_int_equal(msg->size, 159);
	assert_int_equal(msg->size_crlf, 167);
	assert_int_equal(root->header.size, 141);
	assert_int_equal(root->header.size_crlf, 147);
	assert_int_equal(root->body.offset, 141);
	assert_int_equal(root->body.offset_crlf, 147);
	assert_int_equal(root->body.size, 18);
	assert_int_equal(root->body.size_crlf, 20);
	assert_int_equal(root->body_lines, 2);
	assert_true((root->flags & MIME_PART_HEADER_END) != 0);
	mime_message_free(&msg);
	free(data);

	/* no empty line: all header, empty body */
	data = read_mail("10-headers-only.eml", &len);
	msg = parse_chunked(data, len, 0, NULL);
	assert_int_equal(msg->root->header.size, len);
	assert_int_equal(msg->root->body.offset, len);
	assert_int_equal(msg->root->body.size, 0);
	assert_true((msg->root->flags & MIME_PART_HEADER_END) == 0);
	mime_message_free(&msg);
	free(data);

	/* message/rfc822: the child is the encapsulated message */
	data = read_mail("04-nested-rfc822.eml", &len);
	msg = parse_chunked(data, len, 5, NULL);
	const struct mime_part *p = find(msg, "2");
	assert_non_null(p);
	assert_true((p->flags & MIME_PART_MESSAGE) != 0);
	const struct mime_part *inner = mime_part_message(p);
	assert_non_null(inner);
	assert_int_equal(inner->header.offset, 443);
	assert_int_equal(inner->header.size, 238);
	assert_int_equal(p->body.offset, 443);
	assert_non_null(inner->envelope);
	assert_memory_equal(inner->envelope->subject.p,
			    "Inner forwarded message", 23);
	assert_int_equal(find(msg, "2.1")->body.offset, 720);
	assert_int_equal(find(msg, "2.1")->body.size, 11);
	mime_message_free(&msg);
	free(data);
}

static void test_sections(void **state)
{
	(void)state;
	size_t len;
	uint8_t *data = read_mail("04-nested-rfc822.eml", &len);
	struct mime_message *msg = parse_chunked(data, len, 0, NULL);
	const struct mime_part *root = msg->root;
	assert_ptr_equal(mime_part_find(msg, NULL, 0), root);
	assert_ptr_equal(find(msg, "1"), root->children);
	assert_ptr_equal(find(msg, "2"), root->children->next);
	const struct mime_part *inner = root->children->next->children;
	assert_ptr_equal(find(msg, "2.1"), inner->children);
	assert_ptr_equal(find(msg, "2.2"), inner->children->next);
	assert_null(find(msg, "2.3"));
	assert_null(find(msg, "3"));
	assert_null(find(msg, "0"));
	assert_null(find(msg, "1.1")); /* text/plain has no parts */
	assert_null(find(msg, "2.1.1.1"));
	assert_null(mime_part_message(find(msg, "1")));
	mime_message_free(&msg);
	free(data);

	/* non-multipart: part 1 is the body of the message */
	msg = parse_str("Subject: x\r\n\r\nbody\r\n");
	assert_ptr_equal(find(msg, "1"), msg->root);
	assert_null(find(msg, "2"));
	assert_null(find(msg, "1.1"));
	mime_message_free(&msg);

	/* a top-level message/rfc822: 1 is the encapsulated message, 1.1 its
	 * body */
	msg = parse_str("Content-Type: message/rfc822\r\n\r\nSubject: in\r\n"
			"\r\ninner\r\n");
	assert_ptr_equal(find(msg, "1"), msg->root);
	assert_ptr_equal(find(msg, "1.1"), msg->root->children);
	assert_ptr_equal(mime_part_message(msg->root), msg->root->children);
	assert_int_equal(msg->root->children->body.size, 7);
	mime_message_free(&msg);
}

static void test_boundaries(void **state)
{
	(void)state;
	/* missing close boundary, preamble and epilogue, trailing blanks */
	struct mime_message *msg = parse_str(
	    "Content-Type: multipart/mixed; boundary=\"b\"\n\npreamble\n"
	    "--b \t\n\none\n--b\nContent-Type: text/html\n\n<p>two</p>\n");
	assert_int_equal(msg->root->child_count, 2);
	const struct mime_part *p1 = msg->root->children;
	assert_int_equal(p1->body.size, 3);
	assert_int_equal(p1->next->body.size, 11); /* up to EOF */
	assert_int_equal(p1->next->body_lines, 1);
	assert_memory_equal(p1->next->fields.subtype.p, "html", 4);
	mime_message_free(&msg);

	/* a boundary-looking line with other text is body, once an exact
	 * boundary exists; a closed multipart stops matching */
	msg = parse_str("Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
			"--b\r\n\r\nx\r\n--b--\r\n--b\r\nepilogue\r\n");
	assert_int_equal(msg->root->child_count, 1);
	assert_int_equal(msg->root->children->body.size, 1);
	mime_message_free(&msg);

	/* nested: the outer boundary ends the inner multipart */
	msg = parse_str("Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
			"--outer\r\nContent-Type: multipart/alternative; "
			"boundary=outer-inner\r\n\r\n--outer-inner\r\n\r\na\r\n"
			"--outer\r\n\r\nb\r\n--outer--\r\n");
	assert_int_equal(msg->root->child_count, 2);
	assert_int_equal(msg->root->children->child_count, 1);
	assert_int_equal(msg->root->children->children->body.size, 1);
	assert_int_equal(msg->root->children->next->body.size, 1);
	mime_message_free(&msg);

	/* multipart/digest parts default to message/rfc822 */
	msg = parse_str("Content-Type: multipart/digest; boundary=d\r\n\r\n"
			"--d\r\n\r\nSubject: one\r\n\r\nbody\r\n--d--\r\n");
	const struct mime_part *d1 = msg->root->children;
	assert_true((d1->flags & MIME_PART_MESSAGE) != 0);
	assert_memory_equal(d1->children->envelope->subject.p, "one", 3);
	mime_message_free(&msg);
}

static void test_limits(void **state)
{
	(void)state;
	struct mime_limits lim;
	mime_limits_default(&lim);
	assert_int_equal(lim.max_parts, MIME_DEFAULT_MAX_PARTS);
	assert_int_equal(lim.max_depth, MIME_DEFAULT_MAX_DEPTH);

	/* parts */
	lim.max_parts = 3;
	const char *many = "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
			   "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\n3\r\n"
			   "--b\r\n\r\n4\r\n--b--\r\n";
	struct mime_message *msg = parse_chunked(many, strlen(many), 0, &lim);
	assert_int_equal(msg->part_count, 3);
	assert_int_equal(msg->root->child_count, 2);
	assert_true((msg->flags & MIME_MSG_TRUNCATED_PARTS) != 0);
	/* the second part still ends at its boundary */
	assert_int_equal(msg->root->children->next->body.size, 1);
	char *s = bodystructure_of(msg->root, false);
	assert_string_equal(s,
			    "((\"text\" \"plain\" (\"charset\" \"us-ascii\") "
			    "NIL NIL \"7bit\" 1 0)(\"text\" \"plain\" "
			    "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0) "
			    "\"mixed\")");
	free(s);
	mime_message_free(&msg);

	/* depth: the corpus message nests 6 multiparts */
	size_t len;
	uint8_t *data = read_mail("12-deep-nesting.eml", &len);
	mime_limits_default(&lim);
	lim.max_depth = 3;
	msg = parse_chunked(data, len, 0, &lim);
	assert_true((msg->flags & MIME_MSG_TRUNCATED_DEPTH) != 0);
	s = bodystructure_of(msg->root, false);
	assert_string_equal(s, "(((\"application\" \"octet-stream\" "
			       "(\"boundary\" \"lvl2\") NIL NIL \"7bit\" 257) "
			       "\"mixed\") \"mixed\")");
	free(s);
	mime_message_free(&msg);
	free(data);

	/* header bytes: later fields are dropped, the structure stays */
	mime_limits_default(&lim);
	lim.max_header_bytes = 10;
	data = read_mail("03-mixed-attachment.eml", &len);
	msg = parse_chunked(data, len, 0, &lim);
	assert_true((msg->flags & MIME_MSG_TRUNCATED_HEADERS) != 0);
	assert_int_equal(msg->part_count, 4);
	assert_int_equal(msg->root->children->next->body.size_crlf, 8210);
	mime_message_free(&msg);
	free(data);

	/* header line: a field is cut, the header still ends */
	mime_limits_default(&lim);
	lim.max_header_line = 100;
	data = read_mail("05-folded-headers-no-date.eml", &len);
	msg = parse_chunked(data, len, 0, &lim);
	assert_true(msg->root->envelope->subject.len <= 100);
	assert_int_equal(msg->root->body.size, 5035);
	mime_message_free(&msg);
	free(data);
}

/* ---- strings ------------------------------------------------------------ */

static void test_strings(void **state)
{
	(void)state;
	struct buf *b = buf_new(64, 4096);
	assert_int_equal(mime_write_string(b, STR("a b")), 0);
	assert_int_equal(mime_write_nstring(b, STR_NULL), 0);
	assert_int_equal(mime_write_string(b, STR("q\"\\")), 0);
	assert_int_equal(mime_write_string(b, STR("x\r\ny")), 0);
	assert_int_equal(mime_write_string(b, STR("\xc3\xa9")), 0);
	assert_int_equal(mime_write_string(b, STR("\"\"\"\"\"")), 0);
	assert_int_equal(mime_write_astring(b, STR("INBOX")), 0);
	assert_int_equal(mime_write_astring(b, STR("NIL")), 0);
	assert_int_equal(mime_write_astring(b, STR("")), 0);
	assert_int_equal(mime_write_astring(b, STR("a(b")), 0);
	assert_int_equal(mime_write_string(b, str_from("a\0b", 3)), 0);
	assert_memory_equal(
	    buf_cstr(b),
	    "\"a b\"NIL\"q\\\"\\\\\"{4}\r\nx\r\ny{2}\r\n\xc3\xa9"
	    "{5}\r\n\"\"\"\"\"INBOX\"NIL\"\"\"\"a(b\"{3}\r\na\x80"
	    "b",
	    b->len);
	buf_free(&b);

	/* the cap is enforced */
	b = buf_new(16, 8);
	assert_int_equal(mime_write_string(b, STR("0123456789")), -1);
	buf_free(&b);

	/* CRLF conversion across chunks */
	b = buf_new(16, 4096);
	bool cr = false;
	assert_int_equal(mime_write_crlf(b, "a\nb\r", 4, &cr), 0);
	assert_int_equal(mime_write_crlf(b, "\nc\n\n", 4, &cr), 0);
	assert_string_equal(buf_cstr(b), "a\r\nb\r\nc\r\n\r\n");
	buf_free(&b);
}

static void test_header_filter(void **state)
{
	(void)state;
	static const char hdr[] =
	    "From: a@b\nSubject: one\n two\nX-Other: x\nsubject: again\n"
	    "To: c@d\r\n\r\nbody: not a header\n";
	const struct str names[] = {STR("SUBJECT"), STR("to")};
	struct buf *b = buf_new(64, 4096);
	assert_int_equal(
	    mime_header_filter(hdr, sizeof(hdr) - 1, names, 2, false, b), 0);
	assert_string_equal(buf_cstr(b), "Subject: one\r\n two\r\nsubject: "
					 "again\r\nTo: c@d\r\n\r\n");
	buf_reset(b);
	assert_int_equal(
	    mime_header_filter(hdr, sizeof(hdr) - 1, names, 2, true, b), 0);
	assert_string_equal(buf_cstr(b), "From: a@b\r\nX-Other: x\r\n\r\n");
	buf_reset(b);
	/* nothing matches: just the empty line */
	const struct str none[] = {STR("Cc")};
	assert_int_equal(
	    mime_header_filter(hdr, sizeof(hdr) - 1, none, 1, false, b), 0);
	assert_string_equal(buf_cstr(b), "\r\n");
	buf_free(&b);

	/* over a real part header */
	size_t len;
	uint8_t *data = read_mail("03-mixed-attachment.eml", &len);
	struct mime_message *msg = parse_chunked(data, len, 0, NULL);
	const struct mime_part *p3 = find(msg, "3");
	b = buf_new(64, 4096);
	const struct str want[] = {STR("content-id"), STR("Content-Language")};
	assert_int_equal(mime_header_filter(data + p3->header.offset,
					    p3->header.size, want, 2, false, b),
			 0);
	assert_string_equal(buf_cstr(b), "Content-ID: <img1@example.net>\r\n"
					 "Content-Language: de\r\n\r\n");
	buf_free(&b);
	mime_message_free(&msg);
	free(data);
}

/* ---- decoding ------------------------------------------------------------ */

static void assert_decoded(const char *raw, const char *want)
{
	struct buf *b = buf_new(64, 65536);
	assert_int_equal(mime_header_decode(str_cstr(raw), b), 0);
	assert_string_equal(buf_cstr(b), want);
	buf_free(&b);
}

static void test_header_decode(void **state)
{
	(void)state;
	assert_decoded("=?UTF-8?B?w4RwZmVsIHVuZCBCaXJuZW4=?= weekly",
		       "\xc3\x84pfel und Birnen weekly");
	assert_decoded(
	    "=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>",
	    "J\xc3\xbcrgen M\xc3\xbcller <juergen@example.de>");
	assert_decoded("=?ISO-8859-1?Q?gr=FC=DFe.png?=", "gr\xc3\xbc\xc3\x9f"
							 "e.png");
	/* blanks (and folding) between words go; a character split over
	 * two words is joined */
	assert_decoded("=?utf-8?q?a?=\r\n =?utf-8?q?b?=", "ab");
	assert_decoded("=?utf-8?B?w4Q=?= =?utf-8?B?w5Y=?=", "\xc3\x84\xc3\x96");
	assert_decoded("=?utf-8?q?=C3?= =?utf-8?q?=84?=", "\xc3\x84");
	assert_decoded("x =?utf-8?q?a?= y", "x a y");
	/* language suffix (RFC 2231), lower-case encoding letter */
	assert_decoded("=?iso-8859-1*de?b?5A==?=", "\xc3\xa4");
	/* not encoded-words: kept */
	assert_decoded("=?garbage?x?zz?= text", "=?garbage?x?zz?= text");
	assert_decoded("a =? b ?= c", "a =? b ?= c");
	/* unknown charset: taken as UTF-8; invalid bytes become U+FFFD */
	assert_decoded("=?x-unknown?q?ok=FF?=", "ok\xef\xbf\xbd");
	assert_decoded("raw \xe9t\xc3\xa9", "raw \xef\xbf\xbdt\xc3\xa9");
	assert_decoded("Gr\xc3\xbc\xc3\x9f"
		       "e",
		       "Gr\xc3\xbc\xc3\x9f"
		       "e");
	/* the cap is reported */
	struct buf *b = buf_new(4, 4);
	assert_int_equal(mime_header_decode(STR("0123456789"), b), -1);
	buf_free(&b);
}

static int collect(const void *data, size_t len, void *context)
{
	return buf_append(context, data, len);
}

/* Decodes body with the part's fields, fed in chunks of chunk bytes. */
static struct buf *decode_body(const struct mime_part *part,
			       const uint8_t *data, size_t chunk)
{
	struct buf *b = buf_new(256, 1 << 22);
	struct mime_decoder *d = mime_decoder_new_part(part, collect, b);
	const uint8_t *body = data + part->body.offset;
	size_t len = part->body.size;
	for (size_t pos = 0; pos < len; pos += chunk) {
		size_t n = len - pos < chunk ? len - pos : chunk;
		assert_int_equal(mime_decoder_feed(d, body + pos, n), 0);
	}
	assert_int_equal(mime_decoder_finish(d), 0);
	mime_decoder_free(&d);
	assert_null(d);
	return b;
}

static struct buf *decode_mem(const char *enc, const char *charset,
			      const char *in, size_t len, size_t chunk)
{
	struct buf *b = buf_new(256, 1 << 20);
	struct mime_decoder *d = mime_decoder_new(
	    str_cstr(enc), charset == NULL ? STR_NULL : str_cstr(charset),
	    collect, b);
	for (size_t pos = 0; pos < len; pos += chunk) {
		size_t n = len - pos < chunk ? len - pos : chunk;
		assert_int_equal(mime_decoder_feed(d, in + pos, n), 0);
	}
	assert_int_equal(mime_decoder_finish(d), 0);
	mime_decoder_free(&d);
	return b;
}

static struct buf *decode_str(const char *enc, const char *charset,
			      const char *in, size_t chunk)
{
	return decode_mem(enc, charset, in, strlen(in), chunk);
}

static void test_body_decode(void **state)
{
	(void)state;
	size_t len;
	uint8_t *data = read_mail("02-multipart-alternative.eml", &len);
	struct mime_message *msg = parse_chunked(data, len, 0, NULL);
	for (size_t chunk = 1; chunk <= 4096; chunk *= 8) {
		struct buf *b = decode_body(find(msg, "1"), data, chunk);
		assert_memory_equal(b->data,
				    "Caf\xc3\xa9 and cr\xc3\xa8me "
				    "br\xc3\xbbl\xc3\xa9"
				    "e. mailbox",
				    31);
		assert_int_equal(b->len, 110);
		buf_free(&b);
	}
	assert_true(mime_part_searchable(find(msg, "1")));
	assert_true(mime_part_searchable(find(msg, "2")));
	assert_false(mime_part_searchable(msg->root));
	mime_message_free(&msg);
	free(data);

	/* base64 attachment: 8210 bytes of base64 lines are 6000 bytes */
	data = read_mail("03-mixed-attachment.eml", &len);
	msg = parse_chunked(data, len, 0, NULL);
	const struct mime_part *att = find(msg, "2");
	assert_false(mime_part_searchable(att));
	struct buf *b = decode_body(att, data, 13);
	assert_int_equal(b->len, 6000);
	/* not text: the bytes as they are (values from Python's base64) */
	assert_memory_equal(b->data, "\x62\x5c\x3f\x66\xfb\xcb\x62\x27", 8);
	assert_memory_equal(b->data + 5996, "\x13\xcc\xf2\x92", 4);
	uint32_t sum = 0;
	for (size_t i = 0; i < b->len; i++)
		sum = (sum + b->data[i]) % 65521;
	assert_int_equal(sum, 38356);
	buf_free(&b);
	/* the PNG */
	b = decode_body(find(msg, "3"), data, 5);
	assert_memory_equal(b->data, "\x89PNG\r\n\x1a\n", 8);
	assert_int_equal(b->len, 70);
	buf_free(&b);
	mime_message_free(&msg);
	free(data);

	/* charsets */
	b = decode_str("8bit", "ISO-8859-1",
		       "gr\xfc\xdf"
		       "e",
		       1);
	assert_string_equal(buf_cstr(b), "gr\xc3\xbc\xc3\x9f"
					 "e");
	buf_free(&b);
	b = decode_str("quoted-printable", "utf-8", "=E2=82=\r\n=AC x=\nyz=4",
		       2);
	assert_string_equal(buf_cstr(b), "\xe2\x82\xac xyz=4");
	buf_free(&b);
	b = decode_str("base64", "utf-8", "4oKs\r\nIGV1cm8=\r\n", 1);
	assert_string_equal(buf_cstr(b), "\xe2\x82\xac euro");
	buf_free(&b);
	/* UTF-8 cut between chunks stays intact; invalid bytes are
	 * replaced */
	b = decode_str("8bit", "utf-8", "\xe2\x82\xac\xff\xc3", 1);
	assert_string_equal(buf_cstr(b),
			    "\xe2\x82\xac\xef\xbf\xbd\xef\xbf\xbd");
	buf_free(&b);
	b = decode_str("7bit", "unknown-8bit", "ok \xe9", 3);
	assert_string_equal(buf_cstr(b), "ok \xef\xbf\xbd");
	buf_free(&b);
	/* multi-byte charset through iconv, split at every byte */
	b = decode_mem("8bit", "UTF-16BE", "\x00h\x00i\x20\xac", 6, 1);
	assert_string_equal(buf_cstr(b), "hi\xe2\x82\xac");
	buf_free(&b);
	b = decode_str("binary", "windows-1252", "\x80 \x81", 2);
	assert_string_equal(buf_cstr(b), "\xe2\x82\xac \xef\xbf\xbd");
	buf_free(&b);
}

static int stop_cb(const void *data, size_t len, void *context)
{
	(void)data, (void)len, (void)context;
	return -1;
}

static void test_decoder_stop(void **state)
{
	(void)state;
	struct mime_decoder *d =
	    mime_decoder_new(STR("7bit"), STR_NULL, stop_cb, NULL);
	assert_int_equal(mime_decoder_feed(d, "abc", 3), -1);
	assert_int_equal(mime_decoder_feed(d, "abc", 3), -1);
	assert_int_equal(mime_decoder_finish(d), -1);
	mime_decoder_free(&d);
}

/* ---- dates ------------------------------------------------------------- */

static void assert_date(const char *s, int64_t t, int tz)
{
	int64_t got;
	int got_tz;
	assert_int_equal(mime_date_parse(str_cstr(s), &got, &got_tz), 1);
	assert_int_equal(got, t);
	assert_int_equal(got_tz, tz);
}

static void test_dates(void **state)
{
	(void)state;
	/* 2026-01-01 15:00:00 UTC */
	assert_date("Thu, 01 Jan 2026 15:00:00 +0000", 1767279600, 0);
	assert_date("1 Jan 2026 15:00:00 +0000", 1767279600, 0);
	assert_date("Thu, 1 Jan 2026 10:00:00 -0500", 1767279600, -300);
	assert_date("Thu, 1 Jan 2026 10:00:00 EST", 1767279600, -300);
	assert_date("Thu, 1 Jan 2026 07:00 PST", 1767279600, -480);
	assert_date("Thu,1 jan 26 15:00:00 GMT", 1767279600, 0);
	assert_date("  Thu (day), 01 (x) Jan 2026 16:30:00 +0130 (CET)",
		    1767279600, 90);
	assert_date("01 January 2026 15:00:00 Z", 1767279600, 0);
	assert_date("01-Jan-2026 15:00:00 +0000", 1767279600, 0);
	/* two-digit years, three-digit years, military zone = +0000 */
	assert_date("Fri, 31 Dec 99 23:59:59 +0000", 946684799, 0);
	assert_date("Fri, 31 Dec 099 23:59:59 A", 946684799, 0);
	assert_date("Mon, 05 Jan 26 10:00 EST  ", 1767625200, -300);
	/* leap day, leap second, before 1970 */
	assert_date("29 Feb 2024 00:00:00 +0000", 1709164800, 0);
	assert_date("31 Dec 2016 23:59:60 +0000", 1483228800, 0);
	assert_date("01 Jan 1960 00:00:00 +0000", -315619200, 0);

	int64_t t;
	int tz;
	static const char *const bad[] = {
	    "",
	    "not a date at all",
	    "32 Jan 2026 00:00:00 +0000",
	    "29 Feb 2025 00:00:00 +0000",
	    "1 Foo 2026 00:00:00 +0000",
	    "1 Jan 2026 24:00:00 +0000",
	    "1 Jan 2026 10:00:00 +12",
	    "1 Jan 2026",
	    "1 Jan 2026 10",
	    "1 Jan 2026 10:61 +0000",
	    "Thu, 01 Jan 20261 15:00:00 +0000",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(mime_date_parse(str_cstr(bad[i]), &t, &tz),
				 -1);

	/* the corpus dates through the envelope values */
	size_t len;
	uint8_t *data = read_mail("14-reply-thread.eml", &len);
	struct mime_message *msg = parse_chunked(data, len, 0, NULL);
	assert_int_equal(mime_date_parse(msg->root->envelope->date, &t, &tz),
			 1);
	assert_int_equal(t, 1767607200); /* 2026-01-05 10:00 UTC */
	mime_message_free(&msg);
	free(data);
}

/* ---- robustness ---------------------------------------------------------- */

static void test_garbage(void **state)
{
	(void)state;
	/* pseudo-random bytes from MIME-ish pieces: every writer must give
	 * balanced output, whatever the split */
	static const char *const pieces[] = {
	    "\r\n",
	    "\n",
	    "--b",
	    "--b--",
	    "Content-Type: multipart/mixed; "
	    "boundary=b",
	    "Content-Type: message/rfc822",
	    "\r\n\r\n",
	    "From: "
	    "\"x",
	    "(",
	    ")",
	    "<",
	    ">",
	    ":",
	    ";",
	    ",",
	    "@",
	    "\0",
	    "\xff",
	    " ",
	    "=?utf-8?q?",
	    "?=",
	    "To: g: a@b;",
	    "\t",
	};
	uint32_t rng = 12345;
	for (int round = 0; round < 300; round++) {
		char msgbuf[2048];
		size_t len = 0;
		while (len < sizeof(msgbuf) - 64) {
			rng = rng * 1103515245 + 12345;
			const char *p =
			    pieces[(rng >> 8) %
				   (sizeof(pieces) / sizeof(pieces[0]))];
			size_t n = p[0] == '\0' ? 1 : strlen(p);
			memcpy(msgbuf + len, p, n);
			len += n;
			if ((rng >> 20) % 50 == 0)
				break;
		}
		struct mime_message *a = parse_chunked(msgbuf, len, 0, NULL);
		struct mime_message *b =
		    parse_chunked(msgbuf, len, 1 + round % 5, NULL);
		char *sa = bodystructure_of(a->root, true);
		char *sb = bodystructure_of(b->root, true);
		assert_string_equal(sa, sb);
		int depth = 0;
		bool in_quote = false;
		for (const char *c = sa; *c != '\0'; c++) {
			if (*c == '{') {
				/* skip a literal */
				char *end;
				unsigned long n = strtoul(c + 1, &end, 10);
				c = end + 3 + n - 1;
				continue;
			}
			if (*c == '\\' && in_quote) {
				c++;
				continue;
			}
			if (*c == '"')
				in_quote = !in_quote;
			if (!in_quote)
				depth += *c == '(' ? 1 : *c == ')' ? -1 : 0;
		}
		assert_int_equal(depth, 0);
		free(sa);
		free(sb);
		char *ea = envelope_of(a->root);
		free(ea);
		mime_message_free(&a);
		mime_message_free(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_corpus_dovecot),
	    cmocka_unit_test(test_oracle_cases),
	    cmocka_unit_test(test_envelope_differences),
	    cmocka_unit_test(test_offsets),
	    cmocka_unit_test(test_sections),
	    cmocka_unit_test(test_boundaries),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_strings),
	    cmocka_unit_test(test_header_filter),
	    cmocka_unit_test(test_header_decode),
	    cmocka_unit_test(test_body_decode),
	    cmocka_unit_test(test_decoder_stop),
	    cmocka_unit_test(test_dates),
	    cmocka_unit_test(test_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
