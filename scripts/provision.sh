#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis are usable and exports DATABASE_URL and
# REDIS_URL.
#
#   scripts/provision.sh            # check / start the services
#   source scripts/provision.sh     # same, and keep the exported variables
#
# Sourcing with PROVISION_NO_AUTORUN=1 only defines the functions, e.g. to
# create a throwaway cluster:  provision_private_cluster /tmp/pg 5499
#
# PostgreSQL counts as usable only when `psql "$DATABASE_URL" -c 'select 1'`
# logs in (default URL postgres://postgres@127.0.0.1:5432/postgres); psql
# (postgresql-client) is installed with apt-get when missing, since
# scripts/test and scripts/up need it too. Otherwise, in this order:
#   0. the private cluster from an earlier run, if there is one;
#   1. the local Debian cluster (pg_ctlcluster), if nothing listens on the
#      port yet and the login works once it runs;
#   2. `docker compose up -d postgres redis`, if nothing listens on 5432;
#   3. a new private cluster (installing PostgreSQL with apt-get when initdb
#      is missing), trust auth, 127.0.0.1 only, max_connections=300.
# When something listens on the port but the login fails (a server that
# wants a password, an unknown role), only 0 and 3 are tried. A private
# cluster listens on the port of DATABASE_URL when that is free, else on the
# next free one (5433 upward); DATABASE_URL is rewritten to it, and its role
# and database are created in the cluster when missing.
#
# The private cluster lives in $PROVISION_PG_DIR when set, else .local/pg;
# when running as root and the postgres user cannot reach .local (a checkout
# under /root), in /var/lib/sentryops-dev/pg-<hash of the repository path>,
# a location recorded in .local/pg-location and reused.
#
# Redis ($REDIS_URL, default redis://127.0.0.1:6379): redis-server, docker
# compose, or apt-get install redis-server.
#
# Idempotent: when both are usable, it only checks.

set -euo pipefail

PROVISION_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROVISION_DEFAULT_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
PROVISION_DEFAULT_REDIS_URL="redis://127.0.0.1:6379"
PROVISION_WAIT_SECONDS="${PROVISION_WAIT_SECONDS:-30}"
# Where the private cluster lives; empty: chosen automatically (see above).
PROVISION_PG_DIR="${PROVISION_PG_DIR:-}"
# Where an automatically chosen location outside the checkout is recorded.
PROVISION_PG_LOCATION_FILE="$PROVISION_REPO_ROOT/.local/pg-location"
# Set by provision_private_cluster; by provision_pg_login when it fails.
PROVISION_PG_PORT=""
PROVISION_PG_LOGIN_ERROR=""
PROVISION_APT_UPDATED=0
URL_HOST=""
URL_PORT=""
URL_USER=""
URL_DB=""

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

provision_percent_decode() {
    local s="$1"
    printf '%b' "${s//%/\\x}"
}

