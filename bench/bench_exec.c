/* bench_exec: time a real program (python3, sqlite3) as a benchmark row.
 *
 * usage: bench_exec ops [VAR=value ...] program [args ...]
 *
 * Runs `program args` as a child (fork + execvp, after setting each
 * VAR=value in the child's environment), waits for it with wait4() and
 * prints the usual result line:
 *
 *   seconds      wall time from the fork to the child's exit (the whole run
 *                of the program: loading, start-up, its work, exit);
 *   ops          the count given on the command line: the units of work the
 *                program does (records a script processes, rows a SQL script
 *                inserts), so ops/s stays an integer with enough digits;
 *   peak_rss_kb  the child's ru_maxrss from wait4() (its own peak; the
 *                forked copy of this small program before the exec is all
 *                it can inherit).
 *
 * The allocator under test reaches the program through LD_PRELOAD, which the
 * child inherits with the rest of the environment.  The program's stdout is
 * sent to stderr, so the result line is the only thing on stdout.  Exit
 * status 1 when the program fails (non-zero exit or a signal), 2 on bad
 * arguments.
 */
#include "bench_common.h"

#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s ops [VAR=value ...] program [args ...]\n", argv[0]);
        return 2;
    }
    uint64_t ops = bench_arg_u64(argc, argv, 1, "ops", 1, 1, UINT64_MAX);
    int prog = 2;
    while (prog < argc && strchr(argv[prog], '=') && argv[prog][0] != '=' &&
           argv[prog][0] != '/' && argv[prog][0] != '.')
        prog++;
    if (prog >= argc) {
        fprintf(stderr, "%s: no program given\n", argv[0]);
        return 2;
    }

    double start = bench_now();
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench_exec: fork");
        return 1;
    }
    if (pid == 0) {
        for (int i = 2; i < prog; i++) {
            char *eq = strchr(argv[i], '=');
            *eq = '\0';
            if (setenv(argv[i], eq + 1, 1) != 0) {
                perror("bench_exec: setenv");
                _exit(127);
            }
        }
        if (dup2(2, 1) < 0) {
            perror("bench_exec: dup2");
            _exit(127);
        }
        execvp(argv[prog], argv + prog);
        fprintf(stderr, "bench_exec: %s: %s\n", argv[prog], strerror(errno));
        _exit(127);
    }
    int status;
    struct rusage ru;
    pid_t got;
    do
        got = wait4(pid, &status, 0, &ru);
    while (got < 0 && errno == EINTR);
    double seconds = bench_now() - start;
    if (got < 0) {
        perror("bench_exec: wait4");
        return 1;
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "bench_exec: %s killed by signal %d\n", argv[prog], WTERMSIG(status));
        return 1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_exec: %s exited with status %d\n", argv[prog],
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return 1;
    }
    double rate = seconds > 0.0 ? (double)ops / seconds : 0.0;
    printf("ops/s: %" PRIu64 " peak_rss_kb: %ld ops: %" PRIu64 " seconds: %.6f\n",
           (uint64_t)(rate + 0.5), ru.ru_maxrss, ops, seconds);
    fflush(stdout);
    return 0;
}
