#!/usr/bin/env bash
# Runs the whole test suite. The integration tests talk to a real RabbitMQ on AMQP_TEST_URL
# (default amqp://guest:guest@127.0.0.1:5672/%2f); this script starts a local broker when one is
# installed but not answering, and says how to install one when it is missing.
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

exec cargo test --locked "$@"
