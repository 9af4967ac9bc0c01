# Host-side checks shared by the guest tests that run a payload of steps.
# Sourced, not run. A payload writes "NAME STATUS" lines to steps.txt and
# each step's output to NAME.txt.

failures=0

# fail MESSAGE...: counts a failed check and prints it.
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# check_guest_status STATUS CONSOLE: turns run-guest.sh's exit status into
# a failed check with its meaning.
check_guest_status() {
  case "$1" in
    0) ;;
    124) fail "the guest did not finish within its timeout (console: $2)" ;;
    125) fail "the guest stopped before the payload reported a result (console: $2)" ;;
    *) fail "$1 steps failed in the guest" ;;
  esac
}

# check_steps RESULTS NAME...: each step must have run and exited 0. A
# missing line means the payload stopped early.
check_steps() {
  local results=$1
  shift
  local name line
  for name in "$@"; do
    line=$(grep -E "^$name [0-9]+$" "$results/steps.txt" 2>/dev/null || true)
    if [ -z "$line" ]; then
      fail "step $name did not run"
    elif [ "${line##* }" != 0 ]; then
      fail "step $name exited with status ${line##* }: $(head -c 600 "$results/$name.txt" 2>/dev/null)"
    fi
  done
}
