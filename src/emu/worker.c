/*
 * mamori-emu-worker: runs one isolated unpack for mamori_unpack() (see
 * unpack.c for why a separate program). Not meant to be run by hand.
 */
#include "worker.h"

int main(int argc, char **argv)
{
	mamori_unpack_worker_main(argc, argv);
}
