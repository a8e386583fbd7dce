#include "line_reader.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "str.h"
#include "xmalloc.h"

void line_reader_init(struct line_reader *lr, size_t line_max, bool secret)
{
	memset(lr, 0, sizeof(*lr));
	lr->line_max = line_max;
	lr->secret = secret;
}

void line_reader_deinit(struct line_reader *lr)
{
	if (lr->line != NULL && lr->secret)
		str_wipe(lr->line, lr->line_size);
	free(lr->line);
	lr->line = NULL;
}

static void line_reset(struct line_reader *lr)
{
	lr->line_len = 0;
	lr->line_start = lr->stream_pos;
	lr->reset_pending = false;
}

bool line_reader_partial(const struct line_reader *lr)
{
	return lr->line_len > 0 && !lr->reset_pending && !lr->skipping;
}

static void line_append(struct line_reader *lr, const uint8_t *data, size_t len)
{
	if (len == 0)
		return;
	size_t need = lr->line_len + len;
	assert(need <= lr->line_max);
	if (need > lr->line_size) {
		size_t nsize = lr->line_size < 64 ? 64 : lr->line_size;
		while (nsize < need)
			nsize *= 2;
		if (nsize > lr->line_max)
			nsize = lr->line_max;
		uint8_t *n = xmalloc(nsize);
		if (lr->line_len > 0)
			memcpy(n, lr->line, lr->line_len);
		if (lr->line != NULL && lr->secret)
			str_wipe(lr->line, lr->line_size);
		free(lr->line);
		lr->line = n;
		lr->line_size = nsize;
	}
	memcpy(lr->line + lr->line_len, data, len);
	lr->line_len = need;
}

int line_reader_read(struct line_reader *lr, const uint8_t *in, size_t size,
		     size_t limit, size_t *consumed_r, size_t *end_r,
		     enum line_reader_error *error_r, size_t *error_pos_r)
{
	size_t used = 0;

	assert(limit <= lr->line_max);
	*error_r = LINE_READER_OK;
	*error_pos_r = 0;
	if (lr->reset_pending)
		line_reset(lr);
	for (;;) {
		if (lr->skipping) {
			const uint8_t *lf = memchr(in + used, '\n', size - used);
			size_t n = lf == NULL ? size - used
					      : (size_t)(lf - (in + used)) + 1;
			used += n;
			lr->stream_pos += n;
			if (lf == NULL)
				break;
			lr->skipping = false;
			line_reset(lr);
		}
		if (used == size)
			break;
		const uint8_t *lf = memchr(in + used, '\n', size - used);
		size_t take = lf == NULL ? size - used : (size_t)(lf - (in + used)) + 1;
		if (take > limit - lr->line_len) {
			size_t fit = limit - lr->line_len;
			line_append(lr, in + used, fit);
			used += fit;
			lr->stream_pos += fit;
			*error_r = LINE_READER_TOO_LONG;
			*error_pos_r = lr->line_len;
			lr->skipping = true;
			*consumed_r = used;
			return -1;
		}
		line_append(lr, in + used, take);
		used += take;
		lr->stream_pos += take;
		if (lf == NULL)
			break;
		*consumed_r = used;
		lr->reset_pending = true;
		size_t end = lr->line_len - 1;
		if (end > 0 && lr->line[end - 1] == '\r')
			end--;
		const uint8_t *nul = memchr(lr->line, '\0', end);
		if (nul != NULL) {
			*error_r = LINE_READER_NUL;
			*error_pos_r = (size_t)(nul - lr->line);
			return -1;
		}
		*end_r = end;
		return 1;
	}
	*consumed_r = used;
	return 0;
}

void line_reader_skip(struct line_reader *lr, uint64_t n)
{
	assert(lr->reset_pending || (lr->line_len == 0 && !lr->skipping));
	lr->stream_pos += n;
	if (lr->reset_pending)
		lr->reset_pending = false;
	lr->line_len = 0;
	lr->line_start = lr->stream_pos;
}
