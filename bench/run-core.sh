#!/usr/bin/env bash
# Reproduces the README's core throughput table in one run on one machine.
# Each of REPEATS rounds measures every level with, one after the other (never
# concurrently):
#   - the raw ceiling: the same model driven directly through node-llama-cpp;
#   - llamux over HTTP/SSE (completions endpoint, so prompts are exactly
#     PROMPT_TOKENS tokens as in the ceiling; the table shows what the server counted);
#   - optionally llama.cpp's llama-server on the same model, slots, threads and
#     KV memory (set LLAMA_SERVER=/path/to/llama-server).
# A level's runs are back to back, and the order of the three turns each
# round, so a server and its ceiling are measured within a minute of each
# other and none of them always goes first. Servers stay loaded but idle while
# the others run. The summary gives medians over the rounds and each server's
# ratio to the ceiling (the median of its per-round ratios, bench/compare.ts);
# peak RSS (server and its children) is sampled throughout.
# Usage: npm run build && bash bench/run-core.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-models/bench.gguf}
THREADS=${THREADS:-2}
LEVELS=${LEVELS:-1,4,8,16}
REQUESTS=${REQUESTS:-}            # empty: 4 x concurrency per level, at least MIN_REQUESTS
# A level of 4 requests at 1 stream lasts about 4 s, and one burst of another
# tenant's load on this shared machine moves its result by 20-30 %; 32 requests
# make every level last 17-35 s here, near the 16-stream level's 64.
MIN_REQUESTS=${MIN_REQUESTS:-32}
REPEATS=${REPEATS:-5}
PROMPT_TOKENS=${PROMPT_TOKENS:-32}
MAX_TOKENS=${MAX_TOKENS:-64}
SLOTS=${SLOTS:-16}
CTX_PER_SLOT=${CTX_PER_SLOT:-256}
LLAMUX_PORT=${LLAMUX_PORT:-8090}
LLAMA_PORT=${LLAMA_PORT:-8091}
OUT=${OUT:-bench/results}
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

start_server() { # name port ready-path command...
  local name=$1 port=$2 path=$3
  shift 3
  "$@" >"$OUT/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/$path" >/dev/null 2>&1 && break
    sleep 0.2
  done
  # Peak memory of the server and its children (bench/sampleMemory.ts).
  rm -f "$OUT/$name.mem.json"
  node dist/bench/sampleMemory.js "$pid" "$OUT/$name.mem.json" &
  pids+=("$!")
}

start_server llamux "$LLAMUX_PORT" ready $CLI serve --model "$MODEL" --slots "$SLOTS" --ctx-per-slot "$CTX_PER_SLOT" \
  --threads "$THREADS" --gpu off --port "$LLAMUX_PORT" --log-level warn
servers=("llamux=$LLAMUX_PORT")
if [ -n "${LLAMA_SERVER:-}" ]; then
  start_server llama-server "$LLAMA_PORT" health "$LLAMA_SERVER" -m "$MODEL" -np "$SLOTS" -c $((SLOTS * CTX_PER_SLOT)) \
    -t "$THREADS" -tb "$THREADS" --port "$LLAMA_PORT" --no-webui
  servers+=("llama-server=$LLAMA_PORT")
fi

programs=(ceiling "${servers[@]}")
ceilings=()
declare -A runs=()
for r in $(seq 1 "$REPEATS"); do
  # Round r starts with the ((r-1) mod n)-th program.
  order=("${programs[@]:$(( (r - 1) % ${#programs[@]} ))}" "${programs[@]:0:$(( (r - 1) % ${#programs[@]} ))}")
  for c in ${LEVELS//,/ }; do
    requests=${REQUESTS:-$(( 4 * c > MIN_REQUESTS ? 4 * c : MIN_REQUESTS ))}
    level=(--concurrency "$c" --prompt-tokens "$PROMPT_TOKENS" --max-tokens "$MAX_TOKENS" --requests "$requests")
    for p in "${order[@]}"; do
      if [ "$p" = ceiling ]; then
        echo "== round $r/$REPEATS, $c streams: ceiling"
        # The servers' own KV layout: their slot count and context per slot.
        $CLI bench ceiling --model "$MODEL" --threads "$THREADS" --gpu off --slots "$SLOTS" --ctx-per-slot "$CTX_PER_SLOT" "${level[@]}" \
          --json "$OUT/ceiling-$r-$c.json" >/dev/null
        ceilings+=("$OUT/ceiling-$r-$c.json")
        continue
      fi
      name=${p%%=*}
      port=${p#*=}
      echo "== round $r/$REPEATS, $c streams: $name"
      # A failed request makes the bench exit 1; it is counted in the table's
      # errors column, and the other rounds and servers still run.
      $CLI bench --url "http://127.0.0.1:$port" --model "$model_id" --endpoint completions "${level[@]}" \
        --json "$OUT/$name-$r-$c.json" >/dev/null || echo "($name round $r, $c streams: some requests failed)"
      runs[$name]="${runs[$name]:+${runs[$name]},}$OUT/$name-$r-$c.json"
    done
  done
done

server_args=()
for s in "${servers[@]}"; do name=${s%%=*}; server_args+=(--server "$name=${runs[$name]}"); done
echo
echo "Medians over $REPEATS rounds ($PROMPT_TOKENS-token prompts, $MAX_TOKENS output tokens, ignore_eos, $THREADS threads):"
$CLI bench compare --ceiling "$(IFS=,; echo "${ceilings[*]}")" "${server_args[@]}" | tee "$OUT/summary.md"
echo
# Where llamux's engine loop spent the whole run, every level and round
# included, from its own /metrics (llamux_engine_loop_seconds_total).
curl -sf "http://127.0.0.1:$LLAMUX_PORT/metrics" | node --input-type=module -e '
  import { parsePromText, sumOf } from "./dist/bench/promText.js";
  let text = "";
  for await (const part of process.stdin) text += part;
  const m = parsePromText(text);
  const steps = sumOf(m, "llamux_engine_steps_total");
  const phases = ["step", "admit", "emit", "wait"].map((phase) => [phase, sumOf(m, "llamux_engine_loop_seconds_total", { phase })]);
  const busy = phases.reduce((n, [, s]) => n + s, 0);
  const parts = phases.map(([p, s]) => `${p} ${s.toFixed(1)} s (${((100 * s) / busy).toFixed(1)} %, ${((1000 * s) / steps).toFixed(2)} ms a step)`);
  console.log(`llamux engine loop over the run, ${steps} steps: ${parts.join(", ")}`);
'
echo
echo "model file: $(( $(stat -c %s "$MODEL") / 1024 / 1024 )) MiB"
for s in "${servers[@]}"; do
  name=${s%%=*}
  node -e '
    const [name, file] = process.argv.slice(1);
    const m = JSON.parse(require("fs").readFileSync(file, "utf8"));
    const mib = (b) => (b === null ? "n/a (needs root)" : `${Math.round(b / 1048576)} MiB`);
    console.log(`${name} peak memory, server and children: RSS summed ${mib(m.rssBytes)}, each physical page once ${mib(m.onceBytes)}`);
  ' "$name" "$OUT/$name.mem.json"
done
