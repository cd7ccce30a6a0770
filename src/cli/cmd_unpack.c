/*
 * `mamori unpack SAMPLE [-o OUT.exe] [--json] [limits] [--in-process]`:
 * emulate a packed PE, find the original entry point (the entry of the last
 * write-then-execute layer), and write the image that holds it as a PE with
 * a rebuilt import table. The summary (or the JSON report with --json) goes
 * to stdout; the sample never runs on the host.
 *
 * OUT is written only when the status is "unpacked": a program that never
 * executed memory it wrote has nothing to dump, and copying the input
 * would pass it off as a dump. Exit codes: 0 unpacked or not_packed, 5 a
 * limit ended the run before an OEP, 3 the input is not an emulable PE,
 * 1 the emulator failed (crash, timeout) or OUT could not be written,
 * 2 usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "args.h"
#include "commands.h"
#include "mamori/base.h"
#include "mamori/emu.h"

static void unpack_usage(FILE *f)
{
	fprintf(f, "usage: mamori unpack SAMPLE [-o OUT.exe] [--json] [--max-insns N] [--max-api-calls N]\n"
		   "                     [--max-memory BYTES] [--timeout MS] [--in-process]\n"
		   "\n"
		   "Emulates a PE32/PE32+ sample (it never runs on the host), finds the original\n"
		   "entry point (the entry of the last layer of code the sample wrote and then ran)\n"
		   "and dumps the image holding it: sections with raw size = virtual size, the\n"
		   "entry at the OEP, an import table rebuilt from the API addresses in its slots.\n"
		   "\n"
		   "  -o, --output FILE    write the dump there (only when the status is unpacked;\n"
		   "                       with not_packed nothing is written)\n"
		   "  --json               print the JSON report instead of the summary\n"
		   "  --max-insns N        instructions (default 200,000,000)\n"
		   "  --max-api-calls N    API calls (default 1,000,000)\n"
		   "  --max-memory BYTES   guest memory mapped (default 256 MiB)\n"
		   "  --settle-insns N     stop N instructions after the last new layer\n"
		   "                       (default 40,000,000)\n"
		   "  --timeout MS         wall-clock limit of the isolated run (default 60000)\n"
		   "  --in-process         emulate in this process (no worker process, no timeout; a crash\n"
		   "                       of the emulator library then ends mamori)\n"
		   "\n"
		   "Status: unpacked, not_packed (it ran without executing written memory), limit\n"
		   "(a limit ended the run before an OEP), error.\n"
		   "Exit: 0 unpacked or not_packed, 5 limit, 3 bad input, 1 emulator error or\n"
		   "cannot write OUT, 2 usage.\n");
}

static unsigned long long jnum(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? (unsigned long long)json_integer_value(v) : 0;
}

static void print_summary(const mamori_unpack_result *r, const char *out_path)
{
	json_error_t jerr;
	json_t *root = json_loads(r->report_json, 0, &jerr);
	printf("status     %s\n", mamori_unpack_status_name(r->status));
	if (r->has_oep)
		printf("oep        0x%llx\n", (unsigned long long)r->oep);
	else
		printf("oep        none\n");
	if (!root) {
		printf("report     unreadable\n");
		return;
	}
	const json_t *layers = json_object_get(root, "layers");
	printf("layers     %zu\n", json_array_size(layers));
	for (size_t i = 0; i < json_array_size(layers) && i < 8; i++) {
		const json_t *l = json_array_get(layers, i);
		printf("  %zu: entry 0x%llx from 0x%llx, written by 0x%llx, region 0x%llx+0x%llx, at insn "
		       "%llu\n",
		       i + 1, jnum(l, "entry"), jnum(l, "from"), jnum(l, "writer"), jnum(l, "base"),
		       jnum(l, "size"), jnum(l, "insns"));
	}
	printf("api calls  %llu (%llu without a stub)\n", jnum(root, "api_calls"),
	       jnum(root, "unknown_api_calls"));
	const json_t *emu = json_object_get(root, "emu");
	if (json_is_object(emu)) {
		const char *st = json_string_value(json_object_get(emu, "status"));
		const char *why = json_string_value(json_object_get(emu, "limit"));
		if (!why)
			why = json_string_value(json_object_get(emu, "fault"));
		printf("emulation  %s%s%s after %llu instructions\n", st ? st : "?", why ? ": " : "",
		       why ? why : "", jnum(emu, "insns"));
	}
	const json_t *limits = json_object_get(root, "limits_hit");
	if (json_array_size(limits)) {
		printf("limits     ");
		for (size_t i = 0; i < json_array_size(limits); i++)
			printf("%s%s", i ? ", " : "", json_string_value(json_array_get(limits, i)));
		printf("\n");
	}
	const char *err = json_string_value(json_object_get(root, "error"));
	if (err)
		printf("error      %s\n", err);
	const json_t *dump = json_object_get(root, "dump");
	if (json_is_object(dump))
		printf("dump       %s (%llu bytes, entry RVA 0x%llx, %llu imports)\n",
		       out_path ? out_path : "not written", jnum(dump, "size"), jnum(dump, "entry_rva"),
		       jnum(dump, "imports"));
	json_decref(root);
}

int cmd_unpack(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'J' },
		{ "max-insns", required_argument, NULL, 'I' },
		{ "max-api-calls", required_argument, NULL, 'A' },
		{ "max-memory", required_argument, NULL, 'M' },
		{ "settle-insns", required_argument, NULL, 'S' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "in-process", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	mamori_unpack_options opt;
	memset(&opt, 0, sizeof(opt));
	const char *out_path = NULL;
	bool json = false;
	uint64_t v;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': out_path = optarg; break;
		case 'J': json = true; break;
		case 'I':
			if (!cli_parse_u64(&v, optarg, 1, UINT64_MAX / 2, "unpack", "--max-insns"))
				return MAMORI_EXIT_USAGE;
			opt.lim.max_insns = v;
			break;
		case 'A':
			if (!cli_parse_u64(&v, optarg, 1, UINT64_MAX / 2, "unpack", "--max-api-calls"))
				return MAMORI_EXIT_USAGE;
			opt.lim.max_api_calls = v;
			break;
		case 'M':
			if (!cli_parse_u64(&v, optarg, 1 << 20, (uint64_t)64 << 30, "unpack", "--max-memory"))
				return MAMORI_EXIT_USAGE;
			opt.lim.max_memory = v;
			break;
		case 'S':
			if (!cli_parse_u64(&v, optarg, 1, UINT64_MAX / 2, "unpack", "--settle-insns"))
				return MAMORI_EXIT_USAGE;
			opt.lim.settle_insns = v;
			break;
		case 'T':
			if (!cli_parse_u64(&v, optarg, 1, 24ull * 3600 * 1000, "unpack", "--timeout"))
				return MAMORI_EXIT_USAGE;
			opt.timeout_ms = (uint32_t)v;
			break;
		case 'P': opt.in_process = true; break;
		case 'h': unpack_usage(stdout); return MAMORI_EXIT_OK;
		default: unpack_usage(stderr); return MAMORI_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "mamori unpack: %s\n",
			optind >= argc ? "no SAMPLE given" : "only one SAMPLE is accepted");
		unpack_usage(stderr);
		return MAMORI_EXIT_USAGE;
	}
	const char *path = argv[optind];
	uint8_t *data = NULL;
	size_t size = 0;
	mamori_unpack_result res;
	memset(&res, 0, sizeof(res));
	int rc, err;
	if ((err = mamori_file_read(&data, &size, path, MAMORI_MAX_SAMPLE_SIZE)) < 0) {
		cli_report_error("unpack", path, err);
		return mamori_exit_code(err);
	}
	if ((err = mamori_unpack(&res, data, size, &opt)) < 0) {
		cli_report_error("unpack", path, err);
		rc = mamori_exit_code(err);
		goto done;
	}
	switch (res.status) {
	case MAMORI_UNPACK_UNPACKED:
	case MAMORI_UNPACK_NOT_PACKED: rc = MAMORI_EXIT_OK; break;
	case MAMORI_UNPACK_LIMIT: rc = MAMORI_EXIT_LIMIT; break;
	default: rc = MAMORI_EXIT_FAILURE; break;
	}
	/* The report says whether the input itself was the problem. */
	json_error_t jerr;
	json_t *root = json_loads(res.report_json, 0, &jerr);
	const char *kind = root ? json_string_value(json_object_get(root, "error_kind")) : NULL;
	const char *msg = root ? json_string_value(json_object_get(root, "error")) : NULL;
	if (res.status == MAMORI_UNPACK_ERROR && kind && !strcmp(kind, "input"))
		rc = MAMORI_EXIT_BADINPUT;
	if (res.status == MAMORI_UNPACK_ERROR)
		fprintf(stderr, "mamori unpack: %s: %s\n", path, msg ? msg : "error");
	json_decref(root);
	bool wrote = false;
	if (out_path && res.status == MAMORI_UNPACK_UNPACKED && res.dump) {
		if ((err = mamori_file_write_atomic(out_path, res.dump, res.dump_len)) < 0) {
			cli_report_error("unpack", out_path, err);
			rc = MAMORI_EXIT_FAILURE;
		} else {
			wrote = true;
		}
	}
	if (json)
		printf("%s\n", res.report_json);
	else
		print_summary(&res, wrote ? out_path : NULL);
done:
	mamori_unpack_result_free(&res);
	free(data);
	return rc;
}
