/*
 * The floor of databuild's job protocol: the least a runner can do that starts every job
 * as databuild does (its own process group, the job's JobConfig as JSON on stdin, stdout
 * and stderr captured through pipes and read as they come, the exit seen through a
 * pidfd), with no event log, no planning and no state beyond a ready queue. W1-W3 time
 * it beside databuild, make and ninja (benches/run.py): what databuild spends above it
 * is its own work (the machine, the durable log, planning), not the protocol's.
 *
 *   floor -j N DEPS PROGRAM ARGS...
 *
 * DEPS has one line per node, "node parent...". Every node is run once its parents have
 * exited 0, as PROGRAM ARGS... exec NODE with a JobConfig naming bench/NODE and its
 * parents on stdin. Output goes to logs/NODE.log, created on the first byte (as
 * databuild's job logs are). Exits 1 when a job fails, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct node {
    char *name;
    int *children, n_children, cap_children;
    int n_parents, waiting;
    char **parents;
};

struct job {
    int node;
    pid_t pid;
    int pidfd, out, err, log;
    int exited, status;
};

static struct node *nodes;
static int n_nodes, cap_nodes;

static int find(const char *name) {
    /* An open-addressing table of node indexes, looked up once per name while loading. */
    static int *table;
    static int size;
    if (!table) {
        size = 1 << 20;
        table = malloc(sizeof(int) * size);
        memset(table, -1, sizeof(int) * size);
    }
    unsigned h = 2166136261u;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    for (unsigned i = h & (size - 1);; i = (i + 1) & (size - 1)) {
        if (table[i] < 0) {
            if (n_nodes >= size / 2) {
                fprintf(stderr, "more than %d nodes\n", size / 2);
                exit(2);
            }
            if (n_nodes == cap_nodes) {
                cap_nodes = cap_nodes ? cap_nodes * 2 : 1024;
                nodes = realloc(nodes, sizeof(struct node) * cap_nodes);
            }
            memset(&nodes[n_nodes], 0, sizeof(struct node));
            nodes[n_nodes].name = strdup(name);
            table[i] = n_nodes++;
            return table[i];
        }
        if (strcmp(nodes[table[i]].name, name) == 0) return table[i];
    }
}

static void load(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); exit(2); }
    char *line = NULL;
    size_t len = 0;
    while (getline(&line, &len, f) > 0) {
        char *save, *tok = strtok_r(line, " \t\n", &save);
        if (!tok) continue;
        int n = find(tok);
        while ((tok = strtok_r(NULL, " \t\n", &save))) {
            int p = find(tok);
            struct node *pn = &nodes[p], *nn = &nodes[n];
            if (pn->n_children == pn->cap_children) {
                pn->cap_children = pn->cap_children ? pn->cap_children * 2 : 4;
                pn->children = realloc(pn->children, sizeof(int) * pn->cap_children);
            }
            pn->children[pn->n_children++] = n;
            nn->parents = realloc(nn->parents, sizeof(char *) * (nn->n_parents + 1));
            nn->parents[nn->n_parents++] = pn->name;
            nn->waiting++;
        }
    }
    free(line);
    fclose(f);
}

/* The node's JobConfig, as databuild writes it on a job's stdin (in a buffer of its own,
 * grown as needed). */
static char *job_config(int n, size_t *len) {
    static char *buf;
    static size_t cap;
    struct node *nd = &nodes[n];
    size_t need = 128 + 3 * strlen(nd->name);
    for (int i = 0; i < nd->n_parents; i++) need += 64 + strlen(nd->parents[i]);
    if (need > cap) {
        cap = need;
        buf = realloc(buf, cap);
    }
    size_t k = snprintf(buf, cap, "{\"outputs\":[{\"str\":\"bench/%s\"}],\"inputs\":[", nd->name);
    for (int i = 0; i < nd->n_parents; i++)
        k += snprintf(buf + k, cap - k, "%s{\"depType\":\"MATERIALIZE\",\"partitionRef\":{\"str\":\"bench/%s\"}}",
                      i ? "," : "", nd->parents[i]);
    k += snprintf(buf + k, cap - k, "],\"args\":[\"exec\",\"%s\"],\"env\":{}}\n", nd->name);
    *len = k;
    return buf;
}

