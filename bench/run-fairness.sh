#!/usr/bin/env bash
# Reproduces the README's fairness table: tenant a keeps A_INFLIGHT long
# requests in flight, tenant b sends one short request at a time. b's TTFT with
# a present is compared with b's TTFT alone (--solo b, same run), on llamux
# (fair scheduling, b holds one reserved slot) and, when LLAMA_SERVER points at
# a llama-server binary, on llama-server (FIFO) with the same slots, threads and
# KV memory. The servers run one after the other, never together.
#   Usage: npm run build && [LLAMA_SERVER=/path/to/llama-server] bash bench/run-fairness.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-models/bench.gguf}
THREADS=${THREADS:-2}
SLOTS=${SLOTS:-16}
CTX_PER_SLOT=${CTX_PER_SLOT:-512}
A_INFLIGHT=${A_INFLIGHT:-16}
A_MAX_TOKENS=${A_MAX_TOKENS:-256}
B_MAX_TOKENS=${B_MAX_TOKENS:-16}
DURATION_S=${DURATION_S:-40}
# Extra `llamux serve` flags, e.g. LLAMUX_ARGS="--follow-up-ms 0" to compare.
read -r -a extra_args <<<"${LLAMUX_ARGS:-}"
PORT=${PORT:-8092}
OUT=${OUT:-bench/results/fairness}
CLI="node dist/src/cli.js"
. bench/lib.sh
mkdir -p "$OUT"
[ -f "$MODEL" ] || $CLI make-model --preset bench --out "$MODEL"
model_id=$(basename "$MODEL" .gguf)

KEY_A=lmx-benchTenantAaaaaaaaaaaaaaaaaaaaaaaaaaaaa
KEY_B=lmx-benchTenantBbbbbbbbbbbbbbbbbbbbbbbbbbbbb
cat >"$OUT/tenants.yaml" <<YAML
tenants:
  - id: a
    keys: ["sha256:$(sha $KEY_A)"]
  - id: b
    scheduling: { reservedSlots: 1 }
    keys: ["sha256:$(sha $KEY_B)"]
YAML

workload=(--url "http://127.0.0.1:$PORT" --model "$model_id" --endpoint completions --tenants "a:$A_INFLIGHT,b:1"
  --tenant-keys "a=$KEY_A,b=$KEY_B" --tenant-max-tokens "a=$A_MAX_TOKENS,b=$B_MAX_TOKENS" --duration-s "$DURATION_S" --solo b)

echo "== llamux (fair scheduling, b reserves 1 of $SLOTS slots)"
rm -rf "$OUT/data"
$CLI serve --model "$MODEL" --slots "$SLOTS" --ctx-per-slot "$CTX_PER_SLOT" --threads "$THREADS" --gpu off \
  --port "$PORT" --log-level warn --tenants "$OUT/tenants.yaml" --data-dir "$OUT/data" "${extra_args[@]}" >"$OUT/llamux.log" 2>&1 &
pid=$!
wait_ready ready
$CLI bench "${workload[@]}" --json "$OUT/llamux.json" | tee "$OUT/llamux.md"
stop_server

if [ -n "${LLAMA_SERVER:-}" ]; then
  echo "== llama-server (FIFO, $SLOTS slots)"
  "$LLAMA_SERVER" -m "$MODEL" -np "$SLOTS" -c $((SLOTS * CTX_PER_SLOT)) -t "$THREADS" -tb "$THREADS" \
    --port "$PORT" --no-webui >"$OUT/llama-server.log" 2>&1 &
  pid=$!
  wait_ready health
  $CLI bench "${workload[@]}" --json "$OUT/llama-server.json" | tee "$OUT/llama-server.md"
  stop_server
fi
