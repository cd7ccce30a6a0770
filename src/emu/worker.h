/*
 * The unpack worker: the program mamori_unpack() starts for each isolated
 * run (worker.c is its whole main). Internal to src/emu.
 */
#ifndef MAMORI_EMU_WORKER_H
#define MAMORI_EMU_WORKER_H

/**
 * The worker's main: options as "name=value" arguments (max_insns,
 * max_memory, max_api_calls, max_layers, max_trace, settle_insns,
 * stop_at_wx, timeout_ms, cmdline), the sample on standard input (a
 * regular file: the memfd mamori_unpack() writes), one
 * result frame on standard output. Never returns: exit code 0 after a
 * frame, 2 for bad arguments, 3/4 when no frame could be made or sent.
 */
_Noreturn int mamori_unpack_worker_main(int argc, char **argv);

/** Where the worker program is: $MAMORI_EMU_WORKER, else the build's path. */
const char *mamori_unpack_worker_path(void);

#endif
