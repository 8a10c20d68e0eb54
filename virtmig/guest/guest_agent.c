/*
 * virtmig-agent: the test guest's agent.  Built by virtmig/guest/image.py with
 * `gcc -O2 -static -pthread` and started by the guest's /init.
 *
 * Why it exists: the migration tests need (a) an echo to measure downtime
 * from the outside, (b) a controllable memory-dirtying load, since that is
 * what makes pre-copy migration hard, and (c) a way to prove that RAM and
 * disk contents survived the move.  One tiny static program does all three,
 * so the guest needs no distribution, no network config and no ssh.
 *
 * Protocol: UDP over IPv4, port 7 on all addresses (GUEST_AGENT_PORT).
 *
 *   - A datagram whose first byte is not '!' (including an empty one) is
 *     sent back verbatim at once by the main thread, which does nothing but
 *     recvfrom/sendto: this is the downtime probe's echo.
 *   - A datagram starting with '!' is a command and gets one ASCII line
 *     ending in '\n'.  Trailing whitespace of the command is ignored.
 *       !ping               -> ok pong
 *       !dirty N            -> ok dirty N      (dirty N MiB/s, 0 = stop)
 *       !status             -> ok dirty=N ram_pattern=SEED|none uptime_ms=T
 *                              dirty_buf_mib=M dirtied_mib=D
 *                              disk=absent|raw|mounted busy=0|1
 *       !ram-write SEED     -> ok ram-write SEED <16 hex digit checksum>
 *       !ram-verify SEED    -> ok ram-verify SEED
 *                            | fail ram-verify SEED offset=<first bad byte>
 *       !disk-write SEED    -> ok disk-write SEED <checksum>
 *       !disk-verify SEED   -> ok disk-verify SEED
 *                            | fail disk-verify SEED offset=<first bad byte>
 *       anything else       -> err unknown command
 *     Errors: `err no disk` (no /dev/vda), `err no ram pattern` (verify
 *     before any write), `err busy` (a ram/disk command is still running),
 *     `err bad argument`, `err <operation>: <strerror>`.
 *   SEED is any token of 1-64 printable characters; its FNV-1a hash seeds a
 *   xorshift64* stream, so the same SEED gives the same bytes on any host.
 *   ram-* uses a 16 MiB anonymous buffer; disk-* uses the first 4 MiB of
 *   the disk, written with O_DIRECT (or write+fsync+fadvise DONTNEED where
 *   O_DIRECT is refused) and read back with O_DIRECT, so the verify reads
 *   the device, not the page cache.  disk-write destroys whatever
 *   filesystem was there: use a scratch disk.
 *
 * Threads: ping/dirty/status are answered by the main thread; ram-* and
 * disk-* run on a worker thread (one at a time) so that they never delay an
 * echo; the dirtier thread writes one word into N*256 pages a second of a
 * buffer of up to 64 MiB (less when the guest is small), in 10 ms ticks.
 * With N MiB/s above the buffer size per second, pages are re-dirtied, so
 * the distinct dirty set per second is bounded by the buffer.
 *
 * Usage: virtmig-agent [-p PORT] [-d DISK] [-m DIRTY_BUF_MIB] [DIRTY_MIB_PER_S]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024u * 1024u)
#define RAM_BYTES (16u * MIB)
#define DISK_BYTES (4u * MIB)
#define DIRTY_BUF_MAX_MIB 64u
#define DIRTY_MAX_RATE 100000u
#define PAGE 4096u
#define TICK_NS 10000000L
#define SEED_MAX 64

static int sock = -1;
static const char *disk_path = "/dev/vda";

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t dirty_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t work_cv = PTHREAD_COND_INITIALIZER;

/* Dirtier state, under mu. */
static unsigned dirty_rate;
static size_t dirty_bytes;
static uint64_t dirtied_pages;

/* Worker state, under mu. */
static int work_pending;
static char work_cmd[16];
static char work_seed[SEED_MAX + 1];
static struct sockaddr_storage work_peer;
static socklen_t work_peerlen;

/* RAM pattern state, under mu (the buffer itself is the worker's). */
static char ram_seed[SEED_MAX + 1];
static int ram_valid;
static uint64_t *ram_buf;

/* Format one reply line, '\n'-terminated, into `line`; return its length. */
static size_t vformat(char *line, size_t size, const char *fmt, va_list ap)
{
    int n = vsnprintf(line, size - 1, fmt, ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > size - 2)
        n = (int)size - 2;
    line[n++] = '\n';
    return (size_t)n;
}

static void reply(const struct sockaddr_storage *peer, socklen_t plen, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    size_t n = vformat(line, sizeof line, fmt, ap);
    va_end(ap);
    sendto(sock, line, n, 0, (const struct sockaddr *)peer, plen);
}

