/* Fuzzes the message cache file reader (backend/mailcache.c).
 *
 * Input: byte 0 picks the mode, the rest is the cache file:
 *   mode & 3 == 0: the bytes as they are;
 *   mode & 3 == 1: a valid header (UIDVALIDITY 1), then the bytes;
 *   mode & 3 >= 2: a valid header, then records made from the bytes
 *     (uid byte, field byte, length byte, value) with correct CRCs, then
 *     one byte flipped (at an offset drawn from the input) and the file cut.
 * The file is opened, every (uid 1..8, field) is looked up, then one value
 * is added: it must read back exactly, before and after a reopen, and the
 * file must stay within its limits. No crash, no leak. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/mailcache.h"
#include "buf.h"
#include "crc32.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FILE_MAX 65536

static char dir[64];
static char path[128];
static char lock_path[128];
static char tmp_path[128];

/* Removes the scratch directory when the fuzzer exits. */
static void cleanup(void)
{
	unlink(path);
	unlink(lock_path);
	unlink(tmp_path);
	rmdir(dir);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static size_t put_header(uint8_t *out)
{
	memset(out, 0, MAILCACHE_HEADER_SIZE);
	memcpy(out, "MRCACHE1", 8);
	put_u32(out + 8, MAILCACHE_VERSION);
	put_u32(out + 12, MAILCACHE_HEADER_SIZE);
	put_u32(out + 16, MAILCACHE_RECORD_HEAD_SIZE);
	put_u32(out + 20, 1);
	put_u32(out + 28, crc32_update(0, out, 28));
	return MAILCACHE_HEADER_SIZE;
}

/* Builds records from in; returns the file length. */
static size_t build_records(const uint8_t *in, size_t len, uint8_t *out)
{
	size_t o = put_header(out), i = 0;

	while (i + 3 <= len) {
		uint32_t uid = 1 + in[i] % 8;
		uint8_t field = in[i + 1] % MAILCACHE_FIELD_COUNT;
		size_t vlen = field == MAILCACHE_SENT_DATE
				  ? MAILCACHE_SENT_DATE_SIZE
				  : in[i + 2];
		i += 3;
		if (vlen > len - i)
			vlen = len - i;
		if (o + MAILCACHE_RECORD_HEAD_SIZE + vlen > FILE_MAX)
			break;
		uint8_t *h = out + o;
		put_u32(h, uid);
		h[4] = field;
		h[5] = h[6] = h[7] = 0;
		put_u32(h + 8, (uint32_t)vlen);
		memcpy(h + MAILCACHE_RECORD_HEAD_SIZE, in + i, vlen);
		uint32_t crc = crc32_update(0, h, 12);
		put_u32(h + 12, crc32_update(
				    crc, h + MAILCACHE_RECORD_HEAD_SIZE, vlen));
		put_u32(h + 16, crc32_update(0, h, 16));
		o += MAILCACHE_RECORD_HEAD_SIZE + vlen;
		i += vlen;
	}
	return o;
}

static void write_cache(const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd == -1 || (len > 0 && write(fd, buf, len) != (ssize_t)len))
		abort();
	close(fd);
}

static void check_added(struct mailcache *c, const uint8_t *v, size_t len)
{
	const char *error;
	struct buf *b = buf_new(64, 4096);

	if (mailcache_lookup(c, 3, MAILCACHE_HEADERS, b, &error) != 1 ||
	    b->len != len || (len > 0 && memcmp(b->data, v, len) != 0))
		abort();
	buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t file[FILE_MAX + MAILCACHE_HEADER_SIZE];
	struct mailcache_settings set = {.max_size = 64 * 1024,
					 .max_value = 1024,
					 .max_records = 16,
					 .lock_timeout_msecs = 1000};
	struct mailcache *c = NULL;
	const char *error;
	size_t len;

	if (size < 1)
		return 0;
	if (dir[0] == '\0') {
		log_set_level(LOG_LEVEL_ERROR);
		snprintf(dir, sizeof(dir), "/tmp/fuzz_mailcache.XXXXXX");
		if (mkdtemp(dir) == NULL)
			abort();
		snprintf(path, sizeof(path), "%s/%s", dir, MAILCACHE_FILE_NAME);
		snprintf(lock_path, sizeof(lock_path), "%s/%s", dir,
			 MAILCACHE_LOCK_NAME);
		snprintf(tmp_path, sizeof(tmp_path), "%s/%s", dir,
			 MAILCACHE_TMP_NAME);
		atexit(cleanup);
	}
	uint8_t mode = data[0];
	data++;
	size--;
	if (size > FILE_MAX)
		size = FILE_MAX;
	switch (mode & 3) {
	case 0:
		memcpy(file, data, size);
		len = size;
		break;
	case 1:
		len = put_header(file);
		memcpy(file + len, data, size);
		len += size;
		break;
	default: {
		uint32_t flip =
		    size >= 4 ? (uint32_t)data[0] << 8 | data[1] : 0;
		uint32_t cut = size >= 4 ? (uint32_t)data[2] << 8 | data[3] : 0;
		size_t skip = size >= 4 ? 4 : size;
		len = build_records(data + skip, size - skip, file);
		if ((mode & 4) != 0 && len > 0)
			file[flip % len] ^= (uint8_t)(1u << (mode >> 5));
		if ((mode & 8) != 0 && cut < len)
			len = cut;
		break;
	}
	}
	write_cache(file, len);

	int ret = mailcache_open(dir, 1, &set, &c, &error);
	if (ret < 0 || c == NULL)
		abort();
	struct buf *b = buf_new(64, 4096);
	for (uint32_t uid = 1; uid <= 8; uid++) {
		for (unsigned int fl = 0; fl < MAILCACHE_FIELD_COUNT; fl++) {
			size_t before = b->len;
			int r = mailcache_lookup(c, uid, fl, b, &error);
			if (r < 0 || (r == 0 && b->len != before))
				abort();
			if (r == 1 && fl == MAILCACHE_SENT_DATE &&
			    b->len - before != MAILCACHE_SENT_DATE_SIZE)
				abort();
			buf_reset(b);
		}
	}
	buf_free(&b);

	const uint8_t *v = size > 0 ? data : NULL;
	size_t vlen = size < 200 ? size : 200;
	ret = mailcache_add(c, 3, MAILCACHE_HEADERS, v, vlen, &error);
	if (ret < 0)
		abort();
	if (ret == 1)
		check_added(c, v, vlen);
	struct mailcache_stats st;
	mailcache_get_stats(c, &st);
	if (st.records > set.max_records)
		abort();
	mailcache_close(&c);
	if (ret == 1) {
		if (mailcache_open(dir, 1, &set, &c, &error) != 1)
			abort();
		check_added(c, v, vlen);
		mailcache_close(&c);
	}
	unlink(path);
	unlink(tmp_path);
	return 0;
}