# Sets URL_USER, URL_DB from a postgres:// URL, with libpq's defaults.
provision_parse_url_user_db() {
    local url="$1" rest auth user="" db=""
    rest="${url#*://}"
    rest="${rest%%\?*}"         # drop the query
    auth="${rest%%/*}"
    if [[ "$auth" == *@* ]]; then
        user="${auth%@*}"
        user="${user%%:*}"      # drop the password
    fi
    if [[ "$rest" == */* ]]; then
        db="${rest#*/}"
    fi
    URL_USER="$(provision_percent_decode "$user")"
    URL_USER="${URL_USER:-${PGUSER:-$(id -un)}}"
    URL_DB="$(provision_percent_decode "$db")"
    URL_DB="${URL_DB:-${PGDATABASE:-$URL_USER}}"
}

# Points a URL at 127.0.0.1:PORT, keeping credentials, path and query.
provision_url_local_port() {
    local url="$1" port="$2"
    if [[ "$url" =~ ^([a-z]+://([^/@]*@)?)(\[[^]/]*\]|[^/:?]*)(:[0-9]*)?(.*)$ ]]; then
        printf '%s127.0.0.1:%s%s\n' "${BASH_REMATCH[1]}" "$port" "${BASH_REMATCH[5]}"
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

# True when a PostgreSQL server accepts connections on HOST PORT (it does not
# log in: used to wait for a server that is starting).
provision_pg_ready() {
    local host="$1" port="$2"
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$host" -p "$port" -t 2 >/dev/null 2>&1
    else
        provision_tcp_open "$host" "$port"
    fi
}

# True when anything listens on HOST PORT: a PostgreSQL server (accepting
# connections or still starting) or some other program.
provision_pg_listening() {
    local host="$1" port="$2" rc=0
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$host" -p "$port" -t 2 >/dev/null 2>&1 || rc=$?
        if ((rc == 0 || rc == 1)); then
            return 0
        fi
    fi
    provision_tcp_open "$host" "$port"
}

# True when psql logs in with URL and runs a query; never prompts for a
# password. On failure PROVISION_PG_LOGIN_ERROR holds psql's message.
provision_pg_login() {
    local url="$1" out
    if out="$(PGCONNECT_TIMEOUT=5 psql "$url" -w -XAtqc 'select 1' </dev/null 2>&1)" &&
        [[ "$out" == 1 ]]; then
        PROVISION_PG_LOGIN_ERROR=""
        return 0
    fi
    PROVISION_PG_LOGIN_ERROR="$(printf '%s' "$out" | tr -s '\n\t ' ' ')"
    PROVISION_PG_LOGIN_ERROR="${PROVISION_PG_LOGIN_ERROR:-psql failed}"
    return 1
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
    if [[ "$PROVISION_APT_UPDATED" -eq 0 ]]; then
        provision_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 ||
            provision_log "apt-get update failed; trying the install anyway"
        PROVISION_APT_UPDATED=1
    fi
    provision_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

# psql logs in for the readiness check, and scripts/test and scripts/up use
# it: install the client when it is missing, whatever runs the server.
provision_ensure_psql() {
    command -v psql >/dev/null 2>&1 && return 0
    provision_log "psql not found"
    provision_apt_install postgresql-client || {
        provision_log "could not install postgresql-client; install psql by hand"
        return 1
    }
    hash -r
    command -v psql >/dev/null 2>&1 || {
        provision_log "psql still not found after installing postgresql-client"
        return 1
    }
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

# Installs the server binaries when initdb/pg_ctl are missing.
provision_ensure_pg_server() {
    provision_pg_bindir >/dev/null && return 0
    provision_apt_install postgresql || {
        provision_log "could not install postgresql"
        return 1
    }
    hash -r
    provision_pg_bindir >/dev/null || {
        provision_log "initdb still not found after installing postgresql"
        return 1
    }
}

# Runs a command as the cluster owner: `postgres` when we are root (initdb
# refuses to run as root), ourselves otherwise. As postgres it runs in /
# (the current directory may be out of its reach): pass absolute paths.
provision_as_pg_owner() {
    if [[ "$(id -u)" -ne 0 ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
    fi
}

provision_ensure_postgres_user() {
    [[ "$(id -u)" -eq 0 ]] || return 0
    id -u postgres >/dev/null 2>&1 && return 0
    provision_log "creating the postgres system user"
    if command -v useradd >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh postgres
    else
        adduser --system --group --home /var/lib/postgresql --shell /bin/sh postgres >&2
    fi
}

# Prints the directory of an existing private cluster (one with
# data/PG_VERSION): $PROVISION_PG_DIR when set, else .local/pg, else the
# recorded location. Fails when there is none.
provision_existing_private_dir() {
    local candidate recorded=""
    if [[ -n "$PROVISION_PG_DIR" ]]; then
        [[ -f "$PROVISION_PG_DIR/data/PG_VERSION" ]] || return 1
        printf '%s\n' "$PROVISION_PG_DIR"
        return 0
    fi
    if [[ -s "$PROVISION_PG_LOCATION_FILE" ]]; then
        recorded="$(head -n 1 "$PROVISION_PG_LOCATION_FILE")"
    fi
    for candidate in "$PROVISION_REPO_ROOT/.local/pg" "$recorded"; do
        if [[ -n "$candidate" && -f "$candidate/data/PG_VERSION" ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

# Prints where a new private cluster goes: $PROVISION_PG_DIR when set, else
# .local/pg, unless we are root and the postgres user cannot reach .local
# (a checkout under /root): then a directory under /var/lib/sentryops-dev
# named after the repository path, recorded in .local/pg-location.
# Call after provision_ensure_postgres_user.
provision_new_private_dir() {
    local local_dir="$PROVISION_REPO_ROOT/.local" hash dir
    if [[ -n "$PROVISION_PG_DIR" ]]; then
        printf '%s\n' "$PROVISION_PG_DIR"
        return 0
    fi
    mkdir -p "$local_dir" || return 1
    if [[ "$(id -u)" -ne 0 ]] || provision_as_pg_owner test -x "$local_dir" 2>/dev/null; then
        printf '%s\n' "$local_dir/pg"
        return 0
    fi
    if command -v sha256sum >/dev/null 2>&1; then
        hash="$(printf '%s' "$PROVISION_REPO_ROOT" | sha256sum | cut -c1-12)"
    else
        hash="$(printf '%s' "$PROVISION_REPO_ROOT" | cksum | cut -d' ' -f1)"
    fi
    dir="/var/lib/sentryops-dev/pg-$hash"
    mkdir -p /var/lib/sentryops-dev && chmod 755 /var/lib/sentryops-dev || return 1
    printf '%s\n' "$dir" >"$PROVISION_PG_LOCATION_FILE" || return 1
    provision_log "the postgres user cannot reach $local_dir; the private cluster goes in $dir (recorded in $PROVISION_PG_LOCATION_FILE)"
    printf '%s\n' "$dir"
}

# provision_private_cluster DIR PORT: creates (first time) and starts a
# trust-auth cluster in DIR/data listening on 127.0.0.1:PORT, then waits for
# it and sets PROVISION_PG_PORT to the port it listens on. Safe to call
# again: a running cluster is left alone (and keeps its port).
provision_private_cluster() {
    local dir="$1" port="$2" bindir data log socketdir running_port
    PROVISION_PG_PORT=""
    provision_ensure_pg_server || return 1
    bindir="$(provision_pg_bindir)" || return 1
    provision_ensure_postgres_user || return 1
    mkdir -p "$dir" || return 1
    dir="$(cd "$dir" && pwd)" || return 1
    data="$dir/data"
    log="$dir/postgres.log"
    if [[ "$(id -u)" -eq 0 ]]; then
        chown postgres: "$dir" && chmod 700 "$dir" || return 1
        if ! provision_as_pg_owner test -w "$dir"; then
            provision_log "the postgres user cannot reach $dir (a parent directory is not traversable); set PROVISION_PG_DIR"
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
        running_port="$(sed -n 4p "$data/postmaster.pid" 2>/dev/null || true)"
        port="${running_port:-$port}"
        provision_log "private cluster in $data already running on port $port"
    else
        # The socket goes in DIR unless the path is too long for a socket.
        socketdir="$dir"
        if ((${#dir} > 90)); then
            socketdir=""
        fi
        # Parallel tests each open pools of up to 30 connections.
        provision_log "starting the private cluster on 127.0.0.1:$port (log: $log)"
        provision_as_pg_owner "$bindir/pg_ctl" -D "$data" -l "$log" -w -t "$PROVISION_WAIT_SECONDS" \
            -o "-c listen_addresses=127.0.0.1 -c port=$port -c max_connections=300 -c unix_socket_directories='$socketdir'" \
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
    dir="$(cd "$dir" && pwd)" || return 1
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

# Creates the role and the database of URL in the private cluster on PORT
# when missing (the role as a superuser: trust auth, 127.0.0.1 only).
provision_private_role_db() {
    local port="$1" url="$2" admin exists
    admin="postgres://postgres@127.0.0.1:$port/postgres"
    provision_parse_url_user_db "$url"
    if [[ "$URL_USER" != postgres ]]; then
        exists="$(psql "$admin" -w -XAtq -v ON_ERROR_STOP=1 -v name="$URL_USER" <<'SQL'
select 1 from pg_roles where rolname = :'name';
SQL
)" || return 1
        if [[ -z "$exists" ]]; then
            provision_log "creating role $URL_USER in the private cluster"
            psql "$admin" -w -Xq -v ON_ERROR_STOP=1 -v name="$URL_USER" >/dev/null <<'SQL' || return 1
create role :"name" login superuser;
SQL
        fi
    fi
    exists="$(psql "$admin" -w -XAtq -v ON_ERROR_STOP=1 -v name="$URL_DB" <<'SQL'
select 1 from pg_database where datname = :'name';
SQL
)" || return 1
    if [[ -z "$exists" ]]; then
        provision_log "creating database $URL_DB in the private cluster"
        psql "$admin" -w -Xq -v ON_ERROR_STOP=1 -v name="$URL_DB" -v owner="$URL_USER" >/dev/null <<'SQL' || return 1
create database :"name" owner :"owner";
SQL
    fi
}

# provision_use_private_cluster [DIR]: starts the private cluster in DIR (a
# new one where provision_new_private_dir says when DIR is empty) and points
# DATABASE_URL at it.
provision_use_private_cluster() {
    local dir="$1" port url
    # Install first: on systemd hosts installing postgresql starts the distro
    # cluster on 5432, so free ports are looked for only afterwards.
    provision_ensure_pg_server || return 1
    provision_ensure_postgres_user || return 1
    if [[ -z "$dir" ]]; then
        # The install may have brought up a server that takes the login.
        if provision_pg_login "$DATABASE_URL"; then
            provision_parse_url "$DATABASE_URL" 5432
            provision_log "PostgreSQL is up on $URL_HOST:$URL_PORT (installed just now)"
            export DATABASE_URL
            return 0
        fi
        dir="$(provision_new_private_dir)" || {
            provision_log "cannot choose a directory for the private cluster; set PROVISION_PG_DIR"
            return 1
        }
    fi
    provision_parse_url "$DATABASE_URL" 5432
    port="$URL_PORT"
    if provision_pg_listening 127.0.0.1 "$port"; then
        port="$(provision_free_port $((port + 1)))" || {
            provision_log "no free port above $URL_PORT for the private cluster"
            return 1
        }
    fi
    provision_private_cluster "$dir" "$port" || return 1
    if [[ -z "$PROVISION_PG_PORT" ]]; then
        provision_log "the private cluster in $dir did not report its port"
        return 1
    fi
    url="$(provision_url_local_port "$DATABASE_URL" "$PROVISION_PG_PORT")"
    provision_private_role_db "$PROVISION_PG_PORT" "$url" || {
        provision_log "could not create the role/database of DATABASE_URL in the private cluster"
        return 1
    }
    if ! provision_pg_login "$url"; then
        provision_log "cannot log in to the private cluster on 127.0.0.1:$PROVISION_PG_PORT: $PROVISION_PG_LOGIN_ERROR"
        return 1
    fi
    DATABASE_URL="$url"
    export DATABASE_URL
    provision_log "PostgreSQL is up on 127.0.0.1:$PROVISION_PG_PORT (private cluster in $dir)"
}

# --- PostgreSQL ------------------------------------------------------------

provision_postgres() {
    local user_set_url=0 host port cluster private_dir docker_url
    provision_ensure_psql || return 1
    [[ -n "${DATABASE_URL:-}" ]] && user_set_url=1
    DATABASE_URL="${DATABASE_URL:-$PROVISION_DEFAULT_DATABASE_URL}"
    provision_parse_url "$DATABASE_URL" 5432
    host="$URL_HOST"
    port="$URL_PORT"

    if provision_pg_login "$DATABASE_URL"; then
        provision_log "PostgreSQL is up on $host:$port"
        export DATABASE_URL
        return 0
    fi

    if provision_pg_listening "$host" "$port"; then
        # A server that wants a password, a role that does not exist, or not
        # PostgreSQL at all: starting another server there is no use.
        if ! provision_is_local_host "$host"; then
            provision_log "cannot log in to PostgreSQL at $host:$port: $PROVISION_PG_LOGIN_ERROR"
            return 1
        fi
        provision_log "something listens on $host:$port but the login fails ($PROVISION_PG_LOGIN_ERROR); using a private trust-auth cluster"
        if private_dir="$(provision_existing_private_dir)"; then
            provision_use_private_cluster "$private_dir"
        else
            provision_use_private_cluster ""
        fi
        return
    fi
    if ! provision_is_local_host "$host"; then
        provision_log "PostgreSQL at $host:$port does not answer (not a local host; not starting anything)"
        return 1
    fi

    # 0. Our own private cluster from an earlier run.
    if private_dir="$(provision_existing_private_dir)"; then
        provision_use_private_cluster "$private_dir"
        return
    fi

    # 1. The local Debian cluster.
    if [[ -d /etc/postgresql && -n "$(ls -A /etc/postgresql 2>/dev/null)" ]] &&
        command -v pg_ctlcluster >/dev/null 2>&1; then
        # shellcheck disable=SC2012
        cluster="$(ls /etc/postgresql | sort -V | tail -n 1)"
        provision_log "starting the Debian cluster $cluster/main"
        if provision_as_root pg_ctlcluster --skip-systemctl-redirect "$cluster" main start >&2 &&
            provision_wait "$PROVISION_WAIT_SECONDS" provision_pg_ready "$host" "$port" &&
            provision_wait 3 provision_pg_login "$DATABASE_URL"; then
            provision_log "PostgreSQL is up on $host:$port (Debian cluster $cluster/main)"
            export DATABASE_URL
            return 0
        fi
        if provision_pg_listening "$host" "$port"; then
            provision_log "the Debian cluster runs on $host:$port but the login fails ($PROVISION_PG_LOGIN_ERROR); using a private trust-auth cluster"
            provision_use_private_cluster ""
            return
        fi
        provision_log "the Debian cluster did not answer on $host:$port; trying the next option"
    fi

    # 2. Docker compose (it publishes 127.0.0.1:5432).
    if ! provision_pg_listening 127.0.0.1 5432 && provision_docker_usable; then
        if provision_docker_up postgres redis; then
            docker_url="$DATABASE_URL"
            if [[ "$user_set_url" -eq 0 ]]; then
                # compose.yaml makes `sentryops` the superuser.
                docker_url="postgres://sentryops:${POSTGRES_PASSWORD:-change-me}@127.0.0.1:5432/postgres"
            fi
            if provision_wait "$PROVISION_WAIT_SECONDS" provision_pg_login "$docker_url"; then
                DATABASE_URL="$docker_url"
                provision_log "PostgreSQL is up on 127.0.0.1:5432 (docker compose)"
                export DATABASE_URL
                return 0
            fi
            provision_log "cannot log in to the compose postgres ($PROVISION_PG_LOGIN_ERROR); trying a private cluster"
        else
            provision_log "docker compose up failed; trying a private cluster"
        fi
    fi

    # 3. A new private cluster.
    provision_use_private_cluster ""
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
    # Sourced, this runs with errexit off (`provision_main || return`):
    # every failure is checked here.
    provision_postgres || return 1
    provision_redis || return 1
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
