#!/usr/bin/env bash
# The cost of tracing: the same streaming load against two llamux servers on
# one model, one with OpenTelemetry on (every request sampled, spans exported
# by the front and the worker over OTLP/HTTP to a local sink that reads and
# drops them) and one with it off, back to back in each of REPEATS rounds, the
# order alternating. Prints each round's output tok/s and TTFT p50, and the
# median of the per-round ratios traced ÷ untraced (target: ≥ 0.97 at 16 streams).
# Usage: npm run build && bash bench/run-tracing.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-models/bench.gguf}
THREADS=${THREADS:-2}
CONCURRENCY=${CONCURRENCY:-16}
REQUESTS=${REQUESTS:-64}
REPEATS=${REPEATS:-5}
SLOTS=${SLOTS:-16}
CTX_PER_SLOT=${CTX_PER_SLOT:-256}
PORT_OFF=${PORT_OFF:-8094}
PORT_ON=${PORT_ON:-8095}
SINK_PORT=${SINK_PORT:-8096}
OUT=${OUT:-bench/results/tracing}
CLI="node dist/src/cli.js"
mkdir -p "$OUT"
[ -f "$MODEL" ] || $CLI make-model --preset bench --out "$MODEL"
model_id=$(basename "$MODEL" .gguf)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
ready() { for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$1/$2" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "port $1 not ready" >&2; return 1; }

# The OTLP/HTTP sink: reads every export whole, counts spans' bytes, answers 200.
node -e '
  let bytes = 0;
  require("http").createServer((req, res) => { req.on("data", (d) => (bytes += d.length)); req.on("end", () => res.end("{}")); })
    .listen(Number(process.argv[1]), "127.0.0.1");
  process.on("SIGTERM", () => { console.log(`sink received ${bytes} bytes`); process.exit(0); });
' "$SINK_PORT" >"$OUT/sink.log" 2>&1 &
pids+=("$!")

# A data dir each (removed at exit): two servers sharing ./data would share
# one database and one KV state directory, and measure each other's saves.
data=$(mktemp -d)
trap 'cleanup; rm -rf "$data"' EXIT
serve=(serve --model "$MODEL" --slots "$SLOTS" --ctx-per-slot "$CTX_PER_SLOT" --threads "$THREADS" --gpu off --log-level warn)
$CLI "${serve[@]}" --port "$PORT_OFF" --data-dir "$data/off" >"$OUT/off.log" 2>&1 &
pids+=("$!")
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK_PORT" OTEL_TRACES_SAMPLER=always_on $CLI "${serve[@]}" --port "$PORT_ON" --data-dir "$data/on" >"$OUT/on.log" 2>&1 &
pids+=("$!")
ready "$PORT_OFF" ready
ready "$PORT_ON" ready

for r in $(seq 1 "$REPEATS"); do
  order=(off on)
  [ $((r % 2)) -eq 0 ] && order=(on off)
  for which in "${order[@]}"; do
    port=$PORT_OFF
    [ "$which" = on ] && port=$PORT_ON
    $CLI bench --url "http://127.0.0.1:$port" --model "$model_id" --endpoint completions --concurrency "$CONCURRENCY" \
      --requests "$REQUESTS" --json "$OUT/$which-$r.json" >/dev/null || echo "($which round $r: some requests failed)"
  done
done

node --input-type=module -e '
  import fs from "node:fs";
  const [out, repeats] = [process.argv[1], Number(process.argv[2])];
  const level = (f) => JSON.parse(fs.readFileSync(f, "utf8")).levels[0];
  const ratios = [];
  console.log("| round | tok/s off | tok/s on | on ÷ off | TTFT p50 off (ms) | TTFT p50 on (ms) |\n|---|---:|---:|---:|---:|---:|");
  for (let r = 1; r <= repeats; r++) {
    const off = level(`${out}/off-${r}.json`), on = level(`${out}/on-${r}.json`);
    ratios.push(on.outputTokensPerSecond / off.outputTokensPerSecond);
    console.log(`| ${r} | ${off.outputTokensPerSecond.toFixed(1)} | ${on.outputTokensPerSecond.toFixed(1)} | ${ratios.at(-1).toFixed(3)} | ${off.ttftMs.p50.toFixed(0)} | ${on.ttftMs.p50.toFixed(0)} |`);
  }
  ratios.sort((a, b) => a - b);
  console.log(`\nmedian on ÷ off over ${repeats} rounds: ${ratios[Math.floor(ratios.length / 2)].toFixed(3)} (target ≥ 0.97)`);
' "$OUT" "$REPEATS" | tee "$OUT/summary.md"
