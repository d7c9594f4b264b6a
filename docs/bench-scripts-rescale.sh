#!/bin/bash
# Rescale scenario (issue 11): two databases (key groups 0-63 and 64-127, 2 shards
# each) -> one with 3 shards (so shard ranges straddle the sources' and files are
# clipped), then that one -> two again (0-63 and 64-127, 2 shards each); 30 ms store;
# lazy restore vs download-then-clip.
set -u
B=${B:-terrace-bench}
D=${D:-/work/benchdata/rbench/rs}
N=${N:-12000000}          # keys per source database (16 B keys, 100 B values)
R=${R:-200000}            # reads per readrandom
L="--object_store_latency_ms=30"
GC="--gc_interval_secs=10 --gc_min_age_secs=10"
when() { echo "=== $1 $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"; }
show() { grep -E "^(restore|readrandom|readseq|checkpoint|fillrandom|waitfor[a-z]*) |^  (trims|warmer|remote):"; }
if [ "${SKIP_FILL:-0}" = 0 ]; then
  rm -rf "$D"; mkdir -p $D/job/db-{a,b}
  for half in a:0-63 b:64-127; do
    name=${half%%:*}; range=${half#*:}
    when "fill db-$name ($range)"
    $B --benchmarks=fillrandom,waitforcompaction,checkpoint --num=$N --key_group_range=$range \
      --object_store=file://$D/job/db-$name $L $GC --db=$D/$name 2>&1 | show
    du -sh "$D/job/db-$name" "$D/$name"
  done
fi
for r in ${ROUNDS:-1}; do
rm -rf $D/c $D/c2 $D/d $D/d2 $D/e $D/e2 $D/job/db-{c,c2,d,d2,e,e2}; mkdir -p $D/job/db-{c,c2,d,d2,e,e2}
# 2 -> 1 (3 shards): lazy, then the download-then-clip baseline. Reads: db-a's keys.
when "round $r: 2 -> 1 lazy"
$B --benchmarks=readrandom,waitforwarmer,waitfortrims,readrandom,checkpoint --num=$N --key_space_range=0-63 \
  --reads=$R --shards=3 --pin_shards=false \
  --restore_from=file://$D/job/db-a,file://$D/job/db-b --object_store=file://$D/job/db-c $L --db=$D/c 2>&1 | show
when "round $r: 2 -> 1 download_first"
$B --benchmarks=waitfortrims,readrandom --num=$N --key_space_range=0-63 --reads=$R --shards=3 --pin_shards=false \
  --restore_mode=download_first \
  --restore_from=file://$D/job/db-a,file://$D/job/db-b --object_store=file://$D/job/db-c2 $L --db=$D/c2 2>&1 | show
rm -rf "$D/c2" "$D/job/db-c2"
# 1 -> 2: each half of db-c's checkpoint into a database of its own (2 shards).
for half in d:0-63 e:64-127; do
  name=${half%%:*}; range=${half#*:}
  when "round $r: 1 -> 2: db-$name ($range) lazy"
  $B --benchmarks=readrandom,waitforwarmer,waitfortrims,readrandom --num=$N --reads=$R --key_group_range=$range \
    --restore_from=file://$D/job/db-c --object_store=file://$D/job/db-$name $L --db=$D/$name 2>&1 | show
  when "round $r: 1 -> 2: db-$name ($range) download_first"
  $B --benchmarks=waitfortrims,readrandom --num=$N --reads=$R --key_group_range=$range --restore_mode=download_first \
    --restore_from=file://$D/job/db-c --object_store=file://$D/job/db-${name}2 $L --db=$D/${name}2 2>&1 | show
  rm -rf "$D/${name}2" "$D/job/db-${name}2"
done
done
when done