static void start(struct job *j, int n, char **argv, int argc) {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) { perror("pipe"); exit(1); }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    char *args[argc + 3];
    for (int i = 0; i < argc; i++) args[i] = argv[i];
    args[argc] = "exec";
    args[argc + 1] = nodes[n].name;
    args[argc + 2] = NULL;
    int rc = posix_spawn(&j->pid, argv[0], &fa, &at, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc) { fprintf(stderr, "cannot start %s: %s\n", argv[0], strerror(rc)); exit(1); }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    /* One write that does not wait: a job that does not read stdin may exit first, and a
     * config larger than the pipe keeps only its start (databuild writes the rest as the
     * job reads it). */
    size_t len;
    char *cfg = job_config(n, &len);
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    if (write(in[1], cfg, len) < 0 && errno != EPIPE && errno != EAGAIN) perror("write");
    close(in[1]);
    j->node = n;
    j->pidfd = (int)syscall(SYS_pidfd_open, j->pid, 0);
    if (j->pidfd < 0) { perror("pidfd_open"); exit(1); }
    j->out = out[0];
    j->err = err[0];
    j->log = -1;
    j->exited = 0;
}

/* Reads what `*fd` holds into the job's log; closes it at its end. */
static void drain(struct job *j, int *fd) {
    char buf[65536];
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n > 0) {
        if (j->log < 0) {
            char path[4096];
            snprintf(path, sizeof path, "logs/%s.log", nodes[j->node].name);
            j->log = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        }
        if (j->log >= 0 && write(j->log, buf, n) < 0) perror("log");
    } else if (n == 0 || errno != EINTR) {
        close(*fd);
        *fd = -1;
    }
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[1], "-j") != 0) {
        fprintf(stderr, "usage: floor -j N DEPS PROGRAM ARGS...\n");
        return 2;
    }
    int slots = atoi(argv[2]);
    if (slots < 1) slots = 1;
    load(argv[3]);
    signal(SIGPIPE, SIG_IGN);
    mkdir("logs", 0755);
    int *ready = malloc(sizeof(int) * (n_nodes + 1)), n_ready = 0, done = 0, failed = 0;
    for (int i = 0; i < n_nodes; i++)
        if (nodes[i].waiting == 0) ready[n_ready++] = i;
    struct job *jobs = calloc(slots, sizeof(struct job));
    int running = 0;
    struct pollfd fds[3 * slots];
    int owner[3 * slots];
    while (done < n_nodes && !failed) {
        while (running < slots && n_ready > 0) start(&jobs[running++], ready[--n_ready], argv + 4, argc - 4);
        if (running == 0) break;
        int k = 0;
        for (int i = 0; i < running; i++) {
            struct job *j = &jobs[i];
            if (j->out >= 0) { fds[k] = (struct pollfd){j->out, POLLIN, 0}; owner[k++] = i; }
            if (j->err >= 0) { fds[k] = (struct pollfd){j->err, POLLIN, 0}; owner[k++] = i; }
            if (!j->exited) { fds[k] = (struct pollfd){j->pidfd, POLLIN, 0}; owner[k++] = i; }
        }
        if (poll(fds, k, -1) < 0) {
            if (errno == EINTR) continue;
            perror("poll");
            return 1;
        }
        for (int f = 0; f < k; f++) {
            if (!fds[f].revents) continue;
            struct job *j = &jobs[owner[f]];
            if (fds[f].fd == j->out) drain(j, &j->out);
            else if (fds[f].fd == j->err) drain(j, &j->err);
            else if (waitpid(j->pid, &j->status, WNOHANG) == j->pid) j->exited = 1;
        }
        for (int i = 0; i < running;) {
            struct job *j = &jobs[i];
            if (!(j->exited && j->out < 0 && j->err < 0)) { i++; continue; }
            close(j->pidfd);
            if (j->log >= 0) close(j->log);
            if (!WIFEXITED(j->status) || WEXITSTATUS(j->status) != 0) {
                fprintf(stderr, "%s failed\n", nodes[j->node].name);
                failed = 1;
            }
            struct node *nd = &nodes[j->node];
            for (int c = 0; c < nd->n_children; c++)
                if (--nodes[nd->children[c]].waiting == 0) ready[n_ready++] = nd->children[c];
            done++;
            jobs[i] = jobs[--running];
        }
    }
    while (running > 0) waitpid(jobs[--running].pid, NULL, 0);
    if (failed || done < n_nodes) {
        fprintf(stderr, "built %d of %d nodes\n", done, n_nodes);
        return 1;
    }
    return 0;
}
