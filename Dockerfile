# llamux container image.
#   CPU:  docker build -t llamux .
#   CUDA: docker build -t llamux:cuda --build-arg RUNTIME_BASE=nvidia/cuda:12.6.3-runtime-ubuntu24.04 --build-arg LLAMUX_GPU=cuda .
# node-llama-cpp's prebuilt CPU, CUDA and Vulkan binaries are npm packages, so
# the same install serves both variants; nothing is compiled or downloaded at run time.
ARG NODE_IMAGE=node:20-bookworm-slim
ARG RUNTIME_BASE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
COPY package.json package-lock.json tsconfig.json ./
# npm install, not npm ci: see .ci/run (node-llama-cpp's optional per-platform
# binaries are not all in the lockfile); the pinned versions still apply.
RUN npm install --no-audit --no-fund
COPY src ./src
COPY engine ./engine
COPY models ./models
COPY bench ./bench
COPY test ./test
# npm run build: tsc, then the console's static files copied into dist.
RUN npm run build && npm prune --omit=dev

FROM ${NODE_IMAGE} AS node
FROM ${RUNTIME_BASE}
ARG LLAMUX_GPU=auto
COPY --from=node /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
ENV NODE_ENV=production \
    LLAMUX_HOST=0.0.0.0 \
    LLAMUX_PORT=8080 \
    LLAMUX_MODELS_DIR=/models \
    LLAMUX_GPU=${LLAMUX_GPU}
VOLUME ["/models"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s CMD node -e "fetch('http://127.0.0.1:8080/ready').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["serve"]
