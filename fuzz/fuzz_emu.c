/*
 * libFuzzer target for the emulator's PE mapper (issue 4): any bytes that
 * the strict loader accepts are mapped and run under tight limits (10,000
 * instructions, 64 MiB), so malformed images, loops and memory bombs must
 * end at a limit or a reported fault. Seeds: fuzz/corpus/pe.
 */
#include <stddef.h>
#include <stdint.h>

#include "mamori/binfmt.h"
#include "mamori/emu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mamori_binary *bin = NULL;
	mamori_emu *emu = NULL;
	mamori_emu_report rep;
	if (mamori_binary_parse(&bin, data, size, NULL) != MAMORI_OK)
		return 0;
	mamori_emu_limits lim = mamori_emu_limits_default();
	lim.max_insns = 10000;
	lim.max_memory = (uint64_t)64 << 20;
	lim.stop_at_wx = (size & 1) != 0;
	if (mamori_emu_new(&emu, bin, &lim) == MAMORI_OK && mamori_emu_run(emu, &rep) == MAMORI_OK &&
	    rep.insns > lim.max_insns + 16)
		__builtin_trap(); /* the instruction limit must hold */
	mamori_emu_free(emu);
	mamori_binary_free(bin);
	return 0;
}
