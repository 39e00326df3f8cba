// Calls https://api.openai.com/v1/chat/completions through an HTTPS proxy with undici's
// ProxyAgent, as a Node agent in HTTPS_PROXY mode would; prints {status, body} as JSON.
// Trusts the interception CA from NODE_EXTRA_CA_CERTS (read by Node at start-up).
import { ProxyAgent, request } from "undici";

const [proxy, token, model] = process.argv.slice(2);
const dispatcher = new ProxyAgent({ uri: proxy, token: `Bearer ${token}` });
const response = await request("https://api.openai.com/v1/chat/completions", {
  method: "POST",
  dispatcher,
  headers: { "content-type": "application/json", authorization: "Bearer not-a-provider-key" },
  body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
});
console.log(JSON.stringify({ status: response.statusCode, body: await response.body.json() }));
await dispatcher.close();
