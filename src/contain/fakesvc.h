/*
 * The gateway's "virtual Internet": built-in fake services that a REFLECT
 * verdict hands a connection to. Each works on a connected stream socket
 * (blocking, with a timeout per read and limits on line length, total bytes
 * and counts), speaks just enough of its protocol to keep a bot talking, and
 * returns a JSON record of what the inmate said. None of them ever opens a
 * connection of its own: the SMTP sink stores mail and never relays it.
 *
 * The DNS responder is a pure function over one datagram; the "dns" stream
 * service wraps it for DNS over TCP.
 */
#ifndef MAMORI_CONTAIN_FAKESVC_H
#define MAMORI_CONTAIN_FAKESVC_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"

struct json_t;

typedef struct contain_fakesvc_opts {
	int timeout_ms;		       /**< per read and per reply; the session ends when it passes */
	int session_ms;		       /**< whole session, however slowly the bytes drip in */
	size_t max_line;	       /**< longest protocol line accepted */
	size_t max_bytes;	       /**< total bytes read from the inmate per session */
	size_t max_message;	       /**< SMTP: largest message stored */
	size_t max_messages;	       /**< SMTP: messages stored per session */
	size_t sink_keep;	       /**< generic sink: leading bytes recorded */
	const char *maildir;	       /**< SMTP: folder for .eml + .json (must exist) */
	const char *hostname;	       /**< name the services announce */
	const contain_dns_config *dns; /**< DNS over TCP: answers (NULL: sinkhole 198.51.100.53) */
} contain_fakesvc_opts;

/** 10 s timeout per read, 5 min per session, 4 KiB lines, 16 MiB per session, 10 MiB per message, 100
 *  messages, 4 KiB sink record, maildir ".", hostname "mail.example". */
void contain_fakesvc_opts_default(contain_fakesvc_opts *out);

/*
 * Each service runs until the client quits, closes, stays silent past the
 * timeout or exceeds a limit, then returns MAMORI_OK with `*out` (owned by
 * the caller, json_decref) holding what was seen and "end": "quit", "eof",
 * "timeout", "limit" or "error". A failure to store mail is MAMORI_EIO (the
 * record is still returned). The caller closes `fd`.
 */
int contain_fakesvc_smtp(struct json_t **out, int fd, const contain_fakesvc_opts *o);
int contain_fakesvc_http(struct json_t **out, int fd, const contain_fakesvc_opts *o);
int contain_fakesvc_irc(struct json_t **out, int fd, const contain_fakesvc_opts *o);
int contain_fakesvc_sink(struct json_t **out, int fd, const contain_fakesvc_opts *o);
/** DNS over TCP (RFC 1035 4.2.2: two-byte length, then the message), one
 *  answer per query as contain_fakedns_answer() gives it; malformed
 *  queries end the session. */
int contain_fakesvc_dns_tcp(struct json_t **out, int fd, const contain_fakesvc_opts *o);
/** Run the service a REFLECT verdict names ("smtp-sink", "http", "irc",
 *  "sink", "dns" over TCP); MAMORI_EINVAL for others. */
int contain_fakesvc_run(struct json_t **out, const char *service, int fd, const contain_fakesvc_opts *o);

/**
 * Answer one DNS query datagram: A queries get the address of the first
 * matching "dns host=" rule of `cfg`, or the sinkhole; nxdomain rules get
 * NXDOMAIN; other types get an empty NOERROR answer; other opcodes get
 * NOTIMP. `qname` (at least 256 bytes, may be NULL) receives the query name
 * in lowercase text, bytes outside [a-z0-9-_] shown as '?'. Malformed
 * queries fail (MAMORI_EFORMAT/ETRUNC) and should be dropped.
 */
int contain_fakedns_answer(uint8_t *out, size_t cap, size_t *out_len, const uint8_t *query, size_t qlen,
			   const contain_dns_config *cfg, char *qname);

#endif
