import { describe, expect, it } from "@effect/vitest"
import { TokenEstimator } from "@sluice/openai"

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
    // 3 priming + (3 + "system" 1 + "You are terse." 4) + (3 + "user" 1 + "hello world" 2)
    expect(estimate.promptTokens).toBe(3 + 3 + 1 + 4 + 3 + 1 + 2)
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
    expect(response.tokens).toBe(3 + 3 + 2 + 10)
    const embedding = TokenEstimator.embeddings({ model: "text-embedding-3-small", input: ["hello world", "hi"] })
    expect(embedding.tokens).toBe(3)
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
})
