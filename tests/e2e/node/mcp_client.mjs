// The MCP TypeScript SDK's client through Warden: connects to an MCP server at argv[2] with the
// agent key argv[3], lists the tools, calls argv[4] with the JSON arguments argv[5], and prints
// what it got as one JSON line (a refusal as the SDK's error).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, key, tool, args] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${key}` } },
});
const client = new Client({ name: "warden-e2e", version: "1.0.0" });
await client.connect(transport);
const tools = (await client.listTools()).tools.map((t) => t.name);
let result;
try {
  const answer = await client.callTool({ name: tool, arguments: JSON.parse(args) });
  result = { text: answer.content[0].text, isError: answer.isError ?? false };
} catch (e) {
  result = { error: e.message, code: e.code, data: e.data };
}
console.log(JSON.stringify({ tools, result, session: transport.sessionId ?? null }));
await transport.terminateSession();
await client.close();
