/*
 * The generic unpacker: emulate a PE file, take the entry of the last
 * write-then-execute layer as the original entry point (OEP), replay the
 * emulation up to that instruction, dump the image holding the OEP as it
 * is then (dump.c), and describe the run in a JSON report.
 *
 * Outcomes: UNPACKED (a layer was seen and the dump written; a limit hit
 * after it is only listed), NOT_PACKED (the program exited, or faulted in
 * a way nothing handled, without executing memory it wrote), LIMIT (a
 * limit ended the run before any layer), ERROR (the file cannot be
 * emulated, the dump failed, or the emulator itself crashed or overran the
 * wall-clock limit).
 *
 * Isolation (the default): the emulation runs in a separate process,
 * mamori-emu-worker (worker.c), under rlimits (address space, CPU time, no
 * core file), so that a crash of Unicorn (it aborts on some hostile code,
 * see fuzz/known) or a runaway run costs one sample, not the caller. The
 * worker is started with posix_spawn() and gets the sample on its standard
 * input (a memfd) and the options on its command line; it sends its result
 * back through a pipe as one frame: a fixed header with the lengths, the
 * JSON report, the dump. The parent trusts none of it: lengths are
 * bounded, the report must parse and agree with the header, and the worker
 * is killed at the deadline.
 *
 * Why a fresh program and not fork(): mamori_unpack() is called from the
 * worker threads of `mamori classify`. A child forked from a threaded
 * process inherits every lock another thread held at that moment (seen:
 * the sanitizer allocator's; possible: OpenSSL's, jansson's seeding), and
 * Unicorn allocates before it does anything. posix_spawn() runs nothing of
 * ours between the clone and the exec.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "mamori/emu.h"
#include "worker.h"

extern char **environ;

/* The next layer's stub must finish before the run settles: LZ-unpacking
 * a 250 KB image takes 4.7 M instructions (tests/packers lz on pe64.exe),
 * a 1.8 MB corpus program ~35 M, and a nested packer does that once per
 * layer. At ~50 M instructions per second these cost a few seconds at
 * worst, and a program that exits ends the run long before. */
#define DEFAULT_SETTLE_INSNS 40000000ull
#define DEFAULT_MAX_INSNS    200000000ull
#define WILD_LAYER_INSNS     256
#define DEFAULT_TIMEOUT_MS   60000u
#define REPORT_MAX_TRACE     1000
#define REPORT_MAX_REGIONS   1024
#define MAX_REPORT_BYTES     ((uint64_t)64 << 20)
#define MAX_DUMP_BYTES	     (((uint64_t)1 << 30) + ((uint64_t)64 << 20))
#define FRAME_MAGIC	     0x3150554du /* "MUP1" */
#define FRAME_HEADER	     56
#define MAX_LAYERS_CLAIMED   ((uint64_t)1 << 20) /* far above any max_layers */
/* Address space of one emulator beyond guest memory: Unicorn 2 reserves a
 * 1 GiB translation buffer per engine ("Could not allocate dynamic
 * translator buffer" below that), plus its own tables. */
#define AS_PER_EMULATOR ((uint64_t)1 << 30)
#define AS_SLACK	((uint64_t)256 << 20)

const char *mamori_unpack_status_name(mamori_unpack_status s)
{
	switch (s) {
	case MAMORI_UNPACK_UNPACKED: return "unpacked";
	case MAMORI_UNPACK_NOT_PACKED: return "not_packed";
	case MAMORI_UNPACK_LIMIT: return "limit";
	case MAMORI_UNPACK_ERROR: return "error";
	}
	return "?";
}

void mamori_unpack_result_free(mamori_unpack_result *r)
{
	if (!r)
		return;
	free(r->dump);
	free(r->report_json);
	memset(r, 0, sizeof(*r));
}

static const char *region_kind_name(mamori_emu_region_kind k)
{
	switch (k) {
	case MAMORI_EMU_REGION_IMAGE: return "image";
	case MAMORI_EMU_REGION_MODULE: return "module";
	case MAMORI_EMU_REGION_ALLOC: return "alloc";
	case MAMORI_EMU_REGION_HEAP: return "heap";
	case MAMORI_EMU_REGION_STACK: return "stack";
	case MAMORI_EMU_REGION_SYSTEM: return "system";
	}
	return "?";
}

/* ------------------------------------------------------------ the report */

/* What one unpack found, gathered before the report is written. */
typedef struct outcome {
	mamori_unpack_status status;
	const char *error_kind; /* NULL, "input", "emulator", "dump", "crash", "timeout" */
	char error[512];
	const mamori_binary *bin;
	const mamori_emu *emu;
	const mamori_emu_report *rep; /* NULL when the run did not happen */
	bool has_oep;
	uint64_t oep;
	size_t oep_layer; /* index of the layer whose entry is the OEP */
	const uint8_t *dump;
	size_t dump_len;
	const char *dump_at; /* "oep" (replayed up to it) or "end" (the run's final state) */
	const char *limits[4];
	size_t n_limits;
	bool isolated;
	double t0;
} outcome;

