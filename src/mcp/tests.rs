//! The MCP decisions over a compiled grant: method classification, argument rules, quotas,
//! routing headers and list filtering.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::answer::AnswerFilter;
use super::rules::{check_arguments, reserve, tool_rule, McpDenial};
use super::*;
use crate::globs::GlobCache;
use crate::limits::actions::ActionLedger;
use crate::limits::budget::Days;
use crate::problem::Problems;

const NOON: i64 = 1_764_072_000; // 2025-11-25T12:00:00Z

/// The grant for server `crm` written as `yaml` (an agent's `mcp.crm` section).
fn grant(yaml: &str) -> McpGrant {
    let indented: String = yaml.lines().map(|l| format!("  {l}\n")).collect();
    let grants: indexmap::IndexMap<serde_saphyr::Spanned<String>, spec::McpGrantSpec> =
        serde_saphyr::from_str(&format!("crm:\n{indented}")).unwrap();
    let mut found = Vec::new();
    let mut p = Problems {
        file: std::path::Path::new("p.yaml"),
        found: &mut found,
    };
    let compiled = grant::compile(&grants, &mut p, &mut GlobCache::default());
    assert!(found.is_empty(), "{found:?}");
    compiled.unwrap().remove("crm").unwrap()
}

fn crm() -> McpGrant {
    grant(
        r#"
tools:
  lookup_customer: {}
  send_email: {arguments: {to: {pattern: "*@example.com"}, body: {max_length: 5}}, per_day: 2}
  refund: {arguments: {amount: {min: 1, max: 100}}, sum_per_day: {amount: 150}}
  set_tier: {arguments: {tier: {one_of: [gold, 2]}}}
  "lookup_*": {per_day: 1}
resources: ["crm://customers/*"]
prompts: ["greet*"]
"#,
    )
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn argument_refusal(tool: &str, arguments: Value) -> Option<String> {
    let grant = crm();
    let rule = tool_rule(&grant, tool).unwrap();
    match check_arguments(rule, tool, Some(&args(arguments))) {
        Ok(()) => None,
        Err(McpDenial::ArgumentNotAllowed { argument, rule, .. }) => {
            Some(format!("{argument}: {rule}"))
        }
        Err(other) => panic!("{other:?}"),
    }
}

#[test]
fn an_exact_entry_is_found_before_a_glob() {
    let grant = crm();
    assert_eq!(
        grant.tool("lookup_customer").unwrap().key,
        "lookup_customer"
    );
    assert_eq!(grant.tool("lookup_order").unwrap().key, "lookup_*");
    assert!(grant.tool("delete_customer").is_none());
}

#[test]
fn argument_rules_check_presence_type_and_bounds() {
    assert_eq!(
        argument_refusal("send_email", json!({"to": "a@example.com", "body": "hi"})),
        None
    );
    for (arguments, expected) in [
        (
            json!({"body": "hi"}),
            "to: it is required by policy and missing",
        ),
        (
            json!({"to": ["a@example.com"], "body": "hi"}),
            "to: it must be a string",
        ),
        (
            json!({"to": "a@example.com\r\nBcc: x@evil.com", "body": "hi"}),
            "admits no '\\r'",
        ),
        (
            json!({"to": "a@example.com", "body": "héllo!"}),
            "6 characters long, over the 5",
        ),
    ] {
        let refusal = argument_refusal("send_email", arguments).unwrap();
        assert!(refusal.contains(expected), "{refusal}");
    }
    assert_eq!(argument_refusal("refund", json!({"amount": 100.0})), None);
    assert!(argument_refusal("refund", json!({"amount": true}))
        .unwrap()
        .contains("must be a number"));
    assert!(argument_refusal("refund", json!({"amount": 1e3}))
        .unwrap()
        .contains("at most 100"));
    assert_eq!(
        argument_refusal("set_tier", json!({"tier": 2.0})),
        None,
        "numbers by value"
    );
    assert_eq!(argument_refusal("set_tier", json!({"tier": "gold"})), None);
    assert!(
        argument_refusal("set_tier", json!({"tier": "2"})).is_some(),
        "a string is not a number"
    );
}

#[test]
fn a_summed_argument_must_be_a_number_of_zero_or_more() {
    let grant = grant("tools: {refund: {sum_per_day: {amount: 10}}}");
    let rule = tool_rule(&grant, "refund").unwrap();
    for bad in [json!({}), json!({"amount": "5"}), json!({"amount": -1})] {
        assert!(check_arguments(rule, "refund", Some(&args(bad))).is_err());
    }
    assert!(check_arguments(rule, "refund", Some(&args(json!({"amount": 0})))).is_ok());
}

#[test]
fn quotas_are_reserved_all_or_nothing() {
    let grant = crm();
    let (ledger, days) = (ActionLedger::default(), Days::new(None));
    let take = |tool: &str, arguments: Value| {
        let rule = tool_rule(&grant, tool).unwrap();
        reserve(
            rule,
            "crm",
            tool,
            Some(&args(arguments)),
            &ledger,
            NOON,
            &days,
        )
    };
    let email = json!({"to": "a@example.com", "body": "hi"});
    assert!(take("send_email", email.clone()).is_ok());
    assert!(take("send_email", email.clone()).is_ok());
    let Err(McpDenial::ToolLimitExhausted {
        limit, retry_after, ..
    }) = take("send_email", email)
    else {
        panic!("the third email is over `per_day`");
    };
    assert_eq!((limit.as_str(), retry_after), ("`per_day` (2)", 12 * 3600));
    assert!(take("refund", json!({"amount": 100})).is_ok());
    let Err(McpDenial::ToolLimitExhausted { limit, .. }) = take("refund", json!({"amount": 60}))
    else {
        panic!("100 + 60 is over 150");
    };
    assert_eq!(limit, "`sum_per_day` of `amount` (150)");
    assert!(
        take("refund", json!({"amount": 50})).is_ok(),
        "the refused 60 took nothing"
    );
    // A glob entry's quota is shared by every tool it matches.
    assert!(take("lookup_order", json!({})).is_ok());
    assert!(take("lookup_invoice", json!({})).is_err());
}

#[test]
fn methods_are_judged_by_what_they_name() {
    let grant = crm();
    let params = |v: Value| args(v);
    let read = params(json!({"uri": "crm://internal/ledger"}));
    assert_eq!(
        classify(&grant, "resources/read", Some(&read)),
        Err(Ok(McpDenial::ResourceNotAllowed {
            uri: "crm://internal/ledger".into()
        }))
    );
    let nested = params(json!({"uri": "crm://customers/1/../../internal/ledger"}));
    assert!(
        classify(&grant, "resources/subscribe", Some(&nested)).is_err(),
        "`*` never crosses `/`"
    );
    let complete =
        params(json!({"ref": {"type": "ref/prompt", "name": "internal"}, "argument": {}}));
    assert!(matches!(
        classify(&grant, "completion/complete", Some(&complete)),
        Err(Ok(McpDenial::PromptNotAllowed { .. }))
    ));
    let greet = params(json!({"name": "greeting"}));
    assert_eq!(
        classify(&grant, "prompts/get", Some(&greet)),
        Ok(Request::Other)
    );
    assert_eq!(classify(&grant, "tools/list", None), Ok(Request::List));
    assert!(matches!(
        classify(&grant, "tools/execute", None),
        Err(Err(Invalid {
            code: codes::METHOD_NOT_FOUND,
            ..
        }))
    ));
    let not_object = params(json!({"name": "lookup_customer", "arguments": [1]}));
    assert!(matches!(
        classify(&grant, "tools/call", Some(&not_object)),
        Err(Err(_))
    ));
}

#[test]
fn routing_headers_must_agree_with_the_body() {
    let call = message::parse(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup_customer"}}"#,
    )
    .unwrap();
    let headers = |pairs: &[(&str, &str)]| {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    };
    assert!(check_routing_headers(&headers(&[]), &call).is_ok());
    let agreeing = [
        ("mcp-method", "tools/call"),
        ("mcp-name", "=?base64?bG9va3VwX2N1c3RvbWVy?="),
    ];
    assert!(check_routing_headers(&headers(&agreeing), &call).is_ok());
    for bad in [
        &[("mcp-method", "tools/list")][..],
        &[("mcp-name", "delete_customer")],
        &[("mcp-name", "=?base64?not base64?=")],
        &[("mcp-session-id", "a"), ("mcp-session-id", "b")],
    ] {
        let refused = check_routing_headers(&headers(bad), &call).unwrap_err();
        assert_eq!(refused.code, codes::HEADER_MISMATCH, "{bad:?}");
    }
}

fn filtered(filter: &mut AnswerFilter, grant: &McpGrant, chunks: &[&str]) -> String {
    let mut out = String::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut body = Some(Bytes::from(chunk.to_string()));
        filter.filter(grant, &mut body, i + 1 == chunks.len());
        if let Some(body) = body {
            out.push_str(std::str::from_utf8(&body).unwrap());
        }
    }
    out
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"lookup_customer"},{"name":"delete_customer"},{"title":"no name"}],"nextCursor":"c2"}}"#;

