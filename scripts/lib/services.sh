# Provides PostgreSQL and Redis to the scripts that source it.
#
# Where they come from, in order:
#   1. DATABASE_URL / REDIS_URL when set;
#   2. the local servers on 127.0.0.1:5432 / 127.0.0.1:6379 when they answer;
#   3. throwaway servers started from installed binaries (stopped and removed on exit);
#   4. the Debian packages, installed when running as root with apt-get;
#   5. otherwise a message that says what to install.
# IQS_TEST_THROWAWAY=1 skips 1 and 2: servers of its own.
# After provide_postgres / provide_redis, DATABASE_URL / REDIS_URL are exported.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iqs-test.XXXXXX")
STARTED_PG=""
STARTED_REDIS=""
SHARED_PG=""

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

cleanup() {
  local status=$?
  if [ -n "$SHARED_PG" ] && command -v psql >/dev/null 2>&1; then
    # Each test made a database of its own on the shared server; remove them.
    psql "$DATABASE_URL" -Atq -c "SELECT datname FROM pg_database WHERE datname LIKE 'iqs\_test\_%'" 2>/dev/null |
      while read -r db; do psql "$DATABASE_URL" -q -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true; done
  fi
  if [ -n "$STARTED_PG" ]; then
    as_pg_user "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -n "$STARTED_REDIS" ] && [ -f "$WORK/redis.pid" ]; then
    kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! port_open "$port"; then echo "$port"; return 0; fi
  done
  die "no free TCP port found"
}

is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
  is_root && command -v apt-get >/dev/null 2>&1 || return 1
  log "installing $* (Debian packages)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; }
}

# PostgreSQL refuses to run as root: run its binaries as the postgres user then.
as_pg_user() {
  if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

find_pg_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) $(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)"); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
  done
  return 1
}

start_throwaway_postgres() {
  PG_BIN=$(find_pg_bin) || return 1
  if is_root && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home postgres 2>/dev/null || return 1
  fi
  local port
  port=$(free_port)
  mkdir -p "$WORK/pg"
  is_root && chown postgres "$WORK" "$WORK/pg"
  chmod 755 "$WORK"
  as_pg_user "$PG_BIN/initdb" -D "$WORK/pg" -U postgres -A trust >/dev/null || return 1
  as_pg_user "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/log" -w -t 60 \
    -o "-p $port -k $WORK/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null || return 1
  STARTED_PG=1
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  log "PostgreSQL: throwaway server from $PG_BIN on port $port"
}

HERMETIC=${IQS_TEST_THROWAWAY:-}

provide_postgres() {
  if [ -n "$HERMETIC" ]; then
    unset DATABASE_URL
    start_throwaway_postgres || { apt_install postgresql && start_throwaway_postgres; } ||
      die "IQS_TEST_THROWAWAY=1 needs the PostgreSQL server binaries (initdb, pg_ctl)"
  elif [ -n "${DATABASE_URL:-}" ]; then
    log "PostgreSQL: DATABASE_URL from the environment"
    SHARED_PG=1
  elif port_open 5432; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    SHARED_PG=1
    log "PostgreSQL: local server on 127.0.0.1:5432"
  elif start_throwaway_postgres; then
    :
  elif apt_install postgresql && start_throwaway_postgres; then
    :
  else
    die "no PostgreSQL found. Set DATABASE_URL=postgres://USER@HOST:PORT/DB, start a local server on 127.0.0.1:5432, or install PostgreSQL (Debian/Ubuntu: sudo apt-get install postgresql; macOS: brew install postgresql)."
  fi
}

start_throwaway_redis() {
  command -v redis-server >/dev/null 2>&1 || return 1
  local port
  port=$(free_port)
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$WORK" --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log" || return 1
  for _ in $(seq 1 50); do port_open "$port" && break; sleep 0.1; done
  port_open "$port" || return 1
  STARTED_REDIS=1
  export REDIS_URL="redis://127.0.0.1:$port"
  log "Redis: throwaway server on port $port"
}

provide_redis() {
  if [ -n "$HERMETIC" ]; then
    unset REDIS_URL
    start_throwaway_redis || { apt_install redis-server && start_throwaway_redis; } ||
      die "IQS_TEST_THROWAWAY=1 needs redis-server"
  elif [ -n "${REDIS_URL:-}" ]; then
    log "Redis: REDIS_URL from the environment"
  elif port_open 6379; then
    export REDIS_URL="redis://127.0.0.1:6379"
    log "Redis: local server on 127.0.0.1:6379"
  elif start_throwaway_redis; then
    :
  elif apt_install redis-server && start_throwaway_redis; then
    :
  else
    die "no Redis found. Set REDIS_URL=redis://HOST:PORT, start a local server on 127.0.0.1:6379, or install Redis (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)."
  fi
}


# The fault tests start and stop servers of their own (tests/api/throwaway.rs): they need
# the PostgreSQL server binaries and redis-server / redis-cli even when the suite itself
# uses servers from elsewhere.
provide_fault_tools() {
  if ! PG_BIN=$(find_pg_bin); then
    apt_install postgresql && PG_BIN=$(find_pg_bin) ||
      die "the fault tests need the PostgreSQL server binaries (initdb, pg_ctl). Debian/Ubuntu: sudo apt-get install postgresql; macOS: brew install postgresql"
  fi
  export IQS_PG_BIN="$PG_BIN"
  if is_root && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home postgres ||
      die "the fault tests run PostgreSQL as the postgres user, which could not be created"
  fi
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-server ||
      die "the fault tests need redis-server and redis-cli. Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis"
  fi
}

# The dashboard test drives a headless Chromium: IQS_CHROMIUM, else chromium on PATH,
# else (as root) Debian's package.
provide_chromium() {
  if [ -z "${IQS_CHROMIUM:-}" ]; then
    IQS_CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
  fi
  if [ -z "$IQS_CHROMIUM" ]; then
    log "installing Chromium (Debian package chromium) for the dashboard test"
    apt_install chromium && IQS_CHROMIUM=$(command -v chromium) ||
      die "the dashboard test needs Chromium. Debian/Ubuntu: sudo apt-get install chromium; macOS: brew install --cask chromium; or set IQS_CHROMIUM=/path/to/chrome"
  fi
  export IQS_CHROMIUM
}
