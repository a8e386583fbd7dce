#ifndef MR_POP3_PROXY_H
#define MR_POP3_PROXY_H

/* The two halves of the POP3 proxy: pop3_client.c (the client before
 * login, and pop3_protocol) and pop3_backend.c (the login at the backend). */

#include "proxy.h"

void pop3_backend_start(struct backend_login *bl);
void pop3_backend_line(struct backend_login *bl, struct str line);
void pop3_backend_tls_ready(struct backend_login *bl);

#endif