/* A JSON string of text the guest may have chosen (API names it asked
 * GetProcAddress for, section names, errors quoting them): jansson refuses
 * invalid UTF-8, so bytes outside printable ASCII become '?'. */
static json_t *jstr_text(const char *s)
{
	char buf[512];
	size_t n = 0;
	for (; s[n] && n < sizeof(buf) - 1; n++)
		buf[n] = s[n] >= 0x20 && s[n] < 0x7f ? s[n] : '?';
	buf[n] = '\0';
	return json_string(buf);
}

static json_t *jstr_or_null(const char *s)
{
	return s ? jstr_text(s) : json_null();
}

static json_t *api_call_json(const mamori_emu *e, const mamori_emu_api_call *c)
{
	json_t *o = json_object();
	mamori_emu_api_info info;
	char name[320];
	if (mamori_emu_api_by_id(e, c->api, &info) == MAMORI_OK) {
		if (info.name)
			snprintf(name, sizeof(name), "%s!%s", info.dll ? info.dll : "?", info.name);
		else
			snprintf(name, sizeof(name), "%s!#%u", info.dll ? info.dll : "?", info.ordinal);
	} else {
		snprintf(name, sizeof(name), "?#%u", c->api);
	}
	json_object_set_new(o, "api", jstr_text(name));
	json_object_set_new(o, "caller", mamori_json_u64(c->caller));
	json_object_set_new(o, "ret", mamori_json_u64(c->ret));
	json_object_set_new(o, "insns", mamori_json_u64(c->insns));
	return o;
}

static json_t *emu_json(const mamori_emu_report *rep)
{
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string(mamori_emu_status_name(rep->status)));
	json_object_set_new(o, "insns", mamori_json_u64(rep->insns));
	json_object_set_new(o, "limit", jstr_or_null(rep->limit));
	json_object_set_new(o, "fault", jstr_or_null(rep->fault));
	json_object_set_new(o, "fault_addr",
			    rep->status == MAMORI_EMU_FAULT ? mamori_json_u64(rep->fault_addr) : json_null());
	json_object_set_new(o, "pc", mamori_json_u64(rep->pc));
	json_object_set_new(o, "exit_code",
			    rep->status == MAMORI_EMU_EXIT ? json_integer(rep->exit_code) : json_null());
	json_object_set_new(o, "has_wx", json_boolean(rep->has_wx));
	return o;
}

