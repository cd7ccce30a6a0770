/*
 * mamori emulator: a Windows user-mode environment for PE32 and PE32+ on
 * Unicorn 2, with tracking of dynamically generated code, and the generic
 * unpacker built on it (image dumps with a rebuilt import table).
 *
 * The guest never runs on the host: every instruction is emulated, every
 * API call lands in a C stub, and every resource the guest controls
 * (instructions, mapped memory, API calls, layers, trace entries, output)
 * has a configurable limit. mamori_unpack() can also run the whole
 * emulation in a child process, so that even a crash of the emulator
 * library is reported as an error instead of taking the caller down.
 */
#ifndef MAMORI_EMU_H
#define MAMORI_EMU_H

#include "mamori/base.h"
#include "mamori/binfmt.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Limits and options of one emulation. A zero field means its default. */
typedef struct mamori_emu_limits {
	uint64_t max_insns;	/**< instructions per run (default 50,000,000) */
	uint64_t max_memory;	/**< bytes mapped in total (default 256 MiB) */
	uint64_t max_api_calls; /**< API calls per run (default 1,000,000) */
	uint32_t max_layers;	/**< write-then-execute layers recorded (default 32) */
	uint32_t max_trace; /**< API calls kept in the trace (default 10,000; later ones are counted only) */
	uint64_t settle_insns; /**< stop this many instructions after the last new layer without another
				    one (0: run on to exit or a limit) */
	bool stop_at_wx;       /**< stop at the first write-then-execute event */
	const char *cmdline;   /**< the guest's command line (default "sample.exe"); borrowed */
} mamori_emu_limits;

typedef enum mamori_emu_status {
	MAMORI_EMU_EXIT = 1, /**< ExitProcess, or the entry point returned */
	MAMORI_EMU_WX_STOP,  /**< stopped at a write-then-execute event (stop_at_wx) */
	MAMORI_EMU_LIMIT,    /**< a limit was reached; report.limit says which */
	MAMORI_EMU_FAULT,    /**< an exception nobody handled, an invalid instruction, ... */
	MAMORI_EMU_SETTLED,  /**< settle_insns passed after the last layer */
} mamori_emu_status;

/** What one run did. Strings are static or owned by the emulator. */
typedef struct mamori_emu_report {
	mamori_emu_status status;
	const char *limit;   /**< MAMORI_EMU_LIMIT: "insns", "memory", "api_calls", "layers"; else NULL */
	const char *fault;   /**< MAMORI_EMU_FAULT: what happened ("unmapped read", ...); else NULL */
	uint64_t insns;	     /**< instructions executed */
	bool has_wx;	     /**< a write-then-execute event happened */
	uint64_t wx_va;	     /**< the first one: block start inside memory written during the run */
	uint64_t wx_insns;   /**< instruction count when it happened */
	uint64_t fault_addr; /**< MAMORI_EMU_FAULT: the faulting data or fetch address */
	uint64_t pc;	     /**< program counter when the run ended */
	uint32_t exit_code;  /**< MAMORI_EMU_EXIT: ExitProcess's argument or the entry's return value */
	uint64_t api_calls;  /**< API calls made (all of them, also past max_trace) */
	uint64_t unknown_api_calls; /**< calls to exports without a C stub (logged, plausible failure) */
	size_t n_layers;	    /**< mamori_emu_layer_count() */
} mamori_emu_report;

/**
 * One layer of dynamically generated code: execution entered, from another
 * page, memory that was written after the previous layer began (the
 * image's own code is layer 0 and is not listed). Writes by API stubs on
 * the guest's behalf (memcpy, output parameters) count as guest writes;
 * the loader's mapping and VirtualAlloc's zero fill do not.
 */
typedef struct mamori_emu_layer {
	uint64_t entry;	 /**< first instruction executed in the written memory */
	uint64_t from;	 /**< start of the block that transferred control there */
	uint64_t writer; /**< instruction that first wrote the entry's page (an API's return address when a
			    stub wrote it) */
	uint64_t insns;	 /**< instruction count at entry */
	uint64_t base;	 /**< the contiguous written range around `entry` (page-aligned) */
	uint64_t size;
} mamori_emu_layer;

/** One traced API call. */
typedef struct mamori_emu_api_call {
	uint64_t insns;	 /**< instruction count at the call */
	uint64_t caller; /**< return address */
	uint64_t ret;	 /**< value returned */
	uint32_t api;	 /**< id for mamori_emu_api_by_id() */
} mamori_emu_api_call;

