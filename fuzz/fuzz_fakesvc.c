/*
 * libFuzzer target for the gateway's fake services (src/contain/fakesvc*.c),
 * which read what the inmate sends, so hostile input. The first byte picks
 * the service: the DNS responder on one datagram, or one of the stream
 * services (SMTP sink, HTTP, IRC, generic sink, DNS over TCP) on a
 * socketpair whose other end holds the rest of the input and is then shut
 * for writing, so every session ends at end of input. Also the policy
 * parser, on text (an operator writes policies, but a bad one must still
 * give a line-numbered error, never a crash). Traps when a service fails
 * other than by its documented results, or a DNS answer is longer than the
 * buffer it was given.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "fakesvc.h"
#include "mamori/base.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stream input is cut to what a socket buffer takes without a reader, so
 * writing it all before the service starts can never block. */
#define MAX_STREAM_INPUT (16u << 10)

/* The SMTP sink stores mail: in a folder of this process, emptied at exit. */
static char maildir[64];

static void remove_maildir(void)
{
	DIR *d = opendir(maildir);
	struct dirent *e;
	char path[400];
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", maildir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(maildir);
}

static const char *fuzz_maildir(void)
{
	if (!maildir[0]) {
		snprintf(maildir, sizeof(maildir), "/tmp/mamori-fuzz-mail-XXXXXX");
		if (!mkdtemp(maildir))
			abort();
		atexit(remove_maildir);
	}
	return maildir;
}

static void stream(const char *service, const uint8_t *data, size_t size)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return;
	if (size > MAX_STREAM_INPUT)
		size = MAX_STREAM_INPUT;
	if (!mamori_write_all(sv[0], data, size)) {
		close(sv[0]);
		close(sv[1]);
		return;
	}
	shutdown(sv[0], SHUT_WR);
	contain_fakesvc_opts o;
	contain_fakesvc_opts_default(&o);
	o.timeout_ms = 200;
	o.session_ms = 2000;
	o.maildir = fuzz_maildir();
	o.max_messages = 2;
	json_t *rec = NULL;
	int rc = contain_fakesvc_run(&rec, service, sv[1], &o);
	if (rc != MAMORI_OK && rc != MAMORI_EIO)
		__builtin_trap();
	json_decref(rec);
	close(sv[0]);
	close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	static const char *const services[] = { "smtp-sink", "http", "irc", "sink", "dns" };
	uint8_t sel = data[0] % 8;
	data++, size--;
	if (sel < 5) {
		stream(services[sel], data, size);
	} else if (sel < 7) {
		static contain_policy *defaults;
		if (!defaults && contain_policy_default(&defaults) != MAMORI_OK)
			abort();
		uint8_t out[512];
		size_t n = 0;
		char qname[256];
		if (contain_fakedns_answer(out, sizeof(out), &n, data, size, contain_policy_dns(defaults),
					   sel == 6 ? qname : NULL) == MAMORI_OK &&
		    n > sizeof(out))
			__builtin_trap();
	} else {
		contain_policy *p = NULL;
		if (contain_policy_parse(&p, "fuzz.policy", (const char *)data, size) == MAMORI_OK && !p)
			__builtin_trap();
		contain_policy_free(p);
	}
	return 0;
}
