#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis are reachable and exports DATABASE_URL and
# REDIS_URL.
#
#   scripts/provision.sh            # check / start the services
#   source scripts/provision.sh     # same, and keep the exported variables
#
# Sourcing with PROVISION_NO_AUTORUN=1 only defines the functions, e.g. to
# create a throwaway cluster:  provision_private_cluster /tmp/pg 5499
#
# PostgreSQL, in this order, when $DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres) does not answer:
#   0. the private cluster in .local/pg ($PROVISION_PG_DIR), if an earlier
#      run created one;
#   1. the local Debian cluster (pg_ctlcluster);
#   2. `docker compose up -d postgres redis`;
#   3. a private cluster in .local/pg (installing PostgreSQL with apt-get
#      when initdb is missing), trust auth, 127.0.0.1 only.
# Redis ($REDIS_URL, default redis://127.0.0.1:6379): redis-server, docker
# compose, or apt-get install redis-server.
#
# Idempotent: when both answer, it only checks.

set -euo pipefail

PROVISION_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROVISION_DEFAULT_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
PROVISION_DEFAULT_REDIS_URL="redis://127.0.0.1:6379"
PROVISION_WAIT_SECONDS="${PROVISION_WAIT_SECONDS:-30}"
# Where the private cluster lives (option 0 / 3 below).
PROVISION_PG_DIR="${PROVISION_PG_DIR:-$PROVISION_REPO_ROOT/.local/pg}"

provision_log() {
    printf 'provision: %s\n' "$*" >&2
}

# --- small helpers ---------------------------------------------------------

# Sets URL_HOST, URL_PORT from a postgres:// or redis:// URL.
provision_parse_url() {
    local url="$1" default_port="$2" rest hostport
    rest="${url#*://}"          # drop the scheme
    rest="${rest%%/*}"          # drop the path
    rest="${rest%%\?*}"         # drop a query without a path
    hostport="${rest##*@}"      # drop the credentials
    if [[ "$hostport" =~ ^\[([^]]+)\](:([0-9]+))?$ ]]; then
        URL_HOST="${BASH_REMATCH[1]}"
        URL_PORT="${BASH_REMATCH[3]:-$default_port}"
    elif [[ "$hostport" == *:* ]]; then
        URL_HOST="${hostport%%:*}"
        URL_PORT="${hostport##*:}"
    else
        URL_HOST="$hostport"
        URL_PORT="$default_port"
    fi
    URL_HOST="${URL_HOST:-127.0.0.1}"
    URL_PORT="${URL_PORT:-$default_port}"
}

# Replaces the port of a URL.
provision_url_with_port() {
    local url="$1" port="$2"
    if [[ "$url" =~ ^([a-z]+://([^/@]*@)?)([^/:?]+)(:[0-9]+)?(.*)$ ]]; then
        printf '%s%s:%s%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[3]}" "$port" "${BASH_REMATCH[5]}"
    else
        printf '%s\n' "$url"
    fi
}

provision_is_local_host() {
    case "$1" in
        127.0.0.1 | localhost | ::1 | 0.0.0.0) return 0 ;;
        *) return 1 ;;
    esac
}

# True when something accepts TCP connections on HOST PORT.
provision_tcp_open() {
    local host="$1" port="$2"
    if command -v timeout >/dev/null 2>&1; then
        timeout 2 bash -c ": </dev/tcp/$host/$port" >/dev/null 2>&1
    else
        (: <"/dev/tcp/$host/$port") >/dev/null 2>&1
    fi
}

provision_pg_ready() {
    local host="$1" port="$2"
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$host" -p "$port" -t 2 >/dev/null 2>&1
    else
        provision_tcp_open "$host" "$port"
    fi
}

provision_redis_ready() {
    local url="$1" host="$2" port="$3"
    if command -v redis-cli >/dev/null 2>&1; then
        [[ "$(redis-cli -u "$url" ping 2>/dev/null)" == *PONG* ]]
    else
        provision_tcp_open "$host" "$port"
    fi
}

# provision_wait SECONDS COMMAND ARGS...: retries the command once a second.
provision_wait() {
    local seconds="$1" i
    shift
    for ((i = 0; i < seconds; i++)); do
        if "$@"; then
            return 0
        fi
        sleep 1
    done
    "$@"
}

# Runs a command as root (directly, or through sudo).
provision_as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        provision_log "need root for: $*"
        return 1
    fi
}

provision_apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        provision_log "apt-get not found; install $* by hand"
        return 1
    fi
    provision_log "installing $* with apt-get"
    provision_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    provision_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

provision_docker_usable() {
    command -v docker >/dev/null 2>&1 &&
        docker info >/dev/null 2>&1 &&
        docker compose version >/dev/null 2>&1 &&
        [[ -f "$PROVISION_REPO_ROOT/compose.yaml" ]]
}

