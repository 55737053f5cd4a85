#!/usr/bin/env bash
# Runs the whole test suite. The integration tests talk to a real RabbitMQ on AMQP_TEST_URL
# (default amqp://guest:guest@127.0.0.1:5672/%2f) and a real PostgreSQL on TEST_POSTGRES_URL
# (default postgres://postgres@127.0.0.1:5432, trust authentication; each test makes and drops
# a database of its own). This script starts either when it is installed but not answering, and
# says how to install it when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

host=127.0.0.1
port=5672

answering() { timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; }

if ! answering; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "tests/run.sh: RabbitMQ is not answering on $host:$port; starting it (rabbitmq-server -detached)"
    rabbitmq-server -detached || true
    for _ in $(seq 1 90); do
      answering && break
      sleep 1
    done
    # The port opens a moment before the broker accepts logins.
    if command -v rabbitmq-diagnostics >/dev/null 2>&1; then
      timeout 60 rabbitmq-diagnostics -q check_running >/dev/null 2>&1 || true
    fi
  fi
  if ! answering; then
    cat >&2 <<MSG
tests/run.sh: RabbitMQ is needed on $host:$port (guest/guest) and is not answering.
Install and start it, for example on Debian/Ubuntu:
    sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached
or with Docker:
    docker run -d -p 5672:5672 rabbitmq:3
MSG
    exit 1
  fi
fi

pg_port=5432
pg_answering() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$host" -p "$pg_port"
  else
    timeout 2 bash -c "exec 3<>/dev/tcp/$host/$pg_port" 2>/dev/null
  fi
}
if [ -z "${TEST_POSTGRES_URL:-}" ] && ! pg_answering; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
    if [ -n "$version" ]; then
      echo "tests/run.sh: PostgreSQL is not answering on $host:$pg_port; starting it (pg_ctlcluster $version main start)"
      pg_ctlcluster "$version" main start || true
      for _ in $(seq 1 60); do
        pg_answering && break
        sleep 1
      done
    fi
  fi
  if ! pg_answering; then
    cat >&2 <<MSG
tests/run.sh: PostgreSQL is needed on $host:$pg_port (user postgres, trust authentication on
localhost) and is not answering. Install and start it, for example on Debian/Ubuntu:
    sudo apt-get install -y postgresql && sudo pg_ctlcluster 15 main start
and allow trust for 127.0.0.1 in pg_hba.conf, or with Docker:
    docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15
or point TEST_POSTGRES_URL at a server where that user may create databases.
MSG
    exit 1
  fi
fi

exec cargo test --locked "$@"
