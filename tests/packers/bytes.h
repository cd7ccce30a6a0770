/*
 * Little-endian field access and alignment for the test packers, which
 * edit PE headers they have already bounds-checked (the packers are test
 * tools run on our own fixtures; mamori's loaders use the cursor instead).
 */
#ifndef MAMORI_TESTPACK_BYTES_H
#define MAMORI_TESTPACK_BYTES_H

#include <stdint.h>

static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline uint32_t align_up(uint32_t v, uint32_t a)
{
	return (v + a - 1) / a * a;
}

#endif
