// The public header alone, compiled as C++: extern "C" and nothing C-only.
#include "xbdfront.h"

#include <cstdio>

int
main()
{
    uint32_t vdev = 0;
    bool ok = xbdfront_parse_device("xvdb", &vdev) == 0 && vdev == 51728;

    std::printf("1..1\n%sok 1 - xbdfront.h compiles as C++ and links\n",
                ok ? "" : "not ");
    return ok ? 0 : 1;
}
