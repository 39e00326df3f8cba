//! `warden demo`: the bundled default policy, the built-in mock provider, and commands to try.

use std::process::ExitCode;

use super::serve::{self, Options};
use crate::config::source;

/// The bundled default policy (also what `serve` loads from `config/warden.yaml`).
pub const DEMO_POLICY: &str = include_str!("../../config/warden.yaml");

/// Demo agent keys, whose SHA-256 hashes are in the bundled policy. Demo only: anyone who reads
/// this source knows them.
pub const DEMO_KEYS: &[(&str, &str)] = &[
    ("support-bot", "wdn_demo_support_bot_key"),
    ("research-agent", "wdn_demo_research_agent_key"),
    ("suspended-bot", "wdn_demo_suspended_bot_key"),
];

/// Runs the demo on `listen` / `admin`.
pub fn run(listen: &str, admin: &str) -> ExitCode {
    let (Ok(listen_addr), Ok(admin_addr)) = (listen.parse(), admin.parse()) else {
        eprintln!("warden: --listen and --admin take IP:port");
        return ExitCode::from(2);
    };
    let sources = source::from_text("demo policy (config/warden.yaml)", DEMO_POLICY);
    let options = Options {
        listen: Some(listen_addr),
        admin: Some(admin_addr),
        ..Options::default()
    };
    serve::start(sources, options, |_| print_instructions(listen, admin))
}

fn print_instructions(listen: &str, admin: &str) {
    let key = DEMO_KEYS[0].1;
    println!(
        r#"
Warden demo: built-in policy and mock provider, no network or provider keys needed.

Demo agents and their API keys:
{keys}
Try (in another terminal):

  curl -s http://{listen}/v1/chat/completions \
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \
    -d '{{"model":"mock-gpt","messages":[{{"role":"user","content":"hello warden"}}]}}'

  # a model this agent may not use -> 403 model_not_allowed
  curl -si http://{listen}/v1/chat/completions -H "Authorization: Bearer {key}" \
    -d '{{"model":"mock-secret","messages":[]}}'

  # the models this agent may use
  curl -s http://{listen}/v1/models -H "Authorization: Bearer {key}"

  # OpenAI Python SDK (pip install openai)
  OPENAI_BASE_URL=http://{listen}/v1 OPENAI_API_KEY={key} python3 -c '
from openai import OpenAI
r = OpenAI().chat.completions.create(model="mock-gpt", messages=[{{"role": "user", "content": "hi"}}])
print(r.choices[0].message.content, r.usage)'

  # as HTTP_PROXY (absolute-form requests)
  curl -s -x http://{listen} http://api.openai.com/v1/chat/completions \
    -H "Authorization: Bearer {key}" -d '{{"model":"mock-gpt","messages":[]}}'

  # MCP: the built-in mock CRM at /mcp/crm (this agent may not call delete_customer)
  curl -s http://{listen}/mcp/crm -H "Authorization: Bearer {key}" \
    -H "Content-Type: application/json" -H "Accept: application/json, text/event-stream" \
    -d '{{"jsonrpc":"2.0","id":1,"method":"tools/list"}}'
  curl -s http://{listen}/mcp/crm -H "Authorization: Bearer {key}" \
    -H "Content-Type: application/json" -H "Accept: application/json, text/event-stream" \
    -d '{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"delete_customer","arguments":{{"id":"42"}}}}}}'

  # metrics
  curl -s http://{admin}/metrics | grep warden_
"#,
        keys = DEMO_KEYS
            .iter()
            .map(|(agent, key)| format!("  {agent:<16} {key}\n"))
            .collect::<String>(),
    );
}
