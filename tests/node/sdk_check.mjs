// The official OpenAI Node SDK against a running gateway: chat (plain and streamed),
// embeddings, legacy completions (plain and streamed) and model look-ups. Prints one JSON
// object with what it saw; tests/e2e/test_node_sdk.py starts the gateway and checks it.
//
// Environment: GATEWAY_BASE_URL (…/v1), GATEWAY_API_KEY, ROUTE, EMBED_MODEL, INSTRUCT_MODEL,
// ODD_MODEL (a pass-through id with "/" and ":").
import OpenAI from "openai";

const env = process.env;
const client = new OpenAI({ baseURL: env.GATEWAY_BASE_URL, apiKey: env.GATEWAY_API_KEY, maxRetries: 0 });
const ticket = "I was charged twice for my subscription, please refund the extra charge.";
const out = {};

const chat = await client.chat.completions
  .create({ model: env.ROUTE, messages: [{ role: "user", content: ticket }] })
  .withResponse();
out.chat = {
  content: chat.data.choices[0].message.content,
  variant: chat.response.headers.get("x-gateway-variant"),
  prompt_tokens: chat.data.usage.prompt_tokens,
};

const chatStream = await client.chat.completions.create({
  model: env.ROUTE,
  messages: [{ role: "user", content: "The app crashes with error 500 on start." }],
  stream: true,
});
let streamed = "";
for await (const chunk of chatStream) streamed += chunk.choices[0]?.delta?.content ?? "";
out.chat_stream = streamed;

const embedding = await client.embeddings
  .create({ model: env.EMBED_MODEL, input: ["hello", "world"] })
  .withResponse();
out.embeddings = {
  count: embedding.data.data.length,
  dimensions: embedding.data.data[0].embedding.length,
  norm: Math.sqrt(embedding.data.data[0].embedding.reduce((s, v) => s + v * v, 0)),
  prompt_tokens: embedding.data.usage.prompt_tokens,
  decision: embedding.response.headers.get("x-gateway-decision"),
};

const completion = await client.completions.create({ model: env.INSTRUCT_MODEL, prompt: ticket });
out.completion = { text: completion.choices[0].text, usage: completion.usage };

const completionStream = await client.completions.create({
  model: env.INSTRUCT_MODEL,
  prompt: ticket,
  stream: true,
});
let text = "";
for await (const chunk of completionStream) text += chunk.choices[0]?.text ?? "";
out.completion_stream = text;

out.models = {
  route: (await client.models.retrieve(env.ROUTE)).owned_by,
  odd: (await client.models.retrieve(env.ODD_MODEL)).id,
};
try {
  await client.models.retrieve("no-such-model");
  out.models.missing = "found";
} catch (err) {
  out.models.missing = { status: err.status, code: err.code, isNotFound: err instanceof OpenAI.NotFoundError };
}

console.log(JSON.stringify(out));