/* The report as a JSON text (compact); NULL when out of memory. */
static char *report_text(const outcome *oc)
{
	json_t *root = json_object();
	if (!root)
		return NULL;
	const mamori_emu *e = oc->emu;
	json_object_set_new(root, "status", json_string(mamori_unpack_status_name(oc->status)));
	json_object_set_new(root, "oep", oc->has_oep ? mamori_json_u64(oc->oep) : json_null());
	json_object_set_new(root, "oep_layer", oc->has_oep ? mamori_json_u64(oc->oep_layer) : json_null());

	json_t *layers = json_array();
	size_t n_layers = e ? mamori_emu_layer_count(e) : 0;
	for (size_t i = 0; i < n_layers; i++) {
		const mamori_emu_layer *l = mamori_emu_layer_at(e, i);
		if (!l)
			continue;
		json_t *o = json_object();
		json_object_set_new(o, "entry", mamori_json_u64(l->entry));
		json_object_set_new(o, "from", mamori_json_u64(l->from));
		json_object_set_new(o, "writer", mamori_json_u64(l->writer));
		json_object_set_new(o, "insns", mamori_json_u64(l->insns));
		json_object_set_new(o, "base", mamori_json_u64(l->base));
		json_object_set_new(o, "size", mamori_json_u64(l->size));
		json_array_append_new(layers, o);
	}
	json_object_set_new(root, "layers", layers);
	json_object_set_new(root, "api_calls", mamori_json_u64(oc->rep ? oc->rep->api_calls : 0));
	json_object_set_new(root, "unknown_api_calls",
			    mamori_json_u64(oc->rep ? oc->rep->unknown_api_calls : 0));

	json_t *trace = json_array();
	size_t n_trace = e ? mamori_emu_trace_count(e) : 0;
	for (size_t i = 0; i < n_trace && i < REPORT_MAX_TRACE; i++) {
		const mamori_emu_api_call *c = mamori_emu_trace_at(e, i);
		if (c)
			json_array_append_new(trace, api_call_json(e, c));
	}
	json_object_set_new(root, "api_trace", trace);
	json_object_set_new(
		root, "api_trace_truncated",
		json_boolean(oc->rep &&
			     oc->rep->api_calls > (n_trace < REPORT_MAX_TRACE ? n_trace : REPORT_MAX_TRACE)));

	json_t *regions = json_array();
	size_t n_regions = e ? mamori_emu_region_count(e) : 0;
	for (size_t i = 0; i < n_regions && i < REPORT_MAX_REGIONS; i++) {
		mamori_emu_region r;
		if (mamori_emu_region_at(e, i, &r) != MAMORI_OK)
			continue;
		json_t *o = json_object();
		json_object_set_new(o, "base", mamori_json_u64(r.base));
		json_object_set_new(o, "size", mamori_json_u64(r.size));
		json_object_set_new(o, "kind", json_string(region_kind_name(r.kind)));
		json_object_set_new(o, "written", json_boolean(r.written));
		json_object_set_new(o, "name", jstr_or_null(r.name));
		json_array_append_new(regions, o);
	}
	json_object_set_new(root, "regions", regions);

	json_t *limits = json_array();
	for (size_t i = 0; i < oc->n_limits; i++)
		json_array_append_new(limits, json_string(oc->limits[i]));
	json_object_set_new(root, "limits_hit", limits);
	json_object_set_new(root, "emu", oc->rep ? emu_json(oc->rep) : json_null());
	json_object_set_new(root, "arch",
			    oc->bin ? json_string(mamori_arch_name(oc->bin->arch)) : json_null());
	if (oc->bin) {
		mamori_pack_hint h;
		mamori_pack_hint_of(&h, oc->bin);
		json_t *o = json_object();
		json_object_set_new(o, "packed", json_boolean(h.packed));
		json_object_set_new(o, "why", jstr_text(h.why));
		json_object_set_new(o, "max_entropy", json_real(h.max_entropy));
		json_object_set_new(root, "pack_hint", o);
	} else {
		json_object_set_new(root, "pack_hint", json_null());
	}
	json_object_set_new(root, "image_base", e ? mamori_json_u64(mamori_emu_image_base(e)) : json_null());
	if (oc->dump) {
		json_t *d = json_object();
		char sha[65];
		mamori_sha256_hex(sha, oc->dump, oc->dump_len);
		json_object_set_new(d, "size", mamori_json_u64(oc->dump_len));
		json_object_set_new(d, "sha256", json_string(sha));
		json_object_set_new(d, "at", jstr_or_null(oc->dump_at));
		mamori_binary *db = NULL;
		if (mamori_binary_parse(&db, oc->dump, oc->dump_len, NULL) == MAMORI_OK) {
			json_object_set_new(d, "entry_rva", mamori_json_u64(db->entry - db->image_base));
			json_object_set_new(d, "image_base", mamori_json_u64(db->image_base));
			json_object_set_new(d, "sections", mamori_json_u64(db->n_sections));
			json_object_set_new(d, "imports", mamori_json_u64(db->n_imports));
		}
		mamori_binary_free(db);
		json_object_set_new(root, "dump", d);
	} else {
		json_object_set_new(root, "dump", json_null());
	}
	json_object_set_new(root, "error", oc->error[0] ? jstr_text(oc->error) : json_null());
	json_object_set_new(root, "error_kind", jstr_or_null(oc->error_kind));
	json_object_set_new(root, "isolated", json_boolean(oc->isolated));
	json_object_set_new(root, "timing_ms", json_real((mamori_now() - oc->t0) * 1000.0));
	char *text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return text;
}

static void outcome_error(outcome *oc, mamori_unpack_status st, const char *kind, const char *what, int err)
{
	oc->status = st;
	oc->error_kind = kind;
	const char *detail = mamori_error_detail();
	snprintf(oc->error, sizeof(oc->error), "%s: %s%s%s", what, mamori_strerror(err),
		 detail[0] ? ": " : "", detail);
}

/* Fill `out` from the outcome (the report is written last). */
static int finish(mamori_unpack_result *out, const outcome *oc, uint8_t *dump, size_t dump_len)
{
	out->status = oc->status;
	out->has_oep = oc->has_oep;
	out->oep = oc->oep;
	out->api_calls = oc->rep ? oc->rep->api_calls : 0;
	out->n_layers = oc->emu ? mamori_emu_layer_count(oc->emu) : 0;
	out->dump = dump;
	out->dump_len = dump_len;
	out->report_json = report_text(oc);
	if (!out->report_json) {
		mamori_unpack_result_free(out);
		return mamori_fail(MAMORI_ENOMEM, "unpack: report");
	}
	return MAMORI_OK;
}

/* ------------------------------------------------------------ in process */

