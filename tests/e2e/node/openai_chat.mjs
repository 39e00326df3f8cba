// The OpenAI Node SDK through Warden: a chat, a streamed chat with a tool call and its usage,
// and a provider error; prints what it saw as JSON. Arguments: Warden's base URL, the agent's
// key, the model.
import OpenAI from "openai";

const [base, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0 });
const tools = [{
  type: "function",
  function: { name: "get_weather", description: "Weather in a city",
              parameters: { type: "object", properties: { city: { type: "string" } } } },
}];

const chat = await client.chat.completions.create({
  model, max_tokens: 50, messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "hi" }],
});

const stream = await client.chat.completions.create({
  model: `${model}-tools`, tools, stream: true, stream_options: { include_usage: true },
  messages: [{ role: "user", content: "Weather in Paris?" }],
});
let text = "", args = "", name = null, finish = null, usage = null;
for await (const chunk of stream) {
  const choice = chunk.choices[0];
  if (choice) {
    text += choice.delta.content ?? "";
    for (const call of choice.delta.tool_calls ?? []) {
      name = call.function?.name ?? name;
      args += call.function?.arguments ?? "";
    }
    finish = choice.finish_reason ?? finish;
  }
  if (chunk.usage) usage = chunk.usage;
}

let error = null;
try {
  await client.chat.completions.create({ model: `bad-${model}`, messages: [{ role: "user", content: "hi" }] });
} catch (e) {
  error = { status: e.status, message: e.message };
}

console.log(JSON.stringify({
  chat: { content: chat.choices[0].message.content, finish: chat.choices[0].finish_reason, usage: chat.usage },
  stream: { text, name, args, finish, usage },
  error,
}));
