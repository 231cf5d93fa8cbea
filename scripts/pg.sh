#!/usr/bin/env bash
# A throw-away PostgreSQL cluster on 127.0.0.1, for the tests and for trying
# the scale-out locally. Uses Debian's postgresql package: when run as root
# and it is missing, `apt-get update` and `apt-get install -y postgresql`
# install it (without the package's own "main" cluster, so that nothing is
# left running). initdb refuses to run as root, so as root the cluster runs
# as the "postgres" user the package creates.
#
#   eval "$(scripts/pg.sh start DIR)"   # prints export lines: SYNCDB_TEST_PG, SYNCDB_TEST_PGDATA, ...
#   scripts/pg.sh stop DIR               # stops every cluster under DIR (private ones of tests too), removes DIR
#   scripts/pg.sh restart DIR [SECONDS]  # crash (immediate stop), down SECONDS, start again; same port
set -euo pipefail
cmd=${1:?usage: pg.sh start|stop|restart DIR}
dir=${2:?usage: pg.sh start|stop|restart DIR}

bindir() {
	ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}
as_owner() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
install_postgresql() {
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		echo "pg.sh: PostgreSQL is not installed (as root on Debian this script installs it: apt-get install postgresql)" >&2
		exit 1
	fi
	echo "pg.sh: installing postgresql (apt-get; PostgreSQL 15 on Debian 12)" >&2
	# No "main" cluster of the package's own, left running on port 5432:
	# the tests start theirs (createcluster.conf includes this directory).
	mkdir -p /etc/postgresql-common/createcluster.d
	echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/syncdb-no-main.conf
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}
# free_port prints a TCP port nothing listens on at 127.0.0.1 (bash's
# /dev/tcp: no other tool needed). Start retries with another if it is
# taken meanwhile.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}
# stop_cluster stops the cluster in data directory $1: pg_ctl, then its
# postmaster's PID if pg_ctl could not.
stop_cluster() {
	local data=$1 pid
	[ -f "$data/postmaster.pid" ] || return 0
	pid=$(head -1 "$data/postmaster.pid")
	as_owner "$B/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
	# Still there (pg_ctl removes it once the postmaster is gone): kill it.
	if [ -f "$data/postmaster.pid" ] && [ "$(head -1 "$data/postmaster.pid")" = "$pid" ]; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
}

case $cmd in
start)
	[ -n "$(bindir)" ] || install_postgresql
	B=$(bindir)
	mkdir -p "$dir"
	data=$dir/data
	# A cluster still running here would keep running on deleted files.
	stop_cluster "$data"
	rm -rf "$data"
	mkdir -p "$data"
	if [ "$(id -u)" = 0 ]; then
		chown -R postgres:postgres "$dir"
		if ! runuser -u postgres -- test -x "$dir"; then
			echo "pg.sh: user postgres cannot reach $dir (a parent directory is private): use a directory it can reach" >&2
			exit 1
		fi
	fi
	as_owner "$B/initdb" -D "$data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1
	cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 128MB
fsync = on
synchronous_commit = on
checkpoint_timeout = 30s
CONF
	for attempt in 1 2 3 4 5; do
		port=$(free_port)
		if as_owner "$B/pg_ctl" -D "$data" -l "$dir/postgres.log" -o "-p $port" -w start >/dev/null; then
			break
		fi
		if [ "$attempt" = 5 ]; then
			echo "pg.sh: PostgreSQL did not start (see $dir/postgres.log)" >&2
			exit 1
		fi
	done
	echo "$port" >"$dir/port"
	echo "export SYNCDB_TEST_PG='postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable'"
	echo "export SYNCDB_TEST_PGDATA='$data'"
	echo "export SYNCDB_TEST_PGDIR='$dir'"
	echo "export SYNCDB_TEST_PGCTL='$(cd "$(dirname "$0")" && pwd)/pg.sh'"
	;;
stop)
	B=$(bindir)
	if [ -n "$B" ] && [ -d "$dir" ]; then
		while IFS= read -r pidfile; do
			stop_cluster "$(dirname "$pidfile")"
		done < <(find "$dir" -name postmaster.pid 2>/dev/null)
	fi
	rm -rf "$dir"
	;;
restart)
	# A crash and a restart: stop in immediate mode (no shutdown checkpoint:
	# recovery replays the WAL), stay down ${3:-0} seconds, start again.
	B=$(bindir)
	as_owner "$B/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
	sleep "${3:-0}"
	as_owner "$B/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "-p $(cat "$dir/port")" -w start >/dev/null
	;;
*)
	echo "usage: pg.sh start|stop|restart DIR" >&2
	exit 2
	;;
esac
