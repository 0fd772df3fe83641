#!/usr/bin/env bash
# The seed demo (steps V to X of the Bucardo 5 announcement) with ibex, on the local
# PostgreSQL: five databases from pgbench -i, four sources and a target, 10,000 pgbench
# transactions on each source, one kick, status, and a check that all five are identical.
# It (re)creates the databases btest1..btest5 and the control database ibex_demo.
# COUNTERS=1 (make demo-counters) declares abalance, bbalance and tbalance counters first and
# checks at the end that every db's three sums equal the sum of every pgbench delta.
set -euo pipefail
cd "$(dirname "$0")/.."
TX=${TX:-10000}
SCALE=${SCALE:-1}
COUNTERS=${COUNTERS:-0}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
command -v pgbench >/dev/null || { echo "pgbench is missing: apt-get install postgresql-contrib (or postgresql-client)"; exit 1; }
psql -X -q -d postgres -c 'SELECT 1' >/dev/null || { echo "PostgreSQL does not answer at $PGHOST:$PGPORT as $PGUSER: start it (see README)"; exit 1; }
mkdir -p bin && go build -o bin/ ./cmd/ibex
IBEX=./bin/ibex
export IBEX_DSN="host=$PGHOST port=$PGPORT user=$PGUSER dbname=ibex_demo"

step() { printf '\n== %s\n' "$*"; }
step "V. pgbench tables in btest1, copied to btest2..btest5 (scale $SCALE)"
for d in ibex_demo btest1 btest2 btest3 btest4 btest5; do psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $d WITH (FORCE)"; done
psql -X -q -d postgres -c 'CREATE DATABASE btest1' -c 'CREATE DATABASE ibex_demo'
pgbench -q -i -s "$SCALE" btest1 >/dev/null 2>&1
for i in 2 3 4 5; do psql -X -q -d postgres -c "CREATE DATABASE btest$i TEMPLATE btest1"; done
$IBEX install

step "VI. Tell ibex about the databases and tables"
for i in 1 2 3 4 5; do $IBEX add db t$i dbname=btest$i host="$PGHOST" port="$PGPORT" user="$PGUSER"; done
$IBEX add table pgbench_accounts pgbench_branches pgbench_tellers db=t1 herd=therd
if [ "$COUNTERS" = 1 ]; then
  $IBEX update table pgbench_accounts counters=abalance
  $IBEX update table pgbench_branches counters=bbalance
  $IBEX update table pgbench_tellers counters=tbalance
fi
$IBEX list tables
echo "(pgbench_history is refused: it has no primary key)"; $IBEX add table pgbench_history db=t1 herd=h2 || true

step "VII. Group the databases and create the sync"
$IBEX add dbgroup tgroup t1:source t2:source t3:source t4:source t5:target
$IBEX add sync foobar herd=therd dbs=tgroup autokick=false

step "IX. $TX pgbench transactions on each source"
for i in 1 2 3 4; do pgbench -n -t "$TX" btest$i >/dev/null 2>&1 & done
wait

step "X. Kick the sync"
t0=$(date +%s%3N)
$IBEX kick foobar
t1=$(date +%s%3N)
echo "kick to done: $((t1 - t0)) ms (Bucardo 5.6 on the same machine kind: about 3200 ms)"
$IBEX status
$IBEX status foobar

step "Are all five databases identical?"
same=1
for t in pgbench_accounts:aid pgbench_branches:bid pgbench_tellers:tid; do
  sums=$(for i in 1 2 3 4 5; do psql -X -qAt -d btest$i -c "SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY ${t##*:}), '')) FROM ${t%%:*} x"; done | sort -u)
  n=$(echo "$sums" | wc -l)
  if [ "$n" = 1 ]; then echo "${t%%:*}: identical in all 5 databases ($sums)"; else echo "${t%%:*}: DIFFERS"; same=0; fi
done
[ $same = 1 ] && echo "IDENTICAL" || { echo "NOT IDENTICAL"; exit 1; }

if [ "$COUNTERS" = 1 ]; then
  step "Counters: do the balances add up? (sum of pgbench_history.delta on the four sources)"
  want=0
  for i in 1 2 3 4; do want=$((want + $(psql -X -qAt -d btest$i -c 'SELECT coalesce(sum(delta), 0) FROM pgbench_history'))); done
  echo "sum of every delta pgbench made on the four sources: $want"
  ok=1
  for i in 1 2 3 4 5; do
    got=$(psql -X -qAt -d btest$i -c 'SELECT (SELECT sum(abalance) FROM pgbench_accounts) || '"' '"' || (SELECT sum(bbalance) FROM pgbench_branches) || '"' '"' || (SELECT sum(tbalance) FROM pgbench_tellers)')
    if [ "$got" = "$want $want $want" ]; then verdict=equal; else verdict=DIFFERENT; ok=0; fi
    echo "btest$i: sum(abalance) sum(bbalance) sum(tbalance) = $got: $verdict"
  done
  [ $ok = 1 ] && echo "COUNTERS ADD UP" || { echo "COUNTERS DO NOT ADD UP"; exit 1; }
fi
