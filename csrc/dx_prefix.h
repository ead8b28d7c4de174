/*
 * dx_prefix.h - feature macros; every csrc file includes it first so that
 * accept4, MSG_NOSIGNAL, SOCK_CLOEXEC and clock_gettime are declared.
 */
#ifndef DX_PREFIX_H
#define DX_PREFIX_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#endif
