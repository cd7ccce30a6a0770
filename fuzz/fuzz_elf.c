/* libFuzzer target for the ELF loader alone (seeds: fuzz/corpus/elf). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_one(data, size, binfmt_elf_parse);
}
