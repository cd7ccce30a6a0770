/*
 * `mamori info FILE [--compact]`: parse one PE or ELF file strictly and
 * print its structure as JSON (indented unless --compact). A file that does
 * not parse gets "mamori info: FILE: <error>: <detail>" on stderr and the
 * exit code of its error (3 for malformed or unsupported input).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "args.h"
#include "commands.h"
#include "mamori/base.h"
#include "mamori/binfmt.h"

static void info_usage(FILE *f)
{
	fprintf(f, "usage: mamori info FILE [--compact]\n"
		   "  Parse a PE32/PE32+/ELF32/ELF64 x86 file and print its headers, sections,\n"
		   "  entry point, imports (with imphash), exports, symbols and code regions as JSON.\n");
}

int cmd_info(int argc, char **argv)
{
	const char *path = NULL;
	bool pretty = true;
	uint8_t *data = NULL;
	size_t size = 0;
	mamori_binary *bin = NULL;
	json_t *j = NULL;
	int rc = MAMORI_EXIT_OK, err;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--compact")) {
			pretty = false;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			info_usage(stdout);
			return MAMORI_EXIT_OK;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "mamori info: unknown option '%s'\n", argv[i]);
			info_usage(stderr);
			return MAMORI_EXIT_USAGE;
		} else if (path) {
			fprintf(stderr, "mamori info: only one FILE is accepted\n");
			info_usage(stderr);
			return MAMORI_EXIT_USAGE;
		} else {
			path = argv[i];
		}
	}
	if (!path) {
		info_usage(stderr);
		return MAMORI_EXIT_USAGE;
	}
	if ((err = mamori_file_read(&data, &size, path, MAMORI_MAX_SAMPLE_SIZE)) < 0 ||
	    (err = mamori_binary_parse(&bin, data, size, NULL)) < 0) {
		cli_report_error("info", path, err);
		rc = mamori_exit_code(err);
		goto done;
	}
	j = mamori_binary_to_json(bin);
	if (!j || mamori_json_write(stdout, j, pretty) < 0) {
		fprintf(stderr, "mamori info: %s: cannot write JSON: %s\n", path, mamori_error_detail());
		rc = MAMORI_EXIT_FAILURE;
	}
done:
	json_decref(j);
	mamori_binary_free(bin);
	free(data);
	return rc;
}
