/*
 * Internals of the emulator shared by its files: the engine and tracking
 * (emu.c), the Windows environment and loader (winenv.c) and the API stubs
 * (winapi.c). Not a public header.
 *
 * Guest address space (both archs; everything 32-bit code touches lies
 * below 2 GiB):
 *   [0x00010000, 0x70000000)  the image, VirtualAlloc'd memory, heaps
 *   0x70000000                special stubs (exit, exception return)
 *   [0x70010000, 0x7fe00000)  stand-in modules, 64 KiB aligned
 *   [0x7fe00000, 0x7ff00000)  the stack (1 MiB)
 *   [0x7ff00000, 0x7ff40000)  environment data: LDR, process parameters,
 *                             strings, argv, the TLS block
 *   [0x7ffd0000, 0x7ffe0000)  GDT, TEB, PEB, helper code
 *   0x7ffe0000                KUSER_SHARED_DATA
 * x64 images keep their preferred base above 4 GiB when it is free.
 */
#ifndef MAMORI_EMU_INTERNAL_H
#define MAMORI_EMU_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <unicorn/unicorn.h>

#include "mamori/emu.h"

#define EMU_PAGE    0x1000ull
#define ALLOC_LO    0x00010000ull
#define ALLOC_HI    0x70000000ull
#define HEAP_VA	    0x6ff00000ull /* the process heap's first arena (1 MiB) */
#define ALLOC_START 0x02000000ull /* where VirtualAlloc without an address starts looking */
#define STUB_LO	    0x70000000ull
#define EXIT_VA	    (STUB_LO + 0x0)
#define EXC_RET_VA  (STUB_LO + 0x8)
#define MOD_LO	    0x70010000ull
#define MOD_HI	    0x7fe00000ull
#define STACK_BASE  0x7fe00000ull
#define STACK_SIZE  0x100000ull
#define ENV_BASE    0x7ff00000ull
#define ENV_SIZE    0x40000ull
#define SYS_BASE    0x7ffd0000ull
#define SYS_SIZE    0x10000ull
#define GDT_VA	    (SYS_BASE + 0x0000)
#define TEB_VA	    (SYS_BASE + 0x2000)
#define PEB_VA	    (SYS_BASE + 0x8000)
#define HELPER_VA   (SYS_BASE + 0xe000) /* guest code we generate (TLS trampoline, _initterm) */
#define KUSER_VA    0x7ffe0000ull

#define MAX_REGIONS	4096
#define MAX_MODULES	64
#define MAX_DYN_EXPORTS 512 /* exports created by GetProcAddress, per module */
#define MAX_EXC_DEPTH	8
#define MAX_VEH		16
#define MAX_OUTPUT	(1u << 20)
#define MAX_TLS_SLOTS	64

/* One mapped region and its pages' write state. */
typedef struct region {
	uint64_t base, size;
	mamori_emu_region_kind kind;
	const char *name; /* module name (IMAGE/MODULE), borrowed from the module */
	uint32_t prot;	  /* Windows PAGE_* value reported by VirtualQuery/Protect */
	uint8_t *written; /* one bit per page: written during the run */
	uint8_t *dirty;	  /* one bit per page: written since the current layer began */
	uint64_t *writer; /* per page: pc of the first write in the current layer */
	bool any_written;
} region;

/* A stand-in module: a small PE image in guest memory with an export
 * directory; every export is a stub slot (8 bytes) or a data object. */
typedef struct module {
	char name[64]; /* lower case, "kernel32.dll" */
	uint64_t base, size;
	uint64_t stub_base; /* first stub slot */
	uint32_t n_stubs, cap_stubs;
	uint32_t *stub_api; /* stub slot -> api id */
	uint64_t ldr_entry;
	bool is_image;
} module;

struct api_def;

/* One export of a stand-in (the trace's api id is its index). */
typedef struct api_entry {
	uint32_t module;
	char *name; /* owned; NULL when by ordinal only */
	uint16_t ordinal;
	uint64_t va;
	const struct api_def *def; /* NULL: unknown, fails plausibly */
	bool is_data;
} api_entry;