/* The worker's reply is only sent after it is idle again, so a client may
 * send its next ram/disk command as soon as it has the answer. */
static char work_reply[512];
static size_t work_reply_len;

static void wreply(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    work_reply_len = vformat(work_reply, sizeof work_reply, fmt, ap);
    va_end(ap);
}

static uint64_t seed_state(const char *seed, uint64_t salt)
{
    uint64_t h = 0xcbf29ce484222325ull ^ salt;
    for (const unsigned char *p = (const unsigned char *)seed; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h ? h : 0x9e3779b97f4a7c15ull;
}

static inline uint64_t xorshift(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545f4914f6cdd1dull;
}

/* Fill `words` with the stream of `seed`; return an FNV-style checksum. */
static uint64_t fill(uint64_t *buf, size_t words, const char *seed, uint64_t salt)
{
    uint64_t x = seed_state(seed, salt), sum = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < words; i++) {
        uint64_t w = xorshift(&x);
        buf[i] = w;
        sum = (sum ^ w) * 0x100000001b3ull;
    }
    return sum;
}

/* Offset of the first byte differing from the stream of `seed`, or -1. */
static long long compare(const uint64_t *buf, size_t words, const char *seed, uint64_t salt)
{
    uint64_t x = seed_state(seed, salt);
    for (size_t i = 0; i < words; i++) {
        uint64_t diff = buf[i] ^ xorshift(&x);
        if (diff)
            return (long long)(i * 8 + (size_t)(__builtin_ctzll(diff) / 8));
    }
    return -1;
}

static const uint64_t RAM_SALT = 0x72616d;   /* "ram" */
static const uint64_t DISK_SALT = 0x6469736b; /* "disk" */

static void do_ram(const char *cmd, const char *seed)
{
    if (strcmp(cmd, "ram-write") == 0) {
        if (!ram_buf) {
            void *p = mmap(NULL, RAM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) {
                wreply("err ram-write: %s", strerror(errno));
                return;
            }
            ram_buf = p;
        }
        pthread_mutex_lock(&mu);
        ram_valid = 0;
        pthread_mutex_unlock(&mu);
        uint64_t sum = fill(ram_buf, RAM_BYTES / 8, seed, RAM_SALT);
        pthread_mutex_lock(&mu);
        snprintf(ram_seed, sizeof ram_seed, "%s", seed);
        ram_valid = 1;
        pthread_mutex_unlock(&mu);
        wreply("ok ram-write %s %016llx", seed, (unsigned long long)sum);
        return;
    }
    pthread_mutex_lock(&mu);
    int valid = ram_valid;
    pthread_mutex_unlock(&mu);
    if (!valid) {
        wreply("err no ram pattern");
        return;
    }
    long long bad = compare(ram_buf, RAM_BYTES / 8, seed, RAM_SALT);
    if (bad < 0)
        wreply("ok ram-verify %s", seed);
    else
        wreply("fail ram-verify %s offset=%lld", seed, bad);
}

/* Open the disk, preferring O_DIRECT; *direct tells which one we got. */
static int open_disk(int flags, int *direct)
{
    int fd = open(disk_path, flags | O_DIRECT | O_CLOEXEC);
    *direct = fd >= 0;
    if (fd < 0 && errno == EINVAL) /* e.g. a file on tmpfs in a host-side test */
        fd = open(disk_path, flags | O_CLOEXEC);
    return fd;
}

