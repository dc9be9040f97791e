#!/usr/bin/env bash
# libxbdfront's synchronous timeout (tests/xbdf-timeout-client, which
# prints TAP) against scripted backends:
#  - one that answers requests 2 and 4 only when the next request arrives:
#    -ETIMEDOUT, the caller's buffer left alone, the late responses dropped
#    without breaking the ring, the next requests working, a zero-copy
#    buffer busy until the backend answered;
#  - one that goes away for good: the limit covers waiting for it to come
#    back, and the request given up on is dropped.
source "$srcdir/functions.sh"
source "$srcdir/frontend-functions.sh"
set -e
fake_disk_setup
fakeback_run --lie late --lie-at 2 --lie-value 2 -- \
    "$builddir/xbdf-timeout-client" xvda late ||
    fail "xbdf-timeout-client late reported failures (see its TAP output above)"
fakeback_run --bounce 1 --gone -- "$builddir/xbdf-timeout-client" xvda gone ||
    fail "xbdf-timeout-client gone reported failures (see its TAP output above)"
