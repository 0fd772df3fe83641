#!/usr/bin/env bash
# The seed demo with targets that are not PostgreSQL: four PostgreSQL sources (pgbench -i,
# then 10,000 pgbench transactions on each) and four targets, a MariaDB database, an SQLite
# file, a Redis prefix and a directory of SQL files; onetimecopy=1 and one kick; then a check
# that every target holds exactly the sources' rows (scripts/sinkcheck: each target read back
# through its sink, the SQL files replayed into a scratch PostgreSQL database).
# It (re)creates the databases sbtest1..sbtest4 and ibex_demo_sinks (PostgreSQL), the MariaDB
# database ibex_demo_sinks, the Redis keys ibex_demo_sinks:* and the directory
# ${TMPDIR:-/tmp}/ibex-demo-sinks.
set -euo pipefail
cd "$(dirname "$0")/.."
TX=${TX:-10000}
SCALE=${SCALE:-1}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
MYHOST=${MYHOST:-127.0.0.1} MYPORT=${MYPORT:-3306} MYUSER=${MYUSER:-root}
REDISHOST=${REDISHOST:-127.0.0.1} REDISPORT=${REDISPORT:-6379}
DIR=${TMPDIR:-/tmp}/ibex-demo-sinks
command -v pgbench >/dev/null || { echo "pgbench is missing: apt-get install postgresql-contrib"; exit 1; }
psql -X -q -d postgres -c 'SELECT 1' >/dev/null || { echo "PostgreSQL does not answer at $PGHOST:$PGPORT as $PGUSER: start it (see README)"; exit 1; }
command -v mysql >/dev/null && mysql -h"$MYHOST" -P"$MYPORT" -u"$MYUSER" -e 'SELECT 1' >/dev/null ||
  { echo "MariaDB does not answer at $MYHOST:$MYPORT as $MYUSER: start it (start-stop-daemon --start --background --exec /usr/sbin/mariadbd; apt-get install mariadb-server)"; exit 1; }
command -v redis-cli >/dev/null && redis-cli -h "$REDISHOST" -p "$REDISPORT" ping >/dev/null ||
  { echo "Redis does not answer at $REDISHOST:$REDISPORT: start it (redis-server --daemonize yes; apt-get install redis-server)"; exit 1; }
mkdir -p bin && go build -o bin/ ./cmd/ibex
IBEX=./bin/ibex
export IBEX_DSN="host=$PGHOST port=$PGPORT user=$PGUSER dbname=ibex_demo_sinks"

step() { printf '\n== %s\n' "$*"; }
step "pgbench tables in sbtest1, copied to sbtest2..sbtest4 (scale $SCALE); empty targets"
for d in ibex_demo_sinks sbtest1 sbtest2 sbtest3 sbtest4; do psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $d WITH (FORCE)"; done
psql -X -q -d postgres -c 'CREATE DATABASE sbtest1' -c 'CREATE DATABASE ibex_demo_sinks'
pgbench -q -i -s "$SCALE" sbtest1 >/dev/null 2>&1
for i in 2 3 4; do psql -X -q -d postgres -c "CREATE DATABASE sbtest$i TEMPLATE sbtest1"; done
mysql -h"$MYHOST" -P"$MYPORT" -u"$MYUSER" -e 'DROP DATABASE IF EXISTS ibex_demo_sinks; CREATE DATABASE ibex_demo_sinks'
redis-cli -h "$REDISHOST" -p "$REDISPORT" --scan --pattern 'ibex_demo_sinks:*' | xargs -r redis-cli -h "$REDISHOST" -p "$REDISPORT" del >/dev/null
rm -rf "$DIR" && mkdir -p "$DIR"
$IBEX install

step "The databases: four PostgreSQL sources, four targets of other kinds"
for i in 1 2 3 4; do $IBEX add db t$i dbname=sbtest$i host="$PGHOST" port="$PGPORT" user="$PGUSER"; done
$IBEX add db maria type=mariadb host="$MYHOST" port="$MYPORT" dbname=ibex_demo_sinks user="$MYUSER"
$IBEX add db lite type=sqlite path="$DIR/demo.sqlite" journal=wal
$IBEX add db cache type=redis host="$REDISHOST" port="$REDISPORT" db=0 prefix=ibex_demo_sinks:
$IBEX add db dump type=flatfile path="$DIR/sql"
$IBEX list dbs
$IBEX add table pgbench_accounts pgbench_branches pgbench_tellers db=t1 herd=therd
$IBEX add dbgroup sgroup t1:source t2:source t3:source t4:source maria:target lite:target cache:target dump:target
$IBEX add sync foobar herd=therd dbs=sgroup autokick=false onetimecopy=1
$IBEX validate foobar --create-targets

step "$TX pgbench transactions on each source"
for i in 1 2 3 4; do pgbench -n -t "$TX" sbtest$i >/dev/null 2>&1 & done
wait

step "One kick: the onetimecopy into the targets, then every source's changes"
t0=$(date +%s%3N)
$IBEX kick foobar
t1=$(date +%s%3N)
echo "kick to done: $((t1 - t0)) ms"
$IBEX status foobar

step "Do the sources agree, and does every target hold exactly their rows?"
same=1
for t in pgbench_accounts:aid pgbench_branches:bid pgbench_tellers:tid; do
  sums=$(for i in 1 2 3 4; do psql -X -qAt -d sbtest$i -c "SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY ${t##*:}), '')) FROM ${t%%:*} x"; done | sort -u)
  if [ "$(echo "$sums" | wc -l)" = 1 ]; then echo "${t%%:*}: identical on the 4 sources"; else echo "${t%%:*}: the sources DIFFER"; same=0; fi
done
go run ./scripts/sinkcheck -sync foobar || same=0
[ $same = 1 ] && echo "EVERY TARGET MATCHES" || { echo "NOT IDENTICAL"; exit 1; }
