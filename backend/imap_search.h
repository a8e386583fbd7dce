#ifndef MR_IMAP_SEARCH_H
#define MR_IMAP_SEARCH_H

/* IMAP SEARCH programs: RFC 3501 section 6.4.4 search keys (plus CONDSTORE
 * MODSEQ, RFC 7162 section 3.1.5) parsed from the tokenizer's argument
 * tree into an immutable program, then evaluated one message at a time.
 *
 * The program owns copies of everything it needs from the arguments, so it
 * may outlive the command's parser buffer. Evaluation is pure over the
 * message description and the source callbacks: the same program can be
 * run on any number of messages (even from several threads), in any order.
 *
 * Evaluation order: keys answered from the index (flags, sequence, UID,
 * size, internal date, modseq) run first; keyword lookups next; then the
 * Date: header, other headers, the body, and TEXT last. Within AND and OR
 * the children are ordered by that cost once at parse time, and evaluation
 * stops as soon as the answer is known, so "UNSEEN BODY x" opens no
 * message that is seen. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap_parse.h"
#include "str.h"
#include "textmatch.h"

/* Flag bits of struct imap_search_message.flags. */
#define IMAP_SEARCH_FLAG_SEEN 0x01
#define IMAP_SEARCH_FLAG_ANSWERED 0x02
#define IMAP_SEARCH_FLAG_FLAGGED 0x04
#define IMAP_SEARCH_FLAG_DELETED 0x08
#define IMAP_SEARCH_FLAG_DRAFT 0x10

struct imap_search;

struct imap_search_parse_settings {
	/* Deepest nesting of parentheses, NOT and OR together ("NOT NOT x"
	 * is depth 2). 0 means IMAP_SEARCH_DEFAULT_MAX_DEPTH; values above
	 * IMAP_SEARCH_MAX_DEPTH are clamped to it. Recursion in parser and
	 * evaluator is bounded by it. */
	unsigned int max_depth;
	/* Search keys in the whole program, counting NOT, OR and lists.
	 * 0 means IMAP_SEARCH_DEFAULT_MAX_KEYS. Each key may cost a pass
	 * over a message, so this bounds the work one command can ask for
	 * per message. */
	unsigned int max_keys;
	/* Accept MODSEQ (the server advertises CONDSTORE). */
	bool allow_modseq;
};
#define IMAP_SEARCH_DEFAULT_MAX_DEPTH 32
/* Hard cap on max_depth: each level is one stack frame (~100 bytes) in
 * parser and evaluator. */
#define IMAP_SEARCH_MAX_DEPTH 256
#define IMAP_SEARCH_DEFAULT_MAX_KEYS 1000

enum imap_search_parse_result {
	/* Reply "<tag> BAD Error in IMAP command SEARCH: <error>". */
	IMAP_SEARCH_PARSE_BAD = -1,
	IMAP_SEARCH_PARSE_OK = 0,
	/* CHARSET other than UTF-8 or US-ASCII: reply
	 * "<tag> NO [BADCHARSET (UTF-8 US-ASCII)] <error>". */
	IMAP_SEARCH_PARSE_BADCHARSET = 1,
};

/* Parses the SEARCH arguments (after the command name, and after "UID" for
 * UID SEARCH: that only changes how the server numbers its reply).
 * args[0..count) is the tokenizer's argument list; the program copies what
 * it keeps, so the parser may go on. On failure *prog_r is NULL and
 * *error_r a client-safe text (client bytes in it, as in "Unknown argument
 * X", are sanitised to printable ASCII and cut): static, or in a
 * thread-local buffer valid until this thread's next imap_search_parse. */
enum imap_search_parse_result
imap_search_parse(const struct imap_arg *args, size_t count,
		  const struct imap_search_parse_settings *set,
		  struct imap_search **prog_r, const char **error_r);

/* Frees *prog and sets it to NULL; safe on NULL. */
void imap_search_free(struct imap_search **prog);

