#!/bin/sh
# Secrets as files: for every BEACON_<NAME>_FILE in the environment, export
# BEACON_<NAME> with that file's content (trailing newline dropped), then run the
# command. Docker/Compose secrets and Kubernetes Secret volumes are files; beacon
# reads its settings from options and BEACON_* variables only, and a secret given as
# a plain variable would show in `docker inspect` and in the pod spec.
set -eu

for file_var in $(env | sed -n 's/^\(BEACON_[A-Z0-9_]*_FILE\)=.*/\1/p'); do
    var=${file_var%_FILE}
    eval "path=\${$file_var}"
    if [ ! -r "$path" ]; then
        echo "docker-entrypoint: $file_var names $path, which cannot be read" >&2
        exit 1
    fi
    eval "already=\${$var:-}"
    if [ -n "$already" ]; then
        echo "docker-entrypoint: both $var and $file_var are set; give one" >&2
        exit 1
    fi
    value=$(cat "$path")
    export "$var=$value"
    unset "$file_var"
done

exec "$@"
