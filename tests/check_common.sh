# Sourced by the TAP-style script tests (tests/test_cli.sh, tests/test_owner.sh,
# tests/test_enclave_binary.sh): the programs under test (the master $T, the owner's tools
# $OWNER, the attacks $ATTACK), a scratch folder ($tmp, removed at exit), and the checks. Each
# check prints "ok - NAME" or "not ok - NAME: why"; finish prints "N passed, N failed" and sets the status.
T="${TEMPO_BUILD:-build}/tempo"
OWNER="${TEMPO_BUILD:-build}/tempo-owner"
ATTACK="${TEMPO_BUILD:-build}/tempo-attack"
tmp=$(mktemp -d "/tmp/tempo-${CHECK_NAME:-test}-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0 n=0
check() { # name, expected status, command...
  local name=$1 want=$2; shift 2
  n=$((n + 1))
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ "$rc" != "$want" ]; then
    echo "not ok - $name: exit $rc, expected $want"; sed 's/^/    /' "$tmp/err" "$tmp/out" | head -8; fails=$((fails + 1))
  else
    echo "ok - $name"
  fi
}
grep_in() { # name, file, pattern
  n=$((n + 1))
  if grep -q -- "$3" "$2"; then echo "ok - $1"; else echo "not ok - $1: '$3' not in $2"; fails=$((fails + 1)); fi
}
same() { # name, a, b
  n=$((n + 1))
  if [ "$2" = "$3" ] && [ -n "$2" ]; then echo "ok - $1 ($2)"; else echo "not ok - $1: '$2' vs '$3'"; fails=$((fails + 1)); fi
}
finish() {
  echo "$((n - fails)) passed, $fails failed"
  [ "$fails" = 0 ]
}
