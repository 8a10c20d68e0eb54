/*
 * virtmig probe sender: the send loop of the external reachability probe
 * (virtmig/guest/probe.py), outside Python.
 *
 * Why C: the probe's resolution is its worst gap between two sends.  A
 * Python thread waits for the GIL and for the interpreter's switch
 * interval, and on a machine busy with TCG guests its worst send gap was
 * 13-31 ms at a 5 ms interval.  Here one process sleeps to absolute
 * deadlines (clock_nanosleep via ppoll on CLOCK_MONOTONIC, the clock
 * Python's time.monotonic_ns reads), runs SCHED_FIFO where permitted, and
 * keeps its memory locked, so nothing but the kernel stands between two
 * sends.
 *
 *   virtmig-probe-sender IP PORT INTERVAL_NS DRAIN_NS RT_PRIORITY
 *
 * Datagrams are what probe.py's _PAYLOAD packs: 8-byte seq, 8-byte send
 * time, big-endian (seq starts at 0, so the first byte is never '!').
 * It stops sending when stdin reaches EOF (or has any input), keeps
 * reading replies for DRAIN_NS, and exits.  On stdout, one line per event,
 * in order, as they happen:
 *   p SCHED_FIFO N | p SCHED_OTHER reason   the scheduling it got (first line)
 *   s SEQ SEND_NS                           a datagram sent
 *   e SEQ SEND_NS ERRNO                     a send that failed (the guest moving)
 *   r SEQ ECHOED_SEND_NS RECV_NS            a reply of the right size
 *   x RECV_NS                               a datagram of another size
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* For the schedule's tests only (tests/test_probe.py): VIRTMIG_PROBE_STEPPING_CLOCK="T0 STEP STALL_AT STALL_NS"
 * replaces the clock by one that advances STEP per reading (STALL_NS more at reading STALL_AT) and never
 * sleeps, so the schedule can be checked exactly, whatever the machine's load. */
static int stepping;
static int64_t step_now, step_ns, stall_at, stall_ns, readings;

static int64_t mono_ns(void)
{
    if (stepping) {
        int64_t reading = step_now;
        readings++;
        step_now += step_ns + (readings == stall_at ? stall_ns : 0);
        return reading;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void read_replies(int sock)
{
    unsigned char buf[64];
    for (;;) {
        ssize_t n = recv(sock, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == ECONNREFUSED) /* ICMP port unreachable for an earlier send */
                continue;
            return;
        }
        int64_t now = mono_ns();
        if (n != 16)
            printf("x %lld\n", (long long)now);
        else
            printf("r %llu %llu %lld\n", (unsigned long long)get_be64(buf), (unsigned long long)get_be64(buf + 8),
                   (long long)now);
    }
}

/* Wait until `until_ns` (or a reply, or stdin); returns the poll result bits of interest. */
static int wait_events(int sock, int watch_stdin, int64_t until_ns, int *stdin_ready)
{
    struct pollfd fds[2] = {{sock, POLLIN, 0}, {0, POLLIN, 0}};
    int64_t left = until_ns - mono_ns();
    if (left < 0 || stepping)
        left = 0;
    struct timespec ts = {left / 1000000000LL, left % 1000000000LL};
    int n = ppoll(fds, watch_stdin ? 2 : 1, &ts, NULL);
    if (n > 0 && watch_stdin && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
        *stdin_ready = 1;
    return n > 0 && (fds[0].revents & POLLIN);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s IP PORT INTERVAL_NS DRAIN_NS RT_PRIORITY\n", argv[0]);
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
        fprintf(stderr, "virtmig-probe-sender: %s is not an IPv4 address\n", argv[1]);
        return 2;
    }
    int64_t interval = strtoll(argv[3], NULL, 10), drain = strtoll(argv[4], NULL, 10);
    int priority = atoi(argv[5]);
    if (interval <= 0 || drain < 0) {
        fprintf(stderr, "virtmig-probe-sender: interval must be positive, drain not negative\n");
        return 2;
    }
    const char *clock_spec = getenv("VIRTMIG_PROBE_STEPPING_CLOCK");
    if (clock_spec && sscanf(clock_spec, "%ld %ld %ld %ld", &step_now, &step_ns, &stall_at, &stall_ns) == 4)
        stepping = 1;
    setvbuf(stdout, NULL, _IOLBF, 0); /* the reader sees each event as it happens */
    fcntl(1, F_SETPIPE_SZ, 1 << 20);   /* room for seconds of events if the reader lags */

    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&to, sizeof to) != 0) {
        fprintf(stderr, "virtmig-probe-sender: socket to %s:%s: %s\n", argv[1], argv[2], strerror(errno));
        return 1;
    }
    struct sched_param sp = {.sched_priority = priority};
    if (sched_setscheduler(0, SCHED_FIFO, &sp) == 0)
        printf("p SCHED_FIFO %d\n", priority);
    else
        printf("p SCHED_OTHER (%s: real-time scheduling not permitted)\n", strerror(errno));
    mlockall(MCL_CURRENT | MCL_FUTURE); /* best effort: a page fault is a gap */

    int64_t start = mono_ns(), next = start, slot = 0;
    uint64_t seq = 0;
    int stop = 0;
    while (!stop) {
        int64_t now = mono_ns();
        if (now >= next) {
            unsigned char payload[16];
            put_be64(payload, seq);
            put_be64(payload + 8, (uint64_t)now);
            if (send(sock, payload, sizeof payload, 0) == (ssize_t)sizeof payload)
                printf("s %llu %lld\n", (unsigned long long)seq, (long long)now);
            else
                printf("e %llu %lld %d\n", (unsigned long long)seq, (long long)now, errno);
            seq++;
            int64_t due = (now - start) / interval + 1; /* skip missed slots rather than burst */
            slot = slot + 1 > due ? slot + 1 : due;
            next = start + slot * interval;
        }
        if (wait_events(sock, 1, next, &stop))
            read_replies(sock);
    }
    int64_t until = mono_ns() + drain;
    while (mono_ns() < until) {
        int dummy = 0;
        if (wait_events(sock, 0, until, &dummy))
            read_replies(sock);
    }
    fflush(stdout);
    return 0;
}
