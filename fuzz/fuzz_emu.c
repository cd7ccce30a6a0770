/*
 * libFuzzer target for the emulator's PE mapper and Windows environment
 * (issue 4): any bytes that the strict loader accepts are mapped (sections,
 * relocations, imports bound to the stand-in modules, TLS) and run under
 * tight limits (10,000 instructions, 64 MiB, 200 API calls), so malformed
 * images, loops, API storms and memory bombs must end at a limit or a
 * reported fault, and the limits must hold. Then the dumper (dump.c) reads
 * the guest's memory, which the sample controls, at the last layer's entry
 * or the entry point, and what it writes must parse again. Seeds:
 * fuzz/corpus/emu and fuzz/corpus/pe.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

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
	lim.max_api_calls = 200;
	lim.stop_at_wx = (size & 1) != 0;
	if (mamori_emu_new(&emu, bin, &lim) == MAMORI_OK && mamori_emu_run(emu, &rep) == MAMORI_OK &&
	    (rep.insns > lim.max_insns + 16 || rep.api_calls > lim.max_api_calls ||
	     mamori_emu_trace_count(emu) > rep.api_calls))
		__builtin_trap(); /* the limits must hold */
	if (emu) {
		size_t n = mamori_emu_layer_count(emu);
		uint64_t at = n ? mamori_emu_layer_at(emu, n - 1)->entry : bin->entry;
		uint8_t *dump = NULL;
		size_t dump_len = 0;
		mamori_binary *again = NULL;
		if (mamori_emu_dump(&dump, &dump_len, emu, at) == MAMORI_OK &&
		    mamori_binary_parse(&again, dump, dump_len, NULL) != MAMORI_OK)
			__builtin_trap(); /* a dump must load in our own loader */
		mamori_binary_free(again);
		free(dump);
	}
	mamori_emu_free(emu);
	mamori_binary_free(bin);
	return 0;
}
