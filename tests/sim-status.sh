# Helpers to read xbd-sim's status report (xbd-sim(8), STATUS).  Source
# after functions.sh and start_sim.
#
#   sim_status                  # the report, fresh, on stdout
#   sim_field DOMID FIELD       # one figure of one domain from a fresh report
#   sim_total FIELD             # a figure summed over every domain
#   sim_check DOMID|total FIELD OP N   # test(1) a figure: for wait_for

sim_status() {
    rm -f "$XBD_SIM_DIR/status"
    kill -USR1 "$sim_pid"
    wait_for 10 test -e "$XBD_SIM_DIR/status" || fail "xbd-sim wrote no status"
    cat "$XBD_SIM_DIR/status"
}

sim_field() {
    sim_status | awk -v d="$1" -v f="$2" '
        $1 == "domain" && $2 == d { for (i = 3; i < NF; i += 2) if ($i == f) print $(i + 1) }'
}

sim_total() {
    sim_status | awk -v f="$1" '
        $1 == "domain" { for (i = 3; i < NF; i += 2) if ($i == f) t += $(i + 1) }
        END { print t + 0 }'
}

sim_check() {
    local v
    if [ "$1" = total ]; then v=$(sim_total "$2"); else v=$(sim_field "$1" "$2"); fi
    [ -n "$v" ] && test "$v" "$3" "$4"
}