/* An exception being dispatched to guest handlers. */
typedef struct exc_state {
	uint32_t code;
	uint64_t rec_va, ctx_va, ptrs_va, frame_sp;
	int stage; /* 0 vectored, 1 SEH chain (x86), 2 filter, 3 none left */
	uint32_t veh_idx;
	uint64_t seh_frame;
	int calling; /* the stage of the handler being called */
} exc_state;

typedef struct heap_chunk {
	uint64_t va, size;
} heap_chunk;

struct mamori_emu {
	uc_engine *uc;
	mamori_arch arch;
	bool x64;
	mamori_emu_limits lim;
	uint64_t entry, start_pc;
	uint64_t mapped;
	region **regions; /* sorted by base */
	size_t n_regions, cap_regions;
	region *last; /* lookup cache: execution and writes stay local */
	bool ran;
	uint64_t image_base, image_size;

	/* run state, written by the hooks */
	uint64_t insns, insn_stop;
	bool stopping;
	mamori_emu_status status;
	const char *limit, *fault;
	uint64_t fault_addr;
	uint32_t exit_code;
	bool has_wx;
	uint64_t wx_va, wx_insns;
	uint64_t prev_block;
	size_t n_dirty;
	mamori_emu_layer *layers;
	size_t n_layers;
	uint64_t last_layer_insns;

	/* faults raised by the hooks, dispatched by the run loop */
	bool exc_pending;
	bool write_retry; /* a first write opened its page: restart at the pc */
	uint32_t retries; /* consecutive restarts without progress */
	uint64_t retry_page;
	uint32_t exc_code;
	uint64_t exc_addr, exc_info0, exc_info1;
	const char *exc_what;
	exc_state exc[MAX_EXC_DEPTH];
	int exc_depth;
	uint64_t veh[MAX_VEH];
	uint32_t n_veh;
	uint64_t unhandled_filter;

	/* API */
	module *modules;
	size_t n_modules;
	uint64_t mod_next;
	api_entry *apis;
	size_t n_apis, cap_apis;
	uint64_t stub_span; /* [STUB_LO, STUB_LO + stub_span) dispatches to C */
	mamori_emu_api_call *trace;
	size_t n_trace;
	uint64_t api_calls, unknown_api_calls;
	uint64_t api_caller; /* return address of the call being served */
	uint64_t api_jump;   /* set by a stub: continue there with the stack as at the call */

	/* environment */
	uint64_t env_next;
	uint64_t ldr_va, params_va, cmdline_a, cmdline_w, image_path_w;
	uint64_t ldr_tail[3];
	uint64_t helper_initterm, helper_next;
	uint64_t tls_trampoline;
	uint64_t process_heap;
	heap_chunk *heap_free;
	size_t n_heap_free;
	uint64_t heap_cur, heap_end;
	uint64_t sleep_ns;
	bool tls_used[MAX_TLS_SLOTS];
	uint64_t argv_va, envp_va;
	int argc;
	uint64_t iob_va;
	uint64_t errno_va;
	uint8_t *out;
	size_t out_len;
	uint64_t alloc_hint;
	char image_name[64];
	char *cmdline;	 /* owned copy of lim.cmdline */
	uint64_t crt_va; /* msvcrt state: errno +0, argc +8, argv +16, envp +24, wargv +32, wenvp +40 */
	uint64_t lconv_va, strerror_va, locale_va;
	uint32_t rand_state;
	uint64_t teb_tls_array;
};

/* emu.c: memory */
region *emu_find_region(mamori_emu *e, uint64_t va);
int emu_map(mamori_emu *e, uint64_t base, uint64_t size, mamori_emu_region_kind kind, const char *name,
	    uint32_t prot);
int emu_unmap(mamori_emu *e, region *r);
uint64_t emu_find_free(mamori_emu *e, uint64_t size, uint64_t lo, uint64_t hi, uint64_t align);
/* Host writes: `emu_put` is loader bookkeeping (not a guest write);
 * `emu_gwrite` is a write done on behalf of the guest by an API stub, so it
 * is tracked like a guest store (writer: the call's return address). Both
 * fail (false) when a byte is unmapped. */
