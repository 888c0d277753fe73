# Sourced by scripts/test and scripts/bench: makes a PostgreSQL available and exports
# RUNWAY_TEST_POSTGRES_URL (a server URL; tests create their own databases on it).

runway_pg_bin() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$found" ] && [ -x "$found/initdb" ]; then echo "$found"; return; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
}

runway_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

runway_ensure_postgres() {
  if [ -n "${RUNWAY_TEST_POSTGRES_URL:-}" ]; then return; fi
  if [ "${RUNWAY_TEST_PG_MODE:-}" != "throwaway" ] && command -v pg_isready >/dev/null 2>&1 \
    && pg_isready -q -h 127.0.0.1 -p 5432; then
    export RUNWAY_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/postgres"
    return
  fi
  local bin
  bin=$(runway_pg_bin)
  if [ -z "$bin" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "test: no PostgreSQL found; installing Debian's postgresql package" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }
      bin=$(runway_pg_bin)
    fi
    if [ -z "$bin" ]; then
      echo "test: PostgreSQL is needed: install it (Debian: apt-get install postgresql) or set RUNWAY_TEST_POSTGRES_URL" >&2
      return 1
    fi
  fi
  local dir port as=()
  dir=$(mktemp -d /tmp/runway-pg.XXXXXX)
  port=$(runway_free_port)
  # initdb refuses to run as root; run the cluster as the `postgres` system user then.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$dir"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  RUNWAY_PG_THROWAWAY="$dir"
  RUNWAY_PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop)
  trap 'runway_stop_postgres' EXIT
  export RUNWAY_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:${port}/postgres"
  echo "test: started a throwaway PostgreSQL in $dir on port $port" >&2
}

runway_stop_postgres() {
  if [ -n "${RUNWAY_PG_THROWAWAY:-}" ]; then
    "${RUNWAY_PG_STOP[@]}" >/dev/null 2>&1 || true
    rm -rf "$RUNWAY_PG_THROWAWAY"
  fi
}