/* What the index knows about one message. */
struct imap_search_message {
	uint32_t seq;
	uint32_t uid;
	uint32_t flags; /* IMAP_SEARCH_FLAG_* */
	bool recent;    /* \Recent */
	uint64_t size;  /* RFC822.SIZE */
	/* INTERNALDATE: the instant, and the zone it was recorded in
	 * (minutes east of UTC). BEFORE/ON/SINCE compare its calendar date
	 * in that zone (RFC 3501: "disregarding time and timezone"). */
	int64_t internal_date;
	int internal_tz_min;
	uint64_t modseq; /* CONDSTORE; 0 when unknown */
	/* What "*" means right now: the highest sequence number (the
	 * message count) and the highest UID in the mailbox. */
	uint32_t max_seq;
	uint32_t max_uid;
};

/* Callbacks for what needs the message itself or the keyword table. Each
 * gets the ctx passed to imap_search_match. A callback left NULL makes its
 * keys evaluate to an error (-1). Every int-returning one returns 1 yes,
 * 0 no, -1 error (the message cannot be read). */
struct imap_search_source {
	/* Whether the message carries keyword name (the server maps its
	 * keyword bits to names; compare case-insensitively, as IMAP flags
	 * are). name is never a system flag: KEYWORD \Seen and friends are
	 * evaluated from msg->flags. */
	bool (*has_keyword)(void *ctx, struct str name);
	/* Whether some header field named field (case-insensitive, never
	 * empty) has a value containing pat. Values should be unfolded and
	 * RFC 2047-decoded to UTF-8 first. An empty pattern
	 * (textmatch_pattern_is_empty) asks whether the field exists at all:
	 * a loop "for each such field: textmatch_contains(pat, value)" gives
	 * exactly that. Used by FROM TO CC BCC SUBJECT HEADER. */
	int (*header_contains)(void *ctx, struct str field,
			       const struct textmatch_pattern *pat);
	/* Whether the body text (decoded from its transfer encoding and
	 * charset where the server can) contains pat; with include_headers
	 * the header block counts too (TEXT). Never called with an empty
	 * pattern: BODY "" and TEXT "" match every message. Stream the parts
	 * through struct textmatch. */
	int (*body_contains)(void *ctx, const struct textmatch_pattern *pat,
			     bool include_headers);
	/* The Date: header as an instant and its zone (minutes east of
	 * UTC). Returns 1, 0 when the header is missing or unparsable (the
	 * message is then taken as sent on 1970-01-01, so SENTBEFORE matches
	 * it and SENTSINCE does not), -1 on error. */
	int (*sent_date)(void *ctx, int64_t *unix_r, int *tz_min_r);
};

/* Evaluates prog for one message. Returns 1 match, 0 no match, -1 when a
 * source callback failed and the answer depends on it (the server then
 * fails the command with NO, as Dovecot does). */
int imap_search_match(const struct imap_search *prog,
		      const struct imap_search_message *msg,
		      const struct imap_search_source *src, void *ctx);

/* What the program needs beyond the index, as bits. */
#define IMAP_SEARCH_NEEDS_KEYWORDS 0x01
#define IMAP_SEARCH_NEEDS_HEADERS 0x02 /* header_contains, sent_date */
#define IMAP_SEARCH_NEEDS_BODY 0x04    /* body_contains */
unsigned int imap_search_needs(const struct imap_search *prog);
/* Whether any key reads the message (headers or body). */
bool imap_search_needs_text(const struct imap_search *prog);

/* Whether the program uses MODSEQ anywhere (even under NOT). RFC 7162
 * section 3.1.5: then the untagged reply ends in "(MODSEQ n)", where n is
 * the highest mod-sequence of the messages returned (not the key), and the
 * SEARCH counts as a CONDSTORE-enabling command. *max_key_r gets the
 * largest MODSEQ value among the keys (0 when none). */
bool imap_search_uses_modseq(const struct imap_search *prog,
			     uint64_t *max_key_r);

#endif
