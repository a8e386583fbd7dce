#ifndef MR_SMTP_PARSE_H
#define MR_SMTP_PARSE_H

/* Incremental SMTP/LMTP command line parser (RFC 5321, RFC 2033 LHLO,
 * RFC 3030 BDAT, RFC 6531 SMTPUTF8 addresses) and the DATA-phase
 * dot-unstuffing decoder. Pure: bytes in, commands or message bytes out.
 *
 * Command lines end with CRLF or a bare LF (lenient like Postfix and
 * Dovecot); a CR directly before the LF belongs to the line end. NUL is
 * rejected anywhere. The verb is letters, digits, '-' or '_', at most
 * SMTP_VERB_MAX_LEN bytes, case-insensitive; an unknown verb is still a
 * command (verb SMTP_VERB_UNKNOWN) so the session can answer 500.
 *
 * Per verb:
 *   MAIL FROM:<path> [params]  reverse path; "<>" is the null path
 *   RCPT TO:<path> [params]    forward path; "<Postmaster>" needs no domain
 *   BDAT size [LAST]
 *   HELO/EHLO/LHLO, VRFY, AUTH need an argument (args, as sent)
 *   DATA, RSET, QUIT, STARTTLS take none
 *   NOOP, HELP, XCLIENT, unknown verbs: args as sent, unchecked
 * "FROM:" and "TO:" are case-insensitive, and spaces between the colon
 * and '<' are tolerated (RFC 5321 has none; many clients send one). A
 * source route "<@a,@b:user@c>" is accepted and dropped. Addresses may
 * carry UTF-8 (8-bit bytes are taken as SMTPUTF8, not validated).
 *
 * Every error is recoverable: the bad line is consumed (for TOO_LONG the
 * rest is discarded as it arrives) and the next call goes on with the next
 * line. Suggested replies: TOO_LONG "500 5.5.2", EMPTY/BAD_VERB "500
 * 5.5.2", BAD_SYNTAX/BAD_PARAM/TOO_MANY_PARAMS "501 5.5.4", BAD_PATH
 * "501 5.1.7" (MAIL) or "501 5.1.3" (RCPT). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "str.h"

#define SMTP_VERB_MAX_LEN 40
/* RFC 5321 section 4.5.3.1.4: 512 octets including CRLF. */
#define SMTP_LINE_MAX_DEFAULT 512

struct smtp_parser;
struct smtp_data_decoder;

struct smtp_parser_limits {
	size_t max_line_len;     /* bytes of a line including its line end */
	unsigned int max_params; /* ESMTP parameters of MAIL or RCPT */
};

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_LHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_XCLIENT,
};

struct smtp_param {
	struct str keyword; /* as sent; compare with str_eq_nocase */
	struct str value;   /* empty when has_value is false */
	bool has_value;
};

struct smtp_path {
	bool null;         /* "<>" */
	struct str raw;    /* between '<' and '>' without source route */
	struct str local;  /* local part, unquoted and unescaped */
	struct str domain; /* empty only for RCPT TO:<Postmaster> */
	bool quoted;       /* the local part was a quoted string */
};

struct smtp_command {
	enum smtp_verb verb;
	struct str verb_str; /* as sent */
	/* Everything after the verb and the one space after it, as sent. */
	struct str args;
	/* MAIL, RCPT */
	struct smtp_path path;
	const struct smtp_param *params;
	size_t param_count;
	/* BDAT */
	uint64_t bdat_size;
	bool bdat_last;
	uint64_t offset; /* stream offset of the line */
};

enum smtp_parse_result {
	SMTP_PARSE_ERROR = -1,
	SMTP_PARSE_MORE = 0,    /* all input consumed, feed more */
	SMTP_PARSE_COMMAND = 1, /* *cmd_r holds a command */
};

enum smtp_parse_error_kind {
	SMTP_PARSE_ERR_NONE = 0,
	SMTP_PARSE_ERR_TOO_LONG,        /* line over max_line_len */
	SMTP_PARSE_ERR_NUL,             /* NUL byte in the line */
	SMTP_PARSE_ERR_EMPTY,           /* empty line */
	SMTP_PARSE_ERR_BAD_VERB,        /* verb missing, too long, bad bytes */
	SMTP_PARSE_ERR_BAD_SYNTAX,      /* arguments wrong for the verb */
	SMTP_PARSE_ERR_BAD_PATH,        /* malformed MAIL/RCPT path */
	SMTP_PARSE_ERR_BAD_PARAM,       /* malformed ESMTP parameter */
	SMTP_PARSE_ERR_TOO_MANY_PARAMS, /* more than max_params */
};