provision_docker_up() {
    provision_log "starting $* with docker compose"
    (cd "$PROVISION_REPO_ROOT" && docker compose up -d "$@" >&2)
}

# --- PostgreSQL private cluster --------------------------------------------

# The directory of initdb/pg_ctl: PATH, else the newest /usr/lib/postgresql.
provision_pg_bindir() {
    local dir
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    # shellcheck disable=SC2012 # version directories have plain names
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 1
}

# Runs a command as the cluster owner: `postgres` when we are root (initdb
# refuses to run as root), ourselves otherwise.
provision_as_pg_owner() {
    if [[ "$(id -u)" -ne 0 ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

provision_ensure_postgres_user() {
    [[ "$(id -u)" -eq 0 ]] || return 0
    if ! id -u postgres >/dev/null 2>&1; then
        provision_log "creating the postgres system user"
        if command -v useradd >/dev/null 2>&1; then
            useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh postgres
        else
            adduser --system --group --home /var/lib/postgresql --shell /bin/sh postgres >&2
        fi
    fi
}

# provision_private_cluster DIR PORT: creates (first time) and starts a
# trust-auth cluster in DIR/data listening on 127.0.0.1:PORT, then waits for
# it and sets PROVISION_PG_PORT to the port it listens on. Safe to call
# again: a running cluster is left alone (and keeps its port).
provision_private_cluster() {
    local dir="$1" port="$2" bindir data log socketdir
    if ! bindir="$(provision_pg_bindir)"; then
        provision_apt_install postgresql
        bindir="$(provision_pg_bindir)" || {
            provision_log "initdb still not found after installing postgresql"
            return 1
        }
    fi
    provision_ensure_postgres_user
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    data="$dir/data"
    log="$dir/postgres.log"
    if [[ "$(id -u)" -eq 0 ]]; then
        chown postgres: "$dir"
        chmod 700 "$dir"
        if ! provision_as_pg_owner test -w "$dir"; then
            provision_log "the postgres user cannot reach $dir (a parent directory is not traversable)"
            return 1
        fi
    fi

    if [[ ! -f "$data/PG_VERSION" ]]; then
        provision_log "creating a private PostgreSQL cluster in $data"
        provision_as_pg_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
            provision_as_pg_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust \
                --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
            provision_log "initdb failed; see $dir/initdb.log"
            return 1
        }
    fi

    if provision_as_pg_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        # Line 4 of postmaster.pid is the port it really listens on.
        port="$(sed -n 4p "$data/postmaster.pid" 2>/dev/null || true)"
        port="${port:-$2}"
        provision_log "private cluster in $data already running on port $port"
    else
        # The socket goes in DIR unless the path is too long for a socket.
        socketdir="$dir"
        if ((${#dir} > 90)); then
            socketdir=""
        fi
        provision_log "starting the private cluster on 127.0.0.1:$port (log: $log)"
        provision_as_pg_owner "$bindir/pg_ctl" -D "$data" -l "$log" -w -t "$PROVISION_WAIT_SECONDS" \
            -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$socketdir'" \
            start >/dev/null || {
            provision_log "pg_ctl start failed; see $log"
            return 1
        }
    fi
    provision_wait "$PROVISION_WAIT_SECONDS" provision_pg_ready 127.0.0.1 "$port" || {
        provision_log "private cluster on port $port is not ready; see $log"
        return 1
    }
    PROVISION_PG_PORT="$port"
}

# provision_stop_private_cluster DIR
provision_stop_private_cluster() {
    local dir="$1" bindir
    bindir="$(provision_pg_bindir)" || return 1
    provision_as_pg_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
}

# A port on 127.0.0.1 nobody listens on, starting at $1.
provision_free_port() {
    local port="$1"
    while provision_tcp_open 127.0.0.1 "$port"; do
        port=$((port + 1))
        if ((port > 65000)); then
            return 1
        fi
    done
    printf '%s\n' "$port"
}

# --- PostgreSQL ------------------------------------------------------------

provision_postgres() {
    local user_set_url=0 cluster port private_dir="$PROVISION_PG_DIR"
    [[ -n "${DATABASE_URL:-}" ]] && user_set_url=1
    DATABASE_URL="${DATABASE_URL:-$PROVISION_DEFAULT_DATABASE_URL}"
    provision_parse_url "$DATABASE_URL" 5432
    local host="$URL_HOST"
    port="$URL_PORT"

    if provision_pg_ready "$host" "$port"; then
        provision_log "PostgreSQL is up on $host:$port"
        export DATABASE_URL
        return 0
    fi
    if ! provision_is_local_host "$host"; then
        provision_log "PostgreSQL at $host:$port does not answer (not a local host; not starting anything)"
        return 1
    fi

    # 0. Our own private cluster from an earlier run.
    if [[ -f "$private_dir/data/PG_VERSION" ]]; then
        if provision_tcp_open 127.0.0.1 "$port"; then
            port="$(provision_free_port $((port + 1)))"
        fi
        provision_private_cluster "$private_dir" "$port"
        DATABASE_URL="$(provision_url_with_port "$DATABASE_URL" "$PROVISION_PG_PORT")"
        export DATABASE_URL
        provision_log "PostgreSQL is up on 127.0.0.1:$PROVISION_PG_PORT (private cluster)"
        return 0
    fi

    # 1. The local Debian cluster.
    if [[ -d /etc/postgresql && -n "$(ls -A /etc/postgresql 2>/dev/null)" ]] &&
        command -v pg_ctlcluster >/dev/null 2>&1; then
        # shellcheck disable=SC2012
        cluster="$(ls /etc/postgresql | head -1)"
        provision_log "starting the Debian cluster $cluster/main"
        if provision_as_root pg_ctlcluster --skip-systemctl-redirect "$cluster" main start >&2 &&
            provision_wait "$PROVISION_WAIT_SECONDS" provision_pg_ready "$host" "$port"; then
            provision_log "PostgreSQL is up on $host:$port (Debian cluster $cluster/main)"
            export DATABASE_URL
            return 0
        fi
        provision_log "the Debian cluster did not answer on $host:$port; trying the next option"
    fi

    # 2. Docker compose.
    if provision_docker_usable; then
        provision_docker_up postgres redis
        if [[ "$user_set_url" -eq 0 ]]; then
            # compose.yaml makes `sentryops` the superuser.
            DATABASE_URL="postgres://sentryops:${POSTGRES_PASSWORD:-change-me}@127.0.0.1:5432/postgres"
            provision_parse_url "$DATABASE_URL" 5432
            host="$URL_HOST"
            port="$URL_PORT"
        fi
        if provision_wait "$PROVISION_WAIT_SECONDS" provision_pg_ready "$host" "$port"; then
            provision_log "PostgreSQL is up on $host:$port (docker compose)"
            export DATABASE_URL
            return 0
        fi
        provision_log "the compose postgres did not answer; trying a private cluster"
    fi

    # 3. A private cluster in .local/pg.
    if provision_tcp_open 127.0.0.1 "$port"; then
        port="$(provision_free_port $((port + 1)))"
        provision_log "port $URL_PORT is taken; using $port"
    fi
    provision_private_cluster "$private_dir" "$port"
    DATABASE_URL="$(provision_url_with_port "$DATABASE_URL" "$PROVISION_PG_PORT")"
    export DATABASE_URL
    provision_log "PostgreSQL is up on 127.0.0.1:$PROVISION_PG_PORT (private cluster)"
}

# --- Redis -----------------------------------------------------------------

provision_redis() {
    REDIS_URL="${REDIS_URL:-$PROVISION_DEFAULT_REDIS_URL}"
    provision_parse_url "$REDIS_URL" 6379
    local host="$URL_HOST" port="$URL_PORT"

    if provision_redis_ready "$REDIS_URL" "$host" "$port"; then
        provision_log "Redis is up on $host:$port"
        export REDIS_URL
        return 0
    fi
    if ! provision_is_local_host "$host"; then
        provision_log "Redis at $host:$port does not answer (not a local host; not starting anything)"
        return 1
    fi

    if ! command -v redis-server >/dev/null 2>&1 && provision_docker_usable; then
        provision_docker_up redis
    else
        if ! command -v redis-server >/dev/null 2>&1; then
            provision_apt_install redis-server
        fi
        provision_log "starting redis-server on 127.0.0.1:$port"
        redis-server --daemonize yes --bind 127.0.0.1 --port "$port" \
            --save "" --appendonly no --dir /tmp >&2
    fi
    if ! provision_wait "$PROVISION_WAIT_SECONDS" provision_redis_ready "$REDIS_URL" "$host" "$port"; then
        provision_log "Redis did not answer on $host:$port"
        return 1
    fi
    provision_log "Redis is up on $host:$port"
    export REDIS_URL
}

provision_main() {
    provision_postgres
    provision_redis
}

# Executed or sourced: provision, unless only the functions are wanted.
if [[ "${PROVISION_NO_AUTORUN:-0}" != 1 ]]; then
    if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
        provision_main
        printf 'DATABASE_URL=%s\nREDIS_URL=%s\n' "$DATABASE_URL" "$REDIS_URL"
    else
        provision_main || return $?
    fi
fi
