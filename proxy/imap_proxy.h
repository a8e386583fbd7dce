#ifndef MR_IMAP_PROXY_H
#define MR_IMAP_PROXY_H

/* State shared by the two halves of the IMAP proxy: imap_client.c (the
 * client before login) and imap_backend.c (the login at the backend). */

#include "imap_parse.h"
#include "proxy.h"

#define IMAP_GREETING "mailring ready."

enum imap_sasl_step {
	SASL_NONE = 0,    /* not inside AUTHENTICATE */
	SASL_PLAIN,       /* waiting for the PLAIN response */
	SASL_LOGIN_USER,  /* LOGIN mechanism: waiting for the user name */
	SASL_LOGIN_PASS,  /* LOGIN mechanism: waiting for the password */
};

struct imap_client_state {
	struct imap_parser *parser;
	enum imap_sasl_step sasl_step;
	char *tag; /* tag of the LOGIN/AUTHENTICATE being answered */
};

void imap_backend_start(struct backend_login *bl);
void imap_backend_line(struct backend_login *bl, struct str line);
void imap_backend_tls_ready(struct backend_login *bl);

#endif