bool emu_put(mamori_emu *e, uint64_t va, const void *p, size_t n);
bool emu_gwrite(mamori_emu *e, uint64_t va, const void *p, size_t n);
bool emu_get(mamori_emu *e, uint64_t va, void *p, size_t n);
bool emu_get32(mamori_emu *e, uint64_t va, uint32_t *v);
bool emu_getptr(mamori_emu *e, uint64_t va, uint64_t *v);
bool emu_putptr(mamori_emu *e, uint64_t va, uint64_t v);
bool emu_gwrite32(mamori_emu *e, uint64_t va, uint32_t v);
bool emu_gwriteptr(mamori_emu *e, uint64_t va, uint64_t v);
uint64_t emu_reg(mamori_emu *e, int reg);
void emu_set_reg(mamori_emu *e, int reg, uint64_t v);
void emu_stop(mamori_emu *e, mamori_emu_status st, const char *why);
void emu_output(mamori_emu *e, const void *p, size_t n);
uint64_t emu_clock_ns(const mamori_emu *e);
/* Raise a guest exception from a stub (RaiseException): emu_raise marks
 * it pending, emu_dispatch_exception (once the stub's return is set up)
 * starts calling the guest's handlers. */
void emu_raise(mamori_emu *e, uint32_t code, uint64_t addr, const char *what);
void emu_dispatch_exception(mamori_emu *e);

/* winenv.c */
int winenv_setup(mamori_emu *e);
int winenv_load_image(mamori_emu *e, const mamori_binary *b);
uint64_t env_alloc(mamori_emu *e, uint64_t size);
/* How winenv_module() may load: look up loaded modules only
 * (GetModuleHandle), also load our known stand-ins, or load anything (an
 * unknown DLL gets an empty stand-in: LoadLibrary, imports). */
enum { WINENV_LOADED, WINENV_KNOWN, WINENV_ANY };
int winenv_module(mamori_emu *e, const char *name, int how, module **out);
module *winenv_module_by_base(mamori_emu *e, uint64_t base);
module *winenv_module_at(mamori_emu *e, uint64_t va);
/* The export of `m` named `name` (or by `ordinal` when name is NULL); an
 * unknown one is created when `create`. 0 when there is none. */
uint64_t winenv_export(mamori_emu *e, module *m, const char *name, uint16_t ordinal, bool create);
uint64_t winenv_alloc_region(mamori_emu *e, uint64_t addr, uint64_t size, mamori_emu_region_kind kind,
			     uint32_t prot);
void winenv_set_last_error(mamori_emu *e, uint32_t err);

/* winapi.c */
typedef uint64_t (*api_fn)(mamori_emu *e);
typedef struct api_def {
	uint8_t mods; /* bit mask of the stand-ins exporting it (MOD_*) */
	const char *name;
	uint16_t ordinal; /* fixed ordinal (ws2_32), 0 for automatic */
	uint8_t nargs;	  /* stdcall: bytes popped = 4 * nargs on x86 */
	bool cdecl;
	api_fn fn;	    /* NULL: known but unimplemented, fails plausibly */
	uint32_t data_size; /* a data export (msvcrt _iob ...): size of the object */
} api_def;

enum {
	MOD_K32 = 1,
	MOD_NTDLL = 2,
	MOD_KB = 4,
	MOD_USER32 = 8,
	MOD_ADVAPI = 16,
	MOD_MSVCRT = 32,
	MOD_WS2 = 64,
};
extern const api_def winapi_defs[];
extern const size_t winapi_n_defs;
/* Bit of the stand-in named `dll` (lower case), 0 for an unknown DLL. */
uint8_t winapi_module_bit(const char *dll);
uint64_t api_arg(mamori_emu *e, unsigned i);
/* Serve a call that landed on stub address `pc`. */
void winapi_dispatch(mamori_emu *e, uint64_t pc);
/* Initialise data exports of a module just built (msvcrt's _iob ...). */
int winapi_init_data(mamori_emu *e, module *m);

#endif
