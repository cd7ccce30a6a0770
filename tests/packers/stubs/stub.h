/*
 * The shared part of the test packers' stubs (freestanding mingw-w64 code,
 * never compiled by the host): the loader that maps the original's image
 * from the payload into VirtualAlloc'd memory. The APIs come from the
 * caller, so the lz stub can take them from its import table and the
 * anti-emulation stub from its hash-resolved table.
 */
#ifndef MAMORI_PACKERS_STUB_H
#define MAMORI_PACKERS_STUB_H

#include <windows.h>

#include "stubcfg.h"

typedef struct mpk_api {
	HMODULE(WINAPI *load_library)(LPCSTR);
	FARPROC(WINAPI *get_proc_address)(HMODULE, LPCSTR);
	LPVOID(WINAPI *virtual_alloc)(LPVOID, SIZE_T, DWORD, DWORD);
} mpk_api;

/* The linker's symbol for our own image base (relocated with us). */
extern IMAGE_DOS_HEADER __ImageBase;

/* The configuration block the packer patches, in .data. */
extern mpk_config mpk_cfg;

/* mpk_cfg through a pointer the compiler cannot see through, so that it
 * never folds the unpatched initial values into the code. */
const mpk_config *mpk_config_get(void);

/*
 * Map the original image held by `cfg`'s payload: allocate, decode, apply
 * base relocations, resolve imports, run TLS callbacks (when flagged).
 * Returns 0 and the original entry point in *entry, or an MPK_EXIT_* code.
 */
uint32_t mpk_load(void **entry, const mpk_config *cfg, const mpk_api *api);

/* gcc may emit calls to these even in freestanding code. */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);

#endif
