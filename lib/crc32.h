#ifndef MR_LIB_CRC32_H
#define MR_LIB_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32 as zlib's crc32(): start with 0, feed pieces in order;
 * crc32_update(0, "123456789", 9) == 0xcbf43926. */
uint32_t crc32_update(uint32_t crc, const void *data, size_t len);

#endif
