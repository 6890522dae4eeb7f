// The core tests' entry point, with a watchdog: a test case that runs past
// CFUTURES_TEST_CASE_TIMEOUT seconds (default 60; the slowest case takes about 2 s plain, 10 s
// under TSan) is a hang. The watchdog prints the case's name and every thread's stack (gdb, where
// it is installed) and aborts, so a deadlock fails fast with the place it waits, instead of
// ending as a bare ctest "Timeout" with no output (as one did in CI's ASan run).
// It is an alarm(), not a thread: the process pool's tests fork workers and count on no other
// thread running while they do, and a fork does not inherit the alarm.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

unsigned g_case_limit_seconds = 60;
char g_hang_message[768];  // written when a case starts, printed by the alarm's handler
std::size_t g_hang_message_size = 0;
char g_pid[16];

void write_stderr(const char* s, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::write(STDERR_FILENO, s, n);
        if (w <= 0) return;
        s += w;
        n -= static_cast<std::size_t>(w);
    }
}

// Async-signal-safe: write, fork, execvp, waitpid, abort.
void on_case_alarm(int) {
    write_stderr(g_hang_message, g_hang_message_size);
    const pid_t child = ::fork();
    if (child == 0) {
        ::dup2(STDERR_FILENO, STDOUT_FILENO);
        const char* argv[] = {"gdb", "-batch", "-nx", "-p", g_pid, "-ex", "thread apply all bt", nullptr};
        ::execvp("gdb", const_cast<char* const*>(argv));
        const char missing[] = "*** (no stacks: gdb is not installed)\n";
        write_stderr(missing, sizeof missing - 1);
        ::_exit(127);
    }
    if (child > 0) {
        int status;
        while (::waitpid(child, &status, 0) < 0) {
        }
    }
    std::abort();
}

// Arms the alarm for `what`, which the handler names if it fires.
void watch(const std::string& what) {
    const int n = std::snprintf(g_hang_message, sizeof g_hang_message,
                                "\n*** %s has run for over %u s: a hang. Stacks:\n", what.c_str(),
                                g_case_limit_seconds);
    g_hang_message_size = n < 0 ? 0 : std::min<std::size_t>(n, sizeof g_hang_message - 1);
    ::alarm(g_case_limit_seconds);
}

struct CaseAlarm : doctest::IReporter {
    explicit CaseAlarm(const doctest::ContextOptions&) {}
    void test_case_start(const doctest::TestCaseData& tc) override {
        watch("test case \"" + std::string(tc.m_name) + "\" (" + tc.m_file.c_str() + ":" +
              std::to_string(tc.m_line) + ")");
    }
    void test_case_end(const doctest::CurrentTestCaseStats&) override { ::alarm(0); }
    void test_case_reenter(const doctest::TestCaseData&) override {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats&) override {}
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("case-alarm", 1, CaseAlarm);

}  // namespace

int main(int argc, char** argv) {
    // As in the extension (CPython ignores SIGPIPE): a closed pipe is an error code, not a signal.
    std::signal(SIGPIPE, SIG_IGN);
    if (const char* limit = std::getenv("CFUTURES_TEST_CASE_TIMEOUT")) g_case_limit_seconds = std::atoi(limit);
    std::snprintf(g_pid, sizeof g_pid, "%d", static_cast<int>(::getpid()));
    std::signal(SIGALRM, on_case_alarm);
    const int failed = doctest::Context(argc, argv).run();
    // What runs after the last case (static destructors, LeakSanitizer's scan) is watched too.
    watch("the exit after the last test case");
    return failed;
}
