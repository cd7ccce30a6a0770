/*
 * Stub of technique 2 (`lz`): unpack the LZSS-compressed original into
 * VirtualAlloc'd memory (loader.c) and jump to its entry point. Its APIs
 * come from an ordinary import table.
 */
#include "stub.h"

void stub_entry(void)
{
	const mpk_api api = { LoadLibraryA, GetProcAddress, VirtualAlloc };
	void *entry = NULL;
	uint32_t rc = mpk_load(&entry, mpk_config_get(), &api);

	if (rc != 0)
		ExitProcess(rc);
	((void (*)(void))entry)();
	ExitProcess(0);
}
