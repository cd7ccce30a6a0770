/*
 * The NFQUEUE listener of a session (internal to src/contain): every inmate
 * IP packet that is neither TCP nor UDP (ICMP, raw protocols) waits in the
 * gateway namespace's queue (netns.c: `-A FORWARD -i inmate0 -j NFQUEUE
 * --queue-num N`) until this listener parses it (packet.h), asks the
 * caller's decide() and issues the verdict. ACCEPT lets the kernel forward
 * it (out by up0, masqueraded); DROP drops it.
 *
 * Fail-closed: the rule has no --queue-bypass and the queue is bound
 * without NFQA_CFG_F_FAIL_OPEN, so while nobody listens, after stop(), when
 * the listener dies, when the kernel queue is full or the socket overruns,
 * the packets are dropped, never let through. Packets the parser rejects
 * are dropped without asking decide().
 *
 * Limits: one queue per listener; each packet is copied to us only up to
 * `copy_range` bytes (headers are all we look at; the verdict never carries
 * a packet back, so the kernel sends the original); at most `max_queued`
 * packets wait in the kernel. decide() runs on the listener's thread, one
 * packet at a time, and must not block for long: every queued packet waits
 * behind it.
 */
#ifndef MAMORI_CONTAIN_NFQ_H
#define MAMORI_CONTAIN_NFQ_H

#include <stddef.h>
#include <stdint.h>

#include "packet.h"

#define CONTAIN_NFQ_DEFAULT_COPY   256u
#define CONTAIN_NFQ_DEFAULT_QUEUED 1024u

typedef enum contain_nfq_verdict {
	CONTAIN_NFQ_DROP = 0,
	CONTAIN_NFQ_ACCEPT = 1,
} contain_nfq_verdict;

/** Called on the listener's thread for each packet that parsed; `data` is
 *  the packet as copied to us (`len` bytes, at most the copy range), from
 *  its first IP byte, for a caller that answers it (a fake echo reply). */
typedef contain_nfq_verdict (*contain_nfq_decide_fn)(void *ctx, const contain_packet *p, const uint8_t *data,
						     size_t len);

typedef struct contain_nfq_config {
	const char *netns;	      /**< namespace of the queue (the gateway's); NULL: our own */
	uint16_t queue;		      /**< the --queue-num of the rule */
	uint32_t copy_range;	      /**< bytes of each packet copied to us; 0: 256; at most 65535 */
	uint32_t max_queued;	      /**< kernel queue length; 0: 1024 */
	contain_nfq_decide_fn decide; /**< NULL: drop everything */
	void *ctx;		      /**< passed to decide() */
} contain_nfq_config;

typedef struct contain_nfq_stats {
	uint64_t packets;   /**< packets received from the queue */
	uint64_t accepted;  /**< verdict ACCEPT issued */
	uint64_t dropped;   /**< verdict DROP issued (malformed ones included) */
	uint64_t malformed; /**< rejected by the parser */
	uint64_t overruns;  /**< times the socket overflowed (ENOBUFS): the kernel dropped those packets */
	uint64_t errors;    /**< verdicts the kernel refused, messages we could not read */
} contain_nfq_stats;

typedef struct contain_nfq contain_nfq;

/**
 * Bind queue cfg->queue in cfg->netns and start the listener's thread. The
 * queue is bound and configured when this returns. Errors: MAMORI_EINVAL
 * (copy_range over 65535), MAMORI_ENOTFOUND (no such namespace), MAMORI_EIO
 * (the kernel refused, e.g. the queue is bound by another process:
 * the detail says why), MAMORI_ENOMEM.
 */
int contain_nfq_start(contain_nfq **out, const contain_nfq_config *cfg);

/** A snapshot of the counters while the listener runs. */
void contain_nfq_stats_get(contain_nfq *q, contain_nfq_stats *out);

/** Stop the thread (at once: it is woken, not polled), unbind the queue and
 *  close; fill `stats` (may be NULL). Packets still queued are dropped by
 *  the kernel. NULL is fine. */
void contain_nfq_stop(contain_nfq *q, contain_nfq_stats *stats);

#endif