/** An export of a stand-in module. Strings live as long as the emulator. */
typedef struct mamori_emu_api_info {
	const char *dll;  /**< lower case, e.g. "kernel32.dll" */
	const char *name; /**< NULL when exported by ordinal only */
	uint16_t ordinal;
	bool implemented; /**< false: calls are logged and fail plausibly */
	uint64_t va;	  /**< the export's address in the guest */
} mamori_emu_api_info;

typedef enum mamori_emu_region_kind {
	MAMORI_EMU_REGION_IMAGE = 1, /**< the main image */
	MAMORI_EMU_REGION_MODULE,    /**< a stand-in DLL */
	MAMORI_EMU_REGION_ALLOC,     /**< VirtualAlloc and friends */
	MAMORI_EMU_REGION_HEAP,	     /**< process heaps, malloc */
	MAMORI_EMU_REGION_STACK,
	MAMORI_EMU_REGION_SYSTEM, /**< TEB, PEB, LDR, KUSER_SHARED_DATA, ... */
} mamori_emu_region_kind;

/** A mapped region. */
typedef struct mamori_emu_region {
	uint64_t base, size;
	mamori_emu_region_kind kind;
	bool written;	  /**< some page of it was written during the run (stack and TEB pages too) */
	const char *name; /**< module name for IMAGE/MODULE; else NULL */
} mamori_emu_region;

typedef struct mamori_emu mamori_emu;

/** The default limits (what a NULL `lim` or a zero field means). */
mamori_emu_limits mamori_emu_limits_default(void);

/**
 * Load PE image `b` (a PE32 or PE32+ executable) into a Windows user-mode
 * environment: the image mapped at its preferred base, or elsewhere with
 * its base relocations applied when that base is taken or relocations are
 * allowed; imports bound to the stand-in modules (kernel32, ntdll,
 * kernelbase, user32, advapi32, msvcrt, ws2_32; other DLLs get an empty
 * stand-in whose exports are created on lookup, and on x86 are called as
 * cdecl since their argument count is unknown); TEB/PEB with
 * PEB_LDR_DATA and its three module lists, KUSER_SHARED_DATA, process
 * parameters and the command line; a stack. TLS callbacks run first when
 * mamori_emu_run() starts. `b` is only read during this call. On success
 * `*out` belongs to the caller (mamori_emu_free). Errors:
 * MAMORI_EUNSUPPORTED (not PE, a DLL, no entry), MAMORI_EFORMAT (sections
 * or relocations outside the image), MAMORI_ELIMIT (larger than
 * max_memory), MAMORI_ENOMEM, MAMORI_EIO (Unicorn refused).
 */
int mamori_emu_new(mamori_emu **out, const mamori_binary *b, const mamori_emu_limits *lim);

/**
 * Like mamori_emu_new() for `size` bytes of raw code copied to `va`
 * (page-aligned by the caller, read-write-execute), entry at `va`, with the
 * same environment but no image. Meant for shellcode and tests. `va` must
 * lie in [0x10000, 0x70000000).
 */
int mamori_emu_new_raw(mamori_emu **out, mamori_arch arch, uint64_t va, const uint8_t *code, size_t size,
		       const mamori_emu_limits *lim);

/**
 * Run until exit, a limit, an unhandled fault, settling, or (stop_at_wx)
 * the first write-then-execute event; fill `*out`. Call once per emulator.
 * Returns MAMORI_OK for every way the guest stops (see out->status);
 * MAMORI_EINVAL on a second run.
 */
int mamori_emu_run(mamori_emu *e, mamori_emu_report *out);

/** "exit", "wx_stop", "limit", "fault", "settled" ("?" otherwise). */
const char *mamori_emu_status_name(mamori_emu_status s);

/** Layers recorded by the run, in order (borrowed, valid until free). */
size_t mamori_emu_layer_count(const mamori_emu *e);
const mamori_emu_layer *mamori_emu_layer_at(const mamori_emu *e, size_t i);

/** Traced API calls, in order (at most max_trace; borrowed). */
size_t mamori_emu_trace_count(const mamori_emu *e);
const mamori_emu_api_call *mamori_emu_trace_at(const mamori_emu *e, size_t i);

/** The export behind trace id `api`. MAMORI_ENOTFOUND if there is none. */
int mamori_emu_api_by_id(const mamori_emu *e, uint32_t api, mamori_emu_api_info *out);

/**
 * The export of a stand-in module at guest address `va` (what an IAT slot
 * filled by the loader or by GetProcAddress holds). MAMORI_ENOTFOUND when
 * `va` is not an export.
 */
int mamori_emu_api_at(const mamori_emu *e, uint64_t va, mamori_emu_api_info *out);

