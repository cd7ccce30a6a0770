/*
 * Logging to stderr, wall-clock helpers, and the progress line. The
 * progress line is drawn only when stderr is a terminal, at most ten times
 * a second, so it costs nothing in pipelines and CI logs.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "mamori/base.h"

static mamori_log_level log_level = MAMORI_LOG_WARN;

void mamori_log_set_level(mamori_log_level lvl)
{
	log_level = lvl;
}

void mamori_log(mamori_log_level lvl, const char *fmt, ...)
{
	static const char *names[] = { "error", "warning", "info", "debug" };
	if (lvl > log_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "mamori: %s: ", names[lvl]);
	vfprintf(stderr, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized): see error.c
	fputc('\n', stderr);
	va_end(ap);
}

double mamori_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t mamori_peak_rss(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (uint64_t)ru.ru_maxrss * 1024;
}

struct mamori_progress {
	pthread_mutex_t lock;
	char label[64];
	uint64_t total, done;
	double started, last_draw;
	bool tty;
};

mamori_progress *mamori_progress_start(const char *label, uint64_t total)
{
	mamori_progress *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	snprintf(p->label, sizeof(p->label), "%s", label);
	p->total = total;
	p->started = mamori_now();
	p->tty = isatty(STDERR_FILENO) && !getenv("MAMORI_NO_PROGRESS");
	return p;
}

static void draw(mamori_progress *p, bool force)
{
	double now = mamori_now();
	if (!p->tty || (!force && now - p->last_draw < 0.1))
		return;
	p->last_draw = now;
	double el = now - p->started;
	if (p->total) {
		double frac = (double)p->done / (double)p->total;
		double eta = frac > 0 ? el / frac - el : 0;
		fprintf(stderr, "\r\033[K%s: %llu/%llu (%.0f%%) %.0fs elapsed, ~%.0fs left", p->label,
			(unsigned long long)p->done, (unsigned long long)p->total, frac * 100, el, eta);
	} else {
		fprintf(stderr, "\r\033[K%s: %llu, %.0fs elapsed", p->label, (unsigned long long)p->done, el);
	}
	fflush(stderr);
}

void mamori_progress_add(mamori_progress *p, uint64_t n)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->done += n;
	draw(p, false);
	pthread_mutex_unlock(&p->lock);
}

void mamori_progress_set(mamori_progress *p, uint64_t done)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->done = done;
	draw(p, false);
	pthread_mutex_unlock(&p->lock);
}

void mamori_progress_finish(mamori_progress *p)
{
	if (!p)
		return;
	if (p->tty) {
		fprintf(stderr, "\r\033[K");
		fflush(stderr);
	}
	pthread_mutex_destroy(&p->lock);
	free(p);
}
