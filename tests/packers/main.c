/*
 * mamori-testpack: command line for the test packers (a test tool, not
 * installed).
 *
 *   mamori-testpack TECHNIQUE --key N [--layers N] [--outer xor|lz]
 *                   [--sleep MS] [--tls] [--stubs DIR] IN.exe OUT.exe
 *
 * TECHNIQUE is xor, lz, nested or antiemu (README.md). Numbers are decimal
 * or 0x hex; the key is 32-bit. Input size is bounded by
 * MAMORI_MAX_SAMPLE_SIZE. Exit codes: 0 packed, 2 usage, 3 input refused
 * (message on stderr), 1 other failures (I/O, memory).
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
	fprintf(stderr, "usage: mamori-testpack xor|lz|nested|antiemu --key N [--layers N] [--outer xor|lz]\n"
			"                       [--sleep MS] [--tls] [--stubs DIR] IN.exe OUT.exe\n");
	return MAMORI_EXIT_USAGE;
}

static int parse_u32(uint32_t *out, const char *s, const char *opt)
{
	char *end = NULL;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || !end || *end || end == s || v > UINT32_MAX || s[0] == '-') {
		fprintf(stderr, "mamori-testpack: %s wants a number in 0..4294967295\n", opt);
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

int main(int argc, char **argv)
{
	uint8_t *in = NULL, *out = NULL;
	size_t in_len = 0, out_len = 0;
	int ret = MAMORI_EXIT_FAILURE;
	mamori_testpack_opts opt = { 0 };
	uint32_t key = 0;
	int have_key = 0;
	const char *paths[2] = { NULL, NULL };
	int npaths = 0;

	if (argc < 2)
		return usage();
	const char *tech = argv[1];
	if (strcmp(tech, "xor") != 0 && strcmp(tech, "lz") != 0 && strcmp(tech, "nested") != 0 &&
	    strcmp(tech, "antiemu") != 0)
		return usage();
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		int has_val = i + 1 < argc;
		if (strcmp(a, "--key") == 0 && has_val) {
			if (parse_u32(&key, argv[++i], "--key"))
				return MAMORI_EXIT_USAGE;
			have_key = 1;
		} else if (strcmp(a, "--layers") == 0 && has_val) {
			if (parse_u32(&opt.layers, argv[++i], "--layers"))
				return MAMORI_EXIT_USAGE;
		} else if (strcmp(a, "--sleep") == 0 && has_val) {
			if (parse_u32(&opt.sleep_ms, argv[++i], "--sleep"))
				return MAMORI_EXIT_USAGE;
		} else if (strcmp(a, "--outer") == 0 && has_val) {
			const char *o = argv[++i];
			if (strcmp(o, "xor") == 0)
				opt.outer = MAMORI_TESTPACK_OUTER_XOR;
			else if (strcmp(o, "lz") == 0)
				opt.outer = MAMORI_TESTPACK_OUTER_LZ;
			else
				return usage();
		} else if (strcmp(a, "--stubs") == 0 && has_val) {
			opt.stub_dir = argv[++i];
		} else if (strcmp(a, "--tls") == 0) {
			opt.run_tls = 1;
		} else if (a[0] == '-' || npaths == 2) {
			return usage();
		} else {
			paths[npaths++] = a;
		}
	}
	if (!have_key || npaths != 2)
		return usage();
	int rc = mamori_file_read(&in, &in_len, paths[0], MAMORI_MAX_SAMPLE_SIZE);
	if (rc != MAMORI_OK) {
		fprintf(stderr, "mamori-testpack: %s: %s\n", paths[0], mamori_error_detail());
		goto done;
	}
	mamori_testpack_info xi;
	mamori_testpack_image_info ii;
	if (strcmp(tech, "xor") == 0)
		rc = mamori_testpack_xor(&out, &out_len, &xi, in, in_len, key);
	else if (strcmp(tech, "lz") == 0)
		rc = mamori_testpack_lz(&out, &out_len, &ii, in, in_len, key, &opt);
	else if (strcmp(tech, "nested") == 0)
		rc = mamori_testpack_nested(&out, &out_len, &ii, in, in_len, key, &opt);
	else
		rc = mamori_testpack_antiemu(&out, &out_len, &ii, in, in_len, key, &opt);
	if (rc != MAMORI_OK) {
		fprintf(stderr, "mamori-testpack: %s: %s\n", paths[0], mamori_error_detail());
		ret = rc == MAMORI_EUNSUPPORTED || rc == MAMORI_EFORMAT || rc == MAMORI_ETRUNC ||
				      rc == MAMORI_ELIMIT || rc == MAMORI_EINVAL
			      ? MAMORI_EXIT_BADINPUT
			      : MAMORI_EXIT_FAILURE;
		goto done;
	}
	rc = mamori_file_write_atomic(paths[1], out, out_len);
	if (rc != MAMORI_OK) {
		fprintf(stderr, "mamori-testpack: %s: %s\n", paths[1], mamori_error_detail());
		goto done;
	}
	if (strcmp(tech, "xor") == 0)
		printf("packed %s -> %s: .text rva 0x%x size 0x%x, oep 0x%x, stub rva 0x%x (%u bytes)%s\n",
		       paths[0], paths[1], xi.text_rva, xi.text_size, xi.oep_rva, xi.stub_rva, xi.stub_size,
		       xi.tls_neutralised ? ", TLS callbacks cut off" : "");
	else
		printf("packed %s -> %s: %s, %u layer(s), outer %s, oep rva 0x%x, image 0x%x bytes%s, "
		       "payload %u bytes, %zu -> %zu bytes\n",
		       paths[0], paths[1], tech, ii.layers, ii.outer, ii.oep_rva, ii.orig_image_size,
		       ii.orig_relocs ? " (relocatable)" : " (fixed base)", ii.payload_size, in_len, out_len);
	ret = MAMORI_EXIT_OK;
done:
	free(in);
	free(out);
	return ret;
}
