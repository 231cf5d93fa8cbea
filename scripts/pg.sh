#!/usr/bin/env bash
# A throw-away PostgreSQL cluster on 127.0.0.1, for the tests and for trying
# the scale-out locally. Uses Debian's postgresql package (installed if
# missing, when run as root). initdb refuses to run as root, so as root the
# cluster runs as the "postgres" user the package creates.
#
#   eval "$(scripts/pg.sh start DIR)"   # prints export lines: SYNCDB_TEST_PG, SYNCDB_TEST_PGDATA, ...
#   scripts/pg.sh stop DIR
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

case $cmd in
start)
	if [ -z "$(bindir)" ]; then
		if [ "$(id -u)" != 0 ]; then
			echo "pg.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2
			exit 1
		fi
		echo "pg.sh: installing postgresql" >&2
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
	fi
	B=$(bindir)
	mkdir -p "$dir"
	data=$dir/data
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
	# A free port: ask the kernel for one.
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 128MB
fsync = on
synchronous_commit = on
checkpoint_timeout = 30s
CONF
	as_owner "$B/pg_ctl" -D "$data" -l "$dir/postgres.log" -w start >/dev/null
	echo "export SYNCDB_TEST_PG='postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable'"
	echo "export SYNCDB_TEST_PGDATA='$data'"
	echo "export SYNCDB_TEST_PGCTL='$(cd "$(dirname "$0")" && pwd)/pg.sh'"
	;;
stop)
	B=$(bindir)
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_owner "$B/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
	fi
	rm -rf "$dir"
	;;
restart)
	# A crash and a restart: stop in immediate mode (no shutdown checkpoint:
	# recovery replays the WAL), stay down ${3:-0} seconds, start again.
	B=$(bindir)
	as_owner "$B/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
	sleep "${3:-0}"
	as_owner "$B/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w start >/dev/null
	;;
*)
	echo "usage: pg.sh start|stop|restart DIR" >&2
	exit 2
	;;
esac