/*
 * Run the sample again and stop right at the OEP: `oep_insns` is the
 * instruction count when the last layer was entered, so a run limited to it
 * ends with the OEP as the next instruction. The dump then shows memory as
 * the stub handed it over, not as the program left it (globals holding heap
 * pointers of the emulator, a CRT that believes it is initialised). The
 * emulation is deterministic (virtual clock, no host input), but a replay
 * that does not end at the OEP with the same layers is not trusted:
 * returns false and the caller dumps the first run's final state.
 */
static bool replay_to_oep(mamori_emu **out, const mamori_binary *bin, const mamori_emu_limits *lim,
			  uint64_t oep_insns, uint64_t oep, size_t n_layers)
{
	mamori_emu_limits l = *lim;
	mamori_emu_report rep = { 0 };
	*out = NULL;
	if (oep_insns == 0)
		return false;
	l.max_insns = oep_insns;
	l.settle_insns = 0;
	l.stop_at_wx = false;
	if (mamori_emu_new(out, bin, &l) != MAMORI_OK)
		return false;
	/* The last layer may or may not be recorded yet when the run stops in
	 * front of its first instruction; every earlier one must be. */
	size_t seen = mamori_emu_run(*out, &rep) == MAMORI_OK ? mamori_emu_layer_count(*out) : 0;
	if (rep.status != MAMORI_EMU_LIMIT || rep.pc != oep || seen + 1 < n_layers || seen > n_layers) {
		mamori_emu_free(*out);
		*out = NULL;
		return false;
	}
	return true;
}

/* The kind of the region holding `va`, 0 when unmapped. */
static int region_kind_at(const mamori_emu *e, uint64_t va)
{
	mamori_emu_region r;
	for (size_t i = 0; i < mamori_emu_region_count(e); i++)
		if (mamori_emu_region_at(e, i, &r) == MAMORI_OK && va - r.base < r.size)
			return (int)r.kind;
	return 0;
}

/*
 * The layer whose entry is the OEP: the last one, unless it is a wild jump.
 * A program that jumps into data it wrote (a corrupt function pointer, an
 * API the emulator answered differently) makes a layer too. The last layer
 * is taken for such a jump when the run ended in an unhandled fault and the
 * layer either ran fewer than WILD_LAYER_INSNS instructions or lies in the
 * stack or the system area (TEB, PEB, ...), where no unpacker puts code.
 * Then the layer before it gives the OEP. Real unpacked code runs its
 * start-up longer than that before any fault (measured: 571 instructions
 * at least when the emulator lacked an API the program needed); wild jumps
 * seen died within 40. Returns the layer count when there is no OEP (also
 * when the only layer is such a jump: the program simply crashed).
 */
static size_t pick_oep_layer(const mamori_emu *e, const mamori_emu_report *rep)
{
	size_t n = mamori_emu_layer_count(e);
	if (n && rep->status == MAMORI_EMU_FAULT) {
		const mamori_emu_layer *last = mamori_emu_layer_at(e, n - 1);
		int kind = last ? region_kind_at(e, last->entry) : 0;
		if (last && (rep->insns - last->insns < WILD_LAYER_INSNS || kind == MAMORI_EMU_REGION_STACK ||
			     kind == MAMORI_EMU_REGION_SYSTEM))
			n--;
	}
	return n ? n - 1 : mamori_emu_layer_count(e);
}

