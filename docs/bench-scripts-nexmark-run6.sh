#!/bin/bash
# Nexmark run 6: per-event and batched, Terrace (local, remote) vs RocksDB, two rounds,
# engines interleaved per query (the run-4 commands without the one-batch-at-a-time rows).
T=${T:-target/release/terrace-nexmark}
R=${R:-benches/compare/target/release/rocksdb-nexmark}
D=${D:-/tmp/terrace-nexmark}
C="--cache_size=8388608 --write_buffer_size=16777216"
declare -A BUDGET=([q5]=1000000 [q7]=1000000 [q18]=13000000 [q19]=21000000 [q20]=39000000)
for round in 1 2; do
for q in q5 q7 q18 q19 q20; do
  REMOTE="--object_store_latency_ms=30 --local_disk_budget=${BUDGET[$q]} --warm_window_secs=0"
  echo "== round $round $q load $(cut -d' ' -f1-3 /proc/loadavg)"
  rm -rf $D; echo -n "terrace per-event          "; $T --query=$q --mode=per-event --events=2000000 $C --db=$D 2>&1 | grep "^q"
  rm -rf $D; echo -n "rocksdb per-event          "; $R --query=$q --mode=per-event --events=2000000 $C --db=$D 2>&1 | grep "^q"
  rm -rf $D; echo -n "terrace batched            "; $T --query=$q --mode=batched --events=2000000 $C --db=$D 2>&1 | grep "^q"
  rm -rf $D; echo -n "rocksdb batched            "; $R --query=$q --mode=batched --events=2000000 $C --db=$D 2>&1 | grep "^q"
  rm -rf $D; echo -n "terrace-remote per-event   "; $T --query=$q --mode=per-event --events=2000000 $C --db=$D $REMOTE 2>&1 | grep "^q"
  rm -rf $D; echo -n "terrace-remote batched     "; $T --query=$q --mode=batched --events=2000000 $C --db=$D $REMOTE 2>&1 | grep "^q"
done
done
rm -rf $D
echo "== done $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