#[test]
fn lists_are_cut_in_json_answers() {
    let grant = crm();
    let mut filter = AnswerFilter::new(Some(b"application/json"), true, 1 << 20);
    let (head, tail) = LIST.split_at(40);
    let answer: Value =
        serde_json::from_str(&filtered(&mut filter, &grant, &[head, tail])).unwrap();
    assert_eq!(
        answer["result"]["tools"],
        json!([{"name": "lookup_customer"}])
    );
    assert_eq!(answer["result"]["nextCursor"], "c2");
    let mut small = AnswerFilter::new(Some(b"application/json"), true, 16);
    let replaced: Value =
        serde_json::from_str(&filtered(&mut small, &grant, &[head, tail])).unwrap();
    assert_eq!(
        replaced["error"]["code"], -32603,
        "too large to filter: never passed through"
    );
}

#[test]
fn lists_are_cut_in_every_sse_event_wherever_the_chunks_split() {
    let grant = crm();
    let stream = format!(
        "event: message\nid: 7\ndata: {LIST}\n\n: keepalive\n\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\n"
    );
    for split in [1, 30, stream.len() / 2, stream.len() - 1] {
        let (a, b) = stream.split_at(split);
        let mut filter = AnswerFilter::new(Some(b"text/event-stream"), false, 1 << 20);
        let out = filtered(&mut filter, &grant, &[a, b]);
        assert!(
            !out.contains("delete_customer") && !out.contains("no name"),
            "{out}"
        );
        assert!(out.starts_with("event: message\nid: 7\ndata: {"), "{out}");
        assert!(
            out.contains("lookup_customer") && out.contains(": keepalive\n\n"),
            "{out}"
        );
        assert!(out.ends_with("notifications/progress\"}\n\n"), "{out}");
    }
    let mut tiny = AnswerFilter::new(Some(b"text/event-stream"), false, 64);
    let out = filtered(&mut tiny, &grant, &[&format!("data: {LIST}\n\n")]);
    assert!(
        !out.contains("delete_customer"),
        "an event too large to read is dropped"
    );
}

#[test]
fn a_tool_results_is_error_is_noted() {
    let grant = crm();
    let mut filter = AnswerFilter::new(Some(b"application/json"), true, 1 << 20);
    let result = r#"{"jsonrpc":"2.0","id":3,"result":{"content":[],"isError":true}}"#;
    assert_eq!(
        filtered(&mut filter, &grant, &[result]),
        result,
        "nothing to cut: unchanged"
    );
    assert_eq!(filter.is_error, Some(true));
}