struct smtp_parse_error {
	enum smtp_parse_error_kind kind;
	const char *msg;     /* static, client-safe reason */
	enum smtp_verb verb; /* when the verb was recognised */
	uint64_t offset;     /* stream offset of the offending byte */
};

/* Creates a parser with the given limits (copied). Never fails. */
struct smtp_parser *smtp_parser_new(const struct smtp_parser_limits *limits);
/* Frees *parser and sets it to NULL; safe on NULL. */
void smtp_parser_free(struct smtp_parser **parser);

/* Consumes bytes from data[0..size) and sets *consumed_r. Returns MORE
 * (all consumed), COMMAND (consumed ends after the line's LF; slices valid
 * until the next call) or ERROR (*error_r; the next call goes on with the
 * next line). After DATA, feed the following bytes to an smtp_data_decoder
 * instead; after BDAT, take bdat_size raw bytes. */
enum smtp_parse_result smtp_parser_parse(struct smtp_parser *parser,
					 const void *data, size_t size,
					 size_t *consumed_r,
					 struct smtp_command *cmd_r,
					 struct smtp_parse_error *error_r);

/* Counts n bytes the caller consumed elsewhere between two lines (a DATA
 * body, a BDAT chunk) into the stream offsets this parser reports. */
void smtp_parser_advance(struct smtp_parser *parser, uint64_t n);

/* Maps a verb (any case) to its enum; SMTP_VERB_UNKNOWN if unknown. */
enum smtp_verb smtp_verb_lookup(struct str verb);

/* ---- DATA phase ---------------------------------------------------------- */

/* Streams a DATA body: removes the leading '.' of dot-stuffed lines, keeps
 * line ends as sent, and stops after the terminating "CRLF.CRLF". Only
 * CRLF counts as a line end there: a bare LF or bare CR is message data
 * (so "\n.\n" never ends a message: no SMTP smuggling); one is recorded in
 * smtp_data_decoder_bare_eol() so policy can refuse it.
 *
 * max_size bounds the message after unstuffing. Past it the decoder keeps
 * consuming to the terminator but produces nothing more, and ends with
 * SMTP_DATA_TOO_BIG instead of SMTP_DATA_DONE, so the session answers 552
 * and goes on with the next command. */
enum smtp_data_result {
	SMTP_DATA_TOO_BIG = -1, /* the message ended, but was over max_size */
	SMTP_DATA_MORE = 0,     /* feed more input (or drain the output) */
	SMTP_DATA_DONE = 1,     /* the message ended */
};

/* Creates a decoder for one message of at most max_size bytes. */
struct smtp_data_decoder *smtp_data_decoder_new(uint64_t max_size);
void smtp_data_decoder_free(struct smtp_data_decoder **dec);
/* Makes the decoder ready for the next message. */
void smtp_data_decoder_reset(struct smtp_data_decoder *dec);

/* Decodes in[0..in_size) into out[0..out_size). Sets *consumed_r and
 * *produced_r. Returns MORE when the input is consumed or the output is
 * full (consumed < in_size: drain out and call again; out_size >= 2 always
 * makes progress), DONE or TOO_BIG when the terminator has been consumed:
 * the bytes after it belong to the next command. After the end it keeps
 * returning the same result and consumes nothing until reset. */
enum smtp_data_result smtp_data_decode(struct smtp_data_decoder *dec,
				       const void *in, size_t in_size,
				       size_t *consumed_r, void *out,
				       size_t out_size, size_t *produced_r);

/* Message bytes so far, after unstuffing (also those past max_size). */
uint64_t smtp_data_decoder_size(const struct smtp_data_decoder *dec);
/* Whether the size passed max_size. */
bool smtp_data_decoder_over_limit(const struct smtp_data_decoder *dec);
/* Whether the message had a bare LF or a bare CR. */
bool smtp_data_decoder_bare_eol(const struct smtp_data_decoder *dec);

#endif