static int full_io(int fd, void *buf, size_t len, int writing)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = writing ? pwrite(fd, (char *)buf + done, len - done, (off_t)done)
                            : pread(fd, (char *)buf + done, len - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = ENOSPC;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

static void do_disk(const char *cmd, const char *seed)
{
    int writing = strcmp(cmd, "disk-write") == 0;
    if (access(disk_path, F_OK) != 0) {
        wreply("err no disk");
        return;
    }
    void *mem = NULL;
    if (posix_memalign(&mem, PAGE, DISK_BYTES) != 0) {
        wreply("err %s: out of memory", cmd);
        return;
    }
    uint64_t *buf = mem;
    int direct = 0;
    int fd = open_disk(writing ? O_RDWR : O_RDONLY, &direct);
    if (fd < 0) {
        wreply("err %s: %s", cmd, strerror(errno));
        free(mem);
        return;
    }
    struct stat st;
    uint64_t size = 0;
    if (fstat(fd, &st) == 0 && S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &size) == 0 && size < DISK_BYTES) {
        wreply("err %s: disk smaller than 4 MiB", cmd);
        goto out;
    }
    if (writing) {
        uint64_t sum = fill(buf, DISK_BYTES / 8, seed, DISK_SALT);
        if (full_io(fd, buf, DISK_BYTES, 1) != 0 || fsync(fd) != 0) {
            wreply("err disk-write: %s", strerror(errno));
            goto out;
        }
        if (!direct)
            posix_fadvise(fd, 0, DISK_BYTES, POSIX_FADV_DONTNEED);
        wreply("ok disk-write %s %016llx", seed, (unsigned long long)sum);
    } else {
        if (!direct)
            posix_fadvise(fd, 0, DISK_BYTES, POSIX_FADV_DONTNEED);
        if (full_io(fd, buf, DISK_BYTES, 0) != 0) {
            wreply("err disk-verify: %s", strerror(errno));
            goto out;
        }
        long long bad = compare(buf, DISK_BYTES / 8, seed, DISK_SALT);
        if (bad < 0)
            wreply("ok disk-verify %s", seed);
        else
            wreply("fail disk-verify %s offset=%lld", seed, bad);
    }
out:
    close(fd);
    free(mem);
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (work_pending != 1)
            pthread_cond_wait(&work_cv, &mu);
        work_pending = 2; /* running */
        work_reply_len = 0;
        char cmd[sizeof work_cmd], seed[sizeof work_seed];
        memcpy(cmd, work_cmd, sizeof cmd);
        memcpy(seed, work_seed, sizeof seed);
        struct sockaddr_storage peer = work_peer;
        socklen_t plen = work_peerlen;
        pthread_mutex_unlock(&mu);

        if (strncmp(cmd, "ram-", 4) == 0)
            do_ram(cmd, seed);
        else
            do_disk(cmd, seed);

        pthread_mutex_lock(&mu);
        work_pending = 0;
        pthread_mutex_unlock(&mu);
        sendto(sock, work_reply, work_reply_len, 0, (const struct sockaddr *)&peer, plen);
    }
    return NULL;
}

