#!/bin/sh
# The entrypoint of the development image (hack/build-manager-image.sh --dev), for Tilt's live
# update: runs a copy of the manager binary $1 with the other arguments, and restarts it when
# $1 changes (Tilt syncs a new build there). The copy keeps the synced file free to replace.
# SIGTERM and SIGINT are passed on; when the manager stops by itself, so does this script, with
# the manager's exit status, so that Kubernetes restarts the container as it would the manager.
bin=$1
shift
stamp() { stat -c '%Y %s' "$bin" 2>/dev/null; }
pid=
trap 'kill -TERM $pid 2>/dev/null; wait $pid; exit $?' TERM INT
while :; do
  seen=$(stamp)
  cp "$bin" /tmp/manager && chmod 0755 /tmp/manager
  /tmp/manager "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    now=$(stamp)
    [ "$now" = "$seen" ] && continue
    # A sync in progress: wait until the file stays the same for a second.
    sleep 1
    [ "$(stamp)" = "$now" ] || continue
    echo "restart-on-change: $bin changed; restarting the manager" >&2
    kill -TERM "$pid"
    wait "$pid"
    continue 2
  done
  wait "$pid"
  exit $?
done
