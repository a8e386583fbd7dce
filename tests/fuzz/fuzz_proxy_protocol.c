/* Fuzzes the PROXY v1/v2 header parser: every prefix of the input must give
 * NEED_MORE with a growing target, or the same final answer as the whole. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_proto_info info;
	size_t consumed;
	const char *error;
	enum proxy_proto_result full =
		proxy_proto_parse(data, size, &info, &consumed, &error);

	if (full == PROXY_PROTO_DONE && (consumed == 0 || consumed > size))
		abort();
	if (full == PROXY_PROTO_NEED_MORE &&
	    (consumed <= size || consumed > PROXY_PROTO_MAX_HEADER))
		abort();
	if (full == PROXY_PROTO_ERROR && error == NULL)
		abort();
	/* Feeding a prefix never decides differently from the whole, except
	 * by asking for more. */
	size_t step = size > 64 ? size / 64 : 1;
	for (size_t i = 0; i < size; i += step) {
		size_t c2;
		enum proxy_proto_result r =
			proxy_proto_parse(data, i, &info, &c2, &error);
		if (r == PROXY_PROTO_DONE &&
		    (full != PROXY_PROTO_DONE || c2 != consumed))
			abort();
		if (r == PROXY_PROTO_NEED_MORE && c2 <= i)
			abort();
	}
	return 0;
}