static double now_s(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *dirtier(void *arg)
{
    (void)arg;
    volatile uint64_t *buf = NULL;
    size_t npages = 0, page = 0;
    uint64_t counter = 0;
    double credit = 0, last = now_s(CLOCK_MONOTONIC);
    for (;;) {
        pthread_mutex_lock(&mu);
        while (dirty_rate == 0) {
            pthread_cond_wait(&dirty_cv, &mu);
            credit = 0;
            last = now_s(CLOCK_MONOTONIC);
        }
        unsigned rate = dirty_rate;
        pthread_mutex_unlock(&mu);
        if (!buf) {
            void *p = mmap(NULL, dirty_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) {
                perror("virtmig-agent: mmap dirty buffer");
                pthread_mutex_lock(&mu);
                dirty_rate = 0;
                pthread_mutex_unlock(&mu);
                continue;
            }
            buf = p;
            npages = dirty_bytes / PAGE;
        }
        struct timespec tick = {0, TICK_NS};
        nanosleep(&tick, NULL);
        double t = now_s(CLOCK_MONOTONIC);
        credit += (double)rate * (MIB / PAGE) * (t - last);
        last = t;
        if (credit > (double)rate * (MIB / PAGE)) /* never catch up more than 1 s */
            credit = (double)rate * (MIB / PAGE);
        uint64_t n = 0;
        while (credit >= 1.0) {
            counter++; /* a changing word at a changing place: never a zero page */
            buf[page * (PAGE / 8) + (counter % (PAGE / 8))] = counter;
            page = page + 1 == npages ? 0 : page + 1;
            credit -= 1.0;
            n++;
        }
        pthread_mutex_lock(&mu);
        dirtied_pages += n;
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

static const char *disk_state(void)
{
    if (access(disk_path, F_OK) != 0)
        return "absent";
    FILE *f = fopen("/proc/mounts", "re");
    if (!f)
        return "raw";
    char line[512];
    size_t len = strlen(disk_path);
    const char *state = "raw";
    while (fgets(line, sizeof line, f))
        if (strncmp(line, disk_path, len) == 0 && line[len] == ' ')
            state = "mounted";
    fclose(f);
    return state;
}

static int valid_seed(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SEED_MAX)
        return 0;
    for (; *s; s++)
        if (*s <= ' ' || *s > '~')
            return 0;
    return 1;
}

static void command(char *text, const struct sockaddr_storage *peer, socklen_t plen)
{
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ' || text[n - 1] == '\t'))
        text[--n] = '\0';
    char *arg = strchr(text, ' ');
    if (arg) {
        *arg++ = '\0';
        while (*arg == ' ')
            arg++;
    }
    const char *verb = text + 1;

    if (strcmp(verb, "ping") == 0 && !arg) {
        reply(peer, plen, "ok pong");
    } else if (strcmp(verb, "dirty") == 0) {
        char *end;
        errno = 0;
        unsigned long rate = arg ? strtoul(arg, &end, 10) : 0;
        if (!arg || !*arg || *end || errno || *arg == '-' || rate > DIRTY_MAX_RATE) {
            reply(peer, plen, "err bad argument");
            return;
        }
        pthread_mutex_lock(&mu);
        dirty_rate = (unsigned)rate;
        pthread_cond_signal(&dirty_cv);
        pthread_mutex_unlock(&mu);
        reply(peer, plen, "ok dirty %lu", rate);
    } else if (strcmp(verb, "status") == 0 && !arg) {
        double up = now_s(CLOCK_BOOTTIME);
        const char *disk = disk_state();
        pthread_mutex_lock(&mu);
        reply(peer, plen, "ok dirty=%u ram_pattern=%s uptime_ms=%.0f dirty_buf_mib=%zu dirtied_mib=%llu disk=%s busy=%d",
              dirty_rate, ram_valid ? ram_seed : "none", up * 1000.0, dirty_bytes / MIB,
              (unsigned long long)(dirtied_pages * PAGE / MIB), disk, work_pending != 0);
        pthread_mutex_unlock(&mu);
    } else if (strcmp(verb, "ram-write") == 0 || strcmp(verb, "ram-verify") == 0 ||
               strcmp(verb, "disk-write") == 0 || strcmp(verb, "disk-verify") == 0) {
        if (!arg || !valid_seed(arg)) {
            reply(peer, plen, "err bad argument");
            return;
        }
        pthread_mutex_lock(&mu);
        if (work_pending) {
            pthread_mutex_unlock(&mu);
            reply(peer, plen, "err busy");
            return;
        }
        snprintf(work_cmd, sizeof work_cmd, "%.15s", verb);
        snprintf(work_seed, sizeof work_seed, "%.64s", arg);
        work_peer = *peer;
        work_peerlen = plen;
        work_pending = 1;
        pthread_cond_signal(&work_cv);
        pthread_mutex_unlock(&mu);
    } else {
        reply(peer, plen, "err unknown command");
    }
}

/* Up to 64 MiB, but leave the RAM pattern and some headroom in a small guest. */
static size_t pick_dirty_bytes(void)
{
    size_t avail_kib = 0;
    FILE *f = fopen("/proc/meminfo", "re");
    if (f) {
        char line[128];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %zu kB", &avail_kib) == 1)
                break;
        fclose(f);
    }
    /* Reserve the RAM pattern (16), the disk buffer (4) and 8 MiB of slack;
     * a 128 MiB guest of Debian's kernel has only ~55 MiB available. */
    const size_t reserve = RAM_BYTES / MIB + DISK_BYTES / MIB + 8;
    size_t mib = DIRTY_BUF_MAX_MIB;
    size_t avail_mib = avail_kib / 1024;
    if (avail_mib && avail_mib < mib + reserve)
        mib = avail_mib > reserve + 4 ? avail_mib - reserve : 4;
    return mib * MIB;
}

int main(int argc, char **argv)
{
    int port = 7, opt;
    size_t buf_mib = 0;
    while ((opt = getopt(argc, argv, "p:d:m:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'd': disk_path = optarg; break;
        case 'm': buf_mib = strtoul(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: %s [-p PORT] [-d DISK] [-m DIRTY_BUF_MIB] [DIRTY_MIB_PER_S]\n", argv[0]);
            return 2;
        }
    }
    dirty_bytes = buf_mib ? buf_mib * MIB : pick_dirty_bytes();
    if (optind < argc)
        dirty_rate = (unsigned)strtoul(argv[optind], NULL, 10);
    if (dirty_rate > DIRTY_MAX_RATE)
        dirty_rate = DIRTY_MAX_RATE;

    sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) {
        perror("virtmig-agent: socket");
        return 1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(sock, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("virtmig-agent: bind");
        return 1;
    }

    pthread_t tid;
    if (pthread_create(&tid, NULL, worker, NULL) != 0 || pthread_create(&tid, NULL, dirtier, NULL) != 0) {
        fprintf(stderr, "virtmig-agent: cannot start threads\n");
        return 1;
    }
    fprintf(stderr, "virtmig-agent: udp port %d, dirty %u MiB/s, dirty buffer %zu MiB, disk %s\n", port, dirty_rate,
            dirty_bytes / MIB, disk_path);

    static char buf[65536];
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(sock, buf, sizeof buf - 1, 0, (struct sockaddr *)&peer, &plen);
        if (n < 0)
            continue; /* EINTR, or a transient error: keep serving */
        if (n == 0 || buf[0] != '!') {
            sendto(sock, buf, (size_t)n, 0, (struct sockaddr *)&peer, plen);
            continue;
        }
        buf[n] = '\0';
        command(buf, &peer, plen);
    }
}
