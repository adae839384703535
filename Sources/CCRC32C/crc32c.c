// CRC32C with a hardware path (x86-64 SSE4.2 `crc32`, ARMv8 CRC extension)
// selected at run time, and a portable slicing-by-8 table fallback.
#include "CCRC32C.h"

#include <pthread.h>
#include <string.h>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

#define CAIRN_CRC32C_POLY 0x82F63B78u

// Advances a raw CRC register over 4096 zero bytes (defined below).
static uint32_t cairn_crc32c_shift_4096_zeros(uint32_t crc);

static uint32_t cairn_crc32c_table[8][256];
static pthread_once_t cairn_crc32c_table_once = PTHREAD_ONCE_INIT;

static void cairn_crc32c_build_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ CAIRN_CRC32C_POLY : (c >> 1);
        cairn_crc32c_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = cairn_crc32c_table[0][n];
        for (int t = 1; t < 8; t++) {
            c = cairn_crc32c_table[0][c & 0xFF] ^ (c >> 8);
            cairn_crc32c_table[t][n] = c;
        }
    }
}

uint32_t cairn_crc32c_update_portable(uint32_t crc, const void *buf, size_t len) {
    pthread_once(&cairn_crc32c_table_once, cairn_crc32c_build_tables);
    const uint8_t *p = (const uint8_t *)buf;
    uint32_t c = ~crc;
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = cairn_crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        word = __builtin_bswap64(word);
#endif
        uint32_t lo = (uint32_t)word ^ c;
        uint32_t hi = (uint32_t)(word >> 32);
        c = cairn_crc32c_table[7][lo & 0xFF] ^ cairn_crc32c_table[6][(lo >> 8) & 0xFF] ^
            cairn_crc32c_table[5][(lo >> 16) & 0xFF] ^ cairn_crc32c_table[4][lo >> 24] ^
            cairn_crc32c_table[3][hi & 0xFF] ^ cairn_crc32c_table[2][(hi >> 8) & 0xFF] ^
            cairn_crc32c_table[1][(hi >> 16) & 0xFF] ^ cairn_crc32c_table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len-- > 0) c = cairn_crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

#if defined(__x86_64__)

__attribute__((target("sse4.2")))
uint32_t cairn_crc32c_update_hardware(uint32_t crc, const void *buf, size_t len) {
    const uint8_t *p = (const uint8_t *)buf;
    uint64_t c = (uint32_t)~crc;
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        len--;
    }
    // Three independent streams hide the instruction's 3-cycle latency.
    if (len >= 3 * 4096) {
        const size_t block = 4096;
        while (len >= 3 * block) {
            uint64_t c1 = 0, c2 = 0;
            const uint8_t *p1 = p + block, *p2 = p + 2 * block;
            for (size_t i = 0; i < block; i += 8) {
                uint64_t w0, w1, w2;
                memcpy(&w0, p + i, 8);
                memcpy(&w1, p1 + i, 8);
                memcpy(&w2, p2 + i, 8);
                c = __builtin_ia32_crc32di(c, w0);
                c1 = __builtin_ia32_crc32di(c1, w1);
                c2 = __builtin_ia32_crc32di(c2, w2);
            }
            // Combine the streams: crc(A‖B) = shift(crc(A), |B|) ^ crc0(B), where the
            // second and third streams started from a zero register.
            c = cairn_crc32c_shift_4096_zeros((uint32_t)c) ^ (uint32_t)c1;
            c = cairn_crc32c_shift_4096_zeros((uint32_t)c) ^ (uint32_t)c2;
            p += 3 * block;
            len -= 3 * block;
        }
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    while (len-- > 0) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return ~(uint32_t)c;
}

static int cairn_crc32c_detect(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}
static const char *cairn_crc32c_hw_name = "sse4.2";

#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32) || (defined(__aarch64__) && defined(__linux__))

__attribute__((target("crc")))
uint32_t cairn_crc32c_update_hardware(uint32_t crc, const void *buf, size_t len) {
    const uint8_t *p = (const uint8_t *)buf;
    uint32_t c = ~crc;
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = __builtin_arm_crc32cb(c, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_arm_crc32cd(c, w);
        p += 8;
        len -= 8;
    }
    while (len-- > 0) c = __builtin_arm_crc32cb(c, *p++);
    return ~c;
}

static int cairn_crc32c_detect(void) {
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_CRC32) ? 1 : 0;
#else
    return 1;
#endif
}
static const char *cairn_crc32c_hw_name = "armv8-crc";

#else

uint32_t cairn_crc32c_update_hardware(uint32_t crc, const void *buf, size_t len) {
    return cairn_crc32c_update_portable(crc, buf, len);
}
static int cairn_crc32c_detect(void) { return 0; }
static const char *cairn_crc32c_hw_name = "portable";

#endif

// GF(2) matrix helpers to advance a raw (non-inverted) CRC register over `zeros`
// zero bytes; used to combine interleaved hardware streams.
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1) sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = gf2_times(mat, mat[n]);
}

static uint32_t cairn_shift_4096[32];
static pthread_once_t cairn_shift_once = PTHREAD_ONCE_INIT;

static void cairn_build_shift(void) {
    uint32_t odd[32], even[32];
    // Operator for one zero bit.
    odd[0] = CAIRN_CRC32C_POLY;
    uint32_t row = 1;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_square(even, odd);  // 2 bits
    gf2_square(odd, even);  // 4 bits
    gf2_square(even, odd);  // 8 bits = 1 byte
    // 4096 bytes = 2^12 bytes: square 12 more times.
    uint32_t *cur = even, *next = odd;
    for (int i = 0; i < 12; i++) {
        gf2_square(next, cur);
        uint32_t *t = cur;
        cur = next;
        next = t;
    }
    memcpy(cairn_shift_4096, cur, sizeof(cairn_shift_4096));
}

static uint32_t cairn_crc32c_shift_4096_zeros(uint32_t crc) {
    pthread_once(&cairn_shift_once, cairn_build_shift);
    return gf2_times(cairn_shift_4096, crc);
}

static int cairn_crc32c_hw = -1;
static pthread_once_t cairn_crc32c_detect_once = PTHREAD_ONCE_INIT;
static void cairn_crc32c_do_detect(void) { cairn_crc32c_hw = cairn_crc32c_detect(); }

int cairn_crc32c_hardware_available(void) {
    pthread_once(&cairn_crc32c_detect_once, cairn_crc32c_do_detect);
    return cairn_crc32c_hw;
}

uint32_t cairn_crc32c_update(uint32_t crc, const void *buf, size_t len) {
    if (cairn_crc32c_hardware_available()) return cairn_crc32c_update_hardware(crc, buf, len);
    return cairn_crc32c_update_portable(crc, buf, len);
}

const char *cairn_crc32c_implementation(void) {
    return cairn_crc32c_hardware_available() ? cairn_crc32c_hw_name : "portable";
}
