#!/bin/bash
# per-event Nexmark: Terrace with request spin 0 / 50 vs RocksDB, interleaved.

T=${T:-target/release/terrace-nexmark}
R=${R:-benches/compare/target/release/rocksdb-nexmark}
D=${D:-/tmp/terrace-nexmark}
C="--cache_size=8388608 --write_buffer_size=16777216"
for round in 1 2; do
for q in q5 q7 q18 q19 q20; do
  echo "== round $round $q load $(cut -d' ' -f1-3 /proc/loadavg)"
  for e in spin0 spin50 rocks; do
    rm -rf $D
    case $e in
      spin0) echo -n "terrace spin0  "; $T --query=$q --mode=per-event --events=2000000 $C --request_spin_us=0 --db=$D 2>&1 | grep "^q";;
      spin50) echo -n "terrace spin50 "; $T --query=$q --mode=per-event --events=2000000 $C --request_spin_us=50 --db=$D 2>&1 | grep "^q";;
      rocks) echo -n "rocksdb        "; $R --query=$q --mode=per-event --events=2000000 $C --db=$D 2>&1 | grep "^q";;
    esac
  done
done
done
echo "== done $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
