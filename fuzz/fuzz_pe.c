/* libFuzzer target for the PE loader alone (seeds: fuzz/corpus/pe). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_one(data, size, binfmt_pe_parse);
}