/** Mapped regions, sorted by address (borrowed strings). */
size_t mamori_emu_region_count(const mamori_emu *e);
int mamori_emu_region_at(const mamori_emu *e, size_t i, mamori_emu_region *out);

/** Copy `n` guest bytes at `va` into `buf`. MAMORI_ENOTFOUND if any is unmapped. */
int mamori_emu_read(const mamori_emu *e, uint64_t va, void *buf, size_t n);

/** Whether the page holding `va` was written during the run. */
bool mamori_emu_page_written(const mamori_emu *e, uint64_t va);

/** Where the main image was mapped (0 for raw code). */
uint64_t mamori_emu_image_base(const mamori_emu *e);

/** The guest's architecture. */
mamori_arch mamori_emu_arch(const mamori_emu *e);

/**
 * What the guest wrote to its standard output and standard error (WriteFile
 * on the console handles, the msvcrt stdio functions), in order, capped at
 * 1 MiB (borrowed).
 */
const uint8_t *mamori_emu_output(const mamori_emu *e, size_t *out_len);

/**
 * Dump the image that holds `oep` as a PE file that mamori_binary_parse()
 * accepts: sections with raw size equal to virtual size, the entry point at
 * `oep`, and an import table rebuilt from the slots that hold stand-in
 * export addresses (IAT reconstruction). When the memory around `oep` holds
 * a PE header (the main image, or an image a stub copied with its
 * headers), its section layout is kept; otherwise the written region
 * becomes one section. `*out` is a heap buffer owned by the caller
 * (free()).
 */
int mamori_emu_dump(uint8_t **out, size_t *out_len, const mamori_emu *e, uint64_t oep);

/* ---------------------------------------------------------------- unpack */

typedef enum mamori_unpack_status {
	MAMORI_UNPACK_UNPACKED = 1, /**< generated code was found and dumped */
	MAMORI_UNPACK_NOT_PACKED,   /**< the program ran without executing written memory */
	MAMORI_UNPACK_LIMIT,	    /**< a limit ended the run before an OEP was found */
	MAMORI_UNPACK_ERROR,	    /**< not emulable, or the emulation crashed */
} mamori_unpack_status;

typedef struct mamori_unpack_options {
	mamori_emu_limits lim; /**< zero fields: the emulator's defaults, but max_insns 200,000,000
				    and settle_insns 40,000,000 (see unpack.c) */
	bool in_process;       /**< run in this process (default: a child process with rlimits) */
	uint32_t timeout_ms;   /**< wall-clock limit of the child (default 60,000) */
} mamori_unpack_options;

/** The outcome of mamori_unpack(); release with mamori_unpack_result_free(). */
typedef struct mamori_unpack_result {
	mamori_unpack_status status;
	bool has_oep;
	uint64_t oep;
	uint64_t api_calls;
	size_t n_layers;
	uint8_t *dump; /**< the dumped PE (UNPACKED), else NULL; owned */
	size_t dump_len;
	char *report_json; /**< the `mamori unpack --json` report; owned */
} mamori_unpack_result;

/**
 * Emulate PE file `data` and, when it executes code it wrote, dump the
 * image at the OEP (the entry of the last layer). The report's top level
 * is {"status", "oep", "layers", "api_calls", ...}. Returns MAMORI_OK
 * whenever `out` was filled (also for LIMIT and ERROR outcomes, whose
 * reason is in the report); MAMORI_ENOMEM/MAMORI_EIO when even that failed.
 */
int mamori_unpack(mamori_unpack_result *out, const uint8_t *data, size_t len,
		  const mamori_unpack_options *opt);

/** Free what a result owns and zero it; NULL is fine. */
void mamori_unpack_result_free(mamori_unpack_result *r);

/** "unpacked", "not_packed", "limit", "error" ("?" otherwise). */
const char *mamori_unpack_status_name(mamori_unpack_status s);

/** Static signs that a PE is packed. */
typedef struct mamori_pack_hint {
	bool packed;	    /**< the verdict: worth unpacking */
	double max_entropy; /**< highest Shannon entropy of a section (bits per byte) */
	bool entry_in_last_section;
	bool writable_code; /**< a section is both writable and executable */
	size_t n_imports;
	char why[160]; /**< the signs that decided, for people */
} mamori_pack_hint;

/** Inspect a parsed binary (PE only; others are never packed here). */
void mamori_pack_hint_of(mamori_pack_hint *out, const mamori_binary *b);

/** Free an emulator; NULL is fine. */
void mamori_emu_free(mamori_emu *e);

#ifdef __cplusplus
}
#endif
#endif
