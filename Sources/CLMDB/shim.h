// liblmdb's public header. No helpers are needed: every LMDB entry point is a
// plain C function Swift can call directly.
#include <lmdb.h>
