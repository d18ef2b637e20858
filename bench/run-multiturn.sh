#!/usr/bin/env bash
# Reproduces the README's multi-turn table: TENANTS x CONVERSATIONS chats at
# once on SLOTS slots (more conversations than slots), each resending its
# growing history after one shared system prompt, TURNS turns each. llamux
# saves an evicted conversation's KV state to disk and restores it; when
# LLAMA_SERVER points at a llama-server binary, the same workload runs on it
# with the same model, slots, threads and KV memory. The servers run one after
# the other, never together.
#   Usage: npm run build && [LLAMA_SERVER=/path/to/llama-server] bash bench/run-multiturn.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-models/bench.gguf}
THREADS=${THREADS:-2}
SLOTS=${SLOTS:-4}
CTX_PER_SLOT=${CTX_PER_SLOT:-2048}
TENANTS=${TENANTS:-4}
CONVERSATIONS=${CONVERSATIONS:-2}
TURNS=${TURNS:-6}
SYSTEM_TOKENS=${SYSTEM_TOKENS:-512}
MAX_TOKENS=${MAX_TOKENS:-16}
THINK_MS=${THINK_MS:-3000}
PORT=${PORT:-8093}
OUT=${OUT:-bench/results/multiturn}
CLI="node dist/src/cli.js"
. bench/lib.sh
mkdir -p "$OUT"
[ -f "$MODEL" ] || $CLI make-model --preset bench --out "$MODEL"
model_id=$(basename "$MODEL" .gguf)

keys=()
echo "tenants:" >"$OUT/tenants.yaml"
for i in $(seq 0 $((TENANTS - 1))); do
  key="lmx-benchMultiturnTenant${i}xxxxxxxxxxxxxxxxxxxxxxxx"
  keys+=("$key")
  printf '  - id: t%s\n    keys: ["sha256:%s"]\n' "$i" "$(sha "$key")" >>"$OUT/tenants.yaml"
done
key_list=$(IFS=,; echo "${keys[*]}")

workload=(multiturn --url "http://127.0.0.1:$PORT" --model "$model_id" --tenants "$TENANTS" --conversations "$CONVERSATIONS"
  --turns "$TURNS" --system-tokens "$SYSTEM_TOKENS" --max-tokens "$MAX_TOKENS" --think-ms "$THINK_MS")

echo "== llamux ($SLOTS slots, evicted conversations saved to disk and restored)"
rm -rf "$OUT/data"
$CLI serve --model "$MODEL" --slots "$SLOTS" --ctx-per-slot "$CTX_PER_SLOT" --threads "$THREADS" --gpu off \
  --port "$PORT" --log-level warn --tenants "$OUT/tenants.yaml" --data-dir "$OUT/data" >"$OUT/llamux.log" 2>&1 &
pid=$!
wait_ready ready
# A failed turn is reported (exit 1) but does not stop the comparison.
$CLI bench "${workload[@]}" --tenant-keys "$key_list" --json "$OUT/llamux.json" | tee "$OUT/llamux.md" || true
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^llamux_(kv_|prefix_hits)' | tee "$OUT/llamux-kv.txt"
stop_server

if [ -n "${LLAMA_SERVER:-}" ]; then
  echo "== llama-server ($SLOTS slots, same KV memory)"
  "$LLAMA_SERVER" -m "$MODEL" -np "$SLOTS" -c $((SLOTS * CTX_PER_SLOT)) -t "$THREADS" -tb "$THREADS" \
    --port "$PORT" --no-webui >"$OUT/llama-server.log" 2>&1 &
  pid=$!
  wait_ready health
  $CLI bench "${workload[@]}" --json "$OUT/llama-server.json" | tee "$OUT/llama-server.md" || true
  stop_server
fi