static int unpack_here(mamori_unpack_result *out, const uint8_t *data, size_t len,
		       const mamori_unpack_options *opt, bool isolated)
{
	outcome oc = { .isolated = isolated, .t0 = mamori_now() };
	mamori_binary *bin = NULL;
	mamori_emu *e = NULL, *replay = NULL;
	mamori_emu_report rep;
	uint8_t *dump = NULL;
	size_t dump_len = 0;
	int rc;

	mamori_emu_limits lim = opt ? opt->lim : (mamori_emu_limits){ 0 };
	if (!lim.settle_insns)
		lim.settle_insns = DEFAULT_SETTLE_INSNS;
	if (!lim.max_insns)
		lim.max_insns = DEFAULT_MAX_INSNS;
	if ((rc = mamori_binary_parse(&bin, data, len, NULL)) != MAMORI_OK) {
		outcome_error(&oc, MAMORI_UNPACK_ERROR, "input", "not a valid PE", rc);
		goto report;
	}
	oc.bin = bin;
	if ((rc = mamori_emu_new(&e, bin, &lim)) != MAMORI_OK) {
		if (rc == MAMORI_ELIMIT) {
			outcome_error(&oc, MAMORI_UNPACK_LIMIT, NULL, "cannot load", rc);
			oc.limits[oc.n_limits++] = "memory";
		} else {
			outcome_error(&oc, MAMORI_UNPACK_ERROR,
				      rc == MAMORI_ENOMEM || rc == MAMORI_EIO ? "emulator" : "input",
				      "cannot emulate", rc);
		}
		goto report;
	}
	if ((rc = mamori_emu_run(e, &rep)) != MAMORI_OK) {
		outcome_error(&oc, MAMORI_UNPACK_ERROR, "emulator", "emulation failed", rc);
		oc.emu = e;
		goto report;
	}
	oc.emu = e;
	oc.rep = &rep;
	if (rep.status == MAMORI_EMU_LIMIT && rep.limit)
		oc.limits[oc.n_limits++] = rep.limit;
	if (mamori_emu_trace_count(e) < rep.api_calls && oc.n_limits < 4)
		oc.limits[oc.n_limits++] = "trace";

	size_t n_layers = mamori_emu_layer_count(e);
	size_t oep_layer = pick_oep_layer(e, &rep);
	if (oep_layer < n_layers && mamori_emu_layer_at(e, oep_layer)) {
		const mamori_emu_layer *last = mamori_emu_layer_at(e, oep_layer);
		n_layers = oep_layer + 1; /* what the replay must have seen */
		oc.has_oep = true;
		oc.oep_layer = oep_layer;
		oc.oep = last->entry;
		if (replay_to_oep(&replay, bin, &lim, last->insns, oc.oep, n_layers)) {
			oc.dump_at = "oep";
			rc = mamori_emu_dump(&dump, &dump_len, replay, oc.oep);
		} else {
			oc.dump_at = "end";
			rc = mamori_emu_dump(&dump, &dump_len, e, oc.oep);
		}
		if (rc != MAMORI_OK) {
			outcome_error(&oc, MAMORI_UNPACK_ERROR, "dump", "dump failed", rc);
		} else {
			oc.status = MAMORI_UNPACK_UNPACKED;
			oc.dump = dump;
			oc.dump_len = dump_len;
		}
	} else if (rep.status == MAMORI_EMU_LIMIT) {
		oc.status = MAMORI_UNPACK_LIMIT;
	} else {
		oc.status = MAMORI_UNPACK_NOT_PACKED;
	}
report:
	rc = finish(out, &oc, dump, dump_len);
	if (rc != MAMORI_OK)
		dump = NULL; /* freed by finish() through the result */
	mamori_emu_free(replay);
	mamori_emu_free(e);
	mamori_binary_free(bin);
	return rc;
}

/* ------------------------------------------------------------ isolated */

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Virtual memory of this process in bytes, from /proc (the worker's, before
 * its limits are set). 0 when unknown. */
static uint64_t vm_size_now(void)
{
	char buf[128];
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	uint64_t pages = 0;
	for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
		pages = pages * 10 + (uint64_t)(buf[i] - '0');
	return pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The worker's side: limits on itself, the unpack, one frame on `wfd`. */
static _Noreturn void worker_run(int wfd, const uint8_t *data, size_t len, const mamori_unpack_options *opt,
				 uint32_t timeout_ms)
{
	struct rlimit rl = { 0, 0 };
	setrlimit(RLIMIT_CORE, &rl);
	rl.rlim_cur = timeout_ms / 1000 + 2;
	rl.rlim_max = rl.rlim_cur + 1;
	setrlimit(RLIMIT_CPU, &rl);
	uint64_t max_mem = opt->lim.max_memory ? opt->lim.max_memory : mamori_emu_limits_default().max_memory;
	uint64_t vm = vm_size_now();
	if (vm) {
		/* Two emulators at most: the run, and its replay up to the OEP. */
		rl.rlim_cur = rl.rlim_max = vm + 2 * (max_mem + AS_PER_EMULATOR) + AS_SLACK;
		setrlimit(RLIMIT_AS, &rl);
	}
	mamori_unpack_result r;
	memset(&r, 0, sizeof(r));
	if (unpack_here(&r, data, len, opt, true) != MAMORI_OK)
		_exit(3);
	uint8_t hdr[FRAME_HEADER] = { 0 };
	size_t json_len = strlen(r.report_json);
	put_le(hdr, FRAME_MAGIC, 4);
	put_le(hdr + 4, (uint64_t)r.status, 4);
	put_le(hdr + 8, r.has_oep, 4);
	put_le(hdr + 16, r.oep, 8);
	put_le(hdr + 24, r.api_calls, 8);
	put_le(hdr + 32, r.n_layers, 8);
	put_le(hdr + 40, json_len, 8);
	put_le(hdr + 48, r.dump_len, 8);
	bool ok = mamori_write_all(wfd, hdr, sizeof(hdr)) && mamori_write_all(wfd, r.report_json, json_len) &&
		  (!r.dump_len || mamori_write_all(wfd, r.dump, r.dump_len));
	_exit(ok ? 0 : 4);
}

/* The options travel as "name=value" arguments; the worker is ours, so an
 * unknown or malformed one is a bug, reported by exit code 2. */
static bool parse_u64(const char *s, uint64_t *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || !end || *end || end == s || *s == '-')
		return false;
	*out = v;
	return true;
}

