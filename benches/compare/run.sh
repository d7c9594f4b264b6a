#!/usr/bin/env bash
# Side-by-side benchmark: Terrace (terrace-bench) vs RocksDB (rocksdb-bench) vs
# Cobble (cobble-bench), same workloads, flags, keys, values and result lines.
#
#   benches/compare/run.sh [--quick|--full] [--rounds N] [--threads "1 2 4 16"]
#                          [--inflight N] [--no-build] [--no-docs] [--no-fio]
#                          [--report-only]
#
# --report-only rebuilds the table and the docs section from the logs of the last
# run at that scale (target/run/logs-<scale>/) without running anything.
#
# Every round runs the whole workload list once per engine configuration, engines
# interleaved (terrace s1, rocksdb t1, cobble t1, terrace s2, rocksdb t2, ...), each
# on a fresh database. Per configuration the script takes the median ops/sec over
# rounds; per engine it reports its best configuration: Terrace the better of
# --shards 1 and 2 (same total in-flight operations, --inflight), RocksDB and
# Cobble their best --threads among --threads. The table goes to stdout and
# replaces the "## Terrace vs RocksDB vs Cobble" section of docs/BENCHMARKS.md.
#
# Machine etiquette (shared 2-core box): builds of this crate run under nice -n 19
# with CARGO_BUILD_JOBS=1; every benchmark and fio run holds
# /tmp/terrace-bench.lock so it never overlaps another engineer's benchmark. The lock
# is held for a whole round (every configuration once) rather than per process:
# fewer waits behind other benchmarks, and no foreign run lands inside a round.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOCK=/tmp/terrace-bench.lock
SECTION="## Terrace vs RocksDB vs Cobble"
DOC=${COMPARE_DOC:-"$ROOT/docs/BENCHMARKS.md"}
WORKLOADS="fillseq,fillrandom,overwrite,readrandom,multireadrandom,seekrandom,updaterandom,readwhilewriting"
# seekrandom runs as a second invocation over the database the main list left, with
# fewer operations: Terrace's unprefixed seek visits every key group of every shard
# (hundreds of ops/s), so at --reads it would dominate the run.
MAIN_LIST="fillseq,fillrandom,overwrite,readrandom,multireadrandom,updaterandom,readwhilewriting"
SEEK_LIST="seekrandom"

mode=quick rounds=3 threads_list="1 2 4 16" inflight=16
build=1 docs=1 fio=1 report_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) mode=quick ;;
        --full) mode=full ;;
        --rounds) rounds=$2; shift ;;
        --threads) threads_list=$2; shift ;;
        --inflight) inflight=$2; shift ;;
        --no-build) build=0 ;;
        --no-docs) docs=0 ;;
        --no-fio) fio=0 ;;
        --report-only) report_only=1 build=0 fio=0 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$rounds" -lt 1 ] || [ $((inflight % 2)) -ne 0 ]; then
    echo "run.sh: --rounds must be >= 1 and --inflight even" >&2; exit 2
fi

# Scale. Quick: 23 MB of data over a 4 MiB memtable and an 8 MiB cache, so reads
# already come from SST files. Full: ~230 MB of data, 7x the 32 MiB cache, so most
# reads go to disk (for the engines with direct I/O; Cobble reads through the page
# cache). The full scale is sized so that 3 rounds of the thread sweep (10
# configurations) fit in about an hour on a 2-core machine.
if [ "$mode" = quick ]; then
    num=200000 reads=100000 seek_reads=2000 cache=$((8 << 20)) wbs=$((4 << 20)) limit_s=120
else
    num=2000000 reads=100000 seek_reads=2000 cache=$((32 << 20)) wbs=$((64 << 20)) limit_s=900
fi
key_size=16 value_size=100 block_size=4096 bloom_bits=10 compression=none seed=0
common=(--num="$num" --key_size="$key_size"
        --value_size="$value_size" --block_size="$block_size" --bloom_bits="$bloom_bits"
        --cache_size="$cache" --write_buffer_size="$wbs" --compression_type="$compression"
        --seed="$seed" --seek_nexts=10 --batch_size=32)

# The binaries and the work directory can be overridden (for testing this script).
TERRACE=${TERRACE_BENCH:-"$ROOT/target/release/terrace-bench"}
ROCKS=${ROCKSDB_BENCH:-"$HERE/target/release/rocksdb-bench"}
COBBLE=${COBBLE_BENCH:-"$HERE/target/release/cobble-bench"}
WORK=${COMPARE_WORK:-"$HERE/target/run"}
DBDIR="$WORK/db"
LOGS="$WORK/logs-$mode"

log() { echo "[run.sh $(date +%H:%M:%S)] $*" >&2; }

