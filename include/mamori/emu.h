/*
 * mamori emulator, first layer: a PE32/PE32+ image (or a raw code blob)
 * mapped into Unicorn 2 with a stack and a minimal TEB/PEB, run from its
 * entry point under an instruction limit and a mapped-memory limit, with
 * write tracking: a page written during emulation and later executed is a
 * write-then-execute event (what the stub of a simple packer produces).
 *
 * Limits of this layer: the image is always mapped at its preferred base
 * (no base relocations are applied) and every page is read-write-execute;
 * there are no API stubs, so a call through the IAT faults at the
 * unresolved slot value and is reported as a fault; there is no SEH, no TLS
 * callbacks, no PEB_LDR_DATA. The sample never runs on the host.
 */
#ifndef MAMORI_EMU_H
#define MAMORI_EMU_H

#include "mamori/base.h"
#include "mamori/binfmt.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Limits and options. A zero numeric field means the default. */
typedef struct mamori_emu_limits {
	uint64_t max_insns;  /**< instructions per run (default 50,000,000) */
	uint64_t max_memory; /**< bytes mapped in total (default 256 MiB) */
	bool stop_at_wx;     /**< stop at the first write-then-execute event */
} mamori_emu_limits;

typedef enum mamori_emu_status {
	MAMORI_EMU_EXIT = 1, /**< the entry point returned to the exit address */
	MAMORI_EMU_WX_STOP,  /**< stopped at a write-then-execute event (stop_at_wx) */
	MAMORI_EMU_LIMIT,    /**< max_insns reached */
	MAMORI_EMU_FAULT,    /**< unmapped/protected access, invalid instruction, interrupt */
} mamori_emu_status;

/** What one run did. */
typedef struct mamori_emu_report {
	mamori_emu_status status;
	uint64_t insns;	     /**< instructions executed */
	bool has_wx;	     /**< a write-then-execute event happened */
	uint64_t wx_va;	     /**< first block start inside a page written during the run */
	uint64_t wx_insns;   /**< instruction count when it happened */
	uint64_t fault_addr; /**< MAMORI_EMU_FAULT: the faulting data or fetch address */
	uint64_t pc;	     /**< program counter when the run ended */
} mamori_emu_report;

typedef struct mamori_emu mamori_emu;

/** The default limits (what a NULL `lim` means). */
mamori_emu_limits mamori_emu_limits_default(void);

/**
 * Map PE image `b` (PE32 or PE32+) at its preferred base, with headers and
 * sections (file bytes copied, the rest zero), a 1 MiB stack, a TEB and PEB
 * (FS on x86 through a GDT entry, GS base on x86-64: TEB.Self,
 * TEB.ProcessEnvironmentBlock, PEB.ImageBaseAddress) and the exit address
 * pushed as the entry's return address. `b` and its bytes are only read
 * during this call. On success `*out` belongs to the caller
 * (mamori_emu_free). Errors: MAMORI_EUNSUPPORTED (not PE, no entry, image
 * overlapping the fixed system area), MAMORI_EFORMAT, MAMORI_ELIMIT (image
 * larger than max_memory), MAMORI_ENOMEM, MAMORI_EIO (Unicorn refused).
 */
int mamori_emu_new(mamori_emu **out, const mamori_binary *b, const mamori_emu_limits *lim);

/**
 * Like mamori_emu_new() for `size` bytes of raw code copied to `va`
 * (page-aligned by the caller, read-write-execute), entry at `va`. Meant
 * for shellcode and tests. `va` must lie below 0x70000000.
 */
int mamori_emu_new_raw(mamori_emu **out, mamori_arch arch, uint64_t va, const uint8_t *code, size_t size,
		       const mamori_emu_limits *lim);

/**
 * Run from the entry point until exit, a limit, a fault or (stop_at_wx) the
 * first write-then-execute event; fill `*out`. Call once per emulator.
 * Returns MAMORI_OK for every way the guest stops (see out->status);
 * MAMORI_EINVAL on a second run.
 */
int mamori_emu_run(mamori_emu *e, mamori_emu_report *out);

/** "exit", "wx_stop", "limit", "fault" ("?" otherwise). */
const char *mamori_emu_status_name(mamori_emu_status s);

/** Free an emulator; NULL is fine. */
void mamori_emu_free(mamori_emu *e);

#ifdef __cplusplus
}
#endif
#endif