static bool opt_is(const char *arg, size_t k, const char *name)
{
	return strlen(name) == k && !memcmp(arg, name, k);
}

_Noreturn int mamori_unpack_worker_main(int argc, char **argv)
{
	mamori_unpack_options opt;
	memset(&opt, 0, sizeof(opt));
	uint64_t timeout_ms = DEFAULT_TIMEOUT_MS, n = 0, layers = 0, trace = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq = strchr(a, '=');
		if (!eq)
			_exit(2);
		size_t k = (size_t)(eq - a);
		const char *v = eq + 1;
		bool ok = true;
		if (opt_is(a, k, "cmdline"))
			opt.lim.cmdline = v;
		else if (opt_is(a, k, "max_insns"))
			ok = parse_u64(v, &opt.lim.max_insns);
		else if (opt_is(a, k, "max_memory"))
			ok = parse_u64(v, &opt.lim.max_memory);
		else if (opt_is(a, k, "max_api_calls"))
			ok = parse_u64(v, &opt.lim.max_api_calls);
		else if (opt_is(a, k, "settle_insns"))
			ok = parse_u64(v, &opt.lim.settle_insns);
		else if (opt_is(a, k, "max_layers"))
			ok = parse_u64(v, &layers) && layers <= UINT32_MAX;
		else if (opt_is(a, k, "max_trace"))
			ok = parse_u64(v, &trace) && trace <= UINT32_MAX;
		else if (opt_is(a, k, "stop_at_wx"))
			ok = parse_u64(v, &n) && n <= 1;
		else if (opt_is(a, k, "timeout_ms"))
			ok = parse_u64(v, &timeout_ms) && timeout_ms <= UINT32_MAX;
		else
			ok = false;
		if (!ok)
			_exit(2);
	}
	opt.lim.max_layers = (uint32_t)layers;
	opt.lim.max_trace = (uint32_t)trace;
	opt.lim.stop_at_wx = n != 0;
	/* The sample: standard input is the memfd the parent wrote (a regular
	 * file), read whole through the bounded file reader. */
	uint8_t *data = NULL;
	size_t len = 0;
	if (mamori_file_read(&data, &len, "/proc/self/fd/0", MAMORI_MAX_SAMPLE_SIZE) != MAMORI_OK)
		_exit(3);
	worker_run(1, data, len, &opt, (uint32_t)timeout_ms);
}

/* The parent's view of the child's frame while it arrives. */
typedef struct frame {
	uint8_t hdr[FRAME_HEADER];
	size_t hdr_got;
	uint64_t json_len, dump_len;
	char *json;
	uint8_t *dump;
	uint64_t body_got;
	bool bad; /* the header is inconsistent: stop reading */
	bool complete;
} frame;

/* Take what read() returned; returns how much of `buf` was used. */
static size_t frame_take(frame *f, const uint8_t *buf, size_t n)
{
	size_t used = 0;
	if (f->hdr_got < FRAME_HEADER) {
		size_t k = FRAME_HEADER - f->hdr_got < n ? FRAME_HEADER - f->hdr_got : n;
		memcpy(f->hdr + f->hdr_got, buf, k);
		f->hdr_got += k;
		used += k;
		if (f->hdr_got < FRAME_HEADER)
			return used;
		f->json_len = get_le(f->hdr + 40, 8);
		f->dump_len = get_le(f->hdr + 48, 8);
		if (get_le(f->hdr, 4) != FRAME_MAGIC || f->json_len == 0 || f->json_len > MAX_REPORT_BYTES ||
		    f->dump_len > MAX_DUMP_BYTES) {
			f->bad = true;
			return n;
		}
		f->json = malloc(f->json_len + 1);
		f->dump = f->dump_len ? malloc(f->dump_len) : NULL;
		if (!f->json || (f->dump_len && !f->dump)) {
			f->bad = true;
			return n;
		}
	}
	uint64_t total = f->json_len + f->dump_len;
	while (used < n && f->body_got < total) {
		uint64_t left = total - f->body_got;
		size_t k = (uint64_t)(n - used) < left ? n - used : (size_t)left;
		if (f->body_got < f->json_len) {
			uint64_t jl = f->json_len - f->body_got;
			if (k > jl)
				k = (size_t)jl;
			memcpy(f->json + f->body_got, buf + used, k);
		} else {
			memcpy(f->dump + (f->body_got - f->json_len), buf + used, k);
		}
		f->body_got += k;
		used += k;
	}
	if (f->body_got == total) {
		f->json[f->json_len] = '\0';
		f->complete = true;
	}
	return used;
}

