//! Differential: whenever Warden accepts a body, a standard JSON reader (serde_json's `Value`,
//! last duplicate wins like most provider stacks) reads the same `model`, `stream`,
//! `stream_options` presence and choice count (`n`, `best_of`), the objects named by
//! `previous_response_id` and `conversation`, and the body is valid UTF-8 without lone
//! surrogates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::proxy::request::body_fields;

fuzz_target!(|body: &[u8]| {
    let Ok(fields) = body_fields(body) else {
        return;
    };
    assert!(std::str::from_utf8(body).is_ok(), "accepted invalid UTF-8");
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => panic!("accepted a body a JSON reader refuses: {e}"),
    };
    let model = value["model"].as_str().filter(|m| !m.is_empty());
    assert_eq!(model, fields.model.as_deref());
    let named = |id: Option<&str>| {
        id.filter(|id| !id.is_empty())
            .is_none_or(|id| fields.objects.iter().any(|o| o.id == id))
    };
    assert!(named(value["previous_response_id"].as_str()), "missed previous_response_id");
    assert!(named(value["conversation"].as_str()), "missed conversation");
    assert!(named(value["conversation"]["id"].as_str()), "missed conversation.id");
    assert_eq!(value["stream"].as_bool().unwrap_or(false), fields.stream);
    assert_eq!(
        value.get("stream_options").is_some(),
        fields.stream_options.present
    );
    let choices = value["n"]
        .as_u64()
        .max(value["best_of"].as_u64())
        .unwrap_or(1)
        .max(1);
    assert_eq!(choices, fields.choices);
});
