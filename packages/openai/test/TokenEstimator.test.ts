import { describe, expect, it } from "@effect/vitest"
import { TokenEstimator } from "@sluice/openai"
import { FastCheck } from "effect"

describe("TokenEstimator", () => {
  it("picks the encoding of the model family", () => {
    expect(TokenEstimator.encodingFor("gpt-4o-mini")).toBe("o200k_base")
    expect(TokenEstimator.encodingFor("o3-mini")).toBe("o200k_base")
    expect(TokenEstimator.encodingFor("gpt-4.1")).toBe("o200k_base")
    expect(TokenEstimator.encodingFor("gpt-4-turbo")).toBe("cl100k_base")
    expect(TokenEstimator.encodingFor("gpt-3.5-turbo")).toBe("cl100k_base")
    expect(TokenEstimator.encodingFor("text-embedding-3-small")).toBe("cl100k_base")
  })

  it("counts real tokens, not characters", () => {
    expect(TokenEstimator.countText("hello world", "o200k_base")).toBe(2)
    expect(TokenEstimator.countText("hello world", "cl100k_base")).toBe(2)
    expect(TokenEstimator.countText("", "o200k_base")).toBe(0)
  })

  it("charges at admission at least OpenAI's character estimate", () => {
    // "hello world " x 100: 200 tokens, 1200 characters -> OpenAI's limiter estimates 300
    const text = "hello world ".repeat(100)
    expect(TokenEstimator.countText(text, "o200k_base")).toBeLessThan(300)
    expect(TokenEstimator.admissionCount(text, "o200k_base")).toBe(300)
    // dense text (many tokens per character) is charged its real count
    const dense = "𝔘𝔫𝔦𝔠𝔬𝔡𝔢".repeat(20) // 280 UTF-16 units, 420 tokens
    expect(TokenEstimator.admissionCount(dense, "o200k_base")).toBe(TokenEstimator.countText(dense, "o200k_base"))
    expect(TokenEstimator.admissionCount(dense, "o200k_base")).toBeGreaterThan(Math.ceil(dense.length / 4))
  })

  it("estimates a chat call as prompt with message overhead plus n × max_tokens", () => {
    const estimate = TokenEstimator.chat({
      model: "gpt-4o",
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: "hello world" }
      ],
      max_tokens: 100,
      n: 2
    })
    // each text is charged max(tokens, ceil(chars / 4)), OpenAI's character-based admission estimate:
    // 3 priming + (3 + "system" max(1, 2) + "You are terse." max(4, 4)) + (3 + "user" 1 + "hello world" max(2, 3))
    expect(estimate.promptTokens).toBe(3 + 3 + 2 + 4 + 3 + 1 + 3)
    expect(estimate.maxOutputTokens).toBe(200)
    expect(estimate.tokens).toBe(estimate.promptTokens + 200)
  })

  it("prefers max_completion_tokens, else a default per family", () => {
    const base = { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }
    expect(TokenEstimator.chat({ ...base, max_tokens: 50, max_completion_tokens: 70 }).maxOutputTokens).toBe(70)
    expect(TokenEstimator.chat(base).maxOutputTokens).toBe(1024)
    expect(TokenEstimator.chat({ ...base, model: "o3-mini" }).maxOutputTokens).toBe(8192)
    expect(TokenEstimator.chat(base, { defaultMaxOutputTokens: 10 }).maxOutputTokens).toBe(10)
  })

  it("counts tools, response_format and image parts", () => {
    const plain = TokenEstimator.chat({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], max_tokens: 1 })
    const withTools = TokenEstimator.chat({
      model: "gpt-4o",
      messages: [{
        role: "user",
        content: [{ type: "text", text: "hi" }, {
          type: "image_url",
          image_url: { url: "https://x/y.png", detail: "low" }
        }]
      }],
      tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object", properties: {} } } }],
      response_format: { type: "json_object" },
      max_tokens: 1
    })
    expect(withTools.promptTokens).toBeGreaterThan(plain.promptTokens + 85)
  })

  it("estimates Responses, embeddings and images", () => {
    const response = TokenEstimator.responses({ model: "gpt-4o", input: "hello world", max_output_tokens: 10 })
    expect(response.tokens).toBe(3 + 3 + 3 + 10)
    const embedding = TokenEstimator.embeddings({ model: "text-embedding-3-small", input: ["hello world", "hi"] })
    expect(embedding.tokens).toBe(3 + 1)
    expect(TokenEstimator.embeddings({ model: "text-embedding-3-small", input: [1, 2, 3] }).tokens).toBe(3)
    const dalle = TokenEstimator.images({ model: "dall-e-3", prompt: "a cat", n: 1 })
    expect(dalle).toMatchObject({ images: 1, tokens: 0 })
    const gptImage = TokenEstimator.images({ model: "gpt-image-1", prompt: "a cat", n: 2, quality: "low" })
    expect(gptImage.images).toBe(2)
    expect(gptImage.tokens).toBe(gptImage.promptTokens + 2 * 272)
    expect(TokenEstimator.forEndpoint("/v1/embeddings", { model: "text-embedding-3-small", input: "hi" })?.tokens)
      .toBe(1)
    expect(TokenEstimator.forEndpoint("/v1/files", {})).toBeUndefined()
  })

  it("property: maxOutputOf is the estimate's maxOutputTokens, for any body of any endpoint", () => {
    const figure = FastCheck.oneof(
      FastCheck.constant(undefined),
      FastCheck.constant(null),
      FastCheck.integer({ min: -2, max: 10_000 }),
      FastCheck.double({ noNaN: false }),
      FastCheck.constant("12")
    )
    const body = FastCheck.record({
      model: FastCheck.constantFrom(undefined, "gpt-4o-mini", "o3", "gpt-5-mini", "gpt-image-1", "dall-e-3", 7),
      messages: FastCheck.constant([{ role: "user", content: "hi" }]),
      input: FastCheck.constantFrom("hello", ["a", "b"], [1, 2]),
      prompt: FastCheck.constantFrom("a cat", ["a", "b", "c"], [1, 2, 3], [[1, 2], [3]], []),
      n: figure,
      best_of: figure,
      max_tokens: figure,
      max_completion_tokens: figure,
      max_output_tokens: figure,
      quality: FastCheck.constantFrom(undefined, "low", "medium", "high", "auto", "ultra"),
      size: FastCheck.constantFrom(undefined, "1024x1024", "1536x1024", "auto")
    }, { requiredKeys: [] })
    const url = FastCheck.constantFrom(
      "/v1/chat/completions",
      "/v1/responses",
      "/v1/completions",
      "/v1/embeddings",
      "/v1/moderations",
      "/v1/images/generations",
      "https://api.openai.com/v1/chat/completions",
      "/v1/files"
    )
    const options = FastCheck.constantFrom(undefined, { defaultMaxOutputTokens: 77 })
    FastCheck.assert(
      FastCheck.property(url, body, options, (url, body, options) => {
        expect(TokenEstimator.maxOutputOf(url, body, options)).toBe(
          TokenEstimator.forEndpoint(url, body, options)?.maxOutputTokens
        )
      }),
      { numRuns: 2_000, seed: 1_207 }
    )
    // pinned, per endpoint (the property above compares two paths over shared helpers)
    const of = TokenEstimator.maxOutputOf
    expect(of("/v1/chat/completions", { model: "gpt-4o-mini", messages: [], n: 2, max_tokens: 100 })).toBe(200)
    expect(of("/v1/chat/completions", { model: "gpt-4o", n: 3, max_completion_tokens: 50, max_tokens: 10 })).toBe(150)
    expect(of("/v1/chat/completions", { model: "o3", messages: [] })).toBe(8_192)
    expect(of("/v1/chat/completions", { messages: [] }, { defaultMaxOutputTokens: 77 })).toBe(77)
    expect(of("/v1/responses", { model: "gpt-4o", input: "x", max_output_tokens: 70, n: 5 })).toBe(70)
    expect(of("/v1/responses", { model: "gpt-5-mini", input: "x" })).toBe(8_192)
    expect(of("/v1/completions", { prompt: ["a", "b"], n: 2, best_of: 3, max_tokens: 5 })).toBe(30)
    expect(of("/v1/completions", { prompt: [1, 2, 3] })).toBe(16)
    expect(of("/v1/images/generations", { model: "gpt-image-1", prompt: "p", n: 2, quality: "low", size: "1536x1024" }))
      .toBe(2 * 408)
    expect(of("/v1/images/generations", { model: "dall-e-3", prompt: "p", n: 2 })).toBe(0)
    expect(of("/v1/embeddings", { model: "text-embedding-3-small", input: "hi" })).toBe(0)
    expect(of("/v1/chat/completions", { model: "gpt-4o", n: 1e305, max_tokens: 1e10 })).toBe(Number.MAX_SAFE_INTEGER)
    expect(of("/v1/files", {})).toBeUndefined()
  })
})
