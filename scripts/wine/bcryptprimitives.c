/*
 * bcryptprimitives.dll for Wine 8.0: only ProcessPrng, the one export Go's
 * Windows runtime (since Go 1.24) loads from it to read random bytes. It
 * draws them from BCryptGenRandom with the system's preferred RNG, which
 * is what Windows' own ProcessPrng does. See scripts/windows-test-deps.
 */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
		if (BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
