#ifndef CAIRN_CCRC32C_H
#define CAIRN_CCRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of `len` bytes at `buf`,
/// continuing from `crc`. Start with 0; pass a previous result to continue a
/// running checksum (pre- and post-inversion are applied internally).
/// Uses the CPU's CRC instruction when available, the table fallback otherwise.
uint32_t cairn_crc32c_update(uint32_t crc, const void *buf, size_t len);

/// The portable slicing-by-8 implementation (same contract as cairn_crc32c_update).
uint32_t cairn_crc32c_update_portable(uint32_t crc, const void *buf, size_t len);

/// The hardware implementation (same contract). Only call it when
/// cairn_crc32c_hardware_available() returns 1.
uint32_t cairn_crc32c_update_hardware(uint32_t crc, const void *buf, size_t len);

/// 1 when the CPU has a CRC32C instruction this build can use, else 0.
int cairn_crc32c_hardware_available(void);

/// A short name of the implementation cairn_crc32c_update uses ("sse4.2", "armv8-crc", "portable").
const char *cairn_crc32c_implementation(void);

#ifdef __cplusplus
}
#endif

#endif
