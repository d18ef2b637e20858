// Loading a GGUF through node-llama-cpp with the settings llamux always wants:
// no run-time build or download, and an explicit thread count (node-llama-cpp's
// default oversubscribes small machines; see threads.ts).
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from "node-llama-cpp";

export type GpuMode = "auto" | "off" | "cuda" | "vulkan";

export interface LoadModelOptions {
  modelPath: string;
  threads: number;
  gpu: GpuMode;
  /** Called with load progress in [0, 1]. */
  onProgress?: (fraction: number) => void;
}

export interface LoadedModel {
  llama: Llama;
  model: LlamaModel;
  /** The backend actually in use: false for CPU. */
  gpu: string | false;
}

export async function loadModel(opts: LoadModelOptions): Promise<LoadedModel> {
  const llama = await getLlama({
    build: "never",
    gpu: opts.gpu === "off" ? false : opts.gpu,
    maxThreads: opts.threads,
    logLevel: LlamaLogLevel.error,
    progressLogs: false,
  });
  try {
    const model = await llama.loadModel({
      modelPath: opts.modelPath,
      gpuLayers: llama.gpu === false ? 0 : "max",
      onLoadProgress: opts.onProgress,
    });
    return { llama, model, gpu: llama.gpu };
  } catch (err) {
    await llama.dispose();
    throw err;
  }
}
