// libzstd's streaming API. ZSTD_STATIC_LINKING_ONLY is not defined: only the
// stable API is used, so any libzstd >= 1.4 works.
#include <zstd.h>