# The shared benchmark lock, on fd 9 (children inherit it; `flock -u` releases it).
lock() { exec 9>>"$LOCK"; log "waiting for $LOCK"; flock 9; }
unlock() { flock -u 9; exec 9>&-; }

if [ "$build" = 1 ]; then
    # bindgen (rocksdb) needs libclang; fio measures the disk.
    need=()
    dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
    command -v fio >/dev/null 2>&1 || need+=(fio)
    if [ ${#need[@]} -gt 0 ]; then
        log "apt-get install ${need[*]}"
        apt-get install -y "${need[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
    fi
    log "building terrace-bench"
    (cd "$ROOT" && nice -n 19 cargo build --release -p terrace-tools)
    log "building rocksdb-bench and cobble-bench (nice, 1 job; a clean build takes 15+ min)"
    (cd "$HERE" && nice -n 19 env CARGO_BUILD_JOBS=1 cargo build --release --target-dir "$HERE/target")
fi
for b in "$TERRACE" "$ROCKS" "$COBBLE"; do
    [ -x "$b" ] || { echo "run.sh: $b is missing (run without --no-build)" >&2; exit 1; }
done

mkdir -p "$WORK" "$LOGS"
[ "$report_only" = 1 ] || rm -f "$LOGS"/*.log "$LOGS"/*.txt

# ---- machine --------------------------------------------------------------------
cores=$(nproc)
mem=$(free -h | awk '/^Mem:/ {print $2}')
disk_dev=$(df -P "$WORK" | awk 'NR==2 {print $1}')
disk_size=$(df -hP "$WORK" | awk 'NR==2 {print $2}')
disk_name=$(basename "$disk_dev")
disk_model=$(lsblk -dno MODEL "$disk_dev" 2>/dev/null | sed 's/ *$//' || true)
disk_rota=$(cat "/sys/block/$disk_name/queue/rotational" 2>/dev/null || echo "?")
[ -n "$disk_model" ] || disk_model="(no model reported; virtual disk)"
fio_iops="not measured (--no-fio)"
if [ "$fio" = 1 ]; then
    log "fio 4 KiB random reads, iodepth 64, io_uring, O_DIRECT, 10 s"
    lock
    fio_out=$(fio --name=r --filename="$WORK/fio.dat" --size=1G --rw=randread \
        --bs=4k --iodepth=64 --ioengine=io_uring --direct=1 --runtime=10 --time_based 2>&1 || true)
    unlock
    rm -f "$WORK/fio.dat"
    fio_iops=$(echo "$fio_out" | sed -n 's/.*read: IOPS=\([^,]*\),.*/\1/p' | head -1)
    if [ -n "$fio_iops" ]; then fio_iops="$fio_iops IOPS"; else fio_iops="fio failed: $(echo "$fio_out" | tail -1)"; fi
    echo "$fio_iops" >"$LOGS/fio.txt"
elif [ -f "$LOGS/fio.txt" ]; then
    fio_iops=$(cat "$LOGS/fio.txt")
fi

# ---- runs -----------------------------------------------------------------------
settings="keys ${key_size} B, values ${value_size} B, ${num} entries, ${reads} reads (${seek_reads} for seekrandom), block ${block_size} B, bloom ${bloom_bits} bits/key, block cache $((cache >> 20)) MiB, memtable $((wbs >> 20)) MiB, compression ${compression}, WAL off, direct I/O on (where the engine has it)"

# Configuration list, interleaved by engine: name|command...
configs=()
i=0
read -r -a tlist <<<"$threads_list"
max_n=${#tlist[@]}; [ "$max_n" -ge 2 ] || max_n=2
for ((i = 0; i < max_n; i++)); do
    if [ "$i" -lt 2 ]; then
        shards=$((i + 1))
        configs+=("terrace-s${shards}c$((inflight / shards))")
    fi
    if [ "$i" -lt ${#tlist[@]} ]; then
        configs+=("rocksdb-t${tlist[$i]}" "cobble-t${tlist[$i]}")
    fi
done

run_config() {
    local name=$1 round=$2 out="$LOGS/r${2}-${1}.log" cmd
    case "$name" in
        terrace-s*)
            local s=${name#terrace-s}; s=${s%%c*}; local c=${name##*c}
            cmd=("$TERRACE" "${common[@]}" --shards="$s" --concurrency="$c" --threads=0) ;;
        rocksdb-t*) cmd=("$ROCKS" "${common[@]}" --threads="${name#rocksdb-t}") ;;
        cobble-t*) cmd=("$COBBLE" "${common[@]}" --threads="${name#cobble-t}") ;;
    esac
    local main_list=$MAIN_LIST seek_separately=1
    if [[ $name == cobble-* ]]; then
        # Cobble cannot reopen a database: seekrandom ends the main list instead,
        # shortened by the harness-only --seek_reads.
        main_list="$MAIN_LIST,$SEEK_LIST" seek_separately=0
        cmd+=(--seek_reads="$seek_reads")
    fi
    rm -rf "$DBDIR"
    {
        echo "# round $round, $name"
        echo "# settings held equal: $settings"
        echo "# command: ${cmd[*]} --db=$DBDIR --benchmarks=$main_list --reads=$reads, then (unless listed) --use_existing_db --benchmarks=$SEEK_LIST --reads=$seek_reads"
    } >"$out"
    log "round $round/$rounds: $name"
    # timeout: a hung engine must not hold the shared lock forever.
    if timeout "$limit_s" "${cmd[@]}" --db="$DBDIR" --benchmarks="$main_list" --reads="$reads" >>"$out" 2>&1; then
        [ "$seek_separately" = 0 ] || timeout "$limit_s" "${cmd[@]}" --db="$DBDIR" --use_existing_db \
            --benchmarks="$SEEK_LIST" --reads="$seek_reads" >>"$out" 2>&1 \
            || log "  $name seekrandom failed or timed out after ${limit_s}s (see $out)"
    else
        log "  $name failed or timed out after ${limit_s}s (see $out)"
    fi
    grep ' micros/op ' "$out" | sed 's/^/    /' >&2 || true
    rm -rf "$DBDIR"
}

echo "Settings held equal: $settings" >&2
elapsed=0  # seconds of benchmarks, not counting waits for the lock
[ "$report_only" = 0 ] || { rounds=0; elapsed=$(cat "$LOGS/elapsed.txt" 2>/dev/null || echo "?"); }
for ((r = 1; r <= rounds; r++)); do
    lock
    start=$(date +%s)
    for c in "${configs[@]}"; do
        run_config "$c" "$r"
    done
    elapsed=$(( elapsed + $(date +%s) - start ))
    unlock
done
if [ "$report_only" = 0 ]; then
    log "benchmarks took ${elapsed}s"
    echo "$elapsed" >"$LOGS/elapsed.txt"
    echo "$rounds" >"$LOGS/rounds.txt"
    built=$([ "$build" = 1 ] && echo "built by this run" || echo "binaries not rebuilt (--no-build)")
    echo "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?"), $built" >"$LOGS/commit.txt"
fi
rounds=$(cat "$LOGS/rounds.txt" 2>/dev/null || echo "$rounds")

# ---- report ---------------------------------------------------------------------
command_line="benches/compare/run.sh --$mode --rounds $rounds --threads \"$threads_list\" --inflight $inflight"
report=$(python3 - "$LOGS" "$WORKLOADS" "$rounds" <<PY
import glob, os, re, statistics, sys
logs, workloads, rounds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
line = re.compile(r"^(\S+)\s+:\s+\S+ micros/op (\d+) ops/sec")
runs = {}   # (config, workload) -> [ops/sec per round]
for path in sorted(glob.glob(os.path.join(logs, "r*-*.log"))):
    config = os.path.basename(path)[:-4].split("-", 1)[1]
    for l in open(path, errors="replace"):
        m = line.match(l)
        if m:
            runs.setdefault((config, m.group(1)), []).append(int(m.group(2)))
configs = sorted({c for c, _ in runs}, key=lambda c: (c.split("-")[0], int(re.sub(r"\D.*", "", c.split("-")[1][1:]) or 0)))
med = {k: statistics.median(v) for k, v in runs.items()}
def best(engine, w):
    cands = [(med[(c, w)], c) for c in configs if c.startswith(engine + "-") and (c, w) in med]
    return max(cands) if cands else None
def fmt(b): return "n/a" if b is None else str(int(b[0]))
def ratio(a, b): return "n/a" if a is None or b is None or b[0] == 0 else "%.2f" % (a[0] / b[0])
out = ["| workload | terrace ops/s | rocksdb ops/s | ratio | cobble ops/s | ratio vs cobble |",
       "|---|---:|---:|---:|---:|---:|"]
behind, targets = [], []
for w in workloads:
    t, r, c = best("terrace", w), best("rocksdb", w), best("cobble", w)
    out.append(f"| {w} | {fmt(t)} | {fmt(r)} | {ratio(t, r)} | {fmt(c)} | {ratio(t, c)} |")
    lag = [f"{name} {int(o[0])} ops/s ({ratio(t, o)}x)" for o, name in ((r, "RocksDB"), (c, "Cobble"))
           if t is not None and o is not None and t[0] < 0.95 * o[0]]
    if lag:
        behind.append(f"- **{w}**: Terrace {int(t[0])} ops/s is behind " + " and ".join(lag) + ".")
    if w in ("fillrandom", "readrandom"):
        better = max([x for x in (r, c) if x is not None], default=None)
        if t is not None and better is not None:
            ok = t[0] >= 1.5 * better[0]
            targets.append(f"- {w}: Terrace / best of RocksDB and Cobble = {ratio(t, better)} (target >= 1.5): **{'met' if ok else 'not met'}**")
print("\n".join(out))
print()
print("Best configuration per cell (median of rounds) and every configuration's median;")
print("a cell marked (k/N rounds) lost rounds to a failure or the time limit (see the logs):")
print()
print("| workload | terrace best | rocksdb best | cobble best | " + " | ".join(configs) + " |")
print("|---|---|---|---|" + "---:|" * len(configs))
for w in workloads:
    cells = [best(e, w) for e in ("terrace", "rocksdb", "cobble")]
    names = [b[1] if b else "n/a" for b in cells]
    vals = [(str(int(med[(c, w)])) + ("" if len(runs[(c, w)]) >= rounds else f" ({len(runs[(c, w)])}/{rounds} rounds)"))
            if (c, w) in med else f"n/a (0/{rounds} rounds)" for c in configs]
    print(f"| {w} | " + " | ".join(names) + " | " + " | ".join(vals) + " |")
print()
print("Targets (tracked, not asserted):")
print()
print("\n".join(targets) if targets else "- no data")
print()
print("Where Terrace is behind (its best configuration's median more than 5% below the other engine's best):")
print()
print("\n".join(behind) if behind else "- nowhere in this run.")
PY
)

section=$(cat <<EOF
$SECTION

Side-by-side db_bench-style runs of Terrace (\`terrace-bench\`), RocksDB
(\`rocksdb-bench\`, rust-rocksdb 0.25 / RocksDB 11.8.1) and Cobble (\`cobble-bench\`,
\`cobble\` 0.5.3) from \`benches/compare\` (its own crate and workspace). All three
binaries take the same flags, draw the same keys (zero-padded decimal of
\`--key_size\`, the same seeded sequence per position in \`--benchmarks\`) and values,
and print the same result line. ops/s is the median over rounds of each engine's best
configuration: Terrace \`--shards 1\` or \`2\` with $inflight operations in flight in total
(\`--concurrency\` is per shard), RocksDB and Cobble the best \`--threads\` among
$threads_list (one synchronous operation per thread). ratio = Terrace / RocksDB,
ratio vs cobble = Terrace / Cobble; \`n/a\` where an engine lacks the workload.

Settings held equal: $settings. Differences the engines impose: Cobble has no direct
I/O switch (its reads and writes go through the page cache, which the block cache
limit does not bound) and a fixed 4 KiB block; Terrace has no WAL at all; RocksDB
uses \`disable_wal\`, \`use_direct_reads\` and \`use_direct_io_for_flush_and_compaction\`.
Each round runs the whole list on a fresh database per configuration, so the read
workloads read what fillseq + fillrandom + overwrite left (all \`--num\` keys).
seekrandom runs last with $seek_reads seeks: for Terrace and RocksDB as a second invocation
over the same database (\`--use_existing_db\`), for Cobble (which cannot reopen a database)
at the end of its list via the harness-only \`--seek_reads\`. An invocation that fails or
exceeds ${limit_s}s loses its workloads for that round.

Latest run: \`$command_line\` ($mode scale, $rounds rounds, ${elapsed}s of benchmarks,
$(date -u -r "$LOGS/commit.txt" +%Y-%m-%d 2>/dev/null || echo "?"), commit $(cat "$LOGS/commit.txt" 2>/dev/null || echo "?")).

$report

Machine: $cores cores, $mem memory, disk $disk_dev ($disk_size, $disk_model, rotational=$disk_rota),
fio 4 KiB random read (io_uring, iodepth 64, O_DIRECT, 10 s, 1 GiB file on the bench disk): $fio_iops.
The machine is shared with other engineers' builds, so absolute numbers are noisy;
the interleaving spreads that noise over all engines.
EOF
)
if [ -f "$HERE/NOTES.md" ]; then
    section="$section

$(cat "$HERE/NOTES.md")"
fi

echo
echo "$section"

if [ "$docs" = 1 ]; then
    mkdir -p "$(dirname "$DOC")"
    [ -f "$DOC" ] || printf '# Benchmarks\n' >"$DOC"
    # Replace this script's section (up to the next "## " heading), or append it.
    SECTION_TEXT="$section" python3 - "$DOC" "$SECTION" <<'PY'
import os, sys
path, head = sys.argv[1], sys.argv[2]
text = open(path).read()
new = os.environ["SECTION_TEXT"].rstrip("\n") + "\n"
lines = text.splitlines(keepends=True)
start = next((i for i, l in enumerate(lines) if l.rstrip("\n") == head), None)
if start is None:
    out = text.rstrip("\n") + "\n\n" + new
else:
    end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    out = "".join(lines[:start]) + new + ("\n" + tail if tail else "")
open(path, "w").write(out)
PY
    log "wrote the section of $DOC"
fi
