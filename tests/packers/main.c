/*
 * mamori-testpack: command line for the test packers (a test tool, not
 * installed). Usage: mamori-testpack xor --key N IN.exe OUT.exe. The key is
 * a 32-bit number (decimal or 0x hex); input size is bounded by
 * MAMORI_MAX_SAMPLE_SIZE.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamori/base.h"
#include "testpack.h"

static int usage(void)
{
	fprintf(stderr, "usage: mamori-testpack xor --key N IN.exe OUT.exe\n");
	return MAMORI_EXIT_USAGE;
}

int main(int argc, char **argv)
{
	uint8_t *in = NULL, *out = NULL;
	size_t in_len = 0, out_len = 0;
	int ret = MAMORI_EXIT_FAILURE;

	if (argc != 6 || strcmp(argv[1], "xor") != 0 || strcmp(argv[2], "--key") != 0)
		return usage();
	char *end = NULL;
	errno = 0;
	unsigned long long key = strtoull(argv[3], &end, 0);
	if (errno || !end || *end || end == argv[3] || key > UINT32_MAX || argv[3][0] == '-') {
		fprintf(stderr, "mamori-testpack: --key wants a number in 0..4294967295\n");
		return MAMORI_EXIT_USAGE;
	}
	int rc = mamori_file_read(&in, &in_len, argv[4], MAMORI_MAX_SAMPLE_SIZE);
	if (rc != MAMORI_OK) {
		fprintf(stderr, "mamori-testpack: %s: %s\n", argv[4], mamori_error_detail());
		goto done;
	}
	mamori_testpack_info info;
	rc = mamori_testpack_xor(&out, &out_len, &info, in, in_len, (uint32_t)key);
	if (rc != MAMORI_OK) {
		fprintf(stderr, "mamori-testpack: %s: %s\n", argv[4], mamori_error_detail());
		ret = MAMORI_EXIT_BADINPUT;
		goto done;
	}
	rc = mamori_file_write_atomic(argv[5], out, out_len);
	if (rc != MAMORI_OK) {
		fprintf(stderr, "mamori-testpack: %s: %s\n", argv[5], mamori_error_detail());
		goto done;
	}
	printf("packed %s -> %s: .text rva 0x%x size 0x%x, oep 0x%x, stub rva 0x%x (%u bytes)%s\n", argv[4],
	       argv[5], info.text_rva, info.text_size, info.oep_rva, info.stub_rva, info.stub_size,
	       info.tls_neutralised ? ", TLS callbacks cut off" : "");
	ret = MAMORI_EXIT_OK;
done:
	free(in);
	free(out);
	return ret;
}