/* Fill `out` with an ERROR the parent saw (crash, timeout, bad frame). */
static int parent_error(mamori_unpack_result *out, const char *kind, const char *msg, double t0)
{
	outcome oc = { .status = MAMORI_UNPACK_ERROR, .error_kind = kind, .isolated = true, .t0 = t0 };
	snprintf(oc.error, sizeof(oc.error), "%s", msg);
	return finish(out, &oc, NULL, 0);
}

/* Check a complete frame and move it into `out`. */
static int frame_accept(mamori_unpack_result *out, frame *f, double t0)
{
	uint64_t status = get_le(f->hdr + 4, 4);
	bool has_oep = get_le(f->hdr + 8, 4) != 0;
	if (status < MAMORI_UNPACK_UNPACKED || status > MAMORI_UNPACK_ERROR ||
	    (f->dump_len && status != MAMORI_UNPACK_UNPACKED) || strlen(f->json) != f->json_len ||
	    get_le(f->hdr + 32, 8) > MAX_LAYERS_CLAIMED)
		return parent_error(out, "crash", "the unpack child sent an inconsistent result", t0);
	json_error_t jerr;
	json_t *root = json_loadb(f->json, f->json_len, 0, &jerr);
	const char *st = root ? json_string_value(json_object_get(root, "status")) : NULL;
	bool agrees = json_is_object(root) && st &&
		      !strcmp(st, mamori_unpack_status_name((mamori_unpack_status)status));
	json_decref(root);
	if (!agrees)
		return parent_error(out, "crash", "the unpack child sent a report that does not parse", t0);
	out->status = (mamori_unpack_status)status;
	out->has_oep = has_oep;
	out->oep = get_le(f->hdr + 16, 8);
	out->api_calls = get_le(f->hdr + 24, 8);
	out->n_layers = (size_t)get_le(f->hdr + 32, 8);
	out->report_json = f->json;
	out->dump = f->dump;
	out->dump_len = (size_t)f->dump_len;
	f->json = NULL;
	f->dump = NULL;
	return MAMORI_OK;
}

const char *mamori_unpack_worker_path(void)
{
	const char *p = getenv("MAMORI_EMU_WORKER");
	return p && *p ? p : MAMORI_EMU_WORKER_PATH;
}

