/* A stand-in for Windows' bcryptprimitives.dll, for Wine only (scripts/windows-test.sh).
 * Rust's std (1.78+) takes its random numbers from ProcessPrng in bcryptprimitives.dll, which
 * every Windows 10+ has but Wine before 9.0 (Debian 12's wine64 8.0) does not: the .exe then
 * fails to start (c0000135, exit 53). This forwards ProcessPrng to BCryptGenRandom, which
 * Wine has. Never shipped: only put into the test's own Wine prefix. */
#include <windows.h>
#include <bcrypt.h>
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0) return FALSE;
        data += n; len -= n;
    }
    return TRUE;
}
