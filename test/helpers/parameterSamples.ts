// For each parameter the endpoints refuse: a value that passes validation but
// is not neutral, so the request must be refused naming it. Read by the unit
// spec walk and by the integration check against the real server.
export const CHAT_REFUSED_SAMPLES: Record<string, unknown> = {
  modalities: ["text", "audio"],
  functions: [{ name: "f", parameters: { type: "object", properties: {} } }],
  function_call: "auto",
  audio: { voice: "alloy", format: "mp3" },
  prediction: { type: "content", content: "hello" },
  web_search_options: {},
  reasoning_effort: "low",
  verbosity: "low",
  moderation: { model: "omni-moderation-latest" },
};

export const COMPLETION_REFUSED_SAMPLES: Record<string, unknown> = {
  best_of: 2,
  suffix: "the end",
};

/** `dimensions` other than the served model's embedding size (stories260K's is 64; the unit walk uses 64 too). */
export const EMBEDDING_REFUSED_SAMPLES: Record<string, unknown> = {
  dimensions: 32,
};