static int unpack_isolated(mamori_unpack_result *out, const uint8_t *data, size_t len,
			   const mamori_unpack_options *opt)
{
	double t0 = mamori_now();
	uint32_t timeout_ms = opt->timeout_ms ? opt->timeout_ms : DEFAULT_TIMEOUT_MS;
	int fds[2];
	frame f;
	memset(&f, 0, sizeof(f));
	const char *worker = mamori_unpack_worker_path();
	if (access(worker, X_OK) != 0) {
		char msg[200];
		snprintf(msg, sizeof(msg), "the unpack worker %.120s is missing (set MAMORI_EMU_WORKER)",
			 worker);
		return parent_error(out, "emulator", msg, t0);
	}
	/* The sample goes in a memfd: the worker reads it at its own pace,
	 * and a sample larger than a pipe's buffer cannot block us. */
	int in_fd = memfd_create("mamori-sample", MFD_CLOEXEC);
	if (in_fd < 0)
		return parent_error(out, "emulator", "cannot create a memfd for the unpack worker", t0);
	if (!mamori_write_all(in_fd, data, len) || lseek(in_fd, 0, SEEK_SET) != 0) {
		close(in_fd);
		return parent_error(out, "emulator", "cannot write the sample for the unpack worker", t0);
	}
	if (pipe2(fds, O_CLOEXEC) != 0) {
		close(in_fd);
		return parent_error(out, "emulator", "cannot create a pipe for the unpack worker", t0);
	}
	char args[10][64];
	char *argv[12];
	int argc = 0;
	argv[argc++] = (char *)"mamori-emu-worker";
	const mamori_emu_limits *l = &opt->lim;
	snprintf(args[0], sizeof(args[0]), "max_insns=%" PRIu64, l->max_insns);
	snprintf(args[1], sizeof(args[1]), "max_memory=%" PRIu64, l->max_memory);
	snprintf(args[2], sizeof(args[2]), "max_api_calls=%" PRIu64, l->max_api_calls);
	snprintf(args[3], sizeof(args[3]), "max_layers=%" PRIu32, l->max_layers);
	snprintf(args[4], sizeof(args[4]), "max_trace=%" PRIu32, l->max_trace);
	snprintf(args[5], sizeof(args[5]), "settle_insns=%" PRIu64, l->settle_insns);
	snprintf(args[6], sizeof(args[6]), "stop_at_wx=%d", l->stop_at_wx ? 1 : 0);
	snprintf(args[7], sizeof(args[7]), "timeout_ms=%" PRIu32, timeout_ms);
	for (int i = 0; i < 8; i++)
		argv[argc++] = args[i];
	char *cmdline = NULL;
	if (l->cmdline) {
		size_t n = strlen(l->cmdline) + sizeof("cmdline=");
		cmdline = malloc(n);
		if (cmdline)
			snprintf(cmdline, n, "cmdline=%s", l->cmdline);
		argv[argc++] = cmdline ? cmdline : (char *)"cmdline=sample.exe";
	}
	argv[argc] = NULL;
	posix_spawn_file_actions_t fa;
	pid_t pid = -1;
	int serr = posix_spawn_file_actions_init(&fa);
	if (!serr)
		serr = posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
	if (!serr)
		serr = posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	if (!serr)
		serr = posix_spawn(&pid, worker, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	free(cmdline);
	close(in_fd);
	if (serr) {
		close(fds[0]);
		close(fds[1]);
		return parent_error(out, "emulator", "cannot start the unpack worker", t0);
	}
	close(fds[1]);

	/* Read until the frame is complete, the pipe ends, the worker dies, or
	 * the deadline passes. waitpid is polled too, so that a worker that
	 * died without closing the pipe's end (a grandchild holding it, say)
	 * is still noticed. */
	double deadline = t0 + timeout_ms / 1000.0;
	bool exited = false, timed_out = false;
	int wstatus = 0;
	uint8_t *buf = malloc(1 << 16);
	if (!buf) {
		kill(pid, SIGKILL);
		waitpid(pid, &wstatus, 0);
		close(fds[0]);
		return mamori_fail(MAMORI_ENOMEM, "unpack: read buffer");
	}
	while (!f.complete && !f.bad) {
		double left = deadline - mamori_now();
		if (left <= 0) {
			timed_out = true;
			break;
		}
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		int wait_ms = left * 1000 < 100 ? (int)(left * 1000) + 1 : 100;
		int pr = poll(&p, 1, wait_ms);
		if (pr < 0 && errno != EINTR)
			break;
		if (pr > 0) {
			ssize_t n = read(fds[0], buf, 1 << 16);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0)
				break; /* end of the pipe: the child is gone */
			(void)frame_take(&f, buf, (size_t)n);
			continue;
		}
		if (!exited && waitpid(pid, &wstatus, WNOHANG) == pid) {
			exited = true;
			/* Drain what it wrote before it ended. */
			for (;;) {
				struct pollfd q = { .fd = fds[0], .events = POLLIN };
				if (poll(&q, 1, 0) <= 0)
					break;
				ssize_t n = read(fds[0], buf, 1 << 16);
				if (n <= 0)
					break;
				(void)frame_take(&f, buf, (size_t)n);
			}
			break;
		}
	}
	free(buf);
	close(fds[0]);
	if (!exited) {
		/* A complete frame: the child is on its way out; otherwise end it. */
		if (!f.complete || timed_out)
			kill(pid, SIGKILL);
		while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
			;
	}
	char msg[160];
	int rc;
	if (timed_out) {
		snprintf(msg, sizeof(msg), "timeout: the unpack child ran past %u ms and was killed",
			 timeout_ms);
		rc = parent_error(out, "timeout", msg, t0);
	} else if (f.bad) {
		rc = parent_error(out, "crash", "the unpack child sent a malformed result", t0);
	} else if (WIFSIGNALED(wstatus) && !f.complete) {
		int sig = WTERMSIG(wstatus);
		const char *abbrev = sigabbrev_np(sig);
		snprintf(msg, sizeof(msg), "emulator crashed: signal %d (SIG%s)%s", sig,
			 abbrev ? abbrev : "?", sig == SIGXCPU ? ": CPU time limit" : "");
		rc = parent_error(out, "crash", msg, t0);
	} else if (!f.complete) {
		if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) != 0)
			snprintf(msg, sizeof(msg), "the unpack child failed with exit code %d",
				 WEXITSTATUS(wstatus));
		else
			snprintf(msg, sizeof(msg), "the unpack child ended without a complete result");
		rc = parent_error(out, "crash", msg, t0);
	} else {
		rc = frame_accept(out, &f, t0);
	}
	free(f.json);
	free(f.dump);
	return rc;
}

int mamori_unpack(mamori_unpack_result *out, const uint8_t *data, size_t len,
		  const mamori_unpack_options *opt)
{
	mamori_unpack_options defaults;
	memset(out, 0, sizeof(*out));
	if (!opt) {
		memset(&defaults, 0, sizeof(defaults));
		opt = &defaults;
	}
	if (!data && len)
		return mamori_fail(MAMORI_EINVAL, "unpack: no data");
	return opt->in_process ? unpack_here(out, data, len, opt, false)
			       : unpack_isolated(out, data, len, opt);
}
